// The committed notebooks (notebooks/*.ipynb): well-formed for Deno's kernel, executed, without errors, every
// expression cell holding its output and every lesson showing at least one picture. `npm run notebooks` executes
// them (CI runs it before the tests), so in CI this checks freshly executed files; elsewhere, the committed ones.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const dir = new URL("../notebooks/", import.meta.url);
const books = readdirSync(dir).filter((f) => /^\d\d-.*\.ipynb$/.test(f)).sort();
const readme = readFileSync(new URL("README.md", dir), "utf8");

interface Cell { cell_type: string; id?: string; source: string[] | string; outputs?: { output_type: string; data?: Record<string, unknown>; text?: unknown }[]; execution_count?: number | null; metadata: Record<string, unknown> }
const text = (s: string[] | string) => (Array.isArray(s) ? s.join("") : s);

describe("notebooks", () => {
  it("are the nine lessons, each listed in notebooks/README.md", () => {
    expect(books.length).toBeGreaterThanOrEqual(9);
    for (const book of books) expect(readme).toContain(book);
  });

  for (const book of books) {
    it(`${book}: Deno kernel, executed, no errors, a picture`, () => {
      const nb = JSON.parse(readFileSync(new URL(book, dir), "utf8"));
      expect(nb.nbformat).toBe(4);
      expect(nb.nbformat_minor).toBeGreaterThanOrEqual(5);
      expect(nb.metadata.kernelspec).toMatchObject({ name: "deno", language: "typescript" });
      const cells: Cell[] = nb.cells;
      const ids = cells.map((c) => c.id);
      expect(new Set(ids).size).toBe(cells.length);
      expect(ids.every((id) => typeof id === "string" && id.length > 0)).toBe(true);
      let pictures = 0;
      for (const cell of cells.filter((c) => c.cell_type === "code")) {
        const source = text(cell.source);
        const outputs = cell.outputs ?? [];
        expect(outputs.filter((o) => o.output_type === "error"), source).toEqual([]);
        expect(cell.execution_count, `not executed: ${source.slice(0, 60)}`).toBeTypeOf("number");
        expect(cell.metadata.execution, "timing metadata makes every run differ").toBeUndefined();
        // A cell that ends in an expression (not `;` or a closing brace) shows something.
        const last = source.trimEnd().split("\n").at(-1)!.replace(/\s*\/\/.*$/, "");
        if (!/[;}]$/.test(last)) expect(outputs.length, `no output for: ${source.slice(0, 80)}`).toBeGreaterThan(0);
        pictures += outputs.filter((o) => o.data && "image/svg+xml" in o.data).length;
        for (const imported of source.matchAll(/from "([^"]+)"/g)) expect(imported[1]).toMatch(/^(\.\.\/(src|examples)\/.*\.ts|@observablehq\/plot)$/);
      }
      expect(pictures).toBeGreaterThan(0);
    });
  }
});

describe("notebook set-up", () => {
  const root = fileURLToPath(new URL("..", import.meta.url));
  /** notebooks/run.sh with a python3 that does not exist and a stand-in deno that notes how it was called. */
  function runScript(...args: string[]) {
    const dir = mkdtempSync(join(tmpdir(), "tinyseek-notebooks-"));
    try {
      const deno = join(dir, "deno");
      writeFileSync(deno, `#!/bin/sh\necho "$@" > "${dir}/called"\n`);
      chmodSync(deno, 0o755);
      const env = { ...process.env, TINYSEEK_PYTHON: join(dir, "no-python3"), TINYSEEK_DENO: deno };
      const run = spawnSync("bash", ["notebooks/run.sh", ...args], { cwd: root, env, encoding: "utf8" });
      let called = "";
      try {
        called = readFileSync(join(dir, "called"), "utf8").trim();
      } catch { /* deno was not run */ }
      return { code: run.status, err: run.stderr, called };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it("registers the Deno kernel without Python: --install-kernel needs no nbclient", () => {
    const { code, err, called } = runScript("--install-kernel");
    expect(err).not.toMatch(/nbclient/);
    expect(code).toBe(0);
    expect(called).toBe("jupyter --install --force");
    expect(err).toMatch(/jupyter notebook notebooks\//);
  });

  it("executing without nbclient names the one set-up command, on one line, before fetching deno", () => {
    const { code, err, called } = runScript(join(root, "notebooks", "01-masks-and-attention.ipynb"));
    expect(code).toBe(1);
    expect(err.trim().split("\n")).toHaveLength(1);
    expect(err).toMatch(/no python3 with nbclient; install what the notebooks need with: npm run notebooks:setup/);
    expect(called).toBe("");
  });

  it("is one documented command that installs jupyter-notebook with what executes them", () => {
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: Record<string, string> };
    expect(pkg.scripts["notebooks:setup"]).toBe("bash notebooks/setup.sh");
    const line = spawnSync("bash", ["notebooks/setup.sh", "--print"], { cwd: root, encoding: "utf8" }).stdout.trim();
    // jupyter-notebook is the Debian package with the `jupyter notebook` command; the rest run `npm run notebooks`.
    expect(line).toBe("apt-get install -y --no-install-recommends jupyter-notebook jupyter-nbconvert python3-nbclient python3-ipykernel");
    for (const doc of ["README.md", "notebooks/README.md"]) expect(readFileSync(join(root, doc), "utf8"), doc).toContain("npm run notebooks:setup");
  });
});
