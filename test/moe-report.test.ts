import { describe, expect, it } from "vitest";
import { main } from "../src/cli/main.ts";
import { formatMoeReport, loadBars, moeReport } from "../src/reports/moe.ts";

import { capture } from "./helpers.ts";

describe("moe report", () => {
  const report = moeReport();

  it("is internally consistent: drops follow the loads, raising cf never drops more, dropless drops none", () => {
    for (const bias of ["none", "balanced"] as const) {
      const rows = report.capacityRows.filter((r) => r.bias === bias);
      expect(rows.map((r) => r.capacityFactor)).toEqual([1, 1.25, 2, null]);
      for (let i = 1; i < rows.length; i++) expect(rows[i]!.dropped).toBeLessThanOrEqual(rows[i - 1]!.dropped);
      expect(rows[3]!.dropped).toBe(0);
      expect(rows[3]!.capacityUtilisation).toBeNull();
    }
    for (const s of [report.loads.before, report.loads.after]) {
      expect(s.dropped).toBe(s.routed.reduce((n, r) => n + Math.max(0, r - s.capacity!), 0));
    }
    for (const d of report.dropOrders) expect(d.dropped).toBe(report.capacityRows[0]!.dropped); // same count, cf = 1
  });

  it("balancing the deliberately skewed router lowers MaxVio and the drops", () => {
    const none = report.capacityRows.find((r) => r.bias === "none" && r.capacityFactor === 1.25)!;
    const balanced = report.capacityRows.find((r) => r.bias === "balanced" && r.capacityFactor === 1.25)!;
    expect(balanced.maxVio).toBeLessThan(none.maxVio);
    expect(balanced.dropped).toBeLessThan(none.dropped);
    expect(report.trajectory).toHaveLength(50);
    expect(report.source).toMatch(/tiny model's seeded embedding/);
  });

  it("draws one bar per expert with the capacity marker", () => {
    const bars = loadBars(report.loads.before);
    expect(bars).toHaveLength(16);
    for (const line of bars) expect(line).toContain("│");
    const text = formatMoeReport(report);
    expect(text).toContain("dropless");
    expect(text).toContain("rank-bpr");
  });

  it("runs from the command line, as a table and as JSON, and refuses bad arguments", async () => {
    const table = capture();
    expect(await main(["moe-report", "--batches", "5", "--tokens", "64"], table.io)).toBe(0);
    expect(table.out.join("\n")).toMatch(/capacity factor × bias/);
    const json = capture();
    expect(await main(["moe-report", "--seeded", "--batches", "3", "--json"], json.io)).toBe(0);
    const parsed = JSON.parse(json.out.join("\n"));
    expect(parsed.source).toMatch(/seeded vectors/);
    expect(parsed.capacityRows).toHaveLength(8);
    const bad = capture();
    expect(await main(["moe-report", "--rate", "fast"], bad.io)).toBe(2);
    expect(bad.err.join("")).toMatch(/--rate: expected a number/);
    expect(await main(["moe-report", "--batches", "0"], capture().io)).toBe(2); // a usage error naming --batches
  });
});
