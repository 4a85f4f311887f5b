/**
 * Attention loss (methods.md, "Other quality proxies"): at each decode step, the attention
 * mass that the full-cache model's current query puts on positions the compressed cache no
 * longer holds; averaged over steps, layers and KV heads.
 *
 * The oracle is an engine running `tova` with budget = context. Such a cache never evicts
 * (its select keeps everything while length <= budget), so its attention is exactly full
 * attention, and TOVA's per-entry statistic `a` is, by its contract (src/kv/policies/tova.ts,
 * shaders/kv_policy.wgsl MASS with LAST_ROW_ONLY), the attention probability the latest
 * query gives the entry, averaged over the KV group's query heads. Reading that buffer after
 * each step gives the full attention per (layer, KV head, position) with no extra kernel.
 * Every step checks that the oracle's masses sum to 1 per (layer, KV head), so a change of
 * TOVA's statistic cannot silently corrupt this metric.
 *
 * "No longer holds" is judged against the compressed cache as the step's query saw it: the
 * entries kept after the previous step plus the step's own token (eviction runs after a step).
 * The oracle runs on the oracle's own hidden states (the full model), as the definition asks.
 */
import type { PolicySpec } from '../kv/types';
import { openPair, type MetricRunOptions } from './pair';

export interface AttentionLossResult {
  /** Mean over decode steps, layers and KV heads of the full-attention mass on evicted positions. */
  mean: number;
  /** Per layer: mean over steps and KV heads. */
  perLayer: number[];
  /** Per (layer, KV head), index layer * numKvHeads + head: mean over steps. */
  perHead: number[];
  /** Per decode step: mean over layers and KV heads. */
  perStep: number[];
}

/** Oracle masses must sum to 1 per (layer, KV head) within this (f32 sums over <= context entries). */
const MASS_SUM_TOLERANCE = 1e-3;

export function oracleSpec(contextLength: number): PolicySpec {
  return { name: 'tova', budget: contextLength };
}

export async function attentionLoss(opts: MetricRunOptions): Promise<AttentionLossResult> {
  const pair = await openPair(opts, oracleSpec(opts.contextLength));
  try {
    const { gpu, reference: oracle, compressed } = pair;
    const { numLayers: L, numKvHeads: nKV } = oracle.config;
    await pair.prefill();
    const lossSum = new Float64Array(L * nKV);
    const perStep: number[] = [];
    const held = new Uint8Array(opts.contextLength);
    let t = opts.prompt.length;
    for (const token of opts.continuation) {
      const before = await compressed.snapshot(true);
      await compressed.forwardStep([token]);
      await oracle.forwardStep([token]);
      const snap = await oracle.snapshot(true);
      let stepSum = 0;
      for (let l = 0; l < L; l++) {
        const cap = snap.capacity[l * nKV]!;
        const stats = await gpu.readF32(oracle.model.cache.layers[l]!.stats, nKV * cap * 2);
        for (let h = 0; h < nKV; h++) {
          const i = l * nKV + h;
          const kept = before.positions![i]!;
          for (const p of kept) held[p] = 1;
          held[t] = 1;
          const live = snap.live[i]!;
          const positions = snap.positions![i]!;
          let total = 0;
          let lost = 0;
          for (let j = 0; j < live; j++) {
            const a = stats[(h * cap + j) * 2]!;
            total += a;
            if (!held[positions[j]!]) lost += a;
          }
          for (const p of kept) held[p] = 0;
          held[t] = 0;
          if (live !== t + 1 || Math.abs(total - 1) > MASS_SUM_TOLERANCE) {
            throw new Error(`attention-loss oracle broken at layer ${l}, head ${h}, position ${t}: ${live} live entries (want ${t + 1}), masses sum to ${total} (want 1); tova's statistic must be the latest query's attention.`);
          }
          lossSum[i] += lost;
          stepSum += lost;
        }
      }
      perStep.push(stepSum / (L * nKV));
      t++;
    }
    const steps = opts.continuation.length;
    const perHead = Array.from(lossSum, (s) => s / steps);
    const perLayer = Array.from({ length: L }, (_, l) => perHead.slice(l * nKV, (l + 1) * nKV).reduce((a, b) => a + b, 0) / nKV);
    return { mean: perLayer.reduce((a, b) => a + b, 0) / L, perLayer, perHead, perStep };
  } finally {
    pair.close();
  }
}
