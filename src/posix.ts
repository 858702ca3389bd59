/**
 * The C-faithful layer, `@posix/aio/posix`: `struct aiocb` as the `Aiocb` class and the POSIX
 * AIO functions returning what C returns (0 or -1, status numbers), with `errno()` for the
 * errno of this layer's last failing call. A C programmer reads it line for line.
 *
 * The differences from C keep memory safe and the JavaScript thread free:
 *
 * - `aio_buf` is a Uint8Array. Reads and writes go through a native copy that lives until the
 *   request is final; read data appears in `aio_buf` once `aio_error`, `aio_return`,
 *   `aio_suspend` or `lio_listio(LIO_WAIT)` has seen the request final.
 * - `aio_return` is called natively exactly once, as soon as the status is final, and cached:
 *   the first `aio_return(cb)` gets that value. `aio_error` or `aio_return` on a control block
 *   with no request, or whose result was already taken, returns -1 with `EINVAL`, and
 *   `aio_return` on a request still in flight returns -1 with `EINPROGRESS` (POSIX leaves
 *   both undefined).
 * - An `Aiocb` cannot change, be resubmitted or be freed while its request is in flight or a
 *   pending `aio_suspend` lists it: that throws, and so does reading a member once it is freed.
 *   `using` never throws: a block in flight is handed over and freed once final.
 * - `lio_listio` takes the entries the C library takes (`features.lio_listio` in the ABI
 *   table); what libc took is in flight until final, what it never took reads as never
 *   submitted.
 * - `aio_suspend` and `lio_listio` return Promises: they wait off the JavaScript thread.
 * - SIGEV_THREAD takes a JavaScript function in `sigev_notify_function`, run on the
 *   JavaScript thread with `sigev_value`.
 *
 * @example Sync a file the C way
 * ```ts ignore
 * import { Aiocb, aio_error, aio_fsync, aio_return, aio_suspend, constants, errno } from "@posix/aio/posix";
 *
 * const cb = new Aiocb({ aio_fildes: fd });
 * if (aio_fsync(constants.O_DSYNC, cb) === -1) throw new Error(`aio_fsync: errno ${errno()}`);
 * while (aio_error(cb) === constants.EINPROGRESS) await aio_suspend([cb]);
 * console.log(aio_error(cb), aio_return(cb)); // 0 0
 * cb.free();
 * ```
 *
 * @module
 */

import { fstatSync } from "node:fs";
import type { Address } from "../ffi/mod.ts";
import type { Constants } from "./abi.ts";
import { type BlockOperation, ControlBlock, writeSigevent } from "./control_block.ts";
import { expectNotification, notificationDue, notificationFunction, withdrawNotification } from "./notify.ts";
import { type Loaded, native } from "./target.ts";
import { describe, toBytes, toInt32, toSafeIndex, toSafeInteger } from "./validate.ts";
import { adopt, pointerList, waitAny } from "./wait.ts";

export type { Constants, ErrnoName, ErrnoTable } from "./abi.ts";

/** A notification as `aio_sigevent` describes it. */
export interface Sigevent {
  /** `SIGEV_NONE` (the default), `SIGEV_SIGNAL` or `SIGEV_THREAD`. */
  readonly sigev_notify: number;
  /** The signal for `SIGEV_SIGNAL`. */
  readonly sigev_signo: number;
  /** The value passed along: an int or a pointer-sized integer. */
  readonly sigev_value: number | bigint;
  /** For `SIGEV_THREAD`: called on the JavaScript thread with `sigev_value`. */
  readonly sigev_notify_function?: (value: number | bigint) => void;
}

/** The members of `struct aiocb` to set, for `new Aiocb()`. */
export interface AiocbInit {
  /** The file descriptor. */
  aio_fildes?: number;
  /** The file offset. */
  aio_offset?: number;
  /** The data buffer; assigning it sets `aio_nbytes` to its length. */
  aio_buf?: Uint8Array | null;
  /** Bytes to transfer, at most `aio_buf.length`. */
  aio_nbytes?: number;
  /** Lowers the request's priority by this much. */
  aio_reqprio?: number;
  /** `LIO_READ`, `LIO_WRITE` or `LIO_NOP`, for `lio_listio`. */
  aio_lio_opcode?: number;
  /** How completion is announced. */
  aio_sigevent?: Partial<Sigevent>;
}

/** `struct timespec`: a relative timeout for `aio_suspend`. */
export interface Timespec {
  /** Seconds. */
  tv_sec: number;
  /** Nanoseconds, 0 to 999,999,999. */
  tv_nsec: number;
}

let lastErrno = 0;

/**
 * The errno of this layer's last failing call (like C's `errno`, but only set by this module).
 *
 * @example
 * ```ts ignore
 * if (aio_fsync(constants.O_SYNC, cb) === -1 && errno() === constants.EBADF) console.log("bad fd");
 * ```
 */
export function errno(): number {
  return lastErrno;
}

function fail(errno: number): -1 {
  lastErrno = errno;
  return -1;
}

/**
 * The loaded platform's constants: `O_SYNC`, `O_DSYNC`, errno values, `AIO_*`, `LIO_*`,
 * `SIGEV_*`. Reading one loads the C library.
 *
 * @example
 * ```ts ignore
 * import { constants } from "@posix/aio/posix";
 * console.log(constants.EINPROGRESS); // 115 on Linux, 36 on macOS
 * ```
 */
export const constants: Constants = new Proxy({} as Constants, {
  get: (_target, name) => typeof name === "string" ? native().abi.constants[name as keyof Constants] : undefined,
  has: (_target, name) => name in native().abi.constants,
  ownKeys: () => Reflect.ownKeys(native().abi.constants),
  getOwnPropertyDescriptor: (_target, name) => {
    const value = native().abi.constants[name as keyof Constants];
    return value === undefined ? undefined : { value, enumerable: true, configurable: true, writable: false };
  },
  set: () => false,
  defineProperty: () => false,
  deleteProperty: () => false,
});

/**
 * Hands over a block whose Aiocb is gone (collected, or disposed by `using`): one in flight is
 * adopted (src/wait.ts), and freed once final; any other is freed as soon as no call lists it.
 */
function handOver(block: ControlBlock): void {
  if (block.state === "pending") adopt(native(), block);
  else block.retire();
}

const registry = new FinalizationRegistry<ControlBlock>(handOver);

let internals: (cb: Aiocb) => ControlBlock;
let armNotification: (cb: Aiocb) => bigint | undefined;
let notificationOf: (cb: Aiocb) => bigint | undefined;

/**
 * `struct aiocb` in native memory: zeroed, with `sigev_notify = SIGEV_NONE`. Free it with
 * `free()` (or `using`); one that is garbage collected is freed too, after its request ends.
 *
 * @example
 * ```ts ignore
 * using cb = new Aiocb({ aio_fildes: fd, aio_buf: new Uint8Array(4096), aio_offset: 0 });
 * aio_read(cb);
 * ```
 */
export class Aiocb {
  readonly #native: Loaded;
  readonly #block: ControlBlock;
  #buf: Uint8Array | null = null;
  #sigevent: Sigevent;
  /** Token of the SIGEV_THREAD notification of the request in flight. */
  #token: bigint | undefined;

  static {
    internals = (cb) => cb.#block;
    armNotification = (cb) => cb.#token = cb.#armNotification();
    notificationOf = (cb) => cb.#token;
  }

  /**
   * A zeroed control block with the given members. Loads the C library on first use.
   *
   * @param init Members to set; `aio_buf` is applied before `aio_nbytes`.
   */
  constructor(init: AiocbInit = {}) {
    if (typeof init !== "object" || init === null) {
      throw new TypeError(`Invalid init: expected an object, received ${describe(init)}`);
    }
    this.#native = native();
    this.#block = new ControlBlock(this.#native);
    this.#sigevent = { sigev_notify: this.#native.abi.constants.SIGEV_NONE, sigev_signo: 0, sigev_value: 0 };
    registry.register(this, this.#block, this);
    try {
      if (init.aio_fildes !== undefined) this.aio_fildes = init.aio_fildes;
      if (init.aio_offset !== undefined) this.aio_offset = init.aio_offset;
      if (init.aio_buf !== undefined) this.aio_buf = init.aio_buf;
      if (init.aio_nbytes !== undefined) this.aio_nbytes = init.aio_nbytes;
      if (init.aio_reqprio !== undefined) this.aio_reqprio = init.aio_reqprio;
      if (init.aio_lio_opcode !== undefined) this.aio_lio_opcode = init.aio_lio_opcode;
      if (init.aio_sigevent !== undefined) this.aio_sigevent = init.aio_sigevent;
    } catch (error) {
      this.free();
      throw error;
    }
  }

  /** The file descriptor (`int aio_fildes`). */
  get aio_fildes(): number {
    this.#readable("aio_fildes");
    return this.#block.get("aio_fildes");
  }
  set aio_fildes(value: number) {
    this.#writable();
    this.#block.set("aio_fildes", toInt32(value, "aio_fildes"));
  }

  /** The file offset (`off_t aio_offset`), a safe integer. */
  get aio_offset(): number {
    this.#readable("aio_offset");
    return this.#block.get("aio_offset");
  }
  set aio_offset(value: number) {
    this.#writable();
    this.#block.set("aio_offset", toSafeInteger(value, "aio_offset"));
  }

  /** The data buffer; the Aiocb keeps it alive. Assigning it sets `aio_nbytes` to its length. */
  get aio_buf(): Uint8Array | null {
    this.#readable("aio_buf");
    return this.#buf;
  }
  set aio_buf(value: Uint8Array | null) {
    this.#writable();
    const buffer = value === null ? null : toBytes(value, "aio_buf");
    this.#buf = buffer;
    this.#block.set("aio_nbytes", buffer?.length ?? 0);
  }

  /** Bytes to transfer (`size_t aio_nbytes`), at most `aio_buf.length`. */
  get aio_nbytes(): number {
    this.#readable("aio_nbytes");
    return this.#block.get("aio_nbytes");
  }
  set aio_nbytes(value: number) {
    this.#writable();
    const nbytes = toSafeIndex(value, "aio_nbytes");
    const length = this.#buf?.length ?? 0;
    if (nbytes > length) {
      throw new RangeError(`Invalid aio_nbytes: expected at most aio_buf.length (${length}), received ${nbytes}`);
    }
    this.#block.set("aio_nbytes", nbytes);
  }

  /** Priority decrease (`int aio_reqprio`). */
  get aio_reqprio(): number {
    this.#readable("aio_reqprio");
    return this.#block.get("aio_reqprio");
  }
  set aio_reqprio(value: number) {
    this.#writable();
    this.#block.set("aio_reqprio", toInt32(value, "aio_reqprio"));
  }

  /** The `lio_listio` operation (`int aio_lio_opcode`). glibc overwrites it on `aio_fsync`. */
  get aio_lio_opcode(): number {
    this.#readable("aio_lio_opcode");
    return this.#block.get("aio_lio_opcode");
  }
  set aio_lio_opcode(value: number) {
    this.#writable();
    this.#block.set("aio_lio_opcode", toInt32(value, "aio_lio_opcode"));
  }

  /** How completion is announced (`struct sigevent aio_sigevent`). Assign a whole new object. */
  get aio_sigevent(): Sigevent {
    this.#readable("aio_sigevent");
    return this.#sigevent;
  }
  set aio_sigevent(value: Partial<Sigevent>) {
    this.#writable();
    this.#sigevent = toSigevent(this.#native, value, "aio_sigevent");
    const { sigev_notify, sigev_signo, sigev_value } = this.#sigevent;
    // SIGEV_THREAD gets its function and token when submitted.
    this.#block.setSigevent(sigev_notify, sigev_signo, BigInt(sigev_value), this.#native.backend.NULL);
  }

  /**
   * Frees the native struct. Throws while a request is in flight or a pending `aio_suspend`
   * lists it; does nothing the second time. Reading a member afterwards throws.
   */
  free(): void {
    this.#block.free();
    registry.unregister(this);
  }

  /**
   * For `using`: frees the native struct, or, while a request is in flight or a pending call
   * lists it, hands it over to be freed once that is over (as garbage collection does). Never
   * throws, so leaving a scope on an exception does not turn it into a SuppressedError.
   */
  [Symbol.dispose](): void {
    if (this.#block.state === "freed") return;
    registry.unregister(this);
    handOver(this.#block);
  }

  #readable(name: string): void {
    if (this.#block.state === "freed") throw new Error(`Cannot read ${name}: the Aiocb was freed`);
  }

  #writable(): void {
    if (this.#block.state === "freed") throw new Error("The Aiocb was freed");
    if (this.#block.state === "pending") {
      throw new Error("Cannot change an Aiocb while its request is in flight (aio(7))");
    }
  }

  /** Before a submit: gives SIGEV_THREAD its function and a fresh token. */
  #armNotification(): bigint | undefined {
    const { sigev_notify, sigev_value, sigev_notify_function } = this.#sigevent;
    if (sigev_notify !== this.#native.abi.constants.SIGEV_THREAD || sigev_notify_function === undefined) {
      return undefined;
    }
    const token = expectNotification(() => sigev_notify_function(sigev_value));
    this.#block.setSigevent(sigev_notify, 0, token, notificationFunction());
    return token;
  }
}

function toSigevent(loaded: Loaded, value: unknown, name: string): Sigevent {
  const { constants, max_signal, pointer_size } = loaded.abi;
  if (typeof value !== "object" || value === null) {
    throw new TypeError(`Invalid ${name}: expected an object, received ${describe(value)}`);
  }
  const init = value as Partial<Sigevent>;
  const { SIGEV_NONE, SIGEV_SIGNAL, SIGEV_THREAD } = constants;
  const notify = toInt32(init.sigev_notify ?? SIGEV_NONE, `${name}.sigev_notify`);
  if (notify !== SIGEV_NONE && notify !== SIGEV_SIGNAL && notify !== SIGEV_THREAD) {
    throw new RangeError(
      `Invalid ${name}.sigev_notify: expected SIGEV_NONE (${SIGEV_NONE}), SIGEV_SIGNAL (${SIGEV_SIGNAL}) or SIGEV_THREAD (${SIGEV_THREAD}), received ${notify}`,
    );
  }
  const signo = toInt32(init.sigev_signo ?? 0, `${name}.sigev_signo`);
  if (notify === SIGEV_SIGNAL && (signo < 1 || signo > max_signal)) {
    throw new RangeError(
      `Invalid ${name}.sigev_signo: expected a signal number from 1 to ${max_signal}, received ${signo}`,
    );
  }
  const sigValue = init.sigev_value ?? 0;
  if (typeof sigValue === "bigint") {
    const bits = pointer_size * 8;
    if (BigInt.asIntN(bits, sigValue) !== sigValue && BigInt.asUintN(bits, sigValue) !== sigValue) {
      throw new RangeError(`Invalid ${name}.sigev_value: expected a ${bits}-bit integer, received ${sigValue}n`);
    }
  } else {
    toSafeInteger(sigValue, `${name}.sigev_value`);
  }
  const fn = init.sigev_notify_function;
  if (fn !== undefined && typeof fn !== "function") {
    throw new TypeError(`Invalid ${name}.sigev_notify_function: expected a function, received ${describe(fn)}`);
  }
  if (notify === SIGEV_THREAD && fn === undefined) {
    throw new TypeError(`Invalid ${name}.sigev_notify_function: SIGEV_THREAD needs a function, received undefined`);
  }
  return Object.freeze({ sigev_notify: notify, sigev_signo: signo, sigev_value: sigValue, sigev_notify_function: fn });
}

function toAiocb(value: unknown, name = "aiocbp"): ControlBlock {
  if (!(value instanceof Aiocb)) throw new TypeError(`Invalid ${name}: expected an Aiocb, received ${describe(value)}`);
  const block = internals(value);
  if (block.state === "freed") throw new TypeError(`Invalid ${name}: the Aiocb was freed`);
  return block;
}

/** The data of a read or write: `aio_buf` with `aio_nbytes` checked against it. */
function transfer(cb: Aiocb, block: ControlBlock): [Uint8Array, number] {
  const buffer = cb.aio_buf ?? new Uint8Array(0);
  const nbytes = block.get("aio_nbytes");
  if ((buffer.buffer as ArrayBuffer & { detached?: boolean }).detached === true) {
    throw new TypeError("Invalid aio_buf: its ArrayBuffer is detached");
  }
  if (nbytes > buffer.length) {
    throw new RangeError(`Invalid aio_nbytes: expected at most aio_buf.length (${buffer.length}), received ${nbytes}`);
  }
  return [buffer, nbytes];
}

/**
 * A list notification that libc copied (glibc): due once every entry libc took is seen final.
 * Where libc could not arrange it (glibc's `lio_listio` failing to allocate its wait list) it
 * never comes, and must not keep the process alive forever.
 */
interface ListWatch {
  readonly token: bigint;
  readonly remaining: Set<ControlBlock>;
}

const listWatches = new WeakMap<ControlBlock, ListWatch>();

/**
 * Checks the request once; when it is final, its SIGEV_THREAD notification (if any), and that
 * of its list once all the list's requests are final, are due and no longer awaited forever.
 */
function settled(cb: Aiocb, block: ControlBlock): boolean {
  if (!block.poll()) return false;
  const token = notificationOf(cb);
  if (token !== undefined) notificationDue(token);
  const watch = listWatches.get(block);
  if (watch !== undefined) {
    listWatches.delete(block);
    watch.remaining.delete(block);
    if (watch.remaining.size === 0) notificationDue(watch.token);
  }
  return true;
}

function submitted(token: bigint | undefined, errno: number): number {
  if (errno === 0) return 0;
  if (token !== undefined) withdrawNotification(token);
  return fail(errno);
}

/**
 * `int aio_read(struct aiocb *aiocbp)`: queues a read of `aio_nbytes` bytes at `aio_offset`.
 * Returns 0, or -1 with `errno()`.
 *
 * @example
 * ```ts ignore
 * const cb = new Aiocb({ aio_fildes: fd, aio_buf: new Uint8Array(512) });
 * if (aio_read(cb) === -1) console.error(errno());
 * ```
 *
 * @param aiocbp The control block.
 */
export function aio_read(aiocbp: Aiocb): number {
  const block = toAiocb(aiocbp);
  const [buffer, nbytes] = transfer(aiocbp, block);
  const token = armNotification(aiocbp);
  return submitted(token, block.read(buffer, nbytes));
}

/**
 * `int aio_write(struct aiocb *aiocbp)`: queues a write of the first `aio_nbytes` bytes of
 * `aio_buf` (copied now) at `aio_offset`. Returns 0, or -1 with `errno()`.
 *
 * @example
 * ```ts ignore
 * const cb = new Aiocb({ aio_fildes: fd, aio_buf: new TextEncoder().encode("hi\n") });
 * aio_write(cb);
 * ```
 *
 * @param aiocbp The control block.
 */
export function aio_write(aiocbp: Aiocb): number {
  const block = toAiocb(aiocbp);
  const [buffer, nbytes] = transfer(aiocbp, block);
  const token = armNotification(aiocbp);
  return submitted(token, block.write(buffer, nbytes));
}

/**
 * `int aio_fsync(int op, struct aiocb *aiocbp)`: queues a sync of every request already queued
 * on `aio_fildes`, `O_SYNC` (like fsync) or `O_DSYNC` (like fdatasync). Only `aio_fildes` and
 * `aio_sigevent` matter. Returns 0, or -1 with `errno()` (`EINVAL` for another `op`, `EBADF`).
 *
 * @example
 * ```ts ignore
 * const cb = new Aiocb({ aio_fildes: fd });
 * aio_fsync(constants.O_DSYNC, cb);
 * ```
 *
 * @param op `O_SYNC` or `O_DSYNC`.
 * @param aiocbp The control block.
 */
export function aio_fsync(op: number, aiocbp: Aiocb): number {
  const operation = toInt32(op, "op");
  const block = toAiocb(aiocbp);
  const token = armNotification(aiocbp);
  return submitted(token, block.fsync(operation));
}

/**
 * `int aio_error(const struct aiocb *aiocbp)`: `EINPROGRESS` while in flight, then 0 or the
 * errno of the failed operation (`ECANCELED` if canceled). -1 with `EINVAL` if the control
 * block has no request whose result is still to be taken.
 *
 * @example
 * ```ts ignore
 * while (aio_error(cb) === constants.EINPROGRESS) await aio_suspend([cb]);
 * ```
 *
 * @param aiocbp The control block.
 */
export function aio_error(aiocbp: Aiocb): number {
  const block = toAiocb(aiocbp);
  if (block.state === "idle" || block.state === "collected") return fail(native().abi.constants.EINVAL);
  if (!settled(aiocbp, block)) return native().abi.constants.EINPROGRESS;
  return block.error;
}

/**
 * `ssize_t aio_return(struct aiocb *aiocbp)`: the request's result, once: bytes transferred,
 * 0 for a sync, -1 for a failure. -1 with `EINPROGRESS` while in flight, with `EINVAL` if there
 * is no request or its result was already taken.
 *
 * @example
 * ```ts ignore
 * if (aio_error(cb) === 0) console.log(`${aio_return(cb)} bytes`);
 * ```
 *
 * @param aiocbp The control block.
 */
export function aio_return(aiocbp: Aiocb): number {
  const block = toAiocb(aiocbp);
  const { EINVAL, EINPROGRESS } = native().abi.constants;
  if (block.state === "idle" || block.state === "collected") return fail(EINVAL);
  if (!settled(aiocbp, block)) return fail(EINPROGRESS);
  block.collect();
  return block.result;
}

/**
 * `int aio_cancel(int fildes, struct aiocb *aiocbp)`: cancels one request, or with `null`
 * every request on `fildes`. Returns `AIO_CANCELED`, `AIO_NOTCANCELED`, `AIO_ALLDONE`, or -1
 * with `errno()` (`EBADF` when `fildes` is not open; else `EINVAL` when `aiocbp.aio_fildes` is
 * not `fildes`). On glibc, one request is canceled only while a request submitted before it on
 * `fildes` is still in flight (it then waits behind that one); otherwise it may be first in
 * `fildes`' queue, not yet started, and is not canceled (`AIO_NOTCANCELED`; it runs as usual):
 * glibc's `aio_cancel` of such a request would leave the requests behind it, and every later
 * request on that fd, unrun for good. `aio_cancel(fildes, null)` is passed on as it is.
 *
 * @example
 * ```ts ignore
 * if (aio_cancel(fd, cb) === constants.AIO_CANCELED) console.log(aio_error(cb)); // ECANCELED
 * ```
 *
 * @param fildes The file descriptor.
 * @param aiocbp The control block, or `null` for all of the fd's requests.
 */
export function aio_cancel(fildes: number, aiocbp: Aiocb | null): number {
  const fd = toInt32(fildes, "fildes");
  const block = aiocbp === null ? null : toAiocb(aiocbp);
  const { c, library, backend, abi } = native();
  if (block !== null && block.get("aio_fildes") !== fd) {
    // POSIX: EBADF for an fd that is not open, whatever the control block says (as glibc).
    return fail(isOpen(fd) ? abi.constants.EINVAL : abi.constants.EBADF);
  }
  if (block !== null && abi.features.cancel_strands_followers && block.cancelMayStrand()) {
    // It may be first in fildes' queue, not yet started: glibc would strand the requests queued
    // behind it, and every later one there, for good (Features.cancel_strands_followers). It is
    // left to run, as if already started.
    if (!isOpen(fd)) return fail(abi.constants.EBADF);
    const final = c.aio_error(block.address) !== abi.constants.EINPROGRESS;
    return final ? abi.constants.AIO_ALLDONE : abi.constants.AIO_NOTCANCELED;
  }
  const result = c.aio_cancel(fd, block === null ? backend.NULL : block.address);
  if (result === -1) return fail(library.errno());
  if (result === abi.constants.AIO_CANCELED && block !== null) {
    // POSIX: once aio_cancel says AIO_CANCELED, the request's status is ECANCELED. musl wakes
    // aio_cancel a moment before its worker stores that status: wait for it, briefly.
    const start = performance.now();
    while (!settled(aiocbp!, block) && performance.now() - start < CANCELED_STATUS_MS);
  }
  return result;
}

/** How long `aio_cancel` waits for a canceled request's status to be stored (ms). */
const CANCELED_STATUS_MS = 100;

/** Whether `fd` is an open file descriptor (`fstat` does not fail with EBADF). */
function isOpen(fd: number): boolean {
  if (fd < 0) return false;
  try {
    fstatSync(fd);
    return true;
  } catch (error) {
    return (error as { code?: unknown }).code !== "EBADF";
  }
}

/** Milliseconds in a `struct timespec`, checked. */
function toMilliseconds(value: unknown): number {
  if (typeof value !== "object" || value === null) {
    throw new TypeError(`Invalid timeout: expected { tv_sec, tv_nsec } or null, received ${describe(value)}`);
  }
  const { tv_sec, tv_nsec } = value as Partial<Timespec>;
  const seconds = toSafeIndex(tv_sec, "timeout.tv_sec");
  const nanoseconds = toSafeIndex(tv_nsec, "timeout.tv_nsec");
  if (nanoseconds > 999_999_999) {
    throw new RangeError(`Invalid timeout.tv_nsec: expected at most 999999999, received ${nanoseconds}`);
  }
  return seconds * 1000 + nanoseconds / 1e6;
}

function toList(value: unknown, name: string): (Aiocb | null)[] {
  if (!Array.isArray(value)) {
    throw new TypeError(`Invalid ${name}: expected an array of Aiocb or null, received ${describe(value)}`);
  }
  value.forEach((entry, index) => {
    if (entry !== null) toAiocb(entry, `${name}[${index}]`);
  });
  return value;
}

/**
 * `int aio_suspend(const struct aiocb *const list[], int nent, const struct timespec *timeout)`,
 * waiting off the JavaScript thread: resolves 0 once at least one listed request is final (at
 * once if one already is, or if an entry has no request in flight), or -1 with `errno()`
 * `EAGAIN` when `timeout` (relative; omitted or null waits forever) expires. `null` entries
 * are skipped; a list with no Aiocb rejects with TypeError. A signal does not end the wait.
 * A `timeout` that is not a valid timespec (negative or fractional members, `tv_nsec` above
 * 999,999,999) rejects with TypeError or RangeError, where glibc would report `EAGAIN` at once.
 *
 * @example
 * ```ts ignore
 * if (await aio_suspend([cbA, null, cbB], { tv_sec: 1, tv_nsec: 0 }) === -1) console.log("timed out");
 * ```
 *
 * @param list The control blocks to wait for; `null` entries are ignored.
 * @param timeout How long to wait at most.
 */
export async function aio_suspend(list: readonly (Aiocb | null)[], timeout?: Timespec | null): Promise<number> {
  const entries = toList(list, "list");
  const milliseconds = timeout === undefined || timeout === null ? undefined : toMilliseconds(timeout);
  const blocks = entries.filter((entry) => entry !== null).map((entry) => internals(entry));
  if (blocks.length === 0) throw new TypeError("Invalid list: expected at least one Aiocb, received none");
  if (blocks.some((block) => block.state !== "pending")) return 0;
  const errno = await waitAny(native(), blocks, milliseconds);
  return errno === 0 ? 0 : fail(errno);
}

/** What libc does with an entry of this opcode (`features.lio_listio.queues`), or null: skipped. */
function listOperation(loaded: Loaded, opcode: number): BlockOperation | null {
  const { LIO_READ, LIO_WRITE, LIO_NOP } = loaded.abi.constants;
  if (opcode === LIO_READ) return "read";
  if (opcode === LIO_WRITE) return "write";
  const { queues } = loaded.abi.features.lio_listio;
  if (queues === "all" || (queues === "not-nop" && opcode !== LIO_NOP)) return "other";
  return null;
}

/**
 * `int lio_listio(int mode, struct aiocb *const list[], int nent, struct sigevent *sevp)`:
 * queues the entries the C library takes, as it does in C: `LIO_READ` and `LIO_WRITE`; glibc
 * also queues any other opcode but `LIO_NOP` (it finishes with status `EINVAL`), musl skips
 * it like `LIO_NOP`. With `LIO_NOWAIT` it resolves once they are queued, and `sevp` announces
 * when all are final. With `LIO_WAIT` it resolves when all are final (waiting off the
 * JavaScript thread): 0, or -1 with `EIO` if any failed. -1 with `errno()` `EAGAIN`, `EINVAL`
 * or `EIO` if some could not be queued: an entry libc took is in flight (see `aio_error`), one
 * it never took reads as never submitted (musl stops at the first entry it cannot queue).
 *
 * @example
 * ```ts ignore
 * const a = new Aiocb({ aio_fildes: fd, aio_buf: head, aio_offset: 0, aio_lio_opcode: constants.LIO_WRITE });
 * const b = new Aiocb({ aio_fildes: fd, aio_buf: tail, aio_offset: 4096, aio_lio_opcode: constants.LIO_WRITE });
 * if (await lio_listio(constants.LIO_WAIT, [a, b]) === 0) console.log(aio_return(a), aio_return(b));
 * ```
 *
 * @param mode `LIO_WAIT` or `LIO_NOWAIT`.
 * @param list The control blocks; `null` entries are ignored.
 * @param sevp For `LIO_NOWAIT`: how to announce that the whole list is final.
 */
export async function lio_listio(
  mode: number,
  list: readonly (Aiocb | null)[],
  sevp?: Partial<Sigevent> | null,
): Promise<number> {
  const loaded = native();
  const { c, abi, backend, library } = loaded;
  const { LIO_WAIT, LIO_NOWAIT, EINVAL, EIO, EAGAIN, SIGEV_NONE, SIGEV_THREAD } = abi.constants;
  const waitMode = toInt32(mode, "mode");
  const entries = toList(list, "list");
  const sigevent = sevp === undefined || sevp === null ? null : toSigevent(loaded, sevp, "sevp");
  if (waitMode !== LIO_WAIT && waitMode !== LIO_NOWAIT) return fail(EINVAL);
  if (abi.limits.AIO_LISTIO_MAX !== null && entries.length > abi.limits.AIO_LISTIO_MAX) return fail(EINVAL);
  const members = entries.filter((entry) => entry !== null);
  const blocks = members.map((entry) => internals(entry));
  if (new Set(blocks).size !== blocks.length) {
    const second = entries.findIndex((entry, index) => entry !== null && entries.indexOf(entry) !== index);
    const first = entries.indexOf(entries[second]);
    throw new TypeError(`Invalid list: an Aiocb appears more than once (list[${first}] and list[${second}])`);
  }
  // Check every entry before touching any: a failure leaves them all as they were.
  const operations = blocks.map((block, index) => {
    if (block.state === "pending" || block.listed) {
      throw new Error(`Cannot reuse list[${index}]: its request is in flight or a pending call lists it`);
    }
    return listOperation(loaded, block.get("aio_lio_opcode"));
  });
  const transfers = members.map((cb, index) => {
    const operation = operations[index];
    return operation === "read" || operation === "write" ? transfer(cb, blocks[index]) : null;
  });
  const { sigevent: listSigevent, on_refusal } = abi.features.lio_listio;
  const notifies = sigevent !== null && waitMode === LIO_NOWAIT && sigevent.sigev_notify !== SIGEV_NONE;
  // musl's list waiter reads the sigevent and every entry until it notifies: it must call us.
  const kept = notifies && listSigevent === "kept";
  const pointer = abi.pointer_size;
  const array = pointerList(loaded, entries.map((entry) => entry === null ? backend.NULL : internals(entry).address));
  if (!array) return fail(EAGAIN);
  const prepared: ControlBlock[] = [];
  const tokens = new Map<ControlBlock, bigint>();
  let notice: Address = backend.NULL;
  let noticeToken: bigint | undefined;
  let called = false;
  let noticeKept = false;
  try {
    members.forEach((cb, index) => {
      const operation = operations[index];
      const block = blocks[index];
      if (operation === null) return block.markUntaken();
      const [buffer, nbytes] = transfers[index] ?? [null, 0];
      block.prepareListEntry(operation, buffer, nbytes);
      prepared.push(block);
      const token = armNotification(cb);
      if (token !== undefined) tokens.set(block, token);
    });
    if (notifies) {
      notice = c.calloc(1, abi.sigevent.size);
      if (!notice) return fail(EAGAIN);
      const memory = notice;
      const wanted = sigevent!;
      let kind = wanted.sigev_notify;
      let signo = wanted.sigev_signo;
      let value = BigInt(wanted.sigev_value);
      let fn = backend.NULL;
      if (kind === SIGEV_THREAD || kept) {
        noticeToken = expectNotification(() => {
          if (kept) {
            // libc's waiter has read everything it needs: it calls this last.
            c.free(memory);
            for (const block of blocks) block.unlist();
          }
          if (wanted.sigev_notify === SIGEV_THREAD) {
            wanted.sigev_notify_function!(wanted.sigev_value);
          } else {
            // As musl's waiter would: the signal, with the value (a word: number or bigint).
            const word = BigInt.asUintN(pointer * 8, BigInt(wanted.sigev_value)) as unknown as number;
            c.sigqueue(c.getpid(), wanted.sigev_signo, word);
          }
        });
        kind = SIGEV_THREAD;
        signo = 0;
        value = noticeToken;
        fn = notificationFunction();
      }
      writeSigevent(loaded, new DataView(backend.view(notice, abi.sigevent.size)), 0, kind, signo, value, fn);
    }
    // LIO_WAIT would block this thread: queue without waiting, then wait off-thread below.
    const result = c.lio_listio(LIO_NOWAIT, array, entries.length, notice);
    called = true;
    const errno = result === -1 ? library.errno() : 0;
    const taken = prepared.filter((block) => result === 0 || block.taken());
    if (result === -1 && on_refusal === "stop" && taken.length > 0) {
      // musl stops at the entry it could not queue, whose status it left at EINPROGRESS: the
      // last one it touched. Only if it touched all of them may the failure instead be its
      // list waiter's (every entry queued): then none can be told apart and all count as taken.
      if (taken.length < prepared.length || !kept) taken.pop();
    }
    const accepted = new Set(taken);
    for (const block of prepared) {
      const operation = operations[blocks.indexOf(block)]!;
      if (accepted.has(block)) {
        block.entered(operation);
      } else {
        block.notEntered();
        const token = tokens.get(block);
        if (token !== undefined) withdrawNotification(token);
      }
    }
    if (noticeToken !== undefined) {
      if (kept) {
        if (result === 0) {
          noticeKept = true;
          for (const block of blocks) block.list();
        } else {
          withdrawNotification(noticeToken);
        }
      } else if (taken.length === 0) {
        // glibc notifies at once when it queued nothing.
        notificationDue(noticeToken);
      } else {
        const watch: ListWatch = { token: noticeToken, remaining: new Set(taken) };
        for (const block of taken) listWatches.set(block, watch);
      }
    }
    if (waitMode === LIO_NOWAIT) return result === 0 ? 0 : fail(errno);
    if (taken.length === 0) return result === 0 ? 0 : fail(errno);
    while (taken.some((block) => !block.poll())) {
      await waitAny(loaded, taken.filter((block) => block.state === "pending"), undefined);
    }
    if (result === -1) return fail(EIO);
    return taken.some((block) => block.error !== 0) ? fail(EIO) : 0;
  } finally {
    if (!called) {
      for (const block of prepared) block.notEntered();
      for (const token of tokens.values()) withdrawNotification(token);
      if (noticeToken !== undefined) withdrawNotification(noticeToken);
    }
    c.free(array);
    if (notice && !noticeKept) c.free(notice);
  }
}
