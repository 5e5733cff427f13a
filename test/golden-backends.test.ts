// The committed golden suite (spec/golden) checked on every backend, as `tinyseek golden check spec/golden
// --backend NAME` does: the reference bit for bit, WASM and WebGPU within each case's registered tolerance. Every
// file must pass (none is "not supported": each backend runs every case, WebGPU's component cases through its
// worker). WebGPU without an adapter skips with its reason outside CI and fails under CI=true (test/backend-rows.ts).
// Copies of one file made to fool a check (stripped, loosened, a __proto__ name) fail on every backend.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { referenceBackend, type Backend } from "../src/backend.ts";
import { goldenSuite } from "../src/golden/suite.ts";
import { checkGoldenFile, decodeGolden, encodeGolden } from "../src/io/golden.ts";
import { readSafetensors, writeSafetensors } from "../src/io/safetensors.ts";
import { startBackend, type BackendRow } from "./backend-rows.ts";

const dir = new URL("../spec/golden/", import.meta.url).pathname;
const files = readdirSync(dir).filter((f) => f.endsWith(".safetensors")).sort();
const suite = goldenSuite();

const ROWS: BackendRow<Backend>[] = [
  { name: "reference", create: async () => referenceBackend },
  { name: "wasm", create: async () => (await import("../wasm/backend.ts")).createBackend({ threads: 1 }) },
  { name: "webgpu", create: async () => (await import("../gpu/backend.ts")).createBackend({}), optional: true },
];

/** core.rmsnorm.5x33 stripped of its output, with its output doubled under the loosest tolerance a file may
 *  state, and with one more tensor named `__proto__.polluted`. */
function hostileCopies(): Record<string, string> {
  const tmp = mkdtempSync(join(tmpdir(), "tinyseek-hostile-"));
  const bytes = readFileSync(`${dir}core.rmsnorm.5x33.safetensors`);
  const file = decodeGolden(bytes);
  const y = file.outputs.y!;
  const copies: Record<string, Uint8Array> = {
    stripped: encodeGolden({ ...file, outputs: {}, tolerance: {} }),
    loosened: encodeGolden({ ...file, outputs: { y: { shape: y.shape, data: (y.data as Float32Array).map((v) => 2 * v) } }, tolerance: { y: { rtol: 1, atol: 1, nmse: 1 } } }),
    proto: (() => {
      const { tensors, metadata } = readSafetensors(bytes);
      const named = Object.fromEntries([...tensors].map(([n, t]) => [n, { dtype: t.dtype, shape: t.shape, data: t.data as Float32Array }]));
      return writeSafetensors({ ...named, "__proto__.polluted": { dtype: "F32", shape: [1], data: [1] } }, metadata);
    })(),
  };
  return Object.fromEntries(Object.entries(copies).map(([name, b]) => {
    writeFileSync(join(tmp, `${name}.safetensors`), b);
    return [name, join(tmp, `${name}.safetensors`)];
  }));
}

describe.each(ROWS)("spec/golden on $name", (row) => {
  const started = startBackend(row, (b) => b.dispose());

  it.for(files)("%s", async (file, context) => {
    const backend = started.ready(context);
    const result = await checkGoldenFile(`${dir}${file}`, suite, backend);
    expect(result.outcome, result.message).toBe("ok");
    expect(result.comparisons.length).toBeGreaterThan(0);
  });

  it("fails a stripped, a loosened and a __proto__ copy of a file", async (context) => {
    const backend = started.ready(context);
    const messages: Record<string, RegExp> = {
      stripped: /^output\.y: not in the golden file, although case "core\.rmsnorm\.5x33" defines it$/,
      loosened: /^output\.y: 165 of 165 elements mismatch/,
      proto: /tensor "__proto__\.polluted" is not named input\.\*, param\.\* or output\.\*/,
    };
    for (const [name, path] of Object.entries(hostileCopies())) {
      const result = await checkGoldenFile(path, suite, backend);
      expect(result.outcome, name).toBe("fail");
      expect(result.message, name).toMatch(messages[name]!);
    }
    expect((({}) as Record<string, unknown>).polluted).toBeUndefined();
  });
});
