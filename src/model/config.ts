import { ModelLoadError, UnsupportedError } from '../errors';

export interface RopeScaling {
  type: 'llama3' | 'linear';
  factor: number;
  /** llama3 only */
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
}

/** A Llama-family decoder, normalised from HF `config.json` or MLC `mlc-chat-config.json`. */
export interface ModelConfig {
  /** 'llama' covers Llama 2/3, SmolLM2, TinyLlama; 'qwen2' adds QKV bias. */
  family: 'llama' | 'qwen2';
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling?: RopeScaling;
  /** The model's context length. */
  contextLength: number;
  tieWordEmbeddings: boolean;
  /** Bias on q/k/v projections (Qwen2). */
  attentionBias: boolean;
  bosTokenId?: number;
  eosTokenIds: number[];
}
