// Decode matrix-vector product: y[n] (+)= sum_k W[n,k] * x[k] (+ bias[n]).
// W is [N, K] row-major in its own dtype (f32, or f16 / bf16 packed two per u32, low half first).
// The work is cut into "chunks" of CH consecutive elements of a row: one vec4<f32> / vec4<u32>
// load on the vector path (K multiple of CH, x offset multiple of 4), one f32 / one u32 otherwise.
// Accumulation is always in f32.
//
// Two schedules:
//  ROWS (default; best on SwiftShader): each invocation owns 4 whole rows and walks K alone,
//    sharing each x chunk between its rows. No workgroup memory, no barriers (barriers are
//    very expensive on SwiftShader, which runs invocations as coroutines on a CPU).
//  COOP (real GPUs): a workgroup of WG invocations owns 4 rows; neighbouring invocations read
//    neighbouring chunks of a row (coalesced), then one shared-memory tree reduction.
// Measured on SwiftShader (bench/matmul.ts, CPU time): ROWS reads f32 weights at ~0.7-0.9x the
// copy probe's bytes/s; any kernel with a barrier (COOP, or 4 invocations per row) was 3x
// slower; 8 rows per invocation or other workgroup sizes changed nothing beyond noise. bf16 costs
// two vec4 integer ops per 8 weights (~0.5x copy). f16 costs unpack2x16float (~0.3x copy): a
// bit-trick conversion is no faster once exact, and the 2^112 multiply trick is wrong there
// because SwiftShader flushes denormal inputs (f16 subnormals) to zero.

struct Params {
  n: u32,      // output features (rows of W)
  x_off: u32,  // element offset into x
  y_off: u32,  // element offset into y
  pad: u32,
}

const K: u32 = ${K}u;    // input features (columns of W)
const CH: u32 = ${CH}u;  // elements per chunk
const KC: u32 = K / CH;  // chunks per row
const WG: u32 = ${WG}u;

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
// unpack2() and store(): shaders/matmul_common.wgsl, prepended by the host.

#if VEC
#if F32
alias Chunk = vec4<f32>;
alias Acc = vec4<f32>;
fn wload(i: u32) -> Chunk { return w[i]; }
fn xload(e: u32) -> Chunk { return x[e / 4u]; }
fn dotc(a: Chunk, b: Chunk) -> f32 { return dot(a, b); }
fn mac(acc: Acc, a: Chunk, b: Chunk) -> Acc { return fma(a, b, acc); }
fn hsum(a: Acc) -> f32 { return (a.x + a.y) + (a.z + a.w); }
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
fn dotc(a: Chunk, b: Chunk) -> f32 { return dot(a.even, b.even) + dot(a.odd, b.odd); }
alias Acc = vec4<f32>;
fn mac(acc: Acc, a: Chunk, b: Chunk) -> Acc { return fma(a.odd, b.odd, fma(a.even, b.even, acc)); }
fn hsum(a: Acc) -> f32 { return (a.x + a.y) + (a.z + a.w); }
#endif
#else
#if F32
alias Chunk = f32;
fn wload(i: u32) -> Chunk { return w[i]; }
fn xload(e: u32) -> Chunk { return x[e]; }
fn dotc(a: Chunk, b: Chunk) -> f32 { return a * b; }
alias Acc = f32;
fn mac(acc: Acc, a: Chunk, b: Chunk) -> Acc { return fma(a, b, acc); }
fn hsum(a: Acc) -> f32 { return a; }
#else
alias Chunk = vec2<f32>;
fn wload(i: u32) -> Chunk { return unpack2(w[i]); }
fn xload(e: u32) -> Chunk { return vec2<f32>(x[e], x[e + 1u]); }
fn dotc(a: Chunk, b: Chunk) -> f32 { return dot(a, b); }
alias Acc = vec2<f32>;
fn mac(acc: Acc, a: Chunk, b: Chunk) -> Acc { return fma(a, b, acc); }
fn hsum(a: Acc) -> f32 { return a.x + a.y; }
#endif
#endif

#if COOP
var<workgroup> part: array<vec4<f32>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nw: vec3<u32>) {
  let n0 = (wid.x + wid.y * nw.x) * 4u;
  let last = p.n - 1u;
  // Rows past the end re-read the last row (no branch in the loop); their sums are dropped.
  let b0 = min(n0, last) * KC;
  let b1 = min(n0 + 1u, last) * KC;
  let b2 = min(n0 + 2u, last) * KC;
  let b3 = min(n0 + 3u, last) * KC;
  var acc = vec4<f32>(0.0);
  for (var c = li; c < KC; c += WG) {
    let xv = xload(p.x_off + c * CH);
    acc += vec4<f32>(dotc(xv, wload(b0 + c)), dotc(xv, wload(b1 + c)), dotc(xv, wload(b2 + c)), dotc(xv, wload(b3 + c)));
  }
  part[li] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { part[li] += part[li + s]; }
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
  let b0 = n0 * KC;
  let b1 = min(n0 + 1u, last) * KC;
  let b2 = min(n0 + 2u, last) * KC;
  let b3 = min(n0 + 3u, last) * KC;
  var a0 = Acc();
  var a1 = Acc();
  var a2 = Acc();
  var a3 = Acc();
  for (var c = 0u; c < KC; c++) {
    let xv = xload(p.x_off + c * CH);
    a0 = mac(a0, xv, wload(b0 + c));
    a1 = mac(a1, xv, wload(b1 + c));
    a2 = mac(a2, xv, wload(b2 + c));
    a3 = mac(a3, xv, wload(b3 + c));
  }
  store(n0, hsum(a0));
  if (n0 + 1u < p.n) { store(n0 + 1u, hsum(a1)); }
  if (n0 + 2u < p.n) { store(n0 + 2u, hsum(a2)); }
  if (n0 + 3u < p.n) { store(n0 + 3u, hsum(a3)); }
}
#endif
