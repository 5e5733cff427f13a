// A routing decision as text a person can read: one line per token, its k choices best first, each with its
// weight and whether capacity kept it.
//
//   token  text   choice 1          choice 2
//       0  "T"    e3  0.4120  kept  e7  0.3010  DROPPED
//       1  pad    -

import { argError, checkInteger } from "../errors.ts";
import type { TokenMask } from "./capacity.ts";
import type { Routing } from "./experts.ts";

export interface RoutingTableOptions {
  /** What each token is (its text); shown quoted. */
  labels?: readonly string[];
  mask?: TokenMask;
  /** Show at most this many tokens (default 32); the rest is summarised in one line. */
  maxTokens?: number;
}

export function routingTable(routing: Routing, options: RoutingTableOptions = {}): string {
  const { k } = routing;
  const N = routing.experts.length / k;
  const { labels, mask, maxTokens = 32 } = options;
  if (labels && labels.length !== N) throw argError("labels", `${N} labels (one per token)`, labels.length);
  if (mask && mask.length !== N) throw argError("mask", `${N} flags (one per token)`, mask.length);
  checkInteger("maxTokens", maxTokens, 1);
  const width = Math.max(2, ...Array.from(routing.experts, (e) => String(e).length));
  const label = (t: number) => (labels ? JSON.stringify(labels[t]) : "");
  const labelWidth = labels ? Math.max(4, ...labels.map((_, t) => label(t).length)) : 0;
  const choice = (a: number) =>
    `e${String(routing.experts[a]).padEnd(width)} ${routing.weights[a]!.toFixed(4).padStart(7)}  ${routing.kept[a] ? "kept   " : "DROPPED"}`;
  const column = (r: number) => `choice ${r + 1}`.padEnd(choice(0).length);

  const lines = [`token  ${labels ? "text".padEnd(labelWidth) + "  " : ""}${Array.from({ length: k }, (_, r) => column(r)).join("  ")}`.trimEnd()];
  for (let t = 0; t < Math.min(N, maxTokens); t++) {
    const head = `${String(t).padStart(5)}  ${labels ? label(t).padEnd(labelWidth) + "  " : ""}`;
    if (mask && !mask[t]) {
      lines.push(`${head}padding`);
      continue;
    }
    lines.push(Array.from({ length: k }, (_, r) => choice(t * k + r)).join("  ").replace(/^/, head).trimEnd());
  }
  if (N > maxTokens) lines.push(`  … ${N - maxTokens} more tokens`);
  return lines.join("\n");
}
