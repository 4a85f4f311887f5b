/**
 * `npm run bench:policies`: KV-cache policies on the bundled model's shape, at context 2048
 * with budget 256 (issue 5's benchmark). Ratios measured in one run; absolute times on these
 * shared machines mean little.
 *
 * 1. Decode tok/s per registered policy, relative to `full`: a ~1800-token prompt prefilled
 *    in chunks of 128, then 32 greedy decode steps through Engine.generate (the real path:
 *    GPU sampling, one u32 read back per token).
 * 2. The policy step's share of decode time. Same engine, same cache, continuing from where
 *    (1) stopped, decode steps are driven through GpuModel.stepOps,
 *    in alternating runs of 8 steps (so A and B get the same number of due steps for any
 *    `every` dividing 8): A runs the step as the engine does, B drops
 *    the policy's own dispatches (labels kv.mass, kv.select, kv.gather, kv.scatter, and kv.select-compact, the fused decode-step form). Without
 *    them the cache grows by one entry per B step until the next A step compacts it, which
 *    the policy's allocation (bound = budget + chunk) absorbs; the bench checks the capacity
 *    first and skips the policy otherwise.
 *    share = (A - B) / A of the median per-step time. For `full`, A and B are the same op
 *    list: its "share" is the noise floor of this column. Not included: the attention kernel's extra
 *    write of the per-entry scores that kv.mass reads (it is fused into attention).
 * 3. Snapshot cost: decode tok/s with onSnapshot(cb, { everyTokens: 8 }) vs none (and with
 *    positions), on `full` and on h2o; calls alternate (A B C, C B A) so drift cancels, and
 *    the median is reported. Each call continues the conversation, so nothing is re-prefilled.
 *    Each call also takes the two forced snapshots generate() emits (start and end; the start
 *    one falls inside the decode time). Second, lower-noise estimate: the median latency of
 *    engine.snapshot() divided by the time of 8 decode steps. everyMs is set out of reach so
 *    the N = 8 rule is what's measured (the default 200 ms rule would fire every token on a
 *    slow software adapter).
 *
 * Model: models/kvscope-tiny/hf when its config.json exists, else a random f16 model of the
 * same shape (4 layers, hidden 256, 8 heads, 2 KV heads, head_dim 32, intermediate 512,
 * vocab 4096, context 2048). EOS ids are cleared so every run decodes the same count.
 *
 *   npm run bench:policies [-- --prompt 1800 --decode 32 --budget 256 --rounds 2 --policies full,h2o --snapshot-policies full,h2o]
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Gpu, type Op } from '../src/gpu/device';
import { Engine } from '../src/engine/engine';
import type { ModelConfig } from '../src/model/config';
import { loadModel, type LoadedModel } from '../src/model/weights';
import { randomModel } from '../src/model/writers';
import { listPolicies } from '../src/kv/policies/registry';
import { headRolesSpec } from '../src/kv/head-roles';
import type { PolicySpec } from '../src/kv/types';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} needs a positive integer, got ${process.argv[i + 1]}`);
  return v;
}
const CONTEXT = 2048;
const CHUNK = 128;
const PROMPT = arg('prompt', 1800);
const DECODE = arg('decode', 32);
const BUDGET = arg('budget', 256);
const ROUNDS = arg('rounds', 2);
const ONLY = (() => {
  const i = process.argv.indexOf('--policies');
  return i < 0 ? undefined : new Set(process.argv[i + 1]!.split(','));
})();
const BLOCK = 32;
const RUN = 8;
/** Policies whose snapshot cost is measured (--snapshot-policies full,h2o; 'none' skips). */
const SNAPSHOT_POLICIES: PolicySpec[] = (() => {
  const i = process.argv.indexOf('--snapshot-policies');
  const names = i < 0 ? ['full', 'h2o'] : process.argv[i + 1]!.split(',').filter((n) => n !== 'none');
  return names.map((n) => (n === 'full' ? { name: n } : { name: n, budget: BUDGET }));
})();
const POLICY_OPS = new Set(['kv.mass', 'kv.select', 'kv.gather', 'kv.scatter', 'kv.select-compact', 'kv.gate.proj', 'kv.gate.attn']);
if (PROMPT + DECODE + 1 + 4 * BLOCK > CONTEXT) throw new Error(`prompt + decode + ${4 * BLOCK} policy-share steps must fit the context of ${CONTEXT}`);
if (PROMPT + 3 + 3 * ROUNDS * (DECODE + 1) > CONTEXT) throw new Error(`prompt + ${3 * ROUNDS} snapshot-bench calls of ${DECODE + 1} tokens must fit the context of ${CONTEXT}`);

const SHAPE: ModelConfig = {
  family: 'llama', vocabSize: 4096, hiddenSize: 256, intermediateSize: 512, numLayers: 4, numHeads: 8, numKvHeads: 2, headDim: 32,
  rmsNormEps: 1e-5, ropeTheta: 10000, contextLength: 2048, tieWordEmbeddings: true, attentionBias: false, eosTokenIds: [],
};

async function model(): Promise<{ name: string; loaded: LoadedModel }> {
  const dir = resolve('models/kvscope-tiny/hf');
  if (existsSync(resolve(dir, 'config.json'))) {
    const m = await loadModel(dir);
    return { name: 'bundled kvscope-tiny', loaded: { ...m, config: { ...m.config, eosTokenIds: [] } } };
  }
  return { name: 'random f16 model of the bundled shape (models/kvscope-tiny/hf/config.json absent)', loaded: { layout: 'hf', config: SHAPE, weights: randomModel(SHAPE, 'f16', 1) } };
}

function median(xs: number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}
const pct = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}%`;

const gpu = await Gpu.create();
const { name, loaded } = await model();
const vocab = loaded.config.vocabSize;
const prompt = Array.from({ length: PROMPT }, (_, i) => (i * 7919 + 13) % vocab);
console.log(`adapter: ${gpu.adapterInfo.vendor} ${gpu.adapterInfo.architecture} ${gpu.adapterInfo.device ?? ''}`);
console.log(`model: ${name}; context ${CONTEXT}, chunk ${CHUNK}, prompt ${PROMPT}, ${DECODE} decode steps, budget ${BUDGET}`);

const engine = await Engine.load({ model: loaded, gpu, contextLength: CONTEXT, prefillChunk: CHUNK });
const staging = gpu.buffer(16, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'bench.staging');

/** One greedy decode step through the model's op list, optionally without the policy's dispatches; returns ms. */
async function step(token: number, pos: number, withPolicy: boolean): Promise<{ ms: number; next: number }> {
  const m = engine.model;
  const t0 = performance.now();
  m.writeTokens([token]);
  const ops: Op[] = m.stepOps(1, pos, pos, true).filter((o) => withPolicy || !POLICY_OPS.has(o.label ?? ''));
  m.sampler.set({ temperature: 0, topK: 0, topP: 1, seed: 0 }, pos);
  ops.push(...m.sampler.ops);
  const enc = gpu.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  gpu.encode(pass, ops);
  pass.end();
  enc.copyBufferToBuffer(m.sampled, 0, staging, 0, 4);
  gpu.device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const next = new Uint32Array(staging.getMappedRange(0, 4))[0]!;
  staging.unmap();
  return { ms: performance.now() - t0, next };
}

/**
 * Median per-step ms with (A) and without (B) the policy's dispatches over 4 x BLOCK steps,
 * in alternating runs of RUN steps (class = floor(pos / RUN) mod 2): short runs cancel the
 * load drift of a shared machine, and A and B get the same number of due steps for any
 * `every` dividing RUN. (Alternating single steps would make every A step evict two entries,
 * the one the B step before it kept too: the general selection path, not the one-entry
 * decode path that steady decoding takes. Here only the first A step of a run does; the
 * median is a steady-state step.)
 * Undefined when the B steps could overflow the allocation.
 */
async function policyShare(next: number): Promise<{ a: number; b: number } | undefined> {
  let pos = engine.cachedTokens.length;
  const snap = await engine.snapshot();
  if (Math.max(...snap.live) + 2 * BLOCK > Math.min(...snap.capacity)) return undefined;
  const times = { a: [] as number[], b: [] as number[] };
  for (let i = 0; i < 4 * BLOCK; i++) {
    const withPolicy = Math.floor(pos / RUN) % 2 === 0;
    const r = await step(next, pos++, withPolicy);
    (withPolicy ? times.a : times.b).push(r.ms);
    next = r.next;
  }
  return { a: median(times.a), b: median(times.b) };
}

/**
 * Median decode tok/s of ROUNDS generate calls per variant, variants interleaved (A B C, C B A).
 * Each call continues the conversation (prompt = everything so far), so only one new token is
 * prefilled per call, for every policy. Then a direct estimate: the median latency of
 * engine.snapshot() at the context reached.
 */
async function snapshotCost(spec: PolicySpec): Promise<{ none: number; every8: number; every8pos: number; snapsPerCall: number; snapMs: number; snapPosMs: number }> {
  engine.setPolicy(spec);
  // Warm-up (prefill, and two decode steps through every pipeline); its tokens stay in the conversation.
  let convo = [...prompt, ...(await engine.generateText(prompt, { maxTokens: 3 })).ids];
  const variants = ['none', 'every8', 'every8pos'] as const;
  const tps: Record<(typeof variants)[number], number[]> = { none: [], every8: [], every8pos: [] };
  let snaps = 0;
  for (let r = 0; r < ROUNDS; r++) {
    for (const v of r % 2 ? [...variants].reverse() : variants) {
      const off = v === 'none' ? undefined : engine.onSnapshot(() => snaps++, { everyTokens: 8, everyMs: 1e9, positions: v === 'every8pos' });
      const res = await engine.generateText(convo, { maxTokens: DECODE + 1 });
      off?.();
      if (res.stats.promptTokens - res.stats.reusedTokens !== 1) throw new Error(`snapshot bench re-prefilled ${res.stats.promptTokens - res.stats.reusedTokens} tokens`);
      convo = [...convo, ...res.ids];
      tps[v].push(res.stats.decodeTokensPerSecond);
    }
  }
  const latency = async (positions: boolean) => {
    const ms: number[] = [];
    for (let i = 0; i < 16; i++) {
      const t0 = performance.now();
      await engine.snapshot(positions);
      ms.push(performance.now() - t0);
    }
    return median(ms);
  };
  const snapMs = await latency(false);
  const snapPosMs = await latency(true);
  engine.reset();
  return { none: median(tps.none), every8: median(tps.every8), every8pos: median(tps.every8pos), snapsPerCall: snaps / (2 * ROUNDS), snapMs, snapPosMs };
}
const snapRows: [string, Awaited<ReturnType<typeof snapshotCost>>][] = [];
for (const spec of SNAPSHOT_POLICIES) {
  const s = await snapshotCost(spec);
  snapRows.push([spec.name, s]);
  console.log(`snapshots ${spec.name}: ${JSON.stringify(s)}`);
}
console.log(`\nSnapshot cost (median of ${ROUNDS} interleaved generate calls per variant, ${DECODE} decode steps each, context ${PROMPT}..${PROMPT + 3 + 3 * ROUNDS * (DECODE + 1)}):\n`);
console.log('| policy | decode tok/s, no snapshots | every 8 tokens | slowdown | every 8 + positions | slowdown | snapshots per call | snapshot() ms (no positions / positions) | = share of 8 decode steps |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const [p, s] of snapRows) {
  const eight = 8000 / s.none;
  console.log(`| ${p} | ${s.none.toFixed(2)} | ${s.every8.toFixed(2)} | ${pct(1 - s.every8 / s.none)} | ${s.every8pos.toFixed(2)} | ${pct(1 - s.every8pos / s.none)} | ${s.snapsPerCall.toFixed(1)} | ${s.snapMs.toFixed(2)} / ${s.snapPosMs.toFixed(2)} | ${pct(s.snapMs / eight)} / ${pct(s.snapPosMs / eight)} |`);
}

interface Row { policy: string; tps: number; prefill: number; footprint: number; kvMB: number; share: { a: number; b: number } | undefined; error?: string }
const rows: Row[] = [];
// Role and gate policies take their inputs from the model directory when it ships them:
// head-roles/prulong.json (roles; streaming heads get sinks 16 + window BUDGET - 16 here) and
// gates/gate-50.safetensors (the Attention-Gate trained for 50% eviction); otherwise skipped.
const rolesFile = resolve('models/kvscope-tiny/head-roles/prulong.json');
const gateFile = resolve('models/kvscope-tiny/gates/gate-50.safetensors');
const specs: PolicySpec[] = [];
for (const p of listPolicies().filter((q) => !ONLY || ONLY.has(q.name))) {
  if (p.name === 'head-roles') {
    if (!existsSync(rolesFile)) continue;
    specs.push({ ...headRolesSpec(JSON.parse(readFileSync(rolesFile, 'utf8')), { sinks: 16, window: BUDGET - 16 }) });
  } else if (p.name === 'attention-gate') {
    if (!existsSync(gateFile)) continue;
    await engine.setGates(gateFile);
    specs.push({ name: p.name });
  } else specs.push(p.usesBudget ? { name: p.name, budget: BUDGET } : { name: p.name });
}
for (const spec of specs) {
  try {
    engine.setPolicy(spec);
    // Warm-up: first dispatch of every pipeline (prefill GEMM path included).
    await engine.generateText(prompt.slice(0, 8), { maxTokens: 3 });
    engine.reset();
    const r = await engine.generateText(prompt, { maxTokens: DECODE + 1 });
    const share = await policyShare(r.ids[r.ids.length - 1]!);
    engine.reset();
    rows.push({ policy: spec.name, tps: r.stats.decodeTokensPerSecond, prefill: r.stats.prefillTokensPerSecond, footprint: r.stats.kvFootprint, kvMB: r.stats.kvBytesAllocated / 2 ** 20, share });
  } catch (e) {
    engine.reset();
    rows.push({ policy: spec.name, tps: NaN, prefill: NaN, footprint: NaN, kvMB: NaN, share: undefined, error: (e as Error).message });
  }
  const row = rows[rows.length - 1]!;
  console.log(`${row.policy}: decode ${row.tps.toFixed(2)} tok/s, prefill ${row.prefill.toFixed(1)} tok/s${row.share ? `, step ${row.share.a.toFixed(1)} ms with policy ops / ${row.share.b.toFixed(1)} ms without` : ''}${row.error ? ` ERROR ${row.error}` : ''}`);
}

// Ratios need `full` in the same run (it is registered first; --policies may leave it out).
const full = rows.find((r) => r.policy === 'full' && !r.error);
console.log(`\n${name}; adapter ${gpu.adapterInfo.vendor} ${gpu.adapterInfo.architecture}; context ${CONTEXT}, prompt ${PROMPT} in chunks of ${CHUNK}, ${DECODE} decode steps, budget ${BUDGET}\n`);
console.log('| policy | decode tok/s (generate) | vs full | median step ms (A steps) | vs full (1/ms) | policy step share of decode | median step ms with / without policy ops | KV footprint | KV MB allocated |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  if (r.error) {
    console.log(`| ${r.policy} | error: ${r.error} | | | | | | | |`);
    continue;
  }
  // For `full`, A and B run identical op lists: their gap is the noise floor of the share column.
  const share = r.share ? pct((r.share.a - r.share.b) / r.share.a) + (r.policy === 'full' ? ' (noise floor: no policy ops)' : '') : 'n/a (allocation too small to skip compaction)';
  const ms = r.share ? `${r.share.a.toFixed(1)} / ${r.share.b.toFixed(1)}` : '';
  const rel = r.share && full?.share ? (full.share.a / r.share.a).toFixed(3) : '';
  console.log(`| ${r.policy} | ${r.tps.toFixed(2)} | ${full ? (r.tps / full.tps).toFixed(3) : ''} | ${r.share ? r.share.a.toFixed(1) : ''} | ${rel} | ${share} | ${ms} | ${r.footprint.toFixed(3)} | ${r.kvMB.toFixed(2)} |`);
}
gpu.destroy();
setTimeout(() => process.exit(0), 20);
