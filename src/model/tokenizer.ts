/**
 * Tokenizer: Hugging Face `tokenizer.json` (+ `tokenizer_config.json`) through
 * @huggingface/tokenizers, BOS/EOS from the model config, and a streaming detokenizer that
 * only ever emits complete UTF-8 text.
 */
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { ModelLoadError } from '../errors';
import { specialTokenText } from './chat-template';

export interface TokenizerOptions {
  /** BOS id from the model config; falls back to tokenizer_config's `bos_token`. */
  bosTokenId?: number;
  /** EOS ids from the model config; tokenizer_config's `eos_token` is added to them. */
  eosTokenIds?: number[];
}

export interface EncodeOptions {
  /**
   * true: prepend BOS (once); false: no special tokens at all; undefined: whatever the
   * tokenizer's own post-processor adds (HF `add_special_tokens=True`).
   */
  addBos?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens such as BOS/EOS from the text (default true). */
  skipSpecialTokens?: boolean;
}

export class Tokenizer {
  readonly bosTokenId: number | undefined;
  readonly eosTokenIds: number[];
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  private readonly hf: HfTokenizer;

  constructor(tokenizerJson: unknown, tokenizerConfig: Record<string, unknown> = {}, options: TokenizerOptions = {}) {
    if (typeof tokenizerJson !== 'object' || tokenizerJson === null) {
      throw new ModelLoadError('bad-config', 'tokenizer.json: expected a JSON object.');
    }
    try {
      this.hf = new HfTokenizer(tokenizerJson, tokenizerConfig);
    } catch (e) {
      throw new ModelLoadError('bad-config', `tokenizer.json could not be loaded: ${(e as Error).message}`, { cause: e });
    }
    this.bosToken = specialTokenText(tokenizerConfig['bos_token']);
    this.eosToken = specialTokenText(tokenizerConfig['eos_token']);
    this.bosTokenId = options.bosTokenId ?? (this.bosToken !== undefined ? this.hf.token_to_id(this.bosToken) : undefined);
    const eos = new Set(options.eosTokenIds ?? []);
    const fromConfig = this.eosToken !== undefined ? this.hf.token_to_id(this.eosToken) : undefined;
    if (fromConfig !== undefined) eos.add(fromConfig);
    this.eosTokenIds = [...eos];
  }

  /** Number of ids the tokenizer knows (vocabulary plus added tokens). */
  get vocabSize(): number {
    return this.hf.get_vocab(true).size;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    if (options.addBos === undefined) return this.hf.encode(text).ids;
    const ids = this.hf.encode(text, { add_special_tokens: false }).ids;
    if (options.addBos && this.bosTokenId !== undefined) ids.unshift(this.bosTokenId);
    return ids;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    if (ids.length === 0) return ''; // the library rejects empty input
    return this.hf.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? true });
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  isEos(id: number): boolean {
    return this.eosTokenIds.includes(id);
  }

  /** A detokenizer for one generated sequence. */
  streamDecoder(options: DecodeOptions = {}): StreamingDetokenizer {
    return new StreamingDetokenizer(this, options);
  }
}

const REPLACEMENT = '\uFFFD';

/**
 * Turns token ids, pushed one at a time, into text deltas that are always whole characters.
 * A byte-level BPE token can end mid-way through a multi-byte UTF-8 character; decoding then
 * ends in U+FFFD, so we hold the text back until a later token completes it. Decoding a
 * window that starts a few tokens back keeps tokenizers that strip a leading space
 * (SentencePiece/Metaspace) from dropping spaces between deltas.
 * The concatenated deltas equal `decode(allIds)`.
 */
export class StreamingDetokenizer {
  private ids: number[] = [];
  /** Start of the decode window. */
  private prefixOffset = 0;
  /** Tokens before this index have been emitted. */
  private readOffset = 0;

  constructor(
    private readonly tokenizer: Pick<Tokenizer, 'decode'>,
    private readonly options: DecodeOptions = {},
  ) {}

  /** Adds one token id; returns the newly completed text (possibly ''). */
  push(id: number): string {
    this.ids.push(id);
    return this.emit(false);
  }

  /** Returns whatever is still held back (e.g. at the end of generation), even if incomplete. */
  flush(): string {
    return this.emit(true);
  }

  /** All ids pushed so far. */
  get tokenIds(): readonly number[] {
    return this.ids;
  }

  private emit(final: boolean): string {
    if (this.readOffset >= this.ids.length) return '';
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset), this.options);
    const full = this.tokenizer.decode(this.ids.slice(this.prefixOffset), this.options);
    if (!final && full.endsWith(REPLACEMENT)) return '';
    // The window's text only grows at its end, unless the tokenizer rewrote the prefix; then
    // the common-prefix rule still yields the new tail.
    const delta = full.startsWith(prefix) ? full.slice(prefix.length) : full.slice(commonPrefixLength(prefix, full));
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return delta;
  }
}

function commonPrefixLength(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/** A tokenizer for a loaded model: its tokenizer files plus BOS/EOS from its config. */
export function createTokenizer(model: {
  tokenizerJson?: Record<string, unknown>;
  tokenizerConfig?: Record<string, unknown>;
  config: { bosTokenId?: number; eosTokenIds: number[] };
}): Tokenizer {
  if (!model.tokenizerJson) throw new ModelLoadError('bad-config', 'The model has no tokenizer.json.');
  const options: TokenizerOptions = { eosTokenIds: model.config.eosTokenIds };
  if (model.config.bosTokenId !== undefined) options.bosTokenId = model.config.bosTokenId;
  return new Tokenizer(model.tokenizerJson, model.tokenizerConfig ?? {}, options);
}
