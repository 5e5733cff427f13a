// The interventions clicked on the page, kept as plain data and turned into the research API's values
// (src/research/heads.ts, experts.ts) for each run: the page never edits activations itself.

import type { ExpertAction, Intervention } from "../../src/model/interventions.ts";
import type { Model } from "../../src/model/weights.ts";
import { ablateHeads } from "../../src/research/heads.ts";
import { ablateExperts, banExperts, forceExperts } from "../../src/research/experts.ts";

export type Edit =
  | { kind: "head"; layer: number; head: number }
  | { kind: "expert"; action: ExpertAction; layer: number; expert: number; /** absent: every token */ position?: number };

/** A stable key: clicking the same thing again removes it. */
export const editKey = (e: Edit): string =>
  e.kind === "head" ? `head ${e.layer}.${e.head}` : `${e.action} ${e.layer}.${e.expert}${e.position === undefined ? "" : `@${e.position}`}`;

const EXPERT_EDITS = { ban: banExperts, force: forceExperts, ablate: ablateExperts } as const;

/** Each edit as the API builds it: zero-ablation of one head, or one expert edit. */
export function interventionsOf(model: Model, edits: readonly Edit[]): Intervention[] {
  return edits.map((e) => e.kind === "head"
    ? ablateHeads(model, { layer: e.layer, heads: [e.head] })
    : EXPERT_EDITS[e.action](e.layer, [e.expert], e.position === undefined ? undefined : [e.position]));
}

/** `edits` with `edit` added, or removed when it is already there. */
export function toggle(edits: readonly Edit[], edit: Edit): Edit[] {
  const key = editKey(edit);
  return edits.some((e) => editKey(e) === key) ? edits.filter((e) => editKey(e) !== key) : [...edits, edit];
}

export const has = (edits: readonly Edit[], edit: Edit): boolean => edits.some((e) => editKey(e) === editKey(edit));
