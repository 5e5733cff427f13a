// Auxiliary-loss-free balancing (DeepSeek-V3, Wang et al. 2024): after each batch, nudge every expert's selection
// bias toward the mean load,
//   b_i += u · sign(mean load - load_i),   u = 0.001 by default,
// where load_i is the assignments routed to expert i (before capacity). An overloaded expert becomes less likely to
// be chosen, an idle one more; the bias only ever enters selection, never the weights (router.ts).

import { argError, checkNumber } from "../errors.ts";
import { expectShape, type Tensor } from "../tensor.ts";

export const DEFAULT_BIAS_UPDATE_RATE = 0.001;

/** The bias after one batch whose per-expert loads were `routed`; a new tensor, the old one untouched. */
export function updateBias(bias: Tensor, routed: readonly number[], rate = DEFAULT_BIAS_UPDATE_RATE): Tensor {
  const { E } = expectShape("bias", bias, ["E"]);
  if (routed.length !== E) throw argError("routed", `${E} loads (one per expert)`, routed.length);
  routed.forEach((n, e) => {
    if (!Number.isInteger(n) || n < 0) throw argError(`routed[${e}]`, "a non-negative integer", n);
  });
  checkNumber("rate", rate, 0, Infinity);
  const mean = routed.reduce((s, n) => s + n, 0) / E;
  return { shape: [E], data: bias.data.map((b, e) => b + rate * Math.sign(mean - routed[e]!)) };
}
