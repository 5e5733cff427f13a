import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BOS, decode, encode, EOS, IMG, PAD, tokenLabel, VOCAB_SIZE } from "../src/model/tokenizer.ts";

describe("byte tokenizer", () => {
  it("round-trips any well-formed string, BOS and EOS included", () => {
    fc.assert(fc.property(fc.string({ unit: "grapheme" }), fc.boolean(), (text, eos) => {
      const ids = encode(text, { eos });
      expect(ids[0]).toBe(BOS);
      expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < VOCAB_SIZE)).toBe(true);
      expect(decode(ids)).toBe(text);
    }));
  });

  it("is one token per UTF-8 byte", () => {
    fc.assert(fc.property(fc.string({ unit: "binary" }), (text) => {
      expect(encode(text, { bos: false })).toEqual([...new TextEncoder().encode(text)]);
    }));
    expect(encode("é€😀", { bos: false })).toEqual([0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80]);
  });

  it("decodes invalid UTF-8 (a model may sample it) to U+FFFD rather than throwing", () => {
    expect(decode([0x61, 0xff, 0x62])).toBe("a\uFFFDb");
  });

  it("has 260 tokens: 256 bytes and BOS, EOS, PAD, IMG", () => {
    expect([BOS, EOS, PAD, IMG, VOCAB_SIZE]).toEqual([256, 257, 258, 259, 260]);
    expect([BOS, EOS, PAD, IMG, 32, 65, 0].map(tokenLabel)).toEqual(["<bos>", "<eos>", "<pad>", "<img>", "␠", "A", "<00>"]);
  });

  it("names the bad id", () => {
    expect(() => decode([65, 260])).toThrow(/ids\[1\]: expected an integer in \[0, 259\], got 260/);
  });
});
