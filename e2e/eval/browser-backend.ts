/**
 * Browser back end: Playwright + Debian Chromium (WebGPU on SwiftShader, or a real GPU),
 * a Vite dev server for the page and the model files, and a fresh browser context per
 * variant. Prompts are prepared in Node (same ids as the Node back end); the page runs them
 * with the same engine code and returns the same fields.
 */
import { createServer as createNetServer } from 'node:net';
import type { Browser, BrowserContext, Page } from '@playwright/test';
import type { ViteDevServer } from 'vite';
import type { Backend, CaseOutput, VariantSession } from '../../src/eval/runner';
import type { EvalCase } from '../../src/eval/spec';
import { CHROMIUM_BASE_ARGS, CHROMIUM_PATH, WEBGPU_ARGS } from '../chromium';
import { ROOT } from './harness';
import type { EvalPageApi } from './page';

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createNetServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? res(a.port) : rej(new Error('no port'))));
    });
  });
}

export class BrowserBackend implements Backend {
  readonly name = 'browser';
  private server: ViteDevServer | undefined;
  private browser: Browser | undefined;
  private baseUrl = '';

  private async start(): Promise<void> {
    if (this.browser) return;
    const { createServer } = await import('vite');
    const port = await freePort();
    this.server = await createServer({ root: ROOT, configFile: `${ROOT}/vite.config.ts`, logLevel: 'warn', server: { host: '127.0.0.1', port, strictPort: true } });
    await this.server.listen();
    this.baseUrl = `http://127.0.0.1:${port}`;
    const { chromium } = await import('@playwright/test');
    this.browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: [...CHROMIUM_BASE_ARGS, ...WEBGPU_ARGS] });
  }

  async open(first: EvalCase): Promise<VariantSession> {
    await this.start();
    const context: BrowserContext = await this.browser!.newContext();
    const page: Page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    try {
      await page.goto(`${this.baseUrl}/e2e/eval/page.html`);
      await page.waitForFunction(() => 'kvscopeEval' in window, undefined, { timeout: 120_000 });
      const modelUrl = `/${first.model.path.replace(/^\/+|\/+$/g, '')}/`;
      const gatesUrl = first.gates ? `/${first.gates.replace(/^\/+/, '')}` : null;
      await page.evaluate(
        ([url, ctx, chunk, policy, gates, sharing]) => (window as unknown as { kvscopeEval: EvalPageApi }).kvscopeEval.open(url, ctx, chunk, policy, gates, sharing),
        [modelUrl, first.contextLength, first.prefillChunk, first.policy, gatesUrl, first.sharing] as const,
      );
    } catch (e) {
      await context.close().catch(() => undefined);
      throw new Error(`browser: opening ${first.variant} failed: ${(e as Error).message}${errors.length ? ` (page errors: ${errors.join('; ')})` : ''}`);
    }
    return {
      run: async (prompt, _c, signal): Promise<CaseOutput> => {
        // A timed-out case closes the whole context (the page cannot be interrupted mid-dispatch).
        const onAbort = () => void context.close().catch(() => undefined);
        signal.addEventListener('abort', onAbort, { once: true });
        try {
          return await page.evaluate(
            ([ids, max]) => (window as unknown as { kvscopeEval: EvalPageApi }).kvscopeEval.run(ids, max),
            [prompt.ids, prompt.maxTokens] as const,
          );
        } finally {
          signal.removeEventListener('abort', onAbort);
        }
      },
      close: () => context.close().catch(() => undefined),
    };
  }

  async close(): Promise<void> {
    await this.browser?.close().catch(() => undefined);
    await this.server?.close();
    this.browser = undefined;
    this.server = undefined;
  }
}
