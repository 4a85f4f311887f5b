// Prefill matrix-matrix product: Y[m,n] (+)= sum_k X[m,k] * W[n,k] (+ bias[n]) for m < rows.
// X is [maxRows, K] f32, Y is [maxRows, N] f32, W is [N, K] in its own dtype (f32, or f16 / bf16
// packed two per u32, low half first). Both operands are K-contiguous, so a "chunk" of CH
// consecutive k is one vec4 load from each (vector path) or one scalar / u32 load otherwise.
//
// Register tiling without workgroup memory: each invocation computes a TM (m) x TN (n) tile,
// loading TM X chunks and TN W chunks per step (each W chunk used TM times, each X chunk TN
// times) and accumulating outer products with vec4 FMAs over n (one FMA per multiply-add; a
// dot-product form needs ~2x the ops). No barriers: on SwiftShader they dominate; on GPUs the
// per-workgroup footprint is served by L1/L2. Accumulation is f32, and each output's sum runs
// over the chunks in the same order whatever the tile, so both tiles give identical results.

struct Params {
  n: u32,      // output features (rows of W)
  x_off: u32,  // element offset into X
  y_off: u32,  // element offset into Y
  rows: u32,   // rows of X / Y to compute
}

const K: u32 = ${K}u;
const CH: u32 = ${CH}u;
const KC: u32 = K / CH;

@group(0) @binding(0) var<uniform> p: Params;
#if VEC
#if F32
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
#endif
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
#else
#if F32
@group(0) @binding(1) var<storage, read> w: array<f32>;
#else
@group(0) @binding(1) var<storage, read> w: array<u32>;
#endif
@group(0) @binding(2) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
#if BIAS
@group(0) @binding(4) var<storage, read> bias: array<f32>;
#endif
// unpack2() and store_row(): shaders/matmul_common.wgsl, prepended by the host.

#if VEC
#if F32
alias Chunk = vec4<f32>;
fn wload(i: u32) -> Chunk { return w[i]; }
fn xload(e: u32) -> Chunk { return x[e / 4u]; }
// The same k of four W rows, side by side (one vec4 per k of the chunk).
struct Cols { k0: vec4<f32>, k1: vec4<f32>, k2: vec4<f32>, k3: vec4<f32> }
fn cols(a: Chunk, b: Chunk, c: Chunk, d: Chunk) -> Cols {
  return Cols(vec4<f32>(a.x, b.x, c.x, d.x), vec4<f32>(a.y, b.y, c.y, d.y), vec4<f32>(a.z, b.z, c.z, d.z), vec4<f32>(a.w, b.w, c.w, d.w));
}
fn mac_row(acc: vec4<f32>, xv: Chunk, t: Cols) -> vec4<f32> {
  return fma(vec4<f32>(xv.w), t.k3, fma(vec4<f32>(xv.z), t.k2, fma(vec4<f32>(xv.y), t.k1, fma(vec4<f32>(xv.x), t.k0, acc))));
}
#else
// A chunk of 8 elements as (even, odd): even = elements 0, 2, 4, 6 (low halves of the four u32),
// odd = 1, 3, 5, 7 (high halves), so bf16 converts as one vec4 shift / mask each; x is shuffled to match.
struct Chunk { even: vec4<f32>, odd: vec4<f32> }
fn wload(i: u32) -> Chunk {
  let v = w[i];
#if BF16
  return Chunk(bitcast<vec4<f32>>(v << vec4<u32>(16u)), bitcast<vec4<f32>>(v & vec4<u32>(0xffff0000u)));
#else
  let p0 = unpack2x16float(v.x);
  let p1 = unpack2x16float(v.y);
  let p2 = unpack2x16float(v.z);
  let p3 = unpack2x16float(v.w);
  return Chunk(vec4<f32>(p0.x, p1.x, p2.x, p3.x), vec4<f32>(p0.y, p1.y, p2.y, p3.y));
#endif
}
fn xload(e: u32) -> Chunk {
  let a = x[e / 4u];
  let b = x[e / 4u + 1u];
  return Chunk(vec4<f32>(a.xz, b.xz), vec4<f32>(a.yw, b.yw));
}
struct Cols { e: Cols4, o: Cols4 }
struct Cols4 { k0: vec4<f32>, k1: vec4<f32>, k2: vec4<f32>, k3: vec4<f32> }
fn cols4(a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>) -> Cols4 {
  return Cols4(vec4<f32>(a.x, b.x, c.x, d.x), vec4<f32>(a.y, b.y, c.y, d.y), vec4<f32>(a.z, b.z, c.z, d.z), vec4<f32>(a.w, b.w, c.w, d.w));
}
fn cols(a: Chunk, b: Chunk, c: Chunk, d: Chunk) -> Cols {
  return Cols(cols4(a.even, b.even, c.even, d.even), cols4(a.odd, b.odd, c.odd, d.odd));
}
fn mac4(acc: vec4<f32>, xv: vec4<f32>, t: Cols4) -> vec4<f32> {
  return fma(vec4<f32>(xv.w), t.k3, fma(vec4<f32>(xv.z), t.k2, fma(vec4<f32>(xv.y), t.k1, fma(vec4<f32>(xv.x), t.k0, acc))));
}
fn mac_row(acc: vec4<f32>, xv: Chunk, t: Cols) -> vec4<f32> { return mac4(mac4(acc, xv.even, t.e), xv.odd, t.o); }
#endif
#else
#if F32
alias Chunk = f32;
fn wload(i: u32) -> Chunk { return w[i]; }
fn xload(e: u32) -> Chunk { return x[e]; }
alias Cols = vec4<f32>;
fn cols(a: Chunk, b: Chunk, c: Chunk, d: Chunk) -> Cols { return vec4<f32>(a, b, c, d); }
fn mac_row(acc: vec4<f32>, xv: Chunk, t: Cols) -> vec4<f32> { return fma(vec4<f32>(xv), t, acc); }
#else
alias Chunk = vec2<f32>;
fn wload(i: u32) -> Chunk { return unpack2(w[i]); }
fn xload(e: u32) -> Chunk { return vec2<f32>(x[e], x[e + 1u]); }
struct Cols { k0: vec4<f32>, k1: vec4<f32> }
fn cols(a: Chunk, b: Chunk, c: Chunk, d: Chunk) -> Cols { return Cols(vec4<f32>(a.x, b.x, c.x, d.x), vec4<f32>(a.y, b.y, c.y, d.y)); }
fn mac_row(acc: vec4<f32>, xv: Chunk, t: Cols) -> vec4<f32> { return fma(vec4<f32>(xv.y), t.k1, fma(vec4<f32>(xv.x), t.k0, acc)); }
#endif
#endif

// A workgroup is 16 (n) x 4 (m) invocations, each computing a TM (m) x TN (n) tile of Y: a
// (16 TN) x (4 TM) block. TM = TN = 8 on GPUs; TM = 16, TN = 8 on CPU adapters, where every load is a
// per-lane gather and a taller tile reuses each weight load more. The tile's lines are unrolled by the
// host (${...} below): aI_H accumulates Y[m0 + I, n0 + 4H .. n0 + 4H + 3]. Tile rows / columns
// past the end re-read the last one (no branch in the loop) and are dropped on store.
@compute @workgroup_size(16, 4)
fn main(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let n0 = (wid.x * 16u + l.x) * ${TN}u;
  let m0 = (wid.y * 4u + l.y) * ${TM}u;
  if (n0 >= p.n || m0 >= p.rows) { return; }
  let ln = p.n - 1u;
  let lm = p.rows - 1u;
${SETUP}
  for (var c = 0u; c < KC; c++) {
${INNER}
  }
${STORE}
}
