import { describe, expect, it } from 'vitest';
import { expandSpec, validateSpec } from '../../src/eval/spec';
import { specErrorOf } from './spec-error';
import { readSpec, resolveSpecFiles } from '../../e2e/eval/harness';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const spec = (policies: unknown[]): Record<string, unknown> => ({
  name: 't',
  models: [{ id: 'm', path: 'models/kvscope-tiny/hf' }],
  tasks: [{ task: 'passkey', contextLength: 512, depths: [0.5], samples: 2, seed: 1 }],
  policies,
  budgets: ['1/8', '1/4'],
});

const err = specErrorOf;

describe('eval spec: learned policies and sharing', () => {
  it('reads a shipped role map into the head-roles policy, labelled by its file', () => {
    const s = resolveSpecFiles(validateSpec(spec([{ name: 'head-roles', roles: 'models/kvscope-tiny/head-roles/prulong.json' }])));
    const cases = expandSpec(s);
    expect(cases.length).toBe(2 * 2);
    const c = cases.find((x) => x.budgetFraction === 0.125)!;
    expect(c.policyLabel).toBe('head-roles[prulong]');
    expect(c.id).toBe('m/passkey@512/d0.5/s1/head-roles[prulong]/f0.125');
    // 4 layers x 2 KV heads of 0/1 roles, at least one of each; the budget applies to streaming heads
    expect(c.policy.roles!.length).toBe(4);
    expect(c.policy.roles!.flat().every((r) => r === 0 || r === 1)).toBe(true);
    expect(c.budget).toBe(64);
    expect(Number(c.policy.params!.sinks) + Number(c.policy.params!.window)).toBe(64);
    expect(c.gates).toBeNull();
    expect(c.sharing).toBeNull();
  });

  it('runs an Attention-Gate once, whatever the budgets, with its weights path', () => {
    const s = resolveSpecFiles(validateSpec(spec([{ name: 'attention-gate', gates: 'models/kvscope-tiny/gates/gate-50.safetensors' }])));
    const cases = expandSpec(s);
    expect(cases.map((c) => [c.policyLabel, c.budgetFraction, c.gates])).toEqual([
      ['attention-gate[gate-50]', 1, 'models/kvscope-tiny/gates/gate-50.safetensors'],
      ['attention-gate[gate-50]', 1, 'models/kvscope-tiny/gates/gate-50.safetensors'],
    ]);
  });

  it('reads a sharing map file (calibration output) or takes one inline, with any policy', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvscope-spec-'));
    const file = join(dir, 'share-2.json');
    writeFileSync(file, JSON.stringify({ map: { 2: 1, 3: 0 }, model: { numLayers: 4, numKvHeads: 2, headDim: 32 } }));
    const s = resolveSpecFiles(validateSpec(spec([{ name: 'streaming', sharing: file }, { name: 'full', sharing: { 3: 2 } }])));
    const cases = expandSpec(s);
    const st = cases.filter((c) => c.policy.name === 'streaming');
    expect(st.length).toBe(4);
    expect(st[0]!.policyLabel).toBe('streaming+share[share-2]');
    expect(st[0]!.sharing).toEqual({ 2: 1, 3: 0 });
    const full = cases.filter((c) => c.policy.name === 'full');
    expect(full.map((c) => [c.policyLabel, c.sharing])).toEqual([['full+share1', { 3: 2 }], ['full+share1', { 3: 2 }]]);
  });

  it('rejects learned policies without their inputs, inputs on the wrong policy, and unreadable files', () => {
    expect(err(() => validateSpec(spec(['head-roles']))).message).toMatch(/needs roles/);
    expect(err(() => validateSpec(spec(['attention-gate']))).message).toMatch(/needs gates/);
    expect(err(() => validateSpec(spec([{ name: 'streaming', roles: [[1, 0]] }]))).message).toMatch(/only role policies/);
    expect(err(() => validateSpec(spec([{ name: 'h2o', gates: 'x.safetensors' }]))).message).toMatch(/only gate policies/);
    expect(err(() => validateSpec(spec([{ name: 'head-roles', roles: [[2, 0]] }]))).message).toMatch(/0 \(streaming\)/);
    expect(err(() => resolveSpecFiles(validateSpec(spec([{ name: 'head-roles', roles: 'models/none.json' }])))).message).toMatch(/cannot read the role map/);
    expect(err(() => resolveSpecFiles(validateSpec(spec([{ name: 'attention-gate', gates: 'models/none.safetensors' }])))).message).toMatch(/not found/);
    // an unresolved file path cannot reach the back ends
    expect(err(() => expandSpec(validateSpec(spec([{ name: 'full', sharing: 'some.json' }])))).message).toMatch(/was not read/);
  });

  it('the shipped learned spec reads', () => {
    const s = readSpec('e2e/eval/learned.json');
    expect(expandSpec(s).length).toBeGreaterThan(0);
  });
});
