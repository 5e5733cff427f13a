// Peak memory while stepping a checkpoint with a real model's widths, read lazily (spec/checkpoints.md), and FP8
// dequantised on load against FP8 kept through the quantised linear.
//   npx tsx bench/checkpoint.ts [--dir DIR] [--layers 3] [--keep]
// Writes (once; --keep leaves it for the next run) a sharded FP8 checkpoint with DeepSeek-V2-Lite's widths: hidden
// 2048, 16 heads, kv_lora_rank 512, no q_lora, qk 128 + 64, v 128, the first layer dense (10944 wide), then MoE
// layers of 64 routed experts of width 1408 (6 per token) and 2 shared; the vocabulary cut to 4096. Then, each in
// a fresh child process, loads it and runs one forward of 8 tokens on the reference backend, and reports the peak
// resident set (VmHWM from /proc/self/status, or maxRSS) against the files' size:
//   one layer at a time (residentBytes 1)  and  every layer kept (residentBytes Infinity).
// Part two (--fp8) compares, on the small test checkpoint, dequantising FP8 on load with keeping the codes and
// running them through quantLinear (activations in e4m3 tiles, as DeepSeek's fp8_gemm): memory, time, and the
// logits' NMSE against the BF16-converted checkpoint.

import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadCheckpoint } from "../src/io/checkpoint.ts";
import { type HookedWeight, replaceWeights } from "../src/model-adapters.ts";
import { forward } from "../src/model/forward.ts";
import type { Tensor } from "../src/tensor.ts";
import { isFp8Projection, writeTestCheckpoint } from "../test/checkpoint-fixtures.ts";

const V2_LITE_WIDTHS = {
  hidden_size: 2048, intermediate_size: 10944, moe_intermediate_size: 1408, num_attention_heads: 16, num_key_value_heads: 16,
  n_routed_experts: 64, n_shared_experts: 2, num_experts_per_tok: 6, n_group: 1, topk_group: 1, topk_method: "greedy",
  scoring_func: "softmax", norm_topk_prob: false, routed_scaling_factor: 1.0, q_lora_rank: null, kv_lora_rank: 512,
  qk_nope_head_dim: 128, qk_rope_head_dim: 64, v_head_dim: 128, first_k_dense_replace: 1, vocab_size: 4096,
  num_nextn_predict_layers: 0, bos_token_id: 0, eos_token_id: 1, max_position_embeddings: 4096,
  rope_scaling: { beta_fast: 32, beta_slow: 1, factor: 40, mscale: 0.707, mscale_all_dim: 0.707, original_max_position_embeddings: 4096, type: "yarn" },
};

const peakRss = () => {
  const status = existsSync("/proc/self/status") ? readFileSync("/proc/self/status", "utf8") : "";
  const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
  return hwm ? Number(hwm[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
};
const mb = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;

/** The child: load, one forward, print peak RSS and what the loader held. */
async function child(dir: string, budget: number): Promise<void> {
  const start = performance.now();
  const c = await loadCheckpoint(dir, { residentBytes: budget });
  forward(c.model, [0, 11, 22, 33, 44, 55, 66, 77]);
  console.log(JSON.stringify({ peak: peakRss(), seconds: (performance.now() - start) / 1000, loads: c.residency.loads, residentPeak: c.residency.peakBytes, bytes: c.bytes }));
}

async function rss(dir: string, layers: number): Promise<void> {
  if (!existsSync(join(dir, "config.json"))) {
    console.log(`writing ${dir} (${layers} layers, DeepSeek-V2-Lite widths, FP8)…`);
    await writeTestCheckpoint(dir, { config: { ...V2_LITE_WIDTHS, num_hidden_layers: layers }, shards: layers + 1, randomCodes: true });
  }
  const files = readFileSync(join(dir, "model.safetensors.index.json"), "utf8");
  const shards = [...new Set(Object.values(JSON.parse(files).weight_map as Record<string, string>))];
  const size = shards.reduce((s, f) => s + statSync(join(dir, f)).size, 0);
  console.log(`checkpoint: ${shards.length} shards, ${mb(size)} on disk (${(size / 1e9).toFixed(2)} GB)`);
  for (const [label, budget] of [["one layer at a time", 1], ["every layer kept", Infinity]] as const) {
    const out = execFileSync(process.execPath, ["--import", "tsx", new URL(import.meta.url).pathname, "--child", dir, "--budget", String(budget)], { encoding: "utf8", maxBuffer: 1 << 20 });
    const r = JSON.parse(out.trim().split("\n").pop()!);
    console.log(`${label.padEnd(20)} peak RSS ${mb(r.peak)} (${(r.peak / size).toFixed(2)}× the files), layers held at most ${mb(r.residentPeak)} as float32, ${r.loads} layer reads, ${r.seconds.toFixed(1)} s`);
  }
}

/** FP8 kept as codes (HookedWeight: quantLinear with e4m3 activation tiles) against dequantised on load. */
async function fp8(dir: string): Promise<void> {
  const fp8Dir = join(dir, "fp8"), bf16Dir = join(dir, "bf16");
  await writeTestCheckpoint(fp8Dir);
  await writeTestCheckpoint(bf16Dir, { format: "bf16" });
  const tokens = Array.from({ length: 32 }, (_, i) => (i * 37) % 260);
  const reference = forward((await loadCheckpoint(bf16Dir)).model, tokens).logits;
  const nmse = (a: Tensor) => {
    let [num, den] = [0, 0];
    a.data.forEach((v, i) => ((num += (v - reference.data[i]!) ** 2), (den += reference.data[i]! ** 2)));
    return num / den;
  };
  const dequantised = await loadCheckpoint(fp8Dir);
  const time = (f: () => Tensor) => {
    f();
    const start = performance.now();
    for (let i = 0; i < 3; i++) f();
    return { out: f(), ms: (performance.now() - start) / 3 };
  };
  const a = time(() => forward(dequantised.model, tokens).logits);
  const kept = new Map<string, HookedWeight>();
  let [floatBytes, codeBytes] = [0, 0];
  for (const [name] of Object.entries(JSON.parse(readFileSync(join(fp8Dir, "model.safetensors.index.json"), "utf8")).weight_map)) {
    if (!isFp8Projection(name) || /\.layers\.3\./.test(name)) continue;
    const q = dequantised.fp8Weight(name)!;
    const data = dequantised.tensor(name).data;
    kept.set(name, { shape: [...q.shape], data, quant: { weight: q, activations: true } });
    floatBytes += 4 * data.length;
    codeBytes += q.bits.length + 4 * q.scales.length;
  }
  const keptModel = replaceWeights(dequantised.model, kept);
  const b = time(() => forward(keptModel, tokens).logits);
  console.log(`FP8 projections: ${mb(floatBytes)} as float32 when dequantised on load; codes + scales ${(codeBytes / 2 ** 20).toFixed(2)} MiB (${(floatBytes / codeBytes).toFixed(1)}× smaller)`);
  console.log(`dequantised on load : forward of ${tokens.length} tokens ${a.ms.toFixed(0)} ms, logits NMSE vs the BF16-converted checkpoint ${nmse(a.out).toExponential(2)}`);
  console.log(`FP8 kept (quantLinear, e4m3 activation tiles): ${b.ms.toFixed(0)} ms, NMSE ${nmse(b.out).toExponential(2)}`);
}

const { values } = parseArgs({ options: { child: { type: "string" }, budget: { type: "string" }, dir: { type: "string" }, layers: { type: "string", default: "3" }, keep: { type: "boolean" }, fp8: { type: "boolean" } } });
if (values.child) await child(values.child, Number(values.budget));
else {
  const dir = values.dir ?? mkdtempSync(join(tmpdir(), "tinyseek-bench-checkpoint-"));
  try {
    if (values.fp8) await fp8(dir);
    else await rss(dir, Number(values.layers));
  } finally {
    if (!values.keep && !values.dir) rmSync(dir, { recursive: true, force: true });
  }
}
