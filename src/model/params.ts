// Every weight of a model by its checkpoint name and shape, and the parameter counter built on that list.
// Names follow the Hugging Face DeepSeek-V3 checkpoint: model.embed_tokens.weight,
// model.layers.N.self_attn.kv_a_proj_with_mqa.weight, model.layers.N.mlp.experts.M.gate_proj.weight, model.norm.weight,
// lm_head.weight. The same list drives initialisation checks, save and load, so the three cannot disagree.
//   total  = every weight (embeddings, head, norms, gate weights and biases); multi-token-prediction layers excluded
//   active = what one token touches, the embedding table excepted: attention, norms, the k routed and the shared
//            experts, the gate's weight and bias, the final norm, the head
//   mtp    = the multi-token-prediction layer N = num_hidden_layers (src/model/mtp.ts) as DeepSeek's release stores
//            it: eh_proj, enorm, hnorm, its block, shared_head.norm, and its copies of the embedding and the head

import { numel } from "../tensor.ts";
import { attentionKind } from "./attention.ts";
import { isMoeLayer, layerKind, type ModelConfig, validateConfig } from "./config.ts";

/** What a weight belongs to, for the active count. */
export type WeightRole = "embedding" | "always" | "routed-expert";

export interface WeightEntry {
  readonly shape: number[];
  readonly role: WeightRole;
  /** Part of the multi-token-prediction layer: counted apart (ParameterCount.mtp), not in total or active. */
  readonly mtp?: boolean;
  /** May be absent from a checkpoint: the MTP layer's copies of the embedding and the head (shared when absent). */
  readonly optional?: boolean;
}

/** Every weight of `config`, in checkpoint order, with its shape and role. */
export function weightShapes(config: ModelConfig): Map<string, WeightEntry> {
  validateConfig(config);
  const D = config.hidden_size;
  const entries = new Map<string, WeightEntry>();
  const add = (name: string, shape: number[], role: WeightRole = "always") => entries.set(name, { shape, role });
  add("model.embed_tokens.weight", [config.vocab_size, D], "embedding");
  for (let l = 0; l < config.num_hidden_layers; l++) addBlock(add, config, l);
  add("model.norm.weight", [D]);
  if (!config.tie_word_embeddings) add("lm_head.weight", [config.vocab_size, D]);
  if (config.num_nextn_predict_layers > 0) addMtp(entries, config);
  return entries;
}

/** The MTP layer N = num_hidden_layers as DeepSeek's checkpoints name it (src/model/mtp.ts). */
function addMtp(entries: Map<string, WeightEntry>, config: ModelConfig): void {
  const [V, D, N] = [config.vocab_size, config.hidden_size, config.num_hidden_layers];
  const p = `model.layers.${N}`;
  const add = (name: string, shape: number[], role: WeightRole = "always", optional = false) =>
    entries.set(name, optional ? { shape, role, mtp: true, optional } : { shape, role, mtp: true });
  add(`${p}.embed_tokens.weight`, [V, D], "embedding", true);
  add(`${p}.enorm.weight`, [D]);
  add(`${p}.hnorm.weight`, [D]);
  add(`${p}.eh_proj.weight`, [D, 2 * D]);
  addBlock(add, mtpBlockConfig(config), N);
  add(`${p}.shared_head.norm.weight`, [D]);
  add(`${p}.shared_head.head.weight`, [V, D], "always", true);
}

/**
 * The config under which the MTP block is layer N = num_hidden_layers of a model one layer deeper: its attention
 * is the last main layer's kind, its feed-forward MoE as any layer from first_k_dense_replace on. The forward, the
 * cache and the weights then treat it as one more layer.
 */
export function mtpBlockConfig(config: ModelConfig): ModelConfig {
  const kind = config.attention_kind;
  const last = layerKind(config, config.num_hidden_layers - 1);
  return { ...config, num_hidden_layers: config.num_hidden_layers + 1, attention_kind: Array.isArray(kind) ? [...kind, last] : kind, num_nextn_predict_layers: 0 };
}

/** Layer l's weights: its norms, its attention kind's weights, and its dense MLP or MoE. */
function addBlock(add: (name: string, shape: number[], role?: WeightRole) => void, config: ModelConfig, l: number): void {
  const D = config.hidden_size;
  const p = `model.layers.${l}`;
  add(`${p}.input_layernorm.weight`, [D]);
  const attention = attentionKind(layerKind(config, l)).shapes(config);
  for (const [name, shape] of Object.entries(attention)) add(`${p}.self_attn.${attentionWeightName(name)}`, shape);
  add(`${p}.post_attention_layernorm.weight`, [D]);
  if (!isMoeLayer(config, l)) {
    const I = config.intermediate_size;
    add(`${p}.mlp.gate_proj.weight`, [I, D]);
    add(`${p}.mlp.up_proj.weight`, [I, D]);
    add(`${p}.mlp.down_proj.weight`, [D, I]);
    return;
  }
  const [E, F, S] = [config.n_routed_experts, config.moe_intermediate_size, config.n_shared_experts];
  add(`${p}.mlp.gate.weight`, [E, D]);
  if (config.topk_method === "noaux_tc") add(`${p}.mlp.gate.e_score_correction_bias`, [E]);
  for (let e = 0; e < E; e++) {
    add(`${p}.mlp.experts.${e}.gate_proj.weight`, [F, D], "routed-expert");
    add(`${p}.mlp.experts.${e}.up_proj.weight`, [F, D], "routed-expert");
    add(`${p}.mlp.experts.${e}.down_proj.weight`, [D, F], "routed-expert");
  }
  if (S > 0) {
    add(`${p}.mlp.shared_experts.gate_proj.weight`, [S * F, D]);
    add(`${p}.mlp.shared_experts.up_proj.weight`, [S * F, D]);
    add(`${p}.mlp.shared_experts.down_proj.weight`, [D, S * F]);
  }
}

/**
 * The checkpoint name, under self_attn., of the attention weight a kind keeps as `name`: `<name>.weight`,
 * projections and norms alike, except a LayerNorm's bias, kept as `<norm>_bias` and stored as `<norm>.bias`
 * (DeepSeek-V3.2's indexer.k_norm.bias).
 */
export function attentionWeightName(name: string): string {
  const bias = /^(.*_norm)_bias$/.exec(name);
  return bias ? `${bias[1]}.bias` : `${name}.weight`;
}

export interface ParameterCount {
  total: number;
  active: number;
  /** The MTP layer's tensors as the release stores them (0 without one); not in total or active. */
  mtp: number;
  /** Totals by part: embedding, attention, dense MLP, routed experts, shared experts, router, norms, head. */
  parts: Record<string, number>;
}

/** Total and active-per-token parameters of any config, exactly (no weights are allocated). */
export function countParameters(config: ModelConfig): ParameterCount {
  let [total, routedTotal] = [0, 0];
  const parts: Record<string, number> = {};
  const routedLayers = new Set<number>();
  let mtp = 0;
  for (const [name, { shape, role, mtp: inMtp }] of weightShapes(config)) {
    const n = numel(shape);
    if (inMtp) {
      mtp += n;
      continue;
    }
    total += n;
    parts[partOf(name)] = (parts[partOf(name)] ?? 0) + n;
    if (role === "routed-expert") {
      routedTotal += n;
      routedLayers.add(Number(name.split(".")[2]));
    }
  }
  const embedding = config.vocab_size * config.hidden_size;
  // A token runs num_experts_per_tok of each MoE layer's n_routed_experts experts.
  const routedActive = (routedTotal / Math.max(config.n_routed_experts, 1)) * config.num_experts_per_tok;
  const head = config.tie_word_embeddings ? embedding : 0; // a tied head is the table, touched as the head
  return { total, active: total - embedding - routedTotal + routedActive + head, mtp, parts };
}

function partOf(name: string): string {
  if (name.startsWith("model.embed_tokens")) return "embedding";
  if (name.startsWith("lm_head")) return "head";
  if (name.includes(".self_attn.")) return "attention";
  if (name.includes(".mlp.experts.")) return "routed experts";
  if (name.includes(".mlp.shared_experts.")) return "shared experts";
  if (name.includes(".mlp.gate.")) return "router";
  if (name.includes(".mlp.")) return "dense mlp";
  return "norms";
}
