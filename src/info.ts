/**
 * What the module runs on and how it is doing: `target`, `stats()`, and `configure()` for the
 * choices that must be made before the C library is loaded.
 *
 * @module
 */

import { type CompletionName, COMPLETIONS } from "./completion.ts";
import { blockStats } from "./control_block.ts";
import { getEngine, heldRequests } from "./engine.ts";
import { isLoaded, native, runtimeBackend, settings } from "./target.ts";
import { describe, toOptions } from "./validate.ts";

export type { CompletionName } from "./completion.ts";

/** The platform and the choices made on it. */
export interface Target {
  /** `"deno"`, `"bun"` or `"node"`. */
  readonly runtime: "deno" | "bun" | "node";
  /** `"linux"` or `"darwin"`. */
  readonly os: string;
  /** `"x86_64"` or `"aarch64"`. */
  readonly arch: string;
  /** `"glibc"`, `"musl"` or `"darwin"`. Reading it loads the C library. */
  readonly libc: "glibc" | "musl" | "darwin";
  /** The library opened, such as `"libc.so.6"`. Reading it loads the C library. */
  readonly library: string;
  /** The completion strategy in use. Reading it loads the C library. */
  readonly completion: CompletionName;
}

/**
 * The platform, the C library and the completion strategy. The runtime, OS and architecture
 * are known without loading anything; the other properties load the C library when read.
 *
 * @example
 * ```ts ignore
 * import { target } from "@posix/aio";
 * console.log(`${target.runtime} on ${target.os}-${target.arch}, ${target.library}, ${target.completion}`);
 * ```
 */
export const target: Target = Object.freeze({
  get runtime(): "deno" | "bun" | "node" {
    return runtimeBackend().runtime;
  },
  get os(): string {
    return runtimeBackend().os;
  },
  get arch(): string {
    return runtimeBackend().arch;
  },
  get libc(): "glibc" | "musl" | "darwin" {
    return native().abi.libc;
  },
  get library(): string {
    return native().library.path;
  },
  get completion(): CompletionName {
    return getEngine().completion;
  },
});

/** Counts of what is in flight and allocated. */
export interface Stats {
  /** Requests in flight, in both layers (including requests held back before libc). */
  readonly pending: number;
  /** Native control blocks not yet freed (requests in flight and live `Aiocb`s). */
  readonly allocated: number;
}

/**
 * Requests in flight and native control blocks not yet freed. Both return to 0 once every
 * request is final and every `Aiocb` freed.
 *
 * @example
 * ```ts ignore
 * import { fdatasync, stats } from "@posix/aio";
 * await fdatasync(fd);
 * console.log(stats()); // { pending: 0, allocated: 0 }
 * ```
 */
export function stats(): Stats {
  const { pending, allocated } = blockStats();
  return { pending: pending + heldRequests(), allocated };
}

/** Choices that take effect only before the C library is loaded. */
export interface ConfigureOptions {
  /** glibc AIO worker threads, set with `aio_init` (default 64; glibc's own is 20). */
  threads?: number;
  /** Seconds an idle glibc AIO thread lingers before exiting (default 10; glibc's own is 1). */
  idleTime?: number;
  /** The completion strategy; overrides `POSIX_AIO_COMPLETION`. */
  completion?: CompletionName;
}

/**
 * Sets choices that must be made before the first use: glibc's AIO thread pool and the
 * completion strategy. Throws once the C library is loaded, or for an invalid option.
 *
 * @example
 * ```ts ignore
 * import { configure } from "@posix/aio";
 * configure({ threads: 256, completion: "poll+suspend" });
 * ```
 *
 * @param options The choices.
 */
export function configure(options: ConfigureOptions): void {
  const { threads, idleTime, completion } = toOptions<ConfigureOptions>(options);
  for (const [name, value, max] of [["threads", threads, 4096], ["idleTime", idleTime, 86_400]] as const) {
    if (value === undefined) continue;
    if (typeof value !== "number") {
      throw new TypeError(`Invalid options.${name}: expected a number, received ${describe(value)}`);
    }
    if (!Number.isInteger(value) || value < 1 || value > max) {
      throw new RangeError(`Invalid options.${name}: expected an integer from 1 to ${max}, received ${value}`);
    }
  }
  if (completion !== undefined && !(COMPLETIONS as readonly unknown[]).includes(completion)) {
    throw new RangeError(
      `Invalid options.completion: expected one of ${COMPLETIONS.join(", ")}, received ${describe(completion)}`,
    );
  }
  if (isLoaded()) throw new Error("configure() must be called before the first request: the C library is loaded");
  if (threads !== undefined) settings.threads = threads;
  if (idleTime !== undefined) settings.idleTime = idleTime;
  if (completion !== undefined) settings.completion = completion;
}
