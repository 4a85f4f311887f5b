/**
 * Train kvscope-tiny's byte-level BPE tokenizer with Hugging Face `tokenizers` (native
 * binding, installed in training/tokenizer/ only) and write `tokenizer.json`.
 *
 *   (cd training/tokenizer && npm install)
 *   npx vite-node training/tokenizer/train-tokenizer.ts -- --out models/kvscope-tiny/hf --vocab 4096
 *
 * The Node binding trains with BpeTrainer's defaults (it exposes no trainer options), i.e. up
 * to 30000 tokens. BPE training is greedy, so the first K merges of that run are exactly the
 * merges a run stopped at a smaller vocabulary would learn; we keep the first K so that
 * special tokens + the 256 byte symbols + K merges = --vocab, and re-number the vocabulary
 * (specials first, then bytes, then merges in order). The result is checked to round-trip.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { brownDocuments, nlpCorpusDocuments } from '../../src/tasks/corpus-node';
import { TASKS, Rng, corpusFiller, repeatedFiller } from '../../src/tasks/index';
import { SPECIAL_TOKENS } from '../chat-format';

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-require-imports
const hf = require('tokenizers') as typeof import('tokenizers');

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const outDir = arg('out', 'models/kvscope-tiny/hf');
const vocabSize = Number(arg('vocab', '4096'));
const seed = Number(arg('seed', '7'));

/** GPT-2's byte -> printable-unicode table, in byte order (what ByteLevel pre-tokenizes into). */
function byteLevelAlphabet(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = keep.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + extra++);
  }
  return table;
}

const preTokenizer = {
  type: 'Sequence',
  pretokenizers: [
    // Every digit its own piece: pass keys and values become digit tokens.
    { type: 'Digits', individual_digits: true },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
  ],
};
const decoder = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };

// 1. Training text: the training split of both corpora plus task samples (so cue phrases
//    such as " pass key" and " special magic number" get their own tokens).
const lines: string[] = [];
const brown = brownDocuments('train');
const nlp = nlpCorpusDocuments('train');
for (const d of [...brown, ...nlp]) lines.push(d.sentences.join(' '));
const rng = new Rng(seed);
const fillers = [repeatedFiller(), corpusFiller('brown', brown.map((d) => d.sentences))];
for (let i = 0; i < 600; i++) {
  for (const gen of Object.values(TASKS)) {
    const s = (gen as (r: Rng, o: { targetChars: number; filler: (typeof fillers)[number] }) => { prompt: string; answer: string; messages: { content: string }[] })(
      rng, { targetChars: 400, filler: rng.pick(fillers) });
    lines.push(s.prompt + s.answer);
    lines.push(s.messages.map((m) => m.content).join('\n'));
  }
}
const corpusFile = join(tmpdir(), `kvscope-tok-${process.pid}.txt`);
writeFileSync(corpusFile, lines.join('\n'));

// 2. Train with the native trainer.
const base = {
  version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null,
  pre_tokenizer: preTokenizer, post_processor: null, decoder,
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab: {}, merges: [] },
};
const trainer = hf.Tokenizer.fromString(JSON.stringify(base));
trainer.train([corpusFile]);
const trainedFile = join(tmpdir(), `kvscope-tok-${process.pid}.json`);
trainer.save(trainedFile);
const trained = JSON.parse(require('node:fs').readFileSync(trainedFile, 'utf8'));
const rawMerges: (string | [string, string])[] = trained.model.merges;
const merges: [string, string][] = rawMerges.map((m) => (typeof m === 'string' ? (m.split(' ') as [string, string]) : m));

// 3. Re-number: specials, 256 bytes, then the first K merges.
const vocab: Record<string, number> = {};
const specials = Object.values(SPECIAL_TOKENS);
specials.forEach((t, i) => (vocab[t] = i));
for (const ch of byteLevelAlphabet()) vocab[ch] = Object.keys(vocab).length;
const kept: [string, string][] = [];
for (const [a, b] of merges) {
  if (Object.keys(vocab).length >= vocabSize) break;
  if (!(a in vocab) || !(b in vocab)) throw new Error(`merge ${a} ${b} uses an unknown token`);
  if (a + b in vocab) continue;
  vocab[a + b] = Object.keys(vocab).length;
  kept.push([a, b]);
}
if (Object.keys(vocab).length !== vocabSize) throw new Error(`only ${Object.keys(vocab).length} tokens, wanted ${vocabSize}`);

const tokenizerJson = {
  ...base,
  added_tokens: specials.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
  model: { ...base.model, vocab, merges: kept },
};
mkdirSync(outDir, { recursive: true });
const outFile = join(outDir, 'tokenizer.json');
writeFileSync(outFile, JSON.stringify(tokenizerJson));

// 4. Check: the native library and @huggingface/tokenizers (the runtime's) agree and round-trip.
const native = hf.Tokenizer.fromFile(outFile);
const { Tokenizer } = await import('@huggingface/tokenizers');
const js = new Tokenizer(tokenizerJson as never, {} as never);
const samples = [
  'The pass key is 71432. Remember it.',
  "It's 3:45 p.m. -- naïve café, 100% sure; emoji 🙂 and tabs\tand\nnewlines.",
  brownDocuments('heldout')[0]!.sentences.slice(0, 5).join(' '),
  `${SPECIAL_TOKENS.bos}${SPECIAL_TOKENS.user}\nWhat is the value of abcd?${SPECIAL_TOKENS.eos}${SPECIAL_TOKENS.assistant}\n1234${SPECIAL_TOKENS.eos}`,
];
let chars = 0, toks = 0;
for (const s of samples) {
  const a = (await native.encode(s)).getIds();
  const b = js.encode(s).ids;
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`native and JS disagree on ${JSON.stringify(s)}:\n${a}\n${b}`);
  const back = js.decode(b, { skip_special_tokens: false });
  if (back !== s) throw new Error(`round trip failed: ${JSON.stringify(s)} -> ${JSON.stringify(back)}`);
  chars += s.length; toks += b.length;
}
const held = brownDocuments('heldout').map((d) => d.sentences.join(' ')).join('\n');
const heldIds = js.encode(held.slice(0, 200000)).ids.length;
console.log(`wrote ${outFile}: vocab ${vocabSize} (${kept.length} merges of ${merges.length} trained); ` +
  `round trip OK; held-out Brown ${(200000 / heldIds).toFixed(2)} chars/token`);
console.log('pass key line ->', js.encode(' The pass key is 71432.').tokens.join(' | '));
