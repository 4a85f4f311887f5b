/**
 * The engine's Web Worker: loads the model, runs prefill and decode, and posts text,
 * progress and cache snapshots back to the page through comlink. The page talks to it with
 * `WorkerBackend` (src/api/worker-backend.ts), which `createEngine()` uses by default.
 */
import { expose } from 'comlink';
import { WorkerHost } from '../src/api/worker-host';

expose(new WorkerHost());
