import type { CachePolicy } from '../policy';

/**
 * SnapKV (Li et al., 2404.14469): at the end of the prompt, score every entry by the attention
 * of the last `window` queries (mean over the KV group's query heads, summed over the window),
 * average-pooled over neighbouring keys (`kernel`), and keep the top (budget - window) plus the
 * window itself. It acts once per prompt, so until then the whole prompt is live: its declared
 * bound is the context, and memory is allocated for it (use the `chunked` wrapper to bound it).
 */
export const snapkv: CachePolicy = {
  name: 'snapkv',
  description: 'SnapKV: end-of-prompt selection by the last queries\u2019 pooled attention; observation window kept.',
  params: [
    { name: 'window', type: 'int', min: 1, max: 1024, default: 16, description: 'Observation window: the last queries whose attention scores entries (kept, inside the budget).' },
    { name: 'kernel', type: 'int', min: 1, max: 15, default: 5, description: 'Average-pooling width over neighbouring keys (odd).' },
  ],
  usesBudget: true,
  needsAttention: true,
  acts: 'prompt-end',
  massRows: (p) => p.window!,
  statUpdate: () => 'a = mass;',
  score: (p) => `poolA(kv, j, n, ${Math.floor(p.kernel! / 2)}u)`,
  sinks: () => 0,
  window: (p) => p.window!,
  every: () => 1,
  bound: (_b, _p, ctx) => ctx.context,
};
