/**
 * The page side of the engine worker: a typed comlink client that implements
 * `EngineBackend`, turns the worker's wire errors back into kvscope error classes, and
 * fails pending calls if the worker itself dies.
 */
import { proxy, releaseProxy, wrap, type Endpoint, type Remote } from 'comlink';
import { KvscopeError } from '../errors';
import type { CacheSnapshot, PolicySpec } from '../kv/types';
import type { SharingMap } from '../kv/sharing';
import type { BackendCalibrationOptions, BackendLoadOptions, BackendRequest, BackendResult, EngineBackend } from './backend';
import type { CalibrationProgressEvent, LoadProgressEvent, ModelInfo, PolicyInfo, SharingSavings, SnapshotOptions } from './types';
import type { WorkerHost } from './worker-host';
import { fromWireError, isWireError } from './wire-errors';

/** A Worker, or any comlink endpoint whose other end exposes a `WorkerHost` (tests use a MessagePort). */
export type EngineEndpoint = Endpoint & { terminate?(): void };

export class WorkerBackend implements EngineBackend {
  private readonly endpoint: EngineEndpoint;
  private readonly remote: Remote<WorkerHost>;
  private dead: Error | null = null;
  private readonly rejectors = new Set<(e: Error) => void>();

  constructor(endpoint: EngineEndpoint) {
    this.endpoint = endpoint;
    this.remote = wrap<WorkerHost>(endpoint);
    if (typeof endpoint.terminate === 'function') {
      endpoint.addEventListener('error', ((ev: ErrorEvent) => {
        ev.preventDefault();
        this.fail(new KvscopeError('engine-not-loaded', `The engine worker failed: ${ev.message || 'it could not start (is a blob: worker blocked by a Content-Security-Policy?)'}`));
      }) as EventListener);
    }
  }

  private fail(e: Error): void {
    this.dead = e;
    for (const r of this.rejectors) r(e);
    this.rejectors.clear();
  }

  /** Runs a remote call, rebuilding wire errors and failing if the worker dies meanwhile. */
  private call<T>(f: () => Promise<T>): Promise<T> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise<T>((resolve, reject) => {
      this.rejectors.add(reject);
      f().then(
        (v) => {
          this.rejectors.delete(reject);
          resolve(v);
        },
        (e: unknown) => {
          this.rejectors.delete(reject);
          reject(isWireError(e) ? fromWireError(e) : e);
        },
      );
    });
  }

  async load(options: BackendLoadOptions, onProgress?: (p: LoadProgressEvent) => void): Promise<ModelInfo> {
    const cb = onProgress ? proxy(onProgress) : undefined;
    return this.call(() => this.remote.load(options, cb));
  }

  async generate(request: BackendRequest, onText: (text: string) => void): Promise<BackendResult> {
    return this.call(() => this.remote.generate(request, proxy(onText)));
  }

  interrupt(): Promise<void> {
    return this.call(() => this.remote.interrupt());
  }

  setPolicy(spec: PolicySpec): Promise<void> {
    return this.call(() => this.remote.setPolicy(spec));
  }

  listPolicies(): Promise<PolicyInfo[]> {
    return this.call(() => this.remote.listPolicies());
  }

  calibrateSharing(options: BackendCalibrationOptions, onProgress?: (p: CalibrationProgressEvent) => void): Promise<SharingMap> {
    const cb = onProgress ? proxy(onProgress) : undefined;
    return this.call(() => this.remote.calibrateSharing(options, cb));
  }

  setSharing(sharing: SharingMap | Record<string, number> | null): Promise<void> {
    return this.call(() => this.remote.setSharing(sharing));
  }

  setGates(src: string | null): Promise<void> {
    return this.call(() => this.remote.setGates(src));
  }

  sharingSavings(sharing: SharingMap | Record<string, number> | null): Promise<SharingSavings> {
    return this.call(() => this.remote.sharingSavings(sharing));
  }

  setSnapshotListener(listener: ((s: CacheSnapshot) => void) | null, options?: SnapshotOptions): Promise<void> {
    return this.call(() => this.remote.setSnapshotListener(listener ? proxy(listener) : null, options));
  }

  simulateDeviceLoss(): Promise<void> {
    return this.call(() => this.remote.simulateDeviceLoss());
  }

  async unload(): Promise<void> {
    if (this.dead) return;
    await this.call(() => this.remote.unload());
  }

  /** Ends the worker (after `unload`); later calls reject. */
  terminate(): void {
    this.remote[releaseProxy]();
    this.endpoint.terminate?.();
    this.fail(new KvscopeError('engine-not-loaded', 'The engine was unloaded.'));
  }
}
