/**
 * The demo's model picker: adds WebLLM's prebuilt catalogue (`@mlc-ai/web-llm`'s
 * `prebuiltAppConfig`, resolved by src/model/catalog.ts) to the `#model-choice` select. Models
 * kvscope runs are listed with their parameter count, quantization, WebLLM's VRAM estimate and
 * whether their files are already in this origin's Cache Storage (WebLLM's or kvscope's);
 * the others are listed apart and refused with catalog.ts's message naming the architecture.
 * main.ts asks `urlOf` / `refusal` when Load is pressed.
 */
import { classifyCatalogRecord, loadPrebuiltCatalog, type Catalog, type CatalogEntry } from '../model/catalog';
import { isModelCached } from '../model/cache-store';
import type { CatalogWorkerMessage } from './catalog.worker';

/** Option values of catalogue entries: this prefix + the model id. */
export const CATALOG_VALUE_PREFIX = 'webllm:';

export interface ModelPicker {
  /** The weight directory URL of a supported catalogue choice; undefined for other choices. */
  urlOf(value: string): string | undefined;
  /** Why a catalogue choice cannot be loaded; undefined when it can (or is not a catalogue choice). */
  refusal(value: string): string | undefined;
  /** Settles once the catalogue is listed (or could not be loaded). */
  readonly ready: Promise<void>;
}

/** "0.5B", "135M", "1.1B" from ids like Qwen2.5-0.5B-Instruct-q4f16_1-MLC. */
export function parameterSize(id: string): string | undefined {
  return /(?:^|-)(\d+(?:\.\d+)?[BM])(?=-|$)/i.exec(id)?.[1]?.toUpperCase();
}

/** One option's text: id, size, quantization, VRAM, cached. */
export function describeEntry(e: CatalogEntry, cached: boolean): string {
  const bits = [parameterSize(e.id) ? `${parameterSize(e.id)} params` : undefined, e.vramMB !== undefined ? `VRAM ≈ ${Math.round(e.vramMB)} MB` : undefined, cached ? 'cached' : undefined];
  return `${e.id} (${bits.filter(Boolean).join(', ')})`;
}

/** The catalogue, read in a worker (catalog.worker.ts) so the page's main thread never parses WebLLM's bundle. */
function loadCatalogOffThread(): Promise<Catalog> {
  if (typeof Worker === 'undefined') return loadPrebuiltCatalog();
  return new Promise<Catalog>((resolve, reject) => {
    const worker = new Worker(new URL('./catalog.worker.ts', import.meta.url), { type: 'module', name: 'kvscope-catalog' });
    worker.onmessage = (ev: MessageEvent<CatalogWorkerMessage>) => {
      worker.terminate();
      if (ev.data.ok) resolve({ model_list: ev.data.records });
      else reject(new Error(ev.data.message));
    };
    worker.onerror = (ev) => {
      worker.terminate();
      reject(new Error(ev.message || 'the catalogue worker failed'));
    };
  });
}

export function mountModelPicker(select: HTMLSelectElement, note: HTMLElement): ModelPicker {
  const supported = new Map<string, CatalogEntry>();
  const refused = new Map<string, string>();

  const showNote = () => {
    const v = select.value;
    const id = v.startsWith(CATALOG_VALUE_PREFIX) ? v.slice(CATALOG_VALUE_PREFIX.length) : undefined;
    const e = id !== undefined ? supported.get(id) : undefined;
    const why = id !== undefined ? refused.get(id) : undefined;
    note.hidden = e === undefined && why === undefined;
    note.classList.toggle('error', why !== undefined);
    if (why !== undefined) note.textContent = why;
    else if (e) {
      const ctx = e.contextWindow ? ` Context ${e.contextWindow} tokens.` : '';
      const vram = e.vramMB !== undefined ? ` WebLLM estimates ${Math.round(e.vramMB)} MB of VRAM.` : '';
      note.textContent = `${e.family} (${e.architecture}), ${e.quantization}.${vram}${ctx} Files from ${e.weightUrl}; ones WebLLM or kvscope already cached on this origin are not downloaded again.`;
    }
  };
  select.addEventListener('change', showNote);

  const ready = (async () => {
    let catalog: Catalog;
    try {
      catalog = await loadCatalogOffThread();
    } catch (e) {
      console.warn(`kvscope demo: WebLLM's catalogue could not be loaded (${(e as Error).message}); only the bundled model and URLs are offered.`);
      return;
    }
    const ok = document.createElement('optgroup');
    ok.label = "WebLLM's catalogue (runs in kvscope)";
    const no = document.createElement('optgroup');
    no.label = "WebLLM's catalogue (not supported by kvscope)";
    const options = new Map<string, HTMLOptionElement>();
    for (const rec of catalog.model_list) {
      const r = classifyCatalogRecord(rec);
      const opt = document.createElement('option');
      opt.value = CATALOG_VALUE_PREFIX + rec.model_id;
      if ('entry' in r) {
        supported.set(rec.model_id, r.entry);
        opt.textContent = describeEntry(r.entry, false);
        options.set(rec.model_id, opt);
        ok.append(opt);
      } else {
        refused.set(rec.model_id, r.error.message);
        const vram = rec.vram_required_MB !== undefined ? ` (VRAM ≈ ${Math.round(rec.vram_required_MB)} MB)` : '';
        opt.textContent = `${rec.model_id}${vram}: not supported`;
        no.append(opt);
      }
    }
    select.append(ok, no);
    select.dataset.catalog = String(supported.size);
    showNote();
    // Mark the ones whose files are all in Cache Storage (nothing is downloaded to find out).
    for (const [id, opt] of options) {
      const e = supported.get(id)!;
      if (await isModelCached(e.weightUrl).catch(() => false)) opt.textContent = describeEntry(e, true);
    }
  })();

  return {
    urlOf(value) {
      return value.startsWith(CATALOG_VALUE_PREFIX) ? supported.get(value.slice(CATALOG_VALUE_PREFIX.length))?.weightUrl : undefined;
    },
    refusal(value) {
      return value.startsWith(CATALOG_VALUE_PREFIX) ? refused.get(value.slice(CATALOG_VALUE_PREFIX.length)) : undefined;
    },
    ready,
  };
}
