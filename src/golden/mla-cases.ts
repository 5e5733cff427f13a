// Golden cases for MLA, DSA, cross-modal attention, the patch embedding and space-channel-time attention. Each
// runs its component on the backend's synchronous kernels; params carry the checkpoint names (nested weights
// flattened with "."). Edge cases: one token (T = 1), a chunked prefill after position 0, a single image patch, a
// padded text row and a sample with no image (fully masked rows), a one-frame video.

import { crossModalAttention, earlyFusion, initCrossModal, type CrossAttentionWeights, type CrossModalConfig, type EarlyFusionWeights } from "../attention/crossmodal.ts";
import { createDsaCache, dsa, initDsa, type DsaConfig, type DsaWeights } from "../attention/dsa.ts";
import { concatTime } from "../attention/heads.ts";
import { sliceTime } from "../attention/masked.ts";
import { createMlaCache, initMla, mla, type MlaCache, type MlaConfig, type MlaMode, type MlaWeights } from "../attention/mla.ts";
import { initPatchEmbedding, patchEmbed, tinyImage, type PatchConfig, type PatchWeights } from "../attention/patch.ts";
import { initVideoAttention, spaceChannelTimeAttention, type VideoAttentionConfig, type VideoAttentionWeights } from "../attention/video.ts";
import { NotSupportedError, type Backend } from "../backend.ts";
import type { Tolerance } from "../io/compare.ts";
import type { Kernels } from "../kernels.ts";
import { Random, randBounded } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import type { GoldenCase, GoldenTensor, TensorMap } from "./case.ts";

const EXACT: Tolerance = { rtol: 0, atol: 0, nmse: 0, exact: true };

function kernelsOf(backend: Backend): Kernels {
  if (!backend.kernels) throw new NotSupportedError(`${backend.name} has no synchronous kernels for attention components`);
  return backend.kernels;
}

/** Nested weights → { "indexer.wq_b": … }, and back. */
function flatten(weights: object, prefix = ""): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, value] of Object.entries(weights)) {
    if (value === undefined) continue;
    if ("data" in value) out[prefix + name] = value as Tensor;
    else Object.assign(out, flatten(value as object, `${prefix}${name}.`));
  }
  return out;
}
function unflatten(params: Record<string, Tensor>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, t] of Object.entries(params)) {
    const path = name.split(".");
    let node = out;
    for (const part of path.slice(0, -1)) node = (node[part] ??= {}) as Record<string, unknown>;
    node[path[path.length - 1]!] = t;
  }
  return out;
}

/** Seeded weights of the init function's shapes with values big enough that every product matters: std 0.3, norms 1 ± 0.1. */
function lively(rng: Random, weights: object): Record<string, Tensor> {
  return Object.fromEntries(Object.entries(flatten(weights)).map(([name, w]) => {
    if (!/norm/.test(name) || name.endsWith("bias")) return [name, randBounded(rng, w.shape, 0.3)];
    const noise = randBounded(rng, w.shape, 0.1);
    return [name, { shape: w.shape, data: noise.data.map((v) => 1 + v) }];
  }));
}

const asTensor = (t: GoldenTensor | undefined) => t as Tensor;

const MLA_CONFIG: MlaConfig = {
  hidden_size: 16, num_attention_heads: 2, q_lora_rank: 8, kv_lora_rank: 8, qk_nope_head_dim: 4, qk_rope_head_dim: 4,
  v_head_dim: 4, max_position_embeddings: 64, rope_theta: 10000, rms_norm_eps: 1e-6,
  rope_scaling: { type: "yarn", factor: 4, original_max_position_embeddings: 16, beta_fast: 32, beta_slow: 1, mscale: 1, mscale_all_dim: 1 },
};

function mlaCase(name: string, config: MlaConfig, mode: MlaMode, T: number, chunk: number, seed: number): GoldenCase {
  return {
    name: `attention.mla.${name}`,
    component: "attention.mla",
    config: { ...config, mode, tokens: T, first_chunk: chunk },
    seed,
    build() {
      const rng = new Random(seed);
      return { inputs: { x: randBounded(rng, [1, T, config.hidden_size]) }, params: lively(rng, initMla(rng, config)) };
    },
    run(backend, inputs, params) {
      const kernels = kernelsOf(backend);
      const x = asTensor(inputs.x);
      const weights = unflatten(params) as unknown as MlaWeights;
      const cache = createMlaCache(config, mode, 1);
      // With chunk < T: a prefill of `chunk` tokens, then the rest at positions chunk … T - 1 (offset-aware mask).
      const parts = chunk < T ? [[0, chunk], [chunk, T]] : [[0, T]];
      const outs = parts.map(([a, b]) => mla(sliceTime(x, a!, b!), weights, config, cache, kernels, mode));
      return { y: outs.reduce(concatTime), ...cacheOutputs(cache) };
    },
  };
}

function cacheOutputs(cache: MlaCache): TensorMap {
  return cache.mode === "absorb" ? { cache_latent: cache.latent, cache_pe: cache.pe } : { cache_keys: cache.keys, cache_values: cache.values };
}

function dsaCase(seed: number): GoldenCase {
  const config: DsaConfig = { ...MLA_CONFIG, index_n_heads: 2, index_head_dim: 8, index_topk: 3 };
  const T = 7;
  return {
    name: "attention.dsa.top3",
    component: "attention.dsa",
    config: { ...config, mode: "absorb", tokens: T },
    seed,
    build() {
      const rng = new Random(seed);
      return { inputs: { x: randBounded(rng, [1, T, config.hidden_size]) }, params: lively(rng, initDsa(rng, config)) };
    },
    run(backend, inputs, params) {
      const kernels = kernelsOf(backend);
      const weights = unflatten(params) as unknown as DsaWeights;
      const r = dsa(asTensor(inputs.x), weights, config, createDsaCache(config, "absorb", 1), kernels);
      return { y: r.out, index_scores: r.scores, selected: r.selected };
    },
    // The selection is discrete: it must match exactly (the seed gives no near-ties among the top scores).
    tolerance: { selected: EXACT },
  };
}

function crossCase(seed: number): GoldenCase {
  const config: Required<CrossModalConfig> = { text_dim: 6, vision_dim: 8, num_heads: 2, fusion: "cross" };
  const [B, Nt, Nv] = [2, 5, 4];
  return {
    name: "attention.crossmodal.heads2.masked",
    component: "attention.crossmodal",
    config: { ...config, batch: B, text_tokens: Nt, vision_tokens: Nv },
    seed,
    build() {
      const rng = new Random(seed);
      const params = lively(rng, initCrossModal(rng, config));
      params.gate_text = { shape: [1], data: Float32Array.of(0.5) };
      params.gate_vision = { shape: [1], data: Float32Array.of(-0.75) };
      return {
        inputs: {
          text: randBounded(rng, [B, Nt, config.text_dim]),
          vision: randBounded(rng, [B, Nv, config.vision_dim]),
          // Sample 0: two padded text tokens; sample 1: no image, so its text rows see nothing (fully masked).
          text_mask: { shape: [B, Nt], data: Uint8Array.from([1, 1, 1, 0, 0, 1, 1, 1, 1, 1]) },
          vision_mask: { shape: [B, Nv], data: Uint8Array.from([1, 1, 1, 1, 0, 0, 0, 0]) },
        },
        params,
      };
    },
    run(backend, inputs, params) {
      const kernels = kernelsOf(backend);
      const masks = { text: inputs.text_mask!.data as Uint8Array, vision: inputs.vision_mask!.data as Uint8Array };
      const r = crossModalAttention(asTensor(inputs.text), asTensor(inputs.vision), params as unknown as CrossAttentionWeights, config, masks, kernels);
      return { text: r.text, vision: r.vision, scores_tv: r.scoresTv, scores_vt: r.scoresVt, probs_tv: r.probsTv, probs_vt: r.probsVt };
    },
  };
}

function earlyCase(seed: number): GoldenCase {
  const config: Required<CrossModalConfig> = { text_dim: 8, vision_dim: 6, num_heads: 1, fusion: "early" };
  const markers = [0, 3];
  return {
    name: "attention.crossmodal.early",
    component: "attention.crossmodal",
    config: { ...config, markers, text_tokens: 5, image_tokens: [4, 1] },
    seed,
    build() {
      const rng = new Random(seed);
      return {
        inputs: { text: randBounded(rng, [5, 8]), image0: randBounded(rng, [4, 6]), image1: randBounded(rng, [1, 6]) },
        params: lively(rng, initCrossModal(rng, config)),
      };
    },
    run(backend, inputs, params) {
      const images = [asTensor(inputs.image0), asTensor(inputs.image1)];
      const r = earlyFusion(asTensor(inputs.text), markers, images, params as unknown as EarlyFusionWeights, config, kernelsOf(backend));
      return { sequence: r.sequence, spans: { shape: [2, 2], data: Int32Array.from(r.spans.flat()) } };
    },
    tolerance: { spans: EXACT },
  };
}

function patchCase(name: string, config: PatchConfig, image: (rng: Random) => Tensor, seed: number): GoldenCase {
  return {
    name: `vision.patch.${name}`,
    component: "vision.patch",
    config: { ...config, position: "2d-sincos" },
    seed,
    build() {
      const rng = new Random(seed);
      return { inputs: { image: image(rng) }, params: lively(rng, initPatchEmbedding(rng, config)) };
    },
    run: (backend, inputs, params) => ({ tokens: patchEmbed(asTensor(inputs.image), params as unknown as PatchWeights, config, kernelsOf(backend)) }),
  };
}

function videoCase(F: number, seed: number): GoldenCase {
  const config: Required<VideoAttentionConfig> = { channels: 8, num_heads: 2, se_ratio: 4, temporal_self: false, rms_norm_eps: 1e-6 };
  const P = 5;
  return {
    name: `attention.video.f${F}`,
    component: "attention.video",
    config: { ...config, frames: F, patches: P },
    seed,
    build() {
      const rng = new Random(seed);
      return { inputs: { video: randBounded(rng, [F, P, 8]) }, params: lively(rng, initVideoAttention(rng, config)) };
    },
    run: (backend, inputs, params) => ({
      y: spaceChannelTimeAttention(asTensor(inputs.video), unflatten(params) as unknown as VideoAttentionWeights, config, kernelsOf(backend)),
    }),
  };
}

export function mlaFamilyGoldenCases(): GoldenCase[] {
  const direct: MlaConfig = { ...MLA_CONFIG, q_lora_rank: 0 };
  return [
    mlaCase("absorb.t5", MLA_CONFIG, "absorb", 5, 5, 3101),
    mlaCase("naive.t5", MLA_CONFIG, "naive", 5, 5, 3101),
    mlaCase("absorb.q-direct.t1", direct, "absorb", 1, 1, 3102),
    mlaCase("absorb.chunked.3-then-4", MLA_CONFIG, "absorb", 7, 3, 3103),
    dsaCase(3201),
    crossCase(3301),
    earlyCase(3302),
    patchCase("single", { channels: 3, patch_size: 4, embed_dim: 8 }, (rng) => randBounded(rng, [3, 4, 4]), 3401),
    patchCase("tiny-32.p8", { channels: 3, patch_size: 8, embed_dim: 16 }, () => tinyImage(), 3402),
    videoCase(1, 3501),
    videoCase(3, 3502),
  ];
}
