// The researcher's toolkit against known answers (spec/research.md), on every backend through the one forward:
// an identity hook changes nothing; patching a whole residual from the clean run gives the clean logits; forcing a
// token's own experts changes nothing; the logit lens's last layer is the logits; direct logit attribution sums to
// the logit; ablating every head equals removing the attention output; banning an unchosen expert changes nothing.
// Each compares two different computations (hooked or edited against plain), never one with itself.
import { describe, expect, it } from "vitest";
import { isMoeLayer } from "../src/model/config.ts";
import type { Intervention } from "../src/model/interventions.ts";
import { initModel, type Model } from "../src/model/weights.ts";
import { ablateHeads, headMeans } from "../src/research/heads.ts";
import { ablateExperts, banExperts, forceExperts } from "../src/research/experts.ts";
import { directLogitAttribution } from "../src/research/attribution.ts";
import { logitLens } from "../src/research/lens.ts";
import { activationPatching, patchFrom } from "../src/research/patching.ts";
import { run, runWithCache } from "../src/research/run.ts";
import { steer, steeringVector } from "../src/research/steering.ts";
import type { Tensor } from "../src/tensor.ts";
import { startBackend } from "./backend-rows.ts";
import { MODEL_BACKENDS } from "./model-rows.ts";
import { thrown } from "./helpers.ts";
import { testConfig } from "./model-fixtures.ts";

const ROWS = MODEL_BACKENDS;

const CLEAN = [256, 65, 108, 105, 99, 101, 32, 115, 97, 105, 100];
const CORRUPT = [256, 84, 104, 101, 32, 99, 97, 116, 32, 115, 97];
const models = new Map<string, Model>();
const model = (overrides: Record<string, unknown> = {}): Model => {
  const key = JSON.stringify(overrides);
  if (!models.has(key)) models.set(key, initModel(testConfig({ init_std: 0.3, n_shared_experts: 1, ...overrides })));
  return models.get(key)!;
};
const KINDS = [{ name: "mla", overrides: {} }, { name: "mha", overrides: { attention_kind: "mha", num_key_value_heads: 2 } }];

describe.each(ROWS)("$name", (row) => {
  const backend = startBackend(row, (b) => b.dispose());

  describe.each(KINDS)("$name", ({ overrides }) => {
    it("an identity hook at every point changes nothing, bit for bit", async (context) => {
      const b = backend.ready(context);
      const plain = await run(model(overrides), CLEAN, { backend: b });
      const names: string[] = [];
      const hooked = await run(model(overrides), CLEAN, { backend: b, hooks: [["*", (v: Tensor, { name }) => (names.push(name), { shape: v.shape, data: v.data.slice() })]] });
      expect(hooked.logits.data).toEqual(plain.logits.data);
      expect(names).toContain("layers.2.mlp.experts");
      expect(names).toContain("layers.1.attn.heads");
    });

    it("patching the whole residual entering a layer from the clean run gives the clean logits exactly", async (context) => {
      const b = backend.ready(context);
      const m = model(overrides);
      for (const l of [0, 2]) {
        const clean = await runWithCache(m, CLEAN, { backend: b, names: `layers.${l}.in` });
        const all = Array.from({ length: CLEAN.length }, (_, t) => t);
        const patched = await run(m, CORRUPT, { backend: b, hooks: [[`layers.${l}.in`, patchFrom(clean.activations.get(`layers.${l}.in`)!, "position", all)]] });
        expect(patched.logits.data).toEqual(clean.logits.data);
      }
    });

    it("forcing each token's own chosen experts changes nothing, bit for bit; banning an expert no token chose neither", async (context) => {
      const b = backend.ready(context);
      const m = model(overrides);
      const plain = await runWithCache(m, CLEAN, { backend: b, names: "layers.*.mlp.router.indices" });
      const forced: Intervention[] = [];
      const chosenAnywhere = new Set<string>();
      for (let l = 0; l < m.config.num_hidden_layers; l++) {
        if (!isMoeLayer(m.config, l)) continue;
        const idx = plain.activations.get(`layers.${l}.mlp.router.indices`)!;
        const k = idx.shape[1]!;
        for (let t = 0; t < CLEAN.length; t++) {
          const own = Array.from(idx.data.subarray(t * k, (t + 1) * k));
          own.forEach((e) => chosenAnywhere.add(`${l}.${e}`));
          forced.push(forceExperts(l, own, [t]));
        }
      }
      const again = await runWithCache(m, CLEAN, { backend: b, names: "layers.*.mlp.router.indices", interventions: forced });
      expect(again.logits.data).toEqual(plain.logits.data);
      for (const [name, t] of plain.activations) expect(again.activations.get(name)!.data, name).toEqual(t.data); // best first, as the router ordered them
      // Without group limits (a ban also lowers its group's score, which can change the eligible groups).
      const ungrouped = model({ ...overrides, n_group: 1, topk_group: 1 });
      const short = CLEAN.slice(0, 3); // 3 tokens choose at most 6 of the 8 experts
      const flat = await runWithCache(ungrouped, short, { backend: b, names: "layers.1.mlp.router.indices" });
      const used = new Set(flat.activations.get("layers.1.mlp.router.indices")!.data);
      const unchosen = Array.from({ length: m.config.n_routed_experts }, (_, e) => e).filter((e) => !used.has(e));
      expect(unchosen.length).toBeGreaterThan(0);
      expect((await run(ungrouped, short, { backend: b, interventions: [banExperts(1, unchosen)] })).logits.data).toEqual(flat.logits.data);
      const chosen = Number([...chosenAnywhere].find((s) => s.startsWith("1."))!.split(".")[1]);
      const banned = await runWithCache(m, CLEAN, { backend: b, names: "layers.1.mlp.router.indices", interventions: [banExperts(1, [chosen])] });
      expect(Array.from(banned.activations.get("layers.1.mlp.router.indices")!.data)).not.toContain(chosen);
      expect(banned.moe[1]!.routed[chosen]).toBe(0);
      expect(plain.moe[1]!.routed[chosen]).toBeGreaterThan(0);
    });

    it("the logit lens at the last layer equals the logits, bit for bit", async (context) => {
      const b = backend.ready(context);
      const lens = await logitLens(model(overrides), CLEAN, { backend: b });
      expect(lens.points).toEqual(["embed", "layers.0.out", "layers.1.out", "layers.2.out"]);
      expect(lens.logits.at(-1)!.data).toEqual(lens.final.data);
      expect(lens.logits[0]!.data).not.toEqual(lens.final.data);
    });

    it("direct logit attribution sums to the logit; heads to their layer's attention, experts and shared to its MoE", async (context) => {
      const b = backend.ready(context);
      const m = model(overrides);
      const a = await directLogitAttribution(m, CLEAN, { backend: b, token: 101 });
      expect(Math.abs(a.total - a.logit)).toBeLessThan(1e-4 * Math.max(1, Math.abs(a.logit)));
      for (const top of a.parts.filter((p) => p.of === undefined && p.name !== "embed")) {
        const split = a.parts.filter((p) => p.of === top.name);
        if (split.length === 0) continue;
        expect(Math.abs(split.reduce((s, p) => s + p.value, 0) - top.value)).toBeLessThan(1e-4 * Math.max(1, Math.abs(top.value)));
      }
      expect(a.parts.filter((p) => p.name.startsWith("layers.2.attn.head.")).length).toBe(4);
      expect(a.parts.some((p) => p.name.startsWith("layers.2.mlp.expert."))).toBe(true);
    });

    it("ablating every head of a layer equals removing its attention output; ablating its chosen experts leaves the shared expert", async (context) => {
      const b = backend.ready(context);
      const m = model(overrides);
      const zero = (v: Tensor) => ({ shape: v.shape, data: new Float32Array(v.data.length) });
      const removed = await run(m, CLEAN, { backend: b, hooks: { "layers.1.attn.out": zero } });
      const ablated = await run(m, CLEAN, { backend: b, interventions: [ablateHeads(m, { layer: 1, heads: [0, 1, 2, 3] })] });
      expect(ablated.logits.data).toEqual(removed.logits.data);
      expect(ablated.logits.data).not.toEqual((await run(m, CLEAN, { backend: b })).logits.data);
      const all = Array.from({ length: m.config.n_routed_experts }, (_, e) => e);
      const noExperts = await runWithCache(m, CLEAN, { backend: b, names: "layers.2.mlp.*", interventions: [ablateExperts(2, all)] });
      const [out, shared] = ["out", "shared"].map((n) => noExperts.activations.get(`layers.2.mlp.${n}`)!.data);
      expect(out).toEqual(shared);
    });
  });
});

describe("interventions on the reference", () => {
  it("a forced expert is chosen and weighted by the router's own scores, normalised as the router normalises", async () => {
    const m = model();
    const r = await runWithCache(m, CLEAN, { names: "layers.1.mlp.router.*", interventions: [forceExperts(1, [7], [3])] });
    const [indices, weights, scores] = ["indices", "weights", "scores"].map((n) => r.activations.get(`layers.1.mlp.router.${n}`)!);
    const k = indices!.shape[1]!, E = m.config.n_routed_experts;
    const chosen = Array.from(indices!.data.subarray(3 * k, 4 * k));
    expect(chosen).toContain(7);
    const own = chosen.map((e) => scores!.data[3 * E + e]!);
    const sum = own.reduce((a, s) => a + s, 0);
    chosen.forEach((_, j) => expect(weights!.data[3 * k + j]).toBeCloseTo((own[j]! / sum) * m.config.routed_scaling_factor, 6));
  });

  it("mean ablation puts each head's mean over the reference prompts in place of its output", async () => {
    const m = model();
    const means = await headMeans(m, [CORRUPT], { layers: [1] });
    const r = await runWithCache(m, CLEAN, { names: "layers.1.attn.heads", interventions: [ablateHeads(m, { layer: 1, heads: [2], mode: "mean", means })] });
    const z = r.activations.get("layers.1.attn.heads")!;
    const [, T, Dv] = z.shape as [number, number, number];
    const own = (await runWithCache(m, CORRUPT, { names: "layers.1.attn.heads" })).activations.get("layers.1.attn.heads")!;
    for (let d = 0; d < Dv; d++) {
      let mean = 0;
      for (let t = 0; t < T; t++) mean += own.data[(2 * T + t) * Dv + d]! / T;
      for (let t = 0; t < T; t++) expect(z.data[(2 * T + t) * Dv + d]).toBeCloseTo(mean, 6);
    }
  });

  it("steering by the difference of two prompts' means moves the residual by exactly scale × vector", async () => {
    const m = model();
    const v = await steeringVector(m, CLEAN, CORRUPT, 1);
    expect(Array.from((await steeringVector(m, CLEAN, CLEAN, 1)).data).every((x) => x === 0)).toBe(true);
    const plain = await runWithCache(m, CLEAN, { names: "layers.1.out" });
    const steered = await runWithCache(m, CLEAN, { names: "layers.1.out", interventions: [steer(m, 1, v, 2)] });
    const [a, s] = [plain.activations.get("layers.1.out")!.data, steered.activations.get("layers.1.out")!.data];
    a.forEach((x, i) => expect(s[i]).toBeCloseTo(x + 2 * v.data[i % 32]!, 5));
    expect((await run(m, CLEAN, { interventions: [steer(m, 1, v, 0)] })).logits.data).toEqual(plain.logits.data);
  });

  it("activation patching: the residual at layer 0 restores the clean metric at every position it carries", async () => {
    const m = model();
    const p = await activationPatching(m, { clean: CLEAN, corrupt: CORRUPT, answer: 101, wrong: 32, point: "resid" });
    expect(p.layers).toEqual([0, 1, 2]);
    expect(p.effect[0]!.length).toBe(CLEAN.length);
    // The last position carries everything the metric reads at layer 2's input only through itself and attention.
    expect(p.effect.every((row) => row.every(Number.isFinite))).toBe(true);
    const heads = await activationPatching(m, { clean: CLEAN, corrupt: CORRUPT, answer: 101, point: "heads" });
    expect(heads.columns).toBe("head");
    expect(heads.effect[0]!.length).toBe(4);
  });

  it("bad hook names, layers, heads and experts are one line each", async () => {
    const m = model();
    expect(await rejected(run(m, CLEAN, { hooks: { "layers.9.attn.out": () => {} } })))
      .toBe('hooks: "layers.9.attn.out" matches no hook point of this model (layers 0–2; names as in spec/research.md, e.g. "layers.0.attn.heads")');
    expect(thrown(() => ablateHeads(m, { layer: 3, heads: [0] }))).toBe("layer: expected an integer in [0, 2], got 3");
    expect(thrown(() => ablateHeads(m, { layer: 1, heads: [4] }))).toBe("heads[0]: expected an integer in [0, 3], got 4");
    expect(thrown(() => ablateHeads(m, { layer: 1, heads: [0], mode: "mean" }))).toBe("means: expected head means of layer 1 (from headMeans), got undefined");
    expect(await rejected(run(m, CLEAN, { interventions: [banExperts(0, [1])] }))).toBe("experts[0].layer: layer 0 has a dense feed-forward, no experts (MoE layers: 1, 2)");
    expect(await rejected(run(m, CLEAN, { interventions: [banExperts(1, [8])] }))).toBe("experts[0].expert: expected an integer in [0, 7], got 8");
    expect(await rejected(run(m, CLEAN, { interventions: [forceExperts(1, [0, 1, 2], [0])] }))).toBe("experts: 3 experts forced on the token at position 0 of layer 1, but it takes 2");
    expect(await rejected(run(m, CLEAN, { interventions: [banExperts(1, [0, 1, 2, 3, 4, 5, 6])] }))).toMatch(/^experts: the bans leave token 0 fewer than 2 experts to choose from/);
    expect(await rejected(run(m, CLEAN, { hooks: { "layers.1.attn.scores": (v: Tensor) => ({ shape: v.shape, data: new Float32Array(v.data.length) }) } })))
      .toMatch(/^hook at layers.1.attn.scores: this point can only be read/);
    expect(await rejected(activationPatching(m, { clean: CLEAN, corrupt: CORRUPT.slice(1), answer: 101, point: "resid" })))
      .toBe("patching: the clean and corrupted prompts must have the same token length, got 11 and 10");
  });
});

async function rejected(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error("expected a rejection, it resolved");
}
