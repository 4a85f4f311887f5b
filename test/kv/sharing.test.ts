import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine';
import { ReferenceModel } from '../../src/reference/forward';
import { resolveSharing } from '../../src/kv/sharing';
import { InvalidArgumentError } from '../../src/errors';
import type { ModelConfig } from '../../src/model/config';
import { testGpu, rng } from '../gpu';
import { f32Weights, loaded, randomWeights, smolLike } from '../engine/fixtures';

const fourLayer: ModelConfig = { ...smolLike, numLayers: 4 };

function tokens(n: number, seed: number, vocab: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r() * vocab));
}

describe('KVSharer layer sharing', () => {
  for (const [name, cfg, map] of [
    ['3 layers, layer 2 reads layer 0', smolLike, { 2: 0 }],
    ['4 layers, 2 -> 0 and 3 -> 1', fourLayer, { 2: 0, 3: 1 }],
    ['4 layers, 2 and 3 both read layer 1', fourLayer, { 2: 1, 3: 1 }],
  ] as const) {
    it(`shared-cache forward equals the reference forward with the same map (${name})`, async () => {
      const gpu = await testGpu();
      const weights = randomWeights(cfg, 'f32', 91);
      const e = await Engine.load({ model: loaded(cfg, weights), gpu, contextLength: 96, prefillChunk: 8, sharing: map });
      const src = resolveSharing(map, cfg);
      const ref = new ReferenceModel(cfg, f32Weights(weights), 96, src);
      const toks = tokens(40, 92, cfg.vocabSize);
      let d = 0;
      for (let i = 0; i < 24; i += 8) {
        const g = await e.forwardStep(toks.slice(i, i + 8));
        const w = ref.forwardAll(toks.slice(i, i + 8), i).at(-1)!;
        for (let j = 0; j < w.length; j++) d = Math.max(d, Math.abs(g[j]! - w[j]!));
      }
      const rest = await e.teacherForce(toks.slice(24));
      rest.forEach((g, k) => {
        const w = ref.forward(toks[24 + k]!, 24 + k);
        for (let j = 0; j < w.length; j++) d = Math.max(d, Math.abs(g[j]! - w[j]!));
      });
      expect(d).toBeLessThan(1e-3);
      // And it differs from the unshared model (the map has an effect).
      const plain = new ReferenceModel(cfg, f32Weights(weights), 96);
      const a = plain.forwardAll(toks.slice(0, 8)).at(-1)!;
      const b = new ReferenceModel(cfg, f32Weights(weights), 96, src).forwardAll(toks.slice(0, 8)).at(-1)!;
      expect(Math.max(...a.map((v, j) => Math.abs(v - b[j]!)))).toBeGreaterThan(1e-3);
      const snap = await e.snapshot();
      expect([...snap.cacheSource]).toEqual([...src]);
      e.unload();
    });
  }

  it('KV bytes allocated drop by exactly the shared layers\u2019 slot bytes', async () => {
    const gpu = await testGpu();
    const weights = randomWeights(fourLayer, 'f32', 93);
    for (const policy of [{ name: 'full' }, { name: 'h2o', budget: 24, params: { window: 4 } }]) {
      const a = await Engine.load({ model: loaded(fourLayer, weights), gpu, contextLength: 128, prefillChunk: 8, policy });
      const b = await Engine.load({ model: loaded(fourLayer, weights), gpu, contextLength: 128, prefillChunk: 8, policy, sharing: { 2: 0, 3: 1 } });
      const slot = a.model.cache.layers[0]!;
      const slotBytes = slot.k.size + slot.v.size + slot.pos.size + slot.stats.size;
      expect(a.model.kvBytes() - b.model.kvBytes()).toBe(2 * slotBytes);
      a.unload();
      b.unload();
    }
  });

  it('composes with eviction: the source layer\u2019s policy decides for both, using both layers\u2019 attention', async () => {
    const gpu = await testGpu();
    const cfg = fourLayer;
    const weights = randomWeights(cfg, 'f32', 94);
    const e = await Engine.load({ model: loaded(cfg, weights), gpu, contextLength: 128, prefillChunk: 8, policy: { name: 'h2o', budget: 16, params: { window: 2 } }, sharing: { 3: 1 } });
    const ref = new ReferenceModel(cfg, f32Weights(weights), 128, resolveSharing({ 3: 1 }, cfg));
    const toks = tokens(48, 95, cfg.vocabSize);
    // Reference H2O statistic for layer 1's cache: attention mass from layers 1 and 3 (mean over both layers' heads).
    const nKV = cfg.numKvHeads;
    const group = cfg.numHeads / nKV;
    const acc = Array.from({ length: nKV }, () => new Map<number, number>());
    ref.onAttention = (l, _h, kv, probs) => {
      if (l !== 1 && l !== 3) return;
      const pos = ref.entries(1, kv).positions;
      probs.forEach((p, i) => acc[kv]!.set(pos[i]!, (acc[kv]!.get(pos[i]!) ?? 0) + p / (2 * group)));
    };
    let d = 0;
    for (let i = 0; i < 48; i += 8) {
      const g = await e.forwardStep(toks.slice(i, i + 8));
      const w = ref.forwardAll(toks.slice(i, i + 8), i).at(-1)!;
      for (let j = 0; j < w.length; j++) d = Math.max(d, Math.abs(g[j]! - w[j]!));
      const snap = await e.snapshot(true);
      for (let kv = 0; kv < nKV; kv++) {
        const kept = snap.positions![1 * nKV + kv]!;
        // Shared layer 3 shows exactly its source's entries.
        expect([...snap.positions![3 * nKV + kv]!]).toEqual([...kept]);
        expect(kept.length).toBeLessThanOrEqual(16);
        // The kept set is the top (16 - 2) by combined cumulative attention, plus the window.
        const all = ref.entries(1, kv).positions;
        const scored = all.slice(0, all.length - 2).map((p) => ({ p, s: acc[kv]!.get(p) ?? 0 }));
        scored.sort((x, y) => y.s - x.s || x.p - y.p);
        const want = new Set([...scored.slice(0, 14).map((x) => x.p), ...all.slice(-2)]);
        if (all.length > 16) {
          const cut = scored[13]!.s;
          for (const { p, s } of scored) if (Math.abs(s - cut) > 1e-5 * cut) expect(kept.includes(p)).toBe(want.has(p));
        }
        const keepSet = new Set(kept);
        for (const p of [...acc[kv]!.keys()]) if (!keepSet.has(p)) acc[kv]!.delete(p);
      }
      // Keep the reference's caches in step with the GPU's (every layer that owns a cache).
      for (const l of [0, 1, 2]) for (let kv = 0; kv < nKV; kv++) ref.keepOnly(l, kv, new Set(snap.positions![l * nKV + kv]!));
    }
    expect(d).toBeLessThan(1e-3);
    e.unload();
  });

  it('bad maps -> typed errors', async () => {
    const bad: [Record<string, number> | object, RegExp][] = [
      [{ 1: 2, 2: 1 }, /only read an earlier layer/], // a cycle needs a later source
      [{ 0: 2 }, /only read an earlier layer/],
      [{ 1: 1 }, /only read an earlier layer/],
      [{ 1: 0, 2: 1 }, /chains are not allowed/],
      [{ 7: 0 }, /not a layer index/],
      [{ map: { 2: 0 }, model: { numLayers: 3, numKvHeads: 3, headDim: 16 } }, /KV heads/],
    ];
    for (const [m, msg] of bad) {
      expect(() => resolveSharing(m as Record<string, number>, smolLike)).toThrow(InvalidArgumentError);
      expect(() => resolveSharing(m as Record<string, number>, smolLike)).toThrow(msg);
    }
    const gpu = await testGpu();
    await expect(Engine.load({ model: loaded(smolLike, randomWeights(smolLike, 'f32', 96)), gpu, contextLength: 32, sharing: { 0: 1 } })).rejects.toMatchObject({ code: 'invalid-argument' });
  });
});
