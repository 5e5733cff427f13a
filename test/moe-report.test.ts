import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { main } from "../src/cli/main.ts";
import { forward } from "../src/model/forward.ts";
import { BOS, encode } from "../src/model/tokenizer.ts";
import { loadModel } from "../src/model/weights.ts";
import type { MoeWeights } from "../src/moe/layer.ts";
import { formatMoeReport, loadBars, moeReport, REPORT_TEXT } from "../src/reports/moe.ts";
import { createTrace } from "../src/trace.ts";

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
    expect(table.out.join("\n")).toMatch(/through data\/tiny-alice\.safetensors \(trained on .*layer 1's MoE input/);
    expect(table.out.join("\n")).toMatch(/router: layer 1's own gate, .*as trained/);
    expect(table.out.join("\n")).toMatch(/with the checkpoint's learned bias/);
    const seeded = capture();
    expect(await main(["moe-report", "--weights", "random", "--batches", "3"], seeded.io)).toBe(0);
    expect(seeded.out.join("\n")).toMatch(/tiny model's seeded embedding.*\n.*a seeded gate.*deliberately skewed/);
    const json = capture();
    expect(await main(["moe-report", "--seeded", "--batches", "3", "--json"], json.io)).toBe(0);
    const parsed = JSON.parse(json.out.join("\n"));
    expect(parsed.source).toMatch(/seeded vectors/);
    expect(parsed.capacityRows).toHaveLength(8);
    const bad = capture();
    expect(await main(["moe-report", "--rate", "fast"], bad.io)).toBe(2);
    expect(bad.err.join("")).toMatch(/--rate: expected a number/);
    expect(await main(["moe-report", "--batches", "0"], capture().io)).toBe(2); // a usage error naming --batches
    const dense = capture();
    expect(await main(["moe-report", "--layer", "0"], dense.io)).toBe(2);
    expect(dense.err.join("")).toMatch(/--layer: expected a MoE layer of the model \(1, 2, 3, numbered from 0\), got 0/);
    const both = capture();
    expect(await main(["moe-report", "--seeded", "--weights", "data/tiny-alice.safetensors"], both.io)).toBe(2);
    expect(both.err.join("")).toMatch(/--seeded: .*drop --weights or --seeded/);
  });
});

describe("moe report on the trained checkpoint", async () => {
  const model = await loadModel(fileURLToPath(new URL("../data/tiny-alice.safetensors", import.meta.url)));

  const text = REPORT_TEXT.slice(0, 150); // shorter than the built-in text: the reference forward is what takes time

  it("routes the layer's real input with its own gate: with the learned bias, the loads are the forward's own choices", () => {
    for (const layer of [1, 3]) {
      const report = moeReport({ model, weights: "the checkpoint", layer, batches: 1, tokens: 64, text });
      expect(report.seeded).toBe(false);
      expect(report.skew).toBe(0);
      expect(report.router).toBe(`layer ${layer}'s own gate`);
      expect(report.capacityRows.map((r) => r.bias)).toEqual([...Array(4).fill("none"), ...Array(4).fill("balanced"), ...Array(4).fill("checkpoint")]);
      const gate = (model.weights.layers[layer]!.mlp as MoeWeights).gate;
      expect(report.checkpointBias).toEqual(Array.from(gate.e_score_correction_bias!.data));
      // The unseen batch is text bytes 97 … 160, wrapping at 150, each at forward position one later (after <bos>).
      const trace = createTrace(`layers.${layer}.mlp.router.indices`);
      forward(model, [BOS, ...encode(text, { bos: false })], { trace });
      const indices = trace.tensors.get(`layers.${layer}.mlp.router.indices`)!;
      const k = indices.shape[1]!;
      const counts = new Array<number>(16).fill(0);
      for (let i = 97; i < 97 + 64; i++) for (let r = 0; r < k; r++) counts[indices.data[((i % 150) + 1) * k + r]!]!++;
      expect(report.loads.checkpoint!.routed).toEqual(counts);
      expect(report.source).toMatch(new RegExp(`^150 bytes of text through the checkpoint: layer ${layer}'s MoE input`));
    }
    expect(() => moeReport({ model, layer: 0, text })).toThrow(/layer: expected one of the MoE layers 1, 2, 3 \(numbered from 0\), got 0/);
    expect(() => moeReport({ model, text: "" })).toThrow(/text: expected 1 to 1023 bytes/);
  });
});
