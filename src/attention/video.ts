// Space-channel-time attention over a video x [F frames, P patches, C channels] (spec/video-attention.md): divided
// attention as in TimeSformer (Bertasius et al. 2021), then channel attention as squeeze-and-excitation (Hu et al.
// 2018). Each attention step is a pre-norm residual block, x + W_o·MHA(RMSNorm(x)):
//   time:    at each patch p, the F frames attend to each other        x[:, p, :] is one sequence
//   space:   in each frame f, the P patches attend to each other        x[f, :, :] is one sequence
//   channel: per frame, s = mean_p x[f, p, :],  g = σ(W₂·ReLU(W₁ s + b₁) + b₂),  x[f, p, :] ← x[f, p, :] ⊙ g
// By default a frame does not attend to itself in time (temporal_self = false): the temporal branch carries only
// what the same patch looks like in other frames, the residual carries the frame itself, and a one-frame video is
// exactly an image (spatial attention + SE). TimeSformer includes the frame itself (temporal_self = true), which at
// F = 1 adds the per-token map W_o·W_v·RMSNorm(x).

import { argError, checkInteger, checkNumber } from "../errors.ts";
import { reference, type Kernels } from "../kernels.ts";
import { type Random, randn } from "../random.ts";
import { add, expectShape, reshape, tensor, type Tensor } from "../tensor.ts";
import { mergeHeads, splitHeads } from "./heads.ts";
import { maskedAttention } from "./masked.ts";

export interface VideoAttentionConfig {
  channels: number; // C
  num_heads?: number; // default 1; divides C
  se_ratio?: number; // default 4: SE squeezes C channels into max(1, floor(C / se_ratio))
  temporal_self?: boolean; // default false, see above
  rms_norm_eps?: number; // default 1e-6
}

/** One attention step's weights: RMSNorm weight [C], projections [C, C] ([out, in]). */
export interface VideoAttentionStep {
  norm: Tensor;
  q_proj: Tensor;
  k_proj: Tensor;
  v_proj: Tensor;
  o_proj: Tensor;
}

export interface VideoAttentionWeights {
  temporal: VideoAttentionStep;
  spatial: VideoAttentionStep;
  se_fc1: Tensor; // [Cr, C]
  se_fc1_bias: Tensor; // [Cr]
  se_fc2: Tensor; // [C, Cr]
  se_fc2_bias: Tensor; // [C]
}

export function checkVideoConfig(config: VideoAttentionConfig): Required<VideoAttentionConfig> & { se_channels: number } {
  if (typeof config !== "object" || config === null) throw argError("config", "a video attention config object", config);
  checkInteger("config.channels", config.channels, 1);
  const H = config.num_heads ?? 1;
  checkInteger("config.num_heads", H, 1);
  if (config.channels % H !== 0) throw argError("config.num_heads", `a divisor of channels ${config.channels}`, H);
  const ratio = config.se_ratio ?? 4;
  checkNumber("config.se_ratio", ratio, 1, Infinity);
  const eps = config.rms_norm_eps ?? 1e-6;
  checkNumber("config.rms_norm_eps", eps, 0, 1);
  const temporalSelf = config.temporal_self ?? false;
  if (typeof temporalSelf !== "boolean") throw argError("config.temporal_self", "a boolean", temporalSelf);
  return {
    channels: config.channels, num_heads: H, se_ratio: ratio, temporal_self: temporalSelf, rms_norm_eps: eps,
    se_channels: Math.max(1, Math.floor(config.channels / ratio)),
  };
}

export function initVideoAttention(rng: Random, config: VideoAttentionConfig): VideoAttentionWeights {
  const { channels: C, se_channels: Cr } = checkVideoConfig(config);
  const step = (): VideoAttentionStep => ({
    norm: tensor([C], new Float32Array(C).fill(1)),
    q_proj: randn(rng, [C, C], 0.02), k_proj: randn(rng, [C, C], 0.02),
    v_proj: randn(rng, [C, C], 0.02), o_proj: randn(rng, [C, C], 0.02),
  });
  return {
    temporal: step(), spatial: step(),
    se_fc1: randn(rng, [Cr, C], 0.02), se_fc1_bias: tensor([Cr]),
    se_fc2: randn(rng, [C, Cr], 0.02), se_fc2_bias: tensor([C]),
  };
}

/** video [F, P, C] or [B, F, P, C] → the same shape: time, then space, then channel. */
export function spaceChannelTimeAttention(
  video: Tensor, weights: VideoAttentionWeights, config: VideoAttentionConfig, kernels: Kernels = reference,
): Tensor {
  const x = checkVideo(video, config);
  checkVideoWeights(weights, config);
  const time = temporalAttention(x, weights, config, kernels);
  const space = spatialAttention(time, weights, config, kernels);
  const out = squeezeExcite(space, weights, config, kernels);
  return reshape(out, video.shape);
}

/** What each of the three steps checks first: the config (defaults filled), the video as [B, F, P, C], the weights. */
function checkedStep(video: Tensor, weights: VideoAttentionWeights, config: VideoAttentionConfig) {
  const c = checkVideoConfig(config);
  const x = checkVideo(video, c);
  checkVideoWeights(weights, c);
  const [B, F, P, C] = x.shape as [number, number, number, number];
  return { c, x, B, F, P, C };
}

/** x + W_o·MHA over frames, at each patch: x [B, F, P, C] → [B, F, P, C]. */
export function temporalAttention(
  video: Tensor, weights: VideoAttentionWeights, config: VideoAttentionConfig, kernels: Kernels = reference,
): Tensor {
  const { c, x, B, F, P, C } = checkedStep(video, weights, config);
  const sequences = swapFramesAndPatches(x); // [B, P, F, C]: one sequence of F frames per patch
  const visible = (H: number) => {
    const v = new Uint8Array(B * P * H * F * F);
    for (let i = 0; i < v.length; i++) v[i] = c.temporal_self || Math.floor(i / F) % F !== i % F ? 1 : 0;
    return v;
  };
  const mixed = attentionStep(reshape(sequences, [B * P, F, C]), weights.temporal, c, kernels, visible);
  return swapFramesAndPatches(reshape(mixed, [B, P, F, C]));
}

/** x + W_o·MHA over patches, in each frame: x [B, F, P, C] → [B, F, P, C]. */
export function spatialAttention(
  video: Tensor, weights: VideoAttentionWeights, config: VideoAttentionConfig, kernels: Kernels = reference,
): Tensor {
  const { c, x, B, F, P, C } = checkedStep(video, weights, config);
  return reshape(attentionStep(reshape(x, [B * F, P, C]), weights.spatial, c, kernels), [B, F, P, C]);
}

/** Squeeze-and-excitation per frame: x [B, F, P, C] scaled channel-wise by g(mean over the frame's patches). */
export function squeezeExcite(
  video: Tensor, weights: VideoAttentionWeights, config: VideoAttentionConfig, kernels: Kernels = reference,
): Tensor {
  const { x, B, F, P, C } = checkedStep(video, weights, config);
  const squeezed = new Float32Array(B * F * C);
  for (let frame = 0; frame < B * F; frame++) {
    for (let ch = 0; ch < C; ch++) {
      let sum = 0;
      for (let p = 0; p < P; p++) sum += x.data[(frame * P + p) * C + ch]!;
      squeezed[frame * C + ch] = sum / P;
    }
  }
  const squeezedT = { shape: [B * F, C], data: squeezed };
  const hidden = withBias(kernels.linear(squeezedT, weights.se_fc1), weights.se_fc1_bias, (v) => Math.max(v, 0));
  const gates = withBias(kernels.linear(hidden, weights.se_fc2), weights.se_fc2_bias, (v) => 1 / (1 + Math.exp(-v)));
  const out = new Float32Array(x.data.length);
  for (let i = 0; i < out.length; i++) out[i] = x.data[i]! * gates.data[Math.floor(i / (P * C)) * C + (i % C)]!;
  return { shape: [B, F, P, C], data: out };
}

/** x [N, T, C] → x + W_o·MHA(RMSNorm(x)) within each of the N sequences; `visible` restricts keys if given. */
function attentionStep(
  x: Tensor, w: VideoAttentionStep, c: ReturnType<typeof checkVideoConfig>, kernels: Kernels, visible?: (H: number) => Uint8Array,
): Tensor {
  const [H, C] = [c.num_heads, c.channels];
  const h = kernels.rmsnorm(x, w.norm, c.rms_norm_eps);
  const heads = (weight: Tensor) => splitHeads(kernels.linear(h, weight), H, [C / H])[0]!;
  const [q, k, v] = [heads(w.q_proj), heads(w.k_proj), heads(w.v_proj)];
  const scale = 1 / Math.sqrt(C / H);
  const attended = visible ? maskedAttention(q, k, v, visible(H), scale, kernels).out : kernels.attention(q, k, v, { scale });
  return add(x, kernels.linear(mergeHeads(attended), w.o_proj));
}

/** [B, F, P, C] ↔ [B, P, F, C]. */
function swapFramesAndPatches(x: Tensor): Tensor {
  const [B, A, Z, C] = x.shape as [number, number, number, number];
  const out = new Float32Array(x.data.length);
  for (let b = 0; b < B; b++) {
    for (let a = 0; a < A; a++) {
      for (let z = 0; z < Z; z++) {
        const from = ((b * A + a) * Z + z) * C;
        out.set(x.data.subarray(from, from + C), ((b * Z + z) * A + a) * C);
      }
    }
  }
  return { shape: [B, Z, A, C], data: out };
}

/** linear output + bias, then an activation, rounded once on store. */
function withBias(x: Tensor, bias: Tensor, activation: (v: number) => number): Tensor {
  const n = bias.shape[0]!;
  return { shape: [...x.shape], data: x.data.map((v, i) => activation(v + bias.data[i % n]!)) };
}

function checkVideo(video: Tensor, config: VideoAttentionConfig): Tensor {
  const C = config.channels;
  if (video?.shape?.length === 3) {
    expectShape("video", video, ["F", "P", C]);
    return reshape(video, [1, ...video.shape]);
  }
  expectShape("video", video, ["B", "F", "P", C]);
  return video;
}

function checkVideoWeights(weights: VideoAttentionWeights, config: VideoAttentionConfig): void {
  const { channels: C, se_channels: Cr } = checkVideoConfig(config);
  if (typeof weights !== "object" || weights === null) throw argError("weights", "the video attention weights", weights);
  for (const step of ["temporal", "spatial"] as const) {
    const w = weights[step] as unknown as Record<string, Tensor> | undefined;
    if (typeof w !== "object" || w === null) throw argError(`weights.${step}`, "an attention step's weights", w);
    expectShape(`weights.${step}.norm`, w.norm, [C]);
    for (const name of ["q_proj", "k_proj", "v_proj", "o_proj"]) expectShape(`weights.${step}.${name}`, w[name], [C, C]);
  }
  expectShape("weights.se_fc1", weights.se_fc1, [Cr, C]);
  expectShape("weights.se_fc1_bias", weights.se_fc1_bias, [Cr]);
  expectShape("weights.se_fc2", weights.se_fc2, [C, Cr]);
  expectShape("weights.se_fc2_bias", weights.se_fc2_bias, [C]);
}
