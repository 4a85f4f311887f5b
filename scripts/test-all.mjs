#!/usr/bin/env node
// Runs every test suite (vitest unit tests, Playwright e2e tests), reads each suite's JSON
// report, and ends with one line `N passed, N failed` summed over all suites. Exits non-zero
// when anything failed. A suite that dies without a report, exits non-zero with no failing
// test in its report, or runs past its time limit counts as (at least) one failure, never as
// "0 failed".
//
// Env:
//   KVSCOPE_SUITES=unit,e2e        which suites to run (default: all, in that order)
//   KVSCOPE_SUITE_TIMEOUT_S        per-suite wall-clock limit (default: unit 900, e2e 480), so a
//                                  hung suite cannot hold CI past its 30 minutes
//   KVSCOPE_E2E_PORT               port for the e2e dev server (default: a free port)
// Reports are kept in test-results/reports/<suite>.json.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const reportsDir = join(root, 'test-results', 'reports');

/** @typedef {{ passed: number, failed: number, skipped: number, notes: string[] }} Counts */

/** Vitest's JSON report (jest-like). A file that fails to load has no failing test in it. */
function countVitest(report) {
  const notes = [];
  let failed = report.numFailedTests ?? 0;
  for (const file of report.testResults ?? []) {
    const failingTests = (file.assertionResults ?? []).filter((a) => a.status === 'failed').length;
    if (file.status === 'failed' && failingTests === 0) {
      failed += 1;
      const firstLine = String(file.message ?? '').split('\n')[0];
      notes.push(`${file.name.replace(root + '/', '')} failed outside any test: ${firstLine}`);
    }
  }
  return {
    passed: report.numPassedTests ?? 0,
    failed,
    skipped: (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0),
    notes,
  };
}

/** Playwright's JSON report: outcomes per test, plus errors outside tests (config, webServer). */
function countPlaywright(report) {
  const s = report.stats ?? {};
  const errors = report.errors ?? [];
  const notes = errors.map((e) => `error outside tests: ${String(e.message ?? e.value ?? '').split('\n')[0]}`);
  if (s.flaky) notes.push(`${s.flaky} flaky (passed on retry)`);
  return {
    passed: (s.expected ?? 0) + (s.flaky ?? 0),
    failed: (s.unexpected ?? 0) + errors.length,
    skipped: s.skipped ?? 0,
    notes,
  };
}

function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (srv.address());
      srv.close(() => ok(port));
    });
  });
}

const suites = {
  unit: {
    timeoutS: 900,
    command: (report) => ['npx', '--no-install', 'vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile=${report}`],
    env: async () => ({}),
    count: countVitest,
    listFiles: async (out) => {
      const run = await runCommand(['npx', '--no-install', 'vitest', 'list', '--filesOnly', `--json=${out}`], {}, 120_000);
      if (run.code !== 0 || !existsSync(out)) return [];
      return [...new Set(JSON.parse(readFileSync(out, 'utf8')).map((t) => t.file.replace(root + '/', '')))];
    },
  },
  e2e: {
    timeoutS: 480,
    command: () => ['npx', '--no-install', 'playwright', 'test', '--reporter=list,json'],
    env: async (report) => ({
      PLAYWRIGHT_JSON_OUTPUT_FILE: report,
      KVSCOPE_E2E_PORT: process.env.KVSCOPE_E2E_PORT ?? String(await freePort()),
    }),
    count: countPlaywright,
  },
};

/** The child running now, so a Ctrl-C or a timeout can stop its whole process group. */
let current = null;

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (current) killGroup(current, 'SIGTERM');
    process.exit(130);
  });
}

/** Runs one command; resolves to its exit code (null when killed) and whether it timed out. */
function runCommand(argv, env, limitMs) {
  return new Promise((ok) => {
    const child = spawn(argv[0], argv.slice(1), {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: 'inherit',
      detached: true, // own process group: vite, browsers and workers die with it
    });
    current = child;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGTERM');
      setTimeout(() => killGroup(child, 'SIGKILL'), 10_000).unref();
    }, Math.max(limitMs, 1000));
    child.on('error', (err) => {
      clearTimeout(timer);
      current = null;
      ok({ code: null, signal: null, timedOut, spawnError: err.message });
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      current = null;
      // Leftovers (e.g. a dev server that ignored SIGTERM) must not outlive the suite.
      killGroup(child, 'SIGKILL');
      ok({ code, signal, timedOut, spawnError: null });
    });
  });
}

const requested = (process.env.KVSCOPE_SUITES ?? Object.keys(suites).join(','))
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
const unknown = requested.filter((s) => !(s in suites));
if (unknown.length || requested.length === 0) {
  console.error(`KVSCOPE_SUITES: unknown suite(s) ${unknown.join(', ') || '(none given)'}; known: ${Object.keys(suites).join(', ')}`);
  process.exit(2);
}

const scratch = mkdtempSync(join(tmpdir(), 'kvscope-test-'));
mkdirSync(reportsDir, { recursive: true });

/**
 * Runs one suite (or one file of it) and counts its report. Whatever did not finish cleanly
 * counts as at least one failure.
 * @returns {Promise<Counts & { crashed: boolean }>}
 */
async function runAndCount(suite, report, extraArgs, limitMs) {
  const argv = [...suite.command(report), ...extraArgs];
  console.log(`\n=== ${argv.join(' ')}\n`);
  const run = await runCommand(argv, await suite.env(report), limitMs);
  /** @type {Counts} */
  let counts = { passed: 0, failed: 0, skipped: 0, notes: ['no report written'] };
  const hasReport = existsSync(report);
  if (hasReport) {
    try {
      counts = suite.count(JSON.parse(readFileSync(report, 'utf8')));
    } catch (err) {
      counts = { passed: 0, failed: 1, skipped: 0, notes: [`unreadable report: ${err.message}`] };
    }
  }
  const exit = run.spawnError
    ? `could not start: ${run.spawnError}`
    : run.timedOut
      ? `killed after its ${Math.round(limitMs / 1000)}s limit`
      : run.code === 0
        ? null
        : `exited with ${run.signal ?? `code ${run.code}`}`;
  if (exit) counts.notes.push(exit);
  // A report that says "0 failed" from a run that did not end cleanly is not believed.
  if ((exit || !hasReport) && counts.failed === 0) counts.failed = 1;
  return { ...counts, crashed: !hasReport };
}

const results = [];
for (const name of requested) {
  const suite = suites[name];
  const report = join(scratch, `${name}.json`);
  const timeoutMs = Number(process.env.KVSCOPE_SUITE_TIMEOUT_S ?? suite.timeoutS) * 1000;
  const started = Date.now();
  const deadline = started + timeoutMs;
  let counts = await runAndCount(suite, report, [], timeoutMs);
  if (existsSync(report)) copyFileSync(report, join(reportsDir, `${name}.json`));
  else rmSync(join(reportsDir, `${name}.json`), { force: true });

  // One file that kills the test process (e.g. a native WebGPU abort) loses every file's
  // results; rerun file by file so the others still count and the culprit is named.
  const files =
    counts.crashed && suite.listFiles && Date.now() < deadline ? await suite.listFiles(join(scratch, `${name}-files.json`)) : [];
  if (files.length > 0) {
    console.log(`\n=== ${name} crashed without a report; rerunning its ${files.length} files one at a time to isolate the crash`);
    const total = { passed: 0, failed: 0, skipped: 0, notes: [`the whole-suite run crashed (${counts.notes.join('; ')})`] };
    for (const [i, file] of files.entries()) {
      if (Date.now() >= deadline) {
        total.failed += 1;
        total.notes.push(`not rerun (suite time limit reached): ${files.slice(i).join(', ')}`);
        break;
      }
      const c = await runAndCount(suite, join(scratch, `${name}-${i}.json`), [file], deadline - Date.now());
      total.passed += c.passed;
      total.failed += c.failed;
      total.skipped += c.skipped;
      for (const note of c.notes) total.notes.push(`${file}: ${note}`);
    }
    if (total.failed === 0) {
      total.failed = 1;
      total.notes.push('every file passed on its own, but the whole-suite run crashed');
    }
    counts = total;
  }
  results.push({ name, seconds: (Date.now() - started) / 1000, ...counts });
}
rmSync(scratch, { recursive: true, force: true });

let passed = 0;
let failed = 0;
let skipped = 0;
console.log('\n=== summary');
for (const r of results) {
  passed += r.passed;
  failed += r.failed;
  skipped += r.skipped;
  console.log(`${r.name}: ${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped (${r.seconds.toFixed(1)}s)`);
  for (const note of r.notes) console.log(`  ${r.name}: ${note}`);
}
if (skipped) console.log(`${skipped} skipped`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
