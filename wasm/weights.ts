// Weights stay resident in WASM memory, packed once: the cache is keyed by the caller's ArrayBuffer (so views
// such as one expert's slice of a stacked tensor hit the same entry every call), the byte range and the layout.
// A FinalizationRegistry frees a buffer's entries when the buffer is collected, and a byte budget evicts the
// least recently used entries, because finalizers never run inside one long synchronous generation loop.
// Weights are read-only: an array changed in place after its first use keeps its old packed copy.
//
// A hit is the hot path (every linear, rmsnorm, expert and absorbed-bmm call of a decode step): it is memoised per
// view object, with the layout given as a constant name and two sizes, so it builds no string and touches no Map
// keyed by string; recency is a counter on the entry, and eviction (rare) scans for the least recent.

import type { Heap } from "./heap.ts";

interface Entry {
  ptr: number;
  bytes: number;
  buffer: number;
  key: string;
  kind: string;
  a: number;
  b: number;
  used: number;
  live: boolean;
}

export class WeightCache {
  private ids = new WeakMap<ArrayBufferLike, number>();
  private memo = new WeakMap<object, Entry[]>(); // per view object: the entries it has hit
  private nextId = 1;
  private clock = 0;
  private entries = new Map<string, Entry>();
  private byBuffer = new Map<number, Set<string>>();
  private bytes = 0;
  private finalizer = new FinalizationRegistry<number>((id) => this.dropBuffer(id));

  constructor(private heap: Heap, readonly budget: number) {}

  /**
   * The pointer to `data` in layout (kind, a, b) if it is resident, else 0 (no block starts at 0): the hot path,
   * with no closure to make. `kind` names the layout (a constant string), `a` and `b` are its sizes.
   */
  find(data: ArrayBufferView & { length: number }, kind: string, a: number, b: number): number {
    const seen = this.memo.get(data);
    if (seen === undefined) return 0;
    for (let i = 0; i < seen.length; i++) {
      const e = seen[i]!;
      if (e.a === a && e.b === b && e.kind === kind) {
        if (e.live) {
          e.used = ++this.clock;
          return e.ptr;
        }
        seen.splice(i, 1); // evicted since
        return 0;
      }
    }
    return 0;
  }

  /** find(), or on a miss the keyed lookup (another view of the same bytes), filling a fresh block of `bytes`
   *  with `pack(ptr)` when that misses too. */
  get(data: ArrayBufferView & { length: number }, kind: string, a: number, b: number, bytes: number, pack: (ptr: number) => void): number {
    return this.find(data, kind, a, b) || this.lookup(data, kind, a, b, bytes, pack);
  }

  private lookup(data: ArrayBufferView & { length: number }, kind: string, a: number, b: number, bytes: number, pack: (ptr: number) => void): number {
    let id = this.ids.get(data.buffer);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(data.buffer, id);
      this.finalizer.register(data.buffer, id);
    }
    const key = `${id}:${data.byteOffset}:${data.length}:${kind}${a}x${b}`;
    let entry = this.entries.get(key);
    if (entry === undefined) {
      while (this.bytes + bytes > this.budget && this.entries.size > 0) this.evict(this.leastRecent());
      const ptr = this.heap.alloc(bytes);
      try {
        pack(ptr);
      } catch (error) {
        this.heap.release(ptr);
        throw error;
      }
      entry = { ptr, bytes, buffer: id, key, kind, a, b, used: 0, live: true };
      this.entries.set(key, entry);
      if (!this.byBuffer.has(id)) this.byBuffer.set(id, new Set());
      this.byBuffer.get(id)!.add(key);
      this.bytes += bytes;
    }
    entry.used = ++this.clock;
    let seen = this.memo.get(data);
    if (!seen) this.memo.set(data, (seen = []));
    seen.push(entry);
    return entry.ptr;
  }

  get residentBytes(): number {
    return this.bytes;
  }

  clear(): void {
    for (const key of [...this.entries.keys()]) this.evict(key);
  }

  private leastRecent(): string {
    let oldest: Entry | undefined;
    for (const e of this.entries.values()) if (!oldest || e.used < oldest.used) oldest = e;
    return oldest!.key;
  }

  private evict(key: string): void {
    const entry = this.entries.get(key)!;
    entry.live = false;
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
