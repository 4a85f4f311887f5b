/**
 * Where prefill time goes on this adapter, on the bundled model: for each policy given (budget
 * 128 = 1/8 of the 1024-token prompt), the prompt's wall time through Engine.generateText (best
 * of 3), then the same prefill run op by op (each op submitted alone and waited for, in order,
 * so every op sees the state it sees in a real run), summed by kind over all chunks.
 *
 *   npx vite-node bench/prefill-profile.ts [policy ...]      (default: full streaming h2o snapkv)
 */
import { Engine } from '../src/engine/engine';
import { Gpu, type Op } from '../src/gpu/device';

const policies = process.argv.slice(2).length ? process.argv.slice(2) : ['full', 'streaming', 'h2o', 'snapkv'];
const gpu = await Gpu.create();
console.log(`adapter: ${gpu.adapterInfo.description} (${gpu.cpuAdapter ? 'CPU kernels' : 'GPU kernels'}, weights ${gpu.weightLayout})`);
const chunk = 128;
const engine = await Engine.load({ model: 'models/kvscope-tiny/hf', gpu, contextLength: 2048, prefillChunk: chunk });
const prompt = Array.from({ length: 1024 }, (_, i) => 10 + ((i * 7919) % 4000));
const kindOf = (op: Op): string => (op.label ?? '?').replace(/layer\d+\.?/, '').replace(/\d+/g, '#');
for (const policy of policies) {
  engine.setPolicy(policy === 'full' ? { name: 'full' } : ({ name: policy, budget: 128 } as never));
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    engine.reset();
    const r = await engine.generateText(prompt, { maxTokens: 1 });
    best = Math.min(best, r.stats.prefillMs);
  }
  engine.reset();
  const model = engine.model;
  const sums = new Map<string, number>();
  let total = 0;
  for (let start = 0; start < prompt.length; start += chunk) {
    const ids = prompt.slice(start, start + chunk);
    model.writeTokens(ids);
    const last = start + ids.length === prompt.length;
    for (const op of model.stepOps(ids.length, start, start, last, last)) {
      const t0 = performance.now();
      gpu.run([op]);
      await gpu.device.queue.onSubmittedWorkDone();
      const t = performance.now() - t0;
      sums.set(kindOf(op), (sums.get(kindOf(op)) ?? 0) + t);
      total += t;
    }
  }
  console.log(`\n${policy}: 1024-token prefill ${best.toFixed(0)} ms (best of 3); op by op, all chunks:`);
  for (const [k, v] of [...sums].sort((a, b) => b[1] - a[1])) if (v >= 0.5) console.log(`  ${k.padEnd(28)} ${v.toFixed(1).padStart(7)} ms ${((100 * v) / total).toFixed(0).padStart(3)}%`);
  console.log(`  sum ${total.toFixed(1)} ms`);
}
engine.unload();
