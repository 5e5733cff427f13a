// ViT patch embedding (Dosovitskiy et al. 2021): an image [C, H, W] is cut into p×p patches in raster order, each
// flattened channel-major (c, dy, dx) — the layout of a Conv2d(C, E, kernel p, stride p) weight [E, C, p, p] —
// projected to E features, and given a fixed 2-D sine-cosine position (MAE, He et al. 2022):
//   token_(i,j) = W · patch_(i,j) + b + pos2d(i, j)
//   pos2d(i, j) = [sincos(i) ; sincos(j)],  sincos(x) = [sin(x·ω_k) ; cos(x·ω_k)],  ω_k = 10000^(-k / (E/4)), k < E/4
// The first half of the features encodes the patch row, the second half its column.
// Also here: the tiny image the project ships (data/images/tiny-32.ppm) and a reader for binary PPM files.

import { argError, checkInteger, TinyseekError } from "../errors.ts";
import { reference, type Kernels } from "../kernels.ts";
import { roundHalfEven } from "../ops.ts";
import { type Random, randn } from "../random.ts";
import { add, expectShape, tensor, type Tensor } from "../tensor.ts";

export interface PatchConfig {
  channels: number; // C (3 for RGB)
  patch_size: number; // p
  embed_dim: number; // E, a multiple of 4 (four sine-cosine blocks)
}

export interface PatchWeights {
  patch_proj: Tensor; // [E, C·p·p]
  patch_proj_bias: Tensor; // [E]
}

export function checkPatchConfig(config: PatchConfig): void {
  checkInteger("config.channels", config.channels, 1);
  checkInteger("config.patch_size", config.patch_size, 1);
  checkInteger("config.embed_dim", config.embed_dim, 4);
  if (config.embed_dim % 4 !== 0) throw argError("config.embed_dim", "a multiple of 4", config.embed_dim);
}

export function initPatchEmbedding(rng: Random, config: PatchConfig): PatchWeights {
  checkPatchConfig(config);
  const { channels: C, patch_size: p, embed_dim: E } = config;
  return { patch_proj: randn(rng, [E, C * p * p], 0.02), patch_proj_bias: tensor([E]) };
}

/** image [C, H, W] → patches [(H/p)·(W/p), C·p·p], raster order; H and W must be multiples of p. */
export function patchify(image: Tensor, p: number): Tensor {
  checkInteger("p", p, 1);
  const { C, H, W } = expectShape("image", image, ["C", "H", "W"]);
  if (H % p !== 0 || W % p !== 0 || H === 0 || W === 0) {
    throw argError("image", `height and width that are positive multiples of the patch size ${p}`, `[${C}, ${H}, ${W}]`);
  }
  const [rows, cols] = [H / p, W / p];
  const out = new Float32Array(rows * cols * C * p * p);
  let at = 0;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      for (let c = 0; c < C; c++) {
        for (let dy = 0; dy < p; dy++) {
          const from = (c * H + i * p + dy) * W + j * p;
          out.set(image.data.subarray(from, from + p), at);
          at += p;
        }
      }
    }
  }
  return { shape: [rows * cols, C * p * p], data: out };
}

/** The fixed 2-D sine-cosine position of every patch of a rows × cols grid: [rows·cols, E]. */
export function positions2d(rows: number, cols: number, E: number): Tensor {
  checkInteger("rows", rows, 1);
  checkInteger("cols", cols, 1);
  checkInteger("E", E, 4);
  if (E % 4 !== 0) throw argError("E", "a multiple of 4", E);
  const quarter = E / 4;
  const out = new Float32Array(rows * cols * E);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const base = (i * cols + j) * E;
      for (let k = 0; k < quarter; k++) {
        const omega = 1 / 10000 ** (k / quarter);
        out[base + k] = Math.sin(i * omega);
        out[base + quarter + k] = Math.cos(i * omega);
        out[base + 2 * quarter + k] = Math.sin(j * omega);
        out[base + 3 * quarter + k] = Math.cos(j * omega);
      }
    }
  }
  return { shape: [rows * cols, E], data: out };
}

/** image [C, H, W] → vision tokens [(H/p)·(W/p), E]. */
export function patchEmbed(image: Tensor, weights: PatchWeights, config: PatchConfig, kernels: Kernels = reference): Tensor {
  checkPatchConfig(config);
  const { channels: C, patch_size: p, embed_dim: E } = config;
  expectShape("image", image, [C, "H", "W"]);
  expectShape("weights.patch_proj", weights?.patch_proj, [E, C * p * p]);
  expectShape("weights.patch_proj_bias", weights.patch_proj_bias, [E]);
  const patches = patchify(image, p);
  const [rows, cols] = [image.shape[1]! / p, image.shape[2]! / p];
  const projected = kernels.linear(patches, weights.patch_proj);
  const biasAndPosition = positions2d(rows, cols, E);
  const bias = weights.patch_proj_bias.data;
  for (let n = 0; n < rows * cols; n++) for (let e = 0; e < E; e++) biasAndPosition.data[n * E + e] += bias[e]!;
  return add(projected, biasAndPosition);
}

/** A binary PPM (P6, maxval 255) → image [3, H, W] with values in [0, 1]. */
export function readPpm(bytes: Uint8Array): Tensor {
  const fields: string[] = [];
  let at = 0;
  while (fields.length < 4) {
    while (at < bytes.length && /\s/.test(String.fromCharCode(bytes[at]!))) at++;
    if (bytes[at] === 0x23) { // "#": a comment to the end of the line
      while (at < bytes.length && bytes[at] !== 0x0a) at++;
      continue;
    }
    const start = at;
    while (at < bytes.length && !/\s/.test(String.fromCharCode(bytes[at]!))) at++;
    if (start === at) throw new TinyseekError(`ppm: expected a header of 4 fields, got ${fields.length}`);
    fields.push(new TextDecoder().decode(bytes.subarray(start, at)));
  }
  const [magic, w, h, max] = [fields[0], Number(fields[1]), Number(fields[2]), Number(fields[3])];
  if (magic !== "P6") throw argError("ppm magic", '"P6"', magic);
  checkInteger("ppm width", w, 1);
  checkInteger("ppm height", h, 1);
  if (max !== 255) throw argError("ppm maxval", "255", max);
  // The single whitespace byte that ends the header: a file that stops at the last field has none and no body.
  if (at >= bytes.length) throw new TinyseekError(`ppm: expected one whitespace byte and ${3 * w * h} bytes of body after the header, got the end of the file`);
  at++;
  if (bytes.length - at !== 3 * w * h) throw argError("ppm body", `${3 * w * h} bytes`, bytes.length - at);
  const out = new Float32Array(3 * h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) out[(c * h + y) * w + x] = bytes[at + (y * w + x) * 3 + c]! / 255;
  }
  return { shape: [3, h, w], data: out };
}

/** image [3, H, W] in [0, 1] → binary PPM bytes (values rounded to the nearest of 256 levels). */
export function writePpm(image: Tensor): Uint8Array {
  const { H, W } = expectShape("image", image, [3, "H", "W"]);
  const header = new TextEncoder().encode(`P6\n${W} ${H}\n255\n`);
  const out = new Uint8Array(header.length + 3 * H * W);
  out.set(header);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let c = 0; c < 3; c++) {
        const v = image.data[(c * H + y) * W + x]!;
        out[header.length + (y * W + x) * 3 + c] = Math.min(255, Math.max(0, roundHalfEven(v * 255)));
      }
    }
  }
  return out;
}

/**
 * The image shipped as data/images/tiny-32.ppm, drawn from a formula so anyone can regenerate it: 32×32 RGB, a red
 * ramp left to right and a green ramp top to bottom, a blue disc (radius 7) centred at (9.5, 9.5), and a white
 * 8×8 square at rows and columns 20–27. With p = 8 the disc and the square fall in different patches.
 */
export function tinyImage(): Tensor {
  const [H, W] = [32, 32];
  const out = new Float32Array(3 * H * W);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let rgb = [x / (W - 1), y / (H - 1), 0.2];
      if ((x - 9.5) ** 2 + (y - 9.5) ** 2 <= 49) rgb = [0.1, 0.2, 0.9];
      if (x >= 20 && x < 28 && y >= 20 && y < 28) rgb = [1, 1, 1];
      rgb.forEach((v, c) => (out[(c * H + y) * W + x] = roundHalfEven(v * 255) / 255));
    }
  }
  return { shape: [3, H, W], data: out };
}
