// Files chosen to hang or exhaust a reader (issue 18, items 5 and 6): every command that reads a safetensors file
// refuses a FIFO, a device, a directory and an oversized file at once with one line, reads the header before the
// data, and quotes untrusted header values in short excerpts.

import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { formatTable } from "../src/cli/table.ts";
import { MAX_FILE_BYTES, type RandomAccessFile } from "../src/io/files.ts";
import {
  excerpt, MAX_HEADER_BYTES, MAX_RANK, MAX_TENSORS, readSafetensors, readSafetensorsFrom, SafetensorsError, writeSafetensors,
} from "../src/io/safetensors.ts";
import { cli, safetensorsErrorOf as errorOf } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "tinyseek-hostile-"));
const good = join(dir, "good.safetensors");
writeFileSync(good, writeSafetensors({ w: { dtype: "F32", shape: [2], data: [1, 2] } }));

/** A hang fails the test after this long instead of blocking the run (the refusals take milliseconds). */
const FAST = 5_000;

const oneLine = (err: string) => {
  expect(err.split("\n")).toHaveLength(1);
  expect(err.length).toBeLessThan(400);
};

/** A file built by hand: the 8-byte length, the header text, then `data` bytes. */
function fileOf(header: string, data = 0): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + data);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}


describe("paths that are not regular files", () => {
  const fifo = join(dir, "fifo");
  const hasMkfifo = process.platform !== "win32" && (() => {
    try {
      execFileSync("mkfifo", [fifo]);
      return true;
    } catch {
      return false;
    }
  })();

  it.runIf(existsSync("/dev/zero"))("/dev/zero is refused as a character device by every reader, at once", { timeout: FAST }, async () => {
    const runs = [
      ["inspect", "/dev/zero"], ["diff", "/dev/zero", good], ["diff", good, "/dev/zero"],
      ["golden", "compare", "/dev/zero", good],
      ["step", "--weights", "/dev/zero"], ["step", "--config", "/dev/zero"], ["step", "--prompt-file", "/dev/zero"],
    ];
    for (const argv of runs) {
      const { code, err } = await cli(...argv);
      expect(code, argv.join(" ")).toBe(1);
      expect(err, argv.join(" ")).toMatch(/\/dev\/zero"?: a character device, not a regular file/);
      oneLine(err);
    }
    // golden check reports each file it was given as a row of its table, this one failed with the reason.
    const check = await cli("golden", "check", "/dev/zero", "--backend", "reference");
    expect(check.code).toBe(1);
    expect(check.out).toContain("/dev/zero: a character device, not a regular file");
  });

  it.runIf(hasMkfifo)("a FIFO is refused without blocking on it (no writer ever comes)", { timeout: FAST }, async () => {
    for (const argv of [["inspect", fifo], ["diff", fifo, good], ["golden", "compare", fifo, good], ["generate", "--prompt", "a", "--weights", fifo]]) {
      const { code, err } = await cli(...argv);
      expect(code, argv.join(" ")).toBe(1);
      expect(err, argv.join(" ")).toContain(`${fifo}: a FIFO (named pipe), not a regular file`);
      oneLine(err);
    }
  });

  it("a directory is named as one, for a file argument and for --config", { timeout: FAST }, async () => {
    const inspect = await cli("inspect", dir);
    expect(inspect.err).toBe(`tinyseek inspect: ${dir}: a directory, not a regular file`);
    const config = await cli("step", "--config", dir);
    expect(config.code).toBe(1);
    expect(config.err).toMatch(new RegExp(`--config: expected a preset \\(tiny, .*\\) or a JSON config file, got "${dir}": a directory, not a regular file$`));
  });

  it("a file above the size limit is refused from its size alone (a sparse file: nothing is read)", { timeout: FAST }, async () => {
    const big = join(dir, "big.safetensors");
    writeFileSync(big, "");
    truncateSync(big, MAX_FILE_BYTES + 1);
    const { code, err } = await cli("inspect", big);
    expect(code).toBe(1);
    expect(err).toBe(`tinyseek inspect: ${big}: ${MAX_FILE_BYTES + 1} bytes, more than the limit of ${MAX_FILE_BYTES} bytes for a file read whole`);
    truncateSync(big, 0);
  });
});

describe("reading the header first", () => {
  /** An in-memory file that records every read it serves. */
  const recorded = (bytes: Uint8Array, size = bytes.length) => {
    const reads: [number, number][] = [];
    const file: RandomAccessFile = {
      size,
      async read(offset, into) {
        reads.push([offset, offset + into.length]);
        into.set(bytes.subarray(offset, offset + into.length));
        return into;
      },
    };
    return { file, reads };
  };

  it("reads the length, then the header, then the data region it describes, and nothing else", async () => {
    const bytes = writeSafetensors({ a: { dtype: "F32", shape: [3], data: [1, 2, 3] }, b: { dtype: "I8", shape: [2], data: [4, 5] } });
    const { file, reads } = recorded(bytes);
    const { bytes: read, header } = await readSafetensorsFrom(file);
    expect(read).toEqual(bytes);
    expect(reads).toEqual([[0, 8], [8, header.dataStart], [header.dataStart, bytes.length]]);
  });

  it("an absurd header length is refused after reading its 8 bytes; a bad header before any data is read", async () => {
    // A 1 TB file claiming a 500 MB header: refused from the prefix alone.
    const prefix = new Uint8Array(8);
    new DataView(prefix.buffer).setBigUint64(0, 500_000_000n, true);
    const absurd = recorded(prefix, 1e12);
    await expect(readSafetensorsFrom(absurd.file)).rejects.toThrow(`header length 500000000 exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
    expect(absurd.reads).toEqual([[0, 8]]);
    // A header that is not JSON, in front of a claimed gigabyte of data: the data is never read (nor allocated).
    const broken = fileOf(`{"a":`);
    const bad = recorded(broken, broken.length + 1e9);
    await expect(readSafetensorsFrom(bad.file)).rejects.toThrow(/header is not valid JSON/);
    expect(bad.reads).toEqual([[0, 8], [8, broken.length]]);
  });
});

describe("headers built to explode", () => {
  it("a value nested 100,000 deep is quoted as a short excerpt, not stringified (which overflows the stack)", () => {
    const deep = `${"[".repeat(100_000)}${"]".repeat(100_000)}`;
    for (const [header, pattern] of [
      [`{"a":{"dtype":"F32","shape":${deep},"data_offsets":[0,0]}}`, /tensor "a": shape must be a list of non-negative integers, got \[\[\[…\]\]\]$/],
      [`{"a":{"dtype":${deep},"shape":[],"data_offsets":[0,0]}}`, /tensor "a": unknown dtype \[\[\[…\]\]\]/],
      [`{"a":{"dtype":"F32","shape":[0],"data_offsets":${deep}}}`, /data_offsets must be .*, got \[\[\[…\]\]\]$/],
      [`{"__metadata__":{"k":${deep}}}`, /"__metadata__.k" must be a string, got \[\[\[…\]\]\]$/],
    ] as const) {
      const error = errorOf(() => readSafetensors(fileOf(header)));
      expect(error.message).toMatch(pattern);
      expect(error.message.length).toBeLessThan(300);
    }
  });

  it("a million-entry shape is refused by its rank, in a short line", () => {
    const shape = `[${"1,".repeat(999_999)}1]`;
    const error = errorOf(() => readSafetensors(fileOf(`{"a":{"dtype":"F32","shape":${shape},"data_offsets":[0,4]}}`, 4)));
    expect(error.message).toBe(`safetensors: tensor "a": shape has 1000000 dimensions, more than the limit of ${MAX_RANK}`);
  });

  it("a long or hostile tensor name is quoted short and escaped", () => {
    const name = `\u001b[31m${"n".repeat(1_000_000)}`;
    const error = errorOf(() => readSafetensors(fileOf(`{${JSON.stringify(name)}:{"dtype":"F32","shape":[1],"data_offsets":[0,3]}}`, 3)));
    expect(error.message).toMatch(/^safetensors: tensor "\\u001b\[31mnnnn.*…: F32 of shape \[1\] needs 4 bytes, data_offsets give 3$/);
    expect(error.message.length).toBeLessThan(200);
    expect(error.message).not.toContain("\u001b");
  });

  const zeroSized = (n: number) => fileOf(`{${Array.from({ length: n }, (_, i) => `"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`).join(",")}}`);

  it("more tensors than the limit are refused with their count", () => {
    const error = errorOf(() => readSafetensors(zeroSized(MAX_TENSORS + 1)));
    expect(error.message).toBe(`safetensors: header lists ${MAX_TENSORS + 1} tensors, more than the limit of ${MAX_TENSORS}`);
  });

  it("inspect lists thousands of tensors; tables take any number of rows (200,000 overflowed Math.max(...rows))", async () => {
    const path = join(dir, "many.safetensors");
    writeFileSync(path, zeroSized(20_000));
    const { code, out } = await cli("inspect", path);
    expect(code).toBe(0);
    expect(out.split("\n")[0]).toBe(`${path}: 20000 tensor(s), ${zeroSized(20_000).length} bytes`);
    const table = formatTable(Array.from({ length: 200_000 }, (_, i) => ({ name: `t${i}`, n: i })));
    expect(table.split("\n")).toHaveLength(200_002);
  });

  it("inspect and diff show names from the file inert and short: no terminal escapes, no 1 MB cells", async () => {
    const path = join(dir, "escapes.safetensors");
    const name = `\u001b]0;owned\u0007${"n".repeat(1_000_000)}`;
    writeFileSync(path, writeSafetensors({ [name]: { dtype: "F32", shape: [1], data: [1] } }, { ["\u001b[2J"]: "\u001b[31mred" }));
    for (const argv of [["inspect", path], ["diff", path, good]]) {
      const { code, out } = await cli(...argv);
      expect(code, argv[0]).toBeLessThanOrEqual(1);
      expect(out, argv[0]).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
      expect(out.length, argv[0]).toBeLessThan(5_000);
      expect(out, argv[0]).toContain("␛]0;owned␇nnn");
    }
  });

  it("excerpts stay short for any value", () => {
    expect(excerpt("a")).toBe('"a"');
    expect(excerpt([1, 2, 3, 4, 5, 6])).toBe("[1, 2, 3, 4, … (6 items)]");
    expect(excerpt({ a: 1, b: [2], c: { d: [3] }, e: 4 })).toBe('{"a": 1, "b": [2], "c": {"d": […]}, … (4 keys)}');
    expect(excerpt("x".repeat(1000)).length).toBeLessThanOrEqual(60);
  });
});
