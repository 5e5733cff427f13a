// A checkpoint directory laid out as DeepSeek publishes V3: config.json (the Hugging Face config, with
// quantization_config), model.safetensors.index.json and its shards (model-0000k-of-0000n.safetensors), FP8
// projections (F8_E4M3 `weight` + F32 `weight_scale_inv`, one scale per 128×128 block, edge blocks partial), BF16
// embeddings, norms, router gates and head, F32 e_score_correction_bias, and the multi-token-prediction layer
// (model.layers.N with N = num_hidden_layers: embed_tokens, enorm, hnorm, eh_proj, a MoE block, shared_head.norm,
// shared_head.head) when num_nextn_predict_layers is 1. Small widths by default, so it is written in well under a
// second; the bench writes DeepSeek-V2-Lite's widths with `randomCodes`.
//
// Reuse it (the MTP tests do): `const info = await writeTestCheckpoint(dir, { config: { ... } })`, then
// `loadCheckpoint(dir)` or `tinyseek step --weights dir`. `format: "bf16"` writes the same weights as the
// BF16-converted checkpoint (every FP8 weight dequantised, stored BF16, no scales, no quantization_config): the
// scales are powers of two, so the dequantised values are exact in BF16 and both load to identical float32 weights.

import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { configFromHf, resolveConfig, type ModelConfig } from "../src/model/config.ts";
import { weightShapes } from "../src/model/params.ts";
import { writeSafetensors, type TensorToWrite } from "../src/io/safetensors.ts";
import { decode, FORMATS } from "../src/quant/minifloat.ts";
import { Random } from "../src/random.ts";

/** A small V3-shaped config.json: 256 wide (two whole 128-blocks), 320 and 192 wide MLPs (partial blocks). */
export const SMALL_V3_CONFIG: Record<string, unknown> = {
  architectures: ["DeepseekV3ForCausalLM"], attention_bias: false, attention_dropout: 0.0,
  auto_map: { AutoConfig: "configuration_deepseek.DeepseekV3Config", AutoModel: "modeling_deepseek.DeepseekV3Model", AutoModelForCausalLM: "modeling_deepseek.DeepseekV3ForCausalLM" },
  aux_loss_alpha: 0.001, bos_token_id: 0, eos_token_id: 1, ep_size: 1, first_k_dense_replace: 1, hidden_act: "silu",
  hidden_size: 256, initializer_range: 0.02, intermediate_size: 320, kv_lora_rank: 128, max_position_embeddings: 256,
  model_type: "deepseek_v3", moe_intermediate_size: 192, moe_layer_freq: 1, n_group: 2, n_routed_experts: 4,
  n_shared_experts: 1, norm_topk_prob: true, num_attention_heads: 4, num_experts_per_tok: 2, num_hidden_layers: 3,
  num_key_value_heads: 4, num_nextn_predict_layers: 1, pretraining_tp: 1, q_lora_rank: 192, qk_nope_head_dim: 32,
  qk_rope_head_dim: 16,
  quantization_config: { activation_scheme: "dynamic", fmt: "e4m3", quant_method: "fp8", weight_block_size: [128, 128] },
  rms_norm_eps: 1e-6,
  rope_scaling: { beta_fast: 32, beta_slow: 1, factor: 4, mscale: 1.0, mscale_all_dim: 1.0, original_max_position_embeddings: 64, type: "yarn" },
  rope_theta: 10000, routed_scaling_factor: 2.5, scoring_func: "sigmoid", seq_aux: true, tie_word_embeddings: false,
  topk_group: 1, topk_method: "noaux_tc", torch_dtype: "bfloat16", transformers_version: "4.33.1", use_cache: true,
  v_head_dim: 32, vocab_size: 260, // the byte tokenizer's 260 ids, so the stepper can show every token
};

export interface TestCheckpointOptions {
  /** config.json fields over SMALL_V3_CONFIG (a field set to undefined is left out). */
  config?: Record<string, unknown>;
  /** How many shards (default 2); tensors are split in checkpoint order, a layer never across two. */
  shards?: number;
  /** "fp8" (default) as DeepSeek ships V3; "bf16" the BF16-converted checkpoint of the same weights. */
  format?: "fp8" | "bf16";
  /** Seed of the weights (default 1). */
  seed?: number;
  /** FP8 codes drawn at random instead of encoded from normal weights: fast at real widths (the bench). */
  randomCodes?: boolean;
  /** Changes the tensors before they are written (the bad-checkpoint tests remove, rename or reshape some). */
  edit?: (tensors: Map<string, TensorToWrite>) => void;
}

export interface TestCheckpoint {
  readonly dir: string;
  /** config.json as written, and as tinyseek resolves it. */
  readonly json: Record<string, unknown>;
  readonly config: ModelConfig;
  /** Shard file names, and which shard holds each tensor (the index's weight_map). */
  readonly shards: string[];
  readonly weightMap: Record<string, string>;
  /** Names of the MTP layer's tensors (scales excluded). */
  readonly mtpNames: string[];
  /** Every weight as the loader must produce it (float32, FP8 dequantised), by name. */
  readonly expected: Map<string, Float32Array>;
}

/** The linear projections DeepSeek stores in FP8: attention and MLP `*_proj` (router gates and head stay BF16). */
export const isFp8Projection = (name: string) => /\.(self_attn|mlp)\..*_proj(_with_mqa)?\.weight$/.test(name);

/** Every tensor of the MTP layer `n` (= num_hidden_layers) with its shape: its own parts and one MoE block. */
export function mtpShapes(config: ModelConfig): Map<string, number[]> {
  const L = config.num_hidden_layers;
  const [V, D] = [config.vocab_size, config.hidden_size];
  const p = `model.layers.${L}`;
  const shapes = new Map<string, number[]>([
    [`${p}.embed_tokens.weight`, [V, D]], [`${p}.enorm.weight`, [D]], [`${p}.hnorm.weight`, [D]], [`${p}.eh_proj.weight`, [D, 2 * D]],
    [`${p}.shared_head.norm.weight`, [D]], [`${p}.shared_head.head.weight`, [V, D]],
  ]);
  // The block is shaped like a main-model layer at index L: the list of a config one layer deeper gives it.
  for (const [name, { shape }] of weightShapes(resolveConfig({ ...config, num_hidden_layers: L + 1 }))) {
    if (name.startsWith(`${p}.`)) shapes.set(name, shape);
  }
  return shapes;
}

const E4M3 = FORMATS.e4m3;

/** A weight in FP8 with power-of-two block scales: codes, scales, and the exact dequantised values. */
function toFp8(values: Float32Array, [out, inDim]: number[], rng: Random, randomCodes: boolean) {
  const block = 128;
  const [rb, cb] = [Math.ceil(out! / block), Math.ceil(inDim! / block)];
  const codes = new Uint8Array(out! * inDim!);
  const scales = new Float32Array(rb * cb);
  if (randomCodes) {
    // Random codes below e4m3's NaN (0x7f / 0xff), one scale 2^-14 for every block: weights up to about 0.03.
    for (let i = 0; i < codes.length; i++) codes[i] = rng.int(0x7f) | (rng.int(2) << 7);
    scales.fill(2 ** -14);
    return { codes, scales, dequantised: null };
  }
  const dequantised = new Float32Array(codes.length);
  for (let b = 0; b < rb * cb; b++) {
    const [r0, c0] = [Math.floor(b / cb) * block, (b % cb) * block];
    let amax = 0;
    for (let r = r0; r < Math.min(r0 + block, out!); r++) for (let c = c0; c < Math.min(c0 + block, inDim!); c++) amax = Math.max(amax, Math.abs(values[r * inDim! + c]!));
    const scale = 2 ** Math.ceil(Math.log2(amax / E4M3.max));
    scales[b] = scale;
    for (let r = r0; r < Math.min(r0 + block, out!); r++) {
      for (let c = c0; c < Math.min(c0 + block, inDim!); c++) {
        const i = r * inDim! + c;
        codes[i] = e4m3Code(values[i]! / scale);
        dequantised[i] = decode(E4M3, codes[i]!) * scale;
      }
    }
  }
  return { codes, scales, dequantised };
}

/** BF16's nearest value to a finite x, ties to even (float32's top 16 bits, rounded). */
const word = new Uint32Array(1);
const asFloat = new Float32Array(word.buffer);
function bf16(x: number): number {
  asFloat[0] = x;
  word[0] = (word[0]! + 0x7fff + ((word[0]! >>> 16) & 1)) & 0xffff0000;
  return asFloat[0]!;
}

/** e4m3's code nearest to x, ties to even, saturating at ±448 (the scales keep |x| <= 448): a binary search over
 *  the 127 positive values, which grow with their code. Agrees with src/quant/minifloat.ts's encode, only faster. */
const E4M3_VALUES = Array.from({ length: 127 }, (_, code) => decode(FORMATS.e4m3, code));
function e4m3Code(x: number): number {
  const v = Math.min(Math.abs(x), E4M3.max);
  let [lo, hi] = [0, 126];
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (E4M3_VALUES[mid]! <= v) lo = mid;
    else hi = mid;
  }
  const [dLo, dHi] = [v - E4M3_VALUES[lo]!, E4M3_VALUES[hi]! - v];
  const code = dLo < dHi ? lo : dHi < dLo ? hi : lo % 2 === 0 ? lo : hi;
  return x < 0 ? code | 0x80 : code;
}

/** Float32 values already on BF16's grid as BF16's stored bytes (their top 16 bits): no rounding left to do. */
function bf16Bytes(values: Float32Array): Uint8Array {
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint8Array(2 * values.length);
  for (let i = 0; i < values.length; i++) {
    out[2 * i] = (words[i]! >>> 16) & 0xff;
    out[2 * i + 1] = words[i]! >>> 24;
  }
  return out;
}

/** Writes the checkpoint directory (created if missing) and returns what the loader must find in it. */
export async function writeTestCheckpoint(dir: string, options: TestCheckpointOptions = {}): Promise<TestCheckpoint> {
  const format = options.format ?? "fp8";
  const json: Record<string, unknown> = { ...SMALL_V3_CONFIG, ...options.config };
  for (const key of Object.keys(json)) if (json[key] === undefined) delete json[key];
  if (format === "bf16") delete json.quantization_config;
  const { config } = configFromHf(json);
  const rng = new Random(options.seed ?? 1);
  const shapes = new Map<string, number[]>([...weightShapes(config)].map(([name, { shape }]) => [name, shape]));
  const mtp = config.num_nextn_predict_layers > 0 ? mtpShapes(config) : new Map<string, number[]>();
  for (const [name, shape] of mtp) shapes.set(name, shape);

  const tensors = new Map<string, TensorToWrite>();
  const expected = new Map<string, Float32Array>();
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNorm = /norm\.weight$/.test(name);
    if (name.endsWith("e_score_correction_bias")) {
      const data = Float32Array.from({ length: n }, () => 0.01 * rng.normal());
      tensors.set(name, { dtype: "F32", shape, data });
      expected.set(name, data);
    } else if (isFp8Projection(name)) {
      const values = options.randomCodes ? new Float32Array(0) : Float32Array.from({ length: n }, () => 0.05 * rng.normal());
      const { codes, scales, dequantised } = toFp8(values, shape, rng, options.randomCodes ?? false);
      if (dequantised) expected.set(name, dequantised);
      if (format === "fp8") {
        tensors.set(name, { dtype: "F8_E4M3", shape, raw: codes });
        tensors.set(`${name}_scale_inv`, { dtype: "F32", shape: [Math.ceil(shape[0]! / 128), Math.ceil(shape[1]! / 128)], data: scales });
      } else tensors.set(name, { dtype: "BF16", shape, raw: bf16Bytes(dequantised!) });
    } else {
      const data = Float32Array.from({ length: n }, () => bf16(isNorm ? 1 + 0.1 * rng.normal() : 0.05 * rng.normal()));
      tensors.set(name, { dtype: "BF16", shape, raw: bf16Bytes(data) });
      expected.set(name, data);
    }
  }
  options.edit?.(tensors);
  return writeShards(dir, json, config, tensors, options.shards ?? 2, [...mtp.keys()], expected);
}

/** The tensors in `count` shards (split at layer boundaries, in checkpoint order), the index, and config.json. */
async function writeShards(dir: string, json: Record<string, unknown>, config: ModelConfig, tensors: Map<string, TensorToWrite>, count: number, mtpNames: string[], expected: Map<string, Float32Array>): Promise<TestCheckpoint> {
  await mkdir(dir, { recursive: true });
  const groupOf = (name: string) => /^model\.layers\.(\d+)\./.exec(name)?.[1] ?? name;
  const groups = [...new Set([...tensors.keys()].map(groupOf))];
  const first = (k: number) => Math.floor((k * groups.length) / count); // shard k holds groups first(k) … first(k + 1) - 1
  const shards = Array.from({ length: count }, (_, k) => `model-${String(k + 1).padStart(5, "0")}-of-${String(count).padStart(5, "0")}.safetensors`);
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  for (let k = 0; k < count; k++) {
    const mine = new Set(groups.slice(first(k), first(k + 1)));
    const part = new Map([...tensors].filter(([name]) => mine.has(groupOf(name))));
    for (const name of part.keys()) weightMap[name] = shards[k]!;
    const bytes = writeSafetensors(part, { format: "pt" });
    totalSize += bytes.length;
    await writeFile(join(dir, shards[k]!), bytes);
  }
  await writeFile(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2));
  await writeFile(join(dir, "config.json"), JSON.stringify(json, null, 2));
  return { dir, json, config, shards, weightMap, mtpNames, expected };
}
