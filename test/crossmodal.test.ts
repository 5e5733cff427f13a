import fc from "fast-check";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  checkCrossModalConfig, crossModalAttention, earlyFusion, initCrossModal, type CrossAttentionWeights,
  type CrossModalConfig, type EarlyFusionWeights,
} from "../src/attention/crossmodal.ts";
import { patchEmbed, patchify, positions2d, readPpm, tinyImage, writePpm } from "../src/attention/patch.ts";
import * as ops from "../src/ops.ts";
import { Random, randBounded } from "../src/random.ts";
import { tensor, type Tensor } from "../src/tensor.ts";

describe("cross-modal attention, worked by hand", () => {
  // dt = dv = 2, one text token T = (1, 0), vision V = I₂; text_proj = I, vision_proj = 2·I, no biases.
  //   S_tv = (1·1, 0) / sqrt(2);  A_tv = (p, 1 - p), p = 1/(1 + e^(-1/sqrt 2));  A_tv·vision_proj(V) = (2p, 2(1 - p))
  //   T' = T + tanh(0.5)·(2p, 2(1 - p))
  //   S_vt = vision_proj(V)·Tᵀ / sqrt(2) = (2, 0)ᵀ / sqrt(2);  one text token, so A_vt = 1:  V' = V + tanh(-1)·(1, 0)
  const weights: CrossAttentionWeights = {
    text_proj: tensor([2, 2], [1, 0, 0, 1]), text_proj_bias: tensor([2]),
    vision_proj: tensor([2, 2], [2, 0, 0, 2]), vision_proj_bias: tensor([2]),
    gate_text: tensor([1], [0.5]), gate_vision: tensor([1], [-1]),
  };
  const config = { text_dim: 2, vision_dim: 2 };
  it("gives the hand-computed scores and outputs", () => {
    const r = crossModalAttention(tensor([1, 2], [1, 0]), tensor([2, 2], [1, 0, 0, 1]), weights, config);
    const p = 1 / (1 + Math.exp(-1 / Math.SQRT2));
    [1 / Math.SQRT2, 0].forEach((v, i) => expect(r.scoresTv.data[i]).toBeCloseTo(v, 6));
    [Math.SQRT2, 0].forEach((v, i) => expect(r.scoresVt.data[i]).toBeCloseTo(v, 6));
    const g = Math.tanh(0.5);
    [1 + g * 2 * p, g * 2 * (1 - p)].forEach((v, i) => expect(r.text.data[i]).toBeCloseTo(v, 6));
    const gv = Math.tanh(-1);
    [1 + gv, 0, gv, 1].forEach((v, i) => expect(r.vision.data[i]).toBeCloseTo(v, 6));
  });
  it("a sample without an image keeps its text exactly, and its vision rows see only real text", () => {
    const text = tensor([2, 1, 2], [1, 0, 0.5, 2]);
    const vision = tensor([2, 2, 2], [1, 0, 0, 1, 3, 3, 3, 3]);
    const r = crossModalAttention(text, vision, weights, config, { vision: Uint8Array.from([1, 1, 0, 0]) });
    expect([...r.text.data.subarray(2)]).toEqual([0.5, 2]);
    expect([...r.vision.data.subarray(4)]).toEqual([3, 3, 3, 3]);
    expect([...r.probsTv.data.subarray(2)]).toEqual([0, 0]);
  });
});

const setup = fc.record({
  dt: fc.constantFrom(1, 2, 3, 6),
  dv: fc.constantFrom(1, 2, 3, 6),
  H: fc.constantFrom(1, 2, 3),
  B: fc.constantFrom(1, 2),
  Nt: fc.constantFrom(1, 2, 5, 7),
  Nv: fc.constantFrom(1, 3, 4),
  seed: fc.nat(1e6),
}).filter((s) => s.dt % s.H === 0 && s.dv % s.H === 0);
type Setup = typeof setup extends fc.Arbitrary<infer S> ? S : never;

function build(s: Setup, gates = true) {
  const config: CrossModalConfig = { text_dim: s.dt, vision_dim: s.dv, num_heads: s.H };
  const rng = new Random(s.seed);
  const init = initCrossModal(rng, config) as unknown as Record<string, Tensor>;
  const weights = Object.fromEntries(
    Object.entries(init).map(([n, w]) => [n, n.startsWith("gate") && !gates ? w : randBounded(rng, w.shape, 0.7)]),
  ) as unknown as CrossAttentionWeights;
  const text = randBounded(rng, [s.B, s.Nt, s.dt]);
  const vision = randBounded(rng, [s.B, s.Nv, s.dv]);
  const flags = (n: number) => Uint8Array.from({ length: n }, () => (rng.uniform() < 0.7 ? 1 : 0));
  return { config, weights, text, vision, masks: { text: flags(s.B * s.Nt), vision: flags(s.B * s.Nv) } };
}

/** x [B, N, d]ᵀ per batch row: [B, d, N]. */
const transposeLast = (x: Tensor): Tensor => {
  const [B, N, d] = x.shape as [number, number, number];
  const out = new Float32Array(x.data.length);
  for (let b = 0; b < B; b++) for (let n = 0; n < N; n++) for (let i = 0; i < d; i++) out[(b * d + i) * N + n] = x.data[(b * N + n) * d + i]!;
  return { shape: [B, d, N], data: out };
};

describe("cross-modal properties", () => {
  const opts = { numRuns: 30 };

  it("zero gates are the identity, for any weights and masks", () => {
    fc.assert(fc.property(setup, (s) => {
      const { config, weights, text, vision, masks } = build(s, false);
      const r = crossModalAttention(text, vision, weights, config, masks);
      expect(r.text.data).toEqual(text.data);
      expect(r.vision.data).toEqual(vision.data);
    }), opts);
  });

  it("single-head raw scores are exactly the material's two products", () => {
    fc.assert(fc.property(setup.map((s): Setup => ({ ...s, H: 1 })), (s) => {
      const { config, weights, text, vision } = build(s);
      const r = crossModalAttention(text, vision, weights, config);
      // The projections are Linear layers (to float32 rounding: the kernels round the product before the bias).
      const close = (a: Tensor, b: Tensor) => a.data.forEach((v, i) => expect(Math.abs(v - b.data[i]!)).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(v))));
      close(r.textProj, ops.linear(text, weights.text_proj, weights.text_proj_bias));
      close(r.visionProj, ops.linear(vision, weights.vision_proj, weights.vision_proj_bias));
      const cross_text = ops.bmm(r.textProj, transposeLast(vision)); // text_proj(T)·Vᵀ
      const cross_vision = ops.bmm(r.visionProj, transposeLast(text)); // vision_proj(V)·Tᵀ
      expect(r.scoresTv.data).toEqual(cross_text.data.map((v) => v / Math.sqrt(s.dv)));
      expect(r.scoresVt.data).toEqual(cross_vision.data.map((v) => v / Math.sqrt(s.dt)));
    }), opts);
  });

  it("head h scores only its slice of the features", () => {
    fc.assert(fc.property(setup, (s) => {
      const { config, weights, text, vision } = build(s);
      const r = crossModalAttention(text, vision, weights, config);
      const textProj = r.textProj;
      const dh = s.dv / s.H;
      for (let b = 0; b < s.B; b++) for (let h = 0; h < s.H; h++) for (let i = 0; i < s.Nt; i++) for (let j = 0; j < s.Nv; j++) {
        let dot = 0;
        for (let d = h * dh; d < (h + 1) * dh; d++) dot += textProj.data[(b * s.Nt + i) * s.dv + d]! * vision.data[(b * s.Nv + j) * s.dv + d]!;
        expect(r.scoresTv.data[((b * s.H + h) * s.Nt + i) * s.Nv + j]).toBeCloseTo(dot / Math.sqrt(dh), 5);
      }
    }), opts);
  });

  it("masked tokens get no weight; tokens with nothing visible keep their input", () => {
    fc.assert(fc.property(setup, (s) => {
      const { config, weights, text, vision, masks } = build(s);
      const r = crossModalAttention(text, vision, weights, config, masks);
      for (let b = 0; b < s.B; b++) for (let h = 0; h < s.H; h++) for (let i = 0; i < s.Nt; i++) {
        const row = r.probsTv.data.subarray(((b * s.H + h) * s.Nt + i) * s.Nv, ((b * s.H + h) * s.Nt + i + 1) * s.Nv);
        const seen = [...row.keys()].filter((j) => masks.vision[b * s.Nv + j] && masks.text[b * s.Nt + i]);
        [...row].forEach((p, j) => seen.includes(j) || expect(p).toBe(0));
        expect(row.reduce((a, p) => a + p, 0)).toBeCloseTo(seen.length ? 1 : 0, 5);
        if (!seen.length) expect(r.text.data.subarray((b * s.Nt + i) * s.dt, (b * s.Nt + i + 1) * s.dt)).toEqual(text.data.subarray((b * s.Nt + i) * s.dt, (b * s.Nt + i + 1) * s.dt));
      }
    }), opts);
  });
});

describe("early fusion", () => {
  const config: CrossModalConfig = { text_dim: 4, vision_dim: 3, fusion: "early" };
  const rng = new Random(5);
  const weights = initCrossModal(rng, config) as EarlyFusionWeights;
  const text = randBounded(rng, [5, 4]);
  const images = [randBounded(rng, [3, 3]), randBounded(rng, [1, 3])];
  it("replaces each image marker by its projected tokens, text rows in place", () => {
    const { sequence, spans } = earlyFusion(text, [1, 4], images, weights, config);
    expect(sequence.shape).toEqual([5 - 2 + 3 + 1, 4]);
    expect(spans).toEqual([[1, 4], [6, 7]]);
    const row = (t: Tensor, r: number) => [...t.data.subarray(r * 4, (r + 1) * 4)];
    expect(row(sequence, 0)).toEqual(row(text, 0));
    expect([4, 5].map((r) => row(sequence, r))).toEqual([2, 3].map((r) => row(text, r)));
    const projected = ops.linear(ops.gelu(ops.linear(images[1]!, weights.projector_fc1, weights.projector_fc1_bias)), weights.projector_fc2, weights.projector_fc2_bias);
    expect(row(sequence, 6)).toEqual(row(projected, 0));
  });
  it("rejects markers out of order and a wrong number of images", () => {
    expect(() => earlyFusion(text, [3, 1], images, weights, config)).toThrow("markers[1]");
    expect(() => earlyFusion(text, [1], images, weights, config)).toThrow("images");
    expect(() => earlyFusion(text, [1, 9], images, weights, config)).toThrow("markers[1]");
  });
});

describe("patch embedding", () => {
  it("cuts, flattens (c, dy, dx) and adds the 2-D positions, by hand", () => {
    // image [1, 2, 4], p = 2: patch 0 = (1, 2, 5, 6), patch 1 = (3, 4, 7, 8); E = 4 so ω = 1:
    // pos(0, 0) = (sin 0, cos 0, sin 0, cos 0), pos(0, 1) = (sin 0, cos 0, sin 1, cos 1).
    const image = tensor([1, 2, 4], [1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...patchify(image, 2).data]).toEqual([1, 2, 5, 6, 3, 4, 7, 8]);
    const weights = { patch_proj: tensor([4, 4], [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]), patch_proj_bias: tensor([4], [0, 0, 0, 10]) };
    const out = patchEmbed(image, weights, { channels: 1, patch_size: 2, embed_dim: 4 });
    [1, 3, 5, 17, 3, 5, 7 + Math.sin(1), 8 + Math.cos(1) + 10].forEach((v, i) => expect(out.data[i]).toBeCloseTo(v, 6));
  });
  it("puts every pixel exactly once where the raster and channel-major order say", () => {
    fc.assert(fc.property(fc.constantFrom(1, 2, 3), fc.constantFrom(1, 2, 3), fc.constantFrom(1, 2, 5), fc.constantFrom(1, 2, 3), (C, rows, cols, p) => {
      const [H, W] = [rows * p, cols * p];
      const image = tensor([C, H, W], Float32Array.from({ length: C * H * W }, (_, i) => i));
      const patches = patchify(image, p);
      for (let c = 0; c < C; c++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
        const n = Math.floor(y / p) * cols + Math.floor(x / p);
        expect(patches.data[n * C * p * p + (c * p + (y % p)) * p + (x % p)]).toBe((c * H + y) * W + x);
      }
    }), { numRuns: 30 });
  });
  it("a single patch is one token, at position (0, 0)", () => {
    const config = { channels: 3, patch_size: 4, embed_dim: 8 };
    const out = patchEmbed(randBounded(new Random(1), [3, 4, 4]), { patch_proj: tensor([8, 48]), patch_proj_bias: tensor([8]) }, config);
    expect(out.shape).toEqual([1, 8]);
    expect([...out.data]).toEqual([...positions2d(1, 1, 8).data]);
    expect([...out.data]).toEqual([0, 0, 1, 1, 0, 0, 1, 1]);
  });
  it("the shipped image is tinyImage(), and PPM round-trips", () => {
    const bytes = new Uint8Array(readFileSync(new URL("../data/images/tiny-32.ppm", import.meta.url)));
    expect(bytes).toEqual(writePpm(tinyImage()));
    expect(readPpm(bytes).data).toEqual(tinyImage().data);
    const tokens = patchEmbed(readPpm(bytes), { patch_proj: tensor([16, 192]), patch_proj_bias: tensor([16]) }, { channels: 3, patch_size: 8, embed_dim: 16 });
    expect(tokens.shape).toEqual([16, 16]);
  });
  it("rejects bad images, configs and files", () => {
    expect(() => patchify(tensor([3, 5, 4]), 2)).toThrow("image");
    expect(() => patchEmbed(tensor([3, 4, 4]), { patch_proj: tensor([6, 48]), patch_proj_bias: tensor([6]) }, { channels: 3, patch_size: 4, embed_dim: 6 })).toThrow("config.embed_dim");
    expect(() => readPpm(new TextEncoder().encode("P3\n1 1\n255\nabc"))).toThrow("ppm magic");
    expect(() => readPpm(new TextEncoder().encode("P6\n2 1\n255\nabc"))).toThrow("ppm body");
  });
});

describe("cross-modal configs and inputs are checked", () => {
  it.each([
    ["config.text_dim", { text_dim: 0, vision_dim: 2 }],
    ["config.num_heads", { text_dim: 4, vision_dim: 3, num_heads: 2 }],
    ["config.fusion", { text_dim: 4, vision_dim: 4, fusion: "late" }],
  ])("%s", (name, bad) => expect(() => checkCrossModalConfig(bad as CrossModalConfig)).toThrow(name));
  it("shapes and masks", () => {
    const config = { text_dim: 2, vision_dim: 3 };
    const w = initCrossModal(new Random(1), config) as CrossAttentionWeights;
    expect(() => crossModalAttention(tensor([1, 2]), tensor([1, 2]), w, config)).toThrow("vision");
    expect(() => crossModalAttention(tensor([1, 2]), tensor([1, 3]), w, config, { text: new Uint8Array(2) })).toThrow("masks.text");
    expect(() => crossModalAttention(tensor([1, 2]), tensor([1, 3]), { ...w, gate_text: tensor([2]) }, config)).toThrow("weights.gate_text");
  });
});
