/**
 * One test function for every runtime: `Deno.test` under `deno test` (its op, resource and exit
 * sanitizers stay on), `node:test` under `bun test` and `node --test`.
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

/** Node's `process.report`, which only Node has. */
const report = (globalThis as { process?: { report?: { reportOnSignal: boolean } } }).process?.report;
// `node --test` starts each file with report-on-signal on (26.10): SIGUSR2, which tests raise
// through SIGEV_SIGNAL, would write a diagnostic report into the working directory.
if (deno === undefined && (globalThis as { Bun?: unknown }).Bun === undefined && report !== undefined) {
  report.reportOnSignal = false;
}

/** Registers a test. */
export function test(name: string, fn: () => void | Promise<void>, options: TestOptions = {}): void {
  const title = options.skip ? `${name} [skipped: ${options.skip}]` : name;
  if (deno !== undefined) {
    deno.test({ name: title, fn, ignore: Boolean(options.skip) });
  } else {
    nodeTest(title, { skip: options.skip || false }, fn);
  }
}
