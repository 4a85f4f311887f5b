/**
 * `npm run eval:learned`: the learned cache policies (Attention-Gate, PruLong / DuoAttention
 * head roles) against training-free ones at matched KV footprint, on held-out English text
 * with the bundled model, on what applies to any language model: how far each compressed
 * cache moves the next-token distribution from the full cache's (logit drift, KL in nats) and
 * the held-out perplexity it gives. Retrieval scores for the same policies come from the
 * evaluation harness (`npm run eval -- --spec e2e/eval/learned.json`).
 *
 * Per sample: a held-out Brown text (training/data/eval-text-brown-1024.jsonl, or held-out
 * text generated from the corpus when absent) is cut into a prompt of PROMPT tokens prefilled
 * in chunks of CHUNK, then CONT continuation tokens are teacher-forced one by one through a
 * full-cache engine and the compressed one. Footprint = mean over (layer, KV head) of the
 * snapshot's footprint (methods.md §5: chunked prefill counted).
 *
 * Matching: every learned policy is run first; its measured live fraction at the end sets
 * the budget of the training-free policies compared with it (--baselines, default streaming,h2o).
 *
 *   npm run eval:learned [-- --samples 4 --prompt 384 --cont 128 --only gates,roles,sharing --out eval-results/learned.json]
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Engine } from '../src/engine/engine';
import { Gpu } from '../src/gpu/device';
import { loadModel } from '../src/model/weights';
import { headRolesSpec } from '../src/kv/head-roles';
import type { PolicySpec } from '../src/kv/types';
import { klDivergence } from '../src/metrics/kl';
import { calibrateSharing } from '../src/kv/calibrate';
import type { SharingMap } from '../src/kv/sharing';
import { narg, sarg } from './args';

const SAMPLES = narg('samples', 4);
const PROMPT = narg('prompt', 384);
const CONT = narg('cont', 128);
const CHUNK = 64;
const CONTEXT = PROMPT + CONT;
const OUT = sarg('out', 'eval-results/learned.json');
const MODEL_DIR = resolve('models/kvscope-tiny');
/** --only gates,roles,sharing picks sections (default: all three). */
const ONLY = new Set(sarg('only', 'gates,roles,sharing').split(','));

const gpu = await Gpu.create();
const loaded = await loadModel(resolve(MODEL_DIR, 'hf'));

function texts(): number[][] {
  const file = resolve('training/data/eval-text-brown-1024.jsonl');
  if (!existsSync(file)) throw new Error(`${file} is missing: run training/gen-all.sh eval (held-out Brown text, tokenized).`);
  const rows = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { ids: number[] });
  return rows.filter((r) => r.ids.length >= CONTEXT).slice(0, SAMPLES).map((r) => r.ids.slice(0, CONTEXT));
}

function logSoftmaxAt(logits: Float32Array, id: number): number {
  let m = -Infinity;
  for (const x of logits) m = Math.max(m, x);
  let s = 0;
  for (const x of logits) s += Math.exp(x - m);
  return logits[id]! - m - Math.log(s);
}

interface Row {
  label: string;
  policy: PolicySpec;
  footprint: number;
  liveFraction: number;
  kl: number;
  ppl: number;
  pplFull: number;
  kvBytesAllocated: number;
  sharing?: Record<string, number>;
}

async function run(label: string, policy: PolicySpec, gates?: string, sharing?: SharingMap): Promise<Row> {
  const ref = await Engine.load({ model: loaded, gpu, contextLength: CONTEXT, prefillChunk: CHUNK });
  const eng = await Engine.load({ model: loaded, gpu, contextLength: CONTEXT, prefillChunk: CHUNK, policy, gates, sharing });
  let kl = 0;
  let nll = 0;
  let nllFull = 0;
  let n = 0;
  let foot = 0;
  let live = 0;
  let kvBytes = 0;
  try {
    for (const ids of texts()) {
      ref.reset();
      eng.reset();
      const prompt = ids.slice(0, PROMPT);
      for (let i = 0; i < prompt.length; i += CHUNK) {
        const chunk = prompt.slice(i, i + CHUNK);
        const end = i + CHUNK >= prompt.length;
        await ref.forwardStep(chunk, end);
        await eng.forwardStep(chunk, end);
      }
      for (let j = PROMPT; j < ids.length - 1; j++) {
        const p = await ref.forwardStep([ids[j]!]);
        const q = await eng.forwardStep([ids[j]!]);
        kl += klDivergence(p, q);
        nll -= logSoftmaxAt(q, ids[j + 1]!);
        nllFull -= logSoftmaxAt(p, ids[j + 1]!);
        n++;
      }
      const s = await eng.snapshot();
      foot += s.footprint;
      kvBytes = s.kvBytesAllocated;
      live += s.live.reduce((a, b) => a + b, 0) / s.live.length / s.tokens;
    }
  } finally {
    ref.unload();
    eng.unload();
  }
  const k = texts().length;
  const row: Row = { label, policy, ...(sharing ? { sharing: sharing.map } : {}), kvBytesAllocated: kvBytes, footprint: foot / k, liveFraction: live / k, kl: kl / n, ppl: Math.exp(nll / n), pplFull: Math.exp(nllFull / n) };
  console.log(`${label.padEnd(44)} footprint ${(100 * row.footprint).toFixed(1).padStart(5)}%  live ${(100 * row.liveFraction).toFixed(1).padStart(5)}%  KL ${row.kl.toFixed(4)}  ppl ${row.ppl.toFixed(2)} (full ${row.pplFull.toFixed(2)})  KV ${(row.kvBytesAllocated / 1024).toFixed(0)} KiB`);
  return row;
}

const rows: Row[] = [];
const baselines = (sarg('baselines', 'streaming,h2o')).split(',');
/**
 * The footprint a budget-B policy has on this protocol (kv_commit's accounting: a step of r
 * rows over n live entries adds r x n; after the step the cache is cut to B), relative to
 * the full cache's.
 */
function budgetFootprint(B: number): number {
  let live = 0;
  let full = 0;
  let a = 0;
  let f = 0;
  const steps: number[] = [];
  for (let i = 0; i < PROMPT; i += CHUNK) steps.push(Math.min(CHUNK, PROMPT - i));
  for (let j = PROMPT; j < CONTEXT - 1; j++) steps.push(1);
  for (const r of steps) {
    a += r * (live + r);
    f += r * (full + r);
    live = Math.min(live + r, B);
    full += r;
  }
  return a / f;
}

/** Baselines at the learned policy's final live fraction and at its footprint. */
async function matched(of: Row): Promise<void> {
  const byLive = Math.max(2, Math.round(of.liveFraction * CONTEXT));
  let lo = 2;
  let hi = CONTEXT;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (budgetFootprint(mid) < of.footprint) lo = mid + 1;
    else hi = mid;
  }
  const byFootprint = lo;
  for (const [budget, why] of [[byLive, 'live'], [byFootprint, 'footprint']] as const) {
    for (const name of baselines) {
      const params: Record<string, number> | undefined = name === 'streaming' ? { sinks: 4 } : name === 'h2o' ? { window: Math.min(16, budget - 1) } : undefined;
      rows.push(await run(`  ${name} @${budget} (${why} = ${of.label})`, { name, budget, ...(params ? { params } : {}) }));
    }
  }
}

console.log(`model: ${MODEL_DIR}; ${SAMPLES} held-out texts, prompt ${PROMPT} (chunks of ${CHUNK}), ${CONT} teacher-forced tokens`);
for (const g of ONLY.has('gates') ? ['gate-50', 'gate-75'] : []) {
  const file = resolve(MODEL_DIR, 'gates', `${g}.safetensors`);
  if (!existsSync(file)) {
    console.log(`(no ${file}: skipped)`);
    continue;
  }
  const r = await run(`attention-gate ${g}`, { name: 'attention-gate' }, file);
  rows.push(r);
  await matched(r);
}
for (const m of ONLY.has('roles') ? ['prulong', 'duo'] : []) {
  const file = resolve(MODEL_DIR, 'head-roles', `${m}.json`);
  if (!existsSync(file)) {
    console.log(`(no ${file}: skipped)`);
    continue;
  }
  const r = await run(`head-roles ${m}`, headRolesSpec(JSON.parse(readFileSync(file, 'utf8'))));
  rows.push(r);
  await matched(r);
}
// KVSharer (issue 8's evidence on this metric): 0, 1, 2 shared layers of 4, the paper's
// dissimilar-first order vs its similar-first ablation (threshold -1: the search accepts the
// first pairs in that order, so both orders share the same number of layers), alone and with
// h2o at a quarter of the context (dissimilar-first maps).
if (ONLY.has('sharing')) {
  const cal = await Engine.load({ model: loaded, gpu, contextLength: CONTEXT, prefillChunk: CHUNK });
  const maps: { label: string; map: SharingMap }[] = [];
  for (const order of ['dissimilar-first', 'similar-first'] as const) {
    for (const target of [1, 2]) {
      const map = await calibrateSharing(cal, { order, targetSharedLayers: target, threshold: -1 });
      maps.push({ label: `${order} x${target}`, map });
      console.log(`sharing ${order} x${target}: ${JSON.stringify(map.map)} similarity ${map.similarity?.toFixed?.(3) ?? map.similarity}`);
    }
  }
  cal.unload();
  const quarter = Math.round(CONTEXT / 4);
  for (const m of maps) rows.push(await run(`sharing ${m.label}`, { name: 'full' }, undefined, m.map));
  rows.push(await run(`h2o @${quarter}`, { name: 'h2o', budget: quarter, params: { window: 16 } }));
  for (const m of maps.filter((x) => x.label.startsWith('dissimilar'))) rows.push(await run(`h2o @${quarter} + sharing ${m.label}`, { name: 'h2o', budget: quarter, params: { window: 16 } }, undefined, m.map));
}

mkdirSync(dirname(resolve(OUT)), { recursive: true });
writeFileSync(resolve(OUT), JSON.stringify({ samples: SAMPLES, prompt: PROMPT, cont: CONT, chunk: CHUNK, rows }, null, 2));
console.log(`wrote ${OUT}`);
gpu.destroy();
