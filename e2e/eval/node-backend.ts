/**
 * Node + Dawn back end: one GPU device, one engine per (model, context) whose policy is
 * switched per variant with setPolicy (a fresh cache at the variant's bound, weights stay
 * uploaded), reused across the variant's samples with a reset between them.
 */
import { resolve } from 'node:path';
import { Engine } from '../../src/engine/engine';
import { Gpu } from '../../src/gpu/device';
import type { LoadedModel } from '../../src/model/weights';
import { runOnEngine } from '../../src/eval/engine-run';
import { attentionLoss } from '../../src/metrics/attention-loss';
import type { Backend, VariantSession } from '../../src/eval/runner';
import type { EvalCase } from '../../src/eval/spec';

export class NodeBackend implements Backend {
  readonly name = 'node';
  private gpu: Gpu | undefined;
  private engine: { key: string; engine: Engine } | undefined;

  constructor(private root: string, private loadModel: (c: EvalCase) => Promise<LoadedModel>) {}

  async open(first: EvalCase): Promise<VariantSession> {
    // Gate weights are loaded with the engine; a sharing map is switched like the policy.
    const gates = first.gates ? resolve(this.root, first.gates) : undefined;
    const sharing = first.sharing ?? undefined;
    const key = `${resolve(this.root, first.model.path)}@${first.contextLength}/${first.prefillChunk}/${gates ?? ''}`;
    if (this.engine && (this.engine.key !== key || this.engine.engine.gpu.lost)) {
      this.engine.engine.unload();
      this.engine = undefined;
    }
    if (!this.gpu || this.gpu.lost) this.gpu = await Gpu.create();
    if (!this.engine) {
      const model = await this.loadModel(first);
      const engine = await Engine.load({ model, gpu: this.gpu, contextLength: first.contextLength, prefillChunk: first.prefillChunk, policy: first.policy, gates, sharing });
      this.engine = { key, engine };
    } else {
      this.engine.engine.setSharing(sharing);
      this.engine.engine.setPolicy(first.policy);
    }
    const engine = this.engine.engine;
    let broken = false;
    let inFlight: Promise<unknown> | undefined;
    let running = false;
    return {
      run: async (prompt, c, signal) => {
        const p = (async () => {
          const out = await runOnEngine(engine, prompt.ids, prompt.maxTokens, signal);
          if (c.metrics.includes('attentionLoss')) {
            // Teacher-forces the generated tokens after the prompt in an oracle (full attention)
            // and a compressed engine of this variant; null when nothing was generated.
            out.attentionLoss = out.ids.length === 0 ? null : (await attentionLoss({
              model: await this.loadModel(c), gpu: this.gpu!, contextLength: c.contextLength, prefillChunk: c.prefillChunk,
              policy: c.policy, gates, sharing, prompt: prompt.ids, continuation: out.ids,
            })).mean;
          }
          return out;
        })();
        running = true;
        inFlight = p.catch(() => undefined).finally(() => (running = false));
        try {
          return await p;
        } catch (e) {
          broken = true;
          throw e;
        }
      },
      close: async () => {
        // A session closed mid-run (timeout) or after a failure holds an engine in an unknown
        // state: stop handing it out now, and unload it once its generation has stopped.
        if ((broken || running) && this.engine?.engine === engine) {
          this.engine = undefined;
          await inFlight;
          try {
            engine.unload();
          } catch {
            /* the device may be gone already */
          }
        }
      },
    };
  }

  async close(): Promise<void> {
    this.engine?.engine.unload();
    this.engine = undefined;
    this.gpu?.destroy();
    this.gpu = undefined;
  }
}
