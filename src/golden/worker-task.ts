// One golden case run by name in a worker thread, over synchronous kernels handed in: how a backend without
// synchronous kernels of its own (webgpu) runs the component cases (src/io/golden.ts sends the case's name, the
// inputs and the params; the outputs come back for comparison on the calling thread). Cases are found in
// goldenSuite(), since a case's code cannot cross threads.

import { NotSupportedError, type Backend, type BackendName } from "../backend.ts";
import { referenceOps } from "../device/ops.ts";
import type { Kernels } from "../kernels.ts";
import type { Tensor } from "../tensor.ts";
import type { TensorMap } from "./case.ts";
import { goldenSuite } from "./suite.ts";

export interface CaseTaskArgs {
  backend: { name: BackendName; description: string };
  case: string;
  inputs: TensorMap;
  params: Record<string, Tensor>;
}

export async function runCaseTask(kernels: Kernels, args: CaseTaskArgs): Promise<TensorMap> {
  const c = goldenSuite().find((s) => s.name === args.case);
  if (!c) throw new NotSupportedError(`case ${JSON.stringify(args.case)}: a worker runs only cases of goldenSuite(), found by name`);
  const backend: Backend = {
    ...args.backend,
    ops: referenceOps, // never used: model cases run the one forward on the main thread, not here
    kernels,
    asyncKernels: kernels,
    dispose: async () => {},
  };
  return c.run(backend, args.inputs, args.params);
}
