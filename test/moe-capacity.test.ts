import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { applyCapacity, DROP_POLICIES, expertCapacity, type DropPolicy } from "../src/moe/capacity.ts";
import { route, routerConfig } from "../src/moe/router.ts";
import { Random } from "../src/random.ts";
import { tensor } from "../src/tensor.ts";
import { randomBias, routerConfigArb, separatedLogits } from "./moe-fixtures.ts";

// The hand-worked case: 6 tokens, 4 experts, k = 2, cf = 1, so C = ceil(1·2·6/4) = 3. Softmax router, logits =
// ln p, so the scores are these probabilities and the weights (unnormalised) are the chosen ones:
//        e0    e1    e2    e3     choices (first, second)
//   t0  .44   .46   .06   .04     e1 .46, e0 .44
//   t1  .90   .03   .05   .02     e0 .90, e2 .05
//   t2  .41   .30   .15   .14     e0 .41, e1 .30
//   t3  .42   .10   .08   .40     e0 .42, e3 .40
//   t4  .35   .03   .60   .02     e2 .60, e0 .35
//   t5  .80   .06   .04   .10     e0 .80, e3 .10
// Expert 0 is routed 6 assignments for 3 places (t1, t2, t3, t5 first choices; t0, t4 second); e1, e2, e3 get 2
// each and keep them. Which three e0 keeps is the drop order:
//   rank-position: first choices in token order t1, t2, t3 fill it; t5's first choice and both seconds drop.
//   rank-bpr: tokens by top-1 weight t1 .90, t5 .80, t4 .60, t0 .46, t3 .42, t2 .41; e0's first choices come
//     t1, t5, t3 (full), so t2's first choice drops, and both seconds.
//   probs: e0 keeps its three heaviest, t1 .90, t5 .80, t0's second choice .44; t3 .42, t2 .41, t4 .35 drop.
const P = [
  [0.44, 0.46, 0.06, 0.04],
  [0.9, 0.03, 0.05, 0.02],
  [0.41, 0.3, 0.15, 0.14],
  [0.42, 0.1, 0.08, 0.4],
  [0.35, 0.03, 0.6, 0.02],
  [0.8, 0.06, 0.04, 0.1],
];
const handKept: Record<DropPolicy, number[]> = {
  //                t0    t1    t2    t3    t4    t5
  "rank-position": [1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1],
  "rank-bpr": /**/ [1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1],
  probs: /*     */ [1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1, 1],
};

describe("capacity by hand (6 tokens, 4 experts, k = 2, cf = 1)", () => {
  const r = route(tensor([6, 4], P.flat().map(Math.log)), routerConfig({ n_routed_experts: 4, num_experts_per_tok: 2 }));
  const C = expertCapacity(1, 2, 6, 4);

  it("routes as the table says and C = 3", () => {
    expect([...r.experts]).toEqual([1, 0, 0, 2, 0, 1, 0, 3, 2, 0, 0, 3]);
    expect(r.weights[1]).toBeCloseTo(0.44, 6);
    expect(C).toBe(3);
  });

  it.each(DROP_POLICIES)("%s keeps and drops the assignments worked out above", (policy) => {
    expect([...applyCapacity(r.experts, r.weights, 2, 4, C, policy)]).toEqual(handKept[policy]);
  });

  it("a padding token takes no place: masking t1 lets t5's first choice in under rank-position", () => {
    const kept = applyCapacity(r.experts, r.weights, 2, 4, C, "rank-position", Uint8Array.from([1, 0, 1, 1, 1, 1]));
    expect([...kept]).toEqual([1, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1, 1]);
  });
});

describe("expert capacity C", () => {
  it("is ceil(cf·k·N/E), follows N, and is null when dropless", () => {
    expect(expertCapacity(1.25, 2, 6, 4)).toBe(4); // 3.75
    expect(expertCapacity(1.1, 1, 10, 1)).toBe(11); // 11.000000000000002 in floating point
    expect(expertCapacity(2, 4, 100, 16)).toBe(50);
    expect(expertCapacity(1, 4, 7, 16)).toBe(2);
    expect(expertCapacity(1, 2, 0, 4)).toBe(0);
    expect(expertCapacity(null, 2, 6, 4)).toBeNull();
  });

  it("refuses capacity factors <= 0 and other bad arguments, naming them", () => {
    expect(() => expertCapacity(0, 2, 6, 4)).toThrow(/^capacityFactor: expected/);
    expect(() => expertCapacity(-1, 2, 6, 4)).toThrow(/^capacityFactor: expected/);
    expect(() => expertCapacity(Number.NaN, 2, 6, 4)).toThrow(/^capacityFactor: expected/);
    expect(() => expertCapacity(1, 0, 6, 4)).toThrow(/^k: expected/);
    const e = Int32Array.from([0, 1]);
    const w = Float32Array.from([1, 1]);
    expect(() => applyCapacity(e, w, 1, 2, 1, "random" as DropPolicy)).toThrow(/^dropPolicy: expected one of/);
    expect(() => applyCapacity(e, w, 1, 1, 1)).toThrow(/^experts\[1\]: expected an expert in \[0, 0\]/);
    expect(() => applyCapacity(e, w, 1, 2, 1.5)).toThrow(/^C: expected/);
    expect(() => applyCapacity(e, w, 1, 2, 1, "probs", Uint8Array.from([1]))).toThrow(/^mask: expected/);
  });

  it("N = 0 keeps nothing and fails nothing", () => {
    expect(applyCapacity(new Int32Array(0), new Float32Array(0), 2, 4, 0, "probs").length).toBe(0);
  });
});

describe("capacity properties", () => {
  const batch = fc
    .record({
      config: routerConfigArb,
      seed: fc.integer({ min: 0, max: 2 ** 31 }),
      N: fc.integer({ min: 0, max: 16 }),
      cf: fc.constantFrom(0.25, 0.5, 1, 1.25, 2),
      policy: fc.constantFrom(...DROP_POLICIES),
    })
    .map((b) => {
      const E = b.config.n_routed_experts;
      const bias = b.config.topk_method === "noaux_tc" ? randomBias(b.seed, E) : null;
      return { ...b, E, k: b.config.num_experts_per_tok, r: route(separatedLogits(b.seed, b.N, E), b.config, bias) };
    });
  const keep = (b: { r: { experts: Int32Array; weights: Float32Array }; k: number; E: number; policy: DropPolicy }, C: number | null) =>
    applyCapacity(b.r.experts, b.r.weights, b.k, b.E, C, b.policy);

  it("dropless keeps every assignment; with C no expert keeps more than C, and each keeps min(C, routed)", () => {
    fc.assert(
      fc.property(batch, (b) => {
        expect(keep(b, null).every((v) => v === 1)).toBe(true);
        const C = expertCapacity(b.cf, b.k, b.N, b.E)!;
        const kept = keep(b, C);
        for (let e = 0; e < b.E; e++) {
          const routed = b.r.experts.filter((x) => x === e).length;
          const held = b.r.experts.filter((x, a) => x === e && kept[a]).length;
          expect(held).toBe(Math.min(C, routed));
        }
      }),
      { numRuns: 200 },
    );
  });

  it("raising the capacity factor never drops more", () => {
    fc.assert(
      fc.property(batch, fc.constantFrom(1.25, 1.5, 2, 4), (b, factor) => {
        const dropped = (cf: number) => keep(b, expertCapacity(cf, b.k, b.N, b.E)).filter((v) => v === 0).length;
        expect(dropped(b.cf * factor)).toBeLessThanOrEqual(dropped(b.cf));
      }),
      { numRuns: 200 },
    );
  });

  it("probs: no expert keeps an assignment of lower weight than one it dropped", () => {
    fc.assert(
      fc.property(batch, (b) => {
        const kept = keep({ ...b, policy: "probs" }, expertCapacity(b.cf, b.k, b.N, b.E));
        for (let e = 0; e < b.E; e++) {
          const weightsOf = (flag: number) => [...b.r.weights].filter((_, a) => b.r.experts[a] === e && kept[a] === flag);
          const lowestKept = Math.min(...weightsOf(1));
          for (const w of weightsOf(0)) expect(w).toBeLessThanOrEqual(lowestKept);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("rank-bpr: no first choice drops while a token of lower top-1 weight keeps that expert", () => {
    fc.assert(
      fc.property(batch, (b) => {
        const kept = keep({ ...b, policy: "rank-bpr" }, expertCapacity(b.cf, b.k, b.N, b.E));
        const top1 = (t: number) => b.r.weights[t * b.k]!;
        for (let t = 0; t < b.N; t++) {
          if (kept[t * b.k]) continue;
          const e = b.r.experts[t * b.k];
          for (let a = 0; a < b.N * b.k; a++) {
            const u = Math.floor(a / b.k);
            if (b.r.experts[a] === e && kept[a]) expect(top1(u)).toBeGreaterThanOrEqual(top1(t));
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it("rank-position: no first choice drops while a later token keeps that expert", () => {
    fc.assert(
      fc.property(batch, (b) => {
        const kept = keep({ ...b, policy: "rank-position" }, expertCapacity(b.cf, b.k, b.N, b.E));
        for (let t = 0; t < b.N; t++) {
          if (kept[t * b.k]) continue;
          for (let a = (t + 1) * b.k; a < b.N * b.k; a++) {
            if (b.r.experts[a] === b.r.experts[t * b.k]) expect(kept[a]).toBe(0);
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it("padding tokens keep nothing, and the real tokens keep what they keep without the padding", () => {
    fc.assert(
      fc.property(batch, fc.array(fc.boolean(), { minLength: 16, maxLength: 16 }), (b, flags) => {
        const mask = Uint8Array.from(flags.slice(0, b.N).map(Number));
        const real = [...mask.keys()].filter((t) => mask[t]);
        const C = expertCapacity(b.cf, b.k, real.length, b.E);
        const kept = applyCapacity(b.r.experts, b.r.weights, b.k, b.E, C, b.policy, mask);
        const pick = <T extends Int32Array | Float32Array>(a: T) =>
          real.flatMap((t) => [...a.subarray(t * b.k, (t + 1) * b.k)]);
        const alone = applyCapacity(Int32Array.from(pick(b.r.experts)), Float32Array.from(pick(b.r.weights)), b.k, b.E, C, b.policy);
        expect(real.flatMap((t) => [...kept.subarray(t * b.k, (t + 1) * b.k)])).toEqual([...alone]);
        for (let t = 0; t < b.N; t++) if (!mask[t]) expect([...kept.subarray(t * b.k, (t + 1) * b.k)].every((v) => v === 0)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});

// Ties (spec/moe.md): a token repeated in a batch routes identically, so equal weights meet in one expert's queue.
// Each policy's rule decides them; reversing a tie order keeps `011` where the rule keeps `110`.
describe("capacity ties follow each policy's stated rule", () => {
  const keepOf = (experts: number[], weights: number[], k: number, E: number, C: number, policy: DropPolicy) =>
    [...applyCapacity(Int32Array.from(experts), Float32Array.from(weights), k, E, C, policy)].join("");

  it.each(DROP_POLICIES)("%s: three tokens of equal weight for two places keep the first two (110)", (policy) => {
    expect(keepOf([0, 0, 0], [0.5, 0.5, 0.5], 1, 1, 2, policy)).toBe("110");
    expect(keepOf([0, 0, 0, 0], [0.25, 0.25, 0.25, 0.25], 1, 1, 1, policy)).toBe("1000");
    // The tie sits behind a heavier token: ranking by weight puts t2 first, then the tie t0, t1 to the lower token.
    const expected = policy === "rank-position" ? "110" : "101";
    expect(keepOf([0, 0, 0], [0.5, 0.5, 0.75], 1, 1, 2, policy)).toBe(expected);
  });

  it.each(DROP_POLICIES)("%s: a repeated token routed by the router keeps its first copies", (policy) => {
    const row = [0.3, -0.2, 0.1];
    const r = route(tensor([4, 3], [...row, ...row, ...row, ...row]), routerConfig({ n_routed_experts: 3, num_experts_per_tok: 1 }));
    const C = expertCapacity(1, 1, 4, 3)!; // ceil(4/3) = 2
    expect([...r.experts]).toEqual([0, 0, 0, 0]);
    expect(new Set(r.weights).size).toBe(1);
    expect([...applyCapacity(r.experts, r.weights, 1, 3, C, policy)].join("")).toBe("1100");
  });

  it("across ranks: probs keeps the lower token's second choice, the rank orders put first choices first", () => {
    // t0 chooses e1 then e0 (.5 each); t1 chooses e0 first (.5). Expert 0 has one place and a tie of t0's second
    // choice with t1's first.
    const experts = [1, 0, 0, 2], weights = [0.5, 0.5, 0.5, 0.5];
    expect(keepOf(experts, weights, 2, 3, 1, "probs")).toBe("1101"); // lower token: t0's second choice
    expect(keepOf(experts, weights, 2, 3, 1, "rank-bpr")).toBe("1011"); // first choices before second ones
    expect(keepOf(experts, weights, 2, 3, 1, "rank-position")).toBe("1011");
  });

  it("probs: a token naming one expert twice (never the router's doing) keeps the lower rank", () => {
    expect(keepOf([0, 0], [0.5, 0.5], 2, 1, 1, "probs")).toBe("10");
  });

  it("rank-bpr: equal top-1 weights keep the lower token, whatever its second weight", () => {
    // t0 and t1 both put .5 on their first choice e0; only t1 has a heavy second choice. One place: t0 keeps it.
    expect(keepOf([0, 1, 0, 2], [0.5, 0.1, 0.5, 0.4], 2, 3, 1, "rank-bpr")).toBe("1101");
  });

  // Weights from three values, so ties are everywhere. Each policy is a strict order of the assignments; within an
  // expert every kept assignment must come before every dropped one in that order, stated here from the spec.
  const before: Record<DropPolicy, (w: Float32Array, k: number) => (a: number, b: number) => boolean> = {
    "rank-position": (_w, k) => (a, b) => a % k < b % k || (a % k === b % k && a < b),
    "rank-bpr": (w, k) => (a, b) => {
      const [ta, tb] = [Math.floor(a / k), Math.floor(b / k)];
      if (a % k !== b % k) return a % k < b % k;
      return w[ta * k]! > w[tb * k]! || (w[ta * k] === w[tb * k] && ta < tb);
    },
    probs: (w, k) => (a, b) => {
      const [ta, tb] = [Math.floor(a / k), Math.floor(b / k)];
      return w[a]! > w[b]! || (w[a] === w[b] && (ta < tb || (ta === tb && a % k < b % k)));
    },
  };
  const tied = fc
    .record({ N: fc.integer({ min: 1, max: 12 }), E: fc.integer({ min: 1, max: 4 }), kPick: fc.nat(), C: fc.nat({ max: 12 }), seed: fc.nat() })
    .map(({ N, E, kPick, C, seed }) => {
      const rng = new Random(seed);
      const k = 1 + (kPick % Math.min(E, 3));
      const experts = Array.from({ length: N }, () => {
        const order = Array.from({ length: E }, (_, e) => e);
        for (let i = E - 1; i > 0; i--) {
          const j = rng.int(i + 1);
          [order[i], order[j]] = [order[j]!, order[i]!];
        }
        return order.slice(0, k);
      }).flat();
      const weights = Float32Array.from({ length: N * k }, () => [0.25, 0.5, 0.75][rng.int(3)]!);
      return { N, E, k, C: C % (N + 1), experts: Int32Array.from(experts), weights };
    });

  it.each(DROP_POLICIES)("%s: under heavy ties each expert keeps what comes first in the stated order", (policy) => {
    fc.assert(
      fc.property(tied, ({ E, k, C, experts, weights }) => {
        const kept = applyCapacity(experts, weights, k, E, C, policy);
        const precedes = before[policy](weights, k);
        for (let a = 0; a < kept.length; a++) {
          for (let b = 0; b < kept.length; b++) {
            if (experts[a] === experts[b] && kept[a] && !kept[b]) expect(precedes(a, b), `kept ${a} dropped ${b}`).toBe(true);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
