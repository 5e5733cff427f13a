// The JS side owns the module's memory: a first-fit free list over [heapBase, end) with neighbours coalesced,
// growing the memory only when no free block fits, so a long generation reuses the same bytes call after call.
// In check mode every block has guard bytes before and after (checked after each kernel) and fresh blocks are
// filled with NaN, so an unwritten output element or an out-of-bounds write fails the property suite.

import { TinyseekError } from "../src/errors.ts";
import type { WasmMemory } from "./webassembly.ts";

const ALIGN = 64;
const PAGE = 65536;
const GUARD = 64;
const CANARY = 0x5a;

interface Block {
  ptr: number;
  bytes: number;
}

export class Heap {
  private free: Block[] = []; // sorted by address, never adjacent
  private top: number; // everything from here to the end of memory is unused
  private live = new Map<number, number>(); // user pointer → user bytes
  private allocations = 0; // blocks allocated so far
  /** Views of the whole memory, remade whenever alloc grows it (the hot paths index these instead of making views). */
  F32!: Float32Array;
  I32!: Int32Array;
  U8!: Uint8Array;

  constructor(readonly memory: WasmMemory, base: number, readonly check: boolean) {
    this.top = Math.ceil(base / ALIGN) * ALIGN;
    this.remap();
  }

  private remap(): void {
    const buffer = this.memory.buffer;
    this.F32 = new Float32Array(buffer);
    this.I32 = new Int32Array(buffer);
    this.U8 = new Uint8Array(buffer);
  }

  /** A block of at least `bytes`, 64-byte aligned; NaN-filled in check mode. */
  alloc(bytes: number): number {
    this.allocations++;
    const guard = this.check ? GUARD : 0;
    const size = Math.ceil((Math.max(bytes, 1) + 2 * guard) / ALIGN) * ALIGN;
    let start = -1;
    const fit = this.free.findIndex((b) => b.bytes >= size);
    if (fit >= 0) {
      const block = this.free[fit]!;
      start = block.ptr;
      if (block.bytes === size) this.free.splice(fit, 1);
      else this.free[fit] = { ptr: block.ptr + size, bytes: block.bytes - size };
    } else {
      start = this.top;
      const need = start + size - this.memory.buffer.byteLength;
      if (need > 0) {
        try {
          this.memory.grow(Math.ceil(need / PAGE));
        } catch {
          throw new TinyseekError(`wasm: out of memory allocating ${bytes} bytes (${this.memory.buffer.byteLength} in use)`);
        }
        this.remap();
      }
      this.top += size;
    }
    const ptr = start + guard;
    this.live.set(ptr, bytes);
    if (this.check) {
      const all = this.u8(start, size);
      all.fill(CANARY, 0, guard);
      all.fill(CANARY, guard + bytes);
      new Float32Array(this.memory.buffer, ptr, bytes >> 2).fill(NaN);
    }
    return ptr;
  }

  release(ptr: number): void {
    const bytes = this.live.get(ptr);
    if (bytes === undefined) throw new TinyseekError(`wasm: release of an unknown block at ${ptr}`);
    this.live.delete(ptr);
    const guard = this.check ? GUARD : 0;
    const block = { ptr: ptr - guard, bytes: Math.ceil((Math.max(bytes, 1) + 2 * guard) / ALIGN) * ALIGN };
    let i = this.free.findIndex((b) => b.ptr > block.ptr);
    if (i < 0) i = this.free.length;
    this.free.splice(i, 0, block);
    const next = this.free[i + 1];
    if (next && block.ptr + block.bytes === next.ptr) {
      block.bytes += next.bytes;
      this.free.splice(i + 1, 1);
    }
    const prev = this.free[i - 1];
    if (prev && prev.ptr + prev.bytes === block.ptr) {
      prev.bytes += block.bytes;
      this.free.splice(i, 1);
      i--;
    }
    const last = this.free[this.free.length - 1]!;
    if (last.ptr + last.bytes === this.top) { // give the tail back to the top
      this.top = last.ptr;
      this.free.pop();
    }
  }

  /** Throws if any live block's guard bytes were overwritten (check mode). */
  verify(kernel: string): void {
    if (!this.check) return;
    for (const [ptr, bytes] of this.live) {
      const before = this.u8(ptr - GUARD, GUARD);
      const size = Math.ceil((Math.max(bytes, 1) + 2 * GUARD) / ALIGN) * ALIGN;
      const after = this.u8(ptr + bytes, size - GUARD - bytes);
      if (before.some((v) => v !== CANARY) || after.some((v) => v !== CANARY)) {
        throw new TinyseekError(`wasm ${kernel}: wrote outside its buffer at ${ptr} (${bytes} bytes)`);
      }
    }
  }

  /** Fresh views: growing the memory replaces memory.buffer, so never keep one across an allocation. */
  f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, length);
  }
  i32(ptr: number, length: number): Int32Array {
    return new Int32Array(this.memory.buffer, ptr, length);
  }
  u8(ptr: number, length: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, ptr, length);
  }

  /** Copies `data` into a new block. */
  put(data: Float32Array | Int32Array | Uint8Array): number {
    const ptr = this.alloc(data.byteLength);
    this.write(ptr, data);
    return ptr;
  }

  /** Copies `data` to ptr (64-byte aligned, as every block is) through the whole-memory views. */
  write(ptr: number, data: Float32Array | Int32Array | Uint8Array): void {
    if (data instanceof Float32Array) this.F32.set(data, ptr >>> 2);
    else if (data instanceof Int32Array) this.I32.set(data, ptr >>> 2);
    else this.U8.set(data, ptr);
  }

  /** Bytes in live blocks, the memory's size, and how many blocks were ever allocated (a decode step that
   *  allocates none leaves it unchanged: test/wasm-decode.test.ts). */
  stats(): { liveBytes: number; liveBlocks: number; memoryBytes: number; allocations: number } {
    let liveBytes = 0;
    for (const bytes of this.live.values()) liveBytes += bytes;
    return { liveBytes, liveBlocks: this.live.size, memoryBytes: this.memory.buffer.byteLength, allocations: this.allocations };
  }
}
