/**
 * training/graft.py: only the entries a new mech_init option sets (values that differ between the two
 * starting points, or entries only the new one pins) move into the trained checkpoint; the rest keep their
 * trained values, and the pin masks become the union. Needs Debian's PyTorch (skipped without it).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const PY = process.env['KVSCOPE_PYTHON'] ?? '/usr/bin/python3';
const root = join(__dirname, '..');
const hasTorch = spawnSync(PY, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;

describe.skipIf(!hasTorch)('training/graft.py', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvscope-graft-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const py = (code: string) => {
    const r = spawnSync(PY, ['-c', code], { cwd: root, encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
    return { status: r.status, out: r.stdout, err: r.stderr };
  };
  // old init: w = 0 (entry [0,0] pinned); new init: the same plus [1,1] = 2 (pinned) and [2,2] pinned at its old
  // value 0; b the same in both. The trained checkpoint: every entry 5, its pins those of the old init.
  const setup = `
import torch
d = ${JSON.stringify(dir)}
w = torch.zeros(3, 3); b = torch.zeros(4)
p = torch.zeros(3, 3, dtype=torch.bool); p[0, 0] = True
torch.save({"model": {"w": w, "b": b}, "pin": {"w": p}}, d + "/old.pt")
w2 = w.clone(); w2[1, 1] = 2.0
p2 = p.clone(); p2[1, 1] = True; p2[2, 2] = True
torch.save({"model": {"w": w2, "b": b.clone()}, "pin": {"w": p2, "b": torch.zeros(4, dtype=torch.bool)}}, d + "/new.pt")
torch.save({"model": {"w": torch.full((3, 3), 5.0), "b": torch.full((4,), 5.0)}, "pin": {"w": p.clone()}, "step": 7}, d + "/ck.pt")
torch.save({"model": {"w": torch.full((3, 2), 5.0), "b": torch.full((4,), 5.0)}}, d + "/bad.pt")
`;

  it('copies exactly the changed or newly pinned entries and unions the pins', () => {
    expect(py(setup).status).toBe(0);
    const g = spawnSync(PY, ['training/graft.py', `${dir}/ck.pt`, `${dir}/old.pt`, `${dir}/new.pt`, `${dir}/out.pt`], { cwd: root, encoding: 'utf8' });
    expect(g.status, g.stderr).toBe(0);
    expect(g.stdout).toContain('w: 2 entries grafted');
    expect(g.stdout).not.toContain('b:');
    const r = py(`
import json, torch
c = torch.load(${JSON.stringify(dir + '/out.pt')})
print(json.dumps({"w": c["model"]["w"].tolist(), "b": c["model"]["b"].tolist(),
                  "pin": c["pin"]["w"].int().tolist(), "step": c["step"]}))`);
    expect(r.status, r.err).toBe(0);
    const out = JSON.parse(r.out) as { w: number[][]; b: number[]; pin: number[][]; step: number };
    expect(out.w).toEqual([[5, 5, 5], [5, 2, 5], [5, 5, 0]]);
    expect(out.b).toEqual([5, 5, 5, 5]);
    expect(out.pin).toEqual([[1, 0, 0], [0, 1, 0], [0, 0, 1]]);
    expect(out.step).toBe(7);
  });

  it('refuses a checkpoint whose tensors do not match the starting points', () => {
    expect(py(setup).status).toBe(0);
    const g = spawnSync(PY, ['training/graft.py', `${dir}/bad.pt`, `${dir}/old.pt`, `${dir}/new.pt`, `${dir}/out2.pt`], { cwd: root, encoding: 'utf8' });
    expect(g.status).not.toBe(0);
    expect(g.stderr).toMatch(/w: checkpoint shape \(3, 2\) != new init \(3, 3\)/);
  });
});
