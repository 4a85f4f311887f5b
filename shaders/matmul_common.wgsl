// Shared by the matrix products (matvec / gemm, dense and int4; the host prepends it): weight
// unpacking and the output epilogue (+ bias[n], + the previous y). The kernel declares the
// uniform `p` (n, y_off, and rows for GEMM), `y`, and `bias` under BIAS.
//   Q4      int4 weights (no unpack2; their scale_at() comes from q4_scale.wgsl)
//   TILED   GEMM: outputs stored as vec4 rows of a tile (store_row); else one output (store)
//   OWN_STORE  the kernel stores its outputs itself (neither store_row nor store)

#if !Q4
// Two 16-bit values of one u32 as f32, element 2i (low half) first.
fn unpack2(v: u32) -> vec2<f32> {
#if BF16
  return vec2<f32>(bitcast<f32>(v << 16u), bitcast<f32>(v & 0xffff0000u));
#else
  return unpack2x16float(v);
#endif
}
#endif

#if TILED
// Y[m, n0 .. n0 + 3] = v; rows past p.rows and columns past p.n (a tile's overhang) are dropped.
fn store_row(m: u32, n0: u32, v: vec4<f32>) {
  if (m >= p.rows) { return; }
  let base = p.y_off + m * p.n;
  for (var j = 0u; j < 4u; j++) {
    let n = n0 + j;
    if (n < p.n) {
      var r = v[j];
#if BIAS
      r += bias[n];
#endif
#if ACCUMULATE
      r += y[base + n];
#endif
      y[base + n] = r;
    }
  }
}
#elif !OWN_STORE
fn store(n: u32, v: f32) {
  var r = v;
#if BIAS
  r += bias[n];
#endif
#if ACCUMULATE
  r += y[p.y_off + n];
#endif
  y[p.y_off + n] = r;
}
#endif
