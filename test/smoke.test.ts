import { describe, expect, it } from "vitest";
import { reference } from "../src/kernels.ts";
import { tensor } from "../src/tensor.ts";

describe("smoke", () => {
  it("multiplies a 2x2 by hand", () => {
    const c = reference.matmul(tensor([2, 2], [1, 2, 3, 4]), tensor([2, 2], [5, 6, 7, 8]));
    expect([...c.data]).toEqual([19, 22, 43, 50]);
  });
});
