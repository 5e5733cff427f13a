// Lesson 7: stepping through the whole tiny model with the trace (src/model/, src/trace.ts). The weights are
// seeded, not trained: the shapes, the routing and the bookkeeping are real, the predictions are not.
import { forward } from "../src/model/forward.ts";
import { createCache } from "../src/model/cache.ts";
import { preset } from "../src/model/presets.ts";
import { encode, tokenLabel } from "../src/model/tokenizer.ts";
import { initModel, type Model } from "../src/model/weights.ts";
import { createTrace, type TracedTensor } from "../src/trace.ts";

export const PROMPT = "The quick brown fox";

/** The tiny preset with its seeded weights. */
export const tinyModel = (): Model => initModel(preset("tiny"));

/** One forward pass over the prompt, recording every named intermediate. */
export function tracedForward(model: Model = tinyModel(), prompt = PROMPT) {
  const tokens = encode(prompt);
  const trace = createTrace("*");
  const result = forward(model, tokens, { trace });
  return { tokens, labels: tokens.map(tokenLabel), trace, result };
}

const dtype = (t: TracedTensor) => (t.data instanceof Float32Array ? "F32" : t.data instanceof Int32Array ? "I32" : "U8");

/** The trace's table of contents: name, shape and dtype in the order they were computed. */
export function traceTable(trace: ReturnType<typeof createTrace>, filter: (name: string) => boolean = () => true) {
  return [...trace.tensors].filter(([name]) => filter(name)).map(([name, t]) => ({ name, shape: `[${t.shape.join(", ")}]`, dtype: dtype(t) }));
}

/** Rows of a 2-D slice of a traced tensor: plane p of [P, R, C], or the whole [R, C]. */
export function rows(t: TracedTensor, plane = 0): number[][] {
  const [R, C] = t.shape.slice(-2) as [number, number];
  const base = plane * R * C;
  return Array.from({ length: R }, (_, r) => Array.from(t.data.subarray(base + r * C, base + (r + 1) * C), Number));
}

/** ‖h‖ per token after the embedding and after each layer: how the residual stream grows. */
export function residualNorms(trace: ReturnType<typeof createTrace>, layers: number) {
  const norms = (t: TracedTensor) => rows(t).map((r) => Math.hypot(...r));
  return [norms(trace.tensors.get("embed")!), ...Array.from({ length: layers }, (_, l) => Array.from(trace.tensors.get(`layers.${l}.residual_norm`)!.data, Number))];
}

/** Per token, the routing weight each expert got in an MoE layer (0 where not chosen). */
export function routingGrid(trace: ReturnType<typeof createTrace>, layer: number, experts: number): number[][] {
  const indices = trace.tensors.get(`layers.${layer}.mlp.router.indices`)!;
  const weights = trace.tensors.get(`layers.${layer}.mlp.router.weights`)!;
  const [N, k] = indices.shape as [number, number];
  return Array.from({ length: N }, (_, t) => {
    const row = new Array<number>(experts).fill(0);
    for (let r = 0; r < k; r++) row[indices.data[t * k + r]!] = weights.data[t * k + r]!;
    return row;
  });
}

/** The model's five most likely next tokens after the prompt (softmax of the last row of the logits). */
export function topNext(logits: TracedTensor, n = 5) {
  const [T, V] = logits.shape as [number, number];
  const last = Array.from(logits.data.subarray((T - 1) * V, T * V), Number);
  const max = Math.max(...last);
  const exp = last.map((v) => Math.exp(v - max));
  const sum = exp.reduce((a, b) => a + b, 0);
  return exp.map((e, id) => ({ token: tokenLabel(id), id, probability: e / sum })).sort((a, b) => b.probability - a.probability || a.id - b.id).slice(0, n);
}

/** The cache at work: the prompt in one call, or all but the last token and then the last alone. Same logits? */
export function cacheCheck(model: Model = tinyModel(), prompt = PROMPT) {
  const tokens = encode(prompt);
  const whole = forward(model, tokens).logits;
  const cache = createCache(model.config);
  forward(model, tokens.slice(0, -1), { cache });
  const step = forward(model, tokens.slice(-1), { cache }).logits;
  const V = whole.shape[1]!;
  let maxAbsDiff = 0;
  for (let v = 0; v < V; v++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(whole.data[(tokens.length - 1) * V + v]! - step.data[v]!));
  return { tokens: tokens.length, cachedPositions: cache.length, maxAbsDiff };
}
