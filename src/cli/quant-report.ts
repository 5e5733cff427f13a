// `tinyseek quant-report`: the material's "68GB -> 17GB" and "under 2% accuracy loss", measured for every
// quantisation scheme on the trained tiny checkpoint (or --weights) and a real text (src/reports/quant.ts).

import { fileURLToPath } from "node:url";
import { readBytes } from "../io/safetensors.ts";
import { parseScheme, SCHEME_NAMES } from "../quant/model.ts";
import { TinyseekError } from "../errors.ts";
import { quantReport, type QuantReport } from "../reports/quant.ts";
import { loadReportModel } from "../reports/weights.ts";
import { numberArg, parse, positionals, processIo, UsageError, type Io } from "./io.ts";
import { formatNumber, formatTable, toJson, type Row } from "./table.ts";

const DEFAULT_TEXT = fileURLToPath(new URL("../../data/alice-chapter-1.txt", import.meta.url));

export const help = `usage: tinyseek quant-report [--text FILE] [--length N] [--schemes LIST] [--layer-rows N] [--preset tiny|small] [--weights FILE|random] [--json]

Quantises every projection of the model (attention, dense MLP, shared and routed experts; embeddings, norms, router
gates and the head stay float32) in each scheme and measures it against the float model on real text:
  bytes        the quantised weights as stored (scales included), and how many times smaller than float32 and bf16
  layer error  ||x·Wqᵀ - x·Wᵀ|| / ||x·Wᵀ|| per kind of layer, on the float model's own inputs to it
  logits       relative Frobenius error of the logits at every position, next-token (argmax) agreement, agreement
               of the MoE experts chosen, and the change in next-byte cross-entropy
The model is the trained tiny checkpoint data/tiny-alice.safetensors, so the cross-entropy change is what each
format costs its next-byte prediction; --preset small (no checkpoint) and --weights random are SEEDED, NOT TRAINED,
and measure only what each format does to Gaussian weights and outputs (the output says which).
Schemes: ${SCHEME_NAMES.join(", ")}
(int8.gG / int4.gG: per-group symmetric integers, G = 32, 64, 128; .a8: int8 activations per token too; fp8:
DeepSeek-V3's e4m3 in 128×128 blocks with 1×128 activation tiles; bf16, fp16, e4m3, e5m2: the weights rounded).

options:
  --text FILE      the text (default: data/alice-chapter-1.txt)
  --length N       use its first N bytes (default 128; the full report then takes about 25 s of one core's time,
                   measured under nice: a minute or more on a busy machine)
  --schemes LIST   comma-separated schemes (default: all of the above)
  --layer-rows N   rows of each layer's input used for the layer errors (default 64)
  --preset NAME    tiny (default) or small (seeded: only tiny has a trained checkpoint)
  --weights FILE   a safetensors checkpoint of the preset's shape, or "random" for seeded initialisation
                   (default: data/tiny-alice.safetensors for tiny)
  --json           print the report as JSON`;

export async function run(args: string[], io: Io = processIo): Promise<number> {
  const { values, positionals: given } = parse(args, {
    text: { type: "string" }, length: { type: "string" }, schemes: { type: "string" }, "layer-rows": { type: "string" },
    preset: { type: "string" }, weights: { type: "string" }, json: { type: "boolean" },
  });
  positionals(given, [], "tinyseek quant-report [options]");
  const count = (name: string, raw: string | undefined, fallback: number) => numberArg(`--${name}`, raw, fallback, { integer: true, min: 1 });
  const presetName = values.preset ?? "tiny";
  if (presetName !== "tiny" && presetName !== "small") throw new UsageError(`--preset: expected "tiny" or "small", got ${JSON.stringify(presetName)}`);
  const path = values.text ?? DEFAULT_TEXT;
  const all = await readBytes(path);
  const text = all.subarray(0, count("length", values.length, 128));
  if (text.length === 0) throw new UsageError(`--text: ${path} is empty`);
  const schemes = values.schemes === undefined ? SCHEME_NAMES : values.schemes.split(",").map((s) => s.trim());
  for (const s of schemes) {
    try {
      parseScheme(s);
    } catch (error) {
      if (error instanceof TinyseekError) throw new UsageError(`--schemes: ${error.message}`);
      throw error;
    }
  }
  const loaded = await loadReportModel(values.weights, presetName);
  const report = quantReport({
    text, schemes, layerRows: count("layer-rows", values["layer-rows"], 64), presetName, model: loaded.model, weights: loaded.weightsLabel, seeded: loaded.seeded,
  });
  io.out(values.json ? toJson(report) : formatQuantReport(report, path));
  return 0;
}

const pct = (v: number) => `${formatNumber(100 * v)}%`;
const bytes = (n: number) => (n >= 1e6 ? `${formatNumber(n / 1e6)} MB` : `${formatNumber(n / 1e3)} kB`);

export function formatQuantReport(r: QuantReport, textPath = "the text"): string {
  const rows: Row[] = r.results.map((s) => ({
    scheme: s.scheme,
    "bits/weight": s.bitsPerWeight,
    weights: bytes(s.weightBytes),
    "× vs f32": s.smallerThanF32,
    "× vs bf16": s.smallerThanBf16,
    model: bytes(s.modelBytes),
    "logits error": pct(s.logitsError),
    "top-1 agree": pct(s.top1Agreement),
    "experts agree": pct(s.routingAgreement),
    "CE change": pct(s.crossEntropyChange),
  }));
  const kinds = [...new Set(r.results.flatMap((s) => Object.keys(s.layerErrors)))];
  const layers: Row[] = kinds.map((kind) => ({ layer: kind, ...Object.fromEntries(r.results.map((s) => [s.scheme, s.layerErrors[kind] === undefined ? "" : pct(s.layerErrors[kind]!)])) }));
  const int4 = r.results.find((s) => s.scheme.startsWith("int4"));
  const best8 = r.results.find((s) => s.scheme.startsWith("int8"));
  const claims = [
    int4 ? `"4x smaller" / "68GB -> 17GB": ${int4.scheme} stores the projections in ${formatNumber(int4.bitsPerWeight)} bits a weight, ` +
      `${formatNumber(int4.smallerThanBf16)}x smaller than bf16 and ${formatNumber(int4.smallerThanF32)}x smaller than float32 (scales cost the rest); ` +
      `the whole model ${bytes(r.model.floatBytes)} -> ${bytes(int4.modelBytes)} with the float parts kept float32.` : null,
    int4 || best8 ? `"under 2% loss": logits error ${[best8, int4].filter(Boolean).map((s) => `${s!.scheme} ${pct(s!.logitsError)}`).join(", ")}; ` +
      `next-token agreement ${[best8, int4].filter(Boolean).map((s) => `${s!.scheme} ${pct(s!.top1Agreement)}`).join(", ")}. ` +
      (r.model.seeded
        ? `On a seeded model these are output errors, not accuracy: a trained model's accuracy change is not measured here.`
        : `On the trained model, next-byte cross-entropy ${formatNumber(r.float.crossEntropy)} nats/byte changes by ` +
          `${[best8, int4].filter(Boolean).map((s) => `${s!.scheme} ${pct(s!.crossEntropyChange)}`).join(", ")}.`) : null,
  ].filter((c): c is string => c !== null);
  return [
    `quant-report: ${r.model.preset} preset, ${r.model.seeded ? `SEEDED weights (untrained: ${r.model.weights})` : `trained weights ${r.model.weights}`}, ` +
      `${r.model.parameters.toLocaleString("en")} parameters, ` +
      `${r.model.quantisedWeights} projections quantised (${r.model.quantisedParameters.toLocaleString("en")} weights); ` +
      `text: ${r.text.bytes} bytes of ${textPath} (${r.text.tokens} tokens with BOS); float cross-entropy ${formatNumber(r.float.crossEntropy)} nats/byte (ln 260 = ${formatNumber(Math.log(260))})`,
    "",
    formatTable(rows),
    "",
    "Relative error of each layer's output on the float model's inputs (kv_b_proj is folded as a matrix by absorbed MLA, so it shows only in the logits):",
    formatTable(layers),
    "",
    "The material's claims, measured:",
    ...claims.map((c) => `  ${c}`),
    "",
    "What this measures:",
    ...r.measures.map((m) => `  - ${m}`),
    "What it does not:",
    ...r.doesNotMeasure.map((m) => `  - ${m}`),
  ].join("\n");
}
