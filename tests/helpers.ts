/**
 * Test helpers: real files, FIFOs, closed descriptors, child processes of the same runtime.
 *
 * @module
 */

import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { stats } from "../mod.ts";
import { constants } from "../src/posix.ts";

/** The runtime running the tests. */
export const runtime: "deno" | "bun" | "node" = (globalThis as { Bun?: unknown }).Bun !== undefined
  ? "bun"
  : (globalThis as { Deno?: unknown }).Deno !== undefined
  ? "deno"
  : "node";

/**
 * The options Node is started with, for the suite and its children: the garbage collector
 * exposed (tests/helpers.ts `gc()`), and no warning for `node:ffi` being experimental (children
 * report on stdout and stderr, which some tests read).
 */
export const NODE_OPTIONS: readonly string[] = ["--expose-gc", "--disable-warning=ExperimentalWarning"];

/** The project's root folder. */
export const root: string = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/**
 * The target tests/matrix.ts runs this process as (`POSIX_AIO_TEST_TARGET`, e.g.
 * `"linux-aarch64-glibc"`), or `undefined` when the suite runs on the host as itself.
 */
export const testTarget: string | undefined = process.env.POSIX_AIO_TEST_TARGET || undefined;

/**
 * The command that starts this runtime again. A runtime that tests/matrix.ts starts under an
 * emulator (`qemu-aarch64 -L ...`) or under a foreign dynamic loader cannot start a child from
 * its executable alone: the matrix passes the whole command in `POSIX_AIO_TEST_RUNTIME` (a JSON
 * array of strings). Otherwise the runtime's own executable.
 */
export const runtimeLauncher: readonly string[] = launcher();

function launcher(): string[] {
  const given = process.env.POSIX_AIO_TEST_RUNTIME;
  if (given) {
    const command: unknown = JSON.parse(given);
    if (!Array.isArray(command) || command.length === 0 || !command.every((part) => typeof part === "string")) {
      throw new Error(`POSIX_AIO_TEST_RUNTIME must be a JSON array of strings, not ${given}`);
    }
    return command;
  }
  return [runtime === "deno" ? Deno.execPath() : process.execPath];
}

/**
 * The emulator this process runs under (`"qemu-aarch64"`), seen in the command that starts the
 * runtime, or `undefined` when it runs natively.
 */
export const emulator: string | undefined = runtimeLauncher
  .map((part) => path.basename(part))
  .find((name) => name.startsWith("qemu-"));

/**
 * The C library this process runs on, as /proc/self/maps shows it (Linux only; `undefined`
 * elsewhere): `"glibc"` when a `libc.so.6` is mapped, `"musl"` when a musl file is. It does not
 * ask the module, so tests can hold the module's own detection against it.
 */
export function processLibc(): "glibc" | "musl" | undefined {
  let maps: string;
  try {
    maps = fs.readFileSync("/proc/self/maps", "utf8");
  } catch {
    return undefined;
  }
  const files = maps.split("\n").map((line) => line.split(/\s+/)[5] ?? "").filter((file) => file.startsWith("/"));
  if (files.some((file) => path.basename(file) === "libc.so.6")) return "glibc";
  if (files.some((file) => /(^|[/.-])musl([/.-]|$)/.test(file))) return "musl";
  return undefined;
}

/** A fresh temporary folder, removed by the returned function. */
export function tempDir(): { dir: string; remove: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "posix-aio-test-"));
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Runs `fn` with a fresh temporary folder, removed afterwards. */
export async function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const { dir, remove } = tempDir();
  try {
    await fn(dir);
  } finally {
    remove();
  }
}

/**
 * Asserts that nothing is in flight or allocated, waiting up to `ms` first: a block that an
 * `aio_suspend` call off the JavaScript thread still lists is freed when that call returns.
 */
export async function quiescent(ms = 10_000): Promise<void> {
  const idle = (): boolean => stats().allocated === 0 && stats().pending === 0;
  for (const start = performance.now(); !idle() && performance.now() - start < ms;) await sleep(5);
  assert.deepEqual(stats(), { pending: 0, allocated: 0 }, "nothing left in flight or allocated");
}

/** Opens a new file for reading and writing; returns its fd and path. */
export function tempFile(dir: string, name = "data.bin", contents?: Uint8Array | string): { fd: number; file: string } {
  const file = path.join(dir, name);
  if (contents !== undefined) fs.writeFileSync(file, contents);
  return { fd: fs.openSync(file, contents === undefined ? "w+" : "r+"), file };
}

/**
 * A FIFO opened read-write with nothing written: a read on it stays pending until `feed`
 * writes, which makes a deterministic pending request. glibc runs the requests of one fd in
 * order, so everything submitted on this fd after that read waits behind it, not started.
 *
 * `close()` throws if a thread is still blocked reading the FIFO (a test that ends with a read
 * in flight, often because an assertion failed before the test fed it), and then leaves the fd
 * open: it feeds the FIFO 64 bytes, which ends that read and up to 63 queued behind it, but
 * closing would free the number, and glibc, which keys its queues by fd number, would hold a
 * later test's requests on that number behind any read of this FIFO still to run, for ever.
 */
export function fifo(dir: string, name = "fifo"): { fd: number; feed: (bytes: string) => void; close: () => void } {
  const file = path.join(dir, name);
  execFileSync("mkfifo", [file]);
  const fd = fs.openSync(file, "r+");
  return {
    fd,
    feed: (bytes) => fs.writeSync(fd, bytes),
    close: () => {
      const reader = readerThread(fd);
      if (reader === undefined) return fs.closeSync(fd);
      fs.writeSync(fd, "\0".repeat(64));
      throw new Error(`FIFO ${name} (fd ${fd}, left open) still had thread ${reader} reading it at close`);
    },
  };
}

/**
 * A test's FIFO cleanup, whatever failed before it: feeds each FIFO of `pipes` one byte (more
 * sits unread), waits up to `DEADLINE` for `settled()` (the test's reads final), closes every
 * FIFO (then throws the first failure of `close()`, see `fifo`), and calls `remove` (the test's
 * directory) in any case.
 */
export async function releaseFifos(
  pipes: readonly { feed: (bytes: string) => void; close: () => void }[],
  settled: () => Promise<unknown>,
  remove?: () => void,
): Promise<void> {
  try {
    for (const pipe of pipes) pipe.feed("-");
    await within(settled(), DEADLINE, "the FIFO reads, fed at cleanup");
    const errors: unknown[] = [];
    for (const pipe of pipes) {
      try {
        pipe.close();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw errors[0];
  } finally {
    remove?.();
  }
}

/** A descriptor number that is not open (opened, then closed). */
export function closedFd(dir: string): number {
  const fd = fs.openSync(path.join(dir, "closed"), "w");
  fs.closeSync(fd);
  return fd;
}

/** Waits `ms` milliseconds. Never use it to assume something has happened: wait for it (`until`). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * How long a test waits for a fact (a request running, a tracer attached) before it fails: wide,
 * since a loaded machine (busy loops on every core, another copy of the suite) can keep a thread
 * off the CPU for seconds, and four times as wide under an emulator (qemu-user runs the runtime
 * ten to fifty times slower). Waiting that long costs nothing when the fact comes at once.
 */
export const DEADLINE: number = emulator === undefined ? 30_000 : 120_000;

/** How long a child process (a fixture, a runtime under strace) may run before it is killed. */
export const CHILD_TIMEOUT: number = emulator === undefined ? 120_000 : 480_000;

/**
 * Waits until `fact()` is true, checking it now and then every few milliseconds; rejects with an
 * Error naming `what` (and `detail()`, if given) after `ms`. The loop always ends.
 */
export async function until(
  fact: () => boolean,
  what: string,
  ms: number = DEADLINE,
  detail?: () => string,
): Promise<void> {
  const start = performance.now();
  while (!fact()) {
    if (performance.now() - start > ms) {
      throw new Error(`${what} did not happen within ${ms} ms${detail ? `: ${detail()}` : ""}`);
    }
    await sleep(2);
  }
}

/**
 * Numbers of the syscalls that read a descriptor (read, pread64, readv, preadv, preadv2) per
 * kernel architecture. Under qemu-user the guest's syscalls are made by qemu as host syscalls, so
 * the kernel's own architecture counts, not the runtime's.
 */
const READ_SYSCALLS: Record<string, readonly number[]> = {
  x86_64: [0, 17, 19, 295, 327],
  aarch64: [63, 67, 65, 69, 286],
};

function kernelArch(): string {
  try {
    return fs.readFileSync("/proc/sys/kernel/arch", "utf8").trim();
  } catch {
    return os.machine();
  }
}

const readSyscalls: readonly number[] = READ_SYSCALLS[kernelArch()] ?? [];

/**
 * What each thread of this process is blocked in, one line per thread (`tid: syscall wchan`),
 * from /proc/self/task/<tid>/{syscall,wchan}; for error messages.
 */
export function threadStates(): string {
  const lines: string[] = [];
  for (const tid of fs.readdirSync("/proc/self/task")) {
    const read = (file: string): string => {
      try {
        return fs.readFileSync(`/proc/self/task/${tid}/${file}`, "utf8").trim();
      } catch (error) {
        return `(${(error as Error).message})`;
      }
    };
    lines.push(`${tid}: ${read("syscall").split(" ").slice(0, 3).join(" ")} ${read("wchan")}`);
  }
  return lines.join("\n");
}

/**
 * The id of a thread of this process blocked reading `fd` right now, or `undefined`:
 * /proc/self/task/<tid>/syscall shows a read-family syscall whose first argument is `fd` (on a
 * FIFO with nothing written, wchan says pipe_read then). Threads that vanish while looked at are
 * skipped. Linux only.
 */
export function readerThread(fd: number): string | undefined {
  const hex = `0x${fd.toString(16)}`;
  for (const tid of fs.readdirSync("/proc/self/task")) {
    let fields: string[];
    try {
      fields = fs.readFileSync(`/proc/self/task/${tid}/syscall`, "utf8").trim().split(" ");
    } catch {
      continue;
    }
    if (readSyscalls.includes(Number(fields[0])) && fields[1] === hex) return tid;
  }
  return undefined;
}

/** Whether a thread of this process is blocked reading `fd` right now (see `readerThread`). */
export function blockedReading(fd: number): boolean {
  return readerThread(fd) !== undefined;
}

/**
 * Waits until a read on the FIFO `fd` is running inside libc: a thread of this process is blocked
 * reading `fd`, and `status()` (the request's `aio_error`, when given) says EINPROGRESS. Requests
 * submitted on `fd` afterwards are queued behind it (glibc runs one fd's requests in order).
 */
export async function readRunning(fd: number, status?: () => number, ms: number = DEADLINE): Promise<void> {
  const { EINPROGRESS } = constants;
  await until(
    () => blockedReading(fd) && (status === undefined || status() === EINPROGRESS),
    `a thread blocked reading fd ${fd} with the request EINPROGRESS`,
    ms,
    () => `status ${status?.()}, threads:\n${threadStates()}`,
  );
}

/** Whether a program is on PATH. */
export function hasProgram(name: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${name}`]).status === 0;
}

/** The command line that runs a script with this runtime and every permission it needs. */
export function runtimeCommand(script: string, extra: string[] = []): string[] {
  if (runtime === "deno") {
    return [...runtimeLauncher, "run", "--allow-all", "--v8-flags=--expose-gc", ...extra, script];
  }
  if (runtime === "node") return [...runtimeLauncher, ...NODE_OPTIONS, ...extra, script];
  return [...runtimeLauncher, ...extra, script];
}

/** What a finished child process printed. */
export interface ChildResult {
  readonly status: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs a command to its end (killed after `timeout` ms), in `cwd` if given. */
export function run(
  command: string[],
  options: { env?: Record<string, string>; timeout?: number; input?: string; cwd?: string } = {},
): Promise<ChildResult> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command[0], command.slice(1), {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => stdout += chunk);
    child.stderr.on("data", (chunk) => stderr += chunk);
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeout ?? CHILD_TIMEOUT);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, ms: performance.now() - start });
    });
    child.stdin.end(options.input ?? "");
  });
}

/** The last line of a child's stdout, parsed as JSON. */
export function lastJson<T>(result: ChildResult): T {
  const lines = result.stdout.trim().split("\n");
  try {
    return JSON.parse(lines.at(-1)!) as T;
  } catch {
    throw new Error(`No JSON from the child (status ${result.status}):\n${result.stdout}\n${result.stderr}`);
  }
}

/** Forces a full garbage collection, where the runtime allows it. */
export function gc(): void {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  if (bun !== undefined) bun.gc(true);
  else (globalThis as { gc?: () => void }).gc?.();
}

/**
 * Waits until `fact()` is true, forcing a garbage collection before each check (every 10 ms);
 * rejects with an Error naming `what` after `ms`.
 */
export async function collected(fact: () => boolean, what: string, ms: number = DEADLINE): Promise<void> {
  const start = performance.now();
  for (;;) {
    const before = performance.now();
    gc();
    if (fact()) return;
    if (performance.now() - start > ms) throw new Error(`${what} did not happen within ${ms} ms`);
    // A full collection can take long (under an emulator, a heap of thousands of requests):
    // leave the thread at least as much time to notice completions as the collection took.
    await sleep(Math.max(10, performance.now() - before));
  }
}

/** Whether `gc()` really collects. */
export const canGc: boolean = runtime === "bun" || typeof (globalThis as { gc?: unknown }).gc === "function";

/** Resolves like `promise`, or rejects if it takes longer than `ms` (the timer keeps the loop alive). */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
