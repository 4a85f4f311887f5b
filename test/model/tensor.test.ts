import { describe, expect, it } from 'vitest';
import {
  decodeToFloat32,
  encodeFromFloat32,
  f32ToBf16Bits,
  f32ToF16Bits,
  toFloat32,
} from '../../src/model/tensor';

function halves(values: number[]): Uint8Array {
  return new Uint8Array(new Uint16Array(values).buffer);
}

describe('f16 / bf16 codecs', () => {
  it('decodes f16 bit patterns exactly, including subnormals and specials', () => {
    const bits = [0x0000, 0x8000, 0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x3555, 0x7c00, 0xfc00];
    const want = [0, -0, 1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, 0.333251953125, Infinity, -Infinity];
    const got = Array.from(decodeToFloat32('f16', halves(bits)));
    expect(got).toEqual(want);
    expect(Number.isNaN(decodeToFloat32('f16', halves([0x7e00]))[0])).toBe(true);
  });

  it('decodes bf16 by a 16-bit shift', () => {
    expect(Array.from(decodeToFloat32('bf16', halves([0x3f80, 0xc040, 0x4049, 0x0001])))).toEqual([
      1, -3, 3.140625, new Float32Array(new Uint32Array([0x00010000]).buffer)[0],
    ]);
  });

  it('f16 encode rounds to nearest even and round-trips every finite f16 value', () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(-2)).toBe(0xc000);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001);
    expect(decodeToFloat32('f16', halves([0x3555]))[0]).toBeCloseTo(0.333251953125, 12);
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // overflows to infinity
    expect(f32ToF16Bits(2 ** -25)).toBe(0); // tie at the smallest subnormal -> even (0)
    expect(f32ToF16Bits(1.5 * 2 ** -25)).toBe(1);
    const all = new Uint16Array(65536).map((_, i) => i);
    const finite = Array.from(all).filter((h) => (h & 0x7c00) !== 0x7c00);
    const values = decodeToFloat32('f16', new Uint8Array(new Uint16Array(finite).buffer));
    const back = new Uint16Array(encodeFromFloat32(values, 'f16').buffer);
    for (let i = 0; i < finite.length; i++) {
      if (back[i] !== finite[i]) throw new Error(`f16 0x${finite[i]!.toString(16)} -> 0x${back[i]!.toString(16)}`);
    }
  });

  it('bf16 encode rounds to nearest even and keeps NaN a NaN', () => {
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie -> even
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
    expect(decodeToFloat32('bf16', halves([0xc040]))[0]).toBe(-3);
    expect(Number.isNaN(decodeToFloat32('bf16', halves([f32ToBf16Bits(NaN)]))[0])).toBe(true);
  });

  it('toFloat32 reads tensors at unaligned offsets', () => {
    const f = new Float32Array([1.5, -2.25, 3]);
    const buf = new Uint8Array(13);
    buf.set(new Uint8Array(f.buffer), 1);
    expect(Array.from(toFloat32({ name: 'x', dtype: 'f32', shape: [3], data: buf.subarray(1) }))).toEqual([1.5, -2.25, 3]);
  });
});
