// Checkpoints as DeepSeek publishes them (src/io/checkpoint.ts, spec/checkpoints.md): a directory with config.json,
// the index and its shards, FP8 projections with block scales, the MTP layer; read lazily, layer by layer.

import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadCheckpoint } from "../src/io/checkpoint.ts";
import { configFromHf } from "../src/model/config.ts";
import { forward } from "../src/model/forward.ts";
import { countParameters } from "../src/model/params.ts";
import { loadModel } from "../src/model/weights.ts";
import type { TensorToWrite } from "../src/io/safetensors.ts";
import { writeTestCheckpoint, type TestCheckpoint } from "./checkpoint-fixtures.ts";
import { cli, nmse, thrown } from "./helpers.ts";

const root = mkdtempSync(join(tmpdir(), "tinyseek-checkpoint-"));
let fp8: TestCheckpoint;
let bf16: TestCheckpoint;
beforeAll(async () => {
  fp8 = await writeTestCheckpoint(join(root, "fp8"));
  bf16 = await writeTestCheckpoint(join(root, "bf16"), { format: "bf16" });
}, 60_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

const tokens = [0, 17, 42, 99, 250, 3];

/** The first element where two float arrays differ in value, or -1 (toEqual is slow on a million elements). */
function firstDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

describe("a sharded FP8 checkpoint directory", () => {
  it("loads every weight as DeepSeek's weight_dequant computes it (code × its block's scale)", async () => {
    const c = await loadCheckpoint(fp8.dir);
    expect(c.files.map((f) => f.slice(fp8.dir.length + 1))).toEqual(fp8.shards);
    expect(c.quantization).toEqual({ fmt: "e4m3", block: 128 });
    for (const [name, values] of fp8.expected) expect(firstDifference(c.tensor(name).data, values), name).toBe(-1);
  });

  it("gives the BF16-converted checkpoint's logits (NMSE <= 1e-7; the power-of-two scales make them exact)", async () => {
    const [a, b] = [await loadCheckpoint(fp8.dir), await loadCheckpoint(bf16.dir)];
    expect(b.quantization).toBeNull();
    const [la, lb] = [forward(a.model, tokens).logits, forward(b.model, tokens).logits];
    expect(nmse(la, lb)).toBeLessThanOrEqual(1e-7);
    expect(la.data).toEqual(lb.data);
  });

  it("recognises the MTP layer's tensors and reads them when model.weights.mtp is first used", async () => {
    const c = await loadCheckpoint(fp8.dir);
    expect(new Set(c.mtpNames)).toEqual(new Set(fp8.mtpNames));
    expect(c.mtpNames.length).toBeGreaterThan(6);
    const mtp = c.model.weights.mtp!;
    expect(mtp.eh_proj.shape).toEqual([256, 512]);
    expect(firstDifference(mtp.eh_proj.data, fp8.expected.get("model.layers.3.eh_proj.weight")!)).toBe(-1);
  });

  it("reads a layer when it is first used and keeps them under the byte budget", async () => {
    const all = await loadCheckpoint(fp8.dir);
    const expected = forward(all.model, tokens).logits.data;
    expect(all.residency.loads).toBe(3);
    const bounded = await loadCheckpoint(fp8.dir, { residentBytes: 1 }); // below one layer: one at a time
    expect(bounded.residency.loads).toBe(0); // opening reads headers, the embedding, the final norm and the head
    expect(forward(bounded.model, tokens).logits.data).toEqual(expected);
    expect(bounded.residency.resident()).toEqual([2]);
    expect(bounded.residency.loads).toBe(3);
    forward(bounded.model, tokens); // every layer read again, in order
    expect(bounded.residency.loads).toBe(6);
    const two = await loadCheckpoint(fp8.dir, { residentBytes: 2 * all.residency.peakBytes / 3 });
    forward(two.model, tokens);
    expect(two.residency.peakBytes).toBeLessThanOrEqual(two.residency.budget);
  });

  it("tinyseek step --weights DIR steps it", async () => {
    const { code, out, err } = await cli("step", "--weights", fp8.dir, "--prompt", "ab");
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(out).toContain(`${fp8.dir} (2 files`);
    expect(out).toContain("FP8 e4m3 128×128 blocks, dequantised as read");
  });

  it("a tinyseek file with its config in the metadata loads as loadModel reads it", async () => {
    const path = fileURLToPath(new URL("../data/tiny-alice.safetensors", import.meta.url));
    const c = await loadCheckpoint(path);
    expect(forward(c.model, tokens).logits.data).toEqual(forward(await loadModel(path), tokens).logits.data);
  });

  it("a single model.safetensors in a directory loads too", async () => {
    const dir = join(root, "single");
    const one = await writeTestCheckpoint(dir, { shards: 1 });
    writeFileSync(join(dir, "model.safetensors"), readFileSync(join(dir, one.shards[0]!)));
    unlinkSync(join(dir, "model.safetensors.index.json"));
    unlinkSync(join(dir, one.shards[0]!));
    const c = await loadCheckpoint(dir);
    expect(c.files).toEqual([join(dir, "model.safetensors")]);
    expect(forward(c.model, tokens).logits.data).toEqual(forward((await loadCheckpoint(fp8.dir)).model, tokens).logits.data);
  });
});

describe("config.json as published", () => {
  // Both files hold the published values: DeepSeek-V3's config.json as on huggingface.co/deepseek-ai/DeepSeek-V3
  // (seen via gitcode.com/cann/cann-recipes-train llm_rl/deepseek/verl_patches/config.json, which sets
  // num_nextn_predict_layers to 0 where the release has 1 and drops quantization_config; the release's 1 and its
  // quantization_config { activation_scheme "dynamic", fmt "e4m3", quant_method "fp8", weight_block_size [128, 128] }
  // from huggingface.co/trl-internal-testing/tiny-DeepseekV3ForCausalLM commit c40ec2c, whose diff removes them from
  // a copy of the release's file, and from tenstorrent/tt-metal models/demos/deepseek_v3/reference/README_WEIGHTS.md:
  // "num_nextn_predict_layers … 1 MTP Module", main model 671B, MTP 11.5B unique parameters).
  // DeepSeek-V2-Lite's as on huggingface.co/deepseek-ai/DeepSeek-V2-Lite (seen via TechxGenus/DeepSeek-V2-Lite-Chat-AWQ
  // and ModelCloud/DeepSeek-V2-Lite-gptq-4bit config.json, identical but for their quantization_config, which is
  // left out here; vocab_size 102400 also from DeepSeek-V3's inference/configs/config_16B.json). V2-Lite-Chat's
  // copies add "ep_size": 1, which the base config may lack; it changes nothing here and is left out.
  const read = (name: string) => JSON.parse(readFileSync(new URL(`fixtures/${name}.config.json`, import.meta.url), "utf8"));

  it("DeepSeek-V3's loads as it is, FP8 e4m3 128×128, and counts the published 671B main model (36.6B active)", () => {
    const { config, ignored, quantization } = configFromHf(read("deepseek-v3"));
    expect(ignored).toEqual([]);
    expect(quantization).toEqual({ fmt: "e4m3", block: 128 });
    expect(config.rope_scaling).toMatchObject({ type: "yarn", factor: 40, original_max_position_embeddings: 4096, beta_fast: 32, beta_slow: 1, mscale: 1, mscale_all_dim: 1 });
    expect(config.num_nextn_predict_layers).toBe(1);
    const count = countParameters(config);
    expect([count.total, count.active]).toEqual([671_026_419_200, 36_625_618_432]);
  });

  it("DeepSeek-V2-Lite's loads as it is (q_lora_rank null) and counts the published 15.7B (2.4B active)", () => {
    const { config, ignored, quantization } = configFromHf(read("deepseek-v2-lite"));
    expect([ignored, quantization, config.q_lora_rank]).toEqual([[], null, 0]);
    const count = countParameters(config);
    expect([count.total, count.active]).toEqual([15_706_484_224, 2_451_435_008]);
  });

  it("sets aside fields it does not know (listed once) and reads rope_type as type; refuses another quantisation", () => {
    const v3 = read("deepseek-v3");
    const { ignored, config } = configFromHf({ ...v3, rope_scaling: { ...v3.rope_scaling, type: undefined, rope_type: "yarn" }, dtype: "bfloat16", head_dim: 64 });
    expect(ignored).toEqual(["dtype", "head_dim"]);
    expect(config.rope_scaling?.type).toBe("yarn");
    expect(thrown(() => configFromHf({ ...v3, quantization_config: { quant_method: "awq", bits: 4 } })))
      .toBe(`quantization_config: expected { "quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [B, B] } (DeepSeek's FP8), got quant_method "awq"`);
    expect(thrown(() => configFromHf({ ...v3, quantization_config: { ...v3.quantization_config, weight_block_size: [128, 64] } })))
      .toMatch(/got weight_block_size \[128, 64\]$/);
  });

  it("the stepper's weights line names the fields set aside, once", async () => {
    const dir = join(root, "extra-fields");
    await writeTestCheckpoint(dir, { shards: 1, config: { dtype: "bfloat16", rope_parameters: { factor: 4 } } });
    const { code, out } = await cli("step", "--weights", dir, "--prompt", "a");
    expect(code).toBe(0);
    expect(out.match(/config\.json fields not used: dtype, rope_parameters/g)).toHaveLength(1);
  });
});

describe("a bad checkpoint is one line naming the file and the tensor", () => {
  const bad = async (name: string, options: Parameters<typeof writeTestCheckpoint>[1], spoil?: (dir: string, c: TestCheckpoint) => void) => {
    const dir = join(root, name);
    const c = await writeTestCheckpoint(dir, { ...options, config: { num_hidden_layers: 2, num_nextn_predict_layers: 0 } });
    spoil?.(dir, c);
    const message = await loadCheckpoint(dir).then(() => "loaded", (error: Error) => error.message);
    expect(message).not.toContain("\n");
    return { dir, message, c };
  };
  const edit = (f: (t: Map<string, TensorToWrite>) => void) => ({ edit: f });
  const q = "model.layers.1.self_attn.q_b_proj.weight";

  it("a missing shard", async () => {
    const { dir, message } = await bad("missing-shard", {}, (d, c) => unlinkSync(join(d, c.shards[1]!)));
    expect(message).toMatch(new RegExp(`^${dir}/model.safetensors.index.json: shard "model-00002-of-00002.safetensors" \\(holding "[^"]+"\\) is missing: no file `));
  });

  it("an index pointing to a tensor its shard lacks", async () => {
    const { dir, message } = await bad("index-points-nowhere", {}, (d) => {
      const index = JSON.parse(readFileSync(join(d, "model.safetensors.index.json"), "utf8"));
      index.weight_map["model.layers.0.mlp.gate_proj.weight"] = "model-00002-of-00002.safetensors";
      writeFileSync(join(d, "model.safetensors.index.json"), JSON.stringify(index));
    });
    expect(message).toBe(`${dir}/model.safetensors.index.json: tensor "model.layers.0.mlp.gate_proj.weight" is mapped to model-00002-of-00002.safetensors, but it is in model-00001-of-00002.safetensors`);
  });

  it("an index naming a shard outside the directory", async () => {
    const { dir, message } = await bad("index-escapes", {}, (d) => {
      const index = JSON.parse(readFileSync(join(d, "model.safetensors.index.json"), "utf8"));
      index.weight_map["model.norm.weight"] = "../../etc/passwd";
      writeFileSync(join(d, "model.safetensors.index.json"), JSON.stringify(index));
    });
    expect(message).toBe(`${dir}/model.safetensors.index.json: tensor "model.norm.weight": expected a shard file name beside the index, got "../../etc/passwd"`);
  });

  it("block scales of the wrong shape", async () => {
    const { dir, message, c } = await bad("scale-shape", edit((t) => t.set(`${q}_scale_inv`, { dtype: "F32", shape: [1, 1], data: [1] })));
    expect(message).toContain(`${dir}/${c.weightMap[q]}: tensor "${q}": expected ${q}_scale_inv as F32 [2, 2] (one per 128×128 block), got F32 [1, 1]`);
    expect(message).toMatch(/\(1 problem\)/);
  });

  it("an FP8 weight without its scales", async () => {
    const { dir, message, c } = await bad("no-scales", edit((t) => t.delete(`${q}_scale_inv`)));
    expect(message).toContain(`${dir}/${c.weightMap[q]}: tensor "${q}": its block scales "${q}_scale_inv" are missing`);
  });

  it("a config whose sizes contradict the tensors", async () => {
    const { dir, message, c } = await bad("sizes", { edit: (t) => t.set(q, { ...t.get(q)!, shape: [4 * 48, 128], raw: new Uint8Array(4 * 48 * 128) }) });
    expect(message).toContain(`${dir}/${c.weightMap[q]}: tensor "${q}": the config gives [192, 192], the file [192, 128]`);
  });

  it("an unexpected tensor, and a missing one", async () => {
    const { dir, message, c } = await bad("unexpected", edit((t) => {
      t.set("model.layers.1.self_attn.rotary_emb.inv_freq", { dtype: "F32", shape: [8], data: new Float32Array(8) });
      t.delete("model.layers.0.post_attention_layernorm.weight");
    }));
    expect(message).toMatch(new RegExp(`^${dir}: the checkpoint does not fit its config \\(2 problems\\): `));
    expect(message).toContain(`missing tensor "model.layers.0.post_attention_layernorm.weight" [256]`);
    expect(message).toContain(`${dir}/${c.weightMap["model.layers.1.self_attn.rotary_emb.inv_freq"]}: tensor "model.layers.1.self_attn.rotary_emb.inv_freq": unexpected`);
  });

  it("a NaN code in an FP8 weight, when its layer is read", async () => {
    const { dir, c } = await bad("nan-code", edit((t) => {
      const raw = t.get(q)!.raw!.slice();
      raw[5] = 0x7f;
      t.set(q, { ...t.get(q)!, raw });
    }));
    const loaded = await loadCheckpoint(dir); // headers check out: codes are read with their layer
    expect(thrown(() => forward(loaded.model, tokens))).toBe(`${dir}/${c.weightMap[q]}: fp8 weight "${q}": element 5 ([0, 5]) is the NaN code 0x7f`);
  });

  it("a directory with neither an index nor model.safetensors, and one without config.json", async () => {
    const { dir, message } = await bad("empty", {}, (d, c) => {
      unlinkSync(join(d, "model.safetensors.index.json"));
      for (const s of c.shards) unlinkSync(join(d, s));
    });
    expect(message).toBe(`${dir}: a checkpoint directory holds model.safetensors.index.json (with its shards) or model.safetensors; found neither`);
    const noConfig = await bad("no-config", {}, (d) => unlinkSync(join(d, "config.json")));
    expect(noConfig.message).toBe(`${noConfig.dir}: no config.json (the Hugging Face config a checkpoint directory carries); pass --config`);
  });
});
