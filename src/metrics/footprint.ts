/**
 * KV footprint bookkeeping of methods.md §5 ("Cache Me If You Can", 2506.17121), on the CPU:
 * the full-cache normaliser under a given chunking, a footprint from live counts, and the
 * critical footprint of a score-vs-footprint table.
 *
 * A "query step" is one forward step: a prefill chunk of C tokens or a single decode token.
 * Every query row of a step sees the entries alive during that step, i.e. the entries kept
 * before the step plus the step's own rows (eviction runs after the step). This matches the
 * GPU accounting in shaders/kv_commit.wgsl: acct += rows * (length + rows).
 */
import { InvalidArgumentError } from '../errors';

/** Rows per query step: `promptTokens` prefilled in chunks of `chunk`, then `decodeSteps` single-token steps. */
export function querySteps(promptTokens: number, chunk: number, decodeSteps: number): number[] {
  for (const [name, v, min] of [['promptTokens', promptTokens, 0], ['chunk', chunk, 1], ['decodeSteps', decodeSteps, 0]] as const) {
    if (!Number.isInteger(v) || v < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got ${v}.`);
  }
  const steps: number[] = [];
  for (let s = 0; s < promptTokens; s += chunk) steps.push(Math.min(chunk, promptTokens - s));
  for (let i = 0; i < decodeSteps; i++) steps.push(1);
  return steps;
}

function checkRows(rows: readonly number[]): void {
  rows.forEach((r, i) => {
    if (!Number.isInteger(r) || r < 1) throw new InvalidArgumentError(`step ${i} has ${r} rows; rows must be positive integers.`);
  });
}

/**
 * The full cache's footprint under a chunking: Σ_s rows_s · (tokens seen through step s).
 * With one token per step this is T(T+1)/2.
 */
export function fullCacheFootprint(rows: readonly number[]): number {
  checkRows(rows);
  let tokens = 0;
  let sum = 0;
  for (const r of rows) {
    tokens += r;
    sum += r * tokens;
  }
  return sum;
}

/**
 * KV footprint relative to the full cache: Σ_s rows_s · live_s / fullCacheFootprint(rows),
 * where live_s is the number of entries alive during step s (kept before it + its rows).
 */
export function kvFootprint(rows: readonly number[], live: readonly number[]): number {
  if (rows.length !== live.length) throw new InvalidArgumentError(`kvFootprint needs one live count per step (${rows.length} steps, ${live.length} counts).`);
  const full = fullCacheFootprint(rows);
  let sum = 0;
  let tokens = 0;
  rows.forEach((r, i) => {
    tokens += r;
    const n = live[i]!;
    if (!(n >= 0 && n <= tokens)) throw new InvalidArgumentError(`step ${i}: ${n} live entries, but only ${tokens} tokens were seen.`);
    sum += r * n;
  });
  return full > 0 ? sum / full : 0;
}

export interface FootprintPoint {
  /** KV footprint relative to the full cache (kvFootprint), in (0, 1]. */
  footprint: number;
  /** Task score at that footprint (higher is better). */
  score: number;
}

/**
 * Critical footprint: the smallest footprint among `points` whose score is at least
 * `fraction` (default 0.9) of the full cache's score; null when no point reaches it.
 * It takes the measured points as they are (no interpolation, no monotone smoothing), so a
 * noisy table can give a lucky low point: evaluate enough samples per point.
 */
export function criticalFootprint(points: readonly FootprintPoint[], fullScore: number, fraction = 0.9): number | null {
  if (!Number.isFinite(fullScore) || fullScore <= 0) throw new InvalidArgumentError(`fullScore must be a positive number (a fraction of it is the bar), got ${fullScore}.`);
  if (!(fraction > 0 && fraction <= 1)) throw new InvalidArgumentError(`fraction must be in (0, 1], got ${fraction}.`);
  const bar = fraction * fullScore;
  let best: number | null = null;
  for (const p of points) {
    if (!Number.isFinite(p.footprint) || p.footprint < 0 || !Number.isFinite(p.score)) {
      throw new InvalidArgumentError(`bad point (footprint ${p.footprint}, score ${p.score}): both must be finite, footprint >= 0.`);
    }
    if (p.score >= bar && (best === null || p.footprint < best)) best = p.footprint;
  }
  return best;
}
