import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { kvStateTable, measureNsaQuality, nsaAccessTable } from "../src/reports/attention.ts";
import { compressedBlockCount, PAPER_BLOCKS, TINY_BLOCKS } from "../src/attention/sparse-select.ts";
import { cli } from "./helpers.ts";

const text = new Uint8Array(readFileSync(new URL("../data/alice-chapter-1.txt", import.meta.url)));

describe("KV state table", () => {
  it("counts what each kind holds per layer, against full MHA", () => {
    const rows = kvStateTable([1024, 16384]);
    const at = (kind: string, T: number) => rows.find((r) => r.kind === kind && r.T === T)!;
    expect(at("mha", 16384).total).toBe(2 * 128 * 16384);
    expect(at("mla", 16384).perToken).toBe(32 + 16);
    // 768 window tokens of k and v, 16 memory vectors, one segment of 512 inputs
    expect(at("segmented", 16384).total).toBe(768 * 256 + 16 * 128 + 512 * 128);
    expect(at("segmented", 16384).vsFullMha).toBeCloseTo(264192 / 4194304, 12);
    // every token's k, v + 1023 compressed blocks + 16 pending tokens + 511 window tokens, 4 kv heads of 32
    expect(at("nsa", 16384).total).toBe((16384 + 1023 + 16 + 511) * 256);
    expect(at("segmented", 1024).vsFullMha).toBeGreaterThan(1); // below S + W tokens the memory is pure overhead
  });

  it("gives the paper's Table 4 access counts", () => {
    expect(nsaAccessTable().map((r) => r.nsaKeys)).toEqual([2048, 2560, 3584, 5632]);
    expect(nsaAccessTable([8192])[0]!.share).toBe(0.25);
  });
});

describe("NSA quality on text", () => {
  it("covers all the mass, scoring every key of the window, when the window holds the whole text", () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 80 }), fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 1, max: 20 }), (T, from, queries) => {
      const bytes = text.subarray(from, from + T);
      const blocks = { ...TINY_BLOCKS, window: T };
      const [q] = measureNsaQuality(bytes, [blocks], { hidden: 16, heads: 2, kvHeads: 1, queries });
      expect(q!.coverage).toBeCloseTo(1, 5);
      expect(q!.recentCoverage).toBeCloseTo(1, 5);
      // query t scores its compressed blocks and t + 1 window keys, plus its selected tokens
      const P = Math.min(queries, T);
      const positions = Array.from({ length: P }, (_, i) => Math.floor(((i + 1) * T) / P) - 1);
      const causalKeys = positions.reduce((a, t) => a + t + 1, 0);
      const floor = positions.reduce((a, t) => a + compressedBlockCount(t, blocks) + t + 1, 0);
      expect(q!.scoredShare).toBeGreaterThanOrEqual(floor / causalKeys - 1e-12);
      expect(q!.lastCoverage).toBeCloseTo(1, 5);
    }), { numRuns: 15 });
  });

  it("covers everything when every selection block is selected, and less with fewer", () => {
    const bytes = text.subarray(0, 200);
    const all = { block: 8, stride: 4, selectBlock: 8, selectCount: 25, window: 1 }; // 25 blocks of 8 = 200
    const few = { ...all, selectCount: 3 };
    const [everything, three] = measureNsaQuality(bytes, [all, few], { hidden: 16, heads: 2, queries: 40 });
    expect(everything!.coverage).toBeCloseTo(1, 5);
    expect(three!.coverage).toBeLessThan(everything!.coverage);
    expect(three!.coverage).toBeGreaterThan(0);
  });

  it("refuses an empty text", () => {
    expect(() => measureNsaQuality(new Uint8Array(0))).toThrow(/bytes.length: expected an integer >= 1, got 0/);
  });
});

describe("tinyseek attention-report", () => {
  it("prints both claims with what they mean, as tables or JSON", async () => {
    const table = await cli("attention-report", "--length", "1500", "--queries", "16");
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/\|\s+16384 \| segmented \|\s+16.13 \|\s+264192 \| 6.299%/);
    expect(table.out).toMatch(/claim "-60% memory at 16K \(segmented attention\)": segmented holds 6.299% of full MHA's KV state/);
    expect(table.out).toMatch(/claim "98% of attention quality at 41% less compute \(NSA\)": quality = share of full attention's probability mass/);
    expect(table.out).toMatch(/untrained/);
    const json = await cli("attention-report", "--length", "1500", "--queries", "16", "--json");
    const parsed = JSON.parse(json.out);
    expect(parsed.text).toMatchObject({ bytes: 1500, tokenizer: "UTF-8 bytes" });
    expect(parsed.nsaAccess.map((r: { nsaKeys: number }) => r.nsaKeys)).toEqual([2048, 2560, 3584, 5632]);
    expect(parsed.nsaQuality).toHaveLength(2);
    expect(parsed.nsaQuality[1].blocks).toEqual(PAPER_BLOCKS);
    for (const q of parsed.nsaQuality) {
      expect(q.queries).toBe(16);
      expect(q.coverage).toBeGreaterThan(0);
      expect(q.coverage).toBeLessThanOrEqual(1 + 1e-6);
    }
  });

  it("refuses bad arguments with exit 2 and a missing file with exit 1, on one line", async () => {
    const bad = await cli("attention-report", "--queries", "0");
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--queries: expected an integer >= 1, got "0"/);
    const missing = await cli("attention-report", "--text", "/nonexistent/tinyseek.txt");
    expect(missing.code).toBe(1);
    expect(missing.err.split("\n")).toHaveLength(1);
    expect((await cli("attention-report", "--help")).out).toMatch(/usage: tinyseek attention-report/);
  });
});
