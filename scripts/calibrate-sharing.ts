/**
 * KVSharer maps for the bundled model, made by kvscope itself (src/kv/calibrate.ts on the
 * WebGPU engine, default calibration set of held-out text): the paper's defaults (threshold
 * 0.5, 25% of layers) as `kv-sharing.json`, and for the evaluation harness fixed numbers of
 * shared layers in both orders (threshold -1: the search accepts the first pairs in that
 * order, so both orders share the same count), as `sharing/<order>-<n>.json`.
 *
 *   npx vite-node scripts/calibrate-sharing.ts [-- --model models/kvscope-tiny/hf --out models/kvscope-tiny/sharing]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Engine } from '../src/engine/engine';
import { calibrateSharing, saveSharingMap } from '../src/kv/calibrate';
import { sarg } from './args';

const MODEL = resolve(sarg('model', 'models/kvscope-tiny/hf'));
const OUT = resolve(sarg('out', 'models/kvscope-tiny/sharing'));

const engine = await Engine.load({ model: MODEL, contextLength: 512 });
mkdirSync(OUT, { recursive: true });
const t0 = Date.now();
const dflt = await calibrateSharing(engine, {
  onProgress: (p) => process.stderr.write(`\rdefault calibration: ${p.stage} ${p.done}/${p.total}   `),
});
process.stderr.write('\n');
console.log(`defaults (threshold 0.5, 25% of layers): ${JSON.stringify(dflt.map)} similarity ${dflt.similarity?.toFixed(4)} -> ${await saveSharingMap(OUT, dflt)}`);
for (const order of ['dissimilar-first', 'similar-first'] as const) {
  for (const target of [1, 2]) {
    const map = await calibrateSharing(engine, { order, targetSharedLayers: target, threshold: -1 });
    const file = join(OUT, `${order}-${target}.json`);
    writeFileSync(file, JSON.stringify(map, null, 2));
    console.log(`${order} x${target}: ${JSON.stringify(map.map)} similarity ${map.similarity?.toFixed(4)} -> ${file}`);
  }
}
console.log(`${((Date.now() - t0) / 1000).toFixed(0)} s`);
engine.unload();
