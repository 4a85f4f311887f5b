/**
 * Host-side tensors: raw little-endian bytes plus a dtype and shape. Loaders produce them,
 * the engine uploads them as they are (f16/bf16 stay packed), tests decode them with
 * `toFloat32`.
 */

export type TensorDtype = 'f32' | 'f16' | 'bf16';

export interface HostTensor {
  name: string;
  /** Element dtype; for a q4 tensor, the dtype of its scales ('f16' for q4f16_1, 'f32' for q4f32_1). */
  dtype: TensorDtype;
  /** Logical shape; for a q4 tensor [rows, cols] of the dequantized matrix (cols a multiple of 32). */
  shape: number[];
  /** Raw little-endian bytes in `dtype`; for a q4 tensor the packed u32 words [rows, cols / 8]. May be a view into a larger file buffer. */
  data: Uint8Array;
  /** Present on MLC group-quantized (q4f16_1 / q4f32_1) matrices; see `Q4Packing`. */
  q4?: Q4Packing;
}

/** MLC group-quantization formats kvscope reads (see src/engine/ops/quant.ts for the layout). */
export type Q4Format = 'q4f16_1' | 'q4f32_1';

/**
 * MLC `GroupQuantize` with int4 in uint32 storage, group size 32, layout "NK": for a logical
 * [rows, cols] matrix W, `data` holds u32 words [rows, cols / 8] where element k of a row is
 * nibble (k % 8) (bits 4*(k%8) .. 4*(k%8)+3) of word k / 8, and `scales` holds [rows, cols / 32]
 * values in the tensor's `dtype`; W[n, k] = (q - 7) * scale[n, k / 32].
 */
export interface Q4Packing {
  format: Q4Format;
  /** Scale bytes [rows, cols / 32] in the tensor's `dtype`. */
  scales: Uint8Array;
}

export const Q4_GROUP = 32;
/** Scale dtype of each q4 format. */
export const Q4_SCALE_DTYPE: Record<Q4Format, TensorDtype> = { q4f16_1: 'f16', q4f32_1: 'f32' };

/** Weights keyed by Hugging Face logical names (`model.layers.0.self_attn.q_proj.weight`, ...). */
export type WeightSet = Map<string, HostTensor>;

export const TENSOR_DTYPES: readonly TensorDtype[] = ['f32', 'f16', 'bf16'];

export function isTensorDtype(value: unknown): value is TensorDtype {
  return value === 'f32' || value === 'f16' || value === 'bf16';
}

export function dtypeBytes(dtype: TensorDtype): number {
  return dtype === 'f32' ? 4 : 2;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeString(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

// Exact f16 -> f32 decode through a 64K-entry table (built on first use; 256 KiB).
let f16Table: Float32Array | undefined;

function f16ToF32Scalar(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

function getF16Table(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16ToF32Scalar(h);
  }
  return f16Table;
}

/** Copies `data` into a fresh, aligned buffer (views into files may sit at odd offsets). */
function alignedCopy(data: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(data.byteLength);
  copy.set(data);
  return copy.buffer;
}

/** Decodes f32/f16/bf16 bytes to float32 values, exactly. */
export function decodeToFloat32(dtype: TensorDtype, data: Uint8Array): Float32Array {
  if (dtype === 'f32') return new Float32Array(alignedCopy(data), 0, data.byteLength >> 2);
  const halves = new Uint16Array(alignedCopy(data), 0, data.byteLength >> 1);
  const out = new Float32Array(halves.length);
  if (dtype === 'f16') {
    const table = getF16Table();
    for (let i = 0; i < halves.length; i++) out[i] = table[halves[i]!]!;
  } else {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < halves.length; i++) bits[i] = halves[i]! << 16;
  }
  return out;
}

/** The tensor's values as float32 (f16 and bf16 decoded exactly; q4 dequantized exactly in f32). Always a fresh array. */
export function toFloat32(t: HostTensor): Float32Array {
  return t.q4 ? dequantizeQ4(t) : decodeToFloat32(t.dtype, t.data);
}

/** Byte sizes of a q4 [rows, cols] matrix's packed words and scales. */
export function q4Bytes(format: Q4Format, rows: number, cols: number): { words: number; scales: number } {
  return { words: rows * (cols / 8) * 4, scales: rows * (cols / Q4_GROUP) * dtypeBytes(Q4_SCALE_DTYPE[format]) };
}

/** W[n, k] = (nibble - 7) * scale, computed exactly in f32 (both factors are exact in f32, and so is their product). */
export function dequantizeQ4(t: HostTensor): Float32Array {
  if (!t.q4) throw new Error(`dequantizeQ4: tensor ${t.name} is not q4`);
  const [rows, cols] = t.shape as [number, number];
  const words = new Uint32Array(alignedCopy(t.data), 0, rows * (cols / 8));
  const scales = decodeToFloat32(t.dtype, t.q4.scales);
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) {
    const q = (words[i >>> 3]! >>> ((i & 7) * 4)) & 15;
    out[i] = (q - 7) * scales[(i / Q4_GROUP) | 0]!;
  }
  return out;
}

/**
 * MLC's group quantizer for a [rows, cols] f32 matrix: per group of 32 along a row,
 * scale = max|w| / 7 (rounded to the scale dtype, as MLC computes it in the model dtype),
 * q = clamp(round(w / scale + 7), 0, 14); packed 8 nibbles per u32, element 0 lowest.
 * For q4f16_1 the weights are first rounded to f16, as MLC casts the model before quantizing.
 */
export function quantizeQ4(name: string, shape: number[], values: Float32Array, format: Q4Format): HostTensor {
  const [rows, cols] = shape as [number, number];
  if (shape.length !== 2 || cols % Q4_GROUP !== 0 || values.length !== rows * cols) {
    throw new Error(`quantizeQ4: ${name} ${shapeString(shape)} is not a matrix with cols a multiple of ${Q4_GROUP}`);
  }
  const dtype = Q4_SCALE_DTYPE[format];
  const w = dtype === 'f32' ? values : decodeToFloat32(dtype, encodeFromFloat32(values, dtype));
  const groups = rows * (cols / Q4_GROUP);
  const rawScales = new Float32Array(groups);
  for (let g = 0; g < groups; g++) {
    let m = 0;
    for (let i = g * Q4_GROUP; i < (g + 1) * Q4_GROUP; i++) m = Math.max(m, Math.abs(w[i]!));
    rawScales[g] = m / 7;
  }
  const scaleBytes = encodeFromFloat32(rawScales, dtype);
  const scales = decodeToFloat32(dtype, scaleBytes);
  const words = new Uint32Array(rows * (cols / 8));
  for (let i = 0; i < w.length; i++) {
    const s = scales[(i / Q4_GROUP) | 0]!;
    const q = s > 0 ? Math.min(14, Math.max(0, Math.round(w[i]! / s + 7))) : 7;
    words[i >>> 3] = (words[i >>> 3]! | (q << ((i & 7) * 4))) >>> 0;
  }
  return { name, dtype, shape: [rows, cols], data: new Uint8Array(words.buffer), q4: { format, scales: scaleBytes } };
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** Rounds an f32 bit pattern to f16 bits, to nearest even; overflow gives infinity. */
function f32BitsToF16(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rest > half || (rest === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++; // may carry into the exponent: correct
  return sign | h;
}

/** Rounds an f32 bit pattern to bf16 bits, to nearest even. */
function f32BitsToBf16(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

export function f32ToF16Bits(v: number): number {
  f32Scratch[0] = v;
  return f32BitsToF16(u32Scratch[0]!);
}

export function f32ToBf16Bits(v: number): number {
  f32Scratch[0] = v;
  return f32BitsToBf16(u32Scratch[0]!);
}

/** Encodes float32 values as raw bytes in `dtype` (round to nearest even for f16/bf16). */
export function encodeFromFloat32(values: Float32Array, dtype: TensorDtype): Uint8Array {
  if (dtype === 'f32') return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  if (dtype === 'f16') for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16(bits[i]!);
  else for (let i = 0; i < bits.length; i++) out[i] = f32BitsToBf16(bits[i]!);
  return new Uint8Array(out.buffer);
}

/** Builds a HostTensor from float32 values, encoding to `dtype`. */
export function tensorFromFloat32(name: string, shape: number[], values: Float32Array, dtype: TensorDtype): HostTensor {
  return { name, dtype, shape: [...shape], data: encodeFromFloat32(values, dtype) };
}

/** Byte-exact equality of two tensors' dtype, shape and data. */
export function sameTensorBytes(a: HostTensor, b: HostTensor): boolean {
  if (a.dtype !== b.dtype || a.shape.length !== b.shape.length) return false;
  if (a.shape.some((d, i) => d !== b.shape[i])) return false;
  if (a.data.byteLength !== b.data.byteLength) return false;
  for (let i = 0; i < a.data.byteLength; i++) if (a.data[i] !== b.data[i]) return false;
  if (!a.q4 || !b.q4) return !a.q4 && !b.q4;
  if (a.q4.format !== b.q4.format || a.q4.scales.byteLength !== b.q4.scales.byteLength) return false;
  for (let i = 0; i < a.q4.scales.byteLength; i++) if (a.q4.scales[i] !== b.q4.scales[i]) return false;
  return true;
}
