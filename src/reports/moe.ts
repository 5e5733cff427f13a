// `tinyseek moe-report`: what capacity, drop orders and bias balancing do to a batch of text, measured.
// With a model (the CLI loads the trained tiny checkpoint): bytes of a built-in English text run through it, and
// one MoE layer's own input (layers.L.mlp.in) routed by that layer's own gate, as trained; the bias it learned in
// training routes as a third router beside none and the one balanced here. Without one (seeded): the text embedded
// by the tiny model's seeded embedding table and RMS-normalised, or seeded vectors, through a seeded gate.
// Router: the model's config (tiny: 16 experts, top-4, 4 groups keep 2, sigmoid, V3's bias). `skew` makes the gate
// deliberately skewed — expert e gets a mean logit offset of skew·(1 - 2e/(E-1)) along the data's mean direction —
// so that balancing has something to fix (default 0.5 seeded, 0 for a model's own gate). The bias is trained by
// V3's rule over `batches` batches and then the routers route one unseen batch.
// Routing alone decides every number here (the experts' MLPs change no count), so the report takes milliseconds
// (plus one forward of the text through a model).

import { argError, checkInteger, checkNumber, TinyseekError } from "../errors.ts";
import { isMoeLayer, moeConfigOf } from "../model/config.ts";
import { forward } from "../model/forward.ts";
import { preset } from "../model/presets.ts";
import { BOS, encode } from "../model/tokenizer.ts";
import { initModel, type Model } from "../model/weights.ts";
import { updateBias, DEFAULT_BIAS_UPDATE_RATE } from "../moe/balance.ts";
import { DROP_POLICIES, type DropPolicy } from "../moe/capacity.ts";
import type { Routing } from "../moe/experts.ts";
import { routeTokens, type MoeConfig, type MoeWeights } from "../moe/layer.ts";
import { moeLosses, type MoeLosses } from "../moe/losses.ts";
import { routingProbs, routingStats, type MoeStats } from "../moe/stats.ts";
import { routingTable } from "../moe/table.ts";
import { linear, rmsnorm } from "../ops.ts";
import { Random, randBounded } from "../random.ts";
import { tensor, type Tensor } from "../tensor.ts";
import { createTrace } from "../trace.ts";

export interface MoeReportOptions {
  source?: "text" | "seeded";
  seed?: number;
  batches?: number;
  tokens?: number;
  rate?: number;
  /** Default 0.5 for the seeded gate, 0 for a model's own. */
  skew?: number;
  /** Route this model's own MoE input and gate (source "text" only), labelled `weights`. */
  model?: Model;
  weights?: string;
  /** The model's MoE layer (default: its first). */
  layer?: number;
  /** The text a model reads (default REPORT_TEXT), labelled byte by byte; a shorter one runs faster. */
  text?: string;
}

export const CAPACITY_FACTORS = [1, 1.25, 2, null] as const;

export type BiasName = "none" | "balanced" | "checkpoint";

export interface CapacityRow {
  bias: BiasName;
  capacityFactor: number | null;
  capacity: number | null;
  maxRouted: number;
  dropped: number;
  dropRate: number;
  maxVio: number;
  activeFraction: number;
  capacityUtilisation: number | null;
}

export interface DropOrderRow {
  dropPolicy: DropPolicy;
  dropped: number;
  /** Σ kept weights / Σ weights: how much routing mass survives. */
  keptWeightShare: number;
  /** Dropped assignments by rank: first choices, second choices, … */
  droppedByRank: number[];
  tokensFullyDropped: number;
}

export interface MoeReport {
  source: string;
  /** Whose gate routes: the model's own layer, or a seeded one. */
  router: string;
  seeded: boolean;
  config: MoeConfig;
  tokens: number;
  batches: number;
  rate: number;
  skew: number;
  capacityRows: CapacityRow[];
  dropOrders: DropOrderRow[];
  /** Per-expert routed and kept loads at cf = 1.25, before and after balancing, and with the checkpoint's bias. */
  loads: { before: MoeStats; after: MoeStats; checkpoint?: MoeStats };
  /** MaxVio of each training batch, before its bias update. */
  trajectory: number[];
  losses: { before: MoeLosses; after: MoeLosses };
  bias: number[];
  /** The bias the model's layer learned in training (noaux_tc), when routing a model's own gate. */
  checkpointBias?: number[];
  /** The first tokens of the unseen batch at cf = 1, no bias: choices, weights, kept or dropped. */
  table: string;
}

/** The built-in text the report routes (ASCII, so one byte a character). */
export const REPORT_TEXT =
  "DeepSeek-V3 routes every token to eight of its two hundred and fifty-six routed experts and to one shared " +
  "expert. A router scores the experts with a sigmoid, adds a bias that only steers the choice, keeps the best " +
  "groups of experts and picks the top scores among them. Switch Transformer and GShard give each expert a fixed " +
  "capacity: when too many tokens choose the same expert, the ones that arrive last are dropped and pass through " +
  "the residual connection unchanged. The capacity factor trades memory and padding for fewer dropped tokens. " +
  "Instead of an auxiliary loss, DeepSeek-V3 nudges each expert's bias after every batch: down for an expert that " +
  "was chosen more often than the average, up for one that was chosen less. The quick brown fox jumps over the " +
  "lazy dog; pack my box with five dozen liquor jugs. 0123456789 (){}[] <tag attr=\"value\"/> = + - * / % !?";

/** Every row of the report; deterministic for a given seed. */
export function moeReport(options: MoeReportOptions = {}): MoeReport {
  const { source = "text", seed = 1, batches = 50, tokens = 128, rate = DEFAULT_BIAS_UPDATE_RATE, model } = options;
  const skew = options.skew ?? (model ? 0 : 0.5);
  checkInteger("seed", seed, 0, 2 ** 32 - 1);
  checkInteger("batches", batches, 1, 10_000);
  checkInteger("tokens", tokens, 1, 100_000);
  checkNumber("rate", rate, 0, 1);
  checkNumber("skew", skew, 0, 100);
  if (model && source !== "text") throw argError("source", `"text" when a model routes (seeded vectors go through a seeded gate)`, source);

  const modelConfig = model?.config ?? preset("tiny");
  const config: MoeConfig = { ...moeConfigOf(modelConfig), capacityFactor: 1.25, dropPolicy: "rank-position" };
  const E = config.n_routed_experts;
  const own = model ? modelInput(model, options.weights ?? "the model", options.layer, options.text ?? REPORT_TEXT) : null;
  const { inputs, description, labels } = own ?? (source === "text" ? embeddedText(modelConfig.init_seed) : seededVectors(seed, modelConfig.hidden_size));
  const D = inputs.shape[1]!;
  const gate = own ? skewed(own.gate.weight, inputs, skew) : skewed(randBounded(new Random(seed), [E, D], 1 / Math.sqrt(D)), inputs, skew);
  const batch = (i: number) => window(inputs, i * 97, tokens);
  const batchLabels = (i: number) => labels && Array.from({ length: tokens }, (_, t) => labels[(i * 97 + t) % labels.length]!);

  // Bias balancing: route each training batch with the current bias, then move the bias toward the mean load.
  let bias = tensor([E]);
  const trajectory: number[] = [];
  for (let i = 0; i < batches; i++) {
    const { routed, maxVio } = statsOf(linear(batch(i), gate), { ...config, capacityFactor: null }, bias);
    trajectory.push(maxVio);
    bias = updateBias(bias, routed, rate);
  }

  // The routers on one unseen batch.
  const x = batch(batches);
  const logits = linear(x, gate);
  const learned = own?.gate.e_score_correction_bias ?? null;
  const biases: [BiasName, Tensor][] = [["none", tensor([E])], ["balanced", bias], ...(learned ? [["checkpoint", learned] as [BiasName, Tensor]] : [])];

  const capacityRows: CapacityRow[] = [];
  for (const [which, b] of biases) {
    for (const cf of CAPACITY_FACTORS) {
      const s = statsOf(logits, { ...config, capacityFactor: cf }, b);
      capacityRows.push({
        bias: which, capacityFactor: cf, capacity: s.capacity, maxRouted: Math.max(...s.routed), dropped: s.dropped,
        dropRate: s.dropRate, maxVio: s.maxVio, activeFraction: s.activeFraction, capacityUtilisation: s.capacityUtilisation,
      });
    }
  }

  const none = tensor([E]);
  const dropOrders = DROP_POLICIES.map((dropPolicy) => dropOrderRow(routeTokens(logits, { ...config, capacityFactor: 1, dropPolicy }, none).routing, dropPolicy));
  const lossesOf = (b: Tensor) => {
    const { routing, scores } = routeTokens(logits, config, b);
    return moeLosses(logits, routingProbs(scores, config.scoring_func), routing, tokens % 32 === 0 ? 32 : tokens);
  };
  const sample = routeTokens(logits, { ...config, capacityFactor: 1 }, none).routing;
  return {
    source: `${description}, ${tokens} tokens a batch (D = ${D})`,
    router: own ? `layer ${own.layer}'s own gate` : "a seeded gate",
    seeded: own === null,
    config,
    tokens,
    batches,
    rate,
    skew,
    capacityRows,
    dropOrders,
    loads: { before: statsOf(logits, config, none), after: statsOf(logits, config, bias), ...(learned ? { checkpoint: statsOf(logits, config, learned) } : {}) },
    trajectory,
    losses: { before: lossesOf(none), after: lossesOf(bias) },
    bias: Array.from(bias.data),
    ...(learned ? { checkpointBias: Array.from(learned.data) } : {}),
    table: routingTable(sample, { labels: batchLabels(batches), maxTokens: 12 }),
  };
}

/** The model's MoE layer `layer` (default its first): its input on the text's bytes (after <bos>), and its gate. */
function modelInput(model: Model, weights: string, layer: number | undefined, text: string): { inputs: Tensor; description: string; labels: string[]; gate: MoeWeights["gate"]; layer: number } {
  const c = model.config;
  const moeLayers = Array.from({ length: c.num_hidden_layers }, (_, l) => l).filter((l) => isMoeLayer(c, l));
  if (moeLayers.length === 0) throw new TinyseekError(`weights: ${weights} has no MoE layer (n_routed_experts ${c.n_routed_experts}, first_k_dense_replace ${c.first_k_dense_replace})`);
  const l = layer ?? moeLayers[0]!;
  if (!moeLayers.includes(l)) throw argError("layer", `one of the MoE layers ${moeLayers.join(", ")} (numbered from 0)`, l);
  const ids = [BOS, ...encode(text, { bos: false })];
  if (ids.length < 2 || ids.length > model.config.max_position_embeddings) {
    throw argError("text", `1 to ${model.config.max_position_embeddings - 1} bytes (the model's context, after <bos>)`, ids.length - 1);
  }
  const trace = createTrace(`layers.${l}.mlp.in`);
  forward(model, ids, { trace });
  const all = trace.tensors.get(`layers.${l}.mlp.in`)!;
  const D = c.hidden_size;
  const inputs = { shape: [ids.length - 1, D], data: Float32Array.from(all.data as ArrayLike<number>).subarray(D) }; // <bos> is not text
  return {
    inputs, layer: l, gate: (model.weights.layers[l]!.mlp as MoeWeights).gate,
    labels: ids.slice(1).map((id) => String.fromCharCode(id)), // one label a byte: the character, for ASCII text
    description: `${ids.length - 1} bytes of ${text === REPORT_TEXT ? "built-in " : ""}text through ${weights}: layer ${l}'s MoE input (layers.${l}.mlp.in)`,
  };
}

function statsOf(logits: Tensor, config: MoeConfig, bias: Tensor): MoeStats {
  const { routing, scores, capacity } = routeTokens(logits, config, bias);
  return routingStats(routing, routingProbs(scores, config.scoring_func), capacity);
}

/** Which assignments a drop order loses: by rank, the share of routing weight kept, tokens left with nothing. */
function dropOrderRow(routing: Routing, dropPolicy: DropPolicy): DropOrderRow {
  const N = routing.experts.length / routing.k;
  let total = 0;
  let kept = 0;
  const droppedByRank = new Array<number>(routing.k).fill(0);
  let fullyDropped = 0;
  for (let t = 0; t < N; t++) {
    let any = 0;
    for (let r = 0; r < routing.k; r++) {
      const a = t * routing.k + r;
      total += routing.weights[a]!;
      if (routing.kept[a]) (kept += routing.weights[a]!), any++;
      else droppedByRank[r]!++;
    }
    if (any === 0) fullyDropped++;
  }
  const dropped = droppedByRank.reduce((s, v) => s + v, 0);
  return { dropPolicy, dropped, keptWeightShare: kept / total, droppedByRank, tokensFullyDropped: fullyDropped };
}

/** The tiny model's embedding rows for the text's bytes, RMS-normalised as the MoE layer sees them. */
function embeddedText(initSeed: number): { inputs: Tensor; description: string; labels: string[] } {
  const model = initModel(preset("tiny"));
  const ids = encode(REPORT_TEXT, { bos: false });
  const table = model.weights.embed_tokens;
  const D = table.shape[1]!;
  const rows = new Float32Array(ids.length * D);
  ids.forEach((id, t) => rows.set(table.data.subarray(id * D, (id + 1) * D), t * D));
  const inputs = rmsnorm({ shape: [ids.length, D], data: rows }, tensor([D], new Float32Array(D).fill(1)));
  const labels = ids.map((id) => String.fromCharCode(id)); // the text is ASCII: one byte, one character
  return { inputs, labels, description: `${ids.length} bytes of built-in text embedded by the tiny model's seeded embedding (init_seed ${initSeed}), RMS-normalised` };
}

/** Seeded N(0, 1) vectors plus a shared offset of 0.5 (so the batch has a mean direction), RMS-normalised. */
function seededVectors(seed: number, D: number): { inputs: Tensor; description: string; labels?: string[] } {
  const x = randBounded(new Random(seed ^ 0x7e57), [1024, D]);
  const shifted = { shape: x.shape, data: x.data.map((v) => v + 0.5) };
  return { inputs: rmsnorm(shifted, tensor([D], new Float32Array(D).fill(1))), description: `1024 seeded vectors (seed ${seed}, N(0, 1) + 0.5), RMS-normalised` };
}

/** W plus offset_e·û/m on each row e: û the data's mean direction, m = mean x·û (the seeded W is N(0, 1/D)). */
function skewed(weight: Tensor, inputs: Tensor, skew: number): Tensor {
  const [N, D] = inputs.shape as [number, number];
  const E = weight.shape[0]!;
  const w = { shape: weight.shape, data: Float32Array.from(weight.data) };
  if (skew === 0) return w;
  const mean = new Float64Array(D);
  for (let i = 0; i < N * D; i++) mean[i % D] += inputs.data[i]! / N;
  const m = Math.hypot(...mean);
  for (let e = 0; e < E; e++) {
    const offset = skew * (1 - (2 * e) / (E - 1));
    for (let d = 0; d < D; d++) w.data[e * D + d] += (offset * mean[d]!) / (m * m);
  }
  return w;
}

/** `n` consecutive rows from `start`, wrapping around. */
function window(x: Tensor, start: number, n: number): Tensor {
  const [N, D] = x.shape as [number, number];
  const out = new Float32Array(n * D);
  for (let t = 0; t < n; t++) out.set(x.data.subarray(((start + t) % N) * D, (((start + t) % N) + 1) * D), t * D);
  return { shape: [n, D], data: out };
}

// ── Text ──

/** Per-expert load bars: █ kept, ░ dropped, and a │ at the capacity C. */
export function loadBars(stats: MoeStats, width = 40): string[] {
  const full = Math.max(...stats.routed, stats.capacity ?? 0, 1);
  const cells = (v: number) => Math.round((v / full) * width);
  const label = Math.max(...stats.routed.map((v) => String(v).length));
  return stats.routed.map((routed, e) => {
    const kept = stats.kept[e]!;
    const line = ("█".repeat(cells(kept)) + "░".repeat(cells(routed) - cells(kept))).padEnd(width).split("");
    if (stats.capacity !== null) line.splice(cells(stats.capacity), 0, "│"); // inserted, so no cell is hidden
    return `  e${String(e).padEnd(2)} ${line.join("").padEnd(width + 1)} ${String(routed).padStart(label)} routed, ${kept} kept`;
  });
}

const pct = (v: number | null) => (v === null ? "—" : `${(100 * v).toFixed(1)}%`);
const num = (v: number, digits = 3) => v.toFixed(digits);

export function formatMoeReport(r: MoeReport): string {
  const c = r.config;
  const out: string[] = [];
  out.push("MoE routing report");
  out.push(`input:  ${r.source}`);
  const skew = r.skew > 0 ? `, deliberately skewed (mean logit offset ±${r.skew})` : r.seeded ? ", no skew" : ", as trained (no skew added)";
  out.push(
    `router: ${r.router}, ${c.n_routed_experts} experts, top-${c.num_experts_per_tok}, ${c.n_group} groups keep ${c.topk_group}, ` +
      `${c.scoring_func}, ${c.topk_method}${skew}`,
  );
  out.push(
    `bias balancing: ${r.batches} batches, u = ${r.rate}; ` +
      (r.checkpointBias ? "the routers with no bias, with that bias and with the bias the checkpoint learned in training (\"checkpoint\") then route one unseen batch" : "both routers then route one unseen batch"),
  );
  out.push("");
  out.push("capacity factor × bias (drop order rank-position). \"active\" = experts that kept any token / E;");
  out.push("\"utilisation\" = kept / (E·C). The articles' \"68% → 92%\" names neither: here are both.");
  out.push("");
  const header = ["bias", "cf", "C", "max routed", "dropped", "drop rate", "MaxVio", "active", "utilisation"];
  const rows = r.capacityRows.map((row) => [
    row.bias, row.capacityFactor === null ? "dropless" : String(row.capacityFactor), row.capacity === null ? "—" : String(row.capacity),
    String(row.maxRouted), String(row.dropped), pct(row.dropRate), num(row.maxVio), pct(row.activeFraction), pct(row.capacityUtilisation),
  ]);
  out.push(...columns(header, rows));
  out.push("");
  out.push("drop orders at cf = 1, no bias (every order drops the same number; they differ in which):");
  out.push("");
  out.push(...columns(
    ["drop order", "dropped", "by rank 1/2/…", "kept weight", "tokens fully dropped"],
    r.dropOrders.map((d) => [d.dropPolicy, String(d.dropped), d.droppedByRank.join("/"), pct(d.keptWeightShare), String(d.tokensFullyDropped)]),
  ));
  const loads: [string, MoeStats][] = [["before balancing", r.loads.before], ["after balancing", r.loads.after]];
  if (r.loads.checkpoint) loads.push(["with the checkpoint's learned bias", r.loads.checkpoint]);
  for (const [title, s] of loads) {
    out.push("");
    out.push(`per-expert load at cf = 1.25, ${title}: C = ${s.capacity} (│), █ kept, ░ dropped; MaxVio ${num(s.maxVio)}, drop rate ${pct(s.dropRate)}, utilisation ${pct(s.capacityUtilisation)}`);
    out.push(...loadBars(s));
  }
  out.push("");
  out.push("routing table, first tokens of the batch at cf = 1, no bias:");
  out.push(...r.table.split("\n").map((line) => `  ${line}`));
  out.push("");
  const steps = [0, 9, 19, 29, 39, r.batches - 1].filter((i, j, a) => i < r.batches && a.indexOf(i) === j);
  out.push(`MaxVio while balancing: ${steps.map((i) => `batch ${i + 1} ${num(r.trajectory[i]!)}`).join(", ")}`);
  const s = r.loads.before;
  out.push(`routing entropy (unbiased scores): per token ${num(s.meanTokenEntropy)} nats (${pct(s.meanTokenEntropyNormalised)} of ln E), of the batch mean ${num(s.batchEntropy)} (${pct(s.batchEntropyNormalised)})`);
  const l = r.losses;
  out.push(
    `losses before → after balancing (raw): balance E·Σf·P ${num(l.before.balance)} → ${num(l.after.balance)}, ` +
      `sequence-wise ${num(l.before.sequence)} → ${num(l.after.sequence)}, z ${num(l.before.zLoss)} → ${num(l.after.zLoss)}, ` +
      `entropy term ${num(l.before.entropy)} → ${num(l.after.entropy)}`,
  );
  return out.join("\n");
}

function columns(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => `  ${cells.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join("  ")}`;
  return [line(header), line(widths.map((w) => "─".repeat(w))), ...rows.map(line)];
}
