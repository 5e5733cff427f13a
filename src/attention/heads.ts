// Moving data between the sequence layout [B, T, H·d] and the attention layout [B, H, T, d]. No arithmetic here:
// only copies, so every attention kind splits, merges and concatenates heads the same way.

import { argError } from "../errors.ts";
import { expectShape, numel, shapeString, type Tensor } from "../tensor.ts";

/**
 * x [B, T, H·Σwidths] → one tensor [B, H, T, w] per width: each head's features are cut into consecutive parts
 * (MLA cuts a query head into its no-rope and rope parts, a kv_b output into key and value).
 */
export function splitHeads(x: Tensor, H: number, widths: readonly number[]): Tensor[] {
  const per = widths.reduce((a, w) => a + w, 0);
  const { B, T } = expectShape("x", x, ["B", "T", H * per]);
  const parts = widths.map((w) => new Float32Array(B * H * T * w));
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        let from = ((b * T + t) * H + h) * per;
        widths.forEach((w, p) => {
          parts[p]!.set(x.data.subarray(from, from + w), ((b * H + h) * T + t) * w);
          from += w;
        });
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
        const from = ((b * H + h) * T + t) * d;
        out.set(x.data.subarray(from, from + d), ((b * T + t) * H + h) * d);
      }
    }
  }
  return { shape: [B, T, H * d], data: out };
}

/**
 * Concatenates along the last axis. Leading shapes must match, except that a part with 1 on axis 1 is repeated
 * to the others' size there (MLA's one shared rotary key beside every head's no-rope key).
 */
export function concatLast(parts: readonly Tensor[]): Tensor {
  if (parts.length === 0) throw argError("parts", "at least one tensor", 0);
  const rank = parts[0]!.shape.length;
  const lead = parts[0]!.shape.slice(0, -1).map((d, i) => (i === 1 ? Math.max(...parts.map((p) => p.shape[1] ?? 1)) : d));
  parts.forEach((p, i) => {
    const fits = p.shape.length === rank && p.shape.slice(0, -1).every((d, a) => d === lead[a] || (a === 1 && d === 1));
    if (!fits) throw argError(`parts[${i}]`, `shape [${lead.join(", ")}, *] (axis 1 may be 1)`, shapeString(p.shape));
  });
  const widths = parts.map((p) => p.shape[rank - 1]!);
  const width = widths.reduce((a, w) => a + w, 0);
  const rows = numel(lead);
  const axis1 = rank >= 2 ? lead[1]! : 1;
  const inner = rank >= 2 ? rows / (lead[0]! * axis1) : 1; // rows per index of axis 1
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) {
    let at = r * width;
    parts.forEach((p, i) => {
      const repeated = rank >= 2 && p.shape[1] === 1 && axis1 !== 1;
      const source = repeated ? Math.floor(r / (axis1 * inner)) * inner + (r % inner) : r;
      out.set(p.data.subarray(source * widths[i]!, (source + 1) * widths[i]!), at);
      at += widths[i]!;
    });
  }
  return { shape: [...lead, width], data: out };
}

/** a [..., La, d] and b [..., Lb, d] → [..., La + Lb, d]: appends new positions to a cache along the time axis. */
export function concatTime(a: Tensor, b: Tensor): Tensor {
  const rank = a.shape.length;
  if (rank < 2) throw argError("a", "shape [..., L, d]", shapeString(a.shape));
  const lead = a.shape.slice(0, -2);
  const d = a.shape[rank - 1]!;
  const names = lead.map((_, i) => `n${i}`);
  expectShape("b", b, [...names, "L", d], Object.fromEntries(lead.map((n, i) => [`n${i}`, n])));
  const [La, Lb] = [a.shape[rank - 2]!, b.shape[rank - 2]!];
  const planes = numel(lead);
  const out = new Float32Array(planes * (La + Lb) * d);
  for (let p = 0; p < planes; p++) {
    out.set(a.data.subarray(p * La * d, (p + 1) * La * d), p * (La + Lb) * d);
    out.set(b.data.subarray(p * Lb * d, (p + 1) * Lb * d), (p * (La + Lb) + La) * d);
  }
  return { shape: [...lead, La + Lb, d], data: out };
}
