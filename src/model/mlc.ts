/**
 * MLC weights: `tensor-cache.json` (formerly `ndarray-cache.json`) lists shard files
 * (`{dataPath, format: 'raw-shard', nbytes, records}`), each record a tensor
 * (`{name, shape, dtype, format: 'raw' | 'f32-to-bf16', nbytes, byteOffset}`).
 * MLC fuses q/k/v (`self_attn.qkv_proj`, `self_attn.c_attn` for Qwen2) and gate/up
 * (`mlp.gate_up_proj`) along dim 0; we split them back into Hugging Face names.
 * Group-quantized builds (q4f16_1 / q4f32_1) store each matrix `<m>.weight` as `<m>.q_weight`
 * (uint32 [N, K/8]) plus `<m>.q_scale` (float16 / float32 [N, K/32]); they are paired into one
 * HostTensor `<m>.weight` carrying `q4` (layout in src/engine/ops/quant.ts).
 */
import { ModelLoadError, ShapeMismatchError, UnsupportedError } from '../errors';
import type { ModelConfig } from './config';
import { ProgressTotals } from './safetensors';
import { type ModelSource, type ProgressCallback, PARALLEL_FILES, mapLimit, parseJsonFile } from './source';
import { type HostTensor, type Q4Format, type TensorDtype, type WeightSet, Q4_GROUP, dtypeBytes, numel, shapeString } from './tensor';

export const MLC_CACHE_FILES = ['tensor-cache.json', 'ndarray-cache.json'] as const;

export interface MlcTensorRecord {
  name: string;
  shape: number[];
  /** TVM dtype name: 'float32' | 'float16' | 'bfloat16', or 'uint32' for q4 `q_weight` words. */
  dtype: string;
  /** 'f32-to-bf16': a float32 tensor stored as bf16 (the high 16 bits, rounded). */
  format: 'raw' | 'f32-to-bf16';
  nbytes: number;
  byteOffset: number;
}

export interface MlcShardRecord {
  dataPath: string;
  format: 'raw-shard';
  nbytes: number;
  records: MlcTensorRecord[];
  md5sum?: string;
}

export interface MlcTensorCache {
  metadata?: Record<string, unknown>;
  records: MlcShardRecord[];
}

const TVM_DTYPES: Record<string, TensorDtype> = { float32: 'f32', float16: 'f16', bfloat16: 'bf16' };
export const DTYPE_TO_TVM: Record<TensorDtype, string> = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' };
/** The q4 format a `q_scale` record's dtype implies. */
const Q4_FORMAT_OF_SCALE: Record<string, Q4Format> = { float16: 'q4f16_1', float32: 'q4f32_1' };
const Q_WEIGHT = '.q_weight';
const Q_SCALE = '.q_scale';

function bad(file: string, problem: string): ModelLoadError {
  return new ModelLoadError('bad-weights', `${file}: ${problem}`);
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Validates the JSON of `tensor-cache.json` / `ndarray-cache.json`. */
export function parseMlcTensorCache(json: unknown, file = 'tensor-cache.json'): MlcTensorCache {
  const records = (json as { records?: unknown } | null)?.records;
  if (!Array.isArray(records)) throw bad(file, 'field "records" is missing or not a list.');
  const shards: MlcShardRecord[] = [];
  for (const [i, shard] of records.entries()) {
    const s = shard as Record<string, unknown>;
    if (typeof s !== 'object' || s === null) throw bad(file, `records[${i}] is not an object.`);
    if (typeof s['dataPath'] !== 'string' || s['dataPath'] === '' || s['dataPath'].includes('..')) {
      throw bad(file, `records[${i}].dataPath is not a file name.`);
    }
    if (s['format'] !== undefined && s['format'] !== 'raw-shard') {
      throw bad(file, `records[${i}].format ${JSON.stringify(s['format'])} is not "raw-shard".`);
    }
    if (!isNonNegInt(s['nbytes'])) throw bad(file, `records[${i}].nbytes is not a byte count.`);
    if (!Array.isArray(s['records'])) throw bad(file, `records[${i}].records is not a list.`);
    const tensors: MlcTensorRecord[] = [];
    for (const [j, rec] of (s['records'] as unknown[]).entries()) {
      const r = rec as Record<string, unknown>;
      const where = `records[${i}].records[${j}]`;
      if (typeof r !== 'object' || r === null || typeof r['name'] !== 'string') throw bad(file, `${where} has no name.`);
      const name = r['name'];
      const shape = r['shape'];
      if (!Array.isArray(shape) || !shape.every(isNonNegInt)) throw bad(file, `tensor "${name}": shape ${JSON.stringify(shape)} is not a list of sizes.`);
      if (typeof r['dtype'] !== 'string') throw bad(file, `tensor "${name}": dtype is missing.`);
      const format = r['format'] ?? 'raw';
      if (format !== 'raw' && format !== 'f32-to-bf16') throw bad(file, `tensor "${name}": format ${JSON.stringify(format)} is not "raw" or "f32-to-bf16".`);
      if (!isNonNegInt(r['nbytes']) || !isNonNegInt(r['byteOffset'])) throw bad(file, `tensor "${name}": nbytes/byteOffset are not byte counts.`);
      tensors.push({ name, shape: shape as number[], dtype: r['dtype'], format, nbytes: r['nbytes'], byteOffset: r['byteOffset'] });
    }
    const entry: MlcShardRecord = { dataPath: s['dataPath'], format: 'raw-shard', nbytes: s['nbytes'], records: tensors };
    if (typeof s['md5sum'] === 'string') entry.md5sum = s['md5sum'];
    shards.push(entry);
  }
  const out: MlcTensorCache = { records: shards };
  const metadata = (json as { metadata?: unknown }).metadata;
  if (typeof metadata === 'object' && metadata !== null) out.metadata = metadata as Record<string, unknown>;
  return out;
}

/** The tensor a record describes, as a view into its shard's bytes. */
function recordToTensor(rec: MlcTensorRecord, shard: Uint8Array, file: string): HostTensor {
  let dtype: TensorDtype | undefined;
  if (rec.format === 'f32-to-bf16') {
    if (rec.dtype !== 'float32') throw bad(file, `tensor "${rec.name}": format f32-to-bf16 needs dtype float32, got ${rec.dtype}.`);
    dtype = 'bf16';
  } else {
    dtype = TVM_DTYPES[rec.dtype];
  }
  if (!dtype) {
    throw new UnsupportedError(
      'unsupported-dtype',
      `${file}: tensor "${rec.name}" has dtype ${rec.dtype}; kvscope reads float32/float16/bfloat16 MLC weights (unquantized q0f32/q0f16/q0bf16 builds), not quantized ones.`,
    );
  }
  const expected = numel(rec.shape) * dtypeBytes(dtype);
  if (rec.nbytes !== expected) {
    throw bad(file, `tensor "${rec.name}": nbytes ${rec.nbytes}, but ${dtype} ${shapeString(rec.shape)} needs ${expected}.`);
  }
  if (rec.byteOffset + rec.nbytes > shard.byteLength) {
    throw bad(file, `tensor "${rec.name}": bytes [${rec.byteOffset}, ${rec.byteOffset + rec.nbytes}) run past the end of the ${shard.byteLength}-byte shard; the shard is truncated.`);
  }
  return { name: rec.name, dtype, shape: [...rec.shape], data: shard.subarray(rec.byteOffset, rec.byteOffset + rec.nbytes) };
}

/** Reads every tensor of an MLC cache, under MLC's own names. */
export async function loadMlcTensors(
  source: ModelSource,
  onProgress?: ProgressCallback,
): Promise<{ tensors: Map<string, HostTensor>; cacheFile: string }> {
  let cacheFile: string | undefined;
  let cacheBytes: Uint8Array | undefined;
  for (const name of MLC_CACHE_FILES) {
    cacheBytes = await source.readOptional(name);
    if (cacheBytes) {
      cacheFile = name;
      break;
    }
  }
  if (!cacheBytes || !cacheFile) {
    throw new ModelLoadError('bad-model-url', `Could not read ${source.describe(MLC_CACHE_FILES[0])} (or ${MLC_CACHE_FILES[1]}): no such file`);
  }
  const where = source.describe(cacheFile);
  const cache = parseMlcTensorCache(parseJsonFile(cacheBytes, where, 'bad-weights'), where);
  const progress = new ProgressTotals(cache.records.length, onProgress, cache.records.map((s) => s.nbytes));
  const shardBytes = await mapLimit(cache.records, PARALLEL_FILES, async (shard, i) => {
    const bytes = await source.read(shard.dataPath, (l, t) => progress.update(i, l, t), { bytes: shard.nbytes, bytesFrom: cacheFile });
    if (bytes.byteLength < shard.nbytes) {
      throw bad(source.describe(shard.dataPath), `shard is truncated: ${bytes.byteLength} bytes, ${cacheFile} says ${shard.nbytes}.`);
    }
    return bytes;
  });
  const tensors = new Map<string, HostTensor>();
  const qWeights = new Map<string, RawRecord>();
  const qScales = new Map<string, RawRecord>();
  for (const [i, shard] of cache.records.entries()) {
    const file = source.describe(shard.dataPath);
    const bytes = shardBytes[i]!;
    for (const rec of shard.records) {
      if (tensors.has(rec.name) || qWeights.has(rec.name) || qScales.has(rec.name)) throw bad(where, `tensor "${rec.name}" appears twice.`);
      if (rec.name.endsWith(Q_WEIGHT)) qWeights.set(rec.name.slice(0, -Q_WEIGHT.length), { rec, shard: bytes, file });
      else if (rec.name.endsWith(Q_SCALE)) qScales.set(rec.name.slice(0, -Q_SCALE.length), { rec, shard: bytes, file });
      else tensors.set(rec.name, recordToTensor(rec, bytes, file));
    }
  }
  for (const [base, words] of qWeights) {
    const scales = qScales.get(base);
    if (!scales) throw bad(where, `tensor "${base}${Q_WEIGHT}" has no "${base}${Q_SCALE}" beside it.`);
    qScales.delete(base);
    const name = `${base}.weight`;
    if (tensors.has(name)) throw bad(where, `tensor "${name}" appears both quantized and unquantized.`);
    tensors.set(name, q4RecordsToTensor(name, words, scales));
  }
  for (const base of qScales.keys()) throw bad(where, `tensor "${base}${Q_SCALE}" has no "${base}${Q_WEIGHT}" beside it.`);
  return { tensors, cacheFile };
}

interface RawRecord {
  rec: MlcTensorRecord;
  shard: Uint8Array;
  file: string;
}

function recordBytes(r: RawRecord, expected: number): Uint8Array {
  const { rec, shard, file } = r;
  if (rec.nbytes !== expected) throw bad(file, `tensor "${rec.name}": nbytes ${rec.nbytes}, but ${rec.dtype} ${shapeString(rec.shape)} needs ${expected}.`);
  if (rec.byteOffset + rec.nbytes > shard.byteLength) {
    throw bad(file, `tensor "${rec.name}": bytes [${rec.byteOffset}, ${rec.byteOffset + rec.nbytes}) run past the end of the ${shard.byteLength}-byte shard; the shard is truncated.`);
  }
  return shard.subarray(rec.byteOffset, rec.byteOffset + rec.nbytes);
}

/** Pairs `q_weight` (uint32 [N, K/8]) and `q_scale` ([N, K/32]) into one q4 tensor [N, K]. */
function q4RecordsToTensor(name: string, words: RawRecord, scales: RawRecord): HostTensor {
  const w = words.rec;
  const s = scales.rec;
  const format = Q4_FORMAT_OF_SCALE[s.dtype];
  if (w.dtype !== 'uint32' || !format || w.format !== 'raw' || s.format !== 'raw') {
    throw new UnsupportedError(
      'unsupported-dtype',
      `${words.file}: "${w.name}" is ${w.dtype} with ${s.dtype} scales; kvscope reads MLC group quantization q4f16_1 / q4f32_1 (uint32 words, float16 / float32 scales).`,
    );
  }
  if (w.shape.length !== 2 || s.shape.length !== 2 || s.shape[0] !== w.shape[0] || w.shape[1]! !== s.shape[1]! * (Q4_GROUP / 8)) {
    throw new UnsupportedError(
      'unsupported-dtype',
      `${words.file}: "${w.name}" ${shapeString(w.shape)} with "${s.name}" ${shapeString(s.shape)} is not 4-bit group quantization with groups of ${Q4_GROUP} along K (layout "NK", as in q4f16_1 / q4f32_1).`,
    );
  }
  const [rows, packed] = w.shape as [number, number];
  const dtype = TVM_DTYPES[s.dtype]!;
  return {
    name,
    dtype,
    shape: [rows, packed * 8],
    data: recordBytes(words, rows * packed * 4),
    q4: { format, scales: recordBytes(scales, numel(s.shape) * dtypeBytes(dtype)) },
  };
}

/** Splits `t` along dim 0 into parts of `rows[i]` rows each (byte-exact views). */
export function splitRows(t: HostTensor, parts: { name: string; rows: number }[]): HostTensor[] {
  const total = parts.reduce((n, p) => n + p.rows, 0);
  if (t.shape[0] !== total) {
    throw new ShapeMismatchError(
      'shape-mismatch',
      `fused tensor "${t.name}" has ${t.shape[0]} rows (shape ${shapeString(t.shape)}), but the config implies ${parts.map((p) => p.rows).join(' + ')} = ${total}.`,
    );
  }
  // A q4 row is cols/8 words plus cols/32 scales; splitting rows never touches the packing.
  const rowBytes = t.q4 ? (t.shape[1]! / 8) * 4 : numel(t.shape.slice(1)) * dtypeBytes(t.dtype);
  const scaleRowBytes = t.q4 ? (t.shape[1]! / Q4_GROUP) * dtypeBytes(t.dtype) : 0;
  let row = 0;
  return parts.map((p) => {
    const data = t.data.subarray(row * rowBytes, (row + p.rows) * rowBytes);
    const out: HostTensor = { name: p.name, dtype: t.dtype, shape: [p.rows, ...t.shape.slice(1)], data };
    if (t.q4) out.q4 = { format: t.q4.format, scales: t.q4.scales.subarray(row * scaleRowBytes, (row + p.rows) * scaleRowBytes) };
    row += p.rows;
    return out;
  });
}

const FUSED_QKV = /^(model\.layers\.\d+\.self_attn)\.(qkv_proj|c_attn)\.(weight|bias)$/;
const FUSED_GATE_UP = /^(model\.layers\.\d+\.mlp)\.gate_up_proj\.weight$/;

/** Renames MLC tensors to Hugging Face logical names, splitting the fused projections. */
export function mlcToHfWeights(tensors: Map<string, HostTensor>, config: ModelConfig): WeightSet {
  const q = config.numHeads * config.headDim;
  const kv = config.numKvHeads * config.headDim;
  const out: WeightSet = new Map();
  const put = (t: HostTensor) => out.set(t.name, t);
  for (const [name, t] of tensors) {
    let m = FUSED_QKV.exec(name);
    if (m) {
      const [, prefix, , kind] = m;
      splitRows(t, [
        { name: `${prefix}.q_proj.${kind}`, rows: q },
        { name: `${prefix}.k_proj.${kind}`, rows: kv },
        { name: `${prefix}.v_proj.${kind}`, rows: kv },
      ]).forEach(put);
      continue;
    }
    m = FUSED_GATE_UP.exec(name);
    if (m) {
      splitRows(t, [
        { name: `${m[1]}.gate_proj.weight`, rows: config.intermediateSize },
        { name: `${m[1]}.up_proj.weight`, rows: config.intermediateSize },
      ]).forEach(put);
      continue;
    }
    put({ ...t, name });
  }
  return out;
}

/** The MLC name a fused group is stored under, for `family`. */
export function mlcQkvName(family: ModelConfig['family'], layer: number, kind: 'weight' | 'bias'): string {
  return `model.layers.${layer}.self_attn.${family === 'qwen2' ? 'c_attn' : 'qkv_proj'}.${kind}`;
}

export function mlcGateUpName(layer: number): string {
  return `model.layers.${layer}.mlp.gate_up_proj.weight`;
}
