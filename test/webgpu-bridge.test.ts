// WebGPU's synchronous bridge (gpu/sync-bridge.ts through the backend's runSynchronously): bridged kernels give
// what the asynchronous ones give, bit for bit; component golden cases run and pass through it; a kernel's error
// arrives in the worker with its message; dispose tears the worker down. The bridge is for golden component cases
// only: the model runs through the one forward under the asynchronous driver (test/webgpu-model.test.ts).

import { afterAll, describe, expect, it } from "vitest";
import { createBackend } from "../gpu/backend.ts";
import { goldenSuite } from "../src/golden/suite.ts";
import { checkGoldenFile, checkSupport } from "../src/io/golden.ts";
import type { Kernels } from "../src/kernels.ts";
import { quantizeInt } from "../src/quant/int.ts";
import { Random, randBounded } from "../src/random.ts";
import { ropeFrequencies } from "../src/rope.ts";
import type { Tensor } from "../src/tensor.ts";
import { webgpuOrReason } from "./webgpu-support.ts";

const { backend, reason } = await webgpuOrReason();
afterAll(async () => backend?.dispose());

const task = (name: string) => ({ module: new URL("./bridge-tasks.ts", import.meta.url).href, export: name });

describe.skipIf(!backend)(`webgpu sync bridge${reason ? ` (skipped: ${reason})` : ""}`, () => {
  const rng = new Random(11);

  it("gives what the asynchronous kernels give, bit for bit", async () => {
    const x = randBounded(rng, [5, 16]);
    const routing = { k: 2, experts: Int32Array.from([0, 3, 1, 3, 2, 0, 3, 1, 0, 2]), weights: randBounded(rng, [10]).data, kept: Uint8Array.from([1, 1, 1, 0, 1, 1, 1, 1, 0, 1]) };
    const experts = { gate: randBounded(rng, [4, 8, 16]), up: randBounded(rng, [4, 8, 16]), down: randBounded(rng, [4, 16, 8]) };
    const list: { op: keyof Kernels; args: unknown[] }[] = [
      { op: "matmul", args: [x, randBounded(rng, [16, 7])] },
      { op: "bmm", args: [randBounded(rng, [2, 3, 4]), randBounded(rng, [2, 4, 5])] },
      { op: "linear", args: [x, randBounded(rng, [9, 16])] },
      { op: "softmax", args: [x, Uint8Array.from({ length: 80 }, (_, i) => (i % 5 === 0 ? 0 : 1))] },
      { op: "rmsnorm", args: [x, randBounded(rng, [16]), 1e-6] },
      { op: "rope", args: [randBounded(rng, [1, 2, 3, 8]), [4, 5, 6], ropeFrequencies({ dim: 8, theta: 10000 })] },
      { op: "rope", args: [randBounded(rng, [1, 2, 3, 8]), [4, 5, 6], ropeFrequencies({ dim: 8, theta: 10000 }), false] },
      { op: "silu", args: [x] },
      { op: "swiglu", args: [x, randBounded(rng, [5, 16])] },
      { op: "attention", args: [randBounded(rng, [1, 4, 3, 8]), randBounded(rng, [1, 2, 7, 8]), randBounded(rng, [1, 2, 7, 8]), { mask: { causal: true }, logGammas: [-0.1, -0.2, -0.3, -0.4] }] },
      { op: "moe", args: [x, routing, experts] },
      { op: "quantLinear", args: [randBounded(rng, [5, 64]), quantizeInt(randBounded(rng, [6, 64]), 8, 32), { activations: true }] },
    ];
    const got = await backend!.runSynchronously<Tensor[]>(task("calls"), list);
    for (const [i, { op, args }] of list.entries()) {
      const want = await (backend!.asyncKernels[op] as (...a: unknown[]) => Promise<Tensor>)(...args);
      expect(got[i]!.shape, op).toEqual(want.shape);
      expect(Array.from(got[i]!.data), op).toEqual(Array.from(want.data));
    }
  });

  it("runs component golden cases that need synchronous kernels, within their tolerance", async () => {
    const names = ["moe.layer.dropless-shared", "attention.mla.absorb.chunked.3-then-4", "attention.sparse.decode.t27-gqa"];
    for (const c of goldenSuite().filter((s) => names.includes(s.name))) {
      expect(() => c.run(backend!, {}, {}), c.name).toThrow(/no synchronous kernels/); // so the bridge is what ran it
      const result = await checkSupport(c, backend!);
      expect(result.outcome, `${c.name}: ${result.message}`).toBe("ok");
    }
    const file = await checkGoldenFile("spec/golden/attention.segmented.memory.decode.t11-s4-w2-m2.safetensors", goldenSuite(), backend!);
    expect(file.outcome, file.message).toBe("ok");
  });

  it("raises a kernel's error in the worker with its class and message", async () => {
    const [x, bad] = [randBounded(rng, [2, 8]), randBounded(rng, [3, 5])];
    const message = await Promise.resolve().then(() => backend!.asyncKernels.linear(x, bad)).catch((e: Error) => e.message);
    expect(message).toMatch(/^weight: expected .*, got \[3, 5\]$/);
    expect(await backend!.runSynchronously(task("caught"), { op: "linear", args: [x, bad] })).toEqual({ name: "TinyseekError", message, tinyseek: true });
  });

  it("tears the worker down on dispose", async () => {
    const other = await createBackend();
    expect(await other.runSynchronously(task("counts"), { n: 1 })).toBe(1);
    await other.dispose();
    await expect(other.runSynchronously(task("counts"), { n: 1 })).rejects.toThrow("sync bridge: closed");
  });
});
