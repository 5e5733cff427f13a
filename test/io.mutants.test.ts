// Cases that kill mutants of src/io/ that the other suites let live (test/README.md, mutation testing): per-tensor
// statistics worked by hand, the forward order a diff follows, what two files do not share, and a file read at the
// edges of its size limit.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { comparable, diffTensors, forwardOrder } from "../src/io/diff.ts";
import { readBytes } from "../src/io/files.ts";
import type { SafeTensor, Safetensors } from "../src/io/safetensors.ts";
import { tensorStats } from "../src/io/stats.ts";
import { thrown } from "./helpers.ts";

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
