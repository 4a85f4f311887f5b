import { expect, test } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureTinyChatModel } from './pages/fixture-model';

// Proof that embedding via npm works: build the library, `npm pack` it, install the tarball
// into a fresh Vite app, build that app, serve it statically and generate text in Chromium.
// About 45 s on two cores (two Vite builds, tsc, npm install); KVSCOPE_E2E_NPM_PACK=0 skips it.
// npm install runs with --prefer-offline: the tarball's dependencies come from the npm cache.

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const enabled = process.env.KVSCOPE_E2E_NPM_PACK !== '0';

function run(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_update_notifier: 'false' } });
}

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json', '.map': 'application/json' };

/** A plain static server (404 for missing files), like a CDN would be. */
function serve(dir: string): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    let file = join(dir, path.endsWith('/') ? path + 'index.html' : path);
    if (!file.startsWith(dir) || !existsSync(file) || statSync(file).isDirectory()) {
      if (existsSync(join(file, 'index.html'))) file = join(file, 'index.html');
      else {
        res.writeHead(404).end('not found');
        return;
      }
    }
    const body = readFileSync(file);
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'content-length': body.length }).end(body);
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({ server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/` })));
}

test.describe('npm package', () => {
  test.skip(!enabled, 'KVSCOPE_E2E_NPM_PACK=0');
  test.setTimeout(480_000);

  test('npm pack -> install into a fresh Vite app -> build -> generate text in Chromium', async ({ page }) => {
    const work = mkdtempSync(join(tmpdir(), 'kvscope-pack-'));
    let server: Server | undefined;
    try {
      // 1. The library, built into a staging copy of the package (the checkout's dist/ is left alone).
      const stage = join(work, 'package');
      mkdirSync(stage);
      run('npx', ['--no-install', 'vite', 'build', '--mode', 'lib', '--outDir', join(stage, 'dist'), '--emptyOutDir'], root);
      run('npx', ['--no-install', 'tsc', '-p', 'tsconfig.build.json', '--declarationDir', join(stage, 'dist', 'types')], root);
      for (const f of ['package.json', 'README.md', 'LICENSE', 'bin', 'shaders']) if (existsSync(join(root, f))) cpSync(join(root, f), join(stage, f), { recursive: true });
      run('npm', ['pack', '--pack-destination', work], stage);
      const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'));
      expect(tarball).toBeTruthy();

      // 2. A fresh app that depends on the tarball.
      const app = join(work, 'app');
      mkdirSync(join(app, 'public'), { recursive: true });
      writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'kvscope-consumer', private: true, type: 'module', dependencies: { kvscope: `file:${join(work, tarball!)}` } }, null, 2));
      run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund'], app);
      writeFileSync(
        join(app, 'index.html'),
        '<!doctype html><html><body><pre id="out">loading</pre><script type="module" src="/main.js"></script></body></html>',
      );
      writeFileSync(
        join(app, 'main.js'),
        `import { createEngine } from 'kvscope';
const out = document.getElementById('out');
try {
  const engine = await createEngine({ model: 'model/', contextLength: 256 });
  let text = '';
  let chunks = 0;
  const stream = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'The sky is' }], stream: true, max_tokens: 8 });
  let usage = null;
  for await (const c of stream) {
    if (c.choices[0]?.delta.content) { text += c.choices[0].delta.content; chunks++; }
    if (c.usage) usage = c.usage;
  }
  window.result = { ok: true, inWorker: engine.inWorker, chunks, text, completionTokens: usage.completion_tokens };
} catch (e) {
  window.result = { ok: false, name: e.name, code: e.code, message: e.message };
}
out.textContent = JSON.stringify(window.result);
`,
      );
      cpSync((await ensureTinyChatModel()).dir, join(app, 'public', 'model'), { recursive: true });
      run(process.execPath, [join(root, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--logLevel', 'warn'], app);

      // 3. Serve the built app and generate text in it.
      const served = await serve(join(app, 'dist'));
      server = served.server;
      await page.goto(served.url);
      const handle = await page.waitForFunction(() => (window as unknown as { result?: unknown }).result, undefined, { timeout: 180_000 });
      const result = (await handle.jsonValue()) as { ok: boolean; inWorker?: boolean; chunks?: number; completionTokens?: number; message?: string };
      expect(result, JSON.stringify(result)).toMatchObject({ ok: true, inWorker: true });
      expect(result.completionTokens).toBeGreaterThan(0);
    } finally {
      server?.close();
      rmSync(work, { recursive: true, force: true });
    }
  });
});
