/**
 * `ControlBlock`: one native `struct aiocb` and the life of the requests made with it. Both
 * layers build on it: `Aiocb` in `./posix` and the requests of mod.ts.
 *
 * The rules it enforces: fields never change while a request is in flight; read and write data
 * pass through a native buffer that lives until the request is final; `aio_return` is called
 * natively exactly once, as soon as the error status is final; the struct goes back to the pool
 * only when the request is final, no pending `aio_suspend` lists it and no off-thread call
 * still holds its address.
 *
 * @module
 */

import type { Address } from "../ffi/mod.ts";
import type { AiocbLayout } from "./abi.ts";
import { type Slot, SlotPool } from "./memory.ts";
import type { Loaded } from "./target.ts";

/**
 * Where a control block is in its life: `idle` (nothing submitted, or a refused submit),
 * `pending` (in flight), `complete` (final; `aio_return` already called and cached),
 * `collected` (the caller took the result), `freed`.
 */
export type BlockState = "idle" | "pending" | "complete" | "collected" | "freed";

/** The scalar `struct aiocb` members. */
export type AiocbField = Exclude<keyof AiocbLayout, "size" | "align" | "aio_sigevent" | "aio_buf">;

/**
 * What a submission does; `"other"` is an `lio_listio` entry whose opcode is neither
 * `LIO_READ` nor `LIO_WRITE` but that libc queued anyway (see `features.lio_listio.queues`).
 */
export type BlockOperation = "read" | "write" | "fsync" | "fdatasync" | "other";

const TWO_32 = 2 ** 32;

/** What `markUntaken()` writes into libc's status field: no errno, not `EINPROGRESS`. */
const UNTAKEN = -0x2a2a2a2a;

function writeInteger(view: DataView, at: number, size: number, value: number): void {
  if (size === 4) {
    view.setInt32(at, value, true);
  } else {
    view.setUint32(at, value >>> 0, true);
    view.setInt32(at + 4, Math.floor(value / TWO_32), true);
  }
}

function readInteger(view: DataView, at: number, size: number): number {
  if (size === 4) return view.getInt32(at, true);
  return view.getInt32(at + 4, true) * TWO_32 + view.getUint32(at, true);
}

/** Writes a pointer-sized unsigned integer (an address, `union sigval`) of `size` bytes. */
export function writePointer(view: DataView, at: number, size: number, value: bigint): void {
  if (size === 8) view.setBigUint64(at, BigInt.asUintN(64, value), true);
  else view.setUint32(at, Number(BigInt.asUintN(32, value)), true);
}

/**
 * Writes a `struct sigevent` at `at` in `view`: notification kind, signal, value and the
 * SIGEV_THREAD function.
 */
export function writeSigevent(
  loaded: Loaded,
  view: DataView,
  at: number,
  notify: number,
  signo: number,
  value: bigint,
  fn: Address,
): void {
  const layout = loaded.abi.sigevent;
  writeInteger(view, at + layout.sigev_notify[0], layout.sigev_notify[1], notify);
  writeInteger(view, at + layout.sigev_signo[0], layout.sigev_signo[1], signo);
  writePointer(view, at + layout.sigev_value[0], layout.sigev_value[1], value);
  const [fnAt, fnSize] = layout.sigev_notify_function;
  writePointer(view, at + fnAt, fnSize, loaded.backend.toBigInt(fn));
}

/** One pool per slot size: a harness may drive blocks with another table's layout. */
const pools = new Map<number, SlotPool>();
let inFlight = 0;
let allocated = 0;
/** Requests in flight per fd, over both layers (see `cancelMayStrand()`). */
const inFlightByFd = new Map<number, Set<ControlBlock>>();
/** Submissions so far: each request in flight knows its place. */
let submissions = 0;

/** Requests in flight and control blocks not yet freed, over both layers. */
export function blockStats(): { pending: number; allocated: number } {
  return { pending: inFlight, allocated };
}

/** One native `struct aiocb` from the pool. */
export class ControlBlock {
  readonly #native: Loaded;
  readonly #slot: Slot;
  readonly #layout: AiocbLayout;
  #state: BlockState = "idle";
  #operation: BlockOperation | undefined;
  #error = 0;
  #result = 0;
  #data: Address;
  #readInto: Uint8Array | null = null;
  #truncated = false;
  #refused = false;
  #waiters = 0;
  /** Off-thread calls whose native list holds the struct's address. */
  #pins = 0;
  #retired = false;
  /** While in flight: its fd, its place among all submissions, and its `aio_reqprio`. */
  #fd = -1;
  #submission = 0;
  #priority = 0;

  /**
   * A zeroed control block with `sigev_notify = SIGEV_NONE`.
   *
   * @param loaded The loaded C library and the table that describes it.
   */
  constructor(loaded: Loaded) {
    this.#native = loaded;
    this.#layout = loaded.abi.aiocb;
    let pool = pools.get(this.#layout.size);
    if (pool === undefined) pools.set(this.#layout.size, pool = new SlotPool(loaded, this.#layout.size));
    this.#slot = pool.acquire();
    allocated++;
    this.#data = loaded.backend.NULL;
    this.setSigevent(loaded.abi.constants.SIGEV_NONE, 0, 0n, loaded.backend.NULL);
  }

  /** The native address of the struct. */
  get address(): Address {
    return this.#slot.address;
  }

  /** Where the block is in its life. */
  get state(): BlockState {
    return this.#state;
  }

  /** The operation last submitted, if any. */
  get operation(): BlockOperation | undefined {
    return this.#operation;
  }

  /** The final error status (0 on success); meaningful once `complete`. */
  get error(): number {
    return this.#error;
  }

  /** The cached `aio_return` value; meaningful once `complete`. */
  get result(): number {
    return this.#result;
  }

  /** A read finished but its destination buffer was detached before the data could be copied. */
  get truncated(): boolean {
    return this.#truncated;
  }

  /** The request never reached libc: `error` says why (refused, or canceled while queued). */
  get refused(): boolean {
    return this.#refused;
  }

  /** Whether a pending `aio_suspend` lists this block. */
  get listed(): boolean {
    return this.#waiters > 0;
  }

  /** Reads a scalar member. Throws once the block is freed: its memory may hold another block. */
  get(field: AiocbField): number {
    if (this.#state === "freed") throw new Error(`Cannot read ${field}: the control block was freed`);
    const [offset, size] = this.#layout[field];
    return readInteger(this.#slot.view, this.#slot.base + offset, size);
  }

  /** Writes a scalar member; the caller has checked the range and that nothing is in flight. */
  set(field: AiocbField, value: number): void {
    if (this.#state === "freed") throw new Error(`Cannot write ${field}: the control block was freed`);
    const [offset, size] = this.#layout[field];
    writeInteger(this.#slot.view, this.#slot.base + offset, size, value);
  }

  /** Writes `aio_sigevent`: notification kind, signal, value and the SIGEV_THREAD function. */
  setSigevent(notify: number, signo: number, value: bigint, fn: Address): void {
    if (this.#state === "freed") throw new Error("Cannot write aio_sigevent: the control block was freed");
    const at = this.#slot.base + this.#layout.aio_sigevent[0];
    writeSigevent(this.#native, this.#slot.view, at, notify, signo, value, fn);
  }

  /**
   * Attaches the data of a read or write: a native buffer of `length` bytes that lives until the
   * request is final, holding a copy of `buffer` now for a write; for a read, `buffer` receives
   * the bytes when the read is final.
   */
  prepare(operation: "read" | "write", buffer: Uint8Array | null, length: number): void {
    this.#attach(length);
    if (operation === "read") this.#readInto = buffer;
    else if (length > 0) this.#native.c.copy_in(this.#data, buffer!, length);
  }

  /**
   * Submits the request (`aio_read`, `aio_write`, or `aio_fsync(op)` for a sync, whose data
   * `prepare()` attached). Returns 0, or the errno of the refusal; a refused block stays idle
   * and keeps its data, for a retry or `abandon()`.
   */
  start(operation: "read" | "write"): number;
  start(operation: "fsync" | "fdatasync", op: number): number;
  start(operation: Exclude<BlockOperation, "other">, op?: number): number {
    this.#assertIdle();
    const { c, library } = this.#native;
    const returned = operation === "read"
      ? c.aio_read(this.address)
      : operation === "write"
      ? c.aio_write(this.address)
      : c.aio_fsync(op!, this.address);
    if (returned !== 0) return library.errno();
    this.#entered(operation);
    return 0;
  }

  /** Prepares and submits a read; a refusal releases the data. Returns 0 or errno. */
  read(target: Uint8Array, length: number): number {
    this.prepare("read", target, length);
    return this.#releaseIfRefused(this.start("read"));
  }

  /** Prepares (copies) and submits a write; a refusal releases the data. Returns 0 or errno. */
  write(source: Uint8Array, length: number): number {
    this.prepare("write", source, length);
    return this.#releaseIfRefused(this.start("write"));
  }

  /** Submits `aio_fsync(op)`. Returns 0 or errno. */
  fsync(op: number): number {
    return this.start(op === this.#native.abi.constants.O_SYNC ? "fsync" : "fdatasync", op);
  }

  /**
   * Prepares an `lio_listio` entry that libc may take: the data buffer of a read or write, and
   * the sentinel in libc's own status field (`aiocb_status`) that tells afterwards whether libc
   * took it. `entered()` or `notEntered()` must follow the call.
   */
  prepareListEntry(operation: BlockOperation, buffer: Uint8Array | null, length: number): void {
    this.#assertIdle();
    if (operation === "read" || operation === "write") this.prepare(operation, buffer, length);
    this.markUntaken();
  }

  /**
   * Writes the sentinel (a value no libc writes) into libc's status field, where the table
   * has one. A block libc reads in a list (musl's list waiter) then reads as final, not
   * `EINPROGRESS`.
   */
  markUntaken(): void {
    const status = this.#native.abi.aiocb_status;
    if (status !== null) writeInteger(this.#slot.view, this.#slot.base + status[0], status[1], UNTAKEN);
  }

  /**
   * Whether libc took the request of this `lio_listio` entry: its status field no longer holds
   * the sentinel, or (without one, xnu) `aio_error` knows the block.
   */
  taken(): boolean {
    const status = this.#native.abi.aiocb_status;
    if (status === null) return this.#native.c.aio_error(this.address) !== -1;
    return readInteger(this.#slot.view, this.#slot.base + status[0], status[1]) !== UNTAKEN;
  }

  /** Records that `lio_listio` queued this entry. */
  entered(operation: BlockOperation): void {
    this.#entered(operation);
  }

  /** Records that `lio_listio` did not queue this entry: it stays idle, as if never submitted. */
  notEntered(): void {
    this.#detach();
  }

  /**
   * Checks a pending request once (`aio_error`). When its status is final, calls `aio_return`,
   * copies read data out and frees the data buffer. Returns whether the request is final.
   */
  poll(): boolean {
    if (this.#state !== "pending") return true;
    const { c, abi, library } = this.#native;
    if (this.#inProgress()) return false;
    const status = c.aio_error(this.address);
    if (status === abi.constants.EINPROGRESS) return false;
    if (status === -1) {
      // libc does not know the request: nothing to collect.
      this.#finish(library.errno(), -1);
    } else {
      this.#finish(status, c.aio_return(this.address));
    }
    return true;
  }

  /**
   * Whether libc's own status field, where the table has one, still reads `EINPROGRESS`: the
   * value `aio_error` would return, read without a call. glibc's `aio_error` takes the lock
   * its workers need to finish requests, and the engine checks every request in flight on each
   * turn of the event loop; the call is made once the field says final (its lock then also
   * orders the read of the result). musl keeps a waiter flag in the top bit.
   */
  #inProgress(): boolean {
    const status = this.#native.abi.aiocb_status;
    if (status === null) return false;
    const raw = readInteger(this.#slot.view, this.#slot.base + status[0], status[1]);
    return (raw & 0x7fffffff) === this.#native.abi.constants.EINPROGRESS;
  }

  /**
   * Ends a request that never reached libc (kept waiting by the engine, then refused or
   * canceled): final with `error`, result -1, nothing to collect.
   */
  abandon(error: number): void {
    this.#assertIdle();
    this.#detach();
    this.#state = "complete";
    this.#error = error;
    this.#result = -1;
    this.#refused = true;
    if (this.#retired) this.#release();
  }

  /**
   * Whether glibc's `aio_cancel` of this request, in flight, could strand others
   * (`Features.cancel_strands_followers`): it may be first in its fd's queue, not yet started
   * (no request that libc queues ahead of it, submitted earlier on the same fd number with an
   * `aio_reqprio` no larger, is still in flight as libc says now; one final in libc that nobody
   * checked yet does not count), and requests are queued behind it (submitted later, or with a
   * larger `aio_reqprio`, by either layer; final ones nobody checked yet count too). One behind a
   * request still in flight is never first: canceling it unlinks it and strands nothing. One
   * with nothing behind it strands nothing either.
   *
   * The answer holds until the request ahead finishes. Should that happen between this check
   * and the `aio_cancel` call, a few microseconds, the worker that finished it takes this one
   * at once (still holding libc's lock) unless another request is waiting for a worker.
   */
  cancelMayStrand(): boolean {
    if (this.#state !== "pending") return false;
    const { c, abi } = this.#native;
    let followed = false;
    for (const other of inFlightByFd.get(this.#fd) ?? []) {
      if (other === this) continue;
      if (other.#submission < this.#submission && other.#priority <= this.#priority) {
        if (c.aio_error(other.address) === abi.constants.EINPROGRESS) return false;
      } else {
        followed = true;
      }
    }
    return followed;
  }

  /** Marks the result taken by the caller (posix `aio_return`). */
  collect(): void {
    if (this.#state === "complete") this.#state = "collected";
  }

  /** A pending `aio_suspend` lists this block from now on. */
  list(): void {
    this.#waiters++;
  }

  /** A pending `aio_suspend` listing this block returned. */
  unlist(): void {
    this.#waiters--;
    if (this.#retired) this.#release();
  }

  /**
   * An off-thread `aio_suspend` call holds the struct's address: however the block ends, its
   * memory goes back to the pool only after `unpin()`.
   */
  pin(): void {
    this.#pins++;
  }

  /** The off-thread call holding the struct's address returned. */
  unpin(): void {
    if (--this.#pins === 0 && this.#state === "freed") this.#releaseSlot();
  }

  /**
   * Frees the block now (its memory goes back to the pool once no off-thread call holds its
   * address). Throws while a request is in flight or a call in flight lists it (`aio_suspend`,
   * musl's `lio_listio` waiter): libc would use freed memory.
   */
  free(): void {
    if (this.#state === "freed") return;
    if (this.#state === "pending") {
      throw new Error("Cannot free a control block while its request is in flight: wait until aio_error() is final");
    }
    if (this.#waiters > 0) {
      throw new Error("Cannot free a control block that a pending aio_suspend() or lio_listio() lists");
    }
    this.#retired = true;
    this.#release();
  }

  /** Frees the block as soon as its request is final and no `aio_suspend` lists it. */
  retire(): void {
    this.#retired = true;
    this.#release();
  }

  /** Throws if a request is in flight or the block is freed or listed by `aio_suspend`. */
  #assertIdle(): void {
    if (this.#state === "pending") {
      throw new Error("Cannot change or reuse a control block while its request is in flight");
    }
    if (this.#state === "freed") throw new Error("The control block was freed");
    if (this.#waiters > 0) {
      throw new Error("Cannot reuse a control block that a pending aio_suspend() or lio_listio() lists");
    }
  }

  #attach(length: number): void {
    this.#assertIdle();
    const { c, abi } = this.#native;
    const data = c.malloc(Math.max(length, 1));
    if (!data) throw new RangeError(`Cannot allocate ${length} bytes of native memory for the data buffer`);
    this.#data = data;
    const [at, size] = abi.aiocb.aio_buf;
    writePointer(this.#slot.view, this.#slot.base + at, size, this.#native.backend.toBigInt(data));
    this.set("aio_nbytes", length);
  }

  #detach(): void {
    if (!this.#data) return;
    this.#native.c.free(this.#data);
    this.#data = this.#native.backend.NULL;
    this.#readInto = null;
    const [at, size] = this.#layout.aio_buf;
    writePointer(this.#slot.view, this.#slot.base + at, size, 0n);
  }

  #releaseIfRefused(errno: number): number {
    if (errno !== 0) this.#detach();
    return errno;
  }

  #entered(operation: BlockOperation): void {
    this.#state = "pending";
    this.#operation = operation;
    this.#truncated = false;
    this.#refused = false;
    inFlight++;
    // Read back: glibc sets aio_reqprio of a sync to 0.
    this.#fd = this.get("aio_fildes");
    this.#priority = this.get("aio_reqprio");
    this.#submission = ++submissions;
    let queue = inFlightByFd.get(this.#fd);
    if (queue === undefined) inFlightByFd.set(this.#fd, queue = new Set());
    queue.add(this);
  }

  #finish(error: number, result: number): void {
    this.#state = "complete";
    this.#error = error;
    this.#result = result;
    inFlight--;
    const queue = inFlightByFd.get(this.#fd)!;
    queue.delete(this);
    if (queue.size === 0) inFlightByFd.delete(this.#fd);
    const target = this.#readInto;
    if (target !== null && result > 0) {
      // A destination detached meanwhile has no memory left to copy into.
      if (target.byteLength >= result) this.#native.c.copy_out(target, this.#data, result);
      else this.#truncated = true;
    }
    this.#detach();
    if (this.#retired) this.#release();
  }

  #release(): void {
    if (this.#state === "pending" || this.#state === "freed" || this.#waiters > 0) return;
    this.#state = "freed";
    if (this.#pins === 0) this.#releaseSlot();
  }

  #releaseSlot(): void {
    allocated--;
    pools.get(this.#layout.size)!.release(this.#slot);
  }
}
