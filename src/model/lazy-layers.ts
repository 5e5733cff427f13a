// Layers read when first used, so that a checkpoint larger than memory steps layer by layer (src/io/checkpoint.ts).
// The model's `weights.layers` stays an ordinary array, but each element is a getter: reading `layers[l]` loads
// layer l if it is not resident and marks it the most recently used. Resident layers are kept under a byte budget:
// before a layer is loaded, the least recently used others are evicted until it fits (the one being loaded is never
// evicted, so memory holds at most the budget or one layer, whichever is larger). The forward, hooks and reports
// read `layers[l]` exactly as before, and a layer runs as one unit, so nothing else knows about loading. An evicted
// layer's tensors stay valid for whoever still holds them; the next access reads the layer again from disk.

import type { LayerWeights } from "./weights.ts";

export interface LayerSource {
  readonly count: number;
  /** The bytes layer l takes in memory once loaded, known before it is read (from the checkpoint's headers). */
  bytes(l: number): number;
  /** Layer l, read now. */
  load(l: number): LayerWeights;
}

/** What the layers hold and have done, for tests, benchmarks and the stepper's report. */
export interface Residency {
  /** Bytes of layers kept resident before the least recently used are evicted. */
  readonly budget: number;
  /** Resident layers, least recently used first. */
  resident(): number[];
  readonly residentBytes: number;
  /** Layers read from disk so far (a layer evicted and used again counts again). */
  readonly loads: number;
  /** The largest residentBytes seen. */
  readonly peakBytes: number;
}

/** `source`'s layers as an array of getters that load on first access, under `budget` bytes (Infinity: keep all). */
export function lazyLayers(source: LayerSource, budget: number): { layers: LayerWeights[]; residency: Residency } {
  const held = new Map<number, LayerWeights>(); // insertion order = recency: a use moves the layer to the end
  let [residentBytes, loads, peakBytes] = [0, 0, 0];
  const layer = (l: number): LayerWeights => {
    const hit = held.get(l);
    if (hit) {
      held.delete(l);
      held.set(l, hit);
      return hit;
    }
    const size = source.bytes(l);
    for (const [old] of held) {
      if (residentBytes + size <= budget) break;
      held.delete(old);
      residentBytes -= source.bytes(old);
    }
    const loaded = source.load(l);
    held.set(l, loaded);
    residentBytes += size;
    loads++;
    peakBytes = Math.max(peakBytes, residentBytes);
    return loaded;
  };
  const layers: LayerWeights[] = [];
  for (let l = 0; l < source.count; l++) Object.defineProperty(layers, l, { get: () => layer(l), enumerable: true });
  const residency: Residency = {
    budget,
    resident: () => [...held.keys()],
    get residentBytes() { return residentBytes; },
    get loads() { return loads; },
    get peakBytes() { return peakBytes; },
  };
  return { layers, residency };
}
