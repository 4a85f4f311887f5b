import { describe, expect, it } from 'vitest';
import { SCORERS, allWordsMatch, exactMatch, numberMatch, prefixMatch, sequenceAccuracy } from '../../src/eval/scorers';

describe('eval scorers', () => {
  it('number match finds the whole number, not a digit run containing it', () => {
    expect(numberMatch(' 12345.', ' 12345')).toBe(1);
    expect(numberMatch('It is 12345', ' 12345')).toBe(1);
    expect(numberMatch(' 123456', ' 12345')).toBe(0);
    expect(numberMatch(' 912345', ' 12345')).toBe(0);
    expect(numberMatch(' 12354', ' 12345')).toBe(0);
    expect(numberMatch('', ' 12345')).toBe(0);
  });
  it('all-words gives the fraction of variables named', () => {
    expect(allWordsMatch(' ABC DEF GHI', ' ABC DEF GHI')).toBe(1);
    expect(allWordsMatch(' GHI, ABC', ' ABC DEF GHI JKL')).toBe(0.5);
    expect(allWordsMatch(' ABCD', ' ABC')).toBe(0);
  });
  it('sequence accuracy compares codes by position', () => {
    expect(sequenceAccuracy(' 123 456 789', ' 123 456 789')).toBe(1);
    expect(sequenceAccuracy(' 123 999 789', ' 123 456 789')).toBeCloseTo(2 / 3);
  });
  it('prefix and exact match', () => {
    expect(prefixMatch(' The  cat sat. And more', ' The cat sat.')).toBe(1);
    expect(prefixMatch(' The dog', ' The cat sat.')).toBe(0);
    expect(exactMatch(' 42\n', ' 42')).toBe(1);
    expect(exactMatch(' x 42', ' 42')).toBe(0);
  });
  it('every task has a scorer', () => {
    expect(Object.keys(SCORERS).sort()).toEqual(['copy', 'kvrecall', 'niah', 'passkey', 'recurrence', 'vartrack']);
  });
});
