// Element-wise kernels over the module's (wasm/assembly/elementwise.ts): RoPE, SiLU and SwiGLU. RoPE takes its cos
// and sin tables from the host (src/rope.ts rotaryTable: angles in float64, rounded once), written into memory by
// writeRotary. Pointer-level: writeRotary and ropeAt (the device kernels call the module's swiglu directly); host
// kernels: rope, silu and swiglu over Tensors.

import { ropeSizes, rotaryTable } from "../../src/rope.ts";
import { expectShape, numel, type Tensor } from "../../src/tensor.ts";
import type { WasmCore } from "../core.ts";

/** Bytes of the rotary table for T positions and dim/2 = `half` frequencies: cosines, then sines. */
const rotaryBytes = (T: number, half: number) => 2 * T * half * 4;

/** The rotary table (src/rope.ts rotaryTable) written at `at`: cosines then sines, [T, dim/2] each (the rope
 *  kernel's layout), rotaryBytes long. */
export function writeRotary(core: WasmCore, at: number, positions: ArrayLike<number>, freqs: Float64Array): void {
  const { cos, sin } = rotaryTable(positions, freqs);
  core.heap.F32.set(cos, at >>> 2);
  core.heap.F32.set(sin, (at >>> 2) + cos.length);
}

/** RoPE of x [planes, T, dim] at px into out, with the rotary table at `table` (writeRotary): pairs (2i, 2i + 1)
 *  when interleaved, else (i, i + dim/2). */
export function ropeAt(core: WasmCore, px: number, table: number, planes: number, T: number, dim: number, out: number, interleaved = true): void {
  const sines = table + T * (dim / 2) * 4;
  if (interleaved) core.ex.rope(px, table, sines, planes, T, dim, out);
  else core.ex.ropeHalves(px, table, sines, planes, T, dim, out);
}

export function rope(core: WasmCore, x: Tensor, positions: ArrayLike<number>, freqs: Float64Array): Tensor {
  const { dim, T } = ropeSizes(x, positions, freqs);
  if (x.data.length === 0) return { shape: [...x.shape], data: new Float32Array(0) };
  try {
    const px = core.put(x.data);
    const out = core.alloc(x.data.length * 4);
    const table = core.alloc(rotaryBytes(T, freqs.length));
    writeRotary(core, table, positions, freqs);
    ropeAt(core, px, table, x.data.length / (T * dim), T, dim, out);
    core.verify("rope");
    return core.read(out, x.shape, x.data.length);
  } finally {
    core.temp.reset();
  }
}

export function silu(core: WasmCore, x: Tensor): Tensor {
  try {
    const px = core.put(x.data);
    const out = core.alloc(x.data.length * 4);
    core.ex.silu(px, x.data.length, out);
    core.verify("silu");
    return core.read(out, x.shape, x.data.length);
  } finally {
    core.temp.reset();
  }
}

export function swiglu(core: WasmCore, gate: Tensor, up: Tensor): Tensor {
  const gs = gate.shape, us = up?.shape;
  let same = Array.isArray(us) && up.data instanceof Float32Array && us.length === gs.length && up.data.length === numel(us);
  for (let i = 0; i < gs.length && same; i++) same = us[i] === gs[i];
  if (!same) expectShape("up", up, gs.map((_, i) => `d${i}`), Object.fromEntries(gs.map((d, i) => [`d${i}`, d])));
  try {
    const pg = core.put(gate.data), pu = core.put(up.data);
    const out = core.alloc(gate.data.length * 4);
    core.ex.swiglu(pg, pu, gate.data.length, out);
    core.verify("swiglu");
    return core.read(out, gate.shape, gate.data.length);
  } finally {
    core.temp.reset();
  }
}
