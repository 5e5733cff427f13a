// A checkpoint directory with its own tokenizer.json (spec/tokenizers.md, spec/checkpoints.md): `--weights DIR`
// reads prompts with it and labels tokens with it in every command; a directory whose vocabulary the byte tokenizer
// cannot cover and that has no tokenizer.json is refused in one line.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTestCheckpoint } from "./checkpoint-fixtures.ts";
import { cli } from "./helpers.ts";
import { CONFIG, HE, tokenizerJson, _THE } from "./tokenizer-fixtures.ts";

const root = mkdtempSync(join(tmpdir(), "tinyseek-ckpt-tok-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let withTokenizer = "", without = "";

beforeAll(async () => {
  // Ids 0-266 as the tokenizer has them; <｜begin▁of▁sentence｜> is 0 and <｜end▁of▁sentence｜> 1, as config.json says.
  ({ dir: withTokenizer } = await writeTestCheckpoint(join(root, "with"), { config: { vocab_size: 267 } }));
  writeFileSync(join(withTokenizer, "tokenizer.json"), JSON.stringify(tokenizerJson()));
  writeFileSync(join(withTokenizer, "tokenizer_config.json"), JSON.stringify(CONFIG));
  ({ dir: without } = await writeTestCheckpoint(join(root, "without"), { config: { vocab_size: 267 } }));
}, 60_000);

describe("--weights DIR with a tokenizer.json", () => {
  it("step reads the prompt with the checkpoint's BPE and labels its tokens", async () => {
    const { code, out } = await cli("step", "--weights", withTokenizer, "--prompt", " the", "--json");
    expect(code).toBe(0);
    const record = JSON.parse(out);
    expect(record.tokens.map((t: { id: number }) => t.id)).toEqual([0, _THE]);
    expect(record.tokens[0].label).toBe("<｜begin▁of▁sentence｜>");
    expect(record.model.weights).toMatch(/tokenizer .*tokenizer\.json/);
  });

  it("generate decodes with it, and lens and patch take its tokens", async () => {
    const g = await cli("generate", "--weights", withTokenizer, "--prompt", "the", "--max-tokens", "3", "--json");
    expect(g.code).toBe(0);
    expect(JSON.parse(g.out).tokens.length).toBeGreaterThan(0);
    const lens = await cli("lens", "--weights", withTokenizer, "--prompt", " the he", "--json");
    expect(lens.code).toBe(0);
    expect(JSON.parse(lens.out).tokens).toEqual([0, _THE, 3 + 32, HE]); // <bos>, Ġthe, Ġ, he
    const patch = await cli("patch", "--weights", withTokenizer, "--clean", " the", "--corrupt", " tx", "--answer", " t", "--json");
    expect(patch.err).toBe("tinyseek patch: --corrupt: expected as many tokens as --clean (1), got 2 (see npx tinyseek patch --help)");
    expect((await cli("patch", "--weights", withTokenizer, "--clean", "he", "--corrupt", " t", "--answer", "he", "--json")).code).toBe(0);
  });

  it("without a tokenizer.json, a vocabulary the byte tokenizer does not cover is one line", async () => {
    const { code, err } = await cli("step", "--weights", without);
    expect(code).toBe(1);
    expect(err).toBe(`tinyseek step: --weights: ${without} has vocab_size 267 and no tokenizer.json beside its config.json; the byte tokenizer covers 260 ids: give a checkpoint directory with its tokenizer.json`);
  });
});

describe("the reports, which read their text as bytes", () => {
  it("refuse a checkpoint with its own tokenizer in one line", async () => {
    const { code, err } = await cli("moe-report", "--weights", withTokenizer);
    expect(code).toBe(1);
    expect(err).toMatch(/^tinyseek moe-report: --weights: the reports read their text as bytes \(the byte tokenizer's ids\); .* has its own tokenizer \(.*tokenizer\.json\): run step, generate, lens, patch or attribute on it$/);
  });
});
