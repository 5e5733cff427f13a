import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { main } from "../src/cli/main.ts";
import { readSafetensors } from "../src/io/safetensors.ts";
import { readFileSync } from "node:fs";
import { saveModel, initModel } from "../src/model/weights.ts";
import { encode } from "../src/model/tokenizer.ts";
import { bar, renderStep, shade, sparkline } from "../src/step/render.ts";
import { RECORD_TRACE, stepRecord, type StepRecord } from "../src/step/record.ts";
import { createTrace, wants } from "../src/trace.ts";
import { testConfig } from "./model-fixtures.ts";

import { capture, cli } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "tinyseek-step-"));
const small = join(dir, "small.json");
writeFileSync(small, JSON.stringify(testConfig()));

describe("tinyseek step", () => {
  it("runs the default prompt on the trained tiny checkpoint, non-interactively, and exits 0", async () => {
    const c = capture();
    expect(await main(["step"], c.io)).toBe(0);
    const text = c.text();
    expect(text).toContain('"Alice was beginning to get very tired" → 38 byte tokens');
    expect(text).toMatch(/weights {2}data\/tiny-alice\.safetensors \(trained on data\/alice\.txt, \d+ steps/);
    expect(text).not.toContain("Untrained weights");
    expect(text).toContain("1,679,920 total · 761,904 active per token");
    // Layers count from 0, as --layer and the trace names (layers.0 … layers.3) do.
    for (let l = 0; l < 4; l++) expect(text).toContain(`layer ${l} of 0–3 · MLA attention`);
    expect(text).not.toMatch(/layer \d\/4/);
    expect(text).toMatch(/attention, head 0/);
    expect(text).toMatch(/routing \(assignments per expert/);
    expect(text).toMatch(/next token after "Alice was beginning to get very tired":/);
    expect(text).not.toMatch(/\x1b\[/); // no colour when not a terminal
  });

  it("the trained checkpoint spells the heroine's name; --weights random is the seeded, untrained model", async () => {
    const trained = capture();
    expect(await main(["step", "--prompt", "said Alic", "--json"], trained.io)).toBe(0);
    const record = JSON.parse(trained.text()) as StepRecord;
    expect(record.next[0]!.label).toBe("e");
    expect(record.next[0]!.prob).toBeGreaterThan(0.5); // 0.96 when written; untrained weights give each byte ~1/260
    const random = capture();
    expect(await main(["step", "--weights", "random"], random.io)).toBe(0);
    expect(random.text()).toContain("weights  random init (seed 0)");
    expect(random.text()).toContain("Untrained weights");
  });

  it("--attention naming the checkpoint's own kind keeps the checkpoint; another kind is a new, seeded model", async () => {
    const same = capture();
    expect(await main(["step", "--attention", "mla", "--prompt", "said Alic"], same.io)).toBe(0);
    expect(same.text()).toMatch(/weights {2}data\/tiny-alice\.safetensors/);
    const other = capture();
    expect(await main(["step", "--attention", "mha", "--prompt", "said Alic"], other.io)).toBe(0);
    expect(other.text()).toContain("weights  random init (seed 0)");
    const { code, err } = await cli("step", "--weights", "data/tiny-alice.safetensors", "--attention", "mha");
    expect(code).toBe(1);
    expect(err).toBe("tinyseek step: --weights: data/tiny-alice.safetensors fixes the model's shape; drop --attention (or use --weights random)");
  });

  it("--json gives the whole record: heatmap rows are distributions, routing counts add up", async () => {
    const c = capture();
    expect(await main(["step", "--config", small, "--prompt", "hey you", "--head", "1", "--json"], c.io)).toBe(0);
    const record = JSON.parse(c.text()) as StepRecord;
    const T = 8;
    expect(record.tokens.map((t) => t.label)).toEqual(["<bos>", "h", "e", "y", "␠", "y", "o", "u"]);
    expect(record.layers).toHaveLength(3);
    const heat = record.layers[1]!.heatmap!;
    expect(heat.head).toBe(1);
    heat.probs.forEach((row, q) => {
      expect(row.reduce((a, p) => a + p, 0)).toBeCloseTo(1, 5);
      expect(row.slice(q + 1).every((p) => p === 0)).toBe(true);
    });
    const routing = record.layers[2]!.routing!;
    expect(routing.routed.reduce((a, n) => a + n, 0)).toBe(T * 2);
    expect(routing.tokens).toHaveLength(T);
    expect(record.layers[0]!.routing).toBeNull();
    expect(record.layers[0]!.ops.map((o) => o.name)).toEqual(["layers.0.attn.in", "layers.0.attn.out", "layers.0.attn.residual", "layers.0.mlp.in", "layers.0.mlp.out", "layers.0.out"]);
    expect(record.next).toHaveLength(5);
  });

  it("shows early exits, one layer with --layer, and saves a trace that inspect reads", async () => {
    const weights = join(dir, "w.safetensors");
    await saveModel(weights, initModel(testConfig({ init_std: 0.4 })));
    const tracePath = join(dir, "trace.safetensors");
    const c = capture();
    expect(await main(["step", "--weights", weights, "--exit-threshold", "0", "--layer", "1", "--trace", tracePath, "--filter", "layers.*.attn.probs"], c.io)).toBe(0);
    const text = c.text();
    expect(text).toContain("━━ layer 1 of 0–2 · ");
    expect(text).toContain("layers.1.attn.out");
    expect(text).not.toMatch(/layer [02] of 0–2/);
    expect(text).toMatch(/early exit at threshold 0: mean depth 1\.00 of 3 layers/);
    expect(text).toMatch(/layers run per token {2}1 1 1/);
    // The hints name a command that runs from a checkout: tinyseek itself is not on PATH.
    expect(text).toContain("try:  npx tinyseek step --layer 2");
    for (const m of text.matchAll(/(\S+) tinyseek (step|generate|inspect|--help)/g)) expect(m[1], m[0]).toBe("npx");
    expect(text).toContain(`weights  ${weights}`);
    const file = readSafetensors(new Uint8Array(readFileSync(tracePath)));
    expect([...file.tensors.keys()].sort()).toEqual(["layers.0.attn.probs", "layers.1.attn.probs", "layers.2.attn.probs"]);
    const inspect = capture();
    expect(await main(["inspect", tracePath], inspect.io)).toBe(0);
    expect(inspect.text()).toContain("layers.2.attn.probs");
  });

  it("--attention picks the kind, for every layer or one per layer", async () => {
    const c = capture();
    expect(await main(["step", "--config", small, "--attention", "decay,segmented,mha", "--json"], c.io)).toBe(0);
    const record = JSON.parse(c.text()) as StepRecord;
    expect(record.layers.map((l) => l.attention)).toEqual(["decay", "segmented", "mha"]);
    expect(record.model.config).toContain("attention_kind=decay,segmented,mha");
    expect(record.layers[1]!.heatmap).toBeNull();
  });

  it("--exit-sweep measures depth saved against agreement with the full-depth model", async () => {
    const c = capture();
    expect(await main(["step", "--config", small, "--exit-sweep", "0,1.5", "--json"], c.io)).toBe(0);
    const [zero, never] = JSON.parse(c.text()) as { meanLayers: number; agreement: number }[];
    expect(zero!.meanLayers).toBe(1);
    expect(never).toMatchObject({ meanLayers: 3, agreement: 1 });
  });

  it("--compare lists every traced tensor against the reference and says whether the backend follows", async () => {
    const c = capture();
    expect(await main(["step", "--config", small, "--compare", "--json"], c.io)).toBe(0);
    const report = JSON.parse(c.text()) as { tensors: { name: string }[]; firstDeparture?: unknown };
    expect(report.firstDeparture).toBeUndefined();
    expect(report.tensors[0]!.name).toBe("tokens");
    expect(report.tensors.map((r) => r.name)).toContain("layers.2.mlp.router.indices");
  });

  it("a bad backend, layer or flag is one line and exit 2; a bad config names its field and exits 1", async () => {
    const backend = capture();
    expect(await main(["step", "--backend", "cuda"], backend.io)).toBe(2);
    expect(backend.err).toHaveLength(1);
    expect(backend.err[0]).toMatch(/backend: expected one of reference, wasm, webgpu, got "cuda"/);
    const layer = capture();
    expect(await main(["step", "--config", small, "--layer", "7"], layer.io)).toBe(2);
    expect(layer.err[0]).toMatch(/--layer: expected a layer in \[0, 2\], got "7"/);
    const bad = join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ ...testConfig(), n_group: 3 }));
    const config = capture();
    expect(await main(["step", "--config", bad], config.io)).toBe(1);
    expect(config.err[0]).toMatch(/n_group: expected a divisor of n_routed_experts=8, got 3/);
    const big = capture();
    expect(await main(["step", "--config", "deepseek-v3"], big.io)).toBe(1);
    expect(big.err[0]).toMatch(/for reading and counting only/);
  });
});

describe("tinyseek generate", () => {
  it("is deterministic for a seed and reports why it stopped", async () => {
    const run = async () => {
      const c = capture();
      expect(await main(["generate", "--config", small, "--prompt", "Hi", "--max-tokens", "5", "--temperature", "0.7", "--seed", "4", "--json"], c.io)).toBe(0);
      return JSON.parse(c.text()) as { tokens: number[]; stopReason: string; text: string };
    };
    const [a, b] = [await run(), await run()];
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens.length).toBeLessThanOrEqual(5);
    expect(["eos", "length"]).toContain(a.stopReason);
  });

  it("several prompts run as one continuous batch, each continuation what it gets alone with seed S + i", async () => {
    const c = capture();
    const args = ["--config", small, "--max-tokens", "4", "--temperature", "0.9", "--seed", "10"];
    expect(await main(["generate", "--prompt", "ab", "--prompt", "hello there", "--prompt", "z", "--max-batch", "2", ...args, "--json"], c.io)).toBe(0);
    const batch = JSON.parse(c.text()) as { outputs: { tokens: number[] }[]; rowUtilisation: number; steps: unknown[] };
    expect(batch.outputs).toHaveLength(3);
    const alone = capture();
    expect(await main(["generate", "--prompt", "hello there", ...args.slice(0, -1), "11", "--json"], alone.io)).toBe(0);
    expect(batch.outputs[1]!.tokens).toEqual((JSON.parse(alone.text()) as { tokens: number[] }).tokens);
    expect(batch.rowUtilisation).toBeGreaterThan(0);
  });

  it("README's samples are what its commands print with the committed checkpoint", async () => {
    const readme = readFileSync("README.md", "utf8");
    const generate = async (...args: string[]) => {
      const run = await cli("generate", "--prompt", "Alice ", "--max-tokens", "60", ...args, "--json");
      const json = JSON.parse(run.out) as { prompt: string; text: string };
      return json.prompt + json.text;
    };
    // The sampled text: the first fenced block after the command, as printed (line ends aside).
    const command = '`npx tinyseek generate --prompt "Alice " --max-tokens 60 --temperature 0.7`';
    const at = readme.indexOf(command);
    expect(at, `README names ${command}`).toBeGreaterThanOrEqual(0);
    const block = /```[a-z]*\n([\s\S]*?)\n```/.exec(readme.slice(at))![1]!;
    const lines = (text: string) => text.split("\n").map((l) => l.trimEnd()).join("\n").trim();
    expect(lines(block)).toBe(lines(await generate("--temperature", "0.7")));
    // The greedy loop it quotes, in running text (so compared with whitespace collapsed).
    const greedy = /greedy decoding[^"]*"([^"]+)"/.exec(readme.slice(at))![1]!;
    const words = (text: string) => text.replace(/\s+/g, " ").trim();
    expect(words(await generate())).toContain(words(greedy));
  });

  it("requires a prompt and checks its numbers", async () => {
    const c = capture();
    expect(await main(["generate"], c.io)).toBe(2);
    expect(c.err[0]).toMatch(/--prompt TEXT is required/);
    const p = capture();
    expect(await main(["generate", "--prompt", "x", "--top-p", "0"], p.io)).toBe(2);
  });
});

describe("step record for the other kinds", () => {
  it("sparse attention shows which blocks each query reads instead of a heatmap", () => {
    const model = initModel(testConfig({ attention_kind: "sparse" }));
    const prompt = "blocks of four, please";
    const record = stepRecord(model, prompt, encode(prompt), { head: 2 });
    const layer = record.layers[0]!;
    expect(layer.heatmap).toBeNull();
    expect(layer.sparse!.group).toBe(2);
    expect(layer.sparse!.selected).toHaveLength(encode(prompt).length);
    expect(layer.sparse!.selected[0]!.filter((b) => b >= 0)).toEqual([0]); // the first query has one block to read
    const text = renderStep(record).join("\n");
    expect(text).toContain("sparse attention (NSA), kv group 2");
  });
});

describe("what the record traces", () => {
  it("fills every field it shows while leaving the costly per-expert point untraced", () => {
    const model = initModel(testConfig({ num_nextn_predict_layers: 1 }));
    const prompt = "every field";
    const record = stepRecord(model, prompt, encode(prompt));
    const T = encode(prompt).length;
    for (const layer of record.layers) {
      expect(layer.ops.map((o) => o.op)).toHaveLength(6);
      expect(layer.residualNorms).toHaveLength(T);
      // Recorded even with early exit off, after every layer but the last (which has nothing to exit to).
      if (layer.layer < record.layers.length - 1) expect(layer.confidence).toHaveLength(T);
      expect(layer.heatmap!.probs).toHaveLength(T);
    }
    expect(record.layers.some((l) => l.routing !== null)).toBe(true);
    expect(record.mtp).not.toBeNull(); // the MTP module reads the traced final norm
    // Tracing "*" would run each routed expert alone beside the fused kernel for `mlp.experts`.
    const trace = createTrace(RECORD_TRACE);
    expect(wants(trace, "layers.1.mlp.experts")).toBe(false);
    expect(wants(trace, "layers.1.attn.scores")).toBe(false);
  });
});

describe("drawing", () => {
  it("shades, sparklines and bars are deterministic and scaled", () => {
    expect([0, 0.001, 0.05, 0.25, 0.6, 1].map(shade).join("")).toBe("··░▒▓█");
    expect(sparkline([0, 1, 2, 3, 4, 5, 6, 7])).toBe("▁▂▃▄▅▆▇█");
    expect(sparkline([2, 2])).toBe("▄▄");
    expect(bar(1, 1, 4)).toBe("████");
    expect(bar(0.5, 1, 3)).toBe("█▌");
    expect(bar(0, 1, 4)).toBe("");
  });
});
