/** Helpers shared by the benchmarks (bench/run.ts, bench/quant.ts). */
import type { Gpu } from '../src/gpu/device';
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
