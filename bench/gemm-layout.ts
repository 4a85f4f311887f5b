/**
 * The probe behind the engine's 'kn' weight layout (shaders/matmul_kn.wgsl, Gpu.weightLayout): W
 * stored transposed ([K, N], n contiguous) so that neighbouring invocations, which lavapipe packs
 * into one AVX2 vector, read neighbouring memory instead of rows K apart. Prints the file layout's
 * gemmOp (f32 weights, the adapter's own tile) and a plain transposed kernel at several tiles,
 * each with its max |difference| from gemmOp (0: both sum over k in the same order). The engine's
 * kernel adds what this probe lacks and measured faster still (padded rows, x loads first, a vec4
 * epilogue starting from Y + bias): compare them with `npx vite-node bench/matmul.ts` under both
 * layouts (KVSCOPE_WEIGHT_LAYOUT=nk / kn).
 *
 *   npx vite-node bench/gemm-layout.ts                                            (SwiftShader)
 *   VK_ICD_FILENAMES=$(bash scripts/lavapipe.sh) npx vite-node bench/gemm-layout.ts  (lavapipe)
 */
import { Gpu, type Op } from '../src/gpu/device';
import { gemmOp, uploadWeight } from '../src/engine/ops/matmul';
import { timeOps } from './common';
const gpu = await Gpu.create();
console.log(`adapter: ${gpu.adapterInfo.description}`);
const time = async (ops: Op[]): Promise<number> => (await timeOps(gpu, ops)).wall;
const cases: [number, number, number][] = [[128, 256, 256], [128, 512, 256], [128, 256, 512], [64, 1536, 576]];
for (const [m, n, k] of cases) {
  const wf = new Float32Array(n * k).map(() => Math.random() - 0.5);
  const xf = new Float32Array(m * k).map(() => Math.random() - 0.5);
  const w = uploadWeight(gpu, 'f32', n, k, new Uint8Array(wf.buffer), 'w');
  const X = gpu.storage(xf, 'x'); const Y = gpu.storage(m * n * 4, 'y');
  const t0 = await time([gemmOp(gpu, w, X, Y, m).forRows(m)]);
  const ref = await gpu.readF32(Y, m * n);
  const wt = new Float32Array(k * n); for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) wt[j * n + i] = wf[i * k + j]!;
  const WT = gpu.storage(wt, 'wt');
  for (const [TM, TN, WG] of [[8, 4, 16], [16, 4, 8], [16, 2, 16], [8, 2, 32], [8, 8, 8]] as const) {
    const N4 = n / 4;
    const lanes = WG;
    const code = `
@group(0) @binding(0) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
  let nb = wg.x * ${lanes * TN}u + l.x;
  let m0 = wg.y * ${TM}u;
  ${Array.from({ length: TM }, (_, i) => Array.from({ length: TN }, (_, j) => `var a${i}_${j} = vec4<f32>(0.0);`).join(' ')).join('\n  ')}
  for (var kk = 0u; kk < ${k}u; kk++) {
    ${Array.from({ length: TN }, (_, j) => `let w${j} = wt[kk * ${N4}u + nb + ${j * lanes}u];`).join(' ')}
    ${Array.from({ length: TM }, (_, i) => `let x${i} = x[(m0 + ${i}u) * ${k}u + kk];`).join(' ')}
    ${Array.from({ length: TM }, (_, i) => Array.from({ length: TN }, (_, j) => `a${i}_${j} = fma(vec4<f32>(x${i}), w${j}, a${i}_${j});`).join(' ')).join('\n    ')}
  }
  ${Array.from({ length: TM }, (_, i) => Array.from({ length: TN }, (_, j) => `y[(m0 + ${i}u) * ${N4}u + nb + ${j * lanes}u] = a${i}_${j};`).join(' ')).join('\n  ')}
}`;
    if (N4 % (lanes * TN) !== 0 || m % TM !== 0) continue;
    const op = gpu.op(code, [WT, X, Y], [N4 / (lanes * TN), m / TM], 'gemmT');
    const t = await time([op]);
    const out = await gpu.readF32(Y, m * n);
    let err = 0; for (let i = 0; i < ref.length; i++) err = Math.max(err, Math.abs(out[i]! - ref[i]!));
    console.log(`${m}x${n}x${k} current ${(2 * m * n * k / t0 / 1e9).toFixed(2)} GFLOP/s | transposed TM=${TM} TN=${TN} WG=${WG}: ${(2 * m * n * k / t / 1e9).toFixed(2)} GFLOP/s, max err ${err.toExponential(1)}`);
  }
}
