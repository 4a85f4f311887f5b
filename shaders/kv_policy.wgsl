// The cache manager's shared kernels, one layer per dispatch. A policy contributes only WGSL
// snippets (its statistic update and its score); selection and compaction are common.
//
// MASS    (grid: ceil(capacity/64) x nKV): per live entry, the attention mass it received this
//         step (softmax probability, averaged over the query heads of the KV group in every
//         layer that reads this cache (`readers`, KVSharer), summed over the step's query
//         rows, or the last `massRows` rows), then the policy's statistic update.
// SELECT  (grid: nKV, one workgroup of WG invocations per KV head; WG = 256 on GPUs, fewer on
//         CPU adapters): scores every live entry with the
//         policy's score, forces sinks (first SINKS slots) and the window (last WINDOW slots), and
//         keeps the `budget` best: threshold by a 32-step bitwise search on order-preserving
//         keys; at the threshold, lower slots (= earlier positions) win. Writes each entry's
//         new slot (or NONE) and the new length. With ADAKV one workgroup selects for the whole
//         layer: budget x nKV entries by a layer-wide top-k (ties: lower head, then lower slot).
// GATHER  (grid: ceil(capacity/64) x nKV): copies kept entries (key, value, position, stats)
//         into scratch at their new slots, bit for bit.
// SCATTER (grid: ceil(capacity/64) x nKV): copies scratch back and sets the new length.
// Gather and scatter skip the slots before the first one that changes (all of them when
// nothing is evicted; those before the evicted entry on a decode step).
// Entry stats: st[(kv * capacity + j) * 2 + {0, 1}] (f32).
struct Params {
  nH: u32, nKV: u32, hd: u32, capacity: u32,
  layerBase: u32, budget: u32, sinks: u32, window: u32,
  seed: u32, layer: u32, massRows: u32, readers: u32,
  stride: u32, globalMask: u32, pad1: u32, pad2: u32,
};
const NONE: u32 = 0xffffffffu;
const NEG: f32 = -1.0e30;

#if MASS
@group(0) @binding(0) var<storage, read> scores: array<f32>;
@group(0) @binding(1) var<storage, read> ml: array<f32>;
@group(0) @binding(2) var<storage, read_write> st: array<f32>;
@group(0) @binding(3) var<storage, read> posc: array<u32>;
@group(0) @binding(4) var<storage, read> lens: array<u32>;
@group(0) @binding(5) var<uniform> p: Params;
@group(0) @binding(6) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let kv = g.y;
  let j = g.x;
  let len0 = lens[p.layerBase + kv];
  let n = len0 + step.rows;
  if (j >= n) { return; }
  let group = p.nH / p.nKV;
  var mass = 0.0;
  // Only the last `massRows` query rows count (0 = all rows).
  let r0 = select(0u, step.rows - min(p.massRows, step.rows), p.massRows > 0u);
  // Reader k's scores start at row k * stride (stride = max rows x heads).
  let stride = p.stride;
  for (var k = 0u; k < max(p.readers, 1u); k++) {
    for (var r = r0; r < step.rows; r++) {
      for (var q = 0u; q < group; q++) {
        let h = kv * group + q;
        let s = scores[(k * stride + r * p.nH + h) * p.capacity + j];
        if (s > -1.0e29) {
          let o = (k * stride + r * p.nH + h) * 2u;
          mass += exp(s - ml[o]) / ml[o + 1u];
        }
      }
    }
  }
  mass = mass / f32(group * max(p.readers, 1u));
  let i = (kv * p.capacity + j) * 2u;
  let pos = posc[kv * p.capacity + j];
  let isNew = j >= len0;
  let t = f32(step.pos0 + step.rows - 1u);
  var a = st[i];
  var b = st[i + 1u];
  ${STAT_UPDATE}
  st[i] = a;
  st[i + 1u] = b;
}
#endif

#if SELECT
#if INPLACE
// Select and compact in one dispatch: the kept entries move down in place (see compactInPlace).
@group(0) @binding(0) var<storage, read_write> kc: array<f32>;
@group(0) @binding(1) var<storage, read_write> posc: array<u32>;
@group(0) @binding(2) var<storage, read_write> st: array<f32>;
@group(0) @binding(3) var<storage, read_write> lens: array<u32>;
@group(0) @binding(9) var<storage, read_write> vc: array<f32>;
#else
@group(0) @binding(0) var<storage, read> kc: array<f32>;
@group(0) @binding(1) var<storage, read> posc: array<u32>;
@group(0) @binding(2) var<storage, read> st: array<f32>;
@group(0) @binding(3) var<storage, read> lens: array<u32>;
#endif
@group(0) @binding(4) var<storage, read_write> okey: array<u32>;
@group(0) @binding(5) var<storage, read_write> newSlot: array<u32>;
@group(0) @binding(6) var<storage, read_write> newLens: array<u32>;
@group(0) @binding(7) var<uniform> p: Params;
@group(0) @binding(8) var<uniform> step: Step;

// Invocations per workgroup (256 on GPUs; fewer on CPU adapters, where each barrier costs
// a switch through every invocation of the workgroup).
const WG: u32 = ${SELECT_WG}u;
var<workgroup> red: array<u32, WG>;
var<workgroup> redK: array<u32, WG>;
var<workgroup> wU: u32;

// f32 -> u32 with the same order (larger float, larger key).
fn orderKey(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn keyNorm(kv: u32, j: u32) -> f32 {
  let base = (kv * p.capacity + j) * p.hd;
  var s = 0.0;
  for (var d = 0u; d < p.hd; d++) { let v = kc[base + d]; s += v * v; }
  return sqrt(s);
}

// A uniform in [0, 1) from (seed, layer, kv, position): PCG hash.
fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}
fn hash01(kv: u32, pos: u32) -> f32 {
  return f32(pcg(pcg(pcg(p.seed ^ (p.layer * 131u + kv)) ^ pos)) >> 8u) / 16777216.0;
}

fn poolA(kv: u32, j: u32, n: u32, k: u32) -> f32 {
  let lo = select(0u, j - k, j >= k);
  let hi = min(j + k, n - 1u);
  var s = 0.0;
  for (var q = lo; q <= hi; q++) { s += st[(kv * p.capacity + q) * 2u]; }
  return s / f32(hi - lo + 1u);
}

fn entryScore(kv: u32, j: u32, n: u32) -> f32 {
  let i = (kv * p.capacity + j) * 2u;
  let a = st[i];
  let b = st[i + 1u];
  let pos = posc[kv * p.capacity + j];
  let t = f32(step.pos0 + step.rows - 1u);
  return ${SCORE};
}

fn reduceSum(lid: u32, v: u32) -> u32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}

// A value every invocation agrees on (thread 0's), as the uniformity analysis requires for
// loop bounds around barriers (lengths live in a read_write buffer in the INPLACE variant).
fn uniformU32(t: u32, v: u32) -> u32 {
  workgroupBarrier();
  if (t == 0u) { wU = v; }
  return workgroupUniformLoad(&wU);
}

#if INPLACE
// In-place compaction after selection. The kept entries' new slots never exceed their old
// ones and keep their order, so for keys and values an element e = slot * hd + d moves to
// newSlot * hd + d <= e: reading blocks of WG elements in increasing order, with a barrier
// between a block's reads and its writes, never overwrites an element not yet read. Only
// the slots from the first changed one on move (none when nothing is evicted).
fn compactInPlace(h0: u32, h1: u32, t: u32) {
  for (var h = h0; h < h1; h++) {
    let first = uniformU32(t, newLens[p.nKV + h]);
    let n = uniformU32(t, lens[p.layerBase + h]);
    let base = h * p.capacity;
    let e1 = n * p.hd;
    for (var b = first * p.hd; b < e1; b += WG) {
      let e = b + t;
      var dst = NONE;
      var kx = 0.0;
      var vx = 0.0;
      if (e < e1) {
        let j = e / p.hd;
        let ns = newSlot[base + j];
        if (ns != NONE) {
          dst = (base + ns) * p.hd + (e - j * p.hd);
          kx = kc[base * p.hd + e];
          vx = vc[base * p.hd + e];
        }
      }
      storageBarrier();
      if (dst != NONE) {
        kc[dst] = kx;
        vc[dst] = vx;
      }
      storageBarrier();
    }
    for (var b = first; b < n; b += WG) {
      let j = b + t;
      var ns = NONE;
      var ps = 0u;
      var a = 0.0;
      var c = 0.0;
      if (j < n) {
        ns = newSlot[base + j];
        ps = posc[base + j];
        a = st[(base + j) * 2u];
        c = st[(base + j) * 2u + 1u];
      }
      storageBarrier();
      if (ns != NONE) {
        posc[base + ns] = ps;
        st[(base + ns) * 2u] = a;
        st[(base + ns) * 2u + 1u] = c;
      }
      storageBarrier();
    }
    if (t == 0u) { lens[p.layerBase + h] = newLens[h]; }
  }
}
#endif

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
#if ADAKV
  let h0 = 0u;
  let h1 = p.nKV;
  let budget = p.budget * p.nKV;
#else
  let h0 = wg.x;
  let h1 = wg.x + 1u;
#if THRESHOLD
  // Learned gates: keep exactly the entries scoring >= 0 (the gate logit).
  var cnt = 0u;
  for (var j = lid.x; j < lens[p.layerBase + h0]; j += WG) {
    cnt += select(0u, 1u, entryScore(h0, j, lens[p.layerBase + h0]) >= 0.0);
  }
  let budget = uniformU32(lid.x, reduceSum(lid.x, cnt));
#else
  // Role policies: a global head (bit set in globalMask) never evicts.
  let budget = select(p.budget, 0x7fffffffu, ((p.globalMask >> wg.x) & 1u) == 1u);
#endif
#endif
  var t0 = 0u;
  for (var h = h0; h < h1; h++) { t0 += lens[p.layerBase + h]; }
#if INPLACE
  let total = uniformU32(lid.x, t0);
  if (total <= budget) { return; }
#else
  let total = t0;
#endif
  if (total <= budget) {
    for (var h = h0; h < h1; h++) {
      let n = lens[p.layerBase + h];
      for (var j = lid.x; j < n; j += WG) { newSlot[h * p.capacity + j] = j; }
      if (lid.x == 0u) {
        newLens[h] = n;
        newLens[p.nKV + h] = n; // nothing moves
      }
    }
    return;
  }
  for (var h = h0; h < h1; h++) {
    let n = lens[p.layerBase + h];
    let winStart = select(0u, n - p.window, n > p.window);
    for (var j = lid.x; j < n; j += WG) {
      var k: u32;
      if (j < p.sinks || j >= winStart) { k = 0xffffffffu; } else { k = orderKey(entryScore(h, j, n)); }
      okey[h * p.capacity + j] = k;
    }
  }
  storageBarrier();
  workgroupBarrier();
#if !ADAKV
  // Decode steps evict exactly one entry: the lowest key, and among equal keys the highest
  // slot (the tie rule keeps earlier entries). One reduction instead of the bitwise search;
  // only the entries after it move.
  if (total == budget + 1u) {
    let base = h0 * p.capacity;
    var best = 0xffffffffu;
    var bestSlot = 0u;
    for (var j = lid.x; j < total; j += WG) {
      let k = okey[base + j];
      if (k < best || (k == best && j > bestSlot)) { best = k; bestSlot = j; }
    }
    redK[lid.x] = best;
    red[lid.x] = bestSlot;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
      if (lid.x < s) {
        let k2 = redK[lid.x + s];
        let j2 = red[lid.x + s];
        if (k2 < redK[lid.x] || (k2 == redK[lid.x] && j2 > red[lid.x])) { redK[lid.x] = k2; red[lid.x] = j2; }
      }
      workgroupBarrier();
    }
    let e = red[0];
    for (var j = lid.x; j < total; j += WG) {
      newSlot[base + j] = select(select(j - 1u, j, j < e), NONE, j == e);
    }
    if (lid.x == 0u) {
      newLens[h0] = budget;
      newLens[p.nKV + h0] = e;
    }
#if INPLACE
    storageBarrier();
    compactInPlace(h0, h1, lid.x);
#endif
    return;
  }
#endif
  if (lid.x == 0u) {
    for (var h = h0; h < h1; h++) { newLens[p.nKV + h] = 0u; }
  }
  // Largest threshold T with count(key >= T) >= budget, built bit by bit.
  var thr = 0u;
  for (var bit = 31i; bit >= 0i; bit--) {
    let cand = thr | (1u << u32(bit));
    var c = 0u;
    for (var h = h0; h < h1; h++) {
      let n = lens[p.layerBase + h];
      for (var j = lid.x; j < n; j += WG) { c += select(0u, 1u, okey[h * p.capacity + j] >= cand); }
    }
    if (reduceSum(lid.x, c) >= budget) { thr = cand; }
  }
  // Keep key > thr, and the first (budget - count(key > thr)) entries with key == thr in
  // (head, slot) order. Each thread owns a contiguous block of a head's slots.
  var gt = 0u;
  for (var h = h0; h < h1; h++) {
    let n = lens[p.layerBase + h];
    for (var j = lid.x; j < n; j += WG) { gt += select(0u, 1u, okey[h * p.capacity + j] > thr); }
  }
  let needEq = budget - reduceSum(lid.x, gt);
  var eqConsumed = 0u;
  for (var h = h0; h < h1; h++) {
    let n = lens[p.layerBase + h];
    let base = h * p.capacity;
    let per = (n + WG - 1u) / WG;
    let j0 = min(lid.x * per, n);
    let j1 = min(j0 + per, n);
    var eq = 0u;
    for (var j = j0; j < j1; j++) { eq += select(0u, 1u, okey[base + j] == thr); }
    // Exclusive scan of the blocks' tie counts (serial by thread 0: WG adds).
    red[lid.x] = eq;
    workgroupBarrier();
    if (lid.x == 0u) {
      var acc = 0u;
      for (var q = 0u; q < WG; q++) { let v = red[q]; red[q] = acc; acc += v; }
    }
    workgroupBarrier();
    let eqStart = eqConsumed + red[lid.x];
    workgroupBarrier();
    var eqBefore = eqStart;
    var kept = 0u;
    for (var j = j0; j < j1; j++) {
      let k = okey[base + j];
      if (k > thr) { kept++; } else if (k == thr) {
        if (eqBefore < needEq) { kept++; }
        eqBefore++;
      }
    }
    red[lid.x] = kept;
    workgroupBarrier();
    if (lid.x == 0u) {
      var acc = 0u;
      for (var q = 0u; q < WG; q++) { let v = red[q]; red[q] = acc; acc += v; }
      newLens[h] = acc;
    }
    workgroupBarrier();
    var slot = red[lid.x];
    workgroupBarrier();
    eqBefore = eqStart;
    for (var j = j0; j < j1; j++) {
      let k = okey[base + j];
      var keep = k > thr;
      if (k == thr) {
        keep = eqBefore < needEq;
        eqBefore++;
      }
      if (keep) { newSlot[base + j] = slot; slot++; } else { newSlot[base + j] = NONE; }
    }
    eqConsumed += reduceSum(lid.x, eq);
  }
#if INPLACE
  storageBarrier();
  compactInPlace(h0, h1, lid.x);
#endif
}
#endif

#if GATHER
@group(0) @binding(0) var<storage, read> kc: array<f32>;
@group(0) @binding(1) var<storage, read> vc: array<f32>;
@group(0) @binding(2) var<storage, read> posc: array<u32>;
@group(0) @binding(3) var<storage, read> st: array<f32>;
@group(0) @binding(4) var<storage, read> lens: array<u32>;
@group(0) @binding(5) var<storage, read> newSlot: array<u32>;
@group(0) @binding(6) var<storage, read_write> sKV: array<f32>;
@group(0) @binding(7) var<storage, read_write> sMeta: array<u32>;
@group(0) @binding(8) var<uniform> p: Params;
// newLens: [new length per head | first slot whose entry changes per head]; slots before it stay.
@group(0) @binding(9) var<storage, read> firstChanged: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let kv = g.y;
  let j = g.x;
  if (j >= lens[p.layerBase + kv] || j < firstChanged[p.nKV + kv]) { return; }
  let ns = newSlot[kv * p.capacity + j];
  if (ns == NONE) { return; }
  let src = (kv * p.capacity + j) * p.hd;
  let dst = (kv * p.capacity + ns) * 2u * p.hd;
  for (var d = 0u; d < p.hd; d++) {
    sKV[dst + d] = kc[src + d];
    sKV[dst + p.hd + d] = vc[src + d];
  }
  let m = (kv * p.capacity + ns) * 3u;
  sMeta[m] = posc[kv * p.capacity + j];
  sMeta[m + 1u] = bitcast<u32>(st[(kv * p.capacity + j) * 2u]);
  sMeta[m + 2u] = bitcast<u32>(st[(kv * p.capacity + j) * 2u + 1u]);
}
#endif

#if SCATTER
@group(0) @binding(0) var<storage, read_write> kc: array<f32>;
@group(0) @binding(1) var<storage, read_write> vc: array<f32>;
@group(0) @binding(2) var<storage, read_write> posc: array<u32>;
@group(0) @binding(3) var<storage, read_write> st: array<f32>;
@group(0) @binding(4) var<storage, read_write> lens: array<u32>;
@group(0) @binding(5) var<storage, read> newLens: array<u32>;
@group(0) @binding(6) var<storage, read> sKV: array<f32>;
@group(0) @binding(7) var<storage, read> sMeta: array<u32>;
@group(0) @binding(8) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let kv = g.y;
  let j = g.x;
  let n = newLens[kv];
  if (j == 0u) { lens[p.layerBase + kv] = n; }
  if (j >= n || j < newLens[p.nKV + kv]) { return; }
  let src = (kv * p.capacity + j) * 2u * p.hd;
  let dst = (kv * p.capacity + j) * p.hd;
  for (var d = 0u; d < p.hd; d++) {
    kc[dst + d] = sKV[src + d];
    vc[dst + d] = sKV[src + p.hd + d];
  }
  let m = (kv * p.capacity + j) * 3u;
  posc[kv * p.capacity + j] = sMeta[m];
  st[(kv * p.capacity + j) * 2u] = bitcast<f32>(sMeta[m + 1u]);
  st[(kv * p.capacity + j) * 2u + 1u] = bitcast<f32>(sMeta[m + 2u]);
}
#endif

#if LAGKV
// LagKV scoring of one partition per KV head (grid: nKV, 256 threads): slots
// [p.sinks, p.sinks + LAG) are scored against the next LAG slots (the lag reference): per
// channel min-max normalisation by the reference's K (and V) range, per token the unbiased
// std over channels, softmax over the partition; a = softmax_K + softmax_V.
@group(0) @binding(0) var<storage, read> kc: array<f32>;
@group(0) @binding(1) var<storage, read> vc: array<f32>;
@group(0) @binding(2) var<storage, read_write> st: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 256u;
const LAG: u32 = ${LAG}u;
var<workgroup> mnK: array<f32, 256>;
var<workgroup> mxK: array<f32, 256>;
var<workgroup> mnV: array<f32, 256>;
var<workgroup> mxV: array<f32, 256>;
var<workgroup> red: array<f32, 256>;

fn stdNorm(base: u32, isV: bool) -> f32 {
  var mean = 0.0;
  for (var c = 0u; c < p.hd; c++) {
    let x = select(kc[base + c], vc[base + c], isV);
    let lo = select(mnK[c], mnV[c], isV);
    let hi = select(mxK[c], mxV[c], isV);
    mean += (x - lo) / (hi - lo + 1e-6);
  }
  mean = mean / f32(p.hd);
  var ss = 0.0;
  for (var c = 0u; c < p.hd; c++) {
    let x = select(kc[base + c], vc[base + c], isV);
    let lo = select(mnK[c], mnV[c], isV);
    let hi = select(mxK[c], mxV[c], isV);
    let d = (x - lo) / (hi - lo + 1e-6) - mean;
    ss += d * d;
  }
  return sqrt(ss / f32(p.hd - 1u));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let kv = wg.x;
  let start = p.sinks;
  for (var c = lid.x; c < p.hd; c += WG) {
    var a = 3.0e38; var b = -3.0e38; var e = 3.0e38; var f = -3.0e38;
    for (var j = start + LAG; j < start + 2u * LAG; j++) {
      let o = (kv * p.capacity + j) * p.hd + c;
      a = min(a, kc[o]); b = max(b, kc[o]);
      e = min(e, vc[o]); f = max(f, vc[o]);
    }
    mnK[c] = a; mxK[c] = b; mnV[c] = e; mxV[c] = f;
  }
  workgroupBarrier();
  // Per token std of K and V (kept in the two statistics for now).
  for (var j = lid.x; j < LAG; j += WG) {
    let base = (kv * p.capacity + start + j) * p.hd;
    let i = (kv * p.capacity + start + j) * 2u;
    st[i] = stdNorm(base, false);
    st[i + 1u] = stdNorm(base, true);
  }
  storageBarrier();
  workgroupBarrier();
  // Softmax over the partition for each of the two, then a = sum.
  var mk = -3.0e38; var mv = -3.0e38;
  for (var j = lid.x; j < LAG; j += WG) {
    let i = (kv * p.capacity + start + j) * 2u;
    mk = max(mk, st[i]); mv = max(mv, st[i + 1u]);
  }
  red[lid.x] = mk;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) { if (lid.x < s) { red[lid.x] = max(red[lid.x], red[lid.x + s]); } workgroupBarrier(); }
  mk = red[0];
  workgroupBarrier();
  red[lid.x] = mv;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) { if (lid.x < s) { red[lid.x] = max(red[lid.x], red[lid.x + s]); } workgroupBarrier(); }
  mv = red[0];
  workgroupBarrier();
  var sk = 0.0; var sv = 0.0;
  for (var j = lid.x; j < LAG; j += WG) {
    let i = (kv * p.capacity + start + j) * 2u;
    sk += exp(st[i] - mk); sv += exp(st[i + 1u] - mv);
  }
  red[lid.x] = sk;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) { if (lid.x < s) { red[lid.x] += red[lid.x + s]; } workgroupBarrier(); }
  sk = red[0];
  workgroupBarrier();
  red[lid.x] = sv;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) { if (lid.x < s) { red[lid.x] += red[lid.x + s]; } workgroupBarrier(); }
  sv = red[0];
  workgroupBarrier();
  for (var j = lid.x; j < LAG; j += WG) {
    let i = (kv * p.capacity + start + j) * 2u;
    st[i] = exp(st[i] - mk) / sk + exp(st[i + 1u] - mv) / sv;
    st[i + 1u] = 0.0;
  }
}
#endif

#if KVMEAN
// KVSharer calibration: adds, per channel of every KV head, the sum over this layer's live
// entries of the keys (after RoPE) and of the values: sums = [K (nKV * hd) | V (nKV * hd)].
@group(0) @binding(0) var<storage, read> kc: array<f32>;
@group(0) @binding(1) var<storage, read> vc: array<f32>;
@group(0) @binding(2) var<storage, read> lens: array<u32>;
@group(0) @binding(3) var<storage, read_write> sums: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let c = g.x;
  if (c >= p.nKV * p.hd) { return; }
  let kv = c / p.hd;
  let d = c % p.hd;
  let n = lens[p.layerBase + kv];
  var sk = 0.0;
  var sv = 0.0;
  for (var j = 0u; j < n; j++) {
    let o = (kv * p.capacity + j) * p.hd + d;
    sk += kc[o];
    sv += vc[o];
  }
  sums[c] += sk;
  sums[p.nKV * p.hd + c] += sv;
}
#endif
