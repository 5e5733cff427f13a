// The backends a whole-model suite runs on (reference, wasm, tfjs, webgpu), each started with startBackend
// (test/backend-rows.ts): WebGPU is optional outside CI. And the attention kinds it runs them over.
import type { Backend } from "../src/backend.ts";
import { opsOver } from "../src/device/ops.ts";
import { reference } from "../src/kernels.ts";
import type { AttentionKind } from "../src/model/config.ts";
import { initModel, type Model } from "../src/model/weights.ts";
import { tfjsKernels } from "../train/tfjs-kernels.ts";
import { setUpTfjs } from "../train/tfjs.ts";
import type { BackendRow } from "./backend-rows.ts";
import { testConfig } from "./model-fixtures.ts";

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

/** Every attention kind and mode a model can be built with (spec/attention.md), named for the test titles. */
export interface KindRow {
  name: string;
  kind: AttentionKind;
  overrides?: Record<string, unknown>;
}

export const ATTENTION_KINDS: KindRow[] = [
  { name: "mla (absorb)", kind: "mla" },
  { name: "mla (naive)", kind: "mla", overrides: { mla_mode: "naive" } },
  { name: "mha, 2 kv heads", kind: "mha", overrides: { num_key_value_heads: 2 } },
  { name: "decay", kind: "decay" },
  { name: "segmented", kind: "segmented" },
  { name: "sparse", kind: "sparse" },
  { name: "dsa (top 4)", kind: "dsa", overrides: { index_topk: 4 } },
  { name: "decay as-written", kind: "decay", overrides: { decay_mode: "as-written" } },
];

/** A fresh test model of that kind: testConfig with init_std 0.3, as the whole-model suites build it. */
export const modelOfKind = (k: KindRow): Model => initModel(testConfig({ attention_kind: k.kind, init_std: 0.3, ...k.overrides }));
