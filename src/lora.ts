// LoRA and bottleneck adapters on a whole model (spec/adapters.md), over src/adapters.ts's single-layer pieces.
// Targets are module names as PEFT's target_modules gives them. The material's `q_proj` and `v_proj` map onto MLA:
// q_proj → q_b_proj (or q_proj when q_lora_rank = 0), v_proj → the value half of kv_b_proj (its rows
// h·(qk_nope + v_head) + qk_nope … for each head h); other names, and globs, pick linear weights by name.
//   attach   the model applies x·Wᵀ + (alpha/r)·(x·Aᵀ)·Bᵀ where a LoRA hangs (unmerged; src/model-adapters.ts)
//   merge    W ← W + ΔW in place of the weight;  unmerge: W ← W - ΔW
// Saved alone as PEFT names them: base_model.model.<module>.lora_A.weight [r, in] and .lora_B.weight [rows, r], with
// metadata rank, alpha and target_modules; bottleneck adapters as base_model.model.model.layers.N.adapter_{attn,mlp}
// .{down,up}.weight with metadata bottleneck and activation.

import { initBottleneck, initLora, mergeLora, unmergeLora, type AdapterActivation, type BottleneckAdapter, type Lora } from "./adapters.ts";
import { argError, checkInteger, checkOneOf, TinyseekError } from "./errors.ts";
import { readSafetensors, writeSafetensors, type TensorToWrite } from "./io/safetensors.ts";
import { namedWeights, replaceWeights, type HookedWeight, type LayerAdapters } from "./model-adapters.ts";
import { layerKind } from "./model/config.ts";
import type { LayerWeights, Model } from "./model/weights.ts";
import { linearNames, selectNames } from "./quant/model.ts";
import type { Random } from "./random.ts";
import type { Tensor } from "./tensor.ts";

export interface LoraTarget {
  /** Checkpoint weight name, e.g. model.layers.0.self_attn.kv_b_proj.weight. */
  readonly name: string;
  /** The output rows the LoRA writes (the value half of kv_b_proj), or all. */
  readonly rows?: Int32Array;
}

/** The weights `modules` names on this model, with MLA's q_proj / v_proj mapping. */
export function loraTargets(model: Model, modules: readonly string[]): LoraTarget[] {
  if (!Array.isArray(modules) || modules.length === 0) throw argError("targets", "at least one module name", modules);
  const c = model.config;
  const linear = linearNames(model);
  const targets = new Map<string, LoraTarget>();
  for (const module of modules) {
    let found: LoraTarget[];
    if (module === "q_proj" || module === "v_proj") {
      found = [];
      for (let l = 0; l < c.num_hidden_layers; l++) {
        const p = `model.layers.${l}.self_attn`;
        if (layerKind(c, l) !== "mla" && layerKind(c, l) !== "dsa") { // DSA's attention is MLA's
          if (linear.includes(`${p}.${module}.weight`)) found.push({ name: `${p}.${module}.weight` });
        } else if (module === "q_proj") {
          found.push({ name: `${p}.${c.q_lora_rank ? "q_b_proj" : "q_proj"}.weight` });
        } else {
          found.push({ name: `${p}.kv_b_proj.weight`, rows: valueRows(c.num_attention_heads, c.qk_nope_head_dim, c.v_head_dim) });
        }
      }
      if (found.length === 0) throw new TinyseekError(`targets: "${module}" matches no linear layer of this model`);
    } else {
      found = selectNames(linear, [module], "linear layer").map((name) => ({ name }));
    }
    for (const t of found) targets.set(t.name, t);
  }
  return [...targets.values()];
}

/** kv_b_proj's rows are per head [k_nope (dn) ; v (dv)]: the v rows of every head. */
function valueRows(H: number, dn: number, dv: number): Int32Array {
  return Int32Array.from({ length: H * dv }, (_, i) => Math.floor(i / dv) * (dn + dv) + dn + (i % dv));
}

export interface LoraSet {
  /** The module names as given (PEFT's target_modules). */
  readonly targets: readonly string[];
  readonly rank: number;
  readonly alpha: number;
  /** By checkpoint weight name. */
  readonly loras: ReadonlyMap<string, Lora>;
}

export interface LoraOptions {
  targets?: readonly string[]; // default ["q_proj", "v_proj"], the material's
  rank?: number; // default 8
  alpha?: number; // default 16, the material's
}

/** Fresh LoRAs (B = 0: the model is unchanged) on the targeted weights. */
export function initModelLora(model: Model, rng: Random, options: LoraOptions = {}): LoraSet {
  const { targets = ["q_proj", "v_proj"], rank = 8, alpha = 16 } = options;
  checkInteger("rank", rank, 1);
  const weights = namedWeights(model);
  const loras = new Map<string, Lora>();
  for (const t of loraTargets(model, targets)) {
    const [out, inDim] = weights.get(t.name)!.shape as [number, number];
    if (rank > Math.min(out, inDim)) throw argError("rank", `an integer in [1, ${Math.min(out, inDim)}] for ${t.name} [${out}, ${inDim}]`, rank);
    loras.set(t.name, initLora(rng, [out, inDim], rank, alpha, t.rows));
  }
  return { targets: [...targets], rank, alpha, loras };
}

function checkFits(weights: Map<string, Tensor>, set: LoraSet): void {
  if (typeof set !== "object" || set === null || !(set.loras instanceof Map)) throw argError("set", "a LoraSet from initModelLora or adaptersFromSafetensors", set === null ? "null" : typeof set?.loras);
  for (const name of set.loras.keys()) if (!weights.has(name)) throw argError("lora", "weights of this model", name);
}

/** The model applying each LoRA unmerged: W stays as it is (quantised too: QLoRA), the update runs beside it. */
export function attachLora(model: Model, set: LoraSet): Model {
  const weights = namedWeights(model);
  checkFits(weights, set);
  const hooked = new Map<string, Tensor>();
  for (const [name, lora] of set.loras) {
    const base = weights.get(name)!;
    // data: W + ΔW, what a reader of the matrix sees (MLA's absorbed path folds kv_b_proj into the query).
    const { data } = mergeLora(base, lora); // checks the shapes too
    hooked.set(name, { shape: [...base.shape], data, lora: { base, lora } } as HookedWeight);
  }
  return replaceWeights(model, hooked);
}

function foldEach(model: Model, set: LoraSet, fold: (w: Tensor, lora: Lora) => Tensor): Model {
  const weights = namedWeights(model);
  checkFits(weights, set);
  const folded = new Map<string, Tensor>();
  for (const [name, lora] of set.loras) {
    const w = weights.get(name)! as HookedWeight;
    if (w.quant || w.lora) throw new TinyseekError(`lora: "${name}" is ${w.quant ? "quantised" : "already carrying a LoRA"}; merge into a float weight`);
    folded.set(name, fold(w, lora));
  }
  return replaceWeights(model, folded);
}

/** W + (alpha/r)·B·A folded into every targeted weight: the same model, no extra work per token. */
export const mergeModelLora = (model: Model, set: LoraSet): Model => foldEach(model, set, mergeLora);

/** The inverse of mergeModelLora, up to float32 rounding. */
export const unmergeModelLora = (model: Model, set: LoraSet): Model => foldEach(model, set, unmergeLora);

// ── bottleneck adapters ──

export type AdapterPlace = "attn" | "mlp";

export interface BottleneckSet {
  readonly size: number;
  readonly activation: AdapterActivation;
  /** Per layer. */
  readonly layers: readonly LayerAdapters[];
}

export interface BottleneckOptions {
  where?: readonly AdapterPlace[]; // default both
  size?: number; // default 16
  activation?: AdapterActivation; // default gelu
}

/** Fresh bottleneck adapters (up = 0: the model is unchanged) after attention and/or the MLP of every layer. */
export function initModelBottlenecks(model: Model, rng: Random, options: BottleneckOptions = {}): BottleneckSet {
  const { where = ["attn", "mlp"], size = 16, activation = "gelu" } = options;
  if (!Array.isArray(where) || where.length === 0) throw argError("where", 'some of "attn", "mlp"', where);
  where.forEach((w) => checkOneOf("where", w, ["attn", "mlp"]));
  const D = model.config.hidden_size;
  const layers = model.weights.layers.map((): LayerAdapters => ({
    ...(where.includes("attn") ? { attn: initBottleneck(rng, D, size, activation) } : {}),
    ...(where.includes("mlp") ? { mlp: initBottleneck(rng, D, size, activation) } : {}),
  }));
  return { size, activation, layers };
}

/** The model with the set's adapters after its sublayers. */
export function attachBottlenecks(model: Model, set: BottleneckSet): Model {
  if (set.layers.length !== model.weights.layers.length) throw argError("adapters", `${model.weights.layers.length} layers`, set.layers.length);
  const D = model.config.hidden_size;
  set.layers.forEach((a, l) => [a.attn, a.mlp].forEach((b) => {
    if (b && b.down.shape[1] !== D) throw argError(`adapters[${l}].down`, `${D} columns`, b.down.shape[1]);
  }));
  const layers = model.weights.layers.map((layer, l): LayerWeights => ({ ...layer, adapters: set.layers[l] }));
  return { config: model.config, weights: { ...model.weights, layers } };
}

// ── safetensors ──

const PREFIX = "base_model.model.";
const moduleOf = (name: string) => name.replace(/\.weight$/, "");

export interface AdapterFile {
  lora?: LoraSet;
  bottlenecks?: BottleneckSet;
}

export function adaptersToSafetensors({ lora, bottlenecks }: AdapterFile): Uint8Array {
  if (!lora && !bottlenecks) throw argError("adapters", "a LoRA set or bottleneck adapters", "neither");
  const tensors = new Map<string, TensorToWrite>();
  const f32 = (t: Tensor): TensorToWrite => ({ dtype: "F32", shape: t.shape, data: t.data });
  const metadata: Record<string, string> = { format: "pt", generator: "tinyseek" };
  if (lora) {
    for (const [name, l] of lora.loras) {
      tensors.set(`${PREFIX}${moduleOf(name)}.lora_A.weight`, f32(l.A));
      tensors.set(`${PREFIX}${moduleOf(name)}.lora_B.weight`, f32(l.B));
    }
    Object.assign(metadata, { r: String(lora.rank), lora_alpha: String(lora.alpha), target_modules: JSON.stringify(lora.targets) });
  }
  if (bottlenecks) {
    bottlenecks.layers.forEach((a, l) => {
      for (const place of ["attn", "mlp"] as const) {
        const b = a[place];
        if (!b) continue;
        tensors.set(`${PREFIX}model.layers.${l}.adapter_${place}.down.weight`, f32(b.down));
        tensors.set(`${PREFIX}model.layers.${l}.adapter_${place}.up.weight`, f32(b.up));
      }
    });
    Object.assign(metadata, { bottleneck: String(bottlenecks.size), activation: bottlenecks.activation });
  }
  return writeSafetensors(tensors, metadata);
}

/** Adapters saved by adaptersToSafetensors, checked against the model they are for (names and shapes). */
export function adaptersFromSafetensors(bytes: Uint8Array, model: Model): AdapterFile {
  const { tensors, metadata } = readSafetensors(bytes);
  const get = (name: string): Tensor => {
    const t = tensors.get(name);
    if (!t) throw new TinyseekError(`adapters: the file has no tensor "${name}"`);
    if (!(t.data instanceof Float32Array)) throw new TinyseekError(`adapters: "${name}" is ${t.dtype}, expected F32`);
    return { shape: [...t.shape], data: t.data };
  };
  const used = new Set<string>();
  const take = (name: string) => (used.add(name), get(name));
  const result: AdapterFile = {};
  if (metadata.target_modules !== undefined) {
    const targets = JSON.parse(metadata.target_modules) as string[];
    const [rank, alpha] = [Number(metadata.r), Number(metadata.lora_alpha)];
    const loras = new Map<string, Lora>();
    for (const t of loraTargets(model, targets)) {
      const m = `${PREFIX}${moduleOf(t.name)}`;
      const lora: Lora = { rank, alpha, A: take(`${m}.lora_A.weight`), B: take(`${m}.lora_B.weight`), ...(t.rows ? { rows: t.rows } : {}) };
      try {
        mergeLora(namedWeights(model).get(t.name)!, lora); // checks every shape against the weight
      } catch (error) {
        throw new TinyseekError(`adapters: the LoRA of "${moduleOf(t.name)}" does not fit this model (${(error as Error).message})`);
      }
      loras.set(t.name, lora);
    }
    result.lora = { targets, rank, alpha, loras };
  }
  if (metadata.bottleneck !== undefined) {
    const activation = metadata.activation as AdapterActivation;
    checkOneOf("activation", activation, ["gelu", "silu", "relu"]);
    const layers = model.weights.layers.map((_, l): LayerAdapters => {
      const one = (place: AdapterPlace): BottleneckAdapter | undefined => {
        const p = `${PREFIX}model.layers.${l}.adapter_${place}`;
        return tensors.has(`${p}.down.weight`) ? { down: take(`${p}.down.weight`), up: take(`${p}.up.weight`), activation } : undefined;
      };
      const [attn, mlp] = [one("attn"), one("mlp")];
      return { ...(attn ? { attn } : {}), ...(mlp ? { mlp } : {}) };
    });
    result.bottlenecks = { size: Number(metadata.bottleneck), activation, layers };
  }
  const extra = [...tensors.keys()].filter((n) => !used.has(n));
  if (extra.length > 0) throw new TinyseekError(`adapters: unexpected tensors for this model: ${extra.slice(0, 5).join(", ")}`);
  if (!result.lora && !result.bottlenecks) throw new TinyseekError("adapters: the file has neither target_modules nor bottleneck metadata");
  return result;
}
