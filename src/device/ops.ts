// The operations the one forward calls (src/model/forward.ts): each checks its arguments, applies what hangs on a
// weight (quantised codes, an unmerged LoRA: src/model-adapters.ts), then calls the backend's kernel of the same
// name (src/device/kernels.ts). Weights are passed as the model's host tensors; the backend keeps its own copy of
// each (`weight`), made once. This is the tfjs shape: ops validate, kernels compute.

import { type Lora } from "../adapters.ts";
import { argError, NotSupportedError } from "../errors.ts";
import { type Kernels } from "../kernels.ts";
import { type HookedWeight } from "../model-adapters.ts";
import { type ExpertWeights, type Routing } from "../moe/experts.ts";
import { type MoeConfig } from "../moe/layer.ts";
import { numel, shapeString, type Tensor } from "../tensor.ts";
import { type DeviceKernels, type GemmArgs, type Value } from "./kernels.ts";
import { referenceDevice, referenceHostKernels } from "./reference.ts";

/** The operations the forward calls: the kernels' own signatures where values go in and out, weights as host tensors. */
export interface Ops<X extends Value = Value> extends Pick<DeviceKernels<X>,
  "upload" | "read" | "release" | "free" | "empty" | "embed" | "gatherRows" | "addRows" | "splitHeads" | "mergeHeads" |
  "concatLast" | "sliceRows" | "concatRows" | "writeRows" | "add" | "rope" | "swiglu" | "softmax" | "attention"> {
  readonly name: string;
  readonly kernels: DeviceKernels<X>;
  /** Synchronous kernels over host tensors, for the layers the forward computes on the host (src/model/layers.ts). */
  readonly hostKernels: Kernels;
  weight(t: Tensor): X;
  linear(x: X, w: Tensor): X;
  gemm(a: X, b: Tensor, c: X, args: GemmArgs): void;
  rmsnorm(x: X, w: Tensor, eps: number): X;
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
    ops = makeOps(kernels, hostKernels);
    byHost.set(hostKernels, ops as unknown as Ops<Value>);
  }
  return ops;
}

/** The reference's operations: host tensors, float64 accumulation. */
export const referenceOps: Ops<Tensor> = opsOver(referenceDevice);

const last = (x: Value) => x.shape[x.shape.length - 1]!;

function same(argument: string, x: Value, shape: readonly number[]): void {
  let equal = x.shape.length === shape.length;
  for (let i = 0; equal && i < shape.length; i++) equal = x.shape[i] === shape[i];
  if (!equal) throw argError(argument, `shape ${shapeString(shape)}`, shapeString(x.shape));
}

function rank(argument: string, x: Value, n: number, what: string): void {
  if (!x || !Array.isArray(x.shape) || x.shape.length !== n) throw argError(argument, `shape ${what}`, x?.shape ? shapeString(x.shape) : x);
}

/** The checked operations; with `made`, every value they make is also pushed there (src/device/scope.ts). */
export function makeOps<X extends Value>(k: DeviceKernels<X>, hostKernels: Kernels, made?: X[]): Ops<X> {
  const keep = made ? (x: X): X => (made.push(x), x) : (x: X): X => x;
  const linear = (x: X, w: Tensor): X => keep(unkept(x, w));
  const unkept = (x: X, w: Tensor): X => {
    if (!w || w.shape?.length !== 2) throw argError("weight", "a matrix [out, in]", w?.shape ? shapeString(w.shape) : w);
    if (last(x) !== w.shape[1]) throw argError("x", `shape [..., ${w.shape[1]}] for a weight ${shapeString(w.shape)}`, shapeString(x.shape));
    const { quant, lora } = w as HookedWeight;
    if (lora) {
      // x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ, the update's rows scattered into the output rows it writes.
      const hidden = k.linear(x, k.weight(lora.lora.A));
      const update = k.linear(hidden, k.weight(scaledB(lora.lora, w.shape[0]!)));
      const base = unkept(x, lora.base);
      const out = k.add(base, update);
      k.release(hidden, update, base);
      return out;
    }
    if (quant) {
      if (k.quantLinear) return k.quantLinear(x, quant.weight, quant.activations);
      if (quant.activations) throw new NotSupportedError(`${k.name}: quantised activations need a quantLinear kernel; weight-only schemes run as their dequantised weights`);
    }
    return k.linear(x, k.weight(w)); // a weight-only quantised tensor's data holds its dequantised values
  };
  return {
    name: k.name,
    kernels: k,
    hostKernels,
    weight: (t) => k.weight(t),
    upload(t) {
      if (!t || !(t.data instanceof Float32Array) || numel(t.shape) !== t.data.length) {
        throw argError("value", "a tensor { shape, data: Float32Array } whose data fills its shape", t?.shape ? shapeString(t.shape) : t);
      }
      return keep(k.upload(t));
    },
    read: (x) => k.read(x),
    release: (...xs) => k.release(...xs),
    free: (x) => k.free(x),
    empty: (shape) => keep(k.empty(shape)),
    embed(table, ids) {
      const V = table.shape[0]!;
      for (let t = 0; t < ids.length; t++) {
        if (!Number.isInteger(ids[t]) || ids[t]! < 0 || ids[t]! >= V) throw argError(`tokens[${t}]`, `an integer in [0, ${V - 1}]`, ids[t]);
      }
      return keep(k.embed(table, ids));
    },
    gatherRows(x, rows) {
      rank("x", x, 2, "[N, D]");
      rows.forEach((r, i) => {
        if (!(r >= 0 && r < x.shape[0]!)) throw argError(`rows[${i}]`, `a row in [0, ${x.shape[0]! - 1}]`, r);
      });
      return keep(k.gatherRows(x, rows));
    },
    addRows(x, update, slots) {
      rank("x", x, 2, "[N, D]");
      rank("update", update, 2, `[n, ${x.shape[1]}]`);
      if (update.shape[1] !== x.shape[1]) throw argError("update", `shape [n, ${x.shape[1]}]`, shapeString(update.shape));
      if (slots.length !== x.shape[0]) throw argError("slots", `${x.shape[0]} slots`, slots.length);
      slots.forEach((s, i) => {
        if (!(s < update.shape[0]!)) throw argError(`slots[${i}]`, `-1 or a row of update below ${update.shape[0]}`, s);
      });
      return keep(k.addRows(x, update, slots));
    },
    splitHeads(x, H, widths) {
      rank("x", x, 2, "[T, H·d]");
      const per = widths.reduce((a, w) => a + w, 0);
      if (x.shape[1] !== H * per) throw argError("x", `shape [T, ${H * per}] (${H} heads of ${per})`, shapeString(x.shape));
      const parts = k.splitHeads(x, H, widths);
      if (made) made.push(...parts);
      return parts;
    },
    mergeHeads(x) {
      rank("x", x, 3, "[H, T, d]");
      return keep(k.mergeHeads(x));
    },
    concatLast(parts) {
      const A = Math.max(...parts.map((p) => p.shape[0]!));
      parts.forEach((p, i) => {
        rank(`parts[${i}]`, p, 3, "[A, T, w]");
        if ((p.shape[0] !== A && p.shape[0] !== 1) || p.shape[1] !== parts[0]!.shape[1]) throw argError(`parts[${i}]`, `shape [${A} or 1, ${parts[0]!.shape[1]}, w]`, shapeString(p.shape));
      });
      return keep(k.concatLast(parts));
    },
    sliceRows(x, start, count) {
      rank("x", x, 2, "[N, D]");
      if (!(start >= 0 && count >= 0 && start + count <= x.shape[0]!)) throw argError("rows", `a range within [0, ${x.shape[0]})`, `[${start}, ${start + count})`);
      return keep(k.sliceRows(x, start, count));
    },
    concatRows(parts) {
      parts.forEach((p, i) => {
        rank(`parts[${i}]`, p, 2, "[N, D]");
        if (p.shape[1] !== parts[0]!.shape[1]) throw argError(`parts[${i}]`, `shape [N, ${parts[0]!.shape[1]}]`, shapeString(p.shape));
      });
      return keep(k.concatRows(parts));
    },
    writeRows(dst, src, at) {
      rank("dst", dst, 3, "[A, rows, w]");
      rank("src", src, 3, "[A, T, w]");
      if (src.shape[0] !== dst.shape[0] || src.shape[2] !== dst.shape[2] || at + src.shape[1]! > dst.shape[1]!) {
        throw argError("src", `shape [${dst.shape[0]}, ≤ ${dst.shape[1]! - at}, ${dst.shape[2]}] (written at row ${at})`, shapeString(src.shape));
      }
      k.writeRows(dst, src, at);
    },
    add(a, b) {
      same("b", b, a.shape);
      return keep(k.add(a, b));
    },
    linear,
    gemm(a, b, c, args) {
      const { M, N, K, batches = 1, strideA = M * K, strideB = K * N, strideC = M * N, offA = 0, offB = 0, offC = 0 } = args;
      // Every matrix read or written must lie inside its value: a wrong stride must not reach another's memory.
      const reach = (off: number, stride: number, size: number) => off + (batches - 1) * stride + size;
      if (reach(offA, strideA, M * K) > numel(a.shape)) throw argError("a", `at least ${reach(offA, strideA, M * K)} elements`, numel(a.shape));
      if (reach(offB, strideB, N * K) > b.data.length) throw argError("b", `at least ${reach(offB, strideB, N * K)} elements`, b.data.length);
      if (reach(offC, strideC, M * N) > numel(c.shape)) throw argError("c", `at least ${reach(offC, strideC, M * N)} elements`, numel(c.shape));
      k.gemm(a, k.weight(b), c, args);
    },
    rmsnorm(x, w, eps) {
      if (last(x) !== w.shape[0]) throw argError("x", `shape [..., ${w.shape[0]}]`, shapeString(x.shape));
      return keep(k.rmsnorm(x, k.weight(w), eps));
    },
    rope(x, positions, freqs) {
      const T = positions.length;
      if (x.shape.length < 2 || last(x) !== 2 * freqs.length || x.shape[x.shape.length - 2] !== T) throw argError("x", `shape [..., ${T}, ${2 * freqs.length}]`, shapeString(x.shape));
      return keep(k.rope(x, positions, freqs));
    },
    swiglu(gate, up) {
      same("up", up, gate.shape);
      return keep(k.swiglu(gate, up));
    },
    softmax: (x) => keep(k.softmax(x)),
    attention(q, kk, v, args) {
      const { H, Hkv, Tq, Tk, Dh, Dv, kvRows, offset } = args;
      same("q", q, [H, Tq, Dh]);
      same("k", kk, [Hkv, kvRows, Dh]);
      same("v", v, [Hkv, kvRows, Dv]);
      if (H % Hkv !== 0) throw argError("Hkv", `a divisor of H=${H}`, Hkv);
      if (!(Tk <= kvRows && offset + Tq <= Tk)) throw argError("Tk", `within [${offset + Tq}, ${kvRows}]`, Tk);
      if (args.logGammas && args.logGammas.length !== H) throw argError("logGammas", `${H} values`, args.logGammas.length);
      return keep(k.attention(q, kk, v, args));
    },
    moe(x, routing, experts, router) {
      const [E, F, D] = experts.gate.shape as [number, number, number];
      rank("x", x, 2, "[N, D]");
      if (x.shape[1] !== D) throw argError("x", `shape [N, ${D}]`, shapeString(x.shape));
      for (const name of ["experts", "weights", "kept"] as const) {
        if (routing[name].length !== x.shape[0]! * routing.k) throw argError(`routing.${name}`, `${x.shape[0]! * routing.k} entries (N · k)`, routing[name].length);
      }
      return keep(k.moe(x, routing, { gate: k.weight(experts.gate), up: k.weight(experts.up), down: k.weight(experts.down), E, F, D }, router));
    },
    settle: () => k.settle?.(),
  };
}

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
