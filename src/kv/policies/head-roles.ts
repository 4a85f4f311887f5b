import type { CachePolicy } from '../policy';

/**
 * Learned head roles (PruLong, DuoAttention; methods.md §5): each (layer, KV head) is either
 * "global" (keeps every entry) or "streaming" (keeps `sinks` first entries plus the most
 * recent ones, `budget` = sinks + window entries in all). The roles come with the spec
 * (`roles[layer][kvHead]`: 1 global, 0 streaming), e.g. from a trained role map loaded with
 * `headRolesSpec` (src/kv/head-roles.ts). A layer with a global head allocates the whole
 * context for the layer (allocation is per layer); its streaming heads still evict, so the
 * footprint counts only their sinks + window.
 */
export const headRoles: CachePolicy = {
  name: 'head-roles',
  description: 'PruLong / DuoAttention head roles: global heads keep everything, streaming heads keep sinks + recent window.',
  params: [
    { name: 'sinks', type: 'int', min: 0, max: 1024, default: 16, description: 'Initial entries a streaming head always keeps.' },
    { name: 'window', type: 'int', min: 1, max: 1 << 20, default: 128, description: 'Recent entries a streaming head keeps (budget = sinks + window).' },
  ],
  usesBudget: true,
  needsAttention: false,
  score: () => 'f32(pos)',
  sinks: (p) => p.sinks!,
  window: () => 0,
  every: () => 1,
  bound: (b, _p, ctx) => b + ctx.chunk,
  roles: true,
};
