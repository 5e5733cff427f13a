// A terminal heatmap: one row per label, one two-character cell per column, shaded by |value| (· ░ ▒ ▓ █ on a √
// scale up to `max`), a minus sign before a negative cell, with a legend. What the research commands draw.

import { shade } from "../step/render.ts";

export interface HeatmapOptions {
  /** The value drawn as █ (default: the largest |value|). */
  max?: number;
  /** What a cell means, for the legend. */
  legend: string;
}

/** Column labels are drawn one character each (a token's label, a head's number). */
export function heatmap(rowLabels: readonly string[], columnLabels: readonly string[], values: readonly (readonly number[])[], options: HeatmapOptions): string {
  const width = Math.max(...rowLabels.map((l) => l.length), 4);
  const max = options.max ?? Math.max(1e-30, ...values.flat().map(Math.abs));
  const head = " ".repeat(width + 2) + columnLabels.map((c) => ` ${[...c][0] ?? " "}`).join("");
  const rows = values.map((row, r) => `${rowLabels[r]!.padEnd(width)}  ${row.map((v) => `${v < 0 ? "−" : " "}${shade(Math.min(1, Math.abs(v) / max))}`).join("")}`);
  return [head, ...rows, "", `${" ".repeat(width + 2)}${options.legend}; · ░ ▒ ▓ █ up to ${max.toPrecision(3)} (√ scale), − negative`].join("\n");
}
