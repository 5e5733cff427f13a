import { configDefaults, defineConfig } from "vitest/config";
import { dropDawnNoise } from "./test/stderr-filter.ts";

// Dawn's known warnings, which the workers' stderr carries to this process (test/stderr-filter.ts).
dropDawnNoise(process.stderr);

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Stryker's sandboxes (copies of test/) and its reports are not ours to run (npm run mutate).
    exclude: [...configDefaults.exclude, ".stryker-tmp*/**", "reports/**"],
    setupFiles: ["./test/setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: process.env.CI ? ["default", "./test/summary-reporter.ts"] : ["default"],
  },
});
