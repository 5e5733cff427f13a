// The committed notebooks (notebooks/*.ipynb): well-formed for Deno's kernel, executed, without errors, every
// expression cell holding its output and every lesson showing at least one picture. `npm run notebooks` executes
// them (CI runs it before the tests), so in CI this checks freshly executed files; elsewhere, the committed ones.
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const dir = new URL("../notebooks/", import.meta.url);
const books = readdirSync(dir).filter((f) => /^\d\d-.*\.ipynb$/.test(f)).sort();
const readme = readFileSync(new URL("README.md", dir), "utf8");

interface Cell { cell_type: string; id?: string; source: string[] | string; outputs?: { output_type: string; data?: Record<string, unknown>; text?: unknown }[]; execution_count?: number | null; metadata: Record<string, unknown> }
const text = (s: string[] | string) => (Array.isArray(s) ? s.join("") : s);

describe("notebooks", () => {
  it("are the eight lessons, each listed in notebooks/README.md", () => {
    expect(books.length).toBeGreaterThanOrEqual(8);
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
