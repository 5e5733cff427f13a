// The whole model on every backend, one describe.each (spec/device.md): every row runs the one forward and must
// give the same logits, greedy tokens, experts and exit layers as the reference, prefill equal to token-by-token
// decode through its own cache, and memory that stays flat over 200 decode steps. The reference row itself is held
// to an independent forward written below from the component functions (src/attention/mla.ts, src/moe/layer.ts,
// plain attention loops), so no row is compared with itself.
import { describe, expect, it } from "vitest";
import { attention as sdpa } from "../src/attention/attention.ts";
import { splitHeads, mergeHeads } from "../src/attention/heads.ts";
import { createMlaCache, mla, yarnOptions, type MlaWeights } from "../src/attention/mla.ts";
import { referenceBackend, type Backend } from "../src/backend.ts";
import type { WasmBackend } from "../wasm/backend.ts";
import type { WebGpuBackend } from "../gpu/backend.ts";
import { causal } from "../src/masks.ts";
import { createCache, releaseCache } from "../src/model/cache.ts";
import { headDim, isMoeLayer, moeConfigOf } from "../src/model/config.ts";
import { decayGammas } from "../src/model/mha.ts";
import { forward, forwardAsync, type ForwardResult } from "../src/model/forward.ts";
import { attachBottlenecks, attachLora, initModelBottlenecks, initModelLora } from "../src/lora.ts";
import { quantizeModel } from "../src/quant/model.ts";
import { Random, randBounded } from "../src/random.ts";
import { generate, generateAsync } from "../src/model/generate.ts";
import { initModel, type DenseMlpWeights, type Model } from "../src/model/weights.ts";
import { moeConfig, moeLayer, type MoeWeights } from "../src/moe/layer.ts";
import { swigluMlp } from "../src/moe/experts.ts";
import { embedding, linear, rmsnorm } from "../src/ops.ts";
import { applyRope, ropeFrequencies, yarnSoftmaxFactor } from "../src/rope.ts";
import { add, reshape, type Tensor } from "../src/tensor.ts";
import { createTrace } from "../src/trace.ts";
import { opsOver } from "../src/device/ops.ts";
import { reference } from "../src/kernels.ts";
import { tfjsKernels } from "../train/tfjs-kernels.ts";
import { setUpTfjs } from "../train/tfjs.ts";
import { startBackend } from "./backend-rows.ts";
import { argmaxRows, cli, nmse } from "./helpers.ts";
import { testConfig } from "./model-fixtures.ts";
import { ATTENTION_KINDS, modelOfKind, type KindRow } from "./model-rows.ts";

interface Row {
  name: string;
  create: () => Promise<Backend>;
  /** Bytes the backend holds for values now (pooled or live), for the flat-memory scenario; absent: it has no pool. */
  memory?: (b: Backend) => number;
  optional?: boolean;
}

const ROWS: Row[] = [
  { name: "reference", create: async () => referenceBackend },
  {
    name: "wasm",
    create: async () => (await import("../wasm/backend.ts")).createBackend({ threads: 1 }),
    memory: (b) => (b as WasmBackend).stats().liveBytes + (b as WasmBackend).stats().memoryBytes,
  },
  {
    // The build Node 22+ and browsers load (its fused multiply-add rounds once): its tokens must still be the
    // reference's. Two threads, every product through the pool, check mode (test/wasm-relaxed.ts).
    name: "wasm relaxed",
    create: async () => (await import("./wasm-relaxed.ts")).relaxedWasm(),
    optional: true,
  },
  {
    // Training's backend: tfjs-backend-wasm through src/device/kernels.ts (train/tfjs-kernels.ts). Its values are
    // tf tensors that a tidy scope frees, so it keeps no pool of its own to watch.
    name: "tfjs",
    create: async () => {
      await setUpTfjs();
      const ops = opsOver(tfjsKernels());
      return { name: "tfjs", description: "tfjs-backend-wasm", ops, asyncKernels: reference, dispose: async () => {} } as unknown as Backend;
    },
  },
  {
    name: "webgpu",
    create: async () => (await import("../gpu/backend.ts")).createBackend({}),
    memory: (b) => (b as WebGpuBackend).context.stats().bytes + (b as WebGpuBackend).context.stats().created,
    optional: true,
  },
];

const label = (k: KindRow) => k.name;

const PROMPT = [256, 65, 108, 105, 99, 101, 32, 119, 97, 115, 32, 98, 101];
const models = new Map<string, Model>();
function modelFor(k: KindRow): Model {
  const key = label(k);
  if (!models.has(key)) models.set(key, modelOfKind(k));
  return models.get(key)!;
}

/** The model from its component functions, one whole sequence, on the host: the reference row's independent check. */
function naiveForward(model: Model, tokens: number[]): Tensor {
  const { config: c, weights } = model;
  const T = tokens.length;
  let h = embedding(weights.embed_tokens, tokens);
  const moe = moeConfig(moeConfigOf(c));
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const w = weights.layers[l]!;
    const x = rmsnorm(h, w.input_layernorm, c.rms_norm_eps);
    let attn: Tensor;
    if (c.attention_kind === "mla") {
      attn = reshape(mla(reshape(x, [1, T, c.hidden_size]), w.self_attn as unknown as MlaWeights, c, createMlaCache(c, c.mla_mode), undefined, c.mla_mode), [T, c.hidden_size]);
    } else {
      const [H, Hkv, Dh] = [c.num_attention_heads, c.num_key_value_heads, headDim(c)];
      const x3 = reshape(x, [1, T, c.hidden_size]);
      const freqs = ropeFrequencies({ dim: Dh, theta: c.rope_theta, yarn: yarnOptions(c) });
      const positions = Array.from({ length: T }, (_, t) => t);
      const [q] = splitHeads(linear(x3, w.self_attn.q_proj!), H, [Dh]);
      const [k] = splitHeads(linear(x3, w.self_attn.k_proj!), Hkv, [Dh]);
      const [v] = splitHeads(linear(x3, w.self_attn.v_proj!), Hkv, [Dh]);
      const logGammas = c.attention_kind === "decay" ? decayGammas(c).map(Math.log) : undefined;
      const out = sdpa(applyRope(q!, positions, freqs), applyRope(k!, positions, freqs), v!, {
        mask: causal(T), logGammas, offset: 0, scale: yarnSoftmaxFactor(yarnOptions(c)) / Math.sqrt(Dh),
      }).out;
      attn = reshape(linear(mergeHeads(out), w.self_attn.o_proj!), [T, c.hidden_size]);
    }
    h = add(h, attn);
    const y = rmsnorm(h, w.post_attention_layernorm, c.rms_norm_eps);
    const mlp = w.mlp as DenseMlpWeights;
    h = add(h, isMoeLayer(c, l) ? moeLayer(y, w.mlp as MoeWeights, moe).out : swigluMlp(y, mlp.gate_proj, mlp.up_proj, mlp.down_proj));
  }
  return linear(rmsnorm(h, weights.norm, c.rms_norm_eps), weights.lm_head);
}

describe.each(ROWS)("the model on $name", (row) => {
  const started = startBackend(row, (b) => b.dispose());
  const ready = (context: { skip(note: string): void }) => started.ready(context);

  // The kinds the independent forward (naiveForward) writes out; segmented, sparse and dsa are checked against their
  // own modules (test/model-segmented, model-sparse, model-dsa .test.ts).
  it.for(ATTENTION_KINDS.filter((k) => k.kind === "mla" || k.kind === "mha" || (k.kind === "decay" && !k.overrides)))("$name: the reference's logits, and the independent forward's", async (k, context) => {
    const b = ready(context);
    const model = modelFor(k);
    const naive = naiveForward(model, PROMPT);
    const out = await forwardAsync(model, PROMPT, { backend: b });
    expect(nmse(out.logits, naive)).toBeLessThan(row.name === "reference" ? 1e-12 : 1e-7);
    expect(argmaxRows(out.logits)).toEqual(argmaxRows(naive));
  });

  it.for(ATTENTION_KINDS)("$name: prefill equals decode; greedy tokens, experts and exit layers are the reference's", async (k, context) => {
    const b = ready(context);
    const model = modelFor(k);
    const traced = async (options: { backend?: Backend }) => {
      const trace = createTrace("layers.*.mlp.router.indices");
      const result: ForwardResult = await forwardAsync(model, PROMPT, { ...options, trace, exitThreshold: 0.02, minLayers: 1 });
      return { result, trace };
    };
    const [ref, mine] = [await traced({}), await traced({ backend: b })];
    expect(nmse(mine.result.logits, ref.result.logits)).toBeLessThan(1e-7);
    expect(Array.from(mine.result.exitLayers)).toEqual(Array.from(ref.result.exitLayers));
    for (const [name, t] of ref.trace.tensors) expect(Array.from(mine.trace.tensors.get(name)!.data), name).toEqual(Array.from(t.data));

    const cache = createCache(model.config, { backend: b });
    const prefill = await forwardAsync(model, PROMPT.slice(0, 5), { backend: b, cache });
    const steps: Float32Array[] = [prefill.logits.data];
    for (const token of PROMPT.slice(5)) steps.push((await forwardAsync(model, [token], { backend: b, cache })).logits.data);
    releaseCache(cache);
    const whole = await forwardAsync(model, PROMPT, { backend: b });
    const joined = new Float32Array(whole.logits.data.length);
    let at = 0;
    for (const s of steps) (joined.set(s, at), (at += s.length));
    expect(nmse({ data: joined }, whole.logits)).toBeLessThan(1e-10);

    const greedy = await generateAsync(model, PROMPT, { maxTokens: 12, backend: b, stopToken: null });
    expect(greedy.tokens).toEqual(generate(model, PROMPT, { maxTokens: 12, stopToken: null }).tokens);
  });

  it("runs adapters, unmerged LoRAs and weight-only int8 weights as the reference does", async (context) => {
    const b = ready(context);
    const base = quantizeModel(initModel(testConfig({ init_std: 0.3 })), "int8.g32", { targets: ["model.layers.1.*"] });
    const rng = new Random(7);
    const loras = initModelLora(base, rng, { rank: 4 });
    const trained = { ...loras, loras: new Map([...loras.loras].map(([n, l]) => [n, { ...l, B: randBounded(rng, l.B.shape, 0.5) }])) };
    const bottlenecks = initModelBottlenecks(base, rng, { size: 4 });
    const withUp = { ...bottlenecks, layers: bottlenecks.layers.map((a) => Object.fromEntries(Object.entries(a).map(([k, ad]) => [k, { ...ad, up: randBounded(rng, ad.up.shape, 0.5) }]))) };
    const model = attachBottlenecks(attachLora(base, trained), withUp);
    const [ref, mine] = [await forwardAsync(model, PROMPT), await forwardAsync(model, PROMPT, { backend: b })];
    expect(nmse(ref.logits, forward(base, PROMPT).logits)).toBeGreaterThan(1e-6); // the adapters change the model
    expect(nmse(mine.logits, ref.logits)).toBeLessThan(1e-7);
    expect(argmaxRows(mine.logits)).toEqual(argmaxRows(ref.logits));
  });

  // Only rows that keep a pool: the others' values are garbage-collected host arrays, with nothing of theirs to hold.
  if (row.memory) it("holds its memory flat over 200 decode steps", async (context) => {
    const b = ready(context);
    const memory = row.memory!;
    const model = initModel(testConfig({ max_position_embeddings: 256, init_std: 0.3 }));
    // A long prompt first: every expert gets a token (weights are made resident on first use).
    await forwardAsync(model, Array.from({ length: 200 }, (_, i) => (i * 7) % 256), { backend: b });
    const cache = createCache(model.config, { backend: b, capacity: 256 });
    await forwardAsync(model, PROMPT, { backend: b, cache });
    for (let i = 0; i < 20; i++) await forwardAsync(model, [32 + (i % 90)], { backend: b, cache });
    const settled = memory(b);
    for (let i = 20; i < 200; i++) await forwardAsync(model, [32 + (i % 90)], { backend: b, cache });
    expect(memory(b)).toBe(settled);
    releaseCache(cache);
  });
});

describe("the command line runs the one forward: generate and step --compare on every kind", () => {
  it.for(["mla", "mha", "decay", "segmented", "sparse", "dsa"])("%s on wasm: the reference's tokens, and --compare passes", async (kind) => {
    const args = ["--attention", kind, "--weights", "random"];
    const tokens = async (backend: string) => JSON.parse((await cli("generate", "--prompt", "Alice ", "--max-tokens", "8", "--json", "--backend", backend, ...args)).out).tokens;
    expect(await tokens("wasm")).toEqual(await tokens("reference"));
    const compared = await cli("step", "--backend", "wasm", "--compare", ...args);
    expect(compared.code, compared.out.split("\n").at(-1)).toBe(0);
    expect(compared.out).toMatch(/wasm follows the reference through all \d+ traced tensors/);
  });
});
