// Dawn's warnings stay out of users' output (gpu/native-stderr.ts) and of the test runner's (test/stderr-filter.ts),
// while anything else printed natively when the device opens, and everything when it fails, still shows.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { withoutNoise } from "../gpu/native-stderr.ts";
import { filterChunk } from "./stderr-filter.ts";

const REDUCED = "Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.";
const VULKAN = "Warning: Couldn't load Vulkan: /home/runner/work/node-webgpu/node-webgpu/out/libvulkan.so.1: cannot open shared object file: No such file or directory";
const AT = "    at LoadVulkan (/home/runner/work/node-webgpu/node-webgpu/third_party/dawn/src/dawn/native/vulkan/BackendVk.cpp:321)";
const NOISE = /artificially reduced|Couldn't load Vulkan/;

describe("Dawn's noise", () => {
  it("is dropped line by line with the lines that continue it; every other line stays", () => {
    const real = "Warning: vkCreateInstance: Found no drivers!";
    expect(withoutNoise([REDUCED, VULKAN, AT, real, AT, REDUCED, ""].join("\n"))).toBe([real, AT, ""].join("\n"));
    expect(withoutNoise("WARNING: something else\n")).toBe("WARNING: something else\n");
  });

  it("is dropped from the runner's stderr chunks, strings or bytes, keeping a half line as it came", () => {
    expect(filterChunk(`${REDUCED}\nreal\n${REDUCED}`)).toBe(`real\n${REDUCED}`);
    expect(filterChunk(Buffer.from(`é\n${VULKAN}\n${AT}\nreal\n`))).toEqual(Buffer.from("é\nreal\n"));
    const quiet = Buffer.from("nothing to see\n");
    expect(filterChunk(quiet)).toBe(quiet);
    // A chunk that starts inside a character is not decoded at all.
    const cut = Buffer.concat([Buffer.from("é").subarray(1), Buffer.from(`\n${REDUCED}\n`)]);
    expect(filterChunk(cut)).toBe(cut);
  });
});

/** `tinyseek devices` in a child whose stderr is a pipe (`| cat`) or, with `tty`, a terminal (script(1)). */
function devices(env: Record<string, string>, tty = false): { status: number | null; stderr: string } {
  const command = `'${process.execPath}' --import tsx src/cli.ts devices`; // npx tsx src/cli.ts devices, without npx's second
  const options = { encoding: "utf8" as const, env: { ...process.env, ...env } };
  // Either way the child's stderr comes back as this run's stdout, and its status as this run's.
  const run = tty
    ? spawnSync("script", ["-qec", `${command} >/dev/null`, "/dev/null"], options)
    : spawnSync("bash", ["-c", `set -o pipefail; ${command} 2>&1 >/dev/null | cat`], options);
  return { status: run.status, stderr: run.stdout };
}

describe("tinyseek devices in a child process", () => {
  const env = { CI: "true", XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? "/tmp" };
  let first: { status: number | null; stderr: string };
  let reason = "";
  beforeAll(() => {
    first = devices(env);
    // No adapter here: skip, naming why, except under CI, where WebGPU must work.
    if (first.status !== 0 && process.env.CI !== "true") reason = first.stderr.trim().split("\n").at(-1) ?? "";
  });
  const ready = (context: { skip(note: string): void }) => reason && context.skip(`no WebGPU adapter: ${reason}`);

  it("prints none of Dawn's noise through a pipe, and nothing else", (context) => {
    ready(context);
    expect(first.status).toBe(0);
    expect(first.stderr).not.toMatch(NOISE);
    expect(first.stderr.trim()).toBe("");
  });

  it("still shows, on a terminal, what else is printed natively while the device opens (the Vulkan loader's warnings)", (context) => {
    ready(context);
    const run = devices({ ...env, VK_LOADER_DEBUG: "warn" }, true);
    expect(run.status).toBe(0);
    expect(run.stderr).toMatch(/^WARNING: /m);
    expect(run.stderr).not.toMatch(NOISE);
  });

  it("shows everything Dawn printed when no adapter comes, its noise included, with the diagnosis", (context) => {
    ready(context);
    // A libvulkan.so.1 that is no library, found first: Dawn says it could not load Vulkan and offers no adapter.
    const dir = mkdtempSync(join(tmpdir(), "tinyseek-badvk-"));
    writeFileSync(join(dir, "libvulkan.so.1"), "not a library\n");
    try {
      const run = devices({ ...env, LD_LIBRARY_PATH: dir });
      expect(run.status).toBe(1);
      expect(run.stderr).toContain(`Warning: Couldn't load Vulkan: ${dir}/libvulkan.so.1`);
      expect(run.stderr).toContain("tinyseek devices: webgpu: no GPU adapter found: ");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
