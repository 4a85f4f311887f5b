/**
 * kvscope's errors: one base class with a stable `code`, and a few named subclasses so
 * callers can `instanceof` or switch on `code`. Messages are plain sentences that say what
 * was wrong and, where possible, what would be valid.
 */
export type ErrorCode =
  | 'no-webgpu'
  | 'bad-model-url'
  | 'bad-config'
  | 'unsupported-architecture'
  | 'unsupported-dtype'
  | 'bad-weights'
  | 'integrity-failed'
  | 'missing-tensor'
  | 'shape-mismatch'
  | 'dtype-mismatch'
  | 'tensor-too-large'
  | 'out-of-memory'
  | 'context-overflow'
  | 'device-lost'
  | 'invalid-argument'
  | 'unknown-model'
  | 'engine-not-loaded';

export class KvscopeError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** WebGPU is missing (no `navigator.gpu`, no adapter, or no Node binding). */
export class NoWebGPUError extends KvscopeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('no-webgpu', message, options);
  }
}

/**
 * A model directory, config or weight file could not be read or makes no sense.
 * `integrity-failed`: a downloaded file's bytes contradict what the server or the model's own
 * index promised (Content-Length, tensor-cache.json `nbytes`, the safetensors header); the
 * message names the file.
 */
export class ModelLoadError extends KvscopeError {
  constructor(
    code: Extract<ErrorCode, 'bad-model-url' | 'bad-config' | 'bad-weights' | 'integrity-failed' | 'missing-tensor' | 'unknown-model'>,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** A tensor's shape or dtype contradicts the model config. */
export class ShapeMismatchError extends KvscopeError {
  constructor(code: 'shape-mismatch' | 'dtype-mismatch', message: string) {
    super(code, message);
  }
}

/** Something kvscope does not implement: an architecture, a dtype, a too-large tensor. */
export class UnsupportedError extends KvscopeError {
  constructor(code: 'unsupported-architecture' | 'unsupported-dtype' | 'tensor-too-large', message: string) {
    super(code, message);
  }
}

/** The prompt (plus what is already cached) does not fit in the model's context. */
export class ContextOverflowError extends KvscopeError {
  constructor(message: string) {
    super('context-overflow', message);
  }
}

/** A GPU allocation failed. */
export class OutOfMemoryError extends KvscopeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('out-of-memory', message, options);
  }
}

/** The GPU device was lost; the engine must be reloaded. */
export class DeviceLostError extends KvscopeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('device-lost', message, options);
  }
}

/** An argument is out of range or of the wrong kind; the message names it and its valid range. */
export class InvalidArgumentError extends KvscopeError {
  constructor(message: string) {
    super('invalid-argument', message);
  }
}
