// The module's exports. Memory is imported and shared: the JS side owns allocation (wasm/heap.ts) and every
// worker instantiates this same module over the same memory, so kernels take byte addresses and never allocate.
// Kernels that threads split take (part, parts) last and compute only their share.

export { gemm, gemmPackB, gemmScratch, packB, packBt, packPanels } from "./matmul";
export { attention, attentionScratch } from "./attention";
export { gemmBf16, packBtBf16 } from "./bf16";
export { indexScores } from "./indexer";
export { attendWith, attentionProbs } from "./probs";
export { moeCombine, moeExperts } from "./moe";
export { rope, ropeHalves, silu, swiglu } from "./elementwise";
export { gatherRows, layernorm, rmsnorm, softmax } from "./rows";

/** First byte after the module's own static data: the JS heap starts here. */
export function heapBase(): usize {
  return __heap_base;
}
