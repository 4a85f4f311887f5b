import { Gpu } from '../src/gpu/device';
import { decodeToFloat32, encodeFromFloat32 } from '../src/model/tensor';

const shared = new Map<string, Promise<Gpu>>();
// A destroyed device (see test/setup.ts) is replaced on the next call.

/**
 * One device per test file and kernel set (validation on), shared by the file's tests.
 * `kernels: 'gpu'` runs the variants GPUs get (SwiftShader would otherwise pick the CPU ones).
 */
export async function testGpu(kernels: 'auto' | 'gpu' = 'auto'): Promise<Gpu> {
  const make = (): Promise<Gpu> => {
    const p = Gpu.create({ kernels });
    shared.set(kernels, p);
    return p;
  };
  const g = await (shared.get(kernels) ?? make());
  return g.lost ? make() : g;
}

/** A deterministic PRNG (mulberry32) for test data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randn(n: number, r: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r()) * scale;
  }
  return out;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Encodes f32 values as f16 or bf16 bytes and returns the bytes plus the decoded values. */
export function encode16(values: Float32Array, dtype: 'f16' | 'bf16'): { bytes: Uint8Array; decoded: Float32Array } {
  const bytes = encodeFromFloat32(values, dtype);
  return { bytes, decoded: decodeToFloat32(dtype, bytes) };
}

/**
 * IEEE half bits -> number, written independently of src/model/tensor so tests that check the
 * model layer's own decoding (e.g. the q4 codec) have an oracle of their own.
 */
export function f16BitsToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Root mean square of the values. */
export function rms(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * a[i]!;
  return Math.sqrt(s / a.length);
}

/** Largest |value|. */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}
