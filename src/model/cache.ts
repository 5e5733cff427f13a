// The model's cache: one per sequence, holding each layer's attention state (full keys and values for mha and
// decay, the latent and rotary key for MLA) and the number of positions seen. Prefill fills it; each decode step
// appends one token. Section 12 of the design.

import { argError, checkInteger } from "../errors.ts";
import { attentionKind, type LayerCache } from "./attention.ts";
import { layerKind, type ModelConfig, validateConfig } from "./config.ts";

export interface ModelCache {
  /** Positions held: the next token sits at this absolute position. */
  length: number;
  readonly layers: LayerCache[];
}

export function createCache(config: ModelConfig): ModelCache {
  validateConfig(config);
  const layers = Array.from({ length: config.num_hidden_layers }, (_, l) => attentionKind(layerKind(config, l)).createCache(config));
  return { length: 0, layers };
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

/** Checks that `cache` belongs to a model of `config` and has room for `T` more positions. */
export function checkCache(cache: ModelCache, config: ModelConfig, T: number, argument = "cache"): void {
  if (!cache || !Array.isArray(cache.layers) || cache.layers.length !== config.num_hidden_layers) {
    throw argError(argument, `a cache of ${config.num_hidden_layers} layers (createCache(config))`, cache?.layers?.length ?? cache);
  }
  if (cache.length + T > config.max_position_embeddings) {
    throw argError(argument, `room for ${T} more positions (max_position_embeddings ${config.max_position_embeddings})`, `${cache.length} held`);
  }
}
