/**
 * Finding and loading the C library, once, on first use: which target this process is, which
 * library provides POSIX AIO, and glibc's thread pool set up before the first request.
 *
 * @module
 */

import { type Backend, createBackend, FfiPermissionError, type Libc, type NativeLibrary } from "../ffi/mod.ts";
import { ABI, type TargetAbi, type TargetName, UNSUPPORTED } from "./abi.ts";

/** The loaded C library and everything known about it. */
export interface Loaded {
  readonly backend: Backend;
  readonly library: NativeLibrary;
  /** The bound C functions. */
  readonly c: Libc;
  readonly abi: TargetAbi;
  readonly target: TargetName;
}

/** Settings that must be chosen before the C library is loaded. */
export interface Settings {
  /** glibc AIO worker threads (`aio_init`); glibc's own default is 20. */
  threads: number;
  /** Seconds an idle glibc AIO worker thread waits before it exits; glibc's default is 1. */
  idleTime: number;
  /** The completion strategy, or `undefined` for `POSIX_AIO_COMPLETION` or the default. */
  completion: string | undefined;
}

/** Current settings; `configure()` in mod.ts changes them before loading. */
export const settings: Settings = { threads: 64, idleTime: 10, completion: undefined };

let backend: Backend | undefined;
let loaded: Loaded | undefined;
let failure: unknown;

/** The runtime backend; creating it opens nothing. */
export function runtimeBackend(): Backend {
  return backend ??= createBackend();
}

/** Whether the C library has been loaded. */
export function isLoaded(): boolean {
  return loaded !== undefined;
}

/**
 * The targets that may apply to a platform, most likely first. Throws an Error naming the
 * platform when none can.
 */
export function targetCandidates(os: string, arch: string): TargetName[] {
  if (os !== "linux" && os !== "darwin") {
    const why = UNSUPPORTED[os] ?? "no ABI table describes its POSIX AIO";
    throw new Error(`@posix/aio does not support ${os} (${arch}): ${why}`);
  }
  if (arch !== "x86_64" && arch !== "aarch64") {
    const why = /^(x86|i[3-6]86|arm|ia32|mips|ppc)$/.test(arch) ? UNSUPPORTED["32-bit"] : "no ABI table describes it";
    throw new Error(`@posix/aio does not support ${os} on ${arch}: ${why}`);
  }
  return os === "darwin" ? [`darwin-${arch}`] : [`linux-${arch}-glibc`, `linux-${arch}-musl`];
}

/** Opens a library by name or path with the given errno accessor; throws if it cannot. */
export type Opener = (path: string, errnoSymbol: string) => NativeLibrary;

/**
 * Opens the C library for a platform: `override` alone if given, else each candidate target's
 * library names in order, keeping the first whose C library really is that target's (musl
 * answers to glibc's names too; only glibc exports `gnu_get_libc_version`).
 */
export function openLibrary(
  os: string,
  arch: string,
  override: string | undefined,
  open: Opener,
): { library: NativeLibrary; target: TargetName } {
  const candidates = targetCandidates(os, arch);
  const identify = (library: NativeLibrary): TargetName =>
    candidates.length === 1 ? candidates[0] : candidates[library.has("gnu_get_libc_version") ? 0 : 1];
  if (override !== undefined && override !== "") {
    try {
      const library = open(override, ABI[candidates[0]].errno_symbol);
      return { library, target: identify(library) };
    } catch (error) {
      if (error instanceof FfiPermissionError) throw error;
      throw new Error(`@posix/aio cannot use POSIX_AIO_LIBRARY=${override}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  const tried: string[] = [];
  for (const target of candidates) {
    for (const path of ABI[target].library) {
      let library: NativeLibrary;
      try {
        library = open(path, ABI[target].errno_symbol);
      } catch (error) {
        if (error instanceof FfiPermissionError) throw error;
        tried.push(`${path} (${(error as Error).message})`);
        continue;
      }
      const actual = identify(library);
      if (actual === target) return { library, target };
      library.close();
      tried.push(`${path} (it is ${ABI[actual].libc})`);
    }
  }
  throw new Error(
    `@posix/aio found no C library with POSIX AIO on ${os} ${arch}; tried ${tried.join(", ")}. `
      + "Set POSIX_AIO_LIBRARY to its path",
  );
}

/** Raises glibc's AIO thread pool; only effective before the process's first AIO request. */
function initThreadPool(loaded: Loaded): void {
  const { abi, backend, c } = loaded;
  if (abi.aioinit === null || !loaded.library.has("aio_init")) return;
  const init = c.calloc(1, abi.aioinit.size);
  if (!init) return;
  try {
    const view = new DataView(backend.view(init, abi.aioinit.size));
    view.setInt32(abi.aioinit.aio_threads[0], settings.threads, true);
    view.setInt32(abi.aioinit.aio_num[0], Math.max(settings.threads, 64), true);
    view.setInt32(abi.aioinit.aio_idle_time[0], settings.idleTime, true);
    c.aio_init(init);
  } finally {
    c.free(init);
  }
}

/**
 * The loaded C library: opened on the first call, the same afterwards. A failure is thrown
 * again on every later call.
 */
export function native(): Loaded {
  if (loaded !== undefined) return loaded;
  if (failure !== undefined) throw failure;
  try {
    const backend = runtimeBackend();
    backend.checkPermission();
    const { library, target } = openLibrary(
      backend.os,
      backend.arch,
      backend.env("POSIX_AIO_LIBRARY"),
      (path, errnoSymbol) => backend.open(path, errnoSymbol),
    );
    const result: Loaded = { backend, library, c: library.symbols, abi: ABI[target], target };
    initThreadPool(result);
    loaded = result;
    return result;
  } catch (error) {
    failure = error;
    throw error;
  }
}
