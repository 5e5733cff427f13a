import { describe, expect, it } from "vitest";
import { main } from "../src/cli/main.ts";
import { type QuantReport } from "../src/reports/quant.ts";

import { capture } from "./helpers.ts";

const FAST = ["--length", "12", "--layer-rows", "4"];

describe("tinyseek quant-report", () => {
  it("prints JSON with every field, sizes that follow from the formats, and int8 closer to float than int4", async () => {
    const json = capture();
    expect(await main(["quant-report", ...FAST, "--schemes", "int8.g128,int4.g32,bf16", "--json"], json.io)).toBe(0);
    const report = JSON.parse(json.out.join("\n")) as QuantReport;
    expect(report.model).toMatchObject({ preset: "tiny", seeded: true, parameters: 1_679_920 });
    expect(report.text).toEqual({ bytes: 12, tokens: 13 });
    expect(report.results.map((r) => r.scheme)).toEqual(["int8.g128", "int4.g32", "bf16"]);
    const [int8, int4, bf16] = report.results as [QuantReport["results"][0], QuantReport["results"][0], QuantReport["results"][0]];
    for (const r of report.results) {
      for (const key of ["bitsPerWeight", "weightBytes", "smallerThanF32", "smallerThanBf16", "modelBytes", "logitsError", "top1Agreement", "routingAgreement", "crossEntropy", "crossEntropyChange"]) {
        expect(Number.isFinite((r as unknown as Record<string, number>)[key]), `${r.scheme}.${key}`).toBe(true);
      }
      expect(Object.keys(r.layerErrors)).toContain("mlp.experts.*.down_proj");
    }
    // Sizes are arithmetic: 4 bits + a float32 scale per 32 (every input width of the tiny model is a multiple of
    // 32), 16 bits; int8.g128 pays 32/128 bits or more, since rows 64 or 32 wide hold one shorter group.
    expect([int4.bitsPerWeight, bf16.bitsPerWeight]).toEqual([4 + 32 / 32, 16]);
    expect(int8.bitsPerWeight).toBeGreaterThan(8 + 32 / 128);
    expect(int8.bitsPerWeight).toBeLessThan(8 + 32 / 32);
    expect(bf16.smallerThanF32).toBe(2);
    expect(int8.logitsError).toBeLessThan(int4.logitsError);
    expect(int8.layerErrors["self_attn.q_b_proj"]).toBeLessThan(int4.layerErrors["self_attn.q_b_proj"]!);
    expect(bf16.layerErrors["self_attn.o_proj"]).toBeLessThan(int8.layerErrors["self_attn.o_proj"]!);
    expect(report.doesNotMeasure.join(" ")).toMatch(/seeded, not trained/);
  });

  it("prints a table that says the model is seeded, and the claims it measures", async () => {
    const table = capture();
    expect(await main(["quant-report", ...FAST, "--schemes", "int4.g32"], table.io)).toBe(0);
    const text = table.out.join("\n");
    expect(text).toMatch(/SEEDED weights \(untrained\)/);
    expect(text).toMatch(/\| int4\.g32 \|\s+5 \|/);
    expect(text).toMatch(/"under 2% loss"/);
    expect(text).toMatch(/What it does not:/);
  });

  it("names bad arguments", async () => {
    const bad = capture();
    expect(await main(["quant-report", ...FAST, "--schemes", "int3.g32"], bad.io)).toBe(2); // a usage error, like --length 0
    expect(bad.err.join("")).toMatch(/scheme: .*"int3\.g32"/);
    const usage = capture();
    expect(await main(["quant-report", "--length", "0"], usage.io)).toBe(2);
    expect(usage.err.join("")).toMatch(/--length/);
  });
});
