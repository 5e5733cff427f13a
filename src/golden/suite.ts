// The golden suite: every component's cases in one list. Each family of components keeps its cases in a module
// here, src/golden/<name>-cases.ts, exporting a function that returns them; to add yours, import it below and add
// one line to SOURCES. `tinyseek golden write spec/golden` (npm run golden:write) regenerates the committed files
// afterwards.

import { TinyseekError } from "../errors.ts";
import { adapterGoldenCases } from "./adapter-cases.ts";
import type { GoldenCase } from "./case.ts";
import { coreGoldenCases } from "./core-cases.ts";
import { mlaFamilyGoldenCases } from "./mla-cases.ts";
import { modelGoldenCases } from "./model-cases.ts";
import { moeGoldenCases } from "./moe-cases.ts";
import { mtpGoldenCases } from "./mtp-cases.ts";
import { quantGoldenCases } from "./quant-cases.ts";
import { segmentedSparseGoldenCases } from "./segmented-sparse-cases.ts";

/** One line per component: its cases. Keep them small (the committed suite stays under ~2 MB). */
const SOURCES: readonly (() => GoldenCase[])[] = [
  coreGoldenCases,
  quantGoldenCases,
  moeGoldenCases,
  segmentedSparseGoldenCases,
  mlaFamilyGoldenCases,
  modelGoldenCases,
  mtpGoldenCases,
  adapterGoldenCases,
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
