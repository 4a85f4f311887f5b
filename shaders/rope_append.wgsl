// RoPE (rotate_half convention) on the fused QKV rows of a step, and append of the rotated
// keys and the values to this layer's cache at each KV head's current length.
// qkv row layout: [q heads (nH*hd) | k heads (nKV*hd) | v heads (nKV*hd)].
// Cache layout per layer: K, V as [nKV, capacity, hd]; positions as [nKV, capacity].
// Lengths live in `lens[layerBase + h]` and are advanced by the commit kernel after the step.
// Q_ONLY (a layer that reads another layer's cache): rotates the queries and writes no cache.
struct Params { nH: u32, nKV: u32, hd: u32, capacity: u32, layerBase: u32 };
@group(0) @binding(0) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> cosT: array<f32>;
@group(0) @binding(2) var<storage, read> sinT: array<f32>;
@group(0) @binding(3) var<storage, read_write> kc: array<f32>;
@group(0) @binding(4) var<storage, read_write> vc: array<f32>;
@group(0) @binding(5) var<storage, read_write> posc: array<u32>;
@group(0) @binding(6) var<storage, read> lens: array<u32>;
@group(0) @binding(7) var<uniform> p: Params;
@group(0) @binding(8) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = wg.x;
  let pos = step.pos0 + r;
  let halfHd = p.hd / 2u;
  let width = (p.nH + 2u * p.nKV) * p.hd;
  let row = r * width;
  // Rotate q and k heads: one thread per (head, i < hd/2).
#if Q_ONLY
  let pairs = p.nH * halfHd;
#else
  let pairs = (p.nH + p.nKV) * halfHd;
#endif
  for (var t = lid.x; t < pairs; t += 64u) {
    let head = t / halfHd;
    let i = t % halfHd;
    let c = cosT[pos * halfHd + i];
    let s = sinT[pos * halfHd + i];
    let base = row + head * p.hd;
    let a = qkv[base + i];
    let b = qkv[base + i + halfHd];
    let ra = a * c - b * s;
    let rb = b * c + a * s;
    if (head < p.nH) {
      qkv[base + i] = ra;
      qkv[base + i + halfHd] = rb;
    } else {
      let h = head - p.nH;
      let slot = lens[p.layerBase + h] + r;
      let dst = (h * p.capacity + slot) * p.hd;
      kc[dst + i] = ra;
      kc[dst + i + halfHd] = rb;
    }
  }
#if !Q_ONLY
  // Values and positions.
  let vBase = row + (p.nH + p.nKV) * p.hd;
  for (var t = lid.x; t < p.nKV * p.hd; t += 64u) {
    let h = t / p.hd;
    let d = t % p.hd;
    let slot = lens[p.layerBase + h] + r;
    vc[(h * p.capacity + slot) * p.hd + d] = qkv[vBase + t];
    if (d == 0u) { posc[h * p.capacity + slot] = pos; }
  }
#endif
}
