/**
 * KVSharer calibration, run by kvscope itself (browser or Node): per-layer mean keys and
 * values on the GPU over a calibration set, pair distances, and the greedy search that
 * accepts a (later layer reads earlier layer) pair only while the cosine similarity of the
 * final hidden states (shared vs. original, last token of each sample, after the final norm)
 * stays >= threshold, until the target number of shared layers.
 */
import type { Engine } from '../engine/engine';
import { InvalidArgumentError } from '../errors';
import { kernelSource } from '../engine/ops/basic';
import policySrc from '../../shaders/kv_policy.wgsl?raw';
import { CALIBRATION_TEXTS } from './calibration-texts';
import type { SharingMap } from './sharing';

export type SharingOrder = 'dissimilar-first' | 'similar-first';

export interface CalibrationOptions {
  /** Token-id samples; default: the shipped held-out texts, tokenized and cut to `sampleTokens`. */
  samples?: number[][];
  sampleTokens?: number;
  /** Cosine-similarity floor for accepting a pair (paper's demo value 0.5). */
  threshold?: number;
  /** Layers to share (default 25% of layers, rounded). */
  targetSharedLayers?: number;
  /** The paper's order is most dissimilar first; 'similar-first' is its ablation. */
  order?: SharingOrder;
  onProgress?: (p: { stage: 'statistics' | 'search'; done: number; total: number }) => void;
  /** Stops the calibration between two forward passes; it then rejects with an `AbortError` (the engine's policy and sharing are restored). */
  signal?: AbortSignal;
}

function abortError(): Error {
  const e = new Error('The calibration was aborted.');
  e.name = 'AbortError';
  return e;
}

/**
 * The greedy search on its own: candidate pairs (i > j) sorted by distance (descending for
 * dissimilar-first), skipping pairs that would make a chain (a shared layer as source, or a
 * source becoming shared) or share a layer twice; each candidate is tried together with the
 * accepted ones and kept when `evaluate` (mean cosine similarity) >= threshold.
 */
export async function greedySharingSearch(
  distance: number[][],
  evaluate: (map: Record<number, number>) => Promise<number> | number,
  opts: { threshold: number; target: number; order: SharingOrder; onProgress?: (done: number, total: number) => void },
): Promise<{ map: Record<number, number>; similarity: number; tried: number }> {
  const L = distance.length;
  const pairs: [number, number, number][] = [];
  for (let i = 1; i < L; i++) for (let j = 0; j < i; j++) pairs.push([i, j, distance[i]![j]!]);
  pairs.sort((a, b) => (opts.order === 'dissimilar-first' ? b[2] - a[2] : a[2] - b[2]) || a[0] - b[0] || a[1] - b[1]);
  const map: Record<number, number> = {};
  let similarity = 1;
  let tried = 0;
  for (const [k, [i, j]] of pairs.entries()) {
    if (Object.keys(map).length >= opts.target) break;
    opts.onProgress?.(k, pairs.length);
    const sources = new Set(Object.values(map));
    if (i in map || j in map || sources.has(i)) continue;
    tried++;
    const s = await evaluate({ ...map, [i]: j });
    if (s >= opts.threshold) {
      map[i] = j;
      similarity = s;
    }
  }
  return { map, similarity, tried };
}

function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb + 1e-30);
}

/** Calibrates a sharing map for the engine's model. The engine's policy and sharing are restored afterwards (its cache is emptied). */
export async function calibrateSharing(engine: Engine, options: CalibrationOptions = {}): Promise<SharingMap> {
  const cfg = engine.config;
  const L = cfg.numLayers;
  const threshold = options.threshold ?? 0.5;
  const target = options.targetSharedLayers ?? Math.round(0.25 * L);
  const order = options.order ?? 'dissimilar-first';
  if (!(threshold >= -1 && threshold <= 1)) throw new InvalidArgumentError(`threshold must be a cosine similarity in [-1, 1], got ${threshold}.`);
  if (!Number.isInteger(target) || target < 0 || target > Math.floor(L / 2)) {
    throw new InvalidArgumentError(`targetSharedLayers must be an integer in [0, ${Math.floor(L / 2)}] (a source is never shared), got ${target}.`);
  }
  let samples = options.samples;
  if (!samples) {
    if (!engine.tokenizer) throw new InvalidArgumentError('This model has no tokenizer: pass calibration samples as token ids.');
    const n = options.sampleTokens ?? 64;
    samples = CALIBRATION_TEXTS.map((t) => engine.tokenizer!.encode(t, { addBos: true }).slice(0, n));
  }
  samples = samples.filter((s) => s.length > 0);
  if (samples.length === 0) throw new InvalidArgumentError('The calibration set is empty: pass at least one non-empty sample.');
  for (const s of samples) if (s.length > engine.contextLength) throw new InvalidArgumentError(`A calibration sample has ${s.length} tokens, more than the context (${engine.contextLength}).`);

  const prevPolicy = engine.policySpec;
  const prevSource = engine.cacheSource;
  const gpu = engine.gpu;
  const nKV = cfg.numKvHeads;
  const hd = cfg.headDim;
  const checkAbort = () => {
    if (options.signal?.aborted) throw abortError();
  };
  checkAbort();
  try {
    engine.setPolicy({ name: 'full' });
    engine.setSharing(undefined);
    // 1. Mean K and V per layer, summed on the GPU.
    await engine.prefillLogits([samples[0]![0]!]); // installs the full cache
    engine.reset();
    // After the install, which takes ownership of the cache's buffers itself (owners do not nest).
    const owner = {};
    const sums: GPUBuffer[] = [];
    const meanOps = [];
    let tokens = 0;
    const base: Float32Array[] = [];
    let means: Float32Array[];
    try {
      gpu.beginOwner(owner);
      try {
        for (let l = 0; l < L; l++) {
          const c = engine.model.cache.layers[l]!;
          const buf = gpu.storage(2 * nKV * hd * 4, `calibration.sums.${l}`);
          sums.push(buf);
          const params = gpu.uniform(new Uint32Array([cfg.numHeads, nKV, hd, c.capacity, c.layerBase, 0, 0, 0, 0, l, 0, 0, 0, 0, 0, 0]), 'calibration.params');
          meanOps.push(gpu.op(kernelSource(policySrc, { KVMEAN: true }), [c.k, c.v, engine.model.cache.lens, buf, params], [Math.ceil((nKV * hd) / 64)], 'kv.mean'));
        }
      } finally {
        gpu.endOwner();
      }
      for (const [k, s] of samples.entries()) {
        checkAbort();
        engine.reset();
        await engine.prefillLogits(s);
        gpu.run(meanOps);
        tokens += s.length;
        base.push(await gpu.readF32(engine.model.finalHidden, cfg.hiddenSize));
        options.onProgress?.({ stage: 'statistics', done: k + 1, total: samples.length });
      }
      means = await Promise.all(sums.map((b) => gpu.readF32(b, 2 * nKV * hd)));
    } finally {
      // Also on an error or an abort: the sums and their ops are the calibration's own.
      gpu.destroyOwned(owner);
    }
    for (const m of means) for (let i = 0; i < m.length; i++) m[i] = m[i]! / tokens;
    const norm = (a: Float32Array, b: Float32Array, from: number, to: number) => {
      let s = 0;
      for (let i = from; i < to; i++) s += (a[i]! - b[i]!) ** 2;
      return Math.sqrt(s);
    };
    const half = nKV * hd;
    const distance = means.map((a) => means.map((b) => 0.5 * (norm(a, b, 0, half) + norm(a, b, half, 2 * half))));

    // 2. Greedy search against the original model's final hidden states.
    const evaluate = async (map: Record<number, number>) => {
      checkAbort();
      engine.setSharing(map);
      let total = 0;
      for (const [k, s] of samples!.entries()) {
        engine.reset();
        await engine.prefillLogits(s);
        total += cosine(await gpu.readF32(engine.model.finalHidden, cfg.hiddenSize), base[k]!);
      }
      return total / samples!.length;
    };
    const found = await greedySharingSearch(distance, evaluate, {
      threshold,
      target,
      order,
      onProgress: (done, total) => options.onProgress?.({ stage: 'search', done, total }),
    });
    return {
      map: Object.fromEntries(Object.entries(found.map).map(([k, v]) => [k, v])),
      model: { numLayers: L, numKvHeads: nKV, headDim: hd },
      settings: { threshold, targetSharedLayers: target, order, samples: samples.length },
      similarity: found.similarity,
    };
  } finally {
    engine.setPolicy(prevPolicy);
    const prev: Record<number, number> = {};
    prevSource.forEach((s, l) => {
      if (s !== l) prev[l] = s;
    });
    engine.setSharing(prev);
    engine.reset();
  }
}

/** Writes a map as `kv-sharing.json` in a model directory (Node). */
export async function saveSharingMap(dir: string, map: SharingMap): Promise<string> {
  const fsName = 'node:fs/promises';
  const pathName = 'node:path';
  const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs/promises');
  const path = (await import(/* @vite-ignore */ pathName)) as typeof import('node:path');
  const file = path.join(dir, 'kv-sharing.json');
  await fs.writeFile(file, JSON.stringify(map, null, 2));
  return file;
}
