/**
 * Attention-Gate weights (training/train_gate.py; design in training/README.md): per layer a
 * one-head causal attention block of dimension dg over the layer's normalized input, and a
 * linear map of [gate output ; input] to one logit per KV head. Tensors (f32 or f16/bf16):
 *   model.layers.{l}.gate.wq, .wk, .wv  [dg, hidden]
 *   model.layers.{l}.gate.wo            [numKvHeads, dg + hidden]
 *   model.layers.{l}.gate.bo            [numKvHeads]
 */
import { ShapeMismatchError, ModelLoadError } from '../errors';
import type { ModelConfig } from '../model/config';
import { toFloat32, type WeightSet } from '../model/tensor';

/** The largest gate dimension the WGSL kernel supports. */
export const MAX_GATE_DIM = 16;

export interface GateLayer {
  /** [Wq; Wk; Wv] stacked: 3*dg x hidden, row-major. */
  w: Float32Array;
  /** numKvHeads x (dg + hidden). */
  wo: Float32Array;
  bo: Float32Array;
}

export interface GateWeights {
  dg: number;
  layers: GateLayer[];
}

/** Checks names, shapes and sizes against the model and returns f32 copies. */
export function gateWeights(config: ModelConfig, weights: WeightSet): GateWeights {
  const H = config.hiddenSize;
  const nKV = config.numKvHeads;
  const get = (name: string) => {
    const t = weights.get(name);
    if (!t) throw new ModelLoadError('missing-tensor', `The gate weights have no tensor named ${name}.`);
    return t;
  };
  const dg = get('model.layers.0.gate.wq').shape[0]!;
  if (!Number.isInteger(dg) || dg < 1 || dg > MAX_GATE_DIM) {
    throw new ShapeMismatchError('shape-mismatch', `Gate dimension must be in [1, ${MAX_GATE_DIM}], got ${dg} (model.layers.0.gate.wq).`);
  }
  const layers: GateLayer[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}.gate.`;
    const expect: [string, number[]][] = [
      ['wq', [dg, H]],
      ['wk', [dg, H]],
      ['wv', [dg, H]],
      ['wo', [nKV, dg + H]],
      ['bo', [nKV]],
    ];
    const f: Record<string, Float32Array> = {};
    for (const [n, shape] of expect) {
      const t = get(p + n);
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new ShapeMismatchError('shape-mismatch', `${p + n} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}] for this model.`);
      }
      f[n] = toFloat32(t);
    }
    const w = new Float32Array(3 * dg * H);
    w.set(f.wq!, 0);
    w.set(f.wk!, dg * H);
    w.set(f.wv!, 2 * dg * H);
    layers.push({ w, wo: f.wo!, bo: f.bo! });
  }
  if (weights.has(`model.layers.${config.numLayers}.gate.wq`)) {
    throw new ShapeMismatchError('shape-mismatch', `The gate weights have more layers than the model (${config.numLayers}).`);
  }
  return { dg, layers };
}

/**
 * Plain-TypeScript reference of one layer's gate for rows at positions pos0.. given the
 * normalized inputs xn (rows x hidden) and the gate keys/values of earlier positions
 * (appended to `cache`). Returns z: rows x numKvHeads.
 */
export function refGate(g: GateWeights, layer: number, xn: Float32Array[], pos0: number, cache: { k: Float32Array[]; v: Float32Array[] }, nKV: number): Float32Array[] {
  const { dg } = g;
  const L = g.layers[layer]!;
  const H = xn[0]?.length ?? 0;
  const proj = (x: Float32Array, o: number) => {
    let s = 0;
    for (let i = 0; i < H; i++) s += L.w[o * H + i]! * x[i]!;
    return s;
  };
  const qs = xn.map((x) => Float32Array.from({ length: dg }, (_, d) => proj(x, d)));
  xn.forEach((x, r) => {
    cache.k[pos0 + r] = Float32Array.from({ length: dg }, (_, d) => proj(x, dg + d));
    cache.v[pos0 + r] = Float32Array.from({ length: dg }, (_, d) => proj(x, 2 * dg + d));
  });
  return xn.map((x, r) => {
    const t = pos0 + r;
    const q = qs[r]!;
    const s = Array.from({ length: t + 1 }, (_, j) => {
      let a = 0;
      for (let d = 0; d < dg; d++) a += q[d]! * cache.k[j]![d]!;
      return a / Math.sqrt(dg);
    });
    const m = Math.max(...s);
    const e = s.map((v) => Math.exp(v - m));
    const sum = e.reduce((a, b) => a + b, 0);
    const o = new Float64Array(dg);
    e.forEach((w, j) => {
      for (let d = 0; d < dg; d++) o[d]! += (w / sum) * cache.v[j]![d]!;
    });
    const width = dg + H;
    return Float32Array.from({ length: nKV }, (_, h) => {
      let z = L.bo[h]!;
      for (let d = 0; d < dg; d++) z += L.wo[h * width + d]! * o[d]!;
      for (let i = 0; i < H; i++) z += L.wo[h * width + dg + i]! * x[i]!;
      return z;
    });
  });
}
