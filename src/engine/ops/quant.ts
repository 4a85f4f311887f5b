/**
 * MLC group-quantized int4 weights (`q4f16_1`, `q4f32_1`) on the GPU: upload, dequantizing
 * matrix-vector (decode) and matrix-matrix (prefill) products, and the embedding gather.
 *
 * Layout, checked against mlc-ai/mlc-llm `python/mlc_llm/quantization/quantization.py`
 * (presets), `group_quantization.py` (GroupQuantize, GroupQuantizeLinear/Embedding) and
 * `utils.py` (pack_weight, convert_uint_to_float):
 *  - presets q4f16_1 / q4f32_1: group_size 32, quantize_dtype int4, storage_dtype uint32,
 *    model_dtype float16 / float32, linear_weight_layout "NK", quantize_embedding and
 *    quantize_final_fc true (so the embedding table and an untied lm_head are q4 too).
 *  - num_elem_per_storage = 32 / 4 = 8; num_storage_per_group = 32 / 8 = 4;
 *    max_int_value = 2^(4-1) - 1 = 7.
 *  - A Linear with weight [N (out), K (in)] becomes `<name>.q_weight`, uint32 [N, K/8], and
 *    `<name>.q_scale`, model dtype [N, K/32] ("NK": packed and grouped along the input K
 *    axis; the tensor-cache records say dtype "uint32" and "float16" / "float32"). An
 *    Embedding [vocab, H] likewise: `q_weight` [vocab, H/8], `q_scale` [vocab, H/32].
 *  - pack_weight: word j of a row holds elements 8j + r, r = 0..7, at bits 4r .. 4r+3
 *    (element 8j in the lowest nibble).
 *  - quantize: scale = max|w| over the group / 7; q = clamp(round(w / scale + 7), 0, 14).
 *  - dequantize: w = (q - 7) * scale[n, k / 32].
 * MLC's own kernels evaluate (q - 7) * scale in the model dtype (f16 for q4f16_1); here the
 * product is formed in f32, where it is exact, and accumulation is f32.
 *
 * MLC fuses q/k/v and gate/up along N, so a fused q4 tensor is the row-concatenation of the
 * parts' words and of their scales; splitting or concatenating rows never touches the packing.
 */
import type { Gpu, Op } from '../../gpu/device';
import { preprocessWgsl } from '../../gpu/wgsl';
import { InvalidArgumentError, ShapeMismatchError, UnsupportedError } from '../../errors';
import type { HostTensor, Q4Format } from '../../model/tensor';
import { checkWeightSize, matvecScheduleFor, type GemmOp, type MatmulOptions, type MatvecSchedule } from './matmul';
import matvecQ4Src from '../../../shaders/matvec_q4.wgsl?raw';
import gemmQ4Src from '../../../shaders/gemm_q4.wgsl?raw';
import embedQ4Src from '../../../shaders/embed_q4.wgsl?raw';
import matmulCommonSrc from '../../../shaders/matmul_common.wgsl?raw';
import q4ScaleSrc from '../../../shaders/q4_scale.wgsl?raw';

/** q4f16: MLC q4f16_1 (f16 scales); q4f32: MLC q4f32_1 (f32 scales). */
export type Q4DType = 'q4f16' | 'q4f32';

export const Q4_GROUP_SIZE = 32;

/** An MLC group-quantized [rows = N, cols = K] matrix on the GPU (layout above). */
export interface Q4WeightTensor {
  /** u32 words [rows, cols / 8]. */
  buffer: GPUBuffer;
  /** [rows, cols / 32] scales: f16 packed two per u32 (low half first) for q4f16, f32 for q4f32. */
  scales: GPUBuffer;
  dtype: Q4DType;
  rows: number;
  cols: number;
}

const FORMAT_DTYPE: Record<Q4Format, Q4DType> = { q4f16_1: 'q4f16', q4f32_1: 'q4f32' };
const MATVEC_ROWS_WG = 64;
const MATVEC_COOP_WG = 64;
const GEMM_TILE_N = 64;
const GEMM_TILE_M = 16;

export function isQ4Weight(w: { dtype: string }): w is Q4WeightTensor {
  return w.dtype === 'q4f16' || w.dtype === 'q4f32';
}

export function q4DtypeOf(format: Q4Format): Q4DType {
  return FORMAT_DTYPE[format];
}

/** Bytes of the words and of the scales of a q4 [rows, cols] matrix. */
export function q4TensorBytes(dtype: Q4DType, rows: number, cols: number): { words: number; scales: number } {
  return { words: rows * (cols / 8) * 4, scales: rows * (cols / Q4_GROUP_SIZE) * (dtype === 'q4f16' ? 2 : 4) };
}

/** Uploads a q4 matrix: `words` u32 [rows, cols/8] and `scales` [rows, cols/32], bytes as MLC stores them. */
export function uploadQ4Weight(gpu: Gpu, dtype: Q4DType, rows: number, cols: number, words: Uint8Array, scales: Uint8Array, label: string): Q4WeightTensor {
  if (dtype !== 'q4f16' && dtype !== 'q4f32') throw new UnsupportedError('unsupported-dtype', `Tensor ${label} has dtype ${String(dtype)}; expected q4f16 or q4f32.`);
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) {
    throw new InvalidArgumentError(`Tensor ${label}: rows and cols must be positive integers (got ${rows} x ${cols}).`);
  }
  if (cols % Q4_GROUP_SIZE !== 0) {
    throw new InvalidArgumentError(`Tensor ${label}: q4 weights are grouped by ${Q4_GROUP_SIZE} along K, so cols must be a multiple of ${Q4_GROUP_SIZE} (got ${cols}).`);
  }
  const need = q4TensorBytes(dtype, rows, cols);
  if (words.byteLength !== need.words || scales.byteLength !== need.scales) {
    throw new ShapeMismatchError(
      'shape-mismatch',
      `Tensor ${label}: ${rows} x ${cols} ${dtype} needs ${need.words} bytes of words and ${need.scales} of scales, got ${words.byteLength} and ${scales.byteLength}.`,
    );
  }
  checkWeightSize(label, need.words, gpu.maxBinding);
  checkWeightSize(`${label}.scales`, need.scales, gpu.maxBinding);
  return {
    buffer: gpu.storage(words, label, 'weights'),
    scales: gpu.storage(scales, `${label}.scales`, 'weights'),
    dtype,
    rows,
    cols,
  };
}

/** Uploads a q4 HostTensor (one with `q4` set) as loaded from MLC shards. */
export function uploadQ4Tensor(gpu: Gpu, t: HostTensor, label: string): Q4WeightTensor {
  if (!t.q4 || t.shape.length !== 2) throw new InvalidArgumentError(`Tensor ${t.name} is not a q4 matrix.`);
  return uploadQ4Weight(gpu, FORMAT_DTYPE[t.q4.format], t.shape[0]!, t.shape[1]!, t.data, t.q4.scales, label);
}

function offsetOf(name: string, v: number | undefined): number {
  const o = v ?? 0;
  if (!Number.isInteger(o) || o < 0 || o % 4 !== 0) {
    throw new InvalidArgumentError(`${name} must be a non-negative element offset that is a multiple of 4 for q4 products (got ${String(v)}).`);
  }
  return o;
}

function needBytes(name: string, buf: GPUBuffer, elems: number): void {
  if (buf.size < elems * 4) {
    throw new InvalidArgumentError(`${name} buffer ${buf.label || ''} has ${buf.size} bytes; this product needs at least ${elems * 4}.`);
  }
}

function resources(w: Q4WeightTensor, params: GPUBuffer, x: GPUBuffer, y: GPUBuffer, opts: MatmulOptions): GPUBuffer[] {
  const r = [params, w.buffer, w.scales, x, y];
  if (opts.bias) {
    needBytes('bias', opts.bias, w.rows);
    r.push(opts.bias);
  }
  return r;
}

function defines(w: Q4WeightTensor, opts: MatmulOptions): Record<string, number | boolean> {
  return { K: w.cols, F16_SCALES: w.dtype === 'q4f16', BIAS: !!opts.bias, ACCUMULATE: !!opts.accumulate };
}

/** Decode: y[n] (+)= sum_k W[n,k] x[k] (+ bias[n]) with W dequantized on the fly; x: f32[K], y: f32[N]. */
export function q4MatvecOp(gpu: Gpu, w: Q4WeightTensor, x: GPUBuffer, y: GPUBuffer, opts: MatmulOptions = {}): Op {
  return q4MatvecOpWith(gpu, w, x, y, opts, matvecScheduleFor(gpu));
}

/** q4MatvecOp with an explicit schedule (tests run both). */
export function q4MatvecOpWith(gpu: Gpu, w: Q4WeightTensor, x: GPUBuffer, y: GPUBuffer, opts: MatmulOptions, schedule: MatvecSchedule): Op {
  const xOff = offsetOf('xOffset', opts.xOffset);
  const yOff = opts.yOffset ?? 0;
  if (!Number.isInteger(yOff) || yOff < 0) throw new InvalidArgumentError(`yOffset must be a non-negative integer element offset (got ${String(opts.yOffset)}).`);
  needBytes('x', x, xOff + w.cols);
  needBytes('y', y, yOff + w.rows);
  const coop = schedule === 'coop';
  const wg = coop ? MATVEC_COOP_WG : MATVEC_ROWS_WG;
  const code = preprocessWgsl(`${q4ScaleSrc}\n${matmulCommonSrc}\n${matvecQ4Src}`, { ...defines(w, opts), WG: wg, COOP: coop, Q4: true });
  const params = gpu.uniform(new Uint32Array([w.rows, xOff, yOff, 0]), `${w.buffer.label}.matvec_q4.params`);
  const quads = Math.ceil(w.rows / 4);
  const groups = coop ? quads : Math.ceil(quads / wg);
  return gpu.op(code, resources(w, params, x, y, opts), gpu.grid(groups), `matvec_q4 ${w.buffer.label}`);
}

/** Prefill: Y[m,n] (+)= sum_k X[m,k] W[n,k] (+ bias[n]) for m < rows; X: f32[maxRows,K], Y: f32[maxRows,N]. */
export function q4GemmOp(gpu: Gpu, w: Q4WeightTensor, x: GPUBuffer, y: GPUBuffer, maxRows: number, opts: MatmulOptions = {}): GemmOp {
  if (!Number.isInteger(maxRows) || maxRows < 1) throw new InvalidArgumentError(`maxRows must be a positive integer (got ${maxRows}).`);
  const xOff = offsetOf('xOffset', opts.xOffset);
  const yOff = opts.yOffset ?? 0;
  if (!Number.isInteger(yOff) || yOff < 0) throw new InvalidArgumentError(`yOffset must be a non-negative integer element offset (got ${String(opts.yOffset)}).`);
  needBytes('X', x, xOff + maxRows * w.cols);
  needBytes('Y', y, yOff + maxRows * w.rows);
  const nGroups = Math.ceil(w.rows / GEMM_TILE_N);
  const mGroupsMax = Math.ceil(maxRows / GEMM_TILE_M);
  if (nGroups > gpu.maxWorkgroupsPerDim || mGroupsMax > gpu.maxWorkgroupsPerDim) {
    throw new InvalidArgumentError(`gemm_q4 ${w.buffer.label}: ${w.rows} x ${maxRows} needs more workgroups than one dispatch dimension allows.`);
  }
  const code = preprocessWgsl(`${q4ScaleSrc}\n${matmulCommonSrc}\n${gemmQ4Src}`, { ...defines(w, opts), Q4: true, TILED: true });
  const paramData = new Uint32Array([w.rows, xOff, yOff, maxRows]);
  const params = gpu.uniform(paramData, `${w.buffer.label}.gemm_q4.params`);
  const label = `gemm_q4 ${w.buffer.label}`;
  const pipeline = gpu.pipeline(code, label);
  const bindGroup = gpu.bind(pipeline, resources(w, params, x, y, opts), label);
  return {
    maxRows,
    forRows(rows: number): Op {
      if (!Number.isInteger(rows) || rows < 1 || rows > maxRows) {
        throw new InvalidArgumentError(`${label}: rows must be an integer in [1, ${maxRows}] (got ${rows}).`);
      }
      paramData[3] = rows;
      gpu.write(params, paramData);
      return { pipeline, bindGroup, workgroups: [nGroups, Math.ceil(rows / GEMM_TILE_M)], label };
    },
  };
}

/** Embedding gather from a q4 table [vocab, hidden]: x[r, :] = dequantized row tokens[r]; `rows` workgroups. */
export function q4EmbedOp(gpu: Gpu, table: Q4WeightTensor, hidden: number, tokens: GPUBuffer, x: GPUBuffer): (rows: number) => Op {
  if (table.cols !== hidden) throw new ShapeMismatchError('shape-mismatch', `Embedding table has ${table.cols} columns, but the hidden size is ${hidden}.`);
  const code = preprocessWgsl(`${q4ScaleSrc}\n${embedQ4Src}`, { F16_SCALES: table.dtype === 'q4f16' });
  const op = gpu.op(code, [table.buffer, table.scales, tokens, x, gpu.uniform(new Uint32Array([hidden]), 'embed_q4.params')], [1], 'embed_q4');
  return (rows) => ({ ...op, workgroups: [rows] });
}
