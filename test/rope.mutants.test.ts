// Cases that kill mutants of src/rope.ts the other rope tests let live (test/README.md, mutation testing): YaRN's
// ramp off zero and against the dim - 1 clamp, a ramp of zero width, and each error's full message.
import { describe, expect, it } from "vitest";
import { ropeFrequencies, rotaryHeadSize } from "../src/rope.ts";
import { thrown } from "./helpers.ts";

describe("YaRN's ramp where it starts above pair 0 and ends at the clamp", () => {
  it("dim 8, θ 2, factor 4 over 256 tokens: by hand", () => {
    // correction_dim(r) = 8·ln(256 / (2πr)) / (2 ln 2): r = 32 gives 1.394 (floor: low = 1), r = 1 gives 21.40
    // (ceil 22, clamped to dim - 1 = 7). ramp = clamp((i - 1)/6, 0, 1) = 0, 0, 1/6, 1/3; frequency = 2^(-i/4)·(1 -
    // ramp) + 2^(-i/4)/4·ramp = 2^(-i/4)·(1 - 0.75·ramp).
    const f = ropeFrequencies({ dim: 8, theta: 2, yarn: { factor: 4, originalMaxPosition: 256, maxPosition: 1024 } });
    const expected = [1, 0.8408964152537145, 0.7071067811865476 * 0.875, 0.5946035575013605 * 0.75];
    expected.forEach((e, i) => expect(f[i]).toBeCloseTo(e, 14));
  });

  it("a context so short that the ramp has no width keeps pair 0 and interpolates the rest, never NaN", () => {
    // originalMaxPosition 4: both corrections fall below 0, so low = 0 and high = ceil(-0.196) = -0; the ramp is
    // widened by 0.001 (i/0.001 clamped: 0 for pair 0, 1 for every other).
    const f = ropeFrequencies({ dim: 8, yarn: { factor: 4, originalMaxPosition: 4, maxPosition: 16 } });
    expect(f[0]).toBe(1);
    [0.1, 0.01, 0.001].forEach((base, j) => expect(f[j + 1]).toBeCloseTo(base / 4, 15));
  });
});

describe("rope's errors, whole", () => {
  const yarn = { factor: 4, originalMaxPosition: 256, maxPosition: 1024 };
  it.each([
    ["yarn.betaSlow", () => ropeFrequencies({ dim: 4, yarn: { ...yarn, betaSlow: 0 } }), "yarn.betaSlow: expected a finite number in [5e-324, Infinity], got 0"],
    ["yarn.maxPosition", () => ropeFrequencies({ dim: 4, yarn: { ...yarn, maxPosition: 0 } }), "yarn.maxPosition: expected an integer >= 1, got 0"],
    ["theta with YaRN", () => ropeFrequencies({ dim: 4, theta: 1, yarn }), "theta: expected a number > 1 with YaRN (its ramp divides by ln θ), got 1"],
    ["hidden_size", () => rotaryHeadSize(0, 2), "hidden_size: expected an integer >= 1, got 0"],
    ["num_attention_heads", () => rotaryHeadSize(8, 0), "num_attention_heads: expected an integer >= 1, got 0"],
    ["an odd head size", () => rotaryHeadSize(6, 2), "num_attention_heads: expected a head size hidden_size/H that is even (rotary pairs), got \"H=2, head size 3\""],
  ])("%s", (_, call, message) => expect(thrown(call)).toBe(message));
});
