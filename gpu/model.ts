// The tiny model's forward pass kept on the device: the same structure as src/model/model.ts and block.ts
// (pre-norm blocks, MLA attention in "absorb" form, dense SwiGLU or MoE feed-forward, final norm and head), with
// weights uploaded once (cached by their Float32Array) and activations in pooled GPU buffers from the embedding
// to the logits. What comes back to the host: the logits, the traced tensors the caller asks for, and per MoE
// layer the router logits [T, E] (a few numbers per token), so that routing (top-k, groups, bias, capacity) runs
// in the reference's own code (src/moe/layer.ts routeTokens) and picks exactly the experts it would. The weights,
// config and routing code are the model's; only the data movement is this file's.
//
// Supported: attention_kind "mla" with mla_mode "absorb", a fresh sequence (no cache), full depth. Anything else
// throws NotSupportedError naming the feature. The trace has every name the reference records except
// layers.*.attn.probs: the fused attention never forms the probability matrix.

import { mlaSoftmaxScale, mlaYarn, checkMlaConfig, type MlaWeights } from "../src/attention/mla.ts";
import { NotSupportedError } from "../src/backend.ts";
import { argError } from "../src/errors.ts";
import { type Routing } from "../src/moe/experts.ts";
import { routeTokens, type MoeWeights } from "../src/moe/layer.ts";
import { moeConfigOf, rowNorms } from "../src/model/block.ts";
import { isMoeLayer, layerKind } from "../src/model/config.ts";
import { type DenseMlpWeights, type Model } from "../src/model/weights.ts";
import { ropeFrequencies } from "../src/rope.ts";
import { numel, type Tensor } from "../src/tensor.ts";
import { record, wants, type Trace } from "../src/trace.ts";
import { type GpuContext, type GpuTensor } from "./context.ts";
import { attention } from "./kernels/attention.ts";
import { add, copyBlocks, gatherRows, rope, ropeTable, swiglu } from "./kernels/elementwise.ts";
import { gemmInto, linear } from "./kernels/matmul.ts";
import { moe } from "./kernels/moe.ts";
import { rmsnorm } from "./kernels/rows.ts";

export interface DeviceForwardOptions {
  /** Named intermediates to read back, with src/model's names (embed, layers.0.attn.out, norm, logits, ...). */
  trace?: Trace;
}

export interface DeviceForwardResult {
  logits: Tensor; // [T, V]
  /** Per layer: the MoE routing it used, or null for a dense layer. */
  routing: (Routing | null)[];
}

/** Throws NotSupportedError unless the device runner covers `model`'s configuration. */
export function checkDeviceSupport(model: Model): void {
  const c = model.config;
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const kind = layerKind(c, l);
    if (kind !== "mla") throw new NotSupportedError(`webgpu model: attention kind "${kind}" (layer ${l}) runs only through synchronous kernels; the device runner supports "mla"`);
  }
  if (c.mla_mode !== "absorb") throw new NotSupportedError(`webgpu model: mla_mode "${c.mla_mode}"; the device runner supports "absorb"`);
  if (c.exit_threshold !== null) throw new NotSupportedError("webgpu model: early exit (exit_threshold); the device runner runs full depth");
}

/** One fresh sequence's tokens → next-token logits, on the device. */
export async function forwardOnDevice(ctx: GpuContext, model: Model, tokens: ArrayLike<number>, options: DeviceForwardOptions = {}): Promise<DeviceForwardResult> {
  checkDeviceSupport(model);
  const { config: c, weights } = model;
  const T = tokens.length;
  if (T === 0) throw argError("tokens", "at least one token id", 0);
  if (T > c.max_position_embeddings) throw argError("tokens", `at most max_position_embeddings = ${c.max_position_embeddings}`, T);
  const ids = Uint32Array.from(tokens, (id, t) => {
    if (!Number.isInteger(id) || id < 0 || id >= c.vocab_size) throw argError(`tokens[${t}]`, `an integer in [0, ${c.vocab_size - 1}]`, id);
    return id;
  });
  const { trace } = options;
  const W = (t: Tensor): GpuTensor => ({ shape: t.shape, buffer: ctx.weight(t.data) });
  const D = c.hidden_size;
  const eps = c.rms_norm_eps;
  const temps: GPUBuffer[] = [];
  const keep = (t: GpuTensor) => (temps.push(t.buffer), t);
  const show = async (name: string, t: GpuTensor) => {
    if (wants(trace, name)) record(trace, name, { shape: t.shape, data: await ctx.read(t.buffer, numel(t.shape)) });
  };

  const idBuffer = ctx.upload(ids);
  let x = gatherRows(ctx, ctx.weight(weights.embed_tokens.data), D, idBuffer, T);
  ctx.release(idBuffer);
  record(trace, "tokens", { shape: [T], data: Int32Array.from(ids) });
  await show("embed", x);
  const routing: (Routing | null)[] = [];
  const table = ctx.upload(ropeTable(Array.from({ length: T }, (_, t) => t), ropeFrequencies({ dim: c.qk_rope_head_dim, theta: c.rope_theta, yarn: mlaYarn(c) })));

  for (let l = 0; l < c.num_hidden_layers; l++) {
    const layer = weights.layers[l]!;
    const name = `layers.${l}`;
    const attnIn = keep(rmsnorm(ctx, x, W(layer.input_layernorm), eps));
    await show(`${name}.attn.in`, attnIn);
    const attnOut = keep(mlaAbsorb(ctx, attnIn, layer.self_attn as unknown as MlaWeights, model, table, keep, W));
    await show(`${name}.attn.out`, attnOut);
    const h = keep(add(ctx, x, attnOut));
    await show(`${name}.attn.residual`, h);
    const ffnIn = keep(rmsnorm(ctx, h, W(layer.post_attention_layernorm), eps));
    await show(`${name}.mlp.in`, ffnIn);
    let ffnOut: GpuTensor;
    if (isMoeLayer(c, l)) {
      const result = await moeOnDevice(ctx, ffnIn, layer.mlp as MoeWeights, model, keep, W);
      ffnOut = result.out;
      routing.push(result.routing);
      if (trace) {
        const k = result.routing.k;
        record(trace, `${name}.mlp.router.logits`, result.logits);
        record(trace, `${name}.mlp.router.scores`, result.scores);
        record(trace, `${name}.mlp.router.indices`, { shape: [T, k], data: result.routing.experts });
        record(trace, `${name}.mlp.router.weights`, { shape: [T, k], data: result.routing.weights });
        record(trace, `${name}.mlp.router.kept`, { shape: [T, k], data: result.routing.kept });
      }
    } else {
      ffnOut = keep(swigluMlp(ctx, ffnIn, layer.mlp as DenseMlpWeights, keep, W));
      routing.push(null);
    }
    await show(`${name}.mlp.out`, ffnOut);
    const out = add(ctx, h, ffnOut);
    await show(`${name}.out`, out);
    if (wants(trace, `${name}.residual_norm`)) {
      record(trace, `${name}.residual_norm`, rowNorms({ shape: out.shape, data: await ctx.read(out.buffer, T * D) }));
    }
    temps.push(x.buffer);
    ctx.release(...temps.splice(0)); // every buffer of this layer goes back to the pool; `out` carries on
    x = out;
  }
  const normed = rmsnorm(ctx, x, W(weights.norm), eps);
  await show("norm", normed);
  const logitsOnDevice = linear(ctx, normed, W(weights.lm_head));
  const logits = { shape: [T, c.vocab_size], data: await ctx.read(logitsOnDevice.buffer, T * c.vocab_size) };
  record(trace, "logits", logits);
  ctx.release(table, x.buffer, normed.buffer, logitsOnDevice.buffer);
  return { logits, routing };
}

type Keep = (t: GpuTensor) => GpuTensor;
type Resident = (t: Tensor) => GpuTensor;

/** down(silu(gate·x) ⊙ up·x), as src/model/block.ts denseMlp. */
function swigluMlp(ctx: GpuContext, x: GpuTensor, w: DenseMlpWeights, keep: Keep, W: Resident): GpuTensor {
  const gate = keep(linear(ctx, x, W(w.gate_proj)));
  const up = keep(linear(ctx, x, W(w.up_proj)));
  return linear(ctx, keep(swiglu(ctx, gate, up)), W(w.down_proj));
}

/** MLA in absorb form for one fresh sequence x [T, D] (src/attention/mla.ts mla → absorb), all on the device. */
function mlaAbsorb(ctx: GpuContext, x: GpuTensor, w: MlaWeights, model: Model, table: GPUBuffer, keep: Keep, W: Resident): GpuTensor {
  const c = checkMlaConfig(model.config);
  const T = x.shape[0]!;
  const [H, dn, dr, dv, r] = [c.num_attention_heads, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim, c.kv_lora_rank];
  const dq = dn + dr;
  const q = keep(c.q_lora_rank === 0
    ? linear(ctx, x, W(w.q_proj!))
    : linear(ctx, keep(rmsnorm(ctx, keep(linear(ctx, x, W(w.q_a_proj!))), W(w.q_a_layernorm!), c.rms_norm_eps)), W(w.q_b_proj!)));
  // splitHeads: q [T, H·dq] → q_nope [H, T, dn] and q_pe [H, T, dr].
  const qNope = keep(ctx.empty([1, H, T, dn]));
  copyBlocks(ctx, q.buffer, qNope.buffer, { batches: H, rows: T, width: dn, srcBatch: dq, srcRow: H * dq, dstBatch: T * dn, dstRow: dn });
  const qPeRaw = keep(ctx.empty([1, H, T, dr]));
  copyBlocks(ctx, q.buffer, qPeRaw.buffer, { batches: H, rows: T, width: dr, srcOff: dn, srcBatch: dq, srcRow: H * dq, dstBatch: T * dr, dstRow: dr });
  const kv = keep(linear(ctx, x, W(w.kv_a_proj_with_mqa))); // [T, r + dr]
  const latentRaw = keep(ctx.empty([1, T, r]));
  copyBlocks(ctx, kv.buffer, latentRaw.buffer, { rows: T, width: r, srcRow: r + dr, dstRow: r });
  const kPeRaw = keep(ctx.empty([1, T, dr]));
  copyBlocks(ctx, kv.buffer, kPeRaw.buffer, { rows: T, width: dr, srcOff: r, srcRow: r + dr, dstRow: dr });
  const qPe = keep(rope(ctx, qPeRaw, table, T));
  const kPe = keep(rope(ctx, kPeRaw, table, T));
  const latent = keep(rmsnorm(ctx, latentRaw, W(w.kv_a_layernorm), c.rms_norm_eps));
  // q_nope·W_uk,h: W_uk,h is rows [h·(dn+dv), h·(dn+dv) + dn) of kv_b_proj, [dn, r], read in place.
  const kvB = ctx.weight(w.kv_b_proj.data);
  const headStride = (dn + dv) * r;
  const qLatent = keep(ctx.empty([1, H, T, r]));
  gemmInto(ctx, qNope.buffer, kvB, qLatent.buffer, { M: T, N: r, K: dn, transB: false, batches: H, strideA: T * dn, strideB: headStride, strideC: T * r });
  // Queries [q_latent ; q_pe] against keys [latent ; k_pe] (one kv head), values the latent.
  const query = keep(ctx.empty([1, H, T, r + dr]));
  copyBlocks(ctx, qLatent.buffer, query.buffer, { rows: H * T, width: r, srcRow: r, dstRow: r + dr });
  copyBlocks(ctx, qPe.buffer, query.buffer, { rows: H * T, width: dr, srcRow: dr, dstOff: r, dstRow: r + dr });
  const keys = keep(ctx.empty([1, 1, T, r + dr]));
  copyBlocks(ctx, latent.buffer, keys.buffer, { rows: T, width: r, srcRow: r, dstRow: r + dr });
  copyBlocks(ctx, kPe.buffer, keys.buffer, { rows: T, width: dr, srcRow: dr, dstOff: r, dstRow: r + dr });
  const values = { shape: [1, 1, T, r], buffer: latent.buffer };
  const scale = mlaSoftmaxScale(c);
  const outLatent = keep(attention(ctx, query, keys, values, { B: 1, H, Hkv: 1, Tq: T, Tk: T, Dh: r + dr, Dv: r, scale, mask: { causal: true, offset: 0 } }));
  // ·W_uvᵀ per head: W_uv,h is rows [h·(dn+dv) + dn, (h+1)·(dn+dv)) of kv_b_proj, [dv, r], read transposed in place.
  const heads = keep(ctx.empty([1, H, T, dv]));
  gemmInto(ctx, outLatent.buffer, kvB, heads.buffer, { M: T, N: dv, K: r, transB: true, batches: H, strideA: T * r, offB: dn * r, strideB: headStride, strideC: T * dv });
  // mergeHeads: [H, T, dv] → [T, H·dv].
  const merged = keep(ctx.empty([T, H * dv]));
  copyBlocks(ctx, heads.buffer, merged.buffer, { batches: H, rows: T, width: dv, srcBatch: T * dv, srcRow: dv, dstBatch: dv, dstRow: H * dv });
  return linear(ctx, merged, W(w.o_proj));
}

/** The MoE layer (src/moe/layer.ts moeLayer): router logits read back, routed by the reference, experts on device. */
async function moeOnDevice(ctx: GpuContext, x: GpuTensor, w: MoeWeights, model: Model, keep: Keep, W: Resident) {
  const config = moeConfigOf(model.config);
  const [T, D] = x.shape as [number, number];
  const E = config.n_routed_experts;
  const logitsOnDevice = keep(linear(ctx, x, W(w.gate.weight)));
  const logits = { shape: [T, E], data: await ctx.read(logitsOnDevice.buffer, T * E) };
  const { routing, scores } = routeTokens(logits, config, w.gate.e_score_correction_bias);
  const experts = {
    gate: ctx.weight(w.experts.gate.data),
    up: ctx.weight(w.experts.up.data),
    down: ctx.weight(w.experts.down.data),
    E, F: config.moe_intermediate_size, D,
  };
  const routed = keep(moe(ctx, x, routing, experts));
  const shared = w.shared_experts ? keep(swigluMlp(ctx, x, w.shared_experts, keep, W)) : null;
  const out = shared ? keep(add(ctx, routed, shared)) : routed;
  return { out, routing, logits, scores };
}
