// The model's weights: seeded initialisation, and the checkpoint's flat names both ways, for safetensors files.
// In memory a MoE layer keeps its experts stacked ([E, F, D], as src/moe wants them); on disk each expert has its
// own tensors, model.layers.N.mlp.experts.M.gate_proj.weight, as in DeepSeek's checkpoints. Loading checks the
// file against the config's full list of names (params.ts): every missing, extra or mis-shaped tensor is named.

import { argError, TinyseekError } from "../errors.ts";
import { readSafetensors, readBytes, writeSafetensors, type TensorToWrite } from "../io/safetensors.ts";
import type { LayerAdapters } from "../model-adapters.ts";
import { initMoe, type MoeWeights } from "../moe/layer.ts";
import { Random, randn } from "../random.ts";
import { shapeString, tensor, type Tensor } from "../tensor.ts";
import { attentionKind } from "./attention.ts";
import { isMoeLayer, layerKind, moeConfigOf, type ModelConfig, resolveConfig, validateConfig } from "./config.ts";
import { attentionWeightName, mtpBlockConfig, weightShapes } from "./params.ts";

export interface DenseMlpWeights {
  readonly gate_proj: Tensor; // [I, D]
  readonly up_proj: Tensor; // [I, D]
  readonly down_proj: Tensor; // [D, I]
}

export interface LayerWeights {
  readonly input_layernorm: Tensor;
  /** The attention kind's weights by checkpoint name (q_a_proj, kv_b_proj, o_proj, ...). */
  readonly self_attn: Record<string, Tensor>;
  readonly post_attention_layernorm: Tensor;
  readonly mlp: DenseMlpWeights | MoeWeights;
  /** Bottleneck adapters after attention and after the feed-forward (src/lora.ts attaches them). */
  readonly adapters?: LayerAdapters;
}

export interface ModelWeights {
  readonly embed_tokens: Tensor; // [V, D]
  readonly layers: LayerWeights[];
  readonly norm: Tensor; // [D]
  readonly lm_head: Tensor; // [V, D]; the embedding table itself when tie_word_embeddings
  /** The multi-token-prediction layer (num_nextn_predict_layers 1; src/model/mtp.ts), checkpoint layer N = L. */
  readonly mtp?: MtpWeights;
}

/** The MTP layer's weights under model.layers.{L}.: the shared ones only when the checkpoint stores its own copy. */
export interface MtpWeights {
  readonly enorm: Tensor; // [D], RMSNorm of the next token's embedding
  readonly hnorm: Tensor; // [D], RMSNorm of the main model's hidden state
  readonly eh_proj: Tensor; // [D, 2D], over [enorm(embedding) ; hnorm(hidden)]
  /** A decoder block, as layer L of the model (mtpBlockConfig in params.ts). */
  readonly block: LayerWeights;
  readonly norm: Tensor; // [D], shared_head.norm
  /** shared_head.head [V, D] when stored; absent: the main model's lm_head. */
  readonly head?: Tensor;
  /** embed_tokens [V, D] when stored; absent: the main model's. */
  readonly embed_tokens?: Tensor;
}

export interface Model {
  readonly config: ModelConfig;
  readonly weights: ModelWeights;
}

const ones = (n: number) => tensor([n], new Float32Array(n).fill(1));

/** Seeded weights from config.init_seed: linear layers and embeddings N(0, init_std²), norms 1, router bias 0. */
export function initModel(config: ModelConfig): Model {
  validateConfig(config);
  const rng = new Random(config.init_seed);
  const [V, D, I, std] = [config.vocab_size, config.hidden_size, config.intermediate_size, config.init_std];
  const embed_tokens = randn(rng, [V, D], std);
  const initLayer = (c: ModelConfig, l: number): LayerWeights => ({
    input_layernorm: ones(D),
    self_attn: attentionKind(layerKind(c, l)).init(rng, c),
    post_attention_layernorm: ones(D),
    mlp: isMoeLayer(c, l)
      ? initMoe(rng, moeConfigOf(c), D, std)
      : { gate_proj: randn(rng, [I, D], std), up_proj: randn(rng, [I, D], std), down_proj: randn(rng, [D, I], std) },
  });
  const layers = Array.from({ length: config.num_hidden_layers }, (_, l) => initLayer(config, l));
  const norm = ones(D);
  const lm_head = config.tie_word_embeddings ? embed_tokens : randn(rng, [V, D], std);
  if (config.num_nextn_predict_layers === 0) return { config, weights: { embed_tokens, layers, norm, lm_head } };
  // Drawn last, so the main weights are the same with and without an MTP layer; it shares the embedding and the
  // head (no copies of them are made).
  const eh_proj = randn(rng, [D, 2 * D], std);
  const mtp: MtpWeights = { enorm: ones(D), hnorm: ones(D), eh_proj, block: initLayer(mtpBlockConfig(config), config.num_hidden_layers), norm: ones(D) };
  return { config, weights: { embed_tokens, layers, norm, lm_head, mtp } };
}

const isMoe = (mlp: LayerWeights["mlp"]): mlp is MoeWeights => "experts" in mlp;

const isObject = (v: unknown) => typeof v === "object" && v !== null;

/** Throws unless `model` is shaped like what initModel and loadModel return, so a wrong argument is named, not a TypeError. */
export function checkModel(model: Model, argument = "model"): void {
  const m = model as unknown as Record<string, unknown> | null;
  if (!isObject(m) || !isObject(m!.config) || !isObject(m!.weights) || !Array.isArray((m!.weights as { layers?: unknown }).layers)) {
    const got = !isObject(m) ? (m === null ? "null" : typeof m) : `an object with ${Object.keys(m!).join(", ") || "no keys"}`;
    throw argError(argument, "a Model { config, weights } from initModel or loadModel", got);
  }
}

/** Every weight under its checkpoint name, routed experts one by one (views, no copies). */
export function modelParams(model: Model): Map<string, Tensor> {
  checkModel(model);
  const { config, weights } = model;
  const params = new Map<string, Tensor>();
  params.set("model.embed_tokens.weight", weights.embed_tokens);
  const addLayer = (layer: LayerWeights, l: number) => {
    const p = `model.layers.${l}`;
    params.set(`${p}.input_layernorm.weight`, layer.input_layernorm);
    for (const [name, t] of Object.entries(layer.self_attn)) params.set(`${p}.self_attn.${attentionWeightName(name)}`, t);
    params.set(`${p}.post_attention_layernorm.weight`, layer.post_attention_layernorm);
    const mlp = layer.mlp;
    if (!isMoe(mlp)) {
      for (const [name, t] of Object.entries(mlp)) params.set(`${p}.mlp.${name}.weight`, t);
      return;
    }
    params.set(`${p}.mlp.gate.weight`, mlp.gate.weight);
    if (mlp.gate.e_score_correction_bias) params.set(`${p}.mlp.gate.e_score_correction_bias`, mlp.gate.e_score_correction_bias);
    for (let e = 0; e < config.n_routed_experts; e++) {
      for (const [name, stacked] of [["gate_proj", mlp.experts.gate], ["up_proj", mlp.experts.up], ["down_proj", mlp.experts.down]] as const) {
        const [, rows, cols] = stacked.shape as [number, number, number];
        params.set(`${p}.mlp.experts.${e}.${name}.weight`, { shape: [rows, cols], data: stacked.data.subarray(e * rows * cols, (e + 1) * rows * cols) });
      }
    }
    if (mlp.shared_experts) {
      for (const [name, t] of Object.entries(mlp.shared_experts)) params.set(`${p}.mlp.shared_experts.${name}.weight`, t);
    }
  };
  weights.layers.forEach(addLayer);
  params.set("model.norm.weight", weights.norm);
  if (!config.tie_word_embeddings) params.set("lm_head.weight", weights.lm_head);
  const mtp = weights.mtp;
  if (mtp) {
    const p = `model.layers.${config.num_hidden_layers}`;
    if (mtp.embed_tokens) params.set(`${p}.embed_tokens.weight`, mtp.embed_tokens);
    for (const name of ["enorm", "hnorm", "eh_proj"] as const) params.set(`${p}.${name}.weight`, mtp[name]);
    addLayer(mtp.block, config.num_hidden_layers);
    params.set(`${p}.shared_head.norm.weight`, mtp.norm);
    if (mtp.head) params.set(`${p}.shared_head.head.weight`, mtp.head);
  }
  return params;
}

/** A model from checkpoint-named tensors; every missing, extra or mis-shaped tensor is named in one error. */
export function modelFromParams(config: ModelConfig, params: Map<string, Tensor>): Model {
  if (!(params instanceof Map)) throw new TinyseekError(`params: expected a Map of checkpoint names to tensors, got ${typeof params}`);
  const expected = weightShapes(config);
  // The MTP layer is all or nothing: a checkpoint without any of its tensors loads as the main model alone.
  const withMtp = [...expected].some(([name, entry]) => entry.mtp && params.has(name));
  const problems: string[] = [];
  for (const [name, { shape, optional, mtp }] of expected) {
    const t = params.get(name);
    if (!t && (optional || (mtp && !withMtp))) continue; // the MTP layer's own copy of a shared tensor, or no MTP layer
    if (!t) problems.push(`missing tensor "${name}" ${shapeString(shape)}`);
    else if (shapeString(t.shape) !== shapeString(shape)) problems.push(`tensor "${name}": expected shape ${shapeString(shape)}, got ${shapeString(t.shape)}`);
  }
  for (const name of params.keys()) if (!expected.has(name)) problems.push(`unexpected tensor "${name}"`);
  if (problems.length > 0) {
    const shown = problems.slice(0, 12).join("; ") + (problems.length > 12 ? `; … and ${problems.length - 12} more` : "");
    throw new TinyseekError(`weights do not fit the config (${problems.length} problem${problems.length > 1 ? "s" : ""}): ${shown}`);
  }
  const get = (name: string) => params.get(name)!;
  const layers = Array.from({ length: config.num_hidden_layers }, (_, l) => layerFromParams(config, l, get));
  const embed_tokens = get("model.embed_tokens.weight");
  const lm_head = config.tie_word_embeddings ? embed_tokens : get("lm_head.weight");
  const weights = { embed_tokens, layers, norm: get("model.norm.weight"), lm_head };
  return { config, weights: withMtp ? { ...weights, mtp: mtpFromParams(config, (name) => params.get(name)) } : weights };
}

/**
 * The MTP layer (model.layers.{L}.) from checkpoint-named tensors; `find` returns undefined for a tensor the
 * checkpoint lacks (its optional copies of the embedding and the head are then shared with the main model).
 */
export function mtpFromParams(config: ModelConfig, find: (name: string) => Tensor | undefined): MtpWeights {
  const L = config.num_hidden_layers;
  const at = (name: string) => find(`model.layers.${L}.${name}.weight`);
  const need = (name: string) => at(name) ?? missing(`model.layers.${L}.${name}.weight`);
  const [head, embed_tokens] = [at("shared_head.head"), at("embed_tokens")];
  return {
    enorm: need("enorm"), hnorm: need("hnorm"), eh_proj: need("eh_proj"), norm: need("shared_head.norm"),
    block: layerFromParams(mtpBlockConfig(config), L, (name) => find(name) ?? missing(name)),
    ...(head ? { head } : {}), ...(embed_tokens ? { embed_tokens } : {}),
  };
}

const missing = (name: string): never => {
  throw new TinyseekError(`weights: missing tensor "${name}" (the multi-token-prediction layer)`);
};

/**
 * Layer `l` from checkpoint-named tensors (`get` returns each by its name): the shape the forward reads, routed
 * experts stacked. Used for a whole file at once (modelFromParams) and for a layer read when first needed
 * (src/io/checkpoint.ts), so the two cannot disagree.
 */
export function layerFromParams(config: ModelConfig, l: number, get: (name: string) => Tensor, stack: ExpertStacker = stackExperts): LayerWeights {
  const p = `model.layers.${l}`;
  const self_attn = Object.fromEntries(
    Object.keys(attentionKind(layerKind(config, l)).shapes(config)).map((name) => [name, get(`${p}.self_attn.${attentionWeightName(name)}`)]),
  );
  const mlpWeight = (name: string) => get(`${p}.mlp.${name}.weight`);
  let mlp: LayerWeights["mlp"];
  if (!isMoeLayer(config, l)) {
    mlp = { gate_proj: mlpWeight("gate_proj"), up_proj: mlpWeight("up_proj"), down_proj: mlpWeight("down_proj") };
  } else {
    const stacked = (name: string) => stack(config.n_routed_experts, (e) => mlpWeight(`experts.${e}.${name}`), (e) => `${p}.mlp.experts.${e}.${name}.weight`);
    mlp = {
      gate: { weight: mlpWeight("gate"), e_score_correction_bias: config.topk_method === "noaux_tc" ? get(`${p}.mlp.gate.e_score_correction_bias`) : null },
      experts: { gate: stacked("gate_proj"), up: stacked("up_proj"), down: stacked("down_proj") },
      shared_experts: config.n_shared_experts === 0 ? null : {
        gate_proj: mlpWeight("shared_experts.gate_proj"), up_proj: mlpWeight("shared_experts.up_proj"), down_proj: mlpWeight("shared_experts.down_proj"),
      },
    };
  }
  return { input_layernorm: get(`${p}.input_layernorm.weight`), self_attn, post_attention_layernorm: get(`${p}.post_attention_layernorm.weight`), mlp };
}

/** The routed experts' weights stacked [E, rows, cols] (`nameOf` lets a loader read each into its slice instead). */
export type ExpertStacker = (E: number, expert: (e: number) => Tensor, nameOf: (e: number) => string) => Tensor;

function stackExperts(E: number, expert: (e: number) => Tensor): Tensor {
  const first = expert(0);
  const size = first.data.length;
  const data = new Float32Array(E * size);
  for (let e = 0; e < E; e++) data.set(expert(e).data, e * size);
  return { shape: [E, ...first.shape], data };
}

export interface SaveOptions {
  /** F32 (default) or BF16, which rounds every weight to nearest even and halves the file. */
  dtype?: "F32" | "BF16";
  /** More metadata strings beside format, generator and config (a trained checkpoint's summary, say). */
  metadata?: Record<string, string>;
}

/** The model as safetensors bytes, with its config as JSON in the metadata. */
export function modelToSafetensors(model: Model, options: SaveOptions = {}): Uint8Array {
  const dtype = options.dtype ?? "F32";
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, t] of modelParams(model)) tensors.set(name, { dtype, shape: t.shape, data: t.data });
  return writeSafetensors(tensors, { ...options.metadata, format: "pt", generator: "tinyseek", config: JSON.stringify(model.config) });
}

/**
 * A model from safetensors bytes. The config is the one given, else the file's own (metadata "config").
 * Tensors of any float dtype are read as float32.
 */
export function modelFromSafetensors(bytes: Uint8Array, config?: ModelConfig): Model {
  const file = readSafetensors(bytes);
  let resolved = config;
  if (!resolved) {
    const json = file.metadata.config;
    if (json === undefined) throw new TinyseekError(`weights: the file has no "config" metadata; pass --config`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch (error) {
      throw new TinyseekError(`weights: the file's "config" metadata is not valid JSON (${(error as Error).message})`);
    }
    resolved = resolveConfig(parsed as Record<string, unknown>);
  }
  const params = new Map<string, Tensor>();
  for (const [name, t] of file.tensors) {
    if (!(t.data instanceof Float32Array) && !(t.data instanceof Float64Array)) {
      throw new TinyseekError(`weights: tensor "${name}" has dtype ${t.dtype}, expected a float dtype`);
    }
    params.set(name, { shape: [...t.shape], data: t.data instanceof Float32Array ? t.data : Float32Array.from(t.data) });
  }
  return modelFromParams(resolved, params);
}

export async function loadModel(path: string, config?: ModelConfig): Promise<Model> {
  return modelFromSafetensors(await readBytes(path), config);
}

export async function saveModel(path: string, model: Model, options: SaveOptions = {}): Promise<void> {
  const { writeFile } = await import("node:fs/promises"); // loaded on use: the rest runs in a browser too
  await writeFile(path, modelToSafetensors(model, options));
}
