import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { textBitsPerByte, tokenByteLengths } from '../../src/metrics/bits-per-byte';
import { trainByteLevelBpe } from '../../src/model/bpe-trainer';
import { Tokenizer } from '../../src/model/tokenizer';
import { Engine } from '../../src/engine/engine';
import { ReferenceModel } from '../../src/reference/forward';
import { InvalidArgumentError } from '../../src/errors';
import { rng, testGpu } from '../gpu';
import { f32Weights, loaded, randomWeights, smolLike } from '../engine/fixtures';

const CORPUS = [
  'The quick brown fox jumps over the lazy dog. Café, naïve, façade — «quoted».',
  'Numbers like 12345 and 678; 你好，世界。 Emoji 😀 and 🎉.',
].join('\n').repeat(4);

describe('token byte lengths (byte-level BPE)', () => {
  // '<|✓|>': a special token whose text is outside the byte map (5 characters, 7 UTF-8 bytes)
  const { tokenizerJson, tokenizerConfig } = trainByteLevelBpe({ corpus: CORPUS, vocabSize: 380, specialTokens: ['<|bos|>', '<|eos|>', '<|✓|>'], bosToken: '<|bos|>', eosToken: '<|eos|>' });
  const tok = new Tokenizer(tokenizerJson, tokenizerConfig);
  const lens = tokenByteLengths(tokenizerJson);

  it('sums to the UTF-8 length of the encoded text (multi-byte characters split across tokens included)', () => {
    for (const text of [CORPUS, 'façade 😀 你好 plain ascii', 'unseen: Ωmega ∑ ✓ 🎉🎉']) {
      const ids = tok.encode(text, { addBos: false });
      const sum = ids.reduce((a, id) => a + lens[id]!, 0);
      expect(sum).toBe(new TextEncoder().encode(text).length);
    }
  });

  it('counts a special token by its text and refuses a vocabulary that is not byte-level', () => {
    expect(lens[tok.tokenToId('<|eos|>')!]).toBe('<|eos|>'.length);
    expect(lens[tok.tokenToId('<|✓|>')!]).toBe(7);
    expect(() => tokenByteLengths({ model: { vocab: { 'a': 0, '\u4f60': 1 } } })).toThrow(InvalidArgumentError);
    expect(() => tokenByteLengths({})).toThrow(InvalidArgumentError);
  });

  it('the bundled tokenizer: 256 single-byte tokens and no unnamed id below the vocabulary size', () => {
    const tj = JSON.parse(readFileSync('models/kvscope-tiny/hf/tokenizer.json', 'utf8'));
    const l = tokenByteLengths(tj);
    expect(l.length).toBe(4096);
    expect(l.filter((n) => n === 1).length).toBeGreaterThanOrEqual(256);
    expect(l.every((n) => n >= 1)).toBe(true);
  });
});

describe('bits per byte through the engine vs the reference forward', () => {
  it('agrees with the plain-TypeScript reference to 1e-4 relative, and rejects bad rows', async () => {
    const weights = randomWeights(smolLike, 'f32', 71);
    const engine = await Engine.load({ model: loaded(smolLike, weights), gpu: await testGpu(), contextLength: 64, prefillChunk: 16 });
    const r = rng(5);
    const rows = [24, 17].map((n) => Array.from({ length: n }, () => Math.floor(r() * smolLike.vocabSize)));
    // Byte lengths 1..4 by id, so that a wrong pairing of token and bytes moves the figure.
    const lens = Int32Array.from({ length: smolLike.vocabSize }, (_, i) => 1 + (i % 4));
    let seen = 0;
    const got = await textBitsPerByte(engine, rows, lens, (done) => { seen = done; });
    expect(seen).toBe(2);

    // One row through a fresh reference model: summed next-token cross-entropy (nats) and bytes.
    const refRow = (ids: number[]) => {
      const ref = new ReferenceModel(smolLike, f32Weights(weights), 64);
      let n = 0;
      let b = 0;
      for (let i = 0; i + 1 < ids.length; i++) {
        const logits = ref.forward(ids[i]!, i);
        let max = -Infinity;
        for (const v of logits) max = Math.max(max, v);
        let s = 0;
        for (const v of logits) s += Math.exp(v - max);
        n += max + Math.log(s) - logits[ids[i + 1]!]!;
        b += lens[ids[i + 1]!]!;
      }
      return { nats: n, bytes: b };
    };
    const refRows = rows.map(refRow);
    const nats = refRows.reduce((a, x) => a + x.nats, 0);
    const bytes = refRows.reduce((a, x) => a + x.bytes, 0);
    expect(got.tokens).toBe(23 + 16);
    expect(got.bytes).toBe(bytes);
    expect(Math.abs(got.nats - nats) / nats).toBeLessThan(1e-4);
    expect(got.bitsPerByte).toBeCloseTo(nats / Math.LN2 / bytes, 4);
    // a random model is near uniform: log2(vocab) bits per token over ~2.5 bytes per token
    expect(got.bitsPerByte).toBeGreaterThan(0.8 * Math.log2(smolLike.vocabSize) / 2.5);

    // Refusals, each after a good row has run on the GPU: a one-token row, an id past the
    // vocabulary (as context or as a target), no rows, a byte table that lacks an id.
    for (const bad of [[1], [1, smolLike.vocabSize + 3], [smolLike.vocabSize, 1]]) {
      await expect(textBitsPerByte(engine, [rows[1]!, bad], lens)).rejects.toThrow(InvalidArgumentError);
    }
    await expect(textBitsPerByte(engine, [], lens)).rejects.toThrow(InvalidArgumentError);
    const short = lens.slice(0, 10);
    await expect(textBitsPerByte(engine, [[1, 2, 3, 50]], short)).rejects.toThrow(InvalidArgumentError);
    // still usable after the refusals, and the same figure as the first run's second row
    const again = await textBitsPerByte(engine, rows.slice(1), lens);
    expect(again.tokens).toBe(16);
    const nats1 = refRows[1]!.nats;
    expect(Math.abs(again.nats - nats1) / nats1).toBeLessThan(1e-4);

    // A policy chosen with setPolicy applies to the next figure: StreamingLLM with a budget of
    // 12 gives what an engine loaded with that policy gives, and not the full cache's figure.
    const streaming = { name: 'streaming', budget: 12, params: { sinks: 2 } };
    engine.setPolicy(streaming);
    const viaSet = await textBitsPerByte(engine, rows, lens);
    const direct = await Engine.load({ model: loaded(smolLike, weights), gpu: await testGpu(), contextLength: 64, prefillChunk: 16, policy: streaming });
    const viaLoad = await textBitsPerByte(direct, rows, lens);
    expect(Math.abs(viaSet.nats - viaLoad.nats)).toBeLessThan(1e-6 * viaLoad.nats);
    expect(Math.abs(viaSet.nats - got.nats)).toBeGreaterThan(1e-3 * got.nats);
    direct.unload();
    engine.unload();
  });
});
