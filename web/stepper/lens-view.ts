// The logit lens (each layer's residual read out through the final norm and head: which token it already
// predicts at each position) and early exit (the confidence p_top1 − p_top2 after each layer, per token).

import * as Plot from "@observablehq/plot";
import type { StepRecord } from "../../src/step/record.ts";
import type { LensView } from "./compute.ts";
import { el, inkOn, shadeLegend, shadeOf } from "./dom.ts";
import { positionLabel, shown, tickLabel } from "./labels.ts";

const pointName = (point: string): string => (point === "embed" ? "embedding" : `after layer ${point.split(".")[1]}`);

export function lensView(record: StepRecord, lens: LensView): HTMLElement {
  const root = el("div", { class: "lens" });
  const table = el("table", { class: "lens-table" });
  table.append(el("caption", {}, "Logit lens: the most probable next token read from each layer's residual stream at each position (shade = its probability). The last row is the model's own prediction."));
  const head = el("tr", {}, el("th", { scope: "col" }, "read from"));
  record.tokens.forEach((t, i) => head.append(el("th", { scope: "col", title: positionLabel(i, t.label) }, tickLabel(t.label))));
  table.append(el("thead", {}, head));
  const body = el("tbody");
  lens.points.forEach((point, p) => {
    const tr = el("tr", {}, el("th", { scope: "row" }, pointName(point)));
    lens.top1[p]!.forEach((cell, t) => tr.append(el("td", {
      style: `background:${shadeOf(cell.prob)};color:${inkOn(cell.prob)}`,
      title: `${pointName(point)}, position ${positionLabel(t, record.tokens[t]!.label)}: '${shown(cell.label)}' ${(100 * cell.prob).toFixed(1)} %`,
    }, tickLabel(cell.label))));
    body.append(tr);
  });
  table.append(body);
  root.append(el("div", { class: "scroll" }, table), el("div", { class: "legend" }, shadeLegend("probability of the lens's top token")));

  const last = el("table", { class: "lens-last" });
  last.append(el("caption", {}, `After the last token ('${shown(record.tokens.at(-1)!.label)}'): the lens's top 5 at each layer`));
  last.append(el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "read from"), ...[1, 2, 3, 4, 5].map((k) => el("th", { scope: "col" }, `#${k}`)))));
  const lastBody = el("tbody");
  lens.points.forEach((point, p) => lastBody.append(el("tr", { "data-point": point }, el("th", { scope: "row" }, pointName(point)),
    ...lens.last[p]!.map((c) => el("td", { "data-token-id": c.id, "data-prob": String(c.prob) }, `'${shown(c.label)}' ${(100 * c.prob).toFixed(1)} %`)))));
  last.append(lastBody);
  root.append(last);
  return root;
}

export function exitView(record: StepRecord): HTMLElement {
  const root = el("div", { class: "exits" });
  const L = record.layers.length;
  const labels = record.tokens.map((t) => t.label);
  const data: { layer: number; t: number; c: number }[] = [];
  for (const step of record.layers) (step.confidence ?? []).forEach((c, t) => data.push({ layer: step.layer, t, c }));
  const exited = record.exitLayers.flatMap((layers, t) => (layers < L ? [{ t, layer: layers - 1 }] : []));
  const threshold = record.exitThreshold;
  const on = threshold !== null && threshold <= 1;
  root.append(el("p", {}, on
    ? `Early exit is on: a token stops once p_top1 − p_top2 ≥ ${threshold}. ${exited.length} of ${record.tokens.length} tokens exited early (mean depth ${(record.exitLayers.reduce((a, b) => a + b, 0) / record.tokens.length).toFixed(2)} of ${L} layers).`
    : `Early exit is off (set a threshold to turn it on); the confidence a token would exit on is still measured after each layer but the last.`));
  if (data.length === 0) return root;
  root.append(el("figure", {}, el("figcaption", {}, "Confidence p_top1 − p_top2 after each layer (◯: the token exited there)"), Plot.plot({
    width: Math.min(900, 60 + 18 * labels.length), height: 40 + 26 * (L - 1) + 30, marginLeft: 90, marginBottom: 30, style: { fontSize: "10px" },
    ariaLabel: `Early-exit confidence of ${labels.length} tokens after layers 0 to ${L - 2}`,
    x: { type: "band", domain: labels.map((_, i) => i), label: "token →", tickFormat: (t: number) => tickLabel(labels[t] ?? ""), tickSize: 0, labelAnchor: "right" },
    y: { type: "band", domain: Array.from({ length: L - 1 }, (_, l) => l), label: null, tickFormat: (l: number) => `after layer ${l}` },
    color: { type: "linear", domain: [0, 1], scheme: "blues", legend: true, label: "confidence p₁ − p₂" },
    marks: [
      Plot.cell(data, { x: "t", y: "layer", fill: "c", inset: 0.5, title: (d: { layer: number; t: number; c: number }) => `${positionLabel(d.t, labels[d.t]!)} after layer ${d.layer}: ${d.c.toFixed(3)}` }),
      Plot.dot(exited, { x: "t", y: "layer", r: 5, stroke: "#d94801", strokeWidth: 2 }),
    ],
  })));
  return root;
}
