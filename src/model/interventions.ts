// Interventions on one forward: hooks (src/model/points.ts) that read or replace activations, and edits of the
// router's choice that hooks cannot express exactly (an activation replaced after top-k cannot un-choose an expert):
//   ban     the expert's selection score is -∞ before top-k, so another expert takes its place
//   force   the expert is chosen (selection score +∞, so its group is eligible); the chosen set is ordered by the
//           router's own selection scores and weighted by its own scores, normalised as it normalises
//   ablate  the chosen expert runs with its output zeroed and its weight kept (no replacement)
// per MoE layer, for every token or the tokens at given absolute positions. The trace's router outputs show what ran.

import { argError, checkInteger, TinyseekError } from "../errors.ts";
import type { RouteEdits } from "../moe/router.ts";
import { isMoeLayer, type ModelConfig } from "./config.ts";
import type { Hooks } from "./points.ts";

export type ExpertAction = "ban" | "force" | "ablate";

export interface ExpertEdit {
  readonly action: ExpertAction;
  readonly layer: number;
  readonly expert: number;
  /** Absolute positions of the tokens it applies to; absent: every token. */
  readonly positions?: readonly number[];
}

/** One intervention: hooks, expert edits, or both; `label` says what it is in reports. */
export interface Intervention {
  readonly label?: string;
  readonly hooks?: Hooks;
  readonly experts?: readonly ExpertEdit[];
}

const ACTIONS: readonly ExpertAction[] = ["ban", "force", "ablate"];

/** Every edit names a MoE layer, an expert and positions that exist; a token is forced to at most k experts. */
export function checkExpertEdits(config: ModelConfig, edits: readonly ExpertEdit[]): void {
  const L = config.num_hidden_layers;
  const moeLayers = Array.from({ length: L }, (_, l) => l).filter((l) => isMoeLayer(config, l));
  edits.forEach((e, i) => {
    const at = `experts[${i}]`;
    if (!e || typeof e !== "object") throw argError(at, "an edit { action, layer, expert, positions? }", e);
    if (!ACTIONS.includes(e.action)) throw argError(`${at}.action`, `one of ${ACTIONS.join(", ")}`, e.action);
    checkInteger(`${at}.layer`, e.layer, 0, L - 1);
    if (!isMoeLayer(config, e.layer)) {
      throw new TinyseekError(`${at}.layer: layer ${e.layer} has a dense feed-forward, no experts (MoE layers: ${moeLayers.length ? moeLayers.join(", ") : "none"})`);
    }
    checkInteger(`${at}.expert`, e.expert, 0, config.n_routed_experts - 1);
    if (e.positions !== undefined) {
      if (!Array.isArray(e.positions) || e.positions.length === 0) throw argError(`${at}.positions`, "a non-empty list of token positions", e.positions);
      e.positions.forEach((p, j) => checkInteger(`${at}.positions[${j}]`, p, 0, config.max_position_embeddings - 1));
    }
  });
  const conflict = edits.find((a) => a.action === "ban" && edits.some((b) => b.action === "force" && b.layer === a.layer && b.expert === a.expert && overlap(a, b)));
  if (conflict) throw new TinyseekError(`experts: expert ${conflict.expert} of layer ${conflict.layer} is both banned and forced`);
}

const overlap = (a: ExpertEdit, b: ExpertEdit): boolean =>
  !a.positions || !b.positions || a.positions.some((p) => b.positions!.includes(p));

/** The router edits of `layer` for rows at `positions`, or null when none applies. */
export function routeEditsFor(edits: readonly ExpertEdit[], layer: number, positions: Int32Array, k: number): RouteEdits | null {
  const mine = edits.filter((e) => e.layer === layer);
  if (mine.length === 0) return null;
  const lists = (action: ExpertAction) => Array.from(positions, (p) => {
    const experts = mine.filter((e) => e.action === action && (!e.positions || e.positions.includes(p))).map((e) => e.expert);
    return [...new Set(experts)];
  });
  const forced = lists("force");
  forced.forEach((f, t) => {
    if (f.length > k) throw new TinyseekError(`experts: ${f.length} experts forced on the token at position ${positions[t]} of layer ${layer}, but it takes ${k}`);
  });
  return { banned: lists("ban"), forced, ablated: lists("ablate") };
}
