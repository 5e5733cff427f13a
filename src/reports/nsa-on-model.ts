// NSA's block selection measured on a model's own attention (attention-report's first quality table): the text
// goes through the model (the trained tiny checkpoint by default), and for each MLA layer we ask how much of that
// layer's real attention mass NSA would keep. Per layer:
//   queries and keys: the layer's own, [q_nope ; q_pe] and [k_nope ; k_pe] per head (MLA's naive form), from the
//     traced layers.L.attn.in through its weights (mlaProjections, kv_b_proj);
//   compression: NSA's φ is a learned MLP the checkpoint does not have, so each compressed key is the mean of its
//     block's keys (a parameter-free φ), scored with the layer's own softmax scale;
//   selection: one group of every head, since MLA's heads share one latent cache as a GQA group shares a kv head;
//   full attention: the traced layers.L.attn.probs, what the model really computes.
// The figures then say how much of a trained model's attention the selected blocks and the window hold.

import { maskedProbs } from "../attention/masked.ts";
import { concatLast, splitHeads } from "../attention/heads.ts";
import { mlaProjections, mlaSoftmaxScale, type MlaConfig, type MlaWeights } from "../attention/mla.ts";
import { compressedBlockCount, TINY_BLOCKS, type NsaBlocks } from "../attention/sparse-select.ts";
import { compressBlocks, compressedVisibility, groupSelection } from "../attention/sparse.ts";
import { checkInteger, TinyseekError } from "../errors.ts";
import { reference } from "../kernels.ts";
import { layerKind } from "../model/config.ts";
import { forward } from "../model/forward.ts";
import { BOS } from "../model/tokenizer.ts";
import type { Model } from "../model/weights.ts";
import { reshape, type Tensor } from "../tensor.ts";
import { createTrace } from "../trace.ts";
import { evenPositions, qualityOf, type NsaQuality } from "./attention.ts";

/** Blocks for a 1K context: at the last of 1,024 tokens 126 compressed + 8·32 selected + 64 window keys (44 %). */
export const CONTEXT_1K_BLOCKS: NsaBlocks = { block: 16, stride: 8, selectBlock: 32, selectCount: 8, window: 64 };

export interface ModelNsaQuality extends NsaQuality {
  layer: number;
}

export interface ModelNsaReport {
  /** Tokens measured: <bos> and the text's first bytes, as many as the model's context holds. */
  tokens: number;
  rows: ModelNsaQuality[];
}

/** NSA's coverage of each MLA layer's attention, for each block set, at `queries` evenly spaced queries. */
export function measureModelNsa(
  model: Model, bytes: Uint8Array, blockSets: readonly NsaBlocks[] = [TINY_BLOCKS, CONTEXT_1K_BLOCKS], options: { queries?: number } = {},
): ModelNsaReport {
  const { queries = 256 } = options;
  const c = model.config;
  checkInteger("bytes.length", bytes.length, 1);
  checkInteger("queries", queries, 1);
  const layers = Array.from({ length: c.num_hidden_layers }, (_, l) => l).filter((l) => layerKind(c, l) === "mla");
  if (layers.length === 0) {
    throw new TinyseekError(`weights: the model has no MLA layer (attention_kind ${JSON.stringify(c.attention_kind)}); NSA's selection is measured on MLA attention`);
  }
  const tokens = [BOS, ...bytes.subarray(0, c.max_position_embeddings - 1)];
  const T = tokens.length;
  const trace = createTrace(layers.flatMap((l) => [`layers.${l}.attn.in`, `layers.${l}.attn.probs`]));
  forward(model, tokens, { trace });
  const positions = evenPositions(T, queries);
  const [H, dn, dr, dv] = [c.num_attention_heads, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim];
  const Dh = dn + dr;
  const scale = mlaSoftmaxScale(c as MlaConfig);
  const rows: ModelNsaQuality[] = [];
  for (const l of layers) {
    const x = trace.tensors.get(`layers.${l}.attn.in`)!;
    const w = model.weights.layers[l]!.self_attn as unknown as MlaWeights;
    const p = mlaProjections({ shape: [1, T, c.hidden_size], data: Float32Array.from(x.data) }, w, c as MlaConfig, tokens.map((_, t) => t), reference);
    const [kNope] = splitHeads(reference.linear(p.latent, w.kv_b_proj), H, [dn, dv]);
    const sharedPe = p.kPe.data;
    const keys = concatLast([kNope!, { shape: [1, H, T, dr], data: tile(sharedPe, H) }]); // [1, H, T, Dh]
    const query = rowsAt(concatLast([p.qNope, p.qPe]), positions, T, Dh); // [1, H, P, Dh]
    const probs = trace.tensors.get(`layers.${l}.attn.probs`)!.data; // [H, T, T]
    const full = new Float32Array(H * positions.length * T);
    for (let h = 0; h < H; h++) {
      positions.forEach((t, i) => full.set(probs.subarray((h * T + t) * T, (h * T + t + 1) * T) as Float32Array, (h * positions.length + i) * T));
    }
    for (const blocks of blockSets) {
      const NB = compressedBlockCount(T - 1, blocks);
      const compressed = compressBlocks(keys, meanPool(blocks.block, Dh), { shape: [blocks.block * Dh], data: new Float32Array(blocks.block * Dh) }, 0, NB, 0, blocks, reference);
      const visible = compressedVisibility(H, positions, NB, blocks);
      const pCmp = maskedProbs(query, compressed, visible, scale, reference);
      const { selected } = groupSelection(pCmp, positions, 1, blocks);
      rows.push({ layer: l, ...qualityOf(full, selected, blocks, H, 1, positions, T), queries: positions.length });
    }
  }
  return { tokens: T, rows };
}

/** [Dh, l·Dh]: the mean of l consecutive rows of Dh, as a linear layer over their concatenation. */
function meanPool(l: number, Dh: number): Tensor {
  const data = new Float32Array(Dh * l * Dh);
  for (let e = 0; e < Dh; e++) for (let j = 0; j < l; j++) data[e * l * Dh + j * Dh + e] = 1 / l;
  return { shape: [Dh, l * Dh], data };
}

/** The one shared rotary key [T, dr], repeated for each of H heads. */
function tile(data: Float32Array, H: number): Float32Array {
  const out = new Float32Array(H * data.length);
  for (let h = 0; h < H; h++) out.set(data, h * data.length);
  return out;
}

/** Rows `positions` of x [1, H, T, Dh], per head. */
function rowsAt(x: Tensor, positions: readonly number[], T: number, Dh: number): Tensor {
  const H = x.shape[1]!;
  const out = new Float32Array(H * positions.length * Dh);
  for (let h = 0; h < H; h++) positions.forEach((t, i) => out.set(x.data.subarray((h * T + t) * Dh, (h * T + t + 1) * Dh), (h * positions.length + i) * Dh));
  return reshape({ shape: [1, H, positions.length, Dh], data: out }, [1, H, positions.length, Dh]);
}
