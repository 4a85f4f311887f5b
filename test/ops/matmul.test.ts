import { describe, expect, it } from 'vitest';
import { decodeToFloat32, encodeFromFloat32 } from '../../src/model/tensor';
import type { Gpu } from '../../src/gpu/device';
import { UnsupportedError } from '../../src/errors';
import {
  checkWeightSize,
  copyOp,
  gemmOp,
  matvecOp,
  matvecOpWith,
  uploadWeight,
  type MatvecSchedule,
  type WeightDType,
  type WeightLayout,
  type WeightTensor,
} from '../../src/engine/ops/matmul';
import { linearRows } from '../../src/reference/ops';
import { maxAbs, randn, rms, rng, testGpu } from '../gpu';

// ---- 16-bit encoders / decoders (round to nearest, ties to even), independent of the GPU code ----
/** Encodes values in `dtype` (little-endian bytes) and returns the bytes plus what they decode to. */
function encode(values: Float32Array, dtype: WeightDType): { bytes: Uint8Array; decoded: Float32Array } {
  const bytes = encodeFromFloat32(values, dtype);
  return { bytes, decoded: decodeToFloat32(dtype, bytes) };
}

/**
 * Tolerance: 1e-4 * sqrt(K) * rms(W) * rms(x), i.e. 1e-4 of the typical magnitude of a dot
 * product of length K, plus 1e-6 of the added bias / accumulated values. Only the
 * accumulation order differs from the reference (the weights are decoded identically), so
 * observed errors are ~1e-7 relative; a dropped or doubled term is ~1e-1 relative.
 */
function tolerance(w: Float32Array, x: Float32Array, K: number, extra: Float32Array[]): number {
  return 1e-4 * Math.sqrt(K) * rms(w) * rms(x) + 1e-6 * extra.reduce((s, a) => s + maxAbs(a), 0);
}

interface Case {
  dtype: WeightDType;
  N: number;
  K: number;
  rows?: number; // gemm rows; undefined = matvec
  bias?: boolean;
  accumulate?: boolean;
  xOffset?: number;
  yOffset?: number;
  schedule?: MatvecSchedule;
  gpuOverride?: (gpu: Gpu) => Gpu;
  /** 'gpu': the kernel variants GPUs get (gemm: 8 x 8 tiles instead of SwiftShader's 16 x 8). */
  kernels?: 'auto' | 'gpu';
  /** 'kn': the weight stored transposed (shaders/matmul_kn.wgsl). */
  layout?: WeightLayout;
}

const SENTINEL = -12345;

async function runCase(c: Case, seed: number): Promise<void> {
  const base = await testGpu(c.kernels);
  const gpu = c.gpuOverride ? c.gpuOverride(base) : base;
  const r = rng(seed);
  const { N, K } = c;
  const rows = c.rows ?? 1;
  const maxRows = c.rows === undefined ? 1 : Math.max(c.rows, 64);
  const xOff = c.xOffset ?? 0;
  const yOff = c.yOffset ?? 0;
  const enc = encode(randn(N * K, r, 0.05), c.dtype);
  const w: WeightTensor = uploadWeight(gpu, c.dtype, N, K, enc.bytes, `w${seed}`, c.layout);
  const x = randn(maxRows * K, r, 1);
  const xBuf = new Float32Array(xOff + maxRows * K + 5).fill(SENTINEL);
  xBuf.set(x, xOff);
  const bias = c.bias ? randn(N, r, 0.5) : undefined;
  const y0 = randn(maxRows * N, r, 1);
  const yInit = new Float32Array(yOff + maxRows * N + 3).fill(SENTINEL);
  if (c.accumulate) yInit.set(y0, yOff);
  const xg = gpu.storage(xBuf, 'x');
  const yg = gpu.storage(yInit, 'y');
  const opts = { bias: bias ? gpu.storage(bias, 'bias') : undefined, accumulate: c.accumulate, xOffset: c.xOffset, yOffset: c.yOffset };
  if (c.rows === undefined) {
    gpu.run([c.schedule ? matvecOpWith(gpu, w, xg, yg, opts, c.schedule) : matvecOp(gpu, w, xg, yg, opts)]);
  } else {
    const g = gemmOp(gpu, w, xg, yg, maxRows, opts);
    expect(g.maxRows).toBe(maxRows);
    // Run once with all rows then with `rows`: the second submission must see its own row count.
    if (c.accumulate) {
      gpu.run([g.forRows(rows)]);
    } else {
      gpu.run([g.forRows(maxRows)]);
      gpu.write(yg, yInit);
      gpu.run([g.forRows(rows)]);
    }
  }
  const got = await gpu.readF32(yg, yInit.length);
  const want = linearRows(enc.decoded, N, K, x, rows, bias, c.accumulate ? y0 : undefined);
  const tol = tolerance(enc.decoded, x, K, [...(bias ? [bias] : []), ...(c.accumulate ? [y0] : [])]);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[yOff + i]! - want[i]!) || (Number.isNaN(got[yOff + i]) ? Infinity : 0));
  expect(worst, `max |diff| ${worst} > tol ${tol}`).toBeLessThanOrEqual(tol);
  // Outside the computed rows, y is untouched (sentinel) or keeps its accumulated input.
  for (let i = 0; i < yOff; i++) expect(got[i]).toBe(SENTINEL);
  for (let i = yOff + rows * N; i < yInit.length; i++) expect(got[i]).toBe(yInit[i]);
  w.buffer.destroy();
  xg.destroy();
  yg.destroy();
  opts.bias?.destroy();
}

/** A Gpu whose dispatch limit is tiny, so ordinary sizes exercise the 2-D workgroup grid. */
const tinyGrid = (gpu: Gpu): Gpu => Object.create(gpu, { maxWorkgroupsPerDim: { value: 7 } }) as Gpu;

describe('matvec', () => {
  const dtypes: WeightDType[] = ['f32', 'f16', 'bf16'];
  const schedules: MatvecSchedule[] = ['rows', 'coop'];
  let seed = 1;
  for (const dtype of dtypes) {
    for (const schedule of schedules) {
      it(`${dtype} ${schedule}: odd N, vector path (K=200), plain / bias / accumulate / both`, async () => {
        await runCase({ dtype, schedule, N: 97, K: 200 }, seed++);
        await runCase({ dtype, schedule, N: 97, K: 200, bias: true }, seed++);
        await runCase({ dtype, schedule, N: 97, K: 200, accumulate: true }, seed++);
        await runCase({ dtype, schedule, N: 98, K: 200, bias: true, accumulate: true }, seed++);
      });
      it(`${dtype} ${schedule}: K=576, offsets (aligned and unaligned), scalar-path K`, async () => {
        await runCase({ dtype, schedule, N: 61, K: 576, xOffset: 8, yOffset: 5 }, seed++);
        await runCase({ dtype, schedule, N: 33, K: 576, xOffset: 3, yOffset: 1, bias: true, accumulate: true }, seed++);
        await runCase({ dtype, schedule, N: 50, K: dtype === 'f32' ? 201 : 198, bias: true }, seed++);
        await runCase({ dtype, schedule, N: 3, K: 2 }, seed++);
      });
      it(`${dtype} ${schedule}: 2-D workgroup grid`, async () => {
        await runCase({ dtype, schedule, N: 2000 + 3, K: 24, gpuOverride: tinyGrid, bias: true }, seed++);
      });
    }
  }
  for (const schedule of ['rows', 'coop'] as MatvecSchedule[]) {
    it(`f16 ${schedule}: subnormal, extreme, signed-zero, inf and NaN weights decode exactly`, async () => {
      const gpu = await testGpu();
      const K = 16;
      const specials = [0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x8000, 0x0000, 0x3c00, 0x3555, 0xc000, 0x2e66, 0x0200, 0x8200, 0x5640, 0x1234];
      const bits = new Uint16Array(4 * K);
      for (let k = 0; k < K; k++) {
        bits[k] = specials[k]!; // row 0: finite specials, one per column
        bits[K + k] = k === 5 ? 0x7c00 : 0x3c00; // row 1: +inf at column 5
        bits[2 * K + k] = k === 9 ? 0xfe00 : 0x3c00; // row 2: NaN at column 9
        bits[3 * K + k] = k === 2 ? 0xfc00 : 0; // row 3: -inf
      }
      const w = uploadWeight(gpu, 'f16', 4, K, new Uint8Array(bits.buffer), 'specials');
      const run = async (x: Float32Array): Promise<Float32Array> => {
        const y = gpu.storage(16, 'y');
        gpu.run([matvecOpWith(gpu, w, gpu.storage(x, 'x'), y, {}, schedule)]);
        return gpu.readF32(y, 4);
      };
      // x picks out one column at a time, so y[0] = W[0, col] exactly.
      const specialValues = decodeToFloat32('f16', new Uint8Array(new Uint16Array(specials).buffer));
      for (let col = 0; col < K; col++) {
        const x = new Float32Array(K);
        x[col] = 1;
        expect((await run(x))[0]! + 0).toBe(specialValues[col]! + 0); // + 0: the f32 sum starts at +0, so -0 reads as +0
      }
      const got = await run(new Float32Array(K).fill(1));
      expect(got[1]).toBe(Infinity);
      expect(got[2]).toBeNaN();
      expect(got[3]).toBe(-Infinity);
    });
  }
  it('LM-head-sized N (70000) with the default schedule', async () => {
    await runCase({ dtype: 'f16', N: 70000, K: 16, bias: true }, 99);
  });
  it('coop schedule past 65535 workgroups in one dimension (N = 262200)', async () => {
    await runCase({ dtype: 'f32', schedule: 'coop', N: 262200, K: 4 }, 98);
  });
});

describe('gemm', () => {
  let seed = 1000;
  // Both tile sizes: 16 x 8 (CPU adapters, what SwiftShader picks) and 8 x 8 (GPUs).
  for (const kernels of ['auto', 'gpu'] as const)
  for (const dtype of ['f32', 'f16', 'bf16'] as WeightDType[]) {
    it(`${dtype} (${kernels} kernels): rows 1, 7, 64, 150; odd N; K=200 and 576; bias / accumulate`, async () => {
      await runCase({ dtype, kernels, N: 97, K: 200, rows: 1 }, seed++);
      await runCase({ dtype, kernels, N: 97, K: 200, rows: 7, bias: true }, seed++);
      await runCase({ dtype, kernels, N: 97, K: 200, rows: 64, accumulate: true }, seed++);
      await runCase({ dtype, kernels, N: 67, K: 576, rows: 7, bias: true, accumulate: true }, seed++);
      // Several workgroups in both directions (16 x 8 tiles: 128 columns x 64 rows per workgroup).
      await runCase({ dtype, kernels, N: 300, K: 64, rows: 150, bias: true }, seed++);
    });
    it(`${dtype} (${kernels} kernels): offsets and scalar-path K`, async () => {
      await runCase({ dtype, kernels, N: 45, K: 576, rows: 5, xOffset: 12, yOffset: 7 }, seed++);
      await runCase({ dtype, kernels, N: 45, K: 200, rows: 9, xOffset: 1, yOffset: 2, bias: true }, seed++);
      await runCase({ dtype, kernels, N: 19, K: dtype === 'f32' ? 37 : 38, rows: 17, accumulate: true }, seed++);
    });
  }
  it('rejects a row count outside [1, maxRows]', async () => {
    const gpu = await testGpu();
    const w = uploadWeight(gpu, 'f32', 4, 4, new Uint8Array(64), 'w');
    const g = gemmOp(gpu, w, gpu.storage(4 * 4 * 4, 'x'), gpu.storage(4 * 4 * 4, 'y'), 4);
    expect(() => g.forRows(5)).toThrow(/rows/);
    expect(() => g.forRows(0)).toThrow(/rows/);
  });
});

// The transposed ('kn') layout: both products against the same reference, every dtype, the
// epilogue options, offsets, partial tiles (rows not a multiple of 8, quads not a multiple of 32).
describe("'kn' weight layout", () => {
  let seed = 3000;
  for (const dtype of ['f32', 'f16', 'bf16'] as WeightDType[]) {
    it(`${dtype} matvec: plain / bias / accumulate / both, offsets, one-quad N, 2-D grid`, async () => {
      await runCase({ dtype, layout: 'kn', N: 96, K: 200 }, seed++);
      await runCase({ dtype, layout: 'kn', N: 100, K: 200, bias: true }, seed++);
      await runCase({ dtype, layout: 'kn', N: 100, K: 576, accumulate: true }, seed++);
      await runCase({ dtype, layout: 'kn', N: 132, K: 64, bias: true, accumulate: true, xOffset: 3, yOffset: 1 }, seed++);
      await runCase({ dtype, layout: 'kn', N: 4, K: dtype === 'f32' ? 7 : 6 }, seed++);
      await runCase({ dtype, layout: 'kn', N: 2000, K: 24, gpuOverride: tinyGrid, bias: true }, seed++);
    });
    it(`${dtype} gemm: rows 1, 7, 64, 150; N 4 .. 1028; bias / accumulate; offsets`, async () => {
      await runCase({ dtype, layout: 'kn', N: 96, K: 200, rows: 1 }, seed++);
      await runCase({ dtype, layout: 'kn', N: 100, K: 200, rows: 7, bias: true }, seed++);
      await runCase({ dtype, layout: 'kn', N: 4, K: 64, rows: 64, accumulate: true }, seed++);
      await runCase({ dtype, layout: 'kn', N: 1028, K: 64, rows: 150, bias: true, accumulate: true }, seed++);
      await runCase({ dtype, layout: 'kn', N: 256, K: 576, rows: 9, xOffset: 5, yOffset: 3 }, seed++);
      await runCase({ dtype, layout: 'kn', N: 132, K: dtype === 'f32' ? 37 : 38, rows: 17, accumulate: true }, seed++);
      // vec4 epilogue with an offset (y_off a multiple of 4) and both bias and accumulate; then the scalar one.
      await runCase({ dtype, layout: 'kn', N: 132, K: 64, rows: 9, yOffset: 8, xOffset: 3, bias: true, accumulate: true }, seed++);
      await runCase({ dtype, layout: 'kn', N: 132, K: 64, rows: 9, yOffset: 6, bias: true, accumulate: true }, seed++);
    });
  }
  it('gives the same products as the file layout, and rejects N not a multiple of 4', async () => {
    const gpu = await testGpu();
    const r = rng(77);
    const [N, K, M] = [64, 96, 40];
    const enc = encode(randn(N * K, r, 0.05), 'f16');
    const x = gpu.storage(randn(M * K, r, 1), 'x');
    const out = async (layout: WeightLayout, rows: number): Promise<Float32Array> => {
      const w = uploadWeight(gpu, 'f16', N, K, enc.bytes, `w.${layout}`, layout);
      expect(w.layout).toBe(layout);
      const y = gpu.storage(M * N * 4, 'y');
      gpu.run([rows === 1 ? matvecOp(gpu, w, x, y) : gemmOp(gpu, w, x, y, M).forRows(rows)]);
      return gpu.readF32(y, rows * N);
    };
    for (const rows of [1, M]) {
      const a = await out('nk', rows);
      const b = await out('kn', rows);
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
      expect(worst).toBeLessThan(1e-4);
      expect(maxAbs(b)).toBeGreaterThan(0.1);
    }
    expect(() => uploadWeight(gpu, 'f32', 6, 4, new Uint8Array(96), 'w6', 'kn')).toThrow(expect.objectContaining({ code: 'invalid-argument' }));
    expect(() => uploadWeight(gpu, 'f32', 4, 4, new Uint8Array(64), 'wx', 'xy' as WeightLayout)).toThrow(expect.objectContaining({ code: 'invalid-argument' }));
  });
});

describe('copy probe', () => {
  const cases: [number, boolean][] = [[1, false], [4099, false], [4100, false], [40_000, true], [40_001, true]];
  for (const [n, tiny] of cases) {
    it(`copies ${n} f32${tiny ? ' (2-D grid)' : ''}`, async () => {
      const base = await testGpu();
      const gpu = tiny ? tinyGrid(base) : base;
      const src = new Float32Array(n).map((_, i) => i * 0.5 - 7);
      const a = gpu.storage(src, 'a');
      const b = gpu.storage(new Float32Array(n + 8).fill(SENTINEL), 'b');
      gpu.run([copyOp(gpu, a, b, n)]);
      const got = await gpu.readF32(b, n + 8);
      let bad = 0;
      for (let i = 0; i < n + 8; i++) if (got[i] !== (i < n ? src[i] : SENTINEL)) bad++;
      expect(bad).toBe(0);
      a.destroy();
      b.destroy();
    });
  }
});

describe('weight upload', () => {
  it('throws tensor-too-large naming the tensor, its bytes and the limit', async () => {
    expect(() => checkWeightSize('lm_head.weight', 2_000_000_000, 1_073_741_824)).toThrow(UnsupportedError);
    try {
      checkWeightSize('lm_head.weight', 2_000_000_000, 1_073_741_824);
    } catch (e) {
      expect((e as UnsupportedError).code).toBe('tensor-too-large');
      expect((e as Error).message).toMatch(/lm_head\.weight.*2000000000.*1073741824/);
    }
    expect(() => checkWeightSize('ok', 1024, 1024)).not.toThrow();
    // Through uploadWeight, on a device whose binding limit is 1 KiB.
    const gpu = await testGpu();
    const small = Object.create(gpu, { maxBinding: { value: 1024 } }) as Gpu;
    const before = gpu.bytes('weights');
    expect(() => uploadWeight(small, 'f16', 32, 32, new Uint8Array(2048), 'big')).toThrow(
      expect.objectContaining({ code: 'tensor-too-large' }),
    );
    expect(gpu.bytes('weights')).toBe(before); // nothing allocated
    expect(uploadWeight(small, 'f16', 16, 32, new Uint8Array(1024), 'fits').rows).toBe(16);
  });
  it('uploads from a byte view at an unaligned offset (e.g. inside a safetensors file) unchanged', async () => {
    const gpu = await testGpu();
    const vals = [1, -2, 0.5, 3, 0.25, -1, 2, 4];
    const enc = encode(new Float32Array(vals), 'bf16');
    const file = new Uint8Array(3 + enc.bytes.length);
    file.set(enc.bytes, 3);
    const w = uploadWeight(gpu, 'bf16', 2, 4, file.subarray(3), 'w.view');
    const y = gpu.storage(8, 'y');
    gpu.run([matvecOp(gpu, w, gpu.storage(new Float32Array([1, 10, 100, 1000]), 'x'), y)]);
    expect([...(await gpu.readF32(y, 2))]).toEqual([1 - 20 + 50 + 3000, 0.25 - 10 + 200 + 4000]);
  });
  it('rejects wrong byte counts and odd 16-bit rows', async () => {
    const gpu = await testGpu();
    expect(() => uploadWeight(gpu, 'bf16', 4, 4, new Uint8Array(30), 'w')).toThrow(expect.objectContaining({ code: 'shape-mismatch' }));
    expect(() => uploadWeight(gpu, 'f16', 4, 3, new Uint8Array(24), 'w')).toThrow(expect.objectContaining({ code: 'invalid-argument' }));
  });
});
