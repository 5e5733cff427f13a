import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DTYPES, readSafetensors, readSafetensorsHeader, SafetensorsError, writeSafetensors, type Dtype, type TensorToWrite,
} from "../src/io/safetensors.ts";
import { fp8WeightTensors, readFp8Weight } from "../src/io/fp8-weights.ts";
import { dequantizeFp8, quantizeFp8 } from "../src/quant/fp8.ts";
import { FORMATS, roundTo } from "../src/quant/minifloat.ts";
import { Random, randBounded } from "../src/random.ts";
import { safetensorsErrorOf as errorOf } from "./helpers.ts";

/** A file built by hand: 8-byte length, the header text exactly as given, then the data bytes. */
function fileOf(header: string, data: ArrayLike<number> = [], claimedLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, claimedLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const hex = (s: string) => Array.from(s.match(/../g)!, (b) => parseInt(b, 16));
const entry = (dtype: string, shape: number[], begin: number, end: number) =>
  `{"dtype":"${dtype}","shape":[${shape.join(",")}],"data_offsets":[${begin},${end}]}`;

describe("reading files we did not write", () => {
  it("reads a hand-built F32 file with an unpadded header and unaligned data", () => {
    // 1.0 = 0x3f800000 and -2.5 = 0xc0200000, little-endian; the header is 63 bytes, so the data starts at 71.
    const bytes = fileOf(`{"__metadata__":{"k":"v"},"a":${entry("F32", [2], 0, 8)}}`, hex("0000803f000020c0"));
    expect((bytes.length - 8) % 8).not.toBe(0);
    const { tensors, metadata } = readSafetensors(bytes);
    expect(metadata).toEqual({ k: "v" });
    const a = tensors.get("a")!;
    expect(a.dtype).toBe("F32");
    expect(a.shape).toEqual([2]);
    expect(a.data).toBeInstanceOf(Float32Array);
    expect([...a.data]).toEqual([1, -2.5]);
  });

  it("decodes every dtype from known bit patterns", () => {
    const parts: [string, Dtype, number[], string][] = [
      ["f64", "F64", [2], "000000000000f83f" + "000000000000f0ff"], // 1.5, -Inf
      ["f32", "F32", [2], "0000c07f" + "01000000"], // NaN, smallest subnormal 2^-149
      ["f16", "F16", [6], "003c" + "00c0" + "ff7b" + "007c" + "0100" + "0080"], // 1, -2, 65504, Inf, 2^-24, -0
      ["bf16", "BF16", [4], "803f" + "80ff" + "0100" + "c07f"], // 1, -Inf, 2^-133, NaN
      ["e4m3", "F8_E4M3", [5], "38" + "7e" + "7f" + "01" + "fe"], // 1, 448, NaN, 2^-9, -448
      ["e5m2", "F8_E5M2", [5], "3c" + "7b" + "7c" + "01" + "fc"], // 1, 57344, Inf, 2^-16, -Inf
      ["i64", "I64", [2], "ffffffffffffffff" + "0000000000010000"], // -1, 2^40
      ["i32", "I32", [1], "fbffffff"], // -5
      ["i16", "I16", [1], "0080"], // -32768
      ["i8", "I8", [2], "80" + "7f"], // -128, 127
      ["u64", "U64", [1], "ffffffffffffffff"],
      ["u32", "U32", [1], "ffffffff"],
      ["u16", "U16", [1], "ffff"],
      ["u8", "U8", [2], "00ff"],
      ["bool", "BOOL", [2], "0001"],
    ];
    let offset = 0;
    const entries: string[] = [];
    const data: number[] = [];
    for (const [name, dtype, shape, bytes] of parts) {
      const b = hex(bytes);
      entries.push(`"${name}":${entry(dtype, shape, offset, offset + b.length)}`);
      data.push(...b);
      offset += b.length;
    }
    const { tensors } = readSafetensors(fileOf(`{${entries.join(",")}}`, data));
    const values = (name: string) => Array.from(tensors.get(name)!.data as ArrayLike<number | bigint>);
    expect(values("f64")).toEqual([1.5, -Infinity]);
    expect(values("f32")).toEqual([NaN, 2 ** -149]);
    expect(values("f16")).toEqual([1, -2, 65504, Infinity, 2 ** -24, -0]);
    expect(values("bf16")).toEqual([1, -Infinity, 2 ** -133, NaN]);
    expect(values("e4m3")).toEqual([1, 448, NaN, 2 ** -9, -448]);
    expect(values("e5m2")).toEqual([1, 57344, Infinity, 2 ** -16, -Infinity]);
    expect(values("i64")).toEqual([-1n, 2n ** 40n]);
    expect(tensors.get("i64")!.data).toBeInstanceOf(BigInt64Array);
    expect(values("i32")).toEqual([-5]);
    expect(tensors.get("i32")!.data).toBeInstanceOf(Int32Array);
    expect(values("i16")).toEqual([-32768]);
    expect(values("i8")).toEqual([-128, 127]);
    expect(values("u64")).toEqual([2n ** 64n - 1n]);
    expect(values("u32")).toEqual([2 ** 32 - 1]);
    expect(values("u16")).toEqual([65535]);
    expect(values("u8")).toEqual([0, 255]);
    expect(values("bool")).toEqual([0, 1]);
    expect(tensors.get("f16")!.data).toBeInstanceOf(Float32Array);
    // Raw reading keeps the stored bytes.
    const raw = readSafetensors(fileOf(`{${entries.join(",")}}`, data), { raw: true });
    expect([...raw.tensors.get("e4m3")!.data]).toEqual(hex("387e7f01fe"));
  });

  it("reads zero-sized tensors and scalars", () => {
    const bytes = fileOf(`{"empty":${entry("F32", [0, 3], 0, 0)},"scalar":${entry("I32", [], 0, 4)}}`, hex("2a000000"));
    const { tensors } = readSafetensors(bytes);
    expect(tensors.get("empty")!.data.length).toBe(0);
    expect(tensors.get("scalar")!.shape).toEqual([]);
    expect([...tensors.get("scalar")!.data]).toEqual([42]);
  });
});

describe("the writer", () => {
  it("writes the reference layout: size-then-name order, __metadata__ first, space padding to 8 bytes", () => {
    const bytes = writeSafetensors(
      { b: { dtype: "I8", shape: [2], data: [-1, 2] }, a: { dtype: "I8", shape: [1], data: [3] }, w: { dtype: "F32", shape: [1], data: [1] } },
      { x: "y" },
    );
    const length = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(length % 8).toBe(0);
    const header = new TextDecoder().decode(bytes.subarray(8, 8 + length));
    const json = `{"__metadata__":{"x":"y"},"w":${entry("F32", [1], 0, 4)},"a":${entry("I8", [1], 4, 5)},"b":${entry("I8", [2], 5, 7)}}`;
    expect(header).toBe(json.padEnd(length, " "));
    expect([...bytes.subarray(8 + length)]).toEqual([...hex("0000803f"), 3, 255, 2]);
  });

  // Expected bytes as the Rust reference (through its Python binding) writes them, from its own serialisation tests.
  it("writes byte for byte what the reference implementation writes", () => {
    const zeros = (dtype: Dtype) => ({ dtype, shape: [2, 2], data: [0, 0, 0, 0] });
    const latin1 = (bytes: Uint8Array) => Buffer.from(bytes).toString("latin1");
    const i32 = `{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}`;
    expect(latin1(writeSafetensors({ test: zeros("I32") }))).toBe(`@${"\0".repeat(7)}{"test":${i32}}    ${"\0".repeat(16)}`);
    expect(latin1(writeSafetensors({ test2: zeros("F16"), test1: zeros("I32") }))).toBe(
      `\x80${"\0".repeat(7)}{"test1":${i32},"test2":{"dtype":"F16","shape":[2,2],"data_offsets":[16,24]}}      ${"\0".repeat(24)}`,
    );
    expect(latin1(writeSafetensors({ test1: zeros("I32") }, { framework: "pt" }))).toBe(
      `\`${"\0".repeat(7)}{"__metadata__":{"framework":"pt"},"test1":${i32}} ${"\0".repeat(16)}`,
    );
  });

  it("round-trips every dtype", () => {
    const rng = new Random(5);
    const n = 37;
    const floats = (f?: keyof typeof FORMATS) => Array.from({ length: n }, () => {
      const v = rng.normal() * 100;
      return f ? roundTo(FORMATS[f], v, { saturate: true }) : v;
    });
    const ints = (lo: number, hi: number) => Array.from({ length: n }, () => lo + rng.int(hi - lo + 1));
    const tensors: Record<Dtype, TensorToWrite> = {
      F64: { dtype: "F64", shape: [n], data: floats() },
      F32: { dtype: "F32", shape: [n], data: Float32Array.from(floats()) },
      F16: { dtype: "F16", shape: [n], data: floats("fp16") },
      BF16: { dtype: "BF16", shape: [n], data: floats("bf16") },
      F8_E4M3: { dtype: "F8_E4M3", shape: [n], data: floats("e4m3") },
      F8_E5M2: { dtype: "F8_E5M2", shape: [n], data: floats("e5m2") },
      I64: { dtype: "I64", shape: [n], data: ints(-1e15, 1e15).map(BigInt) },
      I32: { dtype: "I32", shape: [n], data: ints(-(2 ** 31), 2 ** 31 - 1) },
      I16: { dtype: "I16", shape: [n], data: ints(-32768, 32767) },
      I8: { dtype: "I8", shape: [n], data: ints(-128, 127) },
      U64: { dtype: "U64", shape: [n], data: ints(0, 2 ** 52) },
      U32: { dtype: "U32", shape: [n], data: ints(0, 2 ** 32 - 1) },
      U16: { dtype: "U16", shape: [n], data: ints(0, 65535) },
      U8: { dtype: "U8", shape: [n], data: ints(0, 255) },
      BOOL: { dtype: "BOOL", shape: [n], data: ints(0, 1) },
    };
    expect(Object.keys(tensors).sort()).toEqual([...DTYPES].sort());
    const { tensors: back } = readSafetensors(writeSafetensors(tensors));
    for (const dtype of DTYPES) {
      const expected = Array.from(tensors[dtype].data as ArrayLike<number | bigint>, (v) => (dtype.endsWith("64") && dtype !== "F64" ? BigInt(v) : v));
      const got = Array.from(back.get(dtype)!.data as ArrayLike<number | bigint>);
      expect(got, dtype).toEqual(dtype === "F32" ? [...Float32Array.from(expected as number[])] : expected);
    }
  });

  it("rounds to F16, BF16 and FP8 half to even, with every special value", () => {
    const bits = (dtype: Dtype, values: number[]) => {
      const bytes = writeSafetensors({ t: { dtype, shape: [values.length], data: values } });
      const { dataStart } = readSafetensorsHeader(bytes);
      const data = bytes.subarray(dataStart);
      const size = dtype.startsWith("F8") ? 1 : 2;
      return Array.from({ length: values.length }, (_, i) => (size === 1 ? data[i]! : data[2 * i]! | (data[2 * i + 1]! << 8)));
    };
    // f16: ±0, max, ties at the top (65520 → Inf), subnormals (2^-25 is a tie with 0: even is 0), normals' ties.
    expect(bits("F16", [0, -0, 65504, 65519.99, 65520, -Infinity, NaN, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 2 ** -14, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1e-10]))
      .toEqual([0x0000, 0x8000, 0x7bff, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x0001, 0x0000, 0x0002, 0x0400, 0x3c00, 0x3c02, 0x0000]);
    // bf16: ties to even, float32's max rounds past bf16's max to Inf, subnormals, -0.
    expect(bits("BF16", [1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.4028234663852886e38, 2 ** -133, -0, NaN, Infinity]))
      .toEqual([0x3f80, 0x3f82, 0x7f80, 0x0001, 0x8000, 0x7fc0, 0x7f80]);
    // e4m3fn: 464 ties to 448 (even mantissa), above it is NaN (no Inf), subnormal 2^-9, -0.
    expect(bits("F8_E4M3", [448, 464, 465, Infinity, -448, 2 ** -9, 2 ** -10, -0, NaN])).toEqual([0x7e, 0x7e, 0x7f, 0x7f, 0xfe, 0x01, 0x00, 0x80, 0x7f]);
    // e5m2: 61440 ties to 65536, which overflows to Inf.
    expect(bits("F8_E5M2", [57344, 61440, -Infinity, 2 ** -16, 1.25, 1.125])).toEqual([0x7b, 0x7c, 0xfc, 0x01, 0x3d, 0x3c]);
  });

  it("refuses values the dtype cannot hold, with the tensor named", () => {
    const w = (t: TensorToWrite) => errorOf(() => writeSafetensors({ t })).message;
    expect(w({ dtype: "I8", shape: [1], data: [128] })).toMatch(/tensor "t": value 0 is 128, not an integer in \[-128, 127\]/);
    expect(w({ dtype: "I32", shape: [1], data: [1.5] })).toMatch(/not an integer/);
    expect(w({ dtype: "BOOL", shape: [1], data: [2] })).toMatch(/\[0, 1\]/);
    expect(w({ dtype: "F32", shape: [2, 2], data: [1, 2, 3] })).toMatch(/expected 4 values for shape \[2, 2\], got 3/);
    expect(w({ dtype: "F32", shape: [2], raw: new Uint8Array(7) })).toMatch(/raw must be 8 bytes/);
    expect(w({ dtype: "X" as Dtype, shape: [1], data: [1] })).toMatch(/unknown dtype "X"/);
    expect(w({ dtype: "I64", shape: [1], data: [2 ** 60] })).toMatch(/not a I64 integer/);
    expect(errorOf(() => writeSafetensors({}, { n: 1 as unknown as string })).message).toMatch(/metadata "n" must be a string/);
  });
});

describe("strict checks", () => {
  const good = `{"a":${entry("F32", [2], 0, 8)}}`;
  const data8 = new Array(8).fill(0);
  const cases: [string, Uint8Array, RegExp][] = [
    ["a file shorter than the length prefix", new Uint8Array(5), /file of 5 bytes is too short for the 8-byte header length/],
    ["a header longer than the file", fileOf(good, data8, 1000n), /header length 1000 is larger than the \d+ bytes after the length prefix/],
    ["a huge claimed header length", fileOf(good, data8, 2n ** 63n), /header length 9223372036854775808 is larger/],
    ["invalid UTF-8", fileOf("{\"\xff\"}", []).map((b, i, a) => (i === a.length - 3 ? 0xff : b)), /not valid UTF-8/],
    ["invalid JSON", fileOf(`{"a":`, []), /header is not valid JSON/],
    ["a header that is not an object", fileOf("[1]", []), /must start with "\{"/],
    ["JSON null in braces", fileOf(`{"a":null}`, []), /tensor "a": entry must be an object/],
    ["a missing data_offsets", fileOf(`{"a":{"dtype":"F32","shape":[2]}}`, data8), /tensor "a": missing "data_offsets"/],
    ["an unknown field", fileOf(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}`, data8), /tensor "a": unknown field "x"/],
    ["an unknown dtype", fileOf(`{"a":${entry("F128", [2], 0, 8)}}`, data8), /tensor "a": unknown dtype "F128"/],
    ["a negative dimension", fileOf(`{"a":${entry("F32", [-2], 0, 8)}}`, data8), /shape must be a list of non-negative integers/],
    ["reversed offsets", fileOf(`{"a":${entry("F32", [0], 8, 0)}}`, data8), /data_offsets must be \[begin, end\] with 0 <= begin <= end/],
    ["a wrong byte length", fileOf(`{"a":${entry("F32", [3], 0, 8)}}`, data8), /F32 of shape \[3\] needs 12 bytes, data_offsets give 8/],
    ["offsets past the data (truncated body)", fileOf(good, [0, 0, 0, 0]), /data_offsets \[0, 8\] run past the 4 bytes of data/],
    ["overlapping tensors", fileOf(`{"a":${entry("F32", [2], 0, 8)},"b":${entry("F32", [1], 4, 8)}}`, data8), /tensor "b" at \[4, 8\] overlaps tensor "a", which ends at 8/],
    ["a gap between tensors", fileOf(`{"a":${entry("F32", [1], 0, 4)},"b":${entry("U8", [2], 6, 8)}}`, data8), /gap of 2 bytes between tensor "a" and tensor "b" at 6/],
    ["a gap at the start", fileOf(`{"a":${entry("F32", [1], 4, 8)}}`, data8), /gap of 4 bytes between the start of the data and tensor "a"/],
    ["bytes no tensor covers", fileOf(good, [...data8, 1, 2]), /2 bytes after the last tensor are not covered by any entry/],
    ["non-string metadata", fileOf(`{"__metadata__":{"seed":3},"a":${entry("F32", [2], 0, 8)}}`, data8), /"__metadata__.seed" must be a string, got 3/],
    ["metadata that is not an object", fileOf(`{"__metadata__":"x"}`, []), /"__metadata__" must be an object of strings/],
    ["a BOOL that is not 0 or 1", fileOf(`{"a":${entry("BOOL", [2], 0, 2)}}`, [1, 7]), /BOOL element 1 is 7, expected 0 or 1/],
    ["a shape too large to count", fileOf(`{"a":${entry("F64", [2 ** 30, 2 ** 30, 2 ** 30], 0, 8)}}`, data8), /is too large/],
  ];
  for (const [what, bytes, message] of cases) {
    it(`refuses ${what}`, () => expect(errorOf(() => readSafetensors(bytes)).message).toMatch(message));
  }

  it("refuses a header above the 100 MB limit before reading it", () => {
    const bytes = new Uint8Array(100_000_016);
    new DataView(bytes.buffer).setBigUint64(0, 100_000_001n, true);
    expect(errorOf(() => readSafetensorsHeader(bytes)).message).toMatch(/header length 100000001 exceeds the limit of 100000000 bytes/);
  });
});

describe("fuzzing", () => {
  const valid = writeSafetensors(
    {
      w: { dtype: "F32", shape: [3, 2], data: [1, 2, 3, 4, 5, 6] },
      h: { dtype: "F16", shape: [3], data: [0.5, -1, 2] },
      e: { dtype: "F8_E4M3", shape: [4], data: [1, 2, 3, 4] },
      i: { dtype: "I64", shape: [2], data: [7n, -7n] },
      b: { dtype: "BOOL", shape: [2], data: [0, 1] },
    },
    { note: "fuzz" },
  );
  type Mutation =
    | { kind: "flip"; at: number; value: number }
    | { kind: "truncate"; at: number }
    | { kind: "length"; value: bigint }
    | { kind: "insert"; at: number; value: number };
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    fc.record({ kind: fc.constant("flip" as const), at: fc.nat(valid.length - 1), value: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant("truncate" as const), at: fc.nat(valid.length) }),
    fc.record({ kind: fc.constant("length" as const), value: fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.bigInt({ min: 0n, max: BigInt(valid.length + 16) })) }),
    fc.record({ kind: fc.constant("insert" as const), at: fc.nat(valid.length), value: fc.integer({ min: 0, max: 255 }) }),
  );
  const apply = (bytes: Uint8Array, m: Mutation): Uint8Array => {
    switch (m.kind) {
      case "flip": return bytes.map((b, i) => (i === m.at % bytes.length ? m.value : b));
      case "truncate": return bytes.slice(0, Math.min(m.at, bytes.length));
      case "insert": return Uint8Array.from([...bytes.subarray(0, m.at), m.value, ...bytes.subarray(m.at)]);
      case "length": {
        const out = bytes.slice();
        if (out.length >= 8) new DataView(out.buffer).setBigUint64(0, m.value, true);
        return out;
      }
    }
  };

  it("reads a mutated file back or throws SafetensorsError, allocating at most 4x the file", () => {
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (mutations) => {
        const bytes = mutations.reduce(apply, valid);
        let file;
        try {
          file = readSafetensors(bytes);
        } catch (error) {
          if (!(error instanceof SafetensorsError)) throw error;
          return;
        }
        // The widest decode is F8 → Float32Array (4 bytes per stored byte); nothing comes from a claimed size.
        const decoded = [...file.tensors.values()].reduce((s, t) => s + t.data.byteLength, 0);
        expect(decoded).toBeLessThanOrEqual(4 * bytes.length);
      }),
      { numRuns: 400, seed: 20261123 },
    );
  });
});

describe("DeepSeek FP8 weights", () => {
  it("store as F8_E4M3 codes with F32 block scales and read back to the same weight", () => {
    const weight = randBounded(new Random(8), [130, 200], 0.02);
    const q = quantizeFp8(weight);
    const bytes = writeSafetensors({ ...fp8WeightTensors("model.layers.0.mlp.up_proj.weight", q), "model.norm.weight": { dtype: "BF16", shape: [2], data: [1, 1] } });
    const header = readSafetensorsHeader(bytes);
    expect(header.entries.get("model.layers.0.mlp.up_proj.weight")!.dtype).toBe("F8_E4M3");
    expect(header.entries.get("model.layers.0.mlp.up_proj.weight_scale_inv")!.shape).toEqual([2, 2]);
    const back = readFp8Weight(bytes, header, "model.layers.0.mlp.up_proj.weight");
    expect(back.bits).toEqual(q.bits);
    expect(back.scales).toEqual(q.scales);
    expect(dequantizeFp8(back).data).toEqual(dequantizeFp8(q).data);
  });

  it("refuses a weight without its scales, of the wrong dtype, or with scales of the wrong shape", () => {
    const q = quantizeFp8(randBounded(new Random(9), [3, 5]));
    const tensors = fp8WeightTensors("w", q);
    const header = (t: Record<string, TensorToWrite>) => {
      const bytes = writeSafetensors(t);
      return () => readFp8Weight(bytes, readSafetensorsHeader(bytes), "w");
    };
    expect(header({ w: tensors.w! })).toThrow(/fp8 weight "w": its block scales "w_scale_inv" are missing/);
    expect(header({ ...tensors, w: { dtype: "U8", shape: [3, 5], raw: q.bits } })).toThrow(/expected F8_E4M3 of shape \[out, in\], got U8 \[3, 5\]/);
    expect(header({ ...tensors, w_scale_inv: { dtype: "F32", shape: [2], data: [1, 1] } })).toThrow(/expected w_scale_inv as F32 \[1, 1\] \(one per 128×128 block\), got F32 \[2\]/);
  });
});
