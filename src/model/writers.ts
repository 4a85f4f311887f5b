/**
 * Writing models: safetensors, MLC shard sets (with MLC's fused names), random-weight models
 * of any Llama/Qwen2 shape, and whole model directories in Node. Tests and benchmarks build
 * their models with these; export scripts can too.
 */
import { ModelLoadError } from '../errors';
import type { MlcConvTemplate } from './chat-template';
import { type ModelConfig, toHfConfig, toMlcChatConfig } from './config';
import { DTYPE_TO_TVM, type MlcShardRecord, type MlcTensorCache, type MlcTensorRecord, mlcGateUpName, mlcQkvName } from './mlc';
import { SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE, safetensorsHeader } from './safetensors';
import { joinPath, loadNodeFs } from './source';
import {
  type HostTensor,
  type Q4Format,
  type TensorDtype,
  type WeightSet,
  Q4_GROUP,
  Q4_SCALE_DTYPE,
  dtypeBytes,
  encodeFromFloat32,
  numel,
  quantizeQ4,
  shapeString,
  toFloat32,
} from './tensor';
import { expectedTensorShapes } from './weights';

export { writeSafetensors } from './safetensors';

// ---------------------------------------------------------------------------------------
// MLC shards

export interface WriteMlcOptions {
  /** Needed to know the family (qkv_proj vs c_attn) and the layer count. */
  config: ModelConfig;
  /** Target shard size in bytes (default 32 MiB, MLC's usual); a bigger tensor gets its own shard. */
  shardBytes?: number;
  /** 'f32-to-bf16' stores f32 tensors as bf16 (MLC's encoding); 16-bit tensors stay raw. */
  format?: 'raw' | 'f32-to-bf16';
}

interface PlannedRecord {
  name: string;
  shape: number[];
  dtype: TensorDtype;
  /** TVM dtype written instead of DTYPE_TO_TVM[dtype] ('uint32' for q4 words). */
  tvmDtype?: string;
  /** Pieces concatenated along dim 0. */
  parts: HostTensor[];
  f32ToBf16: boolean;
  nbytes: number;
}

function concatRows(name: string, parts: HostTensor[]): { shape: number[]; dtype: TensorDtype } {
  const first = parts[0]!;
  const tail = first.shape.slice(1);
  for (const p of parts) {
    if (p.dtype !== first.dtype || p.shape.length !== first.shape.length || p.shape.slice(1).some((d, i) => d !== tail[i])) {
      throw new ModelLoadError(
        'bad-weights',
        `cannot fuse ${parts.map((x) => `"${x.name}" ${x.dtype} ${shapeString(x.shape)}`).join(', ')} into "${name}": dtypes or trailing dims differ.`,
      );
    }
  }
  return { shape: [parts.reduce((n, p) => n + p.shape[0]!, 0), ...tail], dtype: first.dtype };
}

/** MLC's parameter list for these weights: fused names, in MLC's order; leftovers last. */
function planMlcRecords(weights: WeightSet, options: WriteMlcOptions): PlannedRecord[] {
  const { config } = options;
  const used = new Set<string>();
  const records: PlannedRecord[] = [];
  const get = (name: string): HostTensor => {
    const t = weights.get(name);
    if (!t) throw new ModelLoadError('missing-tensor', `Tensor "${name}" is missing; cannot write the MLC shards.`);
    used.add(name);
    return t;
  };
  const add = (name: string, parts: HostTensor[]) => {
    if (parts.some((p) => p.q4)) {
      addQ4(name, parts);
      return;
    }
    const { shape, dtype } = concatRows(name, parts);
    const f32ToBf16 = options.format === 'f32-to-bf16' && dtype === 'f32';
    records.push({ name, shape, dtype, parts, f32ToBf16, nbytes: numel(shape) * (f32ToBf16 ? 2 : dtypeBytes(dtype)) });
  };
  // A q4 matrix `<m>.weight` is written as `<m>.q_weight` (uint32 [N, K/8]) and `<m>.q_scale`
  // ([N, K/32]); fusing concatenates both along N.
  const addQ4 = (name: string, parts: HostTensor[]) => {
    const format = parts[0]!.q4?.format;
    const cols = parts[0]!.shape[1]!;
    if (!name.endsWith('.weight') || parts.some((p) => p.q4?.format !== format || p.shape.length !== 2 || p.shape[1] !== cols)) {
      throw new ModelLoadError('bad-weights', `cannot write ${parts.map((x) => `"${x.name}"`).join(', ')} as one q4 matrix "${name}": formats or columns differ.`);
    }
    const base = name.slice(0, -'.weight'.length);
    const rows = parts.reduce((n, p) => n + p.shape[0]!, 0);
    const scaleDtype = Q4_SCALE_DTYPE[format!];
    records.push({ name: `${base}.q_weight`, shape: [rows, cols / 8], dtype: 'f32', tvmDtype: 'uint32', parts, f32ToBf16: false, nbytes: rows * (cols / 8) * 4 });
    const scaleParts = parts.map((p) => ({ name: p.name, dtype: scaleDtype, shape: [p.shape[0]!, cols / Q4_GROUP], data: p.q4!.scales }));
    records.push({ name: `${base}.q_scale`, shape: [rows, cols / Q4_GROUP], dtype: scaleDtype, parts: scaleParts, f32ToBf16: false, nbytes: rows * (cols / Q4_GROUP) * dtypeBytes(scaleDtype) });
  };
  add('model.embed_tokens.weight', [get('model.embed_tokens.weight')]);
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    add(mlcQkvName(config.family, l, 'weight'), ['q', 'k', 'v'].map((x) => get(`${p}.self_attn.${x}_proj.weight`)));
    if (config.attentionBias) add(mlcQkvName(config.family, l, 'bias'), ['q', 'k', 'v'].map((x) => get(`${p}.self_attn.${x}_proj.bias`)));
    add(`${p}.self_attn.o_proj.weight`, [get(`${p}.self_attn.o_proj.weight`)]);
    add(mlcGateUpName(l), [get(`${p}.mlp.gate_proj.weight`), get(`${p}.mlp.up_proj.weight`)]);
    add(`${p}.mlp.down_proj.weight`, [get(`${p}.mlp.down_proj.weight`)]);
    add(`${p}.input_layernorm.weight`, [get(`${p}.input_layernorm.weight`)]);
    add(`${p}.post_attention_layernorm.weight`, [get(`${p}.post_attention_layernorm.weight`)]);
  }
  add('model.norm.weight', [get('model.norm.weight')]);
  if (!config.tieWordEmbeddings) add('lm_head.weight', [get('lm_head.weight')]);
  for (const [name, t] of weights) if (!used.has(name)) add(name, [t]);
  return records;
}

function packShards(records: PlannedRecord[], shardBytes: number): PlannedRecord[][] {
  const shards: PlannedRecord[][] = [];
  let current: PlannedRecord[] = [];
  let size = 0;
  for (const r of records) {
    if (current.length > 0 && size + r.nbytes > shardBytes) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(r);
    size += r.nbytes;
  }
  if (current.length > 0) shards.push(current);
  return shards;
}

function shardName(i: number): string {
  return `params_shard_${i}.bin`;
}

function materializeShard(records: PlannedRecord[]): { bytes: Uint8Array; entries: MlcTensorRecord[] } {
  const bytes = new Uint8Array(records.reduce((n, r) => n + r.nbytes, 0));
  const entries: MlcTensorRecord[] = [];
  let at = 0;
  for (const r of records) {
    entries.push({
      name: r.name,
      shape: r.shape,
      dtype: r.tvmDtype ?? DTYPE_TO_TVM[r.dtype],
      format: r.f32ToBf16 ? 'f32-to-bf16' : 'raw',
      nbytes: r.nbytes,
      byteOffset: at,
    });
    for (const part of r.parts) {
      const data = r.f32ToBf16 ? encodeFromFloat32(toFloat32(part), 'bf16') : part.data;
      bytes.set(data, at);
      at += data.byteLength;
    }
  }
  return { bytes, entries };
}

function cacheMetadata(records: PlannedRecord[]): Record<string, unknown> {
  const params = records.reduce((n, r) => n + numel(r.shape), 0);
  const bytes = records.reduce((n, r) => n + r.nbytes, 0);
  return { ParamSize: records.length, ParamBytes: bytes, BitsPerParam: params ? (bytes * 8) / params : 0 };
}

/** An MLC shard set for `weights` (HF names in, MLC's fused names out). */
export function writeMlcShards(weights: WeightSet, options: WriteMlcOptions): { tensorCache: MlcTensorCache; shards: Map<string, Uint8Array> } {
  const records = planMlcRecords(weights, options);
  const shards = new Map<string, Uint8Array>();
  const shardRecords: MlcShardRecord[] = [];
  for (const [i, group] of packShards(records, options.shardBytes ?? 32 << 20).entries()) {
    const { bytes, entries } = materializeShard(group);
    shards.set(shardName(i), bytes);
    shardRecords.push({ dataPath: shardName(i), format: 'raw-shard', nbytes: bytes.byteLength, records: entries });
  }
  return { tensorCache: { metadata: cacheMetadata(records), records: shardRecords }, shards };
}

// ---------------------------------------------------------------------------------------
// Random models

/** Deterministic 32-bit generator (splitmix32-style), good enough for weights and tests. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Inverse normal CDF (Acklam's rational approximation, |error| < 1.2e-9). */
function normalQuantile(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const q = Math.min(p, 1 - p);
  let x: number;
  if (q > 0.02425) {
    const u = p - 0.5;
    const r = u * u;
    return ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * u) /
      (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
  }
  const r = Math.sqrt(-2 * Math.log(q));
  x = (((((c[0]! * r + c[1]!) * r + c[2]!) * r + c[3]!) * r + c[4]!) * r + c[5]!) / ((((d[0]! * r + d[1]!) * r + d[2]!) * r + d[3]!) * r + 1);
  return p < 0.5 ? x : -x;
}

// 65536 standard-normal quantiles: a table lookup per value keeps 500M-parameter models fast.
let normalTable: Float32Array | undefined;
function getNormalTable(): Float32Array {
  if (!normalTable) {
    normalTable = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) normalTable[i] = normalQuantile((i + 0.5) / 65536);
  }
  return normalTable;
}

export interface RandomModelOptions {
  /** Std of projection matrices and embeddings (default 0.02, the usual init). */
  std?: number;
  /** Std of the jitter around 1 on RMSNorm weights (default 0.1). */
  normJitter?: number;
  /** Std of q/k/v biases (default 0.02). */
  biasStd?: number;
}

/**
 * Raw bytes of `n` values mean + std * N(0, 1) in `dtype`, deterministic in `seed`. Values
 * come from a 65536-entry quantile table already encoded in `dtype`, so a 500M-parameter
 * model takes seconds, and f16/bf16 values are exactly the rounded f32 ones.
 */
function randomBytes(n: number, seed: number, dtype: TensorDtype, std: number, mean: number): Uint8Array {
  const table = getNormalTable();
  const scaled = new Float32Array(65536);
  for (let i = 0; i < 65536; i++) scaled[i] = mean + std * table[i]!;
  const next = rng(seed);
  if (dtype === 'f32') {
    const out = new Float32Array(n);
    let i = 0;
    for (; i + 1 < n; i += 2) {
      const r = next();
      out[i] = scaled[r & 0xffff]!;
      out[i + 1] = scaled[r >>> 16]!;
    }
    if (i < n) out[i] = scaled[next() & 0xffff]!;
    return new Uint8Array(out.buffer);
  }
  const encoded = new Uint16Array(encodeFromFloat32(scaled, dtype).buffer);
  const out = new Uint16Array(n);
  let i = 0;
  for (; i + 1 < n; i += 2) {
    const r = next();
    out[i] = encoded[r & 0xffff]!;
    out[i + 1] = encoded[r >>> 16]!;
  }
  if (i < n) out[i] = encoded[next() & 0xffff]!;
  return new Uint8Array(out.buffer);
}

/**
 * Random weights shaped by `config` under HF names (untied models get an lm_head):
 * matrices N(0, 0.02^2), norm weights 1 + N(0, 0.1^2), biases N(0, 0.02^2). Each tensor's
 * values depend only on (seed, its name), and the f16/bf16 models are the f32 one rounded.
 * Note: validateWeights rejects f16 weights for a config declaring bf16 (and vice versa);
 * pass `{ ...config, torchDtype: dtype }` when the config came from a real checkpoint.
 */
export function randomModel(config: ModelConfig, dtype: TensorDtype = 'f32', seed = 0, options: RandomModelOptions = {}): WeightSet {
  const std = options.std ?? 0.02;
  const jitter = options.normJitter ?? 0.1;
  const biasStd = options.biasStd ?? 0.02;
  const weights: WeightSet = new Map();
  for (const [name, shape] of expectedTensorShapes(config)) {
    const n = numel(shape);
    const s = (hashString(name) ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0;
    const data = name.endsWith('norm.weight')
      ? randomBytes(n, s, dtype, jitter, 1)
      : name.endsWith('.bias')
        ? randomBytes(n, s, dtype, biasStd, 0)
        : randomBytes(n, s, dtype, std, 0);
    weights.set(name, { name, dtype, shape, data });
  }
  return weights;
}

/**
 * Quantizes a model as MLC's q4f16_1 / q4f32_1 do: every matrix (projections, embedding table,
 * lm_head: MLC's presets quantize embeddings and the final FC too) becomes q4 with groups of 32
 * along its input dim; norms and biases are stored in the model dtype (f16 / f32).
 */
export function quantizeModel(weights: WeightSet, format: Q4Format): WeightSet {
  const dtype = Q4_SCALE_DTYPE[format];
  const out: WeightSet = new Map();
  for (const [name, t] of weights) {
    if (t.q4) throw new ModelLoadError('bad-weights', `Tensor "${name}" is already quantized.`);
    const values = toFloat32(t);
    if (t.shape.length === 2 && t.shape[1]! % Q4_GROUP === 0) out.set(name, quantizeQ4(name, t.shape, values, format));
    else out.set(name, { name, dtype, shape: [...t.shape], data: encodeFromFloat32(values, dtype) });
  }
  return out;
}

/** Random weights (as randomModel) quantized to q4f16_1 / q4f32_1 (as quantizeModel). */
export function randomQ4Model(config: ModelConfig, format: Q4Format, seed = 0, options: RandomModelOptions = {}): WeightSet {
  return quantizeModel(randomModel(config, 'f32', seed, options), format);
}

// ---------------------------------------------------------------------------------------
// Model directories (Node)

export interface ModelDirTokenizer {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig?: Record<string, unknown>;
  /** Written into tokenizer_config.json (HF layout). */
  chatTemplate?: string;
  /** Written into mlc-chat-config.json (MLC layout). */
  mlcConvTemplate?: MlcConvTemplate;
}

export interface WriteModelDirOptions {
  /** HF: split into `model-0000i-of-0000N.safetensors` + index when larger. MLC: shard size. */
  maxShardBytes?: number;
  /** MLC: store f32 tensors as 'f32-to-bf16'. */
  mlcFormat?: 'raw' | 'f32-to-bf16';
  /** MLC: name of the cache file (default tensor-cache.json; older builds use ndarray-cache.json). */
  mlcCacheFile?: 'tensor-cache.json' | 'ndarray-cache.json';
}

function dominantDtype(weights: WeightSet): TensorDtype {
  const bytes = new Map<TensorDtype, number>();
  for (const t of weights.values()) bytes.set(t.dtype, (bytes.get(t.dtype) ?? 0) + t.data.byteLength);
  let best: TensorDtype = 'f32';
  let most = -1;
  for (const [d, b] of bytes) if (b > most) [best, most] = [d, b];
  return best;
}

async function writeFileParts(path: string, parts: Uint8Array[]): Promise<void> {
  const fs = await loadNodeFs();
  const handle = await fs.open(path, 'w');
  try {
    for (const p of parts) {
      let written = 0;
      while (written < p.byteLength) {
        const { bytesWritten } = await handle.write(p, written, p.byteLength - written);
        written += bytesWritten;
      }
    }
  } finally {
    await handle.close();
  }
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFileParts(path, [new TextEncoder().encode(JSON.stringify(value, null, 2) + '\n')]);
}

/**
 * Writes a loadable model directory: 'hf' = config.json + safetensors (sharded with an index
 * above `maxShardBytes`), 'mlc' = mlc-chat-config.json + tensor-cache.json + params_shard_*.bin.
 * Tokenizer files are written when given. Node only.
 */
export async function writeModelDir(
  dir: string,
  config: ModelConfig,
  weights: WeightSet,
  layout: 'hf' | 'mlc',
  tokenizer?: ModelDirTokenizer,
  options: WriteModelDirOptions = {},
): Promise<void> {
  const fs = await loadNodeFs();
  await fs.mkdir(dir, { recursive: true });
  // The written config declares the dtype of the weights actually written.
  const cfg: ModelConfig = { ...config, torchDtype: dominantDtype(weights) };
  if (tokenizer) {
    await writeJson(joinPath(dir, 'tokenizer.json'), tokenizer.tokenizerJson);
    const tokenizerConfig = { ...(tokenizer.tokenizerConfig ?? {}) };
    if (layout === 'hf' && tokenizer.chatTemplate !== undefined) tokenizerConfig['chat_template'] = tokenizer.chatTemplate;
    await writeJson(joinPath(dir, 'tokenizer_config.json'), tokenizerConfig);
  }
  if (layout === 'hf') {
    const q4 = [...weights.values()].find((t) => t.q4);
    if (q4) throw new ModelLoadError('bad-weights', `Tensor "${q4.name}" is ${q4.q4!.format}, which only the MLC layout can hold.`);
    await writeJson(joinPath(dir, 'config.json'), toHfConfig(cfg));
    await writeSafetensorsFiles(dir, weights, options.maxShardBytes);
    return;
  }
  if (cfg.torchDtype === 'f32' && options.mlcFormat === 'f32-to-bf16') cfg.torchDtype = 'bf16';
  const tokenizerFiles = tokenizer ? ['tokenizer.json', 'tokenizer_config.json'] : [];
  const mlcConfig = toMlcChatConfig(cfg, tokenizer?.mlcConvTemplate, tokenizerFiles);
  const q4 = [...weights.values()].find((t) => t.q4)?.q4;
  if (q4) mlcConfig['quantization'] = q4.format;
  await writeJson(joinPath(dir, 'mlc-chat-config.json'), mlcConfig);
  const mlcOptions: WriteMlcOptions = { config: cfg };
  if (options.mlcFormat) mlcOptions.format = options.mlcFormat;
  const records = planMlcRecords(weights, mlcOptions);
  const shardRecords: MlcShardRecord[] = [];
  // One shard in memory at a time.
  for (const [i, group] of packShards(records, options.maxShardBytes ?? 32 << 20).entries()) {
    const { bytes, entries } = materializeShard(group);
    await writeFileParts(joinPath(dir, shardName(i)), [bytes]);
    shardRecords.push({ dataPath: shardName(i), format: 'raw-shard', nbytes: bytes.byteLength, records: entries });
  }
  const cache: MlcTensorCache = { metadata: cacheMetadata(records), records: shardRecords };
  await writeJson(joinPath(dir, options.mlcCacheFile ?? 'tensor-cache.json'), cache);
}

async function writeSafetensorsFiles(dir: string, weights: WeightSet, maxShardBytes?: number): Promise<void> {
  const tensors = [...weights.values()];
  const total = tensors.reduce((n, t) => n + t.data.byteLength, 0);
  const write = async (file: string, group: HostTensor[]) => {
    const { header, ordered } = safetensorsHeader(group);
    await writeFileParts(joinPath(dir, file), [header, ...ordered.map((t) => t.data)]);
  };
  if (maxShardBytes === undefined || total <= maxShardBytes) {
    await write(SAFETENSORS_FILE, tensors);
    return;
  }
  const groups: HostTensor[][] = [];
  let current: HostTensor[] = [];
  let size = 0;
  for (const t of tensors) {
    if (current.length > 0 && size + t.data.byteLength > maxShardBytes) {
      groups.push(current);
      current = [];
      size = 0;
    }
    current.push(t);
    size += t.data.byteLength;
  }
  if (current.length > 0) groups.push(current);
  const pad = (n: number) => String(n).padStart(5, '0');
  const weightMap: Record<string, string> = {};
  for (const [i, group] of groups.entries()) {
    const file = `model-${pad(i + 1)}-of-${pad(groups.length)}.safetensors`;
    await write(file, group);
    for (const t of group) weightMap[t.name] = file;
  }
  await writeJson(joinPath(dir, SAFETENSORS_INDEX_FILE), { metadata: { total_size: total }, weight_map: weightMap });
}
