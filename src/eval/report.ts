/**
 * From result lines to tables, a CSV and a self-contained HTML report (uPlot's JS and CSS
 * are passed in and inlined, so the file opens offline). Pure functions: the CLI reads and
 * writes the files.
 */
import { InvalidArgumentError } from '../errors';
import { criticalFootprint } from '../metrics/footprint';
import type { EvalResult } from './runner';

export interface Cell {
  group: string;
  model: string;
  task: string;
  taskLabel: string;
  contextLength: number;
  backend: string;
  policy: string;
  policyLabel: string;
  budgetFraction: number;
  budget: number | null;
  /** Cases in the cell; failed ones count with score 0. */
  n: number;
  errors: number;
  score: number;
  exact: number;
  /** Means over cases that ran (null when none did). */
  footprint: number | null;
  peak: number | null;
  kvBytesAllocated: number | null;
  prefillTokensPerSecond: number | null;
  decodeTokensPerSecond: number | null;
  attentionLoss: number | null;
  /** Mean wall time per case (ms), failed cases included. */
  timeMs: number;
}

export interface GroupSummary {
  group: string;
  model: string;
  taskLabel: string;
  contextLength: number;
  backend: string;
  fullScore: number | null;
  cells: Cell[];
  /** Per policy label: the critical footprint (null: no budget reached 90% of full), or why there is none. */
  critical: { policyLabel: string; value: number | null; note: string }[];
}

const mean = (xs: number[]): number | null => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);

export function groupKey(r: Pick<EvalResult, 'model' | 'taskLabel' | 'contextLength' | 'backend'>): string {
  return `${r.model} / ${r.taskLabel} @ ${r.contextLength} tokens (${r.backend})`;
}

export interface AggregateOptions {
  /**
   * Below this full-cache score no critical footprint is given (default 0.1): 90% of a score
   * near 0 is reached by noise (a vartrack cell at 4% "keeps" it with 1-3% of names that happen
   * to match), so it would rank policies by chance.
   */
  minFullScore?: number;
}

/** Means per (task group, policy, budget); later lines for an id replace earlier ones. */
export function aggregate(results: readonly EvalResult[], opts: AggregateOptions = {}): GroupSummary[] {
  const minFull = opts.minFullScore ?? 0.1;
  if (!(Number.isFinite(minFull) && minFull >= 0 && minFull <= 1)) {
    throw new InvalidArgumentError(`minFullScore (eval:report --min-full) must be in [0, 1], got ${minFull}.`);
  }
  const latest = new Map<string, EvalResult>();
  for (const r of results) latest.set(`${r.backend}|${r.id}`, r);
  const cells = new Map<string, EvalResult[]>();
  for (const r of latest.values()) {
    const k = `${groupKey(r)}|${r.policyLabel}|${r.budgetFraction}`;
    let list = cells.get(k);
    if (!list) cells.set(k, (list = []));
    list.push(r);
  }
  const groups = new Map<string, Cell[]>();
  for (const list of cells.values()) {
    const r0 = list[0]!;
    const ok = list.filter((r) => r.error === null);
    const num = (f: (r: EvalResult) => number | null | undefined) => mean(ok.map(f).filter((x): x is number => typeof x === 'number' && Number.isFinite(x)));
    const cell: Cell = {
      group: groupKey(r0), model: r0.model, task: r0.task, taskLabel: r0.taskLabel, contextLength: r0.contextLength, backend: r0.backend,
      policy: r0.policy, policyLabel: r0.policyLabel, budgetFraction: r0.budgetFraction, budget: r0.budget, n: list.length,
      errors: list.length - ok.length, score: mean(list.map((r) => r.score)) ?? 0, exact: mean(list.map((r) => r.exact)) ?? 0,
      footprint: num((r) => r.footprint), peak: num((r) => r.peak), kvBytesAllocated: num((r) => r.kvBytesAllocated),
      prefillTokensPerSecond: num((r) => r.prefillTokensPerSecond), decodeTokensPerSecond: num((r) => r.decodeTokensPerSecond),
      attentionLoss: num((r) => r.attentionLoss), timeMs: mean(list.map((r) => r.timeMs)) ?? 0,
    };
    let g = groups.get(cell.group);
    if (!g) groups.set(cell.group, (g = []));
    g.push(cell);
  }
  return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([group, cs]) => {
    cs.sort((a, b) => a.policyLabel.localeCompare(b.policyLabel) || a.budgetFraction - b.budgetFraction);
    const full = cs.find((c) => c.policy === 'full');
    const fullScore = full ? full.score : null;
    const labels = [...new Set(cs.filter((c) => c.policy !== 'full').map((c) => c.policyLabel))];
    const critical = labels.map((policyLabel) => {
      const pts = cs.filter((c) => c.policyLabel === policyLabel && c.footprint !== null).map((c) => ({ footprint: c.footprint!, score: c.score }));
      if (fullScore === null) return { policyLabel, value: null, note: 'no full-cache run' };
      if (fullScore <= 0) return { policyLabel, value: null, note: 'full-cache score is 0' };
      if (fullScore < minFull) {
        return { policyLabel, value: null, note: `full-cache score ${fullScore.toFixed(3)} is below ${minFull}: too low to measure against` };
      }
      const value = criticalFootprint(pts, fullScore);
      return { policyLabel, value, note: value === null ? 'below 90% of full at every budget' : '' };
    });
    const c0 = cs[0]!;
    return { group, model: c0.model, taskLabel: c0.taskLabel, contextLength: c0.contextLength, backend: c0.backend, fullScore, cells: cs, critical };
  });
}

const CSV_COLUMNS: (keyof Cell)[] = [
  'model', 'task', 'taskLabel', 'contextLength', 'backend', 'policy', 'policyLabel', 'budgetFraction', 'budget', 'n', 'errors', 'score', 'exact',
  'footprint', 'peak', 'kvBytesAllocated', 'prefillTokensPerSecond', 'decodeTokensPerSecond', 'attentionLoss', 'timeMs',
];

function csvField(v: unknown): string {
  if (v === null || v === undefined) return '';
  const s = typeof v === 'number' ? String(Number(v.toPrecision(6))) : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(groups: readonly GroupSummary[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const g of groups) for (const c of g.cells) lines.push(CSV_COLUMNS.map((k) => csvField(c[k])).join(','));
  return lines.join('\n') + '\n';
}

const pct = (x: number) => `${Math.round(x * 100)}%`;

/**
 * One Markdown table for notes and READMEs: a row per (policy, budget) and per back end, a
 * column per task (and model, when there are several; score with its number of cases), then
 * the footprint and KV bytes averaged over the tasks; under it each task's critical footprint
 * per policy.
 */
export function toMarkdown(groups: readonly GroupSummary[]): string {
  const models = new Set(groups.map((g) => g.model));
  const taskKey = (g: GroupSummary) => `${models.size > 1 ? `${g.model} / ` : ''}${g.taskLabel} @ ${g.contextLength}`;
  const tasks = [...new Set(groups.map(taskKey))];
  const rows = new Map<string, { label: string; full: boolean; fraction: number; backend: string; byTask: Map<string, Cell> }>();
  for (const g of groups) {
    for (const c of g.cells) {
      const key = `${c.backend}|${c.policyLabel}|${c.budgetFraction}`;
      let row = rows.get(key);
      if (!row) rows.set(key, (row = { label: c.policyLabel, full: c.policy === 'full', fraction: c.budgetFraction, backend: c.backend, byTask: new Map() }));
      row.byTask.set(taskKey(g), c);
    }
  }
  const backends = new Set([...rows.values()].map((r) => r.backend));
  const order = [...rows.values()].sort((a, b) => a.backend.localeCompare(b.backend) || +b.full - +a.full || a.label.localeCompare(b.label) || a.fraction - b.fraction);
  const fractionText = (full: boolean, f: number) => {
    if (full) return '—';
    const inv = Math.round(1 / f);
    return Math.abs(1 / f - inv) < 1e-9 ? `1/${inv}` : String(Number(f.toPrecision(4)));
  };
  const cellText = (s: string) => s.replace(/\|/g, '\\|');
  const head = ['policy', 'budget', ...(backends.size > 1 ? ['back end'] : []), ...tasks, 'footprint', 'KV allocated'];
  const lines = [`| ${head.map(cellText).join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`];
  for (const r of order) {
    const cells = [...r.byTask.values()];
    const fp = mean(cells.map((c) => c.footprint).filter((x): x is number => x !== null));
    const kv = mean(cells.map((c) => c.kvBytesAllocated).filter((x): x is number => x !== null));
    const taskCols = tasks.map((t) => {
      const c = r.byTask.get(t);
      return c ? `${pct(c.score)} (${c.n}${c.errors ? `, ${c.errors} failed` : ''})` : '';
    });
    const cols = [cellText(r.label), fractionText(r.full, r.fraction), ...(backends.size > 1 ? [r.backend] : []), ...taskCols, fp === null ? '—' : fp.toFixed(2), kv === null ? '—' : `${(kv / 1024).toFixed(0)} KiB`];
    lines.push(`| ${cols.join(' | ')} |`);
  }
  lines.push('', 'Critical footprint (smallest mean footprint keeping >= 90% of the full-cache score):', '');
  for (const g of groups) {
    const got = g.critical.filter((c) => c.value !== null).map((c) => `${c.policyLabel} ${c.value!.toFixed(3)}`);
    lines.push(`- ${g.group}: ${got.length ? got.join(', ') : g.critical[0]?.note ?? 'no budget policies'}`);
  }
  return lines.join('\n') + '\n';
}

const esc = (s: string) => s.replace(/[&<>"]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[ch]!);
const fmt = (x: number | null, digits = 3) => (x === null ? '—' : x.toFixed(digits));

function table(g: GroupSummary): string {
  const rows = g.cells.map((c) => `<tr><td>${esc(c.policyLabel)}</td><td>${c.policy === 'full' ? 'full' : fmt(c.budgetFraction)}</td><td>${c.budget ?? '—'}</td><td>${c.n}</td><td>${c.errors}</td>` +
    `<td><b>${fmt(c.score)}</b></td><td>${fmt(c.exact)}</td><td>${fmt(c.footprint)}</td><td>${fmt(c.peak)}</td><td>${c.kvBytesAllocated === null ? '—' : (c.kvBytesAllocated / 1024).toFixed(0)}</td>` +
    `<td>${fmt(c.attentionLoss)}</td><td>${fmt(c.prefillTokensPerSecond, 1)}</td><td>${fmt(c.decodeTokensPerSecond, 1)}</td><td>${(c.timeMs / 1000).toFixed(1)}</td></tr>`).join('\n');
  return `<table><thead><tr><th>policy</th><th>budget (of context)</th><th>entries</th><th>n</th><th>errors</th><th>score</th><th>exact</th><th>KV footprint</th><th>peak KV</th><th>KV KiB alloc.</th><th>attn. loss</th><th>prefill tok/s</th><th>decode tok/s</th><th>s / case</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function criticalTable(g: GroupSummary): string {
  const rows = g.critical.map((c) => `<tr><td>${esc(c.policyLabel)}</td><td>${c.value === null ? '—' : c.value.toFixed(3)}</td><td>${esc(c.note)}</td></tr>`).join('');
  return `<table class="crit"><thead><tr><th>policy</th><th>critical footprint</th><th>note</th></tr></thead><tbody>${rows}</tbody></table>`;
}

export interface ReportOptions {
  title: string;
  uplotJs: string;
  uplotCss: string;
  /** Free text under the title (spec, model, caveats). */
  note?: string;
  generatedAt?: string;
  /** The devices the results ran on, one line each (e.g. "node: llvmpipe ... | weights kn"); tok/s compare only within one. */
  devices?: string[];
}

export function renderHtml(groups: readonly GroupSummary[], o: ReportOptions): string {
  const data = groups.map((g, i) => ({
    id: i,
    series: [...new Set(g.cells.map((c) => c.policyLabel))].map((label) => ({
      label,
      points: g.cells.filter((c) => c.policyLabel === label && c.footprint !== null).map((c) => ({ footprint: c.footprint!, peak: c.peak ?? c.footprint!, score: c.score })),
    })),
  }));
  const sections = groups.map((g, i) => `
<section>
<h2>${esc(g.group)}</h2>
<p>Full-cache score: <b>${fmt(g.fullScore)}</b>. Score is the mean over a cell's samples (failed cases count 0); footprint and peak are measured by the engine (methods.md §5).</p>
<div class="charts"><div id="fp${i}"></div><div id="pk${i}"></div></div>
<h3>Critical footprint (smallest measured footprint with score &ge; 90% of full)</h3>
${criticalTable(g)}
<h3>All cells</h3>
${table(g)}
</section>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(o.title)}</title>
<style>${o.uplotCss}</style>
<style>
body { font: 14px system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
section { border-top: 2px solid #444; margin-top: 24px; }
.note { color: #555; max-width: 70em; }
</style></head>
<body>
<h1>${esc(o.title)}</h1>
${o.note ? `<p class="note">${esc(o.note)}</p>` : ''}
<p class="note">Generated ${esc(o.generatedAt ?? new Date().toISOString())}. CSV alongside this file.</p>
${o.devices?.length ? `<p class="note">Devices (timings compare only within one): ${o.devices.map(esc).join('; ')}.</p>` : ''}
${sections}
<script>${o.uplotJs.replace(/<\/script/gi, "<\\/script")}</script>
<script>
const DATA = ${JSON.stringify(data).replace(/</g, '\\u003c')};
const COLORS = ['#000000','#e6194b','#3cb44b','#4363d8','#f58231','#911eb4','#42d4f4','#f032e6','#9a6324','#808000','#469990','#800000','#000075'];
function chart(el, g, xKey, xLabel) {
  const xs = [...new Set(g.series.flatMap((s) => s.points.map((p) => p[xKey])))].sort((a, b) => a - b);
  const ys = g.series.map((s) => xs.map((x) => { const p = s.points.find((q) => q[xKey] === x); return p ? p.score : null; }));
  new uPlot({
    width: 520, height: 320, title: 'score vs ' + xLabel,
    scales: { x: { time: false, range: [0, 1.05] }, y: { range: [0, 1.05] } },
    axes: [{ label: xLabel }, { label: 'score' }],
    series: [{ label: xLabel }, ...g.series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true, points: { size: 7 } }))],
  }, [xs, ...ys], el);
}
for (const g of DATA) {
  chart(document.getElementById('fp' + g.id), g, 'footprint', 'KV footprint');
  chart(document.getElementById('pk' + g.id), g, 'peak', 'peak KV');
}
</script>
</body></html>
`;
}
