// The material's quantisation claims ("68GB -> 17GB", "4x smaller", "under 2% accuracy loss"), measured on the
// tiny model for every scheme (spec/quant.md): the bytes its weights take, the relative Frobenius error each
// kind of linear layer adds on the inputs the float model gives it, the error of the logits on real text, and how
// often the quantised model still picks the float model's next token and experts. The model is the trained tiny
// checkpoint when the caller passes it (the CLI does by default): then the cross-entropy change is a real change in
// next-byte prediction on that text. Seeded (the small preset, or --weights random), the figures say only what
// each format does to Gaussian weights; the report says which.

import type { DeviceKernels } from "../device/kernels.ts";
import { opsOver } from "../device/ops.ts";
import { referenceDevice } from "../device/reference.ts";
import { argError, checkInteger } from "../errors.ts";
import { reference } from "../kernels.ts";
import { linearOf, namedWeights } from "../model-adapters.ts";
import { forward } from "../model/forward.ts";
import { countParameters } from "../model/params.ts";
import { preset } from "../model/presets.ts";
import { encode } from "../model/tokenizer.ts";
import { initModel, type Model } from "../model/weights.ts";
import { argmax, linear, logsumexp, swiglu } from "../ops.ts";
import { parseScheme, quantizeModel, SCHEME_NAMES, schemeName, storedBytes } from "../quant/model.ts";
import { numel, type Tensor } from "../tensor.ts";
import { createTrace } from "../trace.ts";

export interface SchemeResult {
  scheme: string;
  /** Bits per quantised weight, scales included. */
  bitsPerWeight: number;
  /** The quantised weights as stored, and the same weights in float32 and bf16 over that. */
  weightBytes: number;
  smallerThanF32: number;
  smallerThanBf16: number;
  /** The whole model: quantised weights as stored, everything else float32. */
  modelBytes: number;
  /** ||logits_q - logits|| / ||logits|| over every position of the text. */
  logitsError: number;
  /** Share of positions whose argmax (next-token choice) matches the float model's. */
  top1Agreement: number;
  /** Share of (token, MoE layer) whose chosen experts match the float model's as a set. */
  routingAgreement: number;
  /** Mean next-byte cross-entropy (nats) on the text, and its relative change from the float model's. */
  crossEntropy: number;
  crossEntropyChange: number;
  /** Relative Frobenius error of each kind of linear layer's output, on the float model's own inputs to it. */
  layerErrors: Record<string, number>;
}

export interface QuantReport {
  model: { preset: string; seeded: boolean; weights: string; parameters: number; floatBytes: number; quantisedWeights: number; quantisedParameters: number };
  text: { bytes: number; tokens: number };
  float: { crossEntropy: number };
  results: SchemeResult[];
  measures: string[];
  doesNotMeasure: string[];
}

export interface QuantReportOptions {
  /** The text, as bytes (one token per byte after BOS). */
  text: Uint8Array;
  schemes?: readonly string[];
  /** Rows of each layer's recorded input used for the per-layer errors (default 64). */
  layerRows?: number;
  presetName?: "tiny" | "small";
  /** The float model to quantise, labelled `weights` (default: the preset's seeded initialisation). */
  model?: Model;
  weights?: string;
  /** Whether `model` is seeded rather than trained (default: true when no model is given). */
  seeded?: boolean;
}

/** Every linear layer's input on the float model's forward pass, by weight name; MoE layers' inputs by layer. */
function recordInputs(model: Model, tokens: number[]) {
  const names = new Map<Tensor, string>([...namedWeights(model)].map(([n, t]) => [t, n]));
  const moeLayers = new Map<Tensor, number>();
  model.weights.layers.forEach((layer, l) => "experts" in layer.mlp && moeLayers.set(layer.mlp.experts.gate, l));
  const inputs = new Map<string, Tensor>();
  const moeInputs = new Map<number, Tensor>();
  // The reference's kernels, noting each linear layer's input by its weight (the reference's values are host tensors).
  const recording: DeviceKernels<Tensor> = {
    ...referenceDevice,
    linear(x, w) {
      const name = names.get(w);
      if (name) inputs.set(name, x);
      return referenceDevice.linear(x, w);
    },
    moe(x, routing, experts) {
      moeInputs.set(moeLayers.get(experts.gate)!, x);
      return referenceDevice.moe(x, routing, experts);
    },
  };
  const trace = createTrace("layers.*.mlp.router.indices");
  const logits = forward(model, tokens, { backend: { ops: opsOver(recording) }, trace }).logits;
  return { inputs, moeInputs, logits, routing: trace.tensors };
}

const firstRows = (x: Tensor, rows: number): Tensor => {
  const D = x.shape[x.shape.length - 1]!;
  const n = Math.min(rows, x.data.length / D);
  return { shape: [n, D], data: x.data.subarray(0, n * D) };
};

/** "model.layers.3.mlp.experts.7.up_proj.weight" → "mlp.experts.*.up_proj". */
const kindOf = (name: string) => name.replace(/^model\.layers\.\d+\./, "").replace(/\.experts\.\d+\./, ".experts.*.").replace(/\.weight$/, "");

export function quantReport(options: QuantReportOptions): QuantReport {
  const { text, schemes = SCHEME_NAMES, layerRows = 64, presetName = "tiny" } = options;
  if (!(text instanceof Uint8Array) || text.length === 0) throw argError("text", "at least one byte", text?.length);
  checkInteger("layerRows", layerRows, 1);
  if (!Array.isArray(schemes) || schemes.length === 0) throw argError("schemes", "at least one scheme", schemes);
  schemes.forEach(parseScheme); // every name checked before any work

  const model = options.model ?? initModel(preset(presetName));
  const seeded = options.seeded ?? options.model === undefined;
  const weightsLabel = options.weights ?? (options.model ? "given weights" : `random init (seed ${model.config.init_seed})`);
  const tokens = [...encode("", { bos: true }), ...text];
  const float = recordInputs(model, tokens);
  const weights = namedWeights(model);
  const floatCe = crossEntropy(float.logits, tokens);
  const totalParams = countParameters(model.config).total;

  // Per layer kind: every recorded input's first rows, with the float output to compare against.
  const probes: { name: string; x: Tensor; y: Tensor }[] = [];
  for (const [name, x] of float.inputs) {
    const rows = firstRows(x, layerRows);
    probes.push({ name, x: rows, y: linear(rows, weights.get(name)!) });
  }
  for (const [l, x] of float.moeInputs) {
    const rows = firstRows(x, layerRows);
    for (let e = 0; e < model.config.n_routed_experts; e++) {
      const w = (p: string) => weights.get(`model.layers.${l}.mlp.experts.${e}.${p}.weight`)!;
      const [gate, up] = [linear(rows, w("gate_proj")), linear(rows, w("up_proj"))];
      const hidden = swiglu(gate, up);
      probes.push({ name: `model.layers.${l}.mlp.experts.${e}.gate_proj.weight`, x: rows, y: gate });
      probes.push({ name: `model.layers.${l}.mlp.experts.${e}.up_proj.weight`, x: rows, y: up });
      probes.push({ name: `model.layers.${l}.mlp.experts.${e}.down_proj.weight`, x: hidden, y: linear(hidden, w("down_proj")) });
    }
  }

  let quantisedWeights = 0;
  let quantisedParameters = 0;
  const results = schemes.map((name): SchemeResult => {
    const scheme = parseScheme(name);
    const q = quantizeModel(model, scheme);
    const qWeights = namedWeights(q);
    let [bytes, count] = [0, 0];
    for (const w of q.quantization.weights.values()) [bytes, count] = [bytes + storedBytes(w, scheme), count + numel(w.shape)];
    [quantisedWeights, quantisedParameters] = [q.quantization.weights.size, count];

    const sums = new Map<string, [number, number]>();
    for (const { name: n, x, y } of probes) {
      if (!q.quantization.weights.has(n)) continue;
      const yq = linearOf(reference, x, qWeights.get(n)!);
      const [num, den] = sums.get(kindOf(n)) ?? [0, 0];
      sums.set(kindOf(n), [num + squaredDistance(yq.data, y.data), den + squaredDistance(y.data)]);
    }
    const layerErrors = Object.fromEntries([...sums].map(([k, [num, den]]) => [k, Math.sqrt(num / den)]));

    const trace = createTrace("layers.*.mlp.router.indices");
    const logits = forward(q, tokens, { trace }).logits;
    const ce = crossEntropy(logits, tokens);
    return {
      scheme: schemeName(scheme),
      bitsPerWeight: (8 * bytes) / count,
      weightBytes: bytes,
      smallerThanF32: (4 * count) / bytes,
      smallerThanBf16: (2 * count) / bytes,
      modelBytes: bytes + 4 * (totalParams - count),
      logitsError: Math.sqrt(squaredDistance(logits.data, float.logits.data) / squaredDistance(float.logits.data)),
      top1Agreement: agreement(logits, float.logits),
      routingAgreement: routingAgreement(trace.tensors, float.routing),
      crossEntropy: ce,
      crossEntropyChange: (ce - floatCe) / floatCe,
      layerErrors,
    };
  });

  return {
    model: { preset: presetName, seeded, weights: weightsLabel, parameters: totalParams, floatBytes: 4 * totalParams, quantisedWeights, quantisedParameters },
    text: { bytes: text.length, tokens: tokens.length },
    float: { crossEntropy: floatCe },
    results,
    measures: [
      "bytes: every projection (attention, dense MLP, shared and routed experts) as stored, scales included; embeddings, norms, router gates and the head stay float32",
      "layer errors: ||x·Wqᵀ - x·Wᵀ|| / ||x·Wᵀ|| per kind of layer, on the float model's own inputs to it (routed experts: on every token of the layer, not only those routed to each)",
      "logits error, next-token (argmax) agreement, routing agreement and cross-entropy change over every position of the text",
      seeded
        ? "a seeded router scores its experts close together, so small weight errors flip some expert choices and those flips " +
          "dominate the logits error: compare 'experts agree' before reading the logits column as a format's own error"
        : "the trained model's next-byte cross-entropy on the text: its change is the accuracy a format costs this model on it " +
          "(a text it was trained on by default; pass held-out text with --text for a held-out figure); the checkpoint is " +
          "stored in BF16, so the bf16 scheme reproduces it exactly",
    ],
    doesNotMeasure: [
      seeded
        ? "accuracy on any task: the model is seeded, not trained, so its predictions are near chance and 'accuracy loss' has nothing to act on"
        : "accuracy on any task beyond predicting the next byte: the trained model is a 1.7M-parameter byte model of one book",
      seeded
        ? "a trained model's weights and activations (their outliers are what make int4 hard; seeded weights are Gaussian)"
        : "a large model's outliers: a tiny model trained for minutes has few, and those are what make int4 hard at scale",
      "speed: the reference computes in float64; bytes are what a kernel would read, not a timing",
      "calibrated methods (GPTQ, AWQ, SmoothQuant): these are round-to-nearest schemes",
    ],
  };
}

function squaredDistance(a: Float32Array, b?: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i]! - (b ? b[i]! : 0)) ** 2;
  return sum;
}

function agreement(a: Tensor, b: Tensor): number {
  const V = a.shape[a.shape.length - 1]!;
  const T = a.data.length / V;
  let same = 0;
  for (let t = 0; t < T; t++) same += Number(argmax(a.data.subarray(t * V, (t + 1) * V)) === argmax(b.data.subarray(t * V, (t + 1) * V)));
  return same / T;
}

type Traced = Map<string, { shape: readonly number[]; data: ArrayLike<number> }>;

function routingAgreement(a: Traced, b: Traced): number {
  let [same, total] = [0, 0];
  for (const [name, ta] of a) {
    const tb = b.get(name)!;
    const [N, k] = ta.shape as [number, number];
    for (let t = 0; t < N; t++) {
      const set = (d: ArrayLike<number>) => Array.from({ length: k }, (_, r) => d[t * k + r]!).sort((x, y) => x - y).join(",");
      same += Number(set(ta.data) === set(tb.data));
      total++;
    }
  }
  return total === 0 ? 1 : same / total;
}

/** Mean -log p(next byte) over the text, from logits [T, V] (position t predicts token t + 1). */
function crossEntropy(logits: Tensor, tokens: number[]): number {
  const V = logits.shape[1]!;
  let sum = 0;
  for (let t = 0; t + 1 < tokens.length; t++) {
    const row = logits.data.subarray(t * V, (t + 1) * V);
    sum += logsumexp(row) - row[tokens[t + 1]!]!;
  }
  return sum / Math.max(tokens.length - 1, 1);
}
