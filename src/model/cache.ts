// The model's cache: one per sequence, on the backend that runs it, holding each layer's attention state and the
// number of positions seen. Prefill fills it; each decode step appends one token (spec/model.md).
//   mla (absorb)   keys [1, rows, kv_lora_rank + qk_rope_head_dim] (the normalised latent and the rotated shared
//                  key) and values [1, rows, kv_lora_rank] (the latent again, contiguous for the attention kernel)
//   mla (naive)    keys [H, rows, qk_nope + qk_rope], values [H, rows, v_head_dim]: full per-head keys and values
//   mha, decay     rotated keys and values [Hkv, rows, Dh]; decay "as-written" keeps each key scaled by γ^j
//   dsa            MLA's keys and values, as mla_mode says, and the indexer's key of every position [1, rows, index_head_dim]
//   segmented      keys and values [Hkv, M + S + W, Dh]: the memory's in the first M rows, then the window, and
//                  the pool [1, M + S, D] (the memory, then the segment's inputs): bounded, rewritten in place
//                  at each segment's start (src/model/segmented-layer.ts)
//   sparse         the selected branch's rotated keys and values [Hkv, rows, Dh]; `blocks`: the compressed branch's
//                  unrotated keys and values of every position [Hkv, rows, Dh] and one compressed key and value per
//                  finished block [Hkv, blocks.rows, Dh]; and `sparse`: the window's last w keys and values (a ring),
//                  all on the device (src/model/sparse-layer.ts)
// Device caches start small and grow (doubling, up to max_position_embeddings) when a forward needs more rows;
// `capacity` sizes them at once (generation knows prompt + maxTokens). releaseCache frees them.

import type { Backend } from "../backend.ts";
import type { Value } from "../device/kernels.ts";
import { referenceOps, type Ops } from "../device/ops.ts";
import { argError, checkInteger, TinyseekError } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { resolveSparseConfig } from "../attention/sparse.ts";
import { compressedBlockCount } from "../attention/sparse-select.ts";
import { attentionKind, sparseConfig } from "./attention.ts";
import { headDim, layerKind, type ModelConfig, validateConfig } from "./config.ts";
import type { SparseLayerState } from "./sparse-layer.ts";

/** A layer's keys and values on the device: `rows` positions allocated. */
export interface LayerCache<X extends Value = Value> {
  keys: X | null;
  values: X | null;
  rows: number;
  /** DSA: the indexer's key of every position [1, rows, index_head_dim], beside the keys and values. */
  indexKeys?: X;
  /** NSA's compressed branch (src/model/sparse-layer.ts): the unrotated keys and values of every position
   *  [Hkv, rows, Dh] beside the selected branch's (a block is then a gather of its l rows), and one compressed key
   *  and value per finished block [Hkv, blocks.rows, Dh], room for every block the cache's rows can end. */
  blocks?: { rawKeys: X; rawValues: X; keys: X; values: X; rows: number };
  /** NSA: its position and the window's keys and values (src/model/sparse-layer.ts). */
  sparse?: SparseLayerState<X>;
  /** Segmented with memory: mem_s then the current segment's inputs [1, M + S, D], pooled at its end. */
  segmentPool?: X;
}

export interface ModelCache<X extends Value = Value> {
  /** The operations whose values the cache holds: a cache runs only on its own backend. */
  readonly ops: Ops<X>;
  /** Positions held: the next token sits at this absolute position. */
  length: number;
  readonly layers: LayerCache<X>[];
  /** Rows the device caches are allocated with on first use (0: as many as the first forward needs). */
  readonly capacity: number;
  /** Set when a forward through the cache failed half-way: a layer whose state it changed in place (dropsPositions)
   *  may already hold its tokens while `length` does not, so the cache refuses further use rather than give wrong
   *  results. */
  broken?: string;
}

export interface CacheOptions {
  /** The backend that will run the forwards (default: the reference). */
  backend?: Pick<Backend, "ops">;
  /** Positions to allocate up front (default: grow as needed). */
  capacity?: number;
}

/** Whether layer l's state can drop the positions past `cache.length` that a failed forward or a rejected draft
 *  leaves behind: a full cache can (the next forward writes over those rows); a state that a forward changes in
 *  place cannot, so a failed forward marks such a cache broken and speculative decoding refuses the model. */
export function dropsPositions(config: ModelConfig, l: number): boolean {
  const kind = layerKind(config, l); // a segment's start pools and moves in place; NSA's blocks and window move on
  return kind !== "segmented" && kind !== "sparse";
}

export function createCache(config: ModelConfig, options: CacheOptions = {}): ModelCache {
  validateConfig(config);
  const capacity = options.capacity ?? 0;
  checkInteger("capacity", capacity, 0, config.max_position_embeddings);
  const layers = Array.from({ length: config.num_hidden_layers }, (): LayerCache => ({ keys: null, values: null, rows: 0 }));
  return { ops: options.backend?.ops ?? referenceOps, length: 0, layers, capacity };
}

/** Every device value the cache holds, each layer's keys and values and what its kind keeps beside them: what
 *  releaseCache frees, and what a caller whose backend frees by scope (tfjs) must keep. */
export function cacheValues<X extends Value>(cache: ModelCache<X>): X[] {
  return cache.layers.flatMap((layer) => [layer.keys, layer.values, layer.indexKeys, layer.segmentPool, layer.sparse?.windowKeys, layer.sparse?.windowValues,
    layer.blocks?.rawKeys, layer.blocks?.rawValues, layer.blocks?.keys, layer.blocks?.values])
    .filter((v): v is X => v !== null && v !== undefined);
}

/** Frees the cache's device memory; the cache must not be used afterwards. */
export function releaseCache(cache: ModelCache): void {
  for (const value of cacheValues(cache)) cache.ops.free(value);
  for (const layer of cache.layers) {
    layer.keys = layer.values = null;
    layer.rows = 0;
    layer.indexKeys = layer.segmentPool = layer.sparse = layer.blocks = undefined;
  }
  cache.layers.length = 0; // a later forward through it fails on its layer count
}

type Planes = [planes: number, width: number];

/** The planes and widths of layer l's device keys and values (and DSA's indexer keys, NSA's compressed blocks). */
function deviceShapes(c: ModelConfig, l: number): { keys: Planes; values: Planes; indexKeys?: Planes; blocks?: Planes } {
  const kind = layerKind(c, l);
  if (kind === "mla" || kind === "dsa") {
    const indexKeys: Planes | undefined = kind === "dsa" ? [1, c.index_head_dim] : undefined;
    return c.mla_mode === "absorb"
      ? { keys: [1, c.kv_lora_rank + c.qk_rope_head_dim], values: [1, c.kv_lora_rank], indexKeys }
      : { keys: [c.num_attention_heads, c.qk_nope_head_dim + c.qk_rope_head_dim], values: [c.num_attention_heads, c.v_head_dim], indexKeys };
  }
  const kv: Planes = [c.num_key_value_heads, headDim(c)];
  return { keys: kv, values: kv, blocks: kind === "sparse" ? kv : undefined };
}

/** Room for `needed` positions in layer l's device cache: allocates, or grows it keeping what it holds. */
export function ensureRows<X extends Value>(cache: ModelCache<X>, config: ModelConfig, l: number, needed: number): LayerCache<X> {
  const layer = cache.layers[l]!;
  if (layer.rows >= needed) return layer;
  const rows = Math.min(config.max_position_embeddings, Math.max(needed, cache.capacity, 2 * layer.rows));
  const { ops } = cache;
  const shapes = deviceShapes(config, l);
  const grow = (old: X | null | undefined, [planes, width]: Planes, n = rows) => {
    const fresh = ops.empty([planes, n, width]);
    if (old) {
      ops.writeRows(fresh, old, 0);
      ops.free(old);
    }
    return fresh;
  };
  layer.keys = grow(layer.keys, shapes.keys);
  layer.values = grow(layer.values, shapes.values);
  if (shapes.indexKeys) layer.indexKeys = grow(layer.indexKeys, shapes.indexKeys);
  if (shapes.blocks) {
    // Every block that ends within the rows (at least one row: a value is never empty).
    const n = Math.max(1, compressedBlockCount(rows - 1, resolveSparseConfig(sparseConfig(config)).blocks));
    layer.blocks = {
      rawKeys: grow(layer.blocks?.rawKeys, shapes.blocks), rawValues: grow(layer.blocks?.rawValues, shapes.blocks),
      keys: grow(layer.blocks?.keys, shapes.blocks, n), values: grow(layer.blocks?.values, shapes.blocks, n), rows: n,
    };
  }
  layer.rows = rows;
  return layer;
}

/** Checks that `cache` belongs to a model of `config` and to these operations, with room for `T` more positions. */
export function checkCache(cache: ModelCache, config: ModelConfig, ops: Ops, T: number, argument = "cache"): void {
  if (!cache || !Array.isArray(cache.layers) || cache.layers.length !== config.num_hidden_layers) {
    throw argError(argument, `a cache of ${config.num_hidden_layers} layers (createCache(config))`, cache?.layers?.length ?? cache);
  }
  if (cache.broken) throw new TinyseekError(`${argument}: ${cache.broken}; start again with a new cache`);
  if (cache.ops !== ops) {
    throw new TinyseekError(`${argument}: expected a cache made for backend "${ops.name}" (createCache(config, { backend })), got one for "${cache.ops?.name}"`);
  }
  if (cache.length + T > config.max_position_embeddings) {
    throw argError(argument, `room for ${T} more positions (max_position_embeddings ${config.max_position_embeddings})`, `${cache.length} held`);
  }
}

/** Numbers the cache holds after T tokens, summed over the layers. */
export function cacheNumbers(config: ModelConfig, T: number): number {
  checkInteger("T", T, 0);
  let n = 0;
  for (let l = 0; l < config.num_hidden_layers; l++) n += attentionKind(layerKind(config, l)).cacheNumbers(config, T);
  return n;
}

/** Bytes per token the cache holds after T tokens, at float32 (constant for the full caches, falling for segmented). */
export function cacheBytesPerToken(config: ModelConfig, T: number): number {
  checkInteger("T", T, 1);
  return (4 * cacheNumbers(config, T)) / T;
}
