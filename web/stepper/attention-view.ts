// The attention of one layer: MLA's latent (what the KV cache holds, and how much smaller it is than MHA's keys and
// values) and one heatmap per head (rows are queries, columns the keys they read), each head with its ablation switch.

import * as Plot from "@observablehq/plot";
import type { StepRecord } from "../../src/step/record.ts";
import type { LayerAttention } from "./compute.ts";
import { button, el } from "./dom.ts";
import { positionLabel, tickLabel } from "./labels.ts";

export interface AttentionViewOptions {
  /** Whether head h of the layer is ablated, and how to toggle it. */
  ablated: (head: number) => boolean;
  onToggleHead: (head: number) => void;
}

export function attentionView(record: StepRecord, view: LayerAttention, options: AttentionViewOptions): HTMLElement {
  const step = record.layers[view.layer]!;
  const root = el("div", { class: "attention" });
  if (!view.probs) {
    root.append(latentView(record, view), el("p", {}, `Layer ${view.layer} is ${step.attention} attention, which runs on the host and exposes no per-head probabilities.`));
    return root;
  }
  const [H, T, Tk] = view.probs.shape as [number, number, number];
  const labels = record.tokens.map((t) => t.label);
  root.append(el("p", { class: "hint" }, `Each picture is one head: row = the query token, column = the key it reads, shade = softmax probability (√ scale). Keys after the query are hidden (causal mask). “Ablate” zeroes the head's output before the output projection (ablateHeads).`));
  const grid = el("div", { class: "heads" });
  for (let h = 0; h < H; h++) {
    const data: { q: number; k: number; p: number }[] = [];
    for (let q = 0; q < T; q++) for (let k = 0; k < Tk; k++) data.push({ q, k, p: view.probs.data[(h * T + q) * Tk + k]! });
    const picture = Plot.plot({
      width: 228, height: 228, marginLeft: 28, marginBottom: 30, marginTop: 10, marginRight: 4,
      style: { fontSize: "9px" },
      ariaLabel: `Attention of layer ${view.layer} head ${h}: ${T} queries by ${Tk} keys`,
      x: { type: "band", domain: range(Tk), ticks: everyNth(Tk, 196), label: "key →", tickFormat: (k: number) => tickLabel(labels[k] ?? ""), tickSize: 0, labelAnchor: "right" },
      y: { type: "band", domain: range(T), ticks: everyNth(T, 188), label: "↓ query", tickFormat: (q: number) => tickLabel(labels[q] ?? ""), tickSize: 0, labelAnchor: "top" },
      color: { type: "sqrt", domain: [0, 1], scheme: "blues" },
      marks: [Plot.cell(data, { x: "k", y: "q", fill: "p", inset: 0, title: (d: { q: number; k: number; p: number }) => `${positionLabel(d.q, labels[d.q]!)} → ${positionLabel(d.k, labels[d.k]!)}: ${d.p.toFixed(4)}` })],
    });
    const ablated = options.ablated(h);
    const toggle = button(ablated ? `Restore head ${h}` : `Ablate head ${h}`, () => options.onToggleHead(h), {
      class: ablated ? "ablate on" : "ablate", "aria-pressed": String(ablated), "data-layer": view.layer, "data-head": h,
      "aria-label": `${ablated ? "Restore" : "Ablate"} head ${h} of layer ${view.layer}`,
    });
    grid.append(el("figure", { class: ablated ? "head ablated" : "head" }, el("figcaption", {}, `Head ${h}${ablated ? " (ablated: its output is zero)" : ""} `, toggle), picture));
  }
  root.append(grid, el("div", { class: "legend" }, Plot.legend({ color: { type: "sqrt", domain: [0, 1], scheme: "blues", label: "attention probability" }, width: 260 }) as Element));
  root.append(latentView(record, view));
  return root;
}

/** MLA: the latent c_kv each token caches (r floats, plus the shared rotary key) against MHA's keys and values. */
function latentView(record: StepRecord, view: LayerAttention): HTMLElement {
  const m = record.model;
  const { bytesPerToken, mhaBytesPerToken } = record.cache;
  const box = el("div", { class: "latent" });
  const kind = record.layers[view.layer]!.attention;
  box.append(el("p", { "data-cache-bytes": bytesPerToken, "data-mha-bytes": mhaBytesPerToken },
    el("strong", {}, `Layer ${view.layer}: ${kind.toUpperCase()} attention. `),
    kind === "mla"
      ? `Each token caches a latent c_kv of r = ${m.kv_lora_rank} floats plus a ${m.qk_rope_head_dim}-float rotary key shared by the ${m.num_attention_heads} heads. `
      : "",
    `KV cache: ${bytesPerToken.toLocaleString("en")} bytes per token over all ${m.num_hidden_layers} layers, against ${mhaBytesPerToken.toLocaleString("en")} for multi-head attention's keys and values (${(mhaBytesPerToken / bytesPerToken).toFixed(1)}× smaller).`));
  if (view.latent) {
    const [, T, r] = view.latent.shape as [number, number, number];
    const labels = record.tokens.map((t) => t.label);
    const data: { t: number; i: number; v: number }[] = [];
    let max = 0;
    for (let t = 0; t < T; t++) for (let i = 0; i < r; i++) {
      const v = view.latent.data[t * r + i]!;
      max = Math.max(max, Math.abs(v));
      data.push({ t, i, v });
    }
    box.append(el("figure", { class: "latent-map" }, el("figcaption", {}, `The latent c_kv [${view.latent.shape.join(", ")}] of layer ${view.layer}: what the cache holds for each token`),
      Plot.plot({
        width: 300, height: Math.max(160, 6 * T + 40), marginLeft: 34, marginBottom: 30, marginTop: 8, style: { fontSize: "9px" },
        ariaLabel: `MLA latent of layer ${view.layer}: ${T} tokens by ${r} latent dimensions`,
        x: { type: "band", domain: range(r), label: "latent dimension →", ticks: range(r).filter((i) => i % 8 === 0), tickSize: 0, labelAnchor: "right" },
        y: { type: "band", domain: range(T), label: "↓ token", tickFormat: (t: number) => tickLabel(labels[t] ?? ""), tickSize: 0, labelAnchor: "top" },
        color: { type: "linear", domain: [-max, max], scheme: "rdbu", legend: true, label: "latent value" },
        marks: [Plot.cell(data, { x: "i", y: "t", fill: "v", inset: 0, title: (d: { t: number; i: number; v: number }) => `${positionLabel(d.t, labels[d.t]!)}, dimension ${d.i}: ${d.v.toFixed(3)}` })],
      })));
  }
  return box;
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** Tick positions for n bands over `pixels`: every one where 9-pixel labels fit, else every 2nd, 3rd, …. */
const everyNth = (n: number, pixels: number): number[] => {
  const step = Math.max(1, Math.ceil((9 * n) / pixels));
  return range(n).filter((i) => i % step === 0);
};
