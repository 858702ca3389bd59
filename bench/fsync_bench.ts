/**
 * Benchmark of `fdatasync`: every completion strategy against the runtime's own path, side by
 * side in one run, on /dev/shm (so the device is fast and the figures are the cost of learning
 * that a sync finished).
 *
 * ```sh
 * deno run --allow-all bench/fsync_bench.ts
 * bun bench/fsync_bench.ts
 * node bench/fsync_bench.ts
 * BENCH_SCALE=0.1 BENCH_PASSES=5 bun bench/fsync_bench.ts   # or --scale=0.1 --passes=5
 * bun bench/fsync_bench.ts --quick        # scale 0.1, 1 pass, own paths and the default only
 * bun bench/fsync_bench.ts --cases=mid,fanout-mid --impls=native,default
 * bun bench/fsync_bench.ts --cases=mid,mid-fuse,fanout-mid,fanout-mid-fuse --impls=native,default,c-sync
 * bun bench/fsync_bench.ts --cases=seq-disk,mid --impls=native,default,c-aio,c-relay --passes=5
 * ```
 *
 * A full run (scale 1, at least 3 passes, every case and implementation) also writes
 * `bench/results-<runtime>.json` and redraws `bench/results.svg` from the last full run of each
 * runtime: `npm run bench` (Deno, then Bun, then Node) leaves a chart of the three. Quick or partial runs write
 * nothing; `--chart` only redraws the chart from the JSON files. The `-disk` cases run in
 * `BENCH_DISK_DIR`, else in the first of the temporary folder, the home folder and the current
 * folder that `stat -f` does not call tmpfs or ramfs.
 *
 * Cases, all writing 4 KiB blocks with the same synchronous `node:fs` `writeSync`, so that only
 * the sync differs:
 * - `seq`: write + fdatasync, one after another (10,000 times).
 * - `seq-disk`: `seq` on the machine's disk (500 times).
 * - `concurrent-one-fd`: one write, then 1,000 fdatasync at once on its fd (50 rounds, after 10
 *   untimed: the steady state, not the JIT compilers' first rounds).
 * - `many-files`: 64 files, each write + fdatasync, all 64 at once (20 rounds).
 * - `many-files-disk`: `many-files` on the machine's disk (10 rounds).
 * - `mid` (needs strace): `seq` on a device made slow with strace, 500 us added to every
 *   fdatasync(2) (500 times): latency on a mid-latency device and CPU spent waiting.
 * - `fanout-mid` (needs strace): `many-files` on the same slowed device (20 rounds): where a
 *   wide pool of threads should win.
 * - `idle` (needs strace): 32 files synced at once, each sync taking 1 s: the CPU a process
 *   spends while its syncs wait on a slow device. `cpu_percent` covers the whole round (the 32
 *   writes and syncs submitted and settled, too); `waiting_cpu_percent` only the part from
 *   100 ms to 900 ms after the round started, when every sync waits: what waiting alone costs.
 * - `mid-fuse`, `fanout-mid-fuse` (need FUSE): `mid` and `fanout-mid` with the same delay on a
 *   device slow by itself, no strace: a folder on a FUSE mount of
 *   `bench/slow_fs.c`. strace stops the traced process in the tracer at every thread creation
 *   and every traced syscall, which bounds what a pool of threads can gain; here the process
 *   runs untraced and the FUSE daemon sleeps the delay in its fsync handler, then syncs its
 *   backing file on /dev/shm (the FUSE round trips of each write and sync are part of the
 *   device, as the floors on it show).
 *
 * The FUSE file system is a passthrough written against libfuse3 (3.12 or later), compiled with
 * gcc when the run starts. The run mounts one per delay in its folder on /dev/shm, its daemon
 * in the foreground as a child (multithreaded, up to 256 threads, idle ones kept; no writeback
 * cache, so each write reaches the daemon before it returns), and unmounts it at the end
 * (`fusermount3 -u`; the daemon also unmounts itself if the run dies). Without /dev/fuse
 * access (root, or a user /dev/fuse lets in), gcc or libfuse3-dev (Debian: `apt-get install
 * fuse3 libfuse3-dev`, which the run does itself as root), the FUSE cases are skipped with one
 * line saying why.
 *
 * Every row carries `cpu_percent`: CPU time of the process (user + system) over wall time, in
 * percent of one core, while the case ran (not strace's nor the FUSE daemon's).
 *
 * `impl` is `native` for the runtime's own path (Deno: `Deno.FsFile.syncData()`; Bun and Node:
 * `node:fs` `fdatasync` with a callback, and `native-promises` for `FileHandle.datasync()`, both
 * on libuv's pool of 4 threads), the name
 * of a completion strategy, or a floor in C without any runtime (`bench/floor.c`, compiled with
 * gcc when the run starts, skipped without gcc): `c-sync` calls fdatasync(2) directly (in the
 * many-files cases on one thread per file, all at once), `c-aio` calls `aio_fsync` and waits in
 * `aio_suspend` (glibc's pool set up as this module sets it), `c-relay` is `c-aio` with the wait
 * on a second thread that wakes the main one, asleep in `epoll_wait`, through an eventfd: the
 * one hand-off more per completion that any binding whose JavaScript thread must not block pays,
 * without any runtime. The floors show what the device, strace's delay (or the FUSE device), the
 * C library and that hand-off cost by themselves; in a full run they run in the first pass only
 * (C varies less than the runtimes), in every pass when `--impls` names them, and
 * `concurrent-one-fd` and `idle` (32 waits of 1 s) have none. The strategy is chosen once per
 * process, so every implementation runs in a child process of the same runtime; passes are
 * interleaved (the machine drifts between fast and slow states) and the median of the passes
 * is printed, one JSON line per case and implementation. The rows of the default strategy carry `"default": true`.
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
type Runtime = "deno" | "bun" | "node";

/** The workloads. */
type CaseName =
  | "seq"
  | "seq-disk"
  | "concurrent-one-fd"
  | "many-files"
  | "many-files-disk"
  | "mid"
  | "mid-fuse"
  | "fanout-mid"
  | "fanout-mid-fuse"
  | "idle";

/** One measurement, as printed. */
interface Row {
  runtime: Runtime;
  case: CaseName;
  impl: string;
  ops: number;
  us_per_op: number;
  cpu_percent: number;
  /** `idle` only: CPU share while every sync waited, nothing being submitted or settled. */
  waiting_cpu_percent?: number;
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
  /** `idle`: wall and CPU time while every sync of a round waited (see `IDLE_WAITING`). */
  waitMs?: number;
  waitCpuMs?: number;
}

const deno = (globalThis as { Bun?: unknown }).Bun === undefined
  ? (globalThis as { Deno?: typeof Deno }).Deno
  : undefined;

const runtime: Runtime = deno !== undefined
  ? "deno"
  : (globalThis as { Bun?: unknown }).Bun !== undefined
  ? "bun"
  : "node";

const script: string = fileURLToPath(import.meta.url);

/**
 * The cases, each with the microseconds added to every fdatasync(2) while it runs: by strace,
 * or for the `FUSE_CASES` by the FUSE file system of `bench/slow_fs.c`.
 */
const CASES: ReadonlyMap<CaseName, number> = new Map<CaseName, number>([
  ["seq", 0],
  ["seq-disk", 0],
  ["concurrent-one-fd", 0],
  ["many-files", 0],
  ["many-files-disk", 0],
  ["mid", 500],
  ["mid-fuse", 500],
  ["fanout-mid", 500],
  ["fanout-mid-fuse", 500],
  ["idle", 1_000_000],
]);

/** The cases run on a slow FUSE mount rather than under strace, each with the case it repeats. */
const FUSE_CASES: ReadonlyMap<CaseName, CaseName> = new Map<CaseName, CaseName>([
  ["mid-fuse", "mid"],
  ["fanout-mid-fuse", "fanout-mid"],
]);

/** The microseconds strace adds to every fdatasync(2) in case `name` (0: no strace). */
function straceDelay(name: CaseName): number {
  return FUSE_CASES.has(name) ? 0 : CASES.get(name)!;
}

/** The cases that run on the machine's disk rather than on tmpfs. */
const DISK_CASES: ReadonlySet<CaseName> = new Set<CaseName>(["seq-disk", "many-files-disk"]);

/** Bytes written before each sync. */
const BLOCK = new Uint8Array(4096).fill(0x61);
/** `seq`: operations at scale 1, and untimed ones run first. */
const SEQ_OPS = 10_000;
const SEQ_WARMUP = 500;
/** `concurrent-one-fd`: syncs at once, rounds at scale 1, and untimed rounds run first. */
const BURST = 1000;
const BURST_ROUNDS = 50;
const BURST_WARMUP = 10;
/** `many-files`: files, and rounds at scale 1 (one more runs untimed first). */
const FILES = 64;
const FILES_ROUNDS = 20;
/** `seq-disk`: operations at scale 1. */
const SEQ_DISK_OPS = 500;
/** `many-files-disk`: rounds at scale 1. */
const FILES_DISK_ROUNDS = 10;
/** `mid`: operations at scale 1. */
const MID_OPS = 500;
/** `fanout-mid`: rounds of `FILES` files at scale 1. */
const FANOUT_ROUNDS = 20;
/**
 * `idle`: the part of each round, in ms from its start, in which every sync waits (they take
 * 1 s): the CPU spent then is what waiting alone costs.
 */
const IDLE_WAITING = { from: 100, to: 900 };
/** `idle`: files synced at once, and rounds at scale 1. */
const IDLE_FILES = 32;
const IDLE_ROUNDS = 1;
/** The floors in C, by implementation name: `bench/floor.c`'s first argument. */
const FLOORS: ReadonlyMap<string, string> = new Map([["c-sync", "sync"], ["c-aio", "aio"], ["c-relay", "relay"]]);

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
    for (let round = 0; round < BURST_WARMUP; round++) await burst();
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

/**
 * `count` files, each write + sync, all at once, per round (`many-files`, `idle`). With
 * `waiting`, the CPU time between those two points of each timed round (ms from its start) is
 * measured too.
 */
async function manyFiles(
  open: Opener,
  dir: string,
  count: number,
  rounds: number,
  waiting?: { from: number; to: number },
): Promise<Measure> {
  const files: SyncedFile[] = [];
  const round = (): Promise<unknown> =>
    Promise.all(files.map(async (file) => {
      fs.writeSync(file.fd, BLOCK);
      await file.sync();
    }));
  const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
  let waitMs = 0;
  let waitCpuMs = 0;
  const timedRound = async (): Promise<void> => {
    const done = round();
    if (waiting !== undefined) {
      await sleep(waiting.from);
      const cpu = process.cpuUsage();
      const start = performance.now();
      await sleep(waiting.to - waiting.from);
      const used = process.cpuUsage(cpu);
      waitMs += performance.now() - start;
      waitCpuMs += (used.user + used.system) / 1000;
    }
    await done;
  };
  try {
    for (let i = 0; i < count; i++) files.push(await open(path.join(dir, `file-${i}.bin`)));
    await round();
    const measured = await timed(async () => {
      for (let i = 0; i < rounds; i++) await timedRound();
    });
    return { ops: rounds * count, ...measured, ...(waiting === undefined ? {} : { waitMs, waitCpuMs }) };
  } finally {
    for (const file of files) await file.close();
  }
}

/** The row of one measurement: µs per operation and CPU share, rounded as printed. */
function toRow(name: CaseName, impl: string, { ops, ms, cpuMs, waitMs, waitCpuMs }: Measure): Row {
  return {
    runtime,
    case: name,
    impl,
    ops,
    us_per_op: Math.round(ms * 1000 / ops * 100) / 100,
    cpu_percent: Math.round(cpuMs / ms * 1000) / 10,
    ...(waitMs === undefined || waitCpuMs === undefined
      ? {}
      : { waiting_cpu_percent: Math.round(waitCpuMs / waitMs * 10000) / 100 }),
  };
}

/** The workload of each case. */
const WORKLOADS: Readonly<Record<CaseName, (open: Opener, dir: string, scale: number) => Promise<Measure>>> = {
  "seq": (open, dir, scale) => seq(open, dir, scaled(SEQ_OPS, scale)),
  "concurrent-one-fd": concurrentOneFd,
  "many-files": (open, dir, scale) => manyFiles(open, dir, FILES, scaled(FILES_ROUNDS, scale)),
  "seq-disk": (open, dir, scale) => seq(open, dir, scaled(SEQ_DISK_OPS, scale)),
  "many-files-disk": (open, dir, scale) => manyFiles(open, dir, FILES, scaled(FILES_DISK_ROUNDS, scale)),
  "mid": (open, dir, scale) => seq(open, dir, scaled(MID_OPS, scale)),
  "fanout-mid": (open, dir, scale) => manyFiles(open, dir, FILES, scaled(FANOUT_ROUNDS, scale)),
  "idle": (open, dir, scale) => manyFiles(open, dir, IDLE_FILES, scaled(IDLE_ROUNDS, scale), IDLE_WAITING),
  "mid-fuse": (open, dir, scale) => seq(open, dir, scaled(MID_OPS, scale)),
  "fanout-mid-fuse": (open, dir, scale) => manyFiles(open, dir, FILES, scaled(FANOUT_ROUNDS, scale)),
};

/** Child process: measures one implementation in every case and prints a row per case. */
async function measure(
  impl: string,
  parent: string,
  diskParent: string,
  scale: number,
  cases: CaseName[],
): Promise<void> {
  let open = nativeOpeners().get(impl);
  if (open === undefined) {
    // Reading target.completion creates the engine with POSIX_AIO_COMPLETION, set by the parent.
    if (target.completion !== impl) {
      throw new Error(`Asked for the ${impl} strategy, the engine runs ${target.completion}`);
    }
    open = aioOpener;
  }
  const dir = fs.mkdtempSync(path.join(parent, `${impl}-`));
  const diskDir = fs.mkdtempSync(path.join(diskParent, `${impl}-`));
  try {
    for (const name of cases) {
      const measured = await WORKLOADS[name](open, DISK_CASES.has(name) ? diskDir : dir, scale);
      console.log(JSON.stringify(toRow(name, impl, measured)));
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(diskDir, { recursive: true, force: true });
  }
}

/** What runs a command under strace adding `delayUs` microseconds to every fdatasync(2) (none for 0). */
function straced(delayUs: number): string[] {
  if (delayUs === 0) return [];
  return [
    "strace",
    ...["-f", "--seccomp-bpf", "-qq", "-o", "/dev/null", "-e", "trace=fdatasync"],
    ...["-e", `inject=fdatasync:delay_exit=${delayUs}`],
  ];
}

/**
 * The command line that runs this script again with the same runtime; with `delayUs`, under
 * strace adding that many microseconds to every fdatasync(2).
 */
function selfCommand(args: string[], delayUs: number): string[] {
  const slow = straced(delayUs);
  if (deno !== undefined) {
    // Deno grants access to paths under /dev (the files are on /dev/shm) only with --allow-all.
    return [...slow, deno.execPath(), "run", "--allow-all", script, ...args];
  }
  if (runtime === "node") return [...slow, process.execPath, "--disable-warning=ExperimentalWarning", script, ...args];
  return [...slow, process.execPath, script, ...args];
}

/**
 * Compiles `bench/floor.c` into `dir` with gcc; returns the program's path, or undefined (and
 * says why) if it cannot be built here.
 */
function buildFloor(dir: string): string | undefined {
  const program = path.join(dir, "floor");
  const source = path.join(path.dirname(script), "floor.c");
  const built = spawnSync("gcc", ["-O2", "-pthread", "-o", program, source, "-lrt"], { encoding: "utf8" });
  if (built.status === 0) return program;
  const why = built.error !== undefined ? "gcc is not installed" : built.stderr.trim().split("\n")[0];
  console.error(`the C floors (${[...FLOORS.keys()].join(", ")}) are skipped: ${why}`);
  return undefined;
}

/** The arguments of `bench/floor.c` after its mode for case `name`, or undefined if it has no floor. */
function floorArgs(name: CaseName, dir: string, diskDir: string, scale: number): string[] | undefined {
  switch (name) {
    case "seq":
    case "mid":
      return ["seq", dir, "1", String(scaled(name === "seq" ? SEQ_OPS : MID_OPS, scale))];
    case "seq-disk":
      return ["seq", diskDir, "1", String(scaled(SEQ_DISK_OPS, scale))];
    case "many-files":
      return ["many", dir, String(FILES), String(scaled(FILES_ROUNDS, scale))];
    case "many-files-disk":
      return ["many", diskDir, String(FILES), String(scaled(FILES_DISK_ROUNDS, scale))];
    case "fanout-mid":
      return ["many", dir, String(FILES), String(scaled(FANOUT_ROUNDS, scale))];
    case "mid-fuse":
    case "fanout-mid-fuse":
      return floorArgs(FUSE_CASES.get(name)!, dir, diskDir, scale);
    case "concurrent-one-fd":
    case "idle":
      return undefined;
  }
}

/**
 * Runs a C floor in case `name` in a new folder in `root` (under strace for a case strace
 * delays); returns its row.
 */
async function runFloor(
  program: string,
  impl: string,
  name: CaseName,
  root: string,
  diskRoot: string,
  scale: number,
): Promise<Row | undefined> {
  const dir = fs.mkdtempSync(path.join(root, `${impl}-`));
  const diskDir = fs.mkdtempSync(path.join(diskRoot, `${impl}-`));
  try {
    const rest = floorArgs(name, dir, diskDir, scale);
    if (rest === undefined) return undefined;
    const stdout = await runCommand([...straced(straceDelay(name)), program, FLOORS.get(impl)!, ...rest]);
    return toRow(name, impl, JSON.parse(stdout) as Measure);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(diskDir, { recursive: true, force: true });
  }
}

/** A FUSE file system of `bench/slow_fs.c`, mounted; `stop` unmounts it and ends its daemon. */
interface SlowMount {
  readonly dir: string;
  stop(): Promise<void>;
}

/** A mounted FUSE file system takes longer than this to come up or go away: it is given up (ms). */
const MOUNT_TIMEOUT_MS = 10_000;

/**
 * Compiles `bench/slow_fs.c` into `dir` with gcc against libfuse3; returns the program's path,
 * or why it cannot be built here.
 */
function buildSlowFs(dir: string): { program: string } | { why: string } {
  if (!fs.existsSync("/dev/fuse")) return { why: "/dev/fuse does not exist" };
  const program = path.join(dir, "slow_fs");
  const source = path.join(path.dirname(script), "slow_fs.c");
  if (!fs.existsSync("/usr/include/fuse3/fuse.h")) installFuse();
  const config = spawnSync("pkg-config", ["--cflags", "--libs", "fuse3"], { encoding: "utf8" });
  const flags = config.status === 0
    ? config.stdout.trim().split(/\s+/)
    : ["-I/usr/include/fuse3", "-lfuse3", "-lpthread"];
  const built = spawnSync("gcc", ["-O2", "-o", program, source, ...flags], { encoding: "utf8" });
  if (built.status === 0) return { program };
  if (built.error !== undefined) return { why: "gcc is not installed" };
  return { why: `bench/slow_fs.c does not build (libfuse3-dev?): ${built.stderr.trim().split("\n")[0]}` };
}

/**
 * Installs Debian's `fuse3` and `libfuse3-dev` with apt-get when this process is root and
 * apt-get exists (a fresh machine of this project's kind has neither package); else nothing.
 */
function installFuse(): void {
  if (process.getuid?.() !== 0 || spawnSync("apt-get", ["--version"], { stdio: "ignore" }).status !== 0) return;
  console.error("installing fuse3 and libfuse3-dev with apt-get for the FUSE cases");
  const install = (): number | null =>
    spawnSync("apt-get", ["install", "-y", "-qq", "fuse3", "libfuse3-dev"], {
      stdio: "ignore",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    }).status;
  if (install() === 0) return;
  spawnSync("apt-get", ["update", "-qq"], { stdio: "ignore" });
  install();
}

/** Whether `dir` is a mount point, as /proc/self/mountinfo lists them. */
function isMountPoint(dir: string): boolean {
  const lines = fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n");
  return lines.some((line) => line.split(" ")[4] === dir);
}

/** Unmounts `dir` with fusermount3 (lazily if it is busy), else umount. */
function unmount(dir: string): void {
  for (const command of [["fusermount3", "-u"], ["fusermount3", "-u", "-z"], ["umount", "-l"]]) {
    if (!isMountPoint(dir)) return;
    spawnSync(command[0], [...command.slice(1), dir], { stdio: "ignore" });
  }
  if (isMountPoint(dir)) console.error(`${dir} could not be unmounted`);
}

/**
 * Mounts `bench/slow_fs.c` (built as `program`) on a new folder in `root`, passing through to
 * another new folder there, every fsync/fdatasync taking `delayUs` microseconds more. The
 * daemon runs in the foreground as a child of this process and ends when its stdin closes.
 */
function mountSlowFs(program: string, root: string, delayUs: number): Promise<SlowMount> {
  const backing = fs.mkdtempSync(path.join(root, `fuse-${delayUs}us-backing-`));
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(root, `fuse-${delayUs}us-`)));
  const daemon = spawn(program, [backing, dir, String(delayUs)], { stdio: ["pipe", "pipe", "pipe"] });
  let settled = false;
  // Until it is mounted, the daemon's stderr is kept to say why it could not be; then it passes through.
  let stderr = "";
  daemon.stderr.setEncoding("utf8");
  daemon.stderr.on("data", (chunk: string) => settled ? process.stderr.write(chunk) : stderr += chunk);
  const exited = new Promise<void>((resolve) => {
    daemon.on("close", () => resolve());
    daemon.on("error", () => resolve());
  });
  const stop = async (): Promise<void> => {
    unmount(dir);
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.stdin.end();
    const timer = setTimeout(() => daemon.kill("SIGKILL"), MOUNT_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
    unmount(dir);
  };
  return new Promise<SlowMount>((resolve, reject) => {
    let stdout = "";
    const fail = async (why: string): Promise<void> => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      await stop();
      reject(new Error(why));
    };
    const timer = setTimeout(() => fail(`slow_fs did not mount ${dir} in ${MOUNT_TIMEOUT_MS} ms`), MOUNT_TIMEOUT_MS);
    daemon.on("error", (error) => fail(`slow_fs could not run: ${error.message}`));
    daemon.on("close", (status, signal) => {
      const why = stderr.trim().split("\n")[0] || `exited with ${signal ?? status}`;
      fail(`slow_fs could not mount ${dir}: ${why}`);
    });
    daemon.stdout.setEncoding("utf8");
    daemon.stdout.on("data", (chunk: string) => {
      stdout += chunk;
      if (settled || !stdout.includes("mounted\n")) return;
      settled = true;
      clearTimeout(timer);
      resolve({ dir, stop });
    });
  });
}

/** Whether strace can be run (the delayed cases need it). */
function hasStrace(): boolean {
  return spawnSync("strace", ["-V"]).status === 0;
}

/** Runs this script in a child process and returns its stdout; its stderr passes through. */
function runSelf(args: string[], completion: string | undefined, delayUs = 0): Promise<string> {
  const env: Record<string, string | undefined> = { ...process.env, POSIX_AIO_COMPLETION: completion };
  if (completion === undefined) delete env.POSIX_AIO_COMPLETION;
  return runCommand(selfCommand(args, delayUs), env);
}

/** Runs a command and returns its stdout; its stderr passes through; fails unless it exits with 0. */
function runCommand(
  [command, ...rest]: string[],
  env: Record<string, string | undefined> = process.env,
): Promise<string> {
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
      else reject(new Error(`${[command, ...rest].join(" ")}: exited with ${signal ?? status}\n${stdout}`));
    });
  });
}

/** One pass of one implementation, as the progress lines print it. */
function summary(rows: Row[]): string {
  return rows.map((row) => `${row.case} ${row.us_per_op} us/op ${row.cpu_percent}% CPU`).join(", ");
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

/** A comma-separated list from `--name=a,b`, or undefined. */
function listOption(args: string[], name: string): string[] | undefined {
  const prefix = `--${name}=`;
  return args.findLast((arg) => arg.startsWith(prefix))?.slice(prefix.length).split(",").filter((item) => item !== "");
}

/** The file system type of `dir`, as `stat -f` names it ("tmpfs", "ext2/ext3", ...). */
function fsType(dir: string): string {
  const out = spawnSync("stat", ["-f", "-c", "%T", dir], { encoding: "utf8" });
  return out.status === 0 ? out.stdout.trim() : "unknown";
}

/** File systems that keep files in memory: not a disk. */
const MEMORY_FS: ReadonlySet<string> = new Set(["tmpfs", "ramfs"]);

/**
 * A folder on the machine's disk for the `-disk` cases: `BENCH_DISK_DIR`, else the first of
 * the temporary folder, the home folder and the current folder that `stat -f` does not report
 * as tmpfs or ramfs.
 */
function diskBase(): { dir: string; type: string } | undefined {
  const wanted = process.env.BENCH_DISK_DIR;
  const candidates = wanted !== undefined && wanted !== "" ? [wanted] : [os.tmpdir(), os.homedir(), process.cwd()];
  for (const dir of candidates) {
    const type = fsType(dir);
    if (!MEMORY_FS.has(type) && type !== "unknown") return { dir, type };
  }
  return undefined;
}

/** What a full run leaves in `bench/results-<runtime>.json`, for the chart. */
interface Results {
  runtime: Runtime;
  version: string;
  date: string;
  passes: number;
  scale: number;
  cpus: number;
  disk: string;
  rows: Row[];
}

/** Where the results of full runs and the chart go. */
const OUT_DIR: string = path.dirname(script);

/** The runtime's version, as the chart labels it. */
function runtimeVersion(): string {
  if (deno !== undefined) return `Deno ${deno.version.deno}`;
  if (runtime === "node") return `Node.js ${process.versions.node}`;
  return `Bun ${(globalThis as unknown as { Bun: { version: string } }).Bun.version}`;
}

/** Parent process: runs every implementation in interleaved passes and prints the medians. */
async function main(args: string[]): Promise<void> {
  const quick = args.includes("--quick");
  const scale = option(args, "scale", "BENCH_SCALE", quick ? 0.1 : 1);
  const passes = Math.round(option(args, "passes", "BENCH_PASSES", quick ? 1 : 3));
  const onlyCases = listOption(args, "cases");
  const onlyImpls = listOption(args, "impls");
  const base = fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
  const disk = diskBase();
  const root = fs.mkdtempSync(path.join(base, "posix-aio-bench-"));
  const diskRoot = disk === undefined ? root : fs.mkdtempSync(path.join(disk.dir, "posix-aio-bench-"));
  const mounts = new Map<number, SlowMount>();
  try {
    const probe = JSON.parse(await runSelf(["--default"], undefined)) as { completion: CompletionName };
    const natives = nativeOpeners();
    // --quick measures the runtime's own paths and the default strategy only, unless --impls says.
    const chosen = onlyImpls ?? (quick ? ["native", "native-promises", "default"] : undefined);
    const wanted = (impl: string): boolean =>
      chosen === undefined || chosen.includes(impl) || (chosen.includes("default") && impl === probe.completion);
    const impls = [...natives.keys(), ...COMPLETIONS].filter(wanted);
    const floors = [...FLOORS.keys()].filter(wanted);
    const floor = floors.length > 0 ? buildFloor(root) : undefined;
    const cases = [...CASES.keys()]
      .filter((name) => onlyCases === undefined || onlyCases.includes(name))
      .filter((name) => disk !== undefined || !DISK_CASES.has(name));
    if (disk === undefined) console.error("no folder outside tmpfs was found: the -disk cases are skipped");
    else console.error(`disk cases in ${disk.dir} (${disk.type})`);
    // The FUSE cases run in a folder on a mount of bench/slow_fs.c, one mount per delay.
    const fuseCases = cases.filter((name) => FUSE_CASES.has(name));
    if (fuseCases.length > 0) {
      const built = buildSlowFs(root);
      try {
        if ("why" in built) throw new Error(built.why);
        for (const delayUs of new Set(fuseCases.map((name) => CASES.get(name)!))) {
          mounts.set(delayUs, await mountSlowFs(built.program, root, delayUs));
        }
        console.error(`FUSE cases on bench/slow_fs.c in ${root} (fsync ${[...mounts.keys()].join(", ")} us slower)`);
      } catch (error) {
        for (const mount of mounts.values()) await mount.stop();
        mounts.clear();
        console.error(`the FUSE cases (${fuseCases.join(", ")}) are skipped: ${(error as Error).message}`);
      }
    }
    // One child per implementation runs the undelayed cases; each device and delay needs its own.
    const groups = new Map<string, { delayUs: number; parent: string; names: CaseName[] }>();
    const strace = hasStrace();
    for (const name of cases) {
      const delayUs = straceDelay(name);
      const mount = FUSE_CASES.has(name) ? mounts.get(CASES.get(name)!) : undefined;
      if (FUSE_CASES.has(name) && mount === undefined) continue;
      if (delayUs !== 0 && !strace) continue;
      const key = mount === undefined ? `strace ${delayUs}` : `fuse ${CASES.get(name)}`;
      const group = groups.get(key) ?? { delayUs, parent: mount?.dir ?? root, names: [] };
      group.names.push(name);
      groups.set(key, group);
    }
    if (!strace && cases.some((name) => straceDelay(name) !== 0)) {
      console.error("strace is not installed: the mid, fanout-mid and idle cases are skipped");
    }
    const results = new Map<string, Row[]>();
    for (let pass = 0; pass < passes; pass++) {
      // Rotate the order from pass to pass, so that no implementation always runs first.
      const shift = Math.round(pass * impls.length / passes);
      for (const impl of [...impls.slice(shift), ...impls.slice(0, shift)]) {
        const completion = natives.has(impl) ? undefined : impl;
        for (const { delayUs, parent, names } of groups.values()) {
          const child = ["--child", impl, parent, diskRoot, String(scale), names.join(",")];
          const stdout = await runSelf(child, completion, delayUs);
          const rows = stdout.trim().split("\n").map((line) => JSON.parse(line) as Row);
          for (const row of rows) {
            const key = `${row.case} ${row.impl}`;
            results.set(key, [...results.get(key) ?? [], row]);
          }
          console.error(`pass ${pass + 1}/${passes} ${impl}: ${summary(rows)}`);
        }
      }
      // A full run measures the floors once; a run that names them (--impls) in every pass.
      for (const impl of floor === undefined || (pass > 0 && onlyImpls === undefined) ? [] : floors) {
        const rows: Row[] = [];
        for (const { parent, names } of groups.values()) {
          for (const name of names) {
            const row = await runFloor(floor!, impl, name, parent, diskRoot, scale);
            if (row === undefined) continue;
            rows.push(row);
            results.set(`${name} ${impl}`, [...results.get(`${name} ${impl}`) ?? [], row]);
          }
        }
        if (rows.length > 0) console.error(`pass ${pass + 1}/${passes} ${impl}: ${summary(rows)}`);
      }
    }
    const medians: Row[] = [];
    for (const name of cases) {
      for (const impl of [...impls, ...floors]) {
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
        const waiting = rows.flatMap((each) => each.waiting_cpu_percent ?? []);
        if (waiting.length > 0) row.waiting_cpu_percent = median(waiting);
        if (impl === probe.completion) row.default = true;
        medians.push(row);
        console.log(JSON.stringify(row));
      }
    }
    for (const line of ratios(medians)) console.error(line);
    // Only full runs of every case and implementation feed the committed chart.
    if (!quick && scale === 1 && passes >= 3 && onlyCases === undefined && onlyImpls === undefined) {
      const results: Results = {
        runtime,
        version: runtimeVersion(),
        date: new Date().toISOString(),
        passes,
        scale,
        cpus: os.cpus().length,
        disk: disk === undefined ? "none" : disk.type,
        rows: medians,
      };
      fs.writeFileSync(path.join(OUT_DIR, `results-${runtime}.json`), JSON.stringify(results, null, 2) + "\n");
      writeChart();
    }
  } finally {
    for (const mount of mounts.values()) await mount.stop();
    fs.rmSync(root, { recursive: true, force: true });
    if (diskRoot !== root) fs.rmSync(diskRoot, { recursive: true, force: true });
  }
}

/** The runtime's best own row of a case (Bun and Node have two own paths). */
function bestOwn(rows: Row[], name: CaseName): Row | undefined {
  return rows.filter((row) => row.case === name && row.impl.startsWith("native"))
    .toSorted((a, b) => a.us_per_op - b.us_per_op)[0];
}

/**
 * One line per case: the default against the runtime's best own path, and against each C floor
 * measured in the case (the default's time over the floor's).
 */
function ratios(rows: Row[]): string[] {
  const lines: string[] = [];
  for (const name of CASES.keys()) {
    const own = bestOwn(rows, name);
    const ours = rows.find((row) => row.case === name && row.default === true);
    if (own === undefined || ours === undefined) continue;
    const ratio = (ours.us_per_op / own.us_per_op).toFixed(2);
    const floors = [...FLOORS.keys()].flatMap((impl) => {
      const floor = rows.find((row) => row.case === name && row.impl === impl);
      return floor === undefined ? [] : [`${impl} ${(ours.us_per_op / floor.us_per_op).toFixed(2)}x`];
    });
    const cpu = (row: Row): string =>
      `${row.cpu_percent}% CPU`
      + (row.waiting_cpu_percent === undefined ? "" : `, ${row.waiting_cpu_percent}% waiting`);
    lines.push(
      `${runtime} ${name}: default ${ours.us_per_op} us/op (${cpu(ours)}), `
        + `${own.impl} ${own.us_per_op} us/op (${cpu(own)}): ${ratio}x`
        + (floors.length > 0 ? `; default over ${floors.join(", ")}` : ""),
    );
  }
  return lines;
}

/** Escapes text for SVG. */
function xml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/** A number as the chart prints it: 3 significant digits, thousands grouped. */
function figure(value: number): string {
  if (value >= 100) return Math.round(value).toLocaleString("en-US");
  return value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

/**
 * Writes `bench/results.svg` from the `results-*.json` of the last full run of each runtime:
 * per case, µs per operation (log scale) of the runtime's best own path and of the default
 * strategy, side by side for each runtime, with the ratio default / own under each pair.
 */
function writeChart(): void {
  const runs: Results[] = [];
  for (const name of ["deno", "bun", "node"] as const) {
    const file = path.join(OUT_DIR, `results-${name}.json`);
    if (fs.existsSync(file)) runs.push(JSON.parse(fs.readFileSync(file, "utf8")) as Results);
  }
  const cases = [...CASES.keys()].filter((name) => runs.some((run) => run.rows.some((row) => row.case === name)));
  const bars: { run: Results; kind: "own" | "default" }[] = runs.flatMap((run) => [
    { run, kind: "own" as const },
    { run, kind: "default" as const },
  ]);
  const colors: Record<string, string> = {
    "deno own": "#9bb8d3",
    "deno default": "#1f5f99",
    "bun own": "#f2c58f",
    "bun default": "#c2620a",
    "node own": "#a9d3a0",
    "node default": "#2e7d32",
  };
  const names: Record<Runtime, string> = { deno: "Deno", bun: "Bun", node: "Node" };
  const left = 64, top = 92, plotHeight = 300, barWidth = 22, gap = 3;
  const groupWidth = Math.max(118, bars.length * (barWidth + gap) + 18);
  const width = left + cases.length * groupWidth + 20;
  const height = top + plotHeight + 70 + runs.length * 26;
  const values = runs.flatMap((run) => run.rows.map((row) => row.us_per_op)).filter((value) => value > 0);
  const low = Math.floor(Math.log10(Math.min(...values)));
  const high = Math.ceil(Math.log10(Math.max(...values)));
  const y = (value: number): number => top + plotHeight - (Math.log10(value) - low) / (high - low) * plotHeight;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" `
      + `font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${left}" y="20" font-size="15" font-weight="bold">fdatasync: µs per operation (log scale), `
      + `the runtime's best own path vs @posix/aio's default</text>`,
    `<text x="${left}" y="38" fill="#555">${
      xml(
        runs.map((run) =>
          `${run.version}: ${
            run.date.slice(0, 16).replace("T", " ")
          } UTC, ${run.passes} passes, medians, ${run.cpus} CPUs`
        ).join("; "),
      )
    }</text>`,
    `<text x="${left}" y="54" fill="#555">Under each case: default / own per runtime (below 1: the default is faster), `
      + `and on slowed devices the CPU share of one core, default / own.</text>`,
  );
  let legend = left;
  for (const { run, kind } of bars) {
    const key = `${run.runtime} ${kind}`;
    out.push(`<rect x="${legend}" y="64" width="12" height="12" fill="${colors[key]}"/>`);
    const label = `${names[run.runtime]} ${kind === "own" ? "own (best)" : "default"}`;
    out.push(`<text x="${legend + 16}" y="74">${label}</text>`);
    legend += 130;
  }
  for (let exponent = low; exponent <= high; exponent++) {
    const at = y(10 ** exponent);
    out.push(`<line x1="${left}" x2="${width - 20}" y1="${at}" y2="${at}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${at + 4}" text-anchor="end">${figure(10 ** exponent)}</text>`);
  }
  cases.forEach((name, index) => {
    const x0 = left + index * groupWidth + (groupWidth - bars.length * (barWidth + gap)) / 2;
    bars.forEach(({ run, kind }, slot) => {
      const row = kind === "own"
        ? bestOwn(run.rows, name)
        : run.rows.find((each) => each.case === name && each.default === true);
      if (row === undefined) return;
      const x = x0 + slot * (barWidth + gap);
      const at = y(row.us_per_op);
      out.push(
        `<rect x="${x}" y="${at.toFixed(1)}" width="${barWidth}" height="${(top + plotHeight - at).toFixed(1)}" `
          + `fill="${colors[`${run.runtime} ${kind}`]}"><title>${
            xml(`${run.runtime} ${row.impl}: ${row.us_per_op} µs/op, ${row.cpu_percent}% CPU`)
          }</title></rect>`,
      );
      const tx = x + barWidth / 2 + 3, ty = at - 3;
      out.push(
        `<text x="${tx}" y="${ty}" font-size="9" transform="rotate(-90 ${tx} ${ty})">${figure(row.us_per_op)}</text>`,
      );
    });
    const cx = left + index * groupWidth + groupWidth / 2;
    out.push(`<text x="${cx}" y="${top + plotHeight + 16}" text-anchor="middle" font-weight="bold">${name}</text>`);
    runs.forEach((run, line) => {
      const own = bestOwn(run.rows, name);
      const ours = run.rows.find((each) => each.case === name && each.default === true);
      if (own === undefined || ours === undefined) return;
      const ratio = ours.us_per_op / own.us_per_op;
      const at = top + plotHeight + 32 + line * 26;
      out.push(
        `<text x="${cx}" y="${at}" text-anchor="middle" `
          + `fill="${ratio <= 1 ? "#1a7f37" : "#b42318"}">${names[run.runtime]} ${ratio.toFixed(2)}x</text>`,
      );
      if (CASES.get(name) !== 0) {
        out.push(
          `<text x="${cx}" y="${at + 11}" text-anchor="middle" font-size="9" fill="#555">`
            + `CPU ${ours.cpu_percent}% / ${own.cpu_percent}%</text>`,
        );
      }
    });
  });
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${top + plotHeight}" stroke="#999"/>`);
  out.push(`</svg>`);
  fs.writeFileSync(path.join(OUT_DIR, "results.svg"), out.join("\n") + "\n");
}

const args = process.argv.slice(2);
if (args[0] === "--child") {
  await measure(args[1], args[2], args[3], Number(args[4]), args[5].split(",") as CaseName[]);
} else if (args[0] === "--chart") {
  writeChart();
} else if (args[0] === "--default") {
  console.log(JSON.stringify({ completion: target.completion }));
} else {
  await main(args);
}
