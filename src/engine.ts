/**
 * The request engine of mod.ts: submits control blocks, tracks what is in flight, lets the
 * completion strategy notice when a request is final, and hands the result back exactly once.
 *
 * @module
 */

import {
  type Checker,
  type CompletionName,
  COMPLETIONS,
  type Operation,
  Poller,
  SuspendWaiter,
  ThreadWaiter,
  TimerWaiter,
  type Waiter,
} from "./completion.ts";
import { AioError } from "./errors.ts";
import { expectNotification, notificationDue, notificationFunction, withdrawNotification } from "./notify.ts";
import { type Loaded, native, settings } from "./target.ts";
import { napper } from "./wait.ts";

/** An operation the engine tracks, with what to do once it is final. */
export interface EngineOperation extends Operation {
  /** Called once, when `block` is final; `block.error` and `block.result` hold the outcome. */
  complete(): void;
}

/** The outcome of `aio_cancel` for one request. */
export type CancelResult = "canceled" | "notcanceled" | "alldone";

/** The default strategy, in every runtime, as measured (see docs/design.md, "How completion works"). */
const DEFAULT_COMPLETION: CompletionName = "poll+suspend";

/** Picks the strategy: `configure()`, then `POSIX_AIO_COMPLETION`, then the default. */
export function selectCompletion(loaded: Loaded): CompletionName {
  const requested = settings.completion ?? loaded.backend.env("POSIX_AIO_COMPLETION");
  if (requested === undefined || requested === "") return DEFAULT_COMPLETION;
  if (!(COMPLETIONS as readonly string[]).includes(requested)) {
    throw new RangeError(
      `Invalid completion strategy ${JSON.stringify(requested)}: expected one of ${COMPLETIONS.join(", ")}`,
    );
  }
  if (requested.includes("thread") && !loaded.abi.features.sigev_thread) {
    throw new RangeError(`Invalid completion strategy "${requested}": ${loaded.target} has no SIGEV_THREAD`);
  }
  return requested as CompletionName;
}

/** A request the engine holds back: the per-process limit is reached, or libc said EAGAIN. */
interface Waiting {
  readonly op: EngineOperation;
  readonly start: () => number;
  /** Submits tried so far. */
  attempts: number;
  /** The neighbours in the queue. */
  previous: Waiting | undefined;
  next: Waiting | undefined;
}

/** Held-back requests in submission order: adding, taking the first and removing any are O(1). */
class HeldQueue {
  #first: Waiting | undefined;
  #last: Waiting | undefined;
  readonly #items = new Map<EngineOperation, Waiting>();

  /** Requests held back. */
  get size(): number {
    return this.#items.size;
  }

  /** The request held back longest. */
  get first(): Waiting | undefined {
    return this.#first;
  }

  has(op: EngineOperation): boolean {
    return this.#items.has(op);
  }

  push(item: Waiting): void {
    this.#items.set(item.op, item);
    item.previous = this.#last;
    item.next = undefined;
    if (this.#last === undefined) this.#first = item;
    else this.#last.next = item;
    this.#last = item;
  }

  /** Removes `op`'s entry; returns whether it was held back. */
  delete(op: EngineOperation): boolean {
    const item = this.#items.get(op);
    if (item === undefined) return false;
    this.#items.delete(op);
    if (item.previous === undefined) this.#first = item.next;
    else item.previous.next = item.next;
    if (item.next === undefined) this.#last = item.previous;
    else item.next.previous = item.previous;
    item.previous = item.next = undefined;
    return true;
  }
}

/** Submits a request refused with EAGAIN may take before it fails (where EAGAIN is retried). */
const MAX_ATTEMPTS = 10;
/** Longest pause between two retries of a refused submit (ms). */
const MAX_RETRY_MS = 128;

/**
 * Submits requests and settles them once, whatever notices their completion. Where the
 * platform limits the requests a process may have in libc (`limits.per_process_in_flight`),
 * the others wait in order and are submitted as earlier ones finish; where EAGAIN is transient
 * (`features.requeue_on_eagain`), a refused request waits too, retried a bounded number of times.
 */
export class Engine implements Checker {
  /** The strategy's name. */
  readonly completion: CompletionName;
  readonly #native: Loaded;
  readonly #pending = new Set<EngineOperation>();
  /** Pending operations per fd, in submission order. */
  readonly #byFd = new Map<number, Set<EngineOperation>>();
  readonly #poller: Poller | null;
  readonly #waiter: Waiter;
  readonly #limit: number | null;
  readonly #requeue: boolean;
  /** Held back, in submission order; also in `#pending`. */
  readonly #held = new HeldQueue();
  /** Requests of this engine in libc (submitted, not yet final). */
  #inLibc = 0;
  #retry: ReturnType<typeof setTimeout> | undefined;
  constructor(loaded: Loaded, completion: CompletionName) {
    this.#native = loaded;
    this.completion = completion;
    this.#limit = loaded.abi.limits.per_process_in_flight;
    this.#requeue = loaded.abi.features.requeue_on_eagain;
    const [front, back] = completion.includes("+") ? completion.split("+") : [undefined, completion];
    this.#waiter = back === "thread"
      ? new ThreadWaiter(this)
      : back === "suspend"
      ? new SuspendWaiter(loaded, this)
      : new TimerWaiter(this);
    this.#poller = front === "poll" || back === "poll"
      ? new Poller(this, this.#waiter, () => loaded.c.sched_yield(), napper(loaded))
      : null;
  }

  /** Requests this engine has in flight, held back ones included. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Requests of this engine in libc. */
  get inLibc(): number {
    return this.#inLibc;
  }

  /** Requests held back, not yet in libc. */
  get held(): number {
    return this.#held.size;
  }

  /**
   * Submits `op` by calling `start` (which returns 0 or the errno of the refusal), after giving
   * its control block the notification the strategy needs, or holds it back (see the class).
   * Returns 0 (submitted or held back) or the errno of the refusal.
   */
  submit(op: EngineOperation, start: () => number): number {
    if (this.#held.size > 0 || (this.#limit !== null && this.#inLibc >= this.#limit)) {
      this.#holdBack({ op, start, attempts: 0, previous: undefined, next: undefined });
      return 0;
    }
    const errno = this.#start(op, start);
    if (errno !== this.#native.abi.constants.EAGAIN || !this.#requeue) return errno;
    this.#holdBack({ op, start, attempts: 1, previous: undefined, next: undefined });
    this.#scheduleRetry();
    return 0;
  }

  /**
   * Checks `op` once; if it is final, settles it. Returns whether it is final. A final sync
   * first settles whatever final requests were submitted before it on the same fd: libc ran
   * them first, and callers see them settle in that order.
   */
  check(op: Operation): boolean {
    const tracked = op as EngineOperation;
    if (!this.#pending.has(tracked)) return true;
    if (this.#held.has(tracked) || !tracked.block.poll()) return false;
    const operation = tracked.block.operation;
    if (operation === "fsync" || operation === "fdatasync") {
      for (const earlier of this.#byFd.get(tracked.fd)!) {
        if (earlier === tracked) break;
        this.check(earlier);
      }
    }
    this.#inLibc--;
    this.#poller?.forget(tracked, performance.now() - tracked.submittedAt);
    this.#waiter.forget(tracked);
    if (tracked.token !== undefined) notificationDue(tracked.token);
    this.#settle(tracked);
    this.#drain();
    return true;
  }

  /**
   * Cancels `op`: a request held back is dropped at once; one in libc goes to `aio_cancel`,
   * unless that could strand requests behind it (`features.cancel_strands_followers`: it may be
   * first in its fd's queue, see `ControlBlock.cancelMayStrand()`): then it is not canceled. A
   * canceled request is settled at once with ECANCELED. Throws AioError if libc refuses the call.
   */
  cancel(op: EngineOperation): CancelResult {
    if (!this.#pending.has(op)) return "alldone";
    const { c, abi, library } = this.#native;
    const { AIO_CANCELED, AIO_NOTCANCELED, ECANCELED } = abi.constants;
    if (this.#held.delete(op)) {
      op.block.abandon(ECANCELED);
      this.#settle(op);
      return "canceled";
    }
    if (abi.features.cancel_strands_followers && op.block.cancelMayStrand()) {
      // libc could strand requests behind it on its fd for good: it runs and settles as usual.
      return this.check(op) ? "alldone" : "notcanceled";
    }
    const answer = c.aio_cancel(op.fd, op.block.address);
    if (answer === -1) throw new AioError(library.errno(), "aio_cancel", { fd: op.fd, errnos: abi.constants });
    this.check(op);
    return answer === AIO_CANCELED ? "canceled" : answer === AIO_NOTCANCELED ? "notcanceled" : "alldone";
  }

  /** Calls `start`; on success the request is in libc and watched. Returns 0 or errno. */
  #start(op: EngineOperation, start: () => number): number {
    if (this.#waiter.notify === "thread") {
      op.token = expectNotification(() => this.check(op));
      const { SIGEV_THREAD } = this.#native.abi.constants;
      op.block.setSigevent(SIGEV_THREAD, 0, op.token, notificationFunction());
    }
    const errno = start();
    if (errno !== 0) {
      if (op.token !== undefined) withdrawNotification(op.token);
      op.token = undefined;
      return errno;
    }
    op.submittedAt = performance.now();
    this.#inLibc++;
    if (!this.#held.delete(op)) this.#track(op);
    if (this.#poller !== null) this.#poller.watch(op);
    else this.#waiter.cover(op);
    return 0;
  }

  #holdBack(item: Waiting): void {
    this.#track(item.op);
    this.#held.push(item);
  }

  /** Submits held-back requests while there is room, in order. */
  #drain(): void {
    const { EAGAIN } = this.#native.abi.constants;
    while (this.#held.size > 0 && (this.#limit === null || this.#inLibc < this.#limit)) {
      const item = this.#held.first!;
      const errno = this.#start(item.op, item.start);
      if (errno === 0) continue;
      if (errno === EAGAIN && this.#requeue && ++item.attempts < MAX_ATTEMPTS) {
        this.#scheduleRetry();
        return;
      }
      // Refused for good: the request fails with the errno of its submit.
      this.#held.delete(item.op);
      item.op.block.abandon(errno);
      this.#settle(item.op);
    }
  }

  /** Retries the first held-back request later, in case nothing finishing triggers it sooner. */
  #scheduleRetry(): void {
    if (this.#retry !== undefined) return;
    const delay = Math.min(2 ** (this.#held.first?.attempts ?? 1), MAX_RETRY_MS);
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.#drain();
    }, delay);
  }

  #track(op: EngineOperation): void {
    this.#pending.add(op);
    let queue = this.#byFd.get(op.fd);
    if (queue === undefined) this.#byFd.set(op.fd, queue = new Set());
    queue.add(op);
  }

  /** Forgets a final request, frees its control block and hands the outcome over. */
  #settle(op: EngineOperation): void {
    const queue = this.#byFd.get(op.fd)!;
    queue.delete(op);
    if (queue.size === 0) this.#byFd.delete(op.fd);
    this.#pending.delete(op);
    op.block.retire();
    op.complete();
  }
}

let engine: Engine | undefined;

/** The process's engine, created with the selected strategy on first use. */
export function getEngine(): Engine {
  if (engine !== undefined) return engine;
  const loaded = native();
  engine = new Engine(loaded, selectCompletion(loaded));
  return engine;
}

/** Requests the engine holds back (0 before it exists). */
export function heldRequests(): number {
  return engine?.held ?? 0;
}
