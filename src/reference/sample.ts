/**
 * Plain-TypeScript twin of the GPU sampler (src/engine/ops/sample.ts documents the
 * semantics). It sorts instead of binary-searching and sums in f64, so it is an
 * independent check of the kernel; weights are rounded to f32 as the kernel computes them.
 */
import type { SamplingParams } from '../engine/ops/sample';

const F32_MAX = 3.4028234663852886e38;

/** PCG hash (Jarzynski & Olano 2020), identical to `pcg` in shaders/sample.wgsl. */
export function pcgHash(v: number): number {
  const state = (Math.imul(v, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** The uniform number the kernel draws for (seed, step): in [0, 1) on a 2^-24 grid. */
export function samplingUniform(seed: number, step: number): number {
  const h = pcgHash((pcgHash(seed >>> 0) ^ step) >>> 0);
  return (h >>> 8) / 16777216;
}

const keyView = new Float32Array(1);
const keyBits = new Uint32Array(keyView.buffer);

/** Monotone map from f32 to u32 (-0 < +0), as `order_key` in the shader. */
export function orderKey(x: number): number {
  keyView[0] = x;
  const b = keyBits[0]!;
  return (b & 0x80000000 ? ~b : b | 0x80000000) >>> 0;
}

export interface ReferenceSample {
  id: number;
  /**
   * Distance, as a fraction of the relevant mass, from the draw point r (and from the top-p
   * target) to the nearest cumulative boundary that would change the result. Below ~1e-5,
   * f32 rounding on the GPU may legitimately pick a different id. Infinity for greedy.
   */
  margin: number;
  /** Ids that survived top-k and top-p (ascending); empty for greedy. */
  kept: number[];
}

function argmax(keys: Uint32Array): number {
  let best = 0;
  for (let i = 1; i < keys.length; i++) if (keys[i]! > keys[best]!) best = i;
  return best;
}

/** Samples one id from `logits` with the uniform number `u` in [0, 1). */
export function sampleReference(logits: Float32Array, params: SamplingParams, u: number): ReferenceSample {
  const n = logits.length;
  const keys = new Uint32Array(n);
  for (let i = 0; i < n; i++) keys[i] = orderKey(logits[i]!);
  const arg = argmax(keys);
  if (params.temperature <= 0) return { id: arg, margin: Infinity, kept: [] };

  const m = logits[arg]!;
  const invT = Math.fround(Math.min(1 / params.temperature, F32_MAX));
  const sorted = keys.slice().sort().reverse();

  // Top-k: keep every logit >= the k-th largest.
  const k = params.topK;
  const tk = k >= 1 && k < n ? sorted[k - 1]! : 0;
  const w = new Float64Array(n);
  let z = 0;
  for (let i = 0; i < n; i++) {
    if (keys[i]! >= tk) {
      w[i] = Math.fround(Math.exp(Math.fround(Math.fround(logits[i]! - m) * invT)));
      z += w[i]!;
    }
  }

  // Top-p: walk distinct keys from the top; the cut is the first whose cumulative mass reaches the target.
  let tp = tk;
  let margin = Infinity;
  const topP = Math.fround(params.topP);
  if (topP < 1) {
    const target = topP * z;
    const massByKey = new Map<number, number>();
    for (let i = 0; i < n; i++) if (keys[i]! >= tk) massByKey.set(keys[i]!, (massByKey.get(keys[i]!) ?? 0) + w[i]!);
    const distinct = [...massByKey.keys()].sort((a, b) => b - a);
    let cum = 0;
    for (const key of distinct) {
      const before = cum;
      cum += massByKey.get(key)!;
      if (cum >= target || key === tk) {
        tp = key;
        margin = Math.min(target - before, cum - target) / z;
        break;
      }
    }
  }

  // Draw in ascending id order over the kept set.
  const kept: number[] = [];
  let total = 0;
  for (let i = 0; i < n; i++) {
    if (keys[i]! >= tp) {
      kept.push(i);
      total += w[i]!;
    }
  }
  const r = u * total;
  let cum = 0;
  let id = -1;
  for (const i of kept) {
    const before = cum;
    cum += w[i]!;
    if (cum > r) {
      id = i;
      margin = Math.min(margin, (r - before) / total, (cum - r) / total);
      break;
    }
  }
  if (id < 0) {
    // Only reachable through rounding: the last kept token with positive weight.
    for (const i of kept) if (w[i]! > 0) id = i;
    margin = 0;
  }
  return { id, margin, kept };
}
