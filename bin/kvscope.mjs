#!/usr/bin/env node
// Runs the built CLI (dist/cli.js) when present, else the TypeScript source through vite-node.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'cli.js');
if (existsSync(built)) {
  const { main } = await import(built);
  const code = await main(process.argv.slice(2));
  setTimeout(() => process.exit(code), 20);
} else {
  const r = spawnSync(process.execPath, [join(root, 'node_modules', 'vite-node', 'vite-node.mjs'), join(root, 'scripts', 'kvscope.ts'), '--', ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
