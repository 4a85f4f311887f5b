import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, ShapeMismatchError } from '../../src/errors';
import { gemmOp, matvecOp, type MatvecSchedule } from '../../src/engine/ops/matmul';
import { q4EmbedOp, q4GemmOp, q4MatvecOpWith, uploadQ4Tensor, uploadQ4Weight, type Q4WeightTensor } from '../../src/engine/ops/quant';
import { dequantizeQ4, quantizeQ4, toFloat32, type HostTensor, type Q4Format } from '../../src/model/tensor';
import { linearRows } from '../../src/reference/ops';
import { f16BitsToF32, maxAbsDiff, randn, rms, rng, testGpu } from '../gpu';

// ---- an independent reading of MLC's layout (utils.py convert_uint_to_float + group_quantization.py _dequantize) ----
function mlcDequantize(t: HostTensor): Float32Array {
  const [N, K] = t.shape as [number, number];
  const words = new Uint32Array(t.data.slice().buffer);
  const scaleBytes = t.q4!.scales.slice();
  const scale = t.q4!.format === 'q4f16_1'
    ? Array.from(new Uint16Array(scaleBytes.buffer), f16BitsToF32)
    : Array.from(new Float32Array(scaleBytes.buffer));
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const word = words[n * (K / 8) + Math.floor(k / 8)]!;
      const q = Math.floor(word / 2 ** (4 * (k % 8))) % 16;
      out[n * K + k] = (q - 7) * scale[n * (K / 32) + Math.floor(k / 32)]!;
    }
  }
  return out;
}

/** 1e-4 of a typical length-K dot product: only the f32 accumulation order differs from the f64 reference. */
function tolerance(w: Float32Array, x: Float32Array, K: number): number {
  return 1e-4 * Math.sqrt(K) * rms(w) * rms(x) + 1e-5;
}

const FORMATS: Q4Format[] = ['q4f16_1', 'q4f32_1'];

describe('q4 host codec (MLC group quantization)', () => {
  it('packs element 8j + r into nibble r of word j, with q = round(w / scale + 7) and scale = max|w| / 7', () => {
    // One row of 32: w[k] = (k % 15 - 7) * 0.5 hits every code 0..14; max|w| = 3.5 so scale = 0.5 exactly.
    const w = Float32Array.from({ length: 32 }, (_, k) => ((k % 15) - 7) * 0.5);
    for (const format of FORMATS) {
      const t = quantizeQ4('w', [1, 32], w, format);
      const words = new Uint32Array(t.data.slice().buffer);
      expect(words.length).toBe(4);
      for (let j = 0; j < 4; j++) {
        let expected = 0;
        for (let r = 0; r < 8; r++) expected += ((8 * j + r) % 15) * 2 ** (4 * r);
        expect(words[j]).toBe(expected);
      }
      expect(t.q4!.scales.byteLength).toBe(format === 'q4f16_1' ? 2 : 4);
      expect(Array.from(toFloat32(t))).toEqual(Array.from(w));
    }
  });

  it('dequantizes within half a step of the f16-rounded weights, and dequantizeQ4 agrees with the independent reading', () => {
    const r = rng(3);
    const N = 9;
    const K = 96;
    const w = randn(N * K, r, 0.05);
    for (const format of FORMATS) {
      const t = quantizeQ4('w', [N, K], w, format);
      const mine = dequantizeQ4(t);
      expect(maxAbsDiff(mine, mlcDequantize(t))).toBe(0);
      const scales = toFloat32({ name: 's', dtype: t.dtype, shape: [N * 3], data: t.q4!.scales });
      for (let i = 0; i < w.length; i++) {
        const s = scales[Math.floor(i / 32)]!;
        expect(Math.abs(mine[i]! - w[i]!)).toBeLessThanOrEqual(s * 0.5 + 1e-3 * s + 1e-7);
      }
    }
  });
});

interface Case {
  format: Q4Format;
  N: number;
  K: number;
  rows?: number; // gemm rows; undefined = matvec
  bias?: boolean;
  accumulate?: boolean;
  yOffset?: number;
  schedule?: MatvecSchedule;
}

async function runCase(c: Case, seed: number): Promise<number> {
  const gpu = await testGpu();
  const r = rng(seed);
  const { N, K } = c;
  const rows = c.rows ?? 1;
  const maxRows = c.rows === undefined ? 1 : c.rows + 3;
  const yOff = c.yOffset ?? 0;
  const t = quantizeQ4(`w${seed}`, [N, K], randn(N * K, r, 0.05), c.format);
  const deq = mlcDequantize(t);
  const w: Q4WeightTensor = uploadQ4Tensor(gpu, t, `w${seed}`);
  const x = randn(maxRows * K, r);
  const bias = c.bias ? randn(N, r, 0.3) : undefined;
  const y0 = randn(yOff + maxRows * N, r);
  const xb = gpu.storage(x, 'x');
  const yb = gpu.storage(y0, 'y');
  const bb = bias ? gpu.storage(bias, 'bias') : undefined;
  const opts = { bias: bb, accumulate: c.accumulate, yOffset: yOff };
  const op = c.rows === undefined
    ? c.schedule ? q4MatvecOpWith(gpu, w, xb, yb, opts, c.schedule) : matvecOp(gpu, w, xb, yb, opts)
    : gemmOp(gpu, w, xb, yb, maxRows, opts).forRows(rows);
  gpu.run([op]);
  const got = await gpu.readF32(yb, yOff + maxRows * N);
  const want = linearRows(deq, N, K, x, rows, bias, c.accumulate ? y0.subarray(yOff) : undefined);
  const diff = maxAbsDiff(got.subarray(yOff, yOff + rows * N), want);
  expect(diff).toBeLessThanOrEqual(tolerance(deq, x, K));
  // Nothing outside the computed rows is written.
  expect(maxAbsDiff(got.subarray(0, yOff), y0.subarray(0, yOff))).toBe(0);
  expect(maxAbsDiff(got.subarray(yOff + rows * N), y0.subarray(yOff + rows * N))).toBe(0);
  return diff;
}

describe('q4 matvec (decode)', () => {
  for (const format of FORMATS) {
    for (const schedule of ['rows', 'coop'] as const) {
      it(`${format} ${schedule}: N=37 K=96 (odd group count), bias, accumulate, y offset`, async () => {
        await runCase({ format, N: 37, K: 96, bias: true, accumulate: true, yOffset: 5, schedule }, 11);
        await runCase({ format, N: 64, K: 256, schedule }, 12);
      });
    }
  }
  it('matvecOp routes q4 weights through the q4 kernel (engine path)', async () => {
    await runCase({ format: 'q4f16_1', N: 20, K: 64 }, 13);
  });
});

describe('q4 gemm (prefill)', () => {
  for (const format of FORMATS) {
    it(`${format}: rows 1, 5 and 21 of N=70 K=64 with bias and accumulate; N=33 K=160`, async () => {
      await runCase({ format, N: 70, K: 64, rows: 1, bias: true }, 21);
      await runCase({ format, N: 70, K: 64, rows: 5, accumulate: true, yOffset: 3 }, 22);
      await runCase({ format, N: 70, K: 64, rows: 21, bias: true, accumulate: true }, 23);
      await runCase({ format, N: 33, K: 160, rows: 17 }, 24);
    });
  }
  it('forRows bounds', async () => {
    const gpu = await testGpu();
    const t = quantizeQ4('w', [8, 32], randn(256, rng(1)), 'q4f16_1');
    const w = uploadQ4Tensor(gpu, t, 'w');
    const g = q4GemmOp(gpu, w, gpu.storage(4 * 32 * 4, 'x'), gpu.storage(4 * 8 * 4, 'y'), 4);
    expect(() => g.forRows(5)).toThrow(InvalidArgumentError);
    expect(() => g.forRows(0)).toThrow(InvalidArgumentError);
  });
});

describe('q4 embedding gather', () => {
  for (const format of FORMATS) {
    it(`${format}: rows are the dequantized table rows`, async () => {
      const gpu = await testGpu();
      const V = 50;
      const H = 96;
      const t = quantizeQ4('emb', [V, H], randn(V * H, rng(5), 0.1), format);
      const table = uploadQ4Tensor(gpu, t, 'emb');
      const ids = [3, 49, 0, 17, 3];
      const tokens = gpu.storage(Uint32Array.from(ids), 'tokens');
      const x = gpu.storage(ids.length * H * 4, 'x');
      gpu.run([q4EmbedOp(gpu, table, H, tokens, x)(ids.length)]);
      const got = await gpu.readF32(x, ids.length * H);
      const deq = mlcDequantize(t);
      const want = new Float32Array(ids.length * H);
      ids.forEach((id, r) => want.set(deq.subarray(id * H, (id + 1) * H), r * H));
      expect(maxAbsDiff(got, want)).toBe(0);
    });
  }
});

describe('q4 upload checks', () => {
  it('rejects K not a multiple of 32 and byte counts that do not match', async () => {
    const gpu = await testGpu();
    expect(() => uploadQ4Weight(gpu, 'q4f16', 4, 48, new Uint8Array(4 * 6 * 4), new Uint8Array(16), 'bad')).toThrow(InvalidArgumentError);
    expect(() => uploadQ4Weight(gpu, 'q4f16', 4, 64, new Uint8Array(4 * 8 * 4), new Uint8Array(4 * 2 * 4), 'bad')).toThrow(ShapeMismatchError);
    expect(() => uploadQ4Weight(gpu, 'q4f32', 4, 64, new Uint8Array(4 * 8 * 4 - 4), new Uint8Array(4 * 2 * 4), 'bad')).toThrow(ShapeMismatchError);
  });
});
