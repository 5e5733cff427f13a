// The operations the one forward calls (src/model/forward.ts): each checks its arguments, applies what hangs on a
// weight (quantised codes, an unmerged LoRA: src/model-adapters.ts), then calls the backend's kernel of the same
// name (src/device/kernels.ts). Weights are passed as the model's host tensors; the backend keeps its own copy of
// each (`weight`), made once. This is the tfjs shape: ops validate, kernels compute.

import type { Lora } from "../adapters.ts";
import { argError, NotSupportedError } from "../errors.ts";
import type { Kernels } from "../kernels.ts";
import type { HookedWeight } from "../model-adapters.ts";
import type { ExpertWeights, Routing } from "../moe/experts.ts";
import type { MoeConfig } from "../moe/layer.ts";
import { numel, shapeString, type Tensor } from "../tensor.ts";
import type { AttendArgs, AttentionArgs, DeviceKernels, GemmArgs, IndexScoreArgs, Value } from "./kernels.ts";
import { referenceDevice, referenceHostKernels } from "./reference.ts";

/** The operations the forward calls: the kernels' own signatures where values go in and out, weights as host tensors. */
export interface Ops<X extends Value = Value> extends Pick<DeviceKernels<X>,
  "upload" | "read" | "release" | "free" | "empty" | "embed" | "gatherRows" | "addRows" | "splitHeads" | "mergeHeads" |
  "concatLast" | "sliceRows" | "reshape" | "concatRows" | "writeRows" | "add" | "swiglu" | "softmax" | "attention" | "attentionProbs" |
  "attendWith" | "indexScores"> {
  readonly name: string;
  readonly kernels: DeviceKernels<X>;
  /** Synchronous kernels over host tensors, for the layers the forward computes on the host (src/model/layers.ts). */
  readonly hostKernels: Kernels;
  weight(t: Tensor): X;
  linear(x: X, w: Tensor): X;
  gemm(a: X, b: Tensor, c: X, args: GemmArgs): void;
  rmsnorm(x: X, w: Tensor, eps: number): X;
  layernorm(x: X, w: Tensor, b: Tensor, eps: number): X;
  /** The kernel's rotary; interleaved unless told otherwise. */
  rope(x: X, positions: Int32Array, freqs: Float64Array, interleaved?: boolean): X;
  moe(x: X, routing: Routing, experts: ExpertWeights, router?: { logits: X; config: MoeConfig }): X;
  settle(): void;
}

const made = new WeakMap<object, WeakMap<Kernels, Ops<Value>>>();

/** The checked operations over a backend's kernels (made once per kernels and host kernels). */
export function opsOver<X extends Value>(kernels: DeviceKernels<X>, hostKernels: Kernels = referenceHostKernels): Ops<X> {
  let byHost = made.get(kernels);
  if (!byHost) made.set(kernels, (byHost = new WeakMap()));
  let ops = byHost.get(hostKernels) as unknown as Ops<X> | undefined;
  if (!ops) {
    ops = new CheckedOps(kernels, hostKernels);
    byHost.set(hostKernels, ops as unknown as Ops<Value>);
  }
  return ops;
}

const last = (x: Value) => x.shape[x.shape.length - 1]!;

/** Elements a strided batch of matrices spans: the last one's end. */
const reach = (off: number, stride: number, size: number, batches: number) => off + (batches - 1) * stride + size;

function same(argument: string, x: Value, shape: readonly number[]): void {
  let equal = x.shape.length === shape.length;
  for (let i = 0; equal && i < shape.length; i++) equal = x.shape[i] === shape[i];
  if (!equal) throw argError(argument, `shape ${shapeString(shape)}`, shapeString(x.shape));
}

function rank(argument: string, x: Value, n: number, what: string): void {
  if (!x || !Array.isArray(x.shape) || x.shape.length !== n) throw argError(argument, `shape ${what}`, x?.shape ? shapeString(x.shape) : x);
}

/**
 * The checked operations over a backend's kernels. With `made`, every value they make is also pushed there (one list
 * per forward: src/device/scope.ts makes a new instance, so the methods are shared and nothing is re-made per call).
 */
export class CheckedOps<X extends Value> implements Ops<X> {
  constructor(readonly kernels: DeviceKernels<X>, readonly hostKernels: Kernels, private readonly made?: X[]) {}

  get name(): string {
    return this.kernels.name;
  }

  private keep(x: X): X {
    if (this.made) this.made.push(x);
    return x;
  }

  /** x·Wᵀ the way W asks to be applied (quantised, with an unmerged LoRA, or plain). */
  private unkept(x: X, w: Tensor): X {
    if (!w || w.shape?.length !== 2) throw argError("weight", "a matrix [out, in]", w?.shape ? shapeString(w.shape) : w);
    if (last(x) !== w.shape[1]) throw argError("x", `shape [..., ${w.shape[1]}] for a weight ${shapeString(w.shape)}`, shapeString(x.shape));
    const { quant, lora } = w as HookedWeight;
    if (lora) {
      // x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ, the update's rows scattered into the output rows it writes.
      const hidden = this.kernels.linear(x, this.kernels.weight(lora.lora.A));
      const update = this.kernels.linear(hidden, this.kernels.weight(scaledB(lora.lora, w.shape[0]!)));
      const base = this.unkept(x, lora.base);
      const out = this.kernels.add(base, update);
      this.kernels.release(hidden, update, base);
      return out;
    }
    if (quant) {
      if (this.kernels.quantLinear) return this.kernels.quantLinear(x, quant.weight, quant.activations);
      if (quant.activations) throw new NotSupportedError(`${this.kernels.name}: quantised activations need a quantLinear kernel; weight-only schemes run as their dequantised weights`);
    }
    return this.kernels.linear(x, this.kernels.weight(w)); // a weight-only quantised tensor's data holds its dequantised values
  }

  weight(t: Tensor): X {
    return this.kernels.weight(t);
  }

  upload(t: Tensor): X {
    if (!t || !(t.data instanceof Float32Array) || numel(t.shape) !== t.data.length) {
      throw argError("value", "a tensor { shape, data: Float32Array } whose data fills its shape", t?.shape ? shapeString(t.shape) : t);
    }
    return this.keep(this.kernels.upload(t));
  }

  read(x: X): Float32Array | Promise<Float32Array> {
    return this.kernels.read(x);
  }
  release(...xs: X[]): void {
    this.kernels.release(...xs);
  }
  free(x: X): void {
    this.kernels.free(x);
  }
  empty(shape: readonly number[]): X {
    return this.keep(this.kernels.empty(shape));
  }
  embed(table: Tensor, ids: Int32Array): X {
    const V = table.shape[0]!;
    for (let t = 0; t < ids.length; t++) {
      if (!Number.isInteger(ids[t]) || ids[t]! < 0 || ids[t]! >= V) throw argError(`tokens[${t}]`, `an integer in [0, ${V - 1}]`, ids[t]);
    }
    return this.keep(this.kernels.embed(table, ids));
  }

  gatherRows(x: X, rows: Int32Array, perPlane = false): X {
    if (!x || !Array.isArray(x.shape) || (x.shape.length !== 2 && x.shape.length !== 3)) {
      throw argError("x", "shape [N, D] or [A, N, D]", x?.shape ? shapeString(x.shape) : x);
    }
    const [A, N] = x.shape.length === 3 ? [x.shape[0]!, x.shape[1]!] : [1, x.shape[0]!];
    if (perPlane && rows.length % A !== 0) throw argError("rows", `a length that is a multiple of ${A} (n rows for each plane of x ${shapeString(x.shape)})`, rows.length);
    for (let i = 0; i < rows.length; i++) if (!(rows[i]! >= 0 && rows[i]! < N)) throw argError(`rows[${i}]`, `a row in [0, ${N - 1}]`, rows[i]);
    return this.keep(this.kernels.gatherRows(x, rows, perPlane));
  }

  addRows(x: X, update: X, slots: Int32Array): X {
    rank("x", x, 2, "[N, D]");
    rank("update", update, 2, `[n, ${x.shape[1]}]`);
    if (update.shape[1] !== x.shape[1]) throw argError("update", `shape [n, ${x.shape[1]}]`, shapeString(update.shape));
    if (slots.length !== x.shape[0]) throw argError("slots", `${x.shape[0]} slots`, slots.length);
    slots.forEach((s, i) => {
      if (!(s < update.shape[0]!)) throw argError(`slots[${i}]`, `-1 or a row of update below ${update.shape[0]}`, s);
    });
    return this.keep(this.kernels.addRows(x, update, slots));
  }

  splitHeads(x: X, H: number, widths: readonly number[]): X[] {
    rank("x", x, 2, "[T, H·d]");
    let per = 0;
    for (const w of widths) per += w;
    if (x.shape[1] !== H * per) throw argError("x", `shape [T, ${H * per}] (${H} heads of ${per})`, shapeString(x.shape));
    const parts = this.kernels.splitHeads(x, H, widths);
    for (const part of parts) this.keep(part);
    return parts;
  }

  mergeHeads(x: X): X {
    rank("x", x, 3, "[H, T, d]");
    return this.keep(this.kernels.mergeHeads(x));
  }

  concatLast(parts: readonly X[]): X {
    if (!Array.isArray(parts) || parts.length === 0) throw argError("parts", "at least one value", Array.isArray(parts) ? 0 : parts);
    parts.forEach((p, i) => rank(`parts[${i}]`, p, 3, "[A, T, w]"));
    let A = 1;
    for (const p of parts) A = Math.max(A, p.shape[0]!);
    parts.forEach((p, i) => {
      if ((p.shape[0] !== A && p.shape[0] !== 1) || p.shape[1] !== parts[0]!.shape[1]) throw argError(`parts[${i}]`, `shape [${A} or 1, ${parts[0]!.shape[1]}, w]`, shapeString(p.shape));
    });
    return this.keep(this.kernels.concatLast(parts));
  }

  sliceRows(x: X, start: number, count: number): X {
    rank("x", x, 2, "[N, D]");
    if (!(start >= 0 && count >= 0 && start + count <= x.shape[0]!)) throw argError("rows", `a range within [0, ${x.shape[0]})`, `[${start}, ${start + count})`);
    return this.keep(this.kernels.sliceRows(x, start, count));
  }

  reshape(x: X, shape: readonly number[]): X {
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) throw argError("shape", "a list of integers >= 0", Array.isArray(shape) ? `[${shape.join(", ")}]` : shape);
    if (numel(shape) !== numel(x.shape)) throw argError("shape", `${numel(x.shape)} elements (x is ${shapeString(x.shape)})`, `${shapeString(shape)}, ${numel(shape)}`);
    return this.keep(this.kernels.reshape(x, shape));
  }

  concatRows(parts: readonly X[]): X {
    parts.forEach((p, i) => {
      rank(`parts[${i}]`, p, 2, "[N, D]");
      if (p.shape[1] !== parts[0]!.shape[1]) throw argError(`parts[${i}]`, `shape [N, ${parts[0]!.shape[1]}]`, shapeString(p.shape));
    });
    return this.keep(this.kernels.concatRows(parts));
  }

  writeRows(dst: X, src: X, at: number): void {
    rank("dst", dst, 3, "[A, rows, w]");
    rank("src", src, 3, "[A, T, w]");
    if (src.shape[0] !== dst.shape[0] || src.shape[2] !== dst.shape[2] || at + src.shape[1]! > dst.shape[1]!) {
      throw argError("src", `shape [${dst.shape[0]}, ≤ ${dst.shape[1]! - at}, ${dst.shape[2]}] (written at row ${at})`, shapeString(src.shape));
    }
    this.kernels.writeRows(dst, src, at);
  }

  add(a: X, b: X): X {
    same("b", b, a.shape);
    return this.keep(this.kernels.add(a, b));
  }

  linear(x: X, w: Tensor): X {
    return this.keep(this.unkept(x, w));
  }
  gemm(a: X, b: Tensor, c: X, args: GemmArgs): void {
    const { M, N, K, batches = 1, strideA = M * K, strideB = K * N, strideC = M * N, offA = 0, offB = 0, offC = 0 } = args;
    // Every matrix read or written must lie inside its value: a wrong stride must not reach another's memory.
    const [reachA, reachB, reachC] = [reach(offA, strideA, M * K, batches), reach(offB, strideB, N * K, batches), reach(offC, strideC, M * N, batches)];
    if (reachA > numel(a.shape)) throw argError("a", `at least ${reachA} elements`, numel(a.shape));
    if (reachB > b.data.length) throw argError("b", `at least ${reachB} elements`, b.data.length);
    if (reachC > numel(c.shape)) throw argError("c", `at least ${reachC} elements`, numel(c.shape));
    this.kernels.gemm(a, this.kernels.weight(b), c, args);
  }

  rmsnorm(x: X, w: Tensor, eps: number): X {
    if (last(x) !== w.shape[0]) throw argError("x", `shape [..., ${w.shape[0]}]`, shapeString(x.shape));
    return this.keep(this.kernels.rmsnorm(x, this.kernels.weight(w), eps));
  }

  layernorm(x: X, w: Tensor, b: Tensor, eps: number): X {
    if (last(x) !== w.shape[0]) throw argError("x", `shape [..., ${w.shape[0]}]`, shapeString(x.shape));
    same("bias", { shape: b.shape }, w.shape);
    // eps > 0: a row of equal values has variance 0, and 0 / sqrt(0) would be NaN.
    if (!(eps > 0 && eps < 1)) throw argError("eps", "a number in (0, 1)", eps);
    return this.keep(this.kernels.layernorm(x, this.kernels.weight(w), this.kernels.weight(b), eps));
  }

  rope(x: X, positions: Int32Array, freqs: Float64Array, interleaved = true): X {
    const T = positions.length;
    if (x.shape.length < 2 || last(x) !== 2 * freqs.length || x.shape[x.shape.length - 2] !== T) throw argError("x", `shape [..., ${T}, ${2 * freqs.length}]`, shapeString(x.shape));
    if (typeof interleaved !== "boolean") throw argError("interleaved", "true or false", interleaved);
    return this.keep(this.kernels.rope(x, positions, freqs, interleaved));
  }

  swiglu(gate: X, up: X): X {
    same("up", up, gate.shape);
    return this.keep(this.kernels.swiglu(gate, up));
  }

  softmax(x: X): X {
    return this.keep(this.kernels.softmax(x));
  }
  attention(q: X, kk: X, v: X, args: AttentionArgs): X {
    const { H, Hkv, Tq, Tk, Dh, Dv, kvRows, offset } = args;
    same("q", q, [H, Tq, Dh]);
    same("k", kk, [Hkv, kvRows, Dh]);
    same("v", v, [Hkv, kvRows, Dv]);
    if (H % Hkv !== 0) throw argError("Hkv", `a divisor of H=${H}`, Hkv);
    if (!(Tk <= kvRows && offset + Tq <= Tk)) throw argError("Tk", `within [${offset + Tq}, ${kvRows}]`, Tk);
    if (args.logGammas && args.logGammas.length !== H) throw argError("logGammas", `${H} values`, args.logGammas.length);
    const { firstRow = 0 } = args;
    if (!(Number.isInteger(firstRow) && firstRow >= 0 && firstRow < kvRows)) throw argError("firstRow", `an integer in [0, ${kvRows - 1}]`, firstRow);
    return this.keep(this.kernels.attention(q, kk, v, args));
  }

  attentionProbs(q: X, kk: X, args: AttentionArgs): X {
    const { H, Hkv, Tq, Tk, Dh, kvRows, offset } = args;
    same("q", q, [H, Tq, Dh]);
    same("k", kk, [Hkv, kvRows, Dh]);
    if (H % Hkv !== 0) throw argError("Hkv", `a divisor of H=${H}`, Hkv);
    // offset -1: the first query sees no key (NSA's compressed branch before its first block ends).
    if (!(Number.isInteger(offset) && offset >= -1)) throw argError("offset", "an integer >= -1", offset);
    if (!(Tk <= kvRows && Math.max(1, offset + Tq) <= Tk)) throw argError("Tk", `within [${Math.max(1, offset + Tq)}, ${kvRows}]`, Tk);
    if (!Number.isFinite(args.scale)) throw argError("scale", "a finite number", args.scale);
    if (args.logGammas) throw argError("logGammas", "none (attentionProbs has no decay bias)", args.logGammas.length);
    if (args.firstRow) throw argError("firstRow", "0 (attentionProbs reads no ring)", args.firstRow);
    return this.keep(this.kernels.attentionProbs(q, kk, args));
  }

  attendWith(probs: X, v: X, args: AttendArgs): X {
    const { H, Hkv, Tq, Tk, Dv, kvRows } = args;
    same("probs", probs, [H, Tq, Tk]);
    same("v", v, [Hkv, kvRows, Dv]);
    if (H % Hkv !== 0) throw argError("Hkv", `a divisor of H=${H}`, Hkv);
    if (!(Tk >= 1 && Tk <= kvRows)) throw argError("Tk", `within [1, ${kvRows}]`, Tk);
    return this.keep(this.kernels.attendWith(probs, v, args));
  }

  indexScores(q: X, keys: X, w: X, args: IndexScoreArgs): X {
    const { H, Tq, Tk, D, offset, kvRows } = args;
    same("q", q, [H, Tq, D]);
    same("keys", keys, [1, kvRows, D]);
    same("w", w, [Tq, H]);
    if (!(Number.isInteger(offset) && offset >= 0)) throw argError("offset", "an integer >= 0", offset);
    if (!(Tk <= kvRows && offset + Tq <= Tk)) throw argError("Tk", `within [${offset + Tq}, ${kvRows}]`, Tk);
    if (!Number.isFinite(args.scale)) throw argError("scale", "a finite number", args.scale);
    return this.keep(this.kernels.indexScores(q, keys, w, args));
  }

  moe(x: X, routing: Routing, experts: ExpertWeights, router?: { logits: X; config: MoeConfig }): X {
    const [E, F, D] = experts.gate.shape as [number, number, number];
    rank("x", x, 2, "[N, D]");
    if (x.shape[1] !== D) throw argError("x", `shape [N, ${D}]`, shapeString(x.shape));
    for (const name of ["experts", "weights", "kept"] as const) {
      if (routing[name].length !== x.shape[0]! * routing.k) throw argError(`routing.${name}`, `${x.shape[0]! * routing.k} entries (N · k)`, routing[name].length);
    }
    return this.keep(this.kernels.moe(x, routing, { gate: this.kernels.weight(experts.gate), up: this.kernels.weight(experts.up), down: this.kernels.weight(experts.down), E, F, D }, router));
  }

  settle(): void {
    this.kernels.settle?.();
  }
}

/** The reference's operations: host tensors, float64 accumulation. */
export const referenceOps: Ops<Tensor> = opsOver(referenceDevice);

/** (α/r)·B scattered into the output rows the LoRA writes: [out, r], made once per LoRA. */
const scaledBs = new WeakMap<Lora, Tensor>();
function scaledB(lora: Lora, out: number): Tensor {
  let t = scaledBs.get(lora);
  if (!t) {
    const r = lora.rank;
    const data = new Float32Array(out * r);
    const scale = lora.alpha / r;
    for (let b = 0; b < lora.B.shape[0]!; b++) {
      const row = lora.rows ? lora.rows[b]! : b;
      for (let i = 0; i < r; i++) data[row * r + i] = scale * lora.B.data[b * r + i]!;
    }
    scaledBs.set(lora, (t = { shape: [out, r], data }));
  }
  return t;
}
