/**
 * The request engine of mod.ts: submits control blocks, tracks what is in flight, lets the
 * completion strategy notice when a request is final, and hands the result back exactly once.
 *
 * @module
 */

import { Admission } from "./admission.ts";
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
import type { ControlBlock } from "./control_block.ts";
import { AioError } from "./errors.ts";
import { expectNotification, notificationDue, notificationFunction, withdrawNotification } from "./notify.ts";
import { type Loaded, native, settings } from "./target.ts";

/**
 * The fewest descriptors with requests in glibc at once under adaptive admission (see
 * src/admission.ts), or `null` for none: off by default, since side by side it did not beat
 * glibc's own queueing in either runtime (README, "How completion works").
 */
const ADMIT_MIN: number | null = null;

/** An operation the engine tracks, with what to do once it is final. */
export interface EngineOperation extends Operation {
  /** Called once, when `block` is final; `block.error` and `block.result` hold the outcome. */
  complete(): void;
}

/** The outcome of `aio_cancel` for one request. */
export type CancelResult = "canceled" | "notcanceled" | "alldone";

/** The default strategy per runtime, as measured (see README, "How completion works"). */
const DEFAULTS: Readonly<Record<string, CompletionName>> = {
  deno: "poll+suspend",
  bun: "poll+suspend",
};

/** Picks the strategy: `configure()`, then `POSIX_AIO_COMPLETION`, then the default. */
export function selectCompletion(loaded: Loaded): CompletionName {
  const requested = settings.completion ?? loaded.backend.env("POSIX_AIO_COMPLETION");
  if (requested === undefined || requested === "") {
    const name = DEFAULTS[loaded.backend.runtime];
    return loaded.abi.features.sigev_thread || !name.includes("thread") ? name : "poll+suspend";
  }
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

/** Submits requests and settles them once, whatever notices their completion. */
/** A request the engine holds back: the per-process limit is reached, or libc said EAGAIN. */
interface Waiting {
  readonly op: EngineOperation;
  readonly start: () => number;
  /** Submits tried so far. */
  attempts: number;
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
  readonly #waiting: Waiting[] = [];
  readonly #held = new Set<EngineOperation>();
  /** Requests of this engine in libc (submitted, not yet final). */
  #inLibc = 0;
  #retry: ReturnType<typeof setTimeout> | undefined;
  /** glibc's pool: how many descriptors may have requests in libc, adapted to the device. */
  readonly admission: Admission | null;

  /** `admitMin`: adaptive admission into glibc's pool from that many descriptors, or `null`. */
  constructor(loaded: Loaded, completion: CompletionName, admitMin: number | null = ADMIT_MIN) {
    this.#native = loaded;
    this.completion = completion;
    this.#limit = loaded.abi.limits.per_process_in_flight;
    this.#requeue = loaded.abi.features.requeue_on_eagain;
    // glibc's thread pool (aio_init); where the kernel limits requests (macOS), `#limit` rules.
    this.admission = loaded.abi.aioinit === null || this.#limit !== null || admitMin === null
      ? null
      : new Admission(admitMin, settings.threads, () => this.#drain());
    const [front, back] = completion.includes("+") ? completion.split("+") : [undefined, completion];
    this.#waiter = back === "thread"
      ? new ThreadWaiter(this)
      : back === "suspend"
      ? new SuspendWaiter(loaded, this)
      : new TimerWaiter(this);
    this.#poller = front === "poll" || back === "poll" ? new Poller(this, this.#waiter) : null;
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
    if (
      this.#waiting.length > 0 || (this.#limit !== null && this.#inLibc >= this.#limit)
      || this.admission?.admits(op.fd) === false
    ) {
      this.#holdBack({ op, start, attempts: 0 });
      this.admission?.hold();
      return 0;
    }
    const errno = this.#start(op, start);
    if (errno !== this.#native.abi.constants.EAGAIN || !this.#requeue) return errno;
    this.#holdBack({ op, start, attempts: 1 });
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
    const latency = performance.now() - tracked.submittedAt;
    this.admission?.finished(tracked.fd, latency);
    this.#poller?.forget(tracked, latency);
    this.#waiter.forget(tracked);
    if (tracked.token !== undefined) notificationDue(tracked.token);
    this.#settle(tracked);
    this.#drain();
    return true;
  }

  /**
   * Cancels `op`: a request held back is dropped at once; one in libc goes to `aio_cancel`. A
   * canceled request is settled at once with ECANCELED. Throws AioError if libc refuses the call.
   */
  cancel(op: EngineOperation): CancelResult {
    if (!this.#pending.has(op)) return "alldone";
    const { c, abi, library } = this.#native;
    const { AIO_CANCELED, AIO_NOTCANCELED, ECANCELED } = abi.constants;
    if (this.#held.delete(op)) {
      this.#waiting.splice(this.#waiting.findIndex((item) => item.op === op), 1);
      op.block.abandon(ECANCELED);
      this.#settle(op);
      return "canceled";
    }
    const answer = c.aio_cancel(op.fd, op.block.address);
    if (answer === -1) throw new AioError(library.errno(), "aio_cancel", { fd: op.fd });
    this.check(op);
    return answer === AIO_CANCELED ? "canceled" : answer === AIO_NOTCANCELED ? "notcanceled" : "alldone";
  }

  /**
   * Takes over a control block whose owner is gone while its request is in flight: it is
   * collected and freed once final.
   */
  adopt(block: ControlBlock, fd: number): void {
    const op: EngineOperation = { block, fd, submittedAt: performance.now(), token: undefined, complete() {} };
    this.#track(op);
    this.#inLibc++;
    this.admission?.started(fd);
    this.#waiter.cover(op);
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
    this.admission?.started(op.fd);
    if (!this.#held.delete(op)) this.#track(op);
    if (this.#poller !== null) this.#poller.watch(op);
    else this.#waiter.cover(op);
    return 0;
  }

  #holdBack(item: Waiting): void {
    this.#track(item.op);
    this.#held.add(item.op);
    this.#waiting.push(item);
  }

  /** Submits held-back requests while there is room, in order. */
  #drain(): void {
    const { EAGAIN } = this.#native.abi.constants;
    while (this.#waiting.length > 0 && (this.#limit === null || this.#inLibc < this.#limit)) {
      const item = this.#waiting[0];
      if (this.admission?.admits(item.op.fd) === false) return this.admission.hold();
      const errno = this.#start(item.op, item.start);
      if (errno === 0) {
        this.#waiting.shift();
        continue;
      }
      if (errno === EAGAIN && this.#requeue && ++item.attempts < MAX_ATTEMPTS) {
        this.#scheduleRetry();
        return;
      }
      // Refused for good: the request fails with the errno of its submit.
      this.#waiting.shift();
      this.#held.delete(item.op);
      item.op.block.abandon(errno);
      this.#settle(item.op);
    }
  }

  /** Retries the first held-back request later, in case nothing finishing triggers it sooner. */
  #scheduleRetry(): void {
    if (this.#retry !== undefined) return;
    const delay = Math.min(2 ** (this.#waiting[0]?.attempts ?? 1), MAX_RETRY_MS);
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
