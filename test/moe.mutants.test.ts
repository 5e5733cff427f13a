// Cases that kill mutants of src/moe/ the other MoE tests let live (test/README.md, mutation testing): every
// refusal's whole message (the argument, what was expected, what came), and the corners the by-hand cases miss —
// an empty or fully padded batch, a zero score sum, rows past the first, a table's exact layout.
import { describe, expect, it } from "vitest";
import { updateBias } from "../src/moe/balance.ts";
import { applyCapacity, expertCapacity } from "../src/moe/capacity.ts";
import { dispatchCombine, type Routing } from "../src/moe/experts.ts";
import { checkMoeWeights, initMoe, moeConfig, moeLayer, moeParams, moeWeightsFromParams, routeTokens } from "../src/moe/layer.ts";
import { balanceLoss, entropyLoss, moeLosses, sequenceBalanceLoss, zLoss } from "../src/moe/losses.ts";
import { route, routerConfig, routerScores } from "../src/moe/router.ts";
import { entropy, expertLoads, meanProbs, routingProbs, routingStats } from "../src/moe/stats.ts";
import { routingTable } from "../src/moe/table.ts";
import { reference } from "../src/kernels.ts";
import { Random } from "../src/random.ts";
import { tensor } from "../src/tensor.ts";
import { thrown } from "./helpers.ts";

const t = (shape: number[], data?: number[]) => tensor(shape, data);
const e2 = Int32Array.of(0, 1), w2 = Float32Array.of(1, 1);
const twoTokens: Routing = { k: 1, experts: e2, weights: w2, kept: Uint8Array.of(1, 1) };
const twoByTwo: Routing = { k: 2, experts: Int32Array.of(0, 1, 1, 0), weights: Float32Array.of(1, 1, 1, 1), kept: Uint8Array.of(1, 1, 1, 1) };
const experts = { gate: t([2, 3, 4]), up: t([2, 3, 4]), down: t([2, 4, 3]) };
const mc = moeConfig({ n_routed_experts: 2, num_experts_per_tok: 1, moe_intermediate_size: 3 });
const mcShared = moeConfig({ ...mc, n_shared_experts: 1 });
const mcBias = moeConfig({ ...mc, topk_method: "noaux_tc" });
const W = initMoe(new Random(1), mc, 4), WS = initMoe(new Random(1), mcShared, 4), WB = initMoe(new Random(1), mcBias, 4);

describe("MoE refusals, whole messages", () => {
  const cases: [string, () => unknown, string][] = [
    ["bias shape", () => updateBias(t([2, 2]), [1, 1]), "bias: expected shape [E], got [2, 2]"],
    ["a negative load", () => updateBias(t([2]), [1, -1]), "routed[1]: expected a non-negative integer, got -1"],
    ["a fractional load", () => updateBias(t([2]), [1.5, 1]), "routed[0]: expected a non-negative integer, got 1.5"],
    ["rate", () => updateBias(t([2]), [1, 1], -1), "rate: expected a finite number in [0, Infinity], got -1"],
    ["capacity's N", () => expertCapacity(1, 2, -1, 4), "N: expected an integer >= 0, got -1"],
    ["capacity's E", () => expertCapacity(1, 2, 6, 0), "E: expected an integer >= 1, got 0"],
    ["capacityFactor", () => expertCapacity(0, 2, 6, 4), "capacityFactor: expected a finite number in [5e-324, Infinity] or null (0 excluded), got 0"],
    ["mask length", () => applyCapacity(e2, w2, 1, 2, 1, "probs", Uint8Array.of(1)), "mask: expected a Uint8Array of 2 flags (one per token), got 1"],
    ["the first mask flag", () => applyCapacity(e2, w2, 1, 2, 1, "probs", Uint8Array.of(2, 1)), "mask[0]: expected 0 (padding) or 1 (a real token), got 2"],
    ["applyCapacity's k", () => applyCapacity(e2, w2, 0, 2, 1), "k: expected an integer >= 1, got 0"],
    ["applyCapacity's E", () => applyCapacity(e2, w2, 1, 0, 1), "E: expected an integer >= 1, got 0"],
    ["experts not a multiple of k", () => applyCapacity(Int32Array.of(0, 1, 0), Float32Array.of(1, 1, 1), 2, 2, 1), "experts: expected a multiple of k=2 entries, got 3"],
    ["weights length", () => applyCapacity(e2, Float32Array.of(1), 1, 2, 1), "weights: expected 2 entries, got 1"],
    ["a negative expert", () => applyCapacity(Int32Array.of(-1, 1), w2, 1, 2, 1), "experts[0]: expected an expert in [0, 1], got -1"],
    ["dispatch x", () => dispatchCombine(t([2]), twoTokens, experts), "x: expected shape [N, D], got [2]"],
    ["experts.gate against x", () => dispatchCombine(t([2, 5]), twoTokens, experts), "experts.gate: expected shape [E=2, F=3, D=5], got [2, 3, 4]"],
    ["experts.up", () => dispatchCombine(t([2, 4]), twoTokens, { ...experts, up: t([2, 3, 5]) }), "experts.up: expected shape [E=2, F=3, D=4], got [2, 3, 5]"],
    ["experts.down", () => dispatchCombine(t([2, 4]), twoTokens, { ...experts, down: t([2, 3, 4]) }), "experts.down: expected shape [E=2, D=4, F=3], got [2, 3, 4]"],
    ["routing.weights", () => dispatchCombine(t([2, 4]), { ...twoTokens, weights: Float32Array.of(1) }, experts), "routing.weights: expected 2 entries (N=2 · k=1), got 1"],
    ["a negative routed expert", () => dispatchCombine(t([2, 4]), { ...twoTokens, experts: Int32Array.of(0, -1) }, experts), "routing.experts[1]: expected an expert in [0, 1], got -1"],
    ["routed expert E", () => dispatchCombine(t([2, 4]), { ...twoTokens, experts: Int32Array.of(0, 2) }, experts), "routing.experts[1]: expected an expert in [0, 1], got 2"],
    ["n_group", () => routerConfig({ n_routed_experts: 4, num_experts_per_tok: 1, n_group: 0 }), "n_group: expected an integer in [1, 4], got 0"],
    ["n_group a divisor", () => routerConfig({ n_routed_experts: 4, num_experts_per_tok: 1, n_group: 3 }), "n_group: expected a divisor of n_routed_experts=4, got 3"],
    ["too few eligible", () => routerConfig({ n_routed_experts: 4, num_experts_per_tok: 3, n_group: 2, topk_group: 1 }), "num_experts_per_tok: expected at most topk_group·E/n_group = 2 eligible experts, got 3"],
    ["norm_topk_prob", () => routerConfig({ n_routed_experts: 4, num_experts_per_tok: 1, norm_topk_prob: 1 as unknown as boolean }), "norm_topk_prob: expected a boolean, got 1"],
    ["routed_scaling_factor", () => routerConfig({ n_routed_experts: 4, num_experts_per_tok: 1, routed_scaling_factor: 0 }), "routed_scaling_factor: expected a finite number in [5e-324, Infinity] (0 excluded), got 0"],
    ["router scores", () => routerScores(t([3]), "softmax"), "logits: expected shape [N, E], got [3]"],
    ["a bias with greedy", () => route(t([1, 2]), routerConfig({ n_routed_experts: 2, num_experts_per_tok: 1 }), t([2])), 'bias: expected none with topk_method "greedy" (use "noaux_tc"), got "a bias tensor"'],
    ["a NaN first logit", () => route(t([1, 2], [NaN, 1]), routerConfig({ n_routed_experts: 2, num_experts_per_tok: 1 })), "logits[0, 0]: expected a finite number, got NaN"],
    ["a NaN bias", () => route(t([1, 2]), routerConfig({ n_routed_experts: 2, num_experts_per_tok: 1, topk_method: "noaux_tc" }), t([2], [0, NaN])), "bias[1]: expected a finite number, got NaN"],
    ["routing probs", () => routingProbs(t([3]), "sigmoid"), "scores: expected shape [N, E], got [3]"],
    ["mean probs", () => meanProbs(t([3])), "probs: expected shape [N, E], got [3]"],
    ["a negative load expert", () => expertLoads({ ...twoTokens, experts: Int32Array.of(0, -1) }, 2), "routing.experts[1]: expected an expert in [0, 1], got -1"],
    ["load expert E", () => expertLoads({ ...twoTokens, experts: Int32Array.of(0, 2) }, 2), "routing.experts[1]: expected an expert in [0, 1], got 2"],
    ["stats probs", () => routingStats(twoTokens, t([3]), null), "probs: expected shape [N, E], got [3]"],
    ["stats routing", () => routingStats(twoTokens, t([3, 2]), null), "routing.experts: expected 3 entries (N=3 · k=1), got 2"],
    ["balance probs", () => balanceLoss(t([3]), twoTokens), "probs: expected shape [N, E], got [3]"],
    ["balance routing", () => balanceLoss(t([3, 2]), twoTokens), "routing.experts: expected 3 entries, got 2"],
    ["sequence probs", () => sequenceBalanceLoss(t([3]), twoTokens, 1), "probs: expected shape [N, E], got [3]"],
    ["seqLen", () => sequenceBalanceLoss(t([2, 2]), twoTokens, 0), "seqLen: expected an integer >= 1, got 0"],
    ["z-loss logits", () => zLoss(t([3])), "logits: expected shape [N, E], got [3]"],
    ["entropy probs", () => entropyLoss(t([3])), "probs: expected shape [N, E], got [3]"],
    ["table mask", () => routingTable(twoTokens, { mask: Uint8Array.of(1) }), "mask: expected 2 flags (one per token), got 1"],
    ["maxTokens", () => routingTable(twoTokens, { maxTokens: 0 }), "maxTokens: expected an integer >= 1, got 0"],
    ["initMoe's D", () => initMoe(new Random(1), mc, 0), "D: expected an integer >= 1, got 0"],
    ["no weights", () => checkMoeWeights(null as never, mc), "weights: expected MoeWeights { gate, experts, shared_experts }, got null"],
    ["no gate", () => checkMoeWeights({ experts: W.experts } as never, mc), "weights: expected MoeWeights { gate, experts, shared_experts }, got [object Object]"],
    ["no experts", () => checkMoeWeights({ gate: W.gate } as never, mc), "weights: expected MoeWeights { gate, experts, shared_experts }, got [object Object]"],
    ["gate.weight", () => checkMoeWeights({ ...W, gate: { ...W.gate, weight: t([3, 4]) } }, mc), "gate.weight: expected shape [2, D], got [3, 4]"],
    ["a missing bias", () => checkMoeWeights({ ...WB, gate: { ...WB.gate, e_score_correction_bias: null } }, mcBias), 'gate.e_score_correction_bias: expected a tensor of shape [2], got "undefined"'],
    ["a bias with greedy weights", () => checkMoeWeights({ ...W, gate: { ...W.gate, e_score_correction_bias: t([2]) } }, mc), 'gate.e_score_correction_bias: expected null with topk_method "greedy", got "a tensor"'],
    ["layer experts.gate", () => checkMoeWeights({ ...W, experts: { ...W.experts, gate: t([2, 3, 5]) } }, mc), "experts.gate: expected shape [2, 3, 4], got [2, 3, 5]"],
    ["layer experts.up", () => checkMoeWeights({ ...W, experts: { ...W.experts, up: t([2, 2, 4]) } }, mc), "experts.up: expected shape [2, 3, 4], got [2, 2, 4]"],
    ["layer experts.down", () => checkMoeWeights({ ...W, experts: { ...W.experts, down: t([2, 4, 2]) } }, mc), "experts.down: expected shape [2, 4, 3], got [2, 4, 2]"],
    ["shared experts not configured", () => checkMoeWeights(WS, mc), 'shared_experts: expected null (n_shared_experts = 0), got "weights"'],
    ["shared experts missing", () => checkMoeWeights(W, mcShared), 'shared_experts: expected weights for 1 shared experts, got "null"'],
    ["shared gate_proj", () => checkMoeWeights({ ...WS, shared_experts: { ...WS.shared_experts!, gate_proj: t([2, 4]) } }, mcShared), "shared_experts.gate_proj: expected shape [3, 4], got [2, 4]"],
    ["shared up_proj", () => checkMoeWeights({ ...WS, shared_experts: { ...WS.shared_experts!, up_proj: t([3, 5]) } }, mcShared), "shared_experts.up_proj: expected shape [3, 4], got [3, 5]"],
    ["shared down_proj", () => checkMoeWeights({ ...WS, shared_experts: { ...WS.shared_experts!, down_proj: t([4, 2]) } }, mcShared), "shared_experts.down_proj: expected shape [4, 3], got [4, 2]"],
    ["routeTokens logits", () => routeTokens(t([3, 3]), mc, null), "logits: expected shape [N=3, 2], got [3, 3]"],
    ["a missing parameter", () => moeWeightsFromParams({}, mc, "layers.1.mlp."), 'params: expected a tensor named "layers.1.mlp.gate.weight", got none'],
    // k = 2, so that a count written N / k instead of N · k shows.
    ["weights length with k = 2", () => applyCapacity(Int32Array.of(0, 1, 1, 0), Float32Array.of(1, 1, 1), 2, 2, 1), "weights: expected 4 entries, got 3"],
    ["routing.weights with k = 2", () => dispatchCombine(t([2, 4]), { ...twoByTwo, weights: Float32Array.of(1, 1, 1) }, experts), "routing.weights: expected 4 entries (N=2 · k=2), got 3"],
    ["balance routing with k = 2", () => balanceLoss(t([3, 2]), twoByTwo), "routing.experts: expected 6 entries, got 4"],
    ["stats routing with k = 2", () => routingStats(twoByTwo, t([3, 2]), null), "routing.experts: expected 6 entries (N=3 · k=2), got 4"],
    ["a backend's moe of the wrong shape", () => moeLayer(t([2, 4]), W, mc, { ...reference, moe: () => t([1, 4]) }), "kernels.moe(x): expected shape [2, 4], got [1, 4]"],
  ];
  it.each(cases)("%s", (_, call, message) => expect(thrown(call)).toBe(message));

  it("a parameter set round-trips, and one missing tensor names itself with its prefix", () => {
    const params = moeParams(WS, "p.");
    expect(moeWeightsFromParams(params, mcShared, "p.")).toEqual(WS);
    const { ["p.shared_experts.up_proj.weight"]: _, ...without } = params;
    expect(thrown(() => moeWeightsFromParams(without, mcShared, "p."))).toBe('params: expected a tensor named "p.shared_experts.up_proj.weight", got none');
  });
});

describe("router corners", () => {
  it("a key given as undefined takes its default", () => {
    expect(routerConfig({ n_routed_experts: 4, num_experts_per_tok: 2, n_group: undefined, scoring_func: undefined })).toEqual(
      routerConfig({ n_routed_experts: 4, num_experts_per_tok: 2 }),
    );
  });

  it("softmax weights stay unnormalised without norm_topk_prob", () => {
    const r = route(t([1, 3], [0.5, 0.3, 0.2].map(Math.log)), routerConfig({ n_routed_experts: 3, num_experts_per_tok: 2 }));
    expect([...r.weights].map((w) => +w.toFixed(6))).toEqual([0.5, 0.3]);
  });

  it("a sigmoid router whose chosen scores are all 0 weighs them 0, not NaN (the sum is not divided by)", () => {
    const r = route(t([1, 2], [-1000, -1000]), routerConfig({ n_routed_experts: 2, num_experts_per_tok: 1, scoring_func: "sigmoid" }));
    expect([...r.weights]).toEqual([0]);
  });
});

describe("router edits (banned and forced experts)", () => {
  const config = routerConfig({ n_routed_experts: 4, num_experts_per_tok: 2 });
  const logits = t([2, 4], [0, 1, 2, 3, 1, 0, 0, 0]);
  const softmaxRow = (row: number[]) => row.map((v) => Math.exp(v) / row.reduce((s, y) => s + Math.exp(y), 0));
  const [p0, p1] = [softmaxRow([0, 1, 2, 3]), softmaxRow([1, 0, 0, 0])];
  const none = [[], []];

  it("a banned expert is passed over and a forced one taken; the chosen set is ordered by the router's own scores", () => {
    const r = route(logits, config, null, { banned: [[3], []], forced: [[0], [3]], ablated: none });
    expect([...r.experts]).toEqual([2, 0, 0, 3]); // not [0, 2, 3, 0]: forcing changes the set, not the order
    [p0[2]!, p0[0]!, p1[0]!, p1[3]!].forEach((p, i) => expect(r.weights[i]).toBeCloseTo(p, 6));
  });

  it("forcing a token's own choice changes nothing; ties in the own scores go to the lower expert", () => {
    expect(route(logits, config, null, { banned: none, forced: [[3, 2], [0]], ablated: none })).toEqual(route(logits, config));
    const three = routerConfig({ n_routed_experts: 4, num_experts_per_tok: 3 });
    expect([...route(t([1, 4], [1, 0, 0, 0]), three, null, { banned: [[]], forced: [[3]], ablated: [[]] }).experts]).toEqual([0, 1, 3]);
  });

  it("bans that leave fewer than k experts are refused, naming the token", () => {
    expect(thrown(() => route(logits, config, null, { banned: [[], [0, 1, 2]], forced: none, ablated: none }))).toBe(
      "experts: the bans leave token 1 fewer than 2 experts to choose from (group limits included)",
    );
  });
});

describe("statistics and losses: corners", () => {
  // Two tokens over 3 experts; token 1 is padding in the masked cases.
  const probs = t([2, 3], [0.5, 0.25, 0.25, 0.1, 0.1, 0.8]);
  const routing: Routing = { k: 1, experts: Int32Array.of(0, 2), weights: Float32Array.of(0.5, 0.8), kept: Uint8Array.of(1, 1) };
  const firstOnly = Uint8Array.of(1, 0);
  const H0 = entropy([0.5, 0.25, 0.25]), H1 = entropy([0.1, 0.1, 0.8]);

  it("sigmoid scores are normalised row by row, a zero row stays zero; softmax scores are used as they are", () => {
    const p = routingProbs(t([3, 2], [0.3, 0.1, 0, 0, 0.2, 0.6]), "sigmoid");
    expect([...p.data].map((v) => +v.toFixed(6))).toEqual([0.75, 0.25, 0, 0, 0.25, 0.75]);
    const notSummingToOne = t([1, 2], [0.5, 0.25]);
    expect([...routingProbs(notSummingToOne, "softmax").data]).toEqual([0.5, 0.25]);
  });

  it("mean probabilities and the statistics' entropies skip padding and average over the real tokens", () => {
    expect([...meanProbs(probs, firstOnly)]).toEqual([0.5, 0.25, 0.25]);
    const s = routingStats(routing, probs, null);
    expect(s.meanTokenEntropy).toBeCloseTo((H0 + H1) / 2, 7);
    expect(s.meanTokenEntropyNormalised).toBeCloseTo((H0 + H1) / 2 / Math.log(3), 7);
    const masked = routingStats(routing, probs, null, firstOnly);
    expect(masked.batchEntropy).toBeCloseTo(H0, 7);
    expect(masked.meanTokenEntropy).toBeCloseTo(H0, 7);
  });

  it("one expert: normalised entropies are 0, not 0/0", () => {
    const one = routingStats({ k: 1, experts: Int32Array.of(0, 0), weights: w2, kept: Uint8Array.of(1, 1) }, t([2, 1], [1, 1]), null);
    expect([one.meanTokenEntropyNormalised, one.batchEntropyNormalised]).toEqual([0, 0]);
  });

  it("losses of an empty or fully padded batch are 0; padding is left out of each", () => {
    const none: Routing = { k: 1, experts: new Int32Array(0), weights: new Float32Array(0), kept: new Uint8Array(0) };
    expect(balanceLoss(t([0, 3]), none)).toBe(0);
    const allPadding = Uint8Array.of(0, 0);
    expect(sequenceBalanceLoss(probs, routing, 1, allPadding)).toBe(0);
    expect(zLoss(probs, allPadding)).toBe(0);
    expect(entropyLoss(probs, 1, 1, allPadding)).toBe(0);
    // A padded sequence is not averaged in: sequences of 1 with the second padded = the first alone.
    expect(sequenceBalanceLoss(probs, routing, 1, firstOnly)).toBeCloseTo(balanceLoss(t([1, 3], [0.5, 0.25, 0.25]), { ...routing, experts: Int32Array.of(0), weights: Float32Array.of(0.5), kept: Uint8Array.of(1) }), 7);
    const logits = t([2, 3], [0, 0, 0, 5, 5, 5]);
    expect(zLoss(logits, firstOnly)).toBeCloseTo(Math.log(3) ** 2, 7);
    expect(entropyLoss(probs, 1, 0, firstOnly)).toBeCloseTo(H0, 7);
  });

  it("a sequence with padding counts its real tokens only, whichever sequence of the batch it is", () => {
    // Sequences of 2: tokens 0, 1 (experts 0, 1) and token 2 alone (expert 1; token 3 is padding).
    // First: f = [1/2, 1/2], P = [0.6, 0.4], loss 2·(0.3 + 0.2) = 1. Second: f = [0, 1], P = [0.3, 0.7], loss 1.4.
    const p = t([4, 2], [0.8, 0.2, 0.4, 0.6, 0.3, 0.7, 0.5, 0.5]);
    const r: Routing = { k: 1, experts: Int32Array.of(0, 1, 1, 0), weights: Float32Array.of(1, 1, 1, 1), kept: Uint8Array.of(1, 1, 1, 1) };
    expect(sequenceBalanceLoss(p, r, 2, Uint8Array.of(1, 1, 1, 0))).toBeCloseTo((1 + 1.4) / 2, 6);
  });

  it("moeLosses' sequence loss defaults to one sequence: the batch's balance loss", () => {
    const l = moeLosses(t([2, 3]), probs, routing);
    expect(l.sequence).toBeCloseTo(l.balance, 7);
    expect(l.balance).toBeCloseTo(3 * (0.5 * 0.3 + 0.5 * 0.525), 7);
  });
});

describe("dispatch", () => {
  it("runs only the experts that kept an assignment", () => {
    const ran: number[] = [];
    const x = t([2, 4], [1, 2, 3, 4, 5, 6, 7, 8]);
    const routing: Routing = { k: 1, experts: Int32Array.of(2, 2), weights: Float32Array.of(1, 0.5), kept: Uint8Array.of(1, 1) };
    const out = dispatchCombine(x, routing, { gate: t([3, 3, 4]), up: t([3, 3, 4]), down: t([3, 4, 3]) }, (tokens, e) => (ran.push(e), tokens));
    expect(ran).toEqual([2]);
    expect([...out.data]).toEqual([1, 2, 3, 4, 2.5, 3, 3.5, 4]);
  });
});

describe("the routing table's layout", () => {
  it("pads expert numbers to two digits and labels to four columns, and says nothing more when all tokens fit", () => {
    const routing: Routing = { k: 2, experts: Int32Array.of(3, 10, 1, 0), weights: Float32Array.of(0.5, 0.25, 0.75, 0.125), kept: Uint8Array.of(1, 0, 1, 1) };
    expect(routingTable(routing, { labels: ["a", "b"], maxTokens: 2 }).split("\n")).toEqual([
      "token  text  choice 1              choice 2",
      '    0  "a"   e3   0.5000  kept     e10  0.2500  DROPPED',
      '    1  "b"   e1   0.7500  kept     e0   0.1250  kept',
    ]);
  });
});
