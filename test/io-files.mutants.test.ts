// Cases that kill mutants of src/io/safetensors.ts that test/safetensors.test.ts lets live (test/README.md,
// mutation testing): each check of spec/safetensors.md at its edge with its whole message, the duplicate-key scan
// on arrays and escaped quotes, the coverage check on entries listed out of order, the writer's layout and
// integer encodings worked by hand, and the readers of open files (a header of exactly the size limit included).
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FileError, type RandomAccessFile } from "../src/io/files.ts";
import {
  decodeTensorBytes, MAX_HEADER_BYTES, MAX_TENSORS, readSafetensors, readSafetensorsBytes, readSafetensorsFile, readSafetensorsHeader,
  readSafetensorsHeaderFrom, readTensor, SafetensorsError, writeSafetensors, writeSafetensorsFile, type HeaderEntry, type TensorToWrite,
} from "../src/io/safetensors.ts";
import { safetensorsErrorOf as errorOf } from "./helpers.ts";

/** A file: the 8-byte little-endian length of `header` (as written, no padding), the header, then `data`. */
function fileOf(header: string, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}
const messageOf = (bytes: Uint8Array): string => errorOf(() => readSafetensors(bytes)).message;
const entry = (dtype: string, shape: unknown, offsets: unknown) => JSON.stringify({ dtype, shape, data_offsets: offsets });

describe("the length prefix at its edges", () => {
  it("8 bytes of zeros: a header of length 0, too short for JSON (the file itself is long enough)", () => {
    const error = errorOf(() => readSafetensors(new Uint8Array(8)));
    expect(error.name).toBe("SafetensorsError");
    expect(error.message).toBe("safetensors: header length 0 is too short for a JSON object");
  });

  it("a claimed length one past the bytes there are is refused with both numbers", () => {
    const bytes = fileOf("{}    "); // 6 header bytes
    new DataView(bytes.buffer).setBigUint64(0, 7n, true);
    expect(messageOf(bytes)).toBe("safetensors: header length 7 is larger than the 6 bytes after the length prefix");
  });

  it("a header of exactly 2 bytes, {}, is an empty file", () => {
    expect(readSafetensors(fileOf("{}")).tensors.size).toBe(0);
  });

  it("bytes that are not a Uint8Array are named", () => {
    expect(errorOf(() => readSafetensorsHeader("x" as unknown as Uint8Array)).message)
      .toBe("safetensors: expected the file's bytes as a Uint8Array, got string");
  });
});

describe("header text", () => {
  it("a header that does not start with { quotes its start", () => {
    expect(messageOf(fileOf('["a", 1]'))).toBe('safetensors: header must start with "{", got "[\\"a\\", 1]"');
    expect(messageOf(fileOf("[1, 2, 3, 4, 5]"))).toBe('safetensors: header must start with "{", got "[1, 2, 3, "');
  });

  it("invalid JSON: the engine's reason, in parentheses, without the quotes excerpt adds", () => {
    const message = messageOf(fileOf('{"a": }'));
    expect(message).toMatch(/^safetensors: header is not valid JSON \([^"].{5,}[^"]\)$/);
  });

  it("a tensor count at the limit passes the count check (the metadata is no tensor); one more is refused", () => {
    const names = (n: number) => Array.from({ length: n }, (_, i) => `"t${i}":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}`);
    const atLimit = readSafetensorsHeader(fileOf(`{"__metadata__":{},${names(MAX_TENSORS).join(",")}}`));
    expect(atLimit.entries.size).toBe(MAX_TENSORS);
    expect(messageOf(fileOf(`{${names(MAX_TENSORS + 1).join(",")}}`)))
      .toBe(`safetensors: header lists ${MAX_TENSORS + 1} tensors, more than the limit of ${MAX_TENSORS}`);
  });
});

describe("duplicate keys, found by the scan of the text", () => {
  const a = entry("U8", [1], [0, 1]);
  const one = Uint8Array.of(7);

  it("at every level, with the level named", () => {
    expect(messageOf(fileOf(`{"a":${a},"a":${a}}`, one))).toBe('safetensors: tensor "a" appears twice in the header');
    expect(messageOf(fileOf(`{"__metadata__":{},"__metadata__":{}}`))).toBe('safetensors: "__metadata__" appears twice in the header');
    expect(messageOf(fileOf(`{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, one)))
      .toBe('safetensors: key "dtype" appears twice in the entry of tensor "a"');
    expect(messageOf(fileOf(`{"__metadata__":{"k":"1","k":"2"}}`))).toBe('safetensors: key "k" appears twice in "__metadata__"');
  });

  it("the same key in two different objects, or a string value equal to a key, is no duplicate", () => {
    const file = fileOf(`{"__metadata__":{"a":"a","b":"a"},"a":${a},"b":${entry("U8", [0], [1, 1])}}`, one);
    expect([...readSafetensors(file).tensors.keys()]).toEqual(["a", "b"]);
  });

  it("strings inside a list are values, not keys: the shape's own error is reported", () => {
    expect(messageOf(fileOf(`{"a":{"dtype":"U8","shape":["x","x"],"data_offsets":[0,1]}}`, one)))
      .toBe('safetensors: tensor "a": shape must be a list of non-negative integers, got ["x", "x"]');
  });

  it("an escaped quote does not end a key", () => {
    const file = fileOf(`{"a\\"b":${a},"a\\"c":${entry("U8", [0], [1, 1])}}`, one);
    expect([...readSafetensors(file).tensors.keys()]).toEqual(['a"b', 'a"c']);
    expect(messageOf(fileOf(`{"a\\",":${a},"a\\",":${a}}`, one))).toBe('safetensors: tensor "a\\"," appears twice in the header');
  });
});

describe("entry checks, each with its whole message", () => {
  const one = (e: string, data = new Uint8Array(4)) => messageOf(fileOf(`{"t":${e}}`, data));

  it("metadata and entries of the wrong kind", () => {
    expect(messageOf(fileOf('{"__metadata__":null}'))).toBe('safetensors: "__metadata__" must be an object of strings');
    expect(one("5")).toBe('safetensors: tensor "t": entry must be an object');
    expect(one(entry(5 as unknown as string, [1], [0, 4])))
      .toBe('safetensors: tensor "t": unknown dtype 5 (known: F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U64, U32, U16, U8, BOOL)');
  });

  it("shapes: strings, fractions and 65 dimensions refused; 64 dimensions of 1 accepted", () => {
    expect(one(entry("U8", ["4"], [0, 4]))).toBe('safetensors: tensor "t": shape must be a list of non-negative integers, got ["4"]');
    expect(one(entry("U8", [1.5], [0, 4]))).toBe('safetensors: tensor "t": shape must be a list of non-negative integers, got [1.5]');
    expect(one(entry("U8", Array(65).fill(1), [0, 4]))).toBe('safetensors: tensor "t": shape has 65 dimensions, more than the limit of 64');
    const t = readSafetensors(fileOf(`{"t":${entry("U8", Array(64).fill(1), [0, 1])}}`, Uint8Array.of(9))).tensors.get("t")!;
    expect(t.shape.length).toBe(64);
  });

  it("offsets: not a list, one number, a string, begin after end", () => {
    const expected = (got: string) => `safetensors: tensor "t": data_offsets must be [begin, end] with 0 <= begin <= end, got ${got}`;
    expect(one(entry("U8", [4], "0,4"))).toBe(expected('"0,4"'));
    expect(one(entry("U8", [4], [4]))).toBe(expected("[4]"));
    expect(one(entry("U8", [4], [0, "4"]))).toBe(expected('[0, "4"]'));
    expect(one(entry("U8", [0], [4, 0]))).toBe(expected("[4, 0]"));
  });

  it("a size that does not match the offsets names the shape, the bytes needed and given", () => {
    expect(one(entry("F32", [2, 3], [0, 20]), new Uint8Array(20)))
      .toBe('safetensors: tensor "t": F32 of shape [2, 3] needs 24 bytes, data_offsets give 20');
    expect(one(entry("U8", [3], [1, 3]), new Uint8Array(3))).toBe('safetensors: tensor "t": U8 of shape [3] needs 3 bytes, data_offsets give 2');
  });

  it("coverage is checked in offset order, whatever the header's order; an empty tensor at a tensor's start is no overlap", () => {
    const data = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
    const file = fileOf(`{"b":${entry("U8", [4], [4, 8])},"e":${entry("U8", [0], [4, 4])},"a":${entry("U8", [4], [0, 4])}}`, data);
    const { tensors } = readSafetensors(file);
    expect([...tensors.get("a")!.data]).toEqual([1, 2, 3, 4]);
    expect([...tensors.get("b")!.data]).toEqual([5, 6, 7, 8]);
  });
});

describe("reading tensors", () => {
  it("an unknown name lists the names there are, the first 8 and the count beyond", () => {
    const nine = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`n${i}`, { dtype: "U8", shape: [0], data: [] } as TensorToWrite]));
    const bytes = writeSafetensors(nine);
    const header = readSafetensorsHeader(bytes);
    expect(errorOf(() => readTensor(bytes, header, "x")).message)
      .toBe('safetensors: no tensor named "x" (have: n0, n1, n2, n3, n4, n5, n6, n7, … (9 in all))');
    const eight = writeSafetensors(Object.fromEntries(Object.entries(nine).slice(0, 8)));
    expect(errorOf(() => readTensor(eight, readSafetensorsHeader(eight), "x")).message)
      .toBe('safetensors: no tensor named "x" (have: n0, n1, n2, n3, n4, n5, n6, n7)');
    const empty = fileOf("{}");
    expect(errorOf(() => readTensor(empty, readSafetensorsHeader(empty), "x")).message).toBe('safetensors: no tensor named "x" (have: none)');
  });

  it("raw and U8 reads are copies: writing to them leaves the file's bytes as they were", () => {
    const bytes = writeSafetensors({ a: { dtype: "U8", shape: [2], data: [5, 6] }, r: { dtype: "U8", shape: [1], data: [7] } });
    const before = bytes.slice();
    const raw = readSafetensors(bytes, { raw: true }).tensors.get("a")!.data as Uint8Array;
    const decoded = readSafetensors(bytes).tensors.get("r")!.data as Uint8Array;
    raw.fill(0);
    decoded.fill(0);
    expect(bytes).toEqual(before);
  });

  it("a BOOL byte of 2 at element 0 is refused with its index and value", () => {
    const asBool = fileOf(`{"b":${entry("BOOL", [2], [0, 2])}}`, Uint8Array.of(2, 1));
    expect(messageOf(asBool)).toBe('safetensors: tensor "b": BOOL element 0 is 2, expected 0 or 1');
  });
});

describe("the writer", () => {
  const offsetsOf = (bytes: Uint8Array) =>
    Object.fromEntries([...readSafetensorsHeader(bytes).entries].map(([name, e]) => [name, e.offsets]));

  it("tensors of one element size are laid out by name, whatever the order given", () => {
    const t = (v: number): TensorToWrite => ({ dtype: "F32", shape: [1], data: [v] });
    for (const order of [["c", "b", "a"], ["a", "c", "b"], ["b", "a", "c"]]) {
      const bytes = writeSafetensors(new Map(order.map((name, i) => [name, t(i)])));
      expect(offsetsOf(bytes)).toEqual({ a: [0, 4], b: [4, 8], c: [8, 12] });
    }
  });

  it("integers are stored little-endian, two's complement, in their width", () => {
    const bytes = writeSafetensors({
      a: { dtype: "I64", shape: [1], data: [-2n] },
      b: { dtype: "I32", shape: [1], data: [-2] },
      c: { dtype: "I16", shape: [1], data: [-2] },
      d: { dtype: "I8", shape: [2], data: [-2, 127] },
    });
    const data = [...bytes.subarray(bytes.length - 16)];
    expect(data).toEqual([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xfe, 0x7f]);
    const { tensors } = readSafetensors(bytes);
    expect([...tensors.get("a")!.data]).toEqual([-2n]);
    expect([...tensors.get("d")!.data]).toEqual([-2, 127]);
  });

  it("refuses what it cannot write, each with one line", () => {
    const write = (t: TensorToWrite, name = "t") => errorOf(() => writeSafetensors({ [name]: t })).message;
    expect(write({ dtype: "U8", shape: [0], data: [] }, "__metadata__")).toBe('safetensors: "__metadata__" is reserved and cannot name a tensor');
    expect(write({ dtype: "U8", shape: [-1], data: [] })).toBe('safetensors: tensor "t": shape must be a list of non-negative integers, got [-1]');
    expect(write({ dtype: "U8", shape: [1, -1], data: [] })).toBe('safetensors: tensor "t": shape must be a list of non-negative integers, got [1,-1]');
    expect(write(undefined as never)).toBe('safetensors: tensor "t": unknown dtype undefined');
    expect(write({ dtype: "F32", shape: [2, 3], raw: new Uint8Array(4) })).toBe('safetensors: tensor "t": raw must be 24 bytes for F32 [2, 3], got 4');
    expect(write({ dtype: "U8", shape: [1.5], data: [] })).toBe('safetensors: tensor "t": shape must be a list of non-negative integers, got [1.5]');
    expect(write({ dtype: "U8", shape: [1] })).toBe('safetensors: tensor "t": give exactly one of data and raw');
    expect(write({ dtype: "U8", shape: [1], data: [1], raw: Uint8Array.of(1) })).toBe('safetensors: tensor "t": give exactly one of data and raw');
    expect(write({ dtype: "F32", shape: [1], data: ["1" as unknown as number] })).toBe('safetensors: tensor "t": value 0 must be a number for F32, got string');
    expect(write({ dtype: "I8", shape: [1], data: [-129] })).toBe('safetensors: tensor "t": value 0 is -129, not an integer in [-128, 127] for I8');
    expect(write({ dtype: "U8", shape: [1], data: [256] })).toBe('safetensors: tensor "t": value 0 is 256, not an integer in [0, 255] for U8');
    expect(write({ dtype: "I64", shape: [1], data: [2n ** 63n] })).toBe(`safetensors: tensor "t": value 0 is ${2n ** 63n}, not a I64 integer`);
    expect(write({ dtype: "U64", shape: [1], data: [-1n] })).toBe('safetensors: tensor "t": value 0 is -1, not a U64 integer');
  });

  it("shape [0] and raw bytes of the right length are written", () => {
    const bytes = writeSafetensors({ e: { dtype: "U8", shape: [0], data: [] }, r: { dtype: "F32", shape: [2], raw: new Uint8Array(8).fill(0) } });
    expect(offsetsOf(bytes)).toEqual({ r: [0, 8], e: [8, 8] });
    expect(readSafetensors(bytes).tensors.get("r")!.data).toEqual(new Float32Array(2));
    expect(new SafetensorsError("x").name).toBe("SafetensorsError");
  });
});

describe("reading from a file, header first", () => {
  /** An open file of `size` bytes holding `bytes` (zeros past them), refusing reads past its end as the real one does. */
  const fileOf8 = (bytes: Uint8Array, size = bytes.length) => {
    const reads: [number, number][] = [];
    const file: RandomAccessFile = {
      size,
      async read(offset, into) {
        reads.push([offset, into.length]);
        if (offset + into.length > size) throw new FileError("f", `read of ${into.length} bytes at ${offset} is outside the file's ${size} bytes`);
        into.set(bytes.subarray(offset, offset + into.length));
        return into;
      },
    };
    return { file, reads };
  };
  const prefix = (claimed: number) => {
    const p = new Uint8Array(8);
    new DataView(p.buffer).setBigUint64(0, BigInt(claimed), true);
    return p;
  };

  it("a header of exactly MAX_HEADER_BYTES is read (the file ends there); one byte more is refused from the prefix", async () => {
    // A file of 8 + N bytes that ends early: what is asked of it shows whether a header of N bytes was accepted.
    const truncated = (n: number) => {
      const reads: [number, number][] = [];
      const file: RandomAccessFile = {
        size: 8 + n,
        async read(offset, into) {
          reads.push([offset, into.length]);
          if (offset > 0) throw new FileError("f", `ended at byte ${offset} while being read (it had ${8 + n} bytes when opened)`);
          into.set(prefix(n));
          return into;
        },
      };
      return { file, reads };
    };
    const atLimit = truncated(MAX_HEADER_BYTES);
    await expect(readSafetensorsHeaderFrom(atLimit.file)).rejects.toThrow(`f: ended at byte 8 while being read (it had ${8 + MAX_HEADER_BYTES} bytes when opened)`);
    expect(atLimit.reads).toEqual([[0, 8], [8, MAX_HEADER_BYTES]]);
    const over = truncated(MAX_HEADER_BYTES + 1);
    await expect(readSafetensorsHeaderFrom(over.file)).rejects.toThrow(`safetensors: header length ${MAX_HEADER_BYTES + 1} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
    expect(over.reads).toEqual([[0, 8]]);
  });

  it("a file under 8 bytes is refused before any read; one of 8 whose prefix claims more, from the prefix", async () => {
    const five = fileOf8(new Uint8Array(5));
    await expect(readSafetensorsHeaderFrom(five.file)).rejects.toThrow("safetensors: file of 5 bytes is too short for the 8-byte header length");
    expect(five.reads).toEqual([]);
    const eight = fileOf8(prefix(5));
    await expect(readSafetensorsHeaderFrom(eight.file)).rejects.toThrow("safetensors: header length 5 is larger than the 0 bytes after the length prefix");
    expect(eight.reads).toEqual([[0, 8]]);
  });

  it("the header of a whole file: its entries, metadata and where the data starts", async () => {
    const bytes = writeSafetensors({ a: { dtype: "F32", shape: [2], data: [1.5, -2] }, b: { dtype: "U8", shape: [3], data: [1, 2, 3] } }, { note: "n" });
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const { file, reads } = fileOf8(bytes);
    const header = await readSafetensorsHeaderFrom(file);
    expect(header.dataStart).toBe(8 + headerLength);
    expect(Object.fromEntries(header.entries)).toEqual({ a: { dtype: "F32", shape: [2], offsets: [0, 8] }, b: { dtype: "U8", shape: [3], offsets: [8, 11] } });
    expect({ ...header.metadata }).toEqual({ note: "n" });
    expect(reads).toEqual([[0, 8], [8, headerLength]]);
  });

  it("a file written by writeSafetensorsFile reads back whole, decoded or raw", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tinyseek-st-"));
    try {
      const path = join(dir, "t.safetensors");
      const tensors: Record<string, TensorToWrite> = { a: { dtype: "F32", shape: [2], data: [1.5, -2] }, b: { dtype: "U8", shape: [3], data: [1, 2, 3] } };
      await writeSafetensorsFile(path, tensors, { note: "n" });
      expect(await readSafetensorsBytes(path)).toEqual(writeSafetensors(tensors, { note: "n" }));
      const file = await readSafetensorsFile(path);
      expect([...file.tensors.get("a")!.data]).toEqual([1.5, -2]);
      expect([...file.tensors.get("b")!.data]).toEqual([1, 2, 3]);
      expect({ ...file.metadata }).toEqual({ note: "n" });
      expect([...(await readSafetensorsFile(path, { raw: true })).tensors.get("a")!.data]).toEqual([0, 0, 0xc0, 0x3f, 0, 0, 0, 0xc0]);
      const size = statSync(path).size;
      await expect(readSafetensorsBytes(path, size - 1)).rejects.toThrow(`${path}: ${size} bytes, more than the limit of ${size - 1} bytes for a file read whole`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("decodeTensorBytes decodes one tensor's own bytes, and refuses a count its offsets do not give", () => {
    const entry: HeaderEntry = { dtype: "F32", shape: [2], offsets: [4, 12] };
    const stored = Uint8Array.of(0, 0, 0xc0, 0x3f, 0, 0, 0, 0xc0); // 1.5, -2 little-endian
    expect(decodeTensorBytes("t", entry, stored)).toEqual({ dtype: "F32", shape: [2], data: Float32Array.of(1.5, -2) });
    expect(decodeTensorBytes("t", entry, stored, { raw: true }).data).toEqual(stored);
    expect(errorOf(() => decodeTensorBytes("t", entry, stored.subarray(0, 4))).message).toBe('safetensors: tensor "t": expected 8 stored bytes, got 4');
  });
});
