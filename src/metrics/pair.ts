/**
 * Shared plumbing of the quality metrics: two engines (a reference and a compressed one) on
 * one device, fed the same tokens in the same steps.
 */
import { Gpu } from '../gpu/device';
import { Engine, type EngineOptions } from '../engine/engine';
import type { LoadedModel } from '../model/weights';
import type { PolicySpec } from '../kv/types';
import { ContextOverflowError, InvalidArgumentError } from '../errors';

export interface MetricRunOptions {
  model: LoadedModel;
  /** Device to use; when omitted one is created and destroyed at the end. */
  gpu?: Gpu;
  contextLength: number;
  /** Prefill chunk (default 128): the prompt is fed in chunks of this size; the policy acts after each. */
  prefillChunk?: number;
  /** The compressed cache's policy. */
  policy: PolicySpec;
  /** The compressed engine's Attention-Gate weights (for the attention-gate policy). */
  gates?: EngineOptions['gates'];
  /** The compressed engine's KVSharer map. */
  sharing?: EngineOptions['sharing'];
  /** Tokens prefilled in chunks before measuring (may be empty: decode only). */
  prompt: readonly number[];
  /** Tokens fed one decode step each; the metric is taken at every one of them. */
  continuation: readonly number[];
}

export interface EnginePair {
  gpu: Gpu;
  reference: Engine;
  compressed: Engine;
  /** Feeds the prompt to both engines in chunks; returns the logits after the last chunk of each. */
  prefill(): Promise<{ reference: Float32Array; compressed: Float32Array } | undefined>;
  close(): void;
}

export async function openPair(opts: MetricRunOptions, referencePolicy: PolicySpec): Promise<EnginePair> {
  const chunk = opts.prefillChunk ?? 128;
  if (opts.continuation.length === 0) throw new InvalidArgumentError('continuation must hold at least one token (the metric is taken at decode steps).');
  const total = opts.prompt.length + opts.continuation.length;
  if (total > opts.contextLength) throw new ContextOverflowError(`prompt + continuation (${total} tokens) exceed the context of ${opts.contextLength}.`);
  const ownGpu = !opts.gpu;
  const gpu = opts.gpu ?? (await Gpu.create());
  const engines: Engine[] = [];
  const close = () => {
    for (const e of engines) e.unload();
    if (ownGpu) gpu.destroy();
  };
  try {
    const common = { model: opts.model, gpu, contextLength: opts.contextLength, prefillChunk: chunk };
    engines.push(await Engine.load({ ...common, policy: referencePolicy }));
    engines.push(await Engine.load({ ...common, policy: opts.policy, gates: opts.gates, sharing: opts.sharing }));
  } catch (e) {
    close();
    throw e;
  }
  const [reference, compressed] = engines as [Engine, Engine];
  return {
    gpu,
    reference,
    compressed,
    async prefill() {
      let last: { reference: Float32Array; compressed: Float32Array } | undefined;
      for (let s = 0; s < opts.prompt.length; s += reference.prefillChunk) {
        const piece = opts.prompt.slice(s, s + reference.prefillChunk);
        last = { reference: await reference.forwardStep(piece), compressed: await compressed.forwardStep(piece) };
      }
      return last;
    },
    close,
  };
}
