/**
 * A Llama-family model on the GPU: weights uploaded in their own dtype, activation buffers
 * sized for one prefill chunk, a plain contiguous KV cache per layer (keys after RoPE,
 * absolute positions, per-(layer, KV head) lengths on the GPU), and the op list of one
 * forward step for any number of rows.
 */
import type { Gpu, Op } from '../gpu/device';
import type { ModelConfig } from '../model/config';
import type { HostTensor, WeightSet } from '../model/tensor';
import { toFloat32 } from '../model/tensor';
import { InvalidArgumentError, ModelLoadError, ShapeMismatchError } from '../errors';
import { ropeInvFreq, ropeTables } from '../reference/ops';
import {
  attentionByRows,
  attentionOps,
  attentionSplit,
  embedOp,
  kernelSource,
  kvCommitOp,
  MAX_SPLITS,
  rmsnormOp,
  ropeAppendOp,
  StepBuffer,
  swigluOp,
  type RowOp,
} from './ops/basic';
import { gemmOp, knLayoutFits, matvecOp, uploadWeight, type WeightTensor } from './ops/matmul';
import { isQ4Weight, q4EmbedOp, uploadQ4Tensor, type Q4WeightTensor } from './ops/quant';
import { sampleOp, type SampleOp, type SamplingParams } from './ops/sample';
import { KvCache } from '../kv/cache';
import gateSrc from '../../shaders/gate.wgsl?raw';
import type { GateWeights } from '../kv/gates';
import type { ResolvedPolicy } from '../kv/policies/registry';

export interface GpuModelOptions {
  /** Rows per prefill chunk (activation buffers are sized for it). */
  maxRows: number;
  /** The context length (positions) the engine serves (<= the model's context). */
  contextLength: number;
  policy: ResolvedPolicy;
  /** Attention-Gate weights, when the engine has them. */
  gates?: GateWeights;
}

interface LayerOps {
  norm1: RowOp;
  qkv: MatOp;
  o: MatOp;
  norm2: RowOp;
  gateUp: MatOp;
  swiglu: RowOp;
  down: MatOp;
}

/** Matvec for one row, GEMM for several. */
interface MatOp {
  forRows(rows: number): Op;
}

function tensor(weights: WeightSet, name: string): HostTensor {
  const t = weights.get(name);
  if (!t) throw new ModelLoadError('missing-tensor', `The weights have no tensor named ${name}.`);
  return t;
}

/** Concatenates same-dtype tensors along dim 0 (rows), byte for byte. */
function concatRows(parts: HostTensor[]): HostTensor {
  const dtype = parts[0]!.dtype;
  for (const p of parts) {
    if (p.dtype !== dtype) {
      throw new ShapeMismatchError('dtype-mismatch', `${p.name} is ${p.dtype} but ${parts[0]!.name} is ${dtype}; fused projections need one dtype.`);
    }
  }
  const cat = (arrays: Uint8Array[]) => {
    const bytes = new Uint8Array(arrays.reduce((s, a) => s + a.byteLength, 0));
    let off = 0;
    for (const a of arrays) {
      bytes.set(a, off);
      off += a.byteLength;
    }
    return bytes;
  };
  const out: HostTensor = { name: parts.map((p) => p.name).join('+'), dtype, shape: [parts.reduce((s, p) => s + p.shape[0]!, 0), parts[0]!.shape[1] ?? 1], data: cat(parts.map((p) => p.data)) };
  // q4: rows of packed words and rows of scales concatenate independently (see ops/quant.ts).
  const q4 = parts[0]!.q4;
  if (q4 || parts.some((p) => p.q4)) {
    if (parts.some((p) => p.q4?.format !== q4?.format)) throw new ShapeMismatchError('dtype-mismatch', `${out.name}: fused projections need one q4 format.`);
    out.q4 = { format: q4!.format, scales: cat(parts.map((p) => p.q4!.scales)) };
  }
  return out;
}

export class GpuModel {
  readonly gpu: Gpu;
  readonly config: ModelConfig;
  readonly maxRows: number;
  readonly capacity: number;
  readonly step: StepBuffer;
  readonly tokens: GPUBuffer;
  readonly logits: GPUBuffer;
  readonly sampled: GPUBuffer;
  /** The last row's final hidden state (after the final norm), input of the LM head. */
  finalHidden!: GPUBuffer;
  private layers: LayerOps[] = [];
  /** Per-layer ops that read the cache; rebuilt when the policy changes. */
  private cacheOps: { rope: RowOp; attn: (rows: number, splits: number) => Op[]; gate?: (rows: number) => Op[] }[] = [];
  /** Attention-Gate weights and the gate's own key/value cache (by position), when loaded. */
  private gates: { dg: number; layers: { w: GPUBuffer; wo: GPUBuffer; bo: GPUBuffer; gk: GPUBuffer; gv: GPUBuffer }[]; q: GPUBuffer; owner: object } | undefined;
  private xn!: GPUBuffer;
  cache!: KvCache;
  private buffers!: { qkv: GPUBuffer; attnOut: GPUBuffer; part: GPUBuffer; cos: GPUBuffer; sin: GPUBuffer };
  private finalNorm: RowOp;
  private lmHead: Op;
  private commit!: Op;
  private embed: RowOp;
  readonly sampler: SampleOp;
  private staging: GPUBuffer;
  private weightTensors: (WeightTensor | Q4WeightTensor)[] = [];
  private destroyed = false;

  constructor(gpu: Gpu, config: ModelConfig, weights: WeightSet, opts: GpuModelOptions, source?: Int32Array) {
    this.gpu = gpu;
    gpu.beginOwner(this);
    try {
    this.config = config;
    this.maxRows = opts.maxRows;
    this.capacity = opts.contextLength;
    const c = config;
    const R = opts.maxRows;
    const H = c.hiddenSize;
    const hd = c.headDim;
    const qkvWidth = (c.numHeads + 2 * c.numKvHeads) * hd;
    const I = c.intermediateSize;
    this.step = new StepBuffer(gpu);

    const f32 = (n: number, label: string) => gpu.storage(n * 4, label, 'activations');
    const x = f32(R * H, 'x');
    const xn = f32(R * H, 'xn');
    const qkv = f32(R * qkvWidth, 'qkv');
    const attnOut = f32(R * c.numHeads * hd, 'attn');
    const gu = f32(R * 2 * I, 'gate_up');
    const act = f32(R * I, 'act');
    // The split kernel's partial results; the row kernel (CPU adapters) has none.
    const part = f32(attentionByRows(gpu, hd) ? 1 : R * c.numHeads * MAX_SPLITS * (hd + 2), 'attn.partials');
    const xLast = f32(H, 'x.last');
    this.finalHidden = xLast;
    this.logits = f32(c.vocabSize, 'logits');
    this.tokens = gpu.storage(R * 4, 'tokens', 'activations');
    this.sampled = gpu.storage(16, 'sampled', 'activations');
    this.staging = gpu.buffer(16, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'sampled.staging');

    const { cos, sin } = ropeTables(ropeInvFreq(c), this.capacity);
    const cosB = gpu.storage(cos, 'rope.cos', 'activations');
    const sinB = gpu.storage(sin, 'rope.sin', 'activations');

    // Projections in the adapter's layout (gpu.weightLayout); the embedding (also the tied LM
    // head, which the embedding lookup reads by row) always as in the file.
    const upload = (t: HostTensor, label: string, projection = true): WeightTensor | Q4WeightTensor => {
      const layout = projection && gpu.weightLayout === 'kn' && knLayoutFits(t.shape[0]!) ? 'kn' : 'nk';
      const w = t.q4 ? uploadQ4Tensor(gpu, t, label) : uploadWeight(gpu, t.dtype, t.shape[0]!, t.shape[1]!, t.data, label, layout);
      this.weightTensors.push(w);
      return w;
    };
    const vec = (t: HostTensor, label: string) => gpu.storage(toFloat32(t), label, 'weights');
    const mat = (w: WeightTensor | Q4WeightTensor, xin: GPUBuffer, y: GPUBuffer, bias?: GPUBuffer, accumulate = false): MatOp => {
      const mv = matvecOp(gpu, w, xin, y, { bias, accumulate });
      const mm = gemmOp(gpu, w, xin, y, R, { bias, accumulate });
      return { forRows: (rows) => (rows === 1 ? mv : mm.forRows(rows)) };
    };

    const embT = tensor(weights, 'model.embed_tokens.weight');
    const emb = upload(embT, 'embed_tokens', false);
    this.embed = isQ4Weight(emb) ? q4EmbedOp(gpu, emb, H, this.tokens, x) : embedOp(gpu, emb.buffer, emb.dtype, H, this.tokens, x);

    for (let l = 0; l < c.numLayers; l++) {
      const p = `model.layers.${l}.`;
      const qkvW = upload(
        concatRows(['q', 'k', 'v'].map((n) => tensor(weights, `${p}self_attn.${n}_proj.weight`))),
        `layer${l}.qkv`,
      );
      let qkvBias: GPUBuffer | undefined;
      if (c.attentionBias) {
        const parts = ['q', 'k', 'v'].map((n) => toFloat32(tensor(weights, `${p}self_attn.${n}_proj.bias`)));
        const all = new Float32Array(parts.reduce((s, a) => s + a.length, 0));
        let off = 0;
        for (const a of parts) {
          all.set(a, off);
          off += a.length;
        }
        qkvBias = gpu.storage(all, `layer${l}.qkv.bias`, 'weights');
      }
      const oW = upload(tensor(weights, `${p}self_attn.o_proj.weight`), `layer${l}.o`);
      const guW = upload(concatRows(['gate', 'up'].map((n) => tensor(weights, `${p}mlp.${n}_proj.weight`))), `layer${l}.gate_up`);
      const downW = upload(tensor(weights, `${p}mlp.down_proj.weight`), `layer${l}.down`);
      const n1 = vec(tensor(weights, `${p}input_layernorm.weight`), `layer${l}.norm1`);
      const n2 = vec(tensor(weights, `${p}post_attention_layernorm.weight`), `layer${l}.norm2`);

      this.layers.push({
        norm1: rmsnormOp(gpu, x, n1, xn, H, c.rmsNormEps, this.step),
        qkv: mat(qkvW, xn, qkv, qkvBias),
        o: mat(oW, attnOut, x, undefined, true),
        norm2: rmsnormOp(gpu, x, n2, xn, H, c.rmsNormEps, this.step),
        gateUp: mat(guW, xn, gu),
        swiglu: swigluOp(gpu, gu, act, I, this.step),
        down: mat(downW, act, x, undefined, true),
      });
    }
    const normF = vec(tensor(weights, 'model.norm.weight'), 'norm.final');
    this.finalNorm = rmsnormOp(gpu, x, normF, xLast, H, c.rmsNormEps, this.step, true);
    const head = c.tieWordEmbeddings ? emb : upload(tensor(weights, 'lm_head.weight'), 'lm_head');
    this.lmHead = matvecOp(gpu, head, xLast, this.logits);
    this.sampler = sampleOp(gpu, this.logits, c.vocabSize, this.sampled);
    this.buffers = { qkv, attnOut, part, cos: cosB, sin: sinB };
    this.xn = xn;
    } catch (e) {
      gpu.endOwner();
      gpu.destroyOwned(this);
      throw e;
    }
    gpu.endOwner();
    try {
      if (opts.gates) this.setGates(opts.gates);
      this.installCache(opts.policy, source);
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  /**
   * (Re)allocates the KV cache for a policy (and a layer-sharing table: the layer whose cache
   * each layer reads) and rebuilds the ops that read it. The cache starts empty.
   */
  installCache(policy: ResolvedPolicy, source?: Int32Array): void {
    const c = this.config;
    const old = this.cache;
    const shape = { nH: c.numHeads, nKV: c.numKvHeads, hd: c.headDim };
    const cache = { current: undefined as KvCache | undefined };
    this.gpu.beginOwner(cache);
    try {
      cache.current = new KvCache(
        this.gpu,
        { numLayers: c.numLayers, numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim, maxRows: this.maxRows, context: this.capacity },
        policy,
        this.step,
        source,
      );
      const kv = cache.current;
      const b = this.buffers;
      this.cacheOps = kv.layers.map((lc, l) => ({
        rope: ropeAppendOp(this.gpu, b.qkv, b.cos, b.sin, lc, kv.lens, shape, this.step, kv.source[l] !== l),
        attn: attentionOps(this.gpu, b.qkv, lc, kv.lens, b.part, b.attnOut, shape, this.step,
          kv.mass && { ...kv.mass, scoreBase: kv.readerIndex[l]! * kv.readerStride * lc.capacity }),
      }));
      if (policy.policy.gate) {
        const g = this.gates;
        if (!g) throw new InvalidArgumentError(`Policy '${policy.policy.name}' needs gate weights: load them first (Engine.load({ gates }) or engine.setGates).`);
        const defs = { DG: g.dg };
        kv.layers.forEach((lc, l) => {
          if (kv.source[l] !== l) return; // a shared layer's cache is gated by its source layer
          const G = g.layers[l]!;
          const params = this.gpu.uniform(new Uint32Array([c.hiddenSize, c.numKvHeads, lc.capacity, lc.layerBase]), `layer${l}.gate.params`);
          const proj = this.gpu.op(kernelSource(gateSrc, { ...defs, PROJ: true }), [this.xn, G.w, g.q, G.gk, G.gv, params, this.step.buffer], [1, 1], 'kv.gate.proj');
          const attn = this.gpu.op(kernelSource(gateSrc, { ...defs, ATTN: true }), [this.xn, g.q, G.gk, G.gv, G.wo, G.bo, kv.lens, lc.stats, params, this.step.buffer], [1], 'kv.gate.attn');
          const groups = Math.ceil((3 * g.dg) / 64);
          this.cacheOps[l]!.gate = (rows) => [
            { ...proj, workgroups: [groups, rows] },
            { ...attn, workgroups: [rows] },
          ];
        });
      }
      this.commit = kvCommitOp(this.gpu, kv.lens, kv.acct, c.numLayers * c.numKvHeads, this.step);
    } catch (e) {
      this.gpu.endOwner();
      this.gpu.destroyOwned(cache);
      throw e;
    }
    this.gpu.endOwner();
    if (old) this.gpu.destroyOwned(this.cacheOwner!);
    this.cacheOwner = cache;
    this.cache = cache.current!;
  }
  private cacheOwner: object | undefined;

  /**
   * The ops of one step over `rows` tokens at positions pos0.. (tokens already written),
   * from embedding to logits of the last row, plus the cache-length commit. `cached` is the
   * number of entries already in the cache before this step.
   */
  stepOps(rows: number, pos0: number, cached: number, withLogits: boolean, promptEnd = false): Op[] {
    const split = attentionSplit(Math.min(cached + rows, this.cache.maxLive()));
    this.step.set({ rows, pos0, ...split });
    const act = this.cache.stepOps(rows, pos0, promptEnd);
    const ops: Op[] = [this.embed(rows)];
    this.layers.forEach((L, l) => {
      const C = this.cacheOps[l]!;
      ops.push(L.norm1(rows));
      if (C.gate) ops.push(...C.gate(rows));
      ops.push(L.qkv.forRows(rows), C.rope(rows), ...C.attn(rows, split.splits));
      const mass = this.cache.massOp(l);
      if (mass) ops.push(mass);
      ops.push(L.o.forRows(rows), L.norm2(rows), L.gateUp.forRows(rows), L.swiglu(rows), L.down.forRows(rows));
    });
    if (withLogits) ops.push(this.finalNorm(rows), this.lmHead);
    ops.push(this.commit, ...act);
    return ops;
  }

  /**
   * Uploads Attention-Gate weights (or removes them with undefined). The gate ops are built
   * with the cache, so call installCache afterwards.
   */
  setGates(g: GateWeights | undefined): void {
    if (this.gates) this.gpu.destroyOwned(this.gates.owner);
    this.gates = undefined;
    if (!g) return;
    const owner = {};
    this.gpu.beginOwner(owner);
    try {
      const ctx = this.capacity;
      this.gates = {
        dg: g.dg,
        owner,
        q: this.gpu.storage(this.maxRows * g.dg * 4, 'gate.q', 'kv-scratch'),
        layers: g.layers.map((G, l) => ({
          w: this.gpu.storage(G.w, `layer${l}.gate.w`, 'weights'),
          wo: this.gpu.storage(G.wo, `layer${l}.gate.wo`, 'weights'),
          bo: this.gpu.storage(G.bo.length >= 4 ? G.bo : Float32Array.from({ length: 4 }, (_, i) => G.bo[i] ?? 0), `layer${l}.gate.bo`, 'weights'),
          gk: this.gpu.storage(ctx * g.dg * 4, `layer${l}.gate.k`, 'kv'),
          gv: this.gpu.storage(ctx * g.dg * 4, `layer${l}.gate.v`, 'kv'),
        })),
      };
    } catch (e) {
      this.gpu.endOwner();
      this.gpu.destroyOwned(owner);
      this.gates = undefined;
      throw e;
    }
    this.gpu.endOwner();
  }

  get hasGates(): boolean {
    return !!this.gates;
  }

  writeTokens(ids: ArrayLike<number>): void {
    this.gpu.write(this.tokens, Uint32Array.from(ids as ArrayLike<number>));
  }

  /**
   * Runs a step; when `sample` is given, samples the next token on the GPU and returns its
   * id (one u32 read back). Otherwise returns -1 once the GPU has finished.
   */
  async runStep(rows: number, pos0: number, cached: number, sample?: { params: SamplingParams; step: number }, withLogits = !!sample, promptEnd = false): Promise<number> {
    const ops = this.stepOps(rows, pos0, cached, withLogits, promptEnd);
    if (sample) {
      this.sampler.set(sample.params, sample.step);
      ops.push(...this.sampler.ops);
    }
    const enc = this.gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    this.gpu.encode(pass, ops);
    pass.end();
    if (!sample) {
      this.gpu.device.queue.submit([enc.finish()]);
      await this.gpu.device.queue.onSubmittedWorkDone();
      return -1;
    }
    enc.copyBufferToBuffer(this.sampled, 0, this.staging, 0, 4);
    this.gpu.device.queue.submit([enc.finish()]);
    await this.staging.mapAsync(GPUMapMode.READ);
    const id = new Uint32Array(this.staging.getMappedRange(0, 4))[0]!;
    this.staging.unmap();
    return id;
  }


  async readLogits(): Promise<Float32Array> {
    return this.gpu.readF32(this.logits, this.config.vocabSize);
  }

  /**
   * Frees the model's GPU memory. The device may be shared, so only buffers this model
   * created are destroyed: they are found by the labels the model gave them.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.gpu.destroyOwned(this);
    if (this.cacheOwner) this.gpu.destroyOwned(this.cacheOwner);
    if (this.gates) this.gpu.destroyOwned(this.gates.owner);
  }

  /** KV cache bytes allocated (keys, values, positions, statistics, lengths). */
  kvBytes(): number {
    return this.cache.bytesAllocated();
  }
}
