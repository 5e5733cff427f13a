// The WASM SIMD backend in Node: an AssemblyScript module (wasm/assembly/) compiled with SIMD128 into
// wasm/build/tinyseek.wasm, read from this checkout and assembled by wasm/instance.ts (one shared memory, the
// kernels over one core) with Node's worker threads for the pool (wasm/pool-node.ts). A browser assembles the
// same backend from a fetched module and Web Workers (web/platform/wasm.ts).

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { setFlagsFromString } from "node:v8";
import { fileURLToPath } from "node:url";
import { checkInteger, TinyseekError } from "../src/errors.ts";
import { instantiateBackend, type WasmBackend, type WasmOptions } from "./instance.ts";
import { spawnNodeWorker } from "./pool-node.ts";
import { chooseSimdBuild, RELAXED_PROBE, type SimdBuild } from "./simd-build.ts";
import { WebAssemblyApi, type WasmModule } from "./webassembly.ts";

export { wasmKernels, wasmStats, type WasmBackend, type WasmOptions, type WasmStats } from "./instance.ts";

const buildPath = (name: string) => fileURLToPath(new URL(`./build/${name}`, import.meta.url));
const compiled = new Map<string, Promise<WasmModule>>();

/**
 * Node 20 validates relaxed SIMD only behind a V8 flag, which NODE_OPTIONS refuses and worker threads refuse as an
 * argument: this sets it in the process, where the engine does not validate the build already. Call it before the
 * first WebAssembly compile (the engine reads the flag then).
 */
export function allowRelaxedSimd(): void {
  if (!WebAssemblyApi.validate(RELAXED_PROBE)) setFlagsFromString("--experimental-wasm-relaxed-simd");
}

/**
 * The compiled module (built first if this checkout has not built it yet): the relaxed-SIMD build when asked for
 * and the engine validates it, else the SIMD128 one (wasm/simd-build.ts). Says which it gave, and why.
 */
export async function wasmModule(relaxed: boolean): Promise<{ module: WasmModule } & SimdBuild> {
  const path = buildPath("tinyseek.wasm"), relaxedPath = buildPath("tinyseek.relaxed.wasm");
  if (!existsSync(path) || !existsSync(relaxedPath)) {
    execFileSync(process.execPath, [fileURLToPath(new URL("./build.mjs", import.meta.url))], { stdio: "inherit" });
  }
  if (!existsSync(path)) throw new TinyseekError(`wasm: ${path} is missing: run npm run build:wasm`);
  const build = chooseSimdBuild(relaxed, () => existsSync(relaxedPath) && WebAssemblyApi.validate(readFileSync(relaxedPath)));
  const use = build.relaxed ? relaxedPath : path;
  if (!compiled.has(use)) compiled.set(use, WebAssemblyApi.compile(readFileSync(use)));
  return { module: await compiled.get(use)!, ...build };
}

export async function createBackend(options: WasmOptions = {}): Promise<WasmBackend> {
  const threads = options.threads ?? availableParallelism();
  checkInteger("threads", threads, 1, 256);
  const check = options.check ?? process.env.TINYSEEK_WASM_CHECK === "1";
  const { module, relaxed, simd } = await wasmModule(options.relaxed ?? process.env.TINYSEEK_WASM_RELAXED !== "0");
  const bf16Weights = options.bf16Weights ?? process.env.TINYSEEK_WASM_BF16 !== "0";
  return instantiateBackend({ module, relaxed, simd, threads, check, spawn: spawnNodeWorker }, { ...options, bf16Weights });
}
