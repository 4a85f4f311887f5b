import type { CachePolicy } from '../policy';
import { f32Literal } from '../policy';

/**
 * LazyEviction (2506.15969): per entry, L = last step it was important (attention >= alpha)
 * and M = longest recurrence interval seen. Acts only every W steps (and only over budget):
 * keeps the last W entries plus the top (B - W) by
 *   score = 2 / (1 + exp(1 + (t - L) / (M + 1e-5))) + (M == 0 ? 0 : 2 / (1 + exp(M - 1))).
 * A new entry starts with L = t - 1, M = 0. Alpha defaults: Llama family 5e-4, Qwen 1e-4.
 * Peak live entries: B + W (+ a prefill chunk).
 */
export const lazyEviction: CachePolicy = {
  name: 'lazy-eviction',
  description: 'LazyEviction: recurrence-aware lazy eviction every W steps (observation window).',
  params: [
    { name: 'alpha', type: 'float', min: 0, max: 1, default: 5e-4, description: 'Attention threshold for "important" (Llama family 5e-4, Qwen 1e-4).' },
    { name: 'window', type: 'int', min: 1, max: 4096, default: 32, description: 'Observation window W: acts every W steps and keeps the last W entries.' },
  ],
  usesBudget: true,
  needsAttention: true,
  // The authors' defaults: Qwen family 1e-4, Llama family 5e-4.
  familyDefaults: (family) => ({ alpha: family === 'qwen2' ? 1e-4 : 5e-4 }),
  // a = L, b = M (f32 holds positions exactly up to 2^24).
  statUpdate: (p) => `if (isNew) { a = f32(pos) - 1.0; b = 0.0; }
  if (mass >= ${f32Literal(p.alpha!)}) { b = max(b, t - a); a = t; }`,
  score: () => '2.0 / (1.0 + exp(1.0 + (t - a) / (b + 1e-5))) + select(2.0 / (1.0 + exp(b - 1.0)), 0.0, b == 0.0)',
  sinks: () => 0,
  window: (p) => p.window!,
  every: (p) => p.window!,
  bound: (b, p, ctx) => b + Math.max(p.window!, ctx.chunk),
  check: (b, p) => {
    if (b <= p.window!) throw new Error(`budget ${b} must exceed the window ${p.window}`);
  },
};
