/**
 * A small random-weight chat model for the browser tests, written once into
 * e2e/fixtures/ (git-ignored) so Vite serves it. Its answers are nonsense, but loading,
 * streaming, the chat template and the worker are all real. Node side only.
 */
import type { BrowserContext } from '@playwright/test';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MlcConvTemplate } from '../../src/model/chat-template';
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

/** A ChatML conversation template in MLC's `conv_template` form (Qwen2 / SmolLM style), ending turns at `eos`. */
export function chatmlConvTemplate(name: string, eos: number): MlcConvTemplate {
  return {
    name,
    system_template: '<|im_start|>system\n{system_message}<|im_end|>\n',
    system_message: 'You are a helpful assistant.',
    add_role_after_system_message: true,
    roles: { user: '<|im_start|>user', assistant: '<|im_start|>assistant' },
    role_templates: { user: '{user_message}', assistant: '{assistant_message}' },
    seps: ['<|im_end|>\n'],
    role_content_sep: '\n',
    role_empty_sep: '\n',
    stop_str: ['<|im_end|>'],
    stop_token_ids: [eos],
  };
}
