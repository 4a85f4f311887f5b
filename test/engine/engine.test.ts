import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine';
import { ReferenceModel } from '../../src/reference/forward';
import { ContextOverflowError, InvalidArgumentError } from '../../src/errors';
import type { ModelConfig } from '../../src/model/config';
import { Gpu } from '../../src/gpu/device';
import { testGpu, rng } from '../gpu';
import { argmax, f32Weights, llama3Like, loaded, qwenLike, randomWeights, smolLike, top2Margin } from './fixtures';

function randomTokens(n: number, vocab: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r() * vocab));
}

/**
 * 64 teacher-forced decode steps against the reference: max |logit difference| within `tol`,
 * and the same argmax wherever the reference's top-2 margin exceeds 10x the tolerance.
 */
async function checkTeacherForced(config: ModelConfig, dtype: 'f32' | 'f16' | 'bf16', tol: number, seed: number, device?: Gpu) {
  const weights = randomWeights(config, dtype, seed);
  const gpu = device ?? (await testGpu());
  const engine = await Engine.load({ model: loaded(config, weights), gpu, contextLength: 128, prefillChunk: 16 });
  const ref = new ReferenceModel(config, f32Weights(weights), 128);
  const tokens = randomTokens(64, config.vocabSize, seed + 1);
  const got = await engine.teacherForce(tokens);
  let maxDiff = 0;
  let argmaxChecked = 0;
  for (let i = 0; i < tokens.length; i++) {
    const want = ref.forward(tokens[i]!, i);
    for (let j = 0; j < want.length; j++) maxDiff = Math.max(maxDiff, Math.abs(want[j]! - got[i]![j]!));
    if (top2Margin(want) > 10 * tol) {
      argmaxChecked++;
      expect(argmax(got[i]!)).toBe(argmax(want));
    }
  }
  expect(maxDiff).toBeLessThanOrEqual(tol);
  return { maxDiff, argmaxChecked, engine, weights, ref };
}

describe('engine vs reference forward (teacher forcing, 64 steps)', () => {
  it('SmolLM2-shaped (tied, GQA 3:1), f32 weights: max |dlogit| <= 1e-3', async () => {
    const { maxDiff, argmaxChecked } = await checkTeacherForced(smolLike, 'f32', 1e-3, 11);
    console.log(`smol f32 max|dlogit| = ${maxDiff.toExponential(2)}, argmax checked on ${argmaxChecked}/64 steps`);
    expect(argmaxChecked).toBeGreaterThan(16);
  });
  it('Qwen2-shaped (QKV bias, GQA 2:1, untied), f32 weights: max |dlogit| <= 1e-3', async () => {
    const { maxDiff, argmaxChecked } = await checkTeacherForced(qwenLike, 'f32', 1e-3, 12);
    console.log(`qwen f32 max|dlogit| = ${maxDiff.toExponential(2)}, argmax checked on ${argmaxChecked}/64`);
  });
  it('SmolLM2-shaped, f16 weights: max |dlogit| <= 2e-2', async () => {
    const { maxDiff } = await checkTeacherForced(smolLike, 'f16', 2e-2, 13);
    console.log(`smol f16 max|dlogit| = ${maxDiff.toExponential(2)}`);
  });
  it('Qwen2-shaped, f16 weights: max |dlogit| <= 2e-2', async () => {
    const { maxDiff } = await checkTeacherForced(qwenLike, 'f16', 2e-2, 14);
    console.log(`qwen f16 max|dlogit| = ${maxDiff.toExponential(2)}`);
  });
  it('Llama 3-shaped (llama3 rope scaling, MQA, head_dim 64), bf16 weights', async () => {
    const { maxDiff } = await checkTeacherForced(llama3Like, 'bf16', 2e-2, 15);
    console.log(`llama3 bf16 max|dlogit| = ${maxDiff.toExponential(2)}`);
  });
});

describe("projections stored transposed (weightLayout 'kn', what lavapipe gets)", () => {
  it('teacher forcing (tied and untied LM heads) and chunked prefill follow the reference', async () => {
    const gpu = await Gpu.create({ weightLayout: 'kn' });
    try {
      expect(gpu.weightLayout).toBe('kn');
      // Qwen2-shaped: QKV bias, untied LM head (a 'kn' matvec); SmolLM2-shaped f16: tied head.
      const q = await checkTeacherForced(qwenLike, 'f32', 1e-3, 31, gpu);
      const s = await checkTeacherForced(smolLike, 'f16', 2e-2, 32, gpu);
      console.log(`'kn' layout: qwen f32 max|dlogit| = ${q.maxDiff.toExponential(2)}, smol f16 ${s.maxDiff.toExponential(2)}`);
      // Chunked prefill (GEMMs; 40-row chunks, past the 16 rows where CPU attention takes 2 rows
      // per invocation) on a fresh engine against a fresh reference (the reference keeps a cache).
      const prompt = randomTokens(45, qwenLike.vocabSize, 33);
      const engine = await Engine.load({ model: loaded(qwenLike, q.weights), gpu, contextLength: 128, prefillChunk: 40 });
      const logits = await engine.prefillLogits(prompt);
      const last = new ReferenceModel(qwenLike, f32Weights(q.weights), 128).forwardAll(prompt).at(-1)!;
      let d = 0;
      for (let j = 0; j < last.length; j++) d = Math.max(d, Math.abs(last[j]! - logits[j]!));
      expect(d).toBeLessThan(1e-3);
      engine.unload();
      q.engine.unload();
      s.engine.unload();
    } finally {
      gpu.destroy();
    }
  });
});

describe('chunked prefill, cache reuse and generation', () => {
  it('chunked prefill gives the reference logits and greedy generation follows the reference', async () => {
    const gpu = await testGpu();
    const weights = randomWeights(qwenLike, 'f32', 21);
    const engine = await Engine.load({ model: loaded(qwenLike, weights), gpu, contextLength: 256, prefillChunk: 16 });
    const ref = new ReferenceModel(qwenLike, f32Weights(weights), 256);
    const prompt = randomTokens(45, qwenLike.vocabSize, 22); // 16 + 16 + 13
    const logits = await engine.prefillLogits(prompt);
    const refLogits = ref.forwardAll(prompt);
    let d = 0;
    const last = refLogits[refLogits.length - 1]!;
    for (let j = 0; j < last.length; j++) d = Math.max(d, Math.abs(last[j]! - logits[j]!));
    expect(d).toBeLessThan(1e-3);

    // Greedy generation continues from the same cache (prompt fully cached: only the last token reruns).
    const { ids, stats } = await engine.generateText(prompt, { maxTokens: 12 });
    expect(stats.reusedTokens).toBe(prompt.length - 1);
    const refIds: number[] = [];
    let cur = argmax(last);
    let pos = prompt.length;
    while (refIds.length < 12 && !qwenLike.eosTokenIds.includes(cur)) {
      refIds.push(cur);
      cur = argmax(ref.forward(cur, pos++));
    }
    expect(ids).toEqual(refIds);
  });

  it('a follow-up prompt that extends the conversation prefills only the new tokens, with the same result as a fresh engine', async () => {
    const gpu = await testGpu();
    const weights = randomWeights(smolLike, 'f32', 31);
    const a = await Engine.load({ model: loaded(smolLike, weights), gpu, contextLength: 256, prefillChunk: 8 });
    const turn1 = randomTokens(20, smolLike.vocabSize, 32);
    const r1 = await a.generateText(turn1, { maxTokens: 6, stopTokenIds: [] });
    const turn2 = [...turn1, ...r1.ids, ...randomTokens(9, smolLike.vocabSize, 33)];
    const r2 = await a.generateText(turn2, { maxTokens: 6 });
    expect(r2.stats.reusedTokens).toBe(turn1.length + r1.ids.length - 1);
    const b = await Engine.load({ model: loaded(smolLike, weights), gpu, contextLength: 256, prefillChunk: 8 });
    const fresh = await b.generateText(turn2, { maxTokens: 6 });
    expect(r2.ids).toEqual(fresh.ids);
    // A prompt that diverges from the cache truncates it and still matches a fresh run.
    const other = [...turn1.slice(0, 10), ...randomTokens(5, smolLike.vocabSize, 34)];
    const r3 = await a.generateText(other, { maxTokens: 5 });
    const c = await Engine.load({ model: loaded(smolLike, weights), gpu, contextLength: 256, prefillChunk: 8 });
    expect(r3.ids).toEqual((await c.generateText(other, { maxTokens: 5 })).ids);
    expect(r3.stats.reusedTokens).toBe(10);
    // Footprint accounting restarts at the cut: a full cache holds every token it has seen
    // (the longer conversation it was cut from must not leave its peak behind).
    expect(r3.stats.kvPeak).toBeLessThanOrEqual(1);
    expect(r3.stats.kvFootprint).toBeCloseTo(1, 12);
  });

  it('text prompts stream whole characters, respect stop strings, maxTokens, abort, and report timings', async () => {
    const gpu = await testGpu();
    const m = loaded(smolLike, randomWeights(smolLike, 'f32', 41), true);
    const engine = await Engine.load({ model: m, gpu, contextLength: 128, prefillChunk: 32 });
    const full = await engine.generateText('The quick brown fox', { maxTokens: 20, temperature: 0 });
    expect(full.stats.completionTokens).toBeGreaterThan(0);
    expect(['length', 'stop']).toContain(full.stats.finishReason);
    // Streamed pieces add up to the full decode (a random model may emit invalid UTF-8 byte
    // sequences, which decode to U+FFFD either way).
    expect(full.text).toBe(engine.tokenizer!.decode(full.ids));
    expect(full.stats.prefillTokensPerSecond).toBeGreaterThan(0);
    // A stop string taken from the generated text ends generation before it.
    if (full.text.length > 4) {
      const stopAt = full.text.slice(2, 4);
      engine.reset();
      const cut = await engine.generateText('The quick brown fox', { maxTokens: 20, stop: [stopAt] });
      expect(cut.stats.finishReason).toBe('stop');
      expect(cut.text).toBe(full.text.slice(0, full.text.indexOf(stopAt)));
    }
    const few = await engine.generateText('The quick brown fox', { maxTokens: 3 });
    expect(few.stats.completionTokens).toBe(3);
    expect(few.stats.finishReason).toBe('length');
    const ac = new AbortController();
    let n = 0;
    const it = engine.generate('A cache keeps keys', { maxTokens: 50, signal: ac.signal });
    let res = await it.next();
    while (!res.done) {
      if (++n === 2) ac.abort();
      res = await it.next();
    }
    expect(res.value.finishReason).toBe('abort');
    expect(n).toBe(2);
    // Seeded sampling is reproducible.
    engine.reset();
    const s1 = await engine.generateText('Numbers:', { maxTokens: 8, temperature: 0.9, topP: 0.9, seed: 7 });
    engine.reset();
    const s2 = await engine.generateText('Numbers:', { maxTokens: 8, temperature: 0.9, topP: 0.9, seed: 7 });
    expect(s1.ids).toEqual(s2.ids);
  });

  it('generation stops with finish reason "length" when the context is full', async () => {
    const gpu = await testGpu();
    const engine = await Engine.load({ model: loaded(smolLike, randomWeights(smolLike, 'f32', 51)), gpu, contextLength: 24, prefillChunk: 8 });
    const r = await engine.generateText(randomTokens(20, smolLike.vocabSize, 52), { maxTokens: 100, stopTokenIds: [] });
    expect(r.stats.finishReason).toBe('length');
    expect(engine.cachedTokens.length).toBe(24);
  });
});

describe('bad input leaves the engine usable', () => {
  it('a prompt longer than the context -> ContextOverflowError; then a valid prompt works', async () => {
    const gpu = await testGpu();
    const engine = await Engine.load({ model: loaded(smolLike, randomWeights(smolLike, 'f32', 61)), gpu, contextLength: 32, prefillChunk: 8 });
    await expect(engine.generateText(randomTokens(33, smolLike.vocabSize, 1), { maxTokens: 2 })).rejects.toBeInstanceOf(ContextOverflowError);
    await expect(engine.generateText(randomTokens(33, smolLike.vocabSize, 1), { maxTokens: 2 })).rejects.toMatchObject({ code: 'context-overflow' });
    const ok = await engine.generateText(randomTokens(10, smolLike.vocabSize, 2), { maxTokens: 2 });
    expect(ok.ids.length + (ok.stats.finishReason === 'stop' ? 1 : 0)).toBeGreaterThan(0);
  });
  it('token ids outside the vocabulary, bad sampling params, bad options -> InvalidArgumentError', async () => {
    const gpu = await testGpu();
    const engine = await Engine.load({ model: loaded(smolLike, randomWeights(smolLike, 'f32', 62)), gpu, contextLength: 32, prefillChunk: 8 });
    await expect(engine.generateText([1, 2, smolLike.vocabSize], {})).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(engine.generateText([1, 2], { topP: 0 })).rejects.toThrow(/topP/);
    await expect(engine.generateText([1, 2], { temperature: NaN })).rejects.toThrow(/temperature/);
    await expect(engine.generateText([], {})).rejects.toThrow(/empty/);
    await expect(Engine.load({ model: loaded(smolLike, randomWeights(smolLike, 'f32', 62)), gpu, contextLength: 100000 })).rejects.toThrow(/contextLength/);
    const ok = await engine.generateText([1, 2, 3], { maxTokens: 2, stopTokenIds: [] });
    expect(ok.ids.length).toBe(2);
  });
});
