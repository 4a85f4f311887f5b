import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine';
import { ReferenceModel } from '../../src/reference/forward';
import { gateWeights, refGate } from '../../src/kv/gates';
import { InvalidArgumentError, ShapeMismatchError } from '../../src/errors';
import { testGpu, rng } from '../gpu';
import { f32Weights, loaded, randomWeights, smolLike } from '../engine/fixtures';
import { randomGates } from './gate-fixtures';

const CONTEXT = 128;
const CHUNK = 8;

describe('Attention-Gate: gate kernel and threshold eviction vs the plain-TypeScript reference', () => {
  it('gate logits, kept sets (z >= 0) and logits after eviction match the reference, chunked prefill then decode', async () => {
    const gpu = await testGpu();
    const weights = randomWeights(smolLike, 'f32', 91);
    const gw = randomGates(smolLike, 16, 7);
    const engine = await Engine.load({ model: loaded(smolLike, weights), gpu, contextLength: CONTEXT, prefillChunk: CHUNK, policy: { name: 'attention-gate' }, gates: gw });
    const ref = new ReferenceModel(smolLike, f32Weights(weights), CONTEXT);
    const g = gateWeights(smolLike, gw);
    const { numLayers: L, numKvHeads: nKV } = smolLike;
    const gateCache = Array.from({ length: L }, () => ({ k: [] as Float32Array[], v: [] as Float32Array[] }));
    let normed: Float32Array[][] = [];
    ref.onNormed = (l, _pos, xn) => normed[l]!.push(Float32Array.from(xn));

    const r = rng(5);
    const all = Array.from({ length: 72 }, () => Math.floor(r() * smolLike.vocabSize));
    const steps: number[][] = [];
    for (let i = 0; i < 48; i += CHUNK) steps.push(all.slice(i, i + CHUNK));
    for (let i = 48; i < 72; i++) steps.push([all[i]!]);

    // Expected state per (layer, KV head): position -> gate logit of the kept entries.
    const kept: Map<number, number>[] = Array.from({ length: L * nKV }, () => new Map());
    let pos = 0;
    let maxDz = 0;
    let maxDlogit = 0;
    let decided = 0;
    let banded = 0;
    let evicted = 0;
    for (const [si, chunk] of steps.entries()) {
      const pos0 = pos;
      normed = Array.from({ length: L }, () => []);
      let refLogits: Float32Array | undefined;
      for (const t of chunk) refLogits = ref.forward(t, pos++);
      const gpuLogits = await engine.forwardStep(chunk, si === steps.length - 1);
      for (let j = 0; j < gpuLogits.length; j++) maxDlogit = Math.max(maxDlogit, Math.abs(gpuLogits[j]! - refLogits![j]!));
      const snap = await engine.snapshot(true);
      for (let l = 0; l < L; l++) {
        const z = refGate(g, l, normed[l]!, pos0, gateCache[l]!, nKV);
        for (let h = 0; h < nKV; h++) {
          const i = l * nKV + h;
          const gpuPos = [...snap.positions![i]!];
          const gpuScore = new Map(gpuPos.map((p, j) => [p, snap.scores![i]![j]!]));
          // Old entries are never re-decided: the kept set only loses the new ones scoring < 0.
          for (const [p, zOld] of kept[i]!) {
            expect(gpuScore.has(p), `layer ${l} head ${h}: kept position ${p} vanished`).toBe(true);
            expect(gpuScore.get(p)).toBe(zOld);
          }
          chunk.forEach((_, rr) => {
            const p = pos0 + rr;
            const zr = z[rr]![h]!;
            const has = gpuScore.has(p);
            if (has) {
              maxDz = Math.max(maxDz, Math.abs(gpuScore.get(p)! - zr));
              kept[i]!.set(p, gpuScore.get(p)!);
            } else evicted++;
            if (Math.abs(zr) > 1e-4) {
              decided++;
              expect(has, `layer ${l} head ${h} position ${p}: z = ${zr}`).toBe(zr >= 0);
            } else banded++;
          });
          expect(gpuPos.length).toBe(kept[i]!.size);
          expect(gpuPos).toEqual([...kept[i]!.keys()]);
          ref.keepOnly(l, h, new Set(gpuPos));
        }
      }
    }
    console.log(`attention-gate: ${decided} decisions compared (${evicted} evictions, ${banded} in the |z| <= 1e-4 band), max |dz| ${maxDz.toExponential(2)}, max |dlogit| ${maxDlogit.toExponential(2)}`);
    expect(evicted).toBeGreaterThan(decided / 5);
    expect(evicted).toBeLessThan((decided * 4) / 5);
    expect(maxDz).toBeLessThan(1e-4);
    expect(maxDlogit).toBeLessThan(1e-3);
    const s = await engine.snapshot();
    expect(s.footprint).toBeLessThan(0.9);
    engine.unload();
  });

  it('bad gate weights and a gate policy without gates give typed errors; the engine stays usable', async () => {
    const gpu = await testGpu();
    const weights = randomWeights(smolLike, 'f32', 92);
    const engine = await Engine.load({ model: loaded(smolLike, weights), gpu, contextLength: CONTEXT, prefillChunk: CHUNK });
    expect(() => engine.setPolicy({ name: 'attention-gate' })).toThrow(InvalidArgumentError);
    expect(() => engine.setPolicy({ name: 'attention-gate' })).toThrow(/needs gate weights/);
    expect(() => engine.setPolicy({ name: 'attention-gate', budget: 10 })).toThrow(/takes no budget/);
    const wrong = randomGates(smolLike, 16, 3);
    const t = wrong.get('model.layers.1.gate.wo')!;
    wrong.set('model.layers.1.gate.wo', { ...t, shape: [3, t.shape[1]!] });
    await expect(engine.setGates(wrong)).rejects.toThrow(ShapeMismatchError);
    await expect(engine.setGates(wrong)).rejects.toThrow(/model.layers.1.gate.wo has shape \[3, 112\]/);
    const missing = randomGates(smolLike, 16, 3);
    missing.delete('model.layers.2.gate.bo');
    await expect(engine.setGates(missing)).rejects.toThrow(/no tensor named model.layers.2.gate.bo/);
    await expect(engine.setGates(randomGates(smolLike, 32, 3))).rejects.toThrow(/Gate dimension must be in \[1, 16\]/);
    await expect(engine.setGates(new Uint8Array([1, 2, 3]))).rejects.toThrow();
    // Still usable, and gates then policy work.
    expect((await engine.generateText([1, 2, 3], { maxTokens: 2, stopTokenIds: [] })).ids.length).toBe(2);
    await engine.setGates(randomGates(smolLike, 8, 4));
    engine.setPolicy({ name: 'attention-gate' });
    expect((await engine.generateText([1, 2, 3, 4, 5, 6], { maxTokens: 3, stopTokenIds: [] })).ids.length).toBe(3);
    await expect(engine.setGates(undefined)).rejects.toThrow(/choose another policy/);
    engine.unload();
  });
});
