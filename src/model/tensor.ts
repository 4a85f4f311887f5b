/**
 * Host-side tensors: raw little-endian bytes plus a dtype and shape. Loaders produce them,
 * the engine uploads them as they are (f16/bf16 stay packed), tests decode them with
 * `toFloat32`.
 */

export type TensorDtype = 'f32' | 'f16' | 'bf16';

export interface HostTensor {
  name: string;
  dtype: TensorDtype;
  shape: number[];
  /** Raw little-endian bytes in `dtype`; may be a view into a larger file buffer. */
  data: Uint8Array;
}

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

/** The tensor's values as float32 (f16 and bf16 decoded exactly). Always a fresh array. */
export function toFloat32(t: HostTensor): Float32Array {
  return decodeToFloat32(t.dtype, t.data);
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
  return true;
}
