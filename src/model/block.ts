// One decoder block (DeepSeek-V3 inference/model.py class Block), pre-norm:
//   h   = x + Attention(RMSNorm(x))
//   out = h + FFN(RMSNorm(h))          FFN = a dense SwiGLU MLP (first first_k_dense_replace layers) or the MoE
// x holds the new tokens of several sequences packed row after row ([N, D]); attention runs per sequence, each
// through its own cache, and everything token-wise runs on all N rows at once (that is what batching buys).
// Tokens that exited early (section 9) keep their state: attention still runs on it, so deeper layers' caches hold
// keys and values computed from the exited state (CALM's state copying), but the residual is not updated and the
// feed-forward, the expensive part, skips them.

import { moeConfig, moeLayer, type MoeConfig, type MoeResult, type MoeWeights } from "../moe/layer.ts";
import { type Kernels } from "../kernels.ts";
import { adapted } from "../model-adapters.ts";
import { argError } from "../errors.ts";
import { concatRows, expectShape, reshape, sliceRows, type Tensor } from "../tensor.ts";
import { record, wants, type Trace } from "../trace.ts";
import { attentionKind, type LayerCache } from "./attention.ts";
import { isMoeLayer, layerKind, moeConfigOf, type ModelConfig } from "./config.ts";
import type { DenseMlpWeights, LayerWeights } from "./weights.ts";

/** moeConfigOf(config), checked: made once per config and made again only if one of its fields has changed. */
export function checkedMoeConfig(config: ModelConfig): MoeConfig {
  const fields = moeConfigOf(config);
  const kept = checkedMoeConfigs.get(config);
  let same = kept !== undefined;
  for (const key of Object.keys(fields) as (keyof MoeConfig)[]) same &&= kept![key] === fields[key];
  if (same) return kept!;
  const checked = moeConfig(fields);
  checkedMoeConfigs.set(config, checked);
  return checked;
}

const checkedMoeConfigs = new WeakMap<ModelConfig, MoeConfig>();

/** The rows of one sequence inside the packed x, and that sequence's cache for this layer. */
export interface Segment {
  readonly start: number;
  readonly length: number;
  readonly cache: LayerCache;
}

export interface BlockContext {
  kernels: Kernels;
  trace?: Trace;
  /** Per packed row: 1 while the token runs, 0 once it exited. Absent: every token runs. */
  active?: Uint8Array;
}

export interface BlockResult {
  out: Tensor; // [N, D]
  /** The MoE's routing and statistics (over the running tokens), or null for a dense layer. */
  moe: MoeResult | null;
}

export function block(x: Tensor, layer: number, weights: LayerWeights, config: ModelConfig, segments: readonly Segment[], ctx: BlockContext): BlockResult {
  const { kernels, trace, active } = ctx;
  const name = `layers.${layer}`;
  const eps = config.rms_norm_eps;
  const D = config.hidden_size;
  const { N } = expectShape("x", x, ["N", D]);
  segments.forEach((s, i) => {
    if (!(Number.isInteger(s.start) && s.length >= 1 && s.start + s.length <= N)) throw argError(`segments[${i}]`, `rows within [0, ${N})`, `[${s.start}, ${s.start + s.length})`);
  });
  if (active && active.length !== N) throw argError("active", `${N} flags`, active.length);

  const attnIn = kernels.rmsnorm(x, weights.input_layernorm, eps);
  record(trace, `${name}.attn.in`, attnIn);
  const kind = attentionKind(layerKind(config, layer));
  const attnOut = concatRows(segments.map(({ start, length, cache }) => {
    const rows = reshape(sliceRows(attnIn, start, start + length), [1, length, D]);
    const out = kind.forward(rows, weights.self_attn, config, cache, { kernels, trace, prefix: `${name}.attn` });
    return reshape(out, [length, D]);
  }));
  const attnAdapted = adapted(attnOut, weights.adapters?.attn); // through a bottleneck adapter, if one is attached
  record(trace, `${name}.attn.out`, attnAdapted);
  const h = residual(x, attnAdapted, active);
  record(trace, `${name}.attn.residual`, h);

  const running = active ? rowsWhere(active) : null; // null: all rows
  if (running && running.length === 0) return { out: h, moe: null }; // every token has exited
  const ffnIn = kernels.rmsnorm(running ? gatherRows(h, running) : h, weights.post_attention_layernorm, eps);
  record(trace, `${name}.mlp.in`, ffnIn);
  let ffnOut: Tensor;
  let moe: MoeResult | null = null;
  if (isMoeLayer(config, layer)) {
    moe = moeLayer(ffnIn, weights.mlp as MoeWeights, checkedMoeConfig(config), kernels);
    ffnOut = moe.out;
    recordRouting(trace, `${name}.mlp.router`, moe);
  } else {
    ffnOut = denseMlp(ffnIn, weights.mlp as DenseMlpWeights, kernels);
  }
  ffnOut = adapted(ffnOut, weights.adapters?.mlp);
  record(trace, `${name}.mlp.out`, ffnOut);
  const out = residual(h, running ? scatterRows(ffnOut, running, h.shape[0]!) : ffnOut, active);
  record(trace, `${name}.out`, out);
  if (wants(trace, `${name}.residual_norm`)) record(trace, `${name}.residual_norm`, rowNorms(out));
  return { out, moe };
}

/** The dense feed-forward: down(silu(gate·x) ⊙ up·x). */
export function denseMlp(x: Tensor, w: DenseMlpWeights, kernels: Kernels): Tensor {
  return kernels.linear(kernels.swiglu(kernels.linear(x, w.gate_proj), kernels.linear(x, w.up_proj)), w.down_proj);
}

/** x + update on running rows; exited rows keep x. */
function residual(x: Tensor, update: Tensor, active?: Uint8Array): Tensor {
  const D = x.shape[1]!;
  const out = new Float32Array(x.data.length);
  if (!active) for (let i = 0; i < out.length; i++) out[i] = x.data[i]! + update.data[i]!;
  else for (let i = 0; i < out.length; i++) out[i] = active[Math.floor(i / D)] ? x.data[i]! + update.data[i]! : x.data[i]!;
  return { shape: [...x.shape], data: out };
}

/** The running rows, or null when every row runs. */
export const rowsWhere = (flags: Uint8Array): number[] | null => {
  const rows: number[] = [];
  flags.forEach((f, i) => f && rows.push(i));
  return rows.length === flags.length ? null : rows;
};

function gatherRows(x: Tensor, rows: readonly number[]): Tensor {
  const D = x.shape[1]!;
  const out = new Float32Array(rows.length * D);
  rows.forEach((r, i) => out.set(x.data.subarray(r * D, (r + 1) * D), i * D));
  return { shape: [rows.length, D], data: out };
}

function scatterRows(x: Tensor, rows: readonly number[], N: number): Tensor {
  const D = x.shape[1]!;
  const out = new Float32Array(N * D);
  rows.forEach((r, i) => out.set(x.data.subarray(i * D, (i + 1) * D), r * D));
  return { shape: [N, D], data: out };
}

/** The L2 norm of each row: the residual stream's size, layer after layer. */
export function rowNorms(x: { readonly shape: readonly number[]; readonly data: ArrayLike<number> }): Tensor {
  const D = x.shape[x.shape.length - 1]!;
  const rows = D === 0 ? 0 : x.data.length / D;
  const out = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let i = r * D; i < (r + 1) * D; i++) sum += x.data[i]! ** 2;
    out[r] = Math.sqrt(sum);
  }
  return { shape: [rows], data: out };
}

export function recordRouting(trace: Trace | undefined, prefix: string, moe: Pick<MoeResult, "routing" | "logits" | "scores">): void {
  if (!trace) return;
  const k = moe.routing.k;
  const N = moe.routing.experts.length / k;
  record(trace, `${prefix}.logits`, moe.logits);
  record(trace, `${prefix}.scores`, moe.scores);
  record(trace, `${prefix}.indices`, { shape: [N, k], data: moe.routing.experts });
  record(trace, `${prefix}.weights`, { shape: [N, k], data: moe.routing.weights });
  record(trace, `${prefix}.kept`, { shape: [N, k], data: moe.routing.kept });
}
