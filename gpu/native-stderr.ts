// Dawn writes its warnings from native code straight to file descriptor 2, where neither console nor
// process.stderr sees them. Two kinds are noise whenever a device opens: each adapter's limits "artificially
// reduced" (Dawn clamps what the driver reports, lavapipe's 1000000 dynamic buffers to 16), and "Couldn't load
// Vulkan: <library>: <reason>" with an "    at …" line naming a source file on the machine that built the package
// (/home/runner/…), printed for a Vulkan library Dawn tries and cannot load. Dawn prints them synchronously inside
// the calls that create its instance, adapter and device, so for exactly those calls fd 2 is pointed at a temporary
// file; then it is put back and what was captured is written out again, without the noise when an adapter and
// device came, all of it when not (a machine without an adapter needs every clue). Anything else (the Vulkan
// loader's own warnings, Mesa's) passes through.
//
// Node cannot dup2: fd 2 is closed and the file opened in its place (the lowest free descriptor), then the same
// with a reopening of the original (/proc/self/fd). Only on Linux under Node, where /proc exists and descriptors are
// the system's, and only when stderr is a pipe or a terminal (a user's shell); elsewhere (a regular file, a socket,
// another platform) the call runs as it is, noise included. The test runner's workers write to a socket: the runner
// drops the noise on its side (test/stderr-filter.ts).

import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Dawn's lines that say nothing a user can act on when the device opens. */
export const DAWN_NOISE: readonly RegExp[] = [
  /^Warning: \w+ artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.$/,
  /^Warning: Couldn't load Vulkan: /,
];

/** `text` without the noise lines and the indented lines that continue one ("    at …"). */
export function withoutNoise(text: string): string {
  const kept: string[] = [];
  let dropping = false;
  for (const line of text.split("\n")) {
    dropping = DAWN_NOISE.some((noise) => noise.test(line)) || (dropping && /^\s+\S/.test(line));
    if (!dropping) kept.push(line);
  }
  return kept.join("\n");
}

/** What a call wrote to fd 2 while it ran, captured: re-emit it with `release`. */
export interface Captured<T> {
  value: T;
  /** Writes the captured text to stderr: without Dawn's noise if `succeeded`, else all of it. */
  release(succeeded: boolean): void;
}

const canCapture = () => globalThis.process?.platform === "linux" && !("Deno" in globalThis) && !("Bun" in globalThis);

/** Runs `call` (synchronous) with fd 2 captured. If it throws, everything captured is written out and it rethrows. */
export function captureNative<T>(call: () => T): Captured<T> {
  const redirect = canCapture() ? redirectStderr() : undefined;
  if (!redirect) return { value: call(), release: () => {} };
  let value: T;
  try {
    value = call();
  } catch (error) {
    emit(redirect.restore());
    throw error;
  }
  const text = redirect.restore();
  return { value, release: (succeeded) => emit(succeeded ? withoutNoise(text) : text) };
}

function emit(text: string): void {
  if (text.trim() !== "") process.stderr.write(text.endsWith("\n") ? text : `${text}\n`);
}

/** Points fd 2 at a new temporary file; `restore` puts the original back and returns what was written. */
function redirectStderr(): { restore(): string } | undefined {
  // Only a pipe or a terminal (or /dev/null): reopened, they are the same stream. A regular file reopened would get
  // its own offset, and whoever shares the original (a shell's `2>log`) would later write over what went through ours.
  let original: number;
  try {
    const stat = fstatSync(2);
    if (!stat.isFIFO() && !stat.isCharacterDevice()) return undefined;
    original = openSync("/proc/self/fd/2", "a"); // a second descriptor of stderr
  } catch {
    return undefined; // a socket, or no stderr at all: leave it alone
  }
  const dir = mkdtempSync(join(tmpdir(), "tinyseek-stderr-"));
  const file = join(dir, "stderr.txt");
  writeFileSync(file, "");
  // Between the close and the open fd 2 is free; were another thread to open a file in that instant, it would get
  // fd 2 (and ours another number). Nothing in this process opens files while a device is created, so this is a
  // check, not a recovery: stderr could not be given back in that case.
  const reopen = (path: string, flags: string) => {
    closeSync(2);
    const fd = openSync(path, flags);
    if (fd !== 2) closeSync(fd);
    return fd === 2;
  };
  const cleanUp = () => {
    closeSync(original);
    rmSync(dir, { recursive: true, force: true });
  };
  if (!reopen(file, "r+")) {
    cleanUp();
    return undefined;
  }
  return {
    restore() {
      reopen(`/proc/self/fd/${original}`, "a");
      const text = readFileSync(file, "utf8");
      cleanUp();
      return text;
    },
  };
}
