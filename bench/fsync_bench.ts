/**
 * Benchmark of `fdatasync`: every completion strategy against the runtime's own path, side by
 * side in one run, on /dev/shm (so the device is fast and the figures are the cost of learning
 * that a sync finished).
 *
 * ```sh
 * deno run --allow-all bench/fsync_bench.ts
 * bun bench/fsync_bench.ts
 * BENCH_SCALE=0.1 BENCH_PASSES=5 bun bench/fsync_bench.ts   # or --scale=0.1 --passes=5
 * ```
 *
 * Cases, all writing 4 KiB blocks with the same synchronous `node:fs` `writeSync`, so that only
 * the sync differs:
 * - `seq`: write + fdatasync, one after another (20,000 times).
 * - `concurrent-one-fd`: one write, then 1,000 fdatasync at once on its fd (20 rounds).
 * - `many-files`: 64 files, each write + fdatasync, all 64 at once (20 rounds).
 * - `mid` (needs strace): `seq` on a device made slow with strace, 500 us added to every
 *   fdatasync(2) (1,000 times): latency on a mid-latency device and CPU spent waiting.
 * - `idle` (needs strace): 32 files synced at once, each sync taking 1 s: the CPU a process
 *   spends while its syncs wait on a slow device.
 *
 * Every row carries `cpu_percent`: CPU time of the process (user + system) over wall time, in
 * percent of one core, while the case ran.
 *
 * `impl` is `native` for the runtime's own path (Deno: `Deno.FsFile.syncData()`; Bun: `node:fs`
 * `fdatasync` with a callback, and `native-promises` for `FileHandle.datasync()`), or the name
 * of a completion strategy. The strategy is chosen once per process, so every implementation
 * runs in a child process of the same runtime; passes are interleaved (the machine drifts
 * between fast and slow states) and the median of the passes is printed, one JSON line per
 * case and implementation. The rows of the default strategy carry `"default": true`.
 *
 * @module
 */

import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { type CompletionName, fdatasync, target } from "../mod.ts";
import { COMPLETIONS } from "../src/completion.ts";

/** The runtimes measured. */
type Runtime = "deno" | "bun";

/** The workloads. */
type CaseName = "seq" | "concurrent-one-fd" | "many-files" | "mid" | "idle";

/** One measurement, as printed. */
interface Row {
  runtime: Runtime;
  case: CaseName;
  impl: string;
  ops: number;
  us_per_op: number;
  cpu_percent: number;
  default?: true;
}

/** A file opened for the benchmark: written through `fd` with `node:fs`, made durable by `sync`. */
interface SyncedFile {
  readonly fd: number;
  sync(): Promise<void>;
  close(): void | Promise<void>;
}

/** Opens (creates) a file for one implementation of the sync. */
type Opener = (file: string) => SyncedFile | Promise<SyncedFile>;

/** Operations, time and CPU time taken by one case. */
interface Measure {
  ops: number;
  ms: number;
  cpuMs: number;
}

const deno = (globalThis as { Bun?: unknown }).Bun === undefined
  ? (globalThis as { Deno?: typeof Deno }).Deno
  : undefined;

const runtime: Runtime = deno === undefined ? "bun" : "deno";

const script: string = fileURLToPath(import.meta.url);

/** The cases, each with the microseconds strace adds to every fdatasync(2) while it runs. */
const CASES: ReadonlyMap<CaseName, number> = new Map<CaseName, number>([
  ["seq", 0],
  ["concurrent-one-fd", 0],
  ["many-files", 0],
  ["mid", 500],
  ["idle", 1_000_000],
]);

/** Bytes written before each sync. */
const BLOCK = new Uint8Array(4096).fill(0x61);
/** `seq`: operations at scale 1, and untimed ones run first. */
const SEQ_OPS = 20_000;
const SEQ_WARMUP = 500;
/** `concurrent-one-fd`: syncs at once, and rounds at scale 1 (one more runs untimed first). */
const BURST = 1000;
const BURST_ROUNDS = 20;
/** `many-files`: files, and rounds at scale 1 (one more runs untimed first). */
const FILES = 64;
const FILES_ROUNDS = 20;
/** `mid`: operations at scale 1. */
const MID_OPS = 1000;
/** `idle`: files synced at once, and rounds at scale 1. */
const IDLE_FILES = 32;
const IDLE_ROUNDS = 1;
/** A child that takes longer than this is killed (ms). */
const CHILD_TIMEOUT_MS = 600_000;

/** The runtime's own ways to sync, by implementation name. */
function nativeOpeners(): Map<string, Opener> {
  if (deno !== undefined) {
    // Deno 2 exposes no descriptor of an FsFile: writes go through a node:fs descriptor of the
    // same file, and fdatasync(2) flushes the file's data whichever descriptor asks.
    return new Map<string, Opener>([["native", async (file: string): Promise<SyncedFile> => {
      const fd = fs.openSync(file, "w+");
      const handle = await deno.open(file, { read: true, write: true });
      return {
        fd,
        sync: () => handle.syncData(),
        close: () => {
          handle.close();
          fs.closeSync(fd);
        },
      };
    }]]);
  }
  return new Map<string, Opener>([
    ["native", (file: string): SyncedFile => {
      const fd = fs.openSync(file, "w+");
      return {
        fd,
        sync: () =>
          new Promise<void>((resolve, reject) => fs.fdatasync(fd, (error) => error ? reject(error) : resolve())),
        close: () => fs.closeSync(fd),
      };
    }],
    ["native-promises", async (file: string): Promise<SyncedFile> => {
      const handle = await fsp.open(file, "w+");
      return { fd: handle.fd, sync: () => handle.datasync(), close: () => handle.close() };
    }],
  ]);
}

/** Opens files synced by this module, with the strategy this process selected. */
function aioOpener(file: string): SyncedFile {
  const fd = fs.openSync(file, "w+");
  return { fd, sync: () => fdatasync(fd), close: () => fs.closeSync(fd) };
}

/** Runs `fn` and returns its wall time and the process's CPU time meanwhile (ms). */
async function timed(fn: () => Promise<void>): Promise<{ ms: number; cpuMs: number }> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  await fn();
  const ms = performance.now() - start;
  const used = process.cpuUsage(cpu);
  return { ms, cpuMs: (used.user + used.system) / 1000 };
}

/** `count` times `scale`, at least 1. */
function scaled(count: number, scale: number): number {
  return Math.max(1, Math.round(count * scale));
}

/** `seq` (and `mid`, on a slowed device): write + sync, one after another. */
async function seq(open: Opener, dir: string, ops: number): Promise<Measure> {
  const file = await open(path.join(dir, "seq.bin"));
  const run = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i++) {
      fs.writeSync(file.fd, BLOCK);
      await file.sync();
    }
  };
  try {
    await run(Math.min(SEQ_WARMUP, ops));
    return { ops, ...await timed(() => run(ops)) };
  } finally {
    await file.close();
  }
}

/** `concurrent-one-fd`: one write, then `BURST` syncs of its fd at once, per round. */
async function concurrentOneFd(open: Opener, dir: string, scale: number): Promise<Measure> {
  const rounds = scaled(BURST_ROUNDS, scale);
  const file = await open(path.join(dir, "burst.bin"));
  const burst = async (): Promise<void> => {
    fs.writeSync(file.fd, BLOCK);
    await Promise.all(Array.from({ length: BURST }, () => file.sync()));
  };
  try {
    await burst();
    return {
      ops: rounds * BURST,
      ...await timed(async () => {
        for (let round = 0; round < rounds; round++) await burst();
      }),
    };
  } finally {
    await file.close();
  }
}

/** `count` files, each write + sync, all at once, per round (`many-files`, `idle`). */
async function manyFiles(open: Opener, dir: string, count: number, rounds: number): Promise<Measure> {
  const files: SyncedFile[] = [];
  const round = (): Promise<unknown> =>
    Promise.all(files.map(async (file) => {
      fs.writeSync(file.fd, BLOCK);
      await file.sync();
    }));
  try {
    for (let i = 0; i < count; i++) files.push(await open(path.join(dir, `file-${i}.bin`)));
    await round();
    return {
      ops: rounds * count,
      ...await timed(async () => {
        for (let i = 0; i < rounds; i++) await round();
      }),
    };
  } finally {
    for (const file of files) await file.close();
  }
}

/** The workload of each case. */
const WORKLOADS: Readonly<Record<CaseName, (open: Opener, dir: string, scale: number) => Promise<Measure>>> = {
  "seq": (open, dir, scale) => seq(open, dir, scaled(SEQ_OPS, scale)),
  "concurrent-one-fd": concurrentOneFd,
  "many-files": (open, dir, scale) => manyFiles(open, dir, FILES, scaled(FILES_ROUNDS, scale)),
  "mid": (open, dir, scale) => seq(open, dir, scaled(MID_OPS, scale)),
  "idle": (open, dir, scale) => manyFiles(open, dir, IDLE_FILES, scaled(IDLE_ROUNDS, scale)),
};

/** Child process: measures one implementation in every case and prints a row per case. */
async function measure(impl: string, parent: string, scale: number, cases: CaseName[]): Promise<void> {
  let open = nativeOpeners().get(impl);
  if (open === undefined) {
    // Reading target.completion creates the engine with POSIX_AIO_COMPLETION, set by the parent.
    if (target.completion !== impl) {
      throw new Error(`Asked for the ${impl} strategy, the engine runs ${target.completion}`);
    }
    open = aioOpener;
  }
  const dir = fs.mkdtempSync(path.join(parent, `${impl}-`));
  try {
    for (const name of cases) {
      const { ops, ms, cpuMs } = await WORKLOADS[name](open, dir, scale);
      const row: Row = {
        runtime,
        case: name,
        impl,
        ops,
        us_per_op: Math.round(ms * 1000 / ops * 100) / 100,
        cpu_percent: Math.round(cpuMs / ms * 1000) / 10,
      };
      console.log(JSON.stringify(row));
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The command line that runs this script again with the same runtime; with `delayUs`, under
 * strace adding that many microseconds to every fdatasync(2).
 */
function selfCommand(args: string[], delayUs: number): string[] {
  const slow = delayUs === 0 ? [] : [
    "strace",
    ...["-f", "--seccomp-bpf", "-qq", "-o", "/dev/null", "-e", "trace=fdatasync"],
    ...["-e", `inject=fdatasync:delay_exit=${delayUs}`],
  ];
  if (deno !== undefined) {
    // Deno grants access to paths under /dev (the files are on /dev/shm) only with --allow-all.
    return [...slow, deno.execPath(), "run", "--allow-all", script, ...args];
  }
  return [...slow, process.execPath, script, ...args];
}

/** Whether strace can be run (the delayed cases need it). */
function hasStrace(): boolean {
  return spawnSync("strace", ["-V"]).status === 0;
}

/** Runs this script in a child process and returns its stdout; its stderr passes through. */
function runSelf(args: string[], completion: string | undefined, delayUs = 0): Promise<string> {
  const env: Record<string, string | undefined> = { ...process.env, POSIX_AIO_COMPLETION: completion };
  if (completion === undefined) delete env.POSIX_AIO_COMPLETION;
  const [command, ...rest] = selfCommand(args, delayUs);
  return new Promise((resolve, reject) => {
    const child = spawn(command, rest, { env, stdio: ["ignore", "pipe", "inherit"] });
    let stdout = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => stdout += chunk);
    const timer = setTimeout(() => child.kill("SIGKILL"), CHILD_TIMEOUT_MS);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (status, signal) => {
      clearTimeout(timer);
      if (status === 0) resolve(stdout);
      else reject(new Error(`${args.join(" ")}: child exited with ${signal ?? status}\n${stdout}`));
    });
  });
}

/** The median, rounded to 0.01. */
function median(values: number[]): number {
  const sorted = values.toSorted((a, b) => a - b);
  const middle = sorted.length >> 1;
  const value = sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
  return Math.round(value * 100) / 100;
}

/** A positive number from `--name=value` or the environment variable `variable`. */
function option(args: string[], name: string, variable: string, fallback: number): number {
  const prefix = `--${name}=`;
  const raw = args.findLast((arg) => arg.startsWith(prefix))?.slice(prefix.length) ?? process.env[variable];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`Invalid ${name}: expected a positive number, received ${JSON.stringify(raw)}`);
  }
  return value;
}

/** Parent process: runs every implementation in interleaved passes and prints the medians. */
async function main(args: string[]): Promise<void> {
  const scale = option(args, "scale", "BENCH_SCALE", 1);
  const passes = Math.round(option(args, "passes", "BENCH_PASSES", 3));
  const base = fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
  const root = fs.mkdtempSync(path.join(base, "posix-aio-bench-"));
  try {
    const probe = JSON.parse(await runSelf(["--default"], undefined)) as { completion: CompletionName };
    const natives = nativeOpeners();
    const impls = [...natives.keys(), ...COMPLETIONS];
    // One child per implementation runs the undelayed cases; each delayed case needs its own.
    const groups = new Map<number, CaseName[]>();
    for (const [name, delayUs] of CASES) groups.set(delayUs, [...groups.get(delayUs) ?? [], name]);
    if (!hasStrace()) {
      for (const delayUs of groups.keys()) if (delayUs !== 0) groups.delete(delayUs);
      console.error("strace is not installed: the mid and idle cases are skipped");
    }
    const results = new Map<string, Row[]>();
    for (let pass = 0; pass < passes; pass++) {
      // Rotate the order from pass to pass, so that no implementation always runs first.
      const shift = Math.round(pass * impls.length / passes);
      for (const impl of [...impls.slice(shift), ...impls.slice(0, shift)]) {
        const completion = natives.has(impl) ? undefined : impl;
        for (const [delayUs, names] of groups) {
          const child = ["--child", impl, root, String(scale), names.join(",")];
          const stdout = await runSelf(child, completion, delayUs);
          const rows = stdout.trim().split("\n").map((line) => JSON.parse(line) as Row);
          for (const row of rows) {
            const key = `${row.case} ${row.impl}`;
            results.set(key, [...results.get(key) ?? [], row]);
          }
          const summary = rows.map((row) => `${row.case} ${row.us_per_op} us/op ${row.cpu_percent}% CPU`).join(", ");
          console.error(`pass ${pass + 1}/${passes} ${impl}: ${summary}`);
        }
      }
    }
    for (const name of CASES.keys()) {
      for (const impl of impls) {
        const rows = results.get(`${name} ${impl}`) ?? [];
        if (rows.length === 0) continue;
        const row: Row = {
          runtime,
          case: name,
          impl,
          ops: rows[0].ops,
          us_per_op: median(rows.map((each) => each.us_per_op)),
          cpu_percent: median(rows.map((each) => each.cpu_percent)),
        };
        if (impl === probe.completion) row.default = true;
        console.log(JSON.stringify(row));
      }
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

const args = process.argv.slice(2);
if (args[0] === "--child") {
  await measure(args[1], args[2], Number(args[3]), args[4].split(",") as CaseName[]);
} else if (args[0] === "--default") {
  console.log(JSON.stringify({ completion: target.completion }));
} else {
  await main(args);
}
