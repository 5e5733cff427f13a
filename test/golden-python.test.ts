// spec/golden.md's Python examples (spec/golden/examples/) are run here exactly as the spec shows them: the
// numpy-only variant must give a file that `golden compare` passes for a multi-output case. Under CI=true it must
// run (.ci/run installs Debian's python3-numpy); elsewhere a missing python3 or numpy skips it with one line. The
// variant that uses the safetensors package runs where that package is installed (Debian has none).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decodeGolden } from "../src/io/golden.ts";
import { writeSafetensors } from "../src/io/safetensors.ts";
import { cli } from "./helpers.ts";

const root = new URL("..", import.meta.url).pathname;
const examples = join(root, "spec/golden/examples");
const golden = (name: string) => join(root, "spec/golden", `${name}.safetensors`);
const tmp = mkdtempSync(join(tmpdir(), "tinyseek-python-"));

/** Whether python3 imports these modules here, and if not, why (one line). */
function python(modules: string): { ok: true } | { ok: false; reason: string } {
  const run = spawnSync("python3", ["-c", `import ${modules}`], { encoding: "utf8" });
  if (run.error) return { ok: false, reason: `python3 not found (${(run.error as NodeJS.ErrnoException).code})` };
  if (run.status !== 0) return { ok: false, reason: `python3 cannot import ${modules}: ${run.stderr.trim().split("\n").at(-1)}` };
  return { ok: true };
}

function runScript(script: string, args: string[]): void {
  const run = spawnSync("python3", [join(examples, script), ...args], { encoding: "utf8" });
  expect(run.status, `${script}: ${run.stderr}`).toBe(0);
}

describe("spec/golden.md's Python examples", () => {
  it("are shown in the spec exactly as the files hold them", () => {
    const spec = readFileSync(join(root, "spec/golden.md"), "utf8");
    for (const file of ["kernel.py", "check_numpy.py", "check_safetensors.py"]) {
      const code = readFileSync(join(examples, file), "utf8");
      expect(spec, `spec/golden.md must show spec/golden/examples/${file} verbatim`).toContain(`\`\`\`python\n# spec/golden/examples/${file}\n${code}\`\`\``);
    }
  });

  it("with numpy alone: every output of the int8 cases, passed by golden compare", async (context) => {
    const found = python("numpy");
    if (!found.ok) {
      if (process.env.CI === "true") expect.fail(`CI needs python3 with numpy (Debian: apt-get install python3-numpy): ${found.reason}`);
      context.skip(found.reason);
    }
    for (const name of ["quant.int8.g32.5x70", "quant.int8.g128.5x70"]) { // short last group; one group shorter than G
      const out = join(tmp, `${name}.numpy.safetensors`);
      runScript("check_numpy.py", [golden(name), out]);
      const { code, out: printed } = await cli("golden", "compare", golden(name), out);
      expect(code, printed).toBe(0);
      for (const output of ["codes", "scales", "y"]) expect(printed).toMatch(new RegExp(`\\| output\\.${output} +\\| .*\\| ok +\\|`));
      expect(printed).not.toMatch(/skipped/);
    }
  });

  it("with the safetensors package, where it is installed", async (context) => {
    const found = python("numpy, safetensors");
    if (!found.ok) context.skip(found.reason);
    const out = join(tmp, "int8.package.safetensors");
    runScript("check_safetensors.py", [golden("quant.int8.g32.5x70"), out]);
    expect((await cli("golden", "compare", golden("quant.int8.g32.5x70"), out)).code).toBe(0);
  });
});

describe("golden compare --outputs", () => {
  // What the old example wrote: the inputs and output.y only.
  const onlyY = () => {
    const file = decodeGolden(readFileSync(golden("quant.int8.g32.5x70")));
    const path = join(tmp, "only-y.safetensors");
    writeFileSync(path, writeSafetensors({
      "input.x": { dtype: "F32", shape: file.inputs.x!.shape, data: file.inputs.x!.data },
      "output.y": { dtype: "F32", shape: file.outputs.y!.shape, data: file.outputs.y!.data },
    }));
    return path;
  };

  it("without it, a file missing outputs fails, naming them and the flag, with no empty table", async () => {
    const { code, out } = await cli("golden", "compare", golden("quant.int8.g32.5x70"), onlyY());
    expect(code).toBe(1);
    expect(out).toMatch(/the second file has no output\.codes, output\.scales \(compare some outputs only with --outputs y\)/);
    expect(out).not.toMatch(/\|/);
  });

  it("checks the chosen outputs and says which it skipped", async () => {
    for (const flag of ["y", "output.y"]) {
      const { code, out } = await cli("golden", "compare", golden("quant.int8.g32.5x70"), onlyY(), "--outputs", flag);
      expect(code, out).toBe(0);
      expect(out).toMatch(/\| output\.y +\| +15 \| +0 \|/);
      expect(out).not.toMatch(/\| output\.codes/);
      expect(out).toMatch(/^skipped output\.codes, output\.scales \(not in --outputs\)$/m);
      expect(out).toMatch(/^ok: /m);
    }
  });

  it("refuses a name the case does not define, and an empty list", async () => {
    const unknown = await cli("golden", "compare", golden("quant.int8.g32.5x70"), onlyY(), "--outputs", "y,q");
    expect(unknown.code).toBe(1);
    expect(unknown.out).toMatch(/--outputs: expected names from codes, scales, y, got "q"/);
    const empty = await cli("golden", "compare", golden("quant.int8.g32.5x70"), onlyY(), "--outputs", "y,");
    expect(empty.code).toBe(2);
    expect(empty.err).toMatch(/^tinyseek golden: --outputs: expected output names separated by commas, got "y,"/);
    expect(empty.err.split("\n")).toHaveLength(1);
  });
});
