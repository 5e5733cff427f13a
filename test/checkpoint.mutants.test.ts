// Cases that kill mutants of src/io/checkpoint.ts that test/io-golden.mutants.test.ts lets live (test/README.md,
// mutation testing), fast enough to run under Stryker: 32-wide checkpoints written to a temp dir, no forward. What
// spec/checkpoints.md states: the three layouts and each refusal with its whole message, the first file's metadata,
// FP8 found or not, every layer's weights and stacked experts as stored, their float32 bytes in the residency, the
// MTP layer all or nothing and read once, and file errors named once.
import { closeSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { TinyseekError } from "../src/errors.ts";
import { loadCheckpoint, type CheckpointOptions } from "../src/io/checkpoint.ts";
import type { MoeWeights } from "../src/moe/layer.ts";
import { readSafetensors, readSafetensorsHeader, writeSafetensors, type TensorToWrite } from "../src/io/safetensors.ts";
import { writeTestCheckpoint, type TestCheckpoint, type TestCheckpointOptions } from "./checkpoint-fixtures.ts";
import { thrown } from "./helpers.ts";

const root = mkdtempSync(join(tmpdir(), "tinyseek-checkpoint-mutants-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** 32 wide, 2 layers (0 dense, 1 MoE with 4 routed experts of [24, 32]) and the MTP layer 2: a few kB a shard. */
const TINY: Record<string, unknown> = {
  hidden_size: 32, intermediate_size: 48, moe_intermediate_size: 24, kv_lora_rank: 16, q_lora_rank: 24,
  num_attention_heads: 2, num_key_value_heads: 2, qk_nope_head_dim: 8, qk_rope_head_dim: 4, v_head_dim: 8,
  vocab_size: 16, num_hidden_layers: 2, num_nextn_predict_layers: 1, max_position_embeddings: 64, rope_scaling: undefined,
};
let made = 0;
const written = (options: TestCheckpointOptions = {}) => writeTestCheckpoint(join(root, `c${made++}`), { ...options, config: { ...TINY, ...options.config } });

const refusal = (path: unknown, options?: CheckpointOptions) => loadCheckpoint(path as string, options).then(() => "loaded", (e: Error) => {
  expect(e).toBeInstanceOf(TinyseekError);
  expect(e.message).not.toContain("\n");
  return e.message;
});
const fileOf = (c: TestCheckpoint, name: string) => join(c.dir, c.weightMap[name]!);
const indexOf = (dir: string) => join(dir, "model.safetensors.index.json");
const withoutMtp = (t: Map<string, TensorToWrite>) => [...t.keys()].filter((n) => n.startsWith("model.layers.2.")).forEach((n) => t.delete(n));
/** The refusal of a checkpoint with exactly one problem. */
const oneProblem = (c: TestCheckpoint, problem: string) => `${c.dir}: the checkpoint does not fit its config (1 problem): ${problem}`;

/** Rewrites a safetensors file with its tensors as stored and new metadata. */
function rewrite(file: string, metadata: Record<string, string>) {
  const { tensors } = readSafetensors(readFileSync(file), { raw: true });
  writeFileSync(file, writeSafetensors(new Map([...tensors].map(([n, t]) => [n, { dtype: t.dtype, shape: t.shape, raw: t.data as Uint8Array }])), metadata));
}

/** The experts' `part` weights of layer `l`, as the fixture stored them, one after another: [E, rows, cols]. */
function stackedExpected(c: TestCheckpoint, l: number, part: string): Float32Array {
  const experts = Array.from({ length: c.config.n_routed_experts }, (_, e) => c.expected.get(`model.layers.${l}.mlp.experts.${e}.${part}.weight`)!);
  const out = new Float32Array(experts.reduce((n, x) => n + x.length, 0));
  experts.forEach((x, e) => out.set(x, e * x.length));
  return out;
}

describe("checkpoint layouts and their refusals", () => {
  it("a path that is not a string", async () => {
    expect(await refusal(5)).toBe("checkpoint: expected a directory or a safetensors file, got 5");
    expect(await refusal(undefined)).toBe("checkpoint: expected a directory or a safetensors file, got undefined");
  });

  it("a directory with one model.safetensors, and one with neither it nor an index", async () => {
    const c = await written({ shards: 1, config: { dtype: "bfloat16" } });
    renameSync(join(c.dir, c.shards[0]!), join(c.dir, "model.safetensors"));
    unlinkSync(indexOf(c.dir));
    const ck = await loadCheckpoint(c.dir);
    expect(ck.files).toEqual([join(c.dir, "model.safetensors")]);
    expect(ck.ignoredFields).toEqual(["dtype"]);
    expect(ck.tensor("model.norm.weight").data).toEqual(c.expected.get("model.norm.weight"));
    unlinkSync(join(c.dir, "model.safetensors"));
    expect(await refusal(c.dir)).toBe(`${c.dir}: a checkpoint directory holds model.safetensors.index.json (with its shards) or model.safetensors; found neither`);
  });

  it("a directory without config.json is refused unless a config is given", async () => {
    const c = await written();
    unlinkSync(join(c.dir, "config.json"));
    expect(await refusal(c.dir)).toBe(`${c.dir}: no config.json (the Hugging Face config a checkpoint directory carries); pass --config`);
    const ck = await loadCheckpoint(c.dir, { config: c.config });
    expect([ck.config, ck.ignoredFields]).toEqual([c.config, []]);
  });

  it("a single file with its config in the metadata: no config fields set aside, FP8 found", async () => {
    const c = await written({ shards: 1 });
    const file = join(root, `single-${made++}.safetensors`);
    writeFileSync(file, readFileSync(join(c.dir, c.shards[0]!)));
    rewrite(file, { config: JSON.stringify(c.config) });
    const ck = await loadCheckpoint(file);
    expect([ck.files, ck.config, ck.ignoredFields, ck.quantization]).toEqual([[file], c.config, [], { fmt: "e4m3", block: 128 }]);
  });

  it("an index naming a shard that is not there, or a tensor in another shard than the one it names", async () => {
    const c = await written();
    const [first, second] = c.shards;
    const inSecond = Object.keys(c.weightMap).filter((n) => c.weightMap[n] === second);
    const inFirst = Object.keys(c.weightMap).find((n) => c.weightMap[n] === first)!;
    const index = JSON.parse(readFileSync(indexOf(c.dir), "utf8"));
    writeFileSync(indexOf(c.dir), JSON.stringify({ ...index, weight_map: { ...c.weightMap, [inFirst]: second } }));
    expect(await refusal(c.dir)).toBe(`${indexOf(c.dir)}: tensor "${inFirst}" is mapped to ${second}, but it is in ${first}`);
    writeFileSync(indexOf(c.dir), JSON.stringify(index));
    unlinkSync(join(c.dir, second!));
    expect(await refusal(c.dir)).toBe(`${indexOf(c.dir)}: shard "${second}" (holding "${inSecond[0]}") is missing: no file ${join(c.dir, second!)}`);
  });

  it("a shard whose header is bad is named", async () => {
    const c = await written();
    const second = join(c.dir, c.shards[1]!);
    writeFileSync(second, "abc");
    expect(await refusal(c.dir)).toBe(`${second}: safetensors: file of 3 bytes is too short for the 8-byte header length`);
  });

  it("JSON that does not parse shows its control characters and undecodable bytes as ?", async () => {
    const c = await written();
    for (const bad of [Buffer.from([0x01]), Buffer.from([0xff])]) {
      writeFileSync(indexOf(c.dir), bad);
      const message = await refusal(c.dir);
      expect(message.startsWith(`${indexOf(c.dir)}: not valid JSON (`)).toBe(true);
      // V8 quotes the token it stopped at: the byte is there, as "?".
      expect(message).toContain("'?'");
    }
  });

  it("one problem is counted in the singular: a tensor whose shape the config contradicts, FP8 without its scales", async () => {
    const reshaped = await written({ edit: (t) => t.set("model.norm.weight", { dtype: "F32", shape: [31], data: new Float32Array(31) }) });
    expect(await refusal(reshaped.dir)).toBe(oneProblem(reshaped, `${fileOf(reshaped, "model.norm.weight")}: tensor "model.norm.weight": the config gives [32], the file [31]`));
    const q = "model.layers.1.self_attn.q_b_proj.weight";
    const unscaled = await written({ edit: (t) => t.delete(`${q}_scale_inv`) });
    expect(await refusal(unscaled.dir))
      .toBe(oneProblem(unscaled, `${fileOf(unscaled, q)}: tensor "${q}": its block scales "${q}_scale_inv" are missing (an F8_E4M3 weight needs its _scale_inv)`));
  });

  it("a tensor the config lacks is refused with the layers it has, wherever its name puts it", async () => {
    const extra = { dtype: "F32", shape: [1], data: [1] } as const;
    for (const [name, layers] of [
      ["model.layers.12.extra.weight", true], ["model.layers.3.extra.weight", true], ["x.model.layers.0.weight", false],
      ["model.layers.0.extra.weight", true], ["model.layers.2.extra.weight", true], // layer 2: the MTP layer's
    ] as const) {
      const c = await written({ edit: (t) => t.set(name, extra) });
      const why = layers ? ", whose layers are 0…1 plus 1 MTP" : "";
      expect(await refusal(c.dir), name).toBe(oneProblem(c, `${fileOf(c, name)}: tensor "${name}": unexpected (not a weight of this config${why})`));
    }
  });
});

describe("an opened checkpoint", () => {
  it("its metadata is the first file's", async () => {
    const c = await written();
    rewrite(join(c.dir, c.shards[0]!), { format: "pt", shard: "1" });
    rewrite(join(c.dir, c.shards[1]!), { shard: "2" });
    expect({ ...(await loadCheckpoint(c.dir)).metadata }).toEqual({ format: "pt", shard: "1" });
  });

  it("reads every layer's weights and stacks the routed experts [E, rows, cols], FP8 and BF16 alike", async () => {
    for (const format of ["fp8", "bf16"] as const) {
      const c = await written({ format, config: { num_nextn_predict_layers: 0 } });
      const ck = await loadCheckpoint(c.dir);
      expect(ck.quantization).toEqual(format === "fp8" ? { fmt: "e4m3", block: 128 } : null);
      const q = "model.layers.1.self_attn.q_b_proj.weight";
      expect(ck.tensor(q)).toEqual({ shape: [24, 24], data: c.expected.get(q) });
      const [dense, moe] = [ck.model.weights.layers[0]!, ck.model.weights.layers[1]!];
      expect(dense.mlp).toMatchObject({ up_proj: { shape: [48, 32], data: c.expected.get("model.layers.0.mlp.up_proj.weight") } });
      expect(moe.self_attn).toMatchObject({ q_b_proj: { shape: [24, 24], data: c.expected.get(q) } });
      const experts = (moe.mlp as MoeWeights).experts;
      expect(experts, format).toEqual({
        gate: { shape: [4, 24, 32], data: stackedExpected(c, 1, "gate_proj") },
        up: { shape: [4, 24, 32], data: stackedExpected(c, 1, "up_proj") },
        down: { shape: [4, 32, 24], data: stackedExpected(c, 1, "down_proj") },
      });
    }
  });

  it("a layer's resident bytes are its weights' float32 size, for layer 10 too", async () => {
    const c = await written({ config: { num_hidden_layers: 11 }, edit: (t) => [...t.keys()].filter((n) => n.startsWith("model.layers.11.")).forEach((n) => t.delete(n)) });
    const ck = await loadCheckpoint(c.dir, { residentBytes: Infinity });
    const bytesOf = (l: number) => 4 * [...c.expected].filter(([n]) => n.startsWith(`model.layers.${l}.`)).reduce((sum, [, x]) => sum + x.length, 0);
    expect(ck.residency.budget).toBe(Infinity);
    void ck.model.weights.layers[10];
    expect(ck.residency.residentBytes).toBe(bytesOf(10));
    void ck.model.weights.layers[1];
    void ck.model.weights.layers[0];
    expect(ck.residency.residentBytes).toBe(bytesOf(10) + bytesOf(1) + bytesOf(0));
    expect(bytesOf(0)).toBeGreaterThan(0);
  });

  it("closes each file it reads a tensor from", async () => {
    const c = await written();
    const ck = await loadCheckpoint(c.dir);
    const nextFd = () => {
      const fd = openSync(indexOf(c.dir), "r");
      closeSync(fd);
      return fd;
    };
    const before = nextFd();
    for (let i = 0; i < 5; i++) ck.tensor("model.norm.weight");
    expect(nextFd()).toBe(before); // the lowest free descriptor: none left open
  });

  it("an FP8 weight with a NaN code, read by name, is refused naming its file", async () => {
    const q = "model.layers.1.self_attn.q_b_proj.weight";
    const c = await written({
      edit: (t) => {
        const raw = t.get(q)!.raw!.slice();
        raw[30] = 0xff;
        t.set(q, { ...t.get(q)!, raw });
      },
    });
    const ck = await loadCheckpoint(c.dir);
    expect(thrown(() => ck.tensor(q))).toBe(`${fileOf(c, q)}: fp8 weight "${q}": element 30 ([1, 6]) is the NaN code 0xff`);
  });

  it("a shard cut short under an FP8 expert is named once", async () => {
    // Layer 1's attention stored as F32 (stored before every F8 tensor): cutting the shard inside the first F8
    // expert leaves everything the layer reads before its experts whole.
    const c = await written({
      config: { num_nextn_predict_layers: 0 },
      edit: (t) => {
        for (const [name, w] of [...t]) {
          if (!name.startsWith("model.layers.1.self_attn.") || w.dtype !== "F8_E4M3") continue;
          t.set(name, { dtype: "F32", shape: w.shape, data: new Float32Array(w.shape.reduce((a, b) => a * b, 1)) });
          t.delete(`${name}_scale_inv`);
        }
      },
    });
    const ck = await loadCheckpoint(c.dir);
    const expert = "model.layers.1.mlp.experts.0.down_proj.weight";
    const shard = fileOf(c, expert);
    const { dataStart, entries } = readSafetensorsHeader(readFileSync(shard));
    const first = [...entries].filter(([, e]) => e.dtype === "F8_E4M3").sort(([, a], [, b]) => a.offsets[0] - b.offsets[0])[0]![0];
    expect(first).toBe(expert);
    truncateSync(shard, dataStart + entries.get(expert)!.offsets[0] + 2);
    expect(thrown(() => ck.model.weights.layers[1])).toBe(`${shard}: ended while tensor "model.layers.1.mlp.experts.0.gate_proj.weight" was read (the file changed since it was opened)`);
  });
});

describe("the multi-token-prediction layer", () => {
  it("is listed, read when first used, then kept, and stays a property of the weights", async () => {
    const c = await written();
    const ck = await loadCheckpoint(c.dir);
    expect(new Set(ck.mtpNames)).toEqual(new Set(c.mtpNames));
    expect(ck.mtpNames).toHaveLength(c.mtpNames.length);
    const mtp = ck.model.weights.mtp!;
    expect(mtp.eh_proj).toEqual({ shape: [32, 64], data: c.expected.get("model.layers.2.eh_proj.weight") });
    expect(mtp.enorm.data).toEqual(c.expected.get("model.layers.2.enorm.weight"));
    expect(mtp.head?.data).toEqual(c.expected.get("model.layers.2.shared_head.head.weight"));
    expect((mtp.block.mlp as MoeWeights).experts.up).toEqual({ shape: [4, 24, 32], data: stackedExpected(c, 2, "up_proj") });
    expect(ck.model.weights.mtp).toBe(mtp);
    expect({ ...ck.model.weights }.mtp).toBe(mtp);
  });

  it("a checkpoint without any of its tensors is the main model alone", async () => {
    const c = await written({ edit: withoutMtp });
    const ck = await loadCheckpoint(c.dir);
    expect(ck.mtpNames).toEqual([]);
    expect("mtp" in ck.model.weights).toBe(false);
  });

  it("its optional embedding and head may be left out (the main model's are used)", async () => {
    const c = await written({ edit: (t) => ["embed_tokens", "shared_head.head"].forEach((n) => t.delete(`model.layers.2.${n}.weight`)) });
    const ck = await loadCheckpoint(c.dir);
    expect(new Set(ck.mtpNames)).toEqual(new Set(c.mtpNames.filter((n) => !/embed_tokens|shared_head\.head/.test(n))));
    expect(ck.model.weights.mtp!.head).toBeUndefined();
  });

  it("is all or nothing: one tensor of it missing is refused", async () => {
    const c = await written({ edit: (t) => t.delete("model.layers.2.enorm.weight") });
    expect(await refusal(c.dir)).toBe(oneProblem(c, 'missing tensor "model.layers.2.enorm.weight" [32]'));
  });
});
