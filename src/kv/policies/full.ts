import type { CachePolicy } from '../policy';

/** No eviction: every entry stays; memory is allocated for the whole context. */
export const full: CachePolicy = {
  name: 'full',
  description: 'Keep every entry (no eviction). Memory is allocated for the whole context.',
  params: [],
  usesBudget: false,
  needsAttention: false,
  sinks: () => 0,
  window: () => 0,
  every: () => 1,
  bound: (_b, _p, ctx) => ctx.context,
};
