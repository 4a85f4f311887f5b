/**
 * Next-token distribution comparisons on the CPU, in float64: the GPU's f32 logits are
 * widened before the softmax so that tiny divergences are not lost to rounding.
 */
import { InvalidArgumentError } from '../errors';

/** log softmax in float64 (max-subtracted). -Infinity logits get probability 0. */
export function logSoftmax64(logits: ArrayLike<number>): Float64Array {
  const n = logits.length;
  if (n === 0) throw new InvalidArgumentError('logSoftmax64 needs at least one logit.');
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = logits[i]!;
    if (Number.isNaN(v) || v === Infinity) throw new InvalidArgumentError(`logit ${i} is ${v}; logits must be finite or -Infinity.`);
    if (v > max) max = v;
  }
  if (max === -Infinity) throw new InvalidArgumentError('every logit is -Infinity.');
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[i]! - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = logits[i]! - lse;
  return out;
}

/**
 * KL(p || q) in nats, where p = softmax(pLogits) (the reference, e.g. the full cache) and
 * q = softmax(qLogits) (the compressed cache). Terms with p_i = 0 contribute 0; p_i > 0 with
 * q_i = 0 gives Infinity.
 */
export function klDivergence(pLogits: ArrayLike<number>, qLogits: ArrayLike<number>): number {
  if (pLogits.length !== qLogits.length) throw new InvalidArgumentError(`KL needs equal vocabularies, got ${pLogits.length} and ${qLogits.length} logits.`);
  const lp = logSoftmax64(pLogits);
  const lq = logSoftmax64(qLogits);
  let kl = 0;
  for (let i = 0; i < lp.length; i++) {
    const p = Math.exp(lp[i]!);
    if (p === 0) continue;
    kl += p * (lp[i]! - lq[i]!);
  }
  // Rounding can leave a tiny negative value for identical-up-to-rounding inputs.
  return Math.max(0, kl);
}
