// Shared by the int4 kernels (matvec_q4, gemm_q4, embed_q4; the host prepends it): the scale of
// group i from `scales`, f16 packed two per u32 (F16_SCALES, low half first) or f32.
fn scale_at(i: u32) -> f32 {
#if F16_SCALES
  return unpack2x16float(scales[i >> 1u])[i & 1u];
#else
  return scales[i];
#endif
}
