// One implementation of the whole model for bench/model.ts, in a process of its own. The one forward
// (src/model/forward.ts) is code every implementation shares: run in one isolate with the reference's tensors, WASM's
// handles and tfjs's tensors in turn, its call sites see every kind of value and V8 keeps only generic code for
// them, which slowed tiny's WASM decode 2.3× and the reference's 1.6× (bench/README.md, "Decode: every attention
// kind"). A user's process runs one backend; so here each implementation has a process to itself (its own isolate,
// heap and garbage collector threads: nothing is shared but the machine), and the bench's process only interleaves
// their rounds.

import { Bench } from "tinybench";
import type { Backend } from "../src/backend.ts";
import { opsOver } from "../src/device/ops.ts";
import { cacheValues, createCache, releaseCache, type ModelCache } from "../src/model/cache.ts";
import type { AttentionKind } from "../src/model/config.ts";
import { forward } from "../src/model/forward.ts";
import { preset } from "../src/model/presets.ts";
import { initModel, type Model, modelFromSafetensors, modelToSafetensors } from "../src/model/weights.ts";
import { allowRelaxedSimd, createBackend as createWasm, type WasmBackend } from "../wasm/backend.ts";
import { type TfValue, tfjsKernels } from "../train/tfjs-kernels.ts";
import { setUpTfjs } from "../train/tfjs.ts";
import type { ImplName } from "./kernels.ts";

/** Which implementation a worker runs, and the cache positions its sessions allocate. */
export interface ImplSpec {
  impl: ImplName;
  threads: number;
  capacity: number;
}

/** What the main thread asks (each answered by { id, result } or { id, error }). */
export type Request = { id: number } & (
  | { op: "model"; name: string; kind: AttentionKind }
  | { op: "warm"; prompt: number[]; ms: number }
  | { op: "session"; prompt: number[]; steps: number }
  | { op: "prefill"; prompt: number[]; timeMs: number }
  | { op: "rate"; n: number; rounds: number }
);

/** One way to run the whole model: a prefill, and sessions that decode through a cache of their own. */
interface ModelImpl {
  prefill(model: Model, prompt: number[]): void;
  /** A fresh sequence: feed() runs tokens through its cache. */
  session(model: Model): { feed(tokens: number[]): void; release(): void };
  wasm?: WasmBackend;
}

/**
 * The model a row times: the preset with that attention kind, written as BF16 and read back, as a BF16 checkpoint
 * (the shipped one, DeepSeek's) is. WASM streams such weights as BF16 (bit-identical results, half the bytes); the
 * reference and tfjs widen them to float32 as ever. initModel is seeded, so every worker builds the same weights.
 */
export function benchModel(name: string, kind: AttentionKind): Model {
  return modelFromSafetensors(modelToSafetensors(initModel(preset(name, { attention_kind: kind })), { dtype: "BF16" }));
}

/** The one forward on a backend (undefined: the reference), decoding through a cache of `capacity` positions. */
function backendImpl(backend: Backend | undefined, capacity: number): ModelImpl {
  return {
    prefill: (model, prompt) => void forward(model, prompt, { backend }),
    session(model) {
      const cache = createCache(model.config, { backend, capacity });
      return { feed: (tokens) => void forward(model, tokens, { backend, cache }), release: () => releaseCache(cache) };
    },
  };
}

/**
 * The one forward on tfjs (train/tfjs-kernels.ts) over tfjs's backend `which`. tfjs values are tensors that only a
 * scope frees: each call runs in its own scope, and a session keeps its cache's tensors across steps, disposing the
 * ones a step replaced.
 */
async function tfjsImpl(which: "wasm" | "cpu", capacity: number): Promise<ModelImpl> {
  const tf = await setUpTfjs(); // tfjs-backend-wasm, as training runs it
  if (which === "cpu") {
    await import("@tensorflow/tfjs-backend-cpu");
    await tf.setBackend("cpu");
  }
  const backend = { ops: opsOver(tfjsKernels()) } as unknown as Backend;
  const cacheTensors = (cache: ModelCache) => cacheValues(cache).map((v) => (v as TfValue).t);
  return {
    prefill: (model, prompt) => tf.tidy(() => void forward(model, prompt, { backend })),
    session(model) {
      const cache = createCache(model.config, { backend, capacity });
      let held = new Set<import("@tensorflow/tfjs-core").Tensor>();
      return {
        feed(tokens) {
          tf.engine().startScope();
          let now = held;
          try {
            forward(model, tokens, { backend, cache });
          } finally {
            now = new Set(cacheTensors(cache));
            for (const t of now) tf.keep(t);
            tf.engine().endScope();
            for (const t of held) if (!now.has(t)) t.dispose();
            held = now;
          }
        },
        release() {
          for (const t of held) t.dispose();
          held.clear();
        },
      };
    },
  };
}

async function makeImpl({ impl, threads, capacity }: ImplSpec): Promise<ModelImpl> {
  if (impl === "reference") return backendImpl(undefined, capacity);
  if (impl === "wasm" || impl === "wasm-relaxed") {
    // The relaxed-SIMD build (its fused multiply-add) where the engine validates it: Node 20 behind a V8 flag, set here
    // before the module compiles; the plain row is the SIMD128 build on every engine.
    const relaxed = impl === "wasm-relaxed";
    if (relaxed) allowRelaxedSimd();
    const wasm = await createWasm({ threads, relaxed });
    if (relaxed && !wasm.description.startsWith("WebAssembly relaxed SIMD,")) throw new Error("the engine does not validate the relaxed-SIMD build");
    return { ...backendImpl(wasm, capacity), wasm };
  }
  if (impl === "tfjs-wasm" || impl === "tfjs-cpu") return tfjsImpl(impl === "tfjs-wasm" ? "wasm" : "cpu", capacity);
  throw new Error(`model bench: no whole-model implementation "${impl}"`);
}


/** A fresh session fed the prompt (untimed), then `steps` single tokens: each step's milliseconds. */
function decodeSession(impl: ModelImpl, model: Model, prompt: number[], steps: number): number[] {
  const session = impl.session(model);
  try {
    session.feed(prompt);
    const times: number[] = [];
    for (let step = 0; step < steps; step++) {
      const started = performance.now();
      session.feed([prompt[step % prompt.length]!]);
      times.push(performance.now() - started);
    }
    return times;
  } finally {
    session.release();
  }
}

async function timeMedian(fn: () => unknown, timeMs: number): Promise<number> {
  const bench = new Bench({ time: timeMs, iterations: 3, warmupTime: Math.min(50, timeMs / 4), warmupIterations: 1 });
  bench.add("run", fn);
  await bench.run();
  const result = bench.tasks[0]!.result;
  if (result.state === "errored") throw result.error;
  if (!("latency" in result)) throw new Error("tinybench gave no latency");
  return result.latency.p50;
}

/**
 * The WASM backend's best matmul rate (GFLOP/s) over `rounds` n × n × n products on its host kernels: the best, not
 * the median, because each call also writes a fresh result whose page faults vary from call to call (bench/README.md,
 * "Matmul at large n"), and a compute bound should not move with them.
 */
function matmulRate(wasm: WasmBackend, n: number, rounds: number): number {
  const a = { shape: [n, n], data: Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5) };
  let best = Infinity;
  for (let r = -1; r < rounds; r++) {
    const started = performance.now();
    wasm.kernels!.matmul(a, a);
    if (r >= 0) best = Math.min(best, performance.now() - started);
  }
  return (2 * n ** 3) / (best * 1e6);
}

async function serve(spec: ImplSpec): Promise<void> {
  const post = (message: unknown) => process.send!(message);
  let impl: ModelImpl;
  try {
    impl = await makeImpl(spec);
  } catch (error) {
    post({ id: 0, error: (error as Error).message.split("\n")[0] });
    return;
  }
  post({ id: 0, result: "ready" });
  let model: Model | undefined;
  const answer = async (request: Request): Promise<unknown> => {
    if (request.op === "model") return void (model = benchModel(request.name, request.kind));
    if (request.op === "rate") return impl.wasm ? matmulRate(impl.wasm, request.n, request.rounds) : 0;
    if (!model) throw new Error("model bench: no model chosen yet");
    const m = model;
    if (request.op === "session") return decodeSession(impl, m, request.prompt, request.steps);
    if (request.op === "prefill") return timeMedian(() => impl.prefill(m, request.prompt), request.timeMs);
    const started = performance.now(); // "warm": whole sessions, untimed, for request.ms
    do decodeSession(impl, m, request.prompt, 16); while (performance.now() - started < request.ms);
    return null;
  };
  process.on("message", (request: Request) => {
    answer(request).then(
      (result) => post({ id: request.id, result }),
      (error: Error) => post({ id: request.id, error: error.message }),
    );
  });
}

// Forked by bench/model.ts with the implementation's spec as its argument, talking over the IPC channel.
if (process.send && process.argv[2]) void serve(JSON.parse(process.argv[2]) as ImplSpec);
