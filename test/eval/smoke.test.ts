import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelStore, readResults, readSpec, runEval, ROOT } from '../../e2e/eval/harness';
import { NodeBackend } from '../../e2e/eval/node-backend';
import { writeReport } from '../../e2e/eval/report-files';

// End to end on the Node back end: smoke.json's random-weight tiny model (written on demand),
// passkey at 128 tokens, full + streaming + tova at 1/4 and 1/2 of the context, 2 samples.
describe('eval smoke run (Node back end)', () => {
  it('produces one result per case with measured footprints, resumes, and reports', async () => {
    const spec = readSpec(join(ROOT, 'e2e/eval/smoke.json'));
    const dir = mkdtempSync(join(tmpdir(), 'kvscope-smoke-'));
    const out = join(dir, 'smoke.jsonl');
    const store = new ModelStore();
    const backend = new NodeBackend(ROOT, (c) => store.load(c));
    try {
      const s = await runEval({ spec, out, backend, store });
      expect(s).toMatchObject({ total: 10, ran: 10, skipped: 0, failed: 0 });
      const rs = readResults(out);
      expect(rs.length).toBe(10);
      for (const r of rs) {
        expect(r.error).toBeNull();
        expect(r.promptTokens).toBeGreaterThan(0.9 * (128 - 4) - 1);
        expect(r.promptTokens! + 4).toBeLessThanOrEqual(128);
        expect(r.output).not.toBeNull();
        expect(r.outputIds!.length).toBeGreaterThan(0);
        expect([0, 1]).toContain(r.score);
        // The device that ran it: this adapter, its kernel set and weight layout.
        expect(r.device).toMatch(/ \| (cpu|gpu) kernels \| weights (nk|kn)$/);
      }
      const full = rs.filter((r) => r.policy === 'full');
      expect(full.every((r) => r.footprint === 1 && r.peak === 1)).toBe(true);
      // A budget of 1/4 of the context must show a smaller measured footprint than 1/2, and both < 1.
      const fp = (p: string, f: number) => rs.find((r) => r.policy === p && r.budgetFraction === f)!.footprint!;
      for (const p of ['streaming', 'tova']) {
        expect(fp(p, 0.25)).toBeLessThan(fp(p, 0.5));
        expect(fp(p, 0.5)).toBeLessThan(1);
      }
      // Same prompt for a sample across policies; greedy output is deterministic per case.
      const bySample = new Map<number, Set<number | null>>();
      for (const r of rs) (bySample.get(r.seed) ?? bySample.set(r.seed, new Set()).get(r.seed)!).add(r.promptTokens);
      expect([...bySample.values()].every((v) => v.size === 1)).toBe(true);

      const again = await runEval({ spec, out, backend, store });
      expect(again).toMatchObject({ ran: 0, skipped: 10 });
      expect(readResults(out).length).toBe(10);

      const rep = writeReport(rs, join(dir, 'report.html'), 'smoke');
      expect(existsSync(rep.html)).toBe(true);
      expect(readFileSync(rep.html, 'utf8')).toContain(`Devices (timings compare only within one): node: ${rs[0]!.device}.`);
      expect(readFileSync(rep.csv, 'utf8').trim().split('\n').length).toBe(1 + 5);
    } finally {
      await backend.close();
    }
  });

  it('records attention loss when the spec asks for it: 0 for the full cache, > 0 when evicting', async () => {
    const spec = readSpec(join(ROOT, 'e2e/eval/smoke.json'));
    const one = { ...spec, name: 'smoke-attn', metrics: ['attentionLoss' as const], policies: [{ name: 'full' }, { name: 'streaming' }], budgets: ['1/4'], tasks: [{ ...spec.tasks[0]!, samples: 1 }] };
    const out = join(mkdtempSync(join(tmpdir(), 'kvscope-smoke-')), 'attn.jsonl');
    const store = new ModelStore();
    const backend = new NodeBackend(ROOT, (c) => store.load(c));
    try {
      const s = await runEval({ spec: one, out, backend, store });
      expect(s).toMatchObject({ ran: 2, failed: 0 });
      const rs = readResults(out);
      const full = rs.find((r) => r.policy === 'full')!;
      const streaming = rs.find((r) => r.policy === 'streaming')!;
      expect(full.attentionLoss).toBeCloseTo(0, 6);
      expect(streaming.attentionLoss).toBeGreaterThan(0);
      expect(streaming.attentionLoss).toBeLessThanOrEqual(1);
    } finally {
      await backend.close();
    }
  });
});
