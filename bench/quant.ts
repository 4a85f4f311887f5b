/**
 * `npx vite-node bench/quant.ts [--quick]`: decode tok/s and decode bandwidth ratio for
 * random q4f16_1 models shaped like Qwen2.5-0.5B and Llama-3.2-1B (WebLLM's
 * `Qwen2.5-0.5B-Instruct-q4f16_1-MLC`, `Llama-3.2-1B-Instruct-q4f16_1-MLC`), plus the GPU
 * memory kvscope allocates next to WebLLM's published `vram_required_MB` for the same ids.
 *
 *   weight bytes/token = q4 words (K/2 bytes per row) + f16 scales (K/16 bytes per row) of
 *                        every matrix read per decoded token (all projections + LM head)
 *   ratio              = weight bytes/token x decode tok/s / streaming-copy bytes/s (same run)
 *
 * The weights are random nibbles and scales written straight into MLC's layout (quantizing
 * a 1B f32 model on the CPU would take longer than the benchmark). On SwiftShader (CPU) the
 * absolute numbers say nothing about a GPU; only the ratio is comparable between runs.
 * The Qwen shape also runs with f16 weights (the q0f16 path) in the same run, giving the q4 / f16
 * decode speed ratio. `--quick` runs the Qwen shape only.
 */
import { Gpu } from '../src/gpu/device';
import { Engine } from '../src/engine/engine';
import { copyProbe, matrixElemsPerToken } from './common';
import type { ModelConfig } from '../src/model/config';
import { loadPrebuiltCatalog, resolveCatalogModel } from '../src/model/catalog';
import { Q4_GROUP, encodeFromFloat32, numel, type WeightSet } from '../src/model/tensor';
import { randomModel } from '../src/model/writers';
import { expectedTensorShapes } from '../src/model/weights';

const quick = process.argv.includes('--quick');
const CONTEXT = 4096; // WebLLM's builds of both ids use a 4k context window.
const PREFILL_CHUNK = 1024;

const models: { id: string; name: string; config: ModelConfig; prefill: number; decode: number; f16?: boolean }[] = [
  {
    id: 'Qwen2.5-0.5B-Instruct-q4f16_1-MLC',
    name: 'Qwen2.5-0.5B shape q4f16_1',
    prefill: 16,
    decode: 8,
    f16: true,
    config: { family: 'qwen2', vocabSize: 151936, hiddenSize: 896, intermediateSize: 4864, numLayers: 24, numHeads: 14, numKvHeads: 2, headDim: 64, rmsNormEps: 1e-6, ropeTheta: 1000000, contextLength: 32768, tieWordEmbeddings: true, attentionBias: true, eosTokenIds: [] },
  },
  {
    id: 'Llama-3.2-1B-Instruct-q4f16_1-MLC',
    name: 'Llama-3.2-1B shape q4f16_1',
    prefill: 16,
    decode: 4,
    config: {
      family: 'llama', vocabSize: 128256, hiddenSize: 2048, intermediateSize: 8192, numLayers: 16, numHeads: 32, numKvHeads: 8, headDim: 64, rmsNormEps: 1e-5, ropeTheta: 500000,
      ropeScaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
      contextLength: 131072, tieWordEmbeddings: true, attentionBias: false, eosTokenIds: [],
    },
  },
];

/** Deterministic xorshift32 words. */
function randomWords(n: number, seed: number): Uint32Array {
  const out = new Uint32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s >>> 0;
  }
  return out;
}

/** Random q4f16_1 weights in MLC's layout: uniform nibbles, scales ~ 0.02 * 3 / 7 so values look like N(0, 0.02). */
function randomQ4Weights(c: ModelConfig): WeightSet {
  const weights: WeightSet = new Map();
  let seed = 1;
  for (const [name, shape] of expectedTensorShapes(c)) {
    if (shape.length === 2) {
      const [rows, cols] = shape as [number, number];
      const words = randomWords(rows * (cols / 8), seed++);
      const scales = encodeFromFloat32(new Float32Array(rows * (cols / Q4_GROUP)).fill((0.02 * 3) / 7), 'f16');
      weights.set(name, { name, dtype: 'f16', shape, data: new Uint8Array(words.buffer), q4: { format: 'q4f16_1', scales } });
    } else {
      const fill = name.endsWith('.bias') ? 0 : 1;
      weights.set(name, { name, dtype: 'f16', shape, data: encodeFromFloat32(new Float32Array(numel(shape)).fill(fill), 'f16') });
    }
  }
  return weights;
}

/** Bytes of f16 weights read per decoded token. */
function f16BytesPerToken(c: ModelConfig): number {
  return 2 * matrixElemsPerToken(c);
}

/** Bytes of q4 words + f16 scales read per decoded token (every projection and the LM head). */
function q4BytesPerToken(c: ModelConfig): number {
  const elems = matrixElemsPerToken(c);
  return elems / 2 + (elems / Q4_GROUP) * 2;
}

const catalog = await loadPrebuiltCatalog();
const gpu = await Gpu.create();
const cpu = gpu.adapterInfo.architecture === 'swiftshader';
console.log(`adapter: ${gpu.adapterInfo.vendor} ${gpu.adapterInfo.architecture} ${gpu.adapterInfo.device ?? ''}${cpu ? ' (SwiftShader: CPU numbers, compare ratios only)' : ''}`);
const copy0 = await copyProbe(gpu);
console.log(`copy probe: ${(copy0 / 1e9).toFixed(2)} GB/s (read + write)`);
const rows: string[][] = [];
const runs = (quick ? models.slice(0, 1) : models).flatMap((m) => [{ ...m, q4: true }, ...(m.f16 ? [{ ...m, name: m.name.replace('q4f16_1', 'f16'), q4: false }] : [])]);
const tokPerS = new Map<string, number>();
for (const m of runs) {
  const webllm = resolveCatalogModel(m.id, catalog);
  const t0 = performance.now();
  const weights = m.q4 ? randomQ4Weights(m.config) : randomModel(m.config, 'f16', 1);
  const before = gpu.bytes();
  const engine = await Engine.load({ model: { layout: 'mlc', config: m.config, weights }, gpu, contextLength: CONTEXT, prefillChunk: PREFILL_CHUNK });
  const setup = (performance.now() - t0) / 1000;
  const allocated = gpu.bytes() - before;
  const prompt = Array.from({ length: m.prefill }, (_, i) => (i * 7919) % m.config.vocabSize);
  await engine.generateText(prompt.slice(0, 4), { maxTokens: 2 }); // compiles every pipeline
  engine.reset();
  const r = await engine.generateText(prompt, { maxTokens: m.decode + 1 });
  const copy = await copyProbe(gpu);
  const wbytes = m.q4 ? q4BytesPerToken(m.config) : f16BytesPerToken(m.config);
  tokPerS.set(m.name, r.stats.decodeTokensPerSecond);
  const decodeBps = wbytes * r.stats.decodeTokensPerSecond;
  const ratio = decodeBps / ((copy + copy0) / 2);
  rows.push([
    m.name,
    r.stats.decodeTokensPerSecond.toFixed(2),
    (wbytes / 1e6).toFixed(1),
    (decodeBps / 1e9).toFixed(3),
    (copy / 1e9).toFixed(2),
    ratio.toFixed(3),
    (allocated / 2 ** 20).toFixed(0),
    m.q4 ? (webllm.vramMB?.toFixed(0) ?? '?') : '-',
    setup.toFixed(1),
  ]);
  console.log(rows[rows.length - 1]!.join(' | '));
  engine.unload();
}
console.log(`\ncontext ${CONTEXT}, prefill chunk ${PREFILL_CHUNK}; "kvscope MiB" = every GPU buffer the engine allocated (weights, KV cache, activations).`);
console.log('| model | decode tok/s | weight MB/token | decode weight GB/s | copy GB/s | ratio | kvscope MiB | WebLLM vram_required_MB | setup s |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
for (const m of runs.filter((r) => !r.q4)) {
  const q4 = tokPerS.get(m.name.replace('f16', 'q4f16_1'));
  const f16 = tokPerS.get(m.name);
  if (q4 && f16) console.log(`${m.name.replace(' f16', '')}: q4f16_1 / f16 decode tok/s = ${(q4 / f16).toFixed(2)}`);
}
gpu.destroy();
setTimeout(() => process.exit(0), 20);
