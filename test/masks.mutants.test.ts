// Cases that kill mutants of src/masks.ts the other mask tests let live (test/README.md, mutation testing): masks
// that differ in one dimension only, a batch row past a 2-D mask, and each size argument's name.
import { describe, expect, it } from "vitest";
import { blockLocal, causal, combine, maskFromSpec, padding, renderMask, slidingWindow } from "../src/masks.ts";
import { thrown } from "./helpers.ts";

describe("masks refuse what does not fit, naming it", () => {
  it.each([
    ["queries only differ", () => combine(causal(2, 3), causal(3, 3)), "masks[1]: expected shape [2, 3] or [2, 3], got [3, 3]"],
    ["keys only differ", () => combine(causal(3, 3), causal(3, 4)), "masks[1]: expected shape [3, 3] or [3, 3], got [3, 4]"],
    ["a batch row of a 2-D mask", () => renderMask(causal(3), 1), "b: expected an integer in [0, 0], got 1"],
    ["causal's Tk", () => causal(2, -1), "Tk: expected an integer >= 0, got -1"],
    ["padding's T", () => padding([1], -1), "T: expected an integer >= 0, got -1"],
    ["slidingWindow's T", () => slidingWindow(-1, 2), "T: expected an integer >= 0, got -1"],
    ["blockLocal's T", () => blockLocal(-1, 2, 0), "T: expected an integer >= 0, got -1"],
    ["a spec's overlap", () => maskFromSpec({ segment: { size: 2, overlap: -1 } }, 1, 2, 2), "mask.segment.overlap: expected an integer >= 0, got -1"],
  ])("%s", (_, call, message) => expect(thrown(call)).toBe(message));
});
