import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../src/engine/engine';
import { calibrateSharing, greedySharingSearch, saveSharingMap } from '../../src/kv/calibrate';
import { loadSharingMap, resolveSharing } from '../../src/kv/sharing';
import { ReferenceModel } from '../../src/reference/forward';
import { testGpu, rng } from '../gpu';
import { f32Weights, loaded, randomWeights, smolLike } from '../engine/fixtures';

describe('KVSharer greedy search (toy distances)', () => {
  // Layers 0..5; distance(i, j) = |f(i) - f(j)| with f = [0, 10, 1, 9, 2, 8].
  const f = [0, 10, 1, 9, 2, 8];
  const distance = f.map((a) => f.map((b) => Math.abs(a - b)));
  it('dissimilar-first takes the most distant pairs, skipping chains and rejected pairs', async () => {
    const rejected = new Set(['3>0']); // pretend sharing 3 <- 0 breaks the model
    const seen: string[] = [];
    const r = await greedySharingSearch(
      distance,
      (map) => {
        const last = Object.entries(map).find(([k, v]) => !seen.includes(`${k}>${v}`))!;
        seen.push(`${last[0]}>${last[1]}`);
        return Object.entries(map).some(([k, v]) => rejected.has(`${k}>${v}`)) ? 0.2 : 0.9;
      },
      { threshold: 0.5, target: 2, order: 'dissimilar-first' },
    );
    // Sorted (ties by i, then j): (1,0)=10, (2,1)=9, (3,0)=9, (3,2)=8, (4,1)=8, (5,0)=8, ...
    // (1,0) accepted; (2,1) skipped (1 is shared, so it cannot be a source); (3,0) tried and
    // rejected; (3,2) accepted -> target reached.
    expect(r.map).toEqual({ 1: 0, 3: 2 } as Record<number, number>);
    expect(seen).toEqual(['1>0', '3>0', '3>2']);
    expect(seen[0]).toBe('1>0');
    expect(seen).not.toContain('2>1');
  });
  it('similar-first takes the closest pairs', async () => {
    const r = await greedySharingSearch(distance, () => 1, { threshold: 0.5, target: 2, order: 'similar-first' });
    // Closest: (2,0)=1, (3,1)=1, ... -> {2: 0, 3: 1}
    expect(r.map).toEqual({ 2: 0, 3: 1 } as Record<number, number>);
  });
  it('stops at the target and never accepts below the threshold', async () => {
    const r = await greedySharingSearch(distance, () => 0.4, { threshold: 0.5, target: 2, order: 'dissimilar-first' });
    expect(r.map).toEqual({});
  });
});

describe('KVSharer calibration in the runtime', () => {
  it('finds a valid map on a model, saves and reloads it, and the engine runs it like the reference', async () => {
    const gpu = await testGpu();
    const cfg = { ...smolLike, numLayers: 4 };
    const weights = randomWeights(cfg, 'f32', 97);
    const engine = await Engine.load({ model: loaded(cfg, weights), gpu, contextLength: 64, prefillChunk: 16, policy: { name: 'h2o', budget: 40, params: { window: 4 } } });
    const r = rng(98);
    const samples = Array.from({ length: 6 }, () => Array.from({ length: 24 }, () => Math.floor(r() * cfg.vocabSize)));
    const progress: string[] = [];
    const map = await calibrateSharing(engine, { samples, threshold: 0.3, targetSharedLayers: 1, onProgress: (p) => progress.push(p.stage) });
    expect(progress).toContain('statistics');
    expect(Object.keys(map.map).length).toBeLessThanOrEqual(1);
    expect(map.settings).toMatchObject({ threshold: 0.3, targetSharedLayers: 1, order: 'dissimilar-first', samples: 6 });
    expect(engine.policySpec.name).toBe('h2o'); // restored
    if (Object.keys(map.map).length === 1) expect(map.similarity!).toBeGreaterThanOrEqual(0.3);
    const dir = mkdtempSync(join(tmpdir(), 'kvscope-sharing-'));
    try {
      await saveSharingMap(dir, map);
      const back = await loadSharingMap(dir);
      expect(back).toEqual(map);
      const src = resolveSharing(back, cfg);
      engine.setPolicy({ name: 'full' });
      engine.setSharing(back);
      const toks = samples[0]!;
      const got = await engine.prefillLogits(toks);
      const want = new ReferenceModel(cfg, f32Weights(weights), 64, src).forwardAll(toks).at(-1)!;
      expect(Math.max(...want.map((v, j) => Math.abs(v - got[j]!)))).toBeLessThan(1e-3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    await expect(calibrateSharing(engine, { samples: [] })).rejects.toThrow(/calibration set is empty/);
    await expect(calibrateSharing(engine, { samples: [[]] })).rejects.toMatchObject({ code: 'invalid-argument' });
    await expect(calibrateSharing(engine, { samples, targetSharedLayers: 3 })).rejects.toThrow(/targetSharedLayers/);
    engine.unload();
  });
});
