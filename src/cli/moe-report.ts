// `tinyseek moe-report`: capacity factors, drop orders and bias balancing on a batch of text (src/reports/moe.ts).

import { DEFAULT_BIAS_UPDATE_RATE } from "../moe/balance.ts";
import { formatMoeReport, moeReport } from "../reports/moe.ts";
import { numberArg, parse, positionals, processIo, type Io } from "./io.ts";
import { toJson } from "./table.ts";

export const help = `usage: tinyseek moe-report [--seeded] [--seed N] [--batches N] [--tokens N] [--rate U] [--skew S] [--json]

Routes a batch through the tiny preset's MoE router, made deliberately skewed, and prints for capacity factors
1, 1.25, 2 and dropless, with and without bias balancing, and for each drop order: capacity C, drops, drop rate,
MaxVio, active-expert fraction and capacity utilisation, per-expert load bars, entropies and losses.

options:
  --seeded      route seeded vectors instead of text embedded by the tiny model's embedding
  --seed N      seed of the router's gate and of seeded vectors (default 1)
  --batches N   batches of bias balancing before the comparison (default 50)
  --tokens N    tokens a batch (default 128)
  --rate U      bias update rate u in b_i += u·sign(mean load - load_i) (default 0.001)
  --skew S      the gate's mean logit offset, from +S for expert 0 to -S for the last (default 0.5)
  --json        print the report as JSON`;

export async function run(args: string[], io: Io = processIo): Promise<number> {
  const { values, positionals: given } = parse(args, {
    seeded: { type: "boolean" },
    seed: { type: "string" },
    batches: { type: "string" },
    tokens: { type: "string" },
    rate: { type: "string" },
    skew: { type: "string" },
    json: { type: "boolean" },
  });
  positionals(given, [], "tinyseek moe-report [options]");
  // The ranges moeReport checks, as usage errors that name the flag.
  const report = moeReport({
    source: values.seeded ? "seeded" : "text",
    seed: numberArg("--seed", values.seed, 1, { integer: true, min: 0, max: 2 ** 32 - 1 }),
    batches: numberArg("--batches", values.batches, 50, { integer: true, min: 1, max: 10_000 }),
    tokens: numberArg("--tokens", values.tokens, 128, { integer: true, min: 1, max: 100_000 }),
    rate: numberArg("--rate", values.rate, DEFAULT_BIAS_UPDATE_RATE, { min: 0, max: 1 }),
    skew: numberArg("--skew", values.skew, 0.5, { min: 0, max: 100 }),
  });
  io.out(values.json ? toJson(report) : formatMoeReport(report));
  return 0;
}
