// `tinyseek lens`: the logit lens — what each layer's residual stream would predict if it were the last, read out
// through the final norm and the head on the run's backend (src/research/lens.ts, spec/research.md).

import { logitLens, probabilities } from "../research/lens.ts";
import { parse, positionals, processIo, UsageError, type Io } from "./io.ts";
import { heatmap } from "./heatmap.ts";
import { MODEL_FLAGS, MODEL_HELP, oneToken, openModel } from "./model-args.ts";
import { printTable, toJson } from "./table.ts";
import { DEFAULT_PROMPT } from "./step.ts";

export const help = `usage: tinyseek lens [--prompt TEXT] [--position P] [--target TEXT] [--top K] [model flags] [--json]

The logit lens: each layer's residual stream (after the embedding, after each layer) read out through the model's
final RMSNorm and head, as if that layer were the last. Prints, per layer and position, the token it would predict
shaded by its probability, then the top --top tokens per layer at --position. The last layer's row is the model's
own prediction, exactly.

  --prompt TEXT        default ${JSON.stringify(DEFAULT_PROMPT)}
  --position P         the position whose top tokens are listed per layer (default the last; 0 is <bos>)
  --target TEXT        also show the probability of this one-byte token per layer at --position
  --top K              tokens listed per layer (default 3)
${MODEL_HELP}`;

export async function run(args: string[], io: Io = processIo): Promise<number> {
  const { values, positionals: rest } = parse(args, {
    prompt: { type: "string" }, position: { type: "string" }, target: { type: "string" }, top: { type: "string" }, ...MODEL_FLAGS,
  });
  positionals(rest, [], "tinyseek lens [--prompt TEXT]");
  const prompt = values.prompt ?? DEFAULT_PROMPT;
  const top = intFlag("--top", values.top, 3, 20, 1);
  const { model, backend, tokenizer } = await openModel(values);
  try {
    const tokens = tokenizer.encode(prompt);
    const tokenLabel = (id: number) => tokenizer.tokenLabel(id);
    const position = intFlag("--position", values.position, tokens.length - 1, tokens.length - 1);
    const target = values.target === undefined ? undefined : oneToken("--target", values.target, tokenizer);
    const lens = await logitLens(model, tokens, { backend });
    const rows = lens.points.map((point, i) => {
      const p = probabilities(lens.logits[i]!, position);
      const order = Array.from(p.keys()).sort((a, b) => p[b]! - p[a]! || a - b).slice(0, top);
      return { point, top: order.map((id) => ({ id, label: tokenLabel(id), prob: p[id]! })), ...(target === undefined ? {} : { target: p[target]! }) };
    });
    const grid = lens.points.map((_, i) => tokens.map((__, t) => {
      const p = probabilities(lens.logits[i]!, t);
      let best = 0;
      for (let v = 1; v < p.length; v++) if (p[v]! > p[best]!) best = v;
      return { id: best, prob: p[best]! };
    }));
    if (values.json) {
      io.out(toJson({ prompt, tokens, position, points: lens.points, top: rows, grid }));
      return 0;
    }
    const labels = tokens.map((t) => (t === tokenizer.bosId ? "^" : tokenLabel(t)));
    io.out(`logit lens · ${JSON.stringify(prompt)} · ${backend.name}\n`);
    io.out("what each layer predicts next, per position (the token, and its probability shaded below):\n");
    const width = Math.max(...lens.points.map((p) => p.length));
    io.out(`${" ".repeat(width + 2)}${labels.map((l) => ` ${[...l][0]}`).join("")}   (input)`);
    for (const [i, point] of lens.points.entries()) io.out(`${point.padEnd(width)}  ${grid[i]!.map((c) => ` ${[...tokenLabel(c.id)][0]}`).join("")}`);
    io.out("");
    io.out(heatmap(lens.points, labels, grid.map((row) => row.map((c) => c.prob)), { max: 1, legend: "probability of the predicted token" }));
    io.out(`\ntop ${top} per layer at position ${position} (after ${JSON.stringify(tokenLabel(tokens[position]!))}):`);
    printTable(io, rows.map((r) => ({
      point: r.point, ...Object.fromEntries(r.top.map((t, k) => [`#${k + 1}`, `${t.label} ${(100 * t.prob).toFixed(1)}%`])),
      ...(r.target === undefined ? {} : { [`p(${tokenLabel(target!)})`]: `${(100 * r.target).toFixed(2)}%` }),
    })));
    return 0;
  } finally {
    await backend.dispose();
  }
}

/** A decimal integer flag in [min, max], or the default. */
export function intFlag(flag: string, raw: string | undefined, fallback: number, max: number, min = 0): number {
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw.trim()) || Number(raw) < min || Number(raw) > max) throw new UsageError(`${flag}: expected an integer in [${min}, ${max}], got ${JSON.stringify(raw)}`);
  return Number(raw);
}
