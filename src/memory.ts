/**
 * Native memory for control blocks. `struct aiocb` must live outside the JavaScript heap at one
 * address until the request is final, so control blocks come from slabs allocated with libc's
 * `calloc` and are handed out as zeroed slots. One DataView per slab serves every slot in it,
 * so a request costs no allocation call and no new view. A slab is returned to `free` as soon
 * as none of its slots is in use (the first one is kept).
 *
 * @module
 */

import type { Address } from "../ffi/mod.ts";
import type { Loaded } from "./target.ts";

/** Slots per slab. */
const SLAB_SLOTS = 64;

/** One zeroed, aligned block of native memory inside a slab. */
export interface Slot {
  /** Its native address. */
  readonly address: Address;
  /** A view of the whole slab. */
  readonly view: DataView;
  /** Where the slot starts in `view`. */
  readonly base: number;
}

interface Slab {
  readonly address: Address;
  readonly bytes: Uint8Array;
  readonly free: SlabSlot[];
  used: number;
}

interface SlabSlot extends Slot {
  readonly slab: Slab;
}

/** Fixed-size native slots from calloc'ed slabs. */
export class SlotPool {
  readonly #native: Loaded;
  readonly #size: number;
  readonly #slabs = new Set<Slab>();
  /** Slabs with at least one free slot. */
  readonly #available: Slab[] = [];

  /**
   * @param native The loaded C library.
   * @param size Bytes per slot; rounded up to a multiple of 16.
   */
  constructor(native: Loaded, size: number) {
    this.#native = native;
    this.#size = Math.ceil(size / 16) * 16;
  }

  /** A zeroed slot. Throws if native memory is exhausted. */
  acquire(): Slot {
    const slab = this.#available.at(-1) ?? this.#grow();
    const slot = slab.free.pop()!;
    if (slab.free.length === 0) this.#available.pop();
    slab.used++;
    return slot;
  }

  /** Zeroes a slot and takes it back. The caller guarantees libc no longer uses it. */
  release(slot: Slot): void {
    const { slab } = slot as SlabSlot;
    slab.bytes.fill(0, slot.base, slot.base + this.#size);
    if (slab.free.length === 0) this.#available.push(slab);
    slab.free.push(slot as SlabSlot);
    slab.used--;
    if (slab.used === 0 && this.#slabs.size > 1) this.#shrink(slab);
  }

  #grow(): Slab {
    const { backend, c } = this.#native;
    const bytes = this.#size * SLAB_SLOTS;
    const address = c.calloc(SLAB_SLOTS, this.#size);
    if (!address) throw new RangeError(`Cannot allocate ${bytes} bytes of native memory for control blocks`);
    const buffer = backend.view(address, bytes);
    const view = new DataView(buffer);
    const slab: Slab = { address, bytes: new Uint8Array(buffer), free: [], used: 0 };
    for (let i = SLAB_SLOTS - 1; i >= 0; i--) {
      const base = i * this.#size;
      slab.free.push({ address: backend.offset(address, base), view, base, slab });
    }
    this.#slabs.add(slab);
    this.#available.push(slab);
    return slab;
  }

  #shrink(slab: Slab): void {
    this.#slabs.delete(slab);
    this.#available.splice(this.#available.indexOf(slab), 1);
    this.#native.c.free(slab.address);
  }
}
