import type { CachePolicy } from '../policy';

/**
 * Attention-Gate (2410.12876; methods.md §3): a small trained gate before each layer's
 * attention (src/kv/gates.ts, shaders/gate.wgsl) scores every token when it enters the
 * cache, per KV head; the cache keeps exactly the entries whose gate logit is >= 0 (keep
 * probability >= 0.5). Tokens of one prefill chunk see each other before the eviction
 * after the chunk; a decode step sees every kept entry and itself. Needs gate weights
 * (Engine.load({ gates }) or engine.setGates). There is no budget: the eviction rate is
 * what the gates were trained for.
 */
export const attentionGate: CachePolicy = {
  name: 'attention-gate',
  description: 'Attention-Gate: trained per-token, per-KV-head keep/evict gates (needs gate weights).',
  params: [],
  usesBudget: true,
  needsAttention: false,
  // The gate logit, written into the entry's first statistic by the gate kernel.
  score: () => 'a',
  sinks: () => 0,
  window: () => 0,
  every: () => 1,
  bound: (_b, _p, ctx) => ctx.context,
  gate: true,
};
