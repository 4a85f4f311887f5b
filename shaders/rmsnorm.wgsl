// RMSNorm per row: y = x / sqrt(mean(x^2) + eps) * w.  One workgroup per row.
// ROWS: one invocation per row (CPU adapters, prefill).
// LAST_ROW: normalise only the last row of the step (before the LM head), writing y[0..n).
struct Params { n: u32, eps: f32 };
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> step: Step;

#if ROWS
// One invocation per row, no barriers (CPU adapters, where barriers dominate).
@compute @workgroup_size(16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.x;
  if (row >= step.rows) { return; }
  let base = row * p.n;
  var s = 0.0;
  for (var i = 0u; i < p.n; i++) {
    let v = x[base + i];
    s += v * v;
  }
  let inv = inverseSqrt(s / f32(p.n) + p.eps);
  for (var i = 0u; i < p.n; i++) {
    y[base + i] = x[base + i] * inv * w[i];
  }
}
#else
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
#if LAST_ROW
  let inBase = (step.rows - 1u) * p.n;
  let outBase = 0u;
#else
  let inBase = wg.x * p.n;
  let outBase = inBase;
#endif
  var s = 0.0;
  for (var i = lid.x; i < p.n; i += 64u) {
    let v = x[inBase + i];
    s += v * v;
  }
  red[lid.x] = s;
  workgroupBarrier();
  for (var k = 32u; k > 0u; k >>= 1u) {
    if (lid.x < k) { red[lid.x] += red[lid.x + k]; }
    workgroupBarrier();
  }
  let inv = inverseSqrt(red[0] / f32(p.n) + p.eps);
  for (var i = lid.x; i < p.n; i += 64u) {
    y[outBase + i] = x[inBase + i] * inv * w[i];
  }
}
#endif
