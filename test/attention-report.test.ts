import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { kvStateTable, measureNsaQuality, nsaAccessTable } from "../src/reports/attention.ts";
import { measureModelNsa } from "../src/reports/nsa-on-model.ts";
import { compressedBlockCount, PAPER_BLOCKS, TINY_BLOCKS } from "../src/attention/sparse-select.ts";
import { forward } from "../src/model/forward.ts";
import { preset } from "../src/model/presets.ts";
import { BOS } from "../src/model/tokenizer.ts";
import { initModel, loadModel } from "../src/model/weights.ts";
import { createTrace } from "../src/trace.ts";
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

describe("NSA on the trained checkpoint's own attention", () => {
  const checkpoint = loadModel(fileURLToPath(new URL("../data/tiny-alice.safetensors", import.meta.url)));
  const bytes = text.subarray(0, 63); // with <bos>, 64 tokens

  it("selects, with one-token blocks, the tokens the model itself attends most (its queries and keys rebuilt right)", async () => {
    const model = await checkpoint;
    // l = d = l' = 1: each compressed key is one token's key, so p_cmp is the layer's own attention and the free
    // choices are the tokens with the most probability summed over heads; the traced probabilities give the same
    // choice independently of how the measurement rebuilds the layer's queries and keys.
    const blocks = { block: 1, stride: 1, selectBlock: 1, selectCount: 8, window: 1 };
    const { rows, tokens } = measureModelNsa(model, bytes, [blocks], { queries: 16 });
    expect(tokens).toBe(64);
    expect(rows.map((r) => r.layer)).toEqual([0, 1, 2, 3]);
    const trace = createTrace("layers.*.attn.probs");
    forward(model, [BOS, ...bytes], { trace });
    const positions = Array.from({ length: 16 }, (_, i) => Math.floor(((i + 1) * 64) / 16) - 1);
    for (const row of rows) {
      const probs = trace.tensors.get(`layers.${row.layer}.attn.probs`)!;
      const [H, T] = probs.shape as [number, number, number];
      let oracle = 0;
      for (const t of positions) {
        const p = (h: number, j: number) => probs.data[(h * T + t) * T + j]!;
        const summed = Array.from({ length: t + 1 }, (_, j) => Array.from({ length: H }, (_, h) => p(h, j)).reduce((a, b) => a + b, 0));
        const chosen = t + 1 <= 8 ? summed.map((_, j) => j) : [0, t - 1, t, ...summed.map((v, j) => [v, j] as const).filter(([, j]) => j !== 0 && j < t - 1).sort((a, b) => b[0] - a[0]).slice(0, 5).map(([, j]) => j)];
        oracle += chosen.reduce((a, j) => a + summed[j]!, 0) / H;
      }
      expect(row.coverage).toBeCloseTo(oracle / positions.length, 5);
      expect(row.coverage).toBeGreaterThan(row.recentCoverage); // trained heads attend beyond the most recent tokens
    }
  });

  it("covers all of every layer's mass when the window holds the whole text", async () => {
    const { rows } = measureModelNsa(await checkpoint, bytes, [{ ...TINY_BLOCKS, window: 64 }], { queries: 12 });
    for (const row of rows) expect(row.coverage).toBeCloseTo(1, 5);
  });

  it("refuses a model without MLA layers, naming its attention kind", () => {
    expect(() => measureModelNsa(initModel(preset("tiny", { attention_kind: "mha" })), bytes)).toThrow(/no MLA layer \(attention_kind "mha"\)/);
  });
});

describe("tinyseek attention-report", () => {
  it("prints both claims with what they mean, as tables or JSON", async () => {
    const table = await cli("attention-report", "--length", "120", "--queries", "16");
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/\|\s+16384 \| segmented \|\s+16.13 \|\s+264192 \| 6.299%/);
    expect(table.out).toMatch(/claim "-60% memory at 16K \(segmented attention\)": segmented holds 6.299% of full MHA's KV state/);
    expect(table.out).toMatch(/claim "98% of attention quality at 41% less compute \(NSA\)": quality = share of full attention's probability mass/);
    expect(table.out).toMatch(/NSA's selection on a model's own attention: data\/tiny-alice\.safetensors \(trained on /);
    expect(table.out).toMatch(/\| +3 \| 16, 8, 32, 8, 64 \|/); // the last layer, with the 1K-context blocks
    expect(table.out).toMatch(/seeded: a seeded byte embedding and seeded projections/);
    expect(table.out).not.toMatch(/No trained model/);
    const json = await cli("attention-report", "--length", "120", "--queries", "16", "--json");
    const parsed = JSON.parse(json.out);
    expect(parsed.nsaOnModel).toMatchObject({ tokens: 121, weights: expect.stringMatching(/^data\/tiny-alice\.safetensors/) });
    expect(parsed.nsaOnModel.rows).toHaveLength(8);
    expect(parsed.text).toMatchObject({ bytes: 120, tokenizer: "UTF-8 bytes" });
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
    const weights = await cli("attention-report", "--weights", "/nonexistent/tiny.safetensors", "--length", "10");
    expect(weights.code).toBe(1);
    expect(weights.err.split("\n")).toHaveLength(1);
    expect(weights.err).toMatch(/\/nonexistent\/tiny\.safetensors/);
  });

  it("measures seeded weights with --weights random, and says so", async () => {
    const seeded = await cli("attention-report", "--weights", "random", "--length", "100", "--queries", "8");
    expect(seeded.code).toBe(0);
    expect(seeded.out).toMatch(/NSA's selection on a model's own attention: random init \(seed \d+\)/);
    expect((await cli("attention-report", "--help")).out).not.toMatch(/No trained model/);
  });
});
