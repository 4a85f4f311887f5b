// Attention over each KV head's live cache entries, split over the key axis with an
// online softmax (flash-decoding style), for decode (rows = 1) and causal chunked prefill.
//
// PARTIAL (grid: splits x nH x rows): workgroup (split, h, r) scores keys
//   [split*keysPerSplit, min(+keysPerSplit, n)) with n = lens[kv] + rows (entries appended
//   this step included), masks entries whose absolute position is after the query's, and
//   writes (m, l, acc[hd]) to `part`.
// REDUCE (grid: nH x rows): merges the splits and writes the head's output row.
// ROWS (grid: ceil(rows / (WGR RR)) x nH / GH), picked on CPU adapters for every step: one invocation
//   per RR query rows (steps over 16 rows: RR = 2, WGR = 16; else RR = 1, WGR = 8) and up to 4
//   query heads of one KV group walks the keys of its KV head (row r sees no slot past lens + r:
//   this step's entries sit in row order; the loop runs to the workgroup's last row's bound,
//   masking the rest) with an online softmax
//   updated at every key, branch-free, and writes the output row directly. No barriers: on
//   SwiftShader ~20x faster than PARTIAL + REDUCE for a 128-row chunk; GPUs keep the split
//   kernels, which spread a step over many workgroups.
// Entries are visible by position, not by slot, so the same kernel serves compacted caches.
// scoreBase: where this layer's scores start in `scores` (layers sharing one cache write side by side).
struct Params { nH: u32, nKV: u32, hd: u32, capacity: u32, layerBase: u32, scale: f32, scoreBase: u32, pad: u32 };
const WG: u32 = 64u;
const NEG: f32 = -1.0e30;

#if REDUCE
@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> outp: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<uniform> step: Step;
#if SCORES
// (max, sum) of the softmax per (row, head), for the attention-mass pass.
@group(0) @binding(4) var<storage, read_write> ml: array<f32>;
#endif

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let h = wg.x;
  let r = wg.y;
  let stride = p.hd + 2u;
  let base = (r * p.nH + h) * step.splits * stride;
  var m = NEG;
  for (var s = 0u; s < step.splits; s++) { m = max(m, part[base + s * stride]); }
  var l = 0.0;
  for (var s = 0u; s < step.splits; s++) {
    let ms = part[base + s * stride];
    l += part[base + s * stride + 1u] * exp(ms - m);
  }
  for (var d = lid.x; d < p.hd; d += WG) {
    var acc = 0.0;
    for (var s = 0u; s < step.splits; s++) {
      let o = base + s * stride;
      acc += part[o + 2u + d] * exp(part[o] - m);
    }
    outp[(r * p.nH + h) * p.hd + d] = acc / l;
  }
#if SCORES
  if (lid.x == 0u) {
    ml[p.scoreBase / p.capacity * 2u + (r * p.nH + h) * 2u] = m;
    ml[p.scoreBase / p.capacity * 2u + (r * p.nH + h) * 2u + 1u] = l;
  }
#endif
}
#elif ROWS
@group(0) @binding(0) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kc: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> vc: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> posc: array<u32>;
@group(0) @binding(4) var<storage, read> lens: array<u32>;
@group(0) @binding(5) var<storage, read_write> outp: array<vec4<f32>>;
@group(0) @binding(6) var<uniform> p: Params;
@group(0) @binding(7) var<uniform> step: Step;
#if SCORES
@group(0) @binding(8) var<storage, read_write> scores: array<f32>;
@group(0) @binding(9) var<storage, read_write> ml: array<f32>;
#endif
// HD4 = head_dim / 4 (the host uses this variant only when head_dim is a multiple of 4). RR
// query rows and GH query heads of one KV group share an invocation, so each key and value row is
// loaded once for RR x GH (row, head) pairs. The per-(head, dimension) code is unrolled by the host (${...} below): private
// arrays indexed in loops are per-lane memory on CPU back ends, plain locals stay in registers.
// Per key and head: m' = max(m, s), l = l e^(m - m') + e^(s - m'), acc = acc e^(m - m') + e^(s - m') v,
// with s = NEG and weight 0 for a masked key. No branch in the loop: on SwiftShader a divergent
// branch costs more than the second exp and the rescale it would save (1.7x faster than
// rescaling once per block of 8 keys behind branches). Per head the arithmetic is the same for
// any GH.
const HD4: u32 = ${HD4}u;
const GH: u32 = ${GH}u;
const WGR: u32 = ${WGR}u;
const RR: u32 = ${RR}u;

@compute @workgroup_size(${WGR})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let h0 = wg.y * GH;
  let kv = h0 / (p.nH / p.nKV);
  let width4 = (p.nH + 2u * p.nKV) * HD4;
  let len0 = lens[p.layerBase + kv];
  // Lane rows rb, rb + WGR, .. (RR of them). This step's entries sit at slots lens.. in row
  // order, so row r sees none past lens + r (n = lens + r + 1). Lanes past the last row compute
  // a copy of it and store nothing: no early return, which would run the rest under a lane mask
  // on lavapipe.
  let rb = wg.x * WGR * RR + lid.x;
${SETUP}
  // The loop runs to the workgroup's last row's bound, the same for every lane, so each key and
  // value load is one load for the whole workgroup; a row's keys past its own bound are masked,
  // which leaves its sums unchanged bit for bit (alpha = 1, weight 0).
  let nAll = len0 + min(step.rows, (wg.x + 1u) * WGR * RR);
  let cbase = kv * p.capacity;
${QLOAD}
${ACCDECL}
  for (var j = 0u; j < nAll; j++) {
    let kb = (cbase + j) * HD4;
${DOT}
${UPDATE}
${SKEEP}
  }
${STORE}
}
#else
@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> kc: array<f32>;
@group(0) @binding(2) var<storage, read> vc: array<f32>;
@group(0) @binding(3) var<storage, read> posc: array<u32>;
@group(0) @binding(4) var<storage, read> lens: array<u32>;
@group(0) @binding(5) var<storage, read_write> part: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;
@group(0) @binding(7) var<uniform> step: Step;
#if SCORES
// Raw scaled scores per (row, head, entry) (NEG where masked), for the attention-mass pass.
@group(0) @binding(8) var<storage, read_write> scores: array<f32>;
#endif

var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 64>;
var<workgroup> pr: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let split = wg.x;
  let h = wg.y;
  let r = wg.z;
  let kv = h / (p.nH / p.nKV);
  let qpos = step.pos0 + r;
  let width = (p.nH + 2u * p.nKV) * p.hd;
  let n = lens[p.layerBase + kv] + step.rows;
  let start = split * step.keysPerSplit;
  let end = min(start + step.keysPerSplit, n);
  for (var d = lid.x; d < p.hd; d += WG) { qs[d] = qkv[r * width + h * p.hd + d]; }
  var m = NEG;
  var l = 0.0;
  var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  let cbase = kv * p.capacity;
  for (var t0 = start; t0 < end; t0 += WG) {
    workgroupBarrier();
    let j = t0 + lid.x;
    var s = NEG;
    if (j < end && posc[cbase + j] <= qpos) {
      let kb = (cbase + j) * p.hd;
      var dot = 0.0;
      for (var d = 0u; d < p.hd; d++) { dot += qs[d] * kc[kb + d]; }
      s = dot * p.scale;
    }
    sc[lid.x] = s;
#if SCORES
    if (j < end) { scores[p.scoreBase + (r * p.nH + h) * p.capacity + j] = s; }
#endif
    workgroupBarrier();
    var tmax = NEG;
    let cnt = min(WG, end - t0);
    for (var i = 0u; i < cnt; i++) { tmax = max(tmax, sc[i]); }
    let mNew = max(m, tmax);
    let alpha = exp(m - mNew);
    // Each thread exponentiates its own key once; the sums below read the shared weights.
    pr[lid.x] = select(0.0, exp(s - mNew), s > -1.0e29);
    workgroupBarrier();
    var tsum = 0.0;
    for (var i = 0u; i < cnt; i++) { tsum += pr[i]; }
    l = l * alpha + tsum;
    for (var k = 0u; k < 4u; k++) {
      let d = lid.x + k * WG;
      if (d < p.hd) {
        var a = acc[k] * alpha;
        for (var i = 0u; i < cnt; i++) { a += pr[i] * vc[(cbase + t0 + i) * p.hd + d]; }
        acc[k] = a;
      }
    }
    m = mNew;
  }
  let stride = p.hd + 2u;
  let o = ((r * p.nH + h) * step.splits + split) * stride;
  if (lid.x == 0u) {
    part[o] = m;
    part[o + 1u] = l;
  }
  for (var k = 0u; k < 4u; k++) {
    let d = lid.x + k * WG;
    if (d < p.hd) { part[o + 2u + d] = acc[k]; }
  }
}
#endif
