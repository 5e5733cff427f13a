// The backends a whole-model suite runs on (reference, wasm, tfjs, webgpu), each started with startBackend
// (test/backend-rows.ts): WebGPU is optional outside CI.
import type { Backend } from "../src/backend.ts";
import { opsOver } from "../src/device/ops.ts";
import { reference } from "../src/kernels.ts";
import { tfjsKernels } from "../train/tfjs-kernels.ts";
import { setUpTfjs } from "../train/tfjs.ts";
import type { BackendRow } from "./backend-rows.ts";

export const MODEL_BACKENDS: BackendRow<Backend>[] = [
  // Imported when the row starts: a static import here can meet src/backend.ts half-evaluated in an import cycle.
  { name: "reference", create: async () => (await import("../src/backend.ts")).referenceBackend },
  { name: "wasm", create: async () => (await import("../wasm/backend.ts")).createBackend({ threads: 1 }) },
  {
    // Training's backend: tfjs-backend-wasm through the operation interface (train/tfjs-kernels.ts).
    name: "tfjs",
    create: async () => {
      await setUpTfjs();
      return { name: "tfjs", description: "tfjs-backend-wasm", ops: opsOver(tfjsKernels()), asyncKernels: reference, dispose: async () => {} } as unknown as Backend;
    },
  },
  { name: "webgpu", create: async () => (await import("../gpu/backend.ts")).createBackend({}), optional: true },
];
