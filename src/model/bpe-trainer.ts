/**
 * Builds small byte-level BPE `tokenizer.json` files (GPT-2 / Llama 3 / Qwen2 style) for
 * tests, benchmarks and random-weight models, so nothing has to be downloaded. Training is
 * the textbook greedy pair merge over pre-tokenized words; ties break by the pair's string.
 */

/** GPT-2's byte -> printable-character map used by ByteLevel pre-tokenizers and decoders. */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const map = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    map[b] = printable.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++);
  }
  return map;
}

/** GPT-2's pre-tokenization pattern (what ByteLevel with use_regex splits on). */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export interface ByteLevelBpeOptions {
  /** Text to learn merges from. */
  corpus: string;
  /** Total ids including the 256 byte tokens and the special tokens. Filler tokens pad up to it. */
  vocabSize: number;
  /** Special tokens, given ids right after the learned vocabulary (e.g. ['<|bos|>', '<|eos|>']). */
  specialTokens?: string[];
  /** Which special token the post-processor puts first (HF add_special_tokens=True). */
  bosToken?: string;
  eosToken?: string;
  /** Chat template stored in tokenizer_config.json. */
  chatTemplate?: string;
}

export interface ByteLevelBpeFiles {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
}

/** Trains a byte-level BPE tokenizer on `corpus` and returns HF tokenizer files. */
export function trainByteLevelBpe(options: ByteLevelBpeOptions): ByteLevelBpeFiles {
  const specials = options.specialTokens ?? [];
  const byteChars = bytesToUnicode();
  const encoder = new TextEncoder();
  const learnable = options.vocabSize - 256 - specials.length;
  if (learnable < 0) throw new RangeError(`vocabSize ${options.vocabSize} is smaller than 256 bytes + ${specials.length} special tokens.`);

  // Word -> frequency, each word as a list of symbols (byte characters).
  const freq = new Map<string, number>();
  for (const m of options.corpus.matchAll(GPT2_SPLIT)) {
    const word = [...encoder.encode(m[0])].map((b) => byteChars[b]!).join('\u0000');
    freq.set(word, (freq.get(word) ?? 0) + 1);
  }
  const words = [...freq].map(([w, n]) => ({ symbols: w.split('\u0000'), n }));

  const vocab = new Map<string, number>();
  for (let b = 0; b < 256; b++) vocab.set(byteChars[b]!, b);
  const merges: string[] = [];
  while (merges.length < learnable) {
    const pairs = new Map<string, number>();
    for (const { symbols, n } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = symbols[i] + ' ' + symbols[i + 1];
        pairs.set(key, (pairs.get(key) ?? 0) + n);
      }
    }
    let best: string | undefined;
    let bestCount = 1; // a pair seen once is not worth a merge
    for (const [key, count] of pairs) {
      if (count > bestCount || (count === bestCount && best !== undefined && key < best)) {
        best = key;
        bestCount = count;
      }
    }
    if (best === undefined) break;
    const [a, b] = best.split(' ') as [string, string];
    const merged = a + b;
    merges.push(best);
    if (!vocab.has(merged)) vocab.set(merged, vocab.size);
    for (const w of words) {
      const s = w.symbols;
      const out: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(merged);
          i++;
        } else out.push(s[i]!);
      }
      w.symbols = out;
    }
  }
  // Pad to the requested size with tokens no merge produces (decodable, never encoded).
  for (let k = 0; vocab.size < options.vocabSize - specials.length; k++) {
    const filler = `${byteChars[0x7e]}${byteChars[0x7e]}${k.toString(36)}`;
    if (!vocab.has(filler)) vocab.set(filler, vocab.size);
  }
  const addedTokens = specials.map((content, i) => ({
    id: vocab.size + i,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const idOf = (t: string) => addedTokens.find((a) => a.content === t)?.id;
  const bosId = options.bosToken !== undefined ? idOf(options.bosToken) : undefined;

  const tokenizerJson: Record<string, unknown> = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor:
      bosId !== undefined
        ? {
            type: 'TemplateProcessing',
            single: [{ SpecialToken: { id: options.bosToken, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
            pair: [
              { SpecialToken: { id: options.bosToken, type_id: 0 } },
              { Sequence: { id: 'A', type_id: 0 } },
              { Sequence: { id: 'B', type_id: 1 } },
            ],
            special_tokens: { [options.bosToken!]: { id: options.bosToken, ids: [bosId], tokens: [options.bosToken] } },
          }
        : { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(vocab),
      merges,
    },
  };
  const tokenizerConfig: Record<string, unknown> = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    clean_up_tokenization_spaces: false,
    model_max_length: 1_000_000,
    added_tokens_decoder: Object.fromEntries(addedTokens.map((t) => [String(t.id), { ...t, id: undefined }])),
  };
  if (options.bosToken !== undefined) tokenizerConfig['bos_token'] = options.bosToken;
  if (options.eosToken !== undefined) tokenizerConfig['eos_token'] = options.eosToken;
  if (options.chatTemplate !== undefined) tokenizerConfig['chat_template'] = options.chatTemplate;
  return { tokenizerJson, tokenizerConfig };
}
