// `tinyseek attribute`: direct logit attribution — how much the embedding, each layer's attention (each head) and
// each feed-forward (each expert) add to one token's logit (src/research/attribution.ts, spec/research.md).

import { directLogitAttribution } from "../research/attribution.ts";
import { probabilities } from "../research/lens.ts";
import { run as runModel } from "../research/run.ts";
import { bar } from "../step/render.ts";
import { parse, positionals, processIo, type Io } from "./io.ts";
import { intFlag } from "./lens.ts";
import { MODEL_FLAGS, MODEL_HELP, oneToken, openModel } from "./model-args.ts";
import { printTable, toJson } from "./table.ts";
import { DEFAULT_PROMPT } from "./step.ts";

export const help = `usage: tinyseek attribute [--prompt TEXT] [--token TEXT] [--position P] [model flags] [--json]

Direct logit attribution: with the final RMSNorm's scale frozen from the run, the final residual stream is a sum of
parts (the embedding, each layer's attention output, each feed-forward output), and each part adds
(W_head[token] ⊙ γ) · part / scale to the token's logit. Lists every part, each head and each expert under its layer,
and checks that the parts sum to the logit.

  --prompt TEXT        default ${JSON.stringify(DEFAULT_PROMPT)}
  --token TEXT         the token (one byte) explained; default the model's top prediction at --position
  --position P         default the last
${MODEL_HELP}`;

export async function run(args: string[], io: Io = processIo): Promise<number> {
  const { values, positionals: rest } = parse(args, { prompt: { type: "string" }, token: { type: "string" }, position: { type: "string" }, ...MODEL_FLAGS });
  positionals(rest, [], "tinyseek attribute [--prompt TEXT] [--token TEXT]");
  const prompt = values.prompt ?? DEFAULT_PROMPT;
  const { model, backend, tokenizer } = await openModel(values);
  try {
    const tokens = tokenizer.encode(prompt);
    const position = intFlag("--position", values.position, tokens.length - 1, tokens.length - 1);
    let token = values.token === undefined ? undefined : oneToken("--token", values.token, tokenizer);
    if (token === undefined) {
      const p = probabilities((await runModel(model, tokens, { backend })).logits, position);
      token = p.indexOf(Math.max(...p));
    }
    const a = await directLogitAttribution(model, tokens, { backend, token, position });
    if (values.json) {
      io.out(toJson({ prompt, ...a }));
      return 0;
    }
    io.out(`direct logit attribution · logit of ${JSON.stringify(tokenizer.tokenLabel(token))} at position ${position} · ${backend.name}`);
    io.out(`  frozen RMSNorm scale ${a.scale.toFixed(4)} · parts sum to ${a.total.toFixed(5)} · the logit is ${a.logit.toFixed(5)}\n`);
    const max = Math.max(...a.parts.map((p) => Math.abs(p.value)));
    printTable(io, a.parts.map((p) => ({
      part: p.of === undefined ? p.name : `  ${p.name.slice(p.of.length + 1)}`,
      logit: Number(p.value.toFixed(4)),
      "": `${p.value < 0 ? "−" : "+"}${bar(Math.abs(p.value), max, 24)}`,
    })));
    return 0;
  } finally {
    await backend.dispose();
  }
}
