/**
 * Greedy agreement between two result files (e.g. the browser back end's 10% rerun against
 * the Node sweep): for every case id in both that ran in both, are the generated token ids
 * identical? Prints the share and the disagreeing ids; exits 1 below --min (default 0.98).
 *
 *   npx vite-node e2e/eval/compare.ts -- eval-results/quick-node.jsonl eval-results/quick-browser.jsonl [--min 0.98]
 */
import { readResults } from './harness';

const args = process.argv.slice(2).filter((a) => a !== '--');
const minAt = args.indexOf('--min');
const min = minAt >= 0 ? Number(args.splice(minAt, 2)[1]) : 0.98;
if (args.length !== 2 || !(min >= 0 && min <= 1)) {
  console.error('Usage: compare.ts A.jsonl B.jsonl [--min 0.98]');
  process.exit(2);
}
const a = new Map(readResults(args[0]!).map((r) => [r.id, r]));
const both = readResults(args[1]!).filter((r) => a.has(r.id));
const ran = both.filter((r) => r.error === null && a.get(r.id)!.error === null);
const differ = ran.filter((r) => JSON.stringify(r.outputIds) !== JSON.stringify(a.get(r.id)!.outputIds));
const share = ran.length ? (ran.length - differ.length) / ran.length : 0;
console.log(`${both.length} common ids, ${ran.length} ran in both, ${ran.length - differ.length} identical greedy outputs (${(share * 100).toFixed(1)}%)`);
for (const r of differ.slice(0, 20)) console.log(`differs: ${r.id}: ${JSON.stringify(a.get(r.id)!.output)} vs ${JSON.stringify(r.output)}`);
process.exit(ran.length > 0 && share >= min ? 0 : 1);
