export { createEngine } from './create-engine';
export type { KvscopeEngine, ChatCompletions, PolicyParams } from './create-engine';
export type * from './types';
