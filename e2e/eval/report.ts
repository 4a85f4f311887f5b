/**
 * npm run eval:report -- --in eval-results/quick-node.jsonl [--in more.jsonl ...]
 *                        [--out eval-results/report.html] [--title "..."] [--screenshot report.png]
 *                        [--min-full 0.1]
 *
 * Writes the HTML report (uPlot inlined: opens offline), a CSV of every cell and a Markdown
 * summary table next to it (report.html -> report.csv, report.md); --screenshot renders the
 * page in Chromium and saves a PNG. --min-full: below this full-cache score a task group gets
 * no critical footprint (default 0.1; 90% of a near-zero score is reached by noise).
 */
import { readResults } from './harness';
import { screenshot, writeReport } from './report-files';

async function main(): Promise<void> {
  const argv = process.argv.slice(2).filter((a) => a !== '--');
  const ins: string[] = [];
  let out = 'eval-results/report.html';
  let title = 'kvscope evaluation';
  let note: string | undefined;
  let shot: string | undefined;
  let minFull: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`${a} needs a value`);
    if (a === '--in') ins.push(v);
    else if (a === '--out') out = v;
    else if (a === '--title') title = v;
    else if (a === '--note') note = v;
    else if (a === '--screenshot') shot = v;
    else if (a === '--min-full') minFull = Number(v); // range-checked by aggregate()
    else throw new Error(`Unknown option ${a} (options: --in --out --title --note --screenshot --min-full)`);
    i++;
  }
  if (!ins.length) throw new Error('Usage: npm run eval:report -- --in results.jsonl [--out report.html]');
  const results = ins.flatMap((f) => readResults(f));
  if (!results.length) throw new Error(`No results in ${ins.join(', ')}.`);
  const r = writeReport(results, out, title, note, minFull === undefined ? {} : { minFullScore: minFull });
  console.error(`${results.length} results, ${r.groups} task groups -> ${r.html}, ${r.csv}, ${r.md}`);
  if (shot) {
    await screenshot(out, shot);
    console.error(`screenshot -> ${shot}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
