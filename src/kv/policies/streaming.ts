import type { CachePolicy } from '../policy';

/**
 * StreamingLLM (Xiao et al., 2309.17453): keep `sinks` first entries and the most recent
 * ones, budget entries in all. Keys keep their original RoPE positions (methods.md).
 */
export const streaming: CachePolicy = {
  name: 'streaming',
  description: 'StreamingLLM: attention sinks + recent window (budget counts both).',
  params: [{ name: 'sinks', type: 'int', min: 0, max: 1024, default: 4, description: 'Initial entries always kept.' }],
  usesBudget: true,
  needsAttention: false,
  // Everything that is neither sink nor window scores by recency.
  score: () => 'f32(pos)',
  sinks: (p) => p.sinks!,
  window: () => 0,
  every: () => 1,
  bound: (b, _p, ctx) => b + ctx.chunk,
};
