// Prefill matrix-matrix product with MLC group-quantized int4 weights (q4f16_1 / q4f32_1):
//   Y[m,n] (+)= sum_k X[m,k] * W[n,k] (+ bias[n]) for m < rows,  W[n,k] = (q - 7) * scale[n, k/32].
// X is [maxRows, K] f32, Y is [maxRows, N] f32. Weight layout as in matvec_q4.wgsl: one
// 32-element group of a row = 4 u32 words = one vec4<u32>; scales [N, K/32] f16 (two per u32)
// or f32.
//
// Register tiling without workgroup memory (barriers dominate on SwiftShader): each invocation
// computes a 4 (m) x 4 (n) tile. Per k, the 4 rows' nibbles form one vec4 over n, dequantized
// as fma(q, s, -7 s) and shared by the 4 m rows (one vec4 FMA each). Accumulation is f32.

struct Params {
  n: u32,      // output features (rows of W)
  x_off: u32,  // element offset into X (multiple of 4)
  y_off: u32,  // element offset into Y
  rows: u32,   // rows of X / Y to compute
}

const K: u32 = ${K}u;
const G: u32 = K / 32u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
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
// scale_at(): shaders/q4_scale.wgsl; store_row(): shaders/matmul_common.wgsl, prepended by the host.

// acc += x0 * c0 + x1 * c1 + x2 * c2 + x3 * c3 (four k, each a vec4 over n).
fn mac4(acc: vec4<f32>, xv: vec4<f32>, c0: vec4<f32>, c1: vec4<f32>, c2: vec4<f32>, c3: vec4<f32>) -> vec4<f32> {
  return fma(vec4<f32>(xv.w), c3, fma(vec4<f32>(xv.z), c2, fma(vec4<f32>(xv.y), c1, fma(vec4<f32>(xv.x), c0, acc))));
}

// A workgroup is 16 (n) x 4 (m) invocations = a 64 (n) x 16 (m) block of Y. Tile rows / columns
// past the end re-read the last one (no branch in the loop) and are dropped on store.
@compute @workgroup_size(16, 4)
fn main(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let n0 = (wid.x * 16u + l.x) * 4u;
  let m0 = (wid.y * 4u + l.y) * 4u;
  if (n0 >= p.n || m0 >= p.rows) { return; }
  let ln = p.n - 1u;
  let lm = p.rows - 1u;
  let r = vec4<u32>(n0, min(n0 + 1u, ln), min(n0 + 2u, ln), min(n0 + 3u, ln));
  let x0 = (p.x_off + m0 * K) / 4u;
  let x1 = (p.x_off + min(m0 + 1u, lm) * K) / 4u;
  let x2 = (p.x_off + min(m0 + 2u, lm) * K) / 4u;
  let x3 = (p.x_off + min(m0 + 3u, lm) * K) / 4u;
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  for (var g = 0u; g < G; g++) {
    let w0 = w[r.x * G + g];
    let w1 = w[r.y * G + g];
    let w2 = w[r.z * G + g];
    let w3 = w[r.w * G + g];
    let s = vec4<f32>(scale_at(r.x * G + g), scale_at(r.y * G + g), scale_at(r.z * G + g), scale_at(r.w * G + g));
    let o = -7.0 * s;
    for (var j = 0u; j < 4u; j++) {
      let v = vec4<u32>(w0[j], w1[j], w2[j], w3[j]);
      let c0 = fma(vec4<f32>(v & vec4<u32>(15u)), s, o);
      let c1 = fma(vec4<f32>((v >> vec4<u32>(4u)) & vec4<u32>(15u)), s, o);
      let c2 = fma(vec4<f32>((v >> vec4<u32>(8u)) & vec4<u32>(15u)), s, o);
      let c3 = fma(vec4<f32>((v >> vec4<u32>(12u)) & vec4<u32>(15u)), s, o);
      let c4 = fma(vec4<f32>((v >> vec4<u32>(16u)) & vec4<u32>(15u)), s, o);
      let c5 = fma(vec4<f32>((v >> vec4<u32>(20u)) & vec4<u32>(15u)), s, o);
      let c6 = fma(vec4<f32>((v >> vec4<u32>(24u)) & vec4<u32>(15u)), s, o);
      let c7 = fma(vec4<f32>(v >> vec4<u32>(28u)), s, o);
      let e = g * 8u + j * 2u;  // vec4 index of element 32g + 8j within a row
      a0 = mac4(mac4(a0, x[x0 + e], c0, c1, c2, c3), x[x0 + e + 1u], c4, c5, c6, c7);
      a1 = mac4(mac4(a1, x[x1 + e], c0, c1, c2, c3), x[x1 + e + 1u], c4, c5, c6, c7);
      a2 = mac4(mac4(a2, x[x2 + e], c0, c1, c2, c3), x[x2 + e + 1u], c4, c5, c6, c7);
      a3 = mac4(mac4(a3, x[x3 + e], c0, c1, c2, c3), x[x3 + e + 1u], c4, c5, c6, c7);
    }
  }
  store_row(m0, n0, a0);
  store_row(m0 + 1u, n0, a1);
  store_row(m0 + 2u, n0, a2);
  store_row(m0 + 3u, n0, a3);
}
