// `tinyseek patch`: activation patching between a clean and a corrupted prompt (src/research/patching.ts,
// spec/research.md), drawn as a layer × position (or layer × head) heatmap of the normalised effect.

import { activationPatching, PATCH_POINTS, type PatchPoint } from "../research/patching.ts";
import { parse, positionals, processIo, UsageError, type Io } from "./io.ts";
import { heatmap } from "./heatmap.ts";
import { MODEL_FLAGS, MODEL_HELP, oneToken, openModel } from "./model-args.ts";
import { printTable, toJson } from "./table.ts";

export const help = `usage: tinyseek patch --clean TEXT --corrupt TEXT --answer TEXT [--wrong TEXT] [--point resid|attn|mlp|heads]
                      [model flags] [--json]

Activation patching: runs the clean and the corrupted prompt (the same number of tokens: bytes, for the tiny model), then reruns the corrupted
one once per layer and position (or head), each time with that single activation taken from the clean run, and
measures at the last position m = logit(answer) − logit(wrong) (or p(answer) without --wrong). The heatmap shows the
normalised effect (m_patched − m_corrupt) / (m_clean − m_corrupt): 1 restores the clean behaviour, 0 does nothing.

  --clean TEXT         the prompt whose activations are patched in
  --corrupt TEXT       the prompt patched, of the same byte length
  --answer TEXT        the token (one byte) the clean prompt should predict next
  --wrong TEXT         a token (one byte) to compare against: the metric is then a logit difference
  --point NAME         resid (the residual entering each layer, default), attn or mlp (each sublayer's output), per
                       layer and position; heads (each head's output over all positions), per layer and head
${MODEL_HELP}`;

export async function run(args: string[], io: Io = processIo): Promise<number> {
  const { values, positionals: rest } = parse(args, {
    clean: { type: "string" }, corrupt: { type: "string" }, answer: { type: "string" }, wrong: { type: "string" }, point: { type: "string" }, ...MODEL_FLAGS,
  });
  positionals(rest, [], "tinyseek patch --clean TEXT --corrupt TEXT --answer TEXT");
  for (const flag of ["clean", "corrupt", "answer"] as const) if (values[flag] === undefined) throw new UsageError(`--${flag}: required`);
  const point = (values.point ?? "resid") as PatchPoint;
  if (!PATCH_POINTS.includes(point)) throw new UsageError(`--point: expected one of ${PATCH_POINTS.join(", ")}, got ${JSON.stringify(values.point)}`);
  const { model, backend, tokenizer } = await openModel(values);
  try {
    const tokenLabel = (id: number) => tokenizer.tokenLabel(id);
    const [clean, corrupt] = [tokenizer.encode(values.clean!), tokenizer.encode(values.corrupt!)];
    if (clean.length !== corrupt.length) {
      throw new UsageError(`--corrupt: expected as many tokens as --clean (${clean.length - 1}), got ${corrupt.length - 1}`);
    }
    const answer = oneToken("--answer", values.answer!, tokenizer);
    const wrong = values.wrong === undefined ? undefined : oneToken("--wrong", values.wrong, tokenizer);
    const result = await activationPatching(model, { clean, corrupt, answer, wrong, point, backend });
    if (values.json) {
      io.out(toJson({ prompts: { clean: values.clean, corrupt: values.corrupt }, answer, wrong, ...result }));
      return 0;
    }
    const metric = wrong === undefined ? `p(${tokenLabel(answer)})` : `logit(${tokenLabel(answer)}) − logit(${tokenLabel(wrong)})`;
    io.out(`activation patching · point ${point} · ${backend.name}`);
    io.out(`  metric ${metric} at the last position: clean ${result.clean.toFixed(4)} · corrupt ${result.corrupt.toFixed(4)}\n`);
    const rows = result.layers.map((l) => `layer ${l}`);
    const columns = result.columns === "head"
      ? Array.from({ length: result.effect[0]!.length }, (_, h) => String(h % 10))
      : clean.map((t, i) => (t === corrupt[i] ? (t === tokenizer.bosId ? "^" : tokenLabel(t)) : "*"));
    io.out(heatmap(rows, columns, result.effect, { max: 1, legend: `normalised effect of patching one ${result.columns === "head" ? "head" : "position (* where the prompts differ)"}` }));
    const cells = result.effect.flatMap((row, r) => row.map((effect, c) => ({ layer: result.layers[r]!, [result.columns]: c, effect, metric: result.patched[r]![c]! })));
    io.out("\nlargest effects:");
    printTable(io, cells.sort((a, b) => Math.abs(b.effect) - Math.abs(a.effect)).slice(0, 5));
    return 0;
  } finally {
    await backend.dispose();
  }
}
