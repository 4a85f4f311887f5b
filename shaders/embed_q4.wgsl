// Embedding gather from an MLC group-quantized int4 table (q4f16_1 / q4f32_1):
// x[r, i] = (q[t, i] - 7) * scale[t, i / 32] for t = tokens[r]. Table layout as in
// matvec_q4.wgsl: u32 words [vocab, H/8] (element i = nibble i % 8 of word i / 8), scales
// [vocab, H/32] f16 (two per u32) or f32. One workgroup per row; each invocation one word.
struct Params { hidden: u32 };
@group(0) @binding(0) var<storage, read> table: array<u32>;
#if F16_SCALES
@group(0) @binding(1) var<storage, read> scales: array<u32>;
#else
@group(0) @binding(1) var<storage, read> scales: array<f32>;
#endif
@group(0) @binding(2) var<storage, read> tokens: array<u32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// scale_at(): shaders/q4_scale.wgsl, prepended by the host.

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = wg.x;
  let t = tokens[r];
  let words = p.hidden / 8u;
  for (var j = lid.x; j < words; j += 64u) {
    let v = table[t * words + j];
    let s = scale_at(t * (p.hidden / 32u) + j / 4u);
    let lo = vec4<f32>((vec4<u32>(v) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u));
    let hi = vec4<f32>((vec4<u32>(v) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u));
    let a = (lo - vec4<f32>(7.0)) * s;
    let b = (hi - vec4<f32>(7.0)) * s;
    let o = r * p.hidden + 8u * j;
    x[o] = a.x; x[o + 1u] = a.y; x[o + 2u] = a.z; x[o + 3u] = a.w;
    x[o + 4u] = b.x; x[o + 5u] = b.y; x[o + 6u] = b.z; x[o + 7u] = b.w;
  }
}
