// SwiGLU: act[r, i] = silu(g[r, i]) * u[r, i], with gate_up rows laid out [gate (I) | up (I)].
struct Params { inter: u32 };
@group(0) @binding(0) var<storage, read> gu: array<f32>;
@group(0) @binding(1) var<storage, read_write> act: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let idx = g.x + g.y * nw.x * 64u;
  if (idx >= step.rows * p.inter) { return; }
  let r = idx / p.inter;
  let i = idx % p.inter;
  let gate = gu[r * 2u * p.inter + i];
  let up = gu[r * 2u * p.inter + p.inter + i];
  act[idx] = gate / (1.0 + exp(-gate)) * up;
}
