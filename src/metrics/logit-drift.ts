/**
 * Logit drift (methods.md, "Other quality proxies"): KL(reference || compressed) of the
 * next-token distributions of two caches fed the same text, teacher-forced (both see the
 * given tokens, never their own samples), softmax in float64 on the CPU.
 */
import type { PolicySpec } from '../kv/types';
import { klDivergence } from './kl';
import { openPair, type MetricRunOptions } from './pair';

export interface LogitDriftOptions extends MetricRunOptions {
  /** The reference cache (default `{ name: 'full' }`). */
  reference?: PolicySpec;
}

export interface LogitDriftResult {
  /** Mean of perStep (nats). */
  mean: number;
  max: number;
  /** KL after feeding continuation[i] (the distribution of the token that follows it). */
  perStep: number[];
  /** KL of the distributions after the last prompt chunk (predicting continuation[0]); undefined without a prompt. */
  afterPrompt: number | undefined;
}

export async function logitDrift(opts: LogitDriftOptions): Promise<LogitDriftResult> {
  const pair = await openPair(opts, opts.reference ?? { name: 'full' });
  try {
    const last = await pair.prefill();
    const afterPrompt = last ? klDivergence(last.reference, last.compressed) : undefined;
    const perStep: number[] = [];
    for (const token of opts.continuation) {
      const p = await pair.reference.forwardStep([token]);
      const q = await pair.compressed.forwardStep([token]);
      perStep.push(klDivergence(p, q));
    }
    return { mean: perStep.reduce((a, b) => a + b, 0) / perStep.length, max: Math.max(...perStep), perStep, afterPrompt };
  } finally {
    pair.close();
  }
}
