/**
 * `AioRequest` and the promise functions `read()` and `write()` built on it.
 *
 * @module
 */

import { ControlBlock } from "./control_block.ts";
import { type CancelResult, type EngineOperation, getEngine } from "./engine.ts";
import { AioError } from "./errors.ts";
import { native } from "./target.ts";
import { describe, toBytes, toFd, toOptions, toSafeIndex, toSignal } from "./validate.ts";

export type { CancelResult } from "./engine.ts";

/** What a request does: the operation libc performs once it accepted the request. */
export type AioOperation = "read" | "write" | "fsync" | "fdatasync";

/** A file descriptor, or an object carrying one in `fd` (Node, Bun and Deno's node:fs `FileHandle`). */
export type FdLike = number | { readonly fd: number };

/** Options of the promise functions. */
export interface AioOptions {
  /** Aborting calls `aio_cancel`; if libc cancels the request, the promise rejects with the reason. */
  signal?: AbortSignal;
}

const SUBMITTED_BY: Readonly<Record<AioOperation, string>> = {
  read: "aio_read",
  write: "aio_write",
  fsync: "aio_fsync",
  fdatasync: "aio_fsync",
};

class RequestOperation implements EngineOperation {
  readonly block: ControlBlock;
  readonly fd: number;
  submittedAt = 0;
  token: bigint | undefined = undefined;
  readonly complete: () => void;

  constructor(block: ControlBlock, fd: number, complete: () => void) {
    this.block = block;
    this.fd = fd;
    this.complete = complete;
  }
}

let onFinal: (request: AioRequest, listener: () => void) => () => void;

/**
 * Calls `listener` once, when `request` is final (right after `done` settles), unless the
 * returned function is called first: unlike a reaction on `done`, nothing stays attached to
 * the request once the caller stops waiting. `request` must not be final yet.
 */
export function whenFinal(request: AioRequest, listener: () => void): () => void {
  return onFinal(request, listener);
}

/**
 * One asynchronous request in flight, submitted at once by `AioRequest.fsync()`,
 * `AioRequest.read()` or `AioRequest.write()`. Its native control block is freed as soon as the
 * request is final, whether or not anyone awaits it.
 *
 * @example Sync two files at once and wait for both
 * ```ts ignore
 * import { AioRequest } from "@posix/aio";
 *
 * const a = AioRequest.fsync(fdA, "dsync");
 * const b = AioRequest.fsync(fdB, "dsync");
 * await Promise.all([a.done, b.done]);
 * ```
 */
export class AioRequest {
  /** The file descriptor. */
  readonly fd: number;
  /** The operation. */
  readonly op: AioOperation;
  /** Resolves with `aio_return` (bytes transferred, 0 for a sync); rejects with AioError. */
  readonly done: Promise<number>;
  readonly #operation: RequestOperation;
  #settle!: (error: unknown, value: number) => void;
  /** Who waits for the end without holding on to `done` (see `whenFinal`). */
  #listeners: Set<() => void> | undefined;

  static {
    onFinal = (request, listener) => {
      (request.#listeners ??= new Set()).add(listener);
      return () => request.#listeners?.delete(listener);
    };
  }

  private constructor(fd: number, op: AioOperation, block: ControlBlock) {
    this.fd = fd;
    this.op = op;
    this.done = new Promise<number>((resolve, reject) => {
      this.#settle = (error, value) => error === undefined ? resolve(value) : reject(error);
    });
    // Whoever only polls error()/result() must not get an unhandled rejection; awaiting still throws.
    this.done.catch(() => {});
    this.#operation = new RequestOperation(block, fd, () => this.#complete());
  }

  /**
   * Submits `aio_fsync`: `"sync"` (O_SYNC, like fsync(2)) or `"dsync"` (O_DSYNC, like
   * fdatasync(2)). Throws AioError if libc refuses the request.
   *
   * @example
   * ```ts ignore
   * const request = AioRequest.fsync(fd, "sync");
   * await request.done;
   * ```
   *
   * @param fd The file descriptor, or an object with a numeric `fd`.
   * @param mode `"sync"` for file integrity (default), `"dsync"` for data integrity.
   */
  static fsync(fd: FdLike, mode: "sync" | "dsync" = "sync"): AioRequest {
    const descriptor = toFd(fd);
    if (mode !== "sync" && mode !== "dsync") {
      throw new TypeError(`Invalid mode: expected "sync" or "dsync", received ${describe(mode)}`);
    }
    const { O_SYNC, O_DSYNC } = native().abi.constants;
    const op = mode === "sync" ? O_SYNC : O_DSYNC;
    const kind = mode === "sync" ? "fsync" : "fdatasync";
    return AioRequest.#submit(descriptor, kind, 0, null, 0, (block) => block.start(kind, op));
  }

  /**
   * Submits `aio_read` of `buffer.length` bytes at `position`. The data lands in `buffer` when
   * the request is final. Throws AioError if libc refuses the request.
   *
   * @example
   * ```ts ignore
   * const buffer = new Uint8Array(4096);
   * const bytes = await AioRequest.read(fd, buffer, 0).done;
   * ```
   *
   * @param fd The file descriptor, or an object with a numeric `fd`.
   * @param buffer Where the data goes.
   * @param position The file offset to read from.
   */
  static read(fd: FdLike, buffer: Uint8Array, position: number): AioRequest {
    const descriptor = toFd(fd);
    const target = toBytes(buffer, "buffer");
    const offset = toSafeIndex(position, "position");
    return AioRequest.#submit(descriptor, "read", offset, target, target.length, (block) => block.start("read"));
  }

  /**
   * Submits `aio_write` of `data` at `position`. `data` is copied at once: it may change right
   * after the call. Throws AioError if libc refuses the request.
   *
   * @example
   * ```ts ignore
   * const bytes = await AioRequest.write(fd, new TextEncoder().encode("hello\n"), 0).done;
   * ```
   *
   * @param fd The file descriptor, or an object with a numeric `fd`.
   * @param data The bytes to write.
   * @param position The file offset to write at.
   */
  static write(fd: FdLike, data: Uint8Array, position: number): AioRequest {
    const descriptor = toFd(fd);
    const source = toBytes(data, "data");
    const offset = toSafeIndex(position, "position");
    return AioRequest.#submit(descriptor, "write", offset, source, source.length, (block) => block.start("write"));
  }

  /**
   * Creates the request: its control block, with the data of a read or write attached (a write's
   * data copied now, even if the engine holds the request back), then submits it.
   */
  static #submit(
    fd: number,
    op: AioOperation,
    position: number,
    data: Uint8Array | null,
    length: number,
    start: (block: ControlBlock) => number,
  ): AioRequest {
    const engine = getEngine();
    const block = new ControlBlock(native());
    const request = new AioRequest(fd, op, block);
    let errno: number;
    try {
      block.set("aio_fildes", fd);
      block.set("aio_offset", position);
      if (op === "read" || op === "write") block.prepare(op, data, length);
      errno = engine.submit(request.#operation, () => start(block));
    } catch (error) {
      block.abandon(0);
      block.free();
      throw error;
    }
    if (errno !== 0) {
      block.abandon(errno);
      block.free();
      throw new AioError(errno, SUBMITTED_BY[op], { fd });
    }
    return request;
  }

  /**
   * The error status (`aio_error`): `EINPROGRESS` while in flight, then 0 or the errno of the
   * failure. Asking checks the request once.
   *
   * @example
   * ```ts ignore
   * const { EINPROGRESS } = (await import("@posix/aio/posix")).constants;
   * if (request.error() !== EINPROGRESS) console.log("final");
   * ```
   */
  error(): number {
    const block = this.#operation.block;
    if (!getEngine().check(this.#operation)) return native().abi.constants.EINPROGRESS;
    return block.error;
  }

  /**
   * The return status (`aio_return`, called natively once and cached): bytes transferred, 0 for
   * a sync, -1 for a failure. Throws AioError `EINPROGRESS` while the request is in flight.
   *
   * @example
   * ```ts ignore
   * await request.done;
   * console.log(request.result());
   * ```
   */
  result(): number {
    if (!getEngine().check(this.#operation)) {
      throw new AioError(native().abi.constants.EINPROGRESS, "aio_return", { fd: this.fd });
    }
    return this.#operation.block.result;
  }

  /**
   * Asks libc to cancel the request (`aio_cancel`): `"canceled"` (then `done` rejects with
   * ECANCELED), `"notcanceled"` (it is running and will finish), or `"alldone"`.
   *
   * @example
   * ```ts ignore
   * if (request.cancel() === "notcanceled") await request.done;
   * ```
   */
  cancel(): CancelResult {
    return getEngine().cancel(this.#operation);
  }

  #complete(): void {
    this.#settleDone();
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (listeners !== undefined) { for (const listener of listeners) listener(); }
  }

  #settleDone(): void {
    const { block } = this.#operation;
    if (block.error === 0) {
      if (block.truncated) {
        this.#settle(new TypeError(`The buffer was detached before the read finished (${block.result} bytes read)`), 0);
      } else {
        this.#settle(undefined, block.result);
      }
    } else {
      // A request held back by the engine and then refused failed at its submit, not in libc.
      const refusedAtSubmit = block.refused && block.error !== native().abi.constants.ECANCELED;
      this.#settle(new AioError(block.error, refusedAtSubmit ? SUBMITTED_BY[this.op] : this.op, { fd: this.fd }), 0);
    }
  }
}

/**
 * Follows a request to its end, canceling it if `signal` aborts. A request libc canceled
 * because of the signal rejects with the signal's reason.
 */
export function follow(request: AioRequest, signal: AbortSignal | undefined): Promise<number> {
  if (signal === undefined) return request.done;
  return new Promise((resolve, reject) => {
    let canceled = false;
    const onAbort = (): void => {
      try {
        canceled = request.cancel() === "canceled";
      } catch {
        // libc refused aio_cancel: the request goes on and settles as usual.
      }
    };
    signal.addEventListener("abort", onAbort, { once: true });
    request.done.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(canceled ? signal.reason : error);
      },
    );
  });
}

/**
 * The outcome of the request `submit` makes, followed with `options.signal`: a rejection, never
 * a throw, for bad options or a request libc refused at once.
 */
export function submitWith(
  options: unknown,
  submit: () => AioRequest,
): Promise<number> {
  try {
    const signal = toSignal(toOptions<AioOptions>(options).signal);
    if (signal?.aborted) return Promise.reject(signal.reason);
    return follow(submit(), signal);
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Reads up to `buffer.length` bytes at `position` with `aio_read`; resolves with the number of
 * bytes read (0 at end of file).
 *
 * @example
 * ```ts ignore
 * import { read } from "@posix/aio";
 *
 * const buffer = new Uint8Array(4096);
 * const bytes = await read(fd, buffer, 0);
 * console.log(new TextDecoder().decode(buffer.subarray(0, bytes)));
 * ```
 *
 * @param fd The file descriptor, or an object with a numeric `fd`.
 * @param buffer Where the data goes.
 * @param position The file offset to read from.
 * @param options An AbortSignal.
 */
export function read(fd: FdLike, buffer: Uint8Array, position: number, options?: AioOptions): Promise<number> {
  return submitWith(options, () => AioRequest.read(fd, buffer, position));
}

/**
 * Writes `data` at `position` with `aio_write`; resolves with the number of bytes written.
 * `data` is copied when the request is submitted.
 *
 * @example
 * ```ts ignore
 * import { write } from "@posix/aio";
 *
 * const written = await write(fd, new TextEncoder().encode("hello\n"), 0);
 * ```
 *
 * @param fd The file descriptor, or an object with a numeric `fd`.
 * @param data The bytes to write.
 * @param position The file offset to write at.
 * @param options An AbortSignal.
 */
export function write(fd: FdLike, data: Uint8Array, position: number, options?: AioOptions): Promise<number> {
  return submitWith(options, () => AioRequest.write(fd, data, position));
}
