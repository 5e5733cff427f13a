// The golden suite: every component's cases in one list. Each component keeps its cases in its own module and
// exports a function returning them; to add yours, import it below and add one line to SOURCES. `tinyseek golden
// write spec/golden` (npm run golden:write) regenerates the committed files afterwards.

import { mlaFamilyGoldenCases } from "../attention/mla-golden.ts";
import { segmentedSparseGoldenCases } from "../attention/segmented-sparse-golden.ts";
import { TinyseekError } from "../errors.ts";
import { modelGoldenCases } from "../model/golden.ts";
import { moeGoldenCases } from "../moe/golden.ts";
import { quantGoldenCases } from "../quant/golden.ts";
import { type GoldenCase } from "./case.ts";
import { coreGoldenCases } from "./core-cases.ts";

/** One line per component: its cases. Keep them small (the committed suite stays under ~2 MB). */
const SOURCES: readonly (() => GoldenCase[])[] = [
  coreGoldenCases,
  quantGoldenCases,
  moeGoldenCases,
  segmentedSparseGoldenCases,
  mlaFamilyGoldenCases,
  modelGoldenCases,
];

/** Every case, in a stable order; names are unique (they are the file names). */
export function goldenSuite(): GoldenCase[] {
  const cases = SOURCES.flatMap((source) => source());
  const seen = new Set<string>();
  for (const c of cases) {
    if (seen.has(c.name)) throw new TinyseekError(`golden suite: two cases are named ${JSON.stringify(c.name)}`);
    seen.add(c.name);
  }
  return cases;
}

export { matchesGlob } from "../glob.ts";
