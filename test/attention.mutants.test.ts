// Cases that kill mutants of src/attention/ that the attention suites let live (test/README.md, mutation testing):
// MLA's config and call checks, each with its whole message, and the YaRN options a config gives, values given
// and defaults, worked by hand.
import { describe, expect, it } from "vitest";
import { checkMlaConfig, createMlaCache, initMla, mla, mlaCacheNumbersPerToken, yarnOptions, type MlaConfig } from "../src/attention/mla.ts";
import { Random } from "../src/random.ts";
import { tensor } from "../src/tensor.ts";
import { thrown } from "./helpers.ts";

const cfg: MlaConfig = {
  hidden_size: 8, num_attention_heads: 2, q_lora_rank: 0, kv_lora_rank: 4, qk_nope_head_dim: 3,
  qk_rope_head_dim: 2, v_head_dim: 3, max_position_embeddings: 4,
};
const yarn = { type: "yarn" as const, factor: 4, original_max_position_embeddings: 16 };
const messageOf = thrown;

describe("MLA config checks name the field", () => {
  const cases: [Partial<MlaConfig> | Record<string, unknown>, string][] = [
    [{ hidden_size: 0 }, "config.hidden_size: expected an integer >= 1, got 0"],
    [{ q_lora_rank: -1 }, "config.q_lora_rank: expected an integer >= 0, got -1"],
    [{ qk_nope_head_dim: 0 }, "config.qk_nope_head_dim: expected an integer >= 1, got 0"],
    [{ qk_rope_head_dim: 1 }, "config.qk_rope_head_dim: expected an integer >= 2, got 1"],
    [{ qk_rope_head_dim: 3 }, "config.qk_rope_head_dim: expected an even number, got 3"],
    [{ v_head_dim: 0 }, "config.v_head_dim: expected an integer >= 1, got 0"],
    [{ max_position_embeddings: 0 }, "config.max_position_embeddings: expected an integer >= 1, got 0"],
    [{ rope_theta: 0.5 }, "config.rope_theta: expected a finite number in [1, Infinity], got 0.5"],
    [{ rms_norm_eps: 2 }, "config.rms_norm_eps: expected a finite number in [0, 1], got 2"],
    [{ rope_scaling: { ...yarn, type: "linear" } }, 'config.rope_scaling.type: expected one of "yarn", got "linear"'],
    [{ rope_scaling: { ...yarn, original_max_position_embeddings: 0 } }, "config.rope_scaling.original_max_position_embeddings: expected an integer >= 1, got 0"],
    [{ rope_scaling: { ...yarn, beta_fast: -1 } }, "config.rope_scaling.beta_fast: expected a finite number in [0, Infinity], got -1"],
    [{ rope_scaling: { ...yarn, beta_slow: -1 } }, "config.rope_scaling.beta_slow: expected a finite number in [0, Infinity], got -1"],
    [{ rope_scaling: { ...yarn, mscale: -1 } }, "config.rope_scaling.mscale: expected a finite number in [0, Infinity], got -1"],
    [{ rope_scaling: { ...yarn, mscale: 0.5, mscale_all_dim: 2 } }, "config.rope_scaling.mscale_all_dim: expected equal to mscale (0.5), got 2"],
    [{ rope_scaling: { ...yarn, mscale_all_dim: 2 } }, "config.rope_scaling.mscale_all_dim: expected equal to mscale (1), got 2"],
  ];
  for (const [change, message] of cases) {
    it(message, () => expect(messageOf(() => checkMlaConfig({ ...cfg, ...change } as MlaConfig))).toBe(message));
  }

  it("a config that is no object, and weights that are none", () => {
    expect(messageOf(() => checkMlaConfig(null as unknown as MlaConfig))).toBe("config: expected an MLA config object, got null");
    expect(messageOf(() => checkMlaConfig(5 as unknown as MlaConfig))).toBe("config: expected an MLA config object, got 5");
    expect(messageOf(() => mla(tensor([1, 8]), 5 as never, cfg))).toBe("weights: expected an MLA weights object, got 5");
    expect(messageOf(() => mla(tensor([1, 8]), null as never, cfg))).toBe("weights: expected an MLA weights object, got null");
  });

  it("a type of yarn and equal mscales of 0.707 are accepted (as DeepSeek-V2's config has them)", () => {
    expect(() => checkMlaConfig({ ...cfg, rope_scaling: { ...yarn, mscale: 0.707, mscale_all_dim: 0.707 } })).not.toThrow();
  });
});

describe("YaRN options from a config", () => {
  it("the values given", () => {
    const s = { ...yarn, beta_fast: 16, beta_slow: 2, mscale: 0.707, mscale_all_dim: 0.707 };
    expect(yarnOptions({ ...cfg, rope_scaling: s }))
      .toEqual({ factor: 4, originalMaxPosition: 16, maxPosition: 4, betaFast: 16, betaSlow: 2, mscale: 0.707 });
    expect(yarnOptions({ ...cfg, rope_scaling: { ...yarn, mscale: 0.5 } })!.mscale).toBe(0.5);
  });

  it("the defaults: beta_fast 32, beta_slow 1, mscale 1", () => {
    expect(yarnOptions({ ...cfg, rope_scaling: yarn }))
      .toEqual({ factor: 4, originalMaxPosition: 16, maxPosition: 4, betaFast: 32, betaSlow: 1, mscale: 1 });
  });
});

describe("MLA call checks", () => {
  const weights = initMla(new Random(1), cfg);

  it("mode and batch are named", () => {
    expect(messageOf(() => mlaCacheNumbersPerToken(cfg, "fast" as never))).toBe('mode: expected one of "naive", "absorb", got "fast"');
    expect(messageOf(() => createMlaCache(cfg, "fast" as never))).toBe('mode: expected one of "naive", "absorb", got "fast"');
    expect(messageOf(() => createMlaCache(cfg, "absorb", 0))).toBe("batch: expected an integer >= 1, got 0");
    expect(messageOf(() => mla(tensor([1, 1, 8]), weights, cfg, createMlaCache(cfg, "naive"), undefined, "absorb")))
      .toBe('mode: expected the cache\'s mode "naive", got "absorb"');
    expect(messageOf(() => mla(tensor([2, 1, 8]), weights, cfg, createMlaCache(cfg))))
      .toBe("x: expected batch 1 to match the cache, got [2, 1, 8]");
  });

  it("a cache whose length disagrees with the positions it holds is named, not a reshape failure", () => {
    const absorbed = createMlaCache(cfg);
    mla(tensor([1, 2, 8]), weights, cfg, absorbed);
    absorbed.length = 3;
    expect(messageOf(() => mla(tensor([1, 1, 8]), weights, cfg, absorbed))).toMatch(/^cache\.latent: expected 3 positions \(cache\.length\), got \[1, 2, \d+\]$/);
    const naive = createMlaCache(cfg, "naive");
    naive.length = 1;
    expect(messageOf(() => mla(tensor([1, 1, 8]), weights, cfg, naive))).toMatch(/^cache\.keys: expected 1 position \(cache\.length\), got \[1, \d+, 0, \d+\]$/);
    naive.length = -1;
    expect(messageOf(() => mla(tensor([1, 1, 8]), weights, cfg, naive))).toBe("cache.length: expected an integer >= 0, got -1");
  });

  it("an input that is no tensor gets the shape message, not a TypeError", () => {
    expect(messageOf(() => mla(undefined as never, weights, cfg))).toMatch(/^x: expected /);
    expect(messageOf(() => mla({} as never, weights, cfg))).toMatch(/^x: expected /);
  });

  it("exactly max_position_embeddings positions fit; one more is refused", () => {
    expect(mla(tensor([1, 4, 8]), weights, cfg).shape).toEqual([1, 4, 8]);
    expect(messageOf(() => mla(tensor([1, 5, 8]), weights, cfg))).toBe("x: 0 cached + 5 new positions exceed max_position_embeddings 4");
  });
});
