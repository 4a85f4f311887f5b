// Matrix products on a weight stored transposed ('kn' layout): W^T is [K, NS * 4] row-major, N
// contiguous, in the weight's own dtype (f32; or f16 / bf16 packed two per u32 along n, low
// half first); each row is padded with zeros from N to NS * 4 columns, a whole number of GEMM
// workgroups, so the loads need no clamp. Used on CPU adapters whose compiler packs neighbouring invocations into one
// SIMD vector (lavapipe): there, invocations over neighbouring columns read neighbouring memory
// at each k, where the [N, K] layout has them read rows K apart (bench/gemm-layout.ts: about
// 2x the GEMM rate on lavapipe, slower on SwiftShader, which keeps [N, K]).
//
//   GEMM    Y[m, n] (+)= sum_k X[m, k] * W[n, k] (+ bias[n]) for m < rows.  X: f32[maxRows, K].
//           Each invocation owns TM rows x TN quads of columns (a quad = 4 neighbouring n);
//           the workgroup's WG invocations take neighbouring quads, so quad j of invocation i is
//           q0 + j * WG. Grid: ceil(N/4 / (WG * TN)) x ceil(rows / TM).
//   MATVEC  y[n] (+)= sum_k x[k] * W[n, k] (+ bias[n]). One quad per invocation.
//           Grid: ceil(N/4 / WG) workgroups, folded into 2-D past the per-dimension limit.
// Each output sums over k = 0 .. K-1 in order with one f32 FMA per term, whatever the tile. The
// GEMM's vec4 epilogue (VSTORE) starts that sum from Y + bias; the other epilogue (store_row from
// matmul_common.wgsl, prepended with TILED) and the matvec add bias and Y after it, so with bias or
// accumulate the two round differently (within the products' test tolerance).
// Tile rows past the end re-read the last one, quads past N read the padding (no branch in the
// loop); both are dropped on store (store4, or store_row).

struct Params {
  n: u32,      // output features N
  x_off: u32,  // element offset into X / x
  y_off: u32,  // element offset into Y / y
  rows: u32,   // rows of X / Y to compute (1 for MATVEC)
}

const K: u32 = ${K}u;
const NQ: u32 = ${NQ}u;  // N / 4
const NS: u32 = ${NS}u;  // quads per row of W^T (padded)

@group(0) @binding(0) var<uniform> p: Params;
#if F32
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> w: array<vec2<u32>>;
#endif
@group(0) @binding(2) var<storage, read> x: array<f32>;
#if VSTORE
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;
#else
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
#endif
#if BIAS
@group(0) @binding(4) var<storage, read> bias: array<f32>;
#endif

// W[4q .. 4q + 3, k] for element index i = k * NS + q.
fn wq(i: u32) -> vec4<f32> {
#if F32
  return w[i];
#else
  let v = w[i];
  return vec4<f32>(unpack2(v.x), unpack2(v.y));
#endif
}

#if VSTORE
// The vec4 epilogue (y_off a multiple of 4), split around the loop: the accumulators start from
// the previous Y (ACCUMULATE) plus the bias, and the sums are stored as vec4. On lavapipe this
// runs ~1.4x faster than store_row's read-add-write after the loop. Tile rows / quads past the
// end start from a clamped (valid) element and are not stored.
fn init4(m: u32, q: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
#if ACCUMULATE
  r = y[p.y_off / 4u + min(m, p.rows - 1u) * NQ + min(q, NQ - 1u)];
#endif
#if BIAS
  let b = 4u * min(q, NQ - 1u);
  r += vec4<f32>(bias[b], bias[b + 1u], bias[b + 2u], bias[b + 3u]);
#endif
  return r;
}
fn store4(m: u32, q: u32, v: vec4<f32>) {
  if (m < p.rows && q < NQ) { y[p.y_off / 4u + m * NQ + q] = v; }
}
#endif

#if GEMM
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let q0 = wid.x * ${QSTEP}u + l.x;
  let m0 = wid.y * ${TM}u;  // < rows: the grid has ceil(rows / TM) rows of workgroups
  let lm = p.rows - 1u;
${SETUP}
  for (var k = 0u; k < K; k++) {
${INNER}
  }
${STORE}
}
#endif

#if MATVEC
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  // TQ quads per invocation, q0 + j * WG (independent FMA chains; a workgroup covers WG * TQ = 32
  // quads, a whole padded row block). No early return (lavapipe would run the rest under a lane
  // mask): quads past N read the padding and store_row drops them. A grid folded into 2-D
  // (FOLDED) can overshoot the padding too: its loads clamp the quad (a clamp costs the unfolded
  // grid its contiguous loads).
  let q0 = (wid.y * nw.x + wid.x) * ${QSTEP}u + l.x;
${SETUP}
  for (var k = 0u; k < K; k++) {
    let xk = vec4<f32>(x[p.x_off + k]);
${INNER}
  }
${STORE}
}
#endif
