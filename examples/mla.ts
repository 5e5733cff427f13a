// Lesson 3: multi-head latent attention and why its cache is small (src/attention/mla.ts).
import { TINY_MLA } from "../src/reports/attention.ts";
import { createMlaCache, initMla, mla, mlaCacheNumbersPerToken, type MlaCache, type MlaConfig } from "../src/attention/mla.ts";
import { preset } from "../src/model/presets.ts";
import { randBounded, Random } from "../src/random.ts";
import { sliceRows, type Tensor } from "../src/tensor.ts";

/** The MLA fields of a published DeepSeek config (the preset holds them under the same names). */
export function presetMla(name: "deepseek-v3" | "deepseek-v2" | "deepseek-v2-lite"): MlaConfig {
  const c = preset(name) as unknown as MlaConfig;
  const { hidden_size, num_attention_heads, q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim, max_position_embeddings } = c;
  return { hidden_size, num_attention_heads, q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim, max_position_embeddings };
}

/**
 * Numbers cached per token per layer. MHA caches a key and a value per head; GQA with g kv heads caches 2·g·Dh;
 * MLA naive caches every head's full key and value; MLA absorb caches the latent and one shared rotary key.
 */
export function cachePerToken(config: MlaConfig) {
  const H = config.num_attention_heads;
  const gqaGroups = Math.max(2, Math.floor(H / 16)); // V3's 128 heads: 8 kv heads, as Llama-style GQA might use
  const dk = config.qk_nope_head_dim + config.qk_rope_head_dim;
  const mha = H * (dk + config.v_head_dim);
  return [
    { scheme: "MHA (a key and a value per head)", numbers: mha },
    { scheme: `GQA (${gqaGroups} kv heads)`, numbers: gqaGroups * (dk + config.v_head_dim) },
    { scheme: "MQA (1 kv head)", numbers: dk + config.v_head_dim },
    { scheme: "MLA naive (keys and values rebuilt)", numbers: mlaCacheNumbersPerToken(config, "naive") },
    { scheme: "MLA absorb (latent + rope key)", numbers: mlaCacheNumbersPerToken(config, "absorb") },
  ].map((r) => ({ ...r, bytesBf16: 2 * r.numbers, vsMha: r.numbers / mha }));
}

export interface MlaRun {
  config: MlaConfig;
  x: Tensor;
  naive: Tensor;
  absorb: Tensor;
  /** The same tokens fed one at a time through an absorb cache. */
  decoded: Tensor;
  cache: MlaCache;
}

/** One seeded MLA layer run three ways on T tokens: naive, absorb, and absorb token by token (decode). */
export function runMla(T = 8, config: MlaConfig = TINY_MLA, seed = 11): MlaRun {
  const rng = new Random(seed);
  const weights = initMla(rng, config);
  const x = randBounded(rng, [T, config.hidden_size]);
  const naive = mla(x, weights, config, undefined, undefined, "naive");
  const absorb = mla(x, weights, config, undefined, undefined, "absorb");
  const cache = createMlaCache(config, "absorb");
  const rows = Array.from({ length: T }, (_, t) => mla(sliceRows(x, t, t + 1), weights, config, cache));
  const decoded = { shape: [T, config.hidden_size], data: new Float32Array(T * config.hidden_size) };
  rows.forEach((r, t) => decoded.data.set(r.data, t * config.hidden_size));
  return { config, x, naive, absorb, decoded, cache };
}

/** Largest |a - b| and the largest |a| (for scale). */
export function maxDiff(a: Tensor, b: Tensor): { maxAbsDiff: number; maxAbs: number } {
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.data.length; i++) {
    d = Math.max(d, Math.abs(a.data[i]! - b.data[i]!));
    m = Math.max(m, Math.abs(a.data[i]!));
  }
  return { maxAbsDiff: d, maxAbs: m };
}

/** Cache size in MiB (bf16) over one layer as the context grows, for each scheme (MLA naive lies on MHA: left out). */
export function cacheGrowth(config: MlaConfig, lengths = [1024, 4096, 16384, 65536, 131072]) {
  const schemes = cachePerToken(config).filter((r) => !r.scheme.startsWith("MLA naive"));
  return lengths.flatMap((T) => schemes.map((r) => ({ T, scheme: r.scheme.split(" (")[0]!, MiB: (r.bytesBf16 * T) / 2 ** 20 })));
}
