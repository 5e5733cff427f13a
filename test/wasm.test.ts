// What the property suite cannot see about the WASM backend: memory that stays flat over a long run, weights
// packed once, guard bytes that catch a stray write, threads that give the same bits as one thread, long
// reductions, validation identical to the reference, and a pool that never keeps the process alive.

import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Backend } from "../src/backend.ts";
import { reference, type Kernels } from "../src/kernels.ts";
import { initMoe, moeConfig, moeLayer } from "../src/moe/layer.ts";
import { Random, randBounded } from "../src/random.ts";
import { markConstant, type Tensor } from "../src/tensor.ts";
import { createBackend, wasmStats } from "../wasm/backend.ts";
import { Heap } from "../wasm/heap.ts";
import { WebAssemblyApi } from "../wasm/webassembly.ts";
import { nmse } from "./helpers.ts";


let one: Backend, two: Backend;
let k1: Kernels, k2: Kernels;
beforeAll(async () => {
  one = await createBackend({ threads: 1 });
  two = await createBackend({ threads: 2 });
  [k1, k2] = [one.kernels!, two.kernels!];
});
afterAll(async () => {
  await one.dispose();
  await two.dispose();
});

describe("wasm backend", () => {
  it("keeps memory flat over a long decode-like loop", () => {
    const rng = new Random(1);
    const w = randBounded(rng, [96, 64]), norm = randBounded(rng, [64]);
    let keys = randBounded(rng, [1, 2, 8, 16]);
    const step = () => {
      const x = randBounded(rng, [1, 64]);
      const h = k2.linear(k2.rmsnorm(x, norm, 1e-6), w);
      keys = { shape: [1, 2, keys.shape[2]! + 1, 16], data: Float32Array.from([...keys.data, ...h.data.subarray(0, 32)]) };
      k2.attention(randBounded(rng, [1, 4, 1, 16]), keys, keys, { mask: { causal: true } });
    };
    for (let i = 0; i < 20; i++) step();
    const early = wasmStats(two)!;
    for (let i = 0; i < 150; i++) step();
    const late = wasmStats(two)!;
    // The cache grows by one key per step (a few KiB in all); memory may grow once for it, never per call.
    expect(late.memoryBytes).toBeLessThanOrEqual(early.memoryBytes + 65536);
    expect(late.liveBlocks).toBe(early.liveBlocks); // only the packed weight stays resident
    expect(late.weightBytes).toBe(early.weightBytes);
  });

  it("packs a weight once, finds it again through a view of the same buffer, and evicts beyond its budget", async () => {
    const backend = await createBackend({ threads: 1, weightBudget: 64 * 1024 });
    const rng = new Random(2);
    const stacked = randBounded(rng, [4, 32, 64]); // four [32, 64] weights in one buffer, like the experts
    const x = randBounded(rng, [3, 64]);
    const view = (e: number): Tensor => ({ shape: [32, 64], data: stacked.data.subarray(e * 2048, (e + 1) * 2048) });
    backend.kernels!.linear(x, view(0));
    const once = wasmStats(backend)!.weightBytes;
    backend.kernels!.linear(x, view(0)); // a fresh view object, same bytes: a hit
    expect(wasmStats(backend)!.weightBytes).toBe(once);
    for (let e = 0; e < 4; e++) expect(nmse(backend.kernels!.linear(x, view(e)), reference.linear(x, view(e)))).toBeLessThan(1e-11);
    expect(wasmStats(backend)!.weightBytes).toBeLessThanOrEqual(64 * 1024);
    await backend.dispose();
  });

  it("runs the MoE under a weight budget of about one packed expert weight, as the reference does", async () => {
    const backend = await createBackend({ threads: 1, weightBudget: 40 * 1024 });
    const c = moeConfig({ n_routed_experts: 4, num_experts_per_tok: 2, moe_intermediate_size: 64 });
    const w = initMoe(new Random(4), c, 128, 0.3);
    const x = randBounded(new Random(5), [6, 128]);
    const expected = moeLayer(x, w, c).out;
    for (let i = 0; i < 2; i++) expect(nmse(moeLayer(x, w, c, backend.kernels!).out, expected)).toBeLessThan(1e-11);
    expect(wasmStats(backend)!.weightBytes).toBeLessThanOrEqual(40 * 1024);
    await backend.dispose();
  });

  it("splits work over threads without changing a bit", () => {
    const rng = new Random(3);
    for (const [M, K, N] of [[300, 200, 100], [1, 1024, 1030], [37, 513, 257]]) {
      const a = randBounded(rng, [M, K]), w = randBounded(rng, [N, K]), b = randBounded(rng, [K, N]);
      expect(k2.linear(a, w).data).toEqual(k1.linear(a, w).data);
      expect(k2.matmul(a, b).data).toEqual(k1.matmul(a, b).data); // rows split, or panels packed per chunk
    }
    const a3 = randBounded(rng, [3, 37, 513]), b3 = randBounded(rng, [3, 513, 257]);
    expect(k2.bmm(a3, b3).data).toEqual(k1.bmm(a3, b3).data);
    const q = randBounded(rng, [2, 8, 64, 32]), kv = randBounded(rng, [2, 2, 64, 32]);
    const options = { mask: { causal: true }, logGammas: Array.from({ length: 8 }, (_, h) => -0.01 * (h + 1)) };
    expect(k2.attention(q, kv, kv, options).data).toEqual(k1.attention(q, kv, kv, options).data);
  });

  it("meets the long-reduction bound of spec/golden.md (nmse <= 1e-10 with K = 2048)", () => {
    const rng = new Random(4);
    const a = randBounded(rng, [9, 2048]), b = randBounded(rng, [2048, 33]);
    expect(nmse(k2.matmul(a, b), reference.matmul(a, b))).toBeLessThan(1e-10);
    const q = randBounded(rng, [1, 1, 3, 64]), kv = randBounded(rng, [1, 1, 2048, 64]);
    expect(nmse(k1.attention(q, kv, kv), reference.attention(q, kv, kv))).toBeLessThan(1e-10);
  });

  it("rejects bad arguments with the reference's messages", () => {
    const t = (shape: number[]) => randBounded(new Random(5), shape);
    const calls: [string, (k: Kernels) => unknown][] = [
      ["matmul", (k) => k.matmul(t([2, 3]), t([4, 5]))],
      ["linear", (k) => k.linear(t([2, 3]), t([4, 5]))],
      ["rmsnorm", (k) => k.rmsnorm(t([2, 3]), t([4]), 1e-6)],
      ["attention", (k) => k.attention(t([1, 3, 2, 4]), t([1, 2, 2, 4]), t([1, 2, 2, 4]))],
      ["attention mask", (k) => k.attention(t([1, 1, 2, 4]), t([1, 1, 2, 4]), t([1, 1, 2, 4]), { mask: { lengths: [1, 2] } })],
      ["rope", (k) => k.rope(t([2, 4]), [0, NaN], new Float64Array(2))],
    ];
    for (const [, call] of calls) {
      let expected = "";
      try {
        call(reference);
      } catch (error) {
        expected = (error as Error).message;
      }
      expect(expected).not.toBe("");
      expect(() => call(k1)).toThrow(expected);
    }
  });
});

describe("wasm heap", () => {
  const memory = () => new WebAssemblyApi.Memory({ initial: 1, maximum: 64, shared: true });

  it("catches a write past a buffer's end and poisons fresh buffers with NaN", () => {
    const heap = new Heap(memory(), 1024, true);
    const ptr = heap.alloc(40);
    expect(heap.f32(ptr, 10).every(Number.isNaN)).toBe(true);
    heap.f32(ptr, 10).fill(1);
    heap.verify("clean");
    heap.f32(ptr, 11)[10] = 1; // one element too far
    expect(() => heap.verify("stray")).toThrow(/stray: wrote outside its buffer/);
  });

  it("reuses freed blocks and gives the top back", () => {
    const heap = new Heap(memory(), 1024, false);
    const a = heap.alloc(1000), b = heap.alloc(5000), c = heap.alloc(300);
    heap.release(b);
    expect(heap.alloc(4000)).toBe(b); // first fit in the hole
    heap.release(a);
    heap.release(b);
    heap.release(c);
    expect(heap.alloc(6000)).toBe(a); // coalesced back to one block at the start
    expect(heap.stats().liveBlocks).toBe(1);
  });
});

describe("wasm threads", () => {
  it("runs hundreds of back-to-back pool jobs of every size without a stale or lost chunk", async () => {
    const eager = await createBackend({ threads: 2, parallelFlops: 0 }); // every call goes through the pool
    const rng = new Random(6);
    for (let i = 0; i < 400; i++) {
      const M = 1 + (i % 13), K = 1 + ((i * 7) % 40), N = 1 + ((i * 5) % 37);
      const x = randBounded(rng, [M, K]), w = randBounded(rng, [N, K]);
      expect(eager.kernels!.linear(x, w).data).toEqual(k1.linear(x, w).data);
    }
    await eager.dispose();
  });

  it("never keeps the process alive, disposed or not", () => {
    const script = (dispose: boolean) => `
      import { createBackend } from "./wasm/backend.ts";
      const backend = await createBackend({ threads: 2 });
      const a = { shape: [256, 256], data: new Float32Array(65536).fill(1) };
      backend.kernels.matmul(a, a);
      ${dispose ? "await backend.dispose();" : ""}
      console.log("done");
    `;
    for (const dispose of [true, false]) {
      const out = execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script(dispose)], {
        cwd: new URL("..", import.meta.url),
        timeout: 30_000,
        encoding: "utf8",
      });
      expect(out.trim()).toBe("done");
    }
  });
});

describe("wasm bmm residency", () => {
  it("keeps a constant second operand resident, and packs anything else per call, even when changed in place", async () => {
    const backend = await createBackend({ threads: 1 });
    try {
      const k = backend.kernels!;
      const rng = new Random(8);
      const same = (x: Tensor, y: Tensor) => x.data.forEach((v, i) => expect(Math.abs(v - y.data[i]!)).toBeLessThan(1e-5 * (1 + Math.abs(y.data[i]!))));
      const a = randBounded(rng, [2, 3, 5]);
      const b = randBounded(rng, [2, 5, 4]);
      for (let i = 0; i < 3; i++) {
        b.data[i] = 7 + i; // an activation changed in place between calls: never a stale answer
        same(k.bmm(a, b), reference.bmm(a, b));
      }
      const w = markConstant(randBounded(rng, [2, 5, 4]));
      for (let i = 0; i < 3; i++) same(k.bmm(a, w), reference.bmm(a, w));
    } finally {
      await backend.dispose();
    }
  });
});
