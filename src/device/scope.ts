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
  const made: X[] = [];
  return {
    ops: new CheckedOps(ops.kernels, ops.hostKernels, made),
    releaseExcept(...keep) {
      // In place, one value at a time: a layer's end makes no new lists.
      let kept = 0;
      for (const x of made) {
        if (keep.includes(x)) made[kept++] = x;
        else ops.release(x);
      }
      made.length = kept;
    },
  };
}
