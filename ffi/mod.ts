/**
 * Picks the backend of the runtime this code runs on. Creating it opens nothing yet.
 *
 * @module
 */

import { createBunBackend } from "./bun.ts";
import { createDenoBackend } from "./deno.ts";
import type { Backend } from "./types.ts";

export { FfiPermissionError } from "./types.ts";
export type { Address, Backend, Libc, NativeLibrary, OffThreadResult, ThreadSafeCallback } from "./types.ts";

/** The name of the JavaScript runtime, or `undefined` if it is neither Deno nor Bun. */
export function detectRuntime(): "deno" | "bun" | undefined {
  const global = globalThis as { Deno?: unknown; Bun?: unknown };
  if (global.Bun !== undefined) return "bun";
  if (global.Deno !== undefined) return "deno";
  return undefined;
}

/** Creates the backend for this runtime; throws an Error naming the runtime if there is none. */
export function createBackend(): Backend {
  switch (detectRuntime()) {
    case "deno":
      return createDenoBackend();
    case "bun":
      return createBunBackend();
    default: {
      const node = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node;
      const name = node === undefined ? "this JavaScript runtime" : `Node.js ${node}`;
      throw new Error(`@posix/aio needs Deno or Bun (their FFI calls the C library); ${name} is not supported`);
    }
  }
}
