// The next-token distribution: the step record's top predictions after the prompt, with their exact
// probabilities in data attributes, and the last position's logits in the table's data-logits (the browser test
// reads them to compare with Node's reference).

import type { StepRecord } from "../../src/step/record.ts";
import { el, percent } from "./dom.ts";
import { shown } from "./labels.ts";

export function predictionView(record: StepRecord, lastLogits: Float32Array): HTMLElement {
  const table = el("table", { class: "prediction", id: "prediction-table", "data-backend": record.backend, "data-logits": JSON.stringify(Array.from(lastLogits)) });
  table.append(el("caption", {}, `After '${shown(record.tokens.at(-1)!.label)}', the model predicts (softmax of the last position's logits)`));
  table.append(el("thead", {}, el("tr", {}, ...["#", "token", "id", "probability"].map((h) => el("th", { scope: "col" }, h)))));
  const body = el("tbody");
  const max = record.next[0]?.prob ?? 1;
  record.next.forEach((n, i) => body.append(el("tr", { class: "next-token", "data-token-id": n.id, "data-prob": String(n.prob) },
    el("td", {}, i + 1),
    el("td", { class: "token" }, shown(n.label)),
    el("td", {}, n.id),
    el("td", {}, el("span", { class: "bar", style: `width:${(100 * n.prob) / max}%`, "aria-hidden": "true" }), el("span", { class: "value" }, percent(n.prob, 2))),
  )));
  table.append(body);
  return table;
}
