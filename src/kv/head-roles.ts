/**
 * Trained head-role maps (PruLong, DuoAttention-style; training/train_heads.py) as shipped
 * beside a model (`head-roles/<method>.json`), turned into a `head-roles` policy spec.
 */
import { InvalidArgumentError } from '../errors';
import type { PolicySpec } from './types';

export interface HeadRoleMap {
  method: string;
  sinks: number;
  window: number;
  /** Per layer, per KV head. */
  roles: ('global' | 'streaming')[][];
  alpha?: number[][];
  [extra: string]: unknown;
}

/** Validates a role map (parsed JSON) and returns the policy spec that applies it. */
export function headRolesSpec(map: unknown, overrides: { sinks?: number; window?: number } = {}): PolicySpec {
  const m = map as Partial<HeadRoleMap> | null;
  if (!m || typeof m !== 'object' || !Array.isArray(m.roles) || m.roles.length === 0) {
    throw new InvalidArgumentError("A head-role map needs 'roles': one array of 'global' | 'streaming' per layer.");
  }
  const roles = m.roles.map((layer, l) => {
    if (!Array.isArray(layer) || layer.length === 0) throw new InvalidArgumentError(`Head-role map: layer ${l} has no KV heads.`);
    return layer.map((r, h) => {
      if (r === 'global') return 1;
      if (r === 'streaming') return 0;
      throw new InvalidArgumentError(`Head-role map: layer ${l} KV head ${h} has role '${String(r)}' (expected 'global' or 'streaming').`);
    });
  });
  const sinks = overrides.sinks ?? m.sinks;
  const window = overrides.window ?? m.window;
  if (typeof sinks !== 'number' || typeof window !== 'number') throw new InvalidArgumentError("A head-role map needs numeric 'sinks' and 'window'.");
  return { name: 'head-roles', params: { sinks, window }, roles };
}

/** Loads `<modelUrl>/head-roles/<method>.json` (or any URL) and returns its policy spec. */
export async function loadHeadRoles(url: string, fetchImpl: typeof fetch = fetch): Promise<{ map: HeadRoleMap; spec: PolicySpec }> {
  const res = await fetchImpl(url);
  if (!res.ok) throw new InvalidArgumentError(`Could not load the head-role map ${url}: HTTP ${res.status}.`);
  const map = (await res.json()) as HeadRoleMap;
  return { map, spec: headRolesSpec(map) };
}
