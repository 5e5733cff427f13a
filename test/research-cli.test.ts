// The research commands and flags (spec/research.md) on the trained checkpoint: `lens`, `patch`, `attribute` and
// the intervention flags of `step` and `generate`, with --json, on the reference and on WASM; bad references are one
// line naming the flag.
import { describe, expect, it } from "vitest";
import { cli } from "./helpers.ts";

describe.each(["reference", "wasm"])("research commands on %s", (backend) => {
  it("lens: the last layer's row is the model's own prediction", async () => {
    const { code, out } = await cli("lens", "--prompt", "Alice was", "--backend", backend, "--json");
    expect(code).toBe(0);
    const lens = JSON.parse(out);
    expect(lens.points.at(-1)).toBe("layers.3.out");
    const step = JSON.parse((await cli("step", "--prompt", "Alice was", "--backend", backend, "--json")).out);
    expect(lens.top.at(-1).top[0].id).toBe(step.next[0].id);
    expect(lens.top.at(-1).top[0].prob).toBeCloseTo(step.next[0].prob, 5);
  });

  it("patch: a table of normalised effects, 0 wherever the prompts agree before the first difference", async () => {
    const { code, out } = await cli("patch", "--clean", "Alice said", "--corrupt", "Queen said", "--answer", " ", "--backend", backend, "--json");
    expect(code).toBe(0);
    const p = JSON.parse(out);
    expect(p.layers).toEqual([0, 1, 2, 3]);
    expect(p.effect[0].length).toBe(11);
    // Position 0 (<bos>) is the same in both prompts and sees nothing else: patching it changes nothing (up to the
    // last bits on WASM, whose expert matmuls round a row differently with other rows beside it).
    for (const row of p.effect) expect(Math.abs(row[0])).toBeLessThan(1e-6);
    expect(p.clean).not.toBe(p.corrupt);
  });

  it("attribute: the parts sum to the logit", async () => {
    const { code, out } = await cli("attribute", "--prompt", "Alice was", "--token", "e", "--backend", backend, "--json");
    expect(code).toBe(0);
    const a = JSON.parse(out);
    expect(a.token).toBe(101);
    expect(Math.abs(a.total - a.logit)).toBeLessThan(1e-4 * Math.max(1, Math.abs(a.logit)));
  });

  it("step and generate take interventions and say what they changed", async () => {
    const plain = JSON.parse((await cli("step", "--prompt", "Alice was", "--backend", backend, "--json")).out);
    const edited = JSON.parse((await cli("step", "--prompt", "Alice was", "--backend", backend, "--json", "--ablate-head", "1.0,1.1,1.2,1.3", "--ban-expert", "2.3")).out);
    expect(edited.interventions).toEqual(["zero-ablate heads 0, 1, 2, 3 of layer 1", "ban expert 3 of layer 2"]);
    expect(edited.next[0].prob).not.toBe(plain.next[0].prob);
    const routed = edited.layers[2].routing;
    expect(routed.routed[3]).toBe(0);
    const g = await cli("generate", "--prompt", "Alice was", "--max-tokens", "4", "--backend", backend, "--json", "--force-expert", "1.5");
    expect(g.code).toBe(0);
    expect(JSON.parse(g.out).interventions).toEqual(["force expert 5 of layer 1"]);
  });
});

describe("research flags refuse bad references in one line", () => {
  it.each([
    [["step", "--ablate-head", "9.0"], "tinyseek step: --ablate-head: layer: expected an integer in [0, 3], got 9"],
    [["step", "--ablate-head", "1.7"], "tinyseek step: --ablate-head: heads[0]: expected an integer in [0, 3], got 7"],
    [["step", "--ablate-head", "1"], 'tinyseek step: --ablate-head: expected LAYER.HEAD (e.g. 2.3), got "1"'],
    [["step", "--ban-expert", "0.3"], "tinyseek step: --ban-expert 0.3: layer: layer 0 has a dense feed-forward, no experts (MoE layers: 1, 2, 3)"],
    [["generate", "--prompt", "a", "--force-expert", "1.16"], "tinyseek generate: --force-expert 1.16: expert: expected an integer in [0, 15], got 16"],
    [["step", "--ablate-mode", "mean"], "tinyseek step: --ablate-mode: needs --ablate-head L.H"],
    [["step", "--steer-layer", "1"], "tinyseek step: --steer-add: steering needs --steer-layer L, --steer-add TEXT and --steer-sub TEXT"],
    [["patch", "--clean", "ab", "--corrupt", "abc", "--answer", "e"], "tinyseek patch: --corrupt: expected as many tokens as --clean (2), got 3"],
    [["patch", "--clean", "ab", "--corrupt", "ac", "--answer", " e"], 'tinyseek patch: --answer: expected text of one token (one byte, e.g. "e" or " "), got " e" (2 tokens)'],
    [["patch", "--clean", "ab", "--corrupt", "ac", "--answer", "e", "--point", "z"], 'tinyseek patch: --point: expected one of resid, attn, mlp, heads, got "z"'],
    [["lens", "--position", "99"], 'tinyseek lens: --position: expected an integer in [0, 37], got "99"'],
  ])("%j", async (argv, message) => {
    const { code, err } = await cli(...argv);
    expect(code).toBe(2);
    expect(err.split("\n")[0]).toBe(`${message} (see npx tinyseek ${argv[0]} --help)`);
  });
});
