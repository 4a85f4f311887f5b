import { describe, expect, it } from 'vitest';
import { EvalSpecError, expandSpec, hashId, parseFraction, parseShard, shardCases, validateSpec, type EvalSpec } from '../../src/eval/spec';
import { listPolicies } from '../../src/kv/policies/registry';
import { specErrorOf } from './spec-error';

const base = (): Record<string, unknown> => ({
  name: 't',
  models: [{ id: 'm', path: 'models/m' }],
  tasks: [{ task: 'passkey', contextLength: 1024, depths: [0.1, 0.5, 0.9], samples: 4, seed: 100 }],
  policies: ['full', 'streaming', 'lagkv', { name: 'h2o', params: { window: 8 } }],
  budgets: ['1/8', '1/4', 0.5],
});

function specError(raw: unknown): EvalSpecError {
  return specErrorOf(() => expandSpec(validateSpec(raw)));
}

describe('eval spec', () => {
  it('expands models x tasks x policies x budgets x samples with stable, unique ids', () => {
    const cases = expandSpec(validateSpec(base()));
    // full once, three budget policies/ratio policy at 3 budgets: (1 + 3 * 3) variants x 4 samples.
    expect(cases.length).toBe((1 + 3 * 3) * 4);
    expect(new Set(cases.map((c) => c.id)).size).toBe(cases.length);
    expect(cases[0]!.id).toBe('m/passkey@1024/d0.1/s100/full/f1');
    // The same spec gives the same ids in the same order; ids do not depend on list position.
    expect(expandSpec(validateSpec(base())).map((c) => c.id)).toEqual(cases.map((c) => c.id));
    const reordered = { ...base(), policies: ['lagkv', 'full', { name: 'h2o', params: { window: 8 } }, 'streaming'] };
    expect(new Set(expandSpec(validateSpec(reordered)).map((c) => c.id))).toEqual(new Set(cases.map((c) => c.id)));
  });

  it('turns budget fractions into entries, and into the ratio of ratio policies', () => {
    const cases = expandSpec(validateSpec(base()));
    const s = cases.filter((c) => c.policy.name === 'streaming' && c.seed === 100);
    expect(s.map((c) => [c.budgetFraction, c.budget, c.policy.budget])).toEqual([[0.125, 128, 128], [0.25, 256, 256], [0.5, 512, 512]]);
    const l = cases.filter((c) => c.policy.name === 'lagkv' && c.seed === 100);
    expect(l.map((c) => [c.budget, c.policy.budget, c.policy.params?.ratio])).toEqual([[null, undefined, 0.125], [null, undefined, 0.25], [null, undefined, 0.5]]);
    const h = cases.find((c) => c.policy.name === 'h2o')!;
    expect(h.policy.params).toEqual({ window: 8 });
    const f = cases.filter((c) => c.policy.name === 'full');
    expect(new Set(f.map((c) => c.budgetFraction))).toEqual(new Set([1]));
    // depth cycles through the list, seeds count up.
    expect(f.map((c) => [c.depth, c.seed])).toEqual([[0.1, 100], [0.5, 101], [0.9, 102], [0.1, 103]]);
  });

  it('"all" means every registered policy that needs no trained inputs (the learned ones are listed explicitly)', () => {
    const cases = expandSpec(validateSpec({ ...base(), policies: 'all' }));
    const learned = new Set(['head-roles', 'attention-gate']);
    expect(new Set(cases.map((c) => c.policy.name))).toEqual(new Set(listPolicies().map((p) => p.name).filter((n) => !learned.has(n))));
  });

  it('rejects bad specs with typed errors', () => {
    expect(specError({ ...base(), tasks: [{ ...(base().tasks as object[])[0]!, task: 'nope' }] }).code).toBe('unknown-task');
    expect(specError({ ...base(), policies: ['full', 'nope'] }).code).toBe('unknown-policy');
    expect(specError({ ...base(), budgets: ['3/2'] }).code).toBe('bad-budget');
    expect(specError({ ...base(), budgets: [0] }).code).toBe('bad-budget');
    expect(specError({ ...base(), budgets: ['a lot'] }).code).toBe('bad-budget');
    // 1/64 of 1024 = 16 entries cannot hold h2o's 16-entry window.
    const e = specError({ ...base(), policies: ['h2o'], budgets: ['1/64'] });
    expect(e.code).toBe('bad-budget');
    expect(e.message).toMatch(/h2o/);
    expect(specError({ ...base(), policies: [{ name: 'snapkv', params: { kernel: 99 } }] }).code).toBe('bad-param');
    expect(specError({ ...base(), policies: ['full', 'full'] }).code).toBe('duplicate-case');
    expect(specError({ ...base(), extra: 1 }).code).toBe('bad-spec');
    expect(specError({ ...base(), models: [] }).code).toBe('bad-spec');
    expect(specError({ ...base(), metrics: ['perplexity'] }).code).toBe('bad-spec');
  });

  it('parses fractions and shards', () => {
    expect(parseFraction('1/8', 'x')).toBe(0.125);
    expect(parseFraction(0.25, 'x')).toBe(0.25);
    expect(parseShard('2/4')).toEqual({ index: 2, count: 4 });
    expect(() => parseShard('0/4')).toThrow(EvalSpecError);
    expect(() => parseShard('5/4')).toThrow(EvalSpecError);
  });

  it('shards partition the cases exactly: disjoint, union = all, by id hash', () => {
    const spec: EvalSpec = validateSpec({ ...base(), policies: 'all', tasks: [{ task: 'passkey', contextLength: 1024, depths: [0.5], samples: 7, seed: 1 }] });
    const cases = expandSpec(spec);
    for (const n of [1, 2, 3, 7]) {
      const parts = Array.from({ length: n }, (_, i) => shardCases(cases, { index: i + 1, count: n }));
      const ids = parts.flat().map((c) => c.id);
      expect(ids.length).toBe(cases.length);
      expect(new Set(ids)).toEqual(new Set(cases.map((c) => c.id)));
      parts.forEach((p, i) => p.forEach((c) => expect(hashId(c.id) % n).toBe(i)));
      if (n > 1) expect(parts.every((p) => p.length > 0)).toBe(true);
    }
  });
});
