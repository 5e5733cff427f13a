// The MoE routing of one layer: the load per expert (assignments routed and kept, against the balanced mean), and
// per token the experts the router chose with their weights. Clicking an expert's column applies the chosen action
// (ban, force, ablate: src/research/experts.ts) to every token; clicking a cell applies it to that token alone.

import * as Plot from "@observablehq/plot";
import type { ExpertAction } from "../../src/model/interventions.ts";
import type { RoutingStep, StepRecord } from "../../src/step/record.ts";
import { button, el, inkOn, shadeLegend, shadeOf } from "./dom.ts";
import { positionLabel } from "./labels.ts";

export interface RoutingViewOptions {
  action: ExpertAction;
  onAction: (action: ExpertAction) => void;
  /** The edit already applied to this expert (at this position, or to every token when absent), if any. */
  editOf: (expert: number, position?: number) => ExpertAction | undefined;
  onExpert: (expert: number, position?: number) => void;
}

export function routingView(record: StepRecord, layer: number, options: RoutingViewOptions): HTMLElement {
  const step = record.layers[layer]!;
  const root = el("div", { class: "routing" });
  if (!step.routing) {
    const m = record.model;
    root.append(el("p", {}, step.ffn === "dense"
      ? `Layer ${layer} has a dense feed-forward (a SwiGLU MLP; the first ${m.first_k_dense_replace} layer${m.first_k_dense_replace === 1 ? " is" : "s are"} dense): no routing. Step to a MoE layer to see the router.`
      : `Layer ${layer} routed no token (every token exited before it).`));
    return root;
  }
  const r = step.routing;
  root.append(
    el("p", {}, `${r.experts} routed experts + ${r.shared} shared, top-${r.k} per token (${record.model.scoring_func} scores, ${record.model.n_group} groups, ${record.model.topk_group} eligible). `,
      `Dropped ${r.dropped} (${(100 * r.dropRate).toFixed(1)} %), max violation ${r.maxVio.toFixed(2)}, ${(100 * r.activeFraction).toFixed(0)} % of experts active.`),
    loadChart(r, layer),
    actionPicker(options),
    routingTable(record, r, layer, options),
    el("div", { class: "legend" }, shadeLegend("router weight of a chosen expert (scaled by routed_scaling_factor)", maxWeight(r))),
  );
  return root;
}

function loadChart(r: RoutingStep, layer: number): HTMLElement {
  const data = r.routed.map((routed, expert) => ({ expert, routed, kept: r.kept[expert]! }));
  const mean = (r.tokens.length * r.k) / r.experts;
  const picture = Plot.plot({
    width: 560, height: 200, marginLeft: 44, marginBottom: 36,
    ariaLabel: `Expert load of layer ${layer}: assignments per expert`,
    x: { type: "band", domain: data.map((d) => d.expert), label: "expert →", labelAnchor: "right" },
    y: { label: "↑ tokens routed", grid: true },
    color: { domain: ["routed", "kept", "balanced mean"], range: ["#9ecae1", "#08519c", "#d94801"], legend: true },
    marks: [
      Plot.barY(data, { x: "expert", y: "routed", fill: () => "routed", title: (d: { expert: number; routed: number; kept: number }) => `expert ${d.expert}: ${d.routed} routed, ${d.kept} kept` }),
      Plot.tickY(data, { x: "expert", y: "kept", stroke: () => "kept", strokeWidth: 2 }),
      Plot.ruleY([mean], { stroke: () => "balanced mean", strokeDasharray: "4 3" }),
      Plot.ruleY([0]),
    ],
  });
  return el("figure", { class: "load" }, el("figcaption", {}, `Expert load, layer ${layer} (balanced: ${mean.toFixed(1)} tokens each)`), picture);
}

function actionPicker(options: RoutingViewOptions): HTMLElement {
  const field = el("fieldset", { class: "actions" }, el("legend", {}, "A click on an expert"));
  const text: Record<ExpertAction, string> = {
    ban: "bans it (the next best runs)",
    force: "forces it (always chosen)",
    ablate: "ablates it (output zeroed, weight kept)",
  };
  for (const action of ["ban", "force", "ablate"] as const) {
    const input = el("input", { type: "radio", name: "expert-action", value: action, id: `expert-action-${action}`, checked: options.action === action });
    input.addEventListener("change", () => options.onAction(action));
    field.append(el("label", { for: `expert-action-${action}` }, input, ` ${text[action]}`));
  }
  return field;
}

function routingTable(record: StepRecord, r: RoutingStep, layer: number, options: RoutingViewOptions): HTMLElement {
  const table = el("table", { class: "route-table", "data-layer": layer });
  table.append(el("caption", {}, `Routing of layer ${layer}: rows are tokens, columns experts; a filled cell is a chosen expert, its number the router weight. Column buttons act on every token, cells on one.`));
  const head = el("tr", {}, el("th", { scope: "col" }, "token"));
  for (let e = 0; e < r.experts; e++) {
    const edit = options.editOf(e);
    head.append(el("th", { scope: "col" }, button(edit ? `${e} ${mark(edit)}` : String(e), () => options.onExpert(e), {
      class: edit ? `expert edited ${edit}` : "expert", "data-expert": e, "aria-pressed": String(edit !== undefined),
      "aria-label": edit ? `Undo ${edit} of expert ${e} of layer ${layer} for every token` : `${options.action} expert ${e} of layer ${layer} for every token`,
    })));
  }
  table.append(el("thead", {}, head));
  const body = el("tbody");
  const top = maxWeight(r);
  for (const row of r.tokens) {
    const label = record.tokens[row.token]!.label;
    const tr = el("tr", {}, el("th", { scope: "row" }, positionLabel(row.token, label)));
    for (let e = 0; e < r.experts; e++) {
      const slot = row.experts.indexOf(e);
      const weight = slot >= 0 ? row.weights[slot]! : 0;
      const edit = options.editOf(e, row.token);
      const chosen = slot >= 0 ? `chosen, weight ${weight.toFixed(3)}${row.kept[slot] ? "" : ", dropped by capacity"}` : "not chosen";
      const cell = button(edit ? mark(edit) : slot >= 0 ? weight.toFixed(2) : "", () => options.onExpert(e, row.token), {
        class: `cell${edit ? ` edited ${edit}` : ""}`, "data-expert": e, "data-position": row.token,
        style: slot >= 0 ? `background:${shadeOf(weight, top)};color:${inkOn(weight, top)}` : undefined,
        "aria-label": `token ${positionLabel(row.token, label)}, expert ${e}: ${chosen}; ${edit ? `undo ${edit}` : `${options.action} at this token`}`,
      });
      tr.append(el("td", {}, cell));
    }
    body.append(tr);
  }
  table.append(body);
  return el("div", { class: "scroll" }, table);
}

/** The largest router weight of the layer (at least 1): the top of the colour ramp. */
const maxWeight = (r: RoutingStep): number => Math.max(1, ...r.tokens.flatMap((t) => t.weights));

const mark = (action: ExpertAction): string => ({ ban: "⊘", force: "★", ablate: "∅" })[action];
