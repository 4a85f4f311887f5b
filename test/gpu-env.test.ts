import { afterEach, describe, expect, it, vi } from 'vitest';
import { InvalidArgumentError } from '../src/errors';
import { Gpu } from '../src/gpu/device';

describe('KVSCOPE_KERNELS picks the kernel set in Node when Gpu.create is not told', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('gpu / cpu force a set; an explicit option wins; a bad value is a typed error', async () => {
    // This machine's adapter is SwiftShader: 'auto' gives the CPU set.
    const auto = await Gpu.create();
    expect(auto.cpuAdapter).toBe(true);
    auto.destroy();
    vi.stubEnv('KVSCOPE_KERNELS', 'gpu');
    const g = await Gpu.create();
    expect(g.cpuAdapter).toBe(false);
    g.destroy();
    const c = await Gpu.create({ kernels: 'cpu' });
    expect(c.cpuAdapter).toBe(true);
    c.destroy();
    vi.stubEnv('KVSCOPE_KERNELS', 'fast');
    await expect(Gpu.create()).rejects.toThrow(InvalidArgumentError);
    await expect(Gpu.create()).rejects.toThrow(/KVSCOPE_KERNELS must be auto, cpu or gpu/);
  });
});
