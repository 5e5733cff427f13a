// `step --interactive` (issue 16, item 7): Ctrl-C and Ctrl-D at the prompt leave cleanly instead of printing
// "internal error: AbortError"; the prompt says how to quit. In-process over a terminal-mode readline on streams,
// and end to end under a pseudo-terminal (python3's pty module) where python3 is installed.

import { execFileSync, spawnSync } from "node:child_process";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { exitCodeFor, openPager, QUIT_HINT } from "../src/cli/pager.ts";

/** A pager on in-memory streams in terminal mode: keys go in as a terminal would send them. */
function pagerOnStreams() {
  const input = new PassThrough();
  const output = new PassThrough();
  let shown = "";
  output.on("data", (chunk) => (shown += chunk));
  return { pager: openPager(input, output, { terminal: true }), type: (keys: string) => input.write(keys), shown: () => shown };
}

describe("the interactive pager", () => {
  it("Enter goes on, q quits, Ctrl-D quits, Ctrl-C interrupts; once left it stays left", async () => {
    for (const [keys, answer] of [["\r", "next"], ["q\r", "quit"], [" Quit \r", "quit"], ["\x04", "quit"], ["\x03", "interrupt"]] as const) {
      const { pager, type, shown } = pagerOnStreams();
      const pending = pager.ask("layer 0");
      type(keys);
      expect(await pending, JSON.stringify(keys)).toBe(answer);
      expect(shown()).toContain(`layer 0  (${QUIT_HINT})`);
      if (answer !== "next") expect(await pager.ask("layer 1")).toBe(answer);
      pager.close();
    }
  });

  it("q and Ctrl-D exit 0, Ctrl-C exits 130 as a shell reports SIGINT", () => {
    expect(exitCodeFor("quit")).toBe(0);
    expect(exitCodeFor("interrupt")).toBe(130);
  });
});

const python = (() => {
  if (process.platform === "win32") return false;
  try {
    execFileSync("python3", ["-c", "import pty"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

// Runs `step --interactive` under a pseudo-terminal, waits for the first prompt, sends the key, and prints the exit
// code and what the terminal showed as JSON.
const DRIVER = String.raw`
import json, os, pty, select, sys, time
key = bytes.fromhex(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
out, sent, end = b"", False, time.time() + 50
while time.time() < end:
    if select.select([fd], [], [], 0.1)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    if not sent and b"q: quit" in out:
        os.write(fd, key)
        sent = True
_, status = os.waitpid(pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "sent": sent, "out": out.decode("utf-8", "replace")}))
`;

describe.runIf(python)("step --interactive on a terminal", () => {
  const drive = (key: string) => {
    const argv = [process.execPath, "--import", "tsx", "src/cli.ts", "step", "--interactive", "--prompt", "hi"];
    const run = spawnSync("python3", ["-c", DRIVER, Buffer.from(key).toString("hex"), ...argv], { encoding: "utf8", timeout: 55_000 });
    return JSON.parse(run.stdout) as { code: number; sent: boolean; out: string };
  };

  // One run (a process start and a forward pass): Ctrl-D and q take the same path to exit 0, tested above.
  it("shows how to quit; Ctrl-C exits 130, with no error", () => {
    const run = drive("\x03");
    expect(run.sent, run.out).toBe(true);
    expect(run.out).toMatch(/layer 0 of 0–3.*\(Enter: next · q: quit\)/);
    expect(run.out).not.toMatch(/error/i);
    expect(run.code, run.out).toBe(130);
  });
});
