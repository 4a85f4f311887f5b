/** Cache-quality and memory metrics (methods.md §5 and "Other quality proxies"). */
export { attentionLoss, oracleSpec, type AttentionLossResult } from './attention-loss';
export { logitDrift, type LogitDriftOptions, type LogitDriftResult } from './logit-drift';
export { klDivergence, logSoftmax64 } from './kl';
export { criticalFootprint, fullCacheFootprint, kvFootprint, querySteps, type FootprintPoint } from './footprint';
export type { MetricRunOptions } from './pair';
export { textBitsPerByte, tokenByteLengths, type BitsPerByteResult } from './bits-per-byte';
