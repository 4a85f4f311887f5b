// Decode matrix-vector product with MLC group-quantized int4 weights (q4f16_1 / q4f32_1):
//   y[n] (+)= sum_k W[n,k] * x[k] (+ bias[n]),  W[n,k] = (q[n,k] - 7) * scale[n, k / 32].
// Layout (see src/engine/ops/quant.ts): w = u32 words [N, K/8], element k of a row is nibble
// k % 8 (bits 4*(k%8)..) of word k / 8; one 32-element group = 4 consecutive words = one
// vec4<u32>. scale = [N, K/32] f16 (packed two per u32, low half first) or f32.
// Accumulation is f32. Per group, sum_k (q - 7) s x = s * (sum_k q x - 7 * sum_k x): the
// nibbles are multiplied raw and the scale / offset applied once per group.
//
// Two schedules, as in matvec.wgsl:
//  ROWS (SwiftShader): each invocation owns 4 rows and walks all groups; no barriers.
//  COOP (GPUs): a workgroup owns 4 rows; invocation i takes words i, i + WG, ... (coalesced),
//    then one shared-memory tree reduction.

struct Params {
  n: u32,      // output features (rows of W)
  x_off: u32,  // element offset into x (multiple of 4)
  y_off: u32,  // element offset into y
  pad: u32,
}

const K: u32 = ${K}u;
const G: u32 = K / 32u;  // groups per row
const KW: u32 = K / 8u;  // words per row
const WG: u32 = ${WG}u;

@group(0) @binding(0) var<uniform> p: Params;
#if COOP
@group(0) @binding(1) var<storage, read> w: array<u32>;
#else
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
#endif
#if F16_SCALES
@group(0) @binding(2) var<storage, read> scales: array<u32>;
#else
@group(0) @binding(2) var<storage, read> scales: array<f32>;
#endif
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
#if BIAS
@group(0) @binding(5) var<storage, read> bias: array<f32>;
#endif
// scale_at(): shaders/q4_scale.wgsl; store(): shaders/matmul_common.wgsl, prepended by the host.

// Nibble j (0..7) of four words, as f32.
fn nib(v: vec4<u32>, j: u32) -> vec4<f32> {
  return vec4<f32>((v >> vec4<u32>(4u * j)) & vec4<u32>(15u));
}

#if COOP
var<workgroup> part: array<vec4<f32>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nw: vec3<u32>) {
  let n0 = (wid.x + wid.y * nw.x) * 4u;
  let last = p.n - 1u;
  let r = vec4<u32>(n0, min(n0 + 1u, last), min(n0 + 2u, last), min(n0 + 3u, last));
  var acc = vec4<f32>(0.0);
  for (var c = li; c < KW; c += WG) {
    // Word c of each of the 4 rows: elements 8c .. 8c + 7.
    let v = vec4<u32>(w[r.x * KW + c], w[r.y * KW + c], w[r.z * KW + c], w[r.w * KW + c]);
    let g = c / 4u;
    let s = vec4<f32>(scale_at(r.x * G + g), scale_at(r.y * G + g), scale_at(r.z * G + g), scale_at(r.w * G + g));
    let xa = x[(p.x_off + c * 8u) / 4u];
    let xb = x[(p.x_off + c * 8u) / 4u + 1u];
    var d = vec4<f32>(xa.x) * nib(v, 0u);
    d = fma(vec4<f32>(xa.y), nib(v, 1u), d);
    d = fma(vec4<f32>(xa.z), nib(v, 2u), d);
    d = fma(vec4<f32>(xa.w), nib(v, 3u), d);
    d = fma(vec4<f32>(xb.x), nib(v, 4u), d);
    d = fma(vec4<f32>(xb.y), nib(v, 5u), d);
    d = fma(vec4<f32>(xb.z), nib(v, 6u), d);
    d = fma(vec4<f32>(xb.w), nib(v, 7u), d);
    let xs = dot(xa + xb, vec4<f32>(1.0));
    acc = fma(s, d - vec4<f32>(7.0 * xs), acc);
  }
  part[li] = acc;
  workgroupBarrier();
  for (var st = WG / 2u; st > 0u; st >>= 1u) {
    if (li < st) { part[li] += part[li + st]; }
    workgroupBarrier();
  }
  if (li < 4u && n0 + li < p.n) { store(n0 + li, part[0][li]); }
}
#else
@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nw: vec3<u32>) {
  let n0 = ((wid.x + wid.y * nw.x) * WG + li) * 4u;
  if (n0 >= p.n) { return; }
  let last = p.n - 1u;
  // Rows past the end re-read the last row (no branch in the loop); their sums are dropped.
  let r = vec4<u32>(n0, min(n0 + 1u, last), min(n0 + 2u, last), min(n0 + 3u, last));
  var acc = vec4<f32>(0.0);
  for (var g = 0u; g < G; g++) {
    let w0 = w[r.x * G + g];
    let w1 = w[r.y * G + g];
    let w2 = w[r.z * G + g];
    let w3 = w[r.w * G + g];
    let s = vec4<f32>(scale_at(r.x * G + g), scale_at(r.y * G + g), scale_at(r.z * G + g), scale_at(r.w * G + g));
    var d = vec4<f32>(0.0);
    var xs = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
      // Word j of the group, for each row: elements 32g + 8j .. + 7.
      let v = vec4<u32>(w0[j], w1[j], w2[j], w3[j]);
      let e = (p.x_off + g * 32u + j * 8u) / 4u;
      let xa = x[e];
      let xb = x[e + 1u];
      xs += xa + xb;
      d = fma(vec4<f32>(xa.x), nib(v, 0u), d);
      d = fma(vec4<f32>(xa.y), nib(v, 1u), d);
      d = fma(vec4<f32>(xa.z), nib(v, 2u), d);
      d = fma(vec4<f32>(xa.w), nib(v, 3u), d);
      d = fma(vec4<f32>(xb.x), nib(v, 4u), d);
      d = fma(vec4<f32>(xb.y), nib(v, 5u), d);
      d = fma(vec4<f32>(xb.z), nib(v, 6u), d);
      d = fma(vec4<f32>(xb.w), nib(v, 7u), d);
    }
    acc = fma(s, d - vec4<f32>(7.0 * dot(xs, vec4<f32>(1.0))), acc);
  }
  store(n0, acc.x);
  if (n0 + 1u < p.n) { store(n0 + 1u, acc.y); }
  if (n0 + 2u < p.n) { store(n0 + 2u, acc.z); }
  if (n0 + 3u < p.n) { store(n0 + 3u, acc.w); }
}
#endif
