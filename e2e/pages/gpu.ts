import { Gpu } from '../../src/gpu/device';

/** What the page reports to the Playwright test (also shown in #result). */
export type GpuPageResult =
  | { ok: true; adapter: { vendor: string; architecture: string }; output: number[] }
  | { ok: false; name: string; code: string | null; message: string };

declare global {
  interface Window {
    kvscopeResult?: GpuPageResult;
  }
}

const KERNEL = /* wgsl */ `
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < arrayLength(&out)) { out[g.x] = a[g.x] * 2.0 + b[g.x]; }
}`;

/** out[i] = 2 * i + (1000 - i) = i + 1000, over more than one workgroup. */
async function run(): Promise<GpuPageResult> {
  const n = 200;
  const a = Float32Array.from({ length: n }, (_, i) => i);
  const b = Float32Array.from({ length: n }, (_, i) => 1000 - i);
  const gpu = await Gpu.create();
  try {
    const bufA = gpu.storage(a, 'a');
    const bufB = gpu.storage(b, 'b');
    const bufOut = gpu.storage(n * 4, 'out');
    gpu.run([gpu.op(KERNEL, [bufA, bufB, bufOut], [Math.ceil(n / 64)], 'axpb')]);
    const output = [...(await gpu.readF32(bufOut, n))];
    return {
      ok: true,
      adapter: { vendor: gpu.adapterInfo.vendor, architecture: gpu.adapterInfo.architecture },
      output,
    };
  } finally {
    gpu.destroy();
  }
}

function report(result: GpuPageResult): void {
  window.kvscopeResult = result;
  document.getElementById('result')!.textContent = JSON.stringify(result, null, 2);
}

run().then(report, (err: unknown) => {
  const e = err as { name?: string; code?: unknown; message?: string };
  report({
    ok: false,
    name: e?.name ?? typeof err,
    code: typeof e?.code === 'string' ? e.code : null,
    message: e?.message ?? String(err),
  });
});
