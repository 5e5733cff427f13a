// Weights stay resident in WASM memory, packed once: the cache is keyed by the caller's ArrayBuffer (so views
// such as one expert's slice of a stacked tensor hit the same entry every call), the byte range and the layout.
// A FinalizationRegistry frees a buffer's entries when the buffer is collected, and a byte budget evicts the
// least recently used entries, because finalizers never run inside one long synchronous generation loop.
// Weights are read-only: an array changed in place after its first use keeps its old packed copy.

import { type Heap } from "./heap.ts";

interface Entry {
  ptr: number;
  bytes: number;
  buffer: number;
}

export class WeightCache {
  private ids = new WeakMap<ArrayBufferLike, number>();
  private keys = new WeakMap<object, Map<string, string>>();
  private nextId = 1;
  private entries = new Map<string, Entry>(); // in least- to most-recently used order
  private byBuffer = new Map<number, Set<string>>();
  private bytes = 0;
  private finalizer = new FinalizationRegistry<number>((id) => this.dropBuffer(id));

  constructor(private heap: Heap, readonly budget: number) {}

  /** The pointer to `data` in `layout`, filling a fresh block of `bytes` with `pack(ptr)` on a miss. */
  get(data: ArrayBufferView & { length: number }, layout: string, bytes: number, pack: (ptr: number) => void): number {
    const key = this.keyOf(data, layout);
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit.ptr;
    }
    while (this.bytes + bytes > this.budget && this.entries.size > 0) this.evict(this.entries.keys().next().value!);
    const ptr = this.heap.alloc(bytes);
    pack(ptr);
    const id = this.ids.get(data.buffer)!;
    this.entries.set(key, { ptr, bytes, buffer: id });
    if (!this.byBuffer.has(id)) this.byBuffer.set(id, new Set());
    this.byBuffer.get(id)!.add(key);
    this.bytes += bytes;
    return ptr;
  }

  /** The entry's key; memoised per view object, since a model passes the same weight arrays every call. */
  private keyOf(data: ArrayBufferView & { length: number }, layout: string): string {
    let layouts = this.keys.get(data);
    let key = layouts?.get(layout);
    if (key !== undefined) return key;
    let id = this.ids.get(data.buffer);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(data.buffer, id);
      this.finalizer.register(data.buffer, id);
    }
    key = `${id}:${data.byteOffset}:${data.length}:${layout}`;
    if (!layouts) this.keys.set(data, (layouts = new Map()));
    layouts.set(layout, key);
    return key;
  }

  get residentBytes(): number {
    return this.bytes;
  }

  clear(): void {
    for (const key of [...this.entries.keys()]) this.evict(key);
  }

  private evict(key: string): void {
    const entry = this.entries.get(key)!;
    this.entries.delete(key);
    this.byBuffer.get(entry.buffer)?.delete(key);
    this.heap.release(entry.ptr);
    this.bytes -= entry.bytes;
  }

  private dropBuffer(id: number): void {
    for (const key of this.byBuffer.get(id) ?? []) this.evict(key);
    this.byBuffer.delete(id);
  }
}
