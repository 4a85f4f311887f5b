/**
 * Matrix-vector (decode) and GEMM (prefill) throughput against a streaming-copy probe, measured
 * in one run so the ratios hold on any machine.
 *
 *   npx vite-node bench/matmul.ts            (validation on, like the engine's default device)
 *   npx vite-node bench/matmul.ts -- --fast  (Dawn: disable_robustness, skip_validation)
 *   npx vite-node bench/matmul.ts -- --schedule=coop   (force a matvec schedule; 'nk' weights only)
 *   KVSCOPE_WEIGHT_LAYOUT=nk|kn npx vite-node bench/matmul.ts   (weight layout; default: the adapter's)
 *
 * Copy bytes/s counts bytes read + bytes written. Matvec bytes/s counts weight bytes only (x
 * and y are tiny and cached). The "decode mix" line is one SmolLM2-135M decode step's matvecs
 * (30 layers of q, k, v, o, gate, up, down, each layer with its own buffers, then the
 * 49152 x 576 LM head) in one submission: its weight-bytes/s / copy bytes/s is the issue's
 * decode target (>= 0.5 on SwiftShader). Ratios are given by wall clock (the target) and by
 * CPU time of this process, which stays meaningful when other jobs share the CPU.
 */
import { Gpu, type Op } from '../src/gpu/device';
import { timeOps as timeOpsOn, type Timing } from './common';
import { copyOp, gemmOp, knLayoutFits, matvecOpWith, matvecScheduleFor, uploadWeight as upload, type MatvecSchedule, type WeightDType } from '../src/engine/ops/matmul';

const args = process.argv.slice(2);
const fast = args.includes('--fast');
const scheduleArg = args.find((a) => a.startsWith('--schedule='))?.split('=')[1] as MatvecSchedule | undefined;
const seconds = Number(args.find((a) => a.startsWith('--seconds='))?.split('=')[1] ?? 0.6);

const gpu = await Gpu.create({ nodeFlags: fast ? ['enable-dawn-features=disable_robustness,skip_validation'] : [] });
const schedule = scheduleArg ?? matvecScheduleFor(gpu);
const info = gpu.adapterInfo;
console.log(`adapter: ${info.vendor} ${info.architecture} ${info.description} | weights ${gpu.weightLayout} | matvec schedule: ${gpu.weightLayout === 'kn' ? 'kn' : schedule} | ${fast ? 'robustness off' : 'validation on'}`);
/** Weights in the layout the engine would give them on this device. */
const uploadWeight = (g: Gpu, dtype: WeightDType, n: number, k: number, data: Uint8Array, label: string) =>
  upload(g, dtype, n, k, data, label, g.weightLayout === 'kn' && knLayoutFits(n) ? 'kn' : 'nk');

/** Time per repetition of `ops` on this run's device (bench/common.ts). */
const timeOps = (ops: Op[]): Promise<Timing> => timeOpsOn(gpu, ops, seconds);

function randomBytes(n: number, dtype: WeightDType): Uint8Array {
  // Small finite values in every dtype: f32 in [-0.05, 0.05); 16-bit patterns with a tame exponent.
  if (dtype === 'f32') {
    const f = new Float32Array(n);
    for (let i = 0; i < n; i++) f[i] = (Math.random() - 0.5) * 0.1;
    return new Uint8Array(f.buffer);
  }
  const h = new Uint16Array(n);
  const expBase = dtype === 'f16' ? 0x2000 : 0x3c00; // ~2^-7 .. 2^-3 magnitudes
  for (let i = 0; i < n; i++) h[i] = ((Math.random() * 0x1000) | expBase) ^ (Math.random() < 0.5 ? 0x8000 : 0);
  return new Uint8Array(h.buffer);
}

const fmt = (v: number, d = 2): string => v.toFixed(d).padStart(8);

// ---- copy probe (64 MiB read + 64 MiB written) ----
const copyN = 16 << 20;
const copySrc = gpu.storage(copyN * 4, 'copy.src');
const copyDst = gpu.storage(copyN * 4, 'copy.dst');
const copy = copyOp(gpu, copySrc, copyDst, copyN);
/** Copy probe rates (bytes read + written per second of wall clock / of CPU), best seen so far. */
const copyRate = { wall: 0, cpu: 0 };
async function measureCopy(): Promise<void> {
  const t = await timeOps([copy]);
  copyRate.wall = Math.max(copyRate.wall, (2 * copyN * 4) / t.wall / 1e9);
  copyRate.cpu = Math.max(copyRate.cpu, (2 * copyN * 4) / t.cpu / 1e9);
}
await measureCopy();
console.log(`copy probe: ${fmt(copyRate.wall)} GB/s wall, ${fmt(copyRate.cpu)} GB/CPU-s (read + write)`);
/** "GB/s  ratio  (ratio by CPU time)" for `bytes` moved in time `t`. */
function rate(bytes: number, t: Timing): string {
  const wall = bytes / t.wall / 1e9;
  const cpu = bytes / t.cpu / 1e9;
  return `${fmt(wall)} GB/s  ratio ${fmt(wall / copyRate.wall, 3)}  (by CPU time ${fmt(cpu / copyRate.cpu, 3)})`;
}

// ---- ALU probe: the adapter's multiply-add peak, with no memory traffic ----
// Each invocation runs 8 independent vec4 FMA chains for ALU_ITERS steps (2 FLOP per lane-FMA); the
// prefill GEMMs below are reported as a share of it, which says how far a kernel change could go.
const ALU_ITERS = 1024;
const ALU_INVOCATIONS = 4096;
const aluOut = gpu.storage(ALU_INVOCATIONS * 16, 'alu.out');
const aluChains = Array.from({ length: 8 }, (_, i) => i);
const aluCode = `
@group(0) @binding(0) var<storage, read_write> y: array<vec4<f32>>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let a = vec4<f32>(f32(g.x) * 1e-6);
  ${aluChains.map((i) => `var a${i} = a + ${i}.0;`).join(' ')}
  let b = vec4<f32>(0.999);
  let c = vec4<f32>(0.001);
  for (var i = 0u; i < ${ALU_ITERS}u; i++) {
    ${aluChains.map((i) => `a${i} = fma(a${i}, b, c);`).join(' ')}
  }
  y[g.x] = ${aluChains.map((i) => `a${i}`).join(' + ')};
}`;
const aluOp = gpu.op(aluCode, [aluOut], gpu.grid(ALU_INVOCATIONS / 64), 'alu probe');
const aluT = await timeOps([aluOp]);
const aluFlop = ALU_INVOCATIONS * ALU_ITERS * aluChains.length * 4 * 2;
const aluPeak = aluFlop / aluT.wall / 1e9;
console.log(`alu probe: ${fmt(aluPeak)} GFLOP/s wall, ${fmt(aluFlop / aluT.cpu / 1e9)} GFLOP/CPU-s (vec4 FMA chains, no memory traffic)`);

// ---- matvec per shape ----
const shapes: [number, number][] = [[576, 576], [1536, 576], [576, 1536], [49152, 576]];
const x = gpu.storage(new Float32Array(4096).fill(0.01), 'x');
const y = gpu.storage(49152 * 4 * 64, 'y');
for (const dtype of ['f32', 'f16', 'bf16'] as WeightDType[]) {
  for (const [n, k] of shapes) {
    const w = uploadWeight(gpu, dtype, n, k, randomBytes(n * k, dtype), `w${n}x${k}`);
    const t = await timeOps([matvecOpWith(gpu, w, x, y, {}, schedule)]);
    console.log(`matvec ${dtype.padEnd(4)} ${`${n}x${k}`.padEnd(10)} ${fmt(t.wall * 1e3, 3)} ms ${rate(w.buffer.size, t)}`);
    gpu.destroyBuffer(w.buffer, 'weights');
  }
}

// ---- one SmolLM2-135M decode step's matvecs, every layer with its own weights ----
const layerShapes: [number, number][] = [[576, 576], [192, 576], [192, 576], [576, 576], [1536, 576], [1536, 576], [576, 1536]];
for (const dtype of ['f32', 'f16'] as WeightDType[]) {
  const data = new Map<string, Uint8Array>();
  const bytesFor = (n: number, k: number): Uint8Array => {
    const key = `${n}x${k}`;
    if (!data.has(key)) data.set(key, randomBytes(n * k, dtype));
    return data.get(key)!;
  };
  const weights = [];
  const ops: Op[] = [];
  for (let l = 0; l < 30; l++) {
    for (const [n, k] of layerShapes) {
      const w = uploadWeight(gpu, dtype, n, k, bytesFor(n, k), `layer${l}.${n}x${k}`);
      weights.push(w);
      // The down projection accumulates into the residual, as the engine fuses it.
      ops.push(matvecOpWith(gpu, w, x, y, { accumulate: k === 1536 }, schedule));
    }
  }
  const head = uploadWeight(gpu, dtype, 49152, 576, bytesFor(49152, 576), 'lm_head');
  weights.push(head);
  ops.push(matvecOpWith(gpu, head, x, y, {}, schedule));
  const bytes = weights.reduce((s, w) => s + w.buffer.size, 0);
  const t = await timeOps(ops);
  await measureCopy();
  console.log(
    `decode mix ${dtype.padEnd(4)} (SmolLM2-135M, ${(bytes / 1e6).toFixed(0)} MB/token) ${fmt(t.wall * 1e3, 1)} ms/token ${rate(bytes, t)}`,
  );
  for (const w of weights) gpu.destroyBuffer(w.buffer, 'weights');
}

// ---- gemm (prefill) ----
// SmolLM2-135M's MLP shapes at 64 rows, and the bundled kvscope-tiny's projections at a 128-token prefill chunk
const gemmCases: [number, number, number][] = [[64, 1536, 576], [64, 576, 1536], [128, 256, 256], [128, 64, 256], [128, 512, 256], [128, 256, 512]];
for (const dtype of ['f32', 'f16'] as WeightDType[]) {
  for (const [m, n, k] of gemmCases) {
    const w = uploadWeight(gpu, dtype, n, k, randomBytes(n * k, dtype), `g${n}x${k}`);
    const X = gpu.storage(new Float32Array(m * k).fill(0.01), 'X');
    const Y = gpu.storage(m * n * 4, 'Y');
    const t = await timeOps([gemmOp(gpu, w, X, Y, m).forRows(m)]);
    const flop = 2 * m * n * k;
    const gflops = flop / t.wall / 1e9;
    console.log(`gemm   ${dtype.padEnd(4)} ${`${m}x${n}x${k}`.padEnd(14)} ${fmt(t.wall * 1e3, 3)} ms ${fmt(gflops)} GFLOP/s  ${fmt(flop / t.cpu / 1e9)} GFLOP/CPU-s  ${fmt(gflops / aluPeak, 3)} of the ALU probe`);
    gpu.destroyBuffer(w.buffer, 'weights');
    X.destroy();
    Y.destroy();
  }
}
console.log(`copy probe (best seen): ${fmt(copyRate.wall)} GB/s wall, ${fmt(copyRate.cpu)} GB/CPU-s`);
gpu.destroy();
