// Stepping through the forward as `tinyseek step` does: one layer at a time and, inside it, one op at a time
// (norm, attention, residual add, norm, feed-forward, residual add), each with its output's shape and mean row
// norm from the step record; then the output (final norm, head, softmax). The attention and routing sections
// follow the layer chosen here.

import * as Plot from "@observablehq/plot";
import type { LayerStep, StepRecord } from "../../src/step/record.ts";
import { button, el } from "./dom.ts";
import { positionLabel, shown, tickLabel } from "./labels.ts";

export interface Position {
  /** 0 … L − 1 a layer; L the output. */
  layer: number;
  /** The op inside the layer (index into its ops). */
  op: number;
}

export interface StepperOptions {
  onMove: (to: Position) => void;
}

/** The next or previous position, op by op (delta ±1) across layer boundaries. */
export function moveOp(record: StepRecord, at: Position, delta: number): Position {
  const L = record.layers.length;
  const flat: Position[] = [...record.layers.flatMap((l) => l.ops.map((_, op) => ({ layer: l.layer, op }))), { layer: L, op: 0 }];
  const i = flat.findIndex((p) => p.layer === at.layer && p.op === at.op);
  return flat[Math.max(0, Math.min(flat.length - 1, (i < 0 ? 0 : i) + delta))]!;
}

export function moveLayer(record: StepRecord, at: Position, delta: number): Position {
  const layer = Math.max(0, Math.min(record.layers.length, at.layer + delta));
  return { layer, op: layer === at.layer ? at.op : 0 };
}

const OP_TEXT: Record<string, string> = {
  input_layernorm: "RMSNorm of the residual stream h before attention: x / √(mean(x²) + ε) · γ.",
  attention: "Attention reads earlier tokens. With MLA the keys and values come up from a small latent c_kv, the only thing the cache keeps; its heads and latent are drawn in the Attention section.",
  "+ residual": "The sublayer's output is added to the residual stream: h ← h + out.",
  post_attention_layernorm: "RMSNorm again, into the feed-forward.",
  "feed-forward": "The feed-forward: a dense SwiGLU MLP, or in a MoE layer the router's top-k experts weighted plus the shared expert (the MoE routing section).",
};

export function stepperView(record: StepRecord, at: Position, options: StepperOptions): HTMLElement {
  const L = record.layers.length;
  const root = el("div", { class: "stepper" });
  const nav = el("div", { class: "step-nav", role: "group", "aria-label": "Step controls" },
    button("⇤ first", () => options.onMove({ layer: 0, op: 0 }), { "aria-keyshortcuts": "Home" }),
    button("◀ previous layer", () => options.onMove(moveLayer(record, at, -1)), { "aria-keyshortcuts": "PageUp" }),
    button("◀ previous op", () => options.onMove(moveOp(record, at, -1)), { "aria-keyshortcuts": "ArrowLeft", id: "prev-op" }),
    button("next op ▶", () => options.onMove(moveOp(record, at, 1)), { "aria-keyshortcuts": "ArrowRight", id: "next-op" }),
    button("next layer ▶", () => options.onMove(moveLayer(record, at, 1)), { "aria-keyshortcuts": "PageDown", id: "next-layer" }),
    button("output ⇥", () => options.onMove({ layer: L, op: 0 }), { "aria-keyshortcuts": "End", id: "to-output" }),
  );
  const strip = el("ol", { class: "layer-strip", "aria-label": "Layers" });
  for (const step of record.layers) {
    strip.append(el("li", {}, button(`Layer ${step.layer}: ${step.attention.toUpperCase()} · ${step.ffn === "moe" ? "MoE" : "dense"}`,
      () => options.onMove({ layer: step.layer, op: 0 }), { "aria-current": at.layer === step.layer ? "step" : undefined, class: at.layer > step.layer ? "done" : undefined })));
  }
  strip.append(el("li", {}, button("Output", () => options.onMove({ layer: L, op: 0 }), { "aria-current": at.layer === L ? "step" : undefined })));
  root.append(nav, strip);
  root.append(at.layer < L ? layerDetail(record, record.layers[at.layer]!, at, options) : outputDetail(record));
  return root;
}

function layerDetail(record: StepRecord, step: LayerStep, at: Position, options: StepperOptions): HTMLElement {
  const box = el("div", { class: "layer-detail", "data-layer": step.layer, "data-op": at.op });
  const ops = el("ol", { class: "ops", "aria-label": `Ops of layer ${step.layer}` });
  step.ops.forEach((op, i) => ops.append(el("li", { class: i < at.op ? "done" : i === at.op ? "current" : "todo" },
    button(el("span", {}, el("code", {}, op.op), ` → [${op.shape.join(", ")}], mean ‖row‖ ${op.meanNorm.toFixed(2)}`),
      () => options.onMove({ layer: step.layer, op: i }), { "aria-current": i === at.op ? "step" : undefined }))));
  const op = step.ops[at.op];
  box.append(el("h3", {}, `Layer ${step.layer} of ${record.layers.length}, op ${at.op + 1} of ${step.ops.length}${op ? `: ${op.op}` : ""}`), ops);
  if (op) box.append(el("p", { class: "op-text" }, OP_TEXT[op.op] ?? "", ` Traced as `, el("code", {}, op.name), "."));
  if (step.exited.length > 0) box.append(el("p", {}, `Tokens that exited after this layer: ${step.exited.map((t) => positionLabel(t, record.tokens[t]!.label)).join(", ")}.`));
  if (at.op === step.ops.length - 1) box.append(normsPicture(record, step));
  return box;
}

/** ‖h‖ per token after the layer. */
function normsPicture(record: StepRecord, step: LayerStep): HTMLElement {
  const labels = record.tokens.map((t) => t.label);
  const data = step.residualNorms.map((n, t) => ({ t, n }));
  return el("figure", {}, el("figcaption", {}, `The residual stream's norm ‖h‖ per token after layer ${step.layer}`), Plot.plot({
    width: Math.min(900, 60 + 18 * labels.length), height: 180, marginLeft: 44, style: { fontSize: "10px" },
    ariaLabel: `Residual norm per token after layer ${step.layer}`,
    x: { type: "band", domain: labels.map((_, i) => i), label: "token →", tickFormat: (t: number) => tickLabel(labels[t] ?? ""), tickSize: 0, labelAnchor: "right" },
    y: { label: "↑ ‖h‖", grid: true },
    marks: [Plot.barY(data, { x: "t", y: "n", fill: "#4292c6", title: (d: { t: number; n: number }) => `${positionLabel(d.t, labels[d.t]!)}: ${d.n.toFixed(2)}` }), Plot.ruleY([0])],
  }));
}

function outputDetail(record: StepRecord): HTMLElement {
  const top = record.next[0];
  return el("div", { class: "layer-detail", "data-layer": record.layers.length },
    el("h3", {}, "Output"),
    el("p", { class: "op-text" }, "The final RMSNorm and the output head turn the last position's residual into logits over the 260 byte tokens; their softmax is the next-token distribution (Next token, left).",
      top ? ` Most probable: '${shown(top.label)}' at ${(100 * top.prob).toFixed(1)} %.` : ""));
}
