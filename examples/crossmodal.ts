// Lesson 5: cross-modal attention between text tokens and the patches of the small image the project ships
// (data/images/tiny-32.ppm; src/attention/patch.ts, src/attention/crossmodal.ts).
import { readFileSync } from "node:fs";
import { crossModalAttention, type CrossAttentionWeights, type CrossModalConfig } from "../src/attention/crossmodal.ts";
import { patchEmbed, patchify, readPpm, tinyImage, type PatchConfig } from "../src/attention/patch.ts";
import { randn, Random } from "../src/random.ts";
import { tensor, type Tensor } from "../src/tensor.ts";

export const PATCH: PatchConfig = { channels: 3, patch_size: 8, embed_dim: 32 };

/** The shipped image [3, 32, 32] in [0, 1], and whether it still equals the formula that drew it. */
export function shippedImage(): { image: Tensor; matchesFormula: boolean } {
  const image = readPpm(new Uint8Array(readFileSync(new URL("../data/images/tiny-32.ppm", import.meta.url))));
  const formula = tinyImage();
  return { image, matchesFormula: image.data.every((v, i) => v === formula.data[i]) };
}

/**
 * Vision tokens [16, 32]: the image cut into a 4×4 grid of 8×8 patches, each projected to 32 features and given a
 * 2-D sine-cosine position. The projection is seeded, with std 1/√(3·8·8) so content and position weigh alike.
 */
export function visionTokens(image: Tensor, seed = 21): Tensor {
  const inputs = PATCH.channels * PATCH.patch_size ** 2;
  const weights = { patch_proj: randn(new Random(seed), [PATCH.embed_dim, inputs], 1 / Math.sqrt(inputs)), patch_proj_bias: tensor([PATCH.embed_dim]) };
  return patchEmbed(image, weights, PATCH);
}

/** Patch (row, col) of the 4×4 grid → its mean colour. */
export function patchColours(image: Tensor): { row: number; col: number; rgb: number[] }[] {
  const patches = patchify(image, PATCH.patch_size); // [16, 3·8·8], channel-major
  const n = PATCH.patch_size ** 2;
  return Array.from({ length: 16 }, (_, i) => ({
    row: Math.floor(i / 4), col: i % 4,
    rgb: [0, 1, 2].map((c) => patches.data.subarray(i * 3 * n + c * n, i * 3 * n + (c + 1) * n).reduce((a, b) => a + b, 0) / n),
  }));
}

/** Three "text" tokens: copies of the tokens of patches showing the disc, the square and the plain background. */
export const PROBES = [
  { word: "blue disc", patch: 0 },
  { word: "white square", patch: 15 },
  { word: "background", patch: 3 },
] as const;

/**
 * Cross-attention with identity projections (text_dim = vision_dim = 32): S_tv = sharpness·T·Vᵀ/√32 is then plain
 * similarity, so each text token attends to the patches that look like it. Gates open (tanh 1) so text changes.
 */
export function crossAttend(vision: Tensor, sharpness = 4, visionMask?: Uint8Array) {
  const E = PATCH.embed_dim;
  const text = tensor([PROBES.length, E]);
  PROBES.forEach((p, i) => text.data.set(vision.data.subarray(p.patch * E, (p.patch + 1) * E), i * E));
  const eye = tensor([E, E]);
  for (let d = 0; d < E; d++) eye.data[d * E + d] = sharpness;
  const weights: CrossAttentionWeights = {
    text_proj: eye, text_proj_bias: tensor([E]), vision_proj: eye, vision_proj_bias: tensor([E]),
    gate_text: tensor([1], [1]), gate_vision: tensor([1], [1]),
  };
  const config: CrossModalConfig = { text_dim: E, vision_dim: E };
  const result = crossModalAttention(text, vision, weights, config, visionMask ? { vision: visionMask } : {});
  return { text, result };
}

/** Row t of A_tv as a 4×4 grid over the patches. */
export function attentionGrid(probsTv: Tensor, t: number): number[][] {
  const Nv = probsTv.shape[3]!;
  const row = probsTv.data.subarray(t * Nv, (t + 1) * Nv);
  return Array.from({ length: 4 }, (_, r) => Array.from(row.subarray(r * 4, r * 4 + 4)));
}

/** How far each text token moved (max |T' - T|): a token with no visible patch keeps its input exactly. */
export function textChange(text: Tensor, updated: Tensor): number[] {
  const E = text.shape[1]!;
  return Array.from({ length: text.shape[0]! }, (_, t) => {
    let m = 0;
    for (let d = 0; d < E; d++) m = Math.max(m, Math.abs(updated.data[t * E + d]! - text.data[t * E + d]!));
    return m;
  });
}
