/**
 * Scorers, one per task, each returning a score in [0, 1] for a generated output against the
 * expected answer (the generator's `answer`, which starts with a space).
 *
 * - passkey, niah, kvrecall: number match — 1 when the expected number appears in the output
 *   as a whole number (not inside a longer digit run), else 0 (RULER's string match for one
 *   needle, made digit-aware so that "123456" does not count for "2345").
 * - vartrack: RULER's string_match_all — the fraction of the chain's variable names that
 *   appear in the output as whole words.
 * - recurrence: position accuracy — the fraction of expected codes that the output's
 *   whitespace-separated numbers reproduce at the same index.
 * - copy: exact match of the sentence (whitespace-normalised) at the start of the output.
 * `exactMatch` (recorded for every task) is 1 when the trimmed output starts with the trimmed answer.
 */
import type { TaskName } from '../tasks/index';

export type Scorer = (output: string, expected: string) => number;

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export function numberMatch(output: string, expected: string): number {
  const want = expected.trim();
  return new RegExp(`(^|[^0-9])${escape(want)}($|[^0-9])`).test(output) ? 1 : 0;
}

export function allWordsMatch(output: string, expected: string): number {
  const words = expected.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return 0;
  const hit = words.filter((w) => new RegExp(`(^|[^A-Za-z0-9_])${escape(w)}($|[^A-Za-z0-9_])`).test(output)).length;
  return hit / words.length;
}

export function sequenceAccuracy(output: string, expected: string): number {
  const want = expected.trim().split(/\s+/).filter(Boolean);
  const got = output.match(/\d+/g) ?? [];
  if (want.length === 0) return 0;
  return want.filter((w, i) => got[i] === w).length / want.length;
}

export function prefixMatch(output: string, expected: string): number {
  const norm = (s: string) => s.replace(/\s+/g, ' ').trim();
  const want = norm(expected);
  return want.length > 0 && norm(output).startsWith(want) ? 1 : 0;
}

export function exactMatch(output: string, expected: string): number {
  const want = expected.trim();
  return want.length > 0 && output.trim().startsWith(want) ? 1 : 0;
}

export const SCORERS: Record<TaskName, { name: string; score: Scorer }> = {
  passkey: { name: 'number-match', score: numberMatch },
  niah: { name: 'number-match', score: numberMatch },
  kvrecall: { name: 'number-match', score: numberMatch },
  vartrack: { name: 'all-words', score: allWordsMatch },
  recurrence: { name: 'sequence-accuracy', score: sequenceAccuracy },
  copy: { name: 'prefix-match', score: prefixMatch },
};
