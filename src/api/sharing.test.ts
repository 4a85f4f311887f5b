import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MessageChannel } from 'node:worker_threads';
import { expose, type Endpoint } from 'comlink';
import { createEngine, type KvscopeEngine } from './create-engine';
import { WorkerBackend } from './worker-backend';
import { WorkerHost } from './worker-host';
import { InvalidArgumentError } from '../errors';
import { resolveSharing, type SharingMap } from '../kv/sharing';
import type { CacheSnapshot } from '../kv/types';
import { loaded, randomWeights, smolLike } from '../../test/engine/fixtures';
import type { CalibrationProgressEvent } from './types';

// KVSharer calibration through the public API (createEngine) and through the worker protocol.
// A random-weight 3-layer model: the target (25% of 3 layers) is one shared layer, and with
// threshold -1 the search accepts the first candidate, so the map is known to be non-empty.
const model = loaded(smolLike, randomWeights(smolLike, 'f32', 31), true);
const ask = (content: string) => [{ role: 'user' as const, content }];
const SAMPLES = ['The quick brown fox jumps over the lazy dog.', 'A cache keeps keys and values for every layer.', 'Numbers: 0 1 2 3 4 5 6 7 8 9.'];

function expectProgressToOne(events: CalibrationProgressEvent[]): void {
  expect(events.length).toBeGreaterThanOrEqual(3);
  const fractions = events.map((e) => e.fraction);
  for (let i = 1; i < fractions.length; i++) expect(fractions[i]!).toBeGreaterThanOrEqual(fractions[i - 1]!);
  expect(fractions[0]!).toBeLessThan(1);
  expect(fractions[0]!).toBeGreaterThan(0);
  expect(events.at(-1)).toEqual({ stage: 'done', done: 1, total: 1, fraction: 1 });
  expect(events.filter((e) => e.fraction === 1)).toHaveLength(1);
  const stages = events.map((e) => e.stage);
  expect(stages).toContain('statistics');
  expect(stages).toContain('search');
  expect(stages.indexOf('search')).toBeGreaterThan(stages.lastIndexOf('statistics'));
}

function onlyPair(map: SharingMap): [number, number] {
  const entries = Object.entries(map.map);
  expect(entries).toHaveLength(1);
  const [layer, source] = entries[0]!;
  return [Number(layer), source];
}

describe('engine.calibrateSharing (in-thread)', () => {
  let engine: KvscopeEngine;
  beforeAll(async () => {
    engine = await createEngine({ model, worker: false, contextLength: 128, prefillChunk: 16 });
  });
  afterAll(async () => {
    await engine?.unload();
  });

  it('returns a valid map with progress increasing to 1; applied, the KV bytes drop by exactly the predicted saving', async () => {
    const conversation = ask('The grass is green and the sky is blue.');
    const before = await engine.chat.completions.create({ messages: conversation, max_tokens: 4 });
    const fullBytes = before.usage.extra.kv_bytes_allocated;

    const events: CalibrationProgressEvent[] = [];
    const map = await engine.calibrateSharing({ threshold: -1, samples: SAMPLES, sampleTokens: 16, onProgress: (e) => events.push(e) });
    expectProgressToOne(events);
    expect(events.find((e) => e.stage === 'statistics')!.total).toBe(SAMPLES.length);
    // JSON in kv-sharing.json's format, valid for this model.
    expect(JSON.parse(JSON.stringify(map))).toEqual(map);
    expect(map.model).toEqual({ numLayers: 3, numKvHeads: smolLike.numKvHeads, headDim: smolLike.headDim });
    expect(map.settings).toEqual({ threshold: -1, targetSharedLayers: 1, order: 'dissimilar-first', samples: SAMPLES.length });
    const [layer, source] = onlyPair(map);
    expect(source).toBeLessThan(layer);
    expect(() => resolveSharing(map, smolLike)).not.toThrow();
    expect(map.similarity!).toBeGreaterThanOrEqual(-1);
    expect(map.similarity!).toBeLessThanOrEqual(1 + 1e-6);
    // Calibration applies nothing by itself.
    expect(engine.sharing).toBeNull();
    expect(engine.policy).toEqual({ name: 'full' });
    expect(engine.inThreadEngine!.cacheSource[layer]).toBe(layer);

    const savings = await engine.sharingSavings(map);
    expect(savings.sharedLayers).toBe(1);
    expect(savings.kvBytesUnshared).toBe(fullBytes);
    expect(savings.kvBytesSaved).toBeGreaterThan(0);
    expect(savings.kvBytesAllocated).toBe(fullBytes - savings.kvBytesSaved);

    const snapshots: CacheSnapshot[] = [];
    const stop = engine.onCacheSnapshot((s) => snapshots.push(s));
    try {
      await engine.setSharing(map);
      expect(engine.sharing).toEqual(map);
      const turn = [...conversation, { role: 'assistant' as const, content: before.choices[0]!.message.content }, ...ask('And the grass?')];
      const after = await engine.chat.completions.create({ messages: turn, max_tokens: 4 });
      expect(after.usage.extra.kv_bytes_allocated).toBe(savings.kvBytesAllocated);
      expect(after.usage.extra.kv_bytes_allocated).toBeLessThan(fullBytes);
      // The cache was rebuilt for the map: nothing was reused.
      expect(after.usage.extra.reused_prompt_tokens).toBe(0);
      const last = snapshots.at(-1)!;
      expect(last.cacheSource[layer]).toBe(source);
      expect(last.kvBytesAllocated).toBe(savings.kvBytesAllocated);

      // Under a StreamingLLM budget the saving is the shared layer's (smaller) slot.
      await engine.setPolicy('streaming', { budget: 16 });
      const small = await engine.sharingSavings(map);
      expect(small.kvBytesSaved).toBeGreaterThan(0);
      expect(small.kvBytesSaved).toBeLessThan(savings.kvBytesSaved);
      const streamed = await engine.chat.completions.create({ messages: ask('Under a budget.'), max_tokens: 2 });
      expect(streamed.usage.extra.kv_bytes_allocated).toBe(small.kvBytesAllocated);
      await engine.setPolicy('full');

      await engine.setSharing(null);
      expect(engine.sharing).toBeNull();
      const unshared = await engine.chat.completions.create({ messages: ask('No sharing.'), max_tokens: 2 });
      expect(unshared.usage.extra.kv_bytes_allocated).toBe(fullBytes);
      expect(snapshots.at(-1)!.cacheSource[layer]).toBe(layer);
    } finally {
      stop();
    }
  });

  it('uses the shipped held-out texts by default (sampleCount of them) and a target of 0 gives an empty map', async () => {
    const events: CalibrationProgressEvent[] = [];
    const map = await engine.calibrateSharing({ sampleCount: 2, sampleTokens: 8, targetFraction: 0, onProgress: (e) => events.push(e) });
    expect(map.map).toEqual({});
    expect(map.settings).toMatchObject({ threshold: 0.5, targetSharedLayers: 0, samples: 2 });
    expect(events.at(-1)!.fraction).toBe(1);
    expect(events.every((e, i) => i === 0 || e.fraction >= events[i - 1]!.fraction)).toBe(true);
  });

  it('abort (signal or interrupt) rejects with AbortError, leaks no GPU buffers, and leaves the engine as it was', async () => {
    const gpu = engine.inThreadEngine!.gpu;
    await engine.calibrateSharing({ threshold: -1, samples: SAMPLES.slice(0, 2), sampleTokens: 8 });
    const scratch = gpu.bytes('scratch');
    const uniform = gpu.bytes('uniform');
    // A whole second calibration allocates nothing that outlives it.
    await engine.calibrateSharing({ threshold: -1, samples: SAMPLES.slice(0, 2), sampleTokens: 8 });
    expect(gpu.bytes('scratch')).toBe(scratch);
    expect(gpu.bytes('uniform')).toBe(uniform);

    const ac = new AbortController();
    const seen: CalibrationProgressEvent[] = [];
    const aborted = engine.calibrateSharing({ threshold: -1, samples: SAMPLES, sampleTokens: 8, signal: ac.signal, onProgress: (e) => (seen.push(e), ac.abort()) });
    await expect(aborted).rejects.toMatchObject({ name: 'AbortError' });
    expect(seen.at(-1)!.fraction).toBeLessThan(1);
    expect(gpu.bytes('scratch')).toBe(scratch);
    expect(gpu.bytes('uniform')).toBe(uniform);

    const interrupted = engine.calibrateSharing({ threshold: -1, samples: SAMPLES, sampleTokens: 8, onProgress: () => void engine.interrupt() });
    await expect(interrupted).rejects.toMatchObject({ name: 'AbortError' });
    // Aborted before its turn: it never starts.
    const early = new AbortController();
    early.abort();
    let started = false;
    await expect(engine.calibrateSharing({ signal: early.signal, onProgress: () => (started = true) })).rejects.toMatchObject({ name: 'AbortError' });
    expect(started).toBe(false);

    expect(engine.policy).toEqual({ name: 'full' });
    expect(engine.inThreadEngine!.policySpec.name).toBe('full');
    expect([...engine.inThreadEngine!.cacheSource]).toEqual([0, 1, 2]);
    const r = await engine.chat.completions.create({ messages: ask('still here'), max_tokens: 2 });
    expect(r.usage.completion_tokens).toBeGreaterThan(0);
  });

  it('bad settings and bad maps are typed errors', async () => {
    await expect(engine.calibrateSharing({ threshold: 2, samples: SAMPLES })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(engine.calibrateSharing({ targetFraction: 0.8, samples: SAMPLES })).rejects.toThrow(/targetFraction/);
    await expect(engine.calibrateSharing({ targetFraction: 0.25, targetSharedLayers: 1, samples: SAMPLES })).rejects.toThrow(/not both/);
    await expect(engine.calibrateSharing({ targetSharedLayers: 2, samples: SAMPLES })).rejects.toThrow(/targetSharedLayers/);
    await expect(engine.calibrateSharing({ samples: [] })).rejects.toThrow(/calibration set is empty/);
    await expect(engine.calibrateSharing({ samples: [[1, 2, 100000]] })).rejects.toMatchObject({ code: 'invalid-argument' });
    await expect(engine.calibrateSharing({ sampleCount: 0 })).rejects.toThrow(/sampleCount/);
    await expect(engine.calibrateSharing({ sampleCount: 31 })).rejects.toThrow(/sampleCount/);
    await expect(engine.setSharing({ 1: 2 })).rejects.toThrow(/earlier layer/);
    await expect(engine.setSharing({ 1: 0, 2: 1 })).rejects.toThrow(/chains/);
    await expect(engine.sharingSavings({ map: { 1: 0 }, model: { numLayers: 3, numKvHeads: 4, headDim: 16 } })).rejects.toThrow(/KV heads/);
    expect(engine.sharing).toBeNull();
  });
});

describe('createEngine({ sharing })', () => {
  it('starts with the map: the first request allocates the shared cache', async () => {
    const e = await createEngine({ model, worker: false, contextLength: 64, sharing: { 2: 0 } });
    try {
      expect(e.sharing).toEqual({ 2: 0 });
      expect([...e.inThreadEngine!.cacheSource]).toEqual([0, 1, 0]);
      const savings = await e.sharingSavings({ 2: 0 });
      const r = await e.chat.completions.create({ messages: ask('Shared from the start.'), max_tokens: 2 });
      expect(r.usage.extra.kv_bytes_allocated).toBe(savings.kvBytesAllocated);
      expect(savings.kvBytesSaved).toBeGreaterThan(0);
    } finally {
      await e.unload();
    }
  });
});

describe('calibration over the worker protocol (WorkerHost <-> WorkerBackend over a MessageChannel)', () => {
  it('delivers every progress event before the map; errors and aborts keep their class and name', async () => {
    const { port1, port2 } = new MessageChannel();
    expose(new WorkerHost(), port2 as unknown as Endpoint);
    const backend = new WorkerBackend(port1 as unknown as Endpoint);
    try {
      await backend.load({ model, contextLength: 64 });
      const events: CalibrationProgressEvent[] = [];
      const map = await backend.calibrateSharing({ threshold: -1, sampleCount: 2, sampleTokens: 12 }, (e) => events.push(e));
      // Resolved only after the last progress event arrived on this side.
      expectProgressToOne(events);
      const [layer, source] = onlyPair(map);
      expect(map.settings!.samples).toBe(2);
      const savings = await backend.sharingSavings(map);
      expect(savings.kvBytesSaved).toBeGreaterThan(0);
      await backend.setSharing(map);
      const seen: CacheSnapshot[] = [];
      await backend.setSnapshotListener((s) => seen.push(s));
      const r = await backend.generate({ messages: ask('The sky is'), maxTokens: 3 }, () => {});
      expect(r.kvBytesAllocated).toBe(savings.kvBytesAllocated);
      await expect.poll(() => seen.length).toBeGreaterThan(0);
      expect(seen.at(-1)!.cacheSource[layer]).toBe(source);

      const bad = await backend.calibrateSharing({ threshold: 5 }).then(() => null, (e: unknown) => e);
      expect(bad).toBeInstanceOf(InvalidArgumentError);
      expect(bad).toMatchObject({ code: 'invalid-argument' });
      const aborted = await backend
        .calibrateSharing({ threshold: -1, sampleCount: 3, sampleTokens: 8 }, () => void backend.interrupt())
        .then(() => null, (e: unknown) => e);
      expect(aborted).toMatchObject({ name: 'AbortError' });
      await backend.unload();
    } finally {
      port1.close();
      port2.close();
    }
  });
});
