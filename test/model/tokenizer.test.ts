import { describe, expect, it } from 'vitest';
import { trainByteLevelBpe, bytesToUnicode } from '../../src/model/bpe-trainer';
import { StreamingDetokenizer, Tokenizer, createTokenizer } from '../../src/model/tokenizer';

const CORPUS = [
  'The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs.',
  'Hello world! Hello there, world. It is a small world after all.',
  'Numbers like 12345 and 678 appear too, as do questions? And answers!',
  '你好，世界。今天天气很好。', // CJK appears, but rarely enough that most characters stay split into bytes
  'Emoji 😀 and 🎉 show up once or twice 😀.',
].join('\n').repeat(3);

function smallTokenizer(vocabSize = 400): Tokenizer {
  const { tokenizerJson, tokenizerConfig } = trainByteLevelBpe({
    corpus: CORPUS,
    vocabSize,
    specialTokens: ['<|bos|>', '<|eos|>'],
    bosToken: '<|bos|>',
    eosToken: '<|eos|>',
  });
  return new Tokenizer(tokenizerJson, tokenizerConfig);
}

/** Streams ids through a detokenizer, collecting each delta. */
function stream(tok: Tokenizer, ids: number[]): string[] {
  const d = tok.streamDecoder();
  const out = ids.map((id) => d.push(id));
  out.push(d.flush());
  return out;
}

const hasReplacement = (s: string) => s.includes('\uFFFD');
const isLoneSurrogateFree = (s: string) => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);

describe('byte-level BPE tokenizer (built in-test)', () => {
  const tok = smallTokenizer();

  it('has the requested vocabulary and special tokens', () => {
    expect(tok.vocabSize).toBe(400);
    expect(tok.tokenToId('<|bos|>')).toBe(398);
    expect(tok.bosTokenId).toBe(398);
    expect(tok.eosTokenIds).toEqual([399]);
  });

  it('round-trips text, including emoji and CJK', () => {
    for (const text of ['Hello world!', 'the lazy dog sleeps', '你好，世界 😀🎉 ok', '  spaces  and\ttabs\n', 'ünïcödé ½']) {
      const ids = tok.encode(text, { addBos: false });
      expect(tok.decode(ids)).toBe(text);
    }
    // Merges were learned: common words take fewer tokens than bytes.
    expect(tok.encode('the world', { addBos: false }).length).toBeLessThan('the world'.length);
  });

  it('adds BOS only when asked, and once', () => {
    const plain = tok.encode('Hello', { addBos: false });
    expect(tok.encode('Hello', { addBos: true })).toEqual([398, ...plain]);
    expect(tok.encode('Hello')).toEqual([398, ...plain]); // the tokenizer's own post-processor adds it
    expect(tok.decode([398, ...plain, 399])).toBe('Hello');
    expect(tok.decode([398, ...plain, 399], { skipSpecialTokens: false })).toBe('<|bos|>Hello<|eos|>');
  });

  it('takes BOS/EOS from the model config over tokenizer_config', () => {
    const { tokenizerJson, tokenizerConfig } = trainByteLevelBpe({ corpus: CORPUS, vocabSize: 300, specialTokens: ['<s>', '</s>', '<eot>'], bosToken: '<s>', eosToken: '</s>' });
    const t = createTokenizer({ tokenizerJson, tokenizerConfig, config: { bosTokenId: 297, eosTokenIds: [299] } });
    expect(t.bosTokenId).toBe(297);
    expect(t.eosTokenIds.sort()).toEqual([298, 299]);
    expect(t.isEos(299) && t.isEos(298) && !t.isEos(297)).toBe(true);
  });

  it('streams an emoji split over single-byte tokens without emitting half a character', () => {
    const byteIds = [...new TextEncoder().encode('a😀b')].map((b) => tok.tokenToId(bytesToUnicode()[b]!)!);
    expect(byteIds).toHaveLength(6);
    expect(stream(tok, byteIds)).toEqual(['a', '', '', '', '😀', 'b', '']);
  });

  it('streams text whose tokens split CJK and emoji characters, emitting only whole characters', () => {
    const text = 'Hi 你好，世界！😀 🎉🎉 tschüß 𝄞 done.';
    const ids = tok.encode(text, { addBos: false });
    // The test only means something if some token ends mid-character.
    expect(ids.some((id) => hasReplacement(tok.decode([id])))).toBe(true);
    const deltas = stream(tok, ids);
    expect(deltas.join('')).toBe(text);
    for (const d of deltas) {
      expect(hasReplacement(d)).toBe(false);
      expect(isLoneSurrogateFree(d)).toBe(true);
    }
    expect(deltas.filter((d) => d === '').length).toBeGreaterThan(1); // some tokens were held back
  });

  it('flushes an incomplete tail at the end and skips EOS', () => {
    const partial = [...new TextEncoder().encode('ok😀')].slice(0, 4).map((b) => tok.tokenToId(bytesToUnicode()[b]!)!);
    const d = tok.streamDecoder();
    const out = partial.map((id) => d.push(id)).join('');
    expect(out).toBe('ok');
    expect(d.flush()).toBe('\uFFFD');
    const e = tok.streamDecoder();
    expect([...tok.encode('fox', { addBos: false }), 399].map((id) => e.push(id)).join('') + e.flush()).toBe('fox');
  });
});

/** A Llama 2 / TinyLlama style SentencePiece BPE: ▁ for spaces, byte fallback, Strip decoder. */
function sentencePieceTokenizer(): Tokenizer {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  const pieces = ['▁', ...'abcdefghijklmnopqrstuvwxyz'.split(''), '▁h', '▁he', 'll', '▁hell', '▁hello', '▁w', 'or', '▁wor', 'ld', '▁world'];
  for (const p of pieces) vocab[p] = Object.keys(vocab).length;
  const merges = ['▁ h', '▁h e', 'l l', '▁he ll', '▁hell o', '▁ w', 'o r', '▁w or', 'l d', '▁wor ld'];
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab, merges },
  };
  return new Tokenizer(json, { bos_token: '<s>', eos_token: '</s>', add_bos_token: true, clean_up_tokenization_spaces: false, legacy: false }, { bosTokenId: 1, eosTokenIds: [2] });
}

describe('SentencePiece-style tokenizer (Llama 2 / TinyLlama layout)', () => {
  const tok = sentencePieceTokenizer();

  it('encodes with BOS and byte fallback, and decodes back', () => {
    const ids = tok.encode('hello world');
    expect(ids[0]).toBe(1);
    expect(ids.slice(1).map((i) => tok.idToToken(i))).toEqual(['▁hello', '▁world']);
    const cjk = tok.encode('hello 世界', { addBos: false });
    expect(cjk.map((i) => tok.idToToken(i))).toContain('<0xE4>');
    expect(tok.decode(cjk)).toBe('hello 世界');
  });

  it('streams without losing the spaces the Strip decoder removes from a lone token', () => {
    const ids = tok.encode('hello world hello 世界 world', { addBos: false });
    expect(tok.decode([ids[1]!])).toBe('world'); // decoding one token alone drops its space
    const deltas = stream(tok, ids);
    expect(deltas.join('')).toBe('hello world hello 世界 world');
    expect(deltas.some((d) => d === ' world')).toBe(true);
    for (const d of deltas) expect(hasReplacement(d)).toBe(false);
  });
});

describe('StreamingDetokenizer with any decode function', () => {
  it('holds back text ending in U+FFFD and emits it once complete', () => {
    // A fake tokenizer whose ids are UTF-8 bytes.
    const fake = { decode: (ids: readonly number[]) => new TextDecoder().decode(new Uint8Array(ids)) };
    const d = new StreamingDetokenizer(fake);
    const bytes = [...new TextEncoder().encode('é€𝄞x')];
    const out = bytes.map((b) => d.push(b));
    expect(out).toEqual(['', 'é', '', '', '€', '', '', '', '𝄞', 'x']);
    expect(d.tokenIds).toEqual(bytes);
  });
});
