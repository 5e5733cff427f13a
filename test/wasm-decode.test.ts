// Decode on WASM, every attention kind (issue 17): a decode step allocates no block of WASM memory once the weights
// it uses are resident (values come from the device kernels' pool, temporaries from the arena), and splitting a
// step's products over two threads changes no bit of the logits.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCache, releaseCache } from "../src/model/cache.ts";
import { forward } from "../src/model/forward.ts";
import { createBackend, type WasmBackend } from "../wasm/backend.ts";
import { KEPT_FORWARDS } from "../wasm/device-kernels.ts";
import { ATTENTION_KINDS, modelOfKind } from "./model-rows.ts";

const PROMPT = [256, 65, 108, 105, 99, 101, 32, 119, 97, 115];
const allocations = (b: WasmBackend) => (b.stats() as { allocations?: number }).allocations;

let one: WasmBackend, two: WasmBackend;
beforeAll(async () => {
  one = await createBackend({ threads: 1 });
  // parallelFlops 0: every product with more than one tile goes to the pool, however small; expertFlops 0: every
  // MoE call with two experts or more splits them over the pool.
  two = await createBackend({ threads: 2, parallelFlops: 0, expertFlops: 0 });
});
afterAll(async () => {
  await one?.dispose();
  await two?.dispose();
});

describe("decode on wasm", () => {
  it.for(ATTENTION_KINDS.filter((k) => k.name !== "segmented"))("$name: a decode step allocates no WASM memory once its weights are resident", (k) => {
    const model = modelOfKind(k);
    // Every expert and weight made resident first: a long prompt routes a token to each expert.
    forward(model, Array.from({ length: 60 }, (_, i) => (i * 37) % 256), { backend: one });
    const cache = createCache(model.config, { backend: one, capacity: 40 });
    forward(model, PROMPT, { backend: one, cache });
    for (let i = 0; i < 3; i++) forward(model, [40 + i], { backend: one, cache }); // pool size classes and arena settle
    const before = allocations(one);
    expect(typeof before).toBe("number");
    for (let i = 3; i < 20; i++) forward(model, [40 + ((i * 11) % 80)], { backend: one, cache });
    expect(allocations(one)).toBe(before);
    releaseCache(cache);
  });

  // A segment's first token pools the memory and moves the window: temporaries of sizes the steps between do not use.
  // The pool keeps their size classes for 16 forwards, so a segment start within them allocates nothing either; one
  // after them gets them back from the heap, and gives them back again.
  it("segmented: only a segment's first token allocates, and what it allocates it gives back (no growth)", () => {
    const model = modelOfKind(ATTENTION_KINDS.find((r) => r.name === "segmented")!);
    const S = model.config.segment_size;
    forward(model, Array.from({ length: 60 }, (_, i) => (i * 37) % 256), { backend: one });
    const cache = createCache(model.config, { backend: one, capacity: 60 });
    forward(model, PROMPT, { backend: one, cache });
    // Past the prompt's own sizes, which the pool keeps KEPT_FORWARDS forwards.
    for (let i = 0; i < 2 * S + KEPT_FORWARDS; i++) forward(model, [40 + (i % 80)], { backend: one, cache });
    const live: number[] = [];
    for (let i = 0; i < 4 * S; i++) {
      const [position, before] = [cache.length, allocations(one)!];
      forward(model, [40 + ((i * 11) % 80)], { backend: one, cache });
      if (position % S !== 0) expect(allocations(one), `position ${position}`).toBe(before);
      else live.push((one.stats() as { liveBytes: number }).liveBytes);
    }
    expect(live.length).toBe(4);
    expect(new Set(live).size, `live bytes after each segment start: ${live}`).toBe(1);
    releaseCache(cache);
  });

  it.for(ATTENTION_KINDS)("$name: two threads splitting every product give the same logits as one, bit for bit", (k) => {
    const model = modelOfKind(k);
    const decode = (b: WasmBackend) => {
      const cache = createCache(model.config, { backend: b });
      const logits = [forward(model, PROMPT, { backend: b, cache }).logits.data];
      for (let i = 0; i < 6; i++) logits.push(forward(model, [50 + 7 * i], { backend: b, cache }).logits.data);
      releaseCache(cache);
      return logits;
    };
    const [serial, split] = [decode(one), decode(two)];
    split.forEach((step, i) => expect(step, `step ${i}`).toEqual(serial[i]));
  });
});
