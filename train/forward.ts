// The tiny model's forward pass in tfjs, for training: the same computation as src/model/model.ts, block.ts,
// src/attention/mla.ts and src/moe/, written with differentiable tfjs ops so that tfjs computes the gradients.
//   h_0 = Embed(tokens);  h' = h + MLA(RMSNorm(h));  h = h' + FFN(RMSNorm(h'));  logits = RMSNorm(h_L)·W_headᵀ
// Differences that change no number: MLA runs in its `naive` form (per-head keys and values; the reference's
// default `absorb` gives the same logits), and the MoE computes every expert on every token and masks by the
// routing (16 experts of width 64: cheaper to write than dispatch, and the chosen experts' outputs are the same).
// The router's choice is made by the project's own route() (src/moe/router.ts) on the logits' values: selection
// is not differentiable; the gradient reaches the gate through the chosen experts' scores, as in V3.

import * as tf from "@tensorflow/tfjs-core";
import { mlaSoftmaxScale, mlaYarn } from "../src/attention/mla.ts";
import { type ModelConfig, isMoeLayer } from "../src/model/config.ts";
import { moeConfigOf } from "../src/model/config.ts";
import { moeConfig } from "../src/moe/layer.ts";
import { route } from "../src/moe/router.ts";
import { ropeFrequencies } from "../src/rope.ts";
import { type Params } from "./params.ts";

export interface ForwardOutput {
  logits: tf.Tensor2D; // [B·T, V]
  /** Per MoE layer: each routed expert's assignments in this batch (for the bias update). */
  loads: Map<number, number[]>;
  /** V3's sequence-wise balance loss, summed over MoE layers (before its coefficient α). */
  balance: tf.Scalar;
}

/** tokens: B rows of T ids, each row a sequence from position 0. */
export function forward(p: Params, config: ModelConfig, tokens: number[][]): ForwardOutput {
  const [B, T, V] = [tokens.length, tokens[0]!.length, config.vocab_size];
  const ids = tf.tensor1d(tokens.flat(), "int32");
  // Embedding as one-hot · table: tfjs-backend-wasm has no kernel for gather's gradient (UnsortedSegmentSum).
  let h = tf.matMul(tf.cast(tf.oneHot(ids, V), "float32"), p.get("model.embed_tokens.weight")) as tf.Tensor2D;
  const loads = new Map<number, number[]>();
  let balance = tf.scalar(0);
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const w = (name: string) => p.get(`model.layers.${l}.${name}`);
    const attnIn = rmsnorm(h, w("input_layernorm.weight"), config.rms_norm_eps);
    h = tf.add(h, mla(attnIn, (name) => w(`self_attn.${name}.weight`), config, B, T));
    const ffnIn = rmsnorm(h, w("post_attention_layernorm.weight"), config.rms_norm_eps);
    if (!isMoeLayer(config, l)) {
      h = tf.add(h, swiglu(ffnIn, w("mlp.gate_proj.weight"), w("mlp.up_proj.weight"), w("mlp.down_proj.weight")));
      continue;
    }
    const moe = moeFfn(ffnIn, (name) => w(`mlp.${name}`), p.bias(l), config, B);
    h = tf.add(h, moe.out);
    loads.set(l, moe.load);
    balance = tf.add(balance, moe.balance);
  }
  const logits = linear(rmsnorm(h, p.get("model.norm.weight"), config.rms_norm_eps), p.get("lm_head.weight"));
  return { logits, loads, balance };
}

/** x [N, in] · Wᵀ, W in PyTorch's [out, in] layout. */
const linear = (x: tf.Tensor2D, weight: tf.Tensor): tf.Tensor2D => tf.matMul(x, weight as tf.Tensor2D, false, true);

function rmsnorm<R extends tf.Rank>(x: tf.Tensor<R>, weight: tf.Tensor, eps: number): tf.Tensor<R> {
  const inv = tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps));
  return tf.mul(tf.mul(x, inv), weight);
}

function swiglu(x: tf.Tensor2D, gate: tf.Tensor, up: tf.Tensor, down: tf.Tensor): tf.Tensor2D {
  const g = linear(x, gate);
  return linear(tf.mul(tf.mul(g, tf.sigmoid(g)), linear(x, up)), down);
}

/** Multi-head latent attention over B sequences of T tokens, x [B·T, D] (src/attention/mla.ts, naive form). */
function mla(x: tf.Tensor2D, w: (name: string) => tf.Tensor, c: ModelConfig, B: number, T: number): tf.Tensor2D {
  const [H, dn, dr, dv, r] = [c.num_attention_heads, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim, c.kv_lora_rank];
  const eps = c.rms_norm_eps;
  const heads = (t: tf.Tensor2D, width: number) => tf.transpose(tf.reshape(t, [B, T, H, width]), [0, 2, 1, 3]); // [B, H, T, width]
  const q = heads(linear(rmsnorm(linear(x, w("q_a_proj")), w("q_a_layernorm"), eps), w("q_b_proj")), dn + dr);
  const [qNope, qPe] = tf.split(q, [dn, dr], -1);
  const kva = linear(x, w("kv_a_proj_with_mqa"));
  const [latentRaw, kPeRaw] = tf.split(kva, [r, dr], -1) as [tf.Tensor2D, tf.Tensor2D];
  const latent = rmsnorm(latentRaw, w("kv_a_layernorm"), eps);
  const [kNope, v] = tf.split(heads(linear(latent, w("kv_b_proj")), dn + dv), [dn, dv], -1);
  const rot = rotary(c, T);
  const kPe = tf.tile(rope(tf.reshape(kPeRaw, [B, 1, T, dr]), rot), [1, H, 1, 1]); // one rotary key for every head
  const queries = tf.concat([qNope!, rope(qPe!, rot)], -1);
  const keys = tf.concat([kNope!, kPe], -1);
  const scores = tf.add(tf.mul(tf.matMul(queries, keys, false, true), mlaSoftmaxScale(c)), causalMask(T));
  const out = tf.matMul(tf.softmax(scores), v!); // [B, H, T, dv]
  return linear(tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [B * T, H * dv]), w("o_proj"));
}

/** cos and ±sin of position·frequency for each element of a rotary vector (pairs 2i, 2i+1, as src/rope.ts). */
function rotary(c: ModelConfig, T: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const dr = c.qk_rope_head_dim;
  const freqs = ropeFrequencies({ dim: dr, theta: c.rope_theta, yarn: mlaYarn(c) });
  const cos = new Float32Array(T * dr);
  const sin = new Float32Array(T * dr);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < dr / 2; i++) {
      const angle = t * freqs[i]!;
      cos[t * dr + 2 * i] = cos[t * dr + 2 * i + 1] = Math.cos(angle);
      sin[t * dr + 2 * i] = -Math.sin(angle); // out[2i]   = x[2i]·cos - x[2i+1]·sin
      sin[t * dr + 2 * i + 1] = Math.sin(angle); // out[2i+1] = x[2i+1]·cos + x[2i]·sin
    }
  }
  return { cos: tf.tensor2d(cos, [T, dr]), sin: tf.tensor2d(sin, [T, dr]) };
}

/** x [..., T, dr] rotated: x·cos + (x with each pair swapped)·sin. */
function rope(x: tf.Tensor, { cos, sin }: { cos: tf.Tensor2D; sin: tf.Tensor2D }): tf.Tensor {
  const shape = x.shape;
  const swapped = tf.reshape(tf.reverse(tf.reshape(x, [...shape.slice(0, -1), shape.at(-1)! / 2, 2]), -1), shape);
  return tf.add(tf.mul(x, cos), tf.mul(swapped, sin));
}

const causalMask = (T: number): tf.Tensor2D =>
  tf.tensor2d(Float32Array.from({ length: T * T }, (_, i) => (i % T > Math.floor(i / T) ? -1e9 : 0)), [T, T]);

/**
 * The MoE (src/moe/layer.ts) on x [N, D]: sigmoid scores; route() picks k experts per token with the selection
 * bias and group limit; weights = chosen scores / their sum · routed_scaling_factor; every expert runs densely and
 * is masked by its weight; plus the shared expert.
 */
function moeFfn(x: tf.Tensor2D, w: (name: string) => tf.Tensor, bias: Float32Array, c: ModelConfig, B: number) {
  const cfg = moeConfig(moeConfigOf(c));
  const [N, E, F, k] = [x.shape[0], cfg.n_routed_experts, cfg.moe_intermediate_size, cfg.num_experts_per_tok];
  const gateLogits = linear(x, w("gate.weight"));
  const scores = tf.sigmoid(gateLogits);
  const chosen = route({ shape: [N, E], data: gateLogits.dataSync() as Float32Array }, cfg, { shape: [E], data: bias }).experts;
  const maskData = new Float32Array(N * E);
  const load = new Array<number>(E).fill(0);
  chosen.forEach((e, a) => {
    maskData[Math.floor(a / k) * E + e] = 1;
    load[e]!++;
  });
  const mask = tf.tensor2d(maskData, [N, E]);
  const picked = tf.mul(scores, mask);
  const weights = tf.mul(tf.div(picked, tf.sum(picked, -1, true)), cfg.routed_scaling_factor); // [N, E], zero off the chosen
  // Σ_e w_e·down_e(act_e) = [w_1·act_1 … w_E·act_E] · [down_1ᵀ; …; down_Eᵀ]: the routing weights scale each
  // expert's hidden units, then one matmul over all E·F of them does the down projections and the sum.
  const stacked = (name: string) => tf.reshape(w(name), [E * F, -1]); // gate, up [E, F, D] → [E·F, D]
  const g = linear(x, stacked("experts.gate_proj"));
  const act = tf.reshape(tf.mul(tf.mul(g, tf.sigmoid(g)), linear(x, stacked("experts.up_proj"))), [N, E, F]);
  const weighted = tf.reshape(tf.mul(act, tf.expandDims(weights, 2)), [N, E * F]);
  const down = tf.reshape(tf.transpose(w("experts.down_proj"), [0, 2, 1]), [E * F, -1]); // [E, D, F] → [E·F, D]
  const routed = tf.matMul(weighted, down) as tf.Tensor2D;
  const shared = swiglu(x, w("shared_experts.gate_proj.weight"), w("shared_experts.up_proj.weight"), w("shared_experts.down_proj.weight"));
  return { out: tf.add(routed, shared), load, balance: sequenceBalance(scores, mask, B, k) };
}

/**
 * DeepSeek-V3's complementary sequence-wise balance loss (V3 report §2.1.2) before α, averaged over
 * the B sequences: Σ_i f_i·P_i, f_i = E/(k·T)·(tokens choosing i), P_i = mean_t s_i,t / Σ_j s_j,t.
 */
function sequenceBalance(scores: tf.Tensor2D, mask: tf.Tensor2D, B: number, k: number): tf.Scalar {
  const [N, E] = scores.shape;
  const T = N / B;
  const normalised = tf.reshape(tf.div(scores, tf.sum(scores, -1, true)), [B, T, E]);
  const f = tf.mul(tf.sum(tf.reshape(mask, [B, T, E]), 1), E / (k * T)); // constant: the choice has no gradient
  return tf.div(tf.sum(tf.mul(f, tf.mean(normalised, 1))), B);
}

/** Mean cross-entropy (nats) of logits [N, V] against targets. */
export function crossEntropy(logits: tf.Tensor2D, targets: number[]): tf.Scalar {
  const onehot = tf.cast(tf.oneHot(tf.tensor1d(targets, "int32"), logits.shape[1]), "float32");
  return tf.neg(tf.mean(tf.sum(tf.mul(onehot, tf.logSoftmax(logits)), -1))) as tf.Scalar;
}
