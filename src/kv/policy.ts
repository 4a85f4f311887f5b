/**
 * The cache-policy contract. A policy is data plus WGSL snippets: which per-entry statistics
 * it keeps and how attention updates them, how it scores an entry, which entries it always
 * keeps (sinks, window), how often it acts, and its bound on live entries. The cache owns
 * memory, selection (top-k with a documented tie rule) and compaction.
 *
 * Snippet contract (WGSL, inserted into shaders/kv_policy.wgsl):
 * - statUpdate: statements run for every live entry after attention, with `mass: f32` (the
 *   attention probability the entry received this step, mean over the KV group's query
 *   heads, summed over the step's query rows), `isNew: bool` (appended this step),
 *   `pos: u32` (absolute position), `t: f32` (position of the newest token); read and assign
 *   the entry's two statistics `a` and `b` (f32; zero-initialised storage, so initialise them
 *   when `isNew`).
 * - score: an f32 expression (higher = keep) over `a`, `b`, `pos`, `t`, `j` (slot), `n`
 *   (live entries), `kv`, and the helpers `keyNorm(kv, j)`, `hash01(kv, pos)` and
 *   `poolA(kv, j, n, k)` (mean of `a` over slots j-k..j+k, clamped to the live range).
 * Parameter values are substituted as `${NAME}` (numbers are written as WGSL literals).
 */
import { InvalidArgumentError } from '../errors';

export interface ParamSpec {
  name: string;
  type: 'int' | 'float';
  min: number;
  max: number;
  default: number;
  description: string;
}

export type ParamValues = Record<string, number>;

export interface PolicyContext {
  /** The model's (engine's) context length. */
  context: number;
  /** Prefill chunk size: entries appended before the policy acts. */
  chunk: number;
  numLayers: number;
  numKvHeads: number;
  /** The model family, for per-family defaults (e.g. LazyEviction's alpha). */
  family?: 'llama' | 'qwen2';
}

export interface CachePolicy {
  name: string;
  description: string;
  params: ParamSpec[];
  /** True when the policy bounds the cache by a budget (all except `full`). */
  usesBudget: boolean;
  /** Needs the attention-mass pass (statUpdate reads `mass`). */
  needsAttention: boolean;
  /** Count only the last N query rows' attention (TOVA: 1, SnapKV: its window); default all rows. */
  massRows?(p: ParamValues): number;
  /** 'every': after each prefill chunk and every `every` decode steps; 'prompt-end': once, after the last prefill chunk of a prompt. */
  acts?: 'every' | 'prompt-end';
  statUpdate?: (p: ParamValues) => string;
  score?: (p: ParamValues) => string;
  /** Slots always kept: the first `sinks` and the last `window`. */
  sinks(p: ParamValues): number;
  window(p: ParamValues): number;
  /** Acts after a step when (position of the newest token + 1) % every == 0 (1 = every step). */
  every(p: ParamValues): number;
  /** Most live entries per (layer, KV head) at any moment. */
  bound(budget: number, p: ParamValues, ctx: PolicyContext): number;
  /** Budget for a layer (PyramidKV-style allocation); default: the same for every layer. */
  layerBudget?(budget: number, layer: number, p: ParamValues, ctx: PolicyContext): number;
  /**
   * Partition compression (LagKV): instead of a fixed budget, whenever the uncompressed tail
   * reaches 2 x lag entries, the first tail partition is scored against the next one by the
   * LAGKV kernel and `keep` of its `lag` entries stay. Every KV head evolves alike, so the
   * cache tracks the layout on the CPU.
   */
  dynamic?(p: ParamValues): { lag: number; keep: number; sinks: number };
  /** Defaults that depend on the model (applied before the spec's own values). */
  familyDefaults?(family: 'llama' | 'qwen2'): ParamValues;
  /**
   * Per-head roles (PruLong / DuoAttention): the spec carries `roles[layer][kvHead]` (1 global,
   * 0 streaming); the budget is sinks + window; global heads never evict.
   */
  roles?: boolean;
  /**
   * Learned gates (Attention-Gate): the gate kernel writes each new entry's first statistic;
   * the cache keeps exactly the entries whose score is >= 0 (no budget).
   */
  gate?: boolean;
  /** Extra checks beyond parameter ranges. */
  check?(budget: number, p: ParamValues): void;
}

/** Formats a number as a WGSL f32 literal. */
export function f32Literal(x: number): string {
  if (!Number.isFinite(x)) throw new InvalidArgumentError(`non-finite constant ${x}`);
  const s = String(x);
  return /[.eE]/.test(s) ? s : s + '.0';
}

/** Fills defaults and validates ranges; throws InvalidArgumentError naming the parameter. */
export function resolveParams(policy: CachePolicy, given: Record<string, unknown> = {}): ParamValues {
  const out: ParamValues = {};
  for (const key of Object.keys(given)) {
    if (!policy.params.some((p) => p.name === key)) {
      const known = policy.params.map((p) => p.name).join(', ') || 'none';
      throw new InvalidArgumentError(`Policy '${policy.name}' has no parameter '${key}' (parameters: ${known}).`);
    }
  }
  for (const spec of policy.params) {
    const v = given[spec.name] ?? spec.default;
    if (typeof v !== 'number' || Number.isNaN(v) || v < spec.min || v > spec.max || (spec.type === 'int' && !Number.isInteger(v))) {
      throw new InvalidArgumentError(
        `Parameter '${spec.name}' of policy '${policy.name}' must be ${spec.type === 'int' ? 'an integer' : 'a number'} in [${spec.min}, ${spec.max}], got ${String(v)}.`,
      );
    }
    out[spec.name] = v;
  }
  return out;
}
