/**
 * safetensors: an 8-byte little-endian header length N, N bytes of JSON
 * ({name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}), then the data section
 * the offsets point into. Single files and sharded sets (`model.safetensors.index.json`).
 */
import { ModelLoadError, UnsupportedError } from '../errors';
import { type ModelSource, type ProgressCallback, PARALLEL_FILES, mapLimit, parseJsonFile } from './source';
import { type HostTensor, type TensorDtype, type WeightSet, dtypeBytes, numel, shapeString } from './tensor';

const SAFETENSORS_DTYPES: Record<string, TensorDtype> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };
const DTYPE_TO_SAFETENSORS: Record<TensorDtype, string> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };
/** Header larger than this is certainly corrupt (the reference implementation caps at 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

function bad(file: string, problem: string): ModelLoadError {
  return new ModelLoadError('bad-weights', `${file}: ${problem}`);
}

function isShape(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0);
}

/**
 * Parses one safetensors file held in memory. Tensor data are views into `bytes` (no copy).
 * `file` names the file in error messages.
 */
export function parseSafetensors(bytes: Uint8Array, file = 'model.safetensors'): Map<string, HostTensor> {
  if (bytes.byteLength < 8) {
    throw bad(file, `file is truncated: ${bytes.byteLength} bytes, but the header length alone takes 8.`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > bytes.byteLength - 8) {
    throw bad(file, `header length ${headerLen} runs past the end of the file (${bytes.byteLength} bytes); the file is truncated or not safetensors.`);
  }
  if (headerLen > MAX_HEADER_BYTES) throw bad(file, `header length ${headerLen} is implausibly large.`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw bad(file, `header is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw bad(file, 'header is not a JSON object.');
  }
  const dataStart = 8 + headerLen;
  const dataLength = bytes.byteLength - dataStart;
  const tensors = new Map<string, HostTensor>();
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') continue;
    if (typeof entry !== 'object' || entry === null) throw bad(file, `tensor "${name}": header entry is not an object.`);
    const { dtype: rawDtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (typeof rawDtype !== 'string') throw bad(file, `tensor "${name}": dtype is missing.`);
    const dtype = SAFETENSORS_DTYPES[rawDtype];
    if (!dtype) {
      throw new UnsupportedError(
        'unsupported-dtype',
        `${file}: tensor "${name}" has dtype ${rawDtype}; kvscope reads F32, F16 and BF16 weights (quantized or integer weights are not supported).`,
      );
    }
    if (!isShape(shape)) throw bad(file, `tensor "${name}": shape ${JSON.stringify(shape)} is not a list of sizes.`);
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)
    ) {
      throw bad(file, `tensor "${name}": data_offsets ${JSON.stringify(offsets)} is not a pair of byte offsets.`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataLength) {
      throw bad(
        file,
        `tensor "${name}": data_offsets [${begin}, ${end}] are out of range of the ${dataLength}-byte data section; the file is truncated or corrupt.`,
      );
    }
    const expected = numel(shape) * dtypeBytes(dtype);
    if (end - begin !== expected) {
      throw bad(file, `tensor "${name}": data_offsets span ${end - begin} bytes, but ${rawDtype} ${shapeString(shape)} needs ${expected}.`);
    }
    tensors.set(name, { name, dtype, shape: [...shape], data: bytes.subarray(dataStart + begin, dataStart + end) });
  }
  return tensors;
}

/** The parsed `model.safetensors.index.json`: tensor name -> shard file. */
export function parseSafetensorsIndex(json: unknown, file = 'model.safetensors.index.json'): Map<string, string> {
  const weightMap = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw bad(file, 'field "weight_map" is missing or not an object.');
  }
  const map = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || shard === '' || shard.includes('..')) throw bad(file, `weight_map["${name}"] is not a shard file name.`);
    map.set(name, shard);
  }
  if (map.size === 0) throw bad(file, 'weight_map is empty.');
  return map;
}

export const SAFETENSORS_FILE = 'model.safetensors';
export const SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json';

/**
 * Reads safetensors weights from a source: the sharded index when present, else
 * `model.safetensors`. Progress is over all weight bytes; `total` grows as shard sizes become known.
 */
export async function loadSafetensors(source: ModelSource, onProgress?: ProgressCallback): Promise<WeightSet> {
  const indexBytes = await source.readOptional(SAFETENSORS_INDEX_FILE);
  if (indexBytes === undefined) {
    const bytes = await source.read(SAFETENSORS_FILE, onProgress);
    return parseSafetensors(bytes, source.describe(SAFETENSORS_FILE));
  }
  const weightMap = parseSafetensorsIndex(
    parseJsonFile(indexBytes, source.describe(SAFETENSORS_INDEX_FILE), 'bad-weights'),
    source.describe(SAFETENSORS_INDEX_FILE),
  );
  const shards = [...new Set(weightMap.values())];
  const progress = new ProgressTotals(shards.length, onProgress);
  const parsed = await mapLimit(shards, PARALLEL_FILES, async (shard, i) =>
    parseSafetensors(await source.read(shard, (l, t) => progress.update(i, l, t)), source.describe(shard)),
  );
  const weights: WeightSet = new Map();
  for (const [i, shard] of shards.entries()) {
    const file = source.describe(shard);
    const tensors = parsed[i]!;
    for (const [name, shardOf] of weightMap) {
      if (shardOf !== shard) continue;
      const t = tensors.get(name);
      if (!t) throw bad(file, `tensor "${name}" is listed in ${SAFETENSORS_INDEX_FILE} but not in the shard.`);
      weights.set(name, t);
    }
  }
  return weights;
}

/** Sums per-file progress into one (loaded, total) stream. */
export class ProgressTotals {
  private readonly loaded: number[];
  private readonly totals: number[];
  constructor(
    files: number,
    private readonly onProgress?: ProgressCallback,
    expectedTotals?: number[],
  ) {
    this.loaded = new Array<number>(files).fill(0);
    this.totals = expectedTotals ? [...expectedTotals] : new Array<number>(files).fill(0);
  }
  update(file: number, loaded: number, total: number): void {
    this.loaded[file] = loaded;
    if (total > 0) this.totals[file] = total;
    if (!this.onProgress) return;
    let l = 0;
    let t = 0;
    for (let i = 0; i < this.loaded.length; i++) {
      l += this.loaded[i]!;
      t += Math.max(this.totals[i]!, this.loaded[i]!);
    }
    this.onProgress(l, t);
  }
}

/** Header bytes (length prefix + JSON padded to 8 bytes) and the tensors in data order. */
export function safetensorsHeader(tensors: Iterable<HostTensor>, metadata: Record<string, string> = { format: 'pt' }): {
  header: Uint8Array;
  ordered: HostTensor[];
  dataBytes: number;
} {
  const ordered = [...tensors];
  const json: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of ordered) {
    const size = numel(t.shape) * dtypeBytes(t.dtype);
    if (t.data.byteLength !== size) {
      throw new ModelLoadError('bad-weights', `tensor "${t.name}" holds ${t.data.byteLength} bytes, but ${t.dtype} ${shapeString(t.shape)} needs ${size}.`);
    }
    json[t.name] = { dtype: DTYPE_TO_SAFETENSORS[t.dtype], shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let text = JSON.stringify(json);
  const encoder = new TextEncoder();
  let body = encoder.encode(text);
  const pad = (8 - (body.byteLength % 8)) % 8;
  if (pad) body = encoder.encode((text += ' '.repeat(pad)));
  const header = new Uint8Array(8 + body.byteLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(body.byteLength), true);
  header.set(body, 8);
  return { header, ordered, dataBytes: offset };
}

/** One safetensors file holding `tensors` (in the order given). */
export function writeSafetensors(tensors: Iterable<HostTensor>, metadata?: Record<string, string>): Uint8Array {
  const { header, ordered, dataBytes } = safetensorsHeader(tensors, metadata);
  const out = new Uint8Array(header.byteLength + dataBytes);
  out.set(header, 0);
  let at = header.byteLength;
  for (const t of ordered) {
    out.set(t.data, at);
    at += t.data.byteLength;
  }
  return out;
}
