// Time-decay attention (spec/attention.md). The source material scales key j by gamma^j and says old tokens fade;
// as written the newest keys shrink most, and the effect flips with the sign of q·k. Both are here, named plainly:
//   "relative" (default): score_ij = q_i·k_j/√Dh + (i - j)·ln γ_h — after softmax each weight is multiplied by
//       γ^(i-j) and renormalised: ALiBi with slope -ln γ (Press et al. 2022), RetNet's decay (Sun et al. 2023).
//   "as-written": score_ij = q_i·(γ^j·k_j)/√Dh, kept for fidelity to the material, flaw and all.
// Both are causal; i and j are absolute positions (i = offset + row, offset = what a cache already holds).

import { argError, checkInteger, checkNumber, checkOneOf } from "../errors.ts";
import { causal, combine, type Mask } from "../masks.ts";
import { expectShape, type Tensor } from "../tensor.ts";
import { attention, type AttentionResult } from "./attention.ts";

export type DecayMode = "relative" | "as-written";

export interface DecayOptions {
  /** One gamma in (0, 1] for every head, or one per head (see retnetGammas). */
  gamma: number | readonly number[];
  mode?: DecayMode;
  /** Positions already in the cache before these queries: query row i sits at offset + i. Default Tk - Tq. */
  offset?: number;
  /** Extra visibility ANDed with the causal mask (padding, window). */
  mask?: Mask;
}

/** RetNet's per-head decays γ_h = 1 - 2^(-5-h). */
export function retnetGammas(H: number): number[] {
  checkInteger("H", H, 1);
  return Array.from({ length: H }, (_, h) => 1 - 2 ** (-5 - h));
}

export function decayAttention(q: Tensor, k: Tensor, v: Tensor, options: DecayOptions): AttentionResult {
  const { H, Tq, Dh } = expectShape("q", q, ["B", "H", "Tq", "Dh"]);
  const { B, Hkv, Tk } = expectShape("k", k, ["B", "Hkv", "Tk", "Dh"], { Dh });
  const mode = options.mode ?? "relative";
  checkOneOf("mode", mode, ["relative", "as-written"]);
  const gammas = typeof options.gamma === "number" ? Array<number>(H).fill(options.gamma) : [...options.gamma];
  if (gammas.length !== H) throw argError("gamma", `one gamma or ${H} (one per head)`, `${gammas.length} values`);
  gammas.forEach((g, h) => checkNumber(`gamma[${h}]`, g, Number.MIN_VALUE, 1, " (0 excluded)"));
  const offset = options.offset ?? Tk - Tq;
  const visible = options.mask ? combine(causal(Tq, Tk, offset), options.mask) : causal(Tq, Tk, offset);

  if (mode === "relative") {
    return attention(q, k, v, { mask: visible, logGammas: gammas.map(Math.log), offset });
  }
  // as-written: key j of kv head g is scaled by the gamma of the first query head that reads it.
  if (new Set(gammas).size > 1 && Hkv !== H) throw argError("gamma", "a single gamma when kv heads are shared", gammas);
  const scaled = new Float32Array(k.data.length);
  for (let b = 0; b < B; b++) {
    for (let g = 0; g < Hkv; g++) {
      const gamma = gammas[g * (H / Hkv)]!;
      for (let j = 0; j < Tk; j++) {
        const base = ((b * Hkv + g) * Tk + j) * Dh;
        const factor = gamma ** j;
        for (let d = 0; d < Dh; d++) scaled[base + d] = k.data[base + d]! * factor;
      }
    }
  }
  return attention(q, { shape: [...k.shape], data: scaled }, v, { mask: visible });
}

/** The relative decay as an additive bias [H, Tq, Tk]: (offset + i - j)·ln γ_h (masking is left to the mask). */
export function decayBias(logGammas: readonly number[], Tq: number, Tk: number, offset = Tk - Tq): Tensor {
  checkInteger("Tq", Tq, 0);
  checkInteger("Tk", Tk, 0);
  checkInteger("offset", offset, 0);
  logGammas.forEach((g, h) => checkNumber(`logGammas[${h}]`, g, -Number.MAX_VALUE, 0));
  const H = logGammas.length;
  const bias = new Float32Array(H * Tq * Tk);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < Tq; i++) for (let j = 0; j < Tk; j++) bias[(h * Tq + i) * Tk + j] = (offset + i - j) * logGammas[h]!;
  }
  return { shape: [H, Tq, Tk], data: bias };
}
