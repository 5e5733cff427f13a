// Linear weights stored as bfloat16 in WASM memory (wasm/assembly/bf16.ts): half the bytes of float32 panels, and
// since a BF16 value widens to float32 exactly, the kernel's results are bit-identical to the float32 kernel's on
// the same weight. A weight is stored so only when every one of its values is exactly a BF16 (src/bf16.ts): true of
// every weight read from a BF16 checkpoint, which the loader widens exactly. The test is made once per weight array;
// the backend option `bf16Weights: false` (env TINYSEEK_WASM_BF16=0) keeps every weight float32.

import { isBf16Exact } from "../../src/bf16.ts";
import type { WasmCore } from "../core.ts";

/** Bytes of W [N, K] as BF16 panels of 8 columns (zeros past N). */
export const bf16PanelBytes = (K: number, N: number) => Math.ceil(N / 8) * 8 * K * 2;

// Weight arrays found not exact, so that the test runs once per array rather than on every call.
const notExact = new WeakSet<Float32Array>();

/**
 * W [N, K] as resident BF16 panels when the core stores BF16 weights and every value of W is exactly a BF16, else
 * 0 (the caller then packs it as float32).
 */
export function bf16Weight(core: WasmCore, data: Float32Array, N: number, K: number): number {
  if (!core.bf16Weights) return 0;
  const { weights, heap, ex } = core;
  const hit = weights.find(data, "bf16t", N, K);
  if (hit || notExact.has(data)) return hit;
  if (!isBf16Exact(data)) {
    notExact.add(data);
    return 0;
  }
  return weights.get(data, "bf16t", N, K, Math.max(16, bf16PanelBytes(K, N)), (ptr) => {
    const raw = heap.put(data);
    ex.packBtBf16(raw, N, K, K, ptr);
    heap.release(raw);
  });
}
