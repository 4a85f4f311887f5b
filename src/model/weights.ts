/**
 * Loading a whole model directory (HF config.json + safetensors, or MLC mlc-chat-config.json
 * + tensor cache) into a config, Hugging-Face-named host tensors and tokenizer/chat files,
 * and checking the tensors against the config.
 */
import { ModelLoadError, ShapeMismatchError } from '../errors';
import { parseMlcConvTemplate, type MlcConvTemplate } from './chat-template';
import { type ModelConfig, parseHfConfig, parseMlcConfig } from './config';
import { loadMlcTensors, mlcToHfWeights } from './mlc';
import { loadSafetensors } from './safetensors';
import type { ModelCacheOptions } from './cache-store';
import { type ModelSource, type ProgressCallback, openModelSource, parseJsonFile, readOptionalJson } from './source';
import { type TensorDtype, type WeightSet, Q4_GROUP, Q4_SCALE_DTYPE, dtypeBytes, isTensorDtype, numel, q4Bytes, shapeString } from './tensor';

export type { HostTensor, TensorDtype, WeightSet } from './tensor';
export { toFloat32 } from './tensor';

export interface LoadModelOptions {
  /** Weight bytes read so far and the expected total (the total may grow while shards start). */
  onProgress?: ProgressCallback;
  /** Force a layout instead of detecting it. */
  layout?: 'hf' | 'mlc';
  /** Run `validateWeights` (default true). */
  validate?: boolean;
  /**
   * Cache Storage for model URLs (browsers; see cache-store.ts): default on where `caches`
   * exists, reusing WebLLM's cache on this origin and keeping kvscope's own (`kvscope/model`);
   * `false` disables it; an object tunes it. Ignored for local paths and ModelSources.
   */
  cache?: boolean | ModelCacheOptions;
}

export interface LoadedModel {
  layout: 'hf' | 'mlc';
  config: ModelConfig;
  weights: WeightSet;
  /** Parsed `tokenizer.json`, when the directory has one. */
  tokenizerJson?: Record<string, unknown>;
  /** Parsed `tokenizer_config.json`, when present. */
  tokenizerConfig?: Record<string, unknown>;
  /** The HF Jinja chat template (tokenizer_config `chat_template`, or `chat_template.jinja`/`.json`). */
  chatTemplate?: string;
  /** MLC `conv_template` from mlc-chat-config.json. */
  mlcConvTemplate?: MlcConvTemplate;
}

const HF_CONFIG = 'config.json';
const MLC_CONFIG = 'mlc-chat-config.json';

function asObject(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new ModelLoadError('bad-config', `${where}: expected a JSON object.`);
  }
  return v as Record<string, unknown>;
}

/**
 * Loads a model directory from a URL, a local path (Node) or a ModelSource. Detects the
 * layout: `mlc-chat-config.json` means MLC (tensor-cache.json / ndarray-cache.json shards),
 * otherwise `config.json` with `model.safetensors` or `model.safetensors.index.json`.
 */
export async function loadModel(location: string | URL | ModelSource, options: LoadModelOptions = {}): Promise<LoadedModel> {
  const source =
    typeof location === 'string' || location instanceof URL
      ? openModelSource(location, { cache: options.cache ?? true })
      : location;
  let layout = options.layout;
  let configBytes: Uint8Array | undefined;
  if (layout !== 'hf') {
    configBytes = await source.readOptional(MLC_CONFIG);
    if (configBytes) layout = 'mlc';
    else if (layout === 'mlc') await source.read(MLC_CONFIG); // throws bad-model-url naming the file
  }
  if (!configBytes) {
    configBytes = await source.readOptional(HF_CONFIG);
    if (!configBytes) {
      throw new ModelLoadError(
        'bad-model-url',
        `No model at ${source.location}: neither ${source.describe(HF_CONFIG)} nor ${source.describe(MLC_CONFIG)} could be found.`,
      );
    }
    layout = 'hf';
  }
  const loaded = layout === 'mlc' ? await loadMlc(source, configBytes, options) : await loadHf(source, configBytes, options);
  if (options.validate ?? true) validateWeights(loaded.config, loaded.weights);
  await source.finish?.();
  return loaded;
}

async function loadHf(source: ModelSource, configBytes: Uint8Array, options: LoadModelOptions): Promise<LoadedModel> {
  const where = source.describe(HF_CONFIG);
  const config = parseHfConfig(parseJsonFile(configBytes, where), where);
  const generation = await readOptionalJson(source, 'generation_config.json');
  if (generation !== undefined) mergeGenerationConfig(config, asObject(generation, source.describe('generation_config.json')));
  const result: LoadedModel = { layout: 'hf', config, weights: new Map() };
  await readTokenizerFiles(source, result, true);
  result.weights = await loadSafetensors(source, options.onProgress);
  return result;
}

async function loadMlc(source: ModelSource, configBytes: Uint8Array, options: LoadModelOptions): Promise<LoadedModel> {
  const where = source.describe(MLC_CONFIG);
  const json = asObject(parseJsonFile(configBytes, where), where);
  const config = parseMlcConfig(json, where);
  const result: LoadedModel = { layout: 'mlc', config, weights: new Map() };
  if (json['conv_template'] !== undefined && json['conv_template'] !== null) {
    result.mlcConvTemplate = parseMlcConvTemplate(json['conv_template'], `${where} conv_template`);
  }
  await readTokenizerFiles(source, result, false);
  const { tensors } = await loadMlcTensors(source, options.onProgress);
  result.weights = mlcToHfWeights(tensors, config);
  return result;
}

/** generation_config.json often carries the full EOS list (e.g. Llama 3 instruct's <|eot_id|>). */
function mergeGenerationConfig(config: ModelConfig, gen: Record<string, unknown>): void {
  const eos = gen['eos_token_id'];
  const ids = (Array.isArray(eos) ? eos : [eos]).filter((v): v is number => Number.isInteger(v) && (v as number) >= 0);
  config.eosTokenIds = [...new Set([...config.eosTokenIds, ...ids])];
  const bos = gen['bos_token_id'];
  if (config.bosTokenId === undefined && Number.isInteger(bos) && (bos as number) >= 0) config.bosTokenId = bos as number;
}

async function readTokenizerFiles(source: ModelSource, result: LoadedModel, hf: boolean): Promise<void> {
  const tokenizerJson = await readOptionalJson(source, 'tokenizer.json');
  if (tokenizerJson !== undefined) result.tokenizerJson = asObject(tokenizerJson, source.describe('tokenizer.json'));
  let tokenizerConfig: unknown;
  try {
    tokenizerConfig = await readOptionalJson(source, 'tokenizer_config.json');
  } catch (e) {
    // MLC layout: mlc-chat-config.json carries the tokens and the conversation template, and
    // WebLLM's caches do not keep tokenizer_config.json, so a model loaded from them offline
    // must not fail on it. An HF layout needs it (chat template, special tokens).
    if (hf || !(e instanceof ModelLoadError) || e.code !== 'bad-model-url') throw e;
    console.warn(`kvscope: ${source.describe('tokenizer_config.json')} could not be fetched (${e.message}); continuing without it (MLC layout).`);
  }
  if (tokenizerConfig !== undefined) result.tokenizerConfig = asObject(tokenizerConfig, source.describe('tokenizer_config.json'));
  if (!hf) return;
  const fromConfig = pickChatTemplate(result.tokenizerConfig?.['chat_template']);
  if (fromConfig !== undefined) {
    result.chatTemplate = fromConfig;
    return;
  }
  // Newer transformers save the template next to the tokenizer instead.
  const jinja = await source.readOptional('chat_template.jinja');
  if (jinja) {
    result.chatTemplate = new TextDecoder().decode(jinja);
    return;
  }
  const json = await readOptionalJson(source, 'chat_template.json');
  const picked = pickChatTemplate((json as { chat_template?: unknown } | undefined)?.chat_template);
  if (picked !== undefined) result.chatTemplate = picked;
}

/** `chat_template` is a string, or a list of {name, template} where 'default' is the chat one. */
function pickChatTemplate(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value as { name?: unknown; template?: unknown }[];
    const chosen = named.find((t) => t.name === 'default') ?? named[0];
    if (chosen && typeof chosen.template === 'string') return chosen.template;
  }
  return undefined;
}

/** Every tensor the config implies, with its shape, under Hugging Face names. */
export function expectedTensorShapes(config: ModelConfig): Map<string, number[]> {
  const { hiddenSize: h, intermediateSize: i, numHeads, numKvHeads, headDim, vocabSize } = config;
  const q = numHeads * headDim;
  const kv = numKvHeads * headDim;
  const shapes = new Map<string, number[]>();
  shapes.set('model.embed_tokens.weight', [vocabSize, h]);
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    shapes.set(`${p}.input_layernorm.weight`, [h]);
    shapes.set(`${p}.self_attn.q_proj.weight`, [q, h]);
    shapes.set(`${p}.self_attn.k_proj.weight`, [kv, h]);
    shapes.set(`${p}.self_attn.v_proj.weight`, [kv, h]);
    if (config.attentionBias) {
      shapes.set(`${p}.self_attn.q_proj.bias`, [q]);
      shapes.set(`${p}.self_attn.k_proj.bias`, [kv]);
      shapes.set(`${p}.self_attn.v_proj.bias`, [kv]);
    }
    shapes.set(`${p}.self_attn.o_proj.weight`, [h, q]);
    shapes.set(`${p}.post_attention_layernorm.weight`, [h]);
    shapes.set(`${p}.mlp.gate_proj.weight`, [i, h]);
    shapes.set(`${p}.mlp.up_proj.weight`, [i, h]);
    shapes.set(`${p}.mlp.down_proj.weight`, [h, i]);
  }
  shapes.set('model.norm.weight', [h]);
  if (!config.tieWordEmbeddings) shapes.set('lm_head.weight', [vocabSize, h]);
  return shapes;
}

export interface WeightsSummary {
  /** dtype of the projection matrices (the bulk of the bytes). */
  matrixDtype: TensorDtype;
  parameterCount: number;
  bytes: number;
}

/**
 * Checks that every tensor the config implies is present with the implied shape and a
 * supported dtype. Extra tensors (e.g. a tied model's redundant lm_head) must still have the
 * right shape when they are ones we know. Throws ModelLoadError('missing-tensor'),
 * ShapeMismatchError('shape-mismatch' | 'dtype-mismatch') or ModelLoadError('bad-weights').
 */
export function validateWeights(config: ModelConfig, weights: WeightSet): WeightsSummary {
  const expected = expectedTensorShapes(config);
  if (config.tieWordEmbeddings && weights.has('lm_head.weight')) expected.set('lm_head.weight', [config.vocabSize, config.hiddenSize]);
  let parameterCount = 0;
  let bytes = 0;
  const matrixDtypes = new Map<TensorDtype, number>();
  for (const [name, shape] of expected) {
    const t = weights.get(name);
    if (!t) {
      throw new ModelLoadError('missing-tensor', `Tensor "${name}" is missing; the config implies shape ${shapeString(shape)}.`);
    }
    if (!isTensorDtype(t.dtype)) {
      throw new ShapeMismatchError('dtype-mismatch', `Tensor "${name}" has dtype ${String(t.dtype)}; only f32, f16 and bf16 are supported.`);
    }
    if (t.shape.length !== shape.length || t.shape.some((d, k) => d !== shape[k])) {
      throw new ShapeMismatchError(
        'shape-mismatch',
        `Tensor "${name}" has shape ${shapeString(t.shape)}, but the config implies ${shapeString(shape)}.`,
      );
    }
    let size: number;
    if (t.q4) {
      // MLC group-quantized matrix: packed words plus scales (see Q4Packing).
      if (shape.length !== 2 || shape[1]! % Q4_GROUP !== 0 || t.dtype !== Q4_SCALE_DTYPE[t.q4.format]) {
        throw new ShapeMismatchError('dtype-mismatch', `Tensor "${name}" is ${t.q4.format}, which needs a matrix with a multiple of ${Q4_GROUP} columns and ${Q4_SCALE_DTYPE[t.q4.format]} scales.`);
      }
      const need = q4Bytes(t.q4.format, shape[0]!, shape[1]!);
      if (t.data.byteLength !== need.words || t.q4.scales.byteLength !== need.scales) {
        throw new ModelLoadError('bad-weights', `Tensor "${name}" holds ${t.data.byteLength} + ${t.q4.scales.byteLength} bytes, but ${t.q4.format} ${shapeString(shape)} needs ${need.words} + ${need.scales}.`);
      }
      size = need.words + need.scales;
    } else {
      size = numel(shape) * dtypeBytes(t.dtype);
      if (t.data.byteLength !== size) {
        throw new ModelLoadError('bad-weights', `Tensor "${name}" holds ${t.data.byteLength} bytes, but ${t.dtype} ${shapeString(shape)} needs ${size}.`);
      }
    }
    // A checkpoint declared f16 cannot hold bf16 tensors and vice versa; f32 norms beside
    // 16-bit matrices are common and fine.
    const declared = config.torchDtype;
    if (declared && declared !== 'f32' && t.dtype !== 'f32' && t.dtype !== declared) {
      throw new ShapeMismatchError(
        'dtype-mismatch',
        `Tensor "${name}" is ${t.dtype}, but the config declares ${declared} weights.`,
      );
    }
    parameterCount += numel(shape);
    bytes += size;
    if (shape.length === 2) matrixDtypes.set(t.dtype, (matrixDtypes.get(t.dtype) ?? 0) + size);
  }
  let matrixDtype: TensorDtype = 'f32';
  let most = -1;
  for (const [d, b] of matrixDtypes) if (b > most) [matrixDtype, most] = [d, b];
  return { matrixDtype, parameterCount, bytes };
}
