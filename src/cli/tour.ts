// `tinyseek tour`: masks, attention and time decay explained on seeded data (src/tour.ts).

import { renderTour, runTour } from "../tour.ts";
import { numberArg, parse, positionals, processIo, type Io } from "./io.ts";

export const help = `usage: tinyseek tour [--seed N] [--json]

A short guided tour of the reference core: the four attention masks as grids, one attention computation with its
probabilities, and the two time decays side by side (relative fades old tokens; the material's as-written does not).

options:
  --seed N   the seed of the tour's data (default 7); the same seed prints the same tour everywhere
  --json     print the numbers as JSON instead of text`;

export async function run(args: string[], io: Io = processIo): Promise<number> {
  const { values, positionals: given } = parse(args, { seed: { type: "string" }, json: { type: "boolean" } });
  positionals(given, [], "tinyseek tour [--seed N] [--json]");
  const seed = numberArg("--seed", values.seed, 7, { integer: true, min: 0, max: 2 ** 32 - 1 });
  const report = runTour(seed);
  io.out(values.json ? JSON.stringify(report, null, 2) : renderTour(report));
  return 0;
}
