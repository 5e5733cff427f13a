// Moving data between the sequence layout [B, T, H·d] and the attention layout [B, H, T, d]. No arithmetic here:
// only copies, so every attention kind splits, merges and concatenates heads the same way.

import { argError } from "../errors.ts";
import { expectShape, numel, shapeString, type Tensor } from "../tensor.ts";

/**
 * x [B, T, H·Σwidths] → one tensor [B, H, T, w] per width: each head's features are cut into consecutive parts
 * (MLA cuts a query head into its no-rope and rope parts, a kv_b output into key and value).
 */
export function splitHeads(x: Tensor, H: number, widths: readonly number[]): Tensor[] {
  let per = 0;
  for (const w of widths) per += w;
  const { B, T } = expectShape("x", x, ["B", "T", H * per]);
  const parts = widths.map((w) => new Float32Array(B * H * T * w));
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        let from = ((b * T + t) * H + h) * per;
        for (let p = 0; p < widths.length; p++) {
          const w = widths[p]!;
          copy(x.data, from, parts[p]!, ((b * H + h) * T + t) * w, w);
          from += w;
        }
      }
    }
  }
  return parts.map((data, p) => ({ shape: [B, H, T, widths[p]!], data }));
}

/** x [B, H, T, d] → [B, T, H·d]: the heads side by side again, ready for the output projection. */
export function mergeHeads(x: Tensor): Tensor {
  const { B, H, T, d } = expectShape("x", x, ["B", "H", "T", "d"]);
  const out = new Float32Array(x.data.length);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        copy(x.data, ((b * H + h) * T + t) * d, out, ((b * T + t) * H + h) * d, d);
      }
    }
  }
  return { shape: [B, T, H * d], data: out };
}

/**
 * Concatenates along the last axis. Leading shapes must match, except that a part with 1 on axis 1 is repeated
 * to the others' size there (MLA's one shared rotary key beside every head's no-rope key). Only from rank 3: in a
 * tensor [R, C] axis 1 is the axis being joined.
 */
export function concatLast(parts: readonly Tensor[]): Tensor {
  if (parts.length === 0) throw argError("parts", "at least one tensor", 0);
  const rank = parts[0]!.shape.length;
  const lead = parts[0]!.shape.slice(0, -1);
  for (const p of parts) if (rank >= 3 && p.shape.length === rank) lead[1] = Math.max(lead[1]!, p.shape[1]!);
  for (let i = 0; i < parts.length; i++) {
    const shape = parts[i]!.shape;
    let fits = shape.length === rank;
    for (let a = 0; fits && a < rank - 1; a++) fits = shape[a] === lead[a] || (a === 1 && shape[a] === 1);
    if (!fits) throw argError(`parts[${i}]`, `shape [${lead.join(", ")}, *] (axis 1 may be 1)`, shapeString(shape));
  }
  const widths = parts.map((p) => p.shape[rank - 1]!);
  const width = widths.reduce((a, w) => a + w, 0);
  const rows = numel(lead);
  const axis1 = rank >= 3 ? lead[1]! : 1;
  const inner = rank >= 3 ? rows / (lead[0]! * axis1) : 1; // rows per index of axis 1
  const out = new Float32Array(rows * width);
  for (let i = 0, at = 0; i < parts.length; at += widths[i]!, i++) {
    const { shape, data } = parts[i]!;
    const w = widths[i]!;
    const repeated = rank >= 3 && shape[1] === 1 && axis1 !== 1;
    for (let r = 0; r < rows; r++) {
      const source = repeated ? Math.floor(r / (axis1 * inner)) * inner + (r % inner) : r;
      copy(data, source * w, out, r * width + at, w);
    }
  }
  return { shape: [...lead, width], data: out };
}

/** a [..., La, d] and b [..., Lb, d] → [..., La + Lb, d]: appends new positions to a cache along the time axis. */
export function concatTime(a: Tensor, b: Tensor): Tensor {
  const { lead, planes, La, Lb, d } = timeShapes(a, b);
  const out = new Float32Array(planes * (La + Lb) * d);
  for (let p = 0; p < planes; p++) {
    copy(a.data, p * La * d, out, p * (La + Lb) * d, La * d);
    copy(b.data, p * Lb * d, out, (p * (La + Lb) + La) * d, Lb * d);
  }
  return { shape: [...lead, La + Lb, d], data: out };
}

// A cache that grows token by token should not be copied whole at every step. appendTime gives the same tensor as
// concatTime, but for a tensor of one plane ([1, L, d], [1, 1, L, d]: MLA's latent cache, a single kv head) it keeps
// the positions in a buffer with room to spare: the tensor is a view of the buffer's start, the next append writes
// after it, and a full buffer is copied into one twice the size. Only the newest tensor of a buffer may grow in
// place: `filled` remembers where that one ends, so an older tensor of the same buffer (another cache that shared
// its history) gets a fresh buffer instead, and positions once written are never written again: every tensor
// appendTime returned keeps its values. Several planes ([B, H, L, d]) cannot grow in place (each plane would have
// to move up to make room, under the feet of whoever holds the tensor): they are copied, as concatTime does.
const filled = new WeakMap<ArrayBufferLike, number>();

/** a [..., La, d] with b [..., Lb, d] appended: [..., La + Lb, d], equal to concatTime(a, b); a is left as it was. */
export function appendTime(a: Tensor, b: Tensor): Tensor {
  const { lead, planes, La, Lb, d } = timeShapes(a, b);
  if (planes !== 1) return concatTime(a, b);
  const n = (La + Lb) * d;
  const buffer = a.data.buffer;
  let data: Float32Array;
  if (a.data.byteOffset === 0 && filled.get(buffer) === a.data.length && buffer.byteLength >= 4 * n) {
    data = new Float32Array(buffer, 0, n); // the room after a
  } else {
    data = new Float32Array(new ArrayBuffer(4 * Math.max(2 * n, 64)), 0, n);
    data.set(a.data);
  }
  data.set(b.data, La * d);
  filled.set(data.buffer, n);
  return { shape: [...lead, La + Lb, d], data };
}

function timeShapes(a: Tensor, b: Tensor) {
  const rank = a.shape.length;
  if (rank < 2) throw argError("a", "shape [..., L, d]", shapeString(a.shape));
  const lead = a.shape.slice(0, -2);
  const d = a.shape[rank - 1]!;
  let fits = b?.shape?.length === rank && b.shape[rank - 1] === d && b.data instanceof Float32Array && b.data.length === numel(b.shape);
  for (let i = 0; fits && i < rank - 2; i++) fits = b.shape[i] === lead[i];
  if (!fits) { // expectShape says what is wrong
    const names = lead.map((_, i) => `n${i}`);
    expectShape("b", b, [...names, "L", d], Object.fromEntries(lead.map((n, i) => [`n${i}`, n])));
  }
  return { lead, planes: numel(lead), La: a.shape[rank - 2]!, Lb: b.shape[rank - 2]!, d };
}

/** n numbers from `from` at `i` to `to` at `j` (a loop: for the few numbers of one head, faster than subarray + set). */
function copy(from: Float32Array, i: number, to: Float32Array, j: number, n: number): void {
  if (n > 64) to.set(from.subarray(i, i + n), j);
  else for (let k = 0; k < n; k++) to[j + k] = from[i + k]!;
}
