import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelLoadError, ShapeMismatchError, UnsupportedError } from '../../src/errors';
import { toHfConfig, toMlcChatConfig } from '../../src/model/config';
import { loadMlcTensors, mlcToHfWeights, parseMlcTensorCache } from '../../src/model/mlc';
import { loadSafetensors, parseSafetensors } from '../../src/model/safetensors';
import { MemorySource, concatBytes, openModelSource } from '../../src/model/source';
import { type HostTensor, type WeightSet, sameTensorBytes, toFloat32 } from '../../src/model/tensor';
import { expectedTensorShapes, loadModel, validateWeights } from '../../src/model/weights';
import { randomModel, writeMlcShards, writeModelDir, writeSafetensors } from '../../src/model/writers';
import { TINY_QWEN, TINY_SMOL, serveDir, withTempDir } from './fixtures';

async function expectRejects(p: Promise<unknown>, cls: new (...args: never[]) => Error, code: string, message?: RegExp): Promise<Error> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, `expected ${cls.name}(${code})`).toBeInstanceOf(cls);
  expect((e as { code: string }).code).toBe(code);
  if (message) expect((e as Error).message).toMatch(message);
  return e as Error;
}

function expectThrows(fn: () => unknown, cls: new (...args: never[]) => Error, code: string, message?: RegExp): void {
  let e: unknown;
  try {
    fn();
  } catch (err) {
    e = err;
  }
  expect(e, `expected ${cls.name}(${code})`).toBeInstanceOf(cls);
  expect((e as { code: string }).code).toBe(code);
  if (message) expect((e as Error).message).toMatch(message);
}

function expectSameWeights(a: WeightSet, b: WeightSet): void {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  for (const [name, t] of a) {
    const u = b.get(name)!;
    expect({ name, dtype: u.dtype, shape: u.shape }).toEqual({ name, dtype: t.dtype, shape: t.shape });
    if (!sameTensorBytes(t, u)) throw new Error(`bytes of ${name} differ`);
  }
}

/** A safetensors file built by hand from a header object. */
function rawSafetensors(header: unknown, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

describe('randomModel', () => {
  it('builds every tensor the config implies, deterministically, with sane statistics', () => {
    const w = randomModel(TINY_QWEN, 'f32', 7);
    expect([...w.keys()].sort()).toEqual([...expectedTensorShapes(TINY_QWEN).keys()].sort());
    expect(w.has('lm_head.weight')).toBe(true);
    expect(randomModel(TINY_SMOL, 'f32', 1).has('lm_head.weight')).toBe(false);
    const again = randomModel(TINY_QWEN, 'f32', 7);
    for (const [name, t] of w) expect(sameTensorBytes(t, again.get(name)!)).toBe(true);
    const other = randomModel(TINY_QWEN, 'f32', 8);
    expect(sameTensorBytes(w.get('model.norm.weight')!, other.get('model.norm.weight')!)).toBe(false);

    const emb = toFloat32(w.get('model.embed_tokens.weight')!);
    const mean = emb.reduce((s, v) => s + v, 0) / emb.length;
    const std = Math.sqrt(emb.reduce((s, v) => s + (v - mean) ** 2, 0) / emb.length);
    expect(Math.abs(mean)).toBeLessThan(0.002);
    expect(std).toBeGreaterThan(0.018);
    expect(std).toBeLessThan(0.022);
    const norm = toFloat32(w.get('model.layers.0.input_layernorm.weight')!);
    expect(norm.reduce((s, v) => s + v, 0) / norm.length).toBeGreaterThan(0.9);
    expect(new Set(norm).size).toBeGreaterThan(norm.length / 2); // jittered, not all ones
    expect(validateWeights(TINY_QWEN, w)).toMatchObject({ matrixDtype: 'f32' });
  });

  it('encodes f16 and bf16 as rounded versions of the same values', () => {
    const f32 = toFloat32(randomModel(TINY_SMOL, 'f32', 3).get('model.layers.1.mlp.up_proj.weight')!);
    const f16 = toFloat32(randomModel(TINY_SMOL, 'f16', 3).get('model.layers.1.mlp.up_proj.weight')!);
    const bf16 = toFloat32(randomModel(TINY_SMOL, 'bf16', 3).get('model.layers.1.mlp.up_proj.weight')!);
    let e16 = 0;
    let eb16 = 0;
    for (let i = 0; i < f32.length; i++) {
      if (Math.abs(f32[i]!) < 2 ** -14) continue; // f16 subnormals have absolute, not relative, precision
      e16 = Math.max(e16, Math.abs(f16[i]! - f32[i]!) / Math.abs(f32[i]!));
      eb16 = Math.max(eb16, Math.abs(bf16[i]! - f32[i]!) / Math.abs(f32[i]!));
    }
    expect(e16).toBeLessThanOrEqual(2 ** -11 + 1e-9); // half an ulp
    expect(e16).toBeGreaterThan(0);
    expect(eb16).toBeLessThanOrEqual(2 ** -8 + 1e-9);
    expect(eb16).toBeGreaterThan(0);
  });
});

describe('safetensors', () => {
  it('round-trips f32/f16/bf16 tensors byte for byte', () => {
    for (const dtype of ['f32', 'f16', 'bf16'] as const) {
      const w = randomModel(TINY_QWEN, dtype, 11);
      const bytes = writeSafetensors(w.values());
      const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      expect(headerLen % 8).toBe(0);
      expectSameWeights(w, parseSafetensors(bytes));
    }
  });

  it('loads a sharded checkpoint through model.safetensors.index.json with progress', async () => {
    await withTempDir(async (dir) => {
      const w = randomModel(TINY_QWEN, 'bf16', 5);
      await writeModelDir(dir, TINY_QWEN, w, 'hf', undefined, { maxShardBytes: 40_000 });
      const files = (await readdir(dir)).sort();
      expect(files).toContain('model.safetensors.index.json');
      const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
      expect(shards.length).toBeGreaterThan(2);
      const events: [number, number][] = [];
      const loaded = await loadSafetensors(openModelSource(dir), (l, t) => events.push([l, t]));
      expectSameWeights(w, loaded);
      const last = events.at(-1)!;
      expect(last[0]).toBe(last[1]);
      for (let i = 1; i < events.length; i++) expect(events[i]![0]).toBeGreaterThanOrEqual(events[i - 1]![0]);
    });
  });

  it('names the shard when the index lists a tensor the shard lacks', async () => {
    const a = writeSafetensors([{ name: 'a', dtype: 'f32', shape: [1], data: new Uint8Array(4) }]);
    const index = new TextEncoder().encode(JSON.stringify({ weight_map: { a: 's1.safetensors', b: 's1.safetensors' } }));
    const src = new MemorySource(new Map([['model.safetensors.index.json', index], ['s1.safetensors', a]]));
    await expectRejects(loadSafetensors(src), ModelLoadError, 'bad-weights', /s1\.safetensors.*"b"/);
  });
});

describe('MLC tensor cache', () => {
  it('round-trips through fused shards (qkv_proj / gate_up_proj for llama, c_attn with bias for qwen2)', async () => {
    for (const config of [TINY_SMOL, TINY_QWEN]) {
      const w = randomModel(config, 'f16', 2);
      const { tensorCache, shards } = writeMlcShards(w, { config, shardBytes: 30_000 });
      expect(shards.size).toBeGreaterThan(1);
      const names = tensorCache.records.flatMap((s) => s.records.map((r) => r.name));
      const qkv = config.family === 'qwen2' ? 'c_attn' : 'qkv_proj';
      expect(names).toContain(`model.layers.1.self_attn.${qkv}.weight`);
      expect(names).toContain('model.layers.0.mlp.gate_up_proj.weight');
      expect(names.some((n) => /q_proj|gate_proj|up_proj\.weight$/.test(n) && !n.includes('gate_up'))).toBe(false);
      if (config.attentionBias) expect(names).toContain('model.layers.0.self_attn.c_attn.bias');
      const fused = tensorCache.records.flatMap((s) => s.records).find((r) => r.name === `model.layers.0.self_attn.${qkv}.weight`)!;
      expect(fused.shape).toEqual([(config.numHeads + 2 * config.numKvHeads) * config.headDim, config.hiddenSize]);
      expect(fused.dtype).toBe('float16');
      // MLC's layout, independently of our reader: rows [q; k; v] and [gate; up], concatenated.
      const shardOf = (n: string) => {
        const shard = tensorCache.records.find((s) => s.records.some((r) => r.name === n))!;
        const r = shard.records.find((x) => x.name === n)!;
        return shards.get(shard.dataPath)!.subarray(r.byteOffset, r.byteOffset + r.nbytes);
      };
      const cat = (...names: string[]) => concatBytes(names.map((n) => w.get(n)!.data));
      const p = 'model.layers.0';
      expect(shardOf(`${p}.self_attn.${qkv}.weight`)).toEqual(cat(`${p}.self_attn.q_proj.weight`, `${p}.self_attn.k_proj.weight`, `${p}.self_attn.v_proj.weight`));
      expect(shardOf(`${p}.mlp.gate_up_proj.weight`)).toEqual(cat(`${p}.mlp.gate_proj.weight`, `${p}.mlp.up_proj.weight`));
      if (config.attentionBias) {
        expect(shardOf(`${p}.self_attn.c_attn.bias`)).toEqual(cat(`${p}.self_attn.q_proj.bias`, `${p}.self_attn.k_proj.bias`, `${p}.self_attn.v_proj.bias`));
      }

      const files = new Map<string, Uint8Array>(shards);
      files.set('ndarray-cache.json', new TextEncoder().encode(JSON.stringify(tensorCache)));
      const { tensors, cacheFile } = await loadMlcTensors(new MemorySource(files));
      expect(cacheFile).toBe('ndarray-cache.json');
      expectSameWeights(w, mlcToHfWeights(tensors, config));
    }
  });

  it('decodes f32-to-bf16 records to bf16 tensors holding the stored values', async () => {
    const w = randomModel(TINY_SMOL, 'f32', 9);
    const { tensorCache, shards } = writeMlcShards(w, { config: TINY_SMOL, format: 'f32-to-bf16' });
    const rec = tensorCache.records[0]!.records[0]!;
    expect(rec).toMatchObject({ dtype: 'float32', format: 'f32-to-bf16', nbytes: TINY_SMOL.vocabSize * TINY_SMOL.hiddenSize * 2 });
    const files = new Map<string, Uint8Array>(shards);
    files.set('tensor-cache.json', new TextEncoder().encode(JSON.stringify(tensorCache)));
    const hf = mlcToHfWeights((await loadMlcTensors(new MemorySource(files))).tensors, TINY_SMOL);
    const bf16 = randomModel(TINY_SMOL, 'bf16', 9);
    expectSameWeights(bf16, hf);
  });

  it('the same tensors as safetensors and as an MLC shard set give identical bytes per logical tensor', async () => {
    for (const [config, dtype] of [[TINY_SMOL, 'f32'], [TINY_QWEN, 'f16'], [TINY_QWEN, 'bf16']] as const) {
      await withTempDir(async (dir) => {
        const w = randomModel(config, dtype, 42);
        await writeModelDir(join(dir, 'hf'), config, w, 'hf');
        await writeModelDir(join(dir, 'mlc'), config, w, 'mlc', undefined, { maxShardBytes: 50_000 });
        const hf = await loadModel(join(dir, 'hf'));
        const mlc = await loadModel(join(dir, 'mlc'));
        expect(hf.layout).toBe('hf');
        expect(mlc.layout).toBe('mlc');
        const { architecture: _a, ...hfConfig } = hf.config;
        expect(mlc.config).toEqual(hfConfig);
        expectSameWeights(hf.weights, mlc.weights);
        expectSameWeights(w, mlc.weights);
        const mlcFiles = await readdir(join(dir, 'mlc'));
        expect(mlcFiles.filter((f) => f.startsWith('params_shard_')).length).toBeGreaterThan(1);
      });
    }
  });

  it('a fused tensor whose rows contradict the config is a shape mismatch', async () => {
    await withTempDir(async (dir) => {
      await writeModelDir(dir, TINY_QWEN, randomModel(TINY_QWEN, 'f32', 1), 'mlc');
      const path = join(dir, 'mlc-chat-config.json');
      const json = JSON.parse(await readFile(path, 'utf8'));
      json.model_config.num_key_value_heads = 4;
      await writeFile(path, JSON.stringify(json));
      await expectRejects(loadModel(dir), ShapeMismatchError, 'shape-mismatch', /"model\.layers\.0\.self_attn\.c_attn\.(weight|bias)" has 128 rows.*64 \+ 64 \+ 64 = 192/);
    });
  });

  it('rejects quantized records and truncated shards', async () => {
    const w = randomModel(TINY_SMOL, 'f16', 2);
    const { tensorCache, shards } = writeMlcShards(w, { config: TINY_SMOL });
    const quantized = structuredClone(tensorCache);
    quantized.records[0]!.records[0]!.dtype = 'uint32';
    const files = new Map<string, Uint8Array>(shards);
    files.set('tensor-cache.json', new TextEncoder().encode(JSON.stringify(quantized)));
    await expectRejects(loadMlcTensors(new MemorySource(files)), UnsupportedError, 'unsupported-dtype', /model\.embed_tokens\.weight.*uint32/);

    const truncated = new Map<string, Uint8Array>(shards);
    truncated.set('params_shard_0.bin', shards.get('params_shard_0.bin')!.subarray(0, 100));
    truncated.set('tensor-cache.json', new TextEncoder().encode(JSON.stringify(tensorCache)));
    await expectRejects(loadMlcTensors(new MemorySource(truncated)), ModelLoadError, 'bad-weights', /params_shard_0\.bin.*truncated/);
    expectThrows(() => parseMlcTensorCache({ records: [{ dataPath: 'x', nbytes: 1, records: [{ name: 'a' }] }] }), ModelLoadError, 'bad-weights', /"a"/);
  });
});

describe('loadModel', () => {
  const tokenizerJson = { version: '1.0', model: { type: 'BPE', vocab: {}, merges: [] } };

  it('loads an HF directory over HTTP with byte progress, generation_config EOS and the chat template', async () => {
    await withTempDir(async (dir) => {
      const w = randomModel(TINY_QWEN, 'f16', 1);
      await writeModelDir(dir, TINY_QWEN, w, 'hf', { tokenizerJson, tokenizerConfig: { eos_token: '<|im_end|>' }, chatTemplate: '{{ messages[0].content }}' });
      await writeFile(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [299, 297] }));
      const { url, server, requests } = await serveDir(dir);
      try {
        const events: [number, number][] = [];
        const m = await loadModel(url, { onProgress: (l, t) => events.push([l, t]) });
        expect(m.layout).toBe('hf');
        expect(m.config.eosTokenIds).toEqual([299, 298, 297]);
        expect(m.chatTemplate).toBe('{{ messages[0].content }}');
        expect(m.tokenizerJson).toEqual(tokenizerJson);
        expect(m.tokenizerConfig).toEqual({ eos_token: '<|im_end|>', chat_template: '{{ messages[0].content }}' });
        expectSameWeights(w, m.weights);
        const size = (await readFile(join(dir, 'model.safetensors'))).byteLength;
        expect(events.length).toBeGreaterThan(2);
        expect(events.at(-1)).toEqual([size, size]);
        expect(requests).toContain('/model.safetensors');
      } finally {
        server.close();
      }
    });
  });

  it('treats an HTML page from a single-page-app fallback as a missing file (HF dir served by a dev server)', async () => {
    await withTempDir(async (dir) => {
      const w = randomModel(TINY_QWEN, 'f16', 2);
      await writeModelDir(dir, TINY_QWEN, w, 'hf', { tokenizerJson });
      const { url, server } = await serveDir(dir, true);
      try {
        const m = await loadModel(url);
        expect(m.layout).toBe('hf');
        expectSameWeights(w, m.weights);
        // A directory that is not there (every file answered with HTML) is a clear error, not a JSON parse failure.
        await expect(loadModel(url + 'nope/')).rejects.toMatchObject({ code: 'bad-model-url', message: expect.stringMatching(/No model at/) });
      } finally {
        server.close();
      }
    });
  });

  it('loads an MLC directory over HTTP with its conv_template', async () => {
    await withTempDir(async (dir) => {
      const w = randomModel(TINY_SMOL, 'bf16', 4);
      const conv = { system_template: '{system_message}', system_message: 'hi', roles: { user: 'U', assistant: 'A' }, seps: ['\n'] };
      await writeModelDir(dir, TINY_SMOL, w, 'mlc', { tokenizerJson, mlcConvTemplate: conv as never }, { maxShardBytes: 20_000 });
      const { url, server } = await serveDir(dir);
      try {
        let last: [number, number] = [0, 0];
        const m = await loadModel(url, { onProgress: (l, t) => (last = [l, t]) });
        expect(m.layout).toBe('mlc');
        expect(m.config.torchDtype).toBe('bf16');
        expect(m.mlcConvTemplate?.system_message).toBe('hi');
        expect(m.mlcConvTemplate?.role_templates['user']).toBe('{user_message}');
        expect(m.tokenizerJson).toEqual(tokenizerJson);
        expectSameWeights(w, m.weights);
        const bytes = [...m.weights.values()].reduce((n, t) => n + t.data.byteLength, 0);
        expect(last).toEqual([bytes, bytes]);
      } finally {
        server.close();
      }
    });
  });
});

describe('bad input -> typed error, and the next good load still works', () => {
  const good = randomModel(TINY_SMOL, 'f32', 0);
  const goodFile = writeSafetensors(good.values());
  const configBytes = new TextEncoder().encode(JSON.stringify(toHfConfig(TINY_SMOL)));
  const dirWith = (weights: Uint8Array, config: Uint8Array = configBytes) =>
    new MemorySource(new Map([['config.json', config], ['model.safetensors', weights]]), 'memory:/model');
  const stillWorks = async () => {
    const m = await loadModel(dirWith(goodFile));
    expectSameWeights(good, m.weights);
  };

  it('truncated file', async () => {
    await expectRejects(loadModel(dirWith(goodFile.subarray(0, 5))), ModelLoadError, 'bad-weights', /model\.safetensors: file is truncated/);
    await expectRejects(loadModel(dirWith(goodFile.subarray(0, goodFile.byteLength - 10))), ModelLoadError, 'bad-weights', /model\.safetensors: tensor "[^"]+": data_offsets .* out of range.*truncated/);
    await stillWorks();
  });

  it('header length past the end of the file', async () => {
    const bytes = goodFile.slice(0, 4096);
    new DataView(bytes.buffer).setBigUint64(0, 1n << 40n, true);
    await expectRejects(loadModel(dirWith(bytes)), ModelLoadError, 'bad-weights', /header length 1099511627776 runs past the end of the file \(4096 bytes\)/);
    await stillWorks();
  });

  it('invalid header JSON', async () => {
    const bytes = rawSafetensors({}).slice();
    const broken = new Uint8Array([...bytes.subarray(0, 8), ...new TextEncoder().encode('{"a": [1,'.padEnd(Number(new DataView(bytes.buffer).getBigUint64(0, true)), ' '))]);
    new DataView(broken.buffer).setBigUint64(0, BigInt(broken.byteLength - 8), true);
    await expectRejects(loadModel(dirWith(broken)), ModelLoadError, 'bad-weights', /header is not valid JSON/);
    await stillWorks();
  });

  it('data_offsets out of range', async () => {
    const bytes = rawSafetensors({ x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, new Uint8Array(8));
    expectThrows(() => parseSafetensors(bytes, 'w.safetensors'), ModelLoadError, 'bad-weights', /w\.safetensors: tensor "x": data_offsets \[0, 16\] are out of range/);
    const mismatch = rawSafetensors({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, new Uint8Array(16));
    expectThrows(() => parseSafetensors(mismatch), ModelLoadError, 'bad-weights', /needs 12/);
    await stillWorks();
  });

  it('unsupported dtype', async () => {
    const tensors = [...good.values()].map((t) => ({ ...t }));
    const header: Record<string, unknown> = {};
    let offset = 0;
    for (const t of tensors) {
      header[t.name] = { dtype: t.name === 'model.norm.weight' ? 'I32' : 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
      offset += t.data.byteLength;
    }
    const data = new Uint8Array(offset);
    let at = 0;
    for (const t of tensors) {
      data.set(t.data, at);
      at += t.data.byteLength;
    }
    await expectRejects(loadModel(dirWith(rawSafetensors(header, data))), UnsupportedError, 'unsupported-dtype', /"model\.norm\.weight" has dtype I32/);
    await stillWorks();
  });

  it('missing tensor', async () => {
    const partial = new Map(good);
    partial.delete('model.layers.1.mlp.down_proj.weight');
    await expectRejects(loadModel(dirWith(writeSafetensors(partial.values()))), ModelLoadError, 'missing-tensor', /"model\.layers\.1\.mlp\.down_proj\.weight" is missing.*\[48, 128\]/);
    await stillWorks();
  });

  it('shape that contradicts the config', async () => {
    const wrongConfig = new TextEncoder().encode(JSON.stringify(toHfConfig({ ...TINY_SMOL, intermediateSize: 96 })));
    await expectRejects(
      loadModel(dirWith(goodFile, wrongConfig)),
      ShapeMismatchError,
      'shape-mismatch',
      /"model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[128, 48\], but the config implies \[96, 48\]/,
    );
    await stillWorks();
  });

  it('dtype that contradicts the config', async () => {
    const bf16 = writeSafetensors(randomModel(TINY_SMOL, 'bf16', 0).values());
    const f16Config = new TextEncoder().encode(JSON.stringify(toHfConfig({ ...TINY_SMOL, torchDtype: 'f16' })));
    await expectRejects(loadModel(dirWith(bf16, f16Config)), ShapeMismatchError, 'dtype-mismatch', /is bf16, but the config declares f16/);
    const odd = new Map(good);
    odd.set('model.norm.weight', { ...good.get('model.norm.weight')!, dtype: 'f64' as never });
    expectThrows(() => validateWeights(TINY_SMOL, odd), ShapeMismatchError, 'dtype-mismatch', /f64/);
    await stillWorks();
  });

  it('unsupported architecture', async () => {
    const gemma = new TextEncoder().encode(JSON.stringify({ ...toHfConfig(TINY_SMOL), architectures: ['GemmaForCausalLM'], model_type: 'gemma' }));
    await expectRejects(loadModel(dirWith(goodFile, gemma)), UnsupportedError, 'unsupported-architecture', /GemmaForCausalLM/);
    const mlcPhi = new TextEncoder().encode(JSON.stringify({ ...toMlcChatConfig(TINY_SMOL), model_type: 'phi3' }));
    await expectRejects(loadModel(new MemorySource(new Map([['mlc-chat-config.json', mlcPhi]]))), UnsupportedError, 'unsupported-architecture', /phi3/);
    await stillWorks();
  });

  it('invalid config JSON names the file', async () => {
    await expectRejects(loadModel(dirWith(goodFile, new TextEncoder().encode('{"oops":'))), ModelLoadError, 'bad-config', /memory:\/model\/config\.json is not valid JSON/);
    await stillWorks();
  });

  it('bad URL or path', async () => {
    await withTempDir(async (dir) => {
      await expectRejects(loadModel(join(dir, 'nope')), ModelLoadError, 'bad-model-url', /nope/);
      await mkdir(join(dir, 'only-config'));
      await writeFile(join(dir, 'only-config', 'config.json'), configBytes);
      await expectRejects(loadModel(join(dir, 'only-config')), ModelLoadError, 'bad-model-url', /only-config\/model\.safetensors: no such file/);
      const { url, server } = await serveDir(dir);
      try {
        await expectRejects(loadModel(`${url}missing-model/`), ModelLoadError, 'bad-model-url', /missing-model/);
        await expectRejects(loadModel(`${url}only-config`), ModelLoadError, 'bad-model-url', /HTTP 404.*only-config\/model\.safetensors|only-config\/model\.safetensors.*404/);
        await writeModelDir(join(dir, 'ok'), TINY_SMOL, good, 'hf');
        expectSameWeights(good, (await loadModel(`${url}ok`)).weights);
      } finally {
        server.close();
      }
      // Nothing listens on port 9 of localhost: a network failure, not an HTTP status.
      await expectRejects(loadModel('http://127.0.0.1:9/model/'), ModelLoadError, 'bad-model-url', /127\.0\.0\.1:9\/model\/mlc-chat-config\.json/);
      expectSameWeights(good, (await loadModel(join(dir, 'ok'))).weights);
    });
  });
});

describe('writeModelDir', () => {
  it('declares the dtype of the weights it wrote, whatever the config said', async () => {
    await withTempDir(async (dir) => {
      const w = randomModel(TINY_QWEN, 'f16', 3);
      await writeModelDir(join(dir, 'hf'), { ...TINY_QWEN, torchDtype: 'bf16' }, w, 'hf');
      await writeModelDir(join(dir, 'mlc'), { ...TINY_QWEN, torchDtype: 'bf16' }, w, 'mlc');
      expect(JSON.parse(await readFile(join(dir, 'hf', 'config.json'), 'utf8')).torch_dtype).toBe('float16');
      expect(JSON.parse(await readFile(join(dir, 'mlc', 'mlc-chat-config.json'), 'utf8')).quantization).toBe('q0f16');
      expect((await loadModel(join(dir, 'hf'))).config.torchDtype).toBe('f16');
      expect((await loadModel(join(dir, 'mlc'))).config.torchDtype).toBe('f16');
    });
  });
});

describe('validateWeights', () => {
  it('accepts a redundant lm_head on a tied model only with the right shape', () => {
    const w = randomModel(TINY_SMOL, 'f32', 0);
    const lm: HostTensor = { ...w.get('model.embed_tokens.weight')!, name: 'lm_head.weight' };
    expect(() => validateWeights(TINY_SMOL, new Map([...w, ['lm_head.weight', lm]]))).not.toThrow();
    const bad: HostTensor = { ...lm, shape: [TINY_SMOL.hiddenSize, TINY_SMOL.vocabSize] };
    expectThrows(() => validateWeights(TINY_SMOL, new Map([...w, ['lm_head.weight', bad]])), ShapeMismatchError, 'shape-mismatch', /lm_head/);
  });

  it('summarises parameters and the matrix dtype', () => {
    const s = validateWeights(TINY_QWEN, randomModel(TINY_QWEN, 'f16', 0));
    let params = 0;
    for (const shape of expectedTensorShapes(TINY_QWEN).values()) params += shape.reduce((a, b) => a * b, 1);
    expect(s).toEqual({ matrixDtype: 'f16', parameterCount: params, bytes: params * 2 });
  });
});
