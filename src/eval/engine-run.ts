/**
 * Runs one prepared prompt on an engine: the same code in Node and in the browser page, so
 * both back ends produce the same fields. The cache is emptied first (each sample starts
 * cold); decoding is greedy and stops at a newline or after `maxTokens`.
 */
import type { Engine } from '../engine/engine';
import type { Gpu } from '../gpu/device';
import type { CaseOutput } from './runner';

/** The adapter and the kernel choices made for it, e.g. "mesa llvm llvmpipe: Mesa 25.0.7 ... | cpu kernels | weights kn". */
export function deviceLabel(gpu: Gpu): string {
  const i = gpu.adapterInfo;
  // Browsers often leave the description empty (Chromium on SwiftShader: vendor "google", architecture "swiftshader").
  const name = [...new Set([i.vendor, i.architecture, i.device, i.description].filter((s) => s))].join(' ') || 'unknown adapter';
  return `${name} | ${gpu.cpuAdapter ? 'cpu' : 'gpu'} kernels | weights ${gpu.weightLayout}`;
}

export const EVAL_STOP = ['\n'];

export async function runOnEngine(engine: Engine, ids: number[], maxTokens: number, signal?: AbortSignal): Promise<CaseOutput> {
  engine.reset();
  const r = await engine.generateText(ids, { maxTokens, temperature: 0, stop: EVAL_STOP, ...(signal ? { signal } : {}) });
  const s = r.stats;
  if (s.finishReason === 'abort') throw new Error('aborted');
  return {
    text: r.text, ids: r.ids, promptTokens: s.promptTokens, finishReason: s.finishReason, footprint: s.kvFootprint, peak: s.kvPeak,
    kvBytesAllocated: s.kvBytesAllocated, kvBytesInUse: s.kvBytesInUse, prefillTokensPerSecond: s.prefillTokensPerSecond,
    decodeTokensPerSecond: s.decodeTokensPerSecond, prefillMs: s.prefillMs, decodeMs: s.decodeMs, device: deviceLabel(engine.gpu),
  };
}
