import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { aggregate, toCsv, toMarkdown } from '../../src/eval/report';
import type { EvalResult } from '../../src/eval/runner';
import { writeReport } from '../../e2e/eval/report-files';

function result(policy: string, fraction: number, seed: number, score: number, footprint: number, error: string | null = null): EvalResult {
  return {
    id: `m/passkey@1024/d0.5/s${seed}/${policy}/f${fraction}`, spec: 'synthetic', backend: 'node', model: 'm', task: 'passkey', taskLabel: 'passkey',
    contextLength: 1024, depth: 0.5, seed, taskParams: {}, policy, policyLabel: policy, budgetFraction: fraction, budget: policy === 'full' ? null : fraction * 1024,
    policySpec: { name: policy }, scorer: 'number-match', promptTokens: 1000, expected: ' 1', output: error ? null : ' 1', outputIds: error ? null : [1],
    score: error ? 0 : score, exact: error ? 0 : score, footprint: error ? null : footprint, peak: error ? null : footprint * 0.9, kvBytesAllocated: error ? null : 1000,
    kvBytesInUse: error ? null : 900, prefillTokensPerSecond: error ? null : 100, decodeTokensPerSecond: error ? null : 10, finishReason: error ? null : 'stop', attentionLoss: error ? null : 1 - footprint,
    timeMs: 10, error, finishedAt: '2026-01-01T00:00:00Z',
  };
}

const results: EvalResult[] = [
  ...[1, 2].map((s) => result('full', 1, s, 1, 1)),
  // streaming: 0.5 at 1/8, 1.0 at 1/4 and 1/2 -> critical footprint = the 1/4 point's footprint.
  result('streaming', 0.125, 1, 1, 0.2), result('streaming', 0.125, 2, 0, 0.2),
  result('streaming', 0.25, 1, 1, 0.35), result('streaming', 0.25, 2, 1, 0.35),
  result('streaming', 0.5, 1, 1, 0.6), result('streaming', 0.5, 2, 1, 0.6),
  // random: never reaches 90%; one case failed (counts 0, excluded from footprint means).
  result('random', 0.5, 1, 0, 0.6), result('random', 0.5, 2, 1, 0.6, 'timeout: the case ran past 10 ms'),
];

describe('eval report', () => {
  it('aggregates cells, counts failures as 0, and finds critical footprints', () => {
    const [g] = aggregate(results);
    expect(g!.fullScore).toBe(1);
    const cell = (p: string, f: number) => g!.cells.find((c) => c.policyLabel === p && c.budgetFraction === f)!;
    expect(cell('streaming', 0.125).score).toBe(0.5);
    expect(cell('random', 0.5)).toMatchObject({ n: 2, errors: 1, score: 0, footprint: 0.6 });
    expect(cell('streaming', 0.125).attentionLoss).toBeCloseTo(0.8);
    expect(cell('full', 1).attentionLoss).toBe(0);
    expect(g!.critical).toEqual([
      { policyLabel: 'random', value: null, note: 'below 90% of full at every budget' },
      { policyLabel: 'streaming', value: 0.35, note: '' },
    ]);
  });

  it('notes when the full cache scores 0 (no critical footprint can exist)', () => {
    const zero = results.map((r) => ({ ...r, score: 0 }));
    expect(aggregate(zero)[0]!.critical.every((c) => c.value === null && c.note === 'full-cache score is 0')).toBe(true);
  });

  it('gives no critical footprint when the full cache scores below the floor (noise would pass 90% of it)', () => {
    // Scale every score to 1/20: full 0.05; streaming 1/8 reaches 0.025, 1/4 and 1/2 0.05.
    const low = results.map((r) => ({ ...r, score: r.score / 20 }));
    const [g] = aggregate(low);
    expect(g!.fullScore).toBeCloseTo(0.05);
    expect(g!.critical.map((c) => c.value)).toEqual([null, null]);
    expect(g!.critical[0]!.note).toMatch(/0\.050 is below 0\.1/);
    // With the floor lowered the same points give the same answer as at full scale.
    const [g2] = aggregate(low, { minFullScore: 0.01 });
    expect(g2!.critical.find((c) => c.policyLabel === 'streaming')!.value).toBe(0.35);
    expect(() => aggregate(results, { minFullScore: 2 })).toThrow(/minFullScore/);
  });

  it('a later line for the same id replaces the earlier one', () => {
    const rerun = [...results, { ...results[2]!, score: 1 }];
    const [g] = aggregate(rerun);
    expect(g!.cells.find((c) => c.policyLabel === 'streaming' && c.budgetFraction === 0.125)!.score).toBe(0.5);
    const [g2] = aggregate([...results, { ...results[3]!, score: 1 }]);
    expect(g2!.cells.find((c) => c.policyLabel === 'streaming' && c.budgetFraction === 0.125)!.score).toBe(1);
  });

  it('writes a self-contained HTML report and a CSV', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvscope-report-'));
    const r = writeReport(results, join(dir, 'report.html'), 'synthetic');
    const html = readFileSync(r.html, 'utf8');
    expect(html).toContain('uPlot');
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=/); // nothing fetched: opens offline
    expect(html).toContain('m / passkey @ 1024 tokens (node)');
    expect(existsSync(r.csv)).toBe(true);
    const csv = readFileSync(r.csv, 'utf8').trim().split('\n');
    expect(csv.length).toBe(1 + 5);
    expect(csv[0]).toMatch(/^model,task,/);
    expect(toCsv(aggregate(results))).toBe(readFileSync(r.csv, 'utf8'));
    expect(readFileSync(r.md, 'utf8')).toBe(toMarkdown(aggregate(results)));
  });

  it('names the devices the results ran on (escaped), and no devices line when the results have none', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvscope-report-'));
    const withDevices = results.map((r, i) => ({ ...r, device: i % 2 ? 'llvmpipe <x> | cpu kernels | weights kn' : 'SwiftShader | cpu kernels | weights nk' }));
    const html = readFileSync(writeReport(withDevices, join(dir, 'a.html'), 'synthetic').html, 'utf8');
    expect(html).toContain('Devices (timings compare only within one): node: SwiftShader | cpu kernels | weights nk; node: llvmpipe &lt;x&gt; | cpu kernels | weights kn.');
    expect(readFileSync(writeReport(results, join(dir, 'b.html'), 'synthetic').html, 'utf8')).not.toContain('Devices (');
  });

  it('summarises as one Markdown table: full first, budgets as fractions, a column per task', () => {
    const niah = results.map((r) => ({ ...r, id: r.id.replace('passkey', 'niah'), task: 'niah', taskLabel: 'niah', score: r.policy === 'streaming' ? 0 : r.score }));
    const md = toMarkdown(aggregate([...results, ...niah])).split('\n');
    expect(md[0]).toBe('| policy | budget | niah @ 1024 | passkey @ 1024 | footprint | KV allocated |');
    expect(md[2]).toBe('| full | — | 100% (2) | 100% (2) | 1.00 | 1 KiB |');
    // random at 1/2: one of two cases failed (score 0), footprint from the case that ran.
    expect(md[3]).toBe('| random | 1/2 | 0% (2, 1 failed) | 0% (2, 1 failed) | 0.60 | 1 KiB |');
    expect(md[4]).toBe('| streaming | 1/8 | 0% (2) | 50% (2) | 0.20 | 1 KiB |');
    expect(md).toContain('- m / passkey @ 1024 tokens (node): streaming 0.350');
    expect(md).toContain('- m / niah @ 1024 tokens (node): below 90% of full at every budget');
    // Two models: one column per (model, task), never one model's cell over the other's.
    const other = results.map((r) => ({ ...r, id: r.id.replace(/^m\//, 'm2/'), model: 'm2', score: 0 }));
    const two = toMarkdown(aggregate([...results, ...other])).split('\n');
    expect(two[0]).toBe('| policy | budget | m / passkey @ 1024 | m2 / passkey @ 1024 | footprint | KV allocated |');
    expect(two[2]).toBe('| full | — | 100% (2) | 0% (2) | 1.00 | 1 KiB |');
  });
});
