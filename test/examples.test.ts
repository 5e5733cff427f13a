// Runs each notebook's logic (examples/*.ts) so that a notebook never rots unseen: if the source a lesson teaches
// changes shape, these fail in `npm test` even where Jupyter is not installed.
import { describe, expect, it } from "vitest";
import * as attn from "../examples/masks-attention.ts";
import * as cross from "../examples/crossmodal.ts";
import * as golden from "../examples/golden.ts";
import * as longctx from "../examples/long-context.ts";
import * as mla from "../examples/mla.ts";
import * as moe from "../examples/moe.ts";
import * as trace from "../examples/model-trace.ts";
import * as quant from "../examples/quant.ts";
import { bars, DISPLAY, heatmap, image, lines, maskGrid, table } from "../examples/plot.ts";

describe("examples/plot.ts", () => {
  it("draws the same standalone SVG every time, displayable by a notebook kernel", () => {
    const draw = () => heatmap([[0, 0.5], [1, 0.25]], { x: "key", y: "query", text: true });
    const a = draw();
    expect(a.svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(a.svg).toBe(draw().svg);
    expect(a[DISPLAY]()["image/svg+xml"]).toBe(a.svg);
    for (const p of [
      maskGrid([1, 0, 1, 1], 2, 2),
      image(new Float32Array(3 * 4 * 4).fill(0.5), 4, 4, { grid: 2 }),
      bars([{ x: "a", y: 1, f: "u" }, { x: "b", y: 2, f: "v" }], { x: "x", y: "y", fill: "f", rule: 1 }),
      lines([{ x: 1, y: 1, s: "a" }, { x: 2, y: 3, s: "a" }], { x: "x", y: "y", series: "s", logY: true }),
    ]) expect(p.svg).toMatch(/^<svg[^]*<\/svg>$/);
    expect(table([{ a: 1, b: "x|y" }]).markdown).toBe("| a | b |\n| --- | --- |\n| 1 | x\\|y |");
  });
});

describe("lesson 1: masks and attention", () => {
  it("computes the gallery, the checks and the decay profiles", () => {
    const gallery = attn.maskGallery(10);
    expect(gallery.find((g) => g.name === "causal")!.visible).toBe(55);
    const facts = attn.attentionFacts();
    expect(facts.maxRowSumError).toBeLessThan(1e-6);
    expect(facts.hiddenMass).toBe(0);
    expect(facts.paddedRowSum).toBe(0);
    const summary = attn.decaySummary(attn.decayProfiles(16, 0.8));
    const favours = (mode: string, sign: string) => summary.find((s) => s.mode === mode && s.sign === sign)!.favours;
    expect(favours("relative", "q·k > 0")).toBe("recent keys");
    expect(favours("relative", "q·k < 0")).toBe("recent keys");
    expect(favours("as-written", "q·k > 0")).toBe("old keys");
    expect(favours("no decay", "q·k > 0")).toBe("no one");
  });
});

describe("lesson 2: long context", () => {
  it("measures state, access and coverage", () => {
    const growth = longctx.segmentedGrowth();
    expect(growth.at(-1)!.cachedTokens).toBe(512 + 256);
    expect(longctx.stateTable([1024]).map((r) => r.kind)).toEqual(["mha", "mla", "segmented", "nsa"]);
    expect(longctx.accessTable()[0]!.share).toBeLessThan(1);
    const grid = longctx.nsaSelectionGrid(32);
    expect(grid.rows).toHaveLength(32);
    expect(grid.rows[31]!.filter((v) => v === 3)).toHaveLength(16); // the window
    const [tiny, paper] = longctx.nsaCoverage(longctx.aliceBytes(1500), 16);
    for (const q of [tiny!, paper!]) {
      expect(q.coverage).toBeGreaterThan(0);
      expect(q.coverage).toBeLessThanOrEqual(1 + 1e-9);
      expect(q.scoredShare).toBeGreaterThan(0);
    }
  });
});

describe("lesson 3: MLA", () => {
  it("counts the cache and runs naive, absorb and decode to the same output", () => {
    const v3 = mla.cachePerToken(mla.presetMla("deepseek-v3"));
    expect(v3.find((r) => r.scheme.startsWith("MLA absorb"))!.numbers).toBe(512 + 64);
    const run = mla.runMla(5);
    expect(mla.maxDiff(run.naive, run.absorb).maxAbsDiff).toBeLessThan(1e-5);
    expect(mla.maxDiff(run.absorb, run.decoded).maxAbsDiff).toBeLessThan(1e-5);
    expect(run.cache.length).toBe(5);
    expect(mla.cacheGrowth(mla.presetMla("deepseek-v3"), [1024])).toHaveLength(4);
  });
});

describe("lesson 4: MoE routing", () => {
  it("reports capacity, loads and balancing", () => {
    expect(moe.capacities(128, 4, 16).map((c) => c.capacity)).toEqual([32, 40, 48, 64, null]);
    const r = moe.report(10);
    expect(moe.trajectory(r)).toHaveLength(10);
    expect(moe.loadRows(r.loads.before, "before")).toHaveLength(32);
    const [first, later] = moe.loadsOverBatches([1, 20]);
    expect(later!.maxVio).toBeLessThan(first!.maxVio);
  });
});

describe("lesson 5: cross-modal attention", () => {
  it("reads the shipped image and attends from text to its patches", () => {
    const { image: img, matchesFormula } = cross.shippedImage();
    expect(matchesFormula).toBe(true);
    const vision = cross.visionTokens(img);
    expect(vision.shape).toEqual([16, 32]);
    const { text, result } = cross.crossAttend(vision);
    const grid = cross.attentionGrid(result.probsTv, 0);
    expect(grid.flat().reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    expect(Math.max(...grid.flat())).toBe(grid[0]![0]); // "blue disc" looks at the disc's own patch most
    const blind = cross.crossAttend(vision, 4, new Uint8Array(16));
    expect(cross.textChange(blind.text, blind.result.text)).toEqual([0, 0, 0]);
    expect(Math.min(...cross.textChange(text, result.text))).toBeGreaterThan(0);
    expect(cross.patchColours(img)).toHaveLength(16);
  });
});

describe("lesson 6: quantisation", () => {
  it("measures every format's error against its bits", () => {
    expect(quant.formatTable().find((f) => f.format === "e4m3")!.max).toBe(448);
    expect(quant.roundingExamples([1000])[0]!.e4m3).toBe(448);
    expect(quant.positiveValues("e4m3").length).toBeGreaterThan(100);
    const rows = quant.errorVersusBits(quant.seededWeights(16, 128));
    const err = (s: string) => rows.find((r) => r.scheme === s)!.relError;
    expect(err("fp16 (cast)")).toBeLessThan(err("bf16 (cast)"));
    expect(err("int8, groups of 32")).toBeLessThan(err("int4, groups of 32"));
    expect(err("int4, groups of 32")).toBeLessThan(err("int4, groups of 128"));
    expect(quant.castErrorByScale([1e-4]).find((r) => r.format === "e4m3")!.relError).toBeGreaterThan(0.5);
  });
});

describe("lesson 7: the whole model, traced", () => {
  it("traces a forward pass and checks the cache", () => {
    const model = trace.tinyModel();
    const { tokens, trace: t } = trace.tracedForward(model, "Hi");
    expect(t.tensors.get("logits")!.shape).toEqual([tokens.length, model.config.vocab_size]);
    expect(trace.traceTable(t).length).toBeGreaterThan(10);
    expect(trace.residualNorms(t, model.config.num_hidden_layers)).toHaveLength(model.config.num_hidden_layers + 1);
    const grid = trace.routingGrid(t, 1, model.config.n_routed_experts);
    expect(grid[0]!.filter((w) => w > 0)).toHaveLength(model.config.num_experts_per_tok);
    const top = trace.topNext(t.tensors.get("logits")!, 3);
    expect(top[0]!.probability).toBeGreaterThanOrEqual(top[1]!.probability);
    expect(trace.cacheCheck(model, "Hi!").maxAbsDiff).toBeLessThan(1e-5);
  });
});

describe("lesson 8: golden-testing a kernel", () => {
  it("passes a correct naive kernel and catches the planted bugs", async () => {
    const glob = "core.attention.*";
    const ok = await golden.checkBackend(golden.backendWith({ attention: golden.naiveAttention() }), glob);
    expect(ok.length).toBeGreaterThan(0);
    expect(ok.filter((r) => r.outcome !== "ok").map((r) => r.case)).toEqual([]);
    const offByOne = await golden.checkBackend(golden.backendWith({ attention: golden.naiveAttention("off-by-one mask") }), glob);
    expect(offByOne.some((r) => r.outcome === "fail")).toBe(true);
    const noMax = await golden.checkBackend(golden.backendWith({ attention: golden.naiveAttention("no max subtraction") }), glob);
    expect(noMax.filter((r) => r.outcome === "fail").map((r) => r.case)).toEqual(["core.attention.mha.padding"]);
    expect(golden.summarise(offByOne)[0]!.fail).toBeGreaterThan(0);
  });
});
