// Which of the two WASM builds a backend runs, and why, in words its description carries: the relaxed-SIMD build
// (wasm/build/tinyseek.relaxed.wasm: matmul's multiply-add fused, one rounding instead of two) wherever it is asked
// for (the default) and the engine validates it, that is Node 22+, Chromium, and Node 20 with
// --experimental-wasm-relaxed-simd; the SIMD128 build otherwise. The two differ in the last bits of the products,
// within the same bounds (spec/backends.md, "wasm relaxed").

export interface SimdBuild {
  /** Whether the relaxed-SIMD build is the one to load. */
  relaxed: boolean;
  /** The build as the backend's description names it, with the reason when it is not the relaxed one. */
  simd: string;
}

/**
 * The build for a backend: `requested` is the option (relaxed, default true); `validates` tells whether this engine
 * accepts the relaxed build (asked only when requested).
 */
export function chooseSimdBuild(requested: boolean, validates: () => boolean): SimdBuild {
  if (!requested) return { relaxed: false, simd: "SIMD128 (relaxed SIMD turned off)" };
  if (!validates()) return { relaxed: false, simd: "SIMD128 (this engine does not validate relaxed SIMD)" };
  return { relaxed: true, simd: "relaxed SIMD" };
}

/** The smallest module that uses relaxed SIMD: (v128, v128, v128) → v128, f32x4.relaxed_madd of its parameters. */
export const RELAXED_PROBE = Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x01, 0x60, 0x03, 0x7b,
  0x7b, 0x7b, 0x01, 0x7b, 0x03, 0x02, 0x01, 0x00, 0x0a, 0x0d, 0x01, 0x0b, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02,
  0xfd, 0x85, 0x02, 0x0b);
