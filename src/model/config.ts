import { ModelLoadError, UnsupportedError } from '../errors';
import type { TensorDtype } from './tensor';

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
  /** The checkpoint's declared weight dtype (HF `torch_dtype`, MLC `quantization` q0f16/q0f32/q0bf16). */
  torchDtype?: TensorDtype;
  /** The class name the config declared, e.g. 'LlamaForCausalLM' (informational). */
  architecture?: string;
}

type Json = Record<string, unknown>;

const FAMILY_BY_ARCHITECTURE: Record<string, ModelConfig['family']> = {
  LlamaForCausalLM: 'llama',
  Qwen2ForCausalLM: 'qwen2',
};
const FAMILY_BY_MODEL_TYPE: Record<string, ModelConfig['family']> = { llama: 'llama', qwen2: 'qwen2' };
const SUPPORTED = 'LlamaForCausalLM (model_type llama: Llama 2/3, SmolLM2, TinyLlama) and Qwen2ForCausalLM (model_type qwen2)';

/** Defaults of transformers' LlamaConfig / Qwen2Config for fields real configs sometimes omit. */
const HF_DEFAULTS: Record<ModelConfig['family'], { contextLength: number; rmsNormEps: number; ropeTheta: number }> = {
  llama: { contextLength: 2048, rmsNormEps: 1e-6, ropeTheta: 10000 },
  qwen2: { contextLength: 32768, rmsNormEps: 1e-6, ropeTheta: 10000 },
};

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function badConfig(where: string, field: string, problem: string): ModelLoadError {
  return new ModelLoadError('bad-config', `${where}: field "${field}" ${problem}.`);
}

/** Reads fields of one JSON object, each failure naming the field and the file. */
class FieldReader {
  constructor(
    private readonly obj: Json,
    private readonly where: string,
    private readonly prefix = '',
  ) {}
  private name(key: string): string {
    return this.prefix + key;
  }
  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }
  raw(key: string): unknown {
    return this.obj[key];
  }
  positiveInt(key: string, fallback?: number): number {
    const v = this.obj[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw badConfig(this.where, this.name(key), 'is missing');
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      throw badConfig(this.where, this.name(key), `must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v;
  }
  positiveNumber(key: string, fallback?: number): number {
    const v = this.obj[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw badConfig(this.where, this.name(key), 'is missing');
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw badConfig(this.where, this.name(key), `must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  }
  boolean(key: string, fallback: boolean): boolean {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw badConfig(this.where, this.name(key), `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }
  optionalTokenId(key: string): number | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
      throw badConfig(this.where, this.name(key), `must be a token id (integer >= 0), got ${JSON.stringify(v)}`);
    }
    return v;
  }
  /** A token id or a list of them (HF `eos_token_id` is either). */
  tokenIdList(key: string): number[] {
    const v = this.obj[key];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    for (const id of list) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
        throw badConfig(this.where, this.name(key), `must be a token id or a list of token ids, got ${JSON.stringify(v)}`);
      }
    }
    return [...new Set(list as number[])];
  }
  object(key: string): Json | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (!isObject(v)) throw badConfig(this.where, this.name(key), `must be an object, got ${JSON.stringify(v)}`);
    return v;
  }
}

/** Parses HF `rope_scaling` (or the newer `rope_parameters`); undefined means plain RoPE. */
function parseRopeScaling(scaling: Json | undefined, where: string, field: string): RopeScaling | undefined {
  if (!scaling) return undefined;
  const r = new FieldReader(scaling, where, `${field}.`);
  const type = scaling['rope_type'] ?? scaling['type'];
  if (type === undefined || type === 'default') return undefined;
  if (type === 'linear') return { type: 'linear', factor: r.positiveNumber('factor') };
  if (type === 'llama3') {
    return {
      type: 'llama3',
      factor: r.positiveNumber('factor'),
      lowFreqFactor: r.positiveNumber('low_freq_factor'),
      highFreqFactor: r.positiveNumber('high_freq_factor'),
      originalMaxPositionEmbeddings: r.positiveInt('original_max_position_embeddings'),
    };
  }
  throw new UnsupportedError(
    'unsupported-architecture',
    `${where}: ${field} type ${JSON.stringify(type)} is not supported (supported: llama3, linear).`,
  );
}

function parseDtypeName(v: unknown, where: string, field: string): TensorDtype | undefined {
  if (v === undefined || v === null) return undefined;
  switch (v) {
    case 'float32':
      return 'f32';
    case 'float16':
      return 'f16';
    case 'bfloat16':
      return 'bf16';
    default:
      throw badConfig(where, field, `must be float32, float16 or bfloat16, got ${JSON.stringify(v)}`);
  }
}

function familyOf(architectures: unknown, modelType: unknown, where: string): { family: ModelConfig['family']; architecture?: string } {
  if (Array.isArray(architectures) && architectures.length > 0) {
    const arch = architectures[0];
    const family = typeof arch === 'string' ? FAMILY_BY_ARCHITECTURE[arch] : undefined;
    if (!family) {
      throw new UnsupportedError(
        'unsupported-architecture',
        `${where}: architecture ${JSON.stringify(arch)} is not supported; kvscope runs ${SUPPORTED}.`,
      );
    }
    return { family, architecture: arch as string };
  }
  if (modelType === undefined || modelType === null) {
    throw badConfig(where, 'architectures', 'and "model_type" are both missing, so the architecture is unknown');
  }
  const family = typeof modelType === 'string' ? FAMILY_BY_MODEL_TYPE[modelType] : undefined;
  if (!family) {
    throw new UnsupportedError(
      'unsupported-architecture',
      `${where}: model_type ${JSON.stringify(modelType)} is not supported; kvscope runs ${SUPPORTED}.`,
    );
  }
  return { family };
}

function checkHeads(cfg: ModelConfig, where: string): void {
  if (cfg.numHeads % cfg.numKvHeads !== 0) {
    throw badConfig(where, 'num_key_value_heads', `(${cfg.numKvHeads}) must divide num_attention_heads (${cfg.numHeads})`);
  }
}

/** Parses a Hugging Face `config.json` (LlamaForCausalLM or Qwen2ForCausalLM). */
export function parseHfConfig(json: unknown, where = 'config.json'): ModelConfig {
  if (!isObject(json)) throw new ModelLoadError('bad-config', `${where}: expected a JSON object.`);
  const r = new FieldReader(json, where);
  const { family, architecture } = familyOf(json['architectures'], json['model_type'], where);
  const defaults = HF_DEFAULTS[family];

  const hiddenAct = json['hidden_act'] ?? 'silu';
  if (hiddenAct !== 'silu') {
    throw new UnsupportedError('unsupported-architecture', `${where}: hidden_act ${JSON.stringify(hiddenAct)} is not supported (only silu).`);
  }
  if (family === 'llama' && r.boolean('attention_bias', false)) {
    throw new UnsupportedError('unsupported-architecture', `${where}: attention_bias=true (biases on q/k/v/o) is not supported for llama.`);
  }
  if (r.boolean('mlp_bias', false)) {
    throw new UnsupportedError('unsupported-architecture', `${where}: mlp_bias=true is not supported.`);
  }
  if (family === 'qwen2' && r.boolean('use_sliding_window', false)) {
    throw new UnsupportedError('unsupported-architecture', `${where}: use_sliding_window=true is not supported.`);
  }

  const hiddenSize = r.positiveInt('hidden_size');
  const numHeads = r.positiveInt('num_attention_heads');
  let headDim: number;
  if (r.has('head_dim')) headDim = r.positiveInt('head_dim');
  else if (hiddenSize % numHeads === 0) headDim = hiddenSize / numHeads;
  else throw badConfig(where, 'head_dim', `is missing and hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${numHeads})`);

  // transformers >= 4.56 may move rope_theta/rope_scaling into `rope_parameters`.
  const ropeParameters = r.object('rope_parameters');
  const ropeTheta = ropeParameters && ropeParameters['rope_theta'] !== undefined
    ? new FieldReader(ropeParameters, where, 'rope_parameters.').positiveNumber('rope_theta')
    : r.positiveNumber('rope_theta', defaults.ropeTheta);
  const ropeScaling = r.has('rope_scaling')
    ? parseRopeScaling(r.object('rope_scaling'), where, 'rope_scaling')
    : parseRopeScaling(ropeParameters, where, 'rope_parameters');

  const torchDtype = parseDtypeName(json['torch_dtype'] ?? json['dtype'], where, json['torch_dtype'] !== undefined ? 'torch_dtype' : 'dtype');
  const cfg: ModelConfig = {
    family,
    vocabSize: r.positiveInt('vocab_size'),
    hiddenSize,
    intermediateSize: r.positiveInt('intermediate_size'),
    numLayers: r.positiveInt('num_hidden_layers'),
    numHeads,
    numKvHeads: r.positiveInt('num_key_value_heads', numHeads),
    headDim,
    rmsNormEps: r.positiveNumber('rms_norm_eps', defaults.rmsNormEps),
    ropeTheta,
    contextLength: r.positiveInt('max_position_embeddings', defaults.contextLength),
    tieWordEmbeddings: r.boolean('tie_word_embeddings', false),
    attentionBias: family === 'qwen2',
    eosTokenIds: r.tokenIdList('eos_token_id'),
  };
  if (ropeScaling) cfg.ropeScaling = ropeScaling;
  const bos = r.optionalTokenId('bos_token_id');
  if (bos !== undefined) cfg.bosTokenId = bos;
  if (torchDtype) cfg.torchDtype = torchDtype;
  if (architecture) cfg.architecture = architecture;
  checkHeads(cfg, where);
  return cfg;
}

/** MLC `quantization` names kvscope reads, with the dtype of their float tensors (norms, biases; q4 scales). */
const MLC_UNQUANTIZED: Record<string, TensorDtype> = { q0f32: 'f32', q0f16: 'f16', q0bf16: 'bf16', q4f16_1: 'f16', q4f32_1: 'f32' };

/** Parses an MLC `mlc-chat-config.json` (model_type llama or qwen2, unquantized q0f16/q0f32/q0bf16). */
export function parseMlcConfig(json: unknown, where = 'mlc-chat-config.json'): ModelConfig {
  if (!isObject(json)) throw new ModelLoadError('bad-config', `${where}: expected a JSON object.`);
  const top = new FieldReader(json, where);
  const { family } = familyOf(undefined, json['model_type'], where);
  const mc = top.object('model_config');
  if (!mc) throw badConfig(where, 'model_config', 'is missing');
  const r = new FieldReader(mc, where, 'model_config.');

  let torchDtype: TensorDtype | undefined;
  const quantization = json['quantization'];
  if (quantization !== undefined) {
    torchDtype = typeof quantization === 'string' ? MLC_UNQUANTIZED[quantization] : undefined;
    if (!torchDtype) {
      throw new UnsupportedError(
        'unsupported-dtype',
        `${where}: quantization ${JSON.stringify(quantization)} is not supported; kvscope reads q4f16_1, q4f32_1 and unquantized builds (q0f16, q0f32, q0bf16).`,
      );
    }
  }
  const hiddenAct = mc['hidden_act'] ?? 'silu';
  if (hiddenAct !== 'silu') {
    throw new UnsupportedError('unsupported-architecture', `${where}: model_config.hidden_act ${JSON.stringify(hiddenAct)} is not supported (only silu).`);
  }

  const hiddenSize = r.positiveInt('hidden_size');
  const numHeads = r.positiveInt('num_attention_heads');
  // MLC writes 0 for "derive it", like its Python dataclasses do.
  const headDimRaw = mc['head_dim'];
  let headDim: number;
  if (headDimRaw !== undefined && headDimRaw !== null && headDimRaw !== 0) headDim = r.positiveInt('head_dim');
  else if (hiddenSize % numHeads === 0) headDim = hiddenSize / numHeads;
  else throw badConfig(where, 'model_config.head_dim', `is missing and hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${numHeads})`);
  const kvRaw = mc['num_key_value_heads'];
  const numKvHeads = kvRaw === undefined || kvRaw === null || kvRaw === 0 ? numHeads : r.positiveInt('num_key_value_heads');

  // Llama calls it position_embedding_base, Qwen2 rope_theta.
  const ropeTheta = r.has('rope_theta') && mc['rope_theta'] !== 0
    ? r.positiveNumber('rope_theta')
    : r.has('position_embedding_base') && mc['position_embedding_base'] !== 0
      ? r.positiveNumber('position_embedding_base')
      : 10000;

  const topWindow = json['context_window_size'];
  const contextLength = typeof topWindow === 'number' && Number.isInteger(topWindow) && topWindow > 0
    ? topWindow
    : r.positiveInt('context_window_size');

  const cfg: ModelConfig = {
    family,
    vocabSize: r.has('vocab_size') ? r.positiveInt('vocab_size') : top.positiveInt('vocab_size'),
    hiddenSize,
    intermediateSize: r.positiveInt('intermediate_size'),
    numLayers: r.positiveInt('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: r.positiveNumber('rms_norm_eps', 1e-6),
    ropeTheta,
    contextLength,
    tieWordEmbeddings: r.boolean('tie_word_embeddings', false),
    attentionBias: family === 'qwen2',
    eosTokenIds: top.tokenIdList('eos_token_id'),
  };
  const ropeScaling = parseRopeScaling(r.object('rope_scaling'), where, 'model_config.rope_scaling');
  if (ropeScaling) cfg.ropeScaling = ropeScaling;
  const bos = top.optionalTokenId('bos_token_id');
  if (bos !== undefined) cfg.bosTokenId = bos;
  if (torchDtype) cfg.torchDtype = torchDtype;
  checkHeads(cfg, where);
  return cfg;
}

const DTYPE_NAMES: Record<TensorDtype, string> = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' };

/** A Hugging Face `config.json` object for `cfg` (parseHfConfig(toHfConfig(c)) equals c). */
export function toHfConfig(cfg: ModelConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {
    architectures: [cfg.family === 'qwen2' ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM'],
    model_type: cfg.family,
    hidden_act: 'silu',
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    num_key_value_heads: cfg.numKvHeads,
    head_dim: cfg.headDim,
    rms_norm_eps: cfg.rmsNormEps,
    rope_theta: cfg.ropeTheta,
    rope_scaling: ropeScalingJson(cfg.ropeScaling),
    max_position_embeddings: cfg.contextLength,
    tie_word_embeddings: cfg.tieWordEmbeddings,
    bos_token_id: cfg.bosTokenId ?? null,
    eos_token_id: cfg.eosTokenIds.length === 1 ? cfg.eosTokenIds[0] : cfg.eosTokenIds.length === 0 ? null : cfg.eosTokenIds,
  };
  if (cfg.family === 'llama') {
    out['attention_bias'] = false;
    out['mlp_bias'] = false;
  } else {
    out['use_sliding_window'] = false;
  }
  if (cfg.torchDtype) out['torch_dtype'] = DTYPE_NAMES[cfg.torchDtype];
  return out;
}

function ropeScalingJson(s: RopeScaling | undefined): Record<string, unknown> | null {
  if (!s) return null;
  if (s.type === 'linear') return { rope_type: 'linear', factor: s.factor };
  return {
    rope_type: 'llama3',
    factor: s.factor,
    low_freq_factor: s.lowFreqFactor,
    high_freq_factor: s.highFreqFactor,
    original_max_position_embeddings: s.originalMaxPositionEmbeddings,
  };
}

const MLC_QUANTIZATION: Record<TensorDtype, string> = { f32: 'q0f32', f16: 'q0f16', bf16: 'q0bf16' };

/** An MLC `mlc-chat-config.json` object for `cfg` (parseMlcConfig(toMlcChatConfig(c)) equals c). */
export function toMlcChatConfig(cfg: ModelConfig, convTemplate?: unknown, tokenizerFiles: string[] = []): Record<string, unknown> {
  const modelConfig: Record<string, unknown> = {
    hidden_act: 'silu',
    hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize,
    num_attention_heads: cfg.numHeads,
    num_key_value_heads: cfg.numKvHeads,
    num_hidden_layers: cfg.numLayers,
    head_dim: cfg.headDim,
    rms_norm_eps: cfg.rmsNormEps,
    vocab_size: cfg.vocabSize,
    tie_word_embeddings: cfg.tieWordEmbeddings,
    context_window_size: cfg.contextLength,
    prefill_chunk_size: Math.min(cfg.contextLength, 2048),
    tensor_parallel_shards: 1,
  };
  if (cfg.family === 'qwen2') modelConfig['rope_theta'] = cfg.ropeTheta;
  else modelConfig['position_embedding_base'] = cfg.ropeTheta;
  if (cfg.ropeScaling) modelConfig['rope_scaling'] = ropeScalingJson(cfg.ropeScaling);
  const out: Record<string, unknown> = {
    model_type: cfg.family,
    model_config: modelConfig,
    vocab_size: cfg.vocabSize,
    context_window_size: cfg.contextLength,
    sliding_window_size: -1,
    prefill_chunk_size: Math.min(cfg.contextLength, 2048),
    attention_sink_size: -1,
    tensor_parallel_shards: 1,
    tokenizer_files: tokenizerFiles,
    conv_template: convTemplate ?? null,
    bos_token_id: cfg.bosTokenId ?? null,
    eos_token_id: cfg.eosTokenIds.length === 1 ? cfg.eosTokenIds[0] : cfg.eosTokenIds,
  };
  if (cfg.torchDtype) out['quantization'] = MLC_QUANTIZATION[cfg.torchDtype];
  return out;
}
