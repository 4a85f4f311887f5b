import type { CachePolicy } from '../policy';

/** Random eviction: a sanity floor. Each entry gets a fixed pseudo-random score from (seed, layer, head, position). */
export const random: CachePolicy = {
  name: 'random',
  description: 'Random eviction (sanity floor); seeded.',
  params: [{ name: 'seed', type: 'int', min: 0, max: 2 ** 31, default: 0, description: 'Seed of the per-entry scores.' }],
  usesBudget: true,
  needsAttention: false,
  score: () => 'hash01(kv, pos)',
  sinks: () => 0,
  window: () => 0,
  every: () => 1,
  bound: (b, _p, ctx) => b + ctx.chunk,
};
