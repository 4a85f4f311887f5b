/**
 * The worker side of the engine: a `LocalBackend` whose errors are sent as `WireError`s
 * (so the client can rebuild their classes) and whose snapshots are posted as transferable
 * typed arrays. workers/engine.worker.ts exposes one of these through comlink.
 */
import { releaseProxy, transfer, type Remote } from 'comlink';
import type { CacheSnapshot, PolicySpec } from '../kv/types';
import type { SharingMap } from '../kv/sharing';
import { LocalBackend, type BackendCalibrationOptions, type BackendLoadOptions, type BackendRequest, type BackendResult } from './backend';
import type { CalibrationProgressEvent, LoadProgressEvent, ModelInfo, PolicyInfo, SharingSavings, SnapshotOptions } from './types';
import { toWireError } from './wire-errors';

/** Copies a snapshot's arrays (the engine may reuse its own) and lists them for transfer. */
export function transferableSnapshot(s: CacheSnapshot): { snapshot: CacheSnapshot; buffers: ArrayBuffer[] } {
  const snapshot: CacheSnapshot = { ...s, policy: { ...s.policy }, live: s.live.slice(), capacity: s.capacity.slice(), cacheSource: s.cacheSource.slice() };
  if (s.positions) snapshot.positions = s.positions.map((p) => p.slice());
  if (s.scores) snapshot.scores = s.scores.map((p) => p.slice());
  const buffers = [snapshot.live, snapshot.capacity, snapshot.cacheSource, ...(snapshot.positions ?? []), ...(snapshot.scores ?? [])].map((a) => a.buffer as ArrayBuffer);
  return { snapshot, buffers };
}

async function wire<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    // comlink re-throws non-Error values as they are, so the code and class name survive.
    throw toWireError(e);
  }
}

type RemoteCallback<A extends unknown[]> = Remote<(...args: A) => void> | ((...args: A) => void);

/**
 * Calls a callback on the other thread without waiting for it. A callback's port is its own
 * channel, not ordered with the reply to the call, so `flush()` waits for every delivery
 * before the call returns: the page sees all text and progress before the result.
 */
class Poster {
  private pending: Promise<unknown>[] = [];
  post<A extends unknown[]>(cb: RemoteCallback<A>, ...args: A): void {
    const r = (cb as (...a: A) => unknown)(...args);
    if (r && typeof (r as Promise<unknown>).then === 'function') this.pending.push((r as Promise<unknown>).catch(() => undefined));
    // Keep the list short during long generations.
    if (this.pending.length > 256) this.pending = [Promise.all(this.pending)];
  }
  async flush(): Promise<void> {
    await Promise.all(this.pending);
    this.pending = [];
  }
}

async function delivered<T>(poster: Poster, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } finally {
    await poster.flush();
  }
}

/** Frees the message port of a callback the page passed in (a no-op for plain functions). */
function release(cb: unknown): void {
  const r = cb && (cb as Record<symbol, unknown>)[releaseProxy];
  if (typeof r === 'function') (r as () => void)();
}

export class WorkerHost {
  private backend = new LocalBackend();
  private snapshotCallback: unknown = null;

  load(options: BackendLoadOptions, onProgress?: RemoteCallback<[LoadProgressEvent]>): Promise<ModelInfo> {
    const poster = new Poster();
    return wire(() => delivered(poster, () => this.backend.load(options, onProgress ? (p) => poster.post(onProgress, p) : undefined))).finally(() => release(onProgress));
  }

  generate(request: BackendRequest, onText: RemoteCallback<[string]>): Promise<BackendResult> {
    const poster = new Poster();
    return wire(() => delivered(poster, () => this.backend.generate(request, (t) => poster.post(onText, t)))).finally(() => release(onText));
  }

  interrupt(): Promise<void> {
    return wire(() => this.backend.interrupt());
  }

  setPolicy(spec: PolicySpec): Promise<void> {
    return wire(() => this.backend.setPolicy(spec));
  }

  listPolicies(): Promise<PolicyInfo[]> {
    return wire(() => this.backend.listPolicies());
  }

  calibrateSharing(options: BackendCalibrationOptions, onProgress?: RemoteCallback<[CalibrationProgressEvent]>): Promise<SharingMap> {
    const poster = new Poster();
    return wire(() => delivered(poster, () => this.backend.calibrateSharing(options, onProgress ? (p) => poster.post(onProgress, p) : undefined))).finally(() => release(onProgress));
  }

  setSharing(sharing: SharingMap | Record<string, number> | null): Promise<void> {
    return wire(() => this.backend.setSharing(sharing));
  }

  setGates(src: string | null): Promise<void> {
    return wire(() => this.backend.setGates(src));
  }

  sharingSavings(sharing: SharingMap | Record<string, number> | null): Promise<SharingSavings> {
    return wire(() => this.backend.sharingSavings(sharing));
  }

  setSnapshotListener(listener: RemoteCallback<[CacheSnapshot]> | null, options?: SnapshotOptions): Promise<void> {
    release(this.snapshotCallback);
    const poster = new Poster();
    this.snapshotCallback = listener;
    return wire(() =>
      this.backend.setSnapshotListener(
        listener
          ? (s) => {
              const { snapshot, buffers } = transferableSnapshot(s);
              poster.post(listener, transfer(snapshot, buffers));
            }
          : null,
        options,
      ),
    );
  }

  simulateDeviceLoss(): Promise<void> {
    return wire(() => this.backend.simulateDeviceLoss());
  }

  unload(): Promise<void> {
    return wire(() => this.backend.unload());
  }
}
