// Golden files written to fool a check (issue 18, items 1 to 4): stripped of outputs, loosening their own
// tolerance, naming tensors after what every object inherits, repeating a name, or spelling the seed in hex. Each
// must fail or be refused with one line; none may change Object.prototype.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { referenceBackend } from "../src/backend.ts";
import { goldenSuite } from "../src/golden/suite.ts";
import {
  checkGolden, compareGolden, decodeGolden, encodeGolden, GOLDEN_FORMAT, runGoldenCase, type GoldenFile,
} from "../src/io/golden.ts";
import { readSafetensors, writeSafetensors, type TensorToWrite } from "../src/io/safetensors.ts";
import { fixtureSuite, plantedBackend, softmaxCase } from "./golden-fixtures.ts";
import { cli } from "./helpers.ts";

const committed = (name: string) => decodeGolden(readFileSync(new URL(`../spec/golden/${name}.safetensors`, import.meta.url)), name);
const suite = goldenSuite();
/** The reference held to each case's tolerance instead of bit-exactness: how a float32 backend is checked. */
const asBackend = { exact: false };

/** A golden file's tensors and metadata as written, for files that encodeGolden would never write. */
function parts(file: GoldenFile) {
  const tensors: Record<string, TensorToWrite> = {};
  const dtype = (d: unknown) => (d instanceof Float32Array ? "F32" : d instanceof Int32Array ? "I32" : "U8");
  for (const [kind, map] of [["input", file.inputs], ["param", file.params], ["output", file.outputs]] as const) {
    for (const [name, t] of Object.entries(map)) tensors[`${kind}.${name}`] = { dtype: dtype(t.data), shape: t.shape, data: t.data };
  }
  const metadata: Record<string, string> = {
    component: file.component, case: file.name, config: JSON.stringify(file.config), seed: String(file.seed),
    generator: file.generator, format: GOLDEN_FORMAT, tolerance: JSON.stringify(file.tolerance),
  };
  return { tensors, metadata };
}

/** safetensors bytes around a header written by hand (keys JSON.stringify could never repeat). */
function rawFile(header: string, dataBytes: number): Uint8Array {
  const text = new TextEncoder().encode(header);
  const bytes = new Uint8Array(8 + text.length + dataBytes);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(text.length), true);
  bytes.set(text, 8);
  return bytes;
}

const withoutOutputs = (file: GoldenFile, drop: (name: string) => boolean): GoldenFile => ({
  ...file,
  outputs: Object.fromEntries(Object.entries(file.outputs).filter(([n]) => !drop(n))),
  tolerance: Object.fromEntries(Object.entries(file.tolerance).filter(([n]) => !drop(n))),
});

describe("a golden file stripped of outputs (18.1)", () => {
  it("fails golden check, naming every output the case defines and the file lacks", async () => {
    const stripped = decodeGolden(encodeGolden(withoutOutputs(committed("core.rmsnorm.5x33"), () => true)));
    expect(Object.keys(stripped.outputs)).toEqual([]);
    for (const options of [{}, asBackend]) {
      const result = await checkGolden(stripped, suite, referenceBackend, options);
      expect(result.outcome).toBe("fail");
      expect(result.message).toMatch(/^output\.y: not in the golden file, although case "core\.rmsnorm\.5x33" defines it$/);
    }
  });

  it("fails golden check of a MoE router file without output.experts", async () => {
    const file = decodeGolden(encodeGolden(withoutOutputs(committed("moe.router.softmax"), (n) => n === "experts")));
    const result = await checkGolden(file, suite, referenceBackend, asBackend);
    expect(result.outcome).toBe("fail");
    expect(result.message).toBe('output.experts: not in the golden file, although case "moe.router.softmax" defines it');
    expect(result.comparisons.filter((c) => c.pass).map((c) => c.name).sort()).toEqual(["output.kept", "output.logits", "output.scores", "output.weights"]);
  });

  it("fails golden compare whatever the second file holds, and prints no empty table", async () => {
    const full = committed("moe.router.softmax");
    const stripped = withoutOutputs(full, (n) => n === "experts");
    const theirs = readSafetensors(encodeGolden(full));
    const result = await compareGolden(stripped, theirs, { suite });
    expect(result.outcome).toBe("fail");
    expect(result.message).toMatch(/the golden file has no output\.experts, which case "moe\.router\.softmax" defines/);

    const dir = mkdtempSync(join(tmpdir(), "tinyseek-stripped-"));
    const a = join(dir, "stripped.safetensors");
    writeFileSync(a, encodeGolden(withoutOutputs(full, () => true)));
    const b = join(dir, "anything.safetensors");
    writeFileSync(b, writeSafetensors({ "output.y": { dtype: "F32", shape: [1], data: [0] } }));
    const { code, out } = await cli("golden", "compare", a, b);
    expect(code).toBe(1);
    expect(out).toMatch(/the golden file has no output\.logits, output\.scores, output\.experts, output\.weights, output\.kept/);
    expect(out).not.toMatch(/\|/); // failed before comparing anything: no table, not even an empty one
    expect(out).toMatch(/FAIL: .*anything\.safetensors against .*stripped\.safetensors/);
  });

  it("fails golden compare, in one line, when the case cannot run on the file's own inputs", async () => {
    const file = committed("core.rmsnorm.5x33");
    const x = file.inputs.x!;
    const wrong = { ...file, inputs: { x: { shape: [x.shape[0]!, x.shape[1]! - 1], data: x.data.slice(0, x.data.length - x.shape[0]!) } } };
    const theirs = readSafetensors(writeSafetensors({ "output.y": { dtype: "F32", shape: file.outputs.y!.shape, data: file.outputs.y!.data } }));
    const result = await compareGolden(wrong, theirs, { suite });
    expect(result.outcome).toBe("fail");
    expect(result.message).toMatch(/^case "core\.rmsnorm\.5x33" cannot run on the golden file's inputs and params: /);
    expect(result.message.split("\n")).toHaveLength(1);
  });

  it("fails golden compare of a file from elsewhere that holds no output at all", async () => {
    const stranger = { ...withoutOutputs(await runGoldenCase(softmaxCase), () => true), name: "elsewhere.case" };
    const result = await compareGolden(stranger, readSafetensors(writeSafetensors({ "output.y": { dtype: "F32", shape: [1], data: [0] } })), { suite });
    expect(result.outcome).toBe("fail");
    expect(result.message).toMatch(/the golden file holds no output\.\* tensors/);
  });
});

describe("a golden file's own tolerance (18.2)", () => {
  it("cannot loosen its case's: every output doubled and the loosest tolerance a file may state still fail", async () => {
    const file = committed("core.rmsnorm.5x33");
    const doubled = { shape: file.outputs.y!.shape, data: (file.outputs.y!.data as Float32Array).map((v) => 2 * v) };
    const loose = decodeGolden(encodeGolden({ ...file, outputs: { y: doubled }, tolerance: { y: { rtol: 1, atol: 1, nmse: 1 } } }));
    const result = await checkGolden(loose, suite, referenceBackend, asBackend);
    expect(result.outcome).toBe("fail");
    expect(result.comparisons[0]!.tolerance).toEqual(suite.find((c) => c.name === "core.rmsnorm.5x33")!.tolerance!.y);
    expect(result.toleranceSource).toBe(`case "core.rmsnorm.5x33"'s registered tolerance (a file may tighten it, never loosen it)`);
  });

  it("may tighten it", async () => {
    const file = await runGoldenCase(softmaxCase);
    const ulp = plantedBackend("softmax", (d) => d.forEach((v, i) => (d[i] = v * (1 + 2 ** -23))));
    expect((await checkGolden(decodeGolden(encodeGolden(file)), fixtureSuite(), ulp)).outcome).toBe("ok");
    const tight = decodeGolden(encodeGolden({ ...file, tolerance: { ...file.tolerance, y: { rtol: 0, atol: 0, nmse: 0 } } }));
    const result = await checkGolden(tight, fixtureSuite(), ulp);
    expect(result.outcome).toBe("fail");
    expect(result.message).toMatch(/output\.y: \d+ of 21 elements mismatch .* under \|out - ref\| <= 0 \+ 0·\|ref\|/);
  });

  it("is refused, in one line, when absurd, non-finite, negative or not a number", async () => {
    const file = await runGoldenCase(softmaxCase);
    const { tensors, metadata } = parts(file);
    const stating = (y: string) => writeSafetensors(tensors, { ...metadata, tolerance: metadata.tolerance!.replace(/"y":\{[^}]*\}/, `"y":${y}`) });
    const cases: [string, RegExp][] = [
      ['{"rtol":1e300,"atol":0,"nmse":0}', /rtol must be a finite number in \[0, 1\], got 1e\+300$/],
      ['{"rtol":0,"atol":1e999,"nmse":0}', /atol must be a finite number in \[0, 1\], got Infinity$/],
      ['{"rtol":0,"atol":0,"nmse":-1}', /nmse must be a finite number in \[0, 1\], got -1$/],
      ['{"rtol":"0.1","atol":0,"nmse":0}', /rtol must be a finite number in \[0, 1\], got "0\.1"$/],
      ['{"rtol":0,"atol":0}', /nmse must be a finite number in \[0, 1\], got nothing$/],
      ['{"rtol":0,"atol":0,"nmse":0,"exact":"yes"}', /exact must be true or false, got "yes"$/],
      ["7", /expected \{rtol, atol, nmse\}, got 7$/],
    ];
    for (const [y, message] of cases) {
      let error: Error | undefined;
      try {
        decodeGolden(stating(y), "f.safetensors");
      } catch (e) {
        error = e as Error;
      }
      expect(error?.message, y).toMatch(/^f\.safetensors: metadata "tolerance" for output "y": /);
      expect(error?.message, y).toMatch(message);
      expect(error!.message.split("\n")).toHaveLength(1);
    }
  });

  it("is the bar for a file from elsewhere, and the result says so", async () => {
    const file = await runGoldenCase(softmaxCase);
    const stranger = decodeGolden(encodeGolden({ ...file, name: "elsewhere.softmax" }));
    const theirs = readSafetensors(writeSafetensors(Object.fromEntries(Object.entries(parts(file).tensors).filter(([n]) => n.startsWith("output.")))));
    const result = await compareGolden(stranger, theirs, { suite });
    expect(result.outcome).toBe("ok");
    expect(result.toleranceSource).toBe(`the golden file's own metadata (its case "elsewhere.softmax" is not in this tinyseek's suite)`);
    const known = await compareGolden(decodeGolden(encodeGolden(file)), theirs, { suite: fixtureSuite() });
    expect(known.toleranceSource).toMatch(/^case "test\.softmax\.3x7"'s registered tolerance/);
  });
});

describe("tensor names that reach Object.prototype (18.3)", () => {
  const prototypeNames = () => Object.getOwnPropertyNames(Object.prototype).sort();
  const before = prototypeNames();

  it("are refused, and Object.prototype stays clean", async () => {
    const file = await runGoldenCase(softmaxCase);
    const { tensors, metadata } = parts(file);
    const one = { dtype: "F32", shape: [1], data: [1] } as const;
    for (const name of ["__proto__.polluted", "constructor.x", "output.__proto__", "output.constructor", "param.a.__proto__.polluted", "input.prototype", "output.y-z", "output.", "output.1x", "toString"]) {
      const bytes = writeSafetensors({ ...tensors, [name]: one }, metadata);
      expect(() => decodeGolden(bytes, "evil.safetensors"), name).toThrow(
        `evil.safetensors: tensor ${JSON.stringify(name)} is not named input.*, param.* or output.*: expected input.*, param.* or output.* followed by parts of letters, digits and "_" joined by dots, none of them __proto__, constructor or prototype`,
      );
    }
    expect((({}) as Record<string, unknown>).polluted).toBeUndefined();
    expect(prototypeNames()).toEqual(before);
  });

  it("in the second file of a compare are refused too", async () => {
    const file = await runGoldenCase(softmaxCase);
    const theirs = readSafetensors(writeSafetensors({ ...parts(file).tensors, "output.__proto__": { dtype: "F32", shape: [1], data: [1] } }));
    const result = await compareGolden(decodeGolden(encodeGolden(file)), theirs);
    expect(result.outcome).toBe("fail");
    expect(result.message).toMatch(/the second file's tensor "output\.__proto__" is not a valid output name/);
    expect(prototypeNames()).toEqual(before);
  });

  it("a component other than the case's fails the check", async () => {
    const file = decodeGolden(encodeGolden({ ...(await runGoldenCase(softmaxCase)), component: "test.linear" }));
    const result = await checkGolden(file, fixtureSuite(), referenceBackend);
    expect(result.outcome).toBe("fail");
    expect(result.message).toBe(`component "test.linear" is not case "test.softmax.3x7"'s "test.softmax"`);
  });
});

describe("headers that say one thing twice, or a seed in another base (18.4)", () => {
  const entry = (begin: number) => `{"dtype":"F32","shape":[1],"data_offsets":[${begin},${begin + 4}]}`;

  it("refuse a tensor named twice, naming it", () => {
    const header = `{"output.y":${entry(0)},"input.x":${entry(4)},"output.y":${entry(4)}}`;
    expect(() => readSafetensors(rawFile(header, 8))).toThrow('safetensors: tensor "output.y" appears twice in the header');
    expect(() => readSafetensors(rawFile(`{"__metadata__":{"k":"a","k":"b"},"w":${entry(0)}}`, 4))).toThrow(`safetensors: key "k" appears twice in "__metadata__"`);
    expect(() => readSafetensors(rawFile(`{"w":{"dtype":"F32","shape":[1],"dtype":"I32","data_offsets":[0,4]}}`, 4))).toThrow(`safetensors: key "dtype" appears twice in the entry of tensor "w"`);
    // Escapes that decode to one name are one name; a quote inside a name does not end it.
    expect(() => readSafetensors(rawFile(`{"a\\u0062":${entry(0)},"ab":${entry(4)}}`, 8))).toThrow('safetensors: tensor "ab" appears twice in the header');
    expect([...readSafetensors(rawFile(`{"a\\"b":${entry(0)},"a":${entry(4)}}`, 8)).tensors.keys()]).toEqual(['a"b', "a"]);
  });

  it("keep a metadata key named __proto__ as a key", () => {
    const { metadata } = readSafetensors(rawFile(`{"__metadata__":{"__proto__":"kept","k":"v"},"w":${entry(0)}}`, 4));
    expect(Object.keys(metadata)).toEqual(["__proto__", "k"]);
    expect(metadata.__proto__).toBe("kept");
    expect(Object.hasOwn(metadata, "__proto__")).toBe(true);
  });

  it("refuse a seed that is not a decimal integer", async () => {
    const { tensors, metadata } = parts(await runGoldenCase(softmaxCase));
    for (const seed of ["0x12c", "1e3", " 7", "", "07", "0b11", "1.0", "9007199254740993"]) {
      expect(() => decodeGolden(writeSafetensors(tensors, { ...metadata, seed }), "s.safetensors"), seed)
        .toThrow(`s.safetensors: metadata "seed": expected a decimal integer, got ${JSON.stringify(seed)}`);
    }
    for (const seed of ["0", "-3", "300"]) expect(decodeGolden(writeSafetensors(tensors, { ...metadata, seed })).seed).toBe(Number(seed));
  });
});
