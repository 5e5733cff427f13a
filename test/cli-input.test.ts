// What a new user types and the line they get back (issue 18 item 7, issue 16 items 9 and 11): numbers in decimal
// only and quoted as typed, --threads capped at the cores, prompts given as exact bytes, and files given to the
// wrong flag named for what they are.

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decimal, numberArg, threadsArg, UsageError } from "../src/cli/io.ts";
import { encodeGolden, runGoldenCase } from "../src/io/golden.ts";
import { BOS, encode, encodeBytes } from "../src/model/tokenizer.ts";
import { promptsFrom } from "../src/step/load.ts";
import type { StepRecord } from "../src/step/record.ts";
import { softmaxCase } from "./golden-fixtures.ts";
import { capture, cli } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "tinyseek-input-"));

const usage = async (pattern: RegExp, ...argv: string[]) => {
  const { code, err } = await cli(...argv);
  expect(code, argv.join(" ")).toBe(2);
  expect(err).toMatch(pattern);
  expect(err.split("\n")).toHaveLength(1);
};

describe("numeric flags", () => {
  it("are decimal only: hexadecimal, binary, octal, Infinity and separators are refused; integers take no exponent", () => {
    for (const raw of ["0x10", "0b11", "0o7", "1e3", "1.0", "Infinity", "1_000", "", " ", "9007199254740993"]) {
      expect(decimal(raw, true), raw).toBeUndefined();
    }
    for (const raw of ["0x10", "0b11", "Infinity", "-Infinity", "NaN", "1e", ".", "1,5"]) expect(decimal(raw), raw).toBeUndefined();
    expect(decimal("42", true)).toBe(42);
    expect(decimal("+7", true)).toBe(7);
    expect(decimal("1e-3")).toBe(0.001);
    expect(decimal(".5")).toBe(0.5);
    expect(decimal("2.")).toBe(2);
  });

  it("a refusal quotes the flag and exactly what was typed", async () => {
    expect(() => numberArg("--threads", "1e3", 1, { integer: true, min: 1 })).toThrow('--threads: expected an integer >= 1, got "1e3"');
    await usage(/^tinyseek inspect: --values: expected an integer >= 0, got "0x10" /, "inspect", "x.safetensors", "--values", "0x10");
    await usage(/^tinyseek tour: --seed: expected an integer in \[0, 4294967295\], got "0b11" /, "tour", "--seed", "0b11");
    await usage(/--rtol: expected a number >= 0, got "0x1"/, "diff", "a", "b", "--rtol", "0x1");
    await usage(/--max-tokens: expected an integer >= 0, got "1e3"/, "generate", "--prompt", "a", "--max-tokens", "1e3");
    await usage(/--layer: expected an integer >= 0, got "0x1"/, "step", "--layer", "0x1");
    await usage(/--exit-sweep: expected comma-separated numbers >= 0, got "0.1,0x10"/, "step", "--exit-sweep", "0.1,0x10");
  });

  it("--threads above the machine's cores is capped, with a one-line note", () => {
    const c = capture();
    expect(threadsArg("256", c.io, 2)).toBe(2);
    expect(c.err).toEqual(["--threads 256: this machine has 2 cores; using 2"]);
    const quiet = capture();
    expect(threadsArg("2", quiet.io, 2)).toBe(2);
    expect(threadsArg(undefined, quiet.io, 2)).toBeUndefined();
    expect(quiet.err).toEqual([]);
    for (const raw of ["0", "1e3", "0x2", "1.5"]) expect(() => threadsArg(raw, quiet.io, 2), raw).toThrow(UsageError);
  });

  it("--top-k 0 is refused, saying what it takes", async () => {
    await usage(/^tinyseek generate: --top-k: expected an integer >= 1, got "0" /, "generate", "--prompt", "a", "--top-k", "0");
  });
});

describe("prompts as bytes", () => {
  it("encodeBytes makes each byte its token, UTF-8 or not", () => {
    expect(encodeBytes(Uint8Array.of(0xff, 0x41, 0xc3))).toEqual([BOS, 0xff, 0x41, 0xc3]);
    expect(encodeBytes(new TextEncoder().encode("é"), { bos: false })).toEqual(encode("é", { bos: false }));
  });

  it("a --prompt holding U+FFFD (what Node makes of bytes that are not UTF-8) gets a one-line note; others none", async () => {
    const c = capture();
    const [replaced] = await promptsFrom(["caf\uFFFD"], undefined, c.io);
    expect(replaced!.tokens).toEqual(encode("caf\uFFFD"));
    expect(c.err).toHaveLength(1);
    expect(c.err[0]).toMatch(/^--prompt: contains U\+FFFD .* not UTF-8.*--prompt-file FILE$/);
    const clean = capture();
    await promptsFrom(["café"], undefined, clean.io);
    expect(clean.err).toEqual([]);
  });

  it("--prompt-file gives the model the file's exact bytes, in step and generate", async () => {
    const file = join(dir, "latin1.txt");
    writeFileSync(file, Uint8Array.of(0x63, 0x61, 0x66, 0xe9)); // "café" in Latin-1: 0xE9 alone is not UTF-8
    const step = capture();
    const { main } = await import("../src/cli/main.ts");
    expect(await main(["step", "--prompt-file", file, "--json"], step.io)).toBe(0);
    const record = JSON.parse(step.text()) as StepRecord;
    expect(record.tokens.map((t) => t.id)).toEqual([BOS, 0x63, 0x61, 0x66, 0xe9]);
    expect(step.err).toEqual([]);
    const generate = await cli("generate", "--prompt-file", file, "--max-tokens", "1", "--json");
    expect(generate.code).toBe(0);
    expect(JSON.parse(generate.out).prompt).toBe("caf\uFFFD");
    await usage(/--prompt-file: give the prompt once, as --prompt TEXT or --prompt-file FILE, not both/, "generate", "--prompt", "a", "--prompt-file", file);
    const missing = await cli("step", "--prompt-file", join(dir, "nope.txt"));
    expect(missing.code).toBe(1);
    expect(missing.err).toBe(`tinyseek step: --prompt-file: ${join(dir, "nope.txt")}: no such file`);
  });
});

describe("files given to the wrong flag", () => {
  it("--weights with a golden file or a trace says what the file is", async () => {
    const golden = join(dir, "case.safetensors");
    writeFileSync(golden, encodeGolden(await runGoldenCase(softmaxCase)));
    const g = await cli("step", "--weights", golden);
    expect(g.code).toBe(1);
    expect(g.err).toBe(`tinyseek step: --weights: ${golden} is a golden test file (case ${JSON.stringify(softmaxCase.name)}), not model weights; give a checkpoint such as data/tiny-alice.safetensors, or random`);
    const trace = join(dir, "trace.safetensors");
    expect((await cli("step", "--prompt", "ab", "--trace", trace)).code).toBe(0);
    const t = await cli("generate", "--prompt", "a", "--weights", trace);
    expect(t.code).toBe(1);
    expect(t.err).toBe(`tinyseek generate: --weights: ${trace} is a trace of activations (step --trace), not model weights; give a checkpoint such as data/tiny-alice.safetensors, or random`);
  });

  it("--config names a missing file as missing; one kind per layer is counted in --attention's terms", async () => {
    const missing = await cli("step", "--config", join(dir, "nope.json"));
    expect(missing.err).toMatch(/--config: expected a preset \(tiny, .*\) or a JSON config file, got ".*nope\.json": no such file$/);
    await usage(/^tinyseek step: --attention: expected one kind, or 4 \(one per layer of tiny\), got 2: mla,mha /, "step", "--attention", "mla,mha");
    const { err } = await cli("step", "--attention", "mla,mha");
    expect(err).not.toContain("attention_kind");
  });
});

describe("a config nested 100,000 deep", () => {
  it("is one short line, not a stack overflow from quoting it", async () => {
    const path = join(dir, "deep.json");
    writeFileSync(path, `{"hidden_size": ${"[".repeat(100_000)}${"]".repeat(100_000)}}`);
    const { code, err } = await cli("step", "--config", path);
    expect(code).toBe(1);
    expect(err).toMatch(/^tinyseek step: config has \d+ problems: hidden_size: expected an integer >= 1, got \[\[\[…\]\]\];/);
    expect(err.length).toBeLessThan(600);
  });
});
