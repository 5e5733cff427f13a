// `tinyseek moe-report`: capacity factors, drop orders and bias balancing on a batch of text (src/reports/moe.ts).

import { isMoeLayer } from "../model/config.ts";
import { DEFAULT_BIAS_UPDATE_RATE } from "../moe/balance.ts";
import { formatMoeReport, moeReport } from "../reports/moe.ts";
import { loadReportModel } from "../reports/weights.ts";
import { numberArg, parse, positionals, processIo, UsageError, type Io } from "./io.ts";
import { toJson } from "./table.ts";

export const help = `usage: tinyseek moe-report [--weights FILE|random] [--layer N] [--seeded] [--seed N] [--batches N] [--tokens N] [--rate U] [--skew S] [--json]

Runs a built-in English text through the trained tiny checkpoint and routes one MoE layer's own input with that
layer's own gate, and prints for capacity factors 1, 1.25, 2 and dropless — with no bias, with a bias balanced
here by V3's rule, and with the bias the checkpoint learned in training — and for each drop order: capacity C,
drops, drop rate, MaxVio, active-expert fraction and capacity utilisation, per-expert load bars, entropies and
losses. With --weights random (or --seeded) the router is seeded and made deliberately skewed, so that balancing
has something to fix, and the output says so.

options:
  --weights FILE  the model: a safetensors checkpoint, or "random" for the tiny preset's seeded embedding and a
                  seeded, skewed gate (default: data/tiny-alice.safetensors, trained)
  --layer N       the MoE layer, numbered from 0 as in the trace (default: the first, 1 in tiny)
  --seeded        route seeded vectors through a seeded gate instead of text (no checkpoint)
  --seed N        seed of the seeded gate and of seeded vectors (default 1)
  --batches N     batches of bias balancing before the comparison (default 50)
  --tokens N      tokens a batch (default 128)
  --rate U        bias update rate u in b_i += u·sign(mean load - load_i) (default 0.001)
  --skew S        the gate's mean logit offset, from +S for expert 0 to -S for the last (default 0.5 for a
                  seeded gate, 0 for a checkpoint's own)
  --json          print the report as JSON`;

export async function run(args: string[], io: Io = processIo): Promise<number> {
  const { values, positionals: given } = parse(args, {
    weights: { type: "string" },
    layer: { type: "string" },
    seeded: { type: "boolean" },
    seed: { type: "string" },
    batches: { type: "string" },
    tokens: { type: "string" },
    rate: { type: "string" },
    skew: { type: "string" },
    json: { type: "boolean" },
  });
  positionals(given, [], "tinyseek moe-report [options]");
  if (values.seeded && values.weights !== undefined && values.weights !== "random") {
    throw new UsageError(`--seeded: seeded vectors go through a seeded gate, not ${values.weights}'s; drop --weights or --seeded`);
  }
  // The ranges moeReport checks, as usage errors that name the flag, before any model is loaded.
  const layer = values.layer === undefined ? undefined : numberArg("--layer", values.layer, 0, { integer: true, min: 0 });
  const options = {
    source: values.seeded ? "seeded" as const : "text" as const,
    seed: numberArg("--seed", values.seed, 1, { integer: true, min: 0, max: 2 ** 32 - 1 }),
    batches: numberArg("--batches", values.batches, 50, { integer: true, min: 1, max: 10_000 }),
    tokens: numberArg("--tokens", values.tokens, 128, { integer: true, min: 1, max: 100_000 }),
    rate: numberArg("--rate", values.rate, DEFAULT_BIAS_UPDATE_RATE, { min: 0, max: 1 }),
    skew: values.skew === undefined ? undefined : numberArg("--skew", values.skew, 0, { min: 0, max: 100 }),
  };
  const loaded = values.seeded ? null : await loadReportModel(values.weights);
  const seeded = loaded === null || loaded.seeded;
  if (seeded && layer !== undefined) throw new UsageError(`--layer: the seeded report routes the embedding, not a layer's input; drop --layer or load a checkpoint with --weights`);
  if (!seeded && layer !== undefined && !isMoeLayer(loaded!.model.config, layer)) {
    const c = loaded!.model.config;
    const moe = Array.from({ length: c.num_hidden_layers }, (_, l) => l).filter((l) => isMoeLayer(c, l));
    throw new UsageError(`--layer: expected a MoE layer of the model (${moe.join(", ") || "none"}, numbered from 0), got ${layer}`);
  }
  const report = moeReport({ ...options, ...(seeded ? {} : { model: loaded!.model, weights: loaded!.weightsLabel, layer }) });
  io.out(values.json ? toJson(report) : formatMoeReport(report));
  return 0;
}
