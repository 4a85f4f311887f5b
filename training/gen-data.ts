/**
 * Emit tokenized training / evaluation samples as JSON lines for train.py and eval.py.
 *
 * Training mix (tasks and plain text, plain-prompt and chat formats):
 *   npx vite-node training/gen-data.ts -- --out training/data/train-256.jsonl --seed 1 \
 *     --n 20000 --min-tokens 96 --max-tokens 256
 *   (--no-cut: a row that does not fit its length is redrawn instead of cut at the cap, answer lost)
 * Held-out text for bits per byte: --task text --filler brown --tokens 1024 --n 20 --split heldout
 * Evaluation grid (one task, fixed length, depths x samples, held-out filler):
 *   npx vite-node training/gen-data.ts -- --out training/data/eval-passkey-1024.jsonl --seed 1001 \
 *     --task passkey --tokens 1024 --depths 10 --per-depth 10 --split heldout
 *
 * Each line: {"task", "fmt": "plain"|"chat"|"text", "ids": [...], "ans": k, "answer", "meta"};
 * ids[:ans] is the prompt, ids[ans:] the answer (followed by <|eos|>). Text lines have ans = 1.
 * Tokenized with @huggingface/tokenizers, the library the runtime uses.
 */
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { brownDocuments, nlpCorpusDocuments, type Split } from '../src/tasks/corpus-node';
import { TASKS, Rng, corpusFiller, repeatedFiller, type FillerSource, type TaskName, type TaskSample } from '../src/tasks/index';
import { SPECIAL_TOKENS, renderChat } from './chat-format';

function arg(name: string, dflt?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : dflt;
}
const out = arg('out')!;
if (!out) throw new Error('--out is required');
const seed = Number(arg('seed', '1'));
const split = arg('split', 'train') as Split;
const tokenizerPath = arg('tokenizer', 'models/kvscope-tiny/hf/tokenizer.json')!;
const chatShare = Number(arg('chat-share', '0.3'));
const textShare = Number(arg('text-share', '0.2'));
const evalTask = arg('task') as TaskName | undefined;
const fillerName = arg('filler'); // eval: 'repeated' | 'brown' | 'nlp'
// Training: a row that does not fit its length after 20 tries is dropped and another drawn in its
// place, instead of being cut at the cap (the default, which the shipped curriculum was built with).
const noCut = process.argv.includes('--no-cut');

const tok = new Tokenizer(JSON.parse(readFileSync(tokenizerPath, 'utf8')), {} as never);
const encode = (s: string): number[] => tok.encode(s).ids;
const BOS = encode(SPECIAL_TOKENS.bos)[0]!;
const EOS = encode(SPECIAL_TOKENS.eos)[0]!;

const brown = brownDocuments(split);
const nlp = nlpCorpusDocuments(split);
const fillers: Record<string, FillerSource> = {
  repeated: repeatedFiller(),
  brown: corpusFiller(`brown-${split}`, brown.map((d) => d.sentences)),
  nlp: corpusFiller(`nlp-corpus-${split}`, nlp.map((d) => d.sentences)),
};

/** Training mix: weights per task and which fillers each may use. */
const MIX: { task: TaskName; weight: number; fillers: string[]; opts?: (r: Rng) => Record<string, unknown> }[] = [
  { task: 'kvrecall', weight: 0.22, fillers: ['repeated'], opts: (r) => ({ shots: r.int(0, 3), keyChars: r.int(3, 5), valueDigits: r.int(3, 6) }) },
  { task: 'passkey', weight: 0.2, fillers: ['repeated', 'brown', 'nlp'], opts: (r) => ({ digits: r.int(4, 7) }) },
  { task: 'niah', weight: 0.18, fillers: ['brown', 'nlp', 'repeated'], opts: (r) => ({ keys: r.int(1, 6) }) },
  { task: 'vartrack', weight: 0.14, fillers: ['repeated', 'brown'], opts: (r) => ({ hops: r.int(2, 5), distractors: r.int(0, 2) }) },
  { task: 'copy', weight: 0.13, fillers: ['brown', 'nlp'] },
  { task: 'recurrence', weight: 0.13, fillers: ['repeated', 'brown'], opts: (r) => ({ items: r.int(2, 6), queries: r.int(3, 10) }) },
];

interface Line { task: string; fmt: string; ids: number[]; ans: number; answer: string; meta: Record<string, unknown> }

// Training rows cut at the cap, losing all or part of their answer (see taskLine).
let cutRows = 0;

// Chars per token differ per task; learn them as we go so samples land near the target.
const ratio: Record<string, number> = {};

function taskLine(rng: Rng, task: TaskName, tokens: number, fmt: 'plain' | 'chat', filler: FillerSource, extra: Record<string, unknown>, depth?: number): Line | null {
  for (let attempt = 0; ; attempt++) {
    const r = ratio[task] ?? 3.2;
    const seedForTry = rng.fork();
    const gen = TASKS[task] as (rr: Rng, o: Record<string, unknown>) => TaskSample;
    const s = gen(seedForTry, { ...extra, targetChars: Math.max(40, Math.floor(tokens * r)), filler, depth });
    let promptText: string;
    let answerText: string;
    if (fmt === 'chat') {
      const c = renderChat(s.messages);
      promptText = c.prompt;
      answerText = c.completion.slice(0, -SPECIAL_TOKENS.eos.length);
    } else {
      promptText = SPECIAL_TOKENS.bos + s.prompt;
      answerText = s.answer;
    }
    const p = encode(promptText);
    const a = encode(answerText);
    const ids = [...p, ...a, EOS];
    const actual = s.prompt.length / Math.max(1, ids.length);
    ratio[task] = 0.8 * r + 0.2 * actual;
    // Eval grids must land close to the stated length; training only needs an upper bound.
    const tooShort = evalTask !== undefined && ids.length < 0.95 * tokens && attempt < 20;
    if (tooShort) {
      ratio[task] = r * (tokens / ids.length) * 0.99;
      continue;
    }
    // A training row that still does not fit after 20 tries is cut to the cap, as the shipped curriculum
    // was built (the cut drops the answer, so the trainer sees plain task text; counted and reported),
    // or with --no-cut dropped for the caller to redraw. An evaluation row is never cut: past 20 tries
    // a short row is accepted (tooShort), so the ratio only shrinks from here until a row fits.
    if (ids.length > tokens && evalTask === undefined && attempt >= 20) {
      if (noCut) return null;
      ids.length = tokens;
      cutRows++;
    }
    if (ids.length <= tokens) {
      const { depth: d, ...rest } = s.meta;
      return { task, fmt, ids, ans: p.length, answer: s.answer, meta: { depth: d, filler: filler.name, ...(evalTask ? rest : {}) } };
    }
    if (attempt >= 200) throw new Error(`gen-data: no ${task} row of at most ${tokens} tokens in 200 tries`);
    ratio[task] = r * (tokens / ids.length) * 0.97;
  }
}

function textLine(rng: Rng, tokens: number, only?: FillerSource): Line {
  const source = only ?? (rng.next() < 0.6 ? fillers.brown! : fillers.nlp!);
  const text = source.sentences(rng, Math.floor(tokens * 3.6)).join(' ');
  const ids = [BOS, ...encode(text)].slice(0, tokens);
  return { task: 'text', fmt: 'text', ids, ans: 1, answer: '', meta: { filler: source.name } };
}

mkdirSync(dirname(out), { recursive: true });
const stream = createWriteStream(out);
const rng = new Rng(seed);
let count = 0;
let totalTokens = 0;
let dropped = 0;
const write = (l: Line | null) => {
  if (!l) throw new Error('gen-data: an evaluation row did not fit');
  stream.write(JSON.stringify(l) + '\n');
  count++;
  totalTokens += l.ids.length;
};

if ((evalTask as string) === 'text') {
  // Plain-text evaluation (bits per byte): --n chunks of --tokens tokens from one corpus.
  const tokens = Number(arg('tokens', '1024'));
  const n = Number(arg('n', '20'));
  const filler = fillers[fillerName ?? 'brown']!;
  for (let i = 0; i < n; i++) write(textLine(rng.fork(), tokens, filler));
} else if (evalTask) {
  // Evaluation grid: fixed length, evenly spaced depths, fixed format.
  const tokens = Number(arg('tokens', '1024'));
  const depths = Number(arg('depths', '10'));
  const perDepth = Number(arg('per-depth', '10'));
  const fmt = (arg('fmt', 'plain') as 'plain' | 'chat');
  const filler = fillers[fillerName ?? (evalTask === 'passkey' || evalTask === 'vartrack' ? 'repeated' : 'brown')]!;
  const extra = JSON.parse(arg('opts', '{}')!) as Record<string, unknown>;
  for (let d = 0; d < depths; d++) {
    const depth = depths === 1 ? 0.5 : d / (depths - 1);
    for (let k = 0; k < perDepth; k++) write(taskLine(rng.fork(), evalTask, tokens, fmt, filler, extra, depth));
  }
} else {
  const n = Number(arg('n', '1000'));
  const minTokens = Number(arg('min-tokens', '64'));
  const maxTokens = Number(arg('max-tokens', '256'));
  const totalWeight = MIX.reduce((a, m) => a + m.weight, 0);
  for (let i = 0; i < n; i++) {
    const r = rng.fork();
    const tokens = r.int(minTokens, maxTokens);
    if (r.next() < textShare) {
      write(textLine(r, tokens));
      continue;
    }
    let u = r.next() * totalWeight;
    const m = MIX.find((x) => (u -= x.weight) < 0) ?? MIX[0]!;
    const fmt = r.next() < chatShare ? 'chat' : 'plain';
    const line = taskLine(r, m.task, tokens, fmt, fillers[r.pick(m.fillers)]!, m.opts?.(r) ?? {});
    if (!line) {
      dropped++;
      i--;
      continue;
    }
    write(line);
  }
}
stream.end(() => console.log(`wrote ${count} samples, ${totalTokens} tokens to ${out}` + (cutRows ? ` (${cutRows} training rows cut at the cap, answer lost)` : '') +
  (dropped ? ` (${dropped} rows that did not fit dropped and redrawn)` : '')));
