/**
 * One test function for both runtimes: `Deno.test` under `deno test` (its op, resource and exit
 * sanitizers stay on), `node:test` under `bun test`.
 *
 * @module
 */

import { test as nodeTest } from "node:test";

/** Options of a test. */
export interface TestOptions {
  /** A reason to skip the test; it then shows as skipped (ignored), never as passed. */
  skip?: string | false;
}

const deno = (globalThis as { Bun?: unknown }).Bun === undefined
  ? (globalThis as { Deno?: typeof Deno }).Deno
  : undefined;

/** Registers a test. */
export function test(name: string, fn: () => void | Promise<void>, options: TestOptions = {}): void {
  const title = options.skip ? `${name} [skipped: ${options.skip}]` : name;
  if (deno !== undefined) {
    deno.test({ name: title, fn, ignore: Boolean(options.skip) });
  } else {
    nodeTest(title, { skip: options.skip || false }, fn);
  }
}
