/**
 * Types shared by the cache manager, the engine, the worker and the UI.
 */

/** How a policy is chosen: a registered name plus its parameters (validated by the registry). */
export interface PolicySpec {
  name: string;
  /** Entries kept per (layer, KV head), sinks and windows included. Omit for `full`. */
  budget?: number;
  params?: Record<string, number | boolean | string>;
  /**
   * Wrapper (PruLong paper): evict after every prefill chunk and every decode step, so a
   * prefill-time policy such as SnapKV keeps live entries within budget + chunk throughout.
   */
  chunked?: boolean;
  /**
   * For role policies (`head-roles`): per layer, per KV head, 1 = global (keeps every entry),
   * 0 = streaming (keeps sinks + window).
   */
  roles?: number[][];
  /** Wrapper (AdaKV): one budget per layer (budget x KV heads) shared across its KV heads by a layer-wide top-k. */
  adakv?: boolean;
}

/** A small per-step picture of the cache, cheap enough to take every few decode steps. */
export interface CacheSnapshot {
  /** Tokens the model has seen (the full-cache length). */
  tokens: number;
  numLayers: number;
  numKvHeads: number;
  policy: PolicySpec;
  /** Live entries per (layer, KV head), index layer * numKvHeads + head. */
  live: Uint32Array;
  /** Allocated entries per (layer, KV head). */
  capacity: Uint32Array;
  /** Positions kept per (layer, KV head), when requested (same indexing). */
  positions?: Uint32Array[];
  /** With positions: the text of each token seen so far, by position (for a token view). */
  tokenPieces?: string[];
  /** The policy's current score per kept entry, when it keeps one and positions were requested. */
  scores?: Float32Array[];
  /** For each layer, the layer whose cache it reads (itself when not shared). */
  cacheSource: Int32Array;
  kvBytesAllocated: number;
  kvBytesInUse: number;
  /** KV footprint so far (methods.md §5), relative to a full cache under the same chunking. */
  footprint: number;
  /** Peak live entries / tokens so far. */
  peak: number;
}
