// Cases that kill mutants of src/io/ that the other suites let live (test/README.md, mutation testing): per-tensor
// statistics worked by hand, the forward order a diff follows, what two files do not share, a file read at the
// edges of its size limit, compareTensors' report, files that are not read, and FP8 weights dequantised by hand.
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { compareTensors, type ComparedTensor } from "../src/io/compare.ts";
import { comparable, diffTensors, forwardOrder } from "../src/io/diff.ts";
import { FileError, readBytes, withRegularFile } from "../src/io/files.ts";
import { dequantizeFp8Codes, fp8ScalesProblem, fp8WeightTensors, readFp8Weight, SCALE_SUFFIX } from "../src/io/fp8-weights.ts";
import { readSafetensorsHeader, writeSafetensors, type HeaderEntry, type SafeTensor, type Safetensors, type TensorToWrite } from "../src/io/safetensors.ts";
import { tensorStats } from "../src/io/stats.ts";
import { safetensorsErrorOf, thrown } from "./helpers.ts";

describe("tensorStats by hand", () => {
  it("min, max and mean over the finite values; NaN and ±Infinity counted apart", () => {
    expect(tensorStats(Float32Array.of(1, -2, NaN, Infinity, 4, -Infinity, 0.5))).toEqual({ elements: 7, min: -2, max: 4, mean: 0.875, nan: 1, inf: 2 });
    expect(tensorStats(Float64Array.of(5))).toEqual({ elements: 1, min: 5, max: 5, mean: 5, nan: 0, inf: 0 });
  });

  it("bigints are converted; no finite value gives NaN statistics, and no value at all as well", () => {
    expect(tensorStats(BigInt64Array.of(3n, -1n, 4n))).toEqual({ elements: 3, min: -1, max: 4, mean: 2, nan: 0, inf: 0 });
    expect(tensorStats(Float32Array.of(NaN, Infinity))).toEqual({ elements: 2, min: NaN, max: NaN, mean: NaN, nan: 1, inf: 1 });
    expect(tensorStats(new Float32Array(0))).toEqual({ elements: 0, min: NaN, max: NaN, mean: NaN, nan: 0, inf: 0 });
  });
});

const f32 = (...values: number[]): SafeTensor => ({ dtype: "F32", shape: [values.length], data: Float32Array.from(values) });
const file = (tensors: Record<string, SafeTensor>, metadata: Record<string, string> = {}): Safetensors => ({ tensors: new Map(Object.entries(tensors)), metadata });

describe("diff: forward order and what the files share", () => {
  const t = { c: f32(3), a: f32(1), b: f32(2) };

  it("follows the file's `order` (names it lacks skipped), then its other tensors in header order", () => {
    expect(forwardOrder(file(t, { order: JSON.stringify(["b", "gone", "c"]) }))).toEqual(["b", "c", "a"]);
  });

  it("falls back to the header's order when `order` is absent, not JSON, or not a list of names", () => {
    const metadatas: Record<string, string>[] = [{}, { order: "b,c" }, { order: '["b", 1]' }, { order: '{"b": 1}' }];
    for (const metadata of metadatas) expect(forwardOrder(file(t, metadata))).toEqual(["c", "a", "b"]);
  });

  it("compares the shared tensors in forward order, names the first departure and what each file alone holds", () => {
    const a = file({ x: f32(1, 2), y: f32(5), onlyA: f32(0) }, { order: JSON.stringify(["y", "x"]) });
    const b = file({ onlyB: f32(0), x: f32(1, 2.5), y: f32(5) });
    const d = diffTensors(a, b, { rtol: 0, atol: 1e-6, nmse: 0 });
    expect(d.tensors.map((s) => [s.name, s.comparison.pass])).toEqual([["y", true], ["x", false]]);
    expect(d.firstDeparture?.name).toBe("x");
    expect([d.onlyInA, d.onlyInB]).toEqual([["onlyA"], ["onlyB"]]);
    expect(d.tensors[1]!.b).toEqual({ elements: 2, min: 1, max: 2.5, mean: 1.75, nan: 0, inf: 0 });
  });

  it("compares integers of any width as int32, and refuses values outside its range", () => {
    expect(comparable({ dtype: "I64", shape: [2], data: BigInt64Array.of(-(2n ** 31n) + 1n, 2n ** 31n - 1n) }).data).toEqual(Int32Array.of(-(2 ** 31) + 1, 2 ** 31 - 1));
    expect(thrown(() => comparable({ dtype: "I64", shape: [2], data: BigInt64Array.of(1n, 2n ** 31n) }))).toBe("a I64 tensor holds values outside the int32 range: cannot compare it");
  });
});

describe("a file read whole", () => {
  const dir = mkdtempSync(join(tmpdir(), "tinyseek-io-"));
  const path = join(dir, "three");
  writeFileSync(path, Uint8Array.of(1, 2, 3));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is read at exactly the limit and refused one byte past it", async () => {
    expect([...(await readBytes(path, 3))]).toEqual([1, 2, 3]);
    await expect(readBytes(path, 2)).rejects.toThrow(`${path}: 3 bytes, more than the limit of 2 bytes for a file read whole`);
  });

  it("names a missing file and a path through a file", async () => {
    await expect(readBytes(join(dir, "none"))).rejects.toThrow(`${join(dir, "none")}: no such file`);
    await expect(readBytes(join(path, "x"))).rejects.toThrow(`${join(path, "x")}: a part of the path is not a directory`);
  });
});

// compareTensors' failure report (spec/golden.md), each number worked by hand from the values below.
describe("compareTensors' report, worked by hand", () => {
  const f64 = (shape: number[], ...values: number[]): ComparedTensor => ({ shape, data: Float64Array.from(values) });
  const tol = { rtol: 0, atol: 0.1, nmse: 1 };

  it("counts the mismatches, names the worst errors (the first of equals), the NMSE and the first mismatches", () => {
    // |out - ref|: 2, 1, 2, 0.5, 0, 0.05; relative: 1/3, 1/2, 1/2, (none at ref 0), 0, 0.05.
    // NMSE = (4 + 1 + 4 + 0.25 + 0.0025) / (36 + 4 + 16 + 1 + 1) = 9.2525 / 58.
    const c = compareTensors("o", f64([2, 3], 6, 2, 4, 0, 1, 1), f64([2, 3], 4, 3, 2, 0.5, 1, 1.05), tol);
    expect([c.pass, c.elements, c.mismatches, c.maxAbsError, c.maxRelError]).toEqual([false, 6, 4, 2, 0.5]);
    expect(c.nmse).toBeCloseTo(9.2525 / 58, 12);
    expect(c.message).toBe([
      "o: 4 of 6 elements mismatch (66.7%) under |out - ref| <= 0.1 + 0·|ref|",
      "  worst absolute error 2.00e+0 at [0, 0] (out 4 ref 6)",
      "  worst relative error 5.00e-1 at [0, 1] (out 3 ref 2)",
      "  normalised error 3.99e-1 (NMSE 1.60e-1, allowed 1.00e+0)",
      "  first mismatches: [0, 0] out 4 ref 6; [0, 1] out 3 ref 2; [0, 2] out 2 ref 4; [1, 0] out 0.500000 ref 0",
    ].join("\n"));
  });

  it("prints integers below 1e9 as they are, anything else to 6 significant digits", () => {
    const c = compareTensors("o", f64([3], 1e9, 999_999_999, 2.5), f64([3], 0, 0, 7), tol);
    expect(c.message.split("\n").at(-1)).toBe("  first mismatches: [0] out 0 ref 1.00000e+9; [1] out 0 ref 999999999; [2] out 7 ref 2.50000");
  });

  it("NaN outputs: counted and listed apart, five at most, and left out of the worst errors and the NMSE", () => {
    const c = compareTensors("o", f64([7], 1, 2, 3, 4, 5, 6, 7), f64([7], NaN, NaN, NaN, NaN, NaN, NaN, NaN), tol);
    expect([c.pass, c.mismatches, c.maxAbsError, c.maxRelError, c.nmse]).toEqual([false, 7, 0, 0, 0]);
    const five = "[0] out NaN ref 1; [1] out NaN ref 2; [2] out NaN ref 3; [3] out NaN ref 4; [4] out NaN ref 5";
    expect(c.message).toBe([
      "o: 7 of 7 elements mismatch (100%) under |out - ref| <= 0.1 + 0·|ref|",
      "  normalised error 0 (NMSE 0, allowed 1.00e+0)",
      `  first mismatches: ${five}`,
      `  NaN/Inf in output: 7 element(s), first at ${five}`,
    ].join("\n"));
  });

  it("an all-zero reference: NMSE 0 against zeros (a pass, with no message), Infinity against anything else", () => {
    const zero = compareTensors("o", f64([2], 0, 0), f64([2], 0, 0), tol);
    expect([zero.pass, zero.nmse, zero.message]).toEqual([true, 0, ""]);
    const off = compareTensors("o", f64([2], 0, 0), f64([2], 0.05, 0), tol);
    expect([off.pass, off.mismatches, off.nmse, off.maxRelError]).toEqual([false, 0, Infinity, 0]);
    expect(off.message).toBe([
      "o: 0 of 2 elements mismatch (0.00%) under |out - ref| <= 0.1 + 0·|ref|",
      "  worst absolute error 5.00e-2 at [0] (out 0.0500000 ref 0)",
      "  normalised error Infinity (NMSE Infinity, allowed 1.00e+0: too large)",
    ].join("\n"));
  });

  it("integers compare exactly, with no NMSE line", () => {
    const c = compareTensors("o", { shape: [3], data: Int32Array.of(1, 2, 3) }, { shape: [3], data: Int32Array.of(1, 5, 3) }, tol);
    expect(c.message).toBe([
      "o: 1 of 3 elements mismatch (33.3%) under exact equality",
      "  worst absolute error 3.00e+0 at [1] (out 5 ref 2)",
      "  worst relative error 1.50e+0 at [1] (out 5 ref 2)",
      "  first mismatches: [1] out 5 ref 2",
    ].join("\n"));
  });

  it("refuses, before comparing any value, other dimensions, a length that does not fit the shape, or another kind", () => {
    const refused = (ref: ComparedTensor, out: ComparedTensor) => {
      const c = compareTensors("o", ref, out, tol);
      expect([c.pass, c.mismatches, c.maxAbsError, c.nmse]).toEqual([false, ref.data.length, NaN, NaN]);
      return c.message;
    };
    expect(refused(f64([1, 6, 1], 1, 2, 3, 4, 5, 6), f64([1, 3, 2], 1, 2, 3, 4, 5, 6))).toBe("o: shape [1, 3, 2] differs from the reference's [1, 6, 1]");
    expect(refused(f64([2, 2], 1, 2, 3, 4), f64([2, 2, 1], 1, 2, 3, 4))).toBe("o: shape [2, 2, 1] differs from the reference's [2, 2]");
    expect(refused(f64([2], 1, 2), f64([2], 1, 2, 3))).toBe("o: 3 values, the reference has 2");
    expect(refused({ shape: [2], data: Int32Array.of(1, 2) }, f64([2], 1, 2))).toBe("o: float output where the reference is integer");
  });
});

describe("files that are not read, each named with what it is", () => {
  const dir = mkdtempSync(join(tmpdir(), "tinyseek-files-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  /** readBytes' refusal: a FileError naming the path. */
  const refusal = (path: string) => readBytes(path).then(() => "read", (e: FileError) => {
    expect(e).toBeInstanceOf(FileError);
    expect([e.name, e.path]).toEqual(["FileError", path]);
    return e.message;
  });

  it("a socket", async () => {
    const socket = join(dir, "socket");
    const server = createServer().listen(socket);
    await new Promise((resolve) => server.once("listening", resolve));
    try {
      expect(await refusal(socket)).toBe(`${socket}: a socket, not a regular file`);
    } finally {
      server.close();
    }
  });

  // stat needs no permission on the device itself; a system without block devices has nothing to show here.
  const block = existsSync("/dev") ? readdirSync("/dev").map((n) => join("/dev", n)).find((p) => {
    try {
      return statSync(p).isBlockDevice();
    } catch {
      return false;
    }
  }) : undefined;
  it.skipIf(!block)("a block device", async () => {
    expect(await refusal(block!)).toBe(`${block}: a block device, not a regular file`);
  });

  it("a loop of symbolic links, and a name longer than the system allows (its own words, without the path twice)", async () => {
    symlinkSync("b", join(dir, "a"));
    symlinkSync("a", join(dir, "b"));
    expect(await refusal(join(dir, "a"))).toBe(`${join(dir, "a")}: too many symbolic links`);
    const long = join(dir, "n".repeat(300));
    expect(await refusal(long)).toBe(`${long}: ENAMETOOLONG: name too long`);
  });

  // A file without read permission (root reads those anyway), or a write-only sysfs file, which root cannot read either.
  const unreadable = (() => {
    const secret = join(dir, "secret");
    writeFileSync(secret, "x");
    chmodSync(secret, 0);
    for (const path of [secret, "/sys/bus/pci/rescan"]) {
      try {
        closeSync(openSync(path, "r"));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EACCES") return path;
      }
    }
    return undefined;
  })();
  it.skipIf(!unreadable)("a file the system does not let us read", async () => {
    expect(await refusal(unreadable!)).toBe(`${unreadable}: permission denied`);
  });
});

describe("positioned reads of an open file", () => {
  const dir = mkdtempSync(join(tmpdir(), "tinyseek-reads-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const ten = join(dir, "ten");
  writeFileSync(ten, Uint8Array.from({ length: 10 }, (_, i) => i));

  it("read the bytes asked for, and refuse a range outside the file with its numbers", async () => {
    await withRegularFile(ten, 100, async (f) => {
      expect(f.size).toBe(10);
      expect([...(await f.read(7, new Uint8Array(3)))]).toEqual([7, 8, 9]);
      await expect(f.read(8, new Uint8Array(3))).rejects.toThrow(`${ten}: read of 3 bytes at 8 is outside the file's 10 bytes`);
      await expect(f.read(-1, new Uint8Array(1))).rejects.toThrow(`${ten}: read of 1 bytes at -1 is outside the file's 10 bytes`);
    });
  });

  it("a file that shrinks while open ends the read, saying where and the size it had", async () => {
    const path = join(dir, "shrinks");
    writeFileSync(path, new Uint8Array(10));
    await withRegularFile(path, 100, async (f) => {
      truncateSync(path, 4); // the read below finds 2 of its 6 bytes, then the end
      await expect(f.read(2, new Uint8Array(6))).rejects.toThrow(`${path}: ended at byte 4 while being read (it had 10 bytes when opened)`);
    });
  });

  it.skipIf(!existsSync("/proc/self/fd"))("close the file afterwards, whether its user returns or throws", async () => {
    const open = () => readdirSync("/proc/self/fd").length;
    const before = open();
    for (let i = 0; i < 5; i++) {
      await readBytes(ten);
      await expect(withRegularFile(ten, 100, async () => Promise.reject(new Error("user failed")))).rejects.toThrow("user failed");
    }
    expect(open()).toBe(before);
  });
});

// DeepSeek's FP8 layout (src/io/fp8-weights.ts). e4m3 codes used here: 0x38 = 1, 0x40 = 2, 0x3c = 1.5, 0xb8 = -1,
// 0x30 = 0.5, 0x7e = 448 (the largest), 0x01 = 2^-9 (the smallest subnormal); 0x7f and 0xff are NaN.
describe("FP8 weights read and dequantised by hand", () => {
  const bits = Uint8Array.of(0x38, 0x40, 0x3c, 0xb8, 0x30, 0x7e, 0x01, 0x38, 0x40);
  const scales = Float32Array.of(10, 100, 1000, 10000); // blocks of 2 over [3, 3]: rows 0-1 | 2, columns 0-1 | 2

  it("each code times the scale of its block", () => {
    const expected = [10, 20, 150, -10, 5, 44800, 1000 * 2 ** -9, 1000, 20000];
    expect([...dequantizeFp8Codes("w", bits, [3, 3], scales, 2)]).toEqual(expected);
    const into = new Float32Array(9);
    expect(dequantizeFp8Codes("w", bits, [3, 3], scales, 2, into)).toBe(into);
    expect([...into]).toEqual(expected);
    // Blocks of 128 (the default): one scale for the whole 2×3 weight.
    expect([...dequantizeFp8Codes("w", bits.subarray(0, 6), [2, 3], Float32Array.of(4))]).toEqual([4, 8, 6, -4, 2, 1792]);
  });

  it("refuses a NaN code, naming the element; 0x7e (448) is a number", () => {
    const nan = (code: number, at: number) => {
      const b = bits.slice();
      b[at] = code;
      return safetensorsErrorOf(() => dequantizeFp8Codes("w", b, [3, 3], scales, 2)).message;
    };
    expect(nan(0x7f, 7)).toBe('fp8 weight "w": element 7 ([2, 1]) is the NaN code 0x7f');
    expect(nan(0xff, 7)).toBe('fp8 weight "w": element 7 ([2, 1]) is the NaN code 0xff');
    // Row 1's first element, right after row 0's last (partial) block: found as row 1's, not as a column 3 of row 0.
    expect(nan(0x7f, 3)).toBe('fp8 weight "w": element 3 ([1, 0]) is the NaN code 0x7f');
  });

  it("are stored as `name` and `name_scale_inv`, and read back with one line for each thing wrong", () => {
    expect(SCALE_SUFFIX).toBe("_scale_inv");
    const q = { scheme: "fp8" as const, shape: [2, 3] as const, block: 2, bits: bits.slice(0, 6), scales: Float32Array.of(0.5, 4) };
    const stored = fp8WeightTensors("w", q);
    expect(Object.keys(stored)).toEqual(["w", "w_scale_inv"]);
    expect(stored.w_scale_inv!.shape).toEqual([1, 2]);
    const read = (tensors: Record<string, TensorToWrite>, name = "w") => {
      const bytes = writeSafetensors(tensors);
      return readFp8Weight(bytes, readSafetensorsHeader(bytes), name, 2);
    };
    expect(read(stored)).toEqual(q);
    const problem = (tensors: Record<string, TensorToWrite>, name = "w") => safetensorsErrorOf(() => read(tensors, name)).message;
    const scaled = (dtype: "F32" | "F16", shape: number[]) => ({ ...stored, w_scale_inv: { dtype, shape, data: new Array<number>(shape.reduce((a, b) => a * b, 1)).fill(1) } });
    const expected = (got: string) => `fp8 weight "w": expected w_scale_inv as F32 [1, 2] (one per 2×2 block), got ${got}`;
    expect(problem(stored, "v")).toBe('fp8 weight "v": no such tensor');
    expect(problem({ ...stored, w: { ...stored.w!, shape: [6] } })).toBe('fp8 weight "w": expected F8_E4M3 of shape [out, in], got F8_E4M3 [6]');
    expect(problem(scaled("F16", [1, 2]))).toBe(expected("F16 [1, 2]"));
    expect(problem(scaled("F32", [1]))).toBe(expected("F32 [1]"));
    expect(problem(scaled("F32", [1, 3]))).toBe(expected("F32 [1, 3]"));
    const entry = (dtype: HeaderEntry["dtype"], shape: number[]): HeaderEntry => ({ dtype, shape, offsets: [0, 0] });
    expect(fp8ScalesProblem("w", entry("F8_E4M3", [2, 3]), entry("F32", [1, 2]), 2)).toBeNull();
  });
});
