// Which WASM build a backend runs (wasm/simd-build.ts): the relaxed-SIMD one wherever it is asked for and the engine
// validates it, said in the description with the reason when it is not. In this process (no V8 flag set: the
// relaxed rows of the property suites set theirs in their own processes) the default follows what the engine
// validates; a child Node started with --experimental-wasm-relaxed-simd (Node 20's flag; harmless on 22+) must load
// the relaxed build.

import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { createBackend } from "../wasm/backend.ts";
import { chooseSimdBuild } from "../wasm/simd-build.ts";
import { WebAssemblyApi } from "../wasm/webassembly.ts";
import { RELAXED_PROBE } from "../wasm/simd-build.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

describe("the WASM build a backend loads", () => {
  it("relaxed SIMD when asked for and validated; SIMD128 with the reason otherwise", () => {
    let asked = 0;
    const validates = (answer: boolean) => () => (asked++, answer);
    expect(chooseSimdBuild(true, validates(true))).toEqual({ relaxed: true, simd: "relaxed SIMD" });
    expect(chooseSimdBuild(true, validates(false))).toEqual({ relaxed: false, simd: "SIMD128 (this engine does not validate relaxed SIMD)" });
    expect(chooseSimdBuild(false, validates(true))).toEqual({ relaxed: false, simd: "SIMD128 (relaxed SIMD turned off)" });
    expect(asked).toBe(2); // the engine is not asked when the build is turned off
  });

  it("says which it loaded in the description", async () => {
    const validated = WebAssemblyApi.validate(RELAXED_PROBE);
    const byDefault = await createBackend({ threads: 1 });
    const off = await createBackend({ threads: 1, relaxed: false });
    try {
      expect(byDefault.description).toMatch(validated ? /^WebAssembly relaxed SIMD, 1 thread/ : /^WebAssembly SIMD128 \(this engine does not validate relaxed SIMD\), 1 thread/);
      expect(off.description).toMatch(/^WebAssembly SIMD128 \(relaxed SIMD turned off\), 1 thread/);
    } finally {
      await byDefault.dispose();
      await off.dispose();
    }
  });

  it("loads the relaxed build in a Node started with --experimental-wasm-relaxed-simd", () => {
    const script = 'const { createBackend } = await import("./wasm/backend.ts"); const b = await createBackend({ threads: 1 }); console.log(b.description); await b.dispose();';
    const out = execFileSync(process.execPath, ["--experimental-wasm-relaxed-simd", "--import", "tsx", "--input-type=module", "-e", script], {
      cwd: ROOT, encoding: "utf8", env: { ...process.env, TINYSEEK_WASM_RELAXED: "1" },
    });
    expect(out.trim()).toMatch(/^WebAssembly relaxed SIMD, 1 thread/);
  }, 30_000);
});
