/**
 * The Node.js backend: `node:ffi` (Node.js 26). Node has no nonblocking FFI calls, so symbols
 * marked `offThread` run in a small pool of `worker_threads` Workers that open the same library
 * and block in C there, as Bun's backend does; a call and its result travel through shared
 * memory (`Atomics`), not messages.
 *
 * A `node:ffi` callback aborts the process when a thread other than the one that made it calls
 * it, so libc's notification threads (SIGEV_THREAD) never call JavaScript here: they call
 * libuv's `uv_async_send`, which Node exports and which any thread may call, on a `uv_async_t`
 * handle of this thread's event loop; the loop then runs the handle's callback on this thread.
 * Each notification in flight has a handle of its own (its address is the `sigev_value`),
 * taken from a pool and returned once its notification came.
 *
 * `node:ffi` and `node:worker_threads` are loaded with `process.getBuiltinModule` on first use,
 * so that importing the module stays harmless where `node:ffi` is missing or disabled, and
 * neither Deno nor Bun nor JSR's analysis ever sees a `node:` import of this file.
 *
 * @module
 */

import { ERRNO_DEFINITION, ERRNO_LOCATION, type NativeType, type SymbolDefinition, SYMBOLS } from "./symbols.ts";
import {
  type Address,
  type Backend,
  errnoReader,
  FfiPermissionError,
  type Libc,
  type NativeLibrary,
  type OffThreadResult,
  type ThreadSafeCallback,
} from "./types.ts";

/** A C signature as `node:ffi` spells it. */
interface NodeSignature {
  arguments: string[];
  return: string;
}

/** The part of a `node:ffi` DynamicLibrary this backend uses. */
interface NodeLibrary {
  getFunction(name: string, signature: NodeSignature): (...args: unknown[]) => unknown;
  registerCallback(signature: NodeSignature, fn: (...args: unknown[]) => void): bigint;
  close(): void;
}

/** The part of `node:ffi` this backend uses. */
interface NodeFfi {
  dlopen(path: string): { lib: NodeLibrary };
  dlsym(library: NodeLibrary, name: string): bigint;
  toArrayBuffer(address: bigint, byteLength: number, copy: boolean): ArrayBuffer;
  getCurrentEventLoop(): bigint;
}

/** The part of Node's Worker this backend uses. */
interface NodeWorker {
  on(event: "error", listener: (error: Error) => void): void;
  on(event: "exit", listener: (code: number) => void): void;
  terminate(): Promise<number>;
  ref(): void;
  unref(): void;
}

/** The part of `node:worker_threads` this backend uses. */
interface WorkerThreads {
  Worker: new(source: string, options: { eval: true; workerData: unknown }) => NodeWorker;
}

/** The part of Node's `process` this backend uses. */
interface NodeProcess {
  readonly platform: string;
  readonly arch: string;
  readonly env: Record<string, string | undefined>;
  readonly versions: { readonly node: string };
  readonly execArgv: readonly string[];
  readonly permission?: { has(scope: string): boolean };
  getBuiltinModule?(id: string): unknown;
  listenerCount(event: string): number;
  emit(event: string, ...args: unknown[]): boolean;
}

/** The first Node.js major version with `node:ffi`. */
const FIRST_MAJOR = 26;

// Addresses are bigints ("pointer"); size_t parameters are "uint64", given as numbers above
// ffi/ and turned into bigints here.
const TYPES: Record<NativeType, string> = {
  i32: "int32",
  isize: "int64",
  usize: "uint64",
  pointer: "pointer",
  buffer: "pointer",
  void: "void",
};

function nodeSignature(def: SymbolDefinition): NodeSignature {
  return { arguments: def.params.map((type) => TYPES[type]), return: TYPES[def.result] };
}

/**
 * `fn` as the other layers call it: numbers for `usize` parameters (bigints for node:ffi), a
 * number for an `isize` result (a bigint from node:ffi). Unchanged when nothing needs turning.
 */
function adapt(fn: (...args: unknown[]) => unknown, def: SymbolDefinition): (...args: unknown[]) => unknown {
  const widen = def.params.map((type) => type === "usize");
  const narrow = def.result === "isize";
  if (!widen.includes(true) && !narrow) return fn;
  if (def.params.length === 2 && widen[0] && widen[1] && !narrow) {
    return (a, b) => fn(BigInt(a as number), BigInt(b as number));
  }
  if (def.params.length === 1 && !narrow) return (a) => fn(widen[0] ? BigInt(a as number) : a);
  if (def.params.length === 1) return (a) => Number(fn(widen[0] ? BigInt(a as number) : a));
  return (...args) => {
    const result = fn(...args.map((arg, index) => widen[index] ? BigInt(arg as number) : arg));
    return narrow ? Number(result) : result;
  };
}

function nodeProcess(): NodeProcess {
  return (globalThis as unknown as { process: NodeProcess }).process;
}

/** Whether Node was started with `--no-experimental-ffi` (on the command line or in NODE_OPTIONS). */
function ffiDisabled(process: NodeProcess): boolean {
  const options = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)];
  return options.includes("--no-experimental-ffi");
}

/**
 * `node:ffi`, or an Error naming the Node.js version or the flag needed: Node.js before 26 has
 * no `node:ffi`; 26.10 has it unless started with `--no-experimental-ffi` (earlier 26 releases
 * may need `--experimental-ffi`).
 */
function loadFfi(process: NodeProcess): NodeFfi {
  const ffi = process.getBuiltinModule?.("node:ffi") as NodeFfi | undefined;
  if (ffi !== undefined) return ffi;
  const version = process.versions.node;
  if (Number(version.split(".")[0]) < FIRST_MAJOR) {
    throw new Error(
      `@posix/aio calls the C library through node:ffi, which Node.js ${version} does not have: use Node.js ${FIRST_MAJOR} or later, or Deno or Bun`,
    );
  }
  throw new FfiPermissionError(
    ffiDisabled(process)
      ? `@posix/aio calls the C library through node:ffi, disabled in this Node.js ${version} by --no-experimental-ffi: run it without that flag`
      : `@posix/aio calls the C library through node:ffi, not enabled in this Node.js ${version}: run it with --experimental-ffi`,
  );
}

/** Every symbol marked `offThread`, by its exported name, as the Workers bind them. */
const OFF_THREAD: [string, NodeSignature][] = (Object.entries(SYMBOLS) as [string, SymbolDefinition][])
  .filter(([, def]) => def.offThread)
  .map(([key, def]) => [def.symbol ?? key, nodeSignature(def)]);

/** Most parameters of an off-thread symbol. */
const MAX_ARGUMENTS = 4;

/**
 * The shared memory of a Worker: `Int32Array` slots, then the arguments as 64-bit integers. The
 * JavaScript thread writes the call and sets `STATE` to `CALLED`; the Worker, blocked in
 * `Atomics.wait`, makes it and sets `DONE`; the JavaScript thread waits for that with
 * `Atomics.waitAsync`, which wakes it sooner than a message (seen: 40-50 µs a round trip against
 * 60-200 µs on a loaded 2-core machine).
 */
const STATE = 0, SYMBOL = 1, RESULT = 2, ERRNO = 3;
const IDLE = 0, CALLED = 1, DONE = 2;
const ARGUMENTS_OFFSET = 16;
const SHARED_BYTES = ARGUMENTS_OFFSET + 8 * MAX_ARGUMENTS;

/**
 * Runs in each Worker: opens the library by the path given in `workerData`, binding every
 * off-thread symbol, then loops: waits for a call, makes it, publishes its result and the errno
 * of this thread. Loading `node:ffi` again would print Node's experimental warning once per
 * Worker: the process printed it already.
 */
const WORKER_SOURCE = `
const { workerData } = require("node:worker_threads");
const [shared, path, errnoSymbol] = workerData;
const emitWarning = process.emitWarning;
process.emitWarning = () => {};
const ffi = process.getBuiltinModule("node:ffi");
process.emitWarning = emitWarning;
const control = new Int32Array(shared, 0, 4);
const args = new BigInt64Array(shared, ${ARGUMENTS_OFFSET}, ${MAX_ARGUMENTS});
const { lib } = ffi.dlopen(path);
const calls = ${JSON.stringify(OFF_THREAD)}.map(([symbol, signature]) => {
  const fn = lib.getFunction(symbol, signature);
  // node:ffi takes pointers and 64-bit integers as bigints, 32-bit ones as numbers.
  const convert = signature.arguments.map((type) =>
    type === "pointer" || type === "uint64" ? (value) => BigInt.asUintN(64, value)
    : type === "int64" ? (value) => value
    : (value) => Number(value)
  );
  return () => fn(...convert.map((to, i) => to(args[i])));
});
const location = lib.getFunction(errnoSymbol, ${JSON.stringify(nodeSignature(ERRNO_DEFINITION))});
const errnoCell = new Int32Array(ffi.toArrayBuffer(location(), 4, false));
for (;;) {
  const state = Atomics.load(control, ${STATE});
  if (state !== ${CALLED}) {
    Atomics.wait(control, ${STATE}, state);
    continue;
  }
  const result = calls[control[${SYMBOL}]]();
  control[${RESULT}] = result;
  control[${ERRNO}] = result === -1 ? errnoCell[0] : 0;
  Atomics.store(control, ${STATE}, ${DONE});
  Atomics.notify(control, ${STATE});
}
`;

/**
 * Idle workers kept for reuse; more are started while calls overlap and ended afterwards. As
 * many as the aio_suspend driver makes calls at once (MAX_CALLS in src/wait.ts).
 */
const IDLE_WORKERS = 4;

/** A Worker, its shared memory, and what to do if it dies during a call. */
interface CallWorker {
  readonly thread: NodeWorker;
  readonly control: Int32Array;
  readonly args: BigInt64Array;
  /** Rejects the call in progress, if any. */
  fail?: (error: Error) => void;
}

class WorkerPool {
  readonly #threads: WorkerThreads;
  readonly #path: string;
  readonly #errnoSymbol: string;
  readonly #idle: CallWorker[] = [];

  constructor(threads: WorkerThreads, path: string, errnoSymbol: string) {
    this.#threads = threads;
    this.#path = path;
    this.#errnoSymbol = errnoSymbol;
  }

  #start(): CallWorker {
    const shared = new SharedArrayBuffer(SHARED_BYTES);
    const thread = new this.#threads.Worker(WORKER_SOURCE, {
      eval: true,
      workerData: [shared, this.#path, this.#errnoSymbol],
    });
    const worker: CallWorker = {
      thread,
      control: new Int32Array(shared, 0, 4),
      args: new BigInt64Array(shared, ARGUMENTS_OFFSET, MAX_ARGUMENTS),
    };
    // A Worker that fails (its library cannot be opened) or exits is never used again.
    const gone = (error: Error): void => {
      const index = this.#idle.indexOf(worker);
      if (index !== -1) this.#idle.splice(index, 1);
      worker.fail?.(error);
    };
    thread.on("error", (error) => gone(error));
    thread.on("exit", (code) => gone(new Error(`exited with code ${code}`)));
    return worker;
  }

  call(name: string, args: unknown[]): Promise<OffThreadResult> {
    const symbol = OFF_THREAD.findIndex(([each]) => each === name);
    let worker: CallWorker;
    try {
      worker = this.#idle.pop() ?? this.#start();
    } catch (error) {
      return Promise.reject(new Error(`Cannot start a worker thread to call ${name}`, { cause: error }));
    }
    worker.thread.ref();
    const { control } = worker;
    args.forEach((arg, index) => worker.args[index] = BigInt.asIntN(64, BigInt(arg as number | bigint)));
    control[SYMBOL] = symbol;
    Atomics.store(control, STATE, CALLED);
    Atomics.notify(control, STATE);
    return new Promise<OffThreadResult>((resolve, reject) => {
      worker.fail = (cause) => {
        worker.fail = undefined;
        reject(new Error(`The worker calling ${name} failed: ${cause.message}`, { cause }));
      };
      const done = (): void => {
        if (worker.fail === undefined) return;
        worker.fail = undefined;
        const result = { result: control[RESULT], errno: control[ERRNO] };
        Atomics.store(control, STATE, IDLE);
        this.#release(worker);
        resolve(result);
      };
      const waiting = Atomics.waitAsync(control, STATE, CALLED);
      if (waiting.async) void waiting.value.then(done);
      else done();
    });
  }

  #release(worker: CallWorker): void {
    if (this.#idle.length < IDLE_WORKERS) {
      worker.thread.unref();
      this.#idle.push(worker);
    } else {
      void worker.thread.terminate();
    }
  }
}

/** `uv_handle_type` of `uv_async_t` (libuv's `UV_ASYNC`). */
const UV_ASYNC = 1;

/**
 * SIGEV_THREAD for Node: C calls `uv_async_send(handle)`, with a `uv_async_t` of this thread's
 * loop as `sigev_value`; the loop calls the handle's callback on this thread, which queues the
 * handle and runs `fn` for it from `setImmediate` (a `node:ffi` callback runs outside Node's
 * callback scope: promises settled there would wait for the next macrotask). A handle is taken
 * by `token()` and given back by `release()` once its notification came or will never come;
 * handles stay initialised, unreferenced (they never keep the loop alive), for reuse.
 */
class AsyncNotifier implements ThreadSafeCallback {
  readonly address: Address;
  readonly #fn: (value: bigint) => void;
  /** The program, which owns the callback: kept reachable while the callback may be called. */
  readonly #library: NodeLibrary;
  readonly #init: (loop: bigint, handle: bigint, callback: bigint) => number;
  readonly #unrefHandle: (handle: bigint) => void;
  readonly #calloc: (count: bigint, size: bigint) => bigint;
  readonly #handleSize: number;
  readonly #loop: bigint;
  readonly #callback: bigint;
  readonly #free: bigint[] = [];
  #arrived: bigint[] = [];
  #scheduled = false;
  #keepAlive: ReturnType<typeof setInterval> | undefined;
  #refs = 0;
  readonly #flush = (): void => {
    this.#scheduled = false;
    const arrived = this.#arrived;
    this.#arrived = [];
    for (const handle of arrived) this.#fn(handle);
  };

  constructor(ffi: NodeFfi, fn: (value: bigint) => void) {
    this.#fn = fn;
    let program: NodeLibrary;
    try {
      // The empty name is the program itself: Node exports libuv for native addons.
      program = ffi.dlopen("").lib;
    } catch (error) {
      throw new Error("SIGEV_THREAD needs libuv's uv_async_send from the Node.js executable, which cannot be found", {
        cause: error,
      });
    }
    this.#library = program;
    const handleSize = program.getFunction("uv_handle_size", { arguments: ["int32"], return: "uint64" });
    this.#handleSize = Number(handleSize(UV_ASYNC));
    this.#init = program.getFunction("uv_async_init", {
      arguments: ["pointer", "pointer", "pointer"],
      return: "int32",
    }) as (loop: bigint, handle: bigint, callback: bigint) => number;
    this.#unrefHandle = program.getFunction("uv_unref", { arguments: ["pointer"], return: "void" }) as (
      handle: bigint,
    ) => void;
    this.address = ffi.dlsym(program, "uv_async_send");
    // Handles are never freed (C may still call the function with one): its own calloc, not the
    // C library's bound one, which counts the module's native blocks.
    this.#calloc = program.getFunction("calloc", { arguments: ["uint64", "uint64"], return: "pointer" }) as (
      count: bigint,
      size: bigint,
    ) => bigint;
    this.#loop = ffi.getCurrentEventLoop();
    this.#callback = program.registerCallback({ arguments: ["pointer"], return: "void" }, (handle) => {
      this.#arrived.push(handle as bigint);
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(this.#flush);
      }
    });
  }

  token(): bigint {
    const spare = this.#free.pop();
    if (spare !== undefined) return spare;
    const handle = this.#calloc(1n, BigInt(this.#handleSize));
    if (!handle) throw new RangeError(`Cannot allocate ${this.#handleSize} bytes of native memory for a notification`);
    const status = this.#init(this.#loop, handle, this.#callback);
    if (status !== 0) throw new Error(`uv_async_init failed with ${status}`);
    this.#unrefHandle(handle);
    return handle;
  }

  release(token: bigint): void {
    this.#free.push(token);
  }

  ref(): void {
    if (this.#refs++ === 0) this.#keepAlive = setInterval(() => {}, 1 << 30);
  }

  unref(): void {
    if (--this.#refs === 0) clearInterval(this.#keepAlive);
  }
}

/** Creates the Node.js backend. It loads nothing: `checkPermission()` loads `node:ffi`. */
export function createNodeBackend(): Backend {
  const process = nodeProcess();
  let ffi: NodeFfi | undefined;
  const load = (): NodeFfi => ffi ??= loadFfi(process);
  return {
    runtime: "node",
    os: process.platform === "win32" ? "windows" : process.platform,
    arch: ({ x64: "x86_64", arm64: "aarch64" } as Record<string, string>)[process.arch] ?? process.arch,
    NULL: 0n,
    checkPermission(): void {
      load();
      const { permission } = process;
      if (permission === undefined) return;
      const missing = ["ffi", "worker"].filter((scope) => !permission.has(scope)).map((scope) => `--allow-${scope}`);
      if (missing.length > 0) {
        throw new FfiPermissionError(
          `@posix/aio calls the C library through node:ffi and waits in worker threads: Node's permission model is on, run Node with ${
            missing.join(" and ")
          }`,
        );
      }
    },
    env: (name: string): string | undefined => process.env[name],
    open(path: string, errnoSymbol: string): NativeLibrary {
      const ffi = load();
      const libraries = [ffi.dlopen(path).lib];
      // node:ffi binds a C function once per library instance: a second signature of the same
      // function (memcpy, in and out) needs an instance of its own.
      const uses = new Map<string, number>();
      const bindOne = (name: string, def: SymbolDefinition): (...args: unknown[]) => unknown => {
        const use = uses.get(name) ?? 0;
        uses.set(name, use + 1);
        libraries[use] ??= ffi.dlopen(path).lib;
        return adapt(libraries[use].getFunction(name, nodeSignature(def)), def);
      };
      const symbols: Record<string, unknown> = {};
      let pool: WorkerPool | undefined;
      try {
        for (const [key, def] of Object.entries(SYMBOLS) as [string, SymbolDefinition][]) {
          const name = def.symbol ?? key;
          if (def.offThread) {
            symbols[key] = (...args: unknown[]): Promise<OffThreadResult> => {
              pool ??= new WorkerPool(
                process.getBuiltinModule!("node:worker_threads") as WorkerThreads,
                path,
                errnoSymbol,
              );
              return pool.call(name, args);
            };
            continue;
          }
          try {
            symbols[key] = bindOne(name, def);
          } catch (error) {
            if (!def.optional) throw error;
          }
        }
        symbols[ERRNO_LOCATION] = bindOne(errnoSymbol, ERRNO_DEFINITION);
      } catch (error) {
        for (const library of libraries) library.close();
        throw error;
      }
      const c = symbols as unknown as Libc;
      return {
        path,
        symbols: c,
        has: (name) => symbols[name] != null,
        errno: errnoReader(ffi.toArrayBuffer(c.errno_location() as bigint, 4, false)),
        close(): void {
          for (const library of libraries) library.close();
        },
      };
    },
    view(address: Address, byteLength: number): ArrayBuffer {
      if (!address) throw new TypeError("Cannot view native memory at the null pointer");
      return load().toArrayBuffer(address as bigint, byteLength, false);
    },
    offset(address: Address, offset: number): Address {
      return (address as bigint) + BigInt(offset);
    },
    toBigInt(address: Address): bigint {
      return BigInt(address ?? 0);
    },
    callback(fn: (value: bigint) => void): ThreadSafeCallback {
      return new AsyncNotifier(load(), fn);
    },
    unrefTimer(timer: ReturnType<typeof setTimeout>): void {
      (timer as unknown as { unref(): void }).unref();
    },
    reportError(error: unknown): void {
      if (process.listenerCount("uncaughtException") > 0) process.emit("uncaughtException", error, "uncaughtException");
      else console.error("Uncaught (in a notification callback)", error);
    },
  };
}
