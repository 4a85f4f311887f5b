/**
 * Loads WebLLM's prebuilt catalogue off the page's main thread (the `@mlc-ai/web-llm`
 * bundle is several MB to parse) and posts back the plain records the model picker reads.
 */
import { loadPrebuiltCatalog, type CatalogRecord } from '../model/catalog';

export type CatalogWorkerMessage = { ok: true; records: CatalogRecord[] } | { ok: false; message: string };

const post = (m: CatalogWorkerMessage) => (self as unknown as { postMessage(m: CatalogWorkerMessage): void }).postMessage(m);

loadPrebuiltCatalog().then(
  (c) => {
    const records = c.model_list.map((r): CatalogRecord => {
      const out: CatalogRecord = { model: r.model, model_id: r.model_id };
      if (r.model_lib !== undefined) out.model_lib = r.model_lib;
      if (r.vram_required_MB !== undefined) out.vram_required_MB = r.vram_required_MB;
      if (r.low_resource_required !== undefined) out.low_resource_required = r.low_resource_required;
      if (r.model_type !== undefined) out.model_type = r.model_type;
      if (r.overrides) {
        const o: NonNullable<CatalogRecord['overrides']> = {};
        if (r.overrides.context_window_size !== undefined) o.context_window_size = r.overrides.context_window_size;
        if (r.overrides.sliding_window_size !== undefined) o.sliding_window_size = r.overrides.sliding_window_size;
        out.overrides = o;
      }
      return out;
    });
    post({ ok: true, records });
  },
  (e: unknown) => post({ ok: false, message: (e as Error)?.message ?? String(e) }),
);
