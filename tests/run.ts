/**
 * `npm test`: the static checks, then the suite under Deno, Bun and Node.js 26, once with the
 * default completion strategy and once more per other strategy (the files whose outcome depends
 * on it). Prints one line per step and ends with `N passed, N failed` summed over everything;
 * exits non-zero on any failure. With `--matrix`, the other targets of tests/matrix.ts follow (aarch64
 * glibc under qemu, x86_64 musl) and count in that last line too.
 *
 * ```sh
 * deno run --allow-all tests/run.ts            # everything
 * deno run --allow-all tests/run.ts --quick    # default strategy only
 * deno run --allow-all tests/run.ts --matrix   # everything, then every other target (CI)
 * ```
 *
 * @module
 */

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { COMPLETIONS } from "../src/completion.ts";
import {
  add,
  type Counts,
  execute,
  failures,
  indent,
  NODE_TEST,
  outcome,
  runMatrix,
  type Runtime,
  STRATEGY_FILES,
} from "./matrix.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name: string): string => path.join(root, "node_modules", ".bin", name);

/** Prints the strategy a process picks when nothing selects one. */
const DEFAULT_PROBE = `const { target } = await import(${
  JSON.stringify(pathToFileURL(path.join(root, "mod.ts")).href)
}); console.log(target.completion);`;

const total: Counts = { passed: 0, failed: 0, skipped: 0 };

/** A static check counts as one test. */
async function check(name: string, command: string[]): Promise<void> {
  const start = performance.now();
  const { status, output } = await execute(command);
  const seconds = ((performance.now() - start) / 1000).toFixed(1);
  if (status === 0) {
    total.passed++;
    console.log(`ok    ${name} (${seconds} s)`);
  } else {
    total.failed++;
    console.log(`FAIL  ${name} (${seconds} s)\n${indent(output)}`);
  }
}

/**
 * Runs the suite (or some files) in one runtime with one strategy: `completion`, or, when it is
 * `undefined`, the default (`POSIX_AIO_COMPLETION` removed from the environment, so that one
 * exported in the caller's shell selects nothing), labelled `defaultLabel`.
 */
async function suite(
  runtime: Runtime,
  completion: string | undefined,
  files: readonly string[],
  defaultLabel = "",
): Promise<void> {
  const command = runtime === "deno"
    ? [bin("deno"), "test", "--allow-all", "--v8-flags=--expose-gc", ...files]
    : runtime === "bun"
    ? [bin("bun"), "test", "--timeout", "120000", ...files]
    : [bin("node"), ...NODE_TEST, ...files];
  const env = { POSIX_AIO_COMPLETION: completion };
  const start = performance.now();
  const result = await execute(command, env);
  const seconds = ((performance.now() - start) / 1000).toFixed(1);
  const counts = outcome(runtime, result);
  add(total, counts);
  const label = `${runtime} [${completion ?? defaultLabel}] ${files.join(" ")}`;
  const line = `${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped (${seconds} s)`;
  console.log(`${counts.failed === 0 ? "ok   " : "FAIL "} ${label}: ${line}`);
  if (counts.failed > 0) console.log(indent(failures(result.output)));
}

const quick = Deno.args.includes("--quick");
const matrix = Deno.args.includes("--matrix");

await check("dprint check", [bin("dprint"), "check"]);
await check("deno lint", [bin("deno"), "lint"]);
await check("deno check", [bin("deno"), "check", "mod.ts", "src/posix.ts", "tests/", "examples/", "bench/", ".ci/"]);
await check("deno doc --lint", [bin("deno"), "doc", "--lint", "mod.ts", "src/posix.ts"]);
await check("deno publish --dry-run", [bin("deno"), "publish", "--dry-run", "--allow-dirty"]);

/** What runs a line of JavaScript in each runtime. */
const EVALUATE: Record<Runtime, string[]> = {
  deno: [bin("deno"), "eval"],
  bun: [bin("bun"), "-e"],
  node: [bin("node"), "--disable-warning=ExperimentalWarning", "--input-type=module", "-e"],
};

for (const runtime of ["deno", "bun", "node"] as const) {
  if (runtime === "node" && !fs.existsSync(bin("node"))) {
    // .ci/node installs Node 26 on Linux x64 and arm64 only, and npm skips an optional
    // package it could not install without a word: there, its absence is a failure.
    const expected = os.platform() === "linux" && ["x64", "arm64"].includes(os.arch());
    if (expected) total.failed++;
    else total.skipped++;
    const why = `no Node.js 26 build for ${os.platform()}-${os.arch()} in node_modules (.ci/node)`;
    console.log(`${expected ? "FAIL " : "skip "} node: not run: ${why}`);
    continue;
  }
  const evaluate = EVALUATE[runtime];
  // The probe runs in the environment of the default run below: what it prints is the label's truth.
  const probe = await execute([...evaluate, DEFAULT_PROBE], { POSIX_AIO_COMPLETION: undefined });
  const defaultStrategy = probe.output.trim().split("\n").at(-1);
  await suite(runtime, undefined, ["tests/"], `${defaultStrategy}, the default`);
  if (quick) continue;
  for (const completion of COMPLETIONS) {
    if (completion !== defaultStrategy) await suite(runtime, completion, STRATEGY_FILES);
  }
}

if (matrix) add(total, await runMatrix());

console.log(`skipped: ${total.skipped} (skipped tests are neither passed nor failed)`);
console.log(`${total.passed} passed, ${total.failed} failed`);
Deno.exit(total.failed === 0 ? 0 : 1);
