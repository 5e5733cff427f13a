import { describe, expect, it } from "vitest";
import * as tinyseek from "../src/index.ts";

describe("the public API (src/index.ts)", () => {
  it("exports every name it lists, and none is undefined", () => {
    const missing = Object.entries(tinyseek).filter(([, v]) => v === undefined).map(([k]) => k);
    expect(missing).toEqual([]);
    expect(Object.keys(tinyseek).length).toBeGreaterThan(60);
  });

  it("runs the tiny model from the top-level names alone", () => {
    const model = tinyseek.initModel(tinyseek.preset("tiny"));
    const tokens = tinyseek.encode("hi", { bos: true });
    const { logits } = tinyseek.forward(model, tokens);
    expect(logits.shape).toEqual([tokens.length, tinyseek.VOCAB_SIZE]);
    expect(tinyseek.decode(tinyseek.encode("héllo"))).toBe("héllo");
  });
});
