// Who gives a forward's values back: `scoped(ops)` is the same checked operations (made afresh for one forward)
// also remembering every value they make, so that the forward reads like the equations (no release calls between
// them) and still hands every value of a layer back at the layer's end (releaseExcept(the residual stream)). Weights
// and caches are not made here: they stay. One list per forward, so forwards running at once never mix theirs.

import type { Value } from "./kernels.ts";
import { CheckedOps, type Ops } from "./ops.ts";

export interface Scope<X extends Value> {
  readonly ops: Ops<X>;
  /** Releases every value made since the last call, except `keep`. */
  releaseExcept(...keep: X[]): void;
}

export function scoped<X extends Value>(ops: Ops<X>): Scope<X> {
  let made: X[] = [];
  const sink: X[] = [];
  return {
    ops: new CheckedOps(ops.kernels, ops.hostKernels, sink),
    releaseExcept(...keep) {
      made = sink.splice(0);
      ops.release(...made.filter((x) => !keep.includes(x)));
      sink.push(...made.filter((x) => keep.includes(x)));
    },
  };
}
