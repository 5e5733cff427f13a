// A golden case: one component at one configuration, with seeded inputs and parameters. `golden write` runs it on
// the reference and stores inputs, params and outputs in a safetensors file (spec/golden.md); `golden check`
// reads a file back, finds its case by name, recomputes the outputs on a backend from the file's own inputs and
// params, and compares them within the case's tolerance.

import type { Backend } from "../backend.ts";
import type { Tolerance } from "../io/compare.ts";
import type { Tensor } from "../tensor.ts";

/** Float tensors, and integer or boolean ones (router indices, kept flags, masks) stored as I32 or U8. */
export interface GoldenTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array | Int32Array | Uint8Array;
}

export type TensorMap = Record<string, GoldenTensor>;

export interface GoldenCase {
  /** File stem, unique in the suite: "attention.gqa.causal", "moe.router.sigmoid-groups". */
  readonly name: string;
  /** The component, as spec/ names it: "attention", "moe.router", "model". */
  readonly component: string;
  /** Every hyper-parameter the component read, defaults included. */
  readonly config: Record<string, unknown>;
  readonly seed: number;
  /** Seeded inputs and parameters (params use the model's weight names). */
  build(): { inputs: TensorMap; params: Record<string, Tensor> };
  /** The outputs on `backend`; throws NotSupportedError where that backend cannot run this component. */
  run(backend: Backend, inputs: TensorMap, params: Record<string, Tensor>): TensorMap | Promise<TensorMap>;
  /** Per output name; outputs not listed use the suite's default for float32 backends. */
  readonly tolerance?: Record<string, Tolerance>;
}
