// Drawing a step record in a terminal with Unicode only: shaded heatmaps (rows are queries, columns keys),
// sparklines for the residual norms, bars for expert loads. Plain text unless `color` is set (a TTY without
// NO_COLOR); the same record always draws the same characters.

import type { LayerStep, RoutingStep, StepRecord } from "./record.ts";

export interface Style {
  bold(s: string): string;
  dim(s: string): string;
  accent(s: string): string;
}

const plain: Style = { bold: (s) => s, dim: (s) => s, accent: (s) => s };
const ansi: Style = {
  bold: (s) => `\x1b[1m${s}\x1b[22m`,
  dim: (s) => `\x1b[2m${s}\x1b[22m`,
  accent: (s) => `\x1b[36m${s}\x1b[39m`,
};

export const styleFor = (color: boolean): Style => (color ? ansi : plain);

/** Shades for a weight, by √p so that small weights still show: · below 1/64, then ░ ▒ ▓ █ (blank: a hidden key). */
const SHADES = ["·", "░", "▒", "▓", "█"];
export function shade(p: number): string {
  if (!(p > 0)) return SHADES[0]!;
  return SHADES[Math.min(SHADES.length - 1, Math.round(Math.sqrt(p) * (SHADES.length - 1)))]!;
}

const SPARKS = "▁▂▃▄▅▆▇█";
/** One character per value, scaled between the values' min and max. */
export function sparkline(values: readonly number[]): string {
  if (values.length === 0) return "";
  const [lo, hi] = [Math.min(...values), Math.max(...values)];
  return values.map((v) => SPARKS[hi === lo ? 3 : Math.round(((v - lo) / (hi - lo)) * (SPARKS.length - 1))]).join("");
}

/** A bar of `width` cells for value / max, with eighth-block resolution. */
export function bar(value: number, max: number, width: number): string {
  if (!(max > 0) || value <= 0) return "";
  const eighths = Math.round((value / max) * width * 8);
  const partial = eighths % 8 === 0 ? "" : "▏▎▍▌▋▊▉"[(eighths % 8) - 1]!;
  return "█".repeat(Math.floor(eighths / 8)) + partial;
}

/** A token as one column character in a heatmap header. */
function columnChar(label: string): string {
  if (label.startsWith("<") && label.length > 1) return label === "<bos>" ? "◆" : label === "<eos>" ? "◇" : "¤";
  return label;
}

const fmt = (v: number, digits = 2) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(digits));
const groupDigits = (n: number) => n.toLocaleString("en-US");

/** The last `max` columns are drawn when the prompt is longer (the most recent keys matter most). */
const MAX_COLUMNS = 48;

export function renderHeader(r: StepRecord, s: Style): string {
  const m = r.model;
  const moe = m.n_routed_experts > 0
    ? `${m.n_routed_experts} routed + ${m.n_shared_experts} shared experts, top-${m.num_experts_per_tok}, first ${m.first_k_dense_replace} dense`
    : "dense";
  const kinds = [...new Set(r.layers.map((l) => l.attention.toUpperCase()))].join("/");
  const lines = [
    s.bold("tinyseek step") + s.dim(" · a DeepSeek-style transformer, one layer and one op at a time"),
    "",
    `  ${s.dim("model  ")}  ${m.config} · ${m.num_hidden_layers} layers · hidden ${m.hidden_size} · ${m.num_attention_heads} heads · ${kinds} attention · ${moe}`,
    `  ${s.dim("params ")}  ${groupDigits(m.parameters)} total · ${groupDigits(m.activeParameters)} active per token${m.mtpParameters ? ` · ${groupDigits(m.mtpParameters)} in the MTP layer (apart)` : ""}`,
    `  ${s.dim("cache  ")}  ${groupDigits(Math.round(r.cache.bytesPerToken))} bytes per token ${s.dim(`(float32; full K and V of every head would take ${groupDigits(r.cache.mhaBytesPerToken)})`)}`,
    `  ${s.dim("weights")}  ${m.weights}`,
    `  ${s.dim("backend")}  ${r.backend} · forward pass ${fmt(r.ms, 1)} ms`,
    `  ${s.dim("prompt ")}  ${JSON.stringify(r.prompt)} → ${r.tokens.length} byte tokens`,
    ...r.interventions.map((line) => `  ${s.dim("edited ")}  ${line}`),
    "",
    `  ${s.dim("tokens ")}  ${r.tokens.map((t) => t.label).join(" ")}`,
    `  ${s.dim("embed  ")}  ‖x‖ per token ${sparkline(r.embedNorms)}  ${s.dim(`${fmt(Math.min(...r.embedNorms))} … ${fmt(Math.max(...r.embedNorms))}`)}`,
  ];
  if (r.model.weights.startsWith("random")) {
    lines.push("", s.dim("  Untrained weights: every number below is real, the predictions are noise. Without --weights, --config and\n" +
      "  --attention the trained tiny checkpoint runs; --weights FILE loads another."));
  }
  return lines.join("\n");
}

export function renderLayer(r: StepRecord, layer: LayerStep, s: Style): string {
  const L = r.layers.length;
  const ffn = layer.ffn === "moe" && layer.routing
    ? `MoE (${layer.routing.experts} routed + ${layer.routing.shared} shared, top-${layer.routing.k})`
    : "dense SwiGLU MLP";
  // 0-based, as --layer and the trace names (layers.2.…) count.
  const title = ` layer ${layer.layer} of 0–${L - 1} · ${layer.attention.toUpperCase()} attention → ${ffn} `;
  const lines = [s.bold(`━━${title}${"━".repeat(Math.max(2, 96 - title.length))}`), s.dim(`  ${describeAttention(layer, r)}`), s.dim(`  ${describeFfn(layer, r)}`), ""];

  const opWidth = Math.max(...layer.ops.map((o) => o.op.length), 2);
  lines.push(`  ${s.dim("op".padEnd(opWidth))}   ${s.dim("trace name".padEnd(24))} ${s.dim("shape".padEnd(10))} ${s.dim("mean ‖row‖")}`);
  for (const op of layer.ops) {
    lines.push(`  ${op.op.padEnd(opWidth)}   ${s.dim(op.name.padEnd(24))} ${`[${op.shape.join(", ")}]`.padEnd(10)} ${fmt(op.meanNorm, 3)}`);
  }
  if (layer.residualNorms.length > 0) {
    const n = layer.residualNorms;
    lines.push("", `  residual ‖h‖ per token  ${sparkline(n)}  ${s.dim(`${fmt(Math.min(...n))} … ${fmt(Math.max(...n))}`)}`);
  }
  if (layer.heatmap) lines.push("", ...renderHeatmap(r, layer.heatmap, s));
  else if (layer.sparse) lines.push("", ...renderSparse(r, layer.sparse, s));
  else if (layer.dsa) lines.push("", ...renderDsa(r, layer.dsa, s));
  else if (layer.attention === "segmented") lines.push("", s.dim("  (segmented attention does not expose per-head probabilities)"));
  else lines.push("", s.dim(`  (no heatmap: the ${r.backend.split(" ")[0]} backend's fused attention never forms the probability matrix)`));
  if (layer.routing) lines.push("", ...renderRouting(r, layer.routing, s));
  if (layer.confidence) {
    const c = layer.confidence;
    const exited = layer.exited.map((t) => `${t}:${r.tokens[t]!.label}`).join(" ");
    const verdict = r.exitThreshold === null
      ? s.dim("early exit off (--exit-threshold P)")
      : layer.exited.length > 0 ? s.accent(`exit here: ${exited}`) : s.dim(`no token reaches ${r.exitThreshold}`);
    lines.push("", `  confidence p₁-p₂ per token  ${sparkline(c)}  ${s.dim(`max ${fmt(Math.max(...c), 3)}`)}  ${verdict}`);
  }
  return lines.join("\n");
}

/** One line on what this layer's attention computes, with the config's numbers. */
function describeAttention(layer: LayerStep, r: StepRecord): string {
  const m = r.model;
  switch (layer.attention) {
    case "mla":
      return `MLA: each token is cached as a ${m.kv_lora_rank}-number latent + a ${m.qk_rope_head_dim}-number rotary key, shared by all ${m.num_attention_heads} heads`;
    case "mha":
      return `multi-head attention: every head caches its own rotated key and value`;
    case "decay":
      return `time-decay attention: scores fall by (i - j)·ln γ with γ = ${m.decay_gamma === "retnet" ? "1 - 2^(-5-h) per head" : m.decay_gamma}, so old tokens fade`;
    case "segmented":
      return `segmented attention: segments of ${m.segment_size}, ${m.segment_overlap} tokens of overlap, ${m.memory_slots} memory slots: a bounded cache`;
    case "sparse":
      return "native sparse attention: compressed blocks, a few selected blocks at full resolution, and a local window, gated";
    case "dsa":
      return `DeepSeek sparse attention: a ${m.index_n_heads}-head indexer scores every earlier token, MLA attends only each query's top ${m.index_topk}`;
  }
}

function describeFfn(layer: LayerStep, r: StepRecord): string {
  const m = r.model;
  if (layer.ffn === "dense") return `dense SwiGLU feed-forward (the first ${m.first_k_dense_replace} layer${m.first_k_dense_replace === 1 ? " is" : "s are"} dense, as in DeepSeek-V3)`;
  const groups = m.n_group > 1 ? ` within the best ${m.topk_group} of ${m.n_group} groups` : "";
  const bias = m.topk_method === "noaux_tc" ? " + balancing bias" : "";
  const shared = m.n_shared_experts === 0 ? "" : m.n_shared_experts === 1 ? "; the shared expert always runs" : `; ${m.n_shared_experts} shared experts always run`;
  return `MoE: ${m.scoring_func} scores${bias} pick ${m.num_experts_per_tok} of ${m.n_routed_experts} experts${groups}, weights ×${m.routed_scaling_factor}${shared}`;
}

function renderHeatmap(r: StepRecord, heatmap: NonNullable<LayerStep["heatmap"]>, s: Style): string[] {
  const T = heatmap.probs.length;
  const Tk = heatmap.probs[0]?.length ?? 0;
  const first = Math.max(0, Tk - MAX_COLUMNS);
  const labels = r.tokens.map((t) => t.label);
  const rowLabelWidth = Math.max(...labels.map((l) => l.length), 3) + 4;
  const lines = [`  attention, head ${heatmap.head} ${s.dim(`(row: query, column: key it reads; · ░ ▒ ▓ █ by weight${first > 0 ? `; last ${MAX_COLUMNS} keys` : ""})`)}`];
  lines.push(`  ${" ".repeat(rowLabelWidth)} ${labels.slice(first, Tk).map(columnChar).join(" ")}`);
  for (let q = Math.max(0, T - MAX_COLUMNS); q < T; q++) {
    const row = heatmap.probs[q]!;
    const cells = row.slice(first).map((p, j) => (first + j > Tk - T + q ? " " : shade(p))).join(" ");
    const best = row.indexOf(Math.max(...row));
    lines.push(`  ${s.dim(String(q).padStart(3))} ${labels[q]!.padEnd(rowLabelWidth - 4)} ${cells}  ${s.dim(`→ ${labels[best]} ${fmt(row[best]!)}`)}`);
  }
  return lines;
}

function renderDsa(r: StepRecord, dsa: NonNullable<LayerStep["dsa"]>, s: Style): string[] {
  const T = dsa.selected.length;
  const first = Math.max(0, T - MAX_COLUMNS);
  const labels = r.tokens.map((t) => t.label);
  const width = Math.max(...labels.map((l) => l.length), 3);
  const lines = [
    `  sparse attention (DSA): the keys each query reads, the indexer's top ${dsa.topk} ${s.dim(`(■ selected, · skipped${first > 0 ? `; last ${MAX_COLUMNS} keys` : ""})`)}`,
    `  ${" ".repeat(width + 4)} ${labels.slice(first).map(columnChar).join(" ")}`,
  ];
  for (let q = first; q < T; q++) {
    const chosen = new Set(dsa.selected[q]!.filter((k) => k >= 0));
    const cells = Array.from({ length: T - first }, (_, j) => (first + j > q ? " " : chosen.has(first + j) ? "■" : "·")).join(" ");
    lines.push(`  ${s.dim(String(q).padStart(3))} ${labels[q]!.padEnd(width)} ${cells}`.trimEnd());
  }
  return lines;
}

function renderSparse(r: StepRecord, sparse: NonNullable<LayerStep["sparse"]>, s: Style): string[] {
  const T = sparse.selected.length;
  const blocks = Math.floor((T - 1) / sparse.blockSize) + 1;
  const labels = r.tokens.map((t) => t.label);
  const width = Math.max(...labels.map((l) => l.length), 3);
  const g = sparse.gates;
  const lines = [
    `  sparse attention (NSA), kv group ${sparse.group}: blocks of ${sparse.blockSize} tokens each query reads at full resolution ${s.dim("(■ selected, · skipped)")}`,
    `  ${s.dim(`mean gates: compressed ${fmt(g.compressed)} · selected ${fmt(g.selected)} · window ${fmt(g.window)}`)}`,
    `  ${" ".repeat(width + 4)} ${Array.from({ length: blocks }, (_, b) => String(b % 10)).join(" ")}`,
  ];
  for (let q = Math.max(0, T - MAX_COLUMNS); q < T; q++) {
    const chosen = new Set(sparse.selected[q]!.filter((b) => b >= 0));
    const cells = Array.from({ length: blocks }, (_, b) => (b * sparse.blockSize > q ? " " : chosen.has(b) ? "■" : "·")).join(" ");
    lines.push(`  ${s.dim(String(q).padStart(3))} ${labels[q]!.padEnd(width)} ${cells}`.trimEnd());
  }
  return lines;
}

function renderRouting(r: StepRecord, routing: RoutingStep, s: Style): string[] {
  const E = routing.experts;
  const most = Math.max(...routing.routed, 1);
  const width = 16;
  const cell = (e: number) => {
    const [routed, kept] = [routing.routed[e]!, routing.kept[e]!];
    const drawn = bar(kept, most, width) + "░".repeat(Math.max(0, Math.round(((routed - kept) / most) * width)));
    const drops = routed > kept ? s.accent(` -${routed - kept}`) : "";
    return `${s.dim(`e${e}`.padStart(4))} ${drawn.padEnd(width)} ${String(routed).padStart(3)}${drops}`;
  };
  const columns = E > 8 ? 2 : 1;
  const rows = Math.ceil(E / columns);
  const capacity = routing.capacity === null ? "dropless (no capacity limit, as DeepSeek-V3)" : `capacity ${routing.capacity} per expert`;
  const lines = [`  routing ${s.dim(`(assignments per expert: █ kept, ░ dropped; ${capacity})`)}`];
  for (let row = 0; row < rows; row++) {
    const parts: string[] = [];
    for (let c = 0; c < columns; c++) if (row + c * rows < E) parts.push(cell(row + c * rows).padEnd(34));
    lines.push(`  ${parts.join("   ")}`.trimEnd());
  }
  const tokens = routing.tokens.slice(0, 6).map((t) => {
    const chosen = t.experts.map((e, i) => `e${e}${t.kept[i] ? "" : "✗"}:${fmt(t.weights[i]!)}`).join(" ");
    return `    ${r.tokens[t.token]!.label.padEnd(6)} → ${chosen}`;
  });
  lines.push(
    `  dropped ${routing.dropped} (${fmt(100 * routing.dropRate, 1)}%) · MaxVio ${fmt(routing.maxVio)} · experts used ${Math.round(routing.activeFraction * E)}/${E}`,
    s.dim(`  first tokens' choices (expert:weight):`),
    ...tokens,
  );
  return lines;
}

export function renderOutput(r: StepRecord, s: Style): string {
  const title = " output ";
  const lines = [s.bold(`━━${title}${"━".repeat(96 - title.length)}`), ""];
  const L = r.layers.length;
  if (r.exitThreshold !== null) {
    const mean = r.exitLayers.reduce((a, n) => a + n, 0) / r.exitLayers.length;
    lines.push(`  early exit at threshold ${r.exitThreshold}: mean depth ${fmt(mean)} of ${L} layers (${fmt(100 * (1 - mean / L), 1)}% of feed-forward work skipped; attention still fills the caches)`);
    lines.push(`  layers run per token  ${r.exitLayers.join(" ")}`, "");
  }
  lines.push(`  next token after ${JSON.stringify(r.prompt)}:`);
  const most = r.next[0]?.prob ?? 1;
  for (const n of r.next) lines.push(`    ${n.label.padEnd(6)} ${bar(n.prob, most, 24).padEnd(24)} ${(100 * n.prob).toFixed(2)}%`);
  if (r.mtp) {
    lines.push("", `  token after next, by the MTP module given next = ${r.mtp.after.label}:`);
    const top = r.mtp.next[0]?.prob ?? 1;
    for (const n of r.mtp.next) lines.push(`    ${n.label.padEnd(6)} ${bar(n.prob, top, 24).padEnd(24)} ${(100 * n.prob).toFixed(2)}%`);
    lines.push(s.dim(`  in the prompt it predicted ${r.mtp.hits} of ${r.mtp.of} tokens two places ahead`));
  }
  lines.push(
    "",
    s.dim("  try:  npx tinyseek step --layer 2 --head 1 --interactive · --exit-threshold 0.5 · --exit-sweep 0.1,0.3,0.5"),
    s.dim("        --attention decay (or mha, segmented, sparse, dsa; mla,mha,decay,dsa per layer) · --json · --trace FILE"),
    s.dim("        --backend wasm --compare · npx tinyseek generate --prompt TEXT · npx tinyseek --help"),
  );
  return lines.join("\n");
}

/** The whole record: header, every layer (or only `layer`), output. */
export function renderStep(r: StepRecord, options: { color?: boolean; layer?: number } = {}): string[] {
  const s = styleFor(options.color ?? false);
  const layers = options.layer === undefined ? r.layers : r.layers.filter((l) => l.layer === options.layer);
  return [renderHeader(r, s), ...layers.map((l) => renderLayer(r, l, s)), renderOutput(r, s)];
}
