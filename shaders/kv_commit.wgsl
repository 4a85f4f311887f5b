// After a step's layers: advances every (layer, KV head) length by the rows appended, and
// accounts the KV footprint: each of the step's query rows saw `length` live entries, so
// acct[2i] += rows * length (sum over query steps) and acct[2i+1] = max(peak, length).
@group(0) @binding(0) var<storage, read_write> lens: array<u32>;
@group(0) @binding(1) var<storage, read_write> acct: array<u32>;
@group(0) @binding(2) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x >= arrayLength(&lens)) { return; }
  let n = lens[g.x] + step.rows;
  lens[g.x] = n;
  if (2u * g.x + 1u < arrayLength(&acct)) {
    acct[2u * g.x] += step.rows * n;
    acct[2u * g.x + 1u] = max(acct[2u * g.x + 1u], n);
  }
}
