// Row reductions on the module's kernels (wasm/assembly/rows.ts): softmax, and RMSNorm and LayerNorm with their
// vectors copied in once and resident like a linear weight. Pointer-level: rmsnormAt, layernormAt, residentVector
// (the device kernels call the module's softmax directly); host kernels: softmax and rmsnorm over Tensors.

import { argError, checkNumber } from "../../src/errors.ts";
import { expectShape, shapeString, type Tensor } from "../../src/tensor.ts";
import { fits, type WasmCore } from "../core.ts";

/** A vector weight (RMSNorm's, LayerNorm's) copied in once and resident, like a linear weight. */
export function residentVector(core: WasmCore, data: Float32Array): number {
  const { weights, heap } = core;
  return weights.find(data, "v", data.length, 0) || weights.get(data, "v", data.length, 0, data.byteLength, (ptr) => heap.write(ptr, data));
}

/** RMSNorm of x [rows, D] at px with weight w (made resident) into out. */
export function rmsnormAt(core: WasmCore, px: number, w: Float32Array, rows: number, D: number, eps: number, out: number): void {
  core.ex.rmsnorm(px, residentVector(core, w), rows, D, eps, out);
}

/** LayerNorm of x [rows, D] at px with weight w and bias b (both made resident) into out. */
export function layernormAt(core: WasmCore, px: number, w: Float32Array, b: Float32Array, rows: number, D: number, eps: number, out: number): void {
  const pw = residentVector(core, w), pb = residentVector(core, b);
  core.ex.layernorm(px, pw, pb, rows, D, eps, out);
}

export function softmax(core: WasmCore, x: Tensor, visible?: Uint8Array): Tensor {
  const N = x.shape[x.shape.length - 1] ?? 1;
  if (visible && visible.length !== x.data.length) throw argError("visible", `${x.data.length} flags`, visible.length);
  if (N === 0 || x.data.length === 0) return { shape: [...x.shape], data: new Float32Array(x.data.length) };
  try {
    const px = core.put(x.data);
    const flags = visible ? core.put(visible) : 0;
    const out = core.alloc(x.data.length * 4);
    core.ex.softmax(px, flags, x.data.length / N, N, out);
    core.verify("softmax");
    return core.read(out, x.shape, x.data.length);
  } finally {
    core.temp.reset();
  }
}

export function rmsnorm(core: WasmCore, x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
  if (x.shape.length < 1) throw argError("x", "shape [..., D]", shapeString(x.shape));
  const D = x.shape[x.shape.length - 1]!;
  if (!fits(weight, 1) || weight.shape[0] !== D) expectShape("weight", weight, ["D"], { D });
  checkNumber("eps", eps, 0, 1);
  if (D === 0 || x.data.length === 0) return { shape: [...x.shape], data: new Float32Array(x.data.length) };
  try {
    const px = core.put(x.data);
    const out = core.alloc(x.data.length * 4);
    rmsnormAt(core, px, weight.data, x.data.length / D, D, eps, out);
    core.verify("rmsnorm");
    return core.read(out, x.shape, x.data.length);
  } finally {
    core.temp.reset();
  }
}
