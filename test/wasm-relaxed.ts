// The relaxed-SIMD WASM build as a row of the property suites (test/kernels.property.test.ts,
// test/device-ops.property.test.ts): it is what Node 22+ and browsers load by default. Node 20 validates relaxed
// SIMD only behind a V8 flag, which NODE_OPTIONS refuses and vitest's worker threads (Stryker runs them) refuse as
// an argument, so the row sets it in its own process before it loads the build; `npm test` thus runs it on every
// Node. An engine that still cannot load it gets the error below, which skips the row outside CI and fails it
// under CI=true (test/backend-rows.ts).
import { allowRelaxedSimd, createBackend, type WasmBackend, type WasmOptions } from "../wasm/backend.ts";

/** The relaxed build on two threads with every matmul and attention through the pool, in check mode. */
export async function relaxedWasm(options: WasmOptions = {}): Promise<WasmBackend> {
  allowRelaxedSimd();
  const backend = await createBackend({ threads: 2, check: true, relaxed: true, parallelFlops: 0, ...options });
  if (backend.description.startsWith("WebAssembly relaxed SIMD,")) return backend;
  await backend.dispose();
  throw new Error("this engine has no relaxed SIMD (Node 22+, or Node 20 with --experimental-wasm-relaxed-simd)");
}
