// No import cycles among the project's TypeScript modules. A cycle makes evaluation order depend on which module
// is loaded first: a `const` read during a partner's evaluation is then in its temporal dead zone, and the error
// shows up far from its cause. Only value imports count: a type-only import (`import type`, `export type`) is erased
// before the code runs. One whose every binding is `type X` (`import { type X } from …`) is not: under
// verbatimModuleSyntax it stays as `import {} from …` and still loads its module, so it counts, and a test below asks
// for `import type` instead. Dynamic `import()` is not followed either: it is
// how a module that must load lazily (a backend loaded by name) is meant to be reached.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "..");
/** Folders whose .ts files are TypeScript run by Node, tsx, vitest or Deno (wasm/assembly/ is AssemblyScript). */
const FOLDERS = ["src", "wasm", "gpu", "train", "bench", "examples", "web"];
const SKIP = new Set(["wasm/assembly", "node_modules", "web/dist"]);

function tsFiles(folder: string, out: string[] = []): string[] {
  for (const name of readdirSync(join(ROOT, folder)).sort()) {
    const path = `${folder}/${name}`;
    if (SKIP.has(path) || name === "node_modules") continue;
    if (statSync(join(ROOT, path)).isDirectory()) tsFiles(path, out);
    else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}

/** Static imports and re-exports; each starts a line, and a clause in braces may span lines. */
const SPECIFIER = String.raw`\s*(?:"([^"]*)"|'([^']*)')`;
const STATEMENT = new RegExp(
  [
    String.raw`^import\s+((?:type\s+)?(?:[\w$]+\s*,\s*)?(?:\{[^}]*\}|\*\s*as\s+[\w$]+)|(?:type\s+)?[\w$]+)\s+from` + SPECIFIER,
    String.raw`^export\s+((?:type\s+)?(?:\{[^}]*\}|\*(?:\s*as\s+[\w$]+)?))\s*from` + SPECIFIER,
    String.raw`^import()` + SPECIFIER,
  ].join("|"),
  "gm",
);

/** Whether an import or export clause (what stands between the keyword and `from`) binds values. */
function bindsValues(clause: string): boolean {
  const text = clause.replace(/\/\*[^]*?\*\//g, " ").replace(/\/\/.*$/gm, " ").trim();
  if (/^type\s/.test(text)) return false; // `import type …`, `export type …`
  const braces = /^\{([^}]*)\}$/.exec(text);
  if (!braces) return true; // a default binding, `* as x`, `*`
  return true; // braces, even with every binding `type X`: the statement stays and loads the module
}

/** Whether a clause in braces binds only types (`{ type A, type B }`): written so, it still loads its module. */
function onlyTypesInBraces(clause: string): boolean {
  const braces = /^\{([^}]*)\}$/.exec(clause.replace(/\/\*[^]*?\*\//g, " ").replace(/\/\/.*$/gm, " ").trim());
  if (!braces) return false;
  const names = braces[1]!.split(",").map((n) => n.trim()).filter((n) => n !== "");
  return names.length > 0 && names.every((n) => /^type\s/.test(n));
}

/** The specifiers of a file's static value imports and re-exports, as written. */
function valueImports(source: string): string[] {
  const specifiers: string[] = [];
  for (const m of source.matchAll(STATEMENT)) {
    const groups = m.slice(1);
    const clause = groups.find((g, i) => i % 3 === 0 && g !== undefined)!;
    const specifier = groups.find((g, i) => i % 3 !== 0 && g !== undefined)!;
    if (clause === "" || bindsValues(clause)) specifiers.push(specifier); // `import "./x.ts"` runs the module
  }
  // A statement of a form the expression does not know must not slip by unread.
  const read = [...source.matchAll(STATEMENT)].length;
  const starts = [...source.matchAll(/^(?:import\s*[^\s(.]|export\s*(?:type\s*)?(?:\{[^}]*\}|\*)[^;]*?from)/gm)].length;
  if (read !== starts) throw new Error(`read ${read} of ${starts} import and export-from statements`);
  return specifiers;
}

/** The specifiers of statements whose braces bind only types: each still loads its module. */
function typeOnlyBraces(source: string): string[] {
  return [...source.matchAll(STATEMENT)].flatMap((m) => {
    const groups = m.slice(1);
    const clause = groups.find((g, i) => i % 3 === 0 && g !== undefined)!;
    return onlyTypesInBraces(clause) ? [groups.find((g, i) => i % 3 !== 0 && g !== undefined)!] : [];
  });
}

/** The project file a relative specifier names, or undefined for packages and non-TypeScript files. */
function resolveImport(from: string, specifier: string, known: Set<string>): string | undefined {
  if (!specifier.startsWith(".")) return undefined;
  const base = relative(ROOT, resolve(ROOT, dirname(from), specifier)).split("\\").join("/");
  for (const candidate of [base, `${base}.ts`, `${base}/index.ts`]) if (known.has(candidate)) return candidate;
  return undefined;
}

/** Each cycle in a graph, as the files in import order (the first file is not repeated at the end). */
function findCycles(graph: Map<string, string[]>): string[][] {
  // Tarjan's strongly connected components; a component of two or more files (or a file importing itself) holds
  // cycles. For each file of such a component, the shortest cycle through it: together they cover every file.
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const connect = (v: string) => {
    indices.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!indices.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, indices.get(w)!));
    }
    if (low.get(v) === indices.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      components.push(component);
    }
  };
  for (const v of [...graph.keys()].sort()) if (!indices.has(v)) connect(v);

  const cycles = new Map<string, string[]>();
  for (const component of components) {
    const members = new Set(component);
    for (const start of [...component].sort()) {
      // Breadth-first from `start` inside the component until an edge leads back to it.
      const previous = new Map<string, string>();
      let frontier = [start];
      let found: string | undefined;
      while (frontier.length > 0 && found === undefined) {
        const next: string[] = [];
        for (const v of frontier) {
          for (const w of graph.get(v) ?? []) {
            if (w === start) {
              found = v;
              break;
            }
            if (!members.has(w) || previous.has(w) || w === start) continue;
            previous.set(w, v);
            next.push(w);
          }
          if (found !== undefined) break;
        }
        frontier = next;
      }
      if (found === undefined) continue;
      const cycle = [found];
      while (cycle[0] !== start) cycle.unshift(previous.get(cycle[0]!)!);
      // The same cycle seen from another of its files: keep one, starting at its first file by name.
      const first = cycle.indexOf([...cycle].sort()[0]!);
      const canonical = [...cycle.slice(first), ...cycle.slice(0, first)];
      cycles.set(canonical.join(" "), canonical);
    }
  }
  return [...cycles.values()].sort((a, b) => a.join(" ").localeCompare(b.join(" ")));
}

describe("imports", () => {
  it("reads value imports only", () => {
    const source = [
      'import { a, type B } from "./a.ts";',
      'import { type C, type D } from "./c.ts";',
      'import type { E } from "./e.ts";',
      'import F, { type G } from "./f.ts";',
      'import * as h from "./h.ts";',
      'import {\n  r, // the r\n  type S,\n} from "./r.ts";',
      "import { type T } from './t.ts';",
      'export * as u from "./u.ts";',
      'import "./i.ts";',
      'export { j } from "./j.ts";',
      'export type { K } from "./k.ts";',
      'export { type L } from "./l.ts";',
      'export * from "./m.ts";',
      '// import { n } from "./n.ts";',
      'const o = "import { p } from \\"./p.ts\\"";',
      'const q = () => import("./q.ts");',
    ].join("\n");
    // `{ type C, type D }`, `{ type T }` and `export { type L }` stay as empty-brace statements that load their modules.
    expect(valueImports(source)).toEqual(["./a.ts", "./c.ts", "./f.ts", "./h.ts", "./r.ts", "./t.ts", "./u.ts", "./i.ts", "./j.ts", "./l.ts", "./m.ts"]);
    expect(typeOnlyBraces(source)).toEqual(["./c.ts", "./t.ts", "./l.ts"]);
  });

  it("finds each cycle, named in order", () => {
    const graph = new Map([
      ["a", ["b"]],
      ["b", ["c", "d"]],
      ["c", ["a"]],
      ["d", ["b"]],
      ["e", ["e"]],
      ["f", ["a"]],
    ]);
    expect(findCycles(graph)).toEqual([["a", "b", "c"], ["b", "d"], ["e"]]);
  });

  it("has no cycles among the modules of src/, wasm/, gpu/, train/, bench/ and examples/", () => {
    const files = FOLDERS.flatMap((folder) => tsFiles(folder));
    const known = new Set(files);
    const graph = new Map<string, string[]>();
    for (const file of files) {
      const targets = valueImports(readFileSync(join(ROOT, file), "utf8"))
        .map((s) => resolveImport(file, s, known))
        .filter((t): t is string => t !== undefined);
      graph.set(file, [...new Set(targets)]);
    }
    expect(files.length).toBeGreaterThan(50);
    const cycles = findCycles(graph);
    const message = cycles.map((c) => [...c, c[0]].join(" → ")).join("\n");
    expect(message, `${cycles.length} import cycle(s):\n${message}`).toBe("");
  });

  it("writes an import of types only as `import type`, which loads nothing", () => {
    const found = FOLDERS.concat("test").flatMap((folder) => tsFiles(folder))
      .flatMap((file) => typeOnlyBraces(readFileSync(join(ROOT, file), "utf8")).map((specifier) => `${file}: ${specifier}`));
    expect(found, `write these as \`import type { … }\` (or \`export type\`):\n${found.join("\n")}`).toEqual([]);
  });
});
