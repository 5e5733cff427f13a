// `tinyseek generate --prompt TEXT --max-tokens N`: prefill the prompt, then decode token by token through the
// cache, printing the text as it comes. Greedy by default; --temperature, --top-k, --top-p sample with --seed.

import { decode, encode } from "../model/tokenizer.ts";
import { generate } from "../model/generate.ts";
import { loadModelBackend, loadModelFrom } from "../step/load.ts";
import { parse, processIo, UsageError, type Io } from "./io.ts";
import { toJson } from "./table.ts";

export const help = `usage: tinyseek generate --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]
                         [--config NAME|FILE] [--weights FILE] [--backend NAME] [--exit-threshold P] [--json]

Continues a prompt: one forward pass over the prompt (prefill), then one per new token through the KV cache,
stopping at <eos> or after --max-tokens (default 32). Greedy unless --temperature > 0; --top-k and --top-p cut
the candidates first; --seed fixes the draws. Without --weights the model is randomly initialised, so the text is
noise (but the same noise for the same seed). --json prints tokens, timings and exit layers.`;

function number(flag: string, value: string | undefined, fallback: number, integer: boolean): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) {
    throw new UsageError(`${flag}: expected ${integer ? "an integer" : "a number"} >= 0, got ${JSON.stringify(value)}`);
  }
  return n;
}

export async function run(args: string[], io: Io = processIo): Promise<number> {
  const { values, positionals } = parse(args, {
    prompt: { type: "string" }, "max-tokens": { type: "string" }, temperature: { type: "string" }, "top-k": { type: "string" },
    "top-p": { type: "string" }, seed: { type: "string" }, config: { type: "string" }, weights: { type: "string" },
    backend: { type: "string" }, "exit-threshold": { type: "string" }, json: { type: "boolean" },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  if (values.prompt === undefined) throw new UsageError("--prompt TEXT is required");
  const maxTokens = number("--max-tokens", values["max-tokens"], 32, true);
  const temperature = number("--temperature", values.temperature, 0, false);
  const topK = number("--top-k", values["top-k"], 0, true);
  const topP = number("--top-p", values["top-p"], 1, false);
  if (topP === 0 || topP > 1) throw new UsageError(`--top-p: expected a number in (0, 1], got ${values["top-p"]}`);
  const seed = number("--seed", values.seed, 0, true);
  const exitThreshold = values["exit-threshold"] === undefined ? undefined : number("--exit-threshold", values["exit-threshold"], 0, false);

  let backend;
  try {
    backend = await loadModelBackend(values.backend ?? "reference");
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  try {
    const { model } = await loadModelFrom(values.config, values.weights);
    const prompt = encode(values.prompt);
    const stream = !values.json && io === processIo;
    if (stream) process.stdout.write(values.prompt);
    // The bytes of one character may arrive over several tokens: print only what decodes completely so far.
    const generated: number[] = [];
    let printed = "";
    const onToken = (token: number) => {
      generated.push(token);
      const text = decode(generated);
      const complete = text.endsWith("\uFFFD") ? text.slice(0, text.lastIndexOf("\uFFFD")) : text;
      if (complete.length > printed.length) {
        process.stdout.write(complete.slice(printed.length));
        printed = complete;
      }
    };
    const result = generate(model, prompt, {
      maxTokens, temperature, topK, topP, seed, kernels: backend.kernels, exitThreshold, onToken: stream ? onToken : undefined,
    });
    const text = decode(result.tokens);
    const decodeMs = result.steps.slice(1).reduce((a, s) => a + s.ms, 0);
    const perSecond = result.steps.length > 1 ? ((result.steps.length - 1) / decodeMs) * 1000 : 0;
    if (values.json) {
      io.out(toJson({
        prompt: values.prompt, text, tokens: result.tokens, stopReason: result.stopReason, prefillMs: result.prefillMs,
        decodeTokensPerSecond: perSecond, exitLayers: result.steps.map((s) => s.exitLayer), backend: backend.name,
      }));
      return 0;
    }
    if (stream) process.stdout.write(text.slice(printed.length) + "\n");
    else io.out(values.prompt + text);
    io.err(`${result.tokens.length} tokens · prefill ${prompt.length} tokens in ${result.prefillMs.toFixed(1)} ms · decode ${perSecond.toFixed(1)} tokens/s · stopped at ${result.stopReason === "eos" ? "<eos>" : "--max-tokens"}`);
    return 0;
  } finally {
    await backend.dispose();
  }
}
