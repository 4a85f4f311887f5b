import type { ModelConfig } from '../../src/model/config';
import type { TensorDtype, WeightSet } from '../../src/model/tensor';
import { toFloat32 } from '../../src/model/tensor';
import { randomModel } from '../../src/model/writers';
import type { LoadedModel } from '../../src/model/weights';
import { trainByteLevelBpe } from '../../src/model/bpe-trainer';

/** SmolLM2's structure scaled down: tied embeddings, GQA 3:1, no bias. */
export const smolLike: ModelConfig = {
  family: 'llama',
  vocabSize: 384,
  hiddenSize: 96,
  intermediateSize: 256,
  numLayers: 3,
  numHeads: 6,
  numKvHeads: 2,
  headDim: 16,
  rmsNormEps: 1e-5,
  ropeTheta: 100000,
  contextLength: 512,
  tieWordEmbeddings: true,
  attentionBias: false,
  bosTokenId: 1,
  eosTokenIds: [2],
};

/** Qwen2's structure scaled down: QKV bias, GQA 2:1, untied LM head, head_dim 32. */
export const qwenLike: ModelConfig = {
  family: 'qwen2',
  vocabSize: 400,
  hiddenSize: 128,
  intermediateSize: 320,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 32,
  rmsNormEps: 1e-6,
  ropeTheta: 1000000,
  contextLength: 512,
  tieWordEmbeddings: false,
  attentionBias: true,
  eosTokenIds: [3],
};

/** Llama 3 structure: llama3 rope scaling, MQA, head_dim 64. */
export const llama3Like: ModelConfig = {
  family: 'llama',
  vocabSize: 320,
  hiddenSize: 128,
  intermediateSize: 256,
  numLayers: 2,
  numHeads: 2,
  numKvHeads: 1,
  headDim: 64,
  rmsNormEps: 1e-5,
  ropeTheta: 500000,
  ropeScaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 },
  contextLength: 512,
  tieWordEmbeddings: true,
  attentionBias: false,
  bosTokenId: 1,
  eosTokenIds: [2],
};

export function randomWeights(config: ModelConfig, dtype: TensorDtype, seed: number): WeightSet {
  // Larger than the usual 0.02 init so activations and logit margins are not negligible.
  return randomModel(config, dtype, seed, { std: 0.08, normJitter: 0.2, biasStd: 0.05 });
}

export function f32Weights(w: WeightSet): Map<string, Float32Array> {
  return new Map([...w].map(([k, t]) => [k, toFloat32(t)]));
}

const CORPUS =
  'The quick brown fox jumps over the lazy dog. A cache keeps keys and values. ' +
  'Passkey retrieval asks for a number hidden in filler text. The grass is green; the sky is blue. ' +
  'Numbers: 0 1 2 3 4 5 6 7 8 9. Héllo wörld, naïve café, 東京, emoji 🙂. ';

export const CHAT_TEMPLATE =
  "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

export function tinyTokenizer(vocabSize: number) {
  return trainByteLevelBpe({
    corpus: CORPUS.repeat(4),
    vocabSize,
    specialTokens: ['<s>', '</s>', '<|im_start|>', '<|im_end|>'],
    bosToken: '<s>',
    eosToken: '</s>',
    chatTemplate: CHAT_TEMPLATE,
  });
}

/** A LoadedModel held in memory; with a tokenizer, BOS/EOS ids come from it. */
export function loaded(config: ModelConfig, weights: WeightSet, withTokenizer = false): LoadedModel {
  if (!withTokenizer) return { layout: 'hf', config, weights };
  const tok = tinyTokenizer(config.vocabSize);
  const vocab = (tok.tokenizerJson as { added_tokens: { id: number; content: string }[] }).added_tokens;
  const id = (s: string) => vocab.find((t) => t.content === s)!.id;
  const cfg = { ...config, bosTokenId: id('<s>'), eosTokenIds: [id('</s>')] };
  return {
    layout: 'hf',
    config: cfg,
    weights,
    tokenizerJson: tok.tokenizerJson as Record<string, unknown>,
    tokenizerConfig: tok.tokenizerConfig as Record<string, unknown>,
    chatTemplate: CHAT_TEMPLATE,
  };
}

export function argmax(a: Float32Array): number {
  let b = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[b]!) b = i;
  return b;
}

export function top2Margin(a: Float32Array): number {
  let m1 = -Infinity;
  let m2 = -Infinity;
  for (const v of a) {
    if (v > m1) {
      m2 = m1;
      m1 = v;
    } else if (v > m2) m2 = v;
  }
  return m1 - m2;
}
