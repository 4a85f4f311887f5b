/**
 * Model ids from WebLLM's prebuilt catalogue (`@mlc-ai/web-llm`'s `prebuiltAppConfig`),
 * resolved to the weight directory kvscope loads (the same MLC build WebLLM downloads, so a
 * browser cache filled by WebLLM on this origin serves it) plus the catalogue's figures.
 *
 * The catalogue does not name architectures; they follow from the model family in the id
 * (`Qwen2.5-0.5B-Instruct-q4f16_1-MLC` is a Qwen2 model). Ids of families kvscope does not
 * run (Phi, Gemma, Mistral, Qwen3, ...) are refused naming the architecture; the loaded
 * `mlc-chat-config.json` is checked again by parseMlcConfig (model_type).
 *
 * `@mlc-ai/web-llm` is imported lazily (`loadPrebuiltCatalog`): its bundle is large and only
 * the catalogue object is needed.
 */
import { ModelLoadError, UnsupportedError } from '../errors';

/** The subset of WebLLM's `ModelRecord` kvscope reads. */
export interface CatalogRecord {
  model: string;
  model_id: string;
  model_lib?: string;
  vram_required_MB?: number;
  low_resource_required?: boolean;
  /** WebLLM's ModelType: 0 LLM, 1 embedding, 2 VLM. */
  model_type?: number;
  overrides?: { context_window_size?: number; sliding_window_size?: number };
}

export interface Catalog {
  model_list: CatalogRecord[];
}

export type CatalogArchitecture = 'llama' | 'qwen2';

/** MLC quantization names kvscope loads. */
export type CatalogQuantization = 'q4f16_1' | 'q4f32_1' | 'q0f16' | 'q0f32' | 'q0bf16';

export interface CatalogEntry {
  id: string;
  /** Display family, e.g. 'Llama 3', 'Qwen2.5', 'SmolLM2', 'TinyLlama'. */
  family: string;
  architecture: CatalogArchitecture;
  quantization: CatalogQuantization;
  /** The model repository URL as the catalogue gives it. */
  modelUrl: string;
  /** The directory holding mlc-chat-config.json, tensor-cache.json and the shards (ends with '/'). */
  weightUrl: string;
  /** WebLLM's published VRAM estimate (MB), when given. */
  vramMB?: number;
  /** Context window of this build (the catalogue's override), when given. */
  contextWindow?: number;
  lowResource: boolean;
}

interface FamilyRule {
  pattern: RegExp;
  family: string;
  architecture: string;
  supported: boolean;
}

// First match wins: specific fine-tunes before their base families.
const FAMILIES: FamilyRule[] = [
  { pattern: /^Qwen3/i, family: 'Qwen3', architecture: 'qwen3', supported: false },
  { pattern: /^(Qwen2\.5|DeepSeek-R1-Distill-Qwen)/i, family: 'Qwen2.5', architecture: 'qwen2', supported: true },
  { pattern: /^Qwen2-/i, family: 'Qwen2', architecture: 'qwen2', supported: true },
  { pattern: /^Qwen/i, family: 'Qwen', architecture: 'qwen', supported: false },
  { pattern: /^SmolLM2-/i, family: 'SmolLM2', architecture: 'llama', supported: true },
  { pattern: /^SmolLM-/i, family: 'SmolLM', architecture: 'llama', supported: true },
  { pattern: /^TinyLlama-/i, family: 'TinyLlama', architecture: 'llama', supported: true },
  { pattern: /Mistral|Mixtral|WizardMath|OpenHermes|NeuralHermes/i, family: 'Mistral', architecture: 'mistral', supported: false },
  { pattern: /^Ministral/i, family: 'Ministral', architecture: 'ministral', supported: false },
  { pattern: /^OLMo/i, family: 'OLMo', architecture: 'olmo2', supported: false },
  { pattern: /^(Llama-3|Hermes-[23]-(Pro-|Theta-)?Llama-3|DeepSeek-R1-Distill-Llama)/i, family: 'Llama 3', architecture: 'llama', supported: true },
  { pattern: /^Llama-2/i, family: 'Llama 2', architecture: 'llama', supported: true },
  { pattern: /^Phi-[34]/i, family: 'Phi', architecture: 'phi3', supported: false },
  { pattern: /^phi-/i, family: 'Phi', architecture: 'phi', supported: false },
  { pattern: /^gemma/i, family: 'Gemma', architecture: 'gemma', supported: false },
  { pattern: /^RedPajama/i, family: 'RedPajama', architecture: 'gpt_neox', supported: false },
  { pattern: /^stablelm/i, family: 'StableLM', architecture: 'stablelm', supported: false },
  { pattern: /^snowflake-arctic-embed/i, family: 'Arctic Embed', architecture: 'bert', supported: false },
];

const SUPPORTED_TEXT = 'Llama 3.x (and Llama 2), Qwen2 / Qwen2.5, SmolLM2 and TinyLlama';
const QUANT = /-(q4f16_1|q4f32_1|q0f16|q0f32|q0bf16|q[0-9]f[0-9]+_[0-9]+|q[0-9]bf16_[0-9]+)-MLC/;

/** WebLLM's prebuilt catalogue (lazy import of `@mlc-ai/web-llm`). */
export async function loadPrebuiltCatalog(): Promise<Catalog> {
  const { prebuiltAppConfig } = await import('@mlc-ai/web-llm');
  return prebuiltAppConfig as Catalog;
}

/** The directory a catalogue `model` URL's files live in: Hugging Face repos serve them under resolve/main/. */
export function weightUrlOf(modelUrl: string): string {
  const base = modelUrl.endsWith('/') ? modelUrl : `${modelUrl}/`;
  if (/^https?:\/\/(www\.)?huggingface\.co\//i.test(base) && !/\/resolve\//.test(base)) return `${base}resolve/main/`;
  return base;
}

/** Classifies a record: the entry when kvscope runs it, or the reason it does not. */
export function classifyCatalogRecord(rec: CatalogRecord): { entry: CatalogEntry } | { error: UnsupportedError } {
  const id = rec.model_id;
  if (rec.model_type !== undefined && rec.model_type !== 0) {
    const kind = rec.model_type === 1 ? 'an embedding model' : rec.model_type === 2 ? 'a vision-language model' : `model type ${rec.model_type}`;
    return { error: new UnsupportedError('unsupported-architecture', `Model "${id}" is ${kind}; kvscope runs text-generation models (${SUPPORTED_TEXT}).`) };
  }
  const rule = FAMILIES.find((f) => f.pattern.test(id));
  if (!rule || !rule.supported) {
    const arch = rule ? `the ${rule.architecture} architecture (${rule.family})` : 'an architecture kvscope does not recognise';
    return { error: new UnsupportedError('unsupported-architecture', `Model "${id}" uses ${arch}; kvscope supports ${SUPPORTED_TEXT}.`) };
  }
  const q = QUANT.exec(id)?.[1];
  if (q !== 'q4f16_1' && q !== 'q4f32_1' && q !== 'q0f16' && q !== 'q0f32' && q !== 'q0bf16') {
    return { error: new UnsupportedError('unsupported-dtype', `Model "${id}" uses quantization ${q ?? '(unknown)'}; kvscope loads q4f16_1, q4f32_1, q0f16, q0f32 and q0bf16 builds.`) };
  }
  const entry: CatalogEntry = {
    id,
    family: rule.family,
    architecture: rule.architecture as CatalogArchitecture,
    quantization: q,
    modelUrl: rec.model,
    weightUrl: weightUrlOf(rec.model),
    lowResource: rec.low_resource_required ?? false,
  };
  if (rec.vram_required_MB !== undefined) entry.vramMB = rec.vram_required_MB;
  const ctx = rec.overrides?.context_window_size;
  if (ctx !== undefined && ctx > 0) entry.contextWindow = ctx;
  return { entry };
}

/**
 * Resolves a catalogue id to its weight directory and figures. Throws
 * ModelLoadError('unknown-model') for an id not in the catalogue and
 * UnsupportedError('unsupported-architecture' | 'unsupported-dtype') for one kvscope cannot run.
 */
export function resolveCatalogModel(id: string, catalog: Catalog): CatalogEntry {
  const rec = catalog.model_list.find((r) => r.model_id === id);
  if (!rec) {
    throw new ModelLoadError('unknown-model', `Model id "${id}" is not in the catalogue (${catalog.model_list.length} models); pass a model URL instead, or one of listCatalogModels().`);
  }
  const r = classifyCatalogRecord(rec);
  if ('error' in r) throw r.error;
  return r.entry;
}

/** Every catalogue model kvscope runs, in catalogue order (for a model picker). */
export function listCatalogModels(catalog: Catalog): CatalogEntry[] {
  const out: CatalogEntry[] = [];
  for (const rec of catalog.model_list) {
    const r = classifyCatalogRecord(rec);
    if ('entry' in r) out.push(r.entry);
  }
  return out;
}
