// Lesson 9: interpretability on the trained checkpoint (spec/research.md): the logit lens, a head whose ablation
// changes a known prediction, an activation-patching heatmap, expert specialisation by byte, and direct logit
// attribution. Every function here runs the one forward through src/research/.
import { readFileSync } from "node:fs";
import { BOS, encode, tokenLabel } from "../src/model/tokenizer.ts";
import { loadModel, type Model } from "../src/model/weights.ts";
import { isMoeLayer } from "../src/model/config.ts";
import { ablateHeads } from "../src/research/heads.ts";
import { directLogitAttribution } from "../src/research/attribution.ts";
import { logitLens, probabilities } from "../src/research/lens.ts";
import { activationPatching } from "../src/research/patching.ts";
import { run, runWithCache } from "../src/research/run.ts";

/** The trained tiny checkpoint that ships in data/. */
export const trainedModel = (): Promise<Model> => loadModel(new URL("../data/tiny-alice.safetensors", import.meta.url).pathname);

/** Per residual point and position: the token the lens predicts and its probability; and the labels to draw. */
export async function lensGrid(model: Model, prompt: string) {
  const tokens = encode(prompt);
  const lens = await logitLens(model, tokens);
  const best = lens.logits.map((logits) => tokens.map((_, t) => {
    const p = probabilities(logits, t);
    const id = p.indexOf(Math.max(...p));
    return { id, label: tokenLabel(id), prob: p[id]! };
  }));
  return { points: lens.points, labels: tokens.map(tokenLabel), best };
}

/** p(answer) at the last position with each single head zero-ablated, every layer × head; and unablated. */
export async function headAblationScan(model: Model, prompt: string, answer: string) {
  const tokens = encode(prompt);
  const id = encode(answer, { bos: false })[0]!;
  const p = async (interventions = [] as Parameters<typeof run>[2] extends infer O ? O extends { interventions?: infer I } ? I : never : never) =>
    probabilities((await run(model, tokens, { interventions })).logits, tokens.length - 1)[id]!;
  const base = await p();
  const grid: number[][] = [];
  for (let l = 0; l < model.config.num_hidden_layers; l++) {
    grid.push([]);
    for (let h = 0; h < model.config.num_attention_heads; h++) grid[l]!.push(await p([ablateHeads(model, { layer: l, heads: [h] })]));
  }
  let worst = { layer: 0, head: 0, p: Infinity };
  grid.forEach((row, l) => row.forEach((v, h) => { if (v < worst.p) worst = { layer: l, head: h, p: v }; }));
  return { base, grid, worst };
}

/** The layer × position heatmap of activation patching at the residual, with the metric's ends. */
export async function patchingGrid(model: Model, clean: string, corrupt: string, answer: string, wrong: string) {
  const [a, w] = [answer, wrong].map((s) => encode(s, { bos: false })[0]!);
  const result = await activationPatching(model, { clean: encode(clean), corrupt: encode(corrupt), answer: a, wrong: w, point: "resid" });
  const labels = encode(clean).map((t, i) => (t === encode(corrupt)[i] ? tokenLabel(t) : `${tokenLabel(t)}/${tokenLabel(encode(corrupt)[i]!)}`));
  return { ...result, labels };
}

const CLASSES: [string, (b: number) => boolean][] = [
  ["space", (b) => b === 32],
  ["newline", (b) => b === 10],
  ["vowel", (b) => "aeiou".includes(String.fromCharCode(b))],
  ["consonant", (b) => b >= 97 && b <= 122 && !"aeiou".includes(String.fromCharCode(b))],
  ["capital", (b) => b >= 65 && b <= 90],
  ["punctuation", (b) => /[.,;:!?'"()\-]/.test(String.fromCharCode(b))],
  ["other", () => true],
];

/**
 * Expert specialisation: over `bytes` of text (in sequences of `length`), the share of each expert's assignments
 * at `layer` that fall on each byte class (rows: experts, columns: classes), and each expert's top bytes.
 */
export async function expertBytes(model: Model, layer: number, bytes = 2048, length = 256) {
  if (!isMoeLayer(model.config, layer)) throw new Error(`layer ${layer} has no experts`);
  const text = readFileSync(new URL("../data/alice.txt", import.meta.url)).subarray(0, bytes);
  const E = model.config.n_routed_experts;
  const counts = Array.from({ length: E }, () => new Float64Array(CLASSES.length));
  const perByte = Array.from({ length: E }, () => new Map<number, number>());
  for (let at = 0; at < text.length; at += length) {
    const chunk = Array.from(text.subarray(at, at + length));
    const tokens = [BOS, ...chunk];
    const name = `layers.${layer}.mlp.router.indices`;
    const indices = (await runWithCache(model, tokens, { names: name })).activations.get(name)!;
    const k = indices.shape[1]!;
    tokens.forEach((b, t) => {
      if (t === 0) return;
      const cls = CLASSES.findIndex(([, test]) => test(b));
      for (let r = 0; r < k; r++) {
        const e = indices.data[t * k + r]!;
        counts[e]![cls]! += 1;
        perByte[e]!.set(b, (perByte[e]!.get(b) ?? 0) + 1);
      }
    });
  }
  const shares = counts.map((row) => {
    const total = row.reduce((a, v) => a + v, 0);
    return Array.from(row, (v) => (total ? v / total : 0));
  });
  const top = perByte.map((m, e) => ({
    expert: e,
    assignments: [...m.values()].reduce((a, v) => a + v, 0),
    "top bytes": [...m].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, 6).map(([b, n]) => `${tokenLabel(b)}×${n}`).join(" "),
  }));
  return { classes: CLASSES.map(([name]) => name), shares, top };
}

/** Each part's share of one token's logit, for a bar chart. */
export async function attribution(model: Model, prompt: string, answer: string) {
  const a = await directLogitAttribution(model, encode(prompt), { token: encode(answer, { bos: false })[0]! });
  return { ...a, rows: a.parts.filter((p) => p.of === undefined).map((p) => ({ part: p.name, logit: p.value })), heads: a.parts.filter((p) => p.name.includes(".head.")).map((p) => ({ part: p.name, logit: p.value })) };
}
