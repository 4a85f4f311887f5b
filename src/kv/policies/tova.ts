import type { CachePolicy } from '../policy';

/**
 * TOVA (Oren et al., 2401.06104): evict the entry with the lowest attention from the latest
 * query. Here per KV head (mean over its query heads); the paper averages over all heads of
 * a layer so a layer keeps one set of tokens.
 */
export const tova: CachePolicy = {
  name: 'tova',
  description: "TOVA: keep the entries the latest query attends to most (mean over the KV group's heads).",
  params: [],
  usesBudget: true,
  needsAttention: true,
  massRows: () => 1,
  statUpdate: () => 'a = mass;',
  score: () => 'a',
  sinks: () => 0,
  window: () => 0,
  every: () => 1,
  bound: (b, _p, ctx) => b + ctx.chunk,
};
