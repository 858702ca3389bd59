/**
 * `fsync()` and `fdatasync()`: durable data through `aio_fsync`, with concurrent calls on one
 * file descriptor merged.
 *
 * A sync must cover every write that completed before it was called, so a caller never joins a
 * sync already in flight (it may have started before the caller's writes). Per fd there is at
 * most one sync in flight and one queued; every caller arriving meanwhile joins the queued one,
 * which is submitted when the one in flight ends. 1,000 concurrent `fdatasync(fd)` cost two
 * syncs instead of 1,000 serial ones. The callers of one batch without an AbortSignal wait on
 * one promise, each through its own promise derived from it (`then()`, so that each still
 * reports its own unhandled rejection): joining a batch costs no executor, closure or listener.
 *
 * A failed sync is reported to every caller waiting on that fd when it failed, queued ones
 * included: after a write-back error Linux may mark the pages clean, so the queued sync could
 * "succeed" with the data gone (fsyncgate).
 *
 * Where the platform's table has full-sync commands (macOS, whose `fsync` and `aio_fsync` stop
 * at the drive's write cache), a sync succeeds only after `fcntl(fd, F_FULLFSYNC)` too, called off
 * the JavaScript thread; where the file system refuses it, `F_BARRIERFSYNC`; where that is
 * refused too, the `aio_fsync` already done stands as the plain fsync (libuv's order). Every
 * sync of the module goes through here, so the durable layer is as durable as the runtime's own
 * `fsync` there.
 *
 * @module
 */

import { AioError } from "./errors.ts";
import { type AioOptions, AioRequest, type FdLike } from "./requests.ts";
import { type Loaded, native } from "./target.ts";
import { describe, toFd, toOptions, toSignal } from "./validate.ts";

/** Options of `fsync()` and `fdatasync()`. */
export interface SyncOptions extends AioOptions {
  /**
   * On macOS, follow the sync with `fcntl(F_FULLFSYNC)` (falling back to `F_BARRIERFSYNC`), as
   * Node and Deno do in their own `fsync`, so the data passes the drive's write cache. Default
   * `true`; `false` skips it (faster, but not safe against a power cut). No effect on Linux,
   * whose `fsync` reaches permanent storage already.
   */
  fullSync?: boolean;
}

/** `options.fullSync`: a boolean, `true` when left out. */
export function toFullSync(value: unknown, name = "options.fullSync"): boolean {
  if (value === undefined) return true;
  if (typeof value !== "boolean") {
    throw new TypeError(`Invalid ${name}: expected a boolean, received ${describe(value)}`);
  }
  return value;
}

/**
 * The full-sync step after a successful `aio_fsync`, where `loaded`'s table has one: `fcntl(fd,
 * F_FULLFSYNC)` off the JavaScript thread; if refused, `fcntl(fd, F_BARRIERFSYNC)`; if refused
 * too, nothing more (the `aio_fsync` was the plain fsync). A refusal is `EINVAL`, `ENOTSUP`,
 * `EOPNOTSUPP` or `ENOTTY` (a file system or file type without it), or any failure where the
 * runtime cannot tell the errno of an off-thread call (Deno): then, like libuv, every failure
 * falls back. Any other failure rejects with AioError, `syscall` `"fcntl"`.
 */
export async function fullSync(loaded: Loaded, fd: number): Promise<void> {
  const commands = loaded.abi.full_sync;
  if (commands === null) return;
  const { EINVAL, ENOTSUP, EOPNOTSUPP, ENOTTY } = loaded.abi.constants;
  for (const command of [commands.F_FULLFSYNC, commands.F_BARRIERFSYNC]) {
    const { result, errno } = await loaded.c.fcntl(fd, command, loaded.backend.NULL);
    if (result !== -1) return;
    const refused = errno === undefined || errno === EINVAL || errno === ENOTSUP || errno === EOPNOTSUPP
      || errno === ENOTTY;
    if (!refused) throw new AioError(errno, "fcntl", { fd });
  }
}

interface Caller {
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
  readonly signal: AbortSignal | undefined;
  onAbort?: () => void;
  /** libc canceled the sync because this caller aborted. */
  canceled: boolean;
}

/** The promise that every caller of a batch without an AbortSignal waits on. */
interface Shared {
  readonly promise: Promise<void>;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

interface Batch {
  syscall: "fsync" | "fdatasync";
  /** A caller asked for the full-sync step (the default). */
  full: boolean;
  /** Callers with an AbortSignal, each settled on its own. */
  readonly callers: Set<Caller>;
  /** The promise of the callers without a signal, once one joined. */
  shared: Shared | undefined;
  request?: AioRequest;
}

interface Lane {
  running: Batch | null;
  queued: Batch | null;
  /** The platform whose table says whether a full-sync step follows (tests give Darwin's). */
  readonly platform: () => Loaded;
}

const lanes = new Map<number, Lane>();

/** The platform `fsync()` and `fdatasync()` follow: the loaded C library's, unless a test set another. */
let current: () => Loaded = native;

/**
 * Makes `fsync()` and `fdatasync()` (so every sync of the durable layer: `AioFile`, the log,
 * `writeFileAtomic()`, `syncDir()`) follow `platform`'s table, and returns the platform they
 * followed. For the Darwin harness (tests/darwin_logic_test.ts), which drives real glibc with
 * Darwin's full-sync commands; not exported by the module.
 */
export function followPlatform(platform: () => Loaded): () => Loaded {
  const previous = current;
  current = platform;
  return previous;
}

/** The platform `fsync()` and `fdatasync()` follow now (the log takes its features from it too). */
export function followedPlatform(): Loaded {
  return current();
}

function finish(batch: Batch, error: unknown): void {
  for (const caller of batch.callers) {
    if (caller.onAbort !== undefined) caller.signal!.removeEventListener("abort", caller.onAbort);
    if (error === undefined) caller.resolve();
    else caller.reject(caller.canceled ? caller.signal!.reason : error);
  }
  batch.callers.clear();
  const shared = batch.shared;
  batch.shared = undefined;
  if (shared === undefined) return;
  if (error === undefined) shared.resolve();
  else shared.reject(error);
}

/** The promise the callers of `batch` without a signal wait on, created for the first. */
function sharedPromise(batch: Batch): Promise<void> {
  if (batch.shared !== undefined) return batch.shared.promise;
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  batch.shared = { promise, resolve, reject };
  return promise;
}

function isIoFailure(error: unknown): boolean {
  return !(error instanceof AioError) || error.code !== "ECANCELED";
}

function run(fd: number, lane: Lane): void {
  const batch = lane.running!;
  let request: AioRequest;
  try {
    request = AioRequest.fsync(fd, batch.syscall === "fsync" ? "sync" : "dsync");
  } catch (error) {
    // Refused at submit: nothing is queued behind it yet (the queue forms while one is running).
    lane.running = null;
    lanes.delete(fd);
    finish(batch, error);
    return;
  }
  batch.request = request;
  request.done.then(
    () => {
      const loaded = lane.platform();
      if (!batch.full || loaded.abi.full_sync === null) return next(fd, lane, batch, undefined);
      fullSync(loaded, fd).then(
        () => next(fd, lane, batch, undefined),
        (error) => next(fd, lane, batch, error),
      );
    },
    (error) => next(fd, lane, batch, error),
  );
}

function next(fd: number, lane: Lane, batch: Batch, error: unknown): void {
  finish(batch, error);
  if (error !== undefined && isIoFailure(error) && lane.queued !== null) {
    finish(lane.queued, error);
    lane.queued = null;
  }
  lane.running = lane.queued;
  lane.queued = null;
  if (lane.running === null) lanes.delete(fd);
  else run(fd, lane);
}

function abort(lane: Lane, caller: Caller): void {
  const queued = lane.queued;
  if (queued !== null && queued.callers.delete(caller)) {
    // Never submitted: dropping it is a successful cancellation.
    if (queued.callers.size === 0 && queued.shared === undefined) lane.queued = null;
    caller.reject(caller.signal!.reason);
    return;
  }
  const running = lane.running;
  if (
    running?.request !== undefined && running.shared === undefined && running.callers.size === 1
    && running.callers.has(caller)
  ) {
    try {
      caller.canceled = running.request.cancel() === "canceled";
    } catch {
      // libc refused aio_cancel: the sync goes on and settles as usual.
    }
  }
  // Shared with other callers, or not canceled: it settles as libc finishes it.
}

/**
 * `fsync()` or `fdatasync()` (`syscall`), the full-sync step decided by `platform`'s table: the
 * loaded C library's, or in tests the same library with Darwin's table.
 */
export function syncWith(
  fdLike: FdLike,
  options: SyncOptions | undefined,
  syscall: "fsync" | "fdatasync",
  platform: () => Loaded = native,
): Promise<void> {
  let fd: number;
  let signal: AbortSignal | undefined;
  let full = true;
  try {
    fd = toFd(fdLike);
    if (options !== undefined) {
      const checked = toOptions<SyncOptions>(options);
      signal = toSignal(checked.signal);
      full = toFullSync(checked.fullSync);
    }
  } catch (error) {
    return Promise.reject(error);
  }
  if (signal?.aborted) return Promise.reject(signal.reason);
  let lane = lanes.get(fd);
  if (lane === undefined) {
    lane = { running: null, queued: null, platform };
    lanes.set(fd, lane);
  }
  let batch: Batch;
  const start = lane.running === null;
  if (start) {
    batch = lane.running = { syscall, full, callers: new Set(), shared: undefined };
  } else {
    batch = lane.queued ??= { syscall, full, callers: new Set(), shared: undefined };
    if (syscall === "fsync") batch.syscall = "fsync";
    if (full) batch.full = true;
  }
  let promise: Promise<void>;
  if (signal === undefined) {
    // A promise of its own: one caller's unhandled rejection is reported even if others handle theirs.
    promise = sharedPromise(batch).then();
  } else {
    const owner = lane;
    promise = new Promise<void>((resolve, reject) => {
      const caller: Caller = { resolve, reject, signal, canceled: false };
      batch.callers.add(caller);
      caller.onAbort = () => abort(owner, caller);
      signal.addEventListener("abort", caller.onAbort, { once: true });
    });
  }
  if (start) run(fd, lane);
  return promise;
}

/**
 * Makes the file's data and metadata durable, like fsync(2), through `aio_fsync(O_SYNC)`
 * without blocking the event loop or the runtime's thread pool.
 *
 * Rejects with AioError: `syscall` `"aio_fsync"` if libc refused the request (`EBADF` for a
 * closed fd), `"fsync"` if the sync itself failed (`EIO`: treat the data as lost), `"fcntl"` if
 * macOS's full sync failed.
 *
 * @example
 * ```ts ignore
 * import { fsync } from "@posix/aio";
 * import { open } from "node:fs/promises";
 *
 * const file = await open("data.bin", "w");
 * await file.write(new Uint8Array([1, 2, 3]));
 * await fsync(file);
 * await file.close();
 * ```
 *
 * @param fd The file descriptor, or an object with a numeric `fd`.
 * @param options An AbortSignal (aborting cancels the sync if libc has not started it), and
 * `fullSync` (macOS: `false` skips `F_FULLFSYNC`).
 */
export function fsync(fd: FdLike, options?: SyncOptions): Promise<void> {
  return syncWith(fd, options, "fsync", current);
}

/**
 * Makes the file's data durable (and the metadata needed to read it back), like fdatasync(2),
 * through `aio_fsync(O_DSYNC)`. Concurrent calls on one fd are merged.
 *
 * @example
 * ```ts ignore
 * import { fdatasync } from "@posix/aio";
 * import { appendFileSync, openSync } from "node:fs";
 *
 * const fd = openSync("journal.log", "a");
 * appendFileSync(fd, "record\n");
 * await fdatasync(fd);
 * ```
 *
 * @param fd The file descriptor, or an object with a numeric `fd`.
 * @param options An AbortSignal (aborting cancels the sync if libc has not started it), and
 * `fullSync` (macOS: `false` skips `F_FULLFSYNC`).
 */
export function fdatasync(fd: FdLike, options?: SyncOptions): Promise<void> {
  return syncWith(fd, options, "fdatasync", current);
}
