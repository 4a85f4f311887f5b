/**
 * Where prefill time goes on this adapter, on the bundled model: for each policy given (budget
 * 128 = 1/8 of a 1024-token prompt), the prompt's wall time through Engine.generateText, then
 * one 128-row chunk after 896 prompt tokens with every op of the step timed alone (repeated,
 * best of 3) and summed by kind. Cache-moving ops (commit, eviction) are timed last and
 * after them the cache is not used again.
 *
 *   npx vite-node bench/prefill-profile.ts [policy ...]      (default: full streaming h2o)
 */
import { Engine } from '../src/engine/engine';
import { Gpu, type Op } from '../src/gpu/device';
import { timeOps } from './common';

const policies = process.argv.slice(2).length ? process.argv.slice(2) : ['full', 'streaming', 'h2o'];
const gpu = await Gpu.create();
console.log(`adapter: ${gpu.adapterInfo.description} (${gpu.cpuAdapter ? 'CPU kernels' : 'GPU kernels'})`);
const engine = await Engine.load({ model: 'models/kvscope-tiny/hf', gpu, contextLength: 2048, prefillChunk: 128 });
const prompt = Array.from({ length: 1024 }, (_, i) => 10 + ((i * 7919) % 4000));
const kindOf = (op: Op): string => (op.label ?? '').replace(/layer\d+\.?/, '').replace(/\d+/g, '#');
const moves = (op: Op): boolean => /commit|evict|score|select|gather|scatter|compact|act|mass|partition/.test(op.label ?? '');
for (const policy of policies) {
  engine.setPolicy(policy === 'full' ? { name: 'full' } : ({ name: policy, budget: 128 } as never));
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    engine.reset();
    const r = await engine.generateText(prompt, { maxTokens: 1 });
    best = Math.min(best, r.stats.prefillMs);
  }
  engine.reset();
  await engine.generateText(prompt.slice(0, 896), { maxTokens: 1 });
  const ops = engine.model.stepOps(128, 896, 896, false);
  const sums = new Map<string, number>();
  let total = 0;
  for (const op of [...ops.filter((o) => !moves(o)), ...ops.filter(moves)]) {
    const t = (await timeOps(gpu, [op], 0.2)).wall;
    sums.set(kindOf(op), (sums.get(kindOf(op)) ?? 0) + t);
    total += t;
  }
  console.log(`\n${policy}: 1024-token prefill ${best.toFixed(0)} ms (best of 3); the chunk at 896, op by op:`);
  for (const [k, v] of [...sums].sort((a, b) => b[1] - a[1])) console.log(`  ${k.padEnd(36)} ${(v * 1000).toFixed(1)} ms ${((100 * v) / total).toFixed(0)}%`);
  console.log(`  sum ${(total * 1000).toFixed(1)} ms`);
}
engine.unload();
