/**
 * Plain-TypeScript references of the cache policies (the oracle for the GPU cache manager):
 * statistic updates, scores and selection with the same tie rule as the kernels.
 */
export interface RefEntry {
  pos: number;
  /** The policy's two statistics (see src/kv/policy.ts). */
  a: number;
  b: number;
  key: Float32Array;
  value?: Float32Array;
}

export type RefParams = Record<string, number>;

/** Applies the policy's statistic update for one entry given the attention mass it received. */
export function refStatUpdate(name: string, p: RefParams, e: RefEntry, mass: number, isNew: boolean, t: number): void {
  switch (name) {
    case 'h2o':
      if (isNew) e.a = 0;
      e.a += mass;
      break;
    case 'tova':
    case 'snapkv':
    case 'pyramidkv':
      e.a = mass;
      break;
    case 'lazy-eviction':
      if (isNew) {
        e.a = e.pos - 1;
        e.b = 0;
      }
      if (mass >= Math.fround(p.alpha!)) {
        e.b = Math.max(e.b, t - e.a);
        e.a = t;
      }
      break;
    default:
      break;
  }
}

function pcg(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> (((state >>> 28) + 4) >>> 0)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

export function refHash01(seed: number, layer: number, kv: number, pos: number): number {
  const h = pcg((pcg((pcg((seed ^ (layer * 131 + kv)) >>> 0) ^ pos) >>> 0) >>> 0));
  return (h >>> 8) / 16777216;
}

/** Scores of a head's entries in slot order (pooling policies read their neighbours). */
export function refScores(name: string, p: RefParams, entries: RefEntry[], t: number, layer: number, kv: number): number[] {
  if (name === 'snapkv' || name === 'pyramidkv') {
    const k = Math.floor(p.kernel! / 2);
    const n = entries.length;
    return entries.map((_, j) => {
      const lo = Math.max(0, j - k);
      const hi = Math.min(n - 1, j + k);
      let s = 0;
      for (let q = lo; q <= hi; q++) s += entries[q]!.a;
      return s / (hi - lo + 1);
    });
  }
  return entries.map((e) => refScore(name, p, e, t, layer, kv));
}

/** The policy's score for an entry (higher = keep). */
export function refScore(name: string, p: RefParams, e: RefEntry, t: number, layer: number, kv: number): number {
  switch (name) {
    case 'streaming':
    case 'head-roles':
      return e.pos;
    case 'attention-gate':
      // The gate logit (refGate in src/kv/gates.ts), stored in `a` when the entry arrived.
      return e.a;
    case 'h2o':
    case 'tova':
      return e.a;
    case 'knorm': {
      let s = 0;
      for (const v of e.key) s += v * v;
      return -Math.sqrt(s);
    }
    case 'random':
      return refHash01(p.seed ?? 0, layer, kv, e.pos);
    case 'lazy-eviction': {
      const L = e.a;
      const M = e.b;
      const rec = M === 0 ? 0 : 2 / (1 + Math.exp(M - 1));
      return 2 / (1 + Math.exp(1 + (t - L) / (M + 1e-5))) + rec;
    }
    default:
      throw new Error(`no reference for policy ${name}`);
  }
}

/**
 * Keeps `budget` of the entries (in slot order): the first `sinks` and last `window` always,
 * then the highest scores; at equal scores the lower slot wins. Returns keep flags and the
 * cut score (the lowest score kept among the scored entries; NaN when nothing was scored).
 */
export function refSelect(scores: number[], budget: number, sinks: number, window: number): { keep: boolean[]; cut: number } {
  const n = scores.length;
  const keep = new Array<boolean>(n).fill(true);
  if (n <= budget) return { keep, cut: NaN };
  const winStart = Math.max(0, n - window);
  const scored: number[] = [];
  for (let j = 0; j < n; j++) if (j >= sinks && j < winStart) scored.push(j);
  const room = budget - (n - scored.length);
  scored.sort((x, y) => scores[y]! - scores[x]! || x - y);
  const kept = new Set(scored.slice(0, Math.max(0, room)));
  for (const j of scored) keep[j] = kept.has(j);
  return { keep, cut: room > 0 ? scores[scored[room - 1]!]! : NaN };
}

/**
 * AdaKV: one budget for a layer's KV heads together. Each head keeps its sinks and window;
 * the rest compete in one layer-wide top-k; at equal scores the lower head, then the lower
 * slot, wins. Returns keep flags per head and the cut score.
 */
export function refSelectLayer(scores: number[][], budget: number, sinks: number, window: number): { keep: boolean[][]; cut: number } {
  const keep = scores.map((s) => new Array<boolean>(s.length).fill(true));
  const total = scores.reduce((a, s) => a + s.length, 0);
  if (total <= budget) return { keep, cut: NaN };
  const scored: [number, number][] = [];
  let forced = 0;
  scores.forEach((s, h) => {
    const winStart = Math.max(0, s.length - window);
    s.forEach((_, j) => {
      if (j >= sinks && j < winStart) scored.push([h, j]);
      else forced++;
    });
  });
  const room = budget - forced;
  scored.sort((x, y) => scores[y[0]]![y[1]]! - scores[x[0]]![x[1]]! || x[0] - y[0] || x[1] - y[1]);
  scored.forEach(([h, j], i) => (keep[h]![j] = i < room));
  const last = scored[room - 1];
  return { keep, cut: room > 0 && last ? scores[last[0]]![last[1]]! : NaN };
}

/**
 * LagKV scores of the partition entries[start, start + lag), against the lag reference
 * entries[start + lag, start + 2 lag): per channel min-max normalisation by the reference's
 * range (+1e-6), per token the unbiased std over channels, softmax over the partition, for K
 * and for V; score = softmax_K + softmax_V. Other slots get NaN (they are not scored).
 */
export function refLagScores(entries: RefEntry[], start: number, lag: number): number[] {
  const hd = entries[0]!.key.length;
  const stdOf = (pick: (e: RefEntry) => Float32Array) => {
    const lo = new Array<number>(hd).fill(Infinity);
    const hi = new Array<number>(hd).fill(-Infinity);
    for (let j = start + lag; j < start + 2 * lag; j++) {
      const v = pick(entries[j]!);
      for (let c = 0; c < hd; c++) {
        lo[c] = Math.min(lo[c]!, v[c]!);
        hi[c] = Math.max(hi[c]!, v[c]!);
      }
    }
    const stds: number[] = [];
    for (let j = start; j < start + lag; j++) {
      const v = pick(entries[j]!);
      const x = Array.from(v, (val, c) => (val - lo[c]!) / (hi[c]! - lo[c]! + 1e-6));
      const mean = x.reduce((a, b) => a + b, 0) / hd;
      stds.push(Math.sqrt(x.reduce((a, b) => a + (b - mean) ** 2, 0) / (hd - 1)));
    }
    const m = Math.max(...stds);
    const z = stds.reduce((a, b) => a + Math.exp(b - m), 0);
    return stds.map((v) => Math.exp(v - m) / z);
  };
  const k = stdOf((e) => e.key);
  const v = stdOf((e) => e.value!);
  return entries.map((_, j) => (j >= start && j < start + lag ? k[j - start]! + v[j - start]! : NaN));
}
