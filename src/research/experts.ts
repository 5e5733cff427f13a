// Expert interventions as values to pass to `run` or `generate` ({ interventions: [...] }); what each computes is
// src/model/interventions.ts (spec/research.md).

import type { ExpertAction, ExpertEdit, Intervention } from "../model/interventions.ts";

const edits = (action: ExpertAction, layer: number, experts: readonly number[], positions?: readonly number[]): Intervention => ({
  label: `${action} expert${experts.length > 1 ? "s" : ""} ${experts.join(", ")} of layer ${layer}${positions ? ` at position${positions.length > 1 ? "s" : ""} ${positions.join(", ")}` : ""}`,
  experts: experts.map((expert): ExpertEdit => (positions ? { action, layer, expert, positions } : { action, layer, expert })),
});

/** The experts may not be chosen (selection score -∞ before top-k): the next best take their places. */
export const banExperts = (layer: number, experts: readonly number[], positions?: readonly number[]) => edits("ban", layer, experts, positions);

/** The experts are chosen; the rest of the k slots go to the router's best among the others. */
export const forceExperts = (layer: number, experts: readonly number[], positions?: readonly number[]) => edits("force", layer, experts, positions);

/** Where the router chose them, the experts' outputs are zero, their weights kept (nothing replaces them). */
export const ablateExperts = (layer: number, experts: readonly number[], positions?: readonly number[]) => edits("ablate", layer, experts, positions);
