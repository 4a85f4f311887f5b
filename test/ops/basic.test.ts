import { describe, expect, it } from 'vitest';
import { attentionOps, attentionSplit, embedOp, kvCommitOp, rmsnormOp, ropeAppendOp, StepBuffer, swigluOp } from '../../src/engine/ops/basic';
import { applyRope, attendHead, rmsnorm, ropeInvFreq, ropeTables, silu } from '../../src/reference/ops';
import { encode16, maxAbsDiff, randn, rng, testGpu } from '../gpu';

describe('rmsnorm kernel', () => {
  it('matches the reference per row and for the last row only', async () => {
    const gpu = await testGpu();
    const r = rng(1);
    const n = 200;
    const rows = 5;
    const x = randn(rows * n, r, 3);
    const w = randn(n, r);
    const step = new StepBuffer(gpu);
    step.set({ rows, pos0: 0, splits: 1, keysPerSplit: 64 });
    const xb = gpu.storage(x, 'x');
    const wb = gpu.storage(w, 'w');
    const yb = gpu.storage(rows * n * 4, 'y');
    const lb = gpu.storage(n * 4, 'ylast');
    const yb2 = gpu.storage(rows * n * 4, 'y2');
    // Both multi-row variants: a workgroup per row (GPUs) and a row per invocation (CPU adapters).
    gpu.run([rmsnormOp(gpu, xb, wb, yb, n, 1e-5, step, false, true)(rows), rmsnormOp(gpu, xb, wb, yb2, n, 1e-5, step, false, false)(rows), rmsnormOp(gpu, xb, wb, lb, n, 1e-5, step, true)(rows)]);
    const want = rmsnorm(x, w, 1e-5);
    expect(maxAbsDiff(await gpu.readF32(yb, rows * n), want)).toBeLessThan(1e-5);
    expect(maxAbsDiff(await gpu.readF32(yb2, rows * n), want)).toBeLessThan(1e-5);
    expect(maxAbsDiff(await gpu.readF32(lb, n), want.subarray((rows - 1) * n))).toBeLessThan(1e-5);
  });
});

describe('embedding kernel', () => {
  for (const dtype of ['f32', 'f16', 'bf16'] as const) {
    it(`gathers rows of a ${dtype} table exactly`, async () => {
      const gpu = await testGpu();
      const r = rng(2);
      const vocab = 50;
      const hidden = 96;
      const table = randn(vocab * hidden, r);
      let bytes: Uint8Array;
      let decoded: Float32Array;
      if (dtype === 'f32') {
        bytes = new Uint8Array(table.buffer);
        decoded = table;
      } else ({ bytes, decoded } = encode16(table, dtype));
      const tokens = [3, 49, 0, 3, 17];
      const tb = gpu.storage(bytes, 'table');
      const ids = gpu.storage(new Uint32Array(tokens), 'ids');
      const x = gpu.storage(tokens.length * hidden * 4, 'x');
      gpu.run([embedOp(gpu, tb, dtype, hidden, ids, x)(tokens.length)]);
      const got = await gpu.readF32(x, tokens.length * hidden);
      const want = new Float32Array(tokens.length * hidden);
      tokens.forEach((t, i) => want.set(decoded.subarray(t * hidden, (t + 1) * hidden), i * hidden));
      expect(maxAbsDiff(got, want)).toBe(0);
    });
  }
});

describe('swiglu kernel', () => {
  it('matches silu(gate) * up', async () => {
    const gpu = await testGpu();
    const r = rng(3);
    const rows = 3;
    const inter = 130;
    const gu = randn(rows * 2 * inter, r, 2);
    const step = new StepBuffer(gpu);
    step.set({ rows, pos0: 0, splits: 1, keysPerSplit: 64 });
    const gb = gpu.storage(gu, 'gu');
    const ab = gpu.storage(rows * inter * 4, 'act');
    gpu.run([swigluOp(gpu, gb, ab, inter, step)(rows)]);
    const want = new Float32Array(rows * inter);
    for (let row = 0; row < rows; row++)
      for (let i = 0; i < inter; i++) want[row * inter + i] = silu(gu[row * 2 * inter + i]!) * gu[row * 2 * inter + inter + i]!;
    expect(maxAbsDiff(await gpu.readF32(ab, rows * inter), want)).toBeLessThan(1e-5);
  });
});

describe('rope + cache append + split attention', () => {
  // A cache already holding `prior` entries per KV head, then a step of `rows` new tokens.
  const cases = [
    { name: 'decode, GQA 3:1, head_dim 64', nH: 6, nKV: 2, hd: 64, prior: 150, rows: 1 },
    { name: 'prefill chunk over a cache, MQA, head_dim 32', nH: 4, nKV: 1, hd: 32, prior: 70, rows: 9 },
    { name: 'first prefill chunk, head_dim 128 (4 dims per thread)', nH: 2, nKV: 2, hd: 128, prior: 0, rows: 33 },
    { name: 'long decode with many splits, head_dim 80', nH: 2, nKV: 1, hd: 80, prior: 2500, rows: 1 },
    // 'rows' takes 2 rows per invocation past 16 rows: 70 rows = two full workgroups of 32 rows and
    // one with 6 live rows (the rest of its lanes compute copies and store nothing).
    { name: 'prefill chunk of 70 rows over a cache, GQA 2:1', nH: 4, nKV: 2, hd: 32, prior: 40, rows: 70 },
  ];
  // Both kernels on every case (the engine picks per adapter and step), with the scores for the
  // attention-mass pass written for the decode cases and the prefill chunks over a cache. 'rows'
  // serves as many heads of a KV group per invocation as the engine would (3, 4, 1, 2, 2 here);
  // 'rows1' one head per invocation.
  for (const c of cases) for (const mode of ['split', 'rows', 'rows1'] as const) {
    it(`${c.name} (${mode})`, async () => {
      const gpu = await testGpu();
      const r = rng(7 + c.prior);
      const { nH, nKV, hd, prior, rows } = c;
      const capacity = prior + rows + 5;
      const pos0 = prior + 3; // positions need not equal slots
      const invFreq = ropeInvFreq({ headDim: hd, ropeTheta: 10000, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 } });
      const { cos, sin } = ropeTables(invFreq, pos0 + rows + 1);
      // Prior cache entries: random rotated keys, positions spaced so slot != position.
      const kc = new Float32Array(nKV * capacity * hd);
      const vc = new Float32Array(nKV * capacity * hd);
      const pc = new Uint32Array(nKV * capacity);
      const keys: Float32Array[][] = [];
      const vals: Float32Array[][] = [];
      const poss: number[][] = [];
      for (let h = 0; h < nKV; h++) {
        keys.push([]); vals.push([]); poss.push([]);
        for (let j = 0; j < prior; j++) {
          const k = randn(hd, r);
          const v = randn(hd, r);
          kc.set(k, (h * capacity + j) * hd);
          vc.set(v, (h * capacity + j) * hd);
          pc[h * capacity + j] = j + (j > prior / 2 ? 3 : 0);
          keys[h]!.push(k); vals[h]!.push(v); poss[h]!.push(pc[h * capacity + j]!);
        }
      }
      const width = (nH + 2 * nKV) * hd;
      const qkv = randn(rows * width, r);
      const step = new StepBuffer(gpu);
      const sp = attentionSplit(prior + rows);
      step.set({ rows, pos0, ...sp });
      const cache = { k: gpu.storage(kc, 'k'), v: gpu.storage(vc, 'v'), pos: gpu.storage(pc, 'pos'), capacity, layerBase: 0 };
      const lens = gpu.storage(new Uint32Array(nKV).fill(prior), 'lens');
      const qkvB = gpu.storage(qkv, 'qkv');
      const part = gpu.storage(rows * nH * 32 * (hd + 2) * 4, 'part');
      const out = gpu.storage(rows * nH * hd * 4, 'out');
      const shape = { nH, nKV, hd };
      const withScores = c.prior >= 150 || c.rows === 9 || c.rows === 70;
      const mass = withScores ? { scores: gpu.storage(rows * nH * capacity * 4, 'scores'), ml: gpu.storage(rows * nH * 2 * 4, 'ml') } : undefined;
      gpu.run([
        ropeAppendOp(gpu, qkvB, gpu.storage(cos, 'cos'), gpu.storage(sin, 'sin'), cache, lens, shape, step)(rows),
        ...attentionOps(gpu, qkvB, cache, lens, part, out, shape, step, mass, mode === 'split' ? 'split' : 'rows', mode === 'rows1' ? 1 : undefined)(rows, sp.splits),
        kvCommitOp(gpu, lens, gpu.storage(nKV * 8, 'acct'), nKV, step),
      ]);
      // Reference: rotate, append, attend causally by position.
      const want = new Float32Array(rows * nH * hd);
      const qs: Float32Array[] = [];
      for (let row = 0; row < rows; row++) {
        const v = qkv.slice(row * width, (row + 1) * width);
        const pos = pos0 + row;
        for (let h = 0; h < nH + nKV; h++) applyRope(v, h * hd, hd, pos, cos, sin);
        qs.push(v);
        for (let h = 0; h < nKV; h++) {
          keys[h]!.push(v.slice((nH + h) * hd, (nH + h + 1) * hd));
          vals[h]!.push(v.slice((nH + nKV + h) * hd, (nH + nKV + h + 1) * hd));
          poss[h]!.push(pos);
        }
      }
      for (let row = 0; row < rows; row++) {
        for (let h = 0; h < nH; h++) {
          const kv = Math.floor(h / (nH / nKV));
          const vis = poss[kv]!.map((p, j) => (p <= pos0 + row ? j : -1)).filter((j) => j >= 0);
          const { out: o } = attendHead(qs[row]!, h * hd, vis.map((j) => keys[kv]![j]!), vis.map((j) => vals[kv]![j]!), hd);
          want.set(o, (row * nH + h) * hd);
        }
      }
      expect(maxAbsDiff(await gpu.readF32(out, rows * nH * hd), want)).toBeLessThan(2e-5);
      if (mass) {
        // Raw scaled scores per (row, head, entry), masked entries <= -1e29, and the softmax (max, sum).
        const sc = await gpu.readF32(mass.scores, rows * nH * capacity);
        const ml = await gpu.readF32(mass.ml, rows * nH * 2);
        for (let row = 0; row < rows; row++)
          for (let h = 0; h < nH; h++) {
            const kv = Math.floor(h / (nH / nKV));
            const q = qs[row]!.subarray(h * hd, (h + 1) * hd);
            const s = poss[kv]!.map((p, j) => (p <= pos0 + row ? keys[kv]![j]!.reduce((a, k, d) => a + k * q[d]!, 0) / Math.sqrt(hd) : -Infinity));
            const m = Math.max(...s);
            const l = s.reduce((a, x) => a + Math.exp(x - m), 0);
            s.forEach((x, j) => {
              const got = sc[(row * nH + h) * capacity + j]!;
              if (x === -Infinity) expect(got).toBeLessThan(-1e29);
              else expect(Math.abs(got - x)).toBeLessThan(1e-4);
            });
            expect(Math.abs(ml[(row * nH + h) * 2]! - m)).toBeLessThan(1e-4);
            expect(Math.abs(ml[(row * nH + h) * 2 + 1]! - l) / l).toBeLessThan(1e-4);
          }
      }
      // Cache: rotated keys and values appended at slots prior..prior+rows-1, with positions.
      const gotK = await gpu.readF32(cache.k, nKV * capacity * hd);
      const gotP = new Uint32Array(await gpu.read(cache.pos, nKV * capacity * 4));
      for (let h = 0; h < nKV; h++)
        for (let j = prior; j < prior + rows; j++) {
          expect(maxAbsDiff(gotK.subarray((h * capacity + j) * hd, (h * capacity + j + 1) * hd), keys[h]![j]!)).toBeLessThan(1e-5);
          expect(gotP[h * capacity + j]).toBe(pos0 + j - prior);
        }
      expect([...new Uint32Array(await gpu.read(lens, nKV * 4))]).toEqual(new Array(nKV).fill(prior + rows));
    });
  }
});
