import { describe, expect, it } from 'vitest';
import { attentionLoss, criticalFootprint, fullCacheFootprint, klDivergence, kvFootprint, logitDrift, querySteps } from '../../src/metrics';
import { Engine } from '../../src/engine/engine';
import { ReferenceModel } from '../../src/reference/forward';
import { InvalidArgumentError } from '../../src/errors';
import { rng, testGpu } from '../gpu';
import { f32Weights, loaded, randomWeights, smolLike } from '../engine/fixtures';

const CONTEXT = 128;
const CHUNK = 16;
const weights = randomWeights(smolLike, 'f32', 91);
const model = loaded(smolLike, weights);

function tokens(n: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r() * smolLike.vocabSize));
}
const text = tokens(72, 17);
const prompt = text.slice(0, 48);
const continuation = text.slice(48);
const run = async (policy: { name: string; budget?: number; params?: Record<string, number> }) => ({
  model,
  gpu: await testGpu(),
  contextLength: CONTEXT,
  prefillChunk: CHUNK,
  policy,
  prompt,
  continuation,
});

describe('KL divergence (float64 softmax)', () => {
  it('matches a hand-checked two-token example', () => {
    // p = softmax([0, 0]) = (1/2, 1/2); q = softmax([ln 3, 0]) = (3/4, 1/4).
    // KL(p||q) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3); KL(q||p) = 3/4 ln(3/2) + 1/4 ln(1/2).
    expect(klDivergence([0, 0], [Math.log(3), 0])).toBeCloseTo(0.5 * Math.log(4 / 3), 14);
    expect(klDivergence([Math.log(3), 0], [0, 0])).toBeCloseTo(0.75 * Math.log(1.5) + 0.25 * Math.log(0.5), 14);
    expect(klDivergence([Math.log(3) + 100, 100], [7, 7])).toBeCloseTo(0.75 * Math.log(1.5) + 0.25 * Math.log(0.5), 12);
    expect(klDivergence([1.5, -2, 0.25], [1.5, -2, 0.25])).toBe(0);
    expect(klDivergence([0, -Infinity], [0, 0])).toBeCloseTo(Math.log(2), 14);
    expect(klDivergence([0, 0], [0, -Infinity])).toBe(Infinity);
    expect(() => klDivergence([0, NaN], [0, 0])).toThrow(InvalidArgumentError);
    expect(() => klDivergence([0, 0], [0, 0, 0])).toThrow(/equal vocabularies/);
  });
});

describe('footprint helpers', () => {
  it('query steps and the full-cache normaliser under a chunking', () => {
    expect(querySteps(300, 128, 3)).toEqual([128, 128, 44, 1, 1, 1]);
    expect(querySteps(0, 128, 2)).toEqual([1, 1]);
    expect(fullCacheFootprint(querySteps(0, 1, 100))).toBe((100 * 101) / 2);
    // Chunks of 4 then 2 decode steps: 4*4 + 4*8 + 1*9 + 1*10.
    expect(fullCacheFootprint(querySteps(8, 4, 2))).toBe(16 + 32 + 9 + 10);
    expect(kvFootprint([4, 4, 1], [4, 8, 9])).toBe(1);
    expect(kvFootprint([4, 4, 1], [4, 6, 7])).toBeCloseTo((16 + 24 + 7) / (16 + 32 + 9), 15);
    expect(() => kvFootprint([4, 4], [4, 9])).toThrow(/only 8 tokens/);
    expect(() => fullCacheFootprint([4, 0])).toThrow(InvalidArgumentError);
  });

  it('kvFootprint from live counts equals the cache manager’s own accounting (chunked prefill + decode)', async () => {
    const gpu = await testGpu();
    const e = await Engine.load({ model, gpu, contextLength: CONTEXT, prefillChunk: CHUNK, policy: { name: 'streaming', budget: 20, params: { sinks: 4 } } });
    const rows = querySteps(prompt.length, CHUNK, continuation.length);
    const live: number[][] = [];
    let t = 0;
    for (const r of rows) {
      const before = await e.snapshot();
      live.push(Array.from(before.live, (n) => n + r));
      await e.forwardStep(text.slice(t, t + r));
      t += r;
    }
    const snap = await e.snapshot();
    const heads = snap.live.length;
    let mean = 0;
    for (let i = 0; i < heads; i++) mean += kvFootprint(rows, live.map((s) => s[i]!)) / heads;
    expect(snap.footprint).toBeGreaterThan(0.2);
    expect(snap.footprint).toBeLessThan(0.8);
    expect(Math.abs(mean - snap.footprint)).toBeLessThan(1e-9);
    e.unload();
  });

  it('critical footprint on a synthetic table', () => {
    const table = [
      { footprint: 0.1, score: 40 },
      { footprint: 0.5, score: 95 },
      { footprint: 0.2, score: 85 },
      { footprint: 0.3, score: 90 },
      { footprint: 1, score: 100 },
    ];
    expect(criticalFootprint(table, 100)).toBe(0.3);
    expect(criticalFootprint(table, 100, 0.95)).toBe(0.5);
    expect(criticalFootprint(table, 100, 0.85)).toBe(0.2);
    expect(criticalFootprint(table.slice(0, 1), 100)).toBeNull();
    // Taken as measured: a qualifying point below a failing one still counts.
    expect(criticalFootprint([...table, { footprint: 0.15, score: 91 }], 100)).toBe(0.15);
    expect(() => criticalFootprint(table, 0)).toThrow(InvalidArgumentError);
    expect(() => criticalFootprint([{ footprint: NaN, score: 1 }], 1)).toThrow(/bad point/);
  });
});

describe('attention loss (oracle: tova with budget = context)', () => {
  it('is exactly 0 for the full cache', async () => {
    const r = await attentionLoss(await run({ name: 'full' }));
    expect(r.mean).toBe(0);
    expect(r.perLayer).toEqual([0, 0, 0]);
    expect(r.perStep.length).toBe(continuation.length);
  });

  it('streaming: equals the mass a plain-TS full forward puts outside sinks + window, and shrinks with a larger budget', async () => {
    const SINKS = 4;
    const small = await attentionLoss(await run({ name: 'streaming', budget: 12, params: { sinks: SINKS } }));
    const large = await attentionLoss(await run({ name: 'streaming', budget: 40, params: { sinks: SINKS } }));
    console.log(`attention loss: streaming(12) ${small.mean.toFixed(4)} per layer ${small.perLayer.map((x) => x.toFixed(3)).join(' ')}; streaming(40) ${large.mean.toFixed(4)}`);
    expect(large.mean).toBeGreaterThan(0);
    expect(small.mean).toBeGreaterThan(large.mean);

    // Independent check: full attention from the reference forward pass; streaming's kept set
    // before decoding position t is known: sinks 0..3 plus the last (budget - sinks) positions.
    const { numLayers: L, numKvHeads: nKV, numHeads: nH } = smolLike;
    const group = nH / nKV;
    for (const [budget, got] of [[12, small], [40, large]] as const) {
      const ref = new ReferenceModel(smolLike, f32Weights(weights), CONTEXT);
      let t = 0;
      let lost = new Float64Array(L * nKV);
      ref.onAttention = (l, _h, kv, probs) => {
        const positions = ref.entries(l, kv).positions;
        probs.forEach((p, j) => {
          const pos = positions[j]!;
          const held = pos < SINKS || pos >= t - (budget - SINKS);
          if (!held) lost[l * nKV + kv] += p / group;
        });
      };
      for (let i = 0; i < prompt.length; i++) ref.forward(prompt[i]!, i);
      lost = new Float64Array(L * nKV);
      const perStep: number[] = [];
      for (let i = 0; i < continuation.length; i++) {
        t = prompt.length + i;
        const before = lost.reduce((a, b) => a + b, 0);
        ref.forward(continuation[i]!, t);
        perStep.push((lost.reduce((a, b) => a + b, 0) - before) / (L * nKV));
      }
      const steps = continuation.length;
      const perLayer = Array.from({ length: L }, (_, l) => (lost[l * nKV]! + lost[l * nKV + 1]!) / nKV / steps);
      for (let l = 0; l < L; l++) expect(Math.abs(got.perLayer[l]! - perLayer[l]!)).toBeLessThan(1e-5);
      perStep.forEach((s, i) => expect(Math.abs(got.perStep[i]! - s)).toBeLessThan(1e-5));
    }
  });
});

describe('logit drift KL(full || compressed), teacher-forced', () => {
  it('full vs full is exactly 0', async () => {
    const r = await logitDrift(await run({ name: 'full' }));
    expect(r.perStep.every((x) => x === 0)).toBe(true);
    expect(r.mean).toBe(0);
    expect(r.afterPrompt).toBe(0);
  });

  it('grows as the budget shrinks', async () => {
    const drift: number[] = [];
    for (const budget of [64, 40, 12]) drift.push((await logitDrift(await run({ name: 'streaming', budget, params: { sinks: 4 } }))).mean);
    console.log(`logit drift (streaming, budget 64/40/12): ${drift.map((d) => d.toExponential(3)).join(' / ')}`);
    expect(drift[0]).toBeGreaterThan(0);
    expect(drift[1]).toBeGreaterThan(drift[0]!);
    expect(drift[2]).toBeGreaterThan(drift[1]!);
  });
});
