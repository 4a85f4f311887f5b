import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MessageChannel } from 'node:worker_threads';
import { expose, type Endpoint } from 'comlink';
import { createEngine, type KvscopeEngine } from './create-engine';
import { WorkerBackend } from './worker-backend';
import { WorkerHost, transferableSnapshot } from './worker-host';
import { fromWireError, toWireError } from './wire-errors';
import { LocalBackend } from './backend';
import { listAvailablePolicies } from './policies';
import type { ChatCompletionChunk } from './types';
import {
  ContextOverflowError,
  DeviceLostError,
  InvalidArgumentError,
  KvscopeError,
  ModelLoadError,
  NoWebGPUError,
  OutOfMemoryError,
  ShapeMismatchError,
  UnsupportedError,
} from '../errors';
import { loaded, randomWeights, smolLike } from '../../test/engine/fixtures';
import type { CacheSnapshot } from '../kv/types';

// A random-weight SmolLM2-shaped model with a byte-level BPE tokenizer and a ChatML template:
// the text is nonsense, but every path (template, prefix reuse, streaming, stop) is real.
const model = loaded(smolLike, randomWeights(smolLike, 'f32', 11), true);
const ask = (content: string) => [{ role: 'user' as const, content }];

async function collect(stream: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletionChunk[]> {
  const out: ChatCompletionChunk[] = [];
  for await (const c of stream) out.push(c);
  return out;
}

describe('createEngine (in-thread)', () => {
  let engine: KvscopeEngine;
  beforeAll(async () => {
    const progress: number[] = [];
    engine = await createEngine({ model, worker: false, contextLength: 256, onProgress: (p) => progress.push(p.fraction) });
    expect(progress.at(-1)).toBe(1);
  });
  afterAll(async () => {
    await engine?.unload();
  });

  it('streams OpenAI-shaped chunks, then finish_reason, then usage', async () => {
    const chunks = await collect(await engine.chat.completions.create({ messages: ask('The quick brown fox'), stream: true, max_tokens: 12 }));
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    const id = chunks[0]!.id;
    expect(id).toMatch(/^chatcmpl-/);
    for (const c of chunks) {
      expect(c.object).toBe('chat.completion.chunk');
      expect(c.id).toBe(id);
    }
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const usageChunk = chunks.at(-1)!;
    expect(usageChunk.choices).toEqual([]);
    const finish = chunks.at(-2)!.choices[0]!;
    expect(['stop', 'length']).toContain(finish.finish_reason);
    expect(chunks.slice(0, -2).every((c) => c.choices[0]!.finish_reason === null)).toBe(true);
    const u = usageChunk.usage!;
    expect(u.completion_tokens).toBeGreaterThan(0);
    expect(u.completion_tokens).toBeLessThanOrEqual(12);
    if (u.completion_tokens === 12) expect(finish.finish_reason).toBe('length');
    expect(u.total_tokens).toBe(u.prompt_tokens + u.completion_tokens);
    expect(u.extra.prefill_tokens_per_s).toBeGreaterThan(0);
    expect(u.extra.kv_bytes_allocated).toBeGreaterThan(0);
    expect(u.extra.kv_bytes_full).toBe(u.extra.cache_tokens * engine.model.kvBytesPerToken);
    expect(u.extra.policy).toEqual({ name: 'full' });
    expect(engine.inThreadEngine!.cachedTokens.length).toBe(u.extra.cache_tokens);
  });

  it('non-streaming returns a chat.completion; a follow-up turn reuses the cached conversation', async () => {
    const first = await engine.chat.completions.create({ messages: ask('A cache keeps keys and values.'), max_tokens: 8 });
    expect(first.object).toBe('chat.completion');
    expect(first.choices[0]!.message.role).toBe('assistant');
    expect(typeof first.choices[0]!.message.content).toBe('string');
    const turn2 = await engine.chat.completions.create({
      messages: [...ask('A cache keeps keys and values.'), { role: 'assistant', content: first.choices[0]!.message.content }, ...ask('The grass is green.')],
      max_tokens: 4,
    });
    // The first turn's prompt (at least) is already in the cache.
    expect(turn2.usage.extra.reused_prompt_tokens).toBeGreaterThanOrEqual(first.usage.prompt_tokens - 1);
    expect(turn2.usage.prompt_tokens).toBeGreaterThan(first.usage.prompt_tokens);
  });

  it('queues concurrent requests instead of interleaving them', async () => {
    // Without the queue the engine refuses a second concurrent generate outright.
    const raw = engine.inThreadEngine!;
    const a = raw.generate('The sky is', { maxTokens: 2 });
    await a.next();
    await expect(raw.generate('x', { maxTokens: 1 }).next()).rejects.toBeInstanceOf(InvalidArgumentError);
    while (!(await a.next()).done);

    const timeline: string[] = [];
    const streamed = async (tag: string, content: string) => {
      const s = await engine.chat.completions.create({ messages: ask(content), stream: true, max_tokens: 6 });
      for await (const c of s) if (c.choices[0]?.delta.content) timeline.push(tag);
      timeline.push(`${tag}:end`);
    };
    const plain = async (tag: string, content: string) => {
      const r = await engine.chat.completions.create({ messages: ask(content), max_tokens: 6 });
      timeline.push(`${tag}:end`);
      return r;
    };
    const [, b] = await Promise.all([streamed('A', 'Numbers: 0 1 2'), plain('B', 'Passkey retrieval'), streamed('C', 'The lazy dog')]);
    expect(b.usage.completion_tokens).toBeGreaterThan(0);
    const firstC = timeline.indexOf('C');
    const endA = timeline.indexOf('A:end');
    expect(endA).toBeGreaterThanOrEqual(0);
    expect(timeline.indexOf('B:end')).toBeGreaterThan(endA);
    // Every A chunk comes before any C chunk; C starts after B ended.
    expect(timeline.lastIndexOf('A')).toBeLessThan(endA);
    if (firstC >= 0) expect(firstC).toBeGreaterThan(timeline.indexOf('B:end'));
  });

  it('interrupt() ends the running request with finish_reason abort; the next request runs', async () => {
    const stream = await engine.chat.completions.create({ messages: ask('Héllo wörld'), stream: true, max_tokens: 200, stop: ['\u0000never'] });
    const chunks: ChatCompletionChunk[] = [];
    for await (const c of stream) {
      chunks.push(c);
      if (chunks.length === 2) await engine.interrupt();
    }
    const finish = chunks.find((c) => c.choices[0]?.finish_reason)!;
    const usage = chunks.at(-1)!.usage!;
    // Random weights might emit EOS before the interrupt lands; then 'stop' is right.
    if (finish.choices[0]!.finish_reason !== 'stop') {
      expect(finish.choices[0]!.finish_reason).toBe('abort');
      expect(usage.completion_tokens).toBeLessThan(200);
    }
    const next = await engine.chat.completions.create({ messages: ask('again'), max_tokens: 2 });
    expect(next.usage.completion_tokens).toBeGreaterThan(0);
  });

  it('an AbortSignal skips a queued request and aborts a running one; break stops generation', async () => {
    const ac = new AbortController();
    const running = engine.chat.completions.create({ messages: ask('one'), max_tokens: 30 });
    const queued = engine.chat.completions.create({ messages: ask('two'), max_tokens: 30, signal: ac.signal });
    ac.abort();
    await running;
    const q = await queued;
    expect(q.choices[0]!.finish_reason).toBe('abort');
    expect(q.usage.completion_tokens).toBe(0);

    const s = await engine.chat.completions.create({ messages: ask('three'), stream: true, max_tokens: 100 });
    for await (const c of s) if (c.choices[0]?.delta.content) break;
    // The queue is free again right away (the broken-off request was interrupted).
    const after = await engine.chat.completions.create({ messages: ask('four'), max_tokens: 1 });
    expect(after.usage.completion_tokens).toBe(1);
  });

  it('bad arguments are typed errors', async () => {
    await expect(engine.chat.completions.create({ messages: [] })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(engine.chat.completions.create({ messages: ask('x'), n: 2 })).rejects.toMatchObject({ code: 'invalid-argument' });
    await expect(engine.chat.completions.create({ messages: ask('x'), max_tokens: -1 })).rejects.toMatchObject({ code: 'invalid-argument' });
    // Sampling parameters are checked by the engine; the stream reports the error.
    const s = await engine.chat.completions.create({ messages: ask('x'), stream: true, top_p: 2 });
    await expect(collect(s)).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('policies: the listing drives setPolicy; unknown ones are refused', async () => {
    const policies = await engine.listPolicies();
    expect(policies.map((p) => p.name)).toContain('full');
    await engine.setPolicy('full');
    expect(engine.policy).toEqual({ name: 'full' });
    await expect(engine.setPolicy('no-such-policy', { budget: 8 })).rejects.toBeInstanceOf(KvscopeError);
    expect(engine.policy).toEqual({ name: 'full' });
    if (policies.some((p) => p.name === 'streaming')) {
      // The cache manager is present: a small StreamingLLM budget holds fewer bytes than a full cache.
      await engine.setPolicy('streaming', { budget: 16, sinks: 4 });
      const r = await engine.chat.completions.create({ messages: ask('The quick brown fox jumps over the lazy dog. A cache keeps keys and values.'), max_tokens: 8 });
      expect(r.usage.extra.policy).toMatchObject({ name: 'streaming', budget: 16 });
      expect(r.usage.extra.kv_bytes_in_use).toBeLessThan(r.usage.extra.kv_bytes_full);
      expect(r.usage.extra.kv_footprint).toBeLessThan(1);
      await engine.setPolicy('full');
    }
  });
});

describe('device loss', () => {
  it('a destroyed device mid-generation gives DeviceLostError; reload() makes the engine usable again', async () => {
    const engine = await createEngine({ model, worker: false, contextLength: 128 });
    try {
      const stream = await engine.chat.completions.create({ messages: ask('The quick brown fox'), stream: true, max_tokens: 60, stop: ['\u0000never'] });
      let chunks = 0;
      const consume = async () => {
        for await (const c of stream) {
          if (c.choices[0]?.delta.content && ++chunks === 1) engine.inThreadEngine!.gpu.device.destroy();
        }
      };
      const err = await consume().then(() => null, (e: unknown) => e);
      // If the random model stopped at its first token there was nothing left to lose.
      if (err === null) expect(chunks).toBeLessThanOrEqual(1);
      else {
        expect(err).toBeInstanceOf(DeviceLostError);
        expect((err as DeviceLostError).code).toBe('device-lost');
      }
      await expect(engine.chat.completions.create({ messages: ask('after'), max_tokens: 2 })).rejects.toBeInstanceOf(DeviceLostError);
      await engine.reload();
      const again = await engine.chat.completions.create({ messages: ask('after'), max_tokens: 3 });
      expect(again.usage.completion_tokens).toBeGreaterThan(0);
      expect(engine.inThreadEngine!.gpu.lost).toBeNull();
      // simulateDeviceLoss() does the same through the API (the worker's test hook).
      await engine.simulateDeviceLoss();
      await expect(engine.chat.completions.create({ messages: ask('x'), max_tokens: 1 })).rejects.toMatchObject({ name: 'DeviceLostError', code: 'device-lost' });
      await engine.reload();
      expect((await engine.chat.completions.create({ messages: ask('x'), max_tokens: 1 })).usage.completion_tokens).toBe(1);
    } finally {
      await engine.unload();
    }
  });
});

describe('worker protocol (WorkerHost <-> WorkerBackend over a MessageChannel)', () => {
  it('streams text, reports progress, and rebuilds typed errors with class and code', async () => {
    const { port1, port2 } = new MessageChannel();
    expose(new WorkerHost(), port2 as unknown as Endpoint);
    const backend = new WorkerBackend(port1 as unknown as Endpoint);
    const dir = mkdtempSync(join(tmpdir(), 'kvscope-api-'));
    try {
      const err = await backend.load({ model: join(dir, 'missing') }).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(ModelLoadError);
      expect(err).toMatchObject({ name: 'ModelLoadError', code: 'bad-model-url' });

      const fractions: number[] = [];
      const info = await backend.load({ model, contextLength: 64 }, (p) => fractions.push(p.fraction));
      expect(info.numLayers).toBe(smolLike.numLayers);
      expect(fractions.at(-1)).toBe(1);
      let text = '';
      const r = await backend.generate({ messages: ask('The sky is'), maxTokens: 5 }, (t) => (text += t));
      expect(r.completionTokens).toBeGreaterThan(0);
      expect(text.length).toBeGreaterThan(0);
      await expect(backend.generate({ messages: ask('x'.repeat(400)) }, () => {})).rejects.toBeInstanceOf(ContextOverflowError);
      await backend.simulateDeviceLoss();
      await expect(backend.generate({ messages: ask('x') }, () => {})).rejects.toMatchObject({ name: 'DeviceLostError', code: 'device-lost' });
      await backend.unload();
    } finally {
      port1.close();
      port2.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('every kvscope error class survives the wire', () => {
    const errors = [
      new NoWebGPUError('a'),
      new ModelLoadError('missing-tensor', 'b'),
      new ShapeMismatchError('dtype-mismatch', 'c'),
      new UnsupportedError('tensor-too-large', 'd'),
      new ContextOverflowError('e'),
      new OutOfMemoryError('f'),
      new DeviceLostError('g'),
      new InvalidArgumentError('h'),
      new KvscopeError('engine-not-loaded', 'i'),
    ];
    for (const e of errors) {
      const back = fromWireError(structuredClone(toWireError(e)));
      expect(back).toBeInstanceOf(e.constructor);
      expect(back).toMatchObject({ name: e.name, code: e.code, message: e.message });
    }
    const plain = fromWireError(structuredClone(toWireError(new TypeError('t'))));
    expect(plain).toMatchObject({ name: 'TypeError', message: 't' });
    expect(plain).not.toBeInstanceOf(KvscopeError);
  });

  it('snapshots are copied into transferable arrays', () => {
    const s: CacheSnapshot = {
      tokens: 10, numLayers: 2, numKvHeads: 2, policy: { name: 'full' }, live: new Uint32Array([1, 2, 3, 4]), capacity: new Uint32Array([8, 8, 8, 8]),
      cacheSource: new Int32Array([0, 1]), kvBytesAllocated: 100, kvBytesInUse: 50, footprint: 0.5, peak: 0.5, positions: [new Uint32Array([0])],
    };
    const { snapshot, buffers } = transferableSnapshot(s);
    expect(buffers).toHaveLength(4);
    expect(snapshot.live).not.toBe(s.live);
    expect([...snapshot.live]).toEqual([1, 2, 3, 4]);
    structuredClone(snapshot, { transfer: buffers });
    expect(s.live.length).toBe(4); // the engine's own arrays are untouched
  });

  it('the policy listing comes from the registry (full always, without a budget); an unloaded backend refuses setPolicy', async () => {
    const list = await listAvailablePolicies();
    expect(list.find((p) => p.name === 'full')).toMatchObject({ usesBudget: false });
    for (const p of list) expect(structuredClone(p)).toEqual(p); // plain data: posts to the page as is
    const b = new LocalBackend();
    await expect(b.setPolicy({ name: 'full' })).rejects.toMatchObject({ code: 'engine-not-loaded' });
  });
});
