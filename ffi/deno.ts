/**
 * The Deno backend: `Deno.dlopen`, `Deno.UnsafePointerView`, `Deno.UnsafeCallback.threadSafe`,
 * and `nonblocking` calls for the off-thread symbols.
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

// Addresses travel as "usize" bigints: Deno's fast call path takes them without boxing.
const TYPES: Record<NativeType, Deno.NativeResultType> = {
  i32: "i32",
  isize: "isize",
  usize: "usize",
  pointer: "usize",
  buffer: "buffer",
  void: "void",
};

function denoDefinition(key: string, def: SymbolDefinition): Deno.ForeignFunction {
  return {
    name: def.symbol ?? key,
    parameters: def.params.map((type) => TYPES[type] as Deno.NativeType),
    result: TYPES[def.result],
    nonblocking: def.offThread ?? false,
    optional: def.optional ?? false,
  };
}

function pointerObject(address: Address): Deno.PointerObject {
  const pointer = Deno.UnsafePointer.create(address as bigint);
  if (pointer === null) throw new TypeError("Cannot view native memory at the null pointer");
  return pointer;
}

function bind(raw: Record<string, unknown>): Libc {
  const symbols: Record<string, unknown> = { ...raw };
  for (const [key, def] of Object.entries(SYMBOLS) as [string, SymbolDefinition][]) {
    const fn = raw[key] as ((...args: unknown[]) => unknown) | null;
    if (fn == null) continue;
    if (def.offThread) {
      // errno of a nonblocking call is left on a pool thread and cannot be read afterwards.
      symbols[key] = async (...args: unknown[]): Promise<OffThreadResult> => ({
        result: Number(await fn(...args)),
        errno: undefined,
      });
    } else if (def.result === "isize") {
      symbols[key] = (...args: unknown[]): number => Number(fn(...args));
    }
  }
  return symbols as unknown as Libc;
}

function isPermissionError(error: unknown): boolean {
  return error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied;
}

/** Creates the Deno backend. */
export function createDenoBackend(): Backend {
  return {
    runtime: "deno",
    os: Deno.build.os,
    arch: Deno.build.arch,
    NULL: 0n,
    checkPermission(): void {
      // Unrestricted FFI, asked for once: Deno's pointer functions need it, and a grant limited
      // to paths (--allow-ffi=<path>, or "y" to a prompt naming a library) makes Deno resolve a
      // bare library name against the working directory. On a terminal without --allow-ffi this
      // prompts once for "ffi access"; elsewhere (or with --no-prompt) it is denied at once.
      let { state } = Deno.permissions.querySync({ name: "ffi" });
      if (state === "prompt") state = Deno.permissions.requestSync({ name: "ffi" }).state;
      if (state !== "granted") {
        throw new FfiPermissionError(
          "@posix/aio calls the C library through FFI: run Deno with --allow-ffi (without a path: "
            + "Deno's pointer functions need unrestricted FFI)",
        );
      }
    },
    env(name: string): string | undefined {
      const status = Deno.permissions.querySync({ name: "env", variable: name });
      return status.state === "granted" ? Deno.env.get(name) : undefined;
    },
    open(path: string, errnoSymbol: string): NativeLibrary {
      const definitions: Record<string, Deno.ForeignFunction> = {};
      for (const [key, def] of Object.entries(SYMBOLS) as [string, SymbolDefinition][]) {
        definitions[key] = denoDefinition(key, def);
      }
      definitions[ERRNO_LOCATION] = denoDefinition(errnoSymbol, ERRNO_DEFINITION);
      let library: Deno.DynamicLibrary<Record<string, Deno.ForeignFunction>>;
      try {
        library = Deno.dlopen(path, definitions);
      } catch (error) {
        if (isPermissionError(error)) {
          throw new FfiPermissionError(
            `@posix/aio calls the C library through FFI: run Deno with --allow-ffi (opening ${path})`,
            {
              cause: error,
            },
          );
        }
        throw error;
      }
      const symbols = bind(library.symbols as Record<string, unknown>);
      return {
        path,
        symbols,
        has: (name) => symbols[name] != null,
        errno: errnoReader(Deno.UnsafePointerView.getArrayBuffer(pointerObject(symbols.errno_location()), 4)),
        close: () => library.close(),
      };
    },
    view(address: Address, byteLength: number): ArrayBuffer {
      return Deno.UnsafePointerView.getArrayBuffer(pointerObject(address), byteLength);
    },
    offset(address: Address, offset: number): Address {
      return (address as bigint) + BigInt(offset);
    },
    toBigInt(address: Address): bigint {
      return BigInt(address ?? 0);
    },
    callback(fn: (value: bigint) => void): ThreadSafeCallback {
      const callback = Deno.UnsafeCallback.threadSafe(
        { parameters: ["usize"], result: "void" } as const,
        (value: number | bigint) => fn(BigInt(value)),
      );
      callback.unref();
      return {
        address: BigInt(Deno.UnsafePointer.value(callback.pointer)),
        ref: () => callback.ref(),
        unref: () => callback.unref(),
      };
    },
    unrefTimer(timer: ReturnType<typeof setTimeout>): void {
      Deno.unrefTimer(timer);
    },
    reportError(error: unknown): void {
      // What reportError() does, short of ending the process when no listener cancels it.
      const message = error instanceof Error ? error.message : String(error);
      const event = new ErrorEvent("error", { error, message, cancelable: true });
      if (globalThis.dispatchEvent(event)) console.error("Uncaught (in a notification callback)", error);
    },
  };
}
