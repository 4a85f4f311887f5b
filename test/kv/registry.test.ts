import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine';
import { registerPolicy, listPolicies } from '../../src/index';
import type { CachePolicy } from '../../src/kv/policy';
import { testGpu } from '../gpu';
import { loaded, randomWeights, smolLike } from '../engine/fixtures';

describe('public policy registry', () => {
  it('lists every policy with typed parameters (ranges and defaults) for UIs and eval specs', () => {
    const all = listPolicies();
    for (const name of ['full', 'streaming', 'h2o', 'tova', 'snapkv', 'pyramidkv', 'knorm', 'random', 'lagkv', 'lazy-eviction']) {
      expect(all.map((p) => p.name)).toContain(name);
    }
    for (const p of all) for (const q of p.params) expect(q.default).toBeGreaterThanOrEqual(q.min);
  });

  it('a web app registers its own policy (WGSL score + statistic) and the engine runs it', async () => {
    // Keeps the entries that received the most attention in the last 8 steps (an exponential average).
    const ema: CachePolicy = {
      name: 'attention-ema',
      description: 'Exponential moving average of attention received.',
      params: [{ name: 'decay', type: 'float', min: 0, max: 1, default: 0.8, description: 'EMA decay per step' }],
      usesBudget: true,
      needsAttention: true,
      statUpdate: (p) => `if (isNew) { a = 0.0; } a = ${p.decay} * a + mass;`,
      score: () => 'a',
      sinks: () => 2,
      window: () => 2,
      every: () => 1,
      bound: (b, _p, ctx) => b + ctx.chunk,
    };
    registerPolicy(ema);
    expect(() => registerPolicy(ema)).toThrow(/already registered/);
    const gpu = await testGpu();
    const e = await Engine.load({ model: loaded(smolLike, randomWeights(smolLike, 'f32', 90)), gpu, contextLength: 128, prefillChunk: 8, policy: { name: 'attention-ema', budget: 16, params: { decay: 0.5 } } });
    const r = await e.generateText(Array.from({ length: 40 }, (_, i) => (i * 13) % smolLike.vocabSize), { maxTokens: 10, stopTokenIds: [] });
    expect(r.ids.length).toBe(10);
    const snap = await e.snapshot(true);
    expect(Math.max(...snap.live)).toBeLessThanOrEqual(16);
    // Sinks survive, positions stay ordered, and scores come with the positions.
    for (const pos of snap.positions!) {
      expect([...pos.slice(0, 2)]).toEqual([0, 1]);
      expect([...pos]).toEqual([...pos].sort((a, b) => a - b));
    }
    expect(snap.scores!.length).toBe(snap.positions!.length);
    e.unload();
  });
});
