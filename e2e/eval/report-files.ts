/** Node side of the report: inlines uPlot, writes HTML + CSV, and takes a screenshot in Chromium. */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { aggregate, renderHtml, toCsv, toMarkdown, type AggregateOptions } from '../../src/eval/report';
import type { EvalResult } from '../../src/eval/runner';

export function uplotAssets(): { js: string; css: string } {
  const require = createRequire(import.meta.url);
  const dir = dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
  return { js: readFileSync(resolve(dir, 'uPlot.iife.min.js'), 'utf8'), css: readFileSync(resolve(dir, 'uPlot.min.css'), 'utf8') };
}

/** Writes report.html, and next to it report.csv (every cell) and report.md (one summary table). */
export function writeReport(
  results: EvalResult[], out: string, title: string, note?: string, opts: AggregateOptions = {},
): { html: string; csv: string; md: string; groups: number } {
  const groups = aggregate(results, opts);
  const { js, css } = uplotAssets();
  mkdirSync(dirname(resolve(out)), { recursive: true });
  const csv = out.replace(/\.html?$/, '') + '.csv';
  const devices = [...new Set(results.filter((r) => r.device).map((r) => `${r.backend}: ${r.device}`))].sort();
  writeFileSync(out, renderHtml(groups, { title, uplotJs: js, uplotCss: css, devices, ...(note ? { note } : {}) }));
  const md = out.replace(/\.html?$/, '') + '.md';
  writeFileSync(csv, toCsv(groups));
  writeFileSync(md, toMarkdown(groups));
  return { html: out, csv, md, groups: groups.length };
}

export async function screenshot(html: string, png: string): Promise<void> {
  const { chromium } = await import('@playwright/test');
  const { CHROMIUM_BASE_ARGS, CHROMIUM_PATH } = await import('../chromium');
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_BASE_ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    await page.goto(pathToFileURL(resolve(html)).href);
    await page.waitForSelector('.uplot');
    await page.screenshot({ path: png, fullPage: true });
  } finally {
    await browser.close();
  }
}
