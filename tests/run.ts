/**
 * `npm test`: the static checks, then the suite under Deno and under Bun, once with the default
 * completion strategy and once more per other strategy (the files whose outcome depends on it).
 * Prints one line per step and ends with `N passed, N failed` summed over everything; exits
 * non-zero on any failure.
 *
 * ```sh
 * deno run --allow-all tests/run.ts            # everything
 * deno run --allow-all tests/run.ts --quick    # default strategy only
 * ```
 *
 * @module
 */

import { spawn } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { COMPLETIONS } from "../src/completion.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name: string): string => path.join(root, "node_modules", ".bin", name);

/** Prints the strategy a process picks when nothing selects one. */
const DEFAULT_PROBE = `const { target } = await import(${
  JSON.stringify(pathToFileURL(path.join(root, "mod.ts")).href)
}); console.log(target.completion);`;

/** Test files whose outcome depends on the completion strategy. */
const STRATEGY_FILES = ["tests/mod_test.ts", "tests/posix_test.ts", "tests/strace_test.ts"];

interface Counts {
  passed: number;
  failed: number;
  skipped: number;
}

const total: Counts = { passed: 0, failed: 0, skipped: 0 };

/** Runs a command in the project root; resolves with its exit status and combined output. */
function execute(command: string[], env: Record<string, string> = {}): Promise<{ status: number; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(command[0], command.slice(1), {
      cwd: root,
      env: { ...Deno.env.toObject(), NO_COLOR: "1", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk) => output += chunk);
    child.stderr.on("data", (chunk) => output += chunk);
    child.on("error", (error) => resolve({ status: 127, output: `${error}` }));
    child.on("close", (status) => resolve({ status: status ?? 1, output }));
  });
}

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

/** The counts in a test runner's summary, or `undefined` if it printed none. */
function summary(runtime: string, output: string): Counts | undefined {
  // deno: "ok | 76 passed | 0 failed | 1 ignored (7s)"; bun: " 76 pass", " 1 skip", " 0 fail".
  const number = (pattern: RegExp): number | undefined => {
    const match = pattern.exec(output);
    return match === null ? undefined : Number(match[1]);
  };
  const passed = number(runtime === "deno" ? /\| (\d+) passed/ : /^\s*(\d+) pass$/m);
  const failed = number(runtime === "deno" ? /\| (\d+) failed/ : /^\s*(\d+) fail$/m);
  if (passed === undefined || failed === undefined) return undefined;
  const skipped = number(runtime === "deno" ? /\| (\d+) ignored/ : /^\s*(\d+) skip$/m) ?? 0;
  return { passed, failed, skipped };
}

/** Runs the suite (or some files) in one runtime with one strategy. */
async function suite(runtime: "deno" | "bun", completion: string, files: string[]): Promise<void> {
  const command = runtime === "deno"
    ? [bin("deno"), "test", "--allow-all", "--v8-flags=--expose-gc", ...files]
    : [bin("bun"), "test", "--timeout", "120000", ...files];
  const env: Record<string, string> = completion.endsWith("the default") ? {} : { POSIX_AIO_COMPLETION: completion };
  const start = performance.now();
  const { status, output } = await execute(command, env);
  const seconds = ((performance.now() - start) / 1000).toFixed(1);
  const counts = summary(runtime, output) ?? { passed: 0, failed: 1, skipped: 0 };
  if (status !== 0 && counts.failed === 0) counts.failed = 1;
  total.passed += counts.passed;
  total.failed += counts.failed;
  total.skipped += counts.skipped;
  const label = `${runtime} [${completion}] ${files.join(" ")}`;
  const line = `${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped (${seconds} s)`;
  console.log(`${counts.failed === 0 ? "ok   " : "FAIL "} ${label}: ${line}`);
  if (counts.failed > 0) console.log(indent(failures(output)));
}

/** The part of a runner's output that explains its failures. */
function failures(output: string): string {
  const deno = output.indexOf(" ERRORS ");
  if (deno !== -1) return output.slice(deno);
  const lines = output.split("\n");
  const bun = lines.findIndex((line) => line.startsWith("(fail)"));
  return (bun === -1 ? lines.slice(-40) : lines.slice(Math.max(0, bun - 30))).join("\n");
}

function indent(text: string): string {
  return text.trimEnd().split("\n").map((line) => `      ${line}`).join("\n");
}

const quick = Deno.args.includes("--quick");

await check("dprint check", [bin("dprint"), "check"]);
await check("deno lint", [bin("deno"), "lint"]);
await check("deno check", [bin("deno"), "check", "mod.ts", "src/posix.ts", "tests/", "examples/", "bench/"]);
await check("deno doc --lint", [bin("deno"), "doc", "--lint", "mod.ts", "src/posix.ts"]);
await check("deno publish --dry-run", [bin("deno"), "publish", "--dry-run", "--allow-dirty"]);

for (const runtime of ["deno", "bun"] as const) {
  const evaluate = runtime === "deno" ? [bin("deno"), "eval"] : [bin("bun"), "-e"];
  const probe = await execute([...evaluate, DEFAULT_PROBE], { POSIX_AIO_COMPLETION: "" });
  const defaultStrategy = probe.output.trim().split("\n").at(-1);
  await suite(runtime, `${defaultStrategy}, the default`, ["tests/"]);
  if (quick) continue;
  for (const completion of COMPLETIONS) {
    if (completion !== defaultStrategy) await suite(runtime, completion, STRATEGY_FILES);
  }
}

console.log(`skipped: ${total.skipped} (skipped tests are neither passed nor failed)`);
console.log(`${total.passed} passed, ${total.failed} failed`);
Deno.exit(total.failed === 0 ? 0 : 1);
