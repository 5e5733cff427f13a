// Mutation testing of the reference (`npm run mutate`; test/README.md has the score and how to read it). Stryker
// copies the project into .stryker-tmp/, plants mutants in the files below, and runs the vitest tests that cover
// each one. Not part of CI: the whole set takes hours on 2 cores. The WASM and WGSL kernels are compiled from
// sources Stryker cannot rebuild; test/README.md lists hand-made mutants of them instead.
// A subset: `npm run mutate -- --mutate src/masks.ts` (incremental: unchanged mutants keep their last result).

/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  vitest: { configFile: "vitest.mutate.config.mjs", related: true },
  coverageAnalysis: "perTest",
  // Code that runs while test files load (fixtures built in describe bodies, tables built on import) is "static"
  // to Stryker: each mutant there would need the whole related suite (minutes) instead of its covering tests.
  // Ignored: a mutant only reached that way is left out of the score; one also reached inside tests still runs.
  ignoreStatic: true,
  mutate: [
    "src/masks.ts",
    "src/rope.ts",
    "src/moe/**/*.ts",
    "src/attention/**/*.ts",
    "src/io/**/*.ts",
    "src/model/forward.ts",
    "src/model/layers.ts",
  ],
  // One test runner: the machine has 2 cores and other work on them.
  concurrency: 1,
  // The first run of every related test under instrumentation: minutes here.
  dryRunTimeoutMinutes: 30,
  timeoutMS: 20_000,
  // Built binaries and checkpoints travel with the sandbox; our own scratch does not.
  ignorePatterns: [".probe*", ".stryker-tmp*", "/reports", "bench/results", ".gl", ".whl"],
  incremental: true,
  incrementalFile: "reports/stryker-incremental.json",
  reporters: ["clear-text", "progress", "html", "json"],
  htmlReporter: { fileName: "reports/mutation/mutation.html" },
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  clearTextReporter: { allowEmojis: false, logTests: false, reportScoreTable: true },
  thresholds: { high: 80, low: 60, break: null },
};
