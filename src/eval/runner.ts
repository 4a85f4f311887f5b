/**
 * The loop both back ends share: cases grouped by variant (one engine configuration each),
 * finished case ids skipped, a per-case time limit that records a failure instead of
 * hanging, one result record per case handed to a sink (the CLI appends JSON lines).
 * A back end only knows how to open a variant and run one prepared prompt in it.
 */
import type { PolicySpec } from '../kv/types';
import type { PreparedPrompt } from './prompts';
import { SCORERS, exactMatch } from './scorers';
import type { EvalCase } from './spec';

/** What a back end returns for one case. */
export interface CaseOutput {
  text: string;
  ids: number[];
  promptTokens: number;
  finishReason: string;
  footprint: number;
  peak: number;
  kvBytesAllocated: number;
  kvBytesInUse: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  prefillMs: number;
  decodeMs: number;
  /** When the spec asks for it (Node back end): mean full-attention mass on evicted entries over the generated tokens. */
  attentionLoss?: number | null;
  /** The device that ran it (see deviceLabel): timings only compare on the same one. */
  device?: string;
}

/** One line of a results file. */
export interface EvalResult {
  id: string;
  spec: string;
  backend: string;
  model: string;
  task: string;
  taskLabel: string;
  contextLength: number;
  depth: number;
  seed: number;
  taskParams: Record<string, number>;
  policy: string;
  policyLabel: string;
  budgetFraction: number;
  budget: number | null;
  policySpec: PolicySpec;
  scorer: string;
  promptTokens: number | null;
  expected: string | null;
  output: string | null;
  outputIds: number[] | null;
  score: number;
  exact: number;
  footprint: number | null;
  peak: number | null;
  kvBytesAllocated: number | null;
  kvBytesInUse: number | null;
  prefillTokensPerSecond: number | null;
  decodeTokensPerSecond: number | null;
  finishReason: string | null;
  attentionLoss: number | null;
  /** The adapter and kernel choices that ran the case (null when it failed, or in files from before the field). */
  device?: string | null;
  timeMs: number;
  /** Null when the case ran; otherwise why it failed ('timeout: ...', an error message). Failed cases score 0. */
  error: string | null;
  finishedAt: string;
}

export interface VariantSession {
  run(prompt: PreparedPrompt, c: EvalCase, signal: AbortSignal): Promise<CaseOutput>;
  close(): Promise<void>;
}

export interface Backend {
  readonly name: string;
  /** Prepares an engine for a variant (model, context, policy); sessions are opened one at a time. */
  open(first: EvalCase): Promise<VariantSession>;
  close(): Promise<void>;
}

export class CaseTimeoutError extends Error {
  constructor(ms: number) {
    super(`timeout: the case ran past ${ms} ms`);
    this.name = 'CaseTimeoutError';
  }
}

export interface RunOptions {
  specName: string;
  cases: readonly EvalCase[];
  backend: Backend;
  prepare(c: EvalCase): PreparedPrompt;
  /** Ids already in the results file. */
  done: ReadonlySet<string>;
  sink(r: EvalResult): void;
  onProgress?(p: { done: number; total: number; failed: number; skipped: number; current?: string }): void;
  /** How long to wait for a timed-out case to wind down before abandoning its session (default 5000 ms). */
  graceMs?: number;
  now?: () => number;
}

export interface RunSummary {
  ran: number;
  skipped: number;
  failed: number;
}

/** Orders cases so each variant's cases are consecutive, keeping the spec's order otherwise. */
export function groupByVariant(cases: readonly EvalCase[]): EvalCase[][] {
  const groups = new Map<string, EvalCase[]>();
  for (const c of cases) {
    let g = groups.get(c.variant);
    if (!g) groups.set(c.variant, (g = []));
    g.push(c);
  }
  return [...groups.values()];
}

function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new CaseTimeoutError(ms));
    }, ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function baseRecord(o: RunOptions, c: EvalCase): Omit<EvalResult, 'promptTokens' | 'expected' | 'output' | 'outputIds' | 'score' | 'exact' | 'footprint' | 'peak' | 'kvBytesAllocated' | 'kvBytesInUse' | 'prefillTokensPerSecond' | 'decodeTokensPerSecond' | 'finishReason' | 'attentionLoss' | 'timeMs' | 'error' | 'finishedAt'> {
  return {
    id: c.id, spec: o.specName, backend: o.backend.name, model: c.model.id, task: c.task, taskLabel: c.taskLabel, contextLength: c.contextLength,
    depth: c.depth, seed: c.seed, taskParams: c.taskParams, policy: c.policy.name, policyLabel: c.policyLabel, budgetFraction: c.budgetFraction,
    budget: c.budget, policySpec: c.policy, scorer: SCORERS[c.task].name,
  };
}

export async function runCases(o: RunOptions): Promise<RunSummary> {
  const now = o.now ?? (() => Date.now());
  const todo = o.cases.filter((c) => !o.done.has(c.id));
  const skipped = o.cases.length - todo.length;
  const total = todo.length;
  let finished = 0;
  let failed = 0;
  const tick = (current?: string) => o.onProgress?.({ done: finished, total, failed, skipped, ...(current ? { current } : {}) });
  tick();
  for (const group of groupByVariant(todo)) {
    let session: VariantSession | undefined;
    for (const c of group) {
      const t0 = now();
      let prompt: PreparedPrompt | undefined;
      const base = baseRecord(o, c);
      const record = (fields: Partial<EvalResult>): EvalResult => ({
        ...base, promptTokens: prompt?.ids.length ?? null, expected: prompt?.expected ?? null, output: null, outputIds: null, score: 0, exact: 0,
        footprint: null, peak: null, kvBytesAllocated: null, kvBytesInUse: null, prefillTokensPerSecond: null, decodeTokensPerSecond: null,
        finishReason: null, attentionLoss: null, timeMs: now() - t0, error: null, finishedAt: new Date().toISOString(), ...fields,
      });
      tick(c.id);
      let result: EvalResult;
      const abort = new AbortController();
      try {
        prompt = o.prepare(c);
        const p = prompt;
        const out = await withTimeout(
          (async () => {
            session ??= await o.backend.open(c);
            return session.run(p, c, abort.signal);
          })(),
          c.timeoutMs,
          () => abort.abort(),
        );
        const score = SCORERS[c.task].score(out.text, p.expected);
        result = record({
          promptTokens: out.promptTokens, output: out.text, outputIds: out.ids, score, exact: exactMatch(out.text, p.expected), footprint: out.footprint,
          peak: out.peak, kvBytesAllocated: out.kvBytesAllocated, kvBytesInUse: out.kvBytesInUse, prefillTokensPerSecond: out.prefillTokensPerSecond,
          decodeTokensPerSecond: out.decodeTokensPerSecond, finishReason: out.finishReason, attentionLoss: out.attentionLoss ?? null,
          device: out.device ?? null,
        });
      } catch (e) {
        failed++;
        result = record({ error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
        // After a timeout or an error the session's state is unknown: let it wind down
        // (bounded), drop it, and open a fresh one for the next case.
        if (session) {
          const s = session;
          session = undefined;
          await Promise.race([s.close().catch(() => undefined), new Promise((r) => setTimeout(r, o.graceMs ?? 5000))]);
        }
      }
      o.sink(result);
      finished++;
      tick();
    }
    if (session) await session.close();
  }
  return { ran: finished, skipped, failed };
}
