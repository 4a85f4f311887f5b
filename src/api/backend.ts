/**
 * The engine behind the public API, as a small async interface that both the in-thread
 * host and the worker client implement. `LocalBackend` runs an `Engine` on the current
 * thread; the worker (workers/engine.worker.ts) exposes one of these through comlink.
 */
import { Engine } from '../engine/engine';
import { DeviceLostError, InvalidArgumentError, KvscopeError } from '../errors';
import type { ChatMessage } from '../model/chat-template';
import { type LoadedModel, loadModel } from '../model/weights';
import type { CacheSnapshot, PolicySpec } from '../kv/types';
import { kvCacheBytes } from '../kv/cache';
import { calibrateSharing } from '../kv/calibrate';
import { CALIBRATION_TEXTS } from '../kv/calibration-texts';
import { resolvePolicy } from '../kv/policies/registry';
import { resolveSharing, type SharingMap } from '../kv/sharing';
import { listAvailablePolicies } from './policies';
import type { CalibrateSharingOptions, CalibrationProgressEvent, LoadProgressEvent, ModelInfo, PolicyInfo, SharingSavings, SnapshotOptions } from './types';

export interface BackendLoadOptions {
  model: string | LoadedModel;
  contextLength?: number;
  prefillChunk?: number;
  policy?: PolicySpec;
  sharing?: SharingMap | Record<string, number>;
  /** Cache Storage for a model URL (default on where `caches` exists); see loadModel's `cache`. */
  cache?: boolean;
}

/** A calibration's settings without the callbacks (plain data, for the worker). */
export type BackendCalibrationOptions = Omit<CalibrateSharingOptions, 'onProgress' | 'signal'>;

export interface BackendRequest {
  messages: ChatMessage[];
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  stop?: string[];
}

export interface BackendResult {
  finishReason: 'stop' | 'length' | 'abort';
  promptTokens: number;
  reusedTokens: number;
  completionTokens: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  timeToFirstTokenMs: number;
  totalMs: number;
  cacheTokens: number;
  kvBytesFull: number;
  kvBytesInUse: number;
  kvBytesAllocated: number;
  kvFootprint: number;
  policy: PolicySpec;
}

export interface EngineBackend {
  load(options: BackendLoadOptions, onProgress?: (p: LoadProgressEvent) => void): Promise<ModelInfo>;
  /** Runs one request; `onText` receives the text as it is released. Never called concurrently. */
  generate(request: BackendRequest, onText: (text: string) => void): Promise<BackendResult>;
  /** Ends the running request (finish reason 'abort'); a no-op when idle. */
  interrupt(): Promise<void>;
  setPolicy(spec: PolicySpec): Promise<void>;
  listPolicies(): Promise<PolicyInfo[]>;
  /** Runs a KVSharer calibration (the cache is emptied); `interrupt()` aborts it. Never called concurrently with `generate`. */
  calibrateSharing(options: BackendCalibrationOptions, onProgress?: (p: CalibrationProgressEvent) => void): Promise<SharingMap>;
  /** Chooses a layer-sharing map (or none) for the next request. */
  setSharing(sharing: SharingMap | Record<string, number> | null): Promise<void>;
  /** Loads Attention-Gate weights (a safetensors URL/path) for the `attention-gate` policy, or removes them (null). */
  setGates(src: string | null): Promise<void>;
  /** What a sharing map saves under the policy of the next request. */
  sharingSavings(sharing: SharingMap | Record<string, number> | null): Promise<SharingSavings>;
  /** One listener at a time; `null` stops snapshots. */
  setSnapshotListener(listener: ((s: CacheSnapshot) => void) | null, options?: SnapshotOptions): Promise<void>;
  /** Destroys the GPU device as a real device loss would (tests and fault drills). */
  simulateDeviceLoss(): Promise<void>;
  unload(): Promise<void>;
}

/** The cache manager's additions to `Engine`, detected at run time until they land. */
interface PolicyCapableEngine {
  setPolicy(spec: PolicySpec): unknown;
  onSnapshot(cb: (s: CacheSnapshot) => void, options?: { everyTokens?: number; everyMs?: number; positions?: boolean }): unknown;
}

function policyCapable(e: Engine): (Engine & PolicyCapableEngine) | null {
  const x = e as unknown as Partial<PolicyCapableEngine>;
  return typeof x.setPolicy === 'function' && typeof x.onSnapshot === 'function' ? (e as Engine & PolicyCapableEngine) : null;
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

const notLoaded = () => new KvscopeError('engine-not-loaded', 'No model is loaded: call createEngine() or engine.reload() first.');

function checkInteger(name: string, v: number | undefined, min: number, max: number): void {
  if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got ${v}.`);
}

/** The calibration's token-id samples and target layer count from the API's options. */
function calibrationInputs(engine: Engine, o: BackendCalibrationOptions): { samples: number[][]; target: number } {
  const L = engine.config.numLayers;
  const maxShared = Math.floor(L / 2);
  let target: number;
  if (o.targetSharedLayers !== undefined) {
    if (o.targetFraction !== undefined) throw new InvalidArgumentError('Give targetFraction or targetSharedLayers, not both.');
    checkInteger('targetSharedLayers', o.targetSharedLayers, 0, maxShared);
    target = o.targetSharedLayers;
  } else {
    const f = o.targetFraction ?? 0.25;
    if (typeof f !== 'number' || !(f >= 0 && f <= 0.5)) throw new InvalidArgumentError(`targetFraction must be a fraction of the layers in [0, 0.5], got ${f}.`);
    target = Math.min(Math.round(f * L), maxShared);
  }
  checkInteger('sampleTokens', o.sampleTokens, 1, engine.contextLength);
  checkInteger('sampleCount', o.sampleCount, 1, CALIBRATION_TEXTS.length);
  if (o.samples !== undefined && o.sampleCount !== undefined) throw new InvalidArgumentError('Give samples or sampleCount, not both.');
  const n = o.sampleTokens ?? 64;
  const texts = o.samples ?? CALIBRATION_TEXTS.slice(0, o.sampleCount ?? CALIBRATION_TEXTS.length);
  if (!Array.isArray(texts)) throw new InvalidArgumentError('samples must be an array of texts or token-id arrays.');
  const samples = texts.map((t, i) => {
    if (typeof t === 'string') {
      if (!engine.tokenizer) throw new InvalidArgumentError('This model has no tokenizer: pass calibration samples as token-id arrays.');
      return engine.tokenizer.encode(t, { addBos: true }).slice(0, n);
    }
    if (!Array.isArray(t)) throw new InvalidArgumentError(`samples[${i}] must be a text or an array of token ids.`);
    for (const id of t) {
      if (!Number.isInteger(id) || id < 0 || id >= engine.config.vocabSize) throw new InvalidArgumentError(`samples[${i}] has token id ${id}, outside the vocabulary [0, ${engine.config.vocabSize}).`);
    }
    return t.slice();
  });
  return { samples, target };
}

function abortError(): Error {
  const e = new Error('The calibration was aborted.');
  e.name = 'AbortError';
  return e;
}

/** Hosts an `Engine` on the current thread. */
export class LocalBackend implements EngineBackend {
  private engine: Engine | null = null;
  private info: ModelInfo | null = null;
  private policy: PolicySpec = { name: 'full' };
  private abort: AbortController | null = null;
  private calibration: AbortController | null = null;
  private listener: ((s: CacheSnapshot) => void) | null = null;
  private snapshotOptions: SnapshotOptions = {};
  private unsubscribe: (() => void) | null = null;
  private lastSnapshot: CacheSnapshot | null = null;

  /** The engine itself, for in-thread callers that want its lower-level methods. */
  get current(): Engine | null {
    return this.engine;
  }

  async load(options: BackendLoadOptions, onProgress?: (p: LoadProgressEvent) => void): Promise<ModelInfo> {
    await this.unload();
    // An explicit cache choice needs loadModel's options, which Engine.load does not pass on.
    const model =
      typeof options.model === 'string' && options.cache !== undefined
        ? await loadModel(options.model, {
            cache: options.cache,
            ...(onProgress ? { onProgress: (loaded: number, total: number) => onProgress({ stage: 'download', loaded, total, fraction: total > 0 ? loaded / total : 0 }) } : {}),
          })
        : options.model;
    const engine = await Engine.load({
      model,
      ...(options.contextLength !== undefined ? { contextLength: options.contextLength } : {}),
      ...(options.prefillChunk !== undefined ? { prefillChunk: options.prefillChunk } : {}),
      ...(options.sharing ? { sharing: options.sharing } : {}),
      ...(onProgress ? { onProgress } : {}),
    });
    this.engine = engine;
    this.lastSnapshot = null;
    this.policy = { name: 'full' };
    try {
      if (options.policy) await this.setPolicy(options.policy);
      this.subscribe();
    } catch (e) {
      await this.unload();
      throw e;
    }
    const c = engine.config;
    this.info = {
      source: typeof options.model === 'string' ? options.model : 'in-memory',
      family: c.family,
      numLayers: c.numLayers,
      numHeads: c.numHeads,
      numKvHeads: c.numKvHeads,
      headDim: c.headDim,
      vocabSize: c.vocabSize,
      contextLength: engine.contextLength,
      modelContextLength: c.contextLength,
      // What the full cache allocates per token of capacity (keys, values and positions).
      kvBytesPerToken: Math.round(engine.model.kvBytes() / engine.contextLength),
      weightBytes: engine.gpu.bytes('weights'),
    };
    return this.info;
  }

  private loaded(): Engine {
    if (!this.engine) throw notLoaded();
    if (this.engine.gpu.lost) {
      throw new DeviceLostError(`The GPU device was lost (${this.engine.gpu.lost}); call engine.reload() to load the model on a new device.`);
    }
    return this.engine;
  }

  async generate(request: BackendRequest, onText: (text: string) => void): Promise<BackendResult> {
    const engine = this.loaded();
    const abort = new AbortController();
    this.abort = abort;
    const t0 = now();
    let firstTokenMs = 0;
    try {
      const it = engine.generate(
        { messages: request.messages },
        {
          signal: abort.signal,
          ...(request.maxTokens !== undefined ? { maxTokens: request.maxTokens } : {}),
          ...(request.temperature !== undefined ? { temperature: request.temperature } : {}),
          ...(request.topP !== undefined ? { topP: request.topP } : {}),
          ...(request.seed !== undefined ? { seed: request.seed } : {}),
          ...(request.stop ? { stop: request.stop } : {}),
        },
      );
      for (;;) {
        const r = await it.next();
        if (r.done) {
          const s = r.value;
          const info = this.info!;
          const cacheTokens = engine.cachedTokens.length;
          const full = cacheTokens * info.kvBytesPerToken;
          const snap = this.lastSnapshot;
          return {
            finishReason: s.finishReason,
            promptTokens: s.promptTokens,
            reusedTokens: s.reusedTokens,
            completionTokens: s.completionTokens,
            prefillTokensPerSecond: s.prefillTokensPerSecond,
            decodeTokensPerSecond: s.decodeTokensPerSecond,
            timeToFirstTokenMs: firstTokenMs,
            totalMs: now() - t0,
            cacheTokens,
            kvBytesFull: full,
            // Without a snapshot the cache is the plain full cache: every entry it has seen is live.
            kvBytesInUse: snap ? snap.kvBytesInUse : full,
            kvBytesAllocated: snap ? snap.kvBytesAllocated : engine.model.kvBytes(),
            kvFootprint: snap ? snap.footprint : 1,
            policy: this.policy,
          };
        }
        if (r.value.text) {
          if (!firstTokenMs) firstTokenMs = now() - t0;
          onText(r.value.text);
        }
      }
    } catch (e) {
      if (engine.gpu.lost && !(e instanceof DeviceLostError)) {
        throw new DeviceLostError(`The GPU device was lost (${engine.gpu.lost}); call engine.reload() to load the model on a new device.`, { cause: e });
      }
      throw e;
    } finally {
      if (this.abort === abort) this.abort = null;
    }
  }

  async interrupt(): Promise<void> {
    this.abort?.abort();
    this.calibration?.abort();
  }

  async calibrateSharing(options: BackendCalibrationOptions, onProgress?: (p: CalibrationProgressEvent) => void): Promise<SharingMap> {
    const engine = this.loaded();
    const { samples, target } = calibrationInputs(engine, options);
    const abort = new AbortController();
    this.calibration = abort;
    // One fraction over both stages: the statistics pass (one forward pass per sample) counts as
    // a fifth, the search (up to one pass over the samples per candidate pair) as the rest; it
    // usually ends early, at the target, so the last event jumps to 1.
    let last = 0;
    const report = (stage: CalibrationProgressEvent['stage'], done: number, total: number, fraction: number) => {
      last = Math.max(last, Math.min(1, fraction));
      onProgress?.({ stage, done, total, fraction: last });
    };
    try {
      const map = await calibrateSharing(engine, {
        samples,
        targetSharedLayers: target,
        ...(options.threshold !== undefined ? { threshold: options.threshold } : {}),
        ...(options.order !== undefined ? { order: options.order } : {}),
        signal: abort.signal,
        onProgress: (p) => report(p.stage, p.done, p.total, p.stage === 'statistics' ? (0.2 * p.done) / p.total : 0.2 + (0.8 * p.done) / p.total),
      });
      report('done', 1, 1, 1);
      return map;
    } catch (e) {
      if (engine.gpu.lost && !(e instanceof DeviceLostError)) {
        throw new DeviceLostError(`The GPU device was lost (${engine.gpu.lost}); call engine.reload() to load the model on a new device.`, { cause: e });
      }
      if (abort.signal.aborted && (e as Error)?.name !== 'AbortError') throw abortError();
      throw e;
    } finally {
      if (this.calibration === abort) this.calibration = null;
    }
  }

  async setSharing(sharing: SharingMap | Record<string, number> | null): Promise<void> {
    this.loaded().setSharing(sharing ?? undefined);
  }

  async setGates(src: string | null): Promise<void> {
    await this.loaded().setGates(src ?? undefined);
  }

  async sharingSavings(sharing: SharingMap | Record<string, number> | null): Promise<SharingSavings> {
    const engine = this.loaded();
    const cfg = engine.config;
    const source = resolveSharing(sharing ?? undefined, cfg);
    const policy = resolvePolicy(engine.policySpec, { context: engine.contextLength, chunk: engine.prefillChunk, numLayers: cfg.numLayers, numKvHeads: cfg.numKvHeads, family: cfg.family });
    const kvBytesAllocated = kvCacheBytes(cfg, policy, source);
    const kvBytesUnshared = kvCacheBytes(cfg, policy);
    return { sharedLayers: source.filter((s, l) => s !== l).length, kvBytesAllocated, kvBytesUnshared, kvBytesSaved: kvBytesUnshared - kvBytesAllocated };
  }

  async setPolicy(spec: PolicySpec): Promise<void> {
    const engine = this.loaded();
    const capable = policyCapable(engine);
    if (capable) {
      await capable.setPolicy(spec);
    } else if (spec.name !== 'full') {
      throw new InvalidArgumentError(`Cache policy '${spec.name}' is not available in this build; the only policy is 'full' (the cache manager is not part of it yet).`);
    }
    this.policy = { ...spec };
  }

  async listPolicies(): Promise<PolicyInfo[]> {
    return listAvailablePolicies();
  }

  /** Keeps one engine subscription: it records the latest snapshot (for usage) and forwards to the listener. */
  private subscribe(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    const capable = this.engine && policyCapable(this.engine);
    if (!capable) return;
    const o = this.snapshotOptions;
    const r = capable.onSnapshot(
      (s) => {
        this.lastSnapshot = s;
        this.listener?.(s);
      },
      { everyTokens: o.everyTokens ?? 8, everyMs: o.everyMs ?? 200, positions: o.positions ?? false },
    );
    if (typeof r === 'function') this.unsubscribe = r as () => void;
    else if (r && typeof (r as { dispose?: unknown }).dispose === 'function') this.unsubscribe = () => (r as { dispose(): void }).dispose();
  }

  async setSnapshotListener(listener: ((s: CacheSnapshot) => void) | null, options: SnapshotOptions = {}): Promise<void> {
    this.listener = listener;
    const changed = JSON.stringify(options) !== JSON.stringify(this.snapshotOptions);
    this.snapshotOptions = { ...options };
    // Re-subscribing needs a way to drop the old subscription; without one the first options stay.
    if (changed && this.unsubscribe) this.subscribe();
  }

  async simulateDeviceLoss(): Promise<void> {
    if (!this.engine) throw notLoaded();
    this.engine.gpu.device.destroy();
    // `device.lost` resolves asynchronously; wait until the engine sees it.
    await this.engine.gpu.device.lost;
    await new Promise((r) => setTimeout(r, 0));
  }

  async unload(): Promise<void> {
    this.abort?.abort();
    this.calibration?.abort();
    this.unsubscribe?.();
    this.unsubscribe = null;
    const engine = this.engine;
    this.engine = null;
    this.info = null;
    if (engine) {
      try {
        engine.unload();
      } catch {
        // A lost device can refuse to free buffers; the engine is dropped either way.
      }
    }
  }
}
