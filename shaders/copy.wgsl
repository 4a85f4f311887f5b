// Streaming copy probe for benchmarks: dst[i] = src[i] for i < n (f32). Each invocation copies
// PER consecutive elements (vec4 when n is a multiple of 4): several loads in flight per
// invocation is what a CPU rasteriser like SwiftShader needs, and neighbouring invocations
// still cover neighbouring memory for a GPU.

const PER: u32 = ${PER}u;
const WG: u32 = ${WG}u;

#if VEC
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
const COUNT: u32 = ${N}u / 4u;
#else
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
const COUNT: u32 = ${N}u;
#endif

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nw: vec3<u32>) {
  let base = ((wid.x + wid.y * nw.x) * WG + li) * PER;
  for (var j = 0u; j < PER; j++) {
    let i = base + j;
    if (i < COUNT) { dst[i] = src[i]; }
  }
}
