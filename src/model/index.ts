/** The model-input layer: configs, weight loading, tokenizer, chat templates, writers. */
export { parseHfConfig, parseMlcConfig, toHfConfig, toMlcChatConfig } from './config';
export type { ModelConfig, RopeScaling } from './config';
export { openModelSource, UrlSource, NodeDirSource, MemorySource } from './source';
export type { ModelSource, ProgressCallback } from './source';
export { clearModelCache, hasCacheStorage, isModelCached, KVSCOPE_CACHE_NAME, WEBLLM_CACHE_NAMES } from './cache-store';
export type { ModelCacheOptions, CacheLike, CacheStorageLike, FileExpectations } from './cache-store';
export { toFloat32, decodeToFloat32, encodeFromFloat32, tensorFromFloat32, dtypeBytes, numel, sameTensorBytes } from './tensor';
export type { HostTensor, TensorDtype, WeightSet } from './tensor';
export { parseSafetensors, loadSafetensors } from './safetensors';
export { parseMlcTensorCache, loadMlcTensors, mlcToHfWeights } from './mlc';
export type { MlcTensorCache, MlcShardRecord, MlcTensorRecord } from './mlc';
export { loadModel, validateWeights, expectedTensorShapes } from './weights';
export type { LoadedModel, LoadModelOptions, WeightsSummary } from './weights';
export { writeSafetensors, writeMlcShards, randomModel, writeModelDir } from './writers';
export type { WriteMlcOptions, RandomModelOptions, ModelDirTokenizer, WriteModelDirOptions } from './writers';
export { Tokenizer, StreamingDetokenizer, createTokenizer } from './tokenizer';
export type { TokenizerOptions, EncodeOptions, DecodeOptions } from './tokenizer';
export {
  HfChatTemplate,
  renderHfChatTemplate,
  renderMlcConvTemplate,
  parseMlcConvTemplate,
  createChatFormatter,
} from './chat-template';
export type { ChatMessage, ChatRole, RenderedPrompt, RenderOptions, MlcConvTemplate, ChatFormatter } from './chat-template';
export { trainByteLevelBpe } from './bpe-trainer';
export type { ByteLevelBpeOptions, ByteLevelBpeFiles } from './bpe-trainer';
