/**
 * The small interface every runtime backend implements. Nothing above `ffi/` knows which
 * runtime it runs on: it sees addresses, bound C functions, views of native memory, one
 * thread-safe callback and off-thread calls.
 *
 * @module
 */

import type { NativeType, SymbolDefinition, SYMBOLS } from "./symbols.ts";

/**
 * A native address in the form the runtime passes fastest: a bigint in Deno and Node, a number
 * in Bun, and the backend's `NULL` for the null pointer. Opaque above `ffi/`: only the backend does
 * arithmetic on it or turns it into bytes.
 */
export type Address = number | bigint | null;

type JsParam<T extends NativeType> = T extends "pointer" ? Address
  : T extends "buffer" ? Uint8Array
  : T extends "usize" ? number
  : number;

type JsResult<T extends NativeType> = T extends "pointer" ? Address
  : T extends "void" ? void
  : number;

type Params<P extends readonly NativeType[]> = { -readonly [K in keyof P]: JsParam<P[K] & NativeType> };

type Bound<D extends SymbolDefinition> = (
  ...args: Params<D["params"]>
) => D extends { offThread: true } ? Promise<OffThreadResult> : JsResult<D["result"]>;

/** The bound C functions, typed from the shared symbol table. */
export type Libc =
  & { -readonly [K in keyof typeof SYMBOLS]: Bound<(typeof SYMBOLS)[K]> }
  & { errno_location: () => Address };

/** An opened C library. */
export interface NativeLibrary {
  /** The name or path it was opened by. */
  readonly path: string;
  /** Bound functions; an optional symbol the library lacks is `undefined`. */
  readonly symbols: Libc;
  /** Whether an optional symbol is present. */
  has(name: keyof Libc): boolean;
  /** Reads errno of the calling (JavaScript) thread. */
  errno(): number;
  /** Closes the library. Only for libraries that turned out to be the wrong one. */
  close(): void;
}

/**
 * `NativeLibrary.errno` over `cell`, a view of the 4 bytes at `__errno_location()` of the
 * JavaScript thread, made once when the library opens: then reading errno right after a call
 * allocates nothing, where a view made at that moment could run the collector, whose own C calls
 * may overwrite errno.
 */
export function errnoReader(cell: ArrayBuffer): () => number {
  const errno = new Int32Array(cell);
  return () => errno[0];
}

/** A C function pointer that may be called from any thread and runs a JS function. */
export interface ThreadSafeCallback {
  /** The function pointer to hand to C. */
  readonly address: Address;
  /**
   * A value for C to pass to `address` (`sigev_value`), handed to the JS function when C calls
   * it, and distinct from every other value issued and not yet released. Present where C must
   * pass a value of the backend's own (Node: a libuv handle); otherwise any value goes through.
   */
  token?(): bigint;
  /** The call carrying `token` came, or will never come: the value may be issued again. */
  release?(token: bigint): void;
  /** Keeps the process alive while C may still call it. */
  ref(): void;
  /** Lets the process exit even though C could still call it. */
  unref(): void;
}

/** Result of a call made off the JavaScript thread: its return value and the errno it left. */
export interface OffThreadResult {
  readonly result: number;
  /** errno read on the calling thread right after the call, or `undefined` if unknowable. */
  readonly errno: number | undefined;
}

/** What a runtime offers this module. */
export interface Backend {
  /** `"deno"`, `"bun"` or `"node"`. */
  readonly runtime: "deno" | "bun" | "node";
  /** Operating system, as `Deno.build.os` names it (`"linux"`, `"darwin"`, ...). */
  readonly os: string;
  /** CPU architecture, as `Deno.build.arch` names it (`"x86_64"`, `"aarch64"`, ...). */
  readonly arch: string;
  /** The null pointer. */
  readonly NULL: Address;
  /** Throws an Error naming what the runtime needs to allow FFI, if it is not allowed. */
  checkPermission(): void;
  /** An environment variable, or `undefined` when unset or not readable without a prompt. */
  env(name: string): string | undefined;
  /**
   * Opens a C library and binds the shared symbol table plus the errno accessor. Throws if the
   * library or a required symbol is missing.
   */
  open(path: string, errnoSymbol: string): NativeLibrary;
  /** An ArrayBuffer over `byteLength` bytes of native memory at `address`. */
  view(address: Address, byteLength: number): ArrayBuffer;
  /** `address + offset`. */
  offset(address: Address, offset: number): Address;
  /** The address as an unsigned 64-bit integer, to store in native memory. */
  toBigInt(address: Address): bigint;
  /**
   * A C function `void fn(union sigval)` callable from any thread, that runs `fn` on the
   * JavaScript thread. It is never closed: C may hold its address until the process ends, so
   * the caller creates one and keeps it.
   */
  callback(fn: (value: bigint) => void): ThreadSafeCallback;
  /** Lets the process exit while `timer` (from `setTimeout`/`setInterval`) is still pending. */
  unrefTimer(timer: ReturnType<typeof setTimeout>): void;
  /**
   * Reports an exception thrown by user code run from a thread-safe callback, to the handlers
   * the runtime offers for uncaught errors, or on stderr if there are none; never ends the
   * process (it may end while C threads are calling into the runtime, and crash).
   */
  reportError(error: unknown): void;
}

/** Thrown when the runtime does not allow FFI; its message names the flag that allows it. */
export class FfiPermissionError extends Error {
  /** Creates the error; `message` names the missing permission. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "FfiPermissionError";
  }
}
