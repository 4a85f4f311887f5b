/**
 * kvscope's public API. Importing this module touches no WebGPU API, so it is safe in
 * server-side rendering and plain Node; WebGPU is needed only when an engine is created.
 */
export { Engine } from './engine/engine';
export type { EngineOptions, GenerateOptions, GenerationStats, GeneratedToken, FinishReason, LoadProgress } from './engine/engine';
export type { SamplingParams } from './engine/ops/sample';
export { Gpu, getWebGPU } from './gpu/device';
export type { GpuOptions } from './gpu/device';
export {
  KvscopeError,
  NoWebGPUError,
  ModelLoadError,
  ShapeMismatchError,
  UnsupportedError,
  ContextOverflowError,
  OutOfMemoryError,
  DeviceLostError,
  InvalidArgumentError,
} from './errors';
export type { ErrorCode } from './errors';
export { loadModel, parseHfConfig, parseMlcConfig, Tokenizer, StreamingDetokenizer, clearModelCache } from './model/index';
export type { ModelCacheOptions, LoadModelOptions } from './model/index';
export type { ModelConfig, LoadedModel, ChatMessage, ChatRole, HostTensor, WeightSet, TensorDtype } from './model/index';
export { createEngine } from './api/index';
export type * from './api/index';
export { registerPolicy, listPolicies, getPolicy } from './kv/policies/registry';
export type { CachePolicy, ParamSpec, ParamValues, PolicyContext } from './kv/policy';
export type { PolicySpec, CacheSnapshot } from './kv/types';
export type { SnapshotOptions } from './engine/engine';
export { calibrateSharing, greedySharingSearch, saveSharingMap } from './kv/calibrate';
export type { CalibrationOptions, SharingOrder } from './kv/calibrate';
export { resolveSharing, loadSharingMap } from './kv/sharing';
export type { SharingMap } from './kv/sharing';
export { headRolesSpec, loadHeadRoles } from './kv/head-roles';
export type { HeadRoleMap } from './kv/head-roles';
