/**
 * End to end for training/: generate a little data -> train a tiny Llama for a few steps ->
 * export both layouts -> load them with kvscope's loaders -> same logits as PyTorch.
 * Needs Debian's PyTorch for /usr/bin/python3 (training/README.md); skipped without it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createChatFormatter } from '../src/model/chat-template';
import { createTokenizer } from '../src/model/tokenizer';
import { loadModel } from '../src/model/weights';
import { toFloat32 } from '../src/model/tensor';
import { ReferenceModel } from '../src/reference/forward';
import { renderChat } from '../training/chat-format';

const PY = process.env['KVSCOPE_PYTHON'] ?? '/usr/bin/python3';
const root = join(__dirname, '..');
const torchCheck = spawnSync(PY, ['-c', 'import torch'], { encoding: 'utf8' });
const hasTorch = torchCheck.status === 0;
if (!hasTorch) {
  console.warn(`training-smoke: skipped, ${PY} cannot import torch (apt-get install python3-torch libopenblas0-pthread)`);
}

const TINY = { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16 };

describe.skipIf(!hasTorch)('training pipeline smoke test (data -> train -> export -> load)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvscope-train-smoke-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const run = (cmd: string, args: string[]) =>
    execFileSync(cmd, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_NUM_THREADS: '2' } });

  it('trains a few steps, exports HF + MLC layouts that kvscope loads with the same numbers and logits', async () => {
    const vn = join(root, 'node_modules', '.bin', 'vite-node');
    const data = join(dir, 'data');
    run(vn, ['training/gen-data.ts', '--', '--out', join(data, 'train-64.jsonl'), '--seed', '11', '--n', '200', '--min-tokens', '24', '--max-tokens', '64']);
    run(vn, ['training/gen-data.ts', '--', '--out', join(data, 'eval-passkey-512.jsonl'), '--task', 'passkey', '--tokens', '128', '--depths', '10', '--per-depth', '10', '--split', 'heldout', '--seed', '12']);
    const lines = readFileSync(join(data, 'train-64.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { ids: number[]; ans: number; task: string });
    expect(lines).toHaveLength(200);
    expect(Math.max(...lines.map((l) => l.ids.length))).toBeLessThanOrEqual(64);
    expect(new Set(lines.map((l) => l.task)).size).toBeGreaterThanOrEqual(5);

    const log = run(PY, ['training/train.py', '--run', 'smoke', '--data', data, '--out-dir', join(dir, 'runs'),
      '--stages', '64:6:4', '--eval-every', '3', '--warmup', '2', '--config', JSON.stringify(TINY)]);
    expect(log).toMatch(/eval step 6: passkey-512 /);
    const ckpt = join(dir, 'runs', 'smoke', 'ckpt.pt');
    expect(existsSync(ckpt)).toBe(true);

    // Token ids of real text, through the runtime's tokenizer and chat template.
    const hfDir = join(dir, 'model', 'hf');
    const out = join(dir, 'model');
    run(PY, ['training/export.py', '--ckpt', ckpt, '--out', out, '--tokenizer', 'models/kvscope-tiny/hf/tokenizer.json']);
    const hf = await loadModel(hfDir);
    const mlc = await loadModel(join(out, 'mlc'));
    expect(hf.config).toMatchObject({ family: 'llama', numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, tieWordEmbeddings: true, vocabSize: 4096 });
    const { architecture: _arch, ...hfRest } = hf.config;
    expect(_arch).toBe('LlamaForCausalLM');
    expect(mlc.config).toEqual(hfRest);
    expect([...mlc.weights.keys()].sort()).toEqual([...hf.weights.keys()].sort());
    for (const [name, t] of hf.weights) {
      expect(t.dtype, name).toBe('f16');
      expect(Buffer.compare(Buffer.from(t.data), Buffer.from(mlc.weights.get(name)!.data)), name).toBe(0);
    }

    const tok = createTokenizer(hf);
    const messages = [
      { role: 'user' as const, content: 'The pass key is 40912. What is the pass key?' },
      { role: 'assistant' as const, content: '40912' },
    ];
    const rendered = createChatFormatter(hf)!.render(messages.slice(0, 1));
    expect(rendered.prompt).toBe(renderChat(messages).prompt); // Jinja template == training's format
    const mlcRendered = createChatFormatter({ ...mlc, chatTemplate: undefined })!.render(messages.slice(0, 1));
    const ids = tok.encode(rendered.prompt, { addBos: false });
    // MLC's conv_template puts BOS in prefixTokenIds instead of the text; same tokens.
    expect([...mlcRendered.prefixTokenIds, ...tok.encode(mlcRendered.prompt, { addBos: false })]).toEqual(ids);
    expect(tok.decode(ids, { skipSpecialTokens: false })).toBe(rendered.prompt);

    const logitsFile = join(dir, 'logits.json');
    run(PY, ['training/export.py', '--ckpt', ckpt, '--out', out, '--tokenizer', 'models/kvscope-tiny/hf/tokenizer.json',
      '--logits-out', logitsFile, '--logits-ids', ids.join(',')]);
    const torchOut = JSON.parse(readFileSync(logitsFile, 'utf8')) as { ids: number[]; logits: number[][]; argmax: number[] };
    expect(torchOut.ids).toEqual(ids);

    for (const model of [hf, mlc]) {
      const weights = new Map([...model.weights].map(([n, t]) => [n, toFloat32(t)]));
      const ref = new ReferenceModel(model.config, weights);
      const logits = ref.forwardAll(ids);
      let maxDiff = 0;
      let maxAbs = 0;
      logits.forEach((row, i) => {
        const want = torchOut.logits[i]!;
        for (let v = 0; v < row.length; v++) {
          maxDiff = Math.max(maxDiff, Math.abs(row[v]! - want[v]!));
          maxAbs = Math.max(maxAbs, Math.abs(want[v]!));
        }
        let best = 0;
        for (let v = 1; v < row.length; v++) if (row[v]! > row[best]!) best = v;
        expect(best, `argmax at position ${i} (${model.layout})`).toBe(torchOut.argmax[i]);
      });
      expect(maxDiff, `${model.layout}: max |logit diff| (max |logit| ${maxAbs})`).toBeLessThan(1e-3 * Math.max(1, maxAbs));
    }
  }, 120_000);

  it('the shipped models/kvscope-tiny is the export of the committed checkpoint, and kvscope matches PyTorch on it', async () => {
    const out = join(dir, 'shipped');
    const logitsFile = join(dir, 'shipped-logits.json');
    const shipped = join(root, 'models', 'kvscope-tiny');
    const hf = await loadModel(join(shipped, 'hf'));
    const mlc = await loadModel(join(shipped, 'mlc'));
    const tok = createTokenizer(hf);
    const ids = tok.encode('<|bos|>The pass key is 40912. Remember it. What is the pass key? The pass key is', { addBos: false });
    run(PY, ['training/export.py', '--ckpt', 'training/checkpoints/kvscope-tiny.pt', '--out', out,
      '--tokenizer', 'models/kvscope-tiny/hf/tokenizer.json', '--logits-out', logitsFile, '--logits-ids', ids.join(',')]);
    for (const f of ['hf/model.safetensors', 'hf/config.json', 'mlc/tensor-cache.json', 'mlc/params_shard_0.bin', 'mlc/mlc-chat-config.json']) {
      expect(Buffer.compare(readFileSync(join(out, f)), readFileSync(join(shipped, f))), f).toBe(0);
    }
    const torchOut = JSON.parse(readFileSync(logitsFile, 'utf8')) as { logits: number[][]; argmax: number[] };
    for (const model of [hf, mlc]) {
      const ref = new ReferenceModel(model.config, new Map([...model.weights].map(([n, t]) => [n, toFloat32(t)])));
      ref.forwardAll(ids).forEach((row, i) => {
        let best = 0;
        let diff = 0;
        for (let v = 0; v < row.length; v++) {
          if (row[v]! > row[best]!) best = v;
          diff = Math.max(diff, Math.abs(row[v]! - torchOut.logits[i]![v]!));
        }
        expect(best, `argmax at ${i} (${model.layout})`).toBe(torchOut.argmax[i]);
        expect(diff, `max |logit diff| at ${i} (${model.layout})`).toBeLessThan(1e-2);
      });
    }
  }, 120_000);
});
