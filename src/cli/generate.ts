// `tinyseek generate --prompt TEXT --max-tokens N`: prefill the prompt, then decode token by token through the
// cache, printing the text as it comes. Greedy by default; --temperature, --top-k, --top-p sample with --seed.

import type { Tokenizer } from "../model/tokenizer.ts";
import type { Backend } from "../backend.ts";
import { runBatchedAsync, type BatchRequest } from "../model/batching.ts";
import { generateAsync } from "../model/generate.ts";
import type { Model } from "../model/weights.ts";
import { attentionOverride, loadModelFrom, promptsFrom, type Prompt } from "../step/load.ts";
import { numberArg, parse, processIo, UsageError, type Io } from "./io.ts";
import { backendNamed } from "./model-args.ts";
import { INTERVENTION_FLAGS, INTERVENTION_HELP, interventionsFrom } from "./interventions.ts";
import { toJson } from "./table.ts";

export const help = `usage: tinyseek generate --prompt TEXT [--prompt TEXT ...] | --prompt-file FILE [--max-tokens N] [--temperature T] [--top-k K]
                         [--top-p P] [--seed S] [--max-batch N] [--config NAME|FILE] [--attention KIND] [--weights FILE]
                         [--backend NAME] [--exit-threshold P] [--speculative mtp] [--json]

Continues a prompt: one forward pass over the prompt (prefill), then one per new token through the KV cache,
stopping at <eos> or after --max-tokens (default 32). Greedy unless --temperature > 0; --top-k and --top-p cut
the candidates first (--top-k K >= 1 keeps the K most likely; without it every byte stays a candidate); --seed
fixes the draws. Without --weights (or --config, --attention) the model is the trained
tiny checkpoint data/tiny-alice.safetensors, which writes Alice-like text; --weights random gives seeded untrained
weights, whose text is noise (the same noise for the same seed). --attention KIND is mla, mha, decay, segmented,
sparse (NSA) or dsa (DeepSeek-V3.2's sparse attention), or one per layer separated by commas. --json prints tokens,
timings and exit layers. --prompt-file FILE takes the prompt's bytes exactly (a --prompt's bytes that are not UTF-8
reach Node as U+FFFD, and a note says so).

--speculative mtp decodes greedily with the model's multi-token-prediction layer (num_nextn_predict_layers 1) as
the draft: each forward verifies the drafted token beside the next one, so the tokens are exactly greedy decoding's,
one or two per forward; the summary (and --json) reports how many drafts were accepted. Greedy only (no
--temperature), one prompt, attention kinds whose cache lives on the backend (mla, mha, decay).

Several --prompt flags run as one continuous batch (at most --max-batch rows, default 4): new requests join as
others finish, each row keeps its own cache, and request i samples with seed S + i, so each text is exactly what
it gets alone. It reports how full the batches were.

--backend wasm and --backend webgpu run the same forward as the reference (every attention kind), with the cache
kept in WASM memory or on the device.

${INTERVENTION_HELP}`;

/** Control characters a sampled byte may be (ESC included) shown as their Unicode pictures, so they cannot drive the terminal. */
const printable = (text: string) => text.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, (c) => String.fromCharCode(c === "\x7f" ? 0x2421 : 0x2400 + c.charCodeAt(0)));

/** How the summary line names why generation stopped. */
const STOPPED = {
  eos: () => "<eos>",
  length: () => "--max-tokens",
  context: (limit: number) => `the context limit (max_position_embeddings ${limit})`,
};

const number = (flag: string, value: string | undefined, fallback: number, integer: boolean) => numberArg(flag, value, fallback, { integer, min: 0 });

export async function run(args: string[], io: Io = processIo): Promise<number> {
  const { values, positionals } = parse(args, {
    prompt: { type: "string", multiple: true }, "prompt-file": { type: "string" }, "max-batch": { type: "string" }, "max-tokens": { type: "string" }, temperature: { type: "string" }, "top-k": { type: "string" },
    "top-p": { type: "string" }, seed: { type: "string" }, config: { type: "string" }, weights: { type: "string" }, attention: { type: "string" },
    backend: { type: "string" }, "exit-threshold": { type: "string" }, speculative: { type: "string" }, json: { type: "boolean" }, ...INTERVENTION_FLAGS,
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const promptCount = values["prompt-file"] !== undefined ? 1 : (values.prompt ?? []).length;
  if (promptCount === 0) throw new UsageError("--prompt TEXT is required (or --prompt-file FILE)");
  const maxBatch = number("--max-batch", values["max-batch"], 4, true);
  if (maxBatch === 0) throw new UsageError("--max-batch: expected an integer >= 1, got 0");
  const maxTokens = number("--max-tokens", values["max-tokens"], 32, true);
  const temperature = number("--temperature", values.temperature, 0, false);
  const topK = numberArg("--top-k", values["top-k"], 0, { integer: true, min: 1 }); // absent: every candidate
  const topP = number("--top-p", values["top-p"], 1, false);
  if (topP === 0 || topP > 1) throw new UsageError(`--top-p: expected a number in (0, 1], got ${JSON.stringify(values["top-p"])}`);
  const seed = number("--seed", values.seed, 0, true);
  const exitThreshold = values["exit-threshold"] === undefined ? undefined : number("--exit-threshold", values["exit-threshold"], 0, false);
  const speculative = values.speculative;
  if (speculative !== undefined) {
    if (speculative !== "mtp") throw new UsageError(`--speculative: expected mtp (the multi-token-prediction layer drafts), got ${JSON.stringify(speculative)}`);
    if (temperature > 0) throw new UsageError(`--speculative: greedy only, expected no --temperature (or 0), got ${JSON.stringify(values.temperature)}`);
    if (promptCount > 1) throw new UsageError("--speculative: one --prompt at a time");
  }

  const backend = await backendNamed(values.backend);
  try {
    const { model, tokenizer } = await loadModelFrom(values.config, values.weights, attentionOverride(values.attention));
    const given = await promptsFrom(values.prompt ?? [], values["prompt-file"], io, tokenizer);
    const prompts = given.map((p) => p.text);
    const sampling = { maxTokens, temperature, topK, topP, seed, exitThreshold };
    const interventions = await interventionsFrom(values, model, backend, tokenizer);
    if (prompts.length > 1 && interventions.length) throw new UsageError("interventions run on one prompt at a time: give one --prompt");
    if (prompts.length > 1) return await batched(backend, model, given, tokenizer, maxBatch, sampling, values.json === true, io);
    const text0 = prompts[0]!;
    const prompt = given[0]!.tokens;
    const limit = model.config.max_position_embeddings;
    if (prompt.length > limit) throw new UsageError(`--prompt: expected at most ${limit} tokens (max_position_embeddings, <bos> included), got ${prompt.length}`);
    const stream = !values.json && io === processIo;
    if (stream) process.stdout.write(text0);
    // The bytes of one character may arrive over several tokens: print only what decodes completely so far.
    const generated: number[] = [];
    let printed = "";
    const onToken = (token: number) => {
      generated.push(token);
      const text = tokenizer.decode(generated);
      const complete = text.endsWith("\uFFFD") ? text.slice(0, text.lastIndexOf("\uFFFD")) : text;
      if (complete.length > printed.length) {
        process.stdout.write(printable(complete.slice(printed.length)));
        printed = complete;
      }
    };
    const result = await generateAsync(model, prompt, { ...sampling, backend, interventions, onToken: stream ? onToken : undefined, ...(speculative ? { speculative } : {}) });
    const text = tokenizer.decode(result.tokens);
    const decodeMs = result.steps.slice(1).reduce((a, s) => a + s.ms, 0);
    const perSecond = result.steps.length > 1 ? ((result.steps.length - 1) / decodeMs) * 1000 : 0;
    if (values.json) {
      io.out(toJson({
        prompt: text0, text, tokens: result.tokens, stopReason: result.stopReason, prefillMs: result.prefillMs,
        decodeTokensPerSecond: perSecond, exitLayers: result.steps.map((s) => s.exitLayer), backend: backend.name,
        interventions: interventions.map((i) => i.label), ...(result.speculative ? { speculative: result.speculative } : {}),
      }));
      return 0;
    }
    if (stream) process.stdout.write(printable(text.slice(printed.length)) + "\n");
    else io.out(text0 + printable(text));
    for (const i of interventions) io.err(`edited: ${i.label}`);
    const drafts = result.speculative ? ` · MTP drafts accepted ${result.speculative.accepted} of ${result.speculative.drafted} (${(100 * result.speculative.acceptanceRate).toFixed(1)}%)` : "";
    io.err(`${result.tokens.length} tokens · prefill ${prompt.length} tokens in ${result.prefillMs.toFixed(1)} ms · decode ${perSecond.toFixed(1)} tokens/s${drafts} · stopped at ${STOPPED[result.stopReason](model.config.max_position_embeddings)}`);
    return 0;
  } finally {
    await backend.dispose();
  }
}

/**
 * Several prompts: continuous batching (src/model/batching.ts). Request i samples with seed + i, so its text is what
 * `generate` gives it alone with that seed; prints each continuation and how full the batches were.
 */
async function batched(
  backend: Backend, model: Model, given: Prompt[], tokenizer: Tokenizer, maxBatch: number,
  options: { maxTokens: number; temperature: number; topK: number; topP: number; seed: number; exitThreshold?: number },
  json: boolean, io: Io,
): Promise<number> {
  if (options.maxTokens === 0) throw new UsageError("--max-tokens: expected at least 1 with several prompts");
  const prompts = given.map((p) => p.text);
  const requests: BatchRequest[] = given.map(({ tokens }, i) => ({
    id: String(i), prompt: tokens, maxTokens: options.maxTokens, temperature: options.temperature, topK: options.topK,
    topP: options.topP, seed: options.seed + i,
  }));
  const started = performance.now();
  const result = await runBatchedAsync(model, requests, { maxBatch, backend, exitThreshold: options.exitThreshold });
  const ms = performance.now() - started;
  const outputs = prompts.map((prompt, i) => ({ prompt, seed: options.seed + i, tokens: result.outputs.get(String(i))!, text: tokenizer.decode(result.outputs.get(String(i))!) }));
  if (json) {
    io.out(toJson({ outputs, steps: result.steps, rowUtilisation: result.rowUtilisation, tokenUtilisation: result.tokenUtilisation, ms }));
    return 0;
  }
  for (const o of outputs) io.out(`[${o.prompt === "" ? "(empty)" : printable(o.prompt)}] ${printable(o.text)}`);
  const generated = outputs.reduce((a, o) => a + o.tokens.length, 0);
  io.err(
    `${prompts.length} requests in ${result.steps.length} batched steps of at most ${maxBatch} rows · ${generated} tokens in ${ms.toFixed(0)} ms · ` +
    `rows used ${(100 * result.rowUtilisation).toFixed(0)}% · padded slots holding real tokens ${(100 * result.tokenUtilisation).toFixed(0)}%`,
  );
  return 0;
}
