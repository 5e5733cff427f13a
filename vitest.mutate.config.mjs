// The tests Stryker runs against each mutant of the reference (stryker.config.mjs). Left out, because they cannot
// tell a mutant of the reference apart or cost minutes per mutant on 2 cores for nothing it adds:
// - backend agreement suites: they run the one forward on both sides, so a mutant there changes both sides alike
//   (the kernel property suites stay: their reference side is what a mutant changes);
// - suites that run our code in another process or worker (the CLI, Dawn's bridge): Stryker activates a mutant
//   in its own test process only;
// - the reports and the trained checkpoint's check, whose components have their own tests.
// MUTATE_TESTS="test/moe-*.test.ts test/golden.test.ts" narrows the run to those files (globs, space-separated):
// one component against its own suites, in a fraction of the time. Its score is then a lower bound of the whole
// suite's, since a mutant the left-out files would kill counts as surviving.
import { mergeConfig } from "vitest/config";
import base from "./vitest.config.ts";

const config = mergeConfig(base, {
  test: {
    exclude: [
      "test/webgpu*.test.ts",
      "test/sync-bridge.test.ts",
      "test/wasm*.test.ts",
      "test/model-backends.test.ts",
      "test/golden-backends.test.ts",
      "test/*cli*.test.ts",
      "test/native-stderr.test.ts",
      "test/notebooks.test.ts",
      "test/*-report.test.ts",
      "test/tiny-alice.test.ts",
    ],
  },
});
// Set after merging: mergeConfig would append these globs to the base config's instead of replacing them.
const only = process.env.MUTATE_TESTS?.split(/\s+/).filter(Boolean);
if (only?.length) config.test.include = only;

export default config;
