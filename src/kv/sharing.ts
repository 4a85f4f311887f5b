/**
 * KVSharer (2410.18517) layer sharing: a layer -> cache-slot table. A shared layer computes
 * its own queries and attends to an earlier layer's keys and values; it stores no cache.
 */
import { InvalidArgumentError } from '../errors';
import type { ModelConfig } from '../model/config';

/** A calibrated sharing map, as saved beside a model (`kv-sharing.json`). */
export interface SharingMap {
  /** Shared layer -> the earlier layer whose cache it reads. */
  map: Record<string, number>;
  /** The model shape it was calibrated for. */
  model: { numLayers: number; numKvHeads: number; headDim: number };
  settings?: { threshold: number; targetSharedLayers: number; order: 'dissimilar-first' | 'similar-first'; samples: number };
  /** Mean cosine similarity of final hidden states (shared vs. original) on the calibration set. */
  similarity?: number;
}

/** `sharing` as a calibrated map (it has a `map` object), or undefined for a bare pairs object. */
function calibratedMap(sharing: SharingMap | Record<string, number>): SharingMap | undefined {
  return 'map' in sharing && typeof sharing.map === 'object' ? (sharing as SharingMap) : undefined;
}

/** The `{ layer: sourceLayer }` pairs of a calibrated map, or of a bare pairs object. */
export function sharingPairs(sharing: SharingMap | Record<string, number>): Record<string, number> {
  return calibratedMap(sharing)?.map ?? (sharing as Record<string, number>);
}

/**
 * Validates a map against a model and returns the source of every layer (itself when not
 * shared). Errors: wrong model shape (e.g. KV head count), out-of-range layers, a layer
 * reading a later (or its own) layer, chains (a source that is itself shared), which also
 * rules out cycles.
 */
export function resolveSharing(sharing: SharingMap | Record<string, number> | undefined, config: ModelConfig): Int32Array {
  const L = config.numLayers;
  const src = Int32Array.from({ length: L }, (_, l) => l);
  if (!sharing) return src;
  const full = calibratedMap(sharing);
  const map = sharingPairs(sharing);
  if (full?.model) {
    const m = full.model;
    if (m.numKvHeads !== config.numKvHeads || m.numLayers !== L || m.headDim !== config.headDim) {
      throw new InvalidArgumentError(
        `The sharing map was made for ${m.numLayers} layers x ${m.numKvHeads} KV heads x head_dim ${m.headDim}, but the model has ${L} x ${config.numKvHeads} x ${config.headDim}.`,
      );
    }
  }
  for (const [k, v] of Object.entries(map)) {
    const l = Number(k);
    if (!Number.isInteger(l) || l < 0 || l >= L) throw new InvalidArgumentError(`Sharing map: layer '${k}' is not a layer index in [0, ${L - 1}].`);
    if (!Number.isInteger(v) || v < 0 || v >= L) throw new InvalidArgumentError(`Sharing map: layer ${l} reads layer ${v}, which is not in [0, ${L - 1}].`);
    if (v >= l) throw new InvalidArgumentError(`Sharing map: layer ${l} cannot read layer ${v}'s cache; a layer may only read an earlier layer (its keys and values must exist when it runs).`);
    src[l] = v;
  }
  for (let l = 0; l < L; l++) {
    if (src[l] !== l && src[src[l]!] !== src[l]) {
      throw new InvalidArgumentError(`Sharing map: layer ${l} reads layer ${src[l]}, which itself reads layer ${src[src[l]!]}; chains are not allowed (a source layer is never shared).`);
    }
  }
  return src;
}

/** Reads `kv-sharing.json` from a model directory (URL or, in Node, a path). */
export async function loadSharingMap(location: string | URL, file = 'kv-sharing.json'): Promise<SharingMap> {
  const { openModelSource } = await import('../model/source');
  const bytes = await openModelSource(location).read(file);
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as SharingMap;
  } catch (cause) {
    throw new InvalidArgumentError(`${file} in ${String(location)} is not valid JSON (${(cause as Error).message}).`);
  }
}
