// `tinyseek step` (what `npm start` runs): a prompt through the model layer by layer and op by op — tokens,
// residual norms, one head's attention as a shaded heatmap, the MoE routing with expert loads and drops, early
// exits, and the next-token prediction. Non-interactive unless asked (and only on a TTY), so it always exits.

import { loadBackend, type Backend } from "../backend.ts";
import { compareTraces, createTrace, saveTrace, TRACE_TOLERANCE } from "../trace.ts";
import type { Model } from "../model/weights.ts";
import { depthSweep } from "../model/depth.ts";
import { forwardAsync } from "../model/forward.ts";
import { attentionOverride, loadModelFrom, promptsFrom } from "../step/load.ts";
import { stepRecordAsync } from "../step/record.ts";
import { renderHeader, renderLayer, renderOutput, styleFor } from "../step/render.ts";
import { decimal, numberArg, parse, processIo, UsageError, type Io } from "./io.ts";
import { exitCodeFor, openPager } from "./pager.ts";
import { backendNamed } from "./model-args.ts";
import { INTERVENTION_FLAGS, INTERVENTION_HELP, interventionsFrom } from "./interventions.ts";
import { printTable, toJson } from "./table.ts";

/** The chapter's first words: the default checkpoint was trained on them, so its predictions can be judged. */
export const DEFAULT_PROMPT = "Alice was beginning to get very tired";

export const help = `usage: tinyseek step [--prompt TEXT | --prompt-file FILE] [--config NAME|FILE] [--attention KIND] [--weights FILE] [--backend NAME]
                     [--layer N] [--head N] [--exit-threshold P] [--interactive] [--json] [--trace FILE [--filter GLOB]]
                     [--exit-sweep LIST] [--compare]

Runs a prompt through the model one layer and one op at a time and shows what happens inside: the tokens, each
op's output size, the residual stream's norm per token, an attention heatmap of one head, the MoE routing table
with expert loads and drops, early exits, and the next-token prediction.

  --prompt TEXT        default ${JSON.stringify(DEFAULT_PROMPT)} (byte-level tokens, <bos> first)
  --prompt-file FILE   the prompt's bytes from a file, exactly (a --prompt's bytes that are not UTF-8 reach Node as U+FFFD)
  --config NAME|FILE   a preset (tiny, small) or a JSON config with DeepSeek-V3 field names; default tiny
  --attention KIND     mla (default), mha, decay, segmented, sparse (NSA) or dsa (DeepSeek-V3.2's indexer + MLA);
                       or one per layer: mla,mha,decay,dsa
  --weights FILE       safetensors weights (checkpoint names), or "random" for seeded initialisation; default: the
                       trained tiny checkpoint data/tiny-alice.safetensors (seeded init when --config or --attention
                       asks for another shape)
  --backend NAME       reference (default), wasm, or webgpu: every backend runs the same forward
  --layer N            show only layer N (0-based)
  --head N             the attention head drawn (default 0)
  --exit-threshold P   turn on early exit (CALM): a token stops when p_top1 - p_top2 >= P
  --interactive        wait for Enter between layers (only when stdin is a terminal); q or Ctrl-D quits (exit 0),
                       Ctrl-C interrupts (exit 130)
  --json               print the whole step record as JSON
  --trace FILE         also save every traced tensor (or those matching --filter) as safetensors
  --exit-sweep LIST    early exit at each threshold (e.g. 0.01,0.1,0.5): mean depth, feed-forward work skipped, how often
                       the top-1 token still equals the full-depth model's (the "+40%" claim, measured)
  --compare            run the reference and --backend side by side and list every traced tensor's error in forward
                       order, naming the first one over tolerance (NMSE 1e-7; exit 1 if any): where a backend departs

${INTERVENTION_HELP}`;

const int = (flag: string, value: string | undefined): number | undefined =>
  value === undefined ? undefined : numberArg(flag, value, 0, { integer: true, min: 0 });

export async function run(args: string[], io: Io = processIo): Promise<number> {
  const { values, positionals } = parse(args, {
    prompt: { type: "string" }, "prompt-file": { type: "string" }, config: { type: "string" }, weights: { type: "string" }, backend: { type: "string" }, attention: { type: "string" },
    layer: { type: "string" }, head: { type: "string" }, "exit-threshold": { type: "string" }, interactive: { type: "boolean" },
    json: { type: "boolean" }, trace: { type: "string" }, filter: { type: "string" }, compare: { type: "boolean" },
    "exit-sweep": { type: "string" }, ...INTERVENTION_FLAGS,
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const exitThreshold = values["exit-threshold"] === undefined ? undefined : numberArg("--exit-threshold", values["exit-threshold"], 0, { min: 0 });
  if (values.filter !== undefined && values.trace === undefined) throw new UsageError("--filter: needs --trace FILE");
  const sweep = values["exit-sweep"]?.split(",").map((v) => v.trim());
  if (sweep?.some((v) => !(decimal(v)! >= 0))) throw new UsageError(`--exit-sweep: expected comma-separated numbers >= 0, got ${JSON.stringify(values["exit-sweep"])}`);
  const layer = int("--layer", values.layer);
  const head = int("--head", values.head);
  const backend = await backendNamed(values.backend);
  try {
    const { model, configLabel, weightsLabel, tokenizer } = await loadModelFrom(values.config, values.weights, attentionOverride(values.attention));
    // The default prompt only when neither flag is given; both together are refused by promptsFrom.
    const texts = values.prompt !== undefined ? [values.prompt] : values["prompt-file"] === undefined ? [DEFAULT_PROMPT] : [];
    const [given] = await promptsFrom(texts, values["prompt-file"], io, tokenizer);
    const L = model.config.num_hidden_layers;
    if (layer !== undefined && layer >= L) throw new UsageError(`--layer: expected a layer in [0, ${L - 1}], got ${JSON.stringify(values.layer)}`);
    if (head !== undefined && head >= model.config.num_attention_heads) {
      throw new UsageError(`--head: expected a head in [0, ${model.config.num_attention_heads - 1}], got ${JSON.stringify(values.head)}`);
    }
    const { text: prompt, tokens } = given!;
    const tty = io === processIo && process.stderr.isTTY === true && !process.env.CI;
    const progress = tty ? (l: number, n: number) => process.stderr.write(`\r  running layer ${l} of 0–${n - 1}…`) : undefined;
    const stepOptions = {
      head, backend, backendLabel: backend.description ? `${backend.name} (${backend.description})` : backend.name,
      exitThreshold: exitThreshold ?? model.config.exit_threshold, configLabel, weightsLabel, onLayer: progress, tokenizer,
      interventions: await interventionsFrom(values, model, backend, tokenizer),
    };
    const record = await stepRecordAsync(model, prompt, tokens, stepOptions);
    if (progress) process.stderr.write("\r\x1b[K");

    if (values.compare) return await compare(model, tokens, backend, record.exitThreshold, values.json === true, io);
    if (sweep !== undefined) {
      const thresholds = sweep.map(Number);
      const rows = await depthSweep(model, tokens, thresholds, { backend });
      printTable(io, rows.map((r) => ({ threshold: r.threshold, "mean layers": r.meanLayers, "FFN work skipped": `${(100 * r.ffnSkipped).toFixed(1)}%`, "top-1 = full depth": `${(100 * r.agreement).toFixed(1)}%`, ms: r.ms })), { json: values.json, value: rows });
      return 0;
    }

    if (values.trace !== undefined) {
      const trace = createTrace(values.filter ?? "*");
      await forwardAsync(model, tokens, { trace, backend, exitThreshold: record.exitThreshold, interventions: stepOptions.interventions });
      await saveTrace(values.trace, trace, { prompt, config: JSON.stringify(model.config) });
      if (!values.json) io.err(`saved ${trace.tensors.size} traced tensors to ${values.trace} (read it with: npx tinyseek inspect ${values.trace})`);
    }
    if (values.json) {
      io.out(toJson(layer === undefined ? record : { ...record, layers: record.layers.filter((l) => l.layer === layer) }));
      return 0;
    }
    const color = io === processIo && process.stdout.isTTY === true && !process.env.NO_COLOR;
    const style = styleFor(color);
    const interactive = values.interactive === true && io === processIo && process.stdin.isTTY === true;
    const pager = interactive ? openPager(process.stdin, process.stdout) : null;
    try {
      io.out(renderHeader(record, style));
      for (const l of record.layers) {
        if (layer !== undefined && l.layer !== layer) continue;
        const answer = pager ? await pager.ask(style.dim(`\n  ⏎ layer ${l.layer} of 0–${L - 1}`)) : "next";
        if (answer !== "next") return exitCodeFor(answer);
        io.out(`\n${renderLayer(record, l, style)}`);
      }
      const answer = pager ? await pager.ask(style.dim("\n  ⏎ output")) : "next";
      if (answer !== "next") return exitCodeFor(answer);
      io.out(`\n${renderOutput(record, style)}`);
    } finally {
      pager?.close();
    }
    return 0;
  } finally {
    await backend.dispose();
  }
}

/** The reference and `backend` traced over the same tokens, through the same forward that `generate` runs; every
 *  tensor's error, in forward order. */
async function compare(model: Model, tokens: number[], backend: Backend, exitThreshold: number | null, json: boolean, io: Io): Promise<number> {
  const name = backend.name;
  const [ref, other] = [createTrace("*"), createTrace("*")];
  await forwardAsync(model, tokens, { trace: ref, exitThreshold });
  await forwardAsync(model, tokens, { trace: other, backend, exitThreshold });
  const diff = compareTraces(ref, other);
  const first = diff.firstDeparture;
  if (json) {
    io.out(toJson({ backend: name, ...diff }));
  } else {
    printTable(io, diff.tensors.map(({ name, comparison: c }) => ({
      tensor: name, "max abs err": c.maxAbsError, "max rel err": c.maxRelError, nmse: c.nmse, verdict: c.pass ? "ok" : "DEPARTS",
    })));
    io.out(first
      ? `\nfirst departure: ${first.name}\n${first.comparison.message}`
      : `\n${name} follows the reference through all ${diff.tensors.length} traced tensors (NMSE <= ${TRACE_TOLERANCE.nmse}, indices exact)`);
  }
  return first ? 1 : 0;
}
