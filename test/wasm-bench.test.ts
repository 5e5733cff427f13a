// The benchmark harness's contract (speed itself is never asserted): rows carry the documented fields, every
// implementation that supports a case gets a row, and the table's ratios are against tfjs-wasm on the same case.

import { describe, expect, it } from "vitest";
import { reference } from "../src/kernels.ts";
import { kernelCases, kernelsImpl, markdownTable, runBench, wasmImpl, type BenchRow } from "../bench/kernels.ts";

describe("bench harness", () => {
  it("times each case on each implementation and writes documented rows", async () => {
    const cases = kernelCases(true).filter((c) => c.op === "matmul" && c.shape === "64x64x64");
    const impls = [kernelsImpl("reference", 1, reference), kernelsImpl("tfjs-wasm", 1, reference)]; // a stand-in peer
    const rows = await runBench(cases, impls, { timeMs: 20, rounds: 2 });
    expect(rows.map((r) => r.impl)).toEqual(["reference", "tfjs-wasm"]);
    for (const row of rows) {
      expect(Object.keys(row).sort()).toEqual(["gflops", "impl", "medianMs", "op", "shape", "threads"]);
      expect(row.medianMs).toBeGreaterThan(0);
      expect(row.gflops).toBeCloseTo((2 * 64 ** 3) / row.medianMs / 1e6, 6);
    }
  });

  it("names each wasm row after the build it times", async () => {
    // This process has not set Node 20's relaxed-SIMD flag: there the relaxed row must refuse, not time SIMD128.
    const relaxed = await wasmImpl(1, "wasm-relaxed").catch((error: Error) => error);
    if (relaxed instanceof Error) {
      expect(relaxed.message).toContain("the engine does not validate the relaxed-SIMD build");
    } else {
      expect(relaxed.description).toMatch(/^WebAssembly relaxed SIMD, 1 thread/);
      await relaxed.dispose();
    }
    const plain = await wasmImpl(1);
    expect(plain.impl).toBe("wasm");
    expect(plain.description).toMatch(/^WebAssembly SIMD128/);
    await plain.dispose();
  });

  it("prints ratios against tfjs-wasm", () => {
    const row = (impl: BenchRow["impl"], medianMs: number): BenchRow => ({ op: "matmul", shape: "8x8x8", impl, threads: 1, medianMs, gflops: 1 });
    const table = markdownTable([row("wasm", 1), row("tfjs-wasm", 3)]);
    expect(table).toContain("| matmul | 8x8x8 | wasm | 1 | 1.000 | 1.0 | 3.00× |");
    expect(table).toContain("| tfjs-wasm | 1 | 3.000 | 1.0 | 1.00× |");
  });
});
