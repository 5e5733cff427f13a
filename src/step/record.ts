// The stepper's record: one forward pass over a prompt with every intermediate traced, reduced to what a reader
// looks at layer by layer — each op's output size, the residual stream's norm per token, one head's attention,
// the MoE routing with its loads and drops, and where tokens exited early. `tinyseek step --json` prints it as is;
// render.ts draws it.

import { argError, checkInteger } from "../errors.ts";
import type { MoeStats } from "../moe/stats.ts";
import { softmax } from "../ops.ts";
import type { Backend } from "../backend.ts";
import { type Trace, type TracedTensor, createTrace } from "../trace.ts";
import { cacheBytesPerToken } from "../model/cache.ts";
import { isMoeLayer, layerKind, type AttentionKind } from "../model/config.ts";
import { forward, forwardAsync, rowNorms, type ForwardResult } from "../model/forward.ts";
import { mtpForward, mtpForwardAsync, type MtpResult } from "../model/mtp.ts";
import { argmax } from "../ops.ts";
import { countParameters } from "../model/params.ts";
import { byteTokenizer, type Tokenizer } from "../model/tokenizer.ts";
import { checkModel, type Model } from "../model/weights.ts";
import type { Intervention } from "../model/interventions.ts";

export interface StepOptions {
  /** The attention head whose probabilities are drawn (default 0). */
  head?: number;
  /** The backend to run on (default: the reference). */
  backend?: Backend;
  /** How the record names the backend (default: its name). */
  backendLabel?: string;
  exitThreshold?: number | null;
  /** Predictions listed at the end (default 5). */
  top?: number;
  /** What the weights are, for the header ("random init, seed 0" or a file name). */
  weightsLabel?: string;
  configLabel?: string;
  onLayer?: (layer: number, layers: number) => void;
  /** How tokens are labelled (default the byte tokenizer). */
  tokenizer?: Pick<Tokenizer, "tokenLabel">;
  /** Ablations, expert edits, steering (src/model/interventions.ts): the record shows what ran with them. */
  interventions?: readonly Intervention[];
}

export interface OpStep {
  op: string;
  /** The traced tensor's name. */
  name: string;
  shape: number[];
  /** Mean over tokens of each output row's L2 norm. */
  meanNorm: number;
}

export interface RoutingStep {
  k: number;
  experts: number;
  shared: number;
  /** Per expert: assignments routed to it and kept by it. */
  routed: number[];
  kept: number[];
  dropped: number;
  dropRate: number;
  maxVio: number;
  activeFraction: number;
  capacity: number | null;
  /** Per token (that ran the layer): chosen experts, their weights, kept flags. */
  tokens: { token: number; experts: number[]; weights: number[]; kept: boolean[] }[];
}

export interface LayerStep {
  layer: number;
  attention: AttentionKind;
  ffn: "dense" | "moe";
  ops: OpStep[];
  /** ‖h‖ per token after the layer. */
  residualNorms: number[];
  /** probs[query][key] of the chosen head, or null when the kind does not expose its probabilities. */
  heatmap: { head: number; probs: number[][] } | null;
  /** Sparse attention: the selection blocks each query read (kv group of the chosen head; -1 = fewer exist), and the
   * mean gate of each branch for that head. */
  sparse: { group: number; blockSize: number; selected: number[][]; gates: { compressed: number; selected: number; window: number } } | null;
  /** DSA: the keys each query attended, the indexer's top index_topk (ascending; -1 = fewer causal keys exist). */
  dsa: { topk: number; selected: number[][] } | null;
  routing: RoutingStep | null;
  /** Early exit: confidence p_top1 - p_top2 per token after this layer (recorded even when exiting is off; null after the last layer), and the tokens that exited here. */
  confidence: number[] | null;
  exited: number[];
}

export interface StepRecord {
  model: {
    config: string;
    weights: string;
    hidden_size: number;
    num_hidden_layers: number;
    num_attention_heads: number;
    vocab_size: number;
    n_routed_experts: number;
    n_shared_experts: number;
    num_experts_per_tok: number;
    first_k_dense_replace: number;
    /** What the layer descriptions quote. */
    kv_lora_rank: number;
    qk_rope_head_dim: number;
    n_group: number;
    topk_group: number;
    scoring_func: string;
    topk_method: string;
    routed_scaling_factor: number;
    decay_gamma: number | "retnet";
    segment_size: number;
    segment_overlap: number;
    memory_slots: number;
    index_n_heads: number;
    index_topk: number;
    parameters: number;
    activeParameters: number;
    /** The multi-token-prediction layer's parameters, counted apart (0 without one). */
    mtpParameters: number;
  };
  backend: string;
  prompt: string;
  tokens: { id: number; label: string }[];
  embedNorms: number[];
  layers: LayerStep[];
  exitThreshold: number | null;
  /** The KV cache's float32 bytes per token for this config, and what plain multi-head attention (K and V of every head) would hold. */
  cache: { bytesPerToken: number; mhaBytesPerToken: number };
  exitLayers: number[];
  /** What the interventions did, one line each (empty: none). */
  interventions: string[];
  /** The model's top predictions for the token after the prompt. */
  next: { id: number; label: string; prob: number }[];
  /** The multi-token-prediction module (null without one), fed the main model's greedy next token (`after`): its top
   *  predictions for the token after that, and how many of the prompt's tokens it predicted two places ahead. */
  mtp: { after: { id: number; label: string }; next: { id: number; label: string; prob: number }[]; hits: number; of: number } | null;
  ms: number;
}

const OPS: [string, string][] = [
  ["input_layernorm", "attn.in"],
  ["attention", "attn.out"],
  ["+ residual", "attn.residual"],
  ["post_attention_layernorm", "mlp.in"],
  ["feed-forward", "mlp.out"],
  ["+ residual", "out"],
];

const NEVER = 2;

/** What the record reads, and only that: tracing "*" would also run points that cost a forward's worth of work
 *  beside the fused kernels (each routed expert alone for `mlp.experts`), which the record never shows. */
export const RECORD_TRACE: readonly string[] = [
  "embed",
  "norm",
  ...OPS.map(([, suffix]) => `layers.*.${suffix}`),
  "layers.*.residual_norm",
  "layers.*.attn.probs",
  "layers.*.attn.selected",
  "layers.*.attn.gates",
  "layers.*.exit.confidence",
  "layers.*.mlp.router.indices",
  "layers.*.mlp.router.weights",
  "layers.*.mlp.router.kept",
];

const toRows = (t: TracedTensor, rows: number, cols: number): number[][] =>
  Array.from({ length: rows }, (_, r) => Array.from(t.data.subarray(r * cols, (r + 1) * cols)));

const meanOf = (values: ArrayLike<number>) => (values.length === 0 ? 0 : Array.from(values).reduce((a, v) => a + v, 0) / values.length);

/** What a step needs from one forward pass, on whichever backend ran it. */
type StepForward = Pick<ForwardResult, "logits" | "exitLayers" | "moe">;

/** The step record of `tokens` through `model`, on a backend whose reads are synchronous (the reference by default). */
export function stepRecord(model: Model, prompt: string, tokens: readonly number[], options: StepOptions = {}): StepRecord {
  const started = performance.now();
  const { record, result } = prepare(model, tokens, options, (trace, exitThreshold) =>
    forward(model, tokens, { trace, backend: options.backend, exitThreshold, onLayer: options.onLayer, interventions: options.interventions }));
  const mtp = mtpInput(model, tokens, result, record);
  const drafted = mtp && mtpForward(model, mtp.hidden, mtp.next, { backend: options.backend });
  return buildRecord(model, prompt, tokens, options, result, record, performance.now() - started, drafted);
}

/** `stepRecord` on any backend (WebGPU reads asynchronously): the same forward, awaited. */
export async function stepRecordAsync(model: Model, prompt: string, tokens: readonly number[], options: StepOptions = {}): Promise<StepRecord> {
  const started = performance.now();
  const { record, result } = prepare(model, tokens, options, (trace, exitThreshold) =>
    forwardAsync(model, tokens, { trace, backend: options.backend, exitThreshold, onLayer: options.onLayer, interventions: options.interventions }));
  const done = await result;
  const mtp = mtpInput(model, tokens, done, record);
  const drafted = mtp && await mtpForwardAsync(model, mtp.hidden, mtp.next, { backend: options.backend });
  return buildRecord(model, prompt, tokens, options, done, record, performance.now() - started, drafted);
}

/** The MTP module's input (null without one): the main model's RMSNorm(h) (traced as "norm") and the token after
 *  each position, the last being the main model's greedy next token. */
function mtpInput(model: Model, tokens: readonly number[], result: StepForward, trace: Trace) {
  if (!model.weights.mtp) return null;
  const V = model.config.vocab_size;
  const greedy = argmax(result.logits.data.subarray((tokens.length - 1) * V, tokens.length * V));
  return { hidden: trace.tensors.get("norm") as { shape: number[]; data: Float32Array }, next: [...tokens.slice(1), greedy] };
}

/** The module's view for the record: its top predictions after the last position, and its hits inside the prompt. */
function mtpView(model: Model, tokens: readonly number[], result: StepForward, mtp: MtpResult, top: number, tokenLabel: (id: number) => string): StepRecord["mtp"] {
  const V = model.config.vocab_size;
  const T = tokens.length;
  const row = (logits: Float32Array, t: number) => logits.subarray(t * V, (t + 1) * V);
  const after = argmax(row(result.logits.data, T - 1));
  const probs = softmax({ shape: [V], data: row(mtp.logits.data, T - 1) }).data;
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => probs[b]! - probs[a]! || a - b).slice(0, top);
  // Position t predicts token t + 2: inside the prompt for t <= T - 3.
  let hits = 0;
  for (let t = 0; t + 2 < T; t++) if (argmax(row(mtp.logits.data, t)) === tokens[t + 2]) hits++;
  return { after: { id: after, label: tokenLabel(after) }, next: order.map((id) => ({ id, label: tokenLabel(id), prob: probs[id]! })), hits, of: Math.max(0, T - 2) };
}

function prepare<R>(model: Model, tokens: readonly number[], options: StepOptions, run: (trace: Trace, exitThreshold: number) => R) {
  checkModel(model);
  const { config } = model;
  checkInteger("head", options.head ?? 0, 0, config.num_attention_heads - 1);
  checkInteger("top", options.top ?? 5, 1, config.vocab_size);
  if (tokens.length === 0) throw argError("tokens", "at least one token", 0);
  const threshold = options.exitThreshold === undefined ? config.exit_threshold : options.exitThreshold;
  const record = createTrace(RECORD_TRACE);
  // With early exit off the confidence is still worth seeing: a threshold above 1 never fires (the model is then
  // exactly the full-depth one) but records the confidence after every layer.
  return { record, result: run(record, threshold ?? NEVER) };
}

function buildRecord(model: Model, prompt: string, tokens: readonly number[], options: StepOptions, result: StepForward, trace: Trace, ms: number, mtp: MtpResult | null): StepRecord {
  const { config } = model;
  const head = options.head ?? 0;
  const top = options.top ?? 5;
  const threshold = options.exitThreshold === undefined ? config.exit_threshold : options.exitThreshold;
  const get = (name: string) => trace.tensors.get(name);
  const T = tokens.length;
  const label = (id: number) => (options.tokenizer ?? byteTokenizer).tokenLabel(id);

  const layers = Array.from({ length: config.num_hidden_layers }, (_, l): LayerStep => {
    const p = `layers.${l}`;
    const ops = OPS.flatMap(([op, suffix]) => {
      const t = get(`${p}.${suffix}`);
      return t ? [{ op, name: `${p}.${suffix}`, shape: [...t.shape], meanNorm: meanOf(rowNorms(t).data) }] : [];
    });
    const probs = get(`${p}.attn.probs`);
    const Tk = probs?.shape[2] ?? 0;
    const heatmap = probs ? { head, probs: toRows({ shape: [T, Tk], data: probs.data.subarray(head * T * Tk, (head + 1) * T * Tk) }, T, Tk) } : null;
    const confidence = get(`${p}.exit.confidence`);
    const sparse = sparseView(get(`${p}.attn.selected`), get(`${p}.attn.gates`), model, head, T);
    const selected = layerKind(config, l) === "dsa" ? get(`${p}.attn.selected`) : undefined;
    const dsa = selected ? { topk: config.index_topk, selected: toRows(selected, T, selected.shape[1]!) } : null;
    const exited = Array.from(result.exitLayers.keys()).filter((t) => result.exitLayers[t] === l + 1 && l + 1 < config.num_hidden_layers);
    return {
      layer: l,
      attention: layerKind(config, l),
      ffn: isMoeLayer(config, l) ? "moe" : "dense",
      ops,
      residualNorms: Array.from(get(`${p}.residual_norm`)?.data ?? []),
      heatmap,
      sparse,
      dsa,
      routing: isMoeLayer(config, l) ? routingStep(model, result.moe[l] ?? null, get, p, result.exitLayers, l) : null,
      confidence: confidence ? Array.from(confidence.data) : null,
      exited,
    };
  });

  const V = config.vocab_size;
  const last = softmax({ shape: [V], data: result.logits.data.subarray((T - 1) * V, T * V) }).data;
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => last[b]! - last[a]! || a - b).slice(0, top);
  const count = countParameters(config);
  return {
    model: {
      config: options.configLabel ?? "custom",
      weights: options.weightsLabel ?? `random init (seed ${config.init_seed})`,
      hidden_size: config.hidden_size,
      num_hidden_layers: config.num_hidden_layers,
      num_attention_heads: config.num_attention_heads,
      vocab_size: V,
      n_routed_experts: config.n_routed_experts,
      n_shared_experts: config.n_shared_experts,
      num_experts_per_tok: config.num_experts_per_tok,
      first_k_dense_replace: config.first_k_dense_replace,
      kv_lora_rank: config.kv_lora_rank,
      qk_rope_head_dim: config.qk_rope_head_dim,
      n_group: config.n_group,
      topk_group: config.topk_group,
      scoring_func: config.scoring_func,
      topk_method: config.topk_method,
      routed_scaling_factor: config.routed_scaling_factor,
      decay_gamma: config.decay_gamma,
      segment_size: config.segment_size,
      segment_overlap: config.segment_overlap,
      memory_slots: config.memory_slots,
      index_n_heads: config.index_n_heads,
      index_topk: config.index_topk,
      parameters: count.total,
      activeParameters: count.active,
      mtpParameters: count.mtp,
    },
    backend: options.backendLabel ?? options.backend?.name ?? "reference",
    prompt,
    tokens: tokens.map((id) => ({ id, label: label(id) })),
    embedNorms: Array.from(rowNorms(get("embed")!).data),
    layers,
    exitThreshold: threshold,
    cache: {
      bytesPerToken: cacheBytesPerToken(config, T),
      mhaBytesPerToken: 4 * 2 * config.hidden_size * config.num_hidden_layers,
    },
    exitLayers: Array.from(result.exitLayers),
    interventions: (options.interventions ?? []).map((i, n) => i.label ?? `intervention ${n + 1}`),
    next: order.map((id) => ({ id, label: label(id), prob: last[id]! })),
    mtp: mtp ? mtpView(model, tokens, result, mtp, top, label) : null,
    ms,
  };
}

/** NSA's selection for the kv group of `head` ([Hkv, T, n] → [T][n]) and that head's mean gate per branch. */
function sparseView(selected: TracedTensor | undefined, gates: TracedTensor | undefined, model: Model, head: number, T: number): LayerStep["sparse"] {
  if (!selected || !gates) return null;
  const { config } = model;
  const [H, n] = [config.num_attention_heads, selected.shape[2]!];
  const group = Math.floor(head / (H / config.num_key_value_heads));
  const gate = (branch: number) => meanOf(Array.from({ length: T }, (_, t) => gates.data[t * 3 * H + branch * H + head]!));
  return {
    group,
    blockSize: config.sparse_select_block,
    selected: toRows({ shape: [T, n], data: selected.data.subarray(group * T * n, (group + 1) * T * n) }, T, n),
    gates: { compressed: gate(0), selected: gate(1), window: gate(2) },
  };
}

function routingStep(
  model: Model, stats: MoeStats | null, get: (name: string) => TracedTensor | undefined, p: string, exitLayers: Int32Array, l: number,
): RoutingStep | null {
  const { config } = model;
  const indices = get(`${p}.mlp.router.indices`);
  if (!stats || !indices) return null;
  const weights = get(`${p}.mlp.router.weights`)!;
  const kept = get(`${p}.mlp.router.kept`)!;
  const k = config.num_experts_per_tok;
  // Routing rows are the tokens that ran this layer, in order: the ones that had not exited before it.
  const ran = Array.from(exitLayers.keys()).filter((t) => exitLayers[t]! > l);
  return {
    k,
    experts: config.n_routed_experts,
    shared: config.n_shared_experts,
    routed: [...stats.routed],
    kept: [...stats.kept],
    dropped: stats.dropped,
    dropRate: stats.dropRate,
    maxVio: stats.maxVio,
    activeFraction: stats.activeFraction,
    capacity: stats.capacity,
    tokens: ran.map((token, r) => ({
      token,
      experts: Array.from(indices.data.subarray(r * k, (r + 1) * k)),
      weights: Array.from(weights.data.subarray(r * k, (r + 1) * k)),
      kept: Array.from(kept.data.subarray(r * k, (r + 1) * k), (v) => v === 1),
    })),
  };
}
