/**
 * Held-out Brown bits per byte of the bundled model under the kvscope runtime (Node + Dawn, full
 * cache, teacher-forced through the decode path), next to PyTorch's figure for the same text
 * (`training/eval.py` writes it to training/eval-results.json as brown_heldout_bpb).
 *
 *   npx vite-node scripts/bpb.ts -- [--model models/kvscope-tiny/hf] [--data training/data/eval-text-brown-1024.jsonl]
 *       [--rows N] [--torch training/eval-results.json] [--out eval-results/bpb.json]
 *
 * The rows are the grid's token ids as written by training/gen-data.ts (BOS + up to 1023 text tokens);
 * every token after the first is scored, as eval.py scores it.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Engine } from '../src/engine/engine';
import { Gpu } from '../src/gpu/device';
import { loadModel } from '../src/model/weights';
import { textBitsPerByte, tokenByteLengths } from '../src/metrics/bits-per-byte';
import { sarg } from './args';

const MODEL = resolve(sarg('model', 'models/kvscope-tiny/hf'));
const DATA = resolve(sarg('data', 'training/data/eval-text-brown-1024.jsonl'));
const TORCH = sarg('torch', 'training/eval-results.json');
const OUT = sarg('out', 'eval-results/bpb.json');
const ROWS = Number(sarg('rows', '0'));
if (!existsSync(DATA)) throw new Error(`${DATA} not found: run training/gen-all.sh eval (the evaluation grids) first.`);
if (!Number.isInteger(ROWS) || ROWS < 0) throw new Error(`--rows must be a whole number >= 0 (0 = all), got ${sarg('rows', '')}.`);

let rows = readFileSync(DATA, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { ids: number[] }).ids);
if (ROWS > 0) rows = rows.slice(0, ROWS);
const gpu = await Gpu.create();
const model = await loadModel(MODEL);
const maxLen = Math.max(...rows.map((r) => r.length));
const engine = await Engine.load({ model, gpu, contextLength: Math.max(maxLen, 64) });
const lens = tokenByteLengths(model.tokenizerJson);
const t0 = Date.now();
const res = await textBitsPerByte(engine, rows, lens, (done, total, p) => {
  process.stderr.write(`\r${done}/${total} rows, ${p.tokens} tokens, ${p.bitsPerByte.toFixed(4)} bits per byte so far, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
});
process.stderr.write('\n');
const seconds = (Date.now() - t0) / 1000;
// PyTorch's figure is compared only when it was taken over the same bytes (eval.py --quick
// scores 10 rows; another --data file holds other text).
let torch: number | undefined;
let torchNote = '';
if (existsSync(TORCH)) {
  const j = JSON.parse(readFileSync(TORCH, 'utf8')) as { brown_heldout_bpb?: number; brown_heldout_bytes?: number; brown_heldout_rows?: number };
  if (j.brown_heldout_bpb === undefined) torchNote = `${TORCH} has no brown_heldout_bpb`;
  else if (j.brown_heldout_bytes !== res.bytes || j.brown_heldout_rows !== res.rows) torchNote = `${TORCH}'s figure covers ${j.brown_heldout_rows ?? '?'} rows / ${j.brown_heldout_bytes ?? '?'} bytes, not these ${res.rows} / ${res.bytes}: not compared`;
  else torch = j.brown_heldout_bpb;
}
console.log(`held-out Brown (kvscope, ${res.rows} rows, ${res.tokens} tokens, ${res.bytes} bytes): ${res.bitsPerByte.toFixed(4)} bits per byte (${seconds.toFixed(0)} s)`);
if (torchNote) console.log(torchNote);
if (torch !== undefined) {
  console.log(`PyTorch (${TORCH}): ${torch.toFixed(4)} bits per byte; kvscope - PyTorch = ${(res.bitsPerByte - torch).toExponential(2)} (${(((res.bitsPerByte - torch) / torch) * 100).toFixed(3)}%)`);
}
mkdirSync(dirname(resolve(OUT)), { recursive: true });
writeFileSync(OUT, JSON.stringify({ model: MODEL, data: DATA, ...res, seconds, pytorchBitsPerByte: torch ?? null }, null, 1));
engine.unload();
