// A fresh `npm install` is quiet: every installed dependency that runs an install script has been reviewed and is
// named in package.json's allowScripts (npm 11 warns about the others, and npm 12 skips their scripts).
import { readdirSync, readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";

const root = new URL("..", import.meta.url).pathname;

function installedPackages(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name.startsWith(".")) continue;
    if (name.startsWith("@")) out.push(...readdirSync(join(dir, name)).map((n) => join(name, n)));
    else out.push(name);
  }
  return out;
}

it("names every dependency with an install script in allowScripts", () => {
  const allowed = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).allowScripts ?? {};
  const withScripts = installedPackages(join(root, "node_modules")).filter((name) => {
    const file = join(root, "node_modules", name, "package.json");
    if (!existsSync(file)) return false;
    const scripts = JSON.parse(readFileSync(file, "utf8")).scripts ?? {};
    return ["preinstall", "install", "postinstall"].some((s) => s in scripts);
  });
  expect(withScripts.length).toBeGreaterThan(0);
  expect(withScripts.filter((name) => !(name in allowed))).toEqual([]);
});
