/** Helpers shared by the benchmarks (bench/run.ts, bench/quant.ts, bench/matmul.ts, bench/gemm-layout.ts). */
import type { Gpu, Op } from '../src/gpu/device';
import { copyOp } from '../src/engine/ops/matmul';
import type { ModelConfig } from '../src/model/config';

/** Matrix elements read per decoded token: every layer's projections and MLP, plus the LM head. */
export function matrixElemsPerToken(c: ModelConfig): number {
  const perLayer = c.hiddenSize * (c.numHeads + 2 * c.numKvHeads) * c.headDim + c.numHeads * c.headDim * c.hiddenSize + 3 * c.hiddenSize * c.intermediateSize;
  return perLayer * c.numLayers + c.vocabSize * c.hiddenSize;
}

/** Device copy bandwidth in bytes/s (read + write) over 64 MiB, the roofline the decode figures are compared with. */
export async function copyProbe(gpu: Gpu): Promise<number> {
  const n = 16 * 1024 * 1024; // 64 MiB of f32
  const src = gpu.storage(n * 4, 'probe.src');
  const dst = gpu.storage(n * 4, 'probe.dst');
  const op = copyOp(gpu, src, dst, n);
  gpu.run([op]);
  await gpu.device.queue.onSubmittedWorkDone();
  const reps = 5;
  const t0 = performance.now();
  gpu.run(Array(reps).fill(op));
  await gpu.device.queue.onSubmittedWorkDone();
  const s = (performance.now() - t0) / 1000;
  gpu.destroyBuffer(src);
  gpu.destroyBuffer(dst);
  return (2 * n * 4 * reps) / s;
}

export interface Timing {
  wall: number; // seconds per repetition, wall clock
  cpu: number; // CPU seconds per repetition, all threads of this process (robust to other load on the machine)
}

/** Time per repetition of `ops`: submits enough repetitions to fill ~`seconds`, best of 3. */
export async function timeOps(gpu: Gpu, ops: Op[], seconds = 0.6): Promise<Timing> {
  gpu.run(ops);
  await gpu.device.queue.onSubmittedWorkDone();
  let t0 = performance.now();
  gpu.run(ops);
  await gpu.device.queue.onSubmittedWorkDone();
  const once = Math.max((performance.now() - t0) / 1000, 1e-5);
  const reps = Math.max(1, Math.min(500, Math.round(seconds / once)));
  const batch: Op[] = [];
  for (let i = 0; i < reps; i++) batch.push(...ops);
  const best: Timing = { wall: Infinity, cpu: Infinity };
  for (let trial = 0; trial < 3; trial++) {
    const c0 = process.cpuUsage();
    t0 = performance.now();
    gpu.run(batch);
    await gpu.device.queue.onSubmittedWorkDone();
    const c = process.cpuUsage(c0);
    best.wall = Math.min(best.wall, (performance.now() - t0) / 1000 / reps);
    best.cpu = Math.min(best.cpu, (c.user + c.system) / 1e6 / reps);
  }
  return best;
}
