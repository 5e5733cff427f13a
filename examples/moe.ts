// Lesson 4: MoE routing — capacity factor, drops, utilisation, and DeepSeek-V3's bias balancing over batches
// (src/moe/). Everything here is routing alone: the experts' MLPs change no count, so it runs in a second.
import { expertCapacity } from "../src/moe/capacity.ts";
import { moeReport, type MoeReport } from "../src/reports/moe.ts";

/** The report the CLI prints (`tinyseek moe-report`), deterministic for a seed. */
export const report = (batches = 50): MoeReport => moeReport({ batches });

/** C = ceil(cf·k·N/E) for the tiny router (k = 4 of E = 16) and a batch of N = 128 tokens. */
export function capacities(N = 128, k = 4, E = 16) {
  return [1, 1.25, 1.5, 2, null].map((cf) => ({ capacityFactor: cf, capacity: expertCapacity(cf, k, N, E), evenShare: (k * N) / E }));
}

/** Per-expert routed and kept loads, one row per (expert, what), for a bar chart. */
export function loadRows(stats: MoeReport["loads"]["before"], label: string) {
  return stats.routed.flatMap((routed, e) => [
    { expert: `e${e}`, when: label, what: "kept", assignments: stats.kept[e]! },
    { expert: `e${e}`, when: label, what: "dropped", assignments: routed - stats.kept[e]! },
  ]);
}

/** Routed loads on one unseen batch after n batches of bias balancing (the router itself never changes). */
export function loadsOverBatches(counts: readonly number[] = [1, 10, 50, 200]) {
  return counts.map((n) => {
    const r = moeReport({ batches: n });
    return { batches: n, routed: r.loads.after.routed, maxVio: r.loads.after.maxVio, dropRate: r.loads.after.dropRate, capacity: r.loads.after.capacity };
  });
}

/** MaxVio of each training batch, before its bias update. */
export const trajectory = (r: MoeReport) => r.trajectory.map((maxVio, i) => ({ batch: i + 1, maxVio }));
