// Multi-head latent attention (DeepSeek-V2 §2.1, DeepSeek-V3 inference/model.py class MLA).
//
//   q      = W_q x                       or  W_qb · RMSNorm(W_qa x)          (q_lora_rank = 0 or > 0)
//   [c ; k_pe] = W_kva x,   c ← RMSNorm(c)                                   latent c: kv_lora_rank numbers
//   q_pe, k_pe rotated (RoPE, YaRN when extended); k_pe is one key shared by every head
//   k_h = [W_uk,h c ; k_pe],  v_h = W_uv,h c                                  (W_kvb = [W_uk ; W_uv] per head)
//   o   = W_o · concat_h softmax(q_h·k_hᵀ · scale) v_h,   scale = mscale² / sqrt(qk_nope + qk_rope)
//
// `naive` builds k and v per head and caches them; `absorb` folds W_uk into the query and W_uv into the output,
// so attention runs over the cached latent itself: multi-query attention with keys [c ; k_pe] and values c, one kv
// head. The cache then holds kv_lora_rank + qk_rope_head_dim numbers per token, the point of MLA.

import { argError, checkInteger, checkNumber, checkOneOf, TinyseekError } from "../errors.ts";
import { reference, type Kernels } from "../kernels.ts";
import { type Random, randn } from "../random.ts";
import { ropeFrequencies, yarnSoftmaxFactor, type YarnOptions } from "../rope.ts";
import { expectShape, markConstant, reshape, shapeString, tensor, type Tensor } from "../tensor.ts";
import { appendTime, concatLast, mergeHeads, splitHeads } from "./heads.ts";

/** YaRN settings with DeepSeek-V3's config.json names. */
export interface RopeScaling {
  type?: "yarn";
  factor: number;
  original_max_position_embeddings: number;
  beta_fast?: number; // default 32
  beta_slow?: number; // default 1
  mscale?: number; // default 1
  mscale_all_dim?: number; // default: mscale
}

/** The attention fields of a DeepSeek-V3 config.json. */
export interface MlaConfig {
  hidden_size: number;
  num_attention_heads: number;
  /** 0 (or null, as V2-Lite writes it): queries straight from x through q_proj. */
  q_lora_rank: number | null;
  kv_lora_rank: number;
  qk_nope_head_dim: number;
  qk_rope_head_dim: number;
  v_head_dim: number;
  max_position_embeddings: number;
  rope_theta?: number; // default 10000
  rope_scaling?: RopeScaling | null;
  rms_norm_eps?: number; // default 1e-6
}

/** DeepSeek-V3 checkpoint names (…self_attn.<name>.weight), linear weights as [out, in]. */
export interface MlaWeights {
  q_proj?: Tensor; // [H·(dn + dr), D]                 when q_lora_rank = 0
  q_a_proj?: Tensor; // [q_lora_rank, D]                 otherwise
  q_a_layernorm?: Tensor; // [q_lora_rank]
  q_b_proj?: Tensor; // [H·(dn + dr), q_lora_rank]
  kv_a_proj_with_mqa: Tensor; // [kv_lora_rank + dr, D]
  kv_a_layernorm: Tensor; // [kv_lora_rank]
  kv_b_proj: Tensor; // [H·(dn + dv), kv_lora_rank]
  o_proj: Tensor; // [D, H·dv]
}

export const MLA_MODES = ["naive", "absorb"] as const;
export type MlaMode = (typeof MLA_MODES)[number];

/**
 * What earlier calls left for later ones. `length` is the number of positions held, so the next token sits at
 * absolute position `length`. absorb: the normalised latent [B, L, kv_lora_rank] and the rotated shared key
 * [B, L, qk_rope_head_dim]; naive: full keys [B, H, L, dn + dr] and values [B, H, L, dv].
 */
export type MlaCache =
  | { readonly mode: "absorb"; length: number; latent: Tensor; pe: Tensor }
  | { readonly mode: "naive"; length: number; keys: Tensor; values: Tensor };

/**
 * How the queries meet the cached keys. The default is dense causal attention through `kernels.attention`
 * (queries at absolute positions offset … offset + T - 1); DSA passes one that attends only its top-k keys.
 * q [B, H, T, dq], k [B, Hkv, L, dq], v [B, Hkv, L, dv] → [B, H, T, dv].
 */
export type MlaAttend = (q: Tensor, k: Tensor, v: Tensor, scale: number, offset: number, kernels: Kernels) => Tensor;

export const denseCausal: MlaAttend = (q, k, v, scale, offset, kernels) =>
  kernels.attention(q, k, v, { mask: { causal: true, offset }, scale });

/** Configs checkMlaConfig returned: frozen, so checking one again (each forward does, several times) is free. */
const checkedConfigs = new WeakSet<object>();

/** Checks every field and returns the config with its defaults filled in. */
export function checkMlaConfig(config: MlaConfig): Required<MlaConfig> & { q_lora_rank: number } {
  if (typeof config !== "object" || config === null) throw argError("config", "an MLA config object", config);
  if (checkedConfigs.has(config)) return config as Required<MlaConfig> & { q_lora_rank: number };
  checkInteger("config.hidden_size", config.hidden_size, 1);
  checkInteger("config.num_attention_heads", config.num_attention_heads, 1);
  const qLora = config.q_lora_rank ?? 0;
  checkInteger("config.q_lora_rank", qLora, 0);
  checkInteger("config.kv_lora_rank", config.kv_lora_rank, 1);
  checkInteger("config.qk_nope_head_dim", config.qk_nope_head_dim, 1);
  checkInteger("config.qk_rope_head_dim", config.qk_rope_head_dim, 2);
  if (config.qk_rope_head_dim % 2 !== 0) throw argError("config.qk_rope_head_dim", "an even number", config.qk_rope_head_dim);
  checkInteger("config.v_head_dim", config.v_head_dim, 1);
  checkInteger("config.max_position_embeddings", config.max_position_embeddings, 1);
  const theta = config.rope_theta ?? 10000;
  checkNumber("config.rope_theta", theta, 1, Infinity);
  const eps = config.rms_norm_eps ?? 1e-6;
  checkNumber("config.rms_norm_eps", eps, 0, 1);
  const s = config.rope_scaling ?? null;
  if (s !== null) {
    if (s.type !== undefined) checkOneOf("config.rope_scaling.type", s.type, ["yarn"]);
    checkNumber("config.rope_scaling.factor", s.factor, 1, Infinity);
    checkInteger("config.rope_scaling.original_max_position_embeddings", s.original_max_position_embeddings, 1);
    checkNumber("config.rope_scaling.beta_fast", s.beta_fast ?? 32, 0, Infinity);
    checkNumber("config.rope_scaling.beta_slow", s.beta_slow ?? 1, 0, Infinity);
    checkNumber("config.rope_scaling.mscale", s.mscale ?? 1, 0, Infinity);
    // HF scales cos/sin by yarn_mscale(mscale) / yarn_mscale(mscale_all_dim); every published DeepSeek config has
    // the two equal (V3: 1, V2: 0.707), which makes that factor 1. We implement only that case.
    if ((s.mscale_all_dim ?? s.mscale ?? 1) !== (s.mscale ?? 1)) {
      throw argError("config.rope_scaling.mscale_all_dim", `equal to mscale (${s.mscale ?? 1})`, s.mscale_all_dim);
    }
  }
  const checked = Object.freeze({ ...config, q_lora_rank: qLora, rope_theta: theta, rms_norm_eps: eps, rope_scaling: s });
  checkedConfigs.add(checked);
  return checked;
}

/** The YaRN options rope.ts reads, or undefined when the config has no rope scaling. */
export function yarnOptions(config: MlaConfig): YarnOptions | undefined {
  const s = config.rope_scaling;
  if (!s) return undefined;
  return {
    factor: s.factor,
    originalMaxPosition: s.original_max_position_embeddings,
    maxPosition: config.max_position_embeddings,
    betaFast: s.beta_fast ?? 32,
    betaSlow: s.beta_slow ?? 1,
    mscale: s.mscale_all_dim ?? s.mscale ?? 1,
  };
}

/** 1/sqrt(qk_nope + qk_rope), times YaRN's mscale² when the configured length extends the original one. */
export function mlaSoftmaxScale(config: MlaConfig): number {
  return yarnSoftmaxFactor(yarnOptions(config)) / Math.sqrt(config.qk_nope_head_dim + config.qk_rope_head_dim);
}

/** Numbers the cache stores per token: kv_lora_rank + qk_rope_head_dim for absorb, H·(dn + dr + dv) for naive. */
export function mlaCacheNumbersPerToken(config: MlaConfig, mode: MlaMode = "absorb"): number {
  const c = checkMlaConfig(config);
  checkOneOf("mode", mode, MLA_MODES);
  if (mode === "absorb") return c.kv_lora_rank + c.qk_rope_head_dim;
  return c.num_attention_heads * (c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim);
}

/** An empty cache for `batch` sequences. */
export function createMlaCache(config: MlaConfig, mode: MlaMode = "absorb", batch = 1): MlaCache {
  const c = checkMlaConfig(config);
  checkOneOf("mode", mode, MLA_MODES);
  checkInteger("batch", batch, 1);
  const H = c.num_attention_heads;
  if (mode === "absorb") {
    return { mode, length: 0, latent: tensor([batch, 0, c.kv_lora_rank]), pe: tensor([batch, 0, c.qk_rope_head_dim]) };
  }
  const dk = c.qk_nope_head_dim + c.qk_rope_head_dim;
  return { mode, length: 0, keys: tensor([batch, H, 0, dk]), values: tensor([batch, H, 0, c.v_head_dim]) };
}

/** Seeded weights: linear layers N(0, 0.02²) as in V3's init, norms at 1. Drawn in checkpoint order. */
export function initMla(rng: Random, config: MlaConfig): MlaWeights {
  const c = checkMlaConfig(config);
  const [D, H, dq] = [c.hidden_size, c.num_attention_heads, c.qk_nope_head_dim + c.qk_rope_head_dim];
  const ones = (n: number) => tensor([n], new Float32Array(n).fill(1));
  const query =
    c.q_lora_rank === 0
      ? { q_proj: randn(rng, [H * dq, D], 0.02) }
      : {
          q_a_proj: randn(rng, [c.q_lora_rank, D], 0.02),
          q_a_layernorm: ones(c.q_lora_rank),
          q_b_proj: randn(rng, [H * dq, c.q_lora_rank], 0.02),
        };
  return {
    ...query,
    kv_a_proj_with_mqa: randn(rng, [c.kv_lora_rank + c.qk_rope_head_dim, D], 0.02),
    kv_a_layernorm: ones(c.kv_lora_rank),
    kv_b_proj: randn(rng, [H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank], 0.02),
    o_proj: randn(rng, [D, H * c.v_head_dim], 0.02),
  };
}

export function checkMlaWeights(weights: MlaWeights, config: MlaConfig): void {
  const c = checkMlaConfig(config);
  if (typeof weights !== "object" || weights === null) throw argError("weights", "an MLA weights object", weights);
  const [D, H, dq] = [c.hidden_size, c.num_attention_heads, c.qk_nope_head_dim + c.qk_rope_head_dim];
  const w = weights as unknown as Record<string, Tensor>;
  const check = (name: string, shape: number[]) => expectShape(`weights.${name}`, w[name], shape);
  if (c.q_lora_rank === 0) {
    check("q_proj", [H * dq, D]);
  } else {
    check("q_a_proj", [c.q_lora_rank, D]);
    check("q_a_layernorm", [c.q_lora_rank]);
    check("q_b_proj", [H * dq, c.q_lora_rank]);
  }
  check("kv_a_proj_with_mqa", [c.kv_lora_rank + c.qk_rope_head_dim, D]);
  check("kv_a_layernorm", [c.kv_lora_rank]);
  check("kv_b_proj", [H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank]);
  check("o_proj", [D, H * c.v_head_dim]);
}

/** The per-token pieces of MLA before attention, at absolute positions `positions`. */
export interface MlaProjections {
  qNope: Tensor; // [B, H, T, dn]
  qPe: Tensor; // [B, H, T, dr], rotated
  latent: Tensor; // [B, T, kv_lora_rank], normalised
  kPe: Tensor; // [B, T, dr], rotated
}

export function mlaProjections(
  x: Tensor, weights: MlaWeights, config: MlaConfig, positions: ArrayLike<number>, kernels: Kernels,
): MlaProjections {
  const c = checkMlaConfig(config);
  const [H, dn, dr] = [c.num_attention_heads, c.qk_nope_head_dim, c.qk_rope_head_dim];
  const freqs = ropeFrequencies({ dim: dr, theta: c.rope_theta, yarn: yarnOptions(c) });
  const queryLatent = () => kernels.rmsnorm(kernels.linear(x, weights.q_a_proj!), weights.q_a_layernorm!, c.rms_norm_eps);
  const q = c.q_lora_rank === 0 ? kernels.linear(x, weights.q_proj!) : kernels.linear(queryLatent(), weights.q_b_proj!);
  const [qNope, qPeRaw] = splitHeads(q, H, [dn, dr]) as [Tensor, Tensor];
  const [latentRaw, kPeRaw] = splitHeads(kernels.linear(x, weights.kv_a_proj_with_mqa), 1, [c.kv_lora_rank, dr]);
  const [B, T] = x.shape as [number, number];
  return {
    qNope,
    qPe: kernels.rope(qPeRaw!, positions, freqs),
    latent: kernels.rmsnorm(reshape(latentRaw!, [B, T, c.kv_lora_rank]), weights.kv_a_layernorm, c.rms_norm_eps),
    kPe: kernels.rope(reshape(kPeRaw!, [B, T, dr]), positions, freqs),
  };
}

/**
 * MLA over x [B, T, D] (or [T, D]) → the same shape. With a cache, x continues the sequences it holds: the new
 * tokens sit at positions cache.length … cache.length + T - 1, see every cached key and, causally, each other,
 * and are appended to the cache. Without one, x is a whole sequence from position 0.
 */
export function mla(
  x: Tensor,
  weights: MlaWeights,
  config: MlaConfig,
  cache?: MlaCache,
  kernels: Kernels = reference,
  mode: MlaMode = cache?.mode ?? "absorb",
  attend: MlaAttend = denseCausal,
): Tensor {
  const c = checkMlaConfig(config);
  checkMlaWeights(weights, c);
  checkOneOf("mode", mode, MLA_MODES);
  const flat = x?.shape?.length === 2;
  const x3 = flat ? reshape(x, [1, ...x.shape]) : x;
  const { B, T } = expectShape("x", x3, ["B", "T", c.hidden_size]);
  const live = cache ?? createMlaCache(c, mode, B);
  if (live.mode !== mode) throw argError("mode", `the cache's mode "${live.mode}"`, mode);
  const cachedBatch = (live.mode === "absorb" ? live.latent : live.keys).shape[0];
  if (cachedBatch !== B) throw argError("x", `batch ${cachedBatch} to match the cache`, shapeString(x.shape));
  const start = live.length;
  checkInteger("cache.length", start, 0);
  // The length says where the next token sits; tensors holding another number of positions would misplace it.
  const held = live.mode === "absorb" ? { latent: live.latent.shape[1], pe: live.pe.shape[1] } : { keys: live.keys.shape[2], values: live.values.shape[2] };
  for (const [name, n] of Object.entries(held)) {
    if (n !== start) throw argError(`cache.${name}`, `${start} position${start === 1 ? "" : "s"} (cache.length)`, shapeString((live as unknown as Record<string, Tensor>)[name]!.shape));
  }
  if (start + T > c.max_position_embeddings) {
    const limit = c.max_position_embeddings;
    throw new TinyseekError(`x: ${start} cached + ${T} new positions exceed max_position_embeddings ${limit}`);
  }

  const positions = Array.from({ length: T }, (_, i) => start + i);
  const p = mlaProjections(x3, weights, c, positions, kernels);
  const scale = mlaSoftmaxScale(c);
  const heads = live.mode === "absorb"
    ? absorb(p, weights, c, live, scale, start, kernels, attend)
    : naive(p, weights, c, live, scale, start, kernels, attend);
  live.length = start + T;
  const out = kernels.linear(mergeHeads(heads), weights.o_proj);
  return flat ? reshape(out, [T, c.hidden_size]) : out;
}

/** Per-head keys and values from the latent, cached in full: what the reference calls attn_impl = "naive". */
function naive(
  p: MlaProjections, weights: MlaWeights, c: ReturnType<typeof checkMlaConfig>, cache: MlaCache & { mode: "naive" },
  scale: number, start: number, kernels: Kernels, attend: MlaAttend,
): Tensor {
  const [B, T] = p.latent.shape as [number, number];
  const kv = kernels.linear(p.latent, weights.kv_b_proj);
  const [kNope, v] = splitHeads(kv, c.num_attention_heads, [c.qk_nope_head_dim, c.v_head_dim]);
  const k = concatLast([kNope!, reshape(p.kPe, [B, 1, T, c.qk_rope_head_dim])]); // the rotary key, shared by all heads
  const [keys, values] = [appendTime(cache.keys, k), appendTime(cache.values, v!)]; // H planes: copied
  const out = attend(concatLast([p.qNope, p.qPe]), keys, values, scale, start, kernels);
  [cache.keys, cache.values] = [keys, values]; // the cache changes only once the call has succeeded
  return out;
}

/** Attention over the latent itself: W_uk folded into the query, W_uv applied after (attn_impl = "absorb"). */
function absorb(
  p: MlaProjections, weights: MlaWeights, c: ReturnType<typeof checkMlaConfig>, cache: MlaCache & { mode: "absorb" },
  scale: number, start: number, kernels: Kernels, attend: MlaAttend,
): Tensor {
  const [B, T] = p.latent.shape as [number, number];
  const { wUk, wUvT } = absorbedWeights(weights.kv_b_proj, c, B);
  const [latent, pe] = [appendTime(cache.latent, p.latent), appendTime(cache.pe, p.kPe)]; // in place when B = 1
  const L = cache.length + T;
  const qLatent = kernels.bmm(p.qNope, wUk); // [B, H, T, kv_lora_rank]: q_nope·W_uk,h
  const keys = reshape(joinedKeys(cache, latent, pe, p), [B, 1, L, c.kv_lora_rank + c.qk_rope_head_dim]);
  const values = reshape(latent, [B, 1, L, c.kv_lora_rank]);
  const outLatent = attend(concatLast([qLatent, p.qPe]), keys, values, scale, start, kernels);
  [cache.latent, cache.pe] = [latent, pe]; // the cache changes only once the call has succeeded
  return kernels.bmm(outLatent, wUvT); // [B, H, T, dv]
}

/**
 * The keys attention reads, [c ; k_pe] per position: [B, L, kv_lora_rank + dr]. Joining the whole cache at every
 * step costs O(L) (a fresh allocation included), so the joined keys are kept beside the cache, keyed by its latent
 * tensor, and grown in place with it (appendTime); they are joined afresh only for a cache this code did not grow
 * (a copied one). A second copy of the cache in memory: the price of a kernel that takes one key tensor.
 */
const joined = new WeakMap<Tensor, { pe: Tensor; keys: Tensor }>();

function joinedKeys(cache: MlaCache & { mode: "absorb" }, latent: Tensor, pe: Tensor, p: MlaProjections): Tensor {
  const held = joined.get(cache.latent);
  const keys = held && held.pe === cache.pe && held.keys.shape[1] === cache.length
    ? appendTime(held.keys, concatLast([p.latent, p.kPe]))
    : concatLast([latent, pe]);
  joined.set(latent, { pe, keys });
  return keys;
}

/**
 * kv_b_proj [H·(dn + dv), c] cut per head into W_uk [dn, c] and W_uvᵀ [c, dv], repeated over the batch for bmm.
 * Made once per weight tensor (and batch size), not on every call: a weight is never changed in place (LoRA and
 * quantisation make new tensors), so the tensor object is the key.
 */
const absorbed = new WeakMap<Tensor, Map<string, { wUk: Tensor; wUvT: Tensor }>>();

function absorbedWeights(kvB: Tensor, c: ReturnType<typeof checkMlaConfig>, B: number) {
  const [H, dn, dv, r] = [c.num_attention_heads, c.qk_nope_head_dim, c.v_head_dim, c.kv_lora_rank];
  const key = `${B} ${H} ${dn} ${dv} ${r}`;
  let byShape = absorbed.get(kvB);
  if (!byShape) absorbed.set(kvB, (byShape = new Map()));
  let made = byShape.get(key);
  if (made) return made;
  const wUk = new Float32Array(B * H * dn * r);
  const wUvT = new Float32Array(B * H * r * dv);
  for (let h = 0; h < H; h++) {
    const head = h * (dn + dv) * r;
    for (let b = 0; b < B; b++) wUk.set(kvB.data.subarray(head, head + dn * r), (b * H + h) * dn * r);
    for (let i = 0; i < r; i++) {
      for (let d = 0; d < dv; d++) {
        const value = kvB.data[head + (dn + d) * r + i]!;
        for (let b = 0; b < B; b++) wUvT[((b * H + h) * r + i) * dv + d] = value;
      }
    }
  }
  made = { wUk: markConstant({ shape: [B, H, dn, r], data: wUk }), wUvT: markConstant({ shape: [B, H, r, dv], data: wUvT }) };
  byShape.set(key, made);
  return made;
}
