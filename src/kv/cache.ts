/**
 * The KV cache store: per (layer, KV head) keys (after RoPE at their original position),
 * values, absolute positions and two f32 statistics per entry for the policy, with ragged
 * live lengths on the GPU. Memory is allocated for the policy's declared bound. The policy
 * step (attention mass -> statistics, then select + compact when due) runs on the GPU; the
 * CPU reads back only small snapshots when asked.
 */
import type { Gpu, Op } from '../gpu/device';
import { kernelSource, type LayerCacheBuffers, type StepBuffer } from '../engine/ops/basic';
import policySrc from '../../shaders/kv_policy.wgsl?raw';
import type { CacheSnapshot } from './types';
import type { ResolvedPolicy } from './policies/registry';

export interface CacheShape {
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Rows per step at most (prefill chunk). */
  maxRows: number;
  context: number;
}

export interface LayerCache extends LayerCacheBuffers {
  stats: GPUBuffer;
}

/** A GPU buffer's allocated size (`Gpu.buffer` pads to 16 bytes, at least 16). */
const padded = (bytes: number) => Math.max(16, Math.ceil(bytes / 16) * 16);

/**
 * The bytes `KvCache` allocates (`bytesAllocated()`) for a policy and a layer-sharing table,
 * without allocating anything: per owning layer its keys, values, positions and statistics,
 * plus the lengths and footprint counters. A shared layer adds nothing, so the saving of a
 * sharing map is the difference to the identity table.
 */
export function kvCacheBytes(shape: Pick<CacheShape, 'numLayers' | 'numKvHeads' | 'headDim'>, policy: Pick<ResolvedPolicy, 'capacity' | 'budgets'>, source?: Int32Array): number {
  const { numLayers: L, numKvHeads: nKV, headDim: hd } = shape;
  let s = padded(L * nKV * 4) + padded(L * nKV * 8);
  for (let l = 0; l < L; l++) {
    if (source && source[l] !== l) continue;
    const cap = policy.capacity[l]!;
    s += 2 * padded(nKV * cap * hd * 4) + padded(nKV * cap * 4) + padded(policy.budgets ? nKV * cap * 8 : 16);
  }
  return s;
}

/**
 * Invocations per selection workgroup (one workgroup per KV head, or per layer with AdaKV):
 * 256 on GPUs; 8 on CPU adapters, where every barrier of the threshold search switches
 * through all of a workgroup's invocations (SwiftShader: select 11x, in-place compaction 3x
 * faster than with 256). Both must be powers of two (the reductions halve them) and <= 256.
 */
export const SELECT_WG_GPU = 256;
export const SELECT_WG_CPU = 8;

export class KvCache {
  readonly gpu: Gpu;
  readonly shape: CacheShape;
  readonly policy: ResolvedPolicy;
  readonly layers: LayerCache[] = [];
  readonly lens: GPUBuffer;
  /** Footprint accounting: per (layer, KV head) [sum of live entries over query steps, peak]. */
  readonly acct: GPUBuffer;
  /** Attention-mass inputs, when the policy reads attention. */
  readonly mass: { scores: GPUBuffer; ml: GPUBuffer } | undefined;
  private massOps: Op[] = [];
  private actOps: Op[][] = [];
  /** Decode steps: select and compact in place, one dispatch per layer instead of three. */
  private decodeOps: Op[] = [];
  private readonly every: number;
  /** Σ over steps of rows x (tokens so far): the full cache's footprint under the same chunking. */
  private fullFootprint = 0;
  private tokens = 0;
  /** LagKV-style partition compression: per-layer params, the scoring ops, and the CPU-tracked layout. */
  private dynamic: { lag: number; keep: number; sinks: number; params: GPUBuffer[]; score: Op[]; live: number; compressedEnd: number } | undefined;

  /** The layer whose cache each layer reads (itself when not shared). */
  readonly source: Int32Array;
  /** For each layer, its index among the layers reading the same cache (for the mass pass). */
  readonly readerIndex: number[];
  /** Scores of one reader occupy maxRows x nH x capacity floats. */
  readonly readerStride: number;

  constructor(gpu: Gpu, shape: CacheShape, policy: ResolvedPolicy, step: StepBuffer, source?: Int32Array) {
    this.gpu = gpu;
    this.shape = shape;
    this.policy = policy;
    const { numLayers: L, numKvHeads: nKV, headDim: hd, numHeads: nH } = shape;
    this.source = source ?? Int32Array.from({ length: L }, (_, l) => l);
    const readers: number[][] = Array.from({ length: L }, () => []);
    for (let l = 0; l < L; l++) readers[this.source[l]!]!.push(l);
    this.readerIndex = Array.from({ length: L }, (_, l) => readers[this.source[l]!]!.indexOf(l));
    const maxReaders = Math.max(...readers.map((r) => r.length));
    this.readerStride = shape.maxRows * nH;
    this.lens = gpu.storage(L * nKV * 4, 'kv.lengths', 'kv');
    this.acct = gpu.storage(L * nKV * 8, 'kv.footprint', 'kv');
    const capMax = Math.max(...policy.capacity);
    for (let l = 0; l < L; l++) {
      const cap = policy.capacity[l]!;
      const src = this.source[l]!;
      if (src !== l) {
        // Shared: the same buffers and lengths as its source (allocated earlier, src < l).
        this.layers.push(this.layers[src]!);
        continue;
      }
      this.layers.push({
        k: gpu.storage(nKV * cap * hd * 4, `layer${l}.k`, 'kv'),
        v: gpu.storage(nKV * cap * hd * 4, `layer${l}.v`, 'kv'),
        pos: gpu.storage(nKV * cap * 4, `layer${l}.pos`, 'kv'),
        stats: gpu.storage(policy.budgets ? nKV * cap * 8 : 16, `layer${l}.stats`, 'kv'),
        capacity: cap,
        layerBase: l * nKV,
      });
    }
    const p = policy.policy;
    this.every = p.every(policy.params);
    if (p.needsAttention) {
      this.mass = {
        scores: gpu.storage(maxReaders * shape.maxRows * nH * capMax * 4, 'kv.scores', 'kv-scratch'),
        ml: gpu.storage(maxReaders * shape.maxRows * nH * 8, 'kv.softmax', 'kv-scratch'),
      };
    }
    if (!policy.budgets) return;

    const defines = {
      STAT_UPDATE: p.statUpdate?.(policy.params) ?? '',
      SCORE: p.score?.(policy.params) ?? '0.0',
      ADAKV: policy.adakv,
      THRESHOLD: !!p.gate,
      SELECT_WG: gpu.cpuAdapter ? SELECT_WG_CPU : SELECT_WG_GPU,
    };
    const okey = gpu.storage(nKV * capMax * 4, 'kv.select.keys', 'kv-scratch');
    const newSlot = gpu.storage(nKV * capMax * 4, 'kv.select.slots', 'kv-scratch');
    const newLens = gpu.storage(2 * nKV * 4, 'kv.select.lengths', 'kv-scratch');
    const sKV = gpu.storage(nKV * capMax * 2 * hd * 4, 'kv.compact.kv', 'kv-scratch');
    const sMeta = gpu.storage(nKV * capMax * 3 * 4, 'kv.compact.meta', 'kv-scratch');
    const seed = policy.params.seed ?? 0;
    const dyn = p.dynamic?.(policy.params);
    if (dyn) this.dynamic = { ...dyn, params: [], score: [], live: 0, compressedEnd: dyn.sinks };
    for (let l = 0; l < L; l++) {
      if (this.source[l] !== l) {
        this.actOps.push([]);
        continue;
      }
      const c = this.layers[l]!;
      const params = gpu.uniform(
        new Uint32Array([nH, nKV, hd, c.capacity, c.layerBase, policy.budgets[l]!, p.sinks(policy.params), p.window(policy.params), seed, l, p.massRows?.(policy.params) ?? 0, readers[l]!.length, this.readerStride, policy.globalMask?.[l] ?? 0, 0, 0]),
        `kv.policy.params.${l}`,
      );
      const groups = Math.ceil(c.capacity / 64);
      if (this.dynamic) {
        this.dynamic.params[l] = params;
        this.dynamic.score[l] = (gpu.op(kernelSource(policySrc, { LAGKV: true, LAG: this.dynamic.lag }), [c.k, c.v, c.stats, params], [nKV], 'kv.lagkv'));
      }
      if (this.mass) {
        // Runs after the last layer reading this cache, combining every reader's attention.
        const last = readers[l]![readers[l]!.length - 1]!;
        this.massOps[last] = gpu.op(kernelSource(policySrc, { ...defines, MASS: true }), [this.mass.scores, this.mass.ml, c.stats, c.pos, this.lens, params, step.buffer], [groups, nKV], 'kv.mass');
      }
      this.decodeOps.push(
        gpu.op(kernelSource(policySrc, { ...defines, SELECT: true, INPLACE: true }), [c.k, c.pos, c.stats, this.lens, okey, newSlot, newLens, params, step.buffer, c.v], [policy.adakv ? 1 : nKV], 'kv.select-compact'),
      );
      this.actOps.push([
        gpu.op(kernelSource(policySrc, { ...defines, SELECT: true }), [c.k, c.pos, c.stats, this.lens, okey, newSlot, newLens, params, step.buffer], [policy.adakv ? 1 : nKV], 'kv.select'),
        gpu.op(kernelSource(policySrc, { ...defines, GATHER: true }), [c.k, c.v, c.pos, c.stats, this.lens, newSlot, sKV, sMeta, params, newLens], [groups, nKV], 'kv.gather'),
        gpu.op(kernelSource(policySrc, { ...defines, SCATTER: true }), [c.k, c.v, c.pos, c.stats, this.lens, newLens, sKV, sMeta, params], [groups, nKV], 'kv.scatter'),
      ]);
    }
  }

  /** The op updating layer l's statistics from this step's attention (none for attention-free policies). */
  massOp(layer: number): Op | undefined {
    return this.massOps[layer];
  }

  /**
   * Called once per step before encoding: records the step for the footprint, and returns
   * the select/compact ops to run after the commit when the policy is due: for 'every'
   * policies after every prefill chunk and every `every` decode steps; for 'prompt-end'
   * policies after the last chunk of a prompt.
   */
  stepOps(rows: number, pos0: number, promptEnd: boolean): Op[] {
    this.tokens = pos0 + rows;
    this.fullFootprint += rows * this.tokens;
    if (!this.policy.budgets) return [];
    if (this.dynamic) return this.partitionOps(rows);
    const due = this.policy.acts === 'prompt-end' ? promptEnd : rows > 1 || (pos0 + rows) % this.every === 0;
    if (!due) return [];
    // A decode step moves few entries (one, for every-step policies): one workgroup per KV
    // head selects and compacts in place. Prefill chunks use the wide gather/scatter pair.
    return rows === 1 ? this.decodeOps : this.actOps.flat();
  }

  /** LagKV: compresses the first tail partition when the tail reaches 2 x lag (at most one per step, as lag >= chunk). */
  private partitionOps(rows: number): Op[] {
    const d = this.dynamic!;
    d.live += rows;
    if (d.live - d.compressedEnd < 2 * d.lag) return [];
    const after = d.live - (d.compressedEnd + d.lag);
    const budget = d.compressedEnd + d.keep + after;
    const { numLayers: L, numKvHeads: nKV, numHeads: nH, headDim: hd } = this.shape;
    const ops: Op[] = [];
    for (let l = 0; l < L; l++) {
      const c = this.layers[l]!;
      if (this.source[l] !== l) continue;
      this.gpu.write(d.params[l]!, new Uint32Array([nH, nKV, hd, c.capacity, c.layerBase, budget, d.compressedEnd, after, 0, l, 0, 1, this.readerStride, 0, 0, 0]));
      ops.push(d.score[l]!, ...this.actOps[l]!);
    }
    d.live = budget;
    d.compressedEnd += d.keep;
    return ops;
  }

  /** Most entries a step can see: for sizing the attention split. */
  maxLive(): number {
    return Math.max(...this.policy.capacity);
  }

  /** Empties the cache (lengths and footprint accounting). */
  reset(): void {
    const n = this.shape.numLayers * this.shape.numKvHeads;
    this.gpu.write(this.lens, new Uint32Array(n));
    this.resetAccounting();
    this.tokens = 0;
    if (this.dynamic) {
      this.dynamic.live = 0;
      this.dynamic.compressedEnd = this.dynamic.sinks;
    }
  }

  /**
   * Truncates a cache that has evicted nothing to its first n entries. The footprint
   * accounting restarts here: footprint and peak then describe the steps after the cut (the
   * steps of the conversation it was cut from would otherwise leave a peak above the tokens
   * now held, e.g. 2.1 x for a full cache).
   */
  truncate(n: number): void {
    const count = this.shape.numLayers * this.shape.numKvHeads;
    this.gpu.write(this.lens, new Uint32Array(count).fill(n));
    this.resetAccounting();
    this.tokens = n;
  }

  /** Zeroes the footprint accounting (live-entry sums and peaks per head, and the full cache's sum). */
  private resetAccounting(): void {
    this.gpu.write(this.acct, new Uint32Array(2 * this.shape.numLayers * this.shape.numKvHeads));
    this.fullFootprint = 0;
  }

  /** GPU bytes of the cache's buffers (`kvCacheBytes` computes the same from a policy without allocating). */
  bytesAllocated(): number {
    let s = this.lens.size + this.acct.size;
    this.layers.forEach((c, l) => {
      if (this.source[l] === l) s += c.k.size + c.v.size + c.pos.size + c.stats.size;
    });
    return s;
  }

  /** Reads live lengths (and, optionally, the kept positions) back: a small readback. */
  async snapshot(withPositions = false): Promise<CacheSnapshot> {
    const { numLayers: L, numKvHeads: nKV, headDim: hd } = this.shape;
    const [lensBuf, acctBuf] = await Promise.all([this.gpu.read(this.lens, L * nKV * 4), this.gpu.read(this.acct, L * nKV * 8)]);
    const live = new Uint32Array(lensBuf);
    const acct = new Uint32Array(acctBuf);
    // A shared layer holds nothing of its own: it shows its source's entries, and adds no
    // bytes or footprint (the footprint counts entries stored, over all layers).
    for (let l = 0; l < L; l++) for (let h = 0; h < nKV; h++) live[l * nKV + h] = live[this.source[l]! * nKV + h]!;
    const capacity = new Uint32Array(L * nKV);
    let inUse = 0;
    let footSum = 0;
    let peak = 0;
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < nKV; h++) {
        const i = l * nKV + h;
        capacity[i] = this.layers[l]!.capacity;
        if (this.source[l] !== l) continue;
        inUse += live[i]! * (2 * hd * 4 + 4 + (this.policy.budgets ? 8 : 0));
        footSum += acct[2 * i]!;
        peak = Math.max(peak, acct[2 * i + 1]!);
      }
    }
    const snap: CacheSnapshot = {
      tokens: this.tokens,
      numLayers: L,
      numKvHeads: nKV,
      policy: this.policy.spec,
      live,
      capacity,
      cacheSource: Int32Array.from(this.source),
      kvBytesAllocated: this.bytesAllocated(),
      kvBytesInUse: inUse,
      footprint: this.fullFootprint > 0 ? footSum / (L * nKV) / this.fullFootprint : 0,
      peak: this.tokens > 0 ? peak / this.tokens : 0,
    };
    if (withPositions) {
      snap.positions = [];
      const bufs = await Promise.all(this.layers.map((c) => this.gpu.read(c.pos, nKV * c.capacity * 4)));
      for (let l = 0; l < L; l++) {
        const all = new Uint32Array(bufs[l]!);
        const cap = this.layers[l]!.capacity;
        for (let h = 0; h < nKV; h++) snap.positions.push(all.slice(h * cap, h * cap + live[l * nKV + h]!));
      }
      // Policies whose score is their first statistic (h2o, tova, snapkv, pyramidkv, lagkv) report it.
      const p = this.policy.policy;
      if (this.policy.budgets && p.score?.(this.policy.params) === 'a') {
        snap.scores = [];
        const stats = await Promise.all(this.layers.map((c) => this.gpu.readF32(c.stats, nKV * c.capacity * 2)));
        for (let l = 0; l < L; l++) {
          const cap = this.layers[l]!.capacity;
          for (let h = 0; h < nKV; h++) {
            const n = live[l * nKV + h]!;
            const out = new Float32Array(n);
            for (let j = 0; j < n; j++) out[j] = stats[l]![(h * cap + j) * 2]!;
            snap.scores.push(out);
          }
        }
      }
    }
    return snap;
  }
}
