import { expect } from 'vitest';
import { EvalSpecError } from '../../src/eval/spec';

/** Runs `f`, expects it to throw an EvalSpecError, and returns that error (for its code and message). */
export function specErrorOf(f: () => unknown): EvalSpecError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(EvalSpecError);
    return e as EvalSpecError;
  }
  throw new Error('expected an EvalSpecError');
}
