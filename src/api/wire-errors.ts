/**
 * Errors crossing the worker boundary. Structured clone (and comlink) keep only an Error's
 * message and name, so the worker sends `{ name, code, message, stack }` and the client
 * rebuilds the same kvscope error class, `code` included.
 */
import {
  ContextOverflowError,
  DeviceLostError,
  InvalidArgumentError,
  KvscopeError,
  ModelLoadError,
  NoWebGPUError,
  OutOfMemoryError,
  ShapeMismatchError,
  UnsupportedError,
  type ErrorCode,
} from '../errors';

export interface WireError {
  kvscopeWireError: true;
  name: string;
  code: string | null;
  message: string;
  stack?: string;
}

export function isWireError(v: unknown): v is WireError {
  return typeof v === 'object' && v !== null && (v as WireError).kvscopeWireError === true;
}

export function toWireError(e: unknown): WireError {
  if (e instanceof Error) {
    const raw = (e as { code?: unknown }).code;
    const code = typeof raw === 'string' ? raw : null;
    return { kvscopeWireError: true, name: e.name, code, message: e.message, ...(e.stack ? { stack: e.stack } : {}) };
  }
  return { kvscopeWireError: true, name: 'Error', code: null, message: String(e) };
}

type Builder = (code: ErrorCode, message: string) => KvscopeError;

const builders: Record<string, Builder> = {
  NoWebGPUError: (_c, m) => new NoWebGPUError(m),
  ModelLoadError: (c, m) => new ModelLoadError(c as ConstructorParameters<typeof ModelLoadError>[0], m),
  ShapeMismatchError: (c, m) => new ShapeMismatchError(c as ConstructorParameters<typeof ShapeMismatchError>[0], m),
  UnsupportedError: (c, m) => new UnsupportedError(c as ConstructorParameters<typeof UnsupportedError>[0], m),
  ContextOverflowError: (_c, m) => new ContextOverflowError(m),
  OutOfMemoryError: (_c, m) => new OutOfMemoryError(m),
  DeviceLostError: (_c, m) => new DeviceLostError(m),
  InvalidArgumentError: (_c, m) => new InvalidArgumentError(m),
  KvscopeError: (c, m) => new KvscopeError(c, m),
};

/** Rebuilds the error the worker threw: the same kvscope class and code, or a plain Error with its name. */
export function fromWireError(w: WireError): Error {
  const build = builders[w.name];
  let err: Error;
  if (build && w.code) err = build(w.code as ErrorCode, w.message);
  else if (w.code) {
    // A kvscope error subclass this client does not know: keep the code on the base class.
    err = new KvscopeError(w.code as ErrorCode, w.message);
    Object.defineProperty(err, 'name', { value: w.name });
  } else {
    err = new Error(w.message);
    err.name = w.name;
  }
  if (w.stack) err.stack = `${err.name}: ${err.message}\n    (thrown in the engine worker)\n${w.stack.split('\n').slice(1).join('\n')}`;
  return err;
}
