/**
 * Node side of the evaluation harness, used by the CLI (run.ts) and the tests: reading a
 * spec, preparing prompts with each model's tokenizer, the results file (JSON lines,
 * appended, resumable) and the back end choice.
 */
import { appendFileSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createChatFormatter } from '../../src/model/chat-template';
import { createTokenizer } from '../../src/model/tokenizer';
import { loadModel, type LoadedModel } from '../../src/model/weights';
import { brownDocuments, nlpCorpusDocuments } from '../../src/tasks/corpus-node';
import { corpusFiller, repeatedFiller, type FillerSource } from '../../src/tasks/index';
import { preparePrompt, type PreparedPrompt, type PromptTools } from '../../src/eval/prompts';
import type { Backend, EvalResult, RunSummary } from '../../src/eval/runner';
import { runCases } from '../../src/eval/runner';
import { EvalSpecError, entryLabel, expandSpec, shardCases, validateSpec, type EvalCase, type EvalSpec, type Shard } from '../../src/eval/spec';
import { headRolesSpec } from '../../src/kv/head-roles';
import { sharingPairs, type SharingMap } from '../../src/kv/sharing';
import { ensureTinyChatModel } from '../pages/fixture-model';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export function readSpec(path: string): EvalSpec {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new EvalSpecError('bad-spec', `Cannot read spec ${path}: ${(e as Error).message}`);
  }
  return resolveSpecFiles(validateSpec(raw));
}

function readJson(path: string, what: string, where: string): unknown {
  try {
    return JSON.parse(readFileSync(resolve(ROOT, path), 'utf8'));
  } catch (e) {
    throw new EvalSpecError('bad-spec', `${where}: cannot read the ${what} '${path}': ${(e as Error).message}`);
  }
}

/**
 * Reads the role-map and sharing-map files a spec's policies name (paths relative to the
 * repository root) and puts their contents inline, keeping the file stems in the labels. Gate
 * weights stay paths: each back end loads them with the engine.
 */
export function resolveSpecFiles(spec: EvalSpec): EvalSpec {
  if (spec.policies === 'all') return spec;
  const policies = spec.policies.map((p, i) => {
    const where = `policies[${i}]`;
    const out = { ...p, label: entryLabel(p) };
    if (typeof p.roles === 'string') {
      let rs;
      try {
        rs = headRolesSpec(readJson(p.roles, 'role map', where), p.params?.sinks !== undefined ? { sinks: p.params.sinks } : {});
      } catch (e) {
        throw e instanceof EvalSpecError ? e : new EvalSpecError('bad-spec', `${where}: role map '${p.roles}': ${(e as Error).message}`);
      }
      out.roles = rs.roles!;
      out.params = { ...p.params, sinks: Number(rs.params!.sinks) };
    }
    if (typeof p.sharing === 'string') {
      const m = readJson(p.sharing, 'sharing map', where);
      if (!m || typeof m !== 'object') throw new EvalSpecError('bad-spec', `${where}: sharing map '${p.sharing}' is not a JSON object.`);
      out.sharing = sharingPairs(m as SharingMap);
    }
    if (p.gates && !existsSync(resolve(ROOT, p.gates))) throw new EvalSpecError('bad-spec', `${where}: gate weights '${p.gates}' not found.`);
    return out;
  });
  return { ...spec, policies };
}

/** Every line of a results file (a missing file has none); a torn last line (killed run) is ignored. */
export function readResults(path: string): EvalResult[] {
  if (!existsSync(path)) return [];
  const out: EvalResult[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as EvalResult);
    } catch {
      /* a partial line from an interrupted write */
    }
  }
  return out;
}

/** Appends one line; after a torn last line (a killed run) it starts a new line first. */
export function appendResult(path: string, r: EvalResult): void {
  mkdirSync(dirname(path), { recursive: true });
  let sep = '';
  if (existsSync(path)) {
    const size = statSync(path).size;
    if (size > 0) {
      const fd = openSync(path, 'r');
      const last = Buffer.alloc(1);
      readSync(fd, last, 0, 1, size - 1);
      closeSync(fd);
      if (last[0] !== 0x0a) sep = '\n';
    }
  }
  appendFileSync(path, sep + JSON.stringify(r) + '\n');
}

let fillers: Map<string, FillerSource> | undefined;
export function fillerByName(name: string): FillerSource {
  fillers ??= new Map();
  let f = fillers.get(name);
  if (!f) {
    if (name === 'repeated') f = repeatedFiller();
    else if (name === 'brown-heldout') f = corpusFiller(name, brownDocuments('heldout').map((d) => d.sentences));
    else if (name === 'nlp-heldout') f = corpusFiller(name, nlpCorpusDocuments('heldout').map((d) => d.sentences));
    else throw new EvalSpecError('bad-spec', `Unknown filler '${name}'.`);
    fillers.set(name, f);
  }
  return f;
}

/** Loads models (once each), writing the random test fixture first when a spec asks for it. */
export class ModelStore {
  private models = new Map<string, Promise<LoadedModel>>();
  private tools = new Map<string, PromptTools>();
  private prompts = new Map<string, PreparedPrompt>();

  constructor(private root = ROOT) {}

  dir(c: EvalCase): string {
    return resolve(this.root, c.model.path);
  }

  load(c: EvalCase): Promise<LoadedModel> {
    const dir = this.dir(c);
    let p = this.models.get(dir);
    if (!p) {
      p = (async () => {
        if (c.model.ensureFixture) await ensureTinyChatModel(c.model.ensureFixture);
        if (!existsSync(resolve(dir, 'config.json')) && !existsSync(resolve(dir, 'mlc-chat-config.json'))) {
          throw new EvalSpecError('bad-spec', `Model '${c.model.id}': no model at ${dir} (config.json missing).`);
        }
        return loadModel(dir);
      })();
      this.models.set(dir, p);
    }
    return p;
  }

  /** Loads every model the cases use and builds its tokenizer (needed to size prompts). */
  async preload(cases: readonly EvalCase[]): Promise<void> {
    const seen = new Map<string, EvalCase>();
    for (const c of cases) if (!seen.has(this.dir(c))) seen.set(this.dir(c), c);
    for (const [dir, c] of seen) {
      const m = await this.load(c);
      const chat = createChatFormatter(m);
      this.tools.set(dir, { tokenizer: createTokenizer(m), ...(chat ? { chat } : {}), filler: fillerByName });
    }
  }

  /** The prompt of a case (shared by every case of the same sample). */
  prepare(c: EvalCase): PreparedPrompt {
    const key = `${this.dir(c)}|${c.sampleKey}|${JSON.stringify(c.taskParams)}|${c.filler}|${c.maxTokens}|${c.model.format}`;
    let p = this.prompts.get(key);
    if (!p) {
      const tools = this.tools.get(this.dir(c));
      if (!tools) throw new Error(`internal: model for ${c.id} not preloaded`);
      p = preparePrompt(c, tools);
      this.prompts.set(key, p);
    }
    return p;
  }
}

export interface EvalRunArgs {
  spec: EvalSpec;
  out: string;
  shard?: Shard;
  backend: Backend;
  store: ModelStore;
  /** Run only every k-th case of the (sharded) list, for a fixed subset (k = 10: a 10% subset). */
  every?: number;
  onProgress?: Parameters<typeof runCases>[0]['onProgress'];
}

export function selectCases(spec: EvalSpec, shard?: Shard, every?: number): EvalCase[] {
  const cases = shardCases(expandSpec(spec), shard);
  // A fixed subset by id hash (the same cases whatever the shard), e.g. 10% for the browser rerun.
  return every && every > 1 ? cases.filter((c) => subsetKey(c.id) % every === 0) : cases;
}

function subsetKey(id: string): number {
  // Sharding's FNV-1a from another offset basis, then MurmurHash3's finaliser so every bit
  // depends on every character: the subset is ~1/k of the cases and ~1/k of each shard. (A
  // djb2 hash here had picked 190 of quick's 1680 cases, 101 of them in shard 1/4.)
  let h = 0x9747b28c;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 16777619) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

export async function runEval(a: EvalRunArgs): Promise<RunSummary & { total: number }> {
  const cases = selectCases(a.spec, a.shard, a.every);
  const done = new Set(readResults(a.out).map((r) => r.id));
  await a.store.preload(cases);
  const summary = await runCases({
    specName: a.spec.name,
    cases,
    backend: a.backend,
    prepare: (c) => a.store.prepare(c),
    done,
    sink: (r) => appendResult(a.out, r),
    ...(a.onProgress ? { onProgress: a.onProgress } : {}),
  });
  return { ...summary, total: cases.length };
}
