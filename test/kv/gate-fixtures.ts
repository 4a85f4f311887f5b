import type { HostTensor, WeightSet } from '../../src/model/tensor';
import type { ModelConfig } from '../../src/model/config';
import { rng } from '../gpu';

/** Random gate tensors (f32) for a config: dg x hidden projections, a head map with bias. */
export function randomGates(config: ModelConfig, dg: number, seed: number, biasShift = 0): WeightSet {
  const r = rng(seed);
  const H = config.hiddenSize;
  const nKV = config.numKvHeads;
  const t = (name: string, shape: number[], std: number, shift = 0): [string, HostTensor] => {
    const n = shape.reduce((a, b) => a * b, 1);
    const f = Float32Array.from({ length: n }, () => (r() * 2 - 1) * std * Math.sqrt(3) + shift);
    return [name, { name, dtype: 'f32', shape, data: new Uint8Array(f.buffer) }];
  };
  const out: [string, HostTensor][] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}.gate.`;
    out.push(t(p + 'wq', [dg, H], 0.3), t(p + 'wk', [dg, H], 0.3), t(p + 'wv', [dg, H], 0.3));
    out.push(t(p + 'wo', [nKV, dg + H], 0.15), t(p + 'bo', [nKV], 0.1, biasShift));
  }
  return new Map(out);
}

