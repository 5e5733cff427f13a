// `tinyseek moe-report`: what capacity, drop orders and bias balancing do to a batch of text, measured.
// Input: bytes of a built-in English text embedded by the tiny model's seeded embedding table and RMS-normalised
// (the MoE layer's input), or seeded vectors. Router: the tiny preset's (16 experts, top-4, 4 groups keep 2,
// sigmoid, V3's bias), with a gate made deliberately skewed — expert e gets a mean logit offset of
// skew·(1 - 2e/(E-1)) along the data's mean direction — so that balancing has something to fix. The bias is
// trained by V3's rule over `batches` batches and then both routers route one unseen batch.
// Routing alone decides every number here (the experts' MLPs change no count), so the report takes milliseconds.

import { checkInteger, checkNumber } from "../errors.ts";
import { moeConfigOf } from "../model/config.ts";
import { preset } from "../model/presets.ts";
import { encode } from "../model/tokenizer.ts";
import { initModel } from "../model/weights.ts";
import { updateBias, DEFAULT_BIAS_UPDATE_RATE } from "../moe/balance.ts";
import { DROP_POLICIES, type DropPolicy } from "../moe/capacity.ts";
import { type Routing } from "../moe/experts.ts";
import { routeTokens, type MoeConfig } from "../moe/layer.ts";
import { moeLosses, type MoeLosses } from "../moe/losses.ts";
import { routingProbs, routingStats, type MoeStats } from "../moe/stats.ts";
import { routingTable } from "../moe/table.ts";
import { linear, rmsnorm } from "../ops.ts";
import { Random, randBounded } from "../random.ts";
import { tensor, type Tensor } from "../tensor.ts";

export interface MoeReportOptions {
  source?: "text" | "seeded";
  seed?: number;
  batches?: number;
  tokens?: number;
  rate?: number;
  skew?: number;
}

export const CAPACITY_FACTORS = [1, 1.25, 2, null] as const;

export interface CapacityRow {
  bias: "none" | "balanced";
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
  config: MoeConfig;
  tokens: number;
  batches: number;
  rate: number;
  skew: number;
  capacityRows: CapacityRow[];
  dropOrders: DropOrderRow[];
  /** Per-expert routed and kept loads at cf = 1.25, before and after balancing. */
  loads: { before: MoeStats; after: MoeStats };
  /** MaxVio of each training batch, before its bias update. */
  trajectory: number[];
  losses: { before: MoeLosses; after: MoeLosses };
  bias: number[];
  /** The first tokens of the unseen batch at cf = 1, no bias: choices, weights, kept or dropped. */
  table: string;
}

const TEXT =
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
  const { source = "text", seed = 1, batches = 50, tokens = 128, rate = DEFAULT_BIAS_UPDATE_RATE, skew = 0.5 } = options;
  checkInteger("seed", seed, 0, 2 ** 32 - 1);
  checkInteger("batches", batches, 1, 10_000);
  checkInteger("tokens", tokens, 1, 100_000);
  checkNumber("rate", rate, 0, 1);
  checkNumber("skew", skew, 0, 100);

  const modelConfig = preset("tiny");
  const config: MoeConfig = { ...moeConfigOf(modelConfig), capacityFactor: 1.25, dropPolicy: "rank-position" };
  const E = config.n_routed_experts;
  const { inputs, description, labels } = source === "text" ? embeddedText(modelConfig.init_seed) : seededVectors(seed, modelConfig.hidden_size);
  const D = inputs.shape[1]!;
  const gate = skewedGate(new Random(seed), inputs, E, skew);
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

  // Both routers on one unseen batch.
  const x = batch(batches);
  const logits = linear(x, gate);
  const biases = { none: tensor([E]), balanced: bias } as const;

  const capacityRows: CapacityRow[] = [];
  for (const which of ["none", "balanced"] as const) {
    for (const cf of CAPACITY_FACTORS) {
      const s = statsOf(logits, { ...config, capacityFactor: cf }, biases[which]);
      capacityRows.push({
        bias: which, capacityFactor: cf, capacity: s.capacity, maxRouted: Math.max(...s.routed), dropped: s.dropped,
        dropRate: s.dropRate, maxVio: s.maxVio, activeFraction: s.activeFraction, capacityUtilisation: s.capacityUtilisation,
      });
    }
  }

  const dropOrders = DROP_POLICIES.map((dropPolicy) => dropOrderRow(routeTokens(logits, { ...config, capacityFactor: 1, dropPolicy }, biases.none).routing, dropPolicy));
  const lossesOf = (b: Tensor) => {
    const { routing, scores } = routeTokens(logits, config, b);
    return moeLosses(logits, routingProbs(scores, config.scoring_func), routing, tokens % 32 === 0 ? 32 : tokens);
  };
  const sample = routeTokens(logits, { ...config, capacityFactor: 1 }, biases.none).routing;
  return {
    source: `${description}, ${tokens} tokens a batch (D = ${D})`,
    config,
    tokens,
    batches,
    rate,
    skew,
    capacityRows,
    dropOrders,
    loads: { before: statsOf(logits, config, biases.none), after: statsOf(logits, config, biases.balanced) },
    trajectory,
    losses: { before: lossesOf(biases.none), after: lossesOf(biases.balanced) },
    bias: Array.from(bias.data),
    table: routingTable(sample, { labels: batchLabels(batches), maxTokens: 12 }),
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
  const ids = encode(TEXT, { bos: false });
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

/** W [E, D] ~ N(0, 1/D) (logits of unit scale) plus offset_e·û/m: û the data's mean direction, m = mean x·û. */
function skewedGate(rng: Random, inputs: Tensor, E: number, skew: number): Tensor {
  const [N, D] = inputs.shape as [number, number];
  const mean = new Float64Array(D);
  for (let i = 0; i < N * D; i++) mean[i % D] += inputs.data[i]! / N;
  const m = Math.hypot(...mean);
  const w = randBounded(rng, [E, D], 1 / Math.sqrt(D));
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
  out.push(
    `router: tiny preset, ${c.n_routed_experts} experts, top-${c.num_experts_per_tok}, ${c.n_group} groups keep ${c.topk_group}, ` +
      `${c.scoring_func}, ${c.topk_method}, deliberately skewed (mean logit offset ±${r.skew})`,
  );
  out.push(`bias balancing: ${r.batches} batches, u = ${r.rate}; both routers then route one unseen batch`);
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
  for (const [title, s] of [["before balancing", r.loads.before], ["after balancing", r.loads.after]] as const) {
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
