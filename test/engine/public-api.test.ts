import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../src/engine/engine';
import { Gpu } from '../../src/gpu/device';
import { writeModelDir } from '../../src/model/writers';
import { testGpu } from '../gpu';
import { loaded, qwenLike, randomWeights, smolLike, tinyTokenizer } from './fixtures';

const root = join(__dirname, '..', '..');

describe('public API', () => {
  it('imports in plain Node without touching WebGPU', () => {
    // A fresh process with no WebGPU globals: importing the package must not fail.
    const code = `const m = await import(${JSON.stringify(join(root, 'src/index.ts'))});
      if (typeof m.Engine !== 'function' || typeof m.NoWebGPUError !== 'function') throw new Error('exports missing');
      if ('GPUBuffer' in globalThis || 'navigator' in globalThis && globalThis.navigator.gpu) throw new Error('WebGPU touched');
      console.log('import-ok');`;
    const script = join(mkdtempSync(join(tmpdir(), 'kvscope-import-')), 'import.ts');
    writeFileSync(script, code);
    const r = spawnSync(process.execPath, [join(root, 'node_modules/vite-node/vite-node.mjs'), script], { encoding: 'utf8', cwd: root });
    expect(r.stdout + r.stderr).toContain('import-ok');
  });
});

describe('same model as safetensors and as an MLC shard set', () => {
  for (const [name, cfg] of [['SmolLM2-shaped', smolLike], ['Qwen2-shaped', qwenLike]] as const) {
    it(`${name}: identical logits from both layouts`, async () => {
      const gpu = await testGpu();
      const weights = randomWeights(cfg, 'f16', 5);
      const dir = mkdtempSync(join(tmpdir(), 'kvscope-layouts-'));
      try {
        await writeModelDir(join(dir, 'hf'), cfg, weights, 'hf', undefined, { maxShardBytes: 100_000 });
        await writeModelDir(join(dir, 'mlc'), cfg, weights, 'mlc');
        const a = await Engine.load({ model: join(dir, 'hf'), gpu, contextLength: 64 });
        const b = await Engine.load({ model: join(dir, 'mlc'), gpu, contextLength: 64 });
        const tokens = [5, 17, 99, 3, 250, 7, 7, 1];
        const la = await a.teacherForce(tokens);
        const lb = await b.teacherForce(tokens);
        for (let i = 0; i < tokens.length; i++) expect(Buffer.from(lb[i]!.buffer).equals(Buffer.from(la[i]!.buffer))).toBe(true);
        a.unload();
        b.unload();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('bad model input -> typed error, and the engine still loads a good model afterwards', () => {
  it('unknown path, truncated weights, missing tensor, unsupported architecture, too-large tensor', async () => {
    const gpu = await testGpu();
    const dir = mkdtempSync(join(tmpdir(), 'kvscope-bad-'));
    const fs = await import('node:fs/promises');
    try {
      const weights = randomWeights(smolLike, 'f32', 6);
      await writeModelDir(join(dir, 'good'), smolLike, weights, 'hf');
      await expect(Engine.load({ model: join(dir, 'nope'), gpu })).rejects.toMatchObject({ code: 'bad-model-url' });

      await fs.cp(join(dir, 'good'), join(dir, 'trunc'), { recursive: true });
      const st = await fs.readFile(join(dir, 'trunc', 'model.safetensors'));
      await fs.writeFile(join(dir, 'trunc', 'model.safetensors'), st.subarray(0, st.length - 1000));
      await expect(Engine.load({ model: join(dir, 'trunc'), gpu })).rejects.toMatchObject({ name: 'ModelLoadError', code: 'bad-weights' });

      const missing = new Map(weights);
      missing.delete('model.layers.1.mlp.up_proj.weight');
      await writeModelDir(join(dir, 'missing'), smolLike, missing, 'hf');
      await expect(Engine.load({ model: join(dir, 'missing'), gpu })).rejects.toMatchObject({ code: 'missing-tensor' });

      await fs.cp(join(dir, 'good'), join(dir, 'arch'), { recursive: true });
      const cfg = JSON.parse(await fs.readFile(join(dir, 'arch', 'config.json'), 'utf8'));
      cfg.architectures = ['MambaForCausalLM'];
      cfg.model_type = 'mamba';
      await fs.writeFile(join(dir, 'arch', 'config.json'), JSON.stringify(cfg));
      await expect(Engine.load({ model: join(dir, 'arch'), gpu })).rejects.toMatchObject({ name: 'UnsupportedError', code: 'unsupported-architecture' });

      // A device whose max binding is smaller than the embedding table: refused by name.
      const small = await Gpu.create();
      (small as { maxBinding: number }).maxBinding = 64 * 1024;
      await expect(Engine.load({ model: join(dir, 'good'), gpu: small })).rejects.toMatchObject({ code: 'tensor-too-large' });
      await expect(Engine.load({ model: join(dir, 'good'), gpu: small })).rejects.toThrow(/embed_tokens/);
      expect(small.bytes('weights')).toBe(0); // nothing leaked from the failed loads
      small.destroy();

      const ok = await Engine.load({ model: join(dir, 'good'), gpu, contextLength: 32 });
      const r = await ok.generateText([1, 2, 3], { maxTokens: 3, stopTokenIds: [] });
      expect(r.ids.length).toBe(3);
      ok.unload();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('CLI', () => {
  it('kvscope generate streams text from a model directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvscope-cli-'));
    try {
      const m = loaded(smolLike, randomWeights(smolLike, 'f16', 7), true);
      const tok = tinyTokenizer(smolLike.vocabSize);
      await writeModelDir(dir, m.config, m.weights, 'hf', { tokenizerJson: tok.tokenizerJson, tokenizerConfig: tok.tokenizerConfig });
      const r = spawnSync(process.execPath, [join(root, 'bin/kvscope.mjs'), 'generate', '--model', dir, '--prompt', 'The quick brown', '--max-tokens', '5'], { encoding: 'utf8', cwd: root, timeout: 120_000 });
      expect(r.status).toBe(0);
      expect(r.stderr).toMatch(/generated \d+ tok, decode [\d.]+ tok\/s/);
      const bad = spawnSync(process.execPath, [join(root, 'bin/kvscope.mjs'), 'generate', '--model', join(dir, 'nope'), '--prompt', 'x'], { encoding: 'utf8', cwd: root, timeout: 120_000 });
      expect(bad.status).toBe(1);
      expect(bad.stderr).toContain('error [bad-model-url]');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
