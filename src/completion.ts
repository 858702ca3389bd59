/**
 * Completion strategies: how the JavaScript thread learns that a request in flight is final,
 * without blocking the event loop or spinning a core while the device is slow.
 *
 * - `thread`: libc announces each completion with SIGEV_THREAD into a thread-safe callback.
 * - `suspend`: `aio_suspend` over the pending requests, called off the JavaScript thread
 *   (Deno: a nonblocking FFI call; Bun: a Worker), a few calls at most.
 * - `poll`: `aio_error` checked from `setImmediate` while completions arrive fast, then on
 *   timers that back off.
 * - `poll+suspend`, `poll+thread`: the same fast polling, handing over to the blocking strategy
 *   when the device turns out to be slow.
 *
 * Nothing here settles promises: strategies only call `check()`, which the engine answers.
 *
 * @module
 */

import type { ControlBlock } from "./control_block.ts";
import type { Loaded } from "./target.ts";
import { type Napper, type Suspender, suspender, type Watcher } from "./wait.ts";

/** A completion strategy's name, as `POSIX_AIO_COMPLETION` and `configure()` accept it. */
export type CompletionName = "poll+suspend" | "poll+thread" | "poll" | "suspend" | "thread";

/** Every strategy. */
export const COMPLETIONS: readonly CompletionName[] = ["poll+suspend", "poll+thread", "poll", "suspend", "thread"];

/** A request in flight, as the engine and the strategies see it. */
export interface Operation {
  readonly block: ControlBlock;
  readonly fd: number;
  /** `performance.now()` at submission. */
  submittedAt: number;
  /** Token of the SIGEV_THREAD notification it was submitted with. */
  token: bigint | undefined;
}

/** What strategies call: checks a request once and settles it if final. */
export interface Checker {
  /** Returns whether the operation is final (and now settled). */
  check(op: Operation): boolean;
}

/** Something that notices the completion of the operations it covers. */
export interface Waiter {
  /** Whether requests must be submitted with SIGEV_THREAD for this waiter. */
  readonly notify: "none" | "thread";
  /** Takes responsibility for noticing that `op` is final. */
  cover(op: Operation): void;
  /** `op` is final (noticed by anyone): drop it. */
  forget(op: Operation): void;
}

/** Spinning continues while some completion was noticed within this many ms. */
const SPIN_WINDOW_MS = 0.1;
/**
 * While the event loop has nothing else to run, the spin goes on this long instead, napping in
 * `aio_suspend` on the JavaScript thread (see `Napper`): a sync of 100-300 µs then wakes the
 * thread that waits for it, as from C, with no thread between them and no CPU spent.
 */
const NAP_WINDOW_MS = 0.3;
/**
 * The spin yields during this much of the window before it naps: a fast device's sync is
 * noticed sooner by a turn of the loop than by a thread woken up.
 */
const SPIN_BEFORE_NAP_MS = 0.03;
/** Longest nap: the event loop runs nothing meanwhile, not even I/O callbacks. */
const NAP_SLICE_MS = 0.05;
/**
 * A turn of the loop (from the end of one turn of the spin to the start of the next) shorter
 * than this ran nothing else: the loop is idle, and the spin may nap.
 */
const IDLE_TURN_MS = 0.02;
/**
 * While the device is slow, one submission in this many still spins, to notice it turning fast
 * (at first: see `MAX_PROBE_EVERY`).
 */
const PROBE_EVERY = 16;
/** Spins given up in a row (no completion within the window) that mark the device slow. */
const MISSES_FOR_SLOW = 3;
/** While probes keep missing, the probe interval doubles up to this many submissions. */
const MAX_PROBE_EVERY = 256;

/**
 * Polls `aio_error` from `setImmediate` while completions arrive within `SPIN_WINDOW_MS` of
 * each other (`NAP_WINDOW_MS` while the loop is idle, napping between turns), and hands every
 * operation it holds to `waiter` once they stop arriving.
 */
export class Poller {
  readonly #checker: Checker;
  readonly #waiter: Waiter;
  readonly #relax: () => void;
  readonly #napper: Napper | null;
  /** `performance.now()` at the end of the last turn of the spin (0: none yet). */
  #turnEnd = 0;
  readonly #hot = new Set<Operation>();
  #scheduled = false;
  #fast = true;
  #misses = 0;
  #spinStart = 0;
  #lastProgress = 0;
  #submissions = 0;
  #probeEvery = PROBE_EVERY;
  readonly #tick = (): void => this.#poll();

  /**
   * @param checker Checks and settles operations.
   * @param waiter Takes the operations over once completions stop arriving fast.
   * @param relax Called between two turns of the spin: `sched_yield()`, so that a thread of the
   * C library waiting for this thread's CPU (woken by the submit, placed beside its waker) runs
   * now rather than after the spin gives up.
   * @param napper Naps on the JavaScript thread between two turns while the loop is idle, or
   * `null`: the spin only yields, for `SPIN_WINDOW_MS`.
   */
  constructor(checker: Checker, waiter: Waiter, relax: () => void, napper: Napper | null = null) {
    this.#checker = checker;
    this.#waiter = waiter;
    this.#relax = relax;
    this.#napper = napper;
  }

  /** A request was submitted. */
  watch(op: Operation): void {
    if (!this.#fast && ++this.#submissions % this.#probeEvery !== 0) {
      this.#waiter.cover(op);
      return;
    }
    if (this.#hot.size === 0) {
      this.#spinStart = op.submittedAt;
      this.#turnEnd = 0;
    }
    this.#hot.add(op);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#tick);
    }
  }

  /** `op` is final; `latency` is how long after submission that was noticed (ms). */
  forget(op: Operation, latency: number): void {
    this.#hot.delete(op);
    if (latency < SPIN_WINDOW_MS) this.#setFast();
  }

  #setFast(): void {
    this.#fast = true;
    this.#misses = 0;
    this.#probeEvery = PROBE_EVERY;
  }

  #poll(): void {
    this.#scheduled = false;
    const before = this.#hot.size;
    for (const op of this.#hot) this.#checker.check(op);
    const now = performance.now();
    if (this.#hot.size < before) {
      this.#lastProgress = now;
      this.#setFast();
    }
    if (this.#hot.size === 0) return;
    // The loop ran nothing else since the last turn, and a nap can list every request spun on.
    const idle = this.#napper !== null && this.#turnEnd > 0 && now - this.#turnEnd < IDLE_TURN_MS
      && this.#hot.size <= this.#napper.capacity;
    const waited = now - Math.max(this.#lastProgress, this.#spinStart);
    const window = idle ? NAP_WINDOW_MS : SPIN_WINDOW_MS;
    if (waited > window) {
      // One late completion is noise; several in a row mean the device is slow. A probe that
      // misses on a slow device makes the next one come later: each costs a spin of the window.
      if (!this.#fast) this.#probeEvery = Math.min(this.#probeEvery * 2, MAX_PROBE_EVERY);
      else if (++this.#misses >= MISSES_FOR_SLOW) this.#fast = false;
      for (const op of this.#hot) this.#waiter.cover(op);
      this.#hot.clear();
      return;
    }
    this.#scheduled = true;
    const nap = idle && now - this.#spinStart >= SPIN_BEFORE_NAP_MS
      && this.#napper!.nap(this.#blocks(), this.#hot.size, Math.min(window - waited, NAP_SLICE_MS));
    if (!nap) this.#relax();
    this.#turnEnd = performance.now();
    setImmediate(this.#tick);
  }

  /** The control blocks of the operations spun on. */
  *#blocks(): Generator<ControlBlock> {
    for (const op of this.#hot) yield op.block;
  }
}

/** Longest pause between two checks of the `poll` strategy's timers (ms). */
const MAX_BACKOFF_MS = 50;

/** Checks covered operations on timers that back off from 1 ms while nothing completes. */
export class TimerWaiter implements Waiter {
  readonly notify = "none";
  readonly #checker: Checker;
  readonly #covered = new Set<Operation>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #delay = 1;

  constructor(checker: Checker) {
    this.#checker = checker;
  }

  cover(op: Operation): void {
    if (this.#covered.has(op)) return;
    this.#covered.add(op);
    this.#delay = 1;
    this.#timer ??= setTimeout(() => this.#poll(), this.#delay);
  }

  forget(op: Operation): void {
    this.#covered.delete(op);
    if (this.#covered.size === 0 && this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #poll(): void {
    this.#timer = undefined;
    const before = this.#covered.size;
    for (const op of this.#covered) this.#checker.check(op);
    if (this.#covered.size === 0) return;
    this.#delay = this.#covered.size < before ? 1 : Math.min(this.#delay * 2, MAX_BACKOFF_MS);
    this.#timer = setTimeout(() => this.#poll(), this.#delay);
  }
}

/** How often the `thread` strategy checks its operations itself, in case a notification is lost. */
const THREAD_FALLBACK_MS = 250;

/**
 * Relies on SIGEV_THREAD notifications (the engine registers one per request and checks the
 * request when it arrives), with a slow timer as a safety net: glibc sends no notification at
 * all when it cannot create the notification thread.
 */
export class ThreadWaiter implements Waiter {
  readonly notify = "thread";
  readonly #checker: Checker;
  readonly #covered = new Set<Operation>();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(checker: Checker) {
    this.#checker = checker;
  }

  cover(op: Operation): void {
    this.#covered.add(op);
    this.#timer ??= setInterval(() => {
      for (const covered of this.#covered) this.#checker.check(covered);
    }, THREAD_FALLBACK_MS);
  }

  forget(op: Operation): void {
    this.#covered.delete(op);
    if (this.#covered.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}

/**
 * Waits in `aio_suspend` off the JavaScript thread over the covered operations, through the
 * process's one `aio_suspend` driver (`src/wait.ts`), which the C layer's waits share: a few
 * calls at most, each returning as soon as one of its operations is final. Waiting costs
 * nothing; no request of libc's own pool is spent on waking a call.
 */
export class SuspendWaiter implements Waiter, Watcher {
  readonly notify = "none";
  readonly deadline = Infinity;
  readonly #checker: Checker;
  readonly #driver: Suspender;
  readonly #covered = new Map<ControlBlock, Operation>();

  constructor(native: Loaded, checker: Checker) {
    this.#checker = checker;
    this.#driver = suspender(native);
  }

  cover(op: Operation): void {
    if (this.#covered.has(op.block)) return;
    this.#covered.set(op.block, op);
    this.#driver.watch(op.block, this);
  }

  forget(op: Operation): void {
    if (this.#covered.delete(op.block)) this.#driver.unwatch(op.block, this);
  }

  final(block: ControlBlock): void {
    const op = this.#covered.get(block);
    if (op === undefined) return;
    this.#covered.delete(block);
    this.#checker.check(op);
  }
}
