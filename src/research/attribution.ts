// Direct logit attribution (spec/research.md; as TransformerLens computes it): with RMSNorm's scale
// r = sqrt(mean(h²) + ε) of the final residual h frozen from the real run, the final residual is a sum of parts —
// the embedding, each layer's attention output and each layer's feed-forward output — and part c contributes
//   (W_head[t] ⊙ γ) · c / r
// to token t's logit. RMSNorm has no centring and the head no bias, so the parts sum to the logit (up to float
// rounding of the residual adds). Attention splits further by head (z_h through its columns of W_O), the MoE by
// expert (w_e · expert_e(x), plus the shared expert). Runs at full depth (no early exit).

import { argError, checkInteger } from "../errors.ts";
import { isMoeLayer } from "../model/config.ts";
import type { Model } from "../model/weights.ts";
import type { TracedTensor } from "../trace.ts";
import { runWithCache, type RunOptions } from "./run.ts";

export interface Part {
  /** "embed", "layers.2.attn", "layers.2.attn.head.1", "layers.3.mlp", "layers.3.mlp.expert.5", "layers.3.mlp.shared". */
  name: string;
  /** Its contribution to the token's logit. */
  value: number;
  /** The part it splits (a head's layer attention, an expert's layer mlp); absent for a top-level part. */
  of?: string;
}

export interface Attribution {
  token: number;
  position: number;
  /** The model's logit of the token at the position. */
  logit: number;
  /** Σ of the top-level parts (embed, each layer's attn and mlp): equals the logit up to float rounding. */
  total: number;
  /** The frozen RMSNorm scale r. */
  scale: number;
  /** Top-level parts, each followed by its split (heads, experts) where the layer has one. */
  parts: Part[];
}

export interface AttributionOptions extends RunOptions {
  /** The token whose logit is explained. */
  token: number;
  /** The position (default: the last). */
  position?: number;
}

export async function directLogitAttribution(model: Model, tokens: ArrayLike<number>, options: AttributionOptions): Promise<Attribution> {
  const { token, position = tokens.length - 1, ...run } = options;
  const c = model.config;
  checkInteger("token", token, 0, c.vocab_size - 1);
  checkInteger("position", position, 0, tokens.length - 1);
  if (run.exitThreshold !== undefined && run.exitThreshold !== null) throw argError("exitThreshold", "null (attribution runs at full depth)", run.exitThreshold);
  const L = c.num_hidden_layers, D = c.hidden_size;
  const { activations: acts, logits } = await runWithCache(model, tokens, {
    ...run, names: ["embed", "layers.*.attn.out", "layers.*.attn.heads", "layers.*.mlp.out", "layers.*.mlp.experts", "layers.*.mlp.shared", "layers.*.mlp.router.*", `layers.${L - 1}.out`],
  });
  const row = (t: TracedTensor, r = position) => t.data.subarray(r * D, (r + 1) * D);
  const final = row(acts.get(`layers.${L - 1}.out`)!);
  let squares = 0;
  for (const v of final) squares += v * v;
  const scale = Math.sqrt(squares / D + c.rms_norm_eps);
  const u = new Float64Array(D);
  for (let d = 0; d < D; d++) u[d] = (model.weights.lm_head.data[token * D + d]! * model.weights.norm.data[d]!) / scale;
  const dot = (x: ArrayLike<number>) => {
    let s = 0;
    for (let d = 0; d < D; d++) s += u[d]! * x[d]!;
    return s;
  };
  const parts: Part[] = [{ name: "embed", value: dot(row(acts.get("embed")!)) }];
  for (let l = 0; l < L; l++) {
    const p = `layers.${l}`;
    parts.push({ name: `${p}.attn`, value: dot(row(acts.get(`${p}.attn.out`)!)) });
    if (!model.weights.layers[l]!.adapters?.attn) parts.push(...headParts(model, l, acts.get(`${p}.attn.heads`)!, position, dot));
    parts.push({ name: `${p}.mlp`, value: dot(row(acts.get(`${p}.mlp.out`)!)) });
    if (isMoeLayer(c, l) && !model.weights.layers[l]!.adapters?.mlp) parts.push(...expertParts(acts, p, position, D, dot));
  }
  const total = parts.filter((p) => p.of === undefined).reduce((a, p) => a + p.value, 0);
  return { token, position, logit: logits.data[position * c.vocab_size + token]!, total, scale, parts };
}

/** Head h's part: its output z_h [d_v] at the position through its columns of W_O [D, H·d_v]. */
function headParts(model: Model, l: number, z: TracedTensor, position: number, dot: (x: ArrayLike<number>) => number): Part[] {
  const [H, T, Dv] = z.shape as [number, number, number];
  const wo = model.weights.layers[l]!.self_attn.o_proj!;
  const D = wo.shape[0]!, cols = H * Dv;
  return Array.from({ length: H }, (_, h) => {
    const out = new Float64Array(D);
    const zh = z.data.subarray((h * T + position) * Dv, (h * T + position + 1) * Dv);
    for (let d = 0; d < D; d++) for (let j = 0; j < Dv; j++) out[d] += wo.data[d * cols + h * Dv + j]! * zh[j]!;
    return { name: `layers.${l}.attn.head.${h}`, value: dot(out), of: `layers.${l}.attn` };
  });
}

/** Each chosen expert's weighted output at the position, and the shared expert's. */
function expertParts(acts: Map<string, TracedTensor>, p: string, position: number, D: number, dot: (x: ArrayLike<number>) => number): Part[] {
  const outs = acts.get(`${p}.mlp.experts`)!;
  const [indices, weights, kept] = ["indices", "weights", "kept"].map((n) => acts.get(`${p}.mlp.router.${n}`)!);
  const k = outs.shape[1]!;
  const parts: Part[] = [];
  for (let r = 0; r < k; r++) {
    const a = position * k + r;
    if (!kept!.data[a]) continue;
    const y = outs.data.subarray(a * D, (a + 1) * D);
    parts.push({ name: `${p}.mlp.expert.${indices!.data[a]}`, value: weights!.data[a]! * dot(y), of: `${p}.mlp` });
  }
  const shared = acts.get(`${p}.mlp.shared`);
  if (shared) parts.push({ name: `${p}.mlp.shared`, value: dot(shared.data.subarray(position * D, (position + 1) * D)), of: `${p}.mlp` });
  return parts;
}
