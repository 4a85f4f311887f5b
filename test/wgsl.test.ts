import { describe, expect, it } from 'vitest';
import { preprocessWgsl } from '../src/gpu/wgsl';
import { testGpu } from './gpu';

describe('wgsl preprocessor', () => {
  it('selects branches and substitutes values', () => {
    const src = ['a', '#if F16', 'f16', '#elif BF16', 'bf16', '#else', 'f32', '#endif', 'n=${N}'].join('\n');
    expect(preprocessWgsl(src, { BF16: true, N: 4 })).toBe('a\nbf16\nn=4');
    expect(preprocessWgsl(src, { F16: 1, N: 2 })).toBe('a\nf16\nn=2');
    expect(preprocessWgsl(src, { N: 1 })).toBe('a\nf32\nn=1');
    expect(() => preprocessWgsl('#if A\nx')).toThrow(/unterminated/);
    expect(() => preprocessWgsl('${M}')).toThrow(/not defined/);
  });
  it('handles nesting inside a false branch', () => {
    const src = ['#if A', '#if B', 'ab', '#else', 'a', '#endif', '#else', 'none', '#endif'].join('\n');
    expect(preprocessWgsl(src, { B: true })).toBe('none');
    expect(preprocessWgsl(src, { A: true })).toBe('a');
  });
});

describe('gpu device', () => {
  it('runs a kernel and reads back', async () => {
    const gpu = await testGpu();
    const code = `@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) { if (g.x < arrayLength(&x)) { x[g.x] = x[g.x] * 2.0 + 1.0; } }`;
    const buf = gpu.storage(new Float32Array([1, 2, 3, 4]), 'x');
    gpu.run([gpu.op(code, [buf], [1])]);
    expect([...(await gpu.readF32(buf, 4))]).toEqual([3, 5, 7, 9]);
  });
});
