import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { PreparedPrompt } from '../../src/eval/prompts';
import { runCases, type Backend, type CaseOutput, type EvalResult } from '../../src/eval/runner';
import { expandSpec, validateSpec, type EvalCase } from '../../src/eval/spec';
import { appendResult, readResults } from '../../e2e/eval/harness';

const cases = expandSpec(validateSpec({
  name: 'fake',
  models: [{ id: 'm', path: 'models/m' }],
  tasks: [{ task: 'passkey', contextLength: 256, depths: [0.5], samples: 3, seed: 1 }],
  policies: ['full', 'streaming'],
  budgets: ['1/4'],
  timeoutMs: 200,
}));

const prompt = (c: EvalCase): PreparedPrompt => ({ ids: [1, 2, 3], expected: ` ${c.seed}000`, maxTokens: 4, meta: {} });

const output = (text: string): CaseOutput => ({
  text, ids: [7], promptTokens: 3, finishReason: 'length', footprint: 0.5, peak: 0.4, kvBytesAllocated: 100, kvBytesInUse: 90,
  prefillTokensPerSecond: 10, decodeTokensPerSecond: 5, prefillMs: 1, decodeMs: 1,
});

/** A back end that answers correctly, except for the ids in `hang`, which never finish. */
function fakeBackend(hang: Set<string> = new Set()) {
  const log = { opened: [] as string[], closed: 0, ran: [] as string[] };
  const backend: Backend = {
    name: 'fake',
    async open(first) {
      log.opened.push(first.variant);
      return {
        run: (_p, c, signal) => {
          log.ran.push(c.id);
          if (hang.has(c.id)) return new Promise<CaseOutput>((_, reject) => signal.addEventListener('abort', () => setTimeout(() => reject(new Error('aborted')), 10_000)));
          return Promise.resolve(output(` ${c.seed}000`));
        },
        close: async () => {
          log.closed++;
        },
      };
    },
    close: async () => undefined,
  };
  return { backend, log };
}

describe('eval runner', () => {
  it('runs every case once, grouped by variant (one session each), and scores them', async () => {
    const { backend, log } = fakeBackend();
    const out: EvalResult[] = [];
    const s = await runCases({ specName: 'fake', cases, backend, prepare: prompt, done: new Set(), sink: (r) => out.push(r) });
    expect(s).toEqual({ ran: cases.length, skipped: 0, failed: 0 });
    expect(out.map((r) => r.id)).toEqual(cases.map((c) => c.id));
    expect(log.opened).toEqual([...new Set(cases.map((c) => c.variant))]);
    expect(out.every((r) => r.score === 1 && r.error === null && r.footprint === 0.5)).toBe(true);
  });

  it('resumes: a rerun on the same results file skips finished ids', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'kvscope-eval-')), 'r.jsonl');
    const first = fakeBackend();
    await runCases({ specName: 'fake', cases: cases.slice(0, 2), backend: first.backend, prepare: prompt, done: new Set(), sink: (r) => appendResult(file, r) });
    // An interrupted write leaves a torn last line; it is ignored.
    writeFileSync(file, readResults(file).map((r) => JSON.stringify(r)).join('\n') + '\n{"id": "tor', { flag: 'w' });
    const second = fakeBackend();
    const done = new Set(readResults(file).map((r) => r.id));
    expect(done.size).toBe(2);
    const s = await runCases({ specName: 'fake', cases, backend: second.backend, prepare: prompt, done, sink: (r) => appendResult(file, r) });
    expect(s.skipped).toBe(2);
    expect(second.log.ran).toEqual(cases.slice(2).map((c) => c.id));
    const all = readResults(file).map((r) => r.id);
    expect(new Set(all)).toEqual(new Set(cases.map((c) => c.id)));
  });

  it('records a case past its time limit as a failure and goes on with a fresh session', async () => {
    const stuck = cases[1]!;
    const { backend, log } = fakeBackend(new Set([stuck.id]));
    const out: EvalResult[] = [];
    const t0 = Date.now();
    const s = await runCases({ specName: 'fake', cases, backend, prepare: prompt, done: new Set(), sink: (r) => out.push(r), graceMs: 50 });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(s.failed).toBe(1);
    const r = out.find((x) => x.id === stuck.id)!;
    expect(r.error).toMatch(/timeout/);
    expect(r.score).toBe(0);
    expect(r.output).toBeNull();
    // The rest ran and scored; the stuck variant was reopened for its next case.
    expect(out.filter((x) => x.id !== stuck.id).every((x) => x.score === 1)).toBe(true);
    expect(log.opened.filter((v) => v === stuck.variant).length).toBe(2);
  });

  it('records a back end error as a failure', async () => {
    const backend: Backend = { name: 'bad', open: () => Promise.reject(new Error('no adapter')), close: async () => undefined };
    const out: EvalResult[] = [];
    const s = await runCases({ specName: 'fake', cases: cases.slice(0, 2), backend, prepare: prompt, done: new Set(), sink: (r) => out.push(r) });
    expect(s.failed).toBe(2);
    expect(out.every((r) => /no adapter/.test(r.error ?? ''))).toBe(true);
  });
});
