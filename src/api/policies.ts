/**
 * The cache policies this build offers. The registry (`src/kv/policies/registry.ts`) is
 * looked up with a glob so the API layer builds before the cache manager lands; without
 * it only `full` (keep every entry) exists, and that is what the listing says.
 */
import type { PolicyInfo, PolicyParamInfo } from './types';

export const FULL_POLICY: PolicyInfo = {
  name: 'full',
  description: 'Keeps every key and value (no eviction): the reference every other policy is compared with.',
  usesBudget: false,
  params: [],
};

interface RegistryModule {
  listPolicies?: () => { name: string; description?: string; usesBudget?: boolean; params?: unknown[] }[];
}

const registryLoaders = import.meta.glob<RegistryModule>('../kv/policies/registry.ts');

function paramInfo(raw: unknown): PolicyParamInfo | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const r = raw as Record<string, unknown>;
  if (typeof r['name'] !== 'string') return null;
  const t = r['type'];
  const type: PolicyParamInfo['type'] =
    t === 'integer' || t === 'int' ? 'integer' : t === 'boolean' || t === 'bool' ? 'boolean' : t === 'string' || t === 'enum' ? 'string' : 'number';
  const info: PolicyParamInfo = { name: r['name'], type };
  if (typeof r['description'] === 'string') info.description = r['description'];
  const def = r['default'];
  if (typeof def === 'number' || typeof def === 'boolean' || typeof def === 'string') info.default = def;
  if (typeof r['min'] === 'number') info.min = r['min'];
  if (typeof r['max'] === 'number') info.max = r['max'];
  const opts = r['options'] ?? r['values'] ?? r['choices'];
  if (Array.isArray(opts)) info.options = opts.map(String);
  return info;
}

/** The registered policies as plain data (safe to post to another thread). */
export async function listAvailablePolicies(): Promise<PolicyInfo[]> {
  const load = Object.values(registryLoaders)[0];
  if (!load) return [FULL_POLICY];
  const mod = await load();
  if (typeof mod.listPolicies !== 'function') return [FULL_POLICY];
  return mod.listPolicies().map((p) => ({
    name: p.name,
    description: p.description ?? '',
    usesBudget: p.usesBudget ?? p.name !== 'full',
    params: (p.params ?? []).map(paramInfo).filter((x): x is PolicyParamInfo => x !== null),
  }));
}
