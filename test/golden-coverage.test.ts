// The golden cases added for the suite's blind spots (issue 16, item 3), each shown to catch the bug it is for:
// the bug is injected into the reference (or a backend), the committed file of the new case fails `golden check`,
// and the files that existed before it let the same bug through. Without the injection every file passes.
import { afterEach, describe, expect, it, vi } from "vitest";
import { referenceBackend, type Backend } from "../src/backend.ts";
import { referenceOps, type Ops } from "../src/device/ops.ts";
import { goldenSuite } from "../src/golden/suite.ts";
import { checkGoldenFile } from "../src/io/golden.ts";
import type { HookedWeight } from "../src/model-adapters.ts";
import type { Tensor } from "../src/tensor.ts";

/** The bugs switched on: each mock below behaves as the original until its name is in here. */
const bugs = vi.hoisted(() => new Set<string>());

// NSA choosing blocks without looking at their scores (every p_slc equal: ties go to the lower index).
vi.mock("../src/attention/sparse-select.ts", async (importOriginal) => {
  const original = await importOriginal<typeof import("../src/attention/sparse-select.ts")>();
  return {
    ...original,
    selectBlocks: (pSlc: ArrayLike<number>, t: number, b: Parameters<typeof original.selectBlocks>[2]) =>
      original.selectBlocks(bugs.has("unscored") ? new Float64Array(pSlc.length) : pSlc, t, b),
  };
});

// int4 packing that leaves an odd row's last high nibble 0 instead of the padding code 8.
vi.mock("../src/quant/int.ts", async (importOriginal) => {
  const original = await importOriginal<typeof import("../src/quant/int.ts")>();
  return {
    ...original,
    packInt4: (codes: Int8Array) => {
      const bytes = original.packInt4(codes);
      if (bugs.has("unpadded") && codes.length % 2 === 1) bytes[bytes.length - 1]! &= 0x0f;
      return bytes;
    },
  };
});

// A bottleneck adapter that forgets its activation.
vi.mock("../src/ops.ts", async (importOriginal) => {
  const original = await importOriginal<typeof import("../src/ops.ts")>();
  return { ...original, gelu: (x: Parameters<typeof original.gelu>[0]) => (bugs.has("no-gelu") ? x : original.gelu(x)) };
});

afterEach(() => {
  bugs.clear();
  vi.restoreAllMocks();
});

const suite = goldenSuite();
const path = (name: string) => new URL(`../spec/golden/${name}.safetensors`, import.meta.url).pathname;

/** Each file's outcome on `backend`, with its message when it fails. */
async function outcomes(names: string[], backend: Backend = referenceBackend): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for (const name of names) {
    const r = await checkGoldenFile(path(name), suite, backend);
    result[name] = r.outcome === "fail" ? `fail: ${r.message.split("\n")[0]}` : r.outcome;
  }
  return result;
}

const allOk = (names: string[]) => Object.fromEntries(names.map((n) => [n, "ok"]));

describe("NSA's selection by score (a)", () => {
  const added = "attention.sparse.score.t29-l4-d2-l4-n4";
  const before = ["attention.sparse.t1", "attention.sparse.tiny.t29-gqa", "attention.sparse.shared-kv.t23-l6-d3-l9-n3-w5", "attention.sparse.l4-d2-l4.t17", "attention.sparse.decode.t27-gqa"];

  it("fails when blocks are chosen without their scores; the earlier sparse files do not notice", async () => {
    expect(await outcomes([added, ...before])).toEqual(allOk([added, ...before]));
    bugs.add("unscored");
    const buggy = await outcomes([added, ...before]);
    expect(buggy[added]).toMatch(/^fail: output\.(selected|out): \d+ of \d+ elements mismatch/);
    expect({ ...buggy, [added]: "ok" }).toEqual(allOk([added, ...before]));
  });
});

describe("a MoE group excluded while its experts carry a negative bias (b)", () => {
  const added = "moe.router.groups-negative-bias";
  const before = ["moe.router.groups", "moe.router.sigmoid-bias-groups", "moe.router.overflow", "moe.router.single-token", "moe.layer.dropless-shared"];

  it("fails when excluded groups are masked with 0 instead of -Infinity; the earlier group files do not notice", async () => {
    expect(await outcomes([added, ...before])).toEqual(allOk([added, ...before]));
    // The router's one masking fill (src/moe/router.ts limitGroups, on route's plain array of selection scores)
    // writes 0 where it means -Infinity.
    const fill = Array.prototype.fill;
    vi.spyOn(Array.prototype, "fill").mockImplementation(function (this: unknown[], value: unknown, start?: number, end?: number) {
      return fill.call(this, value === -Infinity ? 0 : value, start, end);
    });
    const buggy = await outcomes([added, ...before]);
    expect(buggy[added]).toMatch(/^fail: output\.experts: \d+ of 64 elements mismatch/);
    expect({ ...buggy, [added]: "ok" }).toEqual(allOk([added, ...before]));
  });
});

describe("int4 packing at an odd input width (c)", () => {
  const added = "quant.int4.g32.5x69";
  const before = ["quant.int4.g32.5x70", "quant.int4.g64.5x70", "quant.int4.g128.5x70"];

  it("fails when an odd row is not padded with the zero code; the even-width files do not notice", async () => {
    expect(await outcomes([added, ...before])).toEqual(allOk([added, ...before]));
    bugs.add("unpadded");
    const buggy = await outcomes([added, ...before]);
    expect(buggy[added]).toMatch(/^fail: output\.codes: 5 of 175 elements mismatch/);
    expect({ ...buggy, [added]: "ok" }).toEqual(allOk([added, ...before]));
  });
});

describe("LoRA and the bottleneck adapter (d)", () => {
  const loras = ["adapters.lora.r4.4x24x20", "adapters.lora.rows.r2.3x12x10"];

  /** The reference's operations, with the LoRA's scale taken as alpha instead of alpha / r when `bug` is set. */
  const loraBackend = (bug: boolean): Backend => {
    const ops: Ops<Tensor> = Object.create(referenceOps);
    ops.linear = (x, w) => {
      const hook = (w as HookedWeight).lora;
      if (!bug || !hook) return referenceOps.linear(x, w);
      const unscaled = { ...hook.lora, alpha: hook.lora.alpha * hook.lora.rank };
      return referenceOps.linear(x, { ...(w as HookedWeight), lora: { base: hook.base, lora: unscaled } } as HookedWeight);
    };
    return { ...referenceBackend, name: "wasm", description: "the reference's operations, LoRA planted", ops: ops as unknown as Backend["ops"] };
  };

  it("LoRA cases fail when the update is scaled by alpha instead of alpha / r", async () => {
    expect(await outcomes(loras, loraBackend(false))).toEqual(allOk(loras));
    const buggy = await outcomes(loras, loraBackend(true));
    for (const name of loras) expect(buggy[name], name).toMatch(/^fail: output\.y: \d+ of \d+ elements mismatch/);
  });

  it("the gelu bottleneck case fails when the activation is left out", async () => {
    const gelu = "adapters.bottleneck.gelu.5x16.b4";
    expect(await outcomes([gelu])).toEqual(allOk([gelu]));
    bugs.add("no-gelu");
    expect((await outcomes([gelu]))[gelu]).toMatch(/^fail: output\.y: \d+ of 80 elements mismatch/);
  });
});
