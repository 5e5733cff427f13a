import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { referenceBackend } from "../src/backend.ts";
import type { GoldenTensor } from "../src/golden/case.ts";
import { goldenSuite, matchesGlob } from "../src/golden/suite.ts";
import { compareTensors } from "../src/io/compare.ts";
import {
  checkGolden, compareGolden, decodeGolden, DEFAULT_TOLERANCE, encodeGolden, GOLDEN_FORMAT, GoldenError, runGoldenCase,
  tinyseekVersion, type GoldenFile,
} from "../src/io/golden.ts";
import { readSafetensors, writeSafetensors, type TensorToWrite } from "../src/io/safetensors.ts";
import { asyncOnlyBackend, fixtureSuite, linearCase, plantedBackend, softmaxCase } from "./golden-fixtures.ts";

const roundTrip = async (c = softmaxCase) => decodeGolden(encodeGolden(await runGoldenCase(c)));

describe("golden files", () => {
  it("store inputs, params, outputs and the metadata of spec/golden.md", async () => {
    const bytes = encodeGolden(await runGoldenCase(linearCase));
    const { tensors, metadata } = readSafetensors(bytes);
    expect([...tensors.keys()].sort()).toEqual(["input.x", "output.y", "param.layers.0.mlp.weight"]);
    expect(metadata).toEqual({
      component: "test.linear",
      case: "test.linear.4x9x5",
      config: JSON.stringify({ tokens: 4, in: 9, out: 5 }),
      seed: "12",
      generator: `tinyseek ${tinyseekVersion()} reference`,
      format: GOLDEN_FORMAT,
      tolerance: JSON.stringify({ y: { rtol: 1e-5, atol: 1e-6, nmse: 1e-12 } }),
    });
  });

  it("give integer and boolean outputs an exact tolerance and float ones the default", async () => {
    const file = await roundTrip();
    expect(file.tolerance.y).toEqual(DEFAULT_TOLERANCE);
    expect(file.tolerance.argmax!.exact).toBe(true);
    expect(file.tolerance.above!.exact).toBe(true);
    expect(file.outputs.argmax!.data).toBeInstanceOf(Int32Array);
    expect(file.outputs.above!.data).toBeInstanceOf(Uint8Array);
  });

  it("name the package's version as their generator", () => {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
    expect(tinyseekVersion(), "bump TINYSEEK_VERSION in src/io/golden.ts with package.json").toBe(pkg.version);
  });

  it("are written byte for byte the same twice", async () => {
    const a = encodeGolden(await runGoldenCase(softmaxCase));
    const b = encodeGolden(await runGoldenCase(softmaxCase));
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
  });

  it("of another format version are refused with a message to regenerate", async () => {
    const file = { ...(await runGoldenCase(softmaxCase)), format: "0" };
    expect(() => decodeGolden(encodeGolden(file), "old.safetensors")).toThrow(GoldenError);
    expect(() => decodeGolden(encodeGolden(file), "old.safetensors")).toThrow(
      /old.safetensors: golden format version 0 .*this tinyseek reads version 1: regenerate it with `tinyseek golden write DIR`/,
    );
  });

  it("that are not golden files are refused, naming what is missing", () => {
    const plain = writeSafetensors({ "input.x": { dtype: "F32", shape: [1], data: [1] } }, { note: "x" });
    expect(() => decodeGolden(plain, "p.safetensors")).toThrow(/p.safetensors: no "format" in its metadata/);
    const oddName = writeSafetensors({ weight: { dtype: "F32", shape: [1], data: [1] } }, {
      format: GOLDEN_FORMAT, component: "c", case: "c", config: "{}", seed: "1", generator: "g", tolerance: "{}",
    });
    expect(() => decodeGolden(oddName)).toThrow(/tensor "weight" is not named input\.\*, param\.\* or output\.\*/);
  });
});

describe("golden check", () => {
  it("passes on the reference, bit for bit", async () => {
    for (const c of fixtureSuite()) {
      const result = await checkGolden(await roundTrip(c), fixtureSuite(), referenceBackend);
      expect(result.outcome, result.message).toBe("ok");
      expect(result.comparisons.every((r) => r.maxAbsError === 0)).toBe(true);
    }
  });

  it("finds a planted bug and says where, by how much, and how many elements", async () => {
    const file = await roundTrip();
    const buggy = plantedBackend("softmax", (d) => void (d[10] = d[10]! + 1e-3)); // row 1, column 3
    const result = await checkGolden(file, fixtureSuite(), buggy);
    expect(result.outcome).toBe("fail");
    const y = result.comparisons.find((c) => c.name === "output.y")!;
    expect(y.pass).toBe(false);
    expect(y.mismatches).toBe(1);
    expect(y.maxAbsError).toBeCloseTo(1e-3, 6);
    expect(result.message).toMatch(/output\.y: 1 of 21 elements mismatch \(4\.76%\) under \|out - ref\| <= 0\.00001 \+ 0\.0001·\|ref\|/);
    expect(result.message).toMatch(/worst absolute error 1\.00e-3 at \[1, 3\] \(out [\d.]+ ref [\d.]+\)/);
    expect(result.message).toMatch(/normalised error .* \(NMSE .*, allowed 1\.00e-10: too large\)/);
  });

  it("accepts float32-sized errors within tolerance on another backend, but not on the reference itself", async () => {
    const file = await roundTrip();
    const ulp = plantedBackend("softmax", (d) => d.forEach((v, i) => (d[i] = v * (1 + 2 ** -23))));
    expect((await checkGolden(file, fixtureSuite(), ulp)).outcome).toBe("ok");
    const strict = await checkGolden(file, fixtureSuite(), ulp, { exact: true });
    expect(strict.outcome).toBe("fail");
    expect(strict.message).toMatch(/under exact equality/);
  });

  it("reports NaN where the reference has a number, with its place", async () => {
    const file = await roundTrip();
    const result = await checkGolden(file, fixtureSuite(), plantedBackend("softmax", (d) => void (d[15] = NaN)));
    expect(result.outcome).toBe("fail");
    expect(result.message).toMatch(/NaN\/Inf in output: 1 element\(s\), first at \[2, 1\] out NaN ref [\d.]+/);
  });

  it("fails an integer output that differs at all", async () => {
    const file = await roundTrip();
    // Swapping row 0's largest probability with its neighbour moves that row's argmax.
    const swap = plantedBackend("softmax", (d) => {
      const row = d.subarray(0, 7);
      const max = row.indexOf(Math.max(...row));
      const other = (max + 1) % 7;
      [row[max], row[other]] = [row[other]!, row[max]!];
    });
    const result = await checkGolden(file, fixtureSuite(), swap);
    const argmax = result.comparisons.find((c) => c.name === "output.argmax")!;
    expect(argmax.pass).toBe(false);
    expect(argmax.message).toMatch(/output\.argmax: 1 of 3 elements mismatch .* under exact equality/);
  });

  it("says not supported where a backend cannot run the case", async () => {
    const result = await checkGolden(await roundTrip(), fixtureSuite(), asyncOnlyBackend);
    expect(result.outcome).toBe("not supported");
    expect(result.message).toMatch(/webgpu has no synchronous kernels/);
  });

  it("fails a file whose case is gone or has changed", async () => {
    const file = await roundTrip();
    const gone = await checkGolden({ ...file, name: "test.removed" }, fixtureSuite(), referenceBackend);
    expect(gone.outcome).toBe("fail");
    expect(gone.message).toMatch(/no case named "test.removed" in this tinyseek's suite/);
    const changed = await checkGolden({ ...file, config: { rows: 4, cols: 7 } }, fixtureSuite(), referenceBackend);
    expect(changed.message).toMatch(/has changed its config or seed since the file was written: regenerate/);
  });
});

describe("golden compare", () => {
  /** A file as someone else's kernel would write it: the inputs repeated, and its own outputs. */
  const theirs = (file: GoldenFile, change: (name: string, data: Float32Array) => void = () => {}, dtype: "F32" | "F64" = "F32") => {
    const tensors: Record<string, TensorToWrite> = {};
    for (const [name, t] of Object.entries(file.inputs)) tensors[`input.${name}`] = { dtype: "F32", shape: t.shape, data: t.data };
    for (const [name, t] of Object.entries(file.outputs)) {
      const data = t.data instanceof Float32Array ? t.data.slice() : t.data;
      if (data instanceof Float32Array) change(name, data);
      tensors[`output.${name}`] = { dtype: data instanceof Float32Array ? dtype : data instanceof Int32Array ? "I64" : "U8", shape: t.shape, data: data instanceof Int32Array ? Array.from(data, BigInt) : data };
    }
    return readSafetensors(writeSafetensors(tensors));
  };

  it("passes identical outputs in other dtypes (F64, I64) and fails a changed one", async () => {
    const file = await roundTrip();
    expect((await compareGolden(file, theirs(file, () => {}, "F64"))).outcome).toBe("ok");
    const changed = await compareGolden(file, theirs(file, (_, d) => void (d[0] = 0.5)));
    expect(changed.outcome).toBe("fail");
    expect(changed.message).toMatch(/output\.y: 1 of 21 elements mismatch/);
  });

  it("refuses files whose inputs differ, and files missing an output", async () => {
    const file = await roundTrip();
    const other = theirs(file);
    (other.tensors.get("input.x")!.data as Float32Array)[3] = 9;
    expect((await compareGolden(file, other)).message).toMatch(/input\.x differs between the two files/);
    const partial = readSafetensors(writeSafetensors({ "output.y": { dtype: "F32", shape: [3, 7], data: file.outputs.y!.data } }));
    expect((await compareGolden(file, partial)).message).toMatch(/the second file has no output\.argmax, output\.above/);
    const otherCase = readSafetensors(encodeGolden(await runGoldenCase(linearCase)));
    expect((await compareGolden(file, otherCase)).message).toMatch(/the files are of different cases: "test.softmax.3x7" and "test.linear.4x9x5"/);
  });
});

describe("compareTensors", () => {
  const t = (data: number[]): GoldenTensor => ({ shape: [2, 2], data: Float32Array.from(data) });
  const tol = { rtol: 0, atol: 0.1, nmse: 1 };
  it("lets NaN and Inf pass only at the same place with the same value", () => {
    expect(compareTensors("o", t([NaN, Infinity, -Infinity, 1]), t([NaN, Infinity, -Infinity, 1]), tol).pass).toBe(true);
    expect(compareTensors("o", t([NaN, 1, 1, 1]), t([1, 1, 1, 1]), tol).pass).toBe(false);
    expect(compareTensors("o", t([Infinity, 1, 1, 1]), t([-Infinity, 1, 1, 1]), tol).pass).toBe(false);
    expect(compareTensors("o", t([1, 1, 1, 1]), t([1, 1, Infinity, 1]), tol).message).toMatch(/NaN\/Inf in output: 1 element\(s\), first at \[1, 0\]/);
  });
  it("applies atol + rtol·|ref| per element and the NMSE bound on the whole", () => {
    expect(compareTensors("o", t([1, 2, 3, 4]), t([1.09, 2, 3, 4]), tol).pass).toBe(true);
    expect(compareTensors("o", t([1, 2, 3, 4]), t([1.11, 2, 3, 4]), tol).pass).toBe(false);
    expect(compareTensors("o", t([1, 2, 3, 4]), t([1.09, 2, 3, 4]), { ...tol, nmse: 1e-6 }).message).toMatch(/0 of 4 elements mismatch.*\n.*\n.*\n.*NMSE 2\.70e-4, allowed 1\.00e-6: too large/);
  });
  it("tells -0 from +0 and matches NaN bits only under an exact tolerance", () => {
    const exact = { rtol: 0, atol: 0, nmse: 0, exact: true };
    expect(compareTensors("o", t([-0, NaN, 1, 2]), t([-0, NaN, 1, 2]), exact).pass).toBe(true);
    expect(compareTensors("o", t([0, 1, 1, 2]), t([-0, 1, 1, 2]), exact).pass).toBe(false);
    expect(compareTensors("o", t([0, 1, 1, 2]), t([-0, 1, 1, 2]), { ...exact, exact: false }).pass).toBe(true);
  });
  it("refuses a shape or kind mismatch", () => {
    expect(compareTensors("o", t([1, 2, 3, 4]), { shape: [4], data: new Float32Array(4) }, tol).message).toMatch(/shape \[4\] differs from the reference's \[2, 2\]/);
    expect(compareTensors("o", t([1, 2, 3, 4]), { shape: [2, 2], data: new Int32Array(4) }, tol).message).toMatch(/integer output where the reference is float/);
  });
});

describe("the suite", () => {
  it("has unique, file-safe names and matches globs", () => {
    const names = goldenSuite().map((c) => c.name);
    expect(new Set(names).size).toBe(names.length);
    for (const name of names) expect(name).toMatch(/^[A-Za-z0-9][A-Za-z0-9._-]*$/);
    expect(matchesGlob("moe.router.sigmoid", "moe.*")).toBe(true);
    expect(matchesGlob("moe.router.sigmoid", "attention.*,moe.router.?igmoid")).toBe(true);
    expect(matchesGlob("moexrouter", "moe.router")).toBe(false);
  });
});

// The committed suite: the reference must reproduce every committed output bit for bit, so a numeric change in
// the reference is never silent. Regenerate with `npm run golden:write` when a change is intended.
describe("committed golden files (spec/golden)", () => {
  const dir = new URL("../spec/golden/", import.meta.url).pathname;
  const files = readdirSync(dir).filter((f) => f.endsWith(".safetensors")).sort();
  const suite = goldenSuite();
  const bytesOf = (t: GoldenTensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

  it("cover every case of the suite and stay small", () => {
    const missing = suite.map((c) => `${c.name}.safetensors`).filter((f) => !files.includes(f));
    expect(missing, "cases without a committed file: run `npm run golden:write`").toEqual([]);
    const total = files.reduce((s, f) => s + statSync(join(dir, f)).size, 0);
    expect(total, "spec/golden is over 3 MB: make the cases smaller").toBeLessThan(3_000_000);
  });

  for (const f of files) {
    it(`${f} is reproduced bit for bit`, async () => {
      const file = decodeGolden(readFileSync(join(dir, f)), f);
      const c = suite.find((s) => s.name === file.name);
      expect(c, `${f}: its case ${file.name} is no longer in the suite (remove the file or restore the case)`).toBeDefined();
      expect(f).toBe(`${file.name}.safetensors`);
      const stale = `${f}: case ${file.name} changed its config or seed: run \`npm run golden:write\``;
      expect(JSON.stringify({ config: c!.config, seed: c!.seed }), stale).toBe(JSON.stringify({ config: file.config, seed: file.seed }));
      const fresh = await runGoldenCase(c!);
      for (const kind of ["inputs", "params", "outputs"] as const) {
        expect(Object.keys(fresh[kind]).sort(), kind).toEqual(Object.keys(file[kind]).sort());
        for (const [name, t] of Object.entries(file[kind])) {
          const now = fresh[kind][name]!;
          expect(now.shape, `${kind}.${name}`).toEqual(t.shape);
          expect(bytesOf(now).equals(bytesOf(t)), `${f}: ${kind}.${name} is no longer bit-identical`).toBe(true);
        }
      }
    });
  }
});
