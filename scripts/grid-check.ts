/**
 * kvscope vs PyTorch on the bundled model's evaluation grids (issue: "PyTorch and kvscope give
 * the same greedy answers"): every prompt that `training/eval.py --greedy-out F` decoded is
 * decoded again by the kvscope runtime (Node + Dawn, full cache, greedy, as many tokens as the
 * answer) and the two token sequences are compared (up to the first <|eos|>).
 *
 *   /usr/bin/python3 training/eval.py --tasks passkey-512,niah4-1024 --every 10 --tasks-only --greedy-out /tmp/g.json
 *   npx vite-node scripts/grid-check.ts -- --greedy /tmp/g.json [--model models/kvscope-tiny/hf] [--out eval-results/grid-check.json]
 *
 * Prints per task: prompts, kvscope exact-match accuracy, PyTorch accuracy, and agreement, and the
 * evaluation harness's score of kvscope's answers (`src/eval/scorers.ts`: for variable tracking the
 * share of the chain's names, RULER's string_match_all; for the number tasks whether the number
 * appears in the answer).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Engine } from '../src/engine/engine';
import { Gpu } from '../src/gpu/device';
import { loadModel } from '../src/model/weights';
import { SCORERS } from '../src/eval/scorers';
import type { TaskName } from '../src/tasks/index';
import { sarg } from './args';

const GREEDY = sarg('greedy', '');
if (!GREEDY) throw new Error('--greedy FILE is required (written by training/eval.py --greedy-out FILE)');
const MODEL = resolve(sarg('model', 'models/kvscope-tiny/hf'));
const DATA = resolve(sarg('data', 'training/data'));
const OUT = sarg('out', 'eval-results/grid-check.json');

const torchRows = JSON.parse(readFileSync(GREEDY, 'utf8')) as Record<string, { index: number; ids: number[]; ok: boolean }[]>;
const gpu = await Gpu.create();
const model = await loadModel(MODEL);
const engine = await Engine.load({ model, gpu, contextLength: 2048 });

// The engine stops at the config's EOS ids; PyTorch's decode ran on, so cut both there.
const eos = new Set(model.config.eosTokenIds);
const untilEos = (ids: number[]) => {
  const end = ids.findIndex((id) => eos.has(id));
  return end < 0 ? ids : ids.slice(0, end);
};
const report: Record<string, unknown> = {};
let agreeAll = 0;
let nAll = 0;
for (const [task, rows] of Object.entries(torchRows)) {
  const grid = readFileSync(resolve(DATA, `eval-${task}.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { ids: number[]; ans: number; task: TaskName; answer: string });
  let agree = 0;
  let okK = 0;
  let okT = 0;
  let harness = 0;
  const diffs: unknown[] = [];
  const t0 = Date.now();
  for (const r of rows) {
    const s = grid[r.index]!;
    const nAns = s.ids.length - 1 - s.ans;
    const want = s.ids.slice(s.ans, s.ans + nAns);
    engine.reset();
    const out = await engine.generateText(s.ids.slice(0, s.ans), { maxTokens: nAns });
    const k = untilEos(out.ids);
    harness += SCORERS[s.task].score(out.text, s.answer);
    const t = untilEos(r.ids);
    const same = k.length === t.length && k.every((v, i) => v === t[i]);
    agree += +same;
    okK += +(k.length === want.length && k.every((v, i) => v === want[i]));
    okT += +r.ok;
    if (!same) diffs.push({ index: r.index, kvscope: k, pytorch: t });
  }
  agreeAll += agree;
  nAll += rows.length;
  report[task] = { prompts: rows.length, kvscopeAccuracy: okK / rows.length, kvscopeHarnessScore: harness / rows.length, pytorchAccuracy: okT / rows.length, agreement: agree / rows.length, diffs };
  console.log(`${task}: ${rows.length} prompts, kvscope ${((100 * okK) / rows.length).toFixed(1)}%, PyTorch ${((100 * okT) / rows.length).toFixed(1)}%, ` +
    `harness score (kvscope) ${((100 * harness) / rows.length).toFixed(1)}%, ` +
    `same greedy answer ${agree}/${rows.length} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
}
console.log(`all: same greedy answer on ${agreeAll}/${nAll} = ${((100 * agreeAll) / Math.max(1, nAll)).toFixed(1)}%`);
report.all = { prompts: nAll, agreement: agreeAll / Math.max(1, nAll) };
mkdirSync(dirname(resolve(OUT)), { recursive: true });
writeFileSync(OUT, JSON.stringify(report, null, 1));
engine.unload();
