import { describe, expect, it } from 'vitest';
import { parseShard } from '../../src/eval/spec';
import { readSpec, selectCases } from '../../e2e/eval/harness';

describe('--subset k (the fixed browser rerun)', () => {
  const spec = readSpec('e2e/eval/quick.json');
  const all = selectCases(spec);

  it('picks about 1/k of the cases, the same ones whatever the shard', () => {
    const sub = selectCases(spec, undefined, 10);
    expect(all.length).toBe(1680);
    expect(sub.length).toBeGreaterThanOrEqual(150);
    expect(sub.length).toBeLessThanOrEqual(186);
    const ids = new Set(sub.map((c) => c.id));
    const fromShards = [1, 2, 3, 4].flatMap((i) => selectCases(spec, parseShard(`${i}/4`), 10));
    expect(fromShards.length).toBe(sub.length);
    expect(fromShards.every((c) => ids.has(c.id))).toBe(true);
  });

  it('spreads the subset over every shard and every task / policy', () => {
    for (const i of [1, 2, 3, 4]) {
      const n = selectCases(spec, parseShard(`${i}/4`), 10).length;
      expect(n).toBeGreaterThanOrEqual(28);
      expect(n).toBeLessThanOrEqual(56);
    }
    const sub = selectCases(spec, undefined, 10);
    for (const t of ['passkey', 'niah-multikey', 'vartrack']) expect(sub.filter((c) => c.taskLabel === t).length).toBeGreaterThanOrEqual(35);
    const policies = new Set(sub.map((c) => c.policy.name));
    expect(policies.size).toBe(10);
  });
});
