import { describe, expect, it } from "vitest";
import { argError } from "../src/errors.ts";
import { add, concatRows, expectShape, numel, reshape, sliceRows, tensor, zeros } from "../src/tensor.ts";
import { thrown } from "./helpers.ts";

/** Runs f, expects a TinyseekError, and returns its message. */

describe("tensor", () => {
  it("holds a shape and a row-major Float32Array, copied from the input", () => {
    const source = [1, 2, 3, 4, 5, 6];
    const t = tensor([2, 3], source);
    expect(t.shape).toEqual([2, 3]);
    expect(t.data).toBeInstanceOf(Float32Array);
    expect([...t.data]).toEqual(source);
    source[0] = 9;
    expect(t.data[0]).toBe(1);
    expect([...zeros([2, 2]).data]).toEqual([0, 0, 0, 0]);
    expect(tensor([0, 5]).data.length).toBe(0);
    expect(tensor([], [7]).data[0]).toBe(7); // a scalar has one element
  });

  it("rounds once into float32", () => {
    expect(tensor([1], [0.1]).data[0]).toBe(Math.fround(0.1));
  });

  it("numel multiplies dimensions; reshape keeps the data", () => {
    expect(numel([2, 3, 4])).toBe(24);
    expect(numel([])).toBe(1);
    const t = tensor([2, 3], [1, 2, 3, 4, 5, 6]);
    const r = reshape(t, [3, 2]);
    expect(r.shape).toEqual([3, 2]);
    expect(r.data).toBe(t.data);
  });

  it("expectShape returns the named sizes and checks them against each other", () => {
    const t = tensor([2, 3, 4]);
    expect(expectShape("x", t, ["B", "T", "D"])).toEqual({ B: 2, T: 3, D: 4 });
    expect(expectShape("x", t, ["B", "T", 4], { B: 2 })).toEqual({ B: 2, T: 3 });
    expect(expectShape("sq", tensor([3, 3]), ["N", "N"])).toEqual({ N: 3 });
  });

  it("add, sliceRows and concatRows work row-major", () => {
    const a = tensor([2, 2], [1, 2, 3, 4]);
    expect([...add(a, tensor([2, 2], [10, 20, 30, 40])).data]).toEqual([11, 22, 33, 44]);
    const rows = tensor([3, 2], [1, 2, 3, 4, 5, 6]);
    const middle = sliceRows(rows, 1, 2);
    expect(middle.shape).toEqual([1, 2]);
    expect([...middle.data]).toEqual([3, 4]);
    const joined = concatRows([sliceRows(rows, 0, 1), sliceRows(rows, 1, 3)]);
    expect(joined.shape).toEqual([3, 2]);
    expect([...joined.data]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(sliceRows(rows, 2, 2).shape).toEqual([0, 2]);
  });
});

describe("tensor errors name the argument, the expected and the actual value", () => {
  it("argError has one shape", () => {
    expect(argError("w", "an integer >= 1", 0).message).toBe("w: expected an integer >= 1, got 0");
    expect(argError("mode", "x", "y").message).toBe('mode: expected x, got "y"');
  });

  it("rejects bad shapes and data lengths", () => {
    expect(thrown(() => tensor([2, -1]))).toMatch(/^shape: expected non-negative integer dimensions, got \[2, -1\]/);
    expect(thrown(() => tensor([2, 1.5]))).toMatch(/^shape:/);
    expect(thrown(() => tensor([2, 2], [1, 2, 3]))).toMatch(/^data: expected 4 values for shape \[2, 2\], got 3/);
    expect(thrown(() => reshape(tensor([2, 3]), [4, 2]))).toMatch(/^shape: expected a shape of 6 elements, got \[4, 2\]/);
  });

  it("expectShape says which size disagrees", () => {
    expect(thrown(() => expectShape("q", tensor([2, 3]), ["B", "T", "D"]))).toBe(
      `q: expected shape [B, T, D], got [2, 3]`,
    );
    expect(thrown(() => expectShape("k", tensor([2, 5]), ["B", "D"], { D: 4 }))).toBe(
      `k: expected shape [B=2, D=4], got [2, 5]`,
    );
    expect(thrown(() => expectShape("x", tensor([3, 4]), ["N", "N"]))).toMatch(/^x: expected shape \[N=3, N=3\]/);
    expect(thrown(() => expectShape("x", undefined, ["N"]))).toMatch(/^x: expected a tensor of shape \[N\], got "undefined"/);
    const lying = { shape: [2, 2], data: new Float32Array(3) };
    expect(thrown(() => expectShape("x", lying, ["A", "B"]))).toMatch(/^x: expected 4 values for its shape \[2, 2\], got 3/);
  });

  it("add, sliceRows and concatRows validate", () => {
    expect(thrown(() => add(tensor([2, 2]), tensor([2, 3])))).toMatch(/^b: expected shape \[d0=2, d1=2\], got \[2, 3\]/);
    expect(thrown(() => sliceRows(tensor([3, 2]), 2, 4))).toMatch(/^rows: expected 0 <= start <= end <= 3, got \[2, 4\)/);
    expect(thrown(() => concatRows([]))).toMatch(/^parts: expected at least one tensor, got 0/);
    expect(thrown(() => concatRows([tensor([1, 2]), tensor([1, 3])]))).toMatch(/^parts\[1\]:/);
  });
});
