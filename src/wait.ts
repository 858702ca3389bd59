/**
 * Waiting off the JavaScript thread until control blocks are final: the one `aio_suspend`
 * driver of the process, shared by the engine's `suspend` strategies, the C layer's
 * `aio_suspend` and `lio_listio(LIO_WAIT)`, and the owner of blocks dropped in flight.
 *
 * Every off-thread call holds a thread (one of Deno's blocking pool, a Bun Worker), so the
 * driver makes a few calls at most over the union of everything anyone waits for, whoever
 * waits and however many wait. Each waiter is told when one of its blocks is final and keeps
 * its own deadline on a JavaScript timer. Blocks no call can list yet are checked on timers, and
 * a failed call (no memory for its list, a Worker that died, an unexpected return) leaves its
 * blocks watched: they are checked on timers and listed again after a pause that doubles with
 * each failure in a row.
 *
 * It also naps: a short `aio_suspend` on the JavaScript thread itself, which the engine's spin
 * makes instead of yielding while the event loop has nothing else to run (see `Napper`).
 *
 * @module
 */

import type { Address } from "../ffi/mod.ts";
import { type ControlBlock, writePointer } from "./control_block.ts";
import type { Loaded } from "./target.ts";

/** Most `aio_suspend` calls in flight at once, over every waiter of the process. */
export const MAX_CALLS = 4;
/** Entries per call where the platform sets no limit. */
const DEFAULT_MAX_ENTRIES = 1024;
/** A call lasts at most this long (ms), so that a call nobody needs any longer ends. */
const CALL_SLICE_MS = 1000;
/** A call is not worth making for a wait that ends sooner than this (ms). */
const SHORTEST_CALL_MS = 1;
/** Longest pause between two checks of blocks no call lists (ms). */
const MAX_CHECK_MS = 50;
/** Longest pause before listing blocks again after failed calls (ms). */
const MAX_FAILURE_PAUSE_MS = 1000;

/**
 * A native array of `addresses` (`NULL` entries allowed), as `aio_suspend` and `lio_listio`
 * take it, with room for one entry at least. Returns the backend's `NULL` if libc has no memory
 * for it; the caller frees it with `c.free`.
 *
 * @param loaded The loaded C library.
 * @param addresses The entries, in order.
 */
export function pointerList(loaded: Loaded, addresses: readonly Address[]): Address {
  const { backend, c } = loaded;
  const length = Math.max(addresses.length, 1);
  const size = loaded.abi.pointer_size;
  const list = c.calloc(length, size);
  if (!list) return backend.NULL;
  const view = new DataView(backend.view(list, length * size));
  addresses.forEach((address, index) => writePointer(view, index * size, size, backend.toBigInt(address)));
  return list;
}

/** Someone waiting for control blocks. */
export interface Watcher {
  /** `performance.now()` after which this watcher no longer needs a call (`Infinity`: never). */
  readonly deadline: number;
  /** One of the blocks it watches is final (its status is cached in the block). */
  final(block: ControlBlock): void;
}

/** A native `struct timespec` and a view of it. */
interface Timespec {
  readonly address: Address;
  readonly view: DataView;
}

/** The `aio_suspend` driver of one loaded C library (see the module). */
export class Suspender {
  readonly #native: Loaded;
  readonly #maxEntries: number;
  /** Every watched block, with who watches it. */
  readonly #watched = new Map<ControlBlock, Watcher | Set<Watcher>>();
  /** Blocks some call in flight lists. */
  readonly #listed = new Set<ControlBlock>();
  /** Timeouts of calls that returned, for the next ones (`MAX_CALLS` at most, never freed). */
  readonly #timespecs: Timespec[] = [];
  #calls = 0;
  #made = 0;
  #armQueued = false;
  /** Failed calls in a row. */
  #failures = 0;
  #pause: ReturnType<typeof setTimeout> | undefined;
  #checkTimer: ReturnType<typeof setTimeout> | undefined;
  #checkDelay = 1;
  readonly #arm = (): void => {
    this.#armQueued = false;
    this.#rearm();
  };
  readonly #check = (): void => this.#checkUnlisted();

  constructor(loaded: Loaded) {
    this.#native = loaded;
    this.#maxEntries = loaded.abi.limits.aio_suspend_max_entries ?? DEFAULT_MAX_ENTRIES;
  }

  /** `aio_suspend` calls in flight. */
  get calls(): number {
    return this.#calls;
  }

  /** `aio_suspend` calls made so far. */
  get made(): number {
    return this.#made;
  }

  /** `watcher` is told (once per block) when `block`, a request in flight, is final. */
  watch(block: ControlBlock, watcher: Watcher): void {
    const current = this.#watched.get(block);
    if (current === undefined) this.#watched.set(block, watcher);
    else if (current instanceof Set) current.add(watcher);
    else if (current !== watcher) this.#watched.set(block, new Set([current, watcher]));
    if (!this.#listed.has(block) && !this.#armQueued) {
      this.#armQueued = true;
      queueMicrotask(this.#arm);
    }
  }

  /** `watcher` no longer waits for `block`. */
  unwatch(block: ControlBlock, watcher: Watcher): void {
    const current = this.#watched.get(block);
    if (current === watcher) {
      this.#watched.delete(block);
    } else if (current instanceof Set && current.delete(watcher) && current.size === 0) {
      this.#watched.delete(block);
    }
    if (this.#watched.size === 0) this.#idle();
  }

  /** Nothing is watched: no timer keeps the process alive (calls in flight end on their own). */
  #idle(): void {
    clearTimeout(this.#checkTimer);
    clearTimeout(this.#pause);
    this.#checkTimer = this.#pause = undefined;
  }

  /** Checks `block` once; if final, tells its watchers. Returns whether it is final. */
  #settle(block: ControlBlock): boolean {
    const current = this.#watched.get(block);
    if (current === undefined || !block.poll()) return false;
    this.#watched.delete(block);
    if (this.#watched.size === 0) this.#idle();
    for (const watcher of current instanceof Set ? [...current] : [current]) {
      try {
        watcher.final(block);
      } catch (error) {
        this.#native.backend.reportError(error);
      }
    }
    return true;
  }

  /** The latest deadline among the watchers of `block`. */
  #deadline(block: ControlBlock): number {
    const current = this.#watched.get(block)!;
    if (!(current instanceof Set)) return current.deadline;
    let latest = -Infinity;
    for (const watcher of current) latest = Math.max(latest, watcher.deadline);
    return latest;
  }

  /** Lists watched blocks no call lists yet in new calls, as far as the limit allows. */
  #rearm(): void {
    if (this.#pause !== undefined) {
      // After failed calls: timers check whatever is watched until the pause ends.
      this.#scheduleCheck();
      return;
    }
    const now = performance.now();
    let batch: ControlBlock[] = [];
    let deadline = -Infinity;
    let unlisted = false;
    for (const block of this.#watched.keys()) {
      if (this.#listed.has(block)) continue;
      const until = this.#deadline(block);
      // Its watchers are about to give up: their timers answer them.
      if (until - now < SHORTEST_CALL_MS) continue;
      if (this.#calls >= MAX_CALLS) {
        unlisted = true;
        break;
      }
      batch.push(block);
      deadline = Math.max(deadline, until);
      if (batch.length === this.#maxEntries) {
        this.#call(batch, deadline);
        batch = [];
        deadline = -Infinity;
      }
    }
    if (batch.length > 0) this.#call(batch, deadline);
    if (unlisted) this.#scheduleCheck();
  }

  /**
   * Checks the watched blocks no call lists, from 1 ms on, on a timer that backs off while none
   * is final.
   */
  #scheduleCheck(): void {
    if (this.#checkTimer !== undefined) return;
    this.#checkDelay = 1;
    this.#checkTimer = setTimeout(this.#check, this.#checkDelay);
  }

  #checkUnlisted(): void {
    this.#checkTimer = undefined;
    let left = false;
    let progressed = false;
    for (const block of [...this.#watched.keys()]) {
      if (this.#listed.has(block)) continue;
      if (this.#settle(block)) progressed = true;
      else left = true;
    }
    if (progressed) this.#rearm();
    if (!left) return;
    this.#checkDelay = progressed ? 1 : Math.min(this.#checkDelay * 2, MAX_CHECK_MS);
    this.#checkTimer ??= setTimeout(this.#check, this.#checkDelay);
  }

  /**
   * One `aio_suspend` call over `blocks` until `deadline` (capped at `CALL_SLICE_MS`), then:
   * the final ones are settled and the rest listed again.
   */
  async #call(blocks: ControlBlock[], deadline: number): Promise<void> {
    const { c, abi } = this.#native;
    const ms = Math.max(Math.min(deadline - performance.now(), CALL_SLICE_MS), 0);
    const list = pointerList(this.#native, blocks.map((block) => block.address));
    const timespec = list ? this.#timespec() : undefined;
    if (!list || !timespec) {
      if (list) c.free(list);
      this.#failed();
      return;
    }
    const seconds = Math.floor(ms / 1000);
    timespec.view.setBigInt64(abi.timespec.tv_sec[0], BigInt(seconds), true);
    timespec.view.setBigInt64(abi.timespec.tv_nsec[0], BigInt(Math.ceil((ms - seconds * 1000) * 1e6)), true);
    for (const block of blocks) {
      block.pin();
      this.#listed.add(block);
    }
    this.#calls++;
    this.#made++;
    const start = performance.now();
    let result = -1;
    try {
      ({ result } = await c.aio_suspend(list, blocks.length, timespec.address));
    } catch {
      // The call could not be made (a Bun Worker failed): a failure like any other.
    }
    const elapsed = performance.now() - start;
    this.#calls--;
    c.free(list);
    this.#timespecs.push(timespec);
    for (const block of blocks) {
      this.#listed.delete(block);
      block.unpin();
    }
    let progressed = false;
    for (const block of blocks) progressed = this.#settle(block) || progressed;
    // Deno cannot read the errno of an off-thread call: a timeout shows as the time elapsed.
    if (result === 0 || progressed || elapsed >= ms - SHORTEST_CALL_MS) {
      this.#failures = 0;
      this.#rearm();
    } else {
      this.#failed();
    }
  }

  /** A `struct timespec` for a call: kept for the next call once it returns. */
  #timespec(): Timespec | undefined {
    const spare = this.#timespecs.pop();
    if (spare !== undefined) return spare;
    const { backend, c, abi } = this.#native;
    const address = c.calloc(1, abi.timespec.size);
    if (!address) return undefined;
    return { address, view: new DataView(backend.view(address, abi.timespec.size)) };
  }

  /** A call failed: its blocks are checked on timers, and listed again after a pause. */
  #failed(): void {
    this.#failures++;
    if (this.#watched.size === 0) return;
    this.#scheduleCheck();
    if (this.#pause !== undefined) return;
    this.#pause = setTimeout(() => {
      this.#pause = undefined;
      this.#rearm();
    }, Math.min(2 ** this.#failures, MAX_FAILURE_PAUSE_MS));
  }
}

/** Most blocks a nap lists; more in flight at once and the spin yields instead. */
const NAP_ENTRIES = 16;

/**
 * `aio_suspend` on the JavaScript thread with a timeout of microseconds: the C library's thread
 * that finishes a listed request wakes this thread itself, with no thread between them, and the
 * wait costs no CPU. It blocks the event loop for its timeout at most (plus the kernel's timer
 * slack, 50 µs by default), so the spin naps only while the loop has nothing else to run. The
 * list and the timeout live in native memory allocated once; nothing is kept listed after the
 * call returns.
 */
export class Napper {
  readonly #native: Loaded;
  readonly #capacity: number;
  readonly #list: Address;
  readonly #view: DataView | undefined;
  readonly #timespec: Timespec | undefined;

  constructor(loaded: Loaded) {
    this.#native = loaded;
    const { abi, backend, c } = loaded;
    this.#capacity = Math.min(NAP_ENTRIES, abi.limits.aio_suspend_max_entries ?? NAP_ENTRIES);
    this.#list = c.calloc(this.#capacity, abi.pointer_size);
    const timespec = c.calloc(1, abi.timespec.size);
    if (this.#list && timespec) {
      this.#view = new DataView(backend.view(this.#list, this.#capacity * abi.pointer_size));
      this.#timespec = { address: timespec, view: new DataView(backend.view(timespec, abi.timespec.size)) };
    } else {
      // No memory: never naps (the spin yields).
      if (this.#list) c.free(this.#list);
      if (timespec) c.free(timespec);
    }
  }

  /** Most blocks a nap lists (0 without memory for its list: it never naps). */
  get capacity(): number {
    return this.#view === undefined ? 0 : this.#capacity;
  }

  /**
   * Waits until one of `blocks` (requests in flight) is final or `ms` pass, on this thread.
   * Returns false, without waiting, when there are more blocks than a nap lists or no memory.
   */
  nap(blocks: Iterable<ControlBlock>, count: number, ms: number): boolean {
    const view = this.#view;
    const timespec = this.#timespec;
    if (view === undefined || timespec === undefined || count > this.#capacity || count === 0) return false;
    const { abi, backend, c } = this.#native;
    const size = abi.pointer_size;
    let index = 0;
    for (const block of blocks) {
      if (index === count) break;
      writePointer(view, index++ * size, size, backend.toBigInt(block.address));
    }
    const nanoseconds = Math.max(Math.round(ms * 1e6), 1000);
    timespec.view.setBigInt64(abi.timespec.tv_sec[0], BigInt(Math.floor(nanoseconds / 1e9)), true);
    timespec.view.setBigInt64(abi.timespec.tv_nsec[0], BigInt(nanoseconds % 1e9), true);
    // 0 (one is final), or -1 with EAGAIN (timeout) or EINTR (a signal): the caller checks.
    c.aio_suspend_nap(this.#list, index, timespec.address);
    return true;
  }
}

const nappers = new WeakMap<Loaded, Napper>();

/** The `Napper` of `loaded`, created on first use. */
export function napper(loaded: Loaded): Napper {
  let one = nappers.get(loaded);
  if (one === undefined) nappers.set(loaded, one = new Napper(loaded));
  return one;
}

const drivers = new WeakMap<Loaded, Suspender>();

/** The `aio_suspend` driver of `loaded`, created on first use. */
export function suspender(loaded: Loaded): Suspender {
  let driver = drivers.get(loaded);
  if (driver === undefined) drivers.set(loaded, driver = new Suspender(loaded));
  return driver;
}

/**
 * Waits until one of `blocks` is final, or `milliseconds` pass (forever when undefined).
 * Resolves 0, or `EAGAIN` on timeout. While it waits, the blocks read as listed by a pending
 * `aio_suspend` (they cannot be freed or reused).
 *
 * @param loaded The loaded C library.
 * @param blocks The blocks to wait for.
 * @param milliseconds How long to wait at most.
 */
export function waitAny(loaded: Loaded, blocks: readonly ControlBlock[], milliseconds?: number): Promise<number> {
  const { EAGAIN } = loaded.abi.constants;
  if (blocks.some((block) => block.poll())) return Promise.resolve(0);
  const deadline = milliseconds === undefined ? Infinity : performance.now() + milliseconds;
  if (deadline - performance.now() <= 0) return Promise.resolve(EAGAIN);
  const driver = suspender(loaded);
  return new Promise((resolve) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let settled = false;
    const finish = (errno: number): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      for (const block of blocks) {
        driver.unwatch(block, watcher);
        block.unlist();
      }
      resolve(errno);
    };
    const watcher: Watcher = { deadline, final: () => finish(0) };
    const expire = (): void => {
      const left = deadline - performance.now();
      if (blocks.some((block) => block.poll())) finish(0);
      else if (left > 0) timer = setTimeout(expire, left);
      else finish(EAGAIN);
    };
    for (const block of blocks) {
      block.list();
      driver.watch(block, watcher);
    }
    if (deadline !== Infinity) timer = setTimeout(expire, deadline - performance.now());
  });
}

/**
 * Takes over a control block whose owner is gone while its request is in flight (an `Aiocb`
 * collected or disposed of): it is freed once final. Both layers hand such blocks here.
 *
 * @param loaded The loaded C library.
 * @param block The block, its request in flight.
 */
export function adopt(loaded: Loaded, block: ControlBlock): void {
  if (block.poll()) {
    block.retire();
    return;
  }
  suspender(loaded).watch(block, ADOPTER);
}

/** The owner of adopted blocks: frees each once final. */
const ADOPTER: Watcher = { deadline: Infinity, final: (block) => block.retire() };
