import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine';
import { ReferenceModel } from '../../src/reference/forward';
import { refLagScores, refScores, refSelect, refSelectLayer, refStatUpdate, type RefEntry } from '../../src/reference/kv-policies';
import { getPolicy, listPolicies, resolvePolicy } from '../../src/kv/policies/registry';
import type { PolicySpec } from '../../src/kv/types';
import { InvalidArgumentError } from '../../src/errors';
import { testGpu, rng } from '../gpu';
import { f32Weights, loaded, randomWeights, smolLike } from '../engine/fixtures';
import { gateWeights, refGate } from '../../src/kv/gates';
import { randomGates } from './gate-fixtures';

const CONTEXT = 128;
const CHUNK = 8;
const BUDGET = 20;

/** Every registered budget policy, through the same checks. */
const MATRIX: PolicySpec[] = [
  { name: 'streaming', budget: BUDGET, params: { sinks: 4 } },
  { name: 'h2o', budget: BUDGET, params: { window: 4 } },
  { name: 'tova', budget: BUDGET },
  { name: 'knorm', budget: BUDGET },
  { name: 'random', budget: BUDGET, params: { seed: 3 } },
  { name: 'lazy-eviction', budget: BUDGET, params: { window: 6, alpha: 0.03 } },
  { name: 'snapkv', budget: BUDGET, params: { window: 4, kernel: 5 } },
  { name: 'pyramidkv', budget: BUDGET, params: { window: 4, kernel: 3, beta: 4 } },
  // Wrappers: chunked prefill with eviction after each chunk, and AdaKV layer-wide budgets.
  { name: 'snapkv', budget: BUDGET, params: { window: 4, kernel: 5 }, chunked: true },
  { name: 'h2o', budget: BUDGET, params: { window: 4 }, adakv: true },
  { name: 'knorm', budget: BUDGET, adakv: true, chunked: true },
  // A ratio policy: partitions of 8 (= the chunk), half kept.
  { name: 'lagkv', params: { ratio: 0.5, sinks: 4, lag: 8 } },
  // Learned head roles (PruLong / DuoAttention): global heads keep everything, streaming heads sinks + window.
  { name: 'head-roles', params: { sinks: 4, window: 16 }, roles: [[1, 0], [0, 0], [0, 1]] },
  // Learned Attention-Gate (random gate weights here): keeps exactly the entries whose gate logit is >= 0.
  { name: 'attention-gate' },
];
const GATES = randomGates(smolLike, 16, 7);
const label = (s: PolicySpec) => [s.name, s.chunked ? 'chunked' : '', s.adakv ? 'adakv' : ''].filter(Boolean).join('+');

it('the matrix covers every registered policy except full', () => {
  expect(new Set(MATRIX.map((m) => m.name))).toEqual(new Set(listPolicies().map((p) => p.name).filter((n) => n !== 'full')));
});

function tokens(n: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r() * smolLike.vocabSize));
}

// Twice: with the kernels SwiftShader picks (CPU variants: row attention, 8-wide selection
// workgroups) and with the ones GPUs get (split attention, 256-wide selection).
describe.each(['auto', 'gpu'] as const)('policy matrix (%s kernels): GPU cache manager vs plain-TypeScript reference', (kernels) => {
  for (const spec of MATRIX) {
    it(`${label(spec)}: kept sets, statistics, attention after eviction, declared bound`, async () => {
      const gpu = await testGpu(kernels);
      const weights = randomWeights(smolLike, 'f32', 77);
      const isGate = spec.name === 'attention-gate';
      const engine = await Engine.load({ model: loaded(smolLike, weights), gpu, contextLength: CONTEXT, prefillChunk: CHUNK, policy: spec, gates: isGate ? GATES : undefined });
      const ref = new ReferenceModel(smolLike, f32Weights(weights), CONTEXT);
      // Attention-Gate: the reference gate reads each layer's normalized input.
      const gw = isGate ? gateWeights(smolLike, GATES) : undefined;
      const gateCache = Array.from({ length: smolLike.numLayers }, () => ({ k: [] as Float32Array[], v: [] as Float32Array[] }));
      let normed: Float32Array[][] = [];
      ref.onNormed = (l, _p, xn) => normed[l]!.push(Float32Array.from(xn));
      const policy = getPolicy(spec.name);
      const resolved = resolvePolicy(spec, { context: CONTEXT, chunk: CHUNK, numLayers: smolLike.numLayers, numKvHeads: smolLike.numKvHeads });
      const params = resolved.params;
      const sinks = policy.sinks(params);
      const window = policy.window(params);
      const every = spec.chunked ? 1 : policy.every(params);
      const massRows = policy.massRows?.(params) ?? 0;
      // LagKV's layout, tracked like the cache does: live entries per head, end of the compressed region.
      const dyn = policy.dynamic?.(params);
      let dynLive = 0;
      let dynEnd = dyn?.sinks ?? 0;
      const { numLayers: L, numKvHeads: nKV, numHeads: nH } = smolLike;
      const group = nH / nKV;
      const state: Map<number, RefEntry>[] = Array.from({ length: L * nKV }, () => new Map());
      let mass: Map<number, number>[] = [];
      ref.onAttention = (l, _h, kv, probs) => {
        const m = mass[l * nKV + kv]!;
        const pos = ref.entries(l, kv).positions;
        probs.forEach((p, i) => m.set(pos[i]!, (m.get(pos[i]!) ?? 0) + p / group));
      };

      const all = tokens(64, 5);
      const steps: number[][] = [];
      for (let i = 0; i < 40; i += CHUNK) steps.push(all.slice(i, i + CHUNK));
      for (let i = 40; i < 64; i++) steps.push([all[i]!]);

      let pos = 0;
      let compared = 0;
      let banded = 0;
      let evictions = 0;
      let maxDiff = 0;
      const prefillSteps = steps.filter((c) => c.length > 1).length;
      for (const [si, chunk] of steps.entries()) {
        const pos0 = pos;
        const promptEnd = si === prefillSteps - 1;
        let refLogits: Float32Array | undefined;
        mass = Array.from({ length: L * nKV }, () => new Map());
        normed = Array.from({ length: L }, () => []);
        const sink = mass;
        for (const [row, t] of chunk.entries()) {
          // Only the last `massRows` query rows count (TOVA: 1, SnapKV: its window).
          const counts = massRows === 0 || row >= chunk.length - massRows;
          mass = counts ? sink : Array.from({ length: L * nKV }, () => new Map());
          refLogits = ref.forward(t, pos++);
        }
        mass = sink;
        const gpuLogits = await engine.forwardStep(chunk, promptEnd);
        for (let j = 0; j < gpuLogits.length; j++) maxDiff = Math.max(maxDiff, Math.abs(gpuLogits[j]! - refLogits![j]!));
        const snap = await engine.snapshot(true);
        const t = pos - 1;
        let due = resolved.acts === 'prompt-end' ? promptEnd : chunk.length > 1 || pos % every === 0;
        let stepSinks = sinks;
        let stepWindow = window;
        let stepBudget: number | undefined;
        if (dyn) {
          dynLive += chunk.length;
          due = dynLive - dynEnd >= 2 * dyn.lag;
          if (due) {
            stepSinks = dynEnd;
            stepWindow = dynLive - (dynEnd + dyn.lag);
            stepBudget = dynEnd + dyn.keep + stepWindow;
          }
        }
        for (let l = 0; l < L; l++) {
          const layerBudget = stepBudget ?? resolved.budgets![l]!;
          // Role policies: a global head never evicts. Attention-Gate: keep exactly the entries scoring >= 0.
          let headBudget = (kv: number) => ((((resolved.globalMask?.[l] ?? 0) >> kv) & 1) === 1 ? Infinity : layerBudget);
          const budget = layerBudget;
          const cap = resolved.capacity[l]!;
          const gateZ = gw ? refGate(gw, l, normed[l]!, pos0, gateCache[l]!, nKV) : undefined;
          const statsGpu = policy.needsAttention ? await gpu.readF32(engine.model.cache.layers[l]!.stats, nKV * snap.capacity[l * nKV]! * 2) : undefined;
          const heads = Array.from({ length: nKV }, (_, kv) => {
            const i = l * nKV + kv;
            const { positions, keys, values } = ref.entries(l, kv);
            expect(snap.capacity[i]).toBe(cap);
            expect(positions.length).toBeLessThanOrEqual(cap);
            const m = mass[i]!;
            const entries = positions.map((p, j) => {
              let e = state[i]!.get(p);
              if (!e) {
                e = { pos: p, a: 0, b: 0, key: keys[j]!, value: values[j]! };
                state[i]!.set(p, e);
              }
              refStatUpdate(spec.name, params, e, m.get(p) ?? 0, p >= pos0, t);
              if (gateZ && p >= pos0) e.a = gateZ[p - pos0]![kv]!;
              return e;
            });
            const scores = dyn ? (due ? refLagScores(entries, stepSinks, dyn.lag) : entries.map(() => NaN)) : refScores(spec.name, params, entries, t, l, kv);
            return { i, entries, scores, kept: new Set(snap.positions![i]!) };
          });
          if (isGate) headBudget = (kv: number) => heads[kv]!.scores.filter((x) => x >= 0).length;
          const total = heads.reduce((a, h) => a + h.entries.length, 0);
          const limit = resolved.adakv ? budget * nKV : budget;
          const over = resolved.adakv ? total > limit : heads.some((h, kv) => h.entries.length > headBudget(kv));
          if (due && over) {
            evictions++;
            const sel = resolved.adakv
              ? refSelectLayer(heads.map((h) => h.scores), limit, stepSinks, stepWindow)
              : (() => {
                  const r = heads.map((h, kv) => refSelect(h.scores, headBudget(kv), stepSinks, stepWindow));
                  return { keep: r.map((x) => x.keep), cuts: r.map((x) => x.cut) };
                })();
            heads.forEach((h, kv) => {
              const cut = 'cut' in sel ? sel.cut : sel.cuts[kv]!;
              const all = ('cut' in sel ? heads.flatMap((x) => x.scores) : h.scores).filter((x) => !Number.isNaN(x));
              const band = 1e-5 * Math.abs(cut) + 1e-7;
              const inBand = all.filter((s) => Math.abs(s - cut) <= band);
              // Inside the band only exact ties are decidable (by the tie rule: lower slot first).
              const bandIsExactTie = inBand.every((s) => s === inBand[0]);
              if (!resolved.adakv) expect(h.kept.size).toBe(Math.min(headBudget(kv), h.entries.length));
              h.entries.forEach((e, j) => {
                if (Number.isNaN(h.scores[j]!) || Number.isNaN(cut) || Math.abs(h.scores[j]! - cut) > band || bandIsExactTie) {
                  compared++;
                  expect(h.kept.has(e.pos), `layer ${l} head ${kv} pos ${e.pos} score ${h.scores[j]} cut ${cut}`).toBe(sel.keep[kv]![j]);
                } else banded++;
              });
            });
            if (resolved.adakv) expect(heads.reduce((a, h) => a + h.kept.size, 0)).toBe(limit);
          } else {
            for (const h of heads) expect([...h.kept]).toEqual(h.entries.map((e) => e.pos));
          }
          for (const [kv, h] of heads.entries()) {
            // Kept entries keep their order, and their statistics match the reference.
            expect([...h.kept]).toEqual([...h.kept].sort((x, y) => x - y));
            if (statsGpu) {
              snap.positions![h.i]!.forEach((p, slot) => {
                const e = state[h.i]!.get(p)!;
                const ga = statsGpu[(kv * cap + slot) * 2]!;
                const gb = statsGpu[(kv * cap + slot) * 2 + 1]!;
                expect(Math.abs(ga - e.a)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(e.a)));
                expect(Math.abs(gb - e.b)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(e.b)));
              });
            }
            if (dyn && due) h.entries.forEach((e, j) => { if (!Number.isNaN(h.scores[j]!)) { e.a = h.scores[j]!; e.b = 0; } });
            // Keep the reference in step with the GPU's kept set.
            ref.keepOnly(l, kv, h.kept);
            for (const p of [...state[h.i]!.keys()]) if (!h.kept.has(p)) state[h.i]!.delete(p);
            expect(snap.live[h.i]).toBe(h.kept.size);
          }
        }
        if (dyn && due) {
          dynLive = stepBudget!;
          dynEnd += dyn.keep;
        }
      }
      console.log(`${label(spec)}: ${evictions} evictions checked, ${compared} entries compared, ${banded} in the tie band, max |dlogit| ${maxDiff.toExponential(2)}`);
      expect(maxDiff).toBeLessThan(1e-3);
      expect(evictions).toBeGreaterThanOrEqual(resolved.acts === 'prompt-end' ? L : 10);
      expect(banded).toBeLessThan(compared / 10);
      engine.unload();
    });
  }
});

describe('cache policies: budgets, memory and bad input', () => {
  it('full gives the same logits, bit for bit, as a budget policy whose budget covers everything', async () => {
    const gpu = await testGpu();
    const weights = randomWeights(smolLike, 'f32', 78);
    const a = await Engine.load({ model: loaded(smolLike, weights), gpu, contextLength: 64, prefillChunk: 8 });
    const b = await Engine.load({ model: loaded(smolLike, weights), gpu, contextLength: 64, prefillChunk: 8, policy: { name: 'streaming', budget: 64 } });
    const toks = tokens(40, 9);
    for (let i = 0; i < 40; i += 8) {
      const la = await a.forwardStep(toks.slice(i, i + 8));
      const lb = await b.forwardStep(toks.slice(i, i + 8));
      expect(Buffer.from(la.buffer).equals(Buffer.from(lb.buffer))).toBe(true);
    }
    a.unload();
    b.unload();
  });

  it('KV bytes allocated follow the budget, not the context; footprint and peak are reported', async () => {
    const gpu = await testGpu();
    const weights = randomWeights(smolLike, 'f32', 79);
    const full = await Engine.load({ model: loaded(smolLike, weights), gpu, contextLength: 512, prefillChunk: 16 });
    const small = await Engine.load({ model: loaded(smolLike, weights), gpu, contextLength: 512, prefillChunk: 16, policy: { name: 'streaming', budget: 32 } });
    const prompt = tokens(200, 10);
    const rf = await full.generateText(prompt, { maxTokens: 20, stopTokenIds: [] });
    const rs = await small.generateText(prompt, { maxTokens: 20, stopTokenIds: [] });
    console.log(`KV bytes: full ${rf.stats.kvBytesAllocated}, streaming(32) ${rs.stats.kvBytesAllocated}; footprint full ${rf.stats.kvFootprint.toFixed(3)} streaming ${rs.stats.kvFootprint.toFixed(3)}, peak ${rs.stats.kvPeak.toFixed(3)}`);
    expect(rs.stats.kvBytesAllocated / rf.stats.kvBytesAllocated).toBeLessThan((32 + 16 + 8) / 512);
    expect(rf.stats.kvFootprint).toBeCloseTo(1, 6);
    expect(rs.stats.kvFootprint).toBeLessThan(0.5);
    expect(rs.stats.kvPeak).toBeCloseTo((32 + 16) / 219, 3);
    const snap = await small.snapshot();
    expect(Math.max(...snap.live)).toBeLessThanOrEqual(32);
    full.unload();
    small.unload();
  });

  it('setPolicy applies at the next call and re-prefills the conversation under the new policy', async () => {
    const gpu = await testGpu();
    const weights = randomWeights(smolLike, 'f32', 80);
    const e = await Engine.load({ model: loaded(smolLike, weights), gpu, contextLength: 128, prefillChunk: 8 });
    const prompt = tokens(50, 11);
    await e.generateText(prompt, { maxTokens: 4, stopTokenIds: [] });
    e.setPolicy({ name: 'h2o', budget: 16, params: { window: 4 } });
    expect(e.policySpec.name).toBe('h2o');
    const r = await e.generateText(prompt, { maxTokens: 4, stopTokenIds: [] });
    expect(r.stats.reusedTokens).toBe(0);
    const fresh = await Engine.load({ model: loaded(smolLike, weights), gpu, contextLength: 128, prefillChunk: 8, policy: { name: 'h2o', budget: 16, params: { window: 4 } } });
    expect((await fresh.generateText(prompt, { maxTokens: 4, stopTokenIds: [] })).ids).toEqual(r.ids);
    e.unload();
    fresh.unload();
  });

  it('LazyEviction takes the authors\u2019 per-family alpha unless the spec sets one', () => {
    const base = { context: 128, chunk: 8, numLayers: 3, numKvHeads: 2 };
    expect(resolvePolicy({ name: 'lazy-eviction', budget: 64 }, { ...base, family: 'qwen2' }).params.alpha).toBe(1e-4);
    expect(resolvePolicy({ name: 'lazy-eviction', budget: 64 }, { ...base, family: 'llama' }).params.alpha).toBe(5e-4);
    expect(resolvePolicy({ name: 'lazy-eviction', budget: 64, params: { alpha: 0.01 } }, { ...base, family: 'qwen2' }).params.alpha).toBe(0.01);
  });

  it('bad specs give typed errors naming the parameter and its range, and the engine stays usable', async () => {
    const ctx = { context: 128, chunk: 8, numLayers: 3, numKvHeads: 2 };
    const bad: [PolicySpec, RegExp][] = [
      [{ name: 'nope', budget: 10 }, /Unknown cache policy 'nope'/],
      [{ name: 'streaming', budget: 4, params: { sinks: 4 } }, /budget 4 .*\[5, 128\]/],
      [{ name: 'h2o', budget: 200 }, /budget 200 is larger than the context/],
      [{ name: 'h2o', budget: -3 }, /integer number of entries/],
      [{ name: 'h2o', budget: 10, params: { window: -1 } }, /'window'.*\[0, 4096\]/],
      [{ name: 'lazy-eviction', budget: 50, params: { alpha: NaN } }, /'alpha'/],
      [{ name: 'h2o', budget: 10, params: { windw: 2 } }, /no parameter 'windw'/],
      [{ name: 'full', budget: 10 }, /takes no budget/],
      [{ name: 'lazy-eviction', budget: 20, params: { window: 32 } }, /budget 20 must be larger/],
      [{ name: 'lagkv', budget: 20 }, /set by its ratio, not a budget/],
      [{ name: 'lagkv', params: { lag: 4 } }, /'lag'.*>= the prefill chunk \(8\)/],
      [{ name: 'lagkv', params: { ratio: 0 } }, /'ratio'.*\[0.01, 1\]/],
      [{ name: 'tova', budget: 10, chunked: true, adakv: true, params: { x: 1 } }, /no parameter 'x'/],
      [{ name: 'head-roles', params: { sinks: 4, window: 16 } }, /needs 'roles'.*3 layers x 2 KV heads/],
      [{ name: 'head-roles', roles: [[1, 0], [0, 2], [0, 1]] }, /needs 'roles'/],
      [{ name: 'head-roles', roles: [[1, 0], [0, 0]] }, /needs 'roles'/],
      [{ name: 'head-roles', budget: 20, roles: [[1, 0], [0, 0], [0, 1]] }, /takes no budget/],
      [{ name: 'head-roles', params: { sinks: 100, window: 100 }, roles: [[1, 0], [0, 0], [0, 1]] }, /larger than the context/],
      [{ name: 'h2o', budget: 10, roles: [[1, 0], [0, 0], [0, 1]] }, /takes no head roles/],
    ];
    for (const [spec, msg] of bad) {
      expect(() => resolvePolicy(spec, ctx)).toThrow(InvalidArgumentError);
      expect(() => resolvePolicy(spec, ctx)).toThrow(msg);
    }
    const gpu = await testGpu();
    const e = await Engine.load({ model: loaded(smolLike, randomWeights(smolLike, 'f32', 81)), gpu, contextLength: 128, prefillChunk: 8 });
    expect(() => e.setPolicy({ name: 'h2o', budget: 1000 })).toThrow(/larger than the context/);
    await expect(Engine.load({ model: loaded(smolLike, randomWeights(smolLike, 'f32', 81)), gpu, contextLength: 128, policy: { name: 'tova' } })).rejects.toThrow(/needs a budget/);
    expect((await e.generateText([1, 2, 3], { maxTokens: 2, stopTokenIds: [] })).ids.length).toBe(2);
    e.unload();
  });
});
