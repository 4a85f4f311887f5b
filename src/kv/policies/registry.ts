/**
 * The policy registry: built-in policies plus any a web app registers with `registerPolicy`
 * (its parameters, WGSL snippets following the contract in ../policy.ts, and when it acts).
 */
import { InvalidArgumentError } from '../../errors';
import type { PolicySpec } from '../types';
import { resolveParams, type CachePolicy, type ParamSpec, type ParamValues, type PolicyContext } from '../policy';
import { full } from './full';
import { streaming } from './streaming';
import { h2o } from './h2o';
import { tova } from './tova';
import { knorm } from './knorm';
import { random } from './random';
import { lazyEviction } from './lazy-eviction';
import { snapkv } from './snapkv';
import { pyramidkv } from './pyramidkv';
import { lagkv } from './lagkv';
import { headRoles } from './head-roles';
import { attentionGate } from './attention-gate';

const registry = new Map<string, CachePolicy>();
for (const p of [full, streaming, h2o, tova, knorm, random, lazyEviction, snapkv, pyramidkv, lagkv, headRoles, attentionGate]) registry.set(p.name, p);

export function registerPolicy(policy: CachePolicy): void {
  if (!/^[a-z][a-z0-9-]*$/.test(policy.name)) throw new InvalidArgumentError(`Policy names are lowercase words with dashes, got '${policy.name}'.`);
  if (registry.has(policy.name)) throw new InvalidArgumentError(`A policy named '${policy.name}' is already registered.`);
  registry.set(policy.name, policy);
}

export function getPolicy(name: string): CachePolicy {
  const p = registry.get(name);
  if (!p) throw new InvalidArgumentError(`Unknown cache policy '${name}'. Registered: ${[...registry.keys()].join(', ')}.`);
  return p;
}

export function listPolicies(): { name: string; description: string; usesBudget: boolean; params: ParamSpec[] }[] {
  return [...registry.values()].map((p) => ({ name: p.name, description: p.description, usesBudget: p.usesBudget, params: p.params }));
}

export interface ResolvedPolicy {
  policy: CachePolicy;
  params: ParamValues;
  /** Budget per layer (entries per KV head), or undefined for `full`. */
  budgets: number[] | undefined;
  /** Allocated entries per (layer, KV head). */
  capacity: number[];
  /** When it acts, after wrappers. */
  acts: 'every' | 'prompt-end';
  /** Layer-wide selection across KV heads (AdaKV). */
  adakv: boolean;
  /** Role policies: per layer, a bitmask of the KV heads that never evict (global heads). */
  globalMask?: number[];
  spec: PolicySpec;
}

/** Validates a spec against the model and returns what the cache allocates. */
export function resolvePolicy(spec: PolicySpec, ctx: PolicyContext): ResolvedPolicy {
  const policy = getPolicy(spec.name);
  const given = { ...(ctx.family ? policy.familyDefaults?.(ctx.family) : {}), ...(spec.params as Record<string, unknown> | undefined) };
  const params = resolveParams(policy, given);
  if (policy.dynamic) {
    if (spec.budget !== undefined) throw new InvalidArgumentError(`Policy '${policy.name}' is set by its ratio, not a budget.`);
    if (spec.chunked || spec.adakv) throw new InvalidArgumentError(`Policy '${policy.name}' does not compose with the chunked or adakv wrappers.`);
    const d = policy.dynamic(params);
    if (d.lag < ctx.chunk) throw new InvalidArgumentError(`Parameter 'lag' of policy '${policy.name}' must be >= the prefill chunk (${ctx.chunk}), got ${d.lag}.`);
    const cap = Math.min(ctx.context, policy.bound(0, params, ctx));
    return { policy, params, budgets: Array(ctx.numLayers).fill(cap), capacity: Array(ctx.numLayers).fill(cap), acts: 'every', adakv: false, spec: { name: policy.name, params } };
  }
  if (!policy.usesBudget) {
    if (spec.budget !== undefined) throw new InvalidArgumentError(`Policy '${policy.name}' takes no budget.`);
    if (spec.chunked || spec.adakv) throw new InvalidArgumentError(`Policy '${policy.name}' keeps everything; the chunked and adakv wrappers need a budget policy.`);
    return { policy, params, budgets: undefined, capacity: Array(ctx.numLayers).fill(ctx.context), acts: 'every', adakv: false, spec: { name: policy.name, params } };
  }
  if (policy.roles) return resolveRoles(policy, spec, params, ctx);
  if (policy.gate) {
    if (spec.budget !== undefined) throw new InvalidArgumentError(`Policy '${policy.name}' takes no budget: its gates decide what is kept.`);
    if (spec.chunked || spec.adakv) throw new InvalidArgumentError(`Policy '${policy.name}' does not compose with the chunked or adakv wrappers (it evicts after every chunk already).`);
    const cap = Math.min(ctx.context, policy.bound(0, params, ctx));
    return { policy, params, budgets: Array(ctx.numLayers).fill(cap), capacity: Array(ctx.numLayers).fill(cap), acts: 'every', adakv: false, spec: { name: policy.name, params } };
  }
  if (spec.roles !== undefined) throw new InvalidArgumentError(`Policy '${policy.name}' takes no head roles; 'roles' is for role policies such as 'head-roles'.`);
  const b = spec.budget;
  const forced = policy.sinks(params) + policy.window(params);
  if (typeof b !== 'number' || !Number.isInteger(b) || b < 1) {
    throw new InvalidArgumentError(`Policy '${policy.name}' needs a budget: an integer number of entries per KV head in [${Math.max(1, forced + 1)}, ${ctx.context}], got ${String(b)}.`);
  }
  if (b > ctx.context) throw new InvalidArgumentError(`budget ${b} is larger than the context (${ctx.context} tokens); the valid range is [${forced + 1}, ${ctx.context}].`);
  if (b <= forced) {
    throw new InvalidArgumentError(`budget ${b} must be larger than the entries policy '${policy.name}' always keeps (sinks + window = ${forced}); the valid range is [${forced + 1}, ${ctx.context}].`);
  }
  try {
    policy.check?.(b, params);
  } catch (e) {
    throw new InvalidArgumentError(`Policy '${policy.name}': ${(e as Error).message}.`);
  }
  const budgets = Array.from({ length: ctx.numLayers }, (_, l) => policy.layerBudget?.(b, l, params, ctx) ?? b);
  const chunked = !!spec.chunked;
  const adakv = !!spec.adakv;
  if (adakv && !policy.score) throw new InvalidArgumentError(`The adakv wrapper needs a scored policy; '${policy.name}' has no score.`);
  // Chunked: evicts after every chunk and decode step, so live entries stay within budget + chunk.
  // AdaKV: one KV head may take up to the whole layer's budget (budget x KV heads).
  const perHead = (bl: number) => (adakv ? bl * ctx.numKvHeads : bl);
  const capacity = budgets.map((bl) => Math.min(ctx.context, chunked ? perHead(bl) + ctx.chunk : policy.bound(perHead(bl), params, ctx)));
  const acts = chunked ? 'every' : policy.acts ?? 'every';
  const out: PolicySpec = { name: policy.name, budget: b, params };
  if (chunked) out.chunked = true;
  if (adakv) out.adakv = true;
  return { policy, params, budgets, capacity, acts, adakv, spec: out };
}

/** Role policies: streaming heads keep sinks + window, global heads everything. */
function resolveRoles(policy: CachePolicy, spec: PolicySpec, params: ParamValues, ctx: PolicyContext): ResolvedPolicy {
  const roles = spec.roles;
  const shape = `${ctx.numLayers} layers x ${ctx.numKvHeads} KV heads`;
  if (!Array.isArray(roles) || roles.length !== ctx.numLayers || roles.some((r) => !Array.isArray(r) || r.length !== ctx.numKvHeads || r.some((x) => x !== 0 && x !== 1))) {
    throw new InvalidArgumentError(`Policy '${policy.name}' needs 'roles': one array of ${ctx.numKvHeads} entries (1 global, 0 streaming) per layer (${shape}).`);
  }
  if (ctx.numKvHeads > 32) throw new InvalidArgumentError(`Policy '${policy.name}' supports at most 32 KV heads per layer, the model has ${ctx.numKvHeads}.`);
  if (spec.budget !== undefined) throw new InvalidArgumentError(`Policy '${policy.name}' takes no budget: streaming heads keep sinks + window (set those parameters).`);
  if (spec.chunked || spec.adakv) throw new InvalidArgumentError(`Policy '${policy.name}' does not compose with the chunked or adakv wrappers (it evicts after every chunk already).`);
  const b = params.sinks! + params.window!;
  if (b > ctx.context) throw new InvalidArgumentError(`sinks + window = ${b} is larger than the context (${ctx.context} tokens).`);
  const globalMask = roles.map((r) => r.reduce((m, x, h) => m | (x << h), 0) >>> 0);
  const capacity = globalMask.map((m) => (m ? ctx.context : Math.min(ctx.context, policy.bound(b, params, ctx))));
  return {
    policy,
    params,
    budgets: Array(ctx.numLayers).fill(b),
    capacity,
    acts: 'every',
    adakv: false,
    globalMask,
    spec: { name: policy.name, params, roles: roles.map((r) => [...r]) },
  };
}
