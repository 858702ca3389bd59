/**
 * The Bun backend: `bun:ffi` (`dlopen`, `toArrayBuffer`, threadsafe `JSCallback`). Bun has no
 * nonblocking FFI calls, so symbols marked `offThread` run in a small pool of Workers that open
 * the same library and block in C there.
 *
 * `bun:ffi` is loaded with `import.meta.require` when the backend is created, so that neither
 * Deno nor JSR's analysis ever sees a `bun:` import.
 *
 * @module
 */

import { ERRNO_DEFINITION, ERRNO_LOCATION, type NativeType, type SymbolDefinition, SYMBOLS } from "./symbols.ts";
import {
  type Address,
  type Backend,
  errnoReader,
  type Libc,
  type NativeLibrary,
  type OffThreadResult,
  type ThreadSafeCallback,
} from "./types.ts";

/** The part of `bun:ffi` this backend uses. */
interface BunFfi {
  dlopen(
    path: string,
    symbols: Record<string, { args: string[]; returns: string }>,
  ): { symbols: Record<string, (...args: unknown[]) => unknown>; close(): void };
  toArrayBuffer(address: number, byteOffset: number, byteLength: number): ArrayBuffer;
  JSCallback: new(
    fn: (value: number | null) => void,
    definition: { args: string[]; returns: string; threadsafe: boolean },
  ) => { ptr: number | null };
}

/** The part of Bun's `process` this backend uses. */
interface BunProcess {
  readonly platform: string;
  readonly arch: string;
  readonly env: Record<string, string>;
  listenerCount(event: string): number;
  emit(event: string, ...args: unknown[]): boolean;
}

/** Bun's Worker adds `ref`/`unref`, like Node's. */
interface BunWorker extends Worker {
  ref(): void;
  unref(): void;
}

// `buffer` is "ptr" too: Bun passes a typed array's address for the duration of the call.
const TYPES: Record<NativeType, string> = {
  i32: "i32",
  isize: "i64_fast",
  usize: "u64_fast",
  pointer: "ptr",
  buffer: "ptr",
  void: "void",
};

function bunDefinition(def: SymbolDefinition): { args: string[]; returns: string } {
  return { args: def.params.map((type) => TYPES[type]), returns: TYPES[def.result] };
}

function loadFfi(): BunFfi {
  const meta = import.meta as unknown as { require(id: string): unknown };
  return meta.require("bun:ffi") as BunFfi;
}

/** Every symbol marked `offThread`, by its exported name, as the Workers bind them. */
const OFF_THREAD: Record<string, { args: string[]; returns: string }> = Object.fromEntries(
  (Object.entries(SYMBOLS) as [string, SymbolDefinition][])
    .filter(([, def]) => def.offThread)
    .map(([key, def]) => [def.symbol ?? key, bunDefinition(def)]),
);

/**
 * Runs in each Worker: opens the library by the same path, binding every off-thread symbol,
 * and performs one blocking call per message, answering with its result and the errno of that
 * thread. The thread's errno is viewed once, at the first message, so that it is read right
 * after each call: anything allocated in between (a view made then) could run the collector,
 * whose own C calls may overwrite errno.
 */
const WORKER_SOURCE = `
const { dlopen, toArrayBuffer } = require("bun:ffi");
let lib;
let errnoCell;
self.onmessage = (event) => {
  const [path, errnoSymbol, name, args] = event.data;
  if (lib === undefined) {
    lib = dlopen(path, {
      ...${JSON.stringify(OFF_THREAD)},
      [errnoSymbol]: ${JSON.stringify(bunDefinition(ERRNO_DEFINITION))},
    });
    errnoCell = new Int32Array(toArrayBuffer(lib.symbols[errnoSymbol](), 0, 4));
  }
  const result = lib.symbols[name](...args);
  const errno = result === -1 ? errnoCell[0] : 0;
  postMessage([result, errno]);
};
`;

/**
 * Idle workers kept for reuse; more are started while calls overlap and ended afterwards. As
 * many as the aio_suspend driver makes calls at once (MAX_CALLS in src/wait.ts): a Worker is a
 * JavaScript VM and a thread to start (64 files synced at once, 100 rounds: 116 Workers started
 * with 2 kept, 10 with 4).
 */
const IDLE_WORKERS = 4;

class WorkerPool {
  readonly #path: string;
  readonly #errnoSymbol: string;
  readonly #idle: BunWorker[] = [];
  #url: string | undefined;

  constructor(path: string, errnoSymbol: string) {
    this.#path = path;
    this.#errnoSymbol = errnoSymbol;
  }

  call(name: string, args: unknown[]): Promise<OffThreadResult> {
    this.#url ??= URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "application/javascript" }));
    const worker = this.#idle.pop() ?? (new Worker(this.#url) as BunWorker);
    worker.ref();
    return new Promise((resolve, reject) => {
      worker.onmessage = (event: MessageEvent<[number, number]>) => {
        this.#release(worker);
        resolve({ result: event.data[0], errno: event.data[1] });
      };
      worker.onerror = (event: ErrorEvent) => {
        worker.terminate();
        reject(new Error(`The worker calling ${name} failed: ${event.message}`));
      };
      worker.postMessage([this.#path, this.#errnoSymbol, name, args]);
    });
  }

  #release(worker: BunWorker): void {
    worker.onmessage = null;
    worker.onerror = null;
    if (this.#idle.length < IDLE_WORKERS) {
      worker.unref();
      this.#idle.push(worker);
    } else {
      worker.terminate();
    }
  }
}

/** Creates the Bun backend. */
export function createBunBackend(): Backend {
  const ffi = loadFfi();
  const process = (globalThis as unknown as { process: BunProcess }).process;
  return {
    runtime: "bun",
    os: process.platform === "win32" ? "windows" : process.platform,
    arch: ({ x64: "x86_64", arm64: "aarch64" } as Record<string, string>)[process.arch] ?? process.arch,
    NULL: null,
    checkPermission(): void {},
    env: (name: string): string | undefined => process.env[name],
    open(path: string, errnoSymbol: string): NativeLibrary {
      const required: Record<string, { args: string[]; returns: string }> = {};
      const optional: string[] = [];
      for (const [key, def] of Object.entries(SYMBOLS) as [string, SymbolDefinition][]) {
        if (def.offThread) continue;
        const name = def.symbol ?? key;
        if (def.optional) optional.push(key);
        else required[name] = bunDefinition(def);
      }
      required[errnoSymbol] = bunDefinition(ERRNO_DEFINITION);
      const library = ffi.dlopen(path, required);
      const raw: Record<string, unknown> = { ...library.symbols };
      const extra: { close(): void }[] = [];
      for (const key of optional) {
        try {
          const one = ffi.dlopen(path, { [key]: bunDefinition(SYMBOLS[key as keyof typeof SYMBOLS]) });
          extra.push(one);
          raw[key] = one.symbols[key];
        } catch {
          // Absent from this C library.
        }
      }
      const symbols: Record<string, unknown> = {};
      for (const [key, def] of Object.entries(SYMBOLS) as [string, SymbolDefinition][]) {
        symbols[key] = raw[def.symbol ?? key];
      }
      const errnoLocation = raw[errnoSymbol] as () => number;
      symbols[ERRNO_LOCATION] = errnoLocation;
      const pool = new WorkerPool(path, errnoSymbol);
      for (const [key, def] of Object.entries(SYMBOLS) as [string, SymbolDefinition][]) {
        if (def.offThread) symbols[key] = (...args: unknown[]) => pool.call(def.symbol ?? key, args);
      }
      return {
        path,
        symbols: symbols as unknown as Libc,
        has: (name) => symbols[name] != null,
        errno: errnoReader(ffi.toArrayBuffer(errnoLocation(), 0, 4)),
        close(): void {
          for (const one of extra) one.close();
          library.close();
        },
      };
    },
    view(address: Address, byteLength: number): ArrayBuffer {
      if (!address) throw new TypeError("Cannot view native memory at the null pointer");
      return ffi.toArrayBuffer(address as number, 0, byteLength);
    },
    offset(address: Address, offset: number): Address {
      return (address as number) + offset;
    },
    toBigInt(address: Address): bigint {
      return BigInt(address ?? 0);
    },
    callback(fn: (value: bigint) => void): ThreadSafeCallback {
      const callback = new ffi.JSCallback((value) => fn(BigInt(value ?? 0)), {
        args: ["ptr"],
        returns: "void",
        threadsafe: true,
      });
      // A JSCallback does not keep Bun alive: a timer does while C may still call it.
      let keepAlive: ReturnType<typeof setInterval> | undefined;
      let refs = 0;
      return {
        address: callback.ptr,
        ref(): void {
          if (refs++ === 0) keepAlive = setInterval(() => {}, 1 << 30);
        },
        unref(): void {
          if (--refs === 0) clearInterval(keepAlive);
        },
      };
    },
    unrefTimer(timer: ReturnType<typeof setTimeout>): void {
      // Bun's timers are objects with Node's `unref()`.
      (timer as unknown as { unref(): void }).unref();
    },
    reportError(error: unknown): void {
      // Bun hands uncaught errors to process's `uncaughtException` listeners, as Node does.
      if (process.listenerCount("uncaughtException") > 0) process.emit("uncaughtException", error, "uncaughtException");
      else console.error("Uncaught (in a notification callback)", error);
    },
  };
}
