// The WebGPU backend's life cycle: set-up, teardown that lets the process exit, the message when no adapter
// exists, buffer reuse across calls, weights uploaded once, and device errors surfacing as exceptions.

import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { diagnose } from "../gpu/device.ts";
import { main } from "../src/cli/main.ts";
import { reference } from "../src/kernels.ts";
import { Random, randBounded } from "../src/random.ts";
import { createBackend } from "../gpu/backend.ts";
import { webgpuOrReason } from "./webgpu-support.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const { backend, reason } = await webgpuOrReason();
afterAll(async () => backend?.dispose());

/** Runs a TypeScript snippet in a fresh Node process (through tsx) and reports its exit and how long it took. */
function child(source: string, env: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), "tinyseek-webgpu-"));
  const file = join(dir, "child.mts"); // .mts: an ES module outside any package.json
  writeFileSync(file, source.replaceAll("@root/", root));
  const started = Date.now();
  const result = spawnSync(process.execPath, ["--import", "tsx", file], {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: 60_000,
  });
  return { ...result, seconds: (Date.now() - started) / 1000 };
}

describe("no adapter: the error names what is missing", () => {
  const base = { platform: "linux", loader: true, drivers: ["lvp_icd.json"] };
  it("names the Vulkan loader when libvulkan is absent", () => {
    expect(diagnose({ ...base, loader: false })).toMatch(/Vulkan loader \(libvulkan\.so\.1\) is missing.*libvulkan1/);
  });
  it("names the driver when no ICD manifest exists", () => {
    expect(diagnose({ ...base, drivers: [] })).toMatch(/no Vulkan driver is installed.*mesa-vulkan-drivers/);
  });
  it("names the environment variable that points nowhere", () => {
    expect(diagnose({ ...base, drivers: [], override: "VK_ICD_FILENAMES" })).toMatch(/^VK_ICD_FILENAMES names no existing/);
  });
  it("blames the driver when one is installed but offers no adapter", () => {
    expect(diagnose(base)).toMatch(/lvp_icd\.json offered no usable adapter/);
  });
});

describe.skipIf(!backend)(`webgpu backend${reason ? ` (skipped: ${reason})` : ""}`, () => {
  it("describes its adapter", () => {
    expect(backend!.name).toBe("webgpu");
    expect(backend!.adapter.name.length).toBeGreaterThan(0);
    expect(backend!.adapter.limits.maxComputeWorkgroupStorageSize).toBeGreaterThanOrEqual(16384);
    expect(backend!.kernels).toBeUndefined(); // asynchronous only: component code reports "not supported"
  });

  it("poisons output buffers with NaN in check mode, so an unwritten element cannot pass", async () => {
    const checked = await createBackend({ check: true });
    try {
      const stale = checked.context.upload(Float32Array.from([1, 2, 3, 4]));
      checked.context.release(stale); // back to the pool: the next output of this size reuses it
      const out = checked.context.empty([4]);
      expect([...(await checked.context.read(out.buffer, 4))].every(Number.isNaN)).toBe(true);
    } finally {
      await checked.dispose();
    }
  });

  it("fails the read-back of an output a kernel wrote past, in check mode", async () => {
    const checked = await createBackend({ check: true });
    try {
      const ctx = checked.context;
      const overrun = (extra: number) => `
        @group(0) @binding(0) var<uniform> n: vec4<u32>;
        @group(0) @binding(1) var<storage, read_write> out: array<f32>;
        @compute @workgroup_size(1) fn main() { for (var i = 0u; i < n.x + ${extra}u; i++) { out[i] = 1.0; } }`;
      const exact = ctx.empty([5]);
      ctx.dispatch(overrun(0), [exact.buffer], [5], [1]);
      expect([...(await ctx.read(exact.buffer, 5))]).toEqual([1, 1, 1, 1, 1]);
      const past = ctx.empty([5]);
      ctx.dispatch(overrun(1), [past.buffer], [5], [1]);
      await expect(ctx.read(past.buffer, 5)).rejects.toThrow("webgpu: a kernel wrote past the end of its output of 5 elements (element 5)");
    } finally {
      await checked.dispose();
    }
  });

  it("reuses pooled buffers: a long run does not grow", async () => {
    const k = backend!.asyncKernels;
    const rng = new Random(3);
    const w = randBounded(rng, [24, 40]);
    const call = () => k.linear(randBounded(rng, [5, 40]), w);
    await call();
    await call();
    const before = backend!.context.stats();
    for (let i = 0; i < 20; i++) await call();
    const after = backend!.context.stats();
    expect(after.created).toBe(before.created);
    expect(after.bytes).toBe(before.bytes);
  });

  it("uploads a weight once and keeps it while its array lives", async () => {
    const rng = new Random(4);
    const w = randBounded(rng, [8, 12]);
    const x = randBounded(rng, [3, 12]);
    const before = backend!.context.stats().weights;
    const first = await backend!.asyncKernels.linear(x, w);
    await backend!.asyncKernels.linear(x, w);
    expect(backend!.context.stats().weights).toBe(before + 1);
    expect(Array.from(first.data)).toEqual(Array.from((await backend!.asyncKernels.linear(x, w)).data));
    const ref = reference.linear(x, w);
    first.data.forEach((v, i) => expect(Math.abs(v - ref.data[i]!)).toBeLessThan(1e-5));
  });

  it("turns a device error into an exception instead of returning stale data", async () => {
    const ctx = backend!.context;
    const out = ctx.acquire(4);
    ctx.dispatch("this is not WGSL", [out], [], [1]);
    await expect(ctx.read(out, 4)).rejects.toThrow(/^webgpu: /);
    ctx.release(out);
    // Reported once: the next kernel runs clean.
    const y = await backend!.asyncKernels.silu({ shape: [2], data: new Float32Array([1, -1]) });
    expect(y.data[0]).toBeCloseTo(0.7310586, 6);
  });

  it("checks shapes before touching the device", async () => {
    const a = { shape: [2, 3], data: new Float32Array(6) };
    expect(() => backend!.asyncKernels.matmul(a, { shape: [4, 2], data: new Float32Array(8) })).toThrow(/^b: expected shape \[K=3, N\]/);
  });

  it("tinyseek devices prints the adapter, as a table or JSON", async () => {
    const lines: string[] = [];
    const io = { out: (t: string) => void lines.push(t), err: (t: string) => void lines.push(t) };
    expect(await main(["devices", "--json"], io)).toBe(0);
    const summary = JSON.parse(lines.join("\n"));
    expect(summary.name).toBe(backend!.adapter.name);
    expect(summary.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
    lines.length = 0;
    expect(await main(["devices"], io)).toBe(0);
    expect(lines.join("\n")).toMatch(/\| adapter +\| .+\|[\s\S]*maxComputeWorkgroupStorageSize/);
    expect(await main(["devices", "extra"], io)).toBe(2);
  });

  it("passes every committed golden case it supports (tinyseek golden check spec/golden --backend webgpu)", async () => {
    const lines: string[] = [];
    const io = { out: (t: string) => void lines.push(t), err: (t: string) => void lines.push(t) };
    const code = await main(["golden", "check", join(root, "spec/golden"), "--backend", "webgpu"], io);
    const summary = lines.join("\n").match(/(\d+) ok, (\d+) failed, (\d+) not supported/);
    expect(summary, lines.join("\n")).not.toBeNull();
    expect(Number(summary![2]), lines.join("\n")).toBe(0);
    expect(Number(summary![1])).toBeGreaterThan(Number(summary![3])); // kernel and model cases run; components do not
    expect(code).toBe(0);
  });

  it("lets the process exit promptly after dispose", () => {
    const result = child(`
      import { createBackend } from "@root/gpu/backend.ts";
      const backend = await createBackend();
      const y = await backend.asyncKernels.matmul({ shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
                                                   { shape: [2, 2], data: new Float32Array([5, 6, 7, 8]) });
      await backend.dispose();
      console.log(JSON.stringify(Array.from(y.data)));
    `);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.trim()).toBe("[19,22,43,50]");
    expect(result.seconds).toBeLessThan(30);
  });

  it("fails with the missing piece when no driver can be found", () => {
    const result = child(`
      import { createBackend } from "@root/gpu/backend.ts";
      try { await createBackend(); console.log("adapter found"); } catch (e) { console.log((e as Error).message); }
    `, { VK_ICD_FILENAMES: "/nonexistent/tinyseek_icd.json", VK_DRIVER_FILES: "" });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^webgpu: no GPU adapter found: VK_ICD_FILENAMES names no existing Vulkan driver manifest/);
  });
});
