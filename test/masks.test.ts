import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  blockLocal, causal, combine, maskFromSpec, padding, renderMask, slidingWindow, specVisible, toBias, type Mask, type MaskSpec,
} from "../src/masks.ts";
import { thrown } from "./helpers.ts";

/** A grid written as rows of 1s and 0s, e.g. ["110", "111"]. */
const grid = (mask: Mask, b = 0) => renderMask(mask, b).split("\n").map((r) => r.replaceAll("■", "1").replaceAll("·", "0").replaceAll(" ", ""));

describe("mask builders by hand", () => {
  it("causal with an offset: 2 new queries after 2 cached tokens", () => {
    expect(grid(causal(2, 4, 2))).toEqual(["1110", "1111"]);
    expect(grid(causal(2, 4))).toEqual(["1110", "1111"]); // the default offset is Tk - Tq
    expect(grid(causal(3))).toEqual(["100", "110", "111"]);
    expect(grid(causal(1, 3, 2))).toEqual(["111"]); // T = 1 decoding sees the whole cache
  });

  it("padding hides keys past each length and the padded queries' whole rows", () => {
    const m = padding([2, 3], 3);
    expect(m.shape).toEqual([2, 3, 3]);
    expect(grid(m, 0)).toEqual(["110", "110", "000"]);
    expect(grid(m, 1)).toEqual(["111", "111", "111"]);
  });

  it("a sliding window of 3 sees the query and the 2 keys before it", () => {
    expect(grid(slidingWindow(5, 3))).toEqual(["10000", "11000", "11100", "01110", "00111"]);
    expect(grid(slidingWindow(3, 1))).toEqual(["100", "010", "001"]);
  });

  it("blockLocal with segment 2 and overlap 1", () => {
    // Query q sees keys from (segment start - 1) up to itself.
    expect(grid(blockLocal(5, 2, 1))).toEqual(["10000", "11000", "01100", "01110", "00011"]);
    expect(grid(blockLocal(4, 4, 0))).toEqual(grid(causal(4))); // one segment is causal
  });

  it("combine ANDs, broadcasting a [Tq, Tk] mask over batch rows", () => {
    const m = combine(causal(3), padding([2, 3], 3));
    expect(m.shape).toEqual([2, 3, 3]);
    expect(grid(m, 0)).toEqual(["100", "110", "000"]);
    expect(grid(m, 1)).toEqual(["100", "110", "111"]);
  });

  it("toBias is 0 or -Infinity, never a finite sentinel", () => {
    expect([...toBias(causal(2)).data]).toEqual([0, -Infinity, 0, 0]);
  });

  it("renderMask draws ■ and ·", () => {
    expect(renderMask(causal(2))).toBe("■ ·\n■ ■");
  });
});

/** The direct definitions of spec/masks.md, written independently of src/masks.ts. */
const direct = {
  causal: (offset: number) => (i: number, j: number) => j <= offset + i,
  window: (w: number) => (i: number, j: number) => i - w < j && j <= i,
  block: (S: number, W: number) => (i: number, j: number) => j <= i && j >= i - (i % S) - W,
};
function bits(Tq: number, Tk: number, f: (i: number, j: number) => boolean) {
  return Uint8Array.from({ length: Tq * Tk }, (_, n) => (f(Math.floor(n / Tk), n % Tk) ? 1 : 0));
}
const size = fc.constantFrom(1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17);

describe("mask properties against the direct definitions", () => {
  it("causal, slidingWindow and blockLocal", () => {
    fc.assert(
      fc.property(size, size, fc.integer({ min: 0, max: 9 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 0, max: 9 }),
        (T, Tq0, offset, w, W) => {
          const Tq = Math.min(Tq0, T);
          expect(causal(Tq, Tq + offset, offset).data).toEqual(bits(Tq, Tq + offset, direct.causal(offset)));
          expect(slidingWindow(T, w).data).toEqual(bits(T, T, direct.window(w)));
          expect(blockLocal(T, w, W).data).toEqual(bits(T, T, direct.block(w, W)));
          // A window as long as the sequence is causal; blockLocal with segment 1 is a window of overlap + 1.
          expect(slidingWindow(T, T).data).toEqual(causal(T).data);
          expect(blockLocal(T, 1, W).data).toEqual(slidingWindow(T, W + 1).data);
        }),
      { numRuns: 80 },
    );
  });

  it("padding and combine", () => {
    fc.assert(
      fc.property(size, fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), (T, raw) => {
        const lengths = raw.map((l) => l % (T + 1));
        const m = padding(lengths, T);
        const c = combine(causal(T), m);
        lengths.forEach((l, b) => {
          const row = (f: (i: number, j: number) => boolean) => bits(T, T, f);
          expect(m.data.subarray(b * T * T, (b + 1) * T * T)).toEqual(row((i, j) => i < l && j < l));
          expect(c.data.subarray(b * T * T, (b + 1) * T * T)).toEqual(row((i, j) => i < l && j < l && j <= i));
        });
      }),
      { numRuns: 60 },
    );
  });

  it("maskFromSpec and specVisible equal the builders combined", () => {
    fc.assert(
      fc.property(size, fc.integer({ min: 0, max: 6 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 6 }),
        fc.boolean(), fc.boolean(), fc.boolean(), fc.integer({ min: 0, max: 2 ** 30 }),
        (Tq, offset, w, W, useWindow, useSegment, useLengths, salt) => {
          const Tk = Tq + offset;
          const B = 2;
          const lengths = [salt % (Tk + 1), (salt >> 4) % (Tk + 1)];
          const spec: MaskSpec = {
            causal: true, offset,
            window: useWindow ? w : undefined,
            segment: useSegment ? { size: w + 1, overlap: W } : undefined,
            lengths: useLengths ? lengths : undefined,
          };
          const parts: ((b: number, i: number, j: number) => boolean)[] = [(_, i, j) => j <= offset + i];
          if (useWindow) parts.push((_, i, j) => j > offset + i - w);
          if (useSegment) parts.push((_, i, j) => j >= offset + i - ((offset + i) % (w + 1)) - W);
          // Padding by absolute position: a query at offset + i >= length is padding, like a key at j >= length.
          if (useLengths) parts.push((b, i, j) => offset + i < lengths[b]! && j < lengths[b]!);
          const m = maskFromSpec(spec, B, Tq, Tk);
          expect(m.shape).toEqual(useLengths ? [B, Tq, Tk] : [Tq, Tk]);
          const at = specVisible(spec, Tq, Tk);
          for (let b = 0; b < (useLengths ? B : 1); b++) {
            for (let i = 0; i < Tq; i++) {
              for (let j = 0; j < Tk; j++) {
                const want = parts.every((f) => f(b, i, j));
                expect(m.data[(b * Tq + i) * Tk + j]).toBe(want ? 1 : 0);
                expect(at(b, i, j)).toBe(want);
              }
            }
          }
          if (offset === 0 && !useWindow && !useSegment && !useLengths) expect(m.data).toEqual(causal(Tq).data);
        }),
      { numRuns: 100 },
    );
  });

  it("a window or a segment implies causal even without causal: true", () => {
    expect(maskFromSpec({ window: 2 }, 1, 3, 3).data).toEqual(slidingWindow(3, 2).data);
    expect(maskFromSpec({ segment: { size: 2, overlap: 1 } }, 1, 5, 5).data).toEqual(blockLocal(5, 2, 1).data);
    expect(maskFromSpec({}, 1, 2, 2).data).toEqual(Uint8Array.of(1, 1, 1, 1));
    expect(maskFromSpec({ lengths: [1, 2] }, 2, 2, 2).data).toEqual(padding([1, 2], 2).data);
  });
});

describe("mask errors name the argument", () => {
  it("rejects negative or zero sizes, windows, segments and bad lengths", () => {
    expect(thrown(() => causal(-1))).toMatch(/^Tq: expected an integer >= 0, got -1/);
    expect(thrown(() => causal(3, 2))).toMatch(/^offset: expected an integer >= 0, got -1/);
    expect(thrown(() => slidingWindow(4, -2))).toMatch(/^w: expected an integer >= 1, got -2/);
    expect(thrown(() => slidingWindow(4, 0))).toMatch(/^w:/);
    expect(thrown(() => blockLocal(4, 0, 1))).toMatch(/^segment: expected an integer >= 1, got 0/);
    expect(thrown(() => blockLocal(4, 2, -1))).toMatch(/^overlap:/);
    expect(thrown(() => padding([2, 5], 4))).toMatch(/^lengths\[1\]: expected an integer in \[0, 4\], got 5/);
    expect(thrown(() => combine())).toMatch(/^masks: expected at least one mask/);
    expect(thrown(() => renderMask(padding([1, 2], 2), 2))).toMatch(/^b: expected an integer in \[0, 1\], got 2/);
    expect(thrown(() => combine(causal(3), causal(2)))).toMatch(/^masks\[1\]: expected shape \[3, 3\] or \[3, 3\], got \[2, 2\]/);
    expect(thrown(() => combine(padding([1, 1], 2), padding([1, 1, 1], 2)))).toMatch(/^masks\[1\]:/);
    expect(thrown(() => maskFromSpec({ window: 0 }, 1, 2, 2))).toMatch(/^mask\.window:/);
    expect(thrown(() => maskFromSpec({ offset: -1 }, 1, 2, 2))).toMatch(/^mask\.offset:/);
    expect(thrown(() => maskFromSpec({ segment: { size: 0, overlap: 0 } }, 1, 2, 2))).toMatch(/^mask\.segment\.size:/);
    expect(thrown(() => maskFromSpec({ lengths: [1] }, 2, 2, 2))).toMatch(/^mask\.lengths: expected 2 lengths, got 1/);
    expect(thrown(() => maskFromSpec({ lengths: [1, 3] }, 2, 2, 2))).toMatch(/^mask\.lengths\[1\]:/);
  });
});
