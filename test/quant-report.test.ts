import { describe, expect, it } from "vitest";
import { main } from "../src/cli/main.ts";
import type { QuantReport } from "../src/reports/quant.ts";

import { capture } from "./helpers.ts";

const FAST = ["--length", "12", "--layer-rows", "4"];

describe("tinyseek quant-report", () => {
  it("prints JSON with every field, sizes that follow from the formats, and int8 closer to float than int4", async () => {
    const json = capture();
    expect(await main(["quant-report", ...FAST, "--schemes", "int8.g128,int4.g32,bf16", "--json"], json.io)).toBe(0);
    const report = JSON.parse(json.out.join("\n")) as QuantReport;
    expect(report.model).toMatchObject({ preset: "tiny", seeded: false, weights: expect.stringMatching(/^data\/tiny-alice\.safetensors \(trained on /), parameters: 1_679_920 });
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
    // The checkpoint is stored in BF16: rounding it to bf16 changes nothing, which seeded float32 weights would not allow.
    expect([bf16.logitsError, bf16.crossEntropyChange, bf16.layerErrors["self_attn.o_proj"]]).toEqual([0, 0, 0]);
    expect([bf16.top1Agreement, bf16.routingAgreement]).toEqual([1, 1]);
    expect(report.doesNotMeasure.join(" ")).not.toMatch(/seeded/);
  });

  it("prints a table that names the trained weights, and the claims it measures", async () => {
    const table = capture();
    expect(await main(["quant-report", ...FAST, "--schemes", "int4.g32"], table.io)).toBe(0);
    const text = table.out.join("\n");
    expect(text).toMatch(/tiny preset, trained weights data\/tiny-alice\.safetensors \(trained on /);
    expect(text).toMatch(/\| int4\.g32 \|\s+5 \|/);
    expect(text).toMatch(/"under 2% loss"/);
    expect(text).toMatch(/On the trained model, next-byte cross-entropy [\d.]+ nats\/byte changes by int4\.g32 -?[\d.]+%/);
    expect(text).toMatch(/What it does not:/);
  });

  it("says SEEDED where the weights are seeded: --weights random", async () => {
    const json = capture();
    expect(await main(["quant-report", ...FAST, "--schemes", "bf16", "--weights", "random", "--json"], json.io)).toBe(0);
    const report = JSON.parse(json.out.join("\n")) as QuantReport;
    expect(report.model).toMatchObject({ seeded: true, weights: expect.stringMatching(/^random init \(seed \d+\)$/) });
    expect(report.results[0]!.logitsError).toBeGreaterThan(0); // float32 weights, rounded
    expect(report.doesNotMeasure.join(" ")).toMatch(/seeded, not trained/);
    const table = capture();
    expect(await main(["quant-report", ...FAST, "--schemes", "bf16", "--weights", "random"], table.io)).toBe(0);
    expect(table.out.join("\n")).toMatch(/SEEDED weights \(untrained: random init/);
  });

  it("names bad arguments", async () => {
    const bad = capture();
    expect(await main(["quant-report", ...FAST, "--schemes", "int3.g32"], bad.io)).toBe(2); // a usage error, like --length 0
    expect(bad.err.join("")).toMatch(/scheme: .*"int3\.g32"/);
    const usage = capture();
    expect(await main(["quant-report", "--length", "0"], usage.io)).toBe(2);
    expect(usage.err.join("")).toMatch(/--length/);
    const missing = capture();
    expect(await main(["quant-report", ...FAST, "--weights", "/nonexistent/q.safetensors"], missing.io)).toBe(1);
    expect(missing.err.join("")).toMatch(/\/nonexistent\/q\.safetensors/);
    expect(missing.err).toHaveLength(1);
  });
});
