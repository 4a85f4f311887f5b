// Advances every (layer, KV head) length by the rows appended in this step.
@group(0) @binding(0) var<storage, read_write> lens: array<u32>;
@group(0) @binding(1) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < arrayLength(&lens)) { lens[g.x] += step.rows; }
}
