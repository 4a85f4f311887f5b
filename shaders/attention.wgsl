// Attention over each KV head's live cache entries, split over the key axis with an
// online softmax (flash-decoding style), for decode (rows = 1) and causal chunked prefill.
//
// PARTIAL (grid: splits x nH x rows): workgroup (split, h, r) scores keys
//   [split*keysPerSplit, min(+keysPerSplit, n)) with n = lens[kv] + rows (entries appended
//   this step included), masks entries whose absolute position is after the query's, and
//   writes (m, l, acc[hd]) to `part`.
// REDUCE (grid: nH x rows): merges the splits and writes the head's output row.
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
    var tsum = 0.0;
    for (var i = 0u; i < cnt; i++) {
      let si = sc[i];
      tsum += select(0.0, exp(si - mNew), si > -1.0e29);
    }
    l = l * alpha + tsum;
    for (var k = 0u; k < 4u; k++) {
      let d = lid.x + k * WG;
      if (d < p.hd) {
        var a = acc[k] * alpha;
        for (var i = 0u; i < cnt; i++) {
          let si = sc[i];
          if (si > -1.0e29) { a += exp(si - mNew) * vc[(cbase + t0 + i) * p.hd + d]; }
        }
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
