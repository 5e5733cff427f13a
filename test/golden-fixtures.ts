// Small golden cases of our own for the golden machinery and the CLI tests, independent of what the real suite
// holds, and a backend with one planted bug.

import { NotSupportedError, referenceBackend, type Backend } from "../src/backend.ts";
import type { GoldenCase } from "../src/golden/case.ts";
import { reference, type Kernels } from "../src/kernels.ts";
import { Random, randBounded } from "../src/random.ts";
import type { Tensor } from "../src/tensor.ts";

const kernelsOf = (backend: Backend): Kernels => {
  if (!backend.kernels) throw new NotSupportedError(`${backend.name} has no synchronous kernels`);
  return backend.kernels;
};

/** Softmax of seeded logits, with a float, an integer (argmax) and a boolean (above 1/N) output. */
export const softmaxCase: GoldenCase = {
  name: "test.softmax.3x7",
  component: "test.softmax",
  config: { rows: 3, cols: 7 },
  seed: 11,
  build() {
    return { inputs: { x: randBounded(new Random(11), [3, 7]) }, params: {} };
  },
  run(backend, inputs) {
    const y = kernelsOf(backend).softmax(inputs.x as Tensor);
    const argmax = new Int32Array(3);
    const above = new Uint8Array(21);
    for (let r = 0; r < 3; r++) {
      for (let c = 0; c < 7; c++) {
        if (y.data[r * 7 + c]! > y.data[r * 7 + argmax[r]!]!) argmax[r] = c;
        above[r * 7 + c] = y.data[r * 7 + c]! > 1 / 7 ? 1 : 0;
      }
    }
    return { y, argmax: { shape: [3], data: argmax }, above: { shape: [3, 7], data: above } };
  },
};

/** A linear layer with a named weight and its own declared tolerance. */
export const linearCase: GoldenCase = {
  name: "test.linear.4x9x5",
  component: "test.linear",
  config: { tokens: 4, in: 9, out: 5 },
  seed: 12,
  build() {
    const rng = new Random(12);
    return { inputs: { x: randBounded(rng, [4, 9]) }, params: { "layers.0.mlp.weight": randBounded(rng, [5, 9], 0.5) } };
  },
  run(backend, inputs, params) {
    return { y: kernelsOf(backend).linear(inputs.x as Tensor, params["layers.0.mlp.weight"]!) };
  },
  tolerance: { y: { rtol: 1e-5, atol: 1e-6, nmse: 1e-12 } },
};

export const fixtureSuite = (): GoldenCase[] => [softmaxCase, linearCase];

/** The reference with one kernel's output changed by `perturb` (a planted bug for the checker to find). */
export function plantedBackend(kernel: "softmax" | "linear", perturb: (data: Float32Array) => void): Backend {
  const kernels: Kernels = {
    ...reference,
    name: "planted",
    [kernel]: (...args: unknown[]) => {
      const out = (reference[kernel] as (...a: unknown[]) => Tensor)(...args);
      perturb(out.data);
      return out;
    },
  };
  return { ...referenceBackend, name: "wasm", description: "reference with a planted bug", kernels, asyncKernels: kernels };
}

/** A backend with asynchronous kernels only, like WebGPU: the fixtures report "not supported" there. */
export const asyncOnlyBackend: Backend = { ...referenceBackend, name: "webgpu", description: "async only", kernels: undefined };
