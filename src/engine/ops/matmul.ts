/**
 * Weight matrices and the matrix products of the decoder: matrix-vector for decode (also the
 * LM head), register-tiled matrix-matrix for prefill, and a streaming-copy probe that
 * benchmarks divide by.
 *
 * Shaders are specialised per (dtype, K, bias, accumulate, vector path): K is baked in so the
 * inner loop has a constant trip count, and the pipeline cache (keyed by source) keeps one
 * pipeline per distinct shape, a handful per model.
 */
import type { Gpu, Op } from '../../gpu/device';
import { preprocessWgsl } from '../../gpu/wgsl';
import { InvalidArgumentError, ShapeMismatchError, UnsupportedError } from '../../errors';
import matvecSrc from '../../../shaders/matvec.wgsl?raw';
import gemmSrc from '../../../shaders/gemm.wgsl?raw';
import matmulCommonSrc from '../../../shaders/matmul_common.wgsl?raw';
import copySrc from '../../../shaders/copy.wgsl?raw';
import knSrc from '../../../shaders/matmul_kn.wgsl?raw';
// q4 hook: MLC group-quantized weights (q4f16_1 / q4f32_1) are handled in quant.ts.
import { isQ4Weight, q4GemmOp, q4MatvecOp, type Q4WeightTensor } from './quant';

export type WeightDType = 'f32' | 'f16' | 'bf16';

/**
 * How a weight matrix is stored on the GPU: 'nk' as in the file ([N out features, K in
 * features], K contiguous); 'kn' transposed ([K, N], N contiguous), for adapters where the
 * transposed products run faster (Gpu.weightLayout; see shaders/matmul_kn.wgsl).
 */
export type WeightLayout = 'nk' | 'kn';

/** A weight matrix on the GPU in HF layout [rows = out features N, cols = in features K], row-major,
 *  stored in its own dtype: f32 as array<f32>; f16 and bf16 as raw 16-bit values packed two per u32
 *  (little-endian: element 2i in the low half). f16 unpacked with unpack2x16float; bf16 by shifts
 *  (lo = bitcast<f32>(w << 16u), hi = bitcast<f32>(w & 0xffff0000u)). Never narrowed or widened on upload.
 *  With layout 'kn' the same values are stored transposed, [cols, rows padded with zeros to a
 *  multiple of 128], packed along rows; `rows` and `cols` still name the HF shape. */
export interface WeightTensor {
  buffer: GPUBuffer;
  dtype: WeightDType;
  rows: number;
  cols: number;
  /** Default 'nk'. */
  layout?: WeightLayout;
}

export interface MatmulOptions {
  /** f32[N], added to each output row. */
  bias?: GPUBuffer;
  /** y += W x (used to fuse residual adds); default y = W x. */
  accumulate?: boolean;
  /** Element offset into x (f32), default 0. */
  xOffset?: number;
  /** Element offset into y (f32), default 0. */
  yOffset?: number;
}

/** Prefill product bound to its buffers; `forRows` sets how many rows of X / Y the next submission computes. */
export interface GemmOp {
  maxRows: number;
  forRows(rows: number): Op;
}

/**
 * How a matvec is scheduled: 'rows' (each invocation owns 4 rows and walks K alone; no
 * barriers) or 'coop' (a workgroup shares 4 rows with coalesced loads and one tree reduction).
 */
export type MatvecSchedule = 'rows' | 'coop';

const BYTES_PER: Record<WeightDType, number> = { f32: 4, f16: 2, bf16: 2 };
const MATVEC_ROWS_WG = 64;
const MATVEC_COOP_WG = 64;
const ROWS_PER_INVOCATION = 4;
/**
 * Register tile (m rows x n columns) per GEMM invocation: 8 x 8 on GPUs; 16 x 8 on CPU adapters,
 * where each load is a per-lane gather and more rows per loaded weight chunk pay off (SwiftShader,
 * 1000-token prefill of the bundled model: GEMMs 2.1 s -> 1.6 s; 16 x 16 gains little more, 1.5 s,
 * and doubles the shader's compile time).
 */
const GEMM_TILE_GPU: readonly [number, number] = [8, 8];
const GEMM_TILE_CPU: readonly [number, number] = [16, 8];
/** 'kn' products: GEMM tile (TM rows x TN quads of 4 columns), invocations per workgroup (bench/gemm-layout.ts). */
const KN_TM = 8;
const KN_TN = 4;
const KN_GEMM_WG = 8;
/** 'kn' matvec: invocations per workgroup x quads per invocation (= 32 quads, one padded row block). */
const KN_MATVEC_WG = 8;
const KN_MATVEC_TQ = 4;
/** Columns a 'kn' weight row is padded to a multiple of: one GEMM workgroup's width. */
const KN_PAD = 4 * KN_TN * KN_GEMM_WG;
const COPY_WG = 64;
const COPY_PER = 16;

/**
 * Throws the typed error when a tensor of `bytes` cannot be bound as one storage buffer on an
 * adapter whose maxStorageBufferBindingSize is `maxBinding`.
 */
export function checkWeightSize(label: string, bytes: number, maxBinding: number): void {
  if (bytes > maxBinding) {
    throw new UnsupportedError(
      'tensor-too-large',
      `Tensor ${label} needs ${bytes} bytes, more than this adapter's maxStorageBufferBindingSize of ` +
        `${maxBinding} bytes, so it cannot be bound as one buffer.`,
    );
  }
}

function checkDims(label: string, dtype: WeightDType, rows: number, cols: number): void {
  if (!(dtype in BYTES_PER)) throw new UnsupportedError('unsupported-dtype', `Tensor ${label} has dtype ${String(dtype)}; expected f32, f16 or bf16.`);
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) {
    throw new InvalidArgumentError(`Tensor ${label}: rows and cols must be positive integers (got ${rows} x ${cols}).`);
  }
  if (dtype !== 'f32' && cols % 2 !== 0) {
    throw new InvalidArgumentError(`Tensor ${label}: ${dtype} weights are packed two per u32, so cols must be even (got ${cols}).`);
  }
}

/** Whether a [rows, cols] weight can be stored in the 'kn' layout (its products read 4 columns at a time). */
export function knLayoutFits(rows: number): boolean {
  return rows % 4 === 0;
}

/**
 * Columns of a stored 'kn' row: `rows` padded to whole GEMM workgroups, so that the kernels'
 * loads need no clamp (an index linear in the invocation id lets lavapipe load neighbouring
 * invocations' columns as one vector).
 */
function knStride(rows: number): number {
  return Math.ceil(rows / KN_PAD) * KN_PAD;
}

/**
 * [rows, cols] elements of `bytesPer` bytes each -> [cols, stride] (stride >= rows; the padding
 * columns are zero), bit for bit.
 */
function transposeBytes(data: Uint8Array, rows: number, cols: number, bytesPer: number, stride: number): Uint8Array {
  const src = data.byteOffset % 4 === 0 ? data : data.slice();
  const out = new Uint8Array(cols * stride * bytesPer);
  const [a, b] =
    bytesPer === 4
      ? [new Uint32Array(src.buffer, src.byteOffset, rows * cols), new Uint32Array(out.buffer)]
      : [new Uint16Array(src.buffer, src.byteOffset, rows * cols), new Uint16Array(out.buffer)];
  // In 64 x 64 blocks, so that neither side is walked with a large stride for long.
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B)
    for (let c0 = 0; c0 < cols; c0 += B)
      for (let r = r0; r < Math.min(r0 + B, rows); r++) for (let c = c0; c < Math.min(c0 + B, cols); c++) b[c * stride + r] = a[r * cols + c]!;
  return out;
}

/**
 * Uploads a [rows, cols] weight in its own dtype (bytes exactly as stored, little-endian).
 * `layout` 'kn' stores it transposed (rows must be a multiple of 4: see knLayoutFits).
 */
export function uploadWeight(gpu: Gpu, dtype: WeightDType, rows: number, cols: number, data: Uint8Array, label: string, layout: WeightLayout = 'nk'): WeightTensor {
  checkDims(label, dtype, rows, cols);
  const bytes = rows * cols * BYTES_PER[dtype];
  if (data.byteLength !== bytes) {
    throw new ShapeMismatchError('shape-mismatch', `Tensor ${label}: ${rows} x ${cols} ${dtype} needs ${bytes} bytes, got ${data.byteLength}.`);
  }
  if (layout !== 'nk' && layout !== 'kn') throw new InvalidArgumentError(`Tensor ${label}: layout must be 'nk' or 'kn' (got ${String(layout)}).`);
  if (layout === 'kn' && !knLayoutFits(rows)) {
    throw new InvalidArgumentError(`Tensor ${label}: the 'kn' layout needs rows (out features) a multiple of 4 (got ${rows}).`);
  }
  const stride = layout === 'kn' ? knStride(rows) : rows;
  checkWeightSize(label, layout === 'kn' ? cols * stride * BYTES_PER[dtype] : bytes, gpu.maxBinding);
  const buffer = gpu.storage(layout === 'kn' ? transposeBytes(data, rows, cols, BYTES_PER[dtype], stride) : data, label, 'weights');
  return { buffer, dtype, rows, cols, layout };
}

/** The schedule this adapter runs best: 'rows' on CPU adapters (barriers are costly on a CPU), 'coop' on GPUs. */
export function matvecScheduleFor(gpu: Gpu): MatvecSchedule {
  return gpu.cpuAdapter ? 'rows' : 'coop';
}

interface Variant {
  defines: Record<string, string | number | boolean>;
}

/** Vector path: one vec4 load per chunk; needs K a multiple of the chunk and a vec4-aligned x. */
function variant(w: WeightTensor, xOffset: number, xRowStride: number, opts: MatmulOptions): Variant {
  const wide = w.dtype === 'f32' ? 4 : 8;
  const vec = w.cols % wide === 0 && xOffset % 4 === 0 && xRowStride % 4 === 0;
  const ch = vec ? wide : w.dtype === 'f32' ? 1 : 2;
  return {
    defines: {
      K: w.cols,
      CH: ch,
      VEC: vec,
      F32: w.dtype === 'f32',
      BF16: w.dtype === 'bf16',
      BIAS: !!opts.bias,
      ACCUMULATE: !!opts.accumulate,
    },
  };
}

function offsetOf(name: string, v: number | undefined): number {
  const o = v ?? 0;
  if (!Number.isInteger(o) || o < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer element offset (got ${String(v)}).`);
  return o;
}

function needBytes(name: string, buf: GPUBuffer, elems: number): void {
  if (buf.size < elems * 4) {
    throw new InvalidArgumentError(`${name} buffer ${buf.label || ''} has ${buf.size} bytes; this product needs at least ${elems * 4}.`);
  }
}

function resources(w: WeightTensor, params: GPUBuffer, x: GPUBuffer, y: GPUBuffer, opts: MatmulOptions): GPUBuffer[] {
  const r = [params, w.buffer, x, y];
  if (opts.bias) {
    needBytes('bias', opts.bias, w.rows);
    r.push(opts.bias);
  }
  return r;
}

/** Decode: y[n] (+)= sum_k W[n,k] * x[k] (+ bias[n]);  x: f32[K], y: f32[N]. */
export function matvecOp(gpu: Gpu, w: WeightTensor | Q4WeightTensor, x: GPUBuffer, y: GPUBuffer, opts: MatmulOptions = {}): Op {
  if (isQ4Weight(w)) return q4MatvecOp(gpu, w, x, y, opts); // q4 hook
  return matvecOpWith(gpu, w, x, y, opts, matvecScheduleFor(gpu));
}

/** matvecOp with an explicit schedule (tests run both; the engine uses matvecOp). A 'kn' weight has one schedule. */
export function matvecOpWith(gpu: Gpu, w: WeightTensor, x: GPUBuffer, y: GPUBuffer, opts: MatmulOptions, schedule: MatvecSchedule): Op {
  if (w.layout === 'kn') return matvecKnOp(gpu, w, x, y, opts);
  const xOff = offsetOf('xOffset', opts.xOffset);
  const yOff = offsetOf('yOffset', opts.yOffset);
  needBytes('x', x, xOff + w.cols);
  needBytes('y', y, yOff + w.rows);
  const { defines } = variant(w, xOff, 0, opts);
  const coop = schedule === 'coop';
  const wg = coop ? MATVEC_COOP_WG : MATVEC_ROWS_WG;
  const code = preprocessWgsl(`${matmulCommonSrc}\n${matvecSrc}`, { ...defines, WG: wg, COOP: coop });
  const params = gpu.uniform(new Uint32Array([w.rows, xOff, yOff, 0]), `${w.buffer.label}.matvec.params`);
  const quads = Math.ceil(w.rows / ROWS_PER_INVOCATION);
  const groups = coop ? quads : Math.ceil(quads / wg);
  return gpu.op(code, resources(w, params, x, y, opts), gpu.grid(groups), `matvec ${w.buffer.label}`);
}

/**
 * The GEMM kernel's per-invocation tile lines for a tm x tn register tile (tn a multiple of 4):
 * row / column addresses, the unrolled multiply-accumulate step over one K chunk, and the stores.
 */
function gemmTile(tm: number, tn: number): Record<string, string | number> {
  const ms = Array.from({ length: tm }, (_, i) => i);
  const hs = Array.from({ length: tn / 4 }, (_, h) => h);
  const ns = Array.from({ length: tn }, (_, j) => j);
  return {
    TM: tm,
    TN: tn,
    SETUP: [
      ...ns.map((j) => `  let w${j} = ${j === 0 ? 'n0' : `min(n0 + ${j}u, ln)`} * KC;`),
      ...ms.map((i) => `  let x${i} = p.x_off + ${i === 0 ? 'm0' : `min(m0 + ${i}u, lm)`} * K;`),
      ...ms.flatMap((i) => hs.map((h) => `  var a${i}_${h} = vec4<f32>(0.0);`)),
    ].join('\n'),
    INNER: [
      ...hs.map((h) => `    let t${h} = cols(${[0, 1, 2, 3].map((q) => `wload(w${4 * h + q} + c)`).join(', ')});`),
      '    let e = c * CH;',
      ...ms.flatMap((i) => [`    let y${i} = xload(x${i} + e);`, ...hs.map((h) => `    a${i}_${h} = mac_row(a${i}_${h}, y${i}, t${h});`)]),
    ].join('\n'),
    STORE: ms.flatMap((i) => hs.map((h) => `  store_row(m0 + ${i}u, n0 + ${4 * h}u, a${i}_${h});`)).join('\n'),
  };
}

/** The 'kn' kernels' defines for weight w. */
function knDefines(w: WeightTensor, opts: MatmulOptions): Record<string, string | number | boolean> {
  return { K: w.cols, NQ: w.rows / 4, NS: knStride(w.rows) / 4, F32: w.dtype === 'f32', BF16: w.dtype === 'bf16', BIAS: !!opts.bias, ACCUMULATE: !!opts.accumulate, TILED: true };
}

function matvecKnOp(gpu: Gpu, w: WeightTensor, x: GPUBuffer, y: GPUBuffer, opts: MatmulOptions): Op {
  const xOff = offsetOf('xOffset', opts.xOffset);
  const yOff = offsetOf('yOffset', opts.yOffset);
  needBytes('x', x, xOff + w.cols);
  needBytes('y', y, yOff + w.rows);
  const grid = gpu.grid(Math.ceil(w.rows / 4 / (KN_MATVEC_WG * KN_MATVEC_TQ)));
  const folded = grid[1] > 1;
  const js = Array.from({ length: KN_MATVEC_TQ }, (_, j) => j);
  const q = (j: number): string => `q0 + ${j * KN_MATVEC_WG}u`;
  const lines = {
    QSTEP: KN_MATVEC_WG * KN_MATVEC_TQ,
    SETUP: js.map((j) => `  let c${j} = ${folded ? `min(${q(j)}, NS - 1u)` : q(j)};\n  var a${j} = vec4<f32>(0.0);`).join('\n'),
    INNER: js.map((j) => `    a${j} = fma(xk, wq(k * NS + c${j}), a${j});`).join('\n'),
    STORE: js.map((j) => `  store_row(0u, 4u * (${q(j)}), a${j});`).join('\n'),
  };
  const code = preprocessWgsl(`${matmulCommonSrc}\n${knSrc}`, { ...knDefines(w, opts), ...lines, MATVEC: true, WG: KN_MATVEC_WG });
  const params = gpu.uniform(new Uint32Array([w.rows, xOff, yOff, 1]), `${w.buffer.label}.matvec.params`);
  return gpu.op(code, resources(w, params, x, y, opts), grid, `matvec ${w.buffer.label}`);
}

/**
 * The 'kn' GEMM's unrolled lines: accumulator aI_J holds Y[m0 + I, 4 (q0 + J WG) .. + 3]. Each
 * step loads the TM x values first, then the TN weight quads, then runs the FMAs (this order,
 * with the vec4 epilogue, is ~1.4x faster on lavapipe than interleaving loads and FMAs). With
 * `vstore` the accumulators start from init4 and end in store4; otherwise they start at 0 and
 * end in store_row.
 */
function knTile(vstore: boolean): Record<string, string | number> {
  const ms = Array.from({ length: KN_TM }, (_, i) => i);
  const js = Array.from({ length: KN_TN }, (_, j) => j);
  const q = (j: number): string => `q0 + ${j * KN_GEMM_WG}u`;
  return {
    TM: KN_TM,
    QSTEP: KN_TN * KN_GEMM_WG,
    SETUP: [
      ...ms.map((i) => `  let x${i} = p.x_off + min(m0 + ${i}u, lm) * K;`),
      ...ms.flatMap((i) => js.map((j) => `  var a${i}_${j} = ${vstore ? `init4(m0 + ${i}u, ${q(j)})` : 'vec4<f32>(0.0)'};`)),
    ].join('\n'),
    INNER: [
      ...ms.map((i) => `    let y${i} = vec4<f32>(x[x${i} + k]);`),
      ...js.map((j) => `    let w${j} = wq(k * NS + ${q(j)});`),
      ...ms.flatMap((i) => js.map((j) => `    a${i}_${j} = fma(y${i}, w${j}, a${i}_${j});`)),
    ].join('\n'),
    STORE: ms
      .flatMap((i) => js.map((j) => (vstore ? `  store4(m0 + ${i}u, ${q(j)}, a${i}_${j});` : `  store_row(m0 + ${i}u, 4u * (${q(j)}), a${i}_${j});`)))
      .join('\n'),
  };
}

/** Prefill: Y[m,n] (+)= sum_k X[m,k] * W[n,k] (+ bias[n]) for m < rows; X: f32[maxRows,K], Y: f32[maxRows,N] row-major. */
export function gemmOp(gpu: Gpu, w: WeightTensor | Q4WeightTensor, x: GPUBuffer, y: GPUBuffer, maxRows: number, opts: MatmulOptions = {}): GemmOp {
  if (isQ4Weight(w)) return q4GemmOp(gpu, w, x, y, maxRows, opts); // q4 hook
  if (!Number.isInteger(maxRows) || maxRows < 1) throw new InvalidArgumentError(`maxRows must be a positive integer (got ${maxRows}).`);
  const xOff = offsetOf('xOffset', opts.xOffset);
  const yOff = offsetOf('yOffset', opts.yOffset);
  needBytes('X', x, xOff + maxRows * w.cols);
  needBytes('Y', y, yOff + maxRows * w.rows);
  const kn = w.layout === 'kn';
  let code: string;
  let tileN: number;
  let tileM: number;
  if (kn) {
    const vstore = yOff % 4 === 0;
    const defs = { ...knDefines(w, opts), ...knTile(vstore), GEMM: true, WG: KN_GEMM_WG, VSTORE: vstore, TILED: !vstore, OWN_STORE: vstore };
    code = preprocessWgsl(`${matmulCommonSrc}\n${knSrc}`, defs);
    tileN = KN_PAD;
    tileM = KN_TM;
  } else {
    const { defines } = variant(w, xOff, w.cols, opts);
    const [tm, tn] = gpu.cpuAdapter ? GEMM_TILE_CPU : GEMM_TILE_GPU;
    code = preprocessWgsl(`${matmulCommonSrc}\n${gemmSrc}`, { ...defines, ...gemmTile(tm, tn), TILED: true });
    // A workgroup is 16 x 4 invocations (n x m).
    tileN = 16 * tn;
    tileM = 4 * tm;
  }
  const nGroups = Math.ceil(w.rows / tileN);
  const mGroupsMax = Math.ceil(maxRows / tileM);
  if (nGroups > gpu.maxWorkgroupsPerDim || mGroupsMax > gpu.maxWorkgroupsPerDim) {
    throw new InvalidArgumentError(`gemm ${w.buffer.label}: ${w.rows} x ${maxRows} needs more workgroups than one dispatch dimension allows.`);
  }
  const paramData = new Uint32Array([w.rows, xOff, yOff, maxRows]);
  const params = gpu.uniform(paramData, `${w.buffer.label}.gemm.params`);
  const pipeline = gpu.pipeline(code, `gemm ${w.buffer.label}`);
  const bindGroup = gpu.bind(pipeline, resources(w, params, x, y, opts), `gemm ${w.buffer.label}`);
  const label = `gemm ${w.buffer.label}`;
  return {
    maxRows,
    forRows(rows: number): Op {
      if (!Number.isInteger(rows) || rows < 1 || rows > maxRows) {
        throw new InvalidArgumentError(`gemm ${w.buffer.label}: rows must be an integer in [1, ${maxRows}] (got ${rows}).`);
      }
      paramData[3] = rows;
      gpu.write(params, paramData);
      return { pipeline, bindGroup, workgroups: [nGroups, Math.ceil(rows / tileM)], label };
    },
  };
}

/** A streaming copy probe for benchmarks: copies n f32 from src to dst. */
export function copyOp(gpu: Gpu, src: GPUBuffer, dst: GPUBuffer, n: number): Op {
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`copy length must be a positive integer (got ${n}).`);
  needBytes('src', src, n);
  needBytes('dst', dst, n);
  const vec = n % 4 === 0;
  const code = preprocessWgsl(copySrc, { VEC: vec, N: n, PER: COPY_PER, WG: COPY_WG });
  const units = vec ? n / 4 : n;
  const groups = Math.ceil(units / (COPY_PER * COPY_WG));
  return gpu.op(code, [src, dst], gpu.grid(groups), 'copy');
}
