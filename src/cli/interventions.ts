// The intervention flags `step` and `generate` share (spec/research.md): head ablation, expert bans, forcing and
// ablation, and steering, parsed into interventions for the one forward.

import { existsSync, readFileSync } from "node:fs";
import type { Backend } from "../backend.ts";
import { checkExpertEdits, type Intervention } from "../model/interventions.ts";
import { BOS, byteTokenizer, type Tokenizer } from "../model/tokenizer.ts";
import type { Model } from "../model/weights.ts";
import { ablateExperts, banExperts, forceExperts } from "../research/experts.ts";
import { ablateHeads, headMeans } from "../research/heads.ts";
import { steer, steeringVector } from "../research/steering.ts";
import { UsageError } from "./io.ts";

export const INTERVENTION_FLAGS = {
  "ablate-head": { type: "string", multiple: true },
  "ablate-mode": { type: "string" },
  "ban-expert": { type: "string", multiple: true },
  "force-expert": { type: "string", multiple: true },
  "ablate-expert": { type: "string", multiple: true },
  "steer-layer": { type: "string" },
  "steer-add": { type: "string" },
  "steer-sub": { type: "string" },
  "steer-scale": { type: "string" },
} as const;

export const INTERVENTION_HELP = `interventions (spec/research.md; layers, heads and experts count from 0; each flag may repeat):
  --ablate-head L.H[,L.H…]   silence head H of layer L before the output projection
  --ablate-mode zero|mean    zero (default), or each head's mean output over held-out text (16 chunks of 64 bytes
                             from the last tenth of data/alice.txt)
  --ban-expert L.E[@P]       expert E of layer L may not be chosen (at position P only, with @P); the next best runs
  --force-expert L.E[@P]     expert E of layer L is chosen, weighted by the router's own score
  --ablate-expert L.E[@P]    where expert E of layer L is chosen, its output is zero (its weight kept)
  --steer-layer L --steer-add TEXT --steer-sub TEXT [--steer-scale S]
                             add S (default 4) × (mean of layer L's output over TEXT to add − over TEXT to subtract)
                             to layer L's output at every position`;

type Values = { [K in keyof typeof INTERVENTION_FLAGS]?: (typeof INTERVENTION_FLAGS)[K] extends { multiple: true } ? string[] : string };

/** "2.3" → [2, 3]; "1.5@4" → [1, 5, 4]; anything else is a UsageError quoting the flag and what was typed. */
function pair(flag: string, raw: string, positioned: boolean): [number, number, number | undefined] {
  const m = (positioned ? /^(\d+)\.(\d+)(?:@(\d+))?$/ : /^(\d+)\.(\d+)$/).exec(raw.trim());
  if (!m) throw new UsageError(`${flag}: expected ${positioned ? "LAYER.EXPERT or LAYER.EXPERT@POSITION (e.g. 1.5 or 1.5@3)" : "LAYER.HEAD (e.g. 2.3)"}, got ${JSON.stringify(raw)}`);
  return [Number(m[1]), Number(m[2]), m[3] === undefined ? undefined : Number(m[3])];
}

/** Held-out text for mean ablation: the last tenth of data/alice.txt, from a line break, in 64-byte chunks. */
function heldOutChunks(tokenizer: Tokenizer, count = 16, length = 64): number[][] {
  const file = new URL("../../data/alice.txt", import.meta.url);
  if (!existsSync(file)) throw new UsageError("--ablate-mode mean: needs data/alice.txt (the held-out text whose mean it takes)");
  const bytes = readFileSync(file);
  const start = bytes.indexOf(10, Math.floor(bytes.length * 0.9)) + 1;
  const chunk = (i: number) => bytes.subarray(start + i * length, start + (i + 1) * length);
  return Array.from({ length: count }, (_, i) => (tokenizer === byteTokenizer ? [BOS, ...chunk(i)] : tokenizer.encode(new TextDecoder().decode(chunk(i)))));
}

/** The interventions the flags ask for (none: an empty list); every reference is checked against the model. */
export async function interventionsFrom(values: Values, model: Model, backend: Backend, tokenizer: Tokenizer = byteTokenizer): Promise<Intervention[]> {
  const out: Intervention[] = [];
  const heads = (values["ablate-head"] ?? []).flatMap((v) => v.split(",")).map((v) => pair("--ablate-head", v, false));
  const mode = values["ablate-mode"] ?? "zero";
  if (mode !== "zero" && mode !== "mean") throw new UsageError(`--ablate-mode: expected zero or mean, got ${JSON.stringify(mode)}`);
  if (values["ablate-mode"] !== undefined && heads.length === 0) throw new UsageError("--ablate-mode: needs --ablate-head L.H");
  const layers = [...new Set(heads.map(([l]) => l))];
  const means = mode === "mean" && layers.length ? await headMeans(model, heldOutChunks(tokenizer), { backend, layers: checkedLayers(model, layers) }) : undefined;
  for (const layer of layers) {
    out.push(rethrow("--ablate-head", () => ablateHeads(model, { layer, heads: heads.filter(([l]) => l === layer).map(([, h]) => h), mode, means })));
  }
  const experts = [["ban-expert", banExperts], ["force-expert", forceExperts], ["ablate-expert", ablateExperts]] as const;
  for (const [flag, make] of experts) {
    for (const raw of values[flag] ?? []) {
      const [layer, expert, position] = pair(`--${flag}`, raw, true);
      const edit = make(layer, [expert], position === undefined ? undefined : [position]);
      try {
        checkExpertEdits(model.config, edit.experts!);
      } catch (error) {
        throw new UsageError(`--${flag} ${raw}: ${(error as Error).message.replace(/^experts\[0\]\./, "")}`);
      }
      out.push(edit);
    }
  }
  const steering = ["steer-layer", "steer-add", "steer-sub", "steer-scale"] as const;
  if (steering.some((f) => values[f] !== undefined)) {
    const missing = steering.slice(0, 3).find((f) => values[f] === undefined);
    if (missing) throw new UsageError(`--${missing}: steering needs --steer-layer L, --steer-add TEXT and --steer-sub TEXT`);
    const layer = Number(values["steer-layer"]);
    if (!/^\d+$/.test(values["steer-layer"]!) || layer >= model.config.num_hidden_layers) {
      throw new UsageError(`--steer-layer: expected a layer in [0, ${model.config.num_hidden_layers - 1}], got ${JSON.stringify(values["steer-layer"])}`);
    }
    const scale = values["steer-scale"] === undefined ? 4 : Number(values["steer-scale"]);
    if (!/^-?\d+(\.\d+)?$/.test(values["steer-scale"] ?? "4") || !Number.isFinite(scale)) throw new UsageError(`--steer-scale: expected a decimal number, got ${JSON.stringify(values["steer-scale"])}`);
    const vector = await steeringVector(model, tokenizer.encode(values["steer-add"]!), tokenizer.encode(values["steer-sub"]!), layer, { backend });
    out.push({ ...steer(model, layer, vector, scale), label: `steer layer ${layer} by ${scale} × (${JSON.stringify(values["steer-add"])} − ${JSON.stringify(values["steer-sub"])})` });
  }
  if (mode === "mean" && out.length) out[0] = { ...out[0]!, label: `${out[0]!.label} (means over 16 chunks of held-out data/alice.txt)` };
  return out;
}

function checkedLayers(model: Model, layers: number[]): number[] {
  for (const l of layers) rethrow("--ablate-head", () => ablateHeads(model, { layer: l, heads: [0] }));
  return layers;
}

/** A library error about an argument, as a usage error naming the flag. */
function rethrow<T>(flag: string, make: () => T): T {
  try {
    return make();
  } catch (error) {
    throw new UsageError(`${flag}: ${(error as Error).message}`);
  }
}
