import { describe, expect, it } from 'vitest';
import { ModelLoadError, UnsupportedError } from '../../src/errors';
import { listCatalogModels, loadPrebuiltCatalog, resolveCatalogModel, weightUrlOf, type Catalog } from '../../src/model/catalog';

describe("WebLLM's prebuilt catalogue", () => {
  it('resolves supported ids to their MLC weight directory, VRAM figure and context window', async () => {
    const catalog = await loadPrebuiltCatalog();
    const qwen = resolveCatalogModel('Qwen2.5-0.5B-Instruct-q4f16_1-MLC', catalog);
    expect(qwen).toMatchObject({
      architecture: 'qwen2',
      family: 'Qwen2.5',
      quantization: 'q4f16_1',
      weightUrl: 'https://huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC/resolve/main/',
    });
    expect(qwen.vramMB).toBeGreaterThan(100);
    const llama = resolveCatalogModel('Llama-3.2-1B-Instruct-q4f32_1-MLC', catalog);
    expect(llama).toMatchObject({ architecture: 'llama', family: 'Llama 3', quantization: 'q4f32_1' });
    expect(resolveCatalogModel('TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC', catalog).contextWindow).toBe(2048);
    expect(resolveCatalogModel('SmolLM2-360M-Instruct-q4f16_1-MLC', catalog).family).toBe('SmolLM2');
  });

  it('refuses other architectures naming them, and unknown ids', async () => {
    const catalog = await loadPrebuiltCatalog();
    const phi = catalog.model_list.find((r) => r.model_id.startsWith('Phi-3.5-mini'))!.model_id;
    expect(() => resolveCatalogModel(phi, catalog)).toThrow(UnsupportedError);
    expect(() => resolveCatalogModel(phi, catalog)).toThrow(/phi3/);
    const qwen3 = catalog.model_list.find((r) => r.model_id.startsWith('Qwen3-'))!.model_id;
    expect(() => resolveCatalogModel(qwen3, catalog)).toThrow(/qwen3 architecture/);
    const gemma = catalog.model_list.find((r) => /^gemma-2-/.test(r.model_id))!.model_id;
    expect(() => resolveCatalogModel(gemma, catalog)).toThrow(/gemma/);
    const embed = catalog.model_list.find((r) => r.model_type === 1)!.model_id;
    expect(() => resolveCatalogModel(embed, catalog)).toThrow(/embedding model/);
    try {
      resolveCatalogModel('No-Such-Model-q4f16_1-MLC', catalog);
      throw new Error('resolved an unknown id');
    } catch (e) {
      expect(e).toBeInstanceOf(ModelLoadError);
      expect((e as ModelLoadError).code).toBe('unknown-model');
    }
  });

  it('lists every supported family and no unsupported one', async () => {
    const catalog = await loadPrebuiltCatalog();
    const list = listCatalogModels(catalog);
    const families = new Set(list.map((e) => e.family));
    for (const f of ['Llama 3', 'Qwen2', 'Qwen2.5', 'SmolLM2', 'TinyLlama']) expect(families.has(f), f).toBe(true);
    expect(list.some((e) => /Qwen3|gemma|Phi|Mistral|RedPajama/i.test(e.id))).toBe(false);
    expect(list.every((e) => e.weightUrl.endsWith('/resolve/main/'))).toBe(true);
  });

  it('refuses a supported family in a quantization kvscope cannot load', () => {
    const catalog: Catalog = { model_list: [{ model: 'http://127.0.0.1/m', model_id: 'Llama-3.2-1B-Instruct-q3f16_1-MLC' }] };
    expect(() => resolveCatalogModel('Llama-3.2-1B-Instruct-q3f16_1-MLC', catalog)).toThrow(/q3f16_1/);
    expect(weightUrlOf('http://127.0.0.1:5000/models/x')).toBe('http://127.0.0.1:5000/models/x/');
  });
});
