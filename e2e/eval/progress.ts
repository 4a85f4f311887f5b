/** A one-line progress bar with an ETA on stderr (a plain line every 10 s when stderr is not a terminal). */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

export function progressLine(p: { done: number; total: number; failed: number; skipped: number }, elapsedMs: number, width = 24): string {
  const frac = p.total > 0 ? p.done / p.total : 1;
  const filled = Math.round(frac * width);
  const eta = p.done > 0 ? (elapsedMs / p.done) * (p.total - p.done) : NaN;
  const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
  return `[${bar}] ${p.done}/${p.total} ${(frac * 100).toFixed(0)}% elapsed ${formatDuration(elapsedMs)} ETA ${p.done > 0 ? formatDuration(eta) : '?'}` +
    (p.failed ? ` failed ${p.failed}` : '') + (p.skipped ? ` (skipped ${p.skipped} finished)` : '');
}

export function progressBar(stream: NodeJS.WriteStream = process.stderr): { update(p: { done: number; total: number; failed: number; skipped: number; current?: string }): void; end(): void } {
  const t0 = Date.now();
  let lastPlain = 0;
  let last = '';
  return {
    update(p) {
      const line = progressLine(p, Date.now() - t0) + (p.current ? `  ${p.current}` : '');
      last = line;
      if (stream.isTTY) {
        const cols = stream.columns ?? 120;
        stream.write(`\r${line.slice(0, cols - 1).padEnd(cols - 1)}`);
      } else if (Date.now() - lastPlain > 10_000 || p.done === p.total) {
        lastPlain = Date.now();
        stream.write(line + '\n');
      }
    },
    end() {
      if (stream.isTTY) stream.write('\n');
      else if (last) stream.write(last + '\n');
    },
  };
}
