// Inlined as a blob: URL in the library build, so bundlers of apps that embed kvscope need no worker setup.
import EngineWorker from '../../workers/engine.worker.ts?worker&inline';

/** Starts the engine worker (workers/engine.worker.ts). */
export function spawnEngineWorker(): Worker {
  return new EngineWorker({ name: 'kvscope-engine' });
}
