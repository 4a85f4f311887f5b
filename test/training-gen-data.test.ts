/**
 * training/gen-data.ts: evaluation rows are never cut at the length cap (a cut drops the answer),
 * and --no-cut training rows are whole too; the default training mix still cuts (the shipped
 * curriculum was built that way) and says how many rows it cut.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(__dirname, '..');
const vn = join(root, 'node_modules', '.bin', 'vite-node');
const EOS = 1; // <|eos|> in models/kvscope-tiny/hf/tokenizer.json

interface Row { task: string; ids: number[]; ans: number; answer: string }

describe('gen-data row lengths', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvscope-gen-data-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const gen = (out: string, args: string[]) => {
    const log = execFileSync(vn, ['training/gen-data.ts', '--', '--out', join(dir, out), ...args], { cwd: root, encoding: 'utf8' });
    const rows = readFileSync(join(dir, out), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Row);
    return { log, rows };
  };
  const whole = (r: Row, cap: number) => r.ids.length <= cap && r.ans < r.ids.length - 1 && r.ids.at(-1) === EOS;

  it('an evaluation grid keeps every answer, even where the length search overshoots (4-key NIAH, seed 3002)', () => {
    // Row 30 of this grid needed more than 20 tries to fit; it used to be cut at 1024 tokens, answer gone.
    const { rows } = gen('niah.jsonl', ['--task', 'niah', '--tokens', '1024', '--depths', '10', '--per-depth', '10', '--split', 'heldout', '--seed', '3002', '--opts', '{"keys":4}']);
    expect(rows).toHaveLength(100);
    const bad = rows.map((r, i) => [i, r] as const).filter(([, r]) => !whole(r, 1024)).map(([i]) => i);
    expect(bad).toEqual([]);
  }, 60_000);

  it('training rows: cut at the cap by default (and counted), whole with --no-cut', () => {
    const args = ['--seed', '11', '--n', '200', '--min-tokens', '24', '--max-tokens', '64'];
    const cut = gen('cut.jsonl', args);
    const nCut = cut.rows.filter((r) => r.task !== 'text' && !whole(r, 64)).length;
    expect(nCut).toBeGreaterThan(0);
    expect(cut.log).toContain(`(${nCut} training rows cut at the cap, answer lost)`);
    const kept = gen('nocut.jsonl', [...args, '--no-cut']);
    expect(kept.rows).toHaveLength(200);
    expect(kept.rows.filter((r) => r.task !== 'text' && !whole(r, 64))).toEqual([]);
    expect(kept.log).toMatch(/\(\d+ rows that did not fit dropped and redrawn\)/);
  }, 60_000);
});
