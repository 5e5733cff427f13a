// Who gives a forward's values back: `scoped(ops)` is the same operations, each remembering the values it makes,
// so that the forward reads like the equations (no release calls between them) and still hands every value of a
// layer back at the layer's end (releaseExcept(the residual stream)). Weights and caches are not made here: they
// stay.

import { type Value } from "./kernels.ts";
import { type Ops } from "./ops.ts";

export interface Scope<X extends Value> {
  readonly ops: Ops<X>;
  /** Releases every value made since the last call, except `keep`. */
  releaseExcept(...keep: X[]): void;
}

const MAKERS = [
  "upload", "empty", "embed", "gatherRows", "addRows", "mergeHeads", "concatLast", "sliceRows", "concatRows",
  "add", "linear", "rmsnorm", "rope", "swiglu", "softmax", "attention", "moe",
] as const;

export function scoped<X extends Value>(ops: Ops<X>): Scope<X> {
  let made: X[] = [];
  const tracked = { ...ops } as Record<string, unknown>;
  for (const name of MAKERS) {
    const op = ops[name] as (...args: unknown[]) => X;
    tracked[name] = (...args: unknown[]) => {
      const x = op(...args);
      made.push(x);
      return x;
    };
  }
  tracked.splitHeads = (x: X, H: number, widths: readonly number[]) => {
    const parts = ops.splitHeads(x, H, widths);
    made.push(...parts);
    return parts;
  };
  return {
    ops: tracked as unknown as Ops<X>,
    releaseExcept(...keep) {
      const kept = made.filter((x) => keep.includes(x));
      ops.release(...made.filter((x) => !keep.includes(x)));
      made = kept;
    },
  };
}
