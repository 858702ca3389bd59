/**
 * `openLog()`: an append-only log with group commit, and `readLog()` to read its records back.
 *
 * Appends wait in a queue. Each batch is made durable in one go: every record queued is copied
 * into one buffer, written with one `aio_write` at the end of the file (a short write is
 * continued), and made durable with one `fdatasync` (through `fdatasync()`, so on macOS with
 * `F_FULLFSYNC`); then every caller of the batch resolves. Where libc runs an `aio_fsync` only
 * after the writes queued before it on the fd (glibc, musl), the sync is submitted right after
 * the write, without waiting for it; elsewhere (macOS) once the write is done. Appends arriving
 * meanwhile form the next batch; when a batch ends with fewer records queued than it held, the
 * next one waits a little for its callers to append again (commit delay, see `#linger`). Where
 * libc runs one fd's requests in order (glibc), the next batch may go in behind the sync still
 * running (see `#flushAhead`). The first failed write or sync is final: that batch, everything
 * queued and every later append reject with it until the log is reopened (after a failed
 * write-back Linux may drop the dirty pages, and a later sync would succeed with the data gone).
 *
 * @module
 */

import { syncDir } from "./atomic.ts";
import { AioError } from "./errors.ts";
import { type AioFile, open, writeAll } from "./file.ts";
import { closeFd, O, openFd, statFd, toAioError, toData, toMode, toPath, truncateFd } from "./fs.ts";
import { AioRequest, submitWith, write } from "./requests.ts";
import { fdatasync, followedPlatform, toFullSync } from "./sync.ts";
import { native } from "./target.ts";
import { describe, toOptions } from "./validate.ts";

/** Options of `openLog()`. */
export interface OpenLogOptions {
  /** Permissions of the file if the log creates it, before the umask. Default `0o666`. */
  mode?: number;
  /** macOS: each batch's sync with `F_FULLFSYNC` (default `true`). No effect on Linux. */
  fullSync?: boolean;
  /**
   * What ends every record (a string as UTF-8, or bytes), as given to `readLog()`. When given,
   * bytes after the last separator of an existing file (a record torn by a crash) are cut off,
   * durably, before the log resolves, so new records never join them. Default: none, the file
   * is kept as it is and new records go after whatever it ends with.
   */
  separator?: Uint8Array | string;
}

/** An append-only log whose appends resolve once durable, made by `openLog()`. */
export interface AioLog {
  /** The log file's path. */
  readonly path: string;
  /**
   * Appends `data` (a string as UTF-8) as it is, right after the record appended before it;
   * resolves once it is durable. Rejects with AioError if its batch's write or sync failed, and
   * with that first failure for every later append.
   */
  append(data: Uint8Array | string): Promise<void>;
  /** Waits for the appends already made to settle, then closes the file. Later appends reject with `EBADF`. */
  close(): Promise<void>;
  /** `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Longest wait of a batch for the callers of the last one, as a share of the last batch's time. */
const LINGER_SHARE = 0.5;
/** Longest wait of a batch for the callers of the last one (ms). */
const LINGER_MAX_MS = 2;

/**
 * Hooks for the tests (not exported by the module): `io` sees every request of the log as it is
 * awaited (a test may delay its outcome, or replace a success with a failure, to explore
 * schedules); `allocate` makes the buffer of a batch.
 */
export const logHooks: {
  io: <T>(operation: Promise<T>, what: "write" | "sync") => Promise<T>;
  allocate: (length: number) => Uint8Array;
} = {
  io: (operation) => operation,
  allocate: (length) => new Uint8Array(length),
};

/** One append: its record and its caller, settled once. */
class Entry {
  readonly bytes: Uint8Array;
  readonly #resolve: () => void;
  readonly #reject: (error: unknown) => void;
  readonly #settled: () => void;
  #done = false;

  constructor(bytes: Uint8Array, resolve: () => void, reject: (error: unknown) => void, settled: () => void) {
    this.bytes = bytes;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#settled = settled;
  }

  resolve(): void {
    if (this.#done) return;
    this.#done = true;
    this.#resolve();
    this.#settled();
  }

  reject(error: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#reject(error);
    this.#settled();
  }
}

class Log implements AioLog {
  readonly path: string;
  readonly #fd: number;
  readonly #fullSync: boolean;
  /** Write and sync submitted back to back (`features.fsync_after_queued_writes`). */
  readonly #pipelined: boolean;
  /** A batch may be queued behind the previous batch's sync (`features.fd_requests_in_order`). */
  readonly #ahead: boolean;
  #position: number;
  #queue: Entry[] = [];
  /** A flush is running or about to: it takes every record queued before it ends. */
  #flushing = false;
  /** Appends made and not yet settled; `#drained` is called when it falls to 0. */
  #unsettled = 0;
  #drained: (() => void) | undefined;
  /** Records of the last batch made durable, when that ended, and how long it took (ms). */
  #lastSize = 0;
  #lastEnd = -Infinity;
  #lastCycle = 0;
  /** While the next batch waits for the callers of the last one: ends the wait. */
  #stopLinger: (() => void) | undefined;
  /** Records queued that end that wait. */
  #wanted = 0;
  #failure: unknown;
  #closing: Promise<void> | undefined;

  constructor(fd: number, path: string, position: number, fullSync: boolean) {
    this.#fd = fd;
    this.path = path;
    this.#position = position;
    this.#fullSync = fullSync;
    // The platform the syncs follow: the C library's, or Darwin's table in the Darwin harness.
    const { features, full_sync } = followedPlatform().abi;
    // Their syncs are plain `aio_fsync`s: not where a full-sync step must follow each.
    const plain = full_sync === null || !fullSync;
    this.#pipelined = features.fsync_after_queued_writes && plain;
    this.#ahead = features.fd_requests_in_order && plain;
  }

  append(data: Uint8Array | string): Promise<void> {
    let bytes: Uint8Array;
    try {
      bytes = toData(data);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#closing !== undefined) {
      return Promise.reject(new AioError(native().abi.constants.EBADF, "write", { fd: this.#fd, path: this.path }));
    }
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    // A record given as bytes is copied now: the caller may reuse its buffer at once. Not with
    // `bytes.slice()`: a Node `Buffer`'s `slice` is a view of the same memory.
    const record = typeof data === "string" ? bytes : new Uint8Array(bytes);
    return new Promise<void>((resolve, reject) => {
      this.#unsettled++;
      this.#queue.push(new Entry(record, resolve, reject, this.#onSettled));
      if (this.#stopLinger !== undefined && this.#queue.length >= this.#wanted) this.#stopLinger();
      this.#startFlush();
    });
  }

  readonly #onSettled = (): void => {
    if (--this.#unsettled === 0) this.#drained?.();
  };

  /**
   * Starts a flush unless one is running. The first append of a tick starts it a microtask later,
   * after the appends of the same tick joined the batch.
   */
  #startFlush(): void {
    if (this.#flushing) return;
    this.#flushing = true;
    queueMicrotask(() => void this.#flush());
  }

  /**
   * Writes and syncs batches until nothing is queued. The flush ends in the same synchronous step
   * as its last look at the queue, so that no append can be left waiting for a flush that has
   * already decided to stop; anything that throws fails the log, so that no caller waits for ever.
   */
  async #flush(): Promise<void> {
    try {
      if (this.#ahead) await this.#flushAhead();
      else await this.#flushInTurn();
    } catch (error) {
      this.#fail([], error);
    }
    this.#flushing = false;
    if (this.#queue.length > 0) this.#startFlush();
  }

  /** One batch at a time: the next is written once the one before it is durable. */
  async #flushInTurn(): Promise<void> {
    while (this.#queue.length > 0 && this.#failure === undefined) {
      await this.#linger();
      const batch = this.#queue;
      this.#queue = [];
      if (this.#pipelined) {
        await this.#commit(batch, undefined).settled;
        continue;
      }
      const began = performance.now();
      try {
        const buffer = batch.length === 1 ? batch[0].bytes : concat(batch);
        await logHooks.io(writeAll(this.#fd, buffer, this.#position), "write");
        await logHooks.io(fdatasync(this.#fd, { fullSync: this.#fullSync }), "sync");
        this.#position += buffer.length;
      } catch (error) {
        this.#fail(batch, error);
        break;
      }
      this.#settled(batch, began);
    }
  }

  /**
   * Where libc runs one fd's requests in order (glibc), a batch is queued behind the sync of the
   * batch before it once that batch's write is done in full and as many records are queued as
   * the last batch made durable (the callers of that batch appending again): libc starts its
   * write as the sync before it returns, with no round trip through the JavaScript thread, and
   * the device never waits for the event loop. A batch also waits for half as many records as
   * the one in libc holds: the callers of a small batch (a few late ones the commit delay did not
   * wait for) do not go ahead alone, but wait for the larger batch to settle and its callers to
   * append again, so that clients split in two cohorts by chance merge again where they come back
   * sooner than a sync takes (else each round would cost two syncs). At most two batches are in
   * libc at once; each resolves only after the one before it, and a failure of one rejects every
   * later one.
   */
  async #flushAhead(): Promise<void> {
    /** The batch before `last`, and the last batch submitted: settled once their callers are. */
    let before: Promise<void> = Promise.resolve();
    let last: { settled: Promise<void>; done: boolean; size: number } | undefined;
    for (;;) {
      const inFlight = last !== undefined && !last.done;
      const wanted = inFlight ? Math.max(1, this.#lastSize, Math.ceil(last!.size / 2)) : 0;
      if (inFlight && this.#failure === undefined && this.#queue.length < wanted) {
        await this.#lingerAhead(last!.settled, wanted);
        continue;
      }
      if (this.#failure !== undefined || this.#queue.length === 0) break;
      if (!inFlight) await this.#linger();
      // The batch two back has left libc (the last one's write ran after its sync); its callers
      // settle before a third batch goes in.
      await before;
      if (this.#failure !== undefined) break;
      const batch = this.#queue;
      this.#queue = [];
      const commit = this.#commit(batch, last?.settled);
      const current = { settled: commit.settled, done: false, size: batch.length };
      commit.settled.then(() => current.done = true);
      before = last?.settled ?? before;
      last = current;
      // The next batch goes only after this one's bytes are all in the file; after a failed
      // write, only once the failure is the log's.
      if (!await commit.written) await commit.settled;
    }
    await last?.settled;
  }

  /**
   * Submits `batch`'s `aio_write` and its `aio_fsync(O_DSYNC)` back to back: libc runs the sync
   * only after the write (`features.fsync_after_queued_writes`), so the sync covers it, and
   * libc's worker starts it as the write returns, with no round trip through the JavaScript
   * thread between them. `written` resolves with `true` once the batch's bytes are all in the
   * file (a short write continued, then synced again), with `false` if the write failed.
   * `settled` resolves once the callers of the batch were resolved or rejected (the write's
   * failure first, then the sync's), after those of `previous`.
   */
  #commit(batch: Entry[], previous: Promise<void> | undefined): { written: Promise<boolean>; settled: Promise<void> } {
    const began = performance.now();
    let buffer: Uint8Array;
    try {
      buffer = batch.length === 1 ? batch[0].bytes : concat(batch);
    } catch (error) {
      // Nothing was submitted: the batch fails, and with it the log.
      const settled = (async (): Promise<void> => {
        await previous;
        if (this.#failure !== undefined) { for (const entry of batch) entry.reject(this.#failure); }
        else this.#fail(batch, error);
      })();
      return { written: Promise.resolve(false), settled };
    }
    const position = this.#position;
    const wrote = logHooks.io(write(this.#fd, buffer, position), "write");
    // Not through fdatasync(), which holds a sync back while another of the fd is in flight.
    const datasync = (): Promise<number> =>
      logHooks.io(submitWith(undefined, () => AioRequest.fsync(this.#fd, "dsync")), "sync");
    const sync = datasync();
    /** Whether the write came short and was continued. */
    const writing = (async (): Promise<boolean> => {
      const done = await wrote;
      if (done <= 0 && buffer.length > 0) {
        // A regular file never takes 0 bytes of a non-empty write (as writeAll()).
        throw new AioError(native().abi.constants.EIO, "write", { fd: this.#fd });
      }
      if (done < buffer.length) {
        await logHooks.io(writeAll(this.#fd, buffer.subarray(done), position + done), "write");
      }
      this.#position = position + buffer.length;
      return done < buffer.length;
    })();
    const settled = (async (): Promise<void> => {
      let failure: { error: unknown } | undefined;
      const [continued, synced] = await Promise.allSettled([writing, sync]);
      if (continued.status === "rejected") failure = { error: continued.reason };
      else if (synced.status === "rejected") failure = { error: synced.reason };
      else if (continued.value) {
        // The continued part of a short write came after the sync: sync again.
        await datasync().catch((error) => failure = { error });
      }
      await previous;
      if (this.#failure !== undefined) { for (const entry of batch) entry.reject(this.#failure); }
      else if (failure !== undefined) this.#fail(batch, failure.error);
      else this.#settled(batch, began);
    })();
    return { written: writing.then(() => true, () => false), settled };
  }

  /** The first failure: final for the log; rejects `batch` and everything queued. */
  #fail(batch: readonly Entry[], error: unknown): void {
    this.#failure = toAioError(error, "write", this.path, this.#fd);
    for (const entry of batch) entry.reject(this.#failure);
    for (const entry of this.#queue) entry.reject(this.#failure);
    this.#queue = [];
    this.#stopLinger?.();
  }

  /** Resolves the callers of `batch`, made durable, and keeps its size and time for `#linger`. */
  #settled(batch: readonly Entry[], began: number): void {
    for (const entry of batch) entry.resolve();
    this.#lastSize = batch.length;
    this.#lastEnd = performance.now();
    this.#lastCycle = this.#lastEnd - began;
  }

  /** While a batch is in libc: waits until `wanted` records are queued, or that batch settled. */
  async #lingerAhead(settled: Promise<void>, wanted: number): Promise<void> {
    this.#wanted = wanted;
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        if (this.#stopLinger !== stop) return;
        this.#stopLinger = undefined;
        resolve();
      };
      this.#stopLinger = stop;
      settled.then(stop);
    });
  }

  /**
   * Lets the next batch wait a little for the callers of the last one (commit delay): when fewer
   * records are queued than the last batch made durable and it ended moments ago, its callers
   * are likely to append again at once (a server answering them, each client sending its next
   * request). Waiting for them makes one batch and one sync of what would otherwise be a small
   * batch now and a large one a whole sync later. The wait ends as soon as as many records are
   * queued as the last batch had, and at the latest `LINGER_SHARE` of the last batch's time after
   * it ended (`LINGER_MAX_MS` at most). Records arriving independently of the last batch (no
   * caller waiting on it) find that many queued already, or the last batch long over: no wait.
   */
  async #linger(): Promise<void> {
    if (this.#queue.length >= this.#lastSize) return;
    const wait = this.#lastEnd + Math.min(this.#lastCycle * LINGER_SHARE, LINGER_MAX_MS) - performance.now();
    if (wait <= 0) return;
    this.#wanted = this.#lastSize;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.#stopLinger!(), wait);
      this.#stopLinger = () => {
        clearTimeout(timer);
        this.#stopLinger = undefined;
        resolve();
      };
    });
  }

  /**
   * Every append made before it settles first. Each batch's callers settle only once its
   * requests are final, so then nothing of the log is left in libc and the fd can be closed.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      if (this.#unsettled > 0) await new Promise<void>((resolve) => this.#drained = resolve);
      await closeFd(this.#fd, this.path);
    })();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function concat(entries: readonly Entry[]): Uint8Array {
  let length = 0;
  for (const entry of entries) length += entry.bytes.length;
  const buffer = logHooks.allocate(length);
  let offset = 0;
  for (const entry of entries) {
    buffer.set(entry.bytes, offset);
    offset += entry.bytes.length;
  }
  return buffer;
}

/**
 * Opens (creating it if needed) an append-only log at `path`. `append()` resolves once the
 * record is durable; appends made while a batch is being synced share the next write and the
 * next `fdatasync` (group commit), so many concurrent writers cost few syncs.
 *
 * The file holds exactly the records appended, in call order, with nothing added between them:
 * frame them yourself (a newline after each JSON record, a length prefix...). New records go
 * after the file's current end (the file is opened with `O_APPEND`, so a batch never overwrites
 * what another writer appended; one log per file is what keeps the records together). The
 * file's directory is synced before the log resolves (whoever created the file may not have
 * done it), so the file's name survives a power cut as the records do.
 *
 * A crash can leave the end of the file torn: records of the last batch (or two, where the next
 * was queued behind the sync) whole, one cut short, or missing (none of them was acknowledged).
 * Read records back with `readLog()`, which stops at the first incomplete one. Give
 * `options.separator` to have the log cut such a torn record off when it opens the file (else
 * new records would be appended right after its bytes).
 *
 * Rejects with TypeError or RangeError naming a bad argument, AioError (`path`, `syscall`) if
 * the file cannot be opened.
 *
 * @example Many concurrent writers, few syncs
 * ```ts ignore
 * import { openLog } from "@posix/aio";
 *
 * await using log = await openLog("events.log");
 * await Promise.all(
 *   Array.from({ length: 100 }, (_, i) => log.append(JSON.stringify({ i }) + "\n")),
 * ); // every record is durable here: one write and one fdatasync, not 100
 * ```
 *
 * @param path The log file's path, or a `file:` URL.
 * @param options `mode` of a created file, `fullSync` (macOS), `separator` (cut a torn last
 * record off).
 */
export async function openLog(path: string | URL, options?: OpenLogOptions): Promise<AioLog> {
  const file = toPath(path);
  const given = toOptions<OpenLogOptions>(options);
  const mode = toMode(given.mode, 0o666);
  const fullSync = toFullSync(given.fullSync);
  const separator = given.separator === undefined ? undefined : toSeparator(given.separator);
  native();
  // Read access too when a torn tail may have to be found.
  const access = separator === undefined ? O.O_WRONLY : O.O_RDWR;
  const fd = await openFd(file, access | O.O_APPEND | O.O_CREAT, mode);
  try {
    let { size } = await statFd(fd, file);
    if (separator !== undefined && size > 0) {
      const end = await lastRecordEnd(fd, file, size, separator);
      if (end < size) {
        await truncateFd(fd, end, file);
        await fdatasync(fd, { fullSync }).catch((error) => {
          throw toAioError(error, "fdatasync", file, fd);
        });
        size = end;
      }
    }
    // Whoever created the file (this call, an earlier one that crashed before syncing, another
    // program) may not have synced its directory: without that, acknowledged records could
    // vanish with the file's name.
    await syncDir(parentOf(file), { fullSync });
    return new Log(fd, file, size, fullSync);
  } catch (error) {
    await closeFd(fd, file).catch(() => {});
    throw error;
  }
}

/** `options.separator`: at least one byte. */
function toSeparator(value: unknown): Uint8Array {
  const separator = toData(value, "options.separator");
  if (separator.length === 0) {
    throw new RangeError(`Invalid options.separator: expected at least one byte, received ""`);
  }
  return separator;
}

/**
 * Where the last complete record of the file ends: just after the last `separator` in its first
 * `size` bytes, 0 if there is none. Reads backwards from the end, 64 KiB at a time.
 */
async function lastRecordEnd(fd: number, path: string, size: number, separator: Uint8Array): Promise<number> {
  const chunk = Math.max(65536, 2 * separator.length);
  let end = size;
  while (end >= separator.length) {
    // Each window overlaps the previous one by separator.length - 1 bytes.
    const start = Math.max(0, end - chunk);
    const window = new Uint8Array(end - start);
    let filled = 0;
    while (filled < window.length) {
      const bytes = await AioRequest.read(fd, window.subarray(filled), start + filled).done.catch((error) => {
        throw toAioError(error, "read", path, fd);
      });
      if (bytes === 0) break;
      filled += bytes;
    }
    for (let at = filled - separator.length; at >= 0; at--) {
      let match = true;
      for (let j = 0; j < separator.length && match; j++) match = window[at + j] === separator[j];
      if (match) return start + at + separator.length;
    }
    if (start === 0) break;
    end = start + separator.length - 1;
  }
  return 0;
}

/** The directory holding `path`. */
export function parentOf(path: string): string {
  const end = path.replace(/\/+$/, "");
  const slash = end.lastIndexOf("/");
  if (slash < 0) return ".";
  return slash === 0 ? "/" : end.slice(0, slash);
}

/** Options of `readLog()`. */
export interface ReadLogOptions {
  /**
   * What ends every record (a string as UTF-8, or bytes). Default `"\n"`. The records are
   * yielded without it; bytes after the last one are a torn record and are not yielded.
   */
  separator?: Uint8Array | string;
  /** Bytes read per request. Default 65536. */
  chunkSize?: number;
}

/**
 * Reads back the records of a log whose every record ends with `separator`: yields each record
 * (without its separator) in order, and stops at the end of the last complete one, so a record
 * cut short by a crash is never yielded. Reads with `aio_read`.
 *
 * @example Replay a JSON-lines log after a restart
 * ```ts ignore
 * import { readLog } from "@posix/aio";
 *
 * const decoder = new TextDecoder();
 * for await (const record of readLog("events.log", { separator: "\n" })) {
 *   console.log(JSON.parse(decoder.decode(record)));
 * }
 * ```
 *
 * @param path The log file's path, or a `file:` URL.
 * @param options `separator` (default `"\n"`) and `chunkSize`.
 */
export async function* readLog(path: string | URL, options?: ReadLogOptions): AsyncGenerator<Uint8Array, void> {
  const file = toPath(path);
  const given = toOptions<ReadLogOptions>(options);
  const separator = given.separator === undefined ? new Uint8Array([10]) : toSeparator(given.separator);
  const chunkSize = given.chunkSize ?? 65536;
  if (typeof chunkSize !== "number") {
    throw new TypeError(`Invalid options.chunkSize: expected a number, received ${describe(chunkSize)}`);
  }
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) {
    throw new RangeError(`Invalid options.chunkSize: expected a positive integer, received ${chunkSize}`);
  }
  const handle: AioFile = await open(file, { read: true });
  try {
    // The bytes not yielded yet are buffer[start, end). The buffer grows by doubling and is
    // compacted only once half of it was consumed, and each byte is searched once (the last
    // `separator.length - 1` twice): a record far longer than `chunkSize` is read in linear time.
    let buffer = new Uint8Array(chunkSize);
    let start = 0;
    let end = 0;
    let position = 0;
    for (;;) {
      if (buffer.length - end < chunkSize) {
        const live = end - start;
        if (live <= buffer.length / 2 && live + chunkSize <= buffer.length) {
          buffer.copyWithin(0, start, end);
        } else {
          const grown = new Uint8Array(Math.max(buffer.length * 2, live + chunkSize));
          grown.set(buffer.subarray(start, end));
          buffer = grown;
        }
        start = 0;
        end = live;
      }
      const bytes = await handle.read(buffer.subarray(end, end + chunkSize), position);
      if (bytes === 0) return;
      position += bytes;
      let from = Math.max(start, end - separator.length + 1);
      end += bytes;
      const view = buffer.subarray(0, end);
      for (let at = indexOf(view, separator, from); at >= 0; at = indexOf(view, separator, from)) {
        yield buffer.slice(start, at);
        start = from = at + separator.length;
      }
    }
  } finally {
    await handle.close();
  }
}

function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  if (needle.length === 1) return haystack.indexOf(needle[0], from);
  outer: for (let i = from; i <= haystack.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
