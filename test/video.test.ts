import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  checkVideoConfig, initVideoAttention, spaceChannelTimeAttention, spatialAttention, squeezeExcite, temporalAttention,
  type VideoAttentionConfig, type VideoAttentionWeights,
} from "../src/attention/video.ts";
import { Random, randBounded } from "../src/random.ts";
import { tensor, type Tensor } from "../src/tensor.ts";

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

describe("space-channel-time attention, worked by hand", () => {
  // C = 1, one head, F = 2 frames of P = 1 patch, x = (2, -0.5). RMSNorm of one number: n(x) = x / sqrt(x² + eps).
  // time (others only): frame 0 sees frame 1 and vice versa, so x₁ = x + o_t·v_t·n(x_other)
  // space: one patch sees itself:  x₂ = x₁ + o_s·v_s·n(x₁)
  // channel: s = x₂ (one patch),  g = σ(w₂·ReLU(w₁·s + b₁) + b₂),  out = x₂·g
  const one = (v: number) => tensor([1, 1], [v]);
  const step = (v: number, o: number) => ({ norm: tensor([1], [1]), q_proj: one(0.3), k_proj: one(-0.7), v_proj: one(v), o_proj: one(o) });
  const weights: VideoAttentionWeights = {
    temporal: step(0.5, 2), spatial: step(-1.5, 1),
    se_fc1: one(0.8), se_fc1_bias: tensor([1], [0.1]), se_fc2: one(-2), se_fc2_bias: tensor([1], [0.5]),
  };
  const config = { channels: 1, se_ratio: 1 };
  const n = (x: number) => x / Math.sqrt(x * x + 1e-6);
  it("gives the hand-computed output", () => {
    const x = [2, -0.5];
    const x1 = [x[0]! + 2 * 0.5 * n(x[1]!), x[1]! + 2 * 0.5 * n(x[0]!)];
    const x2 = x1.map((v) => v - 1.5 * n(v));
    const out = x2.map((v) => v * sigmoid(-2 * Math.max(0.8 * v + 0.1, 0) + 0.5));
    const got = spaceChannelTimeAttention(tensor([2, 1, 1], x), weights, config);
    expect(got.shape).toEqual([2, 1, 1]);
    out.forEach((v, i) => expect(got.data[i]).toBeCloseTo(v, 6));
  });
  it("with temporal_self, a frame also attends to itself (TimeSformer)", () => {
    const got = temporalAttention(tensor([1, 1, 1], [2]), weights, { ...config, temporal_self: true });
    expect(got.data[0]).toBeCloseTo(2 + 2 * 0.5 * n(2), 6);
  });
});

const setup = fc.record({
  B: fc.constantFrom(1, 2),
  F: fc.constantFrom(1, 2, 3, 5),
  P: fc.constantFrom(1, 2, 4, 7),
  C: fc.constantFrom(1, 2, 4, 6),
  H: fc.constantFrom(1, 2),
  seed: fc.nat(1e6),
}).filter((s) => s.C % s.H === 0);
type Setup = typeof setup extends fc.Arbitrary<infer S> ? S : never;

function build(s: Setup) {
  const config: VideoAttentionConfig = { channels: s.C, num_heads: s.H, se_ratio: 2 };
  const rng = new Random(s.seed);
  const boost = (w: Record<string, Tensor>) =>
    Object.fromEntries(Object.entries(w).map(([name, t]) => [name, name === "norm" ? t : randBounded(rng, t.shape, 0.6)]));
  const init = initVideoAttention(rng, config);
  const { temporal, spatial, ...se } = init;
  const weights = {
    temporal: boost(temporal as unknown as Record<string, Tensor>),
    spatial: boost(spatial as unknown as Record<string, Tensor>),
    ...boost(se as unknown as Record<string, Tensor>),
  } as unknown as VideoAttentionWeights;
  return { config, weights, video: randBounded(rng, [s.B, s.F, s.P, s.C]) };
}

/** Element (b, f, p, c) of a [B, F, P, C] tensor. */
const at = (x: Tensor, s: Setup, b: number, f: number, p: number) => x.data.subarray((((b * s.F + f) * s.P + p) * s.C), (((b * s.F + f) * s.P + p) + 1) * s.C);

describe("space-channel-time properties", () => {
  const opts = { numRuns: 25 };

  it("one frame is exactly spatial attention then SE", () => {
    fc.assert(fc.property(setup.map((s): Setup => ({ ...s, F: 1 })), (s) => {
      const { config, weights, video } = build(s);
      const image = squeezeExcite(spatialAttention(video, weights, config), weights, config);
      expect(spaceChannelTimeAttention(video, weights, config).data).toEqual(image.data);
    }), opts);
  });

  it("time mixes only the same patch across frames; space only the patches of one frame", () => {
    fc.assert(fc.property(setup, fc.nat(), (s, pick) => {
      const { config, weights, video } = build(s);
      const [f0, p0] = [pick % s.F, Math.floor(pick / s.F) % s.P];
      const changed = { shape: video.shape, data: video.data.slice() };
      at(changed, s, 0, f0, p0)[0] += 1;
      const [t1, t2] = [temporalAttention(video, weights, config), temporalAttention(changed, weights, config)];
      const [s1, s2] = [spatialAttention(video, weights, config), spatialAttention(changed, weights, config)];
      for (let b = 0; b < s.B; b++) for (let f = 0; f < s.F; f++) for (let p = 0; p < s.P; p++) {
        if (b !== 0 || p !== p0) expect(at(t2, s, b, f, p)).toEqual(at(t1, s, b, f, p));
        if (b !== 0 || f !== f0) expect(at(s2, s, b, f, p)).toEqual(at(s1, s, b, f, p));
      }
    }), opts);
  });

  it("SE scales each channel of a frame by one gate in (0, 1)", () => {
    fc.assert(fc.property(setup, (s) => {
      const { config, weights, video } = build(s);
      const out = squeezeExcite(video, weights, config);
      for (let b = 0; b < s.B; b++) for (let f = 0; f < s.F; f++) for (let c = 0; c < s.C; c++) {
        const gates = Array.from({ length: s.P }, (_, p) => at(out, s, b, f, p)[c]! / at(video, s, b, f, p)[c]!);
        gates.forEach((g) => {
          expect(g).toBeGreaterThan(0);
          expect(g).toBeLessThan(1 + 1e-6);
          expect(g).toBeCloseTo(gates[0]!, 5);
        });
      }
    }), opts);
  });

  it("accepts [F, P, C] as one video", () => {
    fc.assert(fc.property(setup.map((s): Setup => ({ ...s, B: 1 })), (s) => {
      const { config, weights, video } = build(s);
      const flat = tensor([s.F, s.P, s.C], video.data);
      const out = spaceChannelTimeAttention(flat, weights, config);
      expect(out.shape).toEqual([s.F, s.P, s.C]);
      expect(out.data).toEqual(spaceChannelTimeAttention(video, weights, config).data);
    }), { numRuns: 10 });
  });
});

describe("video attention checks its arguments", () => {
  it.each([
    ["config.channels", { channels: 0 }],
    ["config.num_heads", { channels: 4, num_heads: 3 }],
    ["config.se_ratio", { channels: 4, se_ratio: 0.5 }],
    ["config.temporal_self", { channels: 4, temporal_self: "yes" }],
  ])("%s", (name, bad) => expect(() => checkVideoConfig(bad as VideoAttentionConfig)).toThrow(name));
  it("shapes and weights", () => {
    const config = { channels: 4 };
    const w = initVideoAttention(new Random(1), config);
    expect(() => spaceChannelTimeAttention(tensor([2, 3, 5]), w, config)).toThrow("video");
    expect(() => spaceChannelTimeAttention(tensor([2, 3, 4]), { ...w, spatial: { ...w.spatial, k_proj: tensor([4, 3]) } }, config)).toThrow("weights.spatial.k_proj");
    expect(() => spaceChannelTimeAttention(tensor([2, 3, 4]), { ...w, se_fc1: tensor([2, 4]) }, config)).toThrow("weights.se_fc1");
  });
});
