// BF16 weight storage (spec/backends.md, "BF16 weights"): a float32 whose low 16 bits are zero is exactly a BF16
// value, so it can be stored in 16 bits and widened back (a shift) without changing a bit. Every weight read from a
// BF16 checkpoint is such a float32 (the loader widens exactly); the WASM and WebGPU backends keep a weight in BF16
// when, and only when, every one of its values is, so their results cannot depend on the choice.

/** Whether every value of `data` is exactly a BF16 value (its float32 bits end in 16 zeros). */
export function isBf16Exact(data: Float32Array): boolean {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  for (let i = 0; i < bits.length; i++) if ((bits[i]! & 0xffff) !== 0) return false;
  return true;
}

/**
 * The values of `data` (every one exactly a BF16) as BF16 pairs in 32-bit words: element 2j in the low half of
 * word j, element 2j + 1 in the high half (zero past the end). Little-endian memory of 16-bit values, as WebGPU
 * reads an array<u32>.
 */
export function packBf16Pairs(data: Float32Array): Uint32Array {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const words = new Uint32Array(Math.max(1, Math.ceil(data.length / 2)));
  for (let i = 0; i < bits.length; i++) words[i >> 1]! |= i & 1 ? bits[i]! & 0xffff0000 : bits[i]! >>> 16;
  return words;
}
