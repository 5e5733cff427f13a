import { describe, expect, it } from "vitest";
import { referenceBackend, type Backend } from "../src/backend.ts";
import type { GoldenTensor } from "../src/golden/case.ts";
import { checkGolden, runGoldenCase } from "../src/io/golden.ts";
import { moeGoldenCases } from "../src/golden/moe-cases.ts";

const cases = moeGoldenCases();
const byName = (name: string) => cases.find((c) => c.name === name)!;
const values = (t: GoldenTensor | undefined) => [...t!.data];

describe("moe golden cases", () => {
  it("have unique names and cover every router configuration and the layer", () => {
    const names = cases.map((c) => c.name);
    expect(new Set(names).size).toBe(names.length);
    for (const n of ["softmax", "sigmoid", "groups", "sigmoid-bias-groups", "rank-position", "rank-bpr", "probs", "overflow", "dropless-skewed", "padding", "ties"]) {
      expect(names).toContain(`moe.router.${n}`);
    }
    expect(names.filter((n) => n.startsWith("moe.layer.")).length).toBeGreaterThan(0);
  });

  it("reproduce themselves bit for bit on the reference", async () => {
    for (const c of cases) {
      const file = await runGoldenCase(c);
      const result = await checkGolden(file, cases, referenceBackend);
      expect(result.outcome, `${c.name}: ${result.message ?? ""}`).toBe("ok");
    }
  });

  it("the capacity cases really drop, differently per drop order; dropless keeps all", async () => {
    const kept = async (name: string) => values((await runGoldenCase(byName(name))).outputs.kept);
    const drops = async (name: string) => (await kept(name)).filter((v) => v === 0).length;
    for (const n of ["rank-position", "rank-bpr", "probs", "overflow"]) expect(await drops(`moe.router.${n}`)).toBeGreaterThan(0);
    expect(await drops("moe.router.dropless-skewed")).toBe(0);
    const orders = await Promise.all(["rank-position", "rank-bpr", "probs"].map((n) => kept(`moe.router.${n}`)));
    expect(orders[0]).not.toEqual(orders[1]);
    expect(orders[1]).not.toEqual(orders[2]);
    expect(values((await runGoldenCase(byName("moe.layer.capacity-probs"))).outputs.kept)).toContain(0);
  });

  it("the ties case chooses the lower index among exactly tied experts", async () => {
    const file = await runGoldenCase(byName("moe.router.ties"));
    const experts = values(file.outputs.experts);
    const logits = values(file.outputs.logits);
    let tiesSeen = 0;
    for (let t = 0; t < 8; t++) {
      const chosen = experts.slice(t * 3, t * 3 + 3);
      for (const [low, high] of [[1, 2], [5, 6], [5, 7], [6, 7]]) {
        expect(logits[t * 8 + low]).toBe(logits[t * 8 + high]);
        if (chosen.includes(high)) expect(chosen.indexOf(low)).toBeGreaterThanOrEqual(0); // never the higher alone
        if (chosen.includes(high)) expect(chosen.indexOf(low)).toBeLessThan(chosen.indexOf(high));
        if (chosen.includes(low)) tiesSeen++;
      }
    }
    expect(tiesSeen).toBeGreaterThan(0);
  });

  it("router cases run on an asynchronous-only backend; layer cases say not supported", async () => {
    const asyncOnly: Backend = { ...referenceBackend, kernels: undefined, asyncKernels: { ...referenceBackend.asyncKernels, linear: async (x, w) => referenceBackend.kernels!.linear(x, w) } };
    const router = await runGoldenCase(byName("moe.router.sigmoid-bias-groups"));
    expect((await checkGolden(router, cases, asyncOnly)).outcome).toBe("ok");
    const layer = await runGoldenCase(byName("moe.layer.dropless-shared"));
    expect((await checkGolden(layer, cases, asyncOnly)).outcome).toBe("not supported");
  });

  it("a backend whose linear is slightly off passes within tolerance, a wrong one fails", async () => {
    const nudge = (scale: number): Backend => {
      const kernels = { ...referenceBackend.kernels!, linear: (x: Parameters<typeof referenceBackend.asyncKernels.linear>[0], w: Parameters<typeof referenceBackend.asyncKernels.linear>[1]) => {
        const y = referenceBackend.kernels!.linear(x, w);
        return { shape: y.shape, data: y.data.map((v) => v * scale) };
      } };
      return { ...referenceBackend, name: "reference", kernels, asyncKernels: kernels };
    };
    const file = await runGoldenCase(byName("moe.router.probs"));
    expect((await checkGolden(file, cases, nudge(1 + 1e-7), { exact: false })).outcome).toBe("ok");
    expect((await checkGolden(file, cases, nudge(1.01), { exact: false })).outcome).toBe("fail");
  });
});
