// Cases that kill mutants of src/io/golden.ts and src/io/checkpoint.ts that their own suites let live (test/README.md,
// mutation testing): golden files' every refusal with its whole message, the check's outcomes for every way a
// backend can fail, the worker fallback's arguments, which tolerance is the bar and where it came from, golden
// compare's choice of outputs, and writing and listing golden files on disk.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { NotSupportedError, referenceBackend, type Backend, type SyncTask } from "../src/backend.ts";
import { TinyseekError } from "../src/errors.ts";
import type { GoldenCase, TensorMap } from "../src/golden/case.ts";
import {
  checkGolden, checkGoldenFile, checkSupport, compareGolden, decodeGolden, DEFAULT_TOLERANCE, encodeGolden, GOLDEN_FORMAT, GoldenError,
  goldenFilesIn, goldenTensorName, runGoldenCase, stricter, toleranceFor, writeGoldenCase, type GoldenFile,
} from "../src/io/golden.ts";
import { loadCheckpoint, type CheckpointOptions } from "../src/io/checkpoint.ts";
import { EXACT } from "../src/io/compare.ts";
import { dequantizeFp8Codes } from "../src/io/fp8-weights.ts";
import { readSafetensors, readSafetensorsHeader, writeSafetensors, type TensorToWrite } from "../src/io/safetensors.ts";
import { writeTestCheckpoint, type TestCheckpoint, type TestCheckpointOptions } from "./checkpoint-fixtures.ts";
import { plantedBackend, softmaxCase } from "./golden-fixtures.ts";
import { thrown } from "./helpers.ts";

const root = mkdtempSync(join(tmpdir(), "tinyseek-golden-io-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** y = w·x for x = [1, -2], w = [3]: a case whose outputs, failures and backends each test controls. */
function scaleCase(over: Partial<GoldenCase> = {}): GoldenCase {
  return {
    name: "test.scale.2",
    component: "test.scale",
    config: { n: 2 },
    seed: 3,
    build: () => ({ inputs: { x: { shape: [2], data: Float32Array.of(1, -2) } }, params: { w: { shape: [1], data: Float32Array.of(3) } } }),
    run: (_backend, inputs, params) => ({ y: { shape: [2], data: (inputs.x!.data as Float32Array).map((v) => v * params.w!.data[0]!) } }),
    ...over,
  };
}
const wasmLike: Backend = { ...referenceBackend, name: "wasm", description: "the reference under another name" };

/** The golden file's tensors and metadata as written, for files encodeGolden would never write. */
function parts(file: GoldenFile) {
  const tensors: Record<string, TensorToWrite> = {};
  for (const [kind, map] of [["input", file.inputs], ["param", file.params], ["output", file.outputs]] as const) {
    for (const [name, t] of Object.entries(map)) {
      tensors[`${kind}.${name}`] = { dtype: t.data instanceof Float32Array ? "F32" : t.data instanceof Int32Array ? "I32" : "U8", shape: t.shape, data: t.data };
    }
  }
  const metadata: Record<string, string> = {
    component: file.component, case: file.name, config: JSON.stringify(file.config), seed: String(file.seed),
    generator: file.generator, format: GOLDEN_FORMAT, tolerance: JSON.stringify(file.tolerance),
  };
  return { tensors, metadata };
}

/** decodeGolden's refusal of `bytes` read from "f" (null: no source given). */
function refusal(bytes: Uint8Array, source: string | null = "f"): string {
  try {
    if (source === null) decodeGolden(bytes);
    else decodeGolden(bytes, source);
  } catch (error) {
    expect(error).toBeInstanceOf(GoldenError);
    expect((error as Error).name).toBe("GoldenError");
    return (error as Error).message;
  }
  throw new Error("expected a GoldenError, the file was accepted");
}

describe("running a case for its golden file", () => {
  it("refuses a case name that is not a file name", async () => {
    for (const name of ["a b", ".x", "x/y", ""]) {
      await expect(runGoldenCase(scaleCase({ name })), name).rejects.toThrow(`case name: expected letters, digits, ".", "_" or "-", got ${JSON.stringify(name)}`);
    }
    expect((await runGoldenCase(scaleCase({ name: "x.y_z-1" }))).name).toBe("x.y_z-1");
  });

  it("stores what the case built, even when the case writes into the inputs it is handed", async () => {
    const file = await runGoldenCase(scaleCase({
      run: (_b, inputs, params) => {
        (inputs.x!.data as Float32Array).fill(0);
        (inputs.x!.shape as number[]).push(1);
        params.w!.data.fill(0);
        return { y: { shape: [1], data: Float32Array.of(0) } };
      },
    }));
    expect(file.inputs).toEqual({ x: { shape: [2], data: Float32Array.of(1, -2) } });
    expect(file.params).toEqual({ w: { shape: [1], data: Float32Array.of(3) } });
  });

  it("gives each output the case's tolerance, else exact for integers and the default for floats", async () => {
    const own = { rtol: 0.5, atol: 0, nmse: 0 };
    const c = scaleCase({ tolerance: { y: own } });
    expect(toleranceFor(c, "y", { shape: [1], data: Float32Array.of(1) })).toEqual(own);
    expect(toleranceFor(c, "k", { shape: [1], data: Float32Array.of(1) })).toEqual(DEFAULT_TOLERANCE);
    expect(toleranceFor(c, "k", { shape: [1], data: Int32Array.of(1) })).toEqual(EXACT);
    expect(toleranceFor(scaleCase(), "y", { shape: [1], data: Uint8Array.of(1) })).toEqual(EXACT);
  });

  it("refuses output data of a type a golden file cannot hold", async () => {
    const file = await runGoldenCase(scaleCase());
    const f64 = { ...file, outputs: { y: { shape: [2], data: Float64Array.of(3, -6) as unknown as Float32Array } } };
    expect(() => encodeGolden(f64)).toThrow(new GoldenError("output.y: expected Float32Array, Int32Array or Uint8Array data, got [object Float64Array]"));
  });
});

describe("decoding a golden file: every refusal, whole", () => {
  const good = async () => parts(await runGoldenCase(scaleCase({ tolerance: { y: { rtol: 0.25, atol: 0.5, nmse: 1 } } })));

  it("reads back every field as written", async () => {
    const file = decodeGolden(encodeGolden(await runGoldenCase(scaleCase({ tolerance: { y: { rtol: 0.25, atol: 0.5, nmse: 1 } } }))));
    expect({ ...file, tolerance: { ...file.tolerance }, inputs: { ...file.inputs }, params: { ...file.params }, outputs: { ...file.outputs } }).toEqual({
      name: "test.scale.2", component: "test.scale", config: { n: 2 }, seed: 3, generator: "tinyseek 0.1.0 reference", format: "1",
      tolerance: { y: { rtol: 0.25, atol: 0.5, nmse: 1 } },
      inputs: { x: { shape: [2], data: Float32Array.of(1, -2) } },
      params: { w: { shape: [1], data: Float32Array.of(3) } },
      outputs: { y: { shape: [2], data: Float32Array.of(3, -6) } },
    });
  });

  it("another format version names the version and its generator (or that there is none)", async () => {
    const { tensors, metadata } = await good();
    const regenerate = "this tinyseek reads version 1: regenerate it with `tinyseek golden write DIR`";
    expect(refusal(writeSafetensors(tensors, { ...metadata, format: "2", generator: "g 9" }))).toBe(`f: golden format version 2 (g 9), ${regenerate}`);
    const { generator: _, ...noGenerator } = metadata;
    expect(refusal(writeSafetensors(tensors, { ...noGenerator, format: "2" }))).toBe(`f: golden format version 2 (unknown generator), ${regenerate}`);
    expect(refusal(writeSafetensors(tensors, { ...metadata, format: "9".repeat(30) }), null)).toBe(`golden file: golden format version ${"9".repeat(20)} (tinyseek 0.1.0 reference), ${regenerate}`);
    expect(refusal(writeSafetensors(tensors, { ...metadata, format: "2", generator: "g".repeat(100) }))).toBe(`f: golden format version 2 (${"g".repeat(80)}), ${regenerate}`);
  });

  it("each metadata key missing is named", async () => {
    const { tensors, metadata } = await good();
    for (const key of ["component", "case", "config", "seed", "generator", "tolerance"]) {
      const { [key]: _, ...rest } = metadata;
      expect(refusal(writeSafetensors(tensors, rest)), key).toBe(`f: metadata has no "${key}"`);
    }
  });

  it("config and tolerance must be JSON objects", async () => {
    const { tensors, metadata } = await good();
    expect(refusal(writeSafetensors(tensors, { ...metadata, config: "{" }))).toBe('f: metadata "config" is not valid JSON');
    for (const config of ["[1]", "null", "3", '"x"']) {
      expect(refusal(writeSafetensors(tensors, { ...metadata, config })), config).toBe('f: metadata "config" must be a JSON object');
    }
    expect(refusal(writeSafetensors(tensors, { ...metadata, tolerance: "[]" }))).toBe('f: metadata "tolerance" must be a JSON object');
  });

  it("a seed is quoted short", async () => {
    const { tensors, metadata } = await good();
    const seed = "1".repeat(100);
    expect(refusal(writeSafetensors(tensors, { ...metadata, seed }))).toBe(`f: metadata "seed": expected a decimal integer, got "${"1".repeat(80)}"…`);
    expect(refusal(writeSafetensors(tensors, { ...metadata, seed: "1".repeat(80) }))).toBe(`f: metadata "seed": expected a decimal integer, got "${"1".repeat(80)}"`);
  });

  it("tensors: params are F32, every golden tensor F32, I32, U8 or BOOL, names short in messages", async () => {
    const { tensors, metadata } = await good();
    const one = (dtype: "I32" | "F64" | "U8") => ({ dtype, shape: [1], data: [1] }) as TensorToWrite;
    expect(refusal(writeSafetensors({ ...tensors, "param.w": one("I32") }, metadata))).toBe('f: tensor "param.w": params must be F32, got I32');
    expect(refusal(writeSafetensors({ ...tensors, "input.z": one("F64") }, metadata))).toBe("f: input.z: golden tensors are F32, I32, U8 or BOOL, got F64");
    const long = `output.${"n".repeat(100)}`;
    expect(refusal(writeSafetensors({ ...tensors, [`${long}-`]: one("U8") }, metadata))).toMatch(new RegExp(`^f: tensor "${long.slice(0, 80)}"… is not named input\\.\\*`));
    const bools = writeSafetensors({ ...tensors, "input.m": { dtype: "BOOL", shape: [2], data: [1, 0] }, "input.k": one("U8"), "input.i": one("I32") }, metadata);
    const inputs = decodeGolden(bools).inputs;
    expect([inputs.m!.data, inputs.k!.data, inputs.i!.data]).toEqual([Uint8Array.of(1, 0), Uint8Array.of(1), Int32Array.of(1)]);
  });

  it("every output needs a stated tolerance, an own key of the metadata's object", async () => {
    const { tensors, metadata } = await good();
    const y = tensors["output.y"]!;
    expect(refusal(writeSafetensors({ ...tensors, "output.z": y }, metadata))).toBe('f: metadata "tolerance" for output "z": missing');
    // toString is a safe tensor name, and every object inherits a toString: only an own key states a tolerance.
    expect(refusal(writeSafetensors({ ...tensors, "output.toString": y }, metadata))).toBe('f: metadata "tolerance" for output "toString": missing');
  });

  it("a stated tolerance: each bound in [0, 1], both ends included; exact kept only when true", async () => {
    const { tensors, metadata } = await good();
    const stating = (y: unknown) => decodeGolden(writeSafetensors(tensors, { ...metadata, tolerance: JSON.stringify({ y }) }), "f").tolerance.y;
    expect(stating({ rtol: 0, atol: 1, nmse: 0 })).toEqual({ rtol: 0, atol: 1, nmse: 0 });
    expect(stating({ rtol: 1, atol: 0, nmse: 1, exact: true })).toEqual({ rtol: 1, atol: 0, nmse: 1, exact: true });
    expect(stating({ rtol: 1, atol: 0, nmse: 1, exact: false })).toStrictEqual({ rtol: 1, atol: 0, nmse: 1 });
    const where = 'f: metadata "tolerance" for output "y": ';
    expect(() => stating({ rtol: 1.0000001, atol: 0, nmse: 0 })).toThrow(`${where}rtol must be a finite number in [0, 1], got 1.0000001`);
    expect(() => stating({ rtol: 0, atol: -1e-300, nmse: 0 })).toThrow(`${where}atol must be a finite number in [0, 1], got -1e-300`);
    expect(() => stating(null)).toThrow(`${where}expected {rtol, atol, nmse}, got null`);
    expect(() => stating([0, 0, 0])).toThrow(`${where}expected {rtol, atol, nmse}, got [0, 0, 0]`);
    expect(() => stating({ atol: 0, nmse: 0 })).toThrow(`${where}rtol must be a finite number in [0, 1], got nothing`);
  });

  it("tensor names: a kind, then safe parts joined by dots", () => {
    expect(goldenTensorName("output.a.1")).toEqual({ kind: "output", name: "a.1" });
    expect(goldenTensorName("param.layers.0.w_1")).toEqual({ kind: "param", name: "layers.0.w_1" });
    expect(goldenTensorName("input._x")).toEqual({ kind: "input", name: "_x" });
    for (const name of ["output.a..b", "output.a.", "xoutput.a", "output.a b", "outputs.a", "output.a.prototype"]) expect(goldenTensorName(name), name).toBeUndefined();
  });
});

describe("golden check: every outcome", () => {
  /** A file of `c` as written on the reference, read back. */
  const fileOf = async (c: GoldenCase) => decodeGolden(encodeGolden(await runGoldenCase(c)));

  it("a backend that throws: its own message, else the error's name, else 'an error'", async () => {
    const throwing = (thrown: unknown) => scaleCase({
      run: (backend, inputs, params) => {
        if (backend.name === "wasm") throw thrown;
        return scaleCase().run(backend, inputs, params);
      },
    });
    const file = await fileOf(scaleCase());
    const message = async (thrown: unknown) => {
      const result = await checkGolden(file, [throwing(thrown)], wasmLike);
      expect(result).toEqual({ file: "test.scale.2", outcome: "fail", comparisons: [], message: result.message });
      return result.message;
    };
    expect(await message(new TinyseekError("x: expected 3 rows, got 2"))).toBe("wasm threw x: expected 3 rows, got 2");
    expect(await message(new TypeError("k.linear is not a function"))).toBe("wasm threw TypeError: k.linear is not a function");
    expect(await message("boom")).toBe("wasm threw an error: boom");
    expect(await message(undefined)).toBe("wasm threw an error: undefined");
  });

  it("not supported: the backend's reason; where it offers a worker, the case runs there, by name", async () => {
    const needsKernels = scaleCase({
      run: (backend, inputs, params) => {
        if (!backend.kernels) throw new NotSupportedError(`${backend.name} has no synchronous kernels`);
        return scaleCase().run(backend, inputs, params);
      },
    });
    const file = await fileOf(scaleCase());
    const noKernels = { ...wasmLike, name: "webgpu" as const, kernels: undefined };
    expect(await checkGolden(file, [needsKernels], noKernels)).toEqual({ file: "test.scale.2", outcome: "not supported", comparisons: [], message: "webgpu has no synchronous kernels" });

    const calls: [SyncTask, unknown][] = [];
    const withWorker: Backend = {
      ...noKernels,
      runSynchronously: async <R,>(task: SyncTask, args: unknown) => {
        calls.push([task, args]);
        return { y: { shape: [2], data: Float32Array.of(3, -6) } } as R;
      },
    };
    const result = await checkGolden(file, [needsKernels], withWorker, {}, "f.safetensors");
    expect([result.file, result.outcome, result.message]).toEqual(["f.safetensors", "ok", ""]);
    expect(calls).toHaveLength(1);
    const [task, args] = calls[0]!;
    expect(task).toEqual({ module: new URL("../src/golden/worker-task.ts", import.meta.url).href, export: "runCaseTask" });
    expect(args).toEqual({ backend: { name: "webgpu", description: "the reference under another name" }, case: "test.scale.2", inputs: file.inputs, params: file.params });

    // A backend with synchronous kernels that still cannot run the case is not retried in a worker.
    const refusing = scaleCase({ run: () => Promise.reject(new NotSupportedError("not on this one")) });
    calls.length = 0;
    expect((await checkGolden(file, [refusing], { ...withWorker, kernels: referenceBackend.kernels })).outcome).toBe("not supported");
    expect(calls).toEqual([]);
  });

  it("an output the backend does not produce fails on its own line", async () => {
    const twoOutputs = scaleCase({ run: (b, i, p) => ({ ...(scaleCase().run(b, i, p) as TensorMap), z: { shape: [1], data: Int32Array.of(4) } }) });
    const file = await fileOf(twoOutputs);
    const dropsZ = scaleCase({ run: (b, i, p) => (b.name === "wasm" ? scaleCase().run(b, i, p) : twoOutputs.run(b, i, p)) });
    const result = await checkGolden(file, [dropsZ], wasmLike);
    expect(result.outcome).toBe("fail");
    expect(result.message).toBe("output.z: missing from the backend's outputs");
    const z = result.comparisons.find((c) => c.name === "output.z")!;
    expect(z).toEqual({ name: "output.z", tolerance: EXACT, elements: 1, pass: false, mismatches: 1, maxAbsError: NaN, maxRelError: NaN, normalisedError: NaN, nmse: NaN, message: "output.z: missing from the backend's outputs" });
    expect(result.comparisons.find((c) => c.name === "output.y")!.pass).toBe(true);
    // A name every object inherits is still only what the backend itself returned.
    const withToString = { ...file, outputs: { ...file.outputs, toString: file.outputs.z! }, tolerance: { ...file.tolerance, toString: EXACT } };
    expect((await checkGolden(withToString, [dropsZ], wasmLike)).message).toBe("output.z: missing from the backend's outputs\noutput.toString: missing from the backend's outputs");
  });

  it("an output the file lacks fails with the tolerance the case would give it", async () => {
    const twoOutputs = scaleCase({ run: (b, i, p) => ({ ...(scaleCase().run(b, i, p) as TensorMap), z: { shape: [3], data: Int32Array.of(4, 5, 6) } }) });
    const file = await fileOf(scaleCase());
    const result = await checkGolden(file, [twoOutputs], wasmLike);
    expect(result.message).toBe('output.z: not in the golden file, although case "test.scale.2" defines it');
    expect(result.comparisons.find((c) => c.name === "output.z")).toEqual({
      name: "output.z", tolerance: EXACT, elements: 3, pass: false, mismatches: 3, maxAbsError: NaN, maxRelError: NaN, normalisedError: NaN, nmse: NaN,
      message: 'output.z: not in the golden file, although case "test.scale.2" defines it',
    });
  });

  it("a case that defines no output compares nothing, and that fails", async () => {
    const none = scaleCase({ run: () => ({}) });
    const result = await checkGolden(await fileOf(none), [none], wasmLike);
    expect(result).toEqual({ file: "test.scale.2", outcome: "fail", comparisons: [], message: "no output was compared", toleranceSource: `case "test.scale.2"'s registered tolerance (a file may tighten it, never loosen it)` });
  });

  it("the bar: the case's tolerance tightened by the file's, bound by bound; exact on the reference unless asked otherwise", async () => {
    const c = scaleCase({ tolerance: { y: { rtol: 1e-3, atol: 1e-6, nmse: 1e-8 } } });
    const file = { ...(await fileOf(c)), tolerance: { y: { rtol: 1e-2, atol: 1e-7, nmse: 1e-8, exact: true } } };
    const onWasm = await checkGolden(file, [c], wasmLike);
    expect(onWasm.comparisons[0]!.tolerance).toEqual({ rtol: 1e-3, atol: 1e-7, nmse: 1e-8, exact: true });
    expect(onWasm.toleranceSource).toBe(`case "test.scale.2"'s registered tolerance (a file may tighten it, never loosen it)`);
    const onReference = await checkGolden(file, [c], referenceBackend);
    expect([onReference.comparisons[0]!.tolerance, onReference.toleranceSource]).toEqual([EXACT, "exact equality: the reference reproduces its own files bit for bit"]);
    expect((await checkGolden(file, [c], referenceBackend, { exact: false })).comparisons[0]!.tolerance).toEqual({ rtol: 1e-3, atol: 1e-7, nmse: 1e-8, exact: true });
    expect((await checkGolden(file, [c], wasmLike, { exact: true })).comparisons[0]!.tolerance).toEqual(EXACT);

    expect(stricter({ rtol: 1, atol: 2, nmse: 3 }, undefined)).toEqual({ rtol: 1, atol: 2, nmse: 3 });
    expect(stricter({ rtol: 1, atol: 2, nmse: 3, exact: true }, { rtol: 2, atol: 1, nmse: 4 })).toEqual({ rtol: 1, atol: 1, nmse: 3, exact: true });
    expect(stricter({ rtol: 1, atol: 2, nmse: 3 }, { rtol: 2, atol: 1, nmse: 0 })).toStrictEqual({ rtol: 1, atol: 1, nmse: 0 });
  });

  it("a file whose case has another seed, or another component, fails naming why", async () => {
    const file = await fileOf(scaleCase());
    expect((await checkGolden({ ...file, seed: 4 }, [scaleCase()], referenceBackend)).message)
      .toBe('case "test.scale.2" has changed its config or seed since the file was written: regenerate it with `tinyseek golden write DIR`');
    const long = "c".repeat(100);
    expect((await checkGolden({ ...file, component: long }, [scaleCase()], referenceBackend)).message)
      .toBe(`component "${"c".repeat(80)}"… is not case "test.scale.2"'s "test.scale"`);
    expect((await checkGolden({ ...file, name: "gone" }, [scaleCase()], referenceBackend, {}, "g.safetensors")))
      .toEqual({ file: "g.safetensors", outcome: "fail", comparisons: [], message: `no case named "gone" in this tinyseek's suite (see \`tinyseek golden list\`)` });
  });

  it("checkSupport runs the case against the reference's outputs in memory", async () => {
    expect((await checkSupport(softmaxCase, referenceBackend)).outcome).toBe("ok");
    const planted = await checkSupport(softmaxCase, plantedBackend("softmax", (d) => void (d[0] = d[0]! + 0.5)));
    expect(planted.outcome).toBe("fail");
    expect(planted.message).toMatch(/^output\.y: 1 of 21 elements mismatch/);
  });
});

describe("golden files on disk", () => {
  it("are written into directories made as needed, named after their case, and read back", async () => {
    const dir = join(root, "w", "a", "b");
    const { path, bytes } = await writeGoldenCase(`${dir}//`, scaleCase());
    expect(path).toBe(join(dir, "test.scale.2.safetensors"));
    const stored = readFileSync(path);
    expect(bytes).toBe(stored.length);
    expect(decodeGolden(stored).outputs.y!.data).toEqual(Float32Array.of(3, -6));
    expect((await writeGoldenCase(dir, scaleCase({ name: "again" }))).path).toBe(join(dir, "again.safetensors"));
  });

  it("a file where a directory should be is the system's error, naming the path", async () => {
    const file = join(root, "plain");
    writeFileSync(file, "");
    await expect(writeGoldenCase(join(file, "sub"), scaleCase())).rejects.toMatchObject({ code: "ENOTDIR", path: join(file, "sub") });
    await expect(writeGoldenCase(file, scaleCase())).rejects.toMatchObject({ code: "EEXIST", path: file });
  });

  it("are listed from a directory, sorted, .safetensors only; a file is itself; nothing there is an error", async () => {
    const dir = join(root, "list");
    mkdirSync(dir);
    // Sorted as JavaScript sorts strings (UTF-16 units): Node lists a directory in UTF-8 byte order on Unix, which
    // puts U+E000 before U+1F600; UTF-16 puts the emoji's surrogates (0xD83D) first.
    const names = ["c", "k", "a", "\u{1F600}", "m", "\uE000", "b"].map((n) => `${n}.safetensors`);
    for (const f of [...names, "notes.txt"]) writeFileSync(join(dir, f), "");
    expect(await goldenFilesIn(`${dir}//`)).toEqual([...names].sort().map((f) => join(dir, f)));
    expect(await goldenFilesIn(join(dir, "notes.txt"))).toEqual([join(dir, "notes.txt")]);
    const empty = join(root, "empty");
    mkdirSync(empty);
    await expect(goldenFilesIn(empty)).rejects.toThrow(new TinyseekError(`${empty}: no .safetensors files (write some with tinyseek golden write ${empty})`));
    await expect(goldenFilesIn(join(root, "none"))).rejects.toThrow(new TinyseekError(`${join(root, "none")}: no such file or directory`));
  });

  it("a file that cannot be read or decoded is a failed result naming it", async () => {
    const missing = join(root, "missing.safetensors");
    expect(await checkGoldenFile(missing, [scaleCase()], referenceBackend)).toEqual({ file: missing, outcome: "fail", comparisons: [], message: `${missing}: no such file` });
    const plain = join(root, "plain.safetensors");
    writeFileSync(plain, writeSafetensors({ "input.x": { dtype: "F32", shape: [1], data: [1] } }));
    expect((await checkGoldenFile(plain, [scaleCase()], referenceBackend)).message).toBe(`${plain}: no "format" in its metadata: not a tinyseek golden file`);
    const good = join(root, "good.safetensors");
    writeFileSync(good, encodeGolden(await runGoldenCase(scaleCase())));
    expect(await checkGoldenFile(good, [scaleCase()], wasmLike)).toMatchObject({ file: good, outcome: "ok", message: "" });
  });
});

describe("golden compare: which outputs, under which bar", () => {
  /** The softmax fixture's file and a second file holding the given outputs (all three by default). */
  const setup = async () => {
    const file = decodeGolden(encodeGolden(await runGoldenCase(softmaxCase)));
    const { tensors } = parts(file);
    const theirs = (names = ["y", "argmax", "above"], extra: Record<string, TensorToWrite> = {}) =>
      readSafetensors(writeSafetensors({ ...Object.fromEntries(names.map((n) => [`output.${n}`, tensors[`output.${n}`]!])), ...extra }));
    return { file, theirs };
  };

  it("--outputs compares the chosen ones and reports the others skipped; names the case lacks are refused", async () => {
    const { file, theirs } = await setup();
    const chosen = await compareGolden(file, theirs(["y"]), { outputs: ["y"] });
    expect([chosen.outcome, chosen.comparisons.map((c) => c.name), chosen.skipped]).toEqual(["ok", ["output.y"], ["output.argmax", "output.above"]]);
    expect(chosen.toleranceSource).toBe("the golden file's own metadata");
    expect((await compareGolden(file, theirs())).skipped).toBeUndefined();
    // Names come in the file's order: tensors are stored by element size (argmax and y 4 bytes, above 1), then by name.
    expect((await compareGolden(file, theirs(), { outputs: ["y", "zz", "w"] })).message).toBe('--outputs: expected names from argmax, y, above, got "zz", "w"');
  });

  it("outputs the second file lacks are named, with a hint unless --outputs was given", async () => {
    const { file, theirs } = await setup();
    expect((await compareGolden(file, theirs(["y"]))).message).toBe("the second file has no output.argmax, output.above (compare some outputs only with --outputs y)");
    expect((await compareGolden(file, theirs(["y", "argmax"]))).message).toBe("the second file has no output.above (compare some outputs only with --outputs argmax,y)");
    expect((await compareGolden(file, theirs([]))).message).toBe("the second file has no output.argmax, output.y, output.above (compare some outputs only with --outputs NAME)");
    expect((await compareGolden(file, theirs(["y"]), { outputs: ["y", "above"] })).message).toBe("the second file has no output.above");
  });

  it("an output the golden file has no reference for is refused; the second file's other tensors are ignored", async () => {
    const { file, theirs } = await setup();
    const one = { dtype: "F32", shape: [1], data: [0] } as const;
    expect((await compareGolden(file, theirs(undefined, { "output.zz": one, "output.ww": one }))).message).toBe("the second file has output.ww, output.zz, which the golden file has no reference for (its outputs: argmax, y, above)");
    expect((await compareGolden(file, theirs(undefined, { "param.w": one, "note.x": one }))).outcome).toBe("ok");
  });

  it("with the suite: an output the case does not define is refused; --exact demands identical outputs", async () => {
    const { file, theirs } = await setup();
    const suite = [softmaxCase];
    const y = file.outputs.y!;
    const foreign = { ...file, outputs: { ...file.outputs, zz: y, ww: y }, tolerance: { ...file.tolerance, zz: DEFAULT_TOLERANCE, ww: DEFAULT_TOLERANCE } };
    expect((await compareGolden(foreign, theirs(), { suite })).message).toBe('the golden file has output.zz, output.ww, which case "test.softmax.3x7" does not define');
    const moved = theirs();
    const moving = moved.tensors.get("output.y")!.data as Float32Array;
    moving[0] = moving[0]! * (1 + 2 ** -23);
    expect((await compareGolden(file, moved, { suite })).outcome).toBe("ok");
    const exact = await compareGolden(file, moved, { suite, exact: true });
    expect([exact.outcome, exact.toleranceSource, exact.comparisons[0]!.tolerance]).toEqual(["fail", "exact equality (--exact)", EXACT]);
    const sameCase = readSafetensors(writeSafetensors(Object.fromEntries([...moved.tensors].map(([n, t]) => [n, { dtype: t.dtype, shape: t.shape, data: t.data as Float32Array }])), { case: "test.softmax.3x7" }));
    expect((await compareGolden(file, sameCase, { suite })).outcome).toBe("ok");
  });

  it("repeated inputs must match bit for bit; inputs the second file leaves out are not needed", async () => {
    const { file, theirs } = await setup();
    const x = file.inputs.x!;
    const withInput = (data: Float32Array) => theirs(undefined, { "input.x": { dtype: "F32", shape: x.shape, data } });
    expect((await compareGolden(file, withInput(x.data as Float32Array))).outcome).toBe("ok");
    const changed = (x.data as Float32Array).slice();
    changed[20] = -changed[20]!;
    const result = await compareGolden(file, withInput(changed));
    expect(result.message).toMatch(/^input\.x differs between the two files, so their outputs are not comparable:\ninput\.x: 1 of 21 elements mismatch/);
  });

  it("a params-consuming case runs on the golden file's own inputs and params to learn its outputs", async () => {
    const c = scaleCase();
    const file = decodeGolden(encodeGolden(await runGoldenCase(c)));
    const theirs = readSafetensors(writeSafetensors({ "output.y": { dtype: "F32", shape: [2], data: [3, -6] } }));
    const result = await compareGolden(file, theirs, { suite: [c] });
    expect([result.outcome, result.comparisons.map((r) => r.name)]).toEqual(["ok", ["output.y"]]);
    expect((await compareGolden({ ...file, seed: 4 }, theirs, { suite: [c] })))
      .toEqual({ file: "test.scale.2", outcome: "fail", comparisons: [], message: 'case "test.scale.2" has changed its config or seed since the file was written: regenerate it with `tinyseek golden write DIR`' });
    const throwing = (thrown: unknown) => compareGolden(file, theirs, { suite: [scaleCase({ run: () => { throw thrown; } })] }).then((r) => r.message);
    const cannot = 'case "test.scale.2" cannot run on the golden file\'s inputs and params: ';
    expect(await throwing(new TinyseekError("x: expected 3 rows, got 2"))).toBe(`${cannot}x: expected 3 rows, got 2`);
    expect(await throwing(undefined)).toBe(`${cannot}undefined`);
  });
});

describe("checkpoints: each refusal whole, and what an opened one offers", () => {
  const small = { num_hidden_layers: 2, num_nextn_predict_layers: 0 };
  let made = 0;
  /** A fresh checkpoint directory (2 shards, 2 layers, no MTP unless told), then spoiled by `spoil`. */
  const written = async (options: TestCheckpointOptions = {}, spoil?: (dir: string, c: TestCheckpoint) => void) => {
    const c = await writeTestCheckpoint(join(root, `ckpt-${made++}`), { ...options, config: { ...small, ...options.config } });
    spoil?.(c.dir, c);
    return c;
  };
  const refusal = (path: string, options?: CheckpointOptions) => loadCheckpoint(path, options).then(() => "loaded", (e: Error) => {
    expect(e).toBeInstanceOf(TinyseekError);
    expect(e.message).not.toContain("\n");
    return e.message;
  });
  const indexOf = (dir: string) => join(dir, "model.safetensors.index.json");
  const editIndex = (dir: string, edit: (json: { weight_map?: unknown }) => void) => {
    const json = JSON.parse(readFileSync(indexOf(dir), "utf8"));
    edit(json);
    writeFileSync(indexOf(dir), JSON.stringify(json));
  };
  const q = "model.layers.1.self_attn.q_b_proj.weight";

  it("a path that is not a checkpoint", async () => {
    expect(await refusal("")).toBe('checkpoint: expected a directory or a safetensors file, got ""');
    expect(await refusal(join(root, "none"))).toBe(`${join(root, "none")}: no such file or directory`);
    const file = join(root, "a-file");
    writeFileSync(file, "");
    expect(await refusal(join(file, "x"))).toBe(`${join(file, "x")}: a part of the path is not a directory`); // the path once, the reason in words
  });

  it("an index without a weight_map, naming no tensors, or naming shards that are not file names beside it", async () => {
    const c = await written();
    const index = indexOf(c.dir);
    const withMap = async (map: unknown) => {
      editIndex(c.dir, (json) => (json.weight_map = map));
      return refusal(c.dir);
    };
    for (const map of [undefined, null, [], "x"]) expect(await withMap(map), String(map)).toBe(`${index}: expected { "weight_map": { tensor: shard file } }`);
    expect(await withMap({})).toBe(`${index}: weight_map names no tensors`);
    for (const shard of ["", ".", "..", 5, "sub/x"]) {
      expect(await withMap({ ...c.weightMap, "model.norm.weight": shard }), String(shard))
        .toBe(`${index}: tensor "model.norm.weight": expected a shard file name beside the index, got ${JSON.stringify(shard)}`);
    }
    const { "model.norm.weight": normShard, ...rest } = c.weightMap;
    expect(await withMap(rest)).toBe(`${join(c.dir, normShard!)}: tensor "model.norm.weight" is not in model.safetensors.index.json's weight_map`);
    expect(await withMap({ ...c.weightMap, "model.nothing": c.shards[0] }))
      .toBe(`${index}: tensor "model.nothing" is mapped to ${c.shards[0]}, which has no such tensor`);
    writeFileSync(index, `{"weight_map": \u0001${"x".repeat(300)}}`);
    const broken = await refusal(c.dir);
    expect(broken.startsWith(`${index}: not valid JSON (`)).toBe(true);
    expect(broken).not.toMatch(/[\x00-\x1f]/);
    expect(broken.length).toBeLessThanOrEqual(`${index}: not valid JSON ()`.length + 120);
  });

  it("a tensor in two shards", async () => {
    const c = await written({}, (dir, c) => {
      const [first, second] = c.shards.map((s) => join(dir, s));
      const name = Object.keys(c.weightMap).find((n) => c.weightMap[n] === c.shards[0])!;
      const copy = readSafetensors(readFileSync(first!), { raw: true }).tensors.get(name)!;
      const { tensors, metadata } = readSafetensors(readFileSync(second!), { raw: true });
      const all = new Map([...tensors].map(([n, t]) => [n, { dtype: t.dtype, shape: t.shape, raw: t.data as Uint8Array }]));
      all.set(name, { dtype: copy.dtype, shape: copy.shape, raw: copy.data as Uint8Array });
      writeFileSync(second!, writeSafetensors(all, metadata));
    });
    const name = Object.keys(c.weightMap).find((n) => c.weightMap[n] === c.shards[0])!;
    expect(await refusal(c.dir)).toBe(`${join(c.dir, c.shards[1]!)}: tensor "${name}" is also in ${join(c.dir, c.shards[0]!)}: a tensor must be in one shard`);
  });

  it("config.json that configFromHf refuses or that is not JSON, and a single file without a config", async () => {
    const c = await written();
    const json = join(c.dir, "config.json");
    writeFileSync(json, JSON.stringify({ ...c.json, quantization_config: { quant_method: "awq" } }));
    expect(await refusal(c.dir)).toBe(`${json}: quantization_config: expected { "quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [B, B] } (DeepSeek's FP8), got quant_method "awq"`);
    expect((await loadCheckpoint(c.dir, { config: c.config })).config).toEqual(c.config); // --config: config.json is not read
    writeFileSync(json, "{");
    expect(await refusal(c.dir)).toMatch(new RegExp(`^${json}: not valid JSON \\(.+\\)$`));

    const single = join(c.dir, c.shards[0]!);
    expect(await refusal(single)).toBe(`${single}: the file has no "config" metadata; pass --config, or give the directory with its config.json`);
    const file = join(root, "bad-config.safetensors");
    writeFileSync(file, writeSafetensors({ x: { dtype: "F32", shape: [1], data: [1] } }, { config: "{" }));
    expect(await refusal(file)).toMatch(new RegExp(`^${file}: the file's "config" metadata is not valid JSON \\(.+\\)$`));
  });

  it("tensors that do not fit the config: scales without an FP8 weight, a vector in FP8, an integer dtype, strangers", async () => {
    const scales = { dtype: "F32", shape: [1, 1], data: [1] } as const;
    const c = await written({
      edit: (t) => {
        t.set("model.norm.weight_scale_inv", scales);
        t.set("model.nothing.weight_scale_inv", scales);
        t.set("model.layers.0.input_layernorm.weight", { dtype: "F8_E4M3", shape: [256], raw: new Uint8Array(256) });
        t.set("model.layers.1.input_layernorm.weight", { dtype: "I32", shape: [256], data: new Int32Array(256) });
        t.set("model.extra.weight", { dtype: "F32", shape: [1], data: [1] });
        t.set("model.layers.2.extra.weight", { dtype: "F32", shape: [1], data: [1] });
      },
    });
    const message = await refusal(c.dir);
    expect(message).toMatch(new RegExp(`^${c.dir}: the checkpoint does not fit its config \\(6 problems\\): `));
    const at = (name: string) => `${join(c.dir, c.weightMap[name]!)}: tensor "${name}"`;
    for (const problem of [
      `${at("model.norm.weight_scale_inv")}: block scales of a BF16 weight (scales go with an F8_E4M3 weight)`,
      `${at("model.nothing.weight_scale_inv")}: block scales of no weight (scales go with an F8_E4M3 weight)`,
      `${at("model.layers.0.input_layernorm.weight")}: F8_E4M3 of shape [256], expected a matrix [out, in]`,
      `${at("model.layers.1.input_layernorm.weight")}: dtype I32, expected a float dtype (F32, BF16, F16, F64) or F8_E4M3 with _scale_inv`,
      `${at("model.extra.weight")}: unexpected (not a weight of this config)`,
      `${at("model.layers.2.extra.weight")}: unexpected (not a weight of this config, whose layers are 0…1 plus 0 MTP)`,
    ]) expect(message).toContain(problem);
  });

  it("at most 8 problems are listed, then how many more", async () => {
    // The 9 norms of a 2-layer model (4 per layer and the final one), deleted 8 or 9 at a time.
    const without = (count: number) => written({ edit: (t) => [...t.keys()].filter((n) => /norm\.weight$/.test(n)).slice(0, count).forEach((n) => t.delete(n)) });
    const [eight, nine] = [await without(8), await without(9)];
    const listed = /^missing tensor "[^"]+" \[\d+\]$/;
    const eightMessage = await refusal(eight.dir);
    const [head8, list8] = eightMessage.split(" (8 problems): ");
    expect(head8).toBe(`${eight.dir}: the checkpoint does not fit its config`);
    expect(list8!.split("; ").every((p) => listed.test(p))).toBe(true);
    expect(list8!.split("; ")).toHaveLength(8);
    const [, list9] = (await refusal(nine.dir)).split(" (9 problems): ");
    const items = list9!.split("; ");
    expect(items).toHaveLength(9);
    expect(items.slice(0, 8).every((p) => listed.test(p))).toBe(true);
    expect(items[8]).toBe("… and 1 more");
  });

  it("FP8 found without a quantization_config is e4m3 in blocks of 128; a stated block size is the one checked", async () => {
    const unstated = await written({ config: { quantization_config: undefined } });
    expect((await loadCheckpoint(unstated.dir)).quantization).toEqual({ fmt: "e4m3", block: 128 });
    const c = await written({ config: { quantization_config: { quant_method: "fp8", fmt: "e4m3", weight_block_size: [64, 64] } } });
    expect(await refusal(c.dir)).toMatch(/: tensor "model\.layers\.0\.[a-z_.]+": expected model\.layers\.0\.[a-z_.]+_scale_inv as F32 \[\d, \d\] \(one per 64×64 block\), got F32 \[\d, \d\]/);
  });

  it("an opened checkpoint: its files, size, metadata, budget, tensors by name and FP8 weights as stored", async () => {
    const c = await written({ config: { dtype: "bfloat16" } });
    const ck = await loadCheckpoint(c.dir);
    expect(ck.files).toEqual(c.shards.map((s) => join(c.dir, s)));
    expect(ck.bytes).toBe(c.shards.reduce((sum, s) => sum + statSync(join(c.dir, s)).size, 0));
    expect({ ...ck.metadata }).toEqual({ format: "pt" });
    expect([ck.path, ck.ignoredFields, ck.mtpNames]).toEqual([c.dir, ["dtype"], []]);
    expect(ck.residency.budget).toBe(Math.floor(totalmem() / 2));
    expect([ck.has("model.norm.weight"), ck.has("model.none")]).toEqual([true, false]);
    expect(thrown(() => ck.tensor("model.none"))).toBe(`${c.dir}: no tensor "model.none" in the checkpoint`);
    expect(ck.tensor("model.norm.weight")).toEqual({ shape: [256], data: c.expected.get("model.norm.weight") });
    expect([ck.fp8Weight("model.norm.weight"), ck.fp8Weight("model.none")]).toEqual([null, null]);
    const w = ck.fp8Weight(q)!;
    expect([w.scheme, w.shape, w.block, w.bits.length, w.scales.length]).toEqual(["fp8", [192, 192], 128, 192 * 192, 4]);
    expect(dequantizeFp8Codes(q, w.bits, w.shape, w.scales)).toEqual(c.expected.get(q));
  });

  it("a tied head is the embedding; an F64 norm is read as float32", async () => {
    const c = await written({
      config: { tie_word_embeddings: true },
      edit: (t) => {
        t.delete("lm_head.weight");
        t.set("model.norm.weight", { dtype: "F64", shape: [256], data: Float64Array.from({ length: 256 }, (_, i) => 1 + i / 4) });
      },
    });
    const ck = await loadCheckpoint(c.dir);
    expect(ck.model.weights.lm_head).toBe(ck.model.weights.embed_tokens);
    expect(ck.model.weights.norm.data).toEqual(Float32Array.from({ length: 256 }, (_, i) => 1 + i / 4));
  });

  it("a shard that changes after opening: cut short, replaced by a directory, or gone", async () => {
    const c = await written();
    const ck = await loadCheckpoint(c.dir);
    const name = "model.norm.weight";
    const shard = join(c.dir, c.weightMap[name]!);
    const { dataStart, entries } = readSafetensorsHeader(readFileSync(shard));
    truncateSync(shard, dataStart + entries.get(name)!.offsets[0] + 2); // the tensor's first 2 bytes are there, then the end
    expect(thrown(() => ck.tensor(name))).toBe(`${shard}: ended while tensor "${name}" was read (the file changed since it was opened)`);
    rmSync(shard);
    expect(thrown(() => ck.tensor(name))).toBe(`${shard}: cannot read tensor "${name}": ENOENT: no such file or directory, open '${shard}'`);
    mkdirSync(shard);
    expect(thrown(() => ck.tensor(name))).toBe(`${shard}: cannot read tensor "${name}": no longer a regular file`);
  });

  it("a NaN code in a routed expert, when its layer is read", async () => {
    const expert = "model.layers.1.mlp.experts.2.up_proj.weight";
    const c = await written({
      edit: (t) => {
        const raw = t.get(expert)!.raw!.slice();
        raw[300] = 0xff;
        t.set(expert, { ...t.get(expert)!, raw });
      },
    });
    const ck = await loadCheckpoint(c.dir);
    expect(thrown(() => ck.model.weights.layers[1])).toBe(`${join(c.dir, c.weightMap[expert]!)}: fp8 weight "${expert}": element 300 ([1, 44]) is the NaN code 0xff`);
  });
});
