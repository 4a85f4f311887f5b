/**
 * `npm run bench`: prefill and decode tok/s for three model shapes, and in the same run a
 * streaming-copy probe, so decode bandwidth is reported as a ratio (these machines are
 * shared and noisy; ratios taken in one run are what we compare, never absolute times).
 *
 *   decode weight-bytes/s = (bytes of every weight matrix read per token) x decode tok/s
 *   copy bytes/s          = (bytes read + bytes written) / time, for a large f32 copy
 *   ratio                 = decode weight-bytes/s / copy bytes/s
 */
import { Gpu } from '../src/gpu/device';
import { Engine } from '../src/engine/engine';
import { UnsupportedError } from '../src/errors';
import type { ModelConfig } from '../src/model/config';
import { randomModel } from '../src/model/writers';
import type { TensorDtype } from '../src/model/tensor';
import { copyProbe, matrixElemsPerToken } from './common';

const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');

const models: { name: string; config: ModelConfig; dtype: TensorDtype; prefill: number; decode: number }[] = [
  {
    name: 'tiny-2M (f32)',
    dtype: 'f32',
    prefill: 128,
    decode: 64,
    config: { family: 'llama', vocabSize: 4096, hiddenSize: 256, intermediateSize: 768, numLayers: 2, numHeads: 8, numKvHeads: 2, headDim: 32, rmsNormEps: 1e-5, ropeTheta: 10000, contextLength: 2048, tieWordEmbeddings: true, attentionBias: false, eosTokenIds: [] },
  },
  {
    name: 'SmolLM2-135M shape (f32)',
    dtype: 'f32',
    prefill: 64,
    decode: 16,
    config: { family: 'llama', vocabSize: 49152, hiddenSize: 576, intermediateSize: 1536, numLayers: 30, numHeads: 9, numKvHeads: 3, headDim: 64, rmsNormEps: 1e-5, ropeTheta: 100000, contextLength: 8192, tieWordEmbeddings: true, attentionBias: false, eosTokenIds: [] },
  },
  {
    name: 'SmolLM2-135M shape (f16)',
    dtype: 'f16',
    prefill: 64,
    decode: 16,
    config: { family: 'llama', vocabSize: 49152, hiddenSize: 576, intermediateSize: 1536, numLayers: 30, numHeads: 9, numKvHeads: 3, headDim: 64, rmsNormEps: 1e-5, ropeTheta: 100000, contextLength: 8192, tieWordEmbeddings: true, attentionBias: false, eosTokenIds: [] },
  },
  {
    name: 'Qwen2.5-0.5B shape (f16)',
    dtype: 'f16',
    prefill: 16,
    decode: 4,
    config: { family: 'qwen2', vocabSize: 151936, hiddenSize: 896, intermediateSize: 4864, numLayers: 24, numHeads: 14, numKvHeads: 2, headDim: 64, rmsNormEps: 1e-6, ropeTheta: 1000000, contextLength: 32768, tieWordEmbeddings: true, attentionBias: true, eosTokenIds: [] },
  },
];

function matrixBytesPerToken(c: ModelConfig, dtype: TensorDtype): number {
  return (dtype === 'f32' ? 4 : 2) * matrixElemsPerToken(c);
}

const gpu = await Gpu.create();
console.log(`adapter: ${gpu.adapterInfo.vendor} ${gpu.adapterInfo.architecture} ${gpu.adapterInfo.device ?? ''} (shader-f16: ${gpu.hasF16})`);
const rows: string[][] = [];
const copy0 = await copyProbe(gpu);
console.log(`copy probe: ${(copy0 / 1e9).toFixed(2)} GB/s (read + write)`);
for (const m of quick ? models.slice(0, 2) : models) {
  const t0 = performance.now();
  const weights = randomModel(m.config, m.dtype, 1);
  let engine: Engine;
  try {
    engine = await Engine.load({ model: { layout: 'hf', config: m.config, weights }, gpu, contextLength: 512, prefillChunk: 128 });
  } catch (e) {
    // An adapter with a smaller binding limit (lavapipe: 128 MiB) cannot bind Qwen2.5-0.5B's 272 MB embedding as one buffer.
    if (e instanceof UnsupportedError && e.code === 'tensor-too-large') {
      console.log(`${m.name}: skipped on this adapter (${e.message})`);
      rows.push([m.name, 'skipped: a tensor exceeds this adapter\'s binding limit', '', '', '', '', '', '']);
      continue;
    }
    throw e;
  }
  const setup = (performance.now() - t0) / 1000;
  const prompt = Array.from({ length: m.prefill }, (_, i) => (i * 7919) % m.config.vocabSize);
  // Warm-up compiles every pipeline.
  await engine.generateText(prompt.slice(0, 8), { maxTokens: 2 });
  engine.reset();
  const r = await engine.generateText(prompt, { maxTokens: m.decode + 1 });
  const copy = await copyProbe(gpu);
  const wbytes = matrixBytesPerToken(m.config, m.dtype);
  const decodeBps = wbytes * r.stats.decodeTokensPerSecond;
  const ratio = decodeBps / ((copy + copy0) / 2);
  rows.push([m.name, r.stats.prefillTokensPerSecond.toFixed(1), r.stats.decodeTokensPerSecond.toFixed(2), (wbytes / 1e6).toFixed(1), (decodeBps / 1e9).toFixed(2), (copy / 1e9).toFixed(2), ratio.toFixed(2), setup.toFixed(1)]);
  console.log(rows[rows.length - 1]!.join(' | '));
  engine.unload();
}
console.log('\n| model | prefill tok/s | decode tok/s | weight MB/token | decode weight GB/s | copy GB/s | ratio | setup s |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
gpu.destroy();
setTimeout(() => process.exit(0), 20);
