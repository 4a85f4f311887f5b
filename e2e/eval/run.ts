/**
 * npm run eval -- --spec e2e/eval/quick.json [--backend node|browser] [--shard i/n]
 *                 [--out eval-results/quick.jsonl] [--subset 10] [--list]
 *
 * Expands the spec into cases, keeps this shard's (by a hash of the case id), skips ids
 * already in --out, runs the rest and appends one JSON line per case. --subset k runs a
 * fixed 1/k of the cases (the browser cross-check); --list prints the case ids and exits.
 */
import { basename } from 'node:path';
import { EvalSpecError, parseShard, type Shard } from '../../src/eval/spec';
import type { Backend } from '../../src/eval/runner';
import { ModelStore, ROOT, readSpec, runEval, selectCases } from './harness';
import { NodeBackend } from './node-backend';
import { progressBar } from './progress';

function parseArgs(argv: string[]): Record<string, string | true> {
  const out: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') continue;
    if (!a.startsWith('--')) throw new EvalSpecError('bad-spec', `Unexpected argument '${a}'.`);
    const [k, v] = a.slice(2).split('=', 2) as [string, string | undefined];
    if (v !== undefined) out[k] = v;
    else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) out[k] = argv[++i]!;
    else out[k] = true;
  }
  return out;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const known = new Set(['spec', 'backend', 'shard', 'out', 'subset', 'list']);
  for (const k of Object.keys(args)) if (!known.has(k)) throw new EvalSpecError('bad-spec', `Unknown option --${k} (options: ${[...known].map((x) => '--' + x).join(' ')}).`);
  if (typeof args.spec !== 'string') throw new EvalSpecError('bad-spec', 'Usage: npm run eval -- --spec e2e/eval/quick.json [--backend node|browser] [--shard i/n] [--out file.jsonl]');
  const spec = readSpec(args.spec);
  const shard: Shard | undefined = typeof args.shard === 'string' ? parseShard(args.shard) : undefined;
  const every = typeof args.subset === 'string' ? Number(args.subset) : undefined;
  if (every !== undefined && !(Number.isInteger(every) && every >= 1)) throw new EvalSpecError('bad-spec', `--subset takes an integer k >= 1 (runs 1/k of the cases), got ${args.subset}.`);
  const backendName = typeof args.backend === 'string' ? args.backend : 'node';
  if (backendName !== 'node' && backendName !== 'browser') throw new EvalSpecError('bad-spec', `--backend is node or browser, got '${backendName}'.`);
  const out = typeof args.out === 'string' ? args.out : `eval-results/${basename(args.spec, '.json')}-${backendName}${shard ? `-${shard.index}of${shard.count}` : ''}.jsonl`;
  if (args.list) {
    const ids = selectCases(spec, shard, every).map((c) => c.id + '\n').join('');
    await new Promise<void>((res) => process.stdout.write(ids, () => res()));
    return 0;
  }
  const store = new ModelStore();
  let backend: Backend;
  if (backendName === 'browser') {
    const { BrowserBackend } = await import('./browser-backend');
    backend = new BrowserBackend();
  } else backend = new NodeBackend(ROOT, (c) => store.load(c));
  const bar = progressBar();
  const t0 = Date.now();
  try {
    const s = await runEval({ spec, out, backend, store, ...(shard ? { shard } : {}), ...(every ? { every } : {}), onProgress: (p) => bar.update(p) });
    bar.end();
    console.error(`${spec.name}: ${s.ran} cases run (${s.failed} failed), ${s.skipped} already in ${out}, ${s.total} in this selection; ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    // Failed cases are results (score 0, with the error); the command fails only when nothing ran.
    return s.total > 0 && s.failed === s.ran && s.ran > 0 ? 2 : 0;
  } finally {
    await backend.close();
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof EvalSpecError ? `spec error (${e.code}): ${e.message}` : e);
    process.exit(1);
  },
);
