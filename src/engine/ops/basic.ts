/**
 * Builders for the engine's non-matmul kernels. Each returns something that yields an `Op`
 * for a given number of rows, so one set of bind groups serves decode (rows = 1) and every
 * prefill chunk size. All of them read the shared `Step` uniform (shaders/common.wgsl).
 */
import type { Gpu, Op } from '../../gpu/device';
import { preprocessWgsl, type Defines } from '../../gpu/wgsl';
import commonSrc from '../../../shaders/common.wgsl?raw';
import rmsnormSrc from '../../../shaders/rmsnorm.wgsl?raw';
import embedSrc from '../../../shaders/embed.wgsl?raw';
import ropeSrc from '../../../shaders/rope_append.wgsl?raw';
import attentionSrc from '../../../shaders/attention.wgsl?raw';
import swigluSrc from '../../../shaders/swiglu.wgsl?raw';
import commitSrc from '../../../shaders/kv_commit.wgsl?raw';
import type { WeightDType } from './matmul';

export function kernelSource(src: string, defines: Defines = {}): string {
  return preprocessWgsl(commonSrc + '\n' + src, defines);
}

/** The per-submission step parameters, mirrored from `struct Step`. */
export interface StepParams {
  rows: number;
  pos0: number;
  splits: number;
  keysPerSplit: number;
}

export const STEP_KEYS_PER_TILE = 64;
export const MAX_SPLITS = 32;
/**
 * Invocations per workgroup (WGR in shaders/attention.wgsl) of the ROWS attention kernel's variant
 * for steps of more than this many rows, which takes ATTENTION_ROWS_PER_INVOCATION rows each;
 * shorter steps get the ATTENTION_ROWS_SMALL_GROUP variant.
 */
export const ATTENTION_ROWS_PER_GROUP = 16;
/**
 * Query rows per ROWS invocation for steps of more than ATTENTION_ROWS_PER_GROUP rows: each
 * loaded key and value serves this many rows (lanes take rows lid, lid + WGR, ...).
 */
export const ATTENTION_ROWS_PER_INVOCATION = 2;
/**
 * Workgroup size of the ROWS variant for steps of up to ATTENTION_ROWS_PER_GROUP rows (decode,
 * short chunks), one row per invocation: lanes past the last row run the loop too (a copy of
 * the last row), so a narrow workgroup keeps a decode step to one SIMD batch.
 */
export const ATTENTION_ROWS_SMALL_GROUP = 8;
/** Most query heads one ROWS invocation serves (see rowsHeadsPerInvocation). */
export const ATTENTION_ROWS_MAX_HEADS = 4;

/**
 * The ROWS attention kernel's per-(row, head, dimension) lines for `rr` query rows and `gh`
 * query heads per invocation, unrolled over head_dim / 4: on CPU back ends a private array
 * indexed in a loop lives in per-lane memory, separate locals stay in registers (2x faster on
 * SwiftShader). Each key and value row is loaded once for rr x gh (row, head) pairs: the loads
 * are what a key costs on CPU adapters (lavapipe, bundled model: 1, 2, 4 heads per invocation
 * took 3.0x, 1.6x, 1x the time). SETUP finds each row's bounds and loads its queries; DOT
 * scores a key for every (row, head) (NEG when masked), UPDATE folds it and its value into each
 * online softmax. With `scores` the raw scores and each (row, head)'s (max, sum) are written too.
 */
function unrolledRows(hd4: number, gh: number, rr: number, scores: boolean): Record<string, string | number> {
  const ds = Array.from({ length: hd4 }, (_, d) => d);
  const gs = Array.from({ length: gh }, (_, g) => g);
  const ts = Array.from({ length: rr }, (_, t) => t);
  const each = (f: (t: number, g: number) => string): string => ts.flatMap((t) => gs.map((g) => f(t, g))).join('\n');
  const eachD = (f: (t: number, g: number, d: number) => string): string => ts.flatMap((t) => gs.flatMap((g) => ds.map((d) => f(t, g, d)))).join('\n');
  const row = (t: number, g: number): string => `(r${t} * p.nH + h0 + ${g}u)`;
  return {
    HD4: hd4,
    GH: gh,
    RR: rr,
    SETUP: ts
      .map(
        (t) =>
          `  let live${t} = rb + ${t}u * WGR < step.rows;\n  let r${t} = min(rb + ${t}u * WGR, step.rows - 1u);\n` +
          `  let qpos${t} = step.pos0 + r${t};\n  let n${t} = len0 + r${t} + 1u;\n  let qb${t} = r${t} * width4 + h0 * HD4;`,
      )
      .join('\n'),
    QLOAD: eachD((t, g, d) => `  let q${t}_${g}_${d} = qkv[qb${t} + ${g * hd4 + d}u];`),
    ACCDECL: eachD((t, g, d) => `  var a${t}_${g}_${d} = vec4<f32>(0.0);`) + '\n' + each((t, g) => `  var m${t}_${g} = NEG;\n  var l${t}_${g} = 0.0;`),
    DOT:
      `    let pj = posc[cbase + j];\n` +
      ts.map((t) => `    let vis${t} = j < n${t} && pj <= qpos${t};`).join('\n') +
      '\n' +
      ds.map((d) => `    let k${d} = kc[kb + ${d}u];`).join('\n') +
      '\n' +
      each(
        (t, g) =>
          `    var dot${t}_${g} = vec4<f32>(0.0);\n` +
          ds.map((d) => `    dot${t}_${g} += q${t}_${g}_${d} * k${d};`).join('\n') +
          `\n    let s${t}_${g} = select(NEG, (dot${t}_${g}.x + dot${t}_${g}.y + dot${t}_${g}.z + dot${t}_${g}.w) * p.scale, vis${t});`,
      ),
    UPDATE:
      ds.map((d) => `    let v${d} = vc[kb + ${d}u];`).join('\n') +
      '\n' +
      each(
        (t, g) =>
          `    let mn${t}_${g} = max(m${t}_${g}, s${t}_${g});\n    let alpha${t}_${g} = exp(m${t}_${g} - mn${t}_${g});\n` +
          `    let w${t}_${g} = select(0.0, exp(s${t}_${g} - mn${t}_${g}), vis${t});\n    m${t}_${g} = mn${t}_${g};\n    l${t}_${g} = l${t}_${g} * alpha${t}_${g} + w${t}_${g};\n` +
          ds.map((d) => `    a${t}_${g}_${d} = a${t}_${g}_${d} * alpha${t}_${g} + w${t}_${g} * v${d};`).join('\n'),
      ),
    // Lanes past the last row score a copy of it and write the same values.
    SKEEP: scores ? each((t, g) => `    scores[p.scoreBase + ${row(t, g)} * p.capacity + j] = s${t}_${g};`) : '',
    STORE: ts
      .map(
        (t) =>
          `  if (live${t}) {\n` +
          gs
            .map(
              (g) =>
                ds.map((d) => `    outp[${row(t, g)} * HD4 + ${d}u] = a${t}_${g}_${d} / l${t}_${g};`).join('\n') +
                (scores
                  ? // Later rows of this step are masked for this row: their scores read as masked.
                    `\n    for (var j = nAll; j < n${t} + step.rows - r${t} - 1u; j++) { scores[p.scoreBase + ${row(t, g)} * p.capacity + j] = NEG; }` +
                    `\n    ml[p.scoreBase / p.capacity * 2u + ${row(t, g)} * 2u] = m${t}_${g};\n    ml[p.scoreBase / p.capacity * 2u + ${row(t, g)} * 2u + 1u] = l${t}_${g};`
                  : ''),
            )
            .join('\n') +
          '\n  }',
      )
      .join('\n'),
  };
}

/**
 * Query heads per invocation of the ROWS kernel: as many of a KV group's heads as divide it,
 * up to `max` (each shares the key / value loads; more heads hold more registers).
 */
export function rowsHeadsPerInvocation(nH: number, nKV: number, max = ATTENTION_ROWS_MAX_HEADS): number {
  const group = nH / nKV;
  for (let g = Math.min(max, group); g > 1; g--) if (group % g === 0) return g;
  return 1;
}

/** Whether attentionOps' 'auto' mode runs the ROWS kernel for every step (then `part` is never read). */
export function attentionByRows(gpu: Gpu, hd: number): boolean {
  return gpu.cpuAdapter && hd % 4 === 0;
}

/** Chooses the key-axis split for attention over at most `maxKeys` entries. */
export function attentionSplit(maxKeys: number): { splits: number; keysPerSplit: number } {
  const tiles = Math.max(1, Math.ceil(maxKeys / STEP_KEYS_PER_TILE));
  const splits = Math.min(tiles, MAX_SPLITS);
  const keysPerSplit = Math.ceil(tiles / splits) * STEP_KEYS_PER_TILE;
  return { splits: Math.ceil(maxKeys / keysPerSplit) || 1, keysPerSplit };
}

export class StepBuffer {
  readonly buffer: GPUBuffer;
  constructor(private gpu: Gpu) {
    this.buffer = gpu.buffer(16, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, 'step', 'uniform');
  }
  set(s: StepParams): void {
    this.gpu.write(this.buffer, new Uint32Array([s.rows, s.pos0, s.splits, s.keysPerSplit]));
  }
}

/** An op whose workgroup count depends on the step's rows. */
export type RowOp = (rows: number) => Op;

function u32f32(values: (number | { f32: number })[]): Uint32Array {
  const out = new Uint32Array(Math.ceil(values.length / 4) * 4);
  const f = new Float32Array(out.buffer);
  values.forEach((v, i) => {
    if (typeof v === 'number') out[i] = v;
    else f[i] = v.f32;
  });
  return out;
}

export function embedOp(gpu: Gpu, table: GPUBuffer, dtype: WeightDType, hidden: number, tokens: GPUBuffer, x: GPUBuffer): RowOp {
  const code = kernelSource(embedSrc, { F32: dtype === 'f32', BF16: dtype === 'bf16' });
  const op = gpu.op(code, [table, tokens, x, gpu.uniform(u32f32([hidden]), 'embed.params')], [1], 'embed');
  return (rows) => ({ ...op, workgroups: [rows] });
}

export function rmsnormOp(gpu: Gpu, x: GPUBuffer, w: GPUBuffer, y: GPUBuffer, n: number, eps: number, step: StepBuffer, lastRow = false, byRows = gpu.cpuAdapter): RowOp {
  const code = kernelSource(rmsnormSrc, { LAST_ROW: lastRow });
  const params = gpu.uniform(u32f32([n, { f32: eps }]), 'rmsnorm.params');
  const op = gpu.op(code, [x, w, y, params, step.buffer], [1], 'rmsnorm');
  // Many rows on a CPU adapter: a row per invocation instead of a workgroup with a barrier tree.
  const byRow = !lastRow && byRows ? gpu.op(kernelSource(rmsnormSrc, { ROWS: true }), [x, w, y, params, step.buffer], [1], 'rmsnorm.rows') : undefined;
  return (rows) => (byRow && rows > 1 ? { ...byRow, workgroups: [Math.ceil(rows / 16)] } : { ...op, workgroups: [lastRow ? 1 : rows] });
}

export interface LayerCacheBuffers {
  k: GPUBuffer;
  v: GPUBuffer;
  pos: GPUBuffer;
  capacity: number;
  /** Index of this layer's first KV head in the shared lengths buffer. */
  layerBase: number;
}

export interface AttentionShape {
  nH: number;
  nKV: number;
  hd: number;
}

/** With `queriesOnly` (a layer reading another layer's cache) only the queries are rotated and nothing is stored. */
export function ropeAppendOp(gpu: Gpu, qkv: GPUBuffer, cos: GPUBuffer, sin: GPUBuffer, cache: LayerCacheBuffers, lens: GPUBuffer, shape: AttentionShape, step: StepBuffer, queriesOnly = false): RowOp {
  const params = gpu.uniform(u32f32([shape.nH, shape.nKV, shape.hd, cache.capacity, cache.layerBase]), 'rope.params');
  const op = gpu.op(kernelSource(ropeSrc, { Q_ONLY: queriesOnly }), [qkv, cos, sin, cache.k, cache.v, cache.pos, lens, params, step.buffer], [1], 'rope_append');
  return (rows) => ({ ...op, workgroups: [rows] });
}

/**
 * Attention ops for one step. Two kernels: PARTIAL + REDUCE splits the key axis over many
 * workgroups (`part` must hold rows * nH * MAX_SPLITS * (hd + 2) floats), which fills a GPU;
 * ROWS gives 1 or 2 query rows (and up to 4 query heads of one KV group) one invocation walking all
 * their keys (few invocations, no barriers), which is 10-20x faster on CPU adapters (SwiftShader)
 * and is what 'auto' picks there. `mode` forces one; ROWS needs head_dim % 4 == 0, else the
 * split kernel serves every step. `headsPerInvocation` overrides ROWS' heads per invocation.
 * With `scores` (rows * nH * capacity floats) and `ml` (rows * nH * 2), the raw scores and the
 * softmax (max, sum) are also written for the attention-mass pass.
 */
export function attentionOps(gpu: Gpu, qkv: GPUBuffer, cache: LayerCacheBuffers, lens: GPUBuffer, part: GPUBuffer, out: GPUBuffer, shape: AttentionShape, step: StepBuffer, mass?: { scores: GPUBuffer; ml: GPUBuffer; scoreBase?: number }, mode: 'auto' | 'split' | 'rows' = 'auto', headsPerInvocation?: number): (rows: number, splits: number) => Op[] {
  if (shape.hd > 256) throw new Error(`attention supports head_dim <= 256, got ${shape.hd}`);
  const params = gpu.uniform(
    u32f32([shape.nH, shape.nKV, shape.hd, cache.capacity, cache.layerBase, { f32: 1 / Math.sqrt(shape.hd) }, mass?.scoreBase ?? 0, 0]),
    'attention.params',
  );
  const scores = !!mass;
  const rowsOk = mode === 'rows' ? shape.hd % 4 === 0 : mode === 'auto' && attentionByRows(gpu, shape.hd);
  if (rowsOk) {
    const gh = headsPerInvocation ?? rowsHeadsPerInvocation(shape.nH, shape.nKV);
    if (!Number.isInteger(gh) || gh < 1 || (shape.nH / shape.nKV) % gh !== 0) {
      throw new Error(`attention: ${gh} heads per invocation do not divide the ${shape.nH / shape.nKV} query heads of a KV group`);
    }
    // Up to ATTENTION_ROWS_PER_GROUP rows: one row per invocation in narrow workgroups; more
    // (prefill chunks): ATTENTION_ROWS_PER_INVOCATION rows per invocation.
    const variants = ([[ATTENTION_ROWS_SMALL_GROUP, 1], [ATTENTION_ROWS_PER_GROUP, ATTENTION_ROWS_PER_INVOCATION]] as const).map(([wgr, rr]) => {
      const code = kernelSource(attentionSrc, { ROWS: true, SCORES: scores, WGR: wgr, ...unrolledRows(shape.hd / 4, gh, rr, scores) });
      const op = gpu.op(code, [qkv, cache.k, cache.v, cache.pos, lens, out, params, step.buffer, ...(mass ? [mass.scores, mass.ml] : [])], [1], 'attention.rows');
      return { op, perGroup: wgr * rr };
    });
    return (rows) => {
      const v = variants[rows > ATTENTION_ROWS_PER_GROUP ? 1 : 0]!;
      return [{ ...v.op, workgroups: [Math.ceil(rows / v.perGroup), shape.nH / gh] }];
    };
  }
  const partial = gpu.op(kernelSource(attentionSrc, { SCORES: scores }), [qkv, cache.k, cache.v, cache.pos, lens, part, params, step.buffer, ...(mass ? [mass.scores] : [])], [1], 'attention.partial');
  const reduce = gpu.op(kernelSource(attentionSrc, { REDUCE: true, SCORES: scores }), [part, out, params, step.buffer, ...(mass ? [mass.ml] : [])], [1], 'attention.reduce');
  return (rows, splits) => [
    { ...partial, workgroups: [splits, shape.nH, rows] },
    { ...reduce, workgroups: [shape.nH, rows] },
  ];
}

export function swigluOp(gpu: Gpu, gateUp: GPUBuffer, act: GPUBuffer, inter: number, step: StepBuffer): RowOp {
  const op = gpu.op(kernelSource(swigluSrc), [gateUp, act, gpu.uniform(u32f32([inter]), 'swiglu.params'), step.buffer], [1], 'swiglu');
  return (rows) => ({ ...op, workgroups: gpu.grid(Math.ceil((rows * inter) / 64)) });
}

/** Advances lengths and accumulates the footprint into `acct` (2 u32 per (layer, KV head)). */
export function kvCommitOp(gpu: Gpu, lens: GPUBuffer, acct: GPUBuffer, count: number, step: StepBuffer): Op {
  return gpu.op(kernelSource(commitSrc), [lens, acct, step.buffer], [Math.ceil(count / 64)], 'kv_commit');
}
