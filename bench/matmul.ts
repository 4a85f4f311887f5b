/**
 * Matrix-vector (decode) and GEMM (prefill) throughput against a streaming-copy probe, measured
 * in one run so the ratios hold on any machine.
 *
 *   npx vite-node bench/matmul.ts            (validation on, like the engine's default device)
 *   npx vite-node bench/matmul.ts -- --fast  (Dawn: disable_robustness, skip_validation)
 *   npx vite-node bench/matmul.ts -- --schedule=coop   (force a matvec schedule)
 *
 * Copy bytes/s counts bytes read + bytes written. Matvec bytes/s counts weight bytes only (x
 * and y are tiny and cached). The "decode mix" line is one SmolLM2-135M decode step's matvecs
 * (30 layers of q, k, v, o, gate, up, down, then the 49152 x 576 LM head) in one submission:
 * its weight-bytes/s / copy bytes/s is the issue's decode target (>= 0.5 on SwiftShader).
 */
import { Gpu, type Op } from '../src/gpu/device';
import { copyOp, gemmOp, matvecOpWith, matvecScheduleFor, uploadWeight, type MatvecSchedule, type WeightDType } from '../src/engine/ops/matmul';

const args = process.argv.slice(2);
const fast = args.includes('--fast');
const scheduleArg = args.find((a) => a.startsWith('--schedule='))?.split('=')[1] as MatvecSchedule | undefined;
const seconds = Number(args.find((a) => a.startsWith('--seconds='))?.split('=')[1] ?? 0.6);

const gpu = await Gpu.create({ nodeFlags: fast ? ['enable-dawn-features=disable_robustness,skip_validation'] : [] });
const schedule = scheduleArg ?? matvecScheduleFor(gpu);
const info = gpu.adapterInfo;
console.log(`adapter: ${info.vendor} ${info.architecture} ${info.description} | matvec schedule: ${schedule} | ${fast ? 'robustness off' : 'validation on'}`);

/** Seconds per repetition of `ops`: submits enough repetitions to fill ~`seconds`, best of 3. */
async function timeOps(ops: Op[]): Promise<number> {
  gpu.run(ops);
  await gpu.device.queue.onSubmittedWorkDone();
  let t0 = performance.now();
  gpu.run(ops);
  await gpu.device.queue.onSubmittedWorkDone();
  const once = Math.max((performance.now() - t0) / 1000, 1e-5);
  const reps = Math.max(1, Math.min(500, Math.round(seconds / once)));
  const batch: Op[] = [];
  for (let i = 0; i < reps; i++) batch.push(...ops);
  let best = Infinity;
  for (let trial = 0; trial < 3; trial++) {
    t0 = performance.now();
    gpu.run(batch);
    await gpu.device.queue.onSubmittedWorkDone();
    best = Math.min(best, (performance.now() - t0) / 1000 / reps);
  }
  return best;
}

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
async function copyGBs(): Promise<number> {
  return (2 * copyN * 4) / (await timeOps([copy])) / 1e9;
}
let copyBest = await copyGBs();
console.log(`copy probe: ${fmt(copyBest)} GB/s (read + write)`);

// ---- matvec per shape ----
const shapes: [number, number][] = [[576, 576], [1536, 576], [576, 1536], [49152, 576]];
const x = gpu.storage(new Float32Array(4096).fill(0.01), 'x');
const y = gpu.storage(49152 * 4 * 64, 'y');
const rows: string[] = [];
for (const dtype of ['f32', 'f16', 'bf16'] as WeightDType[]) {
  for (const [n, k] of shapes) {
    const w = uploadWeight(gpu, dtype, n, k, randomBytes(n * k, dtype), `w${n}x${k}`);
    const t = await timeOps([matvecOpWith(gpu, w, x, y, {}, schedule)]);
    const gbs = w.buffer.size / t / 1e9;
    rows.push(`matvec ${dtype.padEnd(4)} ${`${n}x${k}`.padEnd(10)} ${fmt(t * 1e3, 3)} ms ${fmt(gbs)} GB/s  ratio ${fmt(gbs / copyBest, 3)}`);
    console.log(rows[rows.length - 1]);
    gpu.destroyBuffer(w.buffer, 'weights');
  }
}

// ---- one SmolLM2-135M decode step's matvecs ----
const layerShapes: [number, number][] = [[576, 576], [192, 576], [192, 576], [576, 576], [1536, 576], [1536, 576], [576, 1536]];
for (const dtype of ['f32', 'f16'] as WeightDType[]) {
  const layerWeights = layerShapes.map(([n, k], i) => uploadWeight(gpu, dtype, n, k, randomBytes(n * k, dtype), `layer.${i}`));
  const head = uploadWeight(gpu, dtype, 49152, 576, randomBytes(49152 * 576, dtype), 'lm_head');
  // 30 layers reuse one layer's weights (a 135M model's f32 weights would not fit the time budget
  // to upload); the LM head alone (113 MB f32) is far larger than any cache, and so are the layers together.
  const ops: Op[] = [];
  for (let l = 0; l < 30; l++) for (const w of layerWeights) ops.push(matvecOpWith(gpu, w, x, y, { accumulate: w.rows === 576 && w.cols === 1536 }, schedule));
  ops.push(matvecOpWith(gpu, head, x, y, {}, schedule));
  const bytes = 30 * layerWeights.reduce((s, w) => s + w.buffer.size, 0) + head.buffer.size;
  const t = await timeOps(ops);
  copyBest = Math.max(copyBest, await copyGBs());
  const gbs = bytes / t / 1e9;
  console.log(
    `decode mix ${dtype.padEnd(4)} (SmolLM2-135M, ${(bytes / 1e6).toFixed(0)} MB/token) ${fmt(t * 1e3, 1)} ms/token ${fmt(gbs)} GB/s  ` +
      `ratio to copy ${fmt(gbs / copyBest, 3)}`,
  );
  for (const w of [...layerWeights, head]) gpu.destroyBuffer(w.buffer, 'weights');
}

// ---- gemm (prefill) ----
for (const dtype of ['f32', 'f16'] as WeightDType[]) {
  for (const [n, k] of [[1536, 576], [576, 1536]] as [number, number][]) {
    const m = 64;
    const w = uploadWeight(gpu, dtype, n, k, randomBytes(n * k, dtype), `g${n}x${k}`);
    const X = gpu.storage(new Float32Array(m * k).fill(0.01), 'X');
    const Y = gpu.storage(m * n * 4, 'Y');
    const t = await timeOps([gemmOp(gpu, w, X, Y, m).forRows(m)]);
    console.log(`gemm   ${dtype.padEnd(4)} ${`${m}x${n}x${k}`.padEnd(14)} ${fmt(t * 1e3, 3)} ms ${fmt((2 * m * n * k) / t / 1e9)} GFLOP/s`);
    gpu.destroyBuffer(w.buffer, 'weights');
    X.destroy();
    Y.destroy();
  }
}
console.log(`copy probe (best seen): ${fmt(copyBest)} GB/s`);
gpu.destroy();
