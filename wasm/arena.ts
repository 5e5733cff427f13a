// Per-call temporaries (inputs copied in, outputs, scratch) come from one arena block that is reset when the
// kernel returns: allocation is a pointer bump. A call that needs more than the arena holds takes the rest from
// the heap, and the arena is then re-made at 1.25 × that need, so a generation loop settles on one block. In check
// mode every temporary is its own guarded heap block instead, so the guards surround each buffer.

import type { Heap } from "./heap.ts";

const ALIGN = 64;

export class Arena {
  private base = 0;
  private capacity = 0;
  private top = 0;
  private need = 0;
  private overflow: number[] = [];

  constructor(private heap: Heap) {}

  alloc(bytes: number): number {
    const size = Math.ceil(Math.max(bytes, 1) / ALIGN) * ALIGN;
    this.need += size;
    if (!this.heap.check && this.top + size <= this.capacity) {
      const ptr = this.base + this.top;
      this.top += size;
      return ptr;
    }
    const ptr = this.heap.alloc(bytes);
    this.overflow.push(ptr);
    return ptr;
  }

  put(data: Float32Array | Int32Array | Uint8Array): number {
    const ptr = this.alloc(data.byteLength);
    this.heap.write(ptr, data);
    return ptr;
  }

  /** Frees every temporary; grows the arena for next time if this call overflowed it. */
  reset(): void {
    for (const ptr of this.overflow) this.heap.release(ptr);
    this.overflow.length = 0;
    this.top = 0;
    if (!this.heap.check && this.need > this.capacity) {
      if (this.capacity > 0) this.heap.release(this.base);
      this.capacity = Math.ceil((this.need * 1.25) / ALIGN) * ALIGN;
      this.base = this.heap.alloc(this.capacity);
    }
    this.need = 0;
  }
}
