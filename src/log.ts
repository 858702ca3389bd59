/**
 * `openLog()`: an append-only log with group commit, and `readLog()` to read its records back.
 *
 * Two formats. `"framed"` (the default) frames each record with its length and a CRC32C
 * (`./log_format.ts`), so a reader finds the end of the log, a torn last record and a corrupted
 * one by itself, whatever bytes the records hold; its file is allocated ahead of the records in
 * chunks (`./preallocate.ts`), so that a sync commits the records and nothing else. `"plain"`
 * writes the records as they are, one after the other, for files that other programs read line
 * by line.
 *
 * Appends wait in a queue. Each batch is made durable in one go: every record queued is framed
 * into one buffer, written with one write (a short write is continued), and made durable with
 * one `fdatasync` (on macOS with `F_FULLFSYNC`); then every caller of the batch resolves. A batch
 * that nothing of the log is in libc for, of at most `DIRECT_WRITE_MAX` bytes, is written from
 * the JavaScript thread into the page cache (a copy that takes microseconds): only its sync
 * leaves the thread. Otherwise the batch is written with `aio_write`; where libc runs an
 * `aio_fsync` only after the writes queued before it on the fd (glibc, musl), the sync is
 * submitted right behind the write, without waiting for it; elsewhere (macOS) once the write is
 * done. Appends arriving meanwhile form the next batch; when a batch ends with fewer records
 * queued than it held, the next one waits a little for its callers to append again (commit
 * delay, see `#linger`). Where libc runs one fd's requests in order (glibc), the next batch may
 * go in behind the sync still running (see `#flushAhead`). The first failed write, sync or
 * allocation is final: that batch, everything queued and every later append reject with it
 * until the log is reopened (after a failed write-back Linux may drop the dirty pages, and a
 * later sync would succeed with the data gone).
 *
 * @module
 */

import { syncDir } from "./atomic.ts";
import { AioError } from "./errors.ts";
import { type AioFile, open, writeAll } from "./file.ts";
import { closeFd, O, openFd, statFd, toAioError, toData, toMode, toPath, truncateFd, writeFdSync } from "./fs.ts";
import {
  CorruptLogError,
  encodeFrame,
  encodeHeader,
  frameSize,
  HEADER_SIZE,
  headerKind,
  headerVersion,
  LOG_VERSION,
  MAX_RECORD_LENGTH,
  ReadWindow,
  walkFrames,
} from "./log_format.ts";
import { allocator, writeZeros } from "./preallocate.ts";
import { AioRequest, submitWith, write } from "./requests.ts";
import { fdatasync, followedPlatform, fsync, toFullSync } from "./sync.ts";
import { native } from "./target.ts";
import { describe, toOptions } from "./validate.ts";

export { CorruptLogError } from "./log_format.ts";

/** A log's format: records framed with their length and a checksum, or written as they are. */
export type LogFormat = "framed" | "plain";

/** Options of `openLog()`. */
export interface OpenLogOptions {
  /**
   * `"framed"` (default): each record framed with its length and a CRC32C, so that `readLog()`
   * finds every record, the end of the log, a torn last record and a corrupted one by itself,
   * whatever bytes records hold; the file starts with a 16-byte header. `"plain"`: the records
   * as they are, one after the other, for text that other programs read (end each record with a
   * separator of your own, such as `"\n"`).
   */
  format?: LogFormat;
  /** Permissions of the file if the log creates it, before the umask. Default `0o666`. */
  mode?: number;
  /** macOS: each batch's sync with `F_FULLFSYNC` (default `true`). No effect on Linux. */
  fullSync?: boolean;
  /**
   * The framed format: bytes of file space allocated ahead of the records at a time (default
   * 1 MiB), or `false` for none. The next chunk is allocated while the current one is half full,
   * off the JavaScript thread, so appends do not wait for it. The file's size (`stat`) includes
   * the space allocated and not yet written; it reads as zeros, which end the log. The plain
   * format allocates nothing ahead (its size is its content).
   */
  preallocate?: number | false;
  /**
   * The plain format: what ends every record (a string as UTF-8, or bytes), as given to
   * `readLog()`. When given, bytes after the last separator of an existing file (a record torn by
   * a crash) are cut off, durably, before the log resolves, so new records never join them.
   * Default: none, the file is kept as it is and new records go after whatever it ends with.
   */
  separator?: Uint8Array | string;
}

/** An append-only log whose appends resolve once durable, made by `openLog()`. */
export interface AioLog {
  /** The log file's path. */
  readonly path: string;
  /** The log's format. */
  readonly format: LogFormat;
  /**
   * Appends a record (a string as UTF-8); resolves once it is durable. Framed, the record is
   * read back as given (at most 2,147,483,647 bytes, else a RangeError); plain, its bytes follow
   * the record appended before it with nothing between them. Rejects with AioError if its
   * batch's write or sync failed, and with that first failure for every later append.
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
/** Batches up to this size, with nothing of the log in libc, are written from the JavaScript thread. */
const DIRECT_WRITE_MAX = 128 * 1024;
/** Default bytes allocated ahead of a framed log's records at a time. */
const DEFAULT_PREALLOCATE = 1 << 20;

/**
 * Hooks for the tests (not exported by the module): `io` sees every outcome of the log's writes
 * and syncs as it is awaited (a test may delay it, or replace a success with a failure, to
 * explore schedules); `allocate` makes the buffer of a batch; `directWriteMax` is the largest
 * batch written from the JavaScript thread (-1: none, every batch goes through `aio_write`).
 */
export const logHooks: {
  io: <T>(operation: Promise<T>, what: "write" | "sync") => Promise<T>;
  allocate: (length: number) => Uint8Array;
  directWriteMax: number;
} = {
  io: (operation) => operation,
  allocate: (length) => new Uint8Array(length),
  directWriteMax: DIRECT_WRITE_MAX,
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

/** A batch handed to libc: `written` once its bytes are all in the file, `settled` once its callers are. */
interface Commit {
  /** Resolves with `true` once the batch's bytes are all in the file, `false` if they failed. */
  readonly written: Promise<boolean>;
  /** Resolves once the callers of the batch (and of every batch before it) were resolved or rejected. */
  readonly settled: Promise<void>;
}

/** Bytes of zeros written, then synced, at a time over space allocated ahead (see `Space`). */
const ZERO_PIECE = 256 * 1024;

/**
 * The space allocated ahead of a log's records: the next chunk is allocated, off the JavaScript
 * thread, once the records reach half of the current one. Where the platform's table says so
 * (`zero_fill`: Linux, whose file systems allocate unwritten extents), zeros are then written
 * over the chunk and synced, a piece at a time, through a descriptor of its own (libc runs its
 * requests beside the log's, not in their queue): a record's sync then commits its data and no
 * conversion of the blocks it lands in. Where the platform cannot allocate (no call, or refused),
 * zeros do it. While that runs no record may be written in the chunk (`gate`), nor, on macOS,
 * past it (the size is set by `ftruncate` afterwards).
 */
class Space {
  readonly #fd: number;
  readonly #path: string;
  readonly #chunk: number;
  readonly #fail: (error: unknown) => void;
  /** Where the allocated space ends. */
  #end: number;
  #allocating: { from: number; done: Promise<void> } | undefined;
  #failed = false;
  /** The descriptor zeros are written and synced through (opened on first use; else `#fd`). */
  #zeros: number | undefined;

  constructor(fd: number, path: string, chunk: number, end: number, fail: (error: unknown) => void) {
    this.#fd = fd;
    this.#path = path;
    this.#chunk = chunk;
    this.#end = end;
    this.#fail = fail;
  }

  /** The records now reach `reserved`: allocates the next chunk when half of this one is used. */
  reserved(reserved: number): void {
    if (this.#allocating !== undefined || this.#failed || reserved + this.#chunk / 2 <= this.#end) return;
    const from = Math.max(this.#end, reserved);
    const to = from + this.#chunk;
    const done = this.#allocate(from, to).then(
      () => {
        this.#end = to;
        this.#allocating = undefined;
      },
      (error) => {
        this.#allocating = undefined;
        this.#failed = true;
        this.#fail(toAioError(error, "fallocate", this.#path, this.#fd));
      },
    );
    this.#allocating = { from, done };
  }

  async #allocate(from: number, to: number): Promise<void> {
    const platform = followedPlatform();
    const allocated = await allocator(platform).allocate(this.#fd, from, to - from, false, this.#path);
    if (allocated && !platform.abi.preallocation?.zero_fill) return;
    this.#zeros ??= await openFd(this.#path, O.O_WRONLY, 0).catch(() => this.#fd);
    for (let at = from; at < to; at += ZERO_PIECE) {
      await writeZeros(this.#zeros, at, Math.min(ZERO_PIECE, to - at));
      await fdatasync(this.#zeros, { fullSync: false });
    }
  }

  /** What records ending at `end` must wait for before they are written, if anything. */
  gate(end: number): Promise<void> | undefined {
    return this.#allocating !== undefined && end > this.#allocating.from ? this.#allocating.done : undefined;
  }

  /** Resolves once no allocation is in flight, then closes the descriptor of the zeros. */
  async close(): Promise<void> {
    await this.#allocating?.done;
    if (this.#zeros !== undefined && this.#zeros !== this.#fd) await closeFd(this.#zeros, this.#path);
    this.#zeros = undefined;
  }

  /** Resolves once no allocation is in flight. */
  idle(): Promise<void> {
    return this.#allocating?.done ?? Promise.resolve();
  }
}

class Log implements AioLog {
  readonly path: string;
  readonly format: LogFormat;
  readonly #fd: number;
  readonly #fullSync: boolean;
  /** Syncs are `aio_fsync(O_DSYNC)`s alone: no full-sync step follows them. */
  readonly #syncsAlone: boolean;
  /** Write and sync submitted back to back (`features.fsync_after_queued_writes`). */
  readonly #pipelined: boolean;
  /** A batch may be queued behind the previous batch's sync (`features.fd_requests_in_order`). */
  readonly #ahead: boolean;
  readonly #space: Space | undefined;
  /** Where the next batch goes: the end of the records written or being written. */
  #position: number;
  #queue: Entry[] = [];
  /** A flush is running or about to: it takes every record queued before it ends. */
  #flushing = false;
  /** Appends made and not yet settled; `#drained` is called when it falls to 0. */
  #unsettled = 0;
  #drained: (() => void) | undefined;
  /** Batches whose requests are not all final in libc. */
  #inLibc = 0;
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

  constructor(fd: number, path: string, format: LogFormat, position: number, fullSync: boolean, chunk: number | false) {
    this.#fd = fd;
    this.path = path;
    this.format = format;
    this.#position = position;
    this.#fullSync = fullSync;
    // The platform the syncs follow: the C library's, or Darwin's table in the Darwin harness.
    const { features, full_sync } = followedPlatform().abi;
    this.#syncsAlone = full_sync === null || !fullSync;
    this.#pipelined = features.fsync_after_queued_writes && this.#syncsAlone;
    this.#ahead = features.fd_requests_in_order && this.#syncsAlone;
    this.#space = chunk === false
      ? undefined
      : new Space(fd, path, chunk, position, (error) => this.#fail([], error));
  }

  /** Allocates the first chunk ahead of the records; rejects with the failure, if any. */
  async allocateAhead(): Promise<void> {
    this.#space?.reserved(this.#position);
    await this.#space?.idle();
    if (this.#failure === undefined) return;
    await this.#space?.close();
    throw this.#failure;
  }

  append(data: Uint8Array | string): Promise<void> {
    let bytes: Uint8Array;
    try {
      bytes = toData(data);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.format === "framed" && bytes.length > MAX_RECORD_LENGTH) {
      return Promise.reject(
        new RangeError(
          `Invalid data: a record of a framed log holds at most ${MAX_RECORD_LENGTH} bytes, received ${bytes.length}`,
        ),
      );
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
      await this.#waitForSpace();
      if (this.#failure !== undefined) break;
      const batch = this.#queue;
      this.#queue = [];
      await this.#commit(batch, undefined).settled;
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
      await this.#waitForSpace();
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

  /** Waits while the records queued would be written where space is being allocated by hand. */
  async #waitForSpace(): Promise<void> {
    if (this.#space === undefined) return;
    for (;;) {
      let end = this.#position;
      for (const entry of this.#queue) end += this.#encodedSize(entry.bytes);
      const gate = this.#space.gate(end);
      if (gate === undefined) return;
      await gate;
    }
  }

  #encodedSize(record: Uint8Array): number {
    return this.format === "framed" ? frameSize(record.length) : record.length;
  }

  /** The bytes of `batch` as the file holds them. */
  #encode(batch: readonly Entry[]): Uint8Array {
    if (this.format === "plain" && batch.length === 1) return batch[0].bytes;
    let length = 0;
    for (const entry of batch) length += this.#encodedSize(entry.bytes);
    const buffer = logHooks.allocate(length);
    let offset = 0;
    if (this.format === "framed") {
      const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
      for (const entry of batch) offset = encodeFrame(buffer, view, offset, entry.bytes);
    } else {
      for (const entry of batch) {
        buffer.set(entry.bytes, offset);
        offset += entry.bytes.length;
      }
    }
    return buffer;
  }

  /** The sync of a batch's write. */
  #sync(): Promise<unknown> {
    // Not through fdatasync() where no full-sync step follows: it holds a sync back while another
    // of the fd is in flight, and the batch queued ahead must go in behind the one in libc.
    const sync: Promise<unknown> = this.#syncsAlone
      ? submitWith(undefined, () => AioRequest.fsync(this.#fd, "dsync"))
      : fdatasync(this.#fd, { fullSync: this.#fullSync });
    return logHooks.io(sync, "sync");
  }

  /**
   * Writes `batch` after the records before it and makes it durable. With nothing of the log in
   * libc and at most `DIRECT_WRITE_MAX` bytes, the write is made from the JavaScript thread and
   * only the sync is submitted. Otherwise `aio_write`, then `aio_fsync(O_DSYNC)`: back to back
   * where libc runs the sync only after the write (`features.fsync_after_queued_writes`, so the
   * sync covers it and libc's worker starts it as the write returns), else once the write is
   * done. A short `aio_write` is continued, then synced again. `settled` resolves once the
   * callers of the batch were resolved or rejected (the write's failure first, then the sync's),
   * after those of `previous`.
   */
  #commit(batch: Entry[], previous: Promise<void> | undefined): Commit {
    const began = performance.now();
    let buffer: Uint8Array;
    try {
      buffer = this.#encode(batch);
    } catch (error) {
      // Nothing was submitted: the batch fails, and with it the log.
      return this.#rejected(batch, error, previous);
    }
    const position = this.#position;
    const direct = this.#inLibc === 0 && buffer.length <= logHooks.directWriteMax;
    if (direct) {
      try {
        writeFdSync(this.#fd, buffer, position, this.path);
      } catch (error) {
        return this.#rejected(batch, error, previous);
      }
    }
    this.#position += buffer.length;
    this.#space?.reserved(this.#position);
    this.#inLibc++;
    /** Resolves with whether a short write was continued (after the sync: a second sync is due). */
    let writing: Promise<boolean>;
    let sync: Promise<unknown>;
    if (direct) {
      writing = logHooks.io(Promise.resolve(false), "write");
      sync = this.#sync();
    } else {
      const wrote = logHooks.io(write(this.#fd, buffer, position), "write");
      if (this.#pipelined) {
        sync = this.#sync();
        writing = this.#continueWrite(wrote, buffer, position);
      } else {
        writing = this.#continueWrite(wrote, buffer, position).then(() => false);
        sync = writing.then(() => this.#sync());
      }
    }
    const settled = (async (): Promise<void> => {
      let failure: { error: unknown } | undefined;
      const [continued, synced] = await Promise.allSettled([writing, sync]);
      if (continued.status === "rejected") failure = { error: continued.reason };
      else if (synced.status === "rejected") failure = { error: synced.reason };
      else if (continued.value) await this.#sync().catch((error) => failure = { error });
      this.#inLibc--;
      await previous;
      if (this.#failure !== undefined) { for (const entry of batch) entry.reject(this.#failure); }
      else if (failure !== undefined) this.#fail(batch, failure.error);
      else this.#settled(batch, began);
    })();
    return { written: writing.then(() => true, () => false), settled };
  }

  /** The rest of a write after `wrote`; resolves with whether it came short and was continued. */
  async #continueWrite(wrote: Promise<number>, buffer: Uint8Array, position: number): Promise<boolean> {
    const done = await wrote;
    if (done <= 0 && buffer.length > 0) {
      // A regular file never takes 0 bytes of a non-empty write (as writeAll()).
      throw new AioError(native().abi.constants.EIO, "write", { fd: this.#fd });
    }
    if (done === buffer.length) return false;
    await logHooks.io(writeAll(this.#fd, buffer.subarray(done), position + done), "write");
    return true;
  }

  /** A batch that failed before anything was submitted: it fails the log, after `previous` settled. */
  #rejected(batch: readonly Entry[], error: unknown, previous: Promise<void> | undefined): Commit {
    const settled = (async (): Promise<void> => {
      await previous;
      if (this.#failure !== undefined) { for (const entry of batch) entry.reject(this.#failure); }
      else this.#fail(batch, error);
    })();
    return { written: Promise.resolve(false), settled };
  }

  /** The first failure: final for the log; rejects `batch` and everything queued. */
  #fail(batch: readonly Entry[], error: unknown): void {
    this.#failure ??= toAioError(error, "write", this.path, this.#fd);
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
   * requests are final, and an allocation in flight ends first, so then nothing of the log is
   * left in libc or off the JavaScript thread and the fd can be closed.
   */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      if (this.#unsettled > 0) await new Promise<void>((resolve) => this.#drained = resolve);
      await this.#space?.close();
      await closeFd(this.#fd, this.path);
    })();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** `options.format`. */
function toFormat(value: unknown, name = "options.format"): LogFormat {
  if (value === undefined) return "framed";
  if (value !== "framed" && value !== "plain") {
    throw new TypeError(`Invalid ${name}: expected "framed" or "plain", received ${describe(value)}`);
  }
  return value;
}

/** `options.preallocate`: bytes per chunk, or `false`. */
function toPreallocate(value: unknown, format: LogFormat): number | false {
  if (value === undefined) return format === "framed" ? DEFAULT_PREALLOCATE : false;
  if (value === false) return false;
  if (typeof value !== "number") {
    throw new TypeError(
      `Invalid options.preallocate: expected a number of bytes or false, received ${describe(value)}`,
    );
  }
  if (!Number.isSafeInteger(value) || value < 4096 || value > 2 ** 40) {
    throw new RangeError(`Invalid options.preallocate: expected an integer from 4096 to ${2 ** 40}, received ${value}`);
  }
  if (format === "plain") {
    throw new RangeError(
      "Invalid options.preallocate: only the framed format allocates space ahead (a plain log's size is its content)",
    );
  }
  return value;
}

/** Reads `fd` with `aio_read`, its errors as AioError naming `path`. */
function reader(fd: number, path: string): (buffer: Uint8Array, position: number) => Promise<number> {
  return (buffer, position) =>
    AioRequest.read(fd, buffer, position).done.catch((error) => {
      throw toAioError(error, "read", path, fd);
    });
}

/**
 * Opens (creating it if needed) an append-only log at `path`. `append()` resolves once the
 * record is durable; appends made while a batch is being synced share the next write and the
 * next `fdatasync` (group commit), so many concurrent writers cost few syncs.
 *
 * Framed (the default), each record is stored with its length and a CRC32C, and `readLog()`
 * yields exactly the records appended, in call order, whatever bytes they hold (the format is
 * documented byte by byte in the README). Opening an existing log walks it to its end (reading
 * it whole once): a torn last record, left by a crash, is cut off durably before the log
 * resolves; a corrupted record before valid ones rejects with a `CorruptLogError` naming its
 * offset, as does a file that is not a framed log. The file is allocated ahead of the records in
 * chunks (`options.preallocate`), so each batch's `fdatasync` commits the records and nothing
 * else; its size includes that space.
 *
 * Plain (`format: "plain"`), the file holds exactly the records appended, in call order, with
 * nothing between them: end each with a separator of your own (`"\n"` for JSON lines). New
 * records go after the file's current end (the file is opened with `O_APPEND`). Give
 * `options.separator` to have a torn last record cut off when the log opens.
 *
 * Either way, the file's directory is synced before the log resolves (whoever created the file
 * may not have done it), so its name survives a power cut as the records do. A crash can leave
 * the end of the file torn: records of the last batch (or two, where the next was queued behind
 * the sync) whole, one cut short, or missing; none of them was acknowledged.
 *
 * Rejects with TypeError or RangeError naming a bad argument, AioError (`path`, `syscall`) if
 * the file cannot be opened, read, allocated or synced, and CorruptLogError.
 *
 * @example Many concurrent writers, few syncs
 * ```ts ignore
 * import { openLog } from "@posix/aio";
 *
 * await using log = await openLog("events.log");
 * await Promise.all(
 *   Array.from({ length: 100 }, (_, i) => log.append(JSON.stringify({ i }))),
 * ); // every record is durable here: one write and one fdatasync, not 100
 * ```
 *
 * @param path The log file's path, or a `file:` URL.
 * @param options `format`, `mode` of a created file, `fullSync` (macOS), `preallocate`
 * (framed), `separator` (plain: cut a torn last record off).
 */
export async function openLog(path: string | URL, options?: OpenLogOptions): Promise<AioLog> {
  const file = toPath(path);
  const given = toOptions<OpenLogOptions>(options);
  const format = toFormat(given.format);
  const mode = toMode(given.mode, 0o666);
  const fullSync = toFullSync(given.fullSync);
  const chunk = toPreallocate(given.preallocate, format);
  if (format === "framed" && given.separator !== undefined) {
    throw new TypeError(
      'Invalid options.separator: a framed log frames each record and has no separator (give format: "plain")',
    );
  }
  const separator = given.separator === undefined ? undefined : toSeparator(given.separator);
  native();
  // The plain format appends; the framed one writes at its own positions, inside allocated space.
  const flags = format === "plain"
    ? (separator === undefined ? O.O_WRONLY : O.O_RDWR) | O.O_APPEND | O.O_CREAT
    : O.O_RDWR | O.O_CREAT;
  const fd = await openFd(file, flags, mode);
  try {
    const { size } = await statFd(fd, file);
    const end = format === "plain"
      ? await plainEnd(fd, file, size, separator)
      : await framedEnd(fd, file, size);
    if (end < size) await truncateFd(fd, end, file);
    const log = new Log(fd, file, format, end, fullSync, chunk);
    await log.allocateAhead();
    // The header, the cut and the allocation made durable (with fsync: sizes and allocation are
    // metadata), then (whoever created the file: this call, an earlier one that crashed before
    // syncing, another program may not have synced its directory) the file's name: without it,
    // acknowledged records could vanish with it.
    if (end !== size || format === "framed") {
      await fsync(fd, { fullSync }).catch((error) => {
        throw toAioError(error, "fsync", file, fd);
      });
    }
    await syncDir(parentOf(file), { fullSync });
    return log;
  } catch (error) {
    await closeFd(fd, file).catch(() => {});
    throw error;
  }
}

/**
 * Where a plain log's records end: just after the last `separator`, or the end of the file
 * without one.
 */
async function plainEnd(fd: number, path: string, size: number, separator: Uint8Array | undefined): Promise<number> {
  if (separator === undefined || size === 0) return size;
  return await lastRecordEnd(fd, path, size, separator);
}

/**
 * Where a framed log's records end, after its header: found by walking every frame. A new file
 * (or one a crash left with zeros where the header goes) gets its header here.
 */
async function framedEnd(fd: number, path: string, size: number): Promise<number> {
  const read = reader(fd, path);
  const head = new Uint8Array(Math.min(size, HEADER_SIZE));
  for (let filled = 0; filled < head.length;) filled += await read(head.subarray(filled), filled);
  const kind = headerKind(head);
  if (kind === "empty") {
    // From the JavaScript thread (16 bytes into the page cache), with write(2) at the offset of a
    // descriptor just opened: 0.
    writeFdSync(fd, encodeHeader(), undefined, path);
    return HEADER_SIZE;
  }
  checkHeader(kind, head, path);
  const walk = walkFrames(read, size, path, 1 << 20);
  for (;;) {
    const step = await walk.next();
    if (step.done) return step.value;
  }
}

/** Throws CorruptLogError unless `head` is a framed log's header of the version this module writes. */
function checkHeader(kind: "log" | "other", head: Uint8Array, path: string): void {
  if (kind === "other") {
    throw new CorruptLogError(
      path,
      0,
      'it does not start with a framed log\'s header (a log of plain records opens with format: "plain")',
    );
  }
  const version = headerVersion(head);
  if (version !== LOG_VERSION) {
    throw new CorruptLogError(path, 8, `its format version is ${version}; this module reads version ${LOG_VERSION}`);
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
   * The log's format. Default: framed if the file starts with a framed log's header, else
   * plain (as when `separator` is given).
   */
  format?: LogFormat;
  /**
   * A plain log: what ends every record (a string as UTF-8, or bytes). Default `"\n"`. The
   * records are yielded without it; bytes after the last one are a torn record and are not
   * yielded.
   */
  separator?: Uint8Array | string;
  /** Bytes read per request. Default 65536. */
  chunkSize?: number;
}

/**
 * Reads back the records of a log, in order, with `aio_read`.
 *
 * A framed log (the default format of `openLog()`, recognized by its header): yields each record
 * as it was appended, and stops at the end of the log (space allocated ahead reads as the end)
 * or at a record torn by a crash. A corrupted record before valid ones throws a
 * `CorruptLogError` naming its offset: it is never skipped in silence. A plain log: yields each
 * record without its `separator`, and stops at the end of the last complete one, so a record cut
 * short by a crash is never yielded.
 *
 * @example Replay a log after a restart
 * ```ts ignore
 * import { readLog } from "@posix/aio";
 *
 * const decoder = new TextDecoder();
 * for await (const record of readLog("events.log")) {
 *   console.log(JSON.parse(decoder.decode(record)));
 * }
 * ```
 *
 * @param path The log file's path, or a `file:` URL.
 * @param options `format`, `separator` (plain; default `"\n"`) and `chunkSize`.
 */
export async function* readLog(path: string | URL, options?: ReadLogOptions): AsyncGenerator<Uint8Array, void> {
  const file = toPath(path);
  const given = toOptions<ReadLogOptions>(options);
  const asked = given.format === undefined ? undefined : toFormat(given.format);
  if (asked === "framed" && given.separator !== undefined) {
    throw new TypeError('Invalid options.separator: a framed log has no separator (give format: "plain")');
  }
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
    const read = (buffer: Uint8Array, position: number): Promise<number> => handle.read(buffer, position);
    const { size } = await statFd(handle.fd, file);
    const head = new Uint8Array(Math.min(size, HEADER_SIZE));
    for (let filled = 0; filled < head.length;) filled += await read(head.subarray(filled), filled);
    const kind = headerKind(head);
    const format = asked ?? (given.separator === undefined && kind === "log" ? "framed" : "plain");
    if (format === "framed") {
      if (kind === "empty") return;
      checkHeader(kind, head, file);
      for await (const { record } of walkFrames(read, size, file, chunkSize)) yield record;
    } else {
      yield* plainRecords(read, separator, chunkSize);
    }
  } finally {
    await handle.close();
  }
}

/** The records of a plain log, each without its separator, up to the end of the last complete one. */
async function* plainRecords(
  read: (buffer: Uint8Array, position: number) => Promise<number>,
  separator: Uint8Array,
  chunkSize: number,
): AsyncGenerator<Uint8Array, void> {
  // Each byte is searched once (the last `separator.length - 1` twice).
  const window = new ReadWindow(read, chunkSize);
  for (;;) {
    /** The unread bytes searched already (a chunk may move them to the buffer's start). */
    const searched = window.end - window.start;
    if (await window.more() === 0) return;
    const { buffer } = window;
    let from = window.start + Math.max(0, searched - separator.length + 1);
    const view = buffer.subarray(0, window.end);
    for (let at = indexOf(view, separator, from); at >= 0; at = indexOf(view, separator, from)) {
      yield buffer.slice(window.start, at);
      window.start = from = at + separator.length;
    }
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
