import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine';
import { ReferenceModel } from '../../src/reference/forward';
import { ModelLoadError, UnsupportedError } from '../../src/errors';
import type { ModelConfig } from '../../src/model/config';
import { loadMlcTensors, mlcToHfWeights } from '../../src/model/mlc';
import { MemorySource } from '../../src/model/source';
import { sameTensorBytes, toFloat32, type Q4Format, type WeightSet } from '../../src/model/tensor';
import { loadModel } from '../../src/model/weights';
import { randomQ4Model, writeMlcShards, writeModelDir } from '../../src/model/writers';
import { argmax, llama3Like, loaded, qwenLike, smolLike, top2Margin } from '../engine/fixtures';
import { rng, testGpu } from '../gpu';

function randomTokens(n: number, vocab: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r() * vocab));
}

function q4Weights(config: ModelConfig, format: Q4Format, seed: number): WeightSet {
  return randomQ4Model(config, format, seed, { std: 0.08, normJitter: 0.2, biasStd: 0.05 });
}

function dequantized(w: WeightSet): Map<string, Float32Array> {
  return new Map([...w].map(([k, t]) => [k, toFloat32(t)]));
}

/**
 * Teacher-forced decode (q4 matvec every step) and a chunked prefill (q4 gemm) against the
 * plain-TS reference on the dequantized f32 weights.
 */
async function checkModel(config: ModelConfig, weights: WeightSet, tol: number, seed: number) {
  const gpu = await testGpu();
  const engine = await Engine.load({ model: loaded(config, weights), gpu, contextLength: 128, prefillChunk: 16 });
  const ref = new ReferenceModel(config, dequantized(weights), 128);
  const tokens = randomTokens(40, config.vocabSize, seed);
  const got = await engine.teacherForce(tokens);
  let decodeDiff = 0;
  let argmaxChecked = 0;
  for (let i = 0; i < tokens.length; i++) {
    const want = ref.forward(tokens[i]!, i);
    for (let j = 0; j < want.length; j++) decodeDiff = Math.max(decodeDiff, Math.abs(want[j]! - got[i]![j]!));
    if (top2Margin(want) > 10 * tol) {
      argmaxChecked++;
      expect(argmax(got[i]!)).toBe(argmax(want));
    }
  }
  expect(decodeDiff).toBeLessThanOrEqual(tol);

  const prompt = randomTokens(37, config.vocabSize, seed + 1); // 16 + 16 + 5 rows
  const engine2 = await Engine.load({ model: loaded(config, weights), gpu, contextLength: 128, prefillChunk: 16 });
  const logits = await engine2.prefillLogits(prompt);
  ref.reset();
  const all = ref.forwardAll(prompt);
  const last = all[all.length - 1]!;
  let prefillDiff = 0;
  for (let j = 0; j < last.length; j++) prefillDiff = Math.max(prefillDiff, Math.abs(last[j]! - logits[j]!));
  expect(prefillDiff).toBeLessThanOrEqual(tol);
  engine.model.destroy();
  engine2.model.destroy();
  return { decodeDiff, prefillDiff, argmaxChecked };
}

describe('q4 models vs the reference on dequantized weights', () => {
  const cases: [string, ModelConfig, Q4Format][] = [
    ['SmolLM2-shaped (tied q4 embedding as LM head)', smolLike, 'q4f16_1'],
    ['Qwen2-shaped (QKV bias, untied q4 lm_head)', qwenLike, 'q4f16_1'],
    ['Llama 3-shaped', llama3Like, 'q4f32_1'],
  ];
  cases.forEach(([label, config, format], i) => {
    it(`${label}, ${format}: 40 decode steps and a 37-token chunked prefill, max |dlogit| <= 1e-4`, async () => {
      const r = await checkModel(config, q4Weights(config, format, 70 + i), 1e-4, 80 + i);
      console.log(`${label} ${format}: max|dlogit| decode ${r.decodeDiff.toExponential(2)}, prefill ${r.prefillDiff.toExponential(2)}; argmax checked on ${r.argmaxChecked}/40`);
    });
  });
});

describe('q4 MLC directories', () => {
  for (const [config, format] of [[qwenLike, 'q4f16_1'], [smolLike, 'q4f32_1']] as const) {
    it(`${config.family} ${format}: written as q_weight/q_scale records (fused), loaded back byte-identical`, async () => {
      const weights = q4Weights(config, format, 90);
      const dir = await mkdtemp(join(tmpdir(), 'kvscope-q4-'));
      try {
        await writeModelDir(dir, config, weights, 'mlc', undefined, { maxShardBytes: 64 << 10 });
        const chat = JSON.parse(await readFile(join(dir, 'mlc-chat-config.json'), 'utf8'));
        expect(chat.quantization).toBe(format);
        const cache = JSON.parse(await readFile(join(dir, 'tensor-cache.json'), 'utf8'));
        const recs = new Map<string, { shape: number[]; dtype: string }>(cache.records.flatMap((s: { records: { name: string }[] }) => s.records.map((r) => [r.name, r])));
        const fused = config.family === 'qwen2' ? 'c_attn' : 'qkv_proj';
        const qkvRows = (config.numHeads + 2 * config.numKvHeads) * config.headDim;
        const scaleDtype = format === 'q4f16_1' ? 'float16' : 'float32';
        expect(recs.get(`model.layers.0.self_attn.${fused}.q_weight`)).toMatchObject({ shape: [qkvRows, config.hiddenSize / 8], dtype: 'uint32' });
        expect(recs.get(`model.layers.0.self_attn.${fused}.q_scale`)).toMatchObject({ shape: [qkvRows, config.hiddenSize / 32], dtype: scaleDtype });
        expect(recs.get('model.layers.1.mlp.gate_up_proj.q_weight')).toMatchObject({ shape: [2 * config.intermediateSize, config.hiddenSize / 8] });
        expect(recs.get('model.embed_tokens.q_weight')).toMatchObject({ shape: [config.vocabSize, config.hiddenSize / 8], dtype: 'uint32' });
        expect(recs.get('model.norm.weight')).toMatchObject({ dtype: scaleDtype });

        const m = await loadModel(dir);
        expect(m.layout).toBe('mlc');
        expect([...m.weights.keys()].sort()).toEqual([...weights.keys()].sort());
        for (const [name, t] of weights) expect(sameTensorBytes(m.weights.get(name)!, t), name).toBe(true);
        expect(m.weights.get('model.layers.0.self_attn.k_proj.weight')!.q4?.format).toBe(format);

        // The loaded directory runs and matches the reference on the dequantized weights.
        const gpu = await testGpu();
        const engine = await Engine.load({ model: dir, gpu, contextLength: 64, prefillChunk: 8 });
        const ref = new ReferenceModel(m.config, dequantized(weights), 64);
        const prompt = randomTokens(11, config.vocabSize, 5);
        const logits = await engine.prefillLogits(prompt);
        const want = ref.forwardAll(prompt).at(-1)!;
        let d = 0;
        for (let j = 0; j < want.length; j++) d = Math.max(d, Math.abs(want[j]! - logits[j]!));
        expect(d).toBeLessThanOrEqual(1e-4);
        engine.model.destroy();
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }

  it('rejects a q_weight without its q_scale, and non-q4 group quantization', async () => {
    const weights = q4Weights(smolLike, 'q4f16_1', 91);
    const { tensorCache, shards } = writeMlcShards(weights, { config: smolLike });
    const source = (cache: unknown) => {
      const files = new Map<string, Uint8Array>(shards);
      files.set('tensor-cache.json', new TextEncoder().encode(JSON.stringify(cache)));
      return new MemorySource(files);
    };
    const noScale = structuredClone(tensorCache);
    noScale.records[0]!.records = noScale.records[0]!.records.filter((r) => r.name !== 'model.layers.0.mlp.down_proj.q_scale');
    await expect(loadMlcTensors(source(noScale))).rejects.toThrow(ModelLoadError);
    // q3f16_1-like: 10 elements per word, groups of 40 -> not our layout.
    const q3 = structuredClone(tensorCache);
    const rec = q3.records[0]!.records.find((r) => r.name === 'model.layers.0.mlp.down_proj.q_weight')!;
    rec.shape = [rec.shape[0]!, rec.shape[1]! + 1];
    await expect(loadMlcTensors(source(q3))).rejects.toThrow(UnsupportedError);
    // Both the fused split and validation keep the q4 packing.
    const { tensors } = await loadMlcTensors(source(tensorCache));
    const hf = mlcToHfWeights(tensors, smolLike);
    expect(sameTensorBytes(hf.get('model.layers.2.mlp.up_proj.weight')!, weights.get('model.layers.2.mlp.up_proj.weight')!)).toBe(true);
  });
});
