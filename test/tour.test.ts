import { describe, expect, it } from "vitest";
import { renderTour, runTour, type TourReport } from "../src/tour.ts";

import { cli } from "./helpers.ts";

describe("tinyseek tour", () => {
  it("prints every section: four masks, one attention table, the decays side by side", async () => {
    const { code, out } = await cli("tour");
    expect(code).toBe(0);
    for (const heading of ["1. Masks", "2. One attention computation", "3. Time decay"]) expect(out).toContain(heading);
    for (const mask of ["causal, 4 new tokens after 3 cached", "padding", "sliding window of 3", "block-local"]) expect(out).toContain(mask);
    expect(out).toContain("    q0 ■ ■ ■ ■ · · ·"); // causal with offset 3: the first new token sees 4 keys
    expect(out).toContain("probabilities");
    expect(out).toContain("as written");
    expect(out.replace("never NaN", "")).not.toMatch(/NaN|undefined/);
  });

  it("is deterministic and follows its seed", async () => {
    expect((await cli("tour")).out).toBe((await cli("tour", "--seed", "7")).out);
    expect((await cli("tour", "--seed", "8")).out).not.toBe((await cli("tour")).out);
  });

  it("--json gives the numbers: rows sum to 1, relative fades the oldest key, as-written favours it", async () => {
    const report = JSON.parse((await cli("tour", "--json")).out) as TourReport;
    expect(report.masks).toHaveLength(4);
    for (const row of report.attention.probs) expect(Math.abs(row.reduce((a, b) => a + b, 0) - 1)).toBeLessThan(1e-6);
    const { none, relative, asWritten, asWrittenNegative } = report.decay;
    none.forEach((p) => expect(p).toBeCloseTo(1 / none.length, 6));
    for (let j = 1; j < relative.length; j++) expect(relative[j]).toBeGreaterThan(relative[j - 1]!);
    expect(Math.max(...asWritten)).toBe(asWritten[0]); // the flaw: the oldest key weighs most
    expect(Math.max(...asWrittenNegative)).toBe(asWrittenNegative.at(-1)); // and the sign of q·k flips it
    expect(renderTour(runTour(7))).toBe((await cli("tour")).out);
  });

  it("rejects a bad seed or a stray argument with a usage error (exit 2)", async () => {
    const bad = await cli("tour", "--seed", "1.5");
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--seed: expected an integer/);
    expect((await cli("tour", "extra")).code).toBe(2);
    expect((await cli("tour", "--help")).out).toMatch(/^usage: tinyseek tour/);
  });
});
