import type { CachePolicy } from '../policy';

/** KNorm (Devoto et al., 2406.11430): keep the keys with the lowest L2 norm; attention-free. */
export const knorm: CachePolicy = {
  name: 'knorm',
  description: 'KNorm: keep the keys with the lowest L2 norm (attention-free).',
  params: [],
  usesBudget: true,
  needsAttention: false,
  score: () => '-keyNorm(kv, j)',
  sinks: () => 0,
  window: () => 0,
  every: () => 1,
  bound: (b, _p, ctx) => b + ctx.chunk,
};
