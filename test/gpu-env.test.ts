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

describe('KVSCOPE_WEIGHT_LAYOUT picks the projection layout in Node when Gpu.create is not told', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it("auto is 'kn' on llvmpipe / lavapipe, else 'nk'; kn / nk force it; an explicit option wins; a bad value is a typed error", async () => {
    vi.stubEnv('KVSCOPE_WEIGHT_LAYOUT', '');
    const auto = await Gpu.create();
    const lavapipe = /llvmpipe|lavapipe/i.test(`${auto.adapterInfo.device} ${auto.adapterInfo.description}`);
    expect(auto.weightLayout).toBe(lavapipe ? 'kn' : 'nk');
    auto.destroy();
    vi.stubEnv('KVSCOPE_WEIGHT_LAYOUT', 'kn');
    const kn = await Gpu.create();
    expect(kn.weightLayout).toBe('kn');
    kn.destroy();
    const nk = await Gpu.create({ weightLayout: 'nk' });
    expect(nk.weightLayout).toBe('nk');
    nk.destroy();
    vi.stubEnv('KVSCOPE_WEIGHT_LAYOUT', 'transposed');
    await expect(Gpu.create()).rejects.toThrow(/KVSCOPE_WEIGHT_LAYOUT must be auto, nk or kn/);
    vi.unstubAllEnvs();
    await expect(Gpu.create({ weightLayout: 'tn' as 'kn' })).rejects.toThrow(InvalidArgumentError);
  });
});
