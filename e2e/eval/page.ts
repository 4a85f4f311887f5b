/**
 * The browser back end's page: loads the engine in Chromium (WebGPU) and runs prepared
 * prompts with the same code as the Node back end (src/eval/engine-run.ts). Playwright
 * drives it through `window.kvscopeEval`.
 */
import { Engine } from '../../src/engine/engine';
import type { PolicySpec } from '../../src/kv/types';
import { runOnEngine } from '../../src/eval/engine-run';
import type { CaseOutput } from '../../src/eval/runner';

export interface EvalPageApi {
  open(modelUrl: string, contextLength: number, prefillChunk: number, policy: PolicySpec, gatesUrl?: string | null, sharing?: Record<string, number> | null): Promise<void>;
  run(ids: number[], maxTokens: number): Promise<CaseOutput>;
}

let engine: Engine | undefined;

const api: EvalPageApi = {
  async open(modelUrl, contextLength, prefillChunk, policy, gatesUrl, sharing) {
    engine?.unload();
    engine = undefined;
    engine = await Engine.load({
      model: new URL(modelUrl, location.href), contextLength, prefillChunk, policy,
      ...(gatesUrl ? { gates: new URL(gatesUrl, location.href) } : {}), ...(sharing ? { sharing } : {}),
    });
  },
  async run(ids, maxTokens) {
    if (!engine) throw new Error('open() first');
    return runOnEngine(engine, ids, maxTokens);
  },
};

(window as unknown as { kvscopeEval: EvalPageApi }).kvscopeEval = api;
document.getElementById('status')!.textContent = 'ready';
