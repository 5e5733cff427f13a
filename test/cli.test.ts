import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { COMMANDS } from "../src/cli/main.ts";
import { formatTable, toJson } from "../src/cli/table.ts";
import { encodeGolden, runGoldenCase } from "../src/io/golden.ts";
import { readSafetensorsHeader, writeSafetensors } from "../src/io/safetensors.ts";
import { softmaxCase } from "./golden-fixtures.ts";
import { cli } from "./helpers.ts";

// In-process runs see our fixture cases as the suite, so these tests do not depend on what the real suite holds.
vi.mock("../src/golden/suite.ts", async (importOriginal) => {
  const original = await importOriginal<typeof import("../src/golden/suite.ts")>();
  const { fixtureSuite } = await import("./golden-fixtures.ts");
  return { ...original, goldenSuite: fixtureSuite };
});


const expectOneLineError = (err: string) => {
  expect(err.split("\n")).toHaveLength(1);
  expect(err).not.toMatch(/\n\s+at /);
};

let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tinyseek-cli-"));
  const { code } = await cli("golden", "write", dir);
  expect(code).toBe(0);
});

describe("tinyseek", () => {
  it("prints help with every command, and exits 2 without one", async () => {
    const help = await cli("--help");
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/usage: tinyseek COMMAND/);
    expect(help.out).toMatch(/golden\s+write, check, compare and list golden files; the case × backend support matrix/);
    expect(help.out).toMatch(/inspect\s+tensors/);
    expect((await cli()).code).toBe(2);
  });

  it("refuses an unknown command or flag with one line and exit 2", async () => {
    const unknown = await cli("frobnicate");
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/unknown command "frobnicate"/);
    const flag = await cli("golden", "list", "--frob");
    expect(flag.code).toBe(2);
    expect(flag.err).toMatch(/tinyseek golden: Unknown option '--frob'/);
    expectOneLineError(flag.err);
  });

  it("has --help on every command of the table", async () => {
    for (const command of Object.keys(COMMANDS)) {
      const { code, out } = await cli(command, "--help");
      expect(code, command).toBe(0);
      expect(out.trim().length, command).toBeGreaterThan(0);
    }
    for (const command of ["golden", "inspect"]) expect((await cli(command, "--help")).out).toMatch(new RegExp(`usage:[\\s\\S]*tinyseek ${command}`));
  });
});

describe("tinyseek golden", () => {
  it("writes one file per case", async () => {
    expect(existsSync(join(dir, "test.softmax.3x7.safetensors"))).toBe(true);
    expect(existsSync(join(dir, "test.linear.4x9x5.safetensors"))).toBe(true);
  });

  it("writes only the cases --only selects, and --clean removes files of cases that are gone", async () => {
    const only = mkdtempSync(join(tmpdir(), "tinyseek-only-"));
    writeFileSync(join(only, "test.removed.safetensors"), "stale");
    const { code, out } = await cli("golden", "write", only, "--only", "test.lin*", "--clean");
    expect(code).toBe(0);
    expect(out).toMatch(/test\.linear\.4x9x5\.safetensors/);
    expect(out).toMatch(/test\.removed\.safetensors +\| \(removed: no such case\)/);
    expect(existsSync(join(only, "test.softmax.3x7.safetensors"))).toBe(false);
    expect(existsSync(join(only, "test.removed.safetensors"))).toBe(false);
  });

  it("lists the suite as a table or JSON", async () => {
    const table = await cli("golden", "list");
    expect(table.out).toMatch(/\| case +\| component +\| seed \| config/);
    expect(table.out).toMatch(/2 case\(s\)/);
    const json = JSON.parse((await cli("golden", "list", "--json")).out);
    expect(json.map((c: { name: string }) => c.name)).toEqual(["test.softmax.3x7", "test.linear.4x9x5"]);
  });

  it("checks a directory on the reference: a table, all ok, exit 0", async () => {
    const { code, out } = await cli("golden", "check", dir, "--backend", "reference");
    expect(code).toBe(0);
    expect(out).toMatch(/\| file +\| outputs \| max abs err \| max rel err \| norm err \| verdict \|/);
    expect(out).toMatch(/test\.softmax\.3x7\.safetensors +\| +3 \| +0 \| +0 \| +0 \| ok/);
    expect(out).toMatch(/2 ok, 0 failed, 0 not supported \(backend reference/);
    const json = JSON.parse((await cli("golden", "check", dir, "--backend", "reference", "--json")).out);
    expect(json.map((r: { outcome: string }) => r.outcome)).toEqual(["ok", "ok"]);
    const verbose = await cli("golden", "check", dir, "--backend", "reference", "--verbose");
    expect(verbose.err).toMatch(/^checking test\.linear\.4x9x5\.safetensors on reference\n {2}ok in [\d.]+ ms\nchecking test\.softmax/);
  });

  it("needs a known, available backend: one line and exit 2 otherwise", async () => {
    const missing = await cli("golden", "check", dir);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/--backend is required/);
    const unknown = await cli("golden", "check", dir, "--backend", "cuda");
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/backend: expected one of reference, wasm, webgpu, got "cuda"/);
    expectOneLineError(unknown.err);
  });

  it("fails, exit 1, on a tampered output, a corrupt file and an old format", async () => {
    const bad = mkdtempSync(join(tmpdir(), "tinyseek-bad-"));
    const good = readFileSync(join(dir, "test.softmax.3x7.safetensors"));
    // Flip the lowest exponent bit of output.y's last float (its high byte): that element moves far.
    const tampered = Uint8Array.from(good);
    const header = readSafetensorsHeader(tampered);
    tampered[header.dataStart + header.entries.get("output.y")!.offsets[1] - 1] ^= 0x01;
    writeFileSync(join(bad, "a.tampered.safetensors"), tampered);
    writeFileSync(join(bad, "b.truncated.safetensors"), good.subarray(0, good.length - 3));
    writeFileSync(join(bad, "c.old.safetensors"), encodeGolden({ ...(await runGoldenCase(softmaxCase)), format: "0" }));
    const { code, out } = await cli("golden", "check", bad, "--backend", "reference");
    expect(code).toBe(1);
    expect(out).toMatch(/a\.tampered\.safetensors: fail\noutput\.y: 1 of 21 elements mismatch .* under exact equality/);
    expect(out).toMatch(/b\.truncated\.safetensors: fail\n.*safetensors: .*run past the/);
    expect(out).toMatch(/c\.old\.safetensors: fail\n.*golden format version 0.*regenerate it/);
    expect(out).toMatch(/0 ok, 3 failed, 0 not supported/);
  });

  it("prints the case × backend support matrix", async () => {
    const { code, out } = await cli("golden", "support", "--backends", "reference");
    expect(code).toBe(0);
    expect(out).toMatch(/\| case +\| reference \|/);
    expect(out).toMatch(/\| test\.softmax\.3x7 +\| ok +\|/);
    expect(out).toMatch(/2 case\(s\) × 1 backend\(s\), 0 failure\(s\)/);
    const json = JSON.parse((await cli("golden", "support", "--backends", "reference", "--json")).out);
    expect(json.cases).toEqual([{ case: "test.softmax.3x7", reference: "ok" }, { case: "test.linear.4x9x5", reference: "ok" }]);
    const bad = await cli("golden", "support", "--backends", "reference,tpu");
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--backends: expected names from reference, wasm, webgpu, got "tpu"/);
  });

  it("compares two files: exit 0 when equal, 1 with the assert_close report when not", async () => {
    const a = join(dir, "test.softmax.3x7.safetensors");
    const same = await cli("golden", "compare", a, a);
    expect(same.code).toBe(0);
    expect(same.out).toMatch(/\| output\.y +\| +21 \| +0 \|/);
    const file = await runGoldenCase(softmaxCase);
    const y = (file.outputs.y!.data as Float32Array).slice();
    y[20] = 0.75;
    const theirs = join(dir, "..", `theirs-${process.pid}.safetensors`);
    writeFileSync(theirs, writeSafetensors({
      "output.y": { dtype: "F32", shape: [3, 7], data: y },
      "output.argmax": { dtype: "I32", shape: [3], data: file.outputs.argmax!.data },
      "output.above": { dtype: "BOOL", shape: [3, 7], data: file.outputs.above!.data },
    }));
    const differ = await cli("golden", "compare", a, theirs);
    expect(differ.code).toBe(1);
    expect(differ.out).toMatch(/output\.y: 1 of 21 elements mismatch[\s\S]*worst absolute error .* at \[2, 6\] \(out 0\.75/);
    expect(differ.out).toMatch(/FAIL: .* against /);
  });
});

describe("tinyseek inspect", () => {
  const file = () => {
    const path = join(dir, "..", `inspect-${process.pid}.safetensors`);
    writeFileSync(path, writeSafetensors({
      w: { dtype: "BF16", shape: [2, 3], data: [1, -2, NaN, Infinity, 4, 0.5] },
      ids: { dtype: "I64", shape: [2], data: [3n, 5n] },
    }, { origin: "test" }));
    return path;
  };

  it("shows dtypes, shapes, statistics over finite values, NaN/Inf counts and metadata", async () => {
    const { code, out } = await cli("inspect", file());
    expect(code).toBe(0);
    expect(out).toMatch(/2 tensor\(s\)/);
    expect(out).toMatch(/\| origin +\| test/);
    expect(out).toMatch(/\| w +\| BF16 +\| \[2, 3\] \| +-2 \| +4 \| +0\.875 \| +1 \| +1 \| 1 -2 NaN Inf …/);
    const json = JSON.parse((await cli("inspect", file(), "--json", "--values", "6")).out);
    const ids = json.tensors.find((t: { name: string }) => t.name === "ids");
    expect(ids).toMatchObject({ dtype: "I64", shape: [2], min: 3, max: 5, mean: 4, nan: 0, inf: 0, first: [3, 5] });
    expect(json.tensors.find((t: { name: string }) => t.name === "w").first).toEqual([1, -2, "NaN", "Infinity", 4, 0.5]);
  });

  it("says what is wrong with a missing or corrupt file in one line, exit 1", async () => {
    const missing = await cli("inspect", join(dir, "nope.safetensors"));
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/nope\.safetensors: no such file/);
    const corrupt = join(dir, "..", `corrupt-${process.pid}.safetensors`);
    writeFileSync(corrupt, new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]));
    const bad = await cli("inspect", corrupt);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/tinyseek inspect: safetensors: header length 1 is larger than the 0 bytes/);
    expectOneLineError(bad.err);
    expect((await cli("inspect")).code).toBe(2);
  });
});

describe("tinyseek diff", () => {
  // Forward order tok → attn → mlp → head; by name the header order is attn, head, mlp, tok.
  const trace = (path: string, change: (name: string, d: Float32Array) => void, extra?: string) => {
    const rng = (i: number) => Math.sin(i * 12.9898) * 2;
    const tensors: Record<string, { dtype: "F32" | "I32"; shape: number[]; data: Float32Array | Int32Array }> = {};
    for (const name of ["tok", "attn", "mlp", "head"]) {
      const data = Float32Array.from({ length: 12 }, (_, i) => rng(i + name.length));
      change(name, data);
      tensors[name] = { dtype: "F32", shape: [3, 4], data };
    }
    tensors.ids = { dtype: "I32", shape: [3], data: Int32Array.from([1, 2, 3]) };
    if (extra) tensors[extra] = { dtype: "F32", shape: [1], data: new Float32Array(1) };
    writeFileSync(path, writeSafetensors(tensors, { order: JSON.stringify(["ids", "tok", "attn", "mlp", "head"]) }));
    return path;
  };
  const base = () => join(dir, "..", `trace-a-${process.pid}.safetensors`);

  it("names the first tensor, in forward order, that leaves tolerance, with both sides' statistics", async () => {
    const a = trace(base(), () => {}, "only.a");
    const b = trace(join(dir, "..", `trace-b-${process.pid}.safetensors`), (name, d) => {
      if (name === "mlp") d[5] = d[5]! + 0.01;
      if (name === "head") d[0] = NaN;
    }, "only.b");
    const { code, out } = await cli("diff", a, b);
    expect(code).toBe(1);
    expect(out).toMatch(/\| ids +\| +3 \| +0 \|[\s\S]*\| tok [\s\S]*\| attn [\s\S]*\| mlp +\| +12 \| +1 \|[\s\S]*differs[\s\S]*\| head /);
    expect(out).toMatch(/only in .*trace-a.*: only\.a/);
    expect(out).toMatch(/first departure: mlp \(2 of 5 shared tensors differ\)/);
    expect(out).toMatch(/ A: min -?[\d.]+, max [\d.]+, mean -?[\d.e-]+, NaN 0, Inf 0\n {2}B: .*NaN 0, Inf 0\nmlp: 1 of 12 elements mismatch/);
    const json = JSON.parse((await cli("diff", a, b, "--json")).out);
    expect(json.firstDeparture).toBe("mlp");
    expect(json.tensors.find((t: { name: string }) => t.name === "head").b.nan).toBe(1);
    expect((await cli("diff", a, b, "--atol", "0.1", "--nmse", "1e-3")).out).toMatch(/first departure: head/);
  });

  it("holds two model traces to the whole-model rule of step --compare: a correct backend passes both", async () => {
    const [ref, wasm] = [join(dir, "..", `ref-${process.pid}.safetensors`), join(dir, "..", `wasm-${process.pid}.safetensors`)];
    expect((await cli("step", "--trace", ref, "--prompt", "The quick brown fox")).code).toBe(0);
    expect((await cli("step", "--backend", "wasm", "--trace", wasm, "--prompt", "The quick brown fox")).code).toBe(0);
    const diff = await cli("diff", ref, wasm);
    expect(diff.code, diff.out.split("\n").slice(-3).join("\n")).toBe(0);
    expect((await cli("step", "--backend", "wasm", "--compare", "--prompt", "The quick brown fox")).code).toBe(0);
    // The per-component default is stricter: the same pair, held to it by name, departs (rounding, not a bug).
    const strict = await cli("diff", ref, wasm, "--rtol", "1e-4", "--atol", "1e-5", "--nmse", "1e-10");
    expect(strict.out).toMatch(/first departure: /);
  });

  it("passes identical files and refuses a bad tolerance", async () => {
    const a = trace(base(), () => {});
    const same = await cli("diff", a, a);
    expect(same.code).toBe(0);
    expect(same.out).toMatch(/5 shared tensor\(s\), all within tolerance/);
    const bad = await cli("diff", a, a, "--rtol=-1");
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--rtol: expected a number >= 0, got "-1"/);
  });
});

describe("bad arguments: one line that names the flag, exit 2", () => {
  const usage = async (pattern: RegExp, ...argv: string[]) => {
    const { code, err } = await cli(...argv);
    expect(code, argv.join(" ")).toBe(2);
    expect(err).toMatch(pattern);
    expectOneLineError(err);
  };

  it("says an unknown option in one sentence, and how to pass a value starting with '-'", async () => {
    const { err } = await cli("tour", "--frob");
    expect(err).toBe("tinyseek tour: Unknown option '--frob' (see npx tinyseek tour --help)");
    await usage(/--seed: a value that starts with '-' must be written --seed=VALUE/, "tour", "--seed", "-1");
  });

  it("refuses a prompt longer than the context before printing it, naming the limit", async () => {
    await usage(/^tinyseek generate: --prompt: expected at most 1024 tokens \(max_position_embeddings, <bos> included\), got 1101 \(see npx tinyseek generate --help\)$/, "generate", "--prompt", "x".repeat(1100));
  });

  it("refuses an empty or blank number instead of reading it as 0", async () => {
    await usage(/--values: expected an integer >= 0, got ""/, "inspect", "x.safetensors", "--values", "");
    await usage(/--seed: expected an integer in \[0, 4294967295\], got ""/, "tour", "--seed", "");
    await usage(/--rtol: expected a number >= 0, got " "/, "diff", "a", "b", "--rtol", " ");
    await usage(/--exit-threshold: expected a number >= 0, got ""/, "step", "--exit-threshold", "");
    await usage(/--exit-sweep: expected comma-separated numbers >= 0, got "0.1,,0.5"/, "step", "--exit-sweep", "0.1,,0.5");
  });

  it("checks moe-report's ranges as usage errors naming the flag", async () => {
    await usage(/--batches: expected an integer in \[1, 10000\], got "1.5"/, "moe-report", "--batches", "1.5");
    await usage(/--tokens: expected an integer in \[1, 100000\], got "0"/, "moe-report", "--tokens", "0");
    await usage(/--rate: expected a number in \[0, 1\], got "2"/, "moe-report", "--rate", "2");
  });

  it("refuses an unknown quantisation scheme, attention kind or Dawn backend", async () => {
    await usage(/--schemes: scheme: expected one of int8.gG, .*got "int3"/, "quant-report", "--schemes", "int8.g32,int3");
    await usage(/--attention: expected mla, mha, decay, segmented, sparse, dsa .*got "flash"/, "step", "--attention", "mla,flash");
    await usage(/--attention: .*got "flash"/, "generate", "--prompt", "a", "--attention", "flash");
    await usage(/--backend: expected one of Dawn's backends \(vulkan, .*\), got "foo"/, "devices", "--backend", "foo");
  });

  it("says in one line which file could not be written, not an internal error", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "tinyseek-notdir-")), "plain");
    writeFileSync(file, "");
    const { code, err } = await cli("golden", "write", join(file, "sub"), "--only", "test.lin*");
    expect(code).toBe(1);
    expect(err).toBe(`tinyseek golden: ${join(file, "sub")}: not a directory (mkdir)`);
  });

  it.runIf(existsSync("/proc/self"))("answers at once where the system refuses a directory Node's mkdir -p would spin on", async () => {
    const { code, err } = await cli("golden", "write", "/proc/tinyseek/golden", "--only", "test.lin*");
    expect(code).toBe(1);
    expect(err).toBe("tinyseek golden: /proc/tinyseek: no such file or directory (mkdir)");
  });

  it("keeps binary bytes out of a --config that is not JSON", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "tinyseek-binary-")), "weights.safetensors");
    writeFileSync(file, Uint8Array.from([0xef, 0x01, 0x00, 0x1b, 0x7b]));
    const { code, err } = await cli("generate", "--prompt", "a", "--config", file);
    expect(code).toBe(1);
    expect(err).toMatch(/: not valid JSON \(/);
    expect(err).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
    expectOneLineError(err);
  });

  it("golden list and support name a glob that matches no case, as write does", async () => {
    for (const sub of ["list", "support"]) {
      const { code, err, out } = await cli("golden", sub, "--only", "nothing*");
      expect(code, sub).toBe(1);
      expect(err).toMatch(/no case matches "nothing\*"/);
      expect(out).toBe("");
    }
  });
});

describe("tables", () => {
  it("align columns, numbers to the right, in markdown form", () => {
    expect(formatTable([{ name: "a", n: 1.5 }, { name: "long name", n: 1e-7 }])).toBe(
      ["| name      |        n |", "|-----------|---------:|", "| a         |      1.5 |", "| long name | 1.000e-7 |"].join("\n"),
    );
    expect(toJson({ x: NaN, y: -Infinity, z: 3n, a: new Int32Array([1, 2]) })).toBe(
      JSON.stringify({ x: "NaN", y: "-Infinity", z: "3", a: [1, 2] }, null, 2),
    );
  });
});

// A handful through the real entry point (slow: a new Node process each, so few).
describe("bin/tinyseek.js", () => {
  const bin = new URL("../bin/tinyseek.js", import.meta.url).pathname;
  const run = async (...args: string[]) => {
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, [bin, ...args], { env: { ...process.env, NO_COLOR: "1" } });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };

  it("runs --help, and exits 2 with one line for an unknown backend", async () => {
    const help = await run("--help");
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/usage: tinyseek COMMAND/);
    const bad = await run("golden", "check", dir, "--backend", "nope");
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(bad.stdout).toBe("");
  });

  it("checks the committed suite on the reference and exits 0", async () => {
    const { code, stdout } = await run("golden", "check", new URL("../spec/golden", import.meta.url).pathname, "--backend", "reference");
    expect(code).toBe(0);
    expect(stdout).toMatch(/ 0 failed/);
  });
});
