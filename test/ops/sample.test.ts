import { describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/device';
import { InvalidArgumentError } from '../../src/errors';
import { sampleOp, type SamplingParams } from '../../src/engine/ops/sample';
import { sampleReference, samplingUniform } from '../../src/reference/sample';
import { randn, rng, testGpu } from '../gpu';

/** Boundary cases closer than this (fraction of mass) may differ by f32 rounding; they are skipped and counted. */
const BOUNDARY = 1e-5;

const params = (p: Partial<SamplingParams>): SamplingParams => ({ temperature: 1, topK: 0, topP: 1, seed: 0, ...p });

/** Draws one id per step on the GPU (one submission each), reading all ids back at the end. */
async function drawMany(gpu: Gpu, logits: Float32Array, p: SamplingParams, steps: number[]): Promise<Uint32Array> {
  const logitsBuf = gpu.storage(logits, 'test.logits');
  const out = gpu.storage(4, 'test.out');
  const ids = gpu.storage(steps.length * 4, 'test.ids');
  const op = sampleOp(gpu, logitsBuf, logits.length, out);
  for (let j = 0; j < steps.length; j++) {
    op.set(p, steps[j]!);
    const enc = gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    gpu.encode(pass, op.ops);
    pass.end();
    enc.copyBufferToBuffer(out, 0, ids, j * 4, 4);
    gpu.device.queue.submit([enc.finish()]);
  }
  const result = new Uint32Array(await gpu.read(ids, steps.length * 4));
  op.destroy();
  for (const b of [logitsBuf, out, ids]) gpu.destroyBuffer(b);
  return result;
}

const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);

describe('sample op', () => {
  it('greedy is the argmax with the lowest id on ties', async () => {
    const gpu = await testGpu();
    const r = rng(1);
    const cases: Float32Array[] = [];
    const a = randn(1000, r);
    a[900] = 9;
    a[17] = 9; // different invocations (17 and 900 % 256 = 132)
    cases.push(a);
    const b = randn(1000, r);
    b[300] = 7;
    b[44] = 7; // same invocation (300 - 256 = 44)
    b[999] = 6.9999995;
    cases.push(b);
    cases.push(new Float32Array(777).fill(-3)); // all tied -> 0
    const c = randn(50000, r);
    c[49999] = 100;
    cases.push(c);
    const d = randn(1000, r, 0.1).map((x) => x - 50); // all negative
    cases.push(d);
    const expected = [17, 44, 0, 49999, sampleReference(d, params({ temperature: 0 }), 0).id];
    for (let i = 0; i < cases.length; i++) {
      const [id] = await drawMany(gpu, cases[i]!, params({ temperature: 0, seed: 5 }), [3]);
      expect(id).toBe(expected[i]);
      expect(sampleReference(cases[i]!, params({ temperature: 0 }), 0.5).id).toBe(expected[i]);
    }
  });

  it('matches the reference for random logits and mixed settings', async () => {
    const gpu = await testGpu();
    const settings: Partial<SamplingParams>[] = [
      { temperature: 1 },
      { temperature: 0.7, topK: 50 },
      { temperature: 1.3, topP: 0.9 },
      { temperature: 0.8, topK: 40, topP: 0.95 },
      { temperature: 2, topK: 500, topP: 0.5 },
      { temperature: 0.05, topP: 0.99 },
      { temperature: 5, topK: 3 },
    ];
    let compared = 0;
    let skipped = 0;
    for (const vocab of [1000, 50000]) {
      const r = rng(vocab);
      const logits = randn(vocab, r, 3);
      for (let s = 0; s < settings.length; s++) {
        const p = params({ ...settings[s], seed: 1000 * s + vocab });
        const steps = vocab > 1000 ? [0, 7, 123456] : [0, 1, 2, 3, 4, 5, 99, 4294967295];
        const got = await drawMany(gpu, logits, p, steps);
        for (let j = 0; j < steps.length; j++) {
          const ref = sampleReference(logits, p, samplingUniform(p.seed, steps[j]!));
          if (ref.margin < BOUNDARY) {
            skipped++;
            continue;
          }
          compared++;
          expect(got[j], `vocab ${vocab} ${JSON.stringify(p)} step ${steps[j]}`).toBe(ref.id);
        }
      }
    }
    // Deterministic inputs: 4 of 77 draws are skipped, all at vocab 50000 where single tokens
    // carry ~1e-5 of the mass (flat T = 1, and top-p 0.9 keeping 8341 tokens).
    expect(skipped).toBeLessThanOrEqual(6);
    expect(compared).toBeGreaterThanOrEqual(71);
  });

  it('keeps every tie at the top-k threshold, as the reference does', async () => {
    const gpu = await testGpu();
    // Logits on a coarse grid: many ties, so the k-th largest value is shared.
    const logits = randn(2000, rng(7), 2).map((x) => Math.round(x * 2) / 2);
    const p = params({ temperature: 0.5, topK: 10, seed: 11 });
    const steps = range(40);
    const got = await drawMany(gpu, logits, p, steps);
    const kept = sampleReference(logits, p, 0).kept;
    expect(kept.length).toBeGreaterThan(10); // ties at the threshold widen the set
    for (let j = 0; j < steps.length; j++) {
      const ref = sampleReference(logits, p, samplingUniform(p.seed, steps[j]!));
      if (ref.margin >= BOUNDARY) expect(got[j]).toBe(ref.id);
      expect(kept).toContain(got[j]);
    }
  });

  it('top-k = 1 equals greedy', async () => {
    const gpu = await testGpu();
    const logits = randn(5000, rng(3), 2);
    const greedy = sampleReference(logits, params({ temperature: 0 }), 0).id;
    const got = await drawMany(gpu, logits, params({ temperature: 1.5, topK: 1, seed: 9 }), range(6));
    expect([...got]).toEqual(new Array(6).fill(greedy));
  });

  describe('draws with the expected frequencies', () => {
    const probs = [0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02];
    const logits = new Float32Array(probs.map((q) => Math.log(q) + 1.5));
    // Fewer draws where the 32-round threshold searches make each dispatch slower on SwiftShader.
    const scenarios: { p: Partial<SamplingParams>; expected: number[]; n: number }[] = [
      { p: { temperature: 1 }, expected: probs, n: 4000 },
      { p: { temperature: 2 }, expected: normalise(probs.map(Math.sqrt)), n: 3000 },
      { p: { temperature: 1, topK: 2 }, expected: normalise([0.3, 0.2, 0, 0, 0, 0, 0, 0]), n: 1500 },
      // 0.3 + 0.2 < 0.6 <= 0.3 + 0.2 + 0.15: three tokens survive, renormalised.
      { p: { temperature: 1, topP: 0.6 }, expected: normalise([0.3, 0.2, 0.15, 0, 0, 0, 0, 0]), n: 1500 },
    ];
    for (const { p, expected, n } of scenarios) {
      it(JSON.stringify(p), async () => {
        const gpu = await testGpu();
        const full = params({ ...p, seed: 424242 });
        const got = await drawMany(gpu, logits, full, range(n, 1000));
        const counts = new Array<number>(8).fill(0);
        for (const id of got) counts[id]!++;
        for (let i = 0; i < 8; i++) {
          const q = expected[i]!;
          if (q === 0) {
            expect(counts[i], `token ${i} must be excluded`).toBe(0);
          } else {
            // Within 4 standard errors of the binomial proportion.
            const f = counts[i]! / n;
            expect(Math.abs(f - q), `token ${i}: ${f} vs ${q}`).toBeLessThan(4 * Math.sqrt((q * (1 - q)) / n));
          }
        }
      });
    }
  });

  it('top-p never draws from the tail of a large vocabulary', async () => {
    const gpu = await testGpu();
    const logits = randn(3000, rng(21), 2.5);
    const p = params({ temperature: 1, topP: 0.5, seed: 77 });
    const kept = new Set(sampleReference(logits, p, 0).kept);
    expect(kept.size).toBeGreaterThan(1);
    expect(kept.size).toBeLessThan(300);
    const got = await drawMany(gpu, logits, p, range(60));
    for (const id of got) expect(kept.has(id)).toBe(true);
    expect(new Set(got).size).toBeGreaterThan(1);
  });

  it('is reproducible per (seed, step) and changes across steps and seeds', async () => {
    const gpu = await testGpu();
    const logits = randn(1000, rng(5), 0.1); // nearly flat: ids rarely collide
    const p = params({ temperature: 1, seed: 123 });
    const a = await drawMany(gpu, logits, p, [10, 11, 12, 13, 10, 11, 12, 13]);
    expect([...a.slice(4)]).toEqual([...a.slice(0, 4)]);
    const steps = await drawMany(gpu, logits, p, range(20));
    expect(new Set(steps).size).toBeGreaterThanOrEqual(15);
    const other = await drawMany(gpu, logits, params({ temperature: 1, seed: 124 }), range(20));
    expect([...other]).not.toEqual([...steps]);
  });

  it('writes only out[outIndex] and leaves the logits untouched', async () => {
    const gpu = await testGpu();
    const logits = randn(600, rng(8));
    logits[321] = 20;
    const logitsBuf = gpu.storage(logits, 'test.logits');
    const out = gpu.storage(new Uint32Array([7, 7, 7, 7]), 'test.out');
    const op = sampleOp(gpu, logitsBuf, 600, out, 2);
    op.set(params({ temperature: 0.3, topK: 5, topP: 0.9, seed: 1 }), 0);
    gpu.run(op.ops);
    expect([...new Uint32Array(await gpu.read(out))]).toEqual([7, 7, 321, 7]);
    expect([...(await gpu.readF32(logitsBuf, 600))]).toEqual([...logits]);
    op.destroy();
  });

  it('rejects invalid parameters with InvalidArgumentError naming the parameter', async () => {
    const gpu = await testGpu();
    const logitsBuf = gpu.storage(new Float32Array(16), 'test.logits');
    const out = gpu.storage(4, 'test.out');
    const op = sampleOp(gpu, logitsBuf, 16, out);
    const bad: [Partial<SamplingParams>, number, RegExp][] = [
      [{ temperature: NaN }, 0, /temperature must be a finite number/],
      [{ temperature: Infinity }, 0, /temperature/],
      [{ topP: 0 }, 0, /topP must be in \(0, 1\]/],
      [{ topP: -0.5 }, 0, /topP/],
      [{ topP: 1.01 }, 0, /topP must be in \(0, 1\]/],
      [{ topP: NaN }, 0, /topP/],
      [{ topK: -1 }, 0, /topK must be 0 \(off\) or a positive integer/],
      [{ topK: 2.5 }, 0, /topK/],
      [{ seed: -1 }, 0, /seed must be an integer in \[0, 4294967295\]/],
      [{ seed: 0.5 }, 0, /seed/],
      [{}, -1, /step must be an integer/],
      [{}, 2 ** 32, /step/],
    ];
    for (const [p, step, message] of bad) {
      expect(() => op.set(params(p), step)).toThrow(InvalidArgumentError);
      expect(() => op.set(params(p), step)).toThrow(message);
    }
    expect(() => op.set(params({ temperature: 0, topK: 0, topP: 1 }), 0)).not.toThrow();
    expect(() => op.set(params({ temperature: -1, topK: 1000, topP: 1e-6 }), 5)).not.toThrow();
    expect(() => sampleOp(gpu, logitsBuf, 16, out, out.size / 4)).toThrow(/outIndex/);
    expect(() => sampleOp(gpu, logitsBuf, 17, out)).toThrow(/vocab 17/);
    op.destroy();
  });
});

describe('reference sampler', () => {
  it('draws uniform numbers that are spread over [0, 1)', () => {
    const us = range(20000).map((s) => samplingUniform(99, s));
    const mean = us.reduce((a, b) => a + b, 0) / us.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
    const bins = new Array<number>(10).fill(0);
    for (const u of us) {
      expect(u).toBeGreaterThanOrEqual(0);
      expect(u).toBeLessThan(1);
      bins[Math.floor(u * 10)]!++;
    }
    for (const b of bins) expect(Math.abs(b - 2000)).toBeLessThan(4 * Math.sqrt(2000 * 0.9));
  });

  it('applies top-k before top-p and renormalises', () => {
    const logits = new Float32Array([Math.log(0.4), Math.log(0.3), Math.log(0.2), Math.log(0.1)]);
    // Top-k 3 leaves 0.4, 0.3, 0.2 (mass 0.9); top-p 0.7 of that is 0.63 -> {0, 1} (0.7 / 0.9 = 0.78).
    const p = params({ topK: 3, topP: 0.7 });
    expect(sampleReference(logits, p, 0).kept).toEqual([0, 1]);
    expect(sampleReference(logits, p, 0.5).id).toBe(0); // 0.5 * 0.7 < 0.4
    expect(sampleReference(logits, p, 0.6).id).toBe(1); // 0.6 * 0.7 = 0.42 > 0.4
  });
});

function normalise(v: number[]): number[] {
  const s = v.reduce((a, b) => a + b, 0);
  return v.map((x) => x / s);
}
