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
import type { ControlBlock } from "./control_block.ts";
import { AioError } from "./errors.ts";
import { expectNotification, notificationDue, notificationFunction, withdrawNotification } from "./notify.ts";
import { type Loaded, native, settings } from "./target.ts";

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
export class Engine implements Checker {
  /** The strategy's name. */
  readonly completion: CompletionName;
  readonly #native: Loaded;
  readonly #pending = new Set<EngineOperation>();
  /** Pending operations per fd, in submission order. */
  readonly #byFd = new Map<number, Set<EngineOperation>>();
  readonly #poller: Poller | null;
  readonly #waiter: Waiter;

  constructor(loaded: Loaded, completion: CompletionName) {
    this.#native = loaded;
    this.completion = completion;
    const [front, back] = completion.includes("+") ? completion.split("+") : [undefined, completion];
    this.#waiter = back === "thread"
      ? new ThreadWaiter(this)
      : back === "suspend"
      ? new SuspendWaiter(loaded, this)
      : new TimerWaiter(this);
    this.#poller = front === "poll" || back === "poll" ? new Poller(this, this.#waiter) : null;
  }

  /** Requests this engine has in flight. */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Submits `op` by calling `start` (which returns 0 or the errno of the refusal), after giving
   * its control block the notification the strategy needs. Returns 0 or that errno.
   */
  submit(op: EngineOperation, start: () => number): number {
    if (this.#waiter.notify === "thread") {
      op.token = expectNotification(() => this.check(op));
      const { SIGEV_THREAD } = this.#native.abi.constants;
      op.block.setSigevent(SIGEV_THREAD, 0, op.token, notificationFunction());
    }
    const errno = start();
    if (errno !== 0) {
      if (op.token !== undefined) withdrawNotification(op.token);
      return errno;
    }
    op.submittedAt = performance.now();
    this.#track(op);
    if (this.#poller !== null) this.#poller.watch(op);
    else this.#waiter.cover(op);
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
    if (!tracked.block.poll()) return false;
    const operation = tracked.block.operation;
    const queue = this.#byFd.get(tracked.fd)!;
    if (operation === "fsync" || operation === "fdatasync") {
      for (const earlier of queue) {
        if (earlier === tracked) break;
        this.check(earlier);
      }
    }
    queue.delete(tracked);
    if (queue.size === 0) this.#byFd.delete(tracked.fd);
    this.#pending.delete(tracked);
    this.#poller?.forget(tracked, performance.now() - tracked.submittedAt);
    this.#waiter.forget(tracked);
    if (tracked.token !== undefined) notificationDue(tracked.token);
    tracked.block.retire();
    tracked.complete();
    return true;
  }

  /**
   * Asks libc to cancel `op` (`aio_cancel`). A canceled request is settled at once with
   * ECANCELED. Throws AioError if libc refuses the call.
   */
  cancel(op: EngineOperation): CancelResult {
    if (!this.#pending.has(op)) return "alldone";
    const { c, abi, library } = this.#native;
    const answer = c.aio_cancel(op.fd, op.block.address);
    if (answer === -1) throw new AioError(library.errno(), "aio_cancel", { fd: op.fd });
    this.check(op);
    const { AIO_CANCELED, AIO_NOTCANCELED } = abi.constants;
    return answer === AIO_CANCELED ? "canceled" : answer === AIO_NOTCANCELED ? "notcanceled" : "alldone";
  }

  /**
   * Takes over a control block whose owner is gone while its request is in flight: it is
   * collected and freed once final.
   */
  adopt(block: ControlBlock, fd: number): void {
    const op: EngineOperation = { block, fd, submittedAt: performance.now(), token: undefined, complete() {} };
    this.#track(op);
    this.#waiter.cover(op);
  }

  #track(op: EngineOperation): void {
    this.#pending.add(op);
    let queue = this.#byFd.get(op.fd);
    if (queue === undefined) this.#byFd.set(op.fd, queue = new Set());
    queue.add(op);
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

/** Whether the engine exists (it is created on the first request). */
export function hasEngine(): boolean {
  return engine !== undefined;
}
