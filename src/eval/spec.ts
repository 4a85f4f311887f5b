/**
 * Evaluation specs: models x tasks x policies x budgets, validated into a deterministic list
 * of cases with stable ids. Browser-safe (no Node imports): the runner, both back ends and
 * the report share it.
 */
import { getPolicy, resolvePolicy } from '../kv/policies/registry';
import { listPolicies } from '../kv/policies/registry';
import type { PolicySpec } from '../kv/types';
import { TASKS, type TaskName } from '../tasks/index';

export type EvalSpecErrorCode = 'bad-spec' | 'unknown-task' | 'unknown-policy' | 'bad-budget' | 'bad-param' | 'duplicate-case';

/** A spec that cannot be run; `code` says which kind of mistake, the message where. */
export class EvalSpecError extends Error {
  readonly code: EvalSpecErrorCode;
  constructor(code: EvalSpecErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = 'EvalSpecError';
  }
}

export interface ModelEntry {
  /** Short name used in case ids and the report. */
  id: string;
  /** Model directory relative to the repository root (served by Vite for the browser back end). */
  path: string;
  /** 'plain': BOS + the task's prompt text (how the bundled model was trained); 'chat': the model's chat template. */
  format?: 'plain' | 'chat';
  /** Write the random-weight test fixture of this name under e2e/fixtures/ when missing (tests, smoke runs). */
  ensureFixture?: string;
}

export interface TaskEntry {
  task: TaskName;
  /** Name in case ids when one task appears with different parameters (default: the task name). */
  label?: string;
  /** Context in tokens: prompt + generated tokens fit in it, and budgets are fractions of it. */
  contextLength: number;
  /** Depths of the key fact (0 = start, 1 = end); sample i uses depths[i % depths.length]. */
  depths: number[];
  /** Samples per (policy, budget) cell; sample i has seed `seed + i`. */
  samples: number;
  seed: number;
  /** Haystack: 'repeated' (the classic passkey lines), 'brown-heldout' or 'nlp-heldout'. */
  filler?: string;
  /** Extra generator options (e.g. { keys: 4 } for niah, { hops: 4 } for vartrack). */
  params?: Record<string, number>;
  /** Most tokens generated (default: the answer's length in tokens + 2). */
  maxTokens?: number;
}

export interface PolicyEntry {
  name: string;
  /** Name in case ids and the report (default: the policy name, plus the stem of a roles / gates / sharing file). */
  label?: string;
  params?: Record<string, number>;
  chunked?: boolean;
  adakv?: boolean;
  /**
   * `head-roles` only (required there): a trained role map, as a JSON file path relative to
   * the repository root (e.g. "models/kvscope-tiny/head-roles/prulong.json", read by the
   * runner; its sinks apply unless params.sinks is given) or inline, per layer and KV head
   * (1 global, 0 streaming). The budget fraction sets what each streaming head keeps.
   */
  roles?: string | number[][];
  /**
   * `attention-gate` only (required there): gate weights, a safetensors path relative to the
   * repository root. The gates decide the eviction rate, so the policy runs once (fraction 1)
   * whatever the budgets; the result records the footprint it reached.
   */
  gates?: string;
  /**
   * KVSharer layer sharing, with any policy: a sharing-map JSON path relative to the repository
   * root (as written by calibration, read by the runner) or inline `{ layer: sourceLayer }`.
   */
  sharing?: string | Record<string, number>;
}

export interface EvalSpec {
  name: string;
  description?: string;
  models: ModelEntry[];
  tasks: TaskEntry[];
  /** Policy list, or "all" for every registered policy with default parameters. */
  policies: PolicyEntry[] | 'all';
  /** Fractions of the context: "1/8" or 0.125. Budget policies keep round(f x context) entries; ratio policies get ratio f. */
  budgets: (string | number)[];
  prefillChunk?: number;
  /** Per-case limit (default 120000 ms); a case past it is recorded as a failure. */
  timeoutMs?: number;
  /**
   * Extra measurements per case. 'attentionLoss' (Node back end): the full-attention mass on
   * evicted entries while the generated tokens are teacher-forced after the prompt
   * (src/metrics); it runs an oracle and a second compressed engine, about 3x the cost.
   */
  metrics?: EvalMetric[];
}

export type EvalMetric = 'attentionLoss';
const METRICS: readonly EvalMetric[] = ['attentionLoss'];

/** One run: a model, one task sample, one policy at one budget. */
export interface EvalCase {
  id: string;
  /** Cases with the same variant key share an engine configuration (model, context, policy). */
  variant: string;
  /** Cases with the same sample key share a prompt. */
  sampleKey: string;
  model: Required<Pick<ModelEntry, 'id' | 'path' | 'format'>> & { ensureFixture?: string };
  task: TaskName;
  taskLabel: string;
  contextLength: number;
  prefillChunk: number;
  depth: number;
  seed: number;
  filler: string;
  taskParams: Record<string, number>;
  maxTokens: number | null;
  policyLabel: string;
  /** 1 for the full cache. */
  budgetFraction: number;
  /** Entries per (layer, KV head) for budget policies; null for full and ratio policies. */
  budget: number | null;
  policy: PolicySpec;
  /** Attention-Gate weights (path relative to the repository root), or null. */
  gates: string | null;
  /** KVSharer map `{ layer: sourceLayer }`, or null for none. */
  sharing: Record<string, number> | null;
  timeoutMs: number;
  metrics: EvalMetric[];
}

const FILLERS = ['repeated', 'brown-heldout', 'nlp-heldout'];

export function parseFraction(v: string | number, where: string): number {
  let f: number;
  if (typeof v === 'number') f = v;
  else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(?:\/\s*(\d+(?:\.\d+)?))?\s*$/.exec(v);
    if (!m) throw new EvalSpecError('bad-budget', `${where}: '${v}' is not a fraction such as "1/8" or 0.125.`);
    f = m[2] !== undefined ? Number(m[1]) / Number(m[2]) : Number(m[1]);
  }
  if (!Number.isFinite(f) || f <= 0 || f > 1) throw new EvalSpecError('bad-budget', `${where}: budgets are fractions of the context in (0, 1], got ${String(v)}.`);
  return f;
}

/** A fraction as it appears in case ids: 6 significant decimals, no float noise. */
export function fractionLabel(f: number): string {
  return String(Number(f.toFixed(6)));
}

function fail(code: EvalSpecErrorCode, msg: string): never {
  throw new EvalSpecError(code, msg);
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function numberRecord(x: unknown, where: string): Record<string, number> {
  if (x === undefined) return {};
  if (!isRecord(x)) fail('bad-spec', `${where} must be an object of numbers.`);
  for (const [k, v] of Object.entries(x)) if (typeof v !== 'number' || !Number.isFinite(v)) fail('bad-param', `${where}.${k} must be a finite number, got ${JSON.stringify(v)}.`);
  return x as Record<string, number>;
}

function int(x: unknown, where: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max) fail('bad-spec', `${where} must be an integer in [${min}, ${max}], got ${JSON.stringify(x)}.`);
  return x;
}

/** Checks the shape of a parsed JSON spec and returns it typed; throws EvalSpecError. */
export function validateSpec(raw: unknown): EvalSpec {
  if (!isRecord(raw)) fail('bad-spec', 'A spec is a JSON object.');
  const known = new Set(['name', 'description', 'models', 'tasks', 'policies', 'budgets', 'prefillChunk', 'timeoutMs', 'metrics']);
  for (const k of Object.keys(raw)) if (!known.has(k)) fail('bad-spec', `Unknown spec field '${k}' (fields: ${[...known].join(', ')}).`);
  if (typeof raw.name !== 'string' || !raw.name) fail('bad-spec', 'spec.name must be a non-empty string.');
  if (!Array.isArray(raw.models) || raw.models.length === 0) fail('bad-spec', 'spec.models must be a non-empty list.');
  const models = raw.models.map((m, i): ModelEntry => {
    const w = `models[${i}]`;
    if (!isRecord(m) || typeof m.id !== 'string' || !/^[\w.-]+$/.test(m.id)) fail('bad-spec', `${w}.id must be a name of letters, digits, '.', '_' or '-'.`);
    if (typeof m.path !== 'string' || !m.path) fail('bad-spec', `${w}.path must be a model directory relative to the repository root.`);
    if (m.format !== undefined && m.format !== 'plain' && m.format !== 'chat') fail('bad-spec', `${w}.format must be 'plain' or 'chat'.`);
    if (m.ensureFixture !== undefined && typeof m.ensureFixture !== 'string') fail('bad-spec', `${w}.ensureFixture must be a fixture name.`);
    return m as unknown as ModelEntry;
  });
  if (!Array.isArray(raw.tasks) || raw.tasks.length === 0) fail('bad-spec', 'spec.tasks must be a non-empty list.');
  const tasks = raw.tasks.map((t, i): TaskEntry => {
    const w = `tasks[${i}]`;
    if (!isRecord(t)) fail('bad-spec', `${w} must be an object.`);
    if (typeof t.task !== 'string' || !(t.task in TASKS)) fail('unknown-task', `${w}.task: unknown task '${String(t.task)}' (tasks: ${Object.keys(TASKS).join(', ')}).`);
    int(t.contextLength, `${w}.contextLength`, 16, 1 << 20);
    int(t.samples, `${w}.samples`, 1);
    int(t.seed, `${w}.seed`, 0, 2 ** 31);
    if (!Array.isArray(t.depths) || t.depths.length === 0 || t.depths.some((d) => typeof d !== 'number' || !(d >= 0 && d <= 1))) {
      fail('bad-spec', `${w}.depths must be a non-empty list of numbers in [0, 1].`);
    }
    if (t.filler !== undefined && !FILLERS.includes(t.filler as string)) fail('bad-spec', `${w}.filler must be one of ${FILLERS.join(', ')}.`);
    if (t.maxTokens !== undefined) int(t.maxTokens, `${w}.maxTokens`, 1, 4096);
    if (t.label !== undefined && (typeof t.label !== 'string' || !/^[\w.-]+$/.test(t.label))) fail('bad-spec', `${w}.label must be a name of letters, digits, '.', '_' or '-'.`);
    numberRecord(t.params, `${w}.params`);
    return t as unknown as TaskEntry;
  });
  let policies: PolicyEntry[] | 'all';
  if (raw.policies === 'all') policies = 'all';
  else {
    if (!Array.isArray(raw.policies) || raw.policies.length === 0) fail('bad-spec', 'spec.policies must be "all" or a non-empty list.');
    const names = new Set(listPolicies().map((p) => p.name));
    policies = raw.policies.map((p, i): PolicyEntry => {
      const e: Record<string, unknown> = typeof p === 'string' ? { name: p } : isRecord(p) ? p : fail('bad-spec', `policies[${i}] must be a name or an object.`);
      if (typeof e.name !== 'string' || !names.has(e.name)) fail('unknown-policy', `policies[${i}]: unknown policy '${String(e.name)}' (registered: ${[...names].join(', ')}).`);
      numberRecord(e.params, `policies[${i}].params`);
      const def = getPolicy(e.name);
      const w = `policies[${i}]`;
      if (e.roles !== undefined && !def.roles) fail('bad-spec', `${w}.roles: only role policies (head-roles) take a role map.`);
      if (def.roles && e.roles === undefined) fail('bad-spec', `${w}: '${e.name}' needs roles: a role-map file (e.g. "models/kvscope-tiny/head-roles/prulong.json") or an inline list.`);
      if (e.roles !== undefined && typeof e.roles !== 'string' &&
          !(Array.isArray(e.roles) && e.roles.length > 0 && e.roles.every((l) => Array.isArray(l) && l.length > 0 && l.every((r) => r === 0 || r === 1)))) {
        fail('bad-spec', `${w}.roles must be a file path or a list per layer of 0 (streaming) / 1 (global) per KV head.`);
      }
      if (e.gates !== undefined && !def.gate) fail('bad-spec', `${w}.gates: only gate policies (attention-gate) take gate weights.`);
      if (def.gate && (typeof e.gates !== 'string' || !e.gates)) fail('bad-spec', `${w}: '${e.name}' needs gates: a gate-weights file such as "models/kvscope-tiny/gates/gate-50.safetensors".`);
      if (e.sharing !== undefined && typeof e.sharing !== 'string') numberRecord(e.sharing, `${w}.sharing`);
      return e as unknown as PolicyEntry;
    });
  }
  if (!Array.isArray(raw.budgets) || raw.budgets.length === 0) fail('bad-budget', 'spec.budgets must be a non-empty list of fractions of the context.');
  raw.budgets.forEach((b, i) => parseFraction(b as string | number, `budgets[${i}]`));
  if (raw.prefillChunk !== undefined) int(raw.prefillChunk, 'spec.prefillChunk', 1, 4096);
  if (raw.timeoutMs !== undefined) int(raw.timeoutMs, 'spec.timeoutMs', 1);
  if (raw.metrics !== undefined && (!Array.isArray(raw.metrics) || raw.metrics.some((m) => !METRICS.includes(m as EvalMetric)))) {
    fail('bad-spec', `spec.metrics must be a list of ${METRICS.join(', ')}.`);
  }
  return { ...(raw as unknown as EvalSpec), models, tasks, policies };
}

/**
 * The policies a spec names, "all" expanded to every registered policy that runs on its
 * parameters alone: the learned ones (head-roles, attention-gate) need trained inputs shipped
 * with a model and are compared by `npm run eval:learned` (scripts/learned-eval.ts).
 */
export function specPolicies(spec: EvalSpec): PolicyEntry[] {
  return spec.policies === 'all'
    ? listPolicies().filter((p) => !getPolicy(p.name).roles && !getPolicy(p.name).gate).map((p) => ({ name: p.name }))
    : spec.policies;
}

function stem(path: string): string {
  return path.replace(/^.*\//, '').replace(/\.[^.]*$/, '');
}

/** A policy entry's name in case ids, before the +chunked / +adakv suffixes. */
export function entryLabel(p: PolicyEntry): string {
  let base = p.label;
  if (base === undefined) {
    base = p.name;
    if (typeof p.roles === 'string') base += `[${stem(p.roles)}]`;
    if (p.gates) base += `[${stem(p.gates)}]`;
    if (p.sharing !== undefined) base += typeof p.sharing === 'string' ? `+share[${stem(p.sharing)}]` : `+share${Object.keys(p.sharing).length}`;
  }
  return base;
}

function policyLabel(p: PolicyEntry): string {
  return entryLabel(p) + (p.chunked ? '+chunked' : '') + (p.adakv ? '+adakv' : '');
}

/** One policy entry at one budget, as the cases of a spec run it. */
export type PolicyVariant = Pick<EvalCase, 'budget' | 'policy' | 'gates' | 'sharing'> & { label: string; fraction: number };

/** Variants (policy x budget) for one context length; validates each against the policy registry. */
export function policyVariants(spec: EvalSpec, contextLength: number): PolicyVariant[] {
  const fractions = [...new Set(spec.budgets.map((b, i) => parseFraction(b, `budgets[${i}]`)))].sort((a, b) => a - b);
  const chunk = Math.min(spec.prefillChunk ?? 128, contextLength);
  const out: PolicyVariant[] = [];
  for (const p of specPolicies(spec)) {
    const def = getPolicy(p.name);
    const base: PolicySpec = { name: p.name };
    if (p.chunked) base.chunked = true;
    if (p.adakv) base.adakv = true;
    if (p.roles !== undefined) {
      if (typeof p.roles === 'string') fail('bad-spec', `Policy '${policyLabel(p)}': the role map '${p.roles}' was not read (the Node runner reads role files; pass the roles inline elsewhere).`);
      base.roles = p.roles;
    }
    if (typeof p.sharing === 'string') fail('bad-spec', `Policy '${policyLabel(p)}': the sharing map '${p.sharing}' was not read (the Node runner reads sharing files; pass the map inline elsewhere).`);
    const variants: { fraction: number; budget: number | null; policy: PolicySpec }[] = [];
    if (def.gate) {
      // The trained gates set the eviction rate: one run, no budget to sweep.
      variants.push({ fraction: 1, budget: null, policy: p.params ? { ...base, params: p.params } : base });
    } else if (def.roles) {
      // Streaming heads keep sinks + window = the budget's entries; global heads keep everything.
      for (const f of fractions) {
        const budget = Math.round(f * contextLength);
        const sinks = p.params?.sinks ?? 16;
        variants.push({ fraction: f, budget, policy: { ...base, params: { ...p.params, sinks, window: Math.max(1, budget - sinks) } } });
      }
    } else if (def.dynamic) {
      // Ratio policies: the budget fraction is their keep ratio.
      for (const f of fractions) variants.push({ fraction: f, budget: null, policy: { ...base, params: { ...p.params, ratio: f } } });
    } else if (!def.usesBudget) {
      variants.push({ fraction: 1, budget: null, policy: p.params ? { ...base, params: p.params } : base });
    } else {
      for (const f of fractions) {
        const budget = Math.round(f * contextLength);
        variants.push({ fraction: f, budget, policy: { ...base, budget, ...(p.params ? { params: p.params } : {}) } });
      }
    }
    for (const v of variants) {
      try {
        // A representative model shape: per-layer allocation rules only need a layer count.
        resolvePolicy(v.policy, { context: contextLength, chunk, numLayers: base.roles?.length ?? 4, numKvHeads: base.roles?.[0]?.length ?? 2 });
      } catch (e) {
        const msg = (e as Error).message;
        const code: EvalSpecErrorCode = /budget/i.test(msg) ? 'bad-budget' : 'bad-param';
        fail(code, `Policy '${policyLabel(p)}' at budget ${fractionLabel(v.fraction)} of a ${contextLength}-token context: ${msg}`);
      }
      out.push({ label: policyLabel(p), ...v, gates: p.gates ?? null, sharing: p.sharing ?? null });
    }
  }
  return out;
}

/**
 * Every case of a spec, in a fixed order (model, task, variant, sample), with ids that depend
 * only on what the case is: `model/task@context/d<depth>/s<seed>/<policy>/f<fraction>`.
 */
export function expandSpec(spec: EvalSpec): EvalCase[] {
  const cases: EvalCase[] = [];
  const ids = new Set<string>();
  const prefillChunk = spec.prefillChunk ?? 128;
  const timeoutMs = spec.timeoutMs ?? 120_000;
  const metrics = spec.metrics ?? [];
  for (const m of spec.models) {
    const model = { id: m.id, path: m.path.replace(/\/+$/, ''), format: m.format ?? 'plain', ...(m.ensureFixture ? { ensureFixture: m.ensureFixture } : {}) };
    for (const t of spec.tasks) {
      const taskLabel = t.label ?? t.task;
      const variants = policyVariants(spec, t.contextLength);
      for (const v of variants) {
        for (let i = 0; i < t.samples; i++) {
          const depth = t.depths[i % t.depths.length]!;
          const seed = t.seed + i;
          const sampleKey = `${m.id}/${taskLabel}@${t.contextLength}/d${fractionLabel(depth)}/s${seed}`;
          const variant = `${m.id}@${t.contextLength}/${v.label}/f${fractionLabel(v.fraction)}`;
          const id = `${sampleKey}/${v.label}/f${fractionLabel(v.fraction)}`;
          if (ids.has(id)) fail('duplicate-case', `Two cases share the id '${id}': give repeated tasks or policies distinct labels.`);
          ids.add(id);
          cases.push({
            id, variant, sampleKey, model, task: t.task, taskLabel, contextLength: t.contextLength, prefillChunk: Math.min(prefillChunk, t.contextLength),
            depth, seed, filler: t.filler ?? 'repeated', taskParams: t.params ?? {}, maxTokens: t.maxTokens ?? null,
            policyLabel: v.label, budgetFraction: v.fraction, budget: v.budget, policy: v.policy, gates: v.gates, sharing: v.sharing, timeoutMs, metrics,
          });
        }
      }
    }
  }
  return cases;
}

/** FNV-1a (32-bit) of a string's UTF-16 code units: the shard key of a case id. */
export function hashId(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export interface Shard {
  /** 1-based, as in Playwright's --shard. */
  index: number;
  count: number;
}

export function parseShard(s: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  if (!m) throw new EvalSpecError('bad-spec', `--shard takes i/n (e.g. 2/4), got '${s}'.`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || index < 1 || index > count) throw new EvalSpecError('bad-spec', `--shard ${s}: need 1 <= i <= n.`);
  return { index, count };
}

/** The cases of one shard: those whose id hashes to it (same rule for every back end). */
export function shardCases<T extends { id: string }>(cases: readonly T[], shard: Shard | undefined): T[] {
  if (!shard || shard.count === 1) return cases.slice();
  return cases.filter((c) => hashId(c.id) % shard.count === shard.index - 1);
}
