/**
 * Plain-TypeScript float32 operators: the oracle every WGSL kernel is tested against.
 * Written for reading, not for speed. Conventions follow Hugging Face `transformers`'
 * LlamaForCausalLM / Qwen2ForCausalLM.
 */
import type { ModelConfig } from '../model/config';

const f = Math.fround;

/** y = x / sqrt(mean(x^2) + eps) * w, per row of length n. */
export function rmsnorm(x: Float32Array, w: Float32Array, eps: number): Float32Array {
  const n = w.length;
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / n; r++) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[r * n + i]! * x[r * n + i]!;
    const inv = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) out[r * n + i] = x[r * n + i]! * inv * w[i]!;
  }
  return out;
}

/**
 * Y[m,n] = y0[m,n] (when given) + sum_k X[m,k] W[n,k] + bias[n] for `rows` rows of X, summed in
 * f64 (JS numbers); W row-major [N, K], X row-major [rows, K]. The reference for the GEMM / matvec kernels.
 */
export function linearRows(w: Float32Array, n: number, k: number, x: Float32Array, rows: number, bias?: Float32Array, y0?: Float32Array): Float32Array {
  const out = new Float32Array(rows * n);
  for (let m = 0; m < rows; m++) {
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += x[m * k + j]! * w[i * k + j]!;
      out[m * n + i] = s + (bias ? bias[i]! : 0) + (y0 ? y0[m * n + i]! : 0);
    }
  }
  return out;
}

/** y[n] = sum_k W[n,k] x[k] (+ b[n]); W row-major [N, K]: one row of linearRows. */
export function matvec(w: Float32Array, x: Float32Array, n: number, k: number, bias?: Float32Array): Float32Array {
  return linearRows(w, n, k, x, 1, bias);
}

/** RoPE inverse frequencies, with Llama 3 / linear scaling as transformers applies it. */
export function ropeInvFreq(config: Pick<ModelConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float32Array {
  const d = config.headDim;
  const inv = new Float32Array(d / 2);
  for (let i = 0; i < d / 2; i++) inv[i] = 1 / Math.pow(config.ropeTheta, (2 * i) / d);
  const s = config.ropeScaling;
  if (s?.type === 'linear') {
    for (let i = 0; i < inv.length; i++) inv[i] = inv[i]! / s.factor;
  } else if (s?.type === 'llama3') {
    const old = s.originalMaxPositionEmbeddings ?? 8192;
    const lowF = s.lowFreqFactor ?? 1;
    const highF = s.highFreqFactor ?? 4;
    const lowWavelen = old / lowF;
    const highWavelen = old / highF;
    for (let i = 0; i < inv.length; i++) {
      const freq = inv[i]!;
      const wavelen = (2 * Math.PI) / freq;
      if (wavelen < highWavelen) continue;
      if (wavelen > lowWavelen) inv[i] = freq / s.factor;
      else {
        const smooth = (old / wavelen - lowF) / (highF - lowF);
        inv[i] = (1 - smooth) * (freq / s.factor) + smooth * freq;
      }
    }
  }
  return inv;
}

/**
 * cos/sin tables [positions, headDim/2]: the angle is rounded to f32 (as torch computes
 * `inv_freq @ position_ids` in float32), then cos/sin are taken exactly.
 */
export function ropeTables(invFreq: Float32Array, positions: number): { cos: Float32Array; sin: Float32Array } {
  const h = invFreq.length;
  const cos = new Float32Array(positions * h);
  const sin = new Float32Array(positions * h);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < h; i++) {
      const a = f(p * invFreq[i]!);
      cos[p * h + i] = Math.cos(a);
      sin[p * h + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/** Rotates one head vector in place (rotate_half convention). */
export function applyRope(v: Float32Array, offset: number, headDim: number, pos: number, cos: Float32Array, sin: Float32Array): void {
  const h = headDim / 2;
  for (let i = 0; i < h; i++) {
    const c = cos[pos * h + i]!;
    const s = sin[pos * h + i]!;
    const a = v[offset + i]!;
    const b = v[offset + i + h]!;
    v[offset + i] = a * c - b * s;
    v[offset + i + h] = b * c + a * s;
  }
}

/**
 * Attention of one query head over a list of cached entries (keys already rotated).
 * Returns the output vector and the attention probabilities per entry.
 */
export function attendHead(
  q: Float32Array,
  qOffset: number,
  keys: Float32Array[],
  values: Float32Array[],
  headDim: number,
): { out: Float32Array; probs: Float32Array } {
  const n = keys.length;
  const scale = 1 / Math.sqrt(headDim);
  const scores = new Float64Array(n);
  let max = -Infinity;
  for (let j = 0; j < n; j++) {
    let s = 0;
    const k = keys[j]!;
    for (let d = 0; d < headDim; d++) s += q[qOffset + d]! * k[d]!;
    scores[j] = s * scale;
    if (scores[j]! > max) max = scores[j]!;
  }
  let sum = 0;
  for (let j = 0; j < n; j++) {
    scores[j] = Math.exp(scores[j]! - max);
    sum += scores[j]!;
  }
  const out = new Float32Array(headDim);
  const probs = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    const p = scores[j]! / sum;
    probs[j] = p;
    const v = values[j]!;
    for (let d = 0; d < headDim; d++) out[d] = out[d]! + p * v[d]!;
  }
  return { out, probs };
}

export function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}
