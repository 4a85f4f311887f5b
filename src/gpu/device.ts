import { InvalidArgumentError, NoWebGPUError, OutOfMemoryError } from '../errors';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

function isNode(): boolean {
  return typeof process !== 'undefined' && !!process.versions?.node;
}

/**
 * The WebGPU entry point: `navigator.gpu` in browsers and workers, Dawn's `webgpu` npm
 * package in Node (loaded lazily, so importing kvscope never needs a native binary).
 */
export async function getWebGPU(nodeFlags: string[] = []): Promise<GPU> {
  const nav = (globalThis as { navigator?: Navigator }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (!isNode()) {
    throw new NoWebGPUError(
      'WebGPU is not available in this browser (navigator.gpu is missing). kvscope needs a browser with WebGPU ' +
        '(Chrome/Edge 113+, or a browser with WebGPU enabled) and a page served over https or from localhost.',
    );
  }
  // On machines without a GPU, Chromium's SwiftShader Vulkan driver gives Dawn a CPU adapter.
  const env = process.env;
  if (!env.VK_ICD_FILENAMES && !env.VK_DRIVER_FILES && env.KVSCOPE_VK_AUTO !== '0') {
    const fs = await import('node:fs');
    if (fs.existsSync(SWIFTSHADER_ICD)) env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  }
  env.XDG_RUNTIME_DIR ??= '/tmp';
  const specifier = 'webgpu';
  let mod: { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
  try {
    mod = await import(/* @vite-ignore */ specifier);
  } catch (cause) {
    throw new NoWebGPUError(
      "WebGPU for Node needs the optional 'webgpu' package (npm install webgpu) and a Vulkan loader (libvulkan1).",
      { cause },
    );
  }
  Object.assign(globalThis, mod.globals);
  // Dawn's instance must outlive every device made from it: if its JS wrapper is garbage
  // collected, the binding keeps polling a freed instance and the process aborts.
  const key = nodeFlags.join(' ');
  let instance = nodeInstances.get(key);
  if (!instance) {
    instance = mod.create(nodeFlags);
    nodeInstances.set(key, instance);
  }
  return instance;
}

const nodeInstances = new Map<string, GPU>();

/** An enum-valued environment variable in Node: `fallback` elsewhere or when unset, a typed error when not one of `allowed`. */
function enumFromEnv<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
  const v = isNode() ? process.env[name] : undefined;
  if (v === undefined || v === '') return fallback;
  if ((allowed as readonly string[]).includes(v)) return v as T;
  throw new InvalidArgumentError(`${name} must be ${allowed.slice(0, -1).join(', ')} or ${allowed[allowed.length - 1]} (got "${v}").`);
}

export interface GpuOptions {
  /** Dawn toggles for Node, e.g. ['enable-dawn-features=disable_robustness']. */
  nodeFlags?: string[];
  /** Use `shader-f16` when the adapter offers it (default true). */
  allowF16?: boolean;
  powerPreference?: GPUPowerPreference;
  /**
   * Which kernel variants to run where a kernel has a CPU-friendly one (row-per-invocation
   * attention and RMSNorm, the 'rows' matvec schedule, 16 x 8 GEMM tiles, narrow cache-selection
   * workgroups): 'auto' (default) by adapter,
   * 'cpu' or 'gpu' to force one set (tests run the GPU set on SwiftShader this way). In Node,
   * when this is not given, the environment variable KVSCOPE_KERNELS (auto / cpu / gpu) sets it.
   */
  kernels?: 'auto' | 'cpu' | 'gpu';
  /**
   * How models store their projection weights: 'nk' as in the file ([out, in]), 'kn'
   * transposed ([in, out]; shaders/matmul_kn.wgsl), or 'auto' (default): 'kn' on llvmpipe /
   * lavapipe, where its products run about 2x faster, 'nk' elsewhere (SwiftShader and GPUs).
   * In Node, when this is not given, KVSCOPE_WEIGHT_LAYOUT (auto / nk / kn) sets it.
   */
  weightLayout?: 'auto' | 'nk' | 'kn';
}

/** One dispatch: a pipeline, its bind group and a workgroup count. */
export interface Op {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  workgroups: readonly [number, number?, number?];
  label?: string;
}

function isBuffer(r: Resource): r is GPUBuffer {
  return typeof (r as GPUBuffer).mapAsync === 'function';
}

/** A binding resource: a whole buffer, or a window of it. */
export type Resource = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

/**
 * The device plus what every kernel needs: a pipeline cache keyed by WGSL source,
 * buffer helpers that keep a byte count per tag, and one-pass submission of op lists.
 */
export class Gpu {
  readonly device: GPUDevice;
  readonly adapterInfo: GPUAdapterInfo;
  readonly hasF16: boolean;
  readonly hasSubgroups: boolean;
  /** A CPU implementation (SwiftShader, llvmpipe, WARP), or `kernels: 'cpu'`: kernels pick their CPU-friendly variant. */
  readonly cpuAdapter: boolean;
  /** The layout models upload their projection weights in (see GpuOptions.weightLayout). */
  readonly weightLayout: 'nk' | 'kn';
  readonly maxBinding: number;
  readonly maxWorkgroupsPerDim: number;
  private pipelines = new Map<string, GPUComputePipeline>();
  private bytesByTag = new Map<string, number>();
  private lostReason: string | null = null;
  private static liveDevices = new Set<Gpu>();
  private owner: object | null = null;
  private owned = new Map<object, { buffer: GPUBuffer; tag: string }[]>();

  private constructor(device: GPUDevice, info: GPUAdapterInfo, kernels: 'auto' | 'cpu' | 'gpu' = 'auto', layout: 'auto' | 'nk' | 'kn' = 'auto') {
    this.device = device;
    this.adapterInfo = info;
    this.hasF16 = device.features.has('shader-f16');
    this.hasSubgroups = device.features.has('subgroups');
    const i = info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
    const detected = i.isFallbackAdapter === true || /swiftshader|llvmpipe|lavapipe|warp/i.test(`${i.architecture} ${i.device} ${i.description}`);
    this.cpuAdapter = kernels === 'auto' ? detected : kernels === 'cpu';
    this.weightLayout = layout === 'auto' ? (/llvmpipe|lavapipe/i.test(`${i.device} ${i.description}`) ? 'kn' : 'nk') : layout;
    this.maxBinding = device.limits.maxStorageBufferBindingSize;
    this.maxWorkgroupsPerDim = device.limits.maxComputeWorkgroupsPerDimension;
    void device.lost.then((info) => {
      this.lostReason = info.message || info.reason || 'unknown';
    });
  }

  static async create(options: GpuOptions = {}): Promise<Gpu> {
    const kernels = options.kernels ?? enumFromEnv('KVSCOPE_KERNELS', ['auto', 'cpu', 'gpu'] as const, 'auto');
    const layout = options.weightLayout ?? enumFromEnv('KVSCOPE_WEIGHT_LAYOUT', ['auto', 'nk', 'kn'] as const, 'auto');
    if (layout !== 'auto' && layout !== 'nk' && layout !== 'kn') throw new InvalidArgumentError(`weightLayout must be auto, nk or kn (got ${String(layout)}).`);
    const gpu = await getWebGPU(options.nodeFlags);
    const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
    if (!adapter) {
      throw new NoWebGPUError(
        'No WebGPU adapter was found. In a browser, check that WebGPU is enabled; in Node, install a Vulkan driver ' +
          '(or Chromium for SwiftShader) and libvulkan1.',
      );
    }
    const features: GPUFeatureName[] = [];
    if ((options.allowF16 ?? true) && adapter.features.has('shader-f16')) features.push('shader-f16');
    const lim = adapter.limits;
    const device = await adapter.requestDevice({
      requiredFeatures: features,
      requiredLimits: {
        maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
        maxBufferSize: lim.maxBufferSize,
        maxComputeWorkgroupStorageSize: lim.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: lim.maxComputeInvocationsPerWorkgroup,
        maxComputeWorkgroupSizeX: lim.maxComputeWorkgroupSizeX,
        maxStorageBuffersPerShaderStage: lim.maxStorageBuffersPerShaderStage,
      },
    });
    const g = new Gpu(device, adapter.info, kernels, layout);
    Gpu.liveDevices.add(g);
    return g;
  }

  /**
   * Destroys every device this process created. Dawn's Node binding can abort the process
   * if it exits while a device is alive, so test runners call this before exiting.
   */
  static destroyAll(): void {
    for (const g of Gpu.liveDevices) g.destroy();
  }

  /** Why the device was lost, or null while it is alive. */
  get lost(): string | null {
    return this.lostReason;
  }

  pipeline(code: string, label = 'kernel'): GPUComputePipeline {
    let p = this.pipelines.get(code);
    if (!p) {
      const module = this.device.createShaderModule({ code, label });
      // An explicit layout from the declarations, so a binding the entry point happens not
      // to use (in some preprocessor variant) is still part of it ('auto' would drop it).
      const entries: GPUBindGroupLayoutEntry[] = [];
      for (const m of code.matchAll(/@group\(0\)\s*@binding\((\d+)\)\s*var<(storage|uniform)(?:\s*,\s*(read_write|read))?>/g)) {
        const type: GPUBufferBindingType = m[2] === 'uniform' ? 'uniform' : m[3] === 'read_write' ? 'storage' : 'read-only-storage';
        entries.push({ binding: Number(m[1]), visibility: GPUShaderStage.COMPUTE, buffer: { type } });
      }
      const layout = this.device.createPipelineLayout({ bindGroupLayouts: [this.device.createBindGroupLayout({ entries, label })] });
      p = this.device.createComputePipeline({ layout, compute: { module, entryPoint: 'main' }, label });
      this.pipelines.set(code, p);
    }
    return p;
  }

  /** Creates a buffer and counts its bytes under `tag` (e.g. 'weights', 'kv', 'scratch'). */
  buffer(size: number, usage: GPUBufferUsageFlags, label: string, tag = 'scratch'): GPUBuffer {
    const padded = Math.max(16, Math.ceil(size / 16) * 16);
    let buf: GPUBuffer;
    try {
      buf = this.device.createBuffer({ size: padded, usage, label });
    } catch (cause) {
      throw new OutOfMemoryError(`GPU allocation of ${padded} bytes for ${label} failed.`, { cause });
    }
    this.bytesByTag.set(tag, (this.bytesByTag.get(tag) ?? 0) + padded);
    if (this.owner) this.owned.get(this.owner)!.push({ buffer: buf, tag });
    return buf;
  }

  storage(sizeOrData: number | ArrayBufferView, label: string, tag = 'scratch', extraUsage = 0): GPUBuffer {
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | extraUsage;
    if (typeof sizeOrData === 'number') return this.buffer(sizeOrData, usage, label, tag);
    const buf = this.buffer(sizeOrData.byteLength, usage, label, tag);
    this.write(buf, sizeOrData);
    return buf;
  }

  uniform(data: ArrayBufferView, label: string): GPUBuffer {
    const buf = this.buffer(data.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label, 'uniform');
    this.write(buf, data);
    return buf;
  }

  /** Writes data (padded to a multiple of 4 bytes) at a byte offset. */
  write(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4) {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      bytes = padded;
    }
    this.device.queue.writeBuffer(buffer, offset, bytes as Uint8Array<ArrayBuffer>);
  }

  /** Buffers created between beginOwner(o) and endOwner() belong to o (see destroyOwned). */
  beginOwner(owner: object): void {
    this.owner = owner;
    if (!this.owned.has(owner)) this.owned.set(owner, []);
  }

  endOwner(): void {
    this.owner = null;
  }

  /** Destroys every buffer created for `owner` and updates the byte counts. */
  destroyOwned(owner: object): void {
    for (const { buffer, tag } of this.owned.get(owner) ?? []) this.destroyBuffer(buffer, tag);
    this.owned.delete(owner);
  }

  destroyBuffer(buffer: GPUBuffer, tag = 'scratch'): void {
    this.bytesByTag.set(tag, (this.bytesByTag.get(tag) ?? 0) - buffer.size);
    buffer.destroy();
  }

  bytes(tag?: string): number {
    if (tag) return this.bytesByTag.get(tag) ?? 0;
    let s = 0;
    for (const v of this.bytesByTag.values()) s += v;
    return s;
  }

  /** Copies `size` bytes from `buffer` back to the CPU. */
  async read(buffer: GPUBuffer, size = buffer.size, offset = 0): Promise<ArrayBuffer> {
    const staging = this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(buffer, offset, staging, 0, size);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const out = staging.getMappedRange().slice(0);
    staging.destroy();
    return out;
  }

  async readF32(buffer: GPUBuffer, count: number, offsetElems = 0): Promise<Float32Array> {
    return new Float32Array(await this.read(buffer, count * 4, offsetElems * 4));
  }

  bind(pipeline: GPUComputePipeline, resources: Resource[], label?: string): GPUBindGroup {
    return this.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: resources.map((r, binding) => ({
        binding,
        resource: isBuffer(r) ? { buffer: r } : r,
      })),
      label,
    });
  }

  /** Builds an op from WGSL source, its resources and a workgroup count. */
  op(code: string, resources: Resource[], workgroups: readonly [number, number?, number?], label = 'op'): Op {
    const pipeline = this.pipeline(code, label);
    return { pipeline, bindGroup: this.bind(pipeline, resources, label), workgroups, label };
  }

  encode(pass: GPUComputePassEncoder, ops: readonly Op[]): void {
    for (const o of ops) {
      pass.setPipeline(o.pipeline);
      pass.setBindGroup(0, o.bindGroup);
      pass.dispatchWorkgroups(o.workgroups[0], o.workgroups[1] ?? 1, o.workgroups[2] ?? 1);
    }
  }

  /** Records ops in one compute pass and submits them. */
  run(ops: readonly Op[], encoder?: GPUCommandEncoder): void {
    const enc = encoder ?? this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    this.encode(pass, ops);
    pass.end();
    this.device.queue.submit([enc.finish()]);
  }

  /** Splits a 1-D workgroup count into (x, y) within the per-dimension limit. */
  grid(count: number): [number, number] {
    const max = this.maxWorkgroupsPerDim;
    if (count <= max) return [Math.max(1, count), 1];
    const y = Math.ceil(count / max);
    return [Math.ceil(count / y), y];
  }

  destroy(): void {
    this.pipelines.clear();
    Gpu.liveDevices.delete(this);
    this.device.destroy();
  }
}
