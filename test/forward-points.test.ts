// The one forward's drivers and hook points (spec/device.md): the synchronous driver refuses a backend that reads
// asynchronously and still gives its values back; the asynchronous driver runs the same generator to the same bits;
// hooks read and replace named values, cost nothing where nobody listens, and the trace records what flowed.
import { describe, expect, it } from "vitest";
import type { DeviceKernels } from "../src/device/kernels.ts";
import { opsOver } from "../src/device/ops.ts";
import { referenceDevice } from "../src/device/reference.ts";
import { createCache, releaseCache } from "../src/model/cache.ts";
import { forward, forwardAsync } from "../src/model/forward.ts";
import { generate, generateAsync } from "../src/model/generate.ts";
import { initModel, type Model } from "../src/model/weights.ts";
import type { Tensor } from "../src/tensor.ts";
import { createTrace } from "../src/trace.ts";
import { testConfig } from "./model-fixtures.ts";
import { thrown } from "./helpers.ts";

const TOKENS = [256, 72, 101, 108, 108, 111, 33];

/** The reference's kernels, counting reads and values made and given back; reads answer with a promise when asked. */
function counted(asynchronous: boolean) {
  const live = new Set<Tensor>();
  const count = { reads: 0, made: 0 };
  const track = <T extends Tensor | Tensor[]>(x: T): T => {
    for (const t of Array.isArray(x) ? x : [x]) {
      count.made++;
      live.add(t);
    }
    return x;
  };
  const wrapped = Object.fromEntries(Object.entries(referenceDevice).map(([name, f]) => {
    if (typeof f !== "function" || ["weight", "read", "release", "free", "writeRows", "gemm", "view"].includes(name)) return [name, f];
    return [name, (...args: unknown[]) => track((f as (...a: unknown[]) => Tensor)(...args))];
  })) as unknown as DeviceKernels<Tensor>;
  const kernels: DeviceKernels<Tensor> = {
    ...wrapped,
    name: asynchronous ? "async-reference" : "counting-reference",
    read(x) {
      count.reads++;
      return asynchronous ? Promise.resolve(x.data) : x.data;
    },
    release: (...xs) => xs.forEach((x) => live.delete(x)),
    free: (x) => live.delete(x),
  };
  return { backend: { ops: opsOver(kernels) }, count, live };
}

const models = new Map<string, Model>();
const model = (kind: "mla" | "mha" = "mla", overrides = {}) => {
  const key = kind + JSON.stringify(overrides);
  if (!models.has(key)) models.set(key, initModel(testConfig({ attention_kind: kind, init_std: 0.3, ...overrides })));
  return models.get(key)!;
};

describe("drivers", () => {
  it("the asynchronous driver runs the same forward to the same bits", async () => {
    const { backend } = counted(true);
    const trace = [createTrace("*"), createTrace("*")];
    const sync = forward(model(), TOKENS, { trace: trace[0] });
    const cache = createCache(model().config, { backend });
    const asyncResult = await forwardAsync(model(), TOKENS, { backend, cache, trace: trace[1] });
    expect(asyncResult.logits.data).toEqual(sync.logits.data);
    expect([...trace[1]!.tensors.keys()]).toEqual([...trace[0]!.tensors.keys()]);
    const decoded = await generateAsync(model(), TOKENS, { maxTokens: 6, backend });
    expect(decoded.tokens).toEqual(generate(model(), TOKENS, { maxTokens: 6 }).tokens);
  });

  it("the synchronous driver refuses a backend that reads asynchronously, in one line, and gives its values back", () => {
    const { backend, live } = counted(true);
    const message = thrown(() => forward(model(), TOKENS, { backend }));
    expect(message).toBe('backend "async-reference" reads its values asynchronously: use the asynchronous form (forwardAsync, generateAsync)');
    expect(live.size).toBe(0);
  });

  it("gives every value back, also when a forward fails half-way", () => {
    const { backend, live, count } = counted(false);
    forward(model(), TOKENS, { backend });
    expect(count.made).toBeGreaterThan(50);
    expect(live.size).toBe(0);
    const failing = { "layers.1.attn.out": () => { throw new Error("hook failed"); } };
    expect(() => forward(model(), TOKENS, { backend, hooks: failing })).toThrow("hook failed");
    expect(live.size).toBe(0);
  });

  it("a cache with a layer that cannot drop positions (segmented) is refused after a forward through it failed half-way", () => {
    const m = model("mla", { attention_kind: ["mla", "segmented", "mla"] });
    const cache = createCache(m.config);
    forward(m, TOKENS.slice(0, 3), { cache });
    expect(() => forward(m, TOKENS.slice(3), { cache, hooks: { "layers.2.attn.in": () => { throw new Error("stop"); } } })).toThrow("stop");
    expect(thrown(() => forward(m, TOKENS.slice(3), { cache }))).toBe("cache: a forward through it failed half-way; start again with a new cache");
    const device = createCache(model().config);
    forward(model(), TOKENS.slice(0, 3), { cache: device });
    expect(() => forward(model(), TOKENS.slice(3), { cache: device, hooks: { "layers.2.attn.in": () => { throw new Error("stop"); } } })).toThrow("stop");
    expect(forward(model(), TOKENS.slice(3), { cache: device }).logits.data).toEqual(forward(model(), TOKENS).logits.data.slice(3 * 260));
  });

  it("refuses a cache capacity or a backend that is not one, in one line naming it", () => {
    const c = model().config;
    expect(thrown(() => createCache(c, { capacity: -1 }))).toBe("capacity: expected an integer in [0, 64], got -1");
    expect(thrown(() => createCache(c, { capacity: 1.5 }))).toBe("capacity: expected an integer in [0, 64], got 1.5");
    expect(thrown(() => createCache(c, { capacity: 65 }))).toBe("capacity: expected an integer in [0, 64], got 65");
    const notBackend = { name: "wasm" } as unknown as NonNullable<NonNullable<Parameters<typeof forward>[2]>["backend"]>;
    expect(thrown(() => forward(model(), TOKENS, { backend: notBackend }))).toBe("backend: expected a Backend from loadBackend (with ops), got an object without ops");
  });

  it("a cache runs only on the backend it was made for", () => {
    const { backend } = counted(false);
    const cache = createCache(model().config);
    expect(thrown(() => forward(model(), TOKENS, { backend, cache }))).toBe('cache: expected a cache made for backend "counting-reference" (createCache(config, { backend })), got one for "reference"');
    releaseCache(cache);
    expect(thrown(() => forward(model(), TOKENS, { cache }))).toMatch(/^cache: expected a cache of 3 layers/);
  });
});

describe("hook points", () => {
  it("an identity hook at every point changes nothing, bit for bit, and sees every point in forward order", () => {
    const seen: string[] = [];
    const base = forward(model(), TOKENS);
    const hooked = forward(model(), TOKENS, { hooks: { "*": (value, { name }) => (seen.push(name), { shape: value.shape, data: value.data.slice() }) } });
    expect(hooked.logits.data).toEqual(base.logits.data);
    expect(seen.slice(0, 9)).toEqual(["embed", "layers.0.in", "layers.0.attn.in", "layers.0.attn.latent", "layers.0.attn.k_pe",
      "layers.0.attn.scores", "layers.0.attn.probs", "layers.0.attn.heads", "layers.0.attn.out"]);
    expect(seen).toContain("layers.2.mlp.router.logits");
    expect(seen.slice(-2)).toEqual(["norm", "logits"]);
  });

  it("a point nobody listens to is never read back", () => {
    const quiet = counted(false);
    forward(model(), TOKENS, { backend: quiet.backend, exitThreshold: null });
    // The router's logits of the two MoE layers and the logits: nothing else crosses.
    expect(quiet.count.reads).toBe(3);
    const listening = counted(false);
    forward(model(), TOKENS, { backend: listening.backend, exitThreshold: null, hooks: { "layers.1.attn.out": () => {} } });
    expect(listening.count.reads).toBe(4);
  });

  it("zeroing a layer's attention output equals a zero output projection; the trace records what flowed", () => {
    const m = model();
    const zero = (v: Tensor) => ({ shape: v.shape, data: new Float32Array(v.data.length) });
    const trace = createTrace("layers.1.attn.out");
    const hooked = forward(m, TOKENS, { trace, hooks: { "layers.1.attn.out": zero } });
    const layers = m.weights.layers.map((layer, l) => l !== 1 ? layer : { ...layer, self_attn: { ...layer.self_attn, o_proj: zero(layer.self_attn.o_proj!) } });
    const silenced = forward({ config: m.config, weights: { ...m.weights, layers } }, TOKENS);
    expect(hooked.logits.data).toEqual(silenced.logits.data);
    expect(hooked.logits.data).not.toEqual(forward(m, TOKENS).logits.data);
    expect(trace.tensors.get("layers.1.attn.out")!.data.every((v) => v === 0)).toBe(true);
  });

  it("a replaced router logit routes: one expert's logit far above the others makes every token choose it", () => {
    const E = model().config.n_routed_experts;
    const favour = (v: Tensor) => ({ shape: v.shape, data: v.data.map((_, i) => (i % E === 5 ? 50 : -50)) });
    const trace = createTrace("layers.1.mlp.router.indices");
    forward(model(), TOKENS, { trace, hooks: { "layers.1.mlp.router.logits": favour } });
    const chosen = trace.tensors.get("layers.1.mlp.router.indices")!;
    const k = chosen.shape[1]!;
    for (let t = 0; t < TOKENS.length; t++) expect(Array.from(chosen.data.subarray(t * k, (t + 1) * k))).toContain(5);
  });

  it("hooks run on the asynchronous driver too, with the same result", async () => {
    const { backend } = counted(true);
    const scale = (v: Tensor) => ({ shape: v.shape, data: v.data.map((x) => 0.5 * x) });
    const hooks = { "layers.0.out": scale };
    expect((await forwardAsync(model(), TOKENS, { backend, hooks })).logits.data).toEqual(forward(model(), TOKENS, { hooks }).logits.data);
  });

  it("a replacement of the wrong shape, or hooks that are not functions, are one line naming the point", () => {
    expect(thrown(() => forward(model(), TOKENS, { hooks: { "layers.0.attn.out": () => ({ shape: [1], data: new Float32Array(1) }) } })))
      .toBe("hook at layers.0.attn.out: expected a tensor of shape [7, 32] with Float32Array data, or nothing, got [1]");
    expect(thrown(() => forward(model(), TOKENS, { hooks: { norm: 3 as unknown as () => void } })))
      .toBe('hooks["norm"]: expected a function (value, context) => replacement or nothing, got "number"');
    expect(thrown(() => forward(model(), TOKENS, { hooks: [["norm"]] as unknown as Record<string, () => void> })))
      .toBe('hooks["norm"]: expected a function (value, context) => replacement or nothing, got "undefined"');
    expect(thrown(() => forward(model(), TOKENS, { hooks: [[3, () => {}]] as unknown as Record<string, () => void> })))
      .toBe('hooks[0]: expected a [pattern, hook] pair with a non-empty glob pattern, got "number"');
  });
});
