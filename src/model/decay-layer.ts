// Decay "as-written" (spec/attention.md) in the one forward: s_ij = q_i·(γ^j·k_j)/√Dh, the material's form, flaw
// and all. The factor γ^j depends only on the key's absolute position j, so each key is scaled once, as its token
// enters the cache, and the ordinary causal attention over the cached scaled keys (src/model/layers.ts `multiHead`)
// computes s_ij. No operation multiplies rows by per-row factors, so the scaling is a host step over the new tokens'
// keys alone (T·Hkv·Dh numbers a forward, whatever the sequence's length).

import { read, type Reading } from "../device/drive.ts";
import type { Value } from "../device/kernels.ts";
import type { Ops } from "../device/ops.ts";
import type { ModelConfig } from "./config.ts";
import { decayGammas } from "./mha.ts";

/**
 * The rotated keys of the new tokens [Hkv, T, Dh] at positions start … start + T - 1, each scaled by γ^j: kv head g
 * by the gamma of its query heads. As src/attention/decay.ts computes them: γ^j in float64, the product rounded once
 * to float32, so that far keys underflow to 0 exactly as there.
 */
export function* decayedKeys<X extends Value>(ops: Ops<X>, config: ModelConfig, keys: X, start: number): Reading<X> {
  const [Hkv, T, Dh] = keys.shape as [number, number, number];
  const gammas = decayGammas(config);
  const H = gammas.length;
  // A kv head shared by query heads of different gammas would need one scaling per head, which the material has
  // not: validateConfig refuses such a config (src/model/config.ts), so a kv head's query heads share its gamma.
  const data = yield* read(ops, keys);
  const scaled = new Float32Array(data.length);
  for (let g = 0; g < Hkv; g++) {
    const gamma = gammas[g * (H / Hkv)]!;
    for (let t = 0; t < T; t++) {
      const factor = gamma ** (start + t);
      const base = (g * T + t) * Dh;
      for (let d = 0; d < Dh; d++) scaled[base + d] = data[base + d]! * factor;
    }
  }
  return ops.upload({ shape: [Hkv, T, Dh], data: scaled });
}
