/**
 * A readable float32 forward pass for Llama-family decoders (Llama 2/3, SmolLM2, TinyLlama,
 * Qwen2 with QKV bias; GQA/MQA; tied or untied embeddings), one token at a time with a KV
 * cache that keeps each entry's absolute position. It is the oracle for the GPU engine.
 */
import type { ModelConfig } from '../model/config';
import { applyRope, attendHead, matvec, rmsnorm, ropeInvFreq, ropeTables, silu } from './ops';

/** Weights by Hugging Face name, already decoded to float32. */
export type F32Weights = Map<string, Float32Array>;

interface LayerCache {
  /** [kvHead][entry] -> vector */
  keys: Float32Array[][];
  values: Float32Array[][];
  positions: number[][];
}

export class ReferenceModel {
  readonly config: ModelConfig;
  private w: F32Weights;
  private cos: Float32Array;
  private sin: Float32Array;
  private caches: LayerCache[] = [];
  /** Called with each query head's attention probabilities over its KV head's entries (in cache order). */
  onAttention?: (layer: number, qHead: number, kvHead: number, probs: Float32Array) => void;
  /** Called with each layer's normalized input (the tensor q/k/v and an Attention-Gate read). */
  onNormed?: (layer: number, pos: number, xn: Float32Array) => void;

  /** Layer -> the layer whose cache it reads (KVSharer); a shared layer appends nothing. */
  readonly source: Int32Array;

  constructor(config: ModelConfig, weights: F32Weights, maxPositions = config.contextLength, source?: Int32Array) {
    this.config = config;
    this.source = source ?? Int32Array.from({ length: config.numLayers }, (_, l) => l);
    this.w = weights;
    const t = ropeTables(ropeInvFreq(config), maxPositions);
    this.cos = t.cos;
    this.sin = t.sin;
    this.reset();
  }

  reset(): void {
    const c = this.config;
    this.caches = Array.from({ length: c.numLayers }, () => ({
      keys: Array.from({ length: c.numKvHeads }, () => []),
      values: Array.from({ length: c.numKvHeads }, () => []),
      positions: Array.from({ length: c.numKvHeads }, () => []),
    }));
  }

  private get(name: string): Float32Array {
    const t = this.w.get(name);
    if (!t) throw new Error(`reference: missing tensor ${name}`);
    return t;
  }

  /** Number of entries cached for (layer, kvHead). */
  cacheLength(layer = 0, kvHead = 0): number {
    return this.caches[layer]!.keys[kvHead]!.length;
  }

  /** Positions and keys cached for (layer, kvHead), in cache order. */
  entries(layer: number, kvHead: number): { positions: number[]; keys: Float32Array[]; values: Float32Array[] } {
    const c = this.caches[layer]!;
    return { positions: c.positions[kvHead]!, keys: c.keys[kvHead]!, values: c.values[kvHead]! };
  }

  /** Evicts every entry of (layer, kvHead) whose position is not in `keep` (order is kept). */
  keepOnly(layer: number, kvHead: number, keep: Set<number>): void {
    const c = this.caches[layer]!;
    const idx = c.positions[kvHead]!.map((p, i) => (keep.has(p) ? i : -1)).filter((i) => i >= 0);
    c.keys[kvHead] = idx.map((i) => c.keys[kvHead]![i]!);
    c.values[kvHead] = idx.map((i) => c.values[kvHead]![i]!);
    c.positions[kvHead] = idx.map((i) => c.positions[kvHead]![i]!);
  }

  /** Runs one token at absolute position `pos` and returns the logits. */
  forward(token: number, pos: number): Float32Array {
    const c = this.config;
    const H = c.hiddenSize;
    const hd = c.headDim;
    const nH = c.numHeads;
    const nKV = c.numKvHeads;
    const group = nH / nKV;
    const emb = this.get('model.embed_tokens.weight');
    const x = emb.slice(token * H, (token + 1) * H);

    for (let l = 0; l < c.numLayers; l++) {
      const p = `model.layers.${l}.`;
      const xn = rmsnorm(x, this.get(p + 'input_layernorm.weight'), c.rmsNormEps);
      this.onNormed?.(l, pos, xn);
      const bias = (n: string) => (c.attentionBias ? this.get(p + `self_attn.${n}_proj.bias`) : undefined);
      const q = matvec(this.get(p + 'self_attn.q_proj.weight'), xn, nH * hd, H, bias('q'));
      const k = matvec(this.get(p + 'self_attn.k_proj.weight'), xn, nKV * hd, H, bias('k'));
      const v = matvec(this.get(p + 'self_attn.v_proj.weight'), xn, nKV * hd, H, bias('v'));
      for (let h = 0; h < nH; h++) applyRope(q, h * hd, hd, pos, this.cos, this.sin);
      const shared = this.source[l] !== l;
      const cache = this.caches[this.source[l]!]!;
      for (let h = 0; h < nKV && !shared; h++) {
        applyRope(k, h * hd, hd, pos, this.cos, this.sin);
        cache.keys[h]!.push(k.slice(h * hd, (h + 1) * hd));
        cache.values[h]!.push(v.slice(h * hd, (h + 1) * hd));
        cache.positions[h]!.push(pos);
      }
      const attn = new Float32Array(nH * hd);
      for (let h = 0; h < nH; h++) {
        const kv = Math.floor(h / group);
        const { out, probs } = attendHead(q, h * hd, cache.keys[kv]!, cache.values[kv]!, hd);
        this.onAttention?.(l, h, kv, probs);
        attn.set(out, h * hd);
      }
      const o = matvec(this.get(p + 'self_attn.o_proj.weight'), attn, H, nH * hd);
      for (let i = 0; i < H; i++) x[i] = x[i]! + o[i]!;

      const xn2 = rmsnorm(x, this.get(p + 'post_attention_layernorm.weight'), c.rmsNormEps);
      const I = c.intermediateSize;
      const g = matvec(this.get(p + 'mlp.gate_proj.weight'), xn2, I, H);
      const u = matvec(this.get(p + 'mlp.up_proj.weight'), xn2, I, H);
      const a = new Float32Array(I);
      for (let i = 0; i < I; i++) a[i] = silu(g[i]!) * u[i]!;
      const d = matvec(this.get(p + 'mlp.down_proj.weight'), a, H, I);
      for (let i = 0; i < H; i++) x[i] = x[i]! + d[i]!;
    }
    const xf = rmsnorm(x, this.get('model.norm.weight'), c.rmsNormEps);
    const head = c.tieWordEmbeddings ? emb : this.get('lm_head.weight');
    return matvec(head, xf, c.vocabSize, H);
  }

  /** Teacher-forced logits for a token sequence, continuing from the current cache. */
  forwardAll(tokens: number[], startPos = this.cacheLength()): Float32Array[] {
    return tokens.map((t, i) => this.forward(t, startPos + i));
  }
}
