// The synchronous bridge (gpu/sync-bridge.ts) over the reference kernels made asynchronous: no GPU needed, so
// these run everywhere. Results equal the asynchronous kernels' bit for bit, weights cross once, errors keep their
// class and message both ways, events stream, and the worker never outlives its use or keeps the process alive.
// test/webgpu-bridge.test.ts does the same over WebGPU's kernels.

import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { SyncBridge } from "../gpu/sync-bridge.ts";
import { NotSupportedError, type AsyncKernels } from "../src/backend.ts";
import { TinyseekError } from "../src/errors.ts";
import { reference, type Kernels } from "../src/kernels.ts";
import { Random, randBounded } from "../src/random.ts";
import type { Tensor } from "../src/tensor.ts";

const task = (name: string) => ({ module: new URL("./bridge-tasks.ts", import.meta.url).href, export: name });

/** The reference, answering with promises, recording the weight objects linear receives. */
const weightsSeen: Float32Array[] = [];
const asyncReference: AsyncKernels = Object.fromEntries(
  Object.entries(reference).map(([k, f]) => [k, typeof f === "function" ? async (...a: unknown[]) => (f as (...b: unknown[]) => unknown)(...a) : f]),
) as unknown as AsyncKernels;
const kernels: AsyncKernels = {
  ...asyncReference,
  linear: async (x, w) => (weightsSeen.push(w.data), reference.linear(x, w)),
  silu: async (x) => {
    if (x.data[0] === 404) throw new NotSupportedError("silu: not on this backend");
    if (x.data[0] === 500) throw new RangeError("silu: the device ran out");
    if (x.data[0] === 900) return (() => 1) as unknown as Tensor; // cannot be cloned
    return reference.silu(x);
  },
};

const bridge = await SyncBridge.open(kernels);
afterAll(() => bridge.close());

describe("sync bridge", () => {
  const rng = new Random(7);
  const x = randBounded(rng, [3, 8]);
  const w = randBounded(rng, [5, 8]);

  it("gives what the asynchronous kernels give, bit for bit", async () => {
    const q = randBounded(rng, [1, 2, 4, 8]);
    const k = randBounded(rng, [1, 1, 6, 8]);
    const v = randBounded(rng, [1, 1, 6, 8]);
    const list: { op: keyof Kernels; args: unknown[] }[] = [
      { op: "matmul", args: [x, randBounded(rng, [8, 4])] },
      { op: "linear", args: [x, w] },
      { op: "softmax", args: [x, Uint8Array.from({ length: 24 }, (_, i) => i % 3)] },
      { op: "rmsnorm", args: [x, randBounded(rng, [8]), 1e-6] },
      { op: "swiglu", args: [x, randBounded(rng, [3, 8])] },
      { op: "attention", args: [q, k, v, { mask: { causal: true, offset: 5 }, logGammas: [-0.1, -0.2] }] },
    ];
    const got = await bridge.run<Tensor[]>(task("calls"), list);
    for (const [i, { op, args }] of list.entries()) {
      const want = await (kernels[op] as (...a: unknown[]) => Promise<Tensor>)(...args);
      expect(got[i]!.shape, op).toEqual(want.shape);
      expect(Array.from(got[i]!.data), op).toEqual(Array.from(want.data));
    }
  });

  it("sends a weight once: the main thread sees one object for it", async () => {
    weightsSeen.length = 0;
    const [a, b] = await bridge.run<Tensor[]>(task("linearTwice"), { x, w });
    expect(Array.from(a!.data)).toEqual(Array.from(reference.linear(x, w).data));
    expect(b).toEqual(a);
    expect(weightsSeen).toHaveLength(2);
    expect(weightsSeen[0]).toBe(weightsSeen[1]);
  });

  it("raises a kernel's error in the worker as the same class and message", async () => {
    const bad = randBounded(rng, [5, 7]);
    const message = await Promise.resolve().then(() => kernels.linear(x, bad)).catch((e: Error) => e.message);
    expect(message).toMatch(/^weight: expected .*, got \[5, 7\]$/);
    const shape = await bridge.run(task("caught"), { op: "linear", args: [x, bad] });
    expect(shape).toEqual({ name: "TinyseekError", message, tinyseek: true });
    const unsupported = await bridge.run(task("caught"), { op: "silu", args: [{ shape: [1], data: new Float32Array([404]) }] });
    expect(unsupported).toEqual({ name: "NotSupportedError", message: "silu: not on this backend", tinyseek: true });
    const other = await bridge.run(task("caught"), { op: "silu", args: [{ shape: [1], data: new Float32Array([500]) }] });
    expect(other).toEqual({ name: "RangeError", message: "silu: the device ran out", tinyseek: false });
  });

  it("fails the task, with the error's class and message, when the task or the main side fails", async () => {
    await expect(bridge.run(task("throwsTinyseek"), {})).rejects.toThrow(new TinyseekError("n: expected 3, got 4"));
    const unsupported = bridge.run(task("silu"), { shape: [1], data: new Float32Array([404]) });
    await expect(unsupported).rejects.toBeInstanceOf(NotSupportedError);
    await expect(bridge.run(task("silu"), { shape: [1], data: new Float32Array([900]) })).rejects.toThrow(/could not be cloned/);
    await expect(bridge.run(task("returnsFunction"), {})).rejects.toThrow(/could not be cloned/);
    await expect(bridge.run(task("nothing"), {})).rejects.toThrow(/has no function export "nothing"/);
    // and the bridge still works afterwards
    expect(await bridge.run(task("counts"), { n: 2 })).toBe(2);
  });

  it("streams what a task emits", async () => {
    const events: unknown[] = [];
    expect(await bridge.run(task("counts"), { n: 3 }, (e) => events.push(e))).toBe(3);
    expect(events).toEqual([0, 1, 2]);
  });

  it("fails a task in flight when closed, and refuses tasks afterwards", async () => {
    const stuck = await SyncBridge.open({ ...asyncReference, silu: () => new Promise<never>(() => {}) });
    const running = stuck.run(task("silu"), { shape: [1], data: new Float32Array([1]) });
    await new Promise((resolve) => setTimeout(resolve, 200));
    await stuck.close();
    await expect(running).rejects.toThrow(/sync bridge: closed while running silu/);
    await expect(stuck.run(task("counts"), { n: 1 })).rejects.toThrow("sync bridge: closed");
  });
});

describe("sync bridge: the process always exits", () => {
  const run = (mode: string) =>
    promisify(execFile)(process.execPath, ["--import", "tsx", new URL("./bridge-exit.ts", import.meta.url).pathname, mode], { timeout: 20_000 })
      .then(({ stdout }) => ({ code: 0, stdout, stderr: "" }), (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string, killed: e.killed as boolean }));

  it.each(["close", "forget"])("after a task, bridge %s", async (mode) => {
    const result = await run(mode);
    expect(result, result.stderr).toMatchObject({ code: 0, stdout: "done\n" });
  });

  it("when the main thread throws while the worker waits on it", async () => {
    const result = await run("crash");
    expect(result).toMatchObject({ code: 1, killed: false });
    expect(result.stderr).toContain("the main thread failed");
  });
});
