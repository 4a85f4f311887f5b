import type { CachePolicy } from '../policy';

/**
 * LagKV (2504.04704): attention-free. After `sinks` entries the sequence is cut into
 * partitions of `lag` tokens; partition i is scored against partition i + 1 (its lag
 * reference): per channel min-max normalisation by the reference's K and V ranges, per token
 * the std over channels, softmax over the partition, score = softmax_K + softmax_V; the top
 * round(ratio x lag) entries of the partition stay (in order). It compresses whenever the
 * uncompressed tail reaches 2 x lag entries, so the cache is [sinks | compressed | tail].
 * A ratio policy: its live entries are about sinks + ratio x T + up to 2 x lag (+ a chunk).
 * Defaults follow kvpress (sinks 4, lag 128) as methods.md recommends for a 2k context.
 */
export const lagkv: CachePolicy = {
  name: 'lagkv',
  description: 'LagKV: attention-free lag-relative K/V statistics; keeps a ratio of each partition.',
  params: [
    { name: 'ratio', type: 'float', min: 0.01, max: 1, default: 0.5, description: 'Fraction of each partition kept.' },
    { name: 'sinks', type: 'int', min: 0, max: 1024, default: 4, description: 'Initial entries never compressed.' },
    { name: 'lag', type: 'int', min: 2, max: 1024, default: 128, description: 'Partition length (and lag reference length); must be >= the prefill chunk.' },
  ],
  usesBudget: false,
  needsAttention: false,
  score: () => 'a',
  sinks: (p) => p.sinks!,
  window: () => 0,
  every: () => 1,
  bound: (_b, p, ctx) => p.sinks! + Math.ceil(p.ratio! * ctx.context) + 2 * p.lag! + ctx.chunk,
  dynamic: (p) => ({
    lag: p.lag!,
    keep: Math.max(1, Math.round(p.ratio! * p.lag!)),
    sinks: p.sinks!,
  }),
  check: (_b, p) => {
    if (p.lag! < 2) throw new Error('lag must be at least 2');
  },
};
