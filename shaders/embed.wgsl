// Embedding gather: x[r, :] = E[tokens[r], :] for each row of the step, decoding the
// table's own dtype (f32, or f16/bf16 packed two per u32). One workgroup per row.
struct Params { hidden: u32 };
#if F32
@group(0) @binding(0) var<storage, read> table: array<f32>;
#else
@group(0) @binding(0) var<storage, read> table: array<u32>;
#endif
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = wg.x;
  let t = tokens[r];
#if F32
  for (var i = lid.x; i < p.hidden; i += 64u) {
    x[r * p.hidden + i] = table[t * p.hidden + i];
  }
#else
  let halfW = p.hidden / 2u;
  for (var i = lid.x; i < halfW; i += 64u) {
    let w = table[t * halfW + i];
#if BF16
    let v = vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
#else
    let v = unpack2x16float(w);
#endif
    x[r * p.hidden + 2u * i] = v.x;
    x[r * p.hidden + 2u * i + 1u] = v.y;
  }
#endif
}
