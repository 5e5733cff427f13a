// Cases that kill mutants of the one forward (src/model/forward.ts, layers.ts) that model.mutants.test.ts and the
// model suites let live (test/README.md, mutation testing): a padded batch is its sequences run alone, the hook
// points' names and contexts, multi-head attention worked by hand, probabilities replaced by a hook, NSA's traced
// selection and gates, the interventions option's refusals, and early exit at its threshold and for the last token.
import { describe, expect, it } from "vitest";
import { attention } from "../src/attention/attention.ts";
import { splitHeads } from "../src/attention/heads.ts";
import { yarnOptions } from "../src/attention/mla.ts";
import { runSync } from "../src/device/drive.ts";
import { referenceOps } from "../src/device/ops.ts";
import { createCache } from "../src/model/cache.ts";
import { forward, forwardBatch, forwardBatchAsync, forwardRows, rowNorms } from "../src/model/forward.ts";
import type { HookContext } from "../src/model/points.ts";
import { initModel } from "../src/model/weights.ts";
import { causal } from "../src/masks.ts";
import { linear } from "../src/ops.ts";
import { applyRope, ropeFrequencies, yarnSoftmaxFactor } from "../src/rope.ts";
import { reshape } from "../src/tensor.ts";
import { createTrace } from "../src/trace.ts";
import { thrown } from "./helpers.ts";
import { testConfig } from "./model-fixtures.ts";

const model = initModel(testConfig()); // 3 layers, vocabulary 260
const V = 260;
const caches = (n: number) => Array.from({ length: n }, () => createCache(model.config));

describe("a padded batch is its sequences, each run alone", () => {
  it("every real token's logits are its sequence's alone; a row of padding only changes nothing", () => {
    const rows = [[256, 84, 104], [0, 0, 0], [101, 32, 0]];
    const r = forwardBatch(model, rows, [3, 0, 2], { caches: caches(3) });
    const alone = [forward(model, [256, 84, 104]).logits.data, null, forward(model, [101, 32]).logits.data];
    rows.forEach((_, b) => {
      for (let t = 0; t < 3; t++) {
        const got = r.logits.data.subarray((b * 3 + t) * V, (b * 3 + t + 1) * V);
        const own = alone[b];
        if (own && t < own.length / V) got.forEach((v, i) => expect(Math.abs(v - own[t * V + i]!)).toBeLessThan(1e-5));
        else expect(got.every((v) => v === 0), `padding at [${b}, ${t}]`).toBe(true);
      }
    });
  });

  it("forwardBatchAsync gives forwardBatch's result", async () => {
    const rows = [[256, 84], [101, 0]];
    expect(await forwardBatchAsync(model, rows, [2, 1], { caches: caches(2) })).toEqual(forwardBatch(model, rows, [2, 1], { caches: caches(2) }));
  });

  it("refuses a ragged row, and lengths or caches that are not lists, naming each", () => {
    expect(thrown(() => forwardBatch(model, [[1, 2], [1]], [2, 1], { caches: caches(2) }))).toBe("tokens[1]: expected 2 tokens (a padded batch), got 1");
    expect(thrown(() => forwardBatch(model, [[1, 2]], null as never, { caches: caches(1) }))).toBe("lengths: expected 1 lengths, got undefined");
    expect(thrown(() => forwardBatch(model, [[1, 2]], [2], { caches: null as never }))).toBe("caches: expected 1 caches, got undefined");
  });

  it("rows with no new token give empty logits, no exit layers and no MoE statistics", () => {
    const r = runSync(forwardRows(referenceOps, model, [{ tokens: [], cache: createCache(model.config), own: false }], {}), "reference");
    expect(r.logits.shape).toEqual([0, V]);
    expect([r.logits.data.length, r.exitLayers.length, r.moe]).toEqual([0, 0, []]);
  });
});

describe("what the trace and the hooks see", () => {
  it("the trace holds the token ids, every per-layer point of spec/model.md, and each layer's residual norms", () => {
    const trace = createTrace();
    forward(model, [256, 84, 104], { trace });
    expect([...trace.tensors.get("tokens")!.data]).toEqual([256, 84, 104]);
    for (const name of ["in", "attn.in", "attn.out", "attn.residual", "mlp.in", "mlp.out", "out", "residual_norm"]) {
      expect(trace.tensors.has(`layers.1.${name}`), name).toBe(true);
    }
    const out = trace.tensors.get("layers.1.out")!;
    expect([...trace.tensors.get("layers.1.residual_norm")!.data]).toEqual([...rowNorms(out).data]);
  });

  it("each hook is told its point's layer and the tokens' absolute positions", () => {
    const seen = new Map<string, HookContext>();
    const cache = createCache(model.config);
    forward(model, [256, 84], { cache });
    forward(model, [104, 101], { cache, hooks: { "*": (_, context) => void seen.set(context.name, context) } });
    for (const name of ["embed", "norm", "logits", "layers.1.in", "layers.1.attn.latent", "layers.1.attn.probs", "layers.1.attn.heads", "layers.1.mlp.in", "layers.1.out"]) {
      expect([...seen.get(name)!.positions], name).toEqual([2, 3]);
    }
    expect([seen.get("layers.1.out")!.layer, seen.get("embed")!.layer]).toEqual([1, undefined]);
  });

  it("keepHidden hands back RMSNorm(h_L), the trace's norm", () => {
    const trace = createTrace();
    forward(model, [256, 84], { trace });
    const rows = [{ tokens: [256, 84], cache: createCache(model.config), own: true }];
    const r = runSync(forwardRows(referenceOps, model, rows, { keepHidden: true }), "reference");
    expect([...(referenceOps.read(r.hiddenValue as never) as Float32Array)]).toEqual([...trace.tensors.get("norm")!.data]);
  });
});

describe("NSA's host steps", () => {
  it("sparse attention traces its own points under the layer's name, in every layer, forward after forward", () => {
    const sparse = initModel(testConfig({ attention_kind: "sparse" }));
    for (let run = 0; run < 2; run++) { // the second forward reuses the host kernels made for the first
      const trace = createTrace();
      forward(sparse, [256, 84, 104, 101, 32], { trace });
      for (const l of [0, 2]) for (const name of ["selected", "gates"]) expect(trace.tensors.has(`layers.${l}.attn.${name}`), `${l} ${name}`).toBe(true);
    }
  });
});

describe("attention probabilities replaced by a hook", () => {
  it("a hook on the probabilities alone is called; probabilities put all on key 0 make every query's heads key 0's value", () => {
    const trace = createTrace();
    let calls = 0;
    const onFirstKey = (p: { shape: readonly number[]; data: Float32Array }) => {
      calls++;
      const [H, Tq, Tk] = p.shape as [number, number, number];
      const data = new Float32Array(p.data.length);
      for (let row = 0; row < H * Tq; row++) data[row * Tk] = 1;
      return { shape: [H, Tq, Tk], data };
    };
    // Without a trace only the probabilities are listened to (a trace listens to every point).
    const alone = forward(model, [256, 84, 104], { hooks: { "layers.1.attn.probs": onFirstKey } });
    expect(calls).toBe(1);
    expect(forward(model, [256, 84, 104], { trace, hooks: { "layers.1.attn.probs": onFirstKey } }).logits).toEqual(alone.logits);
    const heads = trace.tensors.get("layers.1.attn.heads")!; // [H, T, Dv]; query 0 sees key 0 alone anyway
    const [H, T, Dv] = heads.shape as [number, number, number];
    for (let h = 0; h < H; h++) {
      for (let t = 1; t < T; t++) {
        for (let d = 0; d < Dv; d++) expect(heads.data[(h * T + t) * Dv + d]).toBeCloseTo(heads.data[h * T * Dv + d]!, 6);
      }
    }
  });
});

describe("interventions", () => {
  it("an intervention's hooks run like the hooks option's", () => {
    const zero = (v: { shape: readonly number[]; data: Float32Array }) => ({ shape: [...v.shape], data: new Float32Array(v.data.length) });
    const r = forward(model, [256, 84], { interventions: [{ hooks: { logits: zero } }] });
    expect(r.logits.data.every((v) => v === 0)).toBe(true);
  });

  it("refuses an option that is not a list, or an entry that is not an object, naming it", () => {
    expect(thrown(() => forward(model, [1], { interventions: {} as never }))).toBe('interventions: expected a list of interventions ({ hooks?, experts? }), got "object"');
    expect(thrown(() => forward(model, [1], { interventions: [{}, null as never] }))).toBe("interventions[1]: expected an intervention { hooks?, experts? }, got null");
    expect(thrown(() => forward(model, [1], { interventions: [5 as never] }))).toBe("interventions[0]: expected an intervention { hooks?, experts? }, got 5");
  });

  it("hooks over several sequences are refused", () => {
    const rows = caches(2).map((cache) => ({ tokens: [1], cache, own: true }));
    expect(thrown(() => runSync(forwardRows(referenceOps, model, rows, { hooks: { logits: () => {} } }), "reference"))).toBe(
      "hooks: expected a single sequence (hook one request at a time)",
    );
  });
});

describe("the early-exit threshold", () => {
  it("a token whose confidence equals the threshold exactly exits (confidence >= threshold)", () => {
    const trace = createTrace();
    forward(model, [256, 84, 104], { exitThreshold: 2, minLayers: 1, trace }); // 2: nobody exits, every check is traced
    const confidence = trace.tensors.get("layers.0.exit.confidence")!.data;
    const t = confidence.indexOf(Math.max(...confidence));
    const r = forward(model, [256, 84, 104], { exitThreshold: confidence[t]!, minLayers: 1 });
    expect(r.exitLayers[t]).toBe(1);
  });

  it("when only the last token exits, the running tokens' logits are the full-depth ones (no one attends to it), and the feed-forward sees their positions", () => {
    // Find a sequence whose last token is the most confident after layer 1 (the test model's weights are fixed).
    const check = (tokens: number[]) => {
      const trace = createTrace();
      forward(model, tokens, { exitThreshold: 2, minLayers: 1, trace });
      return trace.tensors.get("layers.0.exit.confidence")!.data;
    };
    const tokens = [[256, 84, 104, 101], [256, 84, 104], [84, 104, 101, 32], [104, 101], [101, 32, 116]].find((ts) => {
      const c = check(ts);
      return c.every((v, i) => i === c.length - 1 || v < c[c.length - 1]!);
    })!;
    expect(tokens).toBeDefined();
    const last = tokens.length - 1;
    let ffnPositions: number[] = [];
    const hooks = { "layers.1.mlp.in": (_: unknown, { positions }: HookContext) => void (ffnPositions = [...positions]) };
    const r = forward(model, tokens, { exitThreshold: check(tokens)[last]!, minLayers: 1, hooks });
    expect([...r.exitLayers]).toEqual(tokens.map((_, t) => (t === last ? 1 : 3)));
    expect(ffnPositions).toEqual(tokens.slice(0, last).map((_, t) => t)); // the feed-forward runs the running rows only
    const full = forward(model, tokens, { exitThreshold: null }).logits.data;
    for (let i = 0; i < last * V; i++) expect(Math.abs(r.logits.data[i]! - full[i]!)).toBeLessThan(1e-5);
  });
});

describe("multi-head attention by hand", () => {
  it.each([
    ["no YaRN: the scale is 1/√Dh", null],
    ["YaRN: its softmax factor/√Dh", testConfig().rope_scaling],
  ] as const)("layer 0's heads are softmax(q·kᵀ·scale)·v over its rotated q and k, %s", (_, rope_scaling) => {
    const mha = initModel(testConfig({ attention_kind: "mha", rope_scaling }));
    const c = mha.config, w = mha.weights.layers[0]!.self_attn as Record<string, Parameters<typeof linear>[1]>;
    const [H, Hkv, Dh, T] = [c.num_attention_heads, c.num_key_value_heads, c.hidden_size / c.num_attention_heads, 3];
    const trace = createTrace();
    let context: HookContext | undefined;
    forward(mha, [256, 84, 104], { trace, hooks: { "layers.0.attn.heads": (_, at) => void (context = at) } });
    expect([context!.layer, [...context!.positions]]).toEqual([0, [0, 1, 2]]);
    const x = trace.tensors.get("layers.0.attn.in")! as Parameters<typeof linear>[0]; // RMSNorm(h_0) [T, D]
    const yarn = yarnOptions(c);
    const positions = [0, 1, 2], freqs = ropeFrequencies({ dim: Dh, theta: c.rope_theta, yarn });
    const heads = (weight: typeof x, n: number) => splitHeads(reshape(linear(x, weight), [1, T, n * Dh]), n, [Dh])[0]!; // [1, n, T, Dh]
    const q = applyRope(heads(w.q_proj!, H), positions, freqs), k = applyRope(heads(w.k_proj!, Hkv), positions, freqs);
    const want = attention(q, k, heads(w.v_proj!, Hkv), { mask: causal(T), scale: yarnSoftmaxFactor(yarn) / Math.sqrt(Dh) }).out;
    const got = trace.tensors.get("layers.0.attn.heads")!;
    expect(got.data.length).toBe(want.data.length);
    got.data.forEach((v, i) => expect(Math.abs(v - want.data[i]!)).toBeLessThan(1e-5));
  });
});
