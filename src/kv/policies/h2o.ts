import type { CachePolicy } from '../policy';

/** H2O (Zhang et al., 2306.14048): cumulative attention received ("heavy hitters") + a recent window. */
export const h2o: CachePolicy = {
  name: 'h2o',
  description: 'H2O: keep entries with the largest cumulative attention, plus a recent window.',
  params: [{ name: 'window', type: 'int', min: 0, max: 4096, default: 16, description: 'Most recent entries always kept.' }],
  usesBudget: true,
  needsAttention: true,
  statUpdate: () => 'if (isNew) { a = 0.0; } a = a + mass;',
  score: () => 'a',
  sinks: () => 0,
  window: (p) => p.window!,
  every: () => 1,
  bound: (b, _p, ctx) => b + ctx.chunk,
};
