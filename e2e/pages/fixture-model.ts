/**
 * A small random-weight chat model for the browser tests, written once into
 * e2e/fixtures/ (git-ignored) so Vite serves it. Its answers are nonsense, but loading,
 * streaming, the chat template and the worker are all real. Node side only.
 */
import type { BrowserContext } from '@playwright/test';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeModelDir } from '../../src/model/writers';
import { loaded, randomWeights, smolLike } from '../../test/engine/fixtures';

export const FIXTURES_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');

/** Writes the model (if missing) and returns its directory and its URL path on the dev server. */
export async function ensureTinyChatModel(name = 'tiny-chat'): Promise<{ dir: string; urlPath: string }> {
  const dir = join(FIXTURES_DIR, name);
  if (!existsSync(join(dir, 'config.json'))) {
    const m = loaded({ ...smolLike, contextLength: 1024 }, randomWeights(smolLike, 'f16', 21), true);
    await writeModelDir(dir, m.config, m.weights, 'hf', {
      tokenizerJson: m.tokenizerJson!,
      tokenizerConfig: m.tokenizerConfig!,
      chatTemplate: m.chatTemplate!,
    });
  }
  return { dir, urlPath: `/e2e/fixtures/${name}/` };
}

/**
 * Serves e2e/fixtures like a static file server: a missing file is a 404. Vite's dev server
 * answers index.html (200) for any missing path, which the model loader's optional-file probes
 * (mlc-chat-config.json, generation_config.json) read as invalid JSON.
 */
export async function serveFixturesStatically(context: BrowserContext): Promise<void> {
  await context.route('**/e2e/fixtures/**', async (route) => {
    const rel = decodeURIComponent(new URL(route.request().url()).pathname).replace(/^\/e2e\/fixtures\//, '');
    const file = join(FIXTURES_DIR, rel);
    if (rel.includes('..') || !existsSync(file)) return route.fulfill({ status: 404, body: 'not found' });
    const body = readFileSync(file);
    await route.fulfill({ status: 200, body, headers: { 'content-type': file.endsWith('.json') ? 'application/json' : 'application/octet-stream', 'content-length': String(body.length) } });
  });
}
