// `step --interactive`: wait for Enter between pages, and let the reader leave. Readline answers Ctrl-C and
// Ctrl-D on a pending question by rejecting it with an AbortError; here they become answers, so leaving is never an
// error: q or Ctrl-D quits (exit 0), Ctrl-C interrupts (exit 130, as a shell reports SIGINT).

import { createInterface } from "node:readline/promises";

export type Answer = "next" | "quit" | "interrupt";

/** The exit code for how the reader left. */
export const exitCodeFor = (answer: Exclude<Answer, "next">): number => (answer === "interrupt" ? 130 : 0);

export interface Pager {
  /** Shows `prompt` (the pager adds how to quit) and waits for the reader's answer. */
  ask(prompt: string): Promise<Answer>;
  close(): void;
}

/** The hint every prompt ends with. */
export const QUIT_HINT = "Enter: next · q: quit";

/** A pager over a terminal's input and output (any streams: a test passes its own with `terminal: true`). */
export function openPager(input: NodeJS.ReadableStream, output: NodeJS.WritableStream, options: { terminal?: boolean } = {}): Pager {
  const rl = createInterface({ input, output, terminal: options.terminal });
  // Closing the interface alone leaves a pending question pending: the signal is what ends it.
  const closed = new AbortController();
  let left: Exclude<Answer, "next"> | null = null;
  rl.on("SIGINT", () => {
    left = "interrupt";
    rl.close();
  });
  rl.on("close", () => {
    left ??= "quit"; // Ctrl-D (end of input), or the input closed
    closed.abort();
  });
  return {
    async ask(prompt) {
      if (left) return left;
      try {
        const line = await rl.question(`${prompt}  (${QUIT_HINT}) `, { signal: closed.signal });
        if (!/^\s*q(uit)?\s*$/i.test(line)) return "next";
        rl.close();
        return "quit";
      } catch (error) {
        if ((error as Error).name !== "AbortError") throw error;
        return left ?? "quit"; // readline has already ended the prompt's line
      }
    },
    close: () => rl.close(),
  };
}
