// Attention-Gate (methods.md section 3; design in training/README.md): per layer, a one-head
// causal attention block of dimension DG over the layer's normalized input xn decides, when a
// token enters the cache, whether each KV head keeps it.
//   qg = Wq xn, kg = Wk xn, vg = Wv xn             (W = [Wq; Wk; Wv]: 3*DG x H, no rotary)
//   o_t = sum_{j <= t} softmax_j(qg_t . kg_j / sqrt(DG)) vg_j
//   z[t, h] = Wo[h] . [o_t ; xn_t] + bo[h]          (keep when z >= 0)
// The gate's own keys and values (gk, gv: context x DG) are indexed by absolute position and
// never evicted. z lands in the new entry's first statistic, which the `attention-gate`
// policy scores; the select kernel then keeps exactly the entries with z >= 0.
//
// PROJ (grid: ceil(3*DG/64) x rows): one output of [qg | kg | vg] per invocation; kg and vg
//      are written at the row's position, qg to scratch.
// ATTN (grid: rows, 64 threads): the gate attention for one row, then z per KV head.
struct GateParams {
  H: u32, nKV: u32, capacity: u32, layerBase: u32,
};
const DG: u32 = ${DG}u;

#if PROJ
@group(0) @binding(0) var<storage, read> xn: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> qg: array<f32>;
@group(0) @binding(3) var<storage, read_write> gk: array<f32>;
@group(0) @binding(4) var<storage, read_write> gv: array<f32>;
@group(0) @binding(5) var<uniform> p: GateParams;
@group(0) @binding(6) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let o = g.x;
  let r = g.y;
  if (o >= 3u * DG || r >= step.rows) { return; }
  var s = 0.0;
  for (var i = 0u; i < p.H; i++) { s += w[o * p.H + i] * xn[r * p.H + i]; }
  let t = step.pos0 + r;
  if (o < DG) {
    qg[r * DG + o] = s;
  } else if (o < 2u * DG) {
    gk[t * DG + o - DG] = s;
  } else {
    gv[t * DG + o - 2u * DG] = s;
  }
}
#endif

#if ATTN
@group(0) @binding(0) var<storage, read> xn: array<f32>;
@group(0) @binding(1) var<storage, read> qg: array<f32>;
@group(0) @binding(2) var<storage, read> gk: array<f32>;
@group(0) @binding(3) var<storage, read> gv: array<f32>;
@group(0) @binding(4) var<storage, read> wo: array<f32>;
@group(0) @binding(5) var<storage, read> bo: array<f32>;
@group(0) @binding(6) var<storage, read> lens: array<u32>;
@group(0) @binding(7) var<storage, read_write> st: array<f32>;
@group(0) @binding(8) var<uniform> p: GateParams;
@group(0) @binding(9) var<uniform> step: Step;

const WG: u32 = 64u;
var<workgroup> red: array<f32, 64>;
var<workgroup> acc: array<f32, 1024>; // WG x DG partial sums (DG <= 16)
var<workgroup> ov: array<f32, 16>;

fn reduceMax(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let m = red[0];
  workgroupBarrier();
  return m;
}

fn reduceSum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let m = red[0];
  workgroupBarrier();
  return m;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) li: vec3<u32>) {
  let r = wg.x;
  let lid = li.x;
  let t = step.pos0 + r;
  let scale = 1.0 / sqrt(f32(DG));
  // Pass 1: the row maximum of the scores over positions 0..t.
  var m = -1.0e30;
  for (var j = lid; j <= t; j += WG) {
    var s = 0.0;
    for (var d = 0u; d < DG; d++) { s += qg[r * DG + d] * gk[j * DG + d]; }
    m = max(m, s * scale);
  }
  m = reduceMax(lid, m);
  // Pass 2: the softmax denominator and the weighted values.
  var l = 0.0;
  var a: array<f32, 16>;
  for (var d = 0u; d < DG; d++) { a[d] = 0.0; }
  for (var j = lid; j <= t; j += WG) {
    var s = 0.0;
    for (var d = 0u; d < DG; d++) { s += qg[r * DG + d] * gk[j * DG + d]; }
    let e = exp(s * scale - m);
    l += e;
    for (var d = 0u; d < DG; d++) { a[d] += e * gv[j * DG + d]; }
  }
  l = reduceSum(lid, l);
  for (var d = 0u; d < DG; d++) { acc[lid * DG + d] = a[d]; }
  workgroupBarrier();
  if (lid < DG) {
    var s = 0.0;
    for (var q = 0u; q < WG; q++) { s += acc[q * DG + lid]; }
    ov[lid] = s / l;
  }
  workgroupBarrier();
  // z per KV head: Wo[h] . [o ; xn_r] + bo[h] (one reduction per head).
  let width = DG + p.H;
  for (var h = 0u; h < p.nKV; h++) {
    var s = 0.0;
    for (var i = lid; i < width; i += WG) {
      let x = select(xn[r * p.H + i - DG], ov[min(i, DG - 1u)], i < DG);
      s += wo[h * width + i] * x;
    }
    s = reduceSum(lid, s);
    if (lid == 0u) {
      let slot = lens[p.layerBase + h] + r;
      st[(h * p.capacity + slot) * 2u] = s + bo[h];
      st[(h * p.capacity + slot) * 2u + 1u] = 0.0;
    }
  }
}
#endif
