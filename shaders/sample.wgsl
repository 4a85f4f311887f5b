// Token sampling on the GPU: one workgroup of 256 invocations turns f32 logits into one
// token id, so a decode step reads back 4 bytes. No sort: thresholds are found by binary
// search over the order keys of the f32 bit patterns (exact for top-k, 32 fixed rounds).
// The algorithm is specified in src/engine/ops/sample.ts; src/reference/sample.ts is its
// plain-TypeScript twin. Every sum runs in a fixed order, so the result is deterministic.
struct Params {
  vocab: u32,
  top_k: u32,     // 0 = off (the host maps "off" and k >= vocab to 0)
  top_p: f32,     // >= 1 = off
  inv_temp: f32,  // f32(min(1 / T, f32 max))
  seed: u32,
  step: u32,
  out_index: u32,
  greedy: u32,    // 1 when temperature <= 0
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
// exp((x - max) / T) for the top-k set, 0 elsewhere; scratch owned by the op.
@group(0) @binding(2) var<storage, read_write> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;

// Reductions in a fixed order, two barriers each: invocations write partials to `sums`,
// 16 invocations fold 16 each into `sums16`, then every invocation adds those 16 (so all
// hold the same total). Each reduction uses one of two slots, alternating, so a write never
// races the previous reduction's reads (a barrier always lies between them).
// Barriers live in `main` only: SwiftShader crashed intermittently with barriers inside a
// called function.
var<workgroup> sums: array<f32, 512>;
var<workgroup> sums16: array<f32, 32>;
var<workgroup> best_keys: array<u32, 256>;
var<workgroup> best_ids: array<u32, 256>;

// Monotone map from f32 to u32: a < b (with -0 < +0) iff order_key(a) < order_key(b).
fn order_key(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  if ((b & 0x80000000u) != 0u) { return ~b; }
  return b | 0x80000000u;
}

// PCG hash (Jarzynski & Olano, "Hash Functions for GPU Rendering", JCGT 2020).
fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

// u in [0, 1) on a 2^-24 grid, so it is exact in f32 and in the TypeScript twin.
fn uniform01() -> f32 {
  let h = pcg(pcg(params.seed) ^ params.step);
  return f32(h >> 8u) * (1.0 / 16777216.0);
}

fn fold16(base: u32) -> f32 {
  var s = 0.0;
  for (var j = 0u; j < 16u; j++) { s += sums[base + j]; }
  return s;
}

fn total16(slot: u32) -> f32 {
  var s = 0.0;
  for (var j = 0u; j < 16u; j++) { s += sums16[slot * 16u + j]; }
  return s;
}

// lo + ceil((hi - lo) / 2) without overflow.
fn upper_mid(lo: u32, hi: u32) -> u32 {
  let d = hi - lo;
  return lo + (d >> 1u) + (d & 1u);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
  let n = params.vocab;

  // Argmax, lowest id on ties: each invocation scans ids in ascending order, then every
  // invocation merges the 256 candidates the same way.
  var bk = 0u;
  var bi = NONE;
  for (var i = lid; i < n; i += WG) {
    let k = order_key(logits[i]);
    if (bi == NONE || k > bk) { bk = k; bi = i; }
  }
  best_keys[lid] = bk;
  best_ids[lid] = bi;
  workgroupBarrier();
  var max_key = 0u;
  var arg = NONE;
  for (var j = 0u; j < WG; j++) {
    let id = best_ids[j];
    let k = best_keys[j];
    if (id != NONE && (arg == NONE || k > max_key || (k == max_key && id < arg))) {
      max_key = k;
      arg = id;
    }
  }
  if (params.greedy != 0u) {
    if (lid == 0u) { out[params.out_index] = arg; }
    return;
  }
  let m = logits[arg];

  // Top-k: the largest key t with count(key >= t) >= k, i.e. the k-th largest logit.
  // Every logit >= it is kept (ties at the threshold included).
  var slot = 0u;
  var tk = 0u;
  if (params.top_k != 0u) {
    let need = f32(params.top_k);  // counts stay below 2^24, exact in f32
    var lo = 0u;
    var hi = max_key;
    for (var it = 0u; it < 32u; it++) {
      let mid = upper_mid(lo, hi);
      var c = 0.0;
      for (var i = lid; i < n; i += WG) {
        if (order_key(logits[i]) >= mid) { c += 1.0; }
      }
      sums[slot * WG + lid] = c;
      workgroupBarrier();
      if (lid < 16u) { sums16[slot * 16u + lid] = fold16(slot * WG + lid * 16u); }
      workgroupBarrier();
      if (total16(slot) >= need) { lo = mid; } else { hi = mid - 1u; }
      slot = 1u - slot;
    }
    tk = lo;
  }

  // Unnormalised probabilities of the top-k set and their mass.
  let inv_t = params.inv_temp;
  var z = 0.0;
  for (var i = lid; i < n; i += WG) {
    let x = logits[i];
    var w = 0.0;
    if (order_key(x) >= tk) { w = exp((x - m) * inv_t); }
    weights[i] = w;
    z += w;
  }
  sums[slot * WG + lid] = z;
  workgroupBarrier();
  if (lid < 16u) { sums16[slot * 16u + lid] = fold16(slot * WG + lid * 16u); }
  workgroupBarrier();
  let mass = total16(slot);
  slot = 1u - slot;

  // Top-p: the largest key t with mass(key >= t) >= top_p * mass. mass(key >= tk) is the
  // same sum in the same order as `mass`, so lo = tk satisfies it from the start.
  var tp = tk;
  if (params.top_p < 1.0) {
    let goal = params.top_p * mass;
    var lo = tk;
    var hi = max_key;
    for (var it = 0u; it < 32u; it++) {
      let mid = upper_mid(lo, hi);
      var s = 0.0;
      for (var i = lid; i < n; i += WG) {
        if (order_key(logits[i]) >= mid) { s += weights[i]; }
      }
      sums[slot * WG + lid] = s;
      workgroupBarrier();
      if (lid < 16u) { sums16[slot * 16u + lid] = fold16(slot * WG + lid * 16u); }
      workgroupBarrier();
      if (total16(slot) >= goal) { lo = mid; } else { hi = mid - 1u; }
      slot = 1u - slot;
    }
    tp = lo;
  }

  // Draw: a blocked prefix sum in id order. Invocation `lid` owns ids [start, end).
  storageBarrier();
  let per = (n + WG - 1u) / WG;
  let start = min(lid * per, n);
  let end = min(start + per, n);
  var bs = 0.0;
  var last_pos = NONE;  // last id in the block with a positive weight
  for (var i = start; i < end; i++) {
    if (order_key(logits[i]) >= tp) {
      let w = weights[i];
      bs += w;
      if (w > 0.0) { last_pos = i; }
    }
  }
  let base = slot * WG;
  sums[base + lid] = bs;
  workgroupBarrier();
  var prefix = 0.0;
  var total = 0.0;
  var last_block = NONE;
  for (var j = 0u; j < WG; j++) {
    if (j == lid) { prefix = total; }
    let s = sums[base + j];
    total += s;
    if (s > 0.0) { last_block = j; }
  }
  // Block boundaries are the running `total` every invocation computed identically, so
  // exactly one block holds r when r < total.
  let r = uniform01() * total;
  if (r < total) {
    if (prefix <= r && r < prefix + bs) {
      var c = prefix;
      var pick = last_pos;  // if rounding inside the block never passes r
      for (var i = start; i < end; i++) {
        if (order_key(logits[i]) >= tp) {
          c += weights[i];
          if (c > r) { pick = i; break; }
        }
      }
      out[params.out_index] = pick;
    }
  } else if (last_block != NONE) {
    // u * total rounded up to total: take the last kept token with positive weight.
    if (lid == last_block) { out[params.out_index] = last_pos; }
  } else if (lid == 0u) {
    // No positive mass at all (NaN logits): fall back to the argmax.
    out[params.out_index] = arg;
  }
}
