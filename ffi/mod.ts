/**
 * Picks the backend of the runtime this code runs on. Creating it opens nothing yet.
 *
 * @module
 */

import { createBunBackend } from "./bun.ts";
import { createDenoBackend } from "./deno.ts";
import { createNodeBackend } from "./node.ts";
import type { Backend } from "./types.ts";

export { FfiPermissionError } from "./types.ts";
export type { Address, Backend, Libc, NativeLibrary, OffThreadResult, ThreadSafeCallback } from "./types.ts";

/** The name of the JavaScript runtime, or `undefined` if it is neither Deno, Bun nor Node.js. */
export function detectRuntime(): "deno" | "bun" | "node" | undefined {
  const global = globalThis as { Deno?: unknown; Bun?: unknown; process?: { versions?: { node?: unknown } } };
  // Bun and Deno both have a Node-like `process` too: they are told apart first.
  if (global.Bun !== undefined) return "bun";
  if (global.Deno !== undefined) return "deno";
  if (typeof global.process?.versions?.node === "string") return "node";
  return undefined;
}

/** Creates the backend for this runtime; throws an Error if it is neither Deno, Bun nor Node.js. */
export function createBackend(): Backend {
  switch (detectRuntime()) {
    case "deno":
      return createDenoBackend();
    case "bun":
      return createBunBackend();
    case "node":
      return createNodeBackend();
    default:
      throw new Error(
        "@posix/aio needs Deno, Bun or Node.js 26 (their FFI calls the C library); this JavaScript runtime is none of them",
      );
  }
}
