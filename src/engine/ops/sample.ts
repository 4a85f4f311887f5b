/**
 * Token sampling on the GPU (shaders/sample.wgsl), so a decode step reads back one u32.
 *
 * Semantics (src/reference/sample.ts implements the same in plain TypeScript):
 * - Order: logits are compared by the total order of their f32 bit patterns (-0 < +0).
 *   NaN logits give an unspecified but in-range id.
 * - Greedy (temperature <= 0): the argmax, lowest id on ties.
 * - Otherwise, with m = max logit and invT = f32(min(1 / temperature, f32 max)):
 *   1. Top-k (1 <= topK < vocab): threshold = the k-th largest logit; every token whose logit
 *      is >= the threshold is kept, so ties at the threshold are all kept (as in Hugging
 *      Face's TopKLogitsWarper) and more than k tokens may survive. topK = 1 with a tied
 *      maximum therefore samples among the tied tokens.
 *   2. Weights w_i = exp((logit_i - m) * invT) for kept tokens (f32), Z = sum of w.
 *   3. Top-p (topP < 1 after rounding to f32): keep the tokens whose logit is >= the largest
 *      logit value t such that the mass of {logit >= t} is >= topP * Z: the smallest
 *      high-probability set reaching topP, ties at the cut all kept. Renormalising is
 *      implicit: the draw is relative to the kept mass.
 *   4. Draw: u = hash(seed, step) in [0, 1) (PCG hash, see `samplingUniform` in the
 *      reference), r = u * (kept mass); walk kept tokens in ascending id order adding w and
 *      return the first id at which the running sum exceeds r.
 * The GPU sums in f32 in a fixed order (deterministic for given inputs); the reference sums
 * in f64, so the two can differ only when r, or the top-p target, lies within rounding of a
 * cumulative boundary.
 *
 * Cost: one dispatch of one 256-invocation workgroup; 1 pass over the logits for greedy;
 * otherwise about 3 + 32 (top-k on) + 32 (top-p on) passes over the logits, two barriers each.
 */
import type { Gpu, Op } from '../../gpu/device';
import { InvalidArgumentError } from '../../errors';
import sampleSrc from '../../../shaders/sample.wgsl?raw';

export interface SamplingParams {
  /** <= 0: greedy. Must be finite. */
  temperature: number;
  /** 0: off. Otherwise a positive integer; values >= vocab also mean off. */
  topK: number;
  /** In (0, 1]; 1 means off. */
  topP: number;
  /** An integer in [0, 2^32). */
  seed: number;
}

export interface SampleOp {
  /** Writes params for the next submission; `step` (e.g. absolute position) is mixed into the seed so each step draws a fresh uniform. */
  set(params: SamplingParams, step: number): void;
  /** One or more dispatches, in order, to encode after the LM head. */
  ops: Op[];
  /** Frees the op's uniform and scratch buffers. */
  destroy(): void;
}

const U32_MAX = 0xffffffff;
const F32_MAX = 3.4028234663852886e38;
/** Counts are accumulated in f32 on the GPU, exact below 2^24. */
const MAX_VOCAB = 1 << 24;

function isU32(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= U32_MAX;
}

/** Throws InvalidArgumentError naming the first parameter outside its valid range. */
export function validateSamplingParams(params: SamplingParams, step = 0): void {
  const { temperature, topK, topP, seed } = params;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature)) {
    throw new InvalidArgumentError(`temperature must be a finite number (<= 0 for greedy decoding), got ${temperature}.`);
  }
  if (typeof topK !== 'number' || !Number.isInteger(topK) || topK < 0) {
    throw new InvalidArgumentError(`topK must be 0 (off) or a positive integer, got ${topK}.`);
  }
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) {
    throw new InvalidArgumentError(`topP must be in (0, 1] (1 = off), got ${topP}.`);
  }
  if (typeof seed !== 'number' || !isU32(seed)) {
    throw new InvalidArgumentError(`seed must be an integer in [0, ${U32_MAX}], got ${seed}.`);
  }
  if (typeof step !== 'number' || !isU32(step)) {
    throw new InvalidArgumentError(`step must be an integer in [0, ${U32_MAX}], got ${step}.`);
  }
}

/** 1 / temperature as the kernel uses it: rounded to f32 and clamped to the f32 range. */
export function inverseTemperature(temperature: number): number {
  return Math.fround(Math.min(1 / temperature, F32_MAX));
}

/** logits: f32[vocab] (read-only for you; do not modify), out: u32 buffer; writes the sampled id at out[outIndex]. */
export function sampleOp(gpu: Gpu, logits: GPUBuffer, vocab: number, out: GPUBuffer, outIndex = 0): SampleOp {
  if (!Number.isInteger(vocab) || vocab < 1 || vocab >= MAX_VOCAB) {
    throw new InvalidArgumentError(`vocab must be an integer in [1, ${MAX_VOCAB - 1}], got ${vocab}.`);
  }
  if (logits.size < vocab * 4) {
    throw new InvalidArgumentError(`logits buffer holds ${logits.size} bytes; vocab ${vocab} needs ${vocab * 4}.`);
  }
  if (!Number.isInteger(outIndex) || outIndex < 0 || (outIndex + 1) * 4 > out.size) {
    throw new InvalidArgumentError(
      `outIndex must be an integer in [0, ${Math.floor(out.size / 4) - 1}] for a ${out.size}-byte output buffer, got ${outIndex}.`,
    );
  }
  const data = new ArrayBuffer(32);
  const u32 = new Uint32Array(data);
  const f32 = new Float32Array(data);
  // Until the first set(): greedy, so the op is never run on an all-zero uniform.
  u32[0] = vocab;
  u32[6] = outIndex;
  u32[7] = 1;
  const uniform = gpu.uniform(u32, 'sample.params');
  const weights = gpu.storage(vocab * 4, 'sample.weights');
  const op = gpu.op(sampleSrc, [uniform, logits, weights, out], [1], 'sample');

  return {
    ops: [op],
    set(params: SamplingParams, step: number): void {
      validateSamplingParams(params, step);
      const greedy = params.temperature <= 0;
      u32[0] = vocab;
      u32[1] = params.topK >= vocab ? 0 : params.topK;
      f32[2] = params.topP;
      f32[3] = greedy ? 0 : inverseTemperature(params.temperature);
      u32[4] = params.seed;
      u32[5] = step;
      u32[6] = outIndex;
      u32[7] = greedy ? 1 : 0;
      gpu.write(uniform, u32);
    },
    destroy(): void {
      gpu.destroyBuffer(uniform, 'uniform');
      gpu.destroyBuffer(weights);
    },
  };
}
