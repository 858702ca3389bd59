/**
 * Benchmark of durable appends against what users would use instead: this module's log, lmdb-js,
 * SQLite and the runtime's own write + datasync, each in every runtime, with a floor in C.
 *
 * ```sh
 * npm run bench:peers                       # everything: about 8 minutes
 * deno run --allow-all bench/peers_bench.ts --quick     # 1 s points, 1 and 64 writers
 * deno run --allow-all bench/peers_bench.ts --runtime=bun --impl=log-framed,lmdb --writers=64 --device=disk+1ms
 * deno run --allow-all bench/peers_bench.ts --chart     # redraw bench/peers.svg, print the table
 * ```
 *
 * Options (`--name=value`, lists comma-separated): `--runtime` (deno, bun), `--impl` (below),
 * `--writers` (1, 16, 64), `--device` (disk, disk+1ms), `--duration` (seconds per point,
 * default 3), `--dir` (where the files go: a folder on a real disk, default the system's
 * temporary folder, else the home or the current folder, whichever is on a disk: tmpfs and ramfs
 * are refused), `--quick` (1 s points at 1 and 64 writers).
 *
 * Implementations (`impl`), each appending the same records:
 * - `log-framed`: `openLog(file)` (framed records, 1 MiB allocated ahead at a time), `append`.
 * - `log-framed-noprealloc`: `openLog(file, { preallocate: false })`: the file grows with its records.
 * - `log-plain`: `openLog(file, { format: "plain", separator: "\n" })`: the records as they are.
 * - `lmdb`: lmdb-js (npm `lmdb`), `put(id, record)` with `overlappingSync: false`, so that its
 *   promise resolves once the commit is synced (by default it resolves before).
 * - `sqlite`: SQLite in WAL mode with `synchronous=FULL`, one `INSERT` per record (its own
 *   transaction): `bun:sqlite` in Bun, `node:sqlite` in Deno and Node.
 * - `own`: the runtime's `node:fs/promises` `FileHandle.write()` (file opened to append) then
 *   `datasync()`, per record; `own-fsfile` (Deno): `Deno.FsFile` `write()` then `syncData()`.
 * - `c-append`, `c-prealloc`, `c-aio`: floors in C without a runtime (`bench/peers_floor.c`,
 *   compiled with gcc when the run starts), one record (128 bytes) at a time: `pwrite` then
 *   `fdatasync` appending to the file; the same into space allocated ahead with `fallocate`;
 *   and the latter with the sync through glibc's AIO (`aio_fsync(O_DSYNC)`, then
 *   `aio_suspend`), which shows what glibc's hand-off costs. One writer only, in no runtime
 *   (`runtime: "c"`).
 *
 * The peers are `lmdb`, `sqlite`, `own` and `own-fsfile`; the floors are floors, not peers.
 *
 * Devices:
 * - `disk`: the folder's own disk.
 * - `disk+1ms`: the same disk with every fdatasync(2) and fsync(2) of the point's process taking
 *   1 ms more (strace -f --seccomp-bpf with `inject=fdatasync,fsync:delay_exit=1000`: only those
 *   calls stop in the tracer). What that slows per implementation: the log's syncs
 *   (`aio_fsync(O_DSYNC)`: fdatasync(2) on glibc's thread) and its fsync when it opens;
 *   SQLite's WAL syncs (the SQLite of Bun and Deno syncs with fsync(2), strace shows) and its
 *   checkpoints; lmdb's fdatasync(2) of the data file at each commit, but not its meta page,
 *   written through a descriptor opened with `O_DSYNC` (a write(2) that syncs, not delayed); the
 *   runtime's own `datasync()`; the floors' fdatasync(2) (glibc's thread's for `c-aio`), not
 *   their one fsync after the first allocation.
 *
 * Each point runs in a fresh child process of its runtime (so that the completion strategy,
 * the GC and caches do not carry over from one implementation to the next) on a fresh file in a
 * fresh folder: `writers` concurrent async loops each append a record (`{"id":n,"pad":"xx…"}`
 * and a line feed, 100 bytes) and await it, then the next, for a warm-up (1 s, 0.3 s with
 * `--quick`) and `duration` seconds timed. Printed, one JSON line per point: `runtime`,
 * `impl`, `writers`, `device`, `records_per_s` (records acknowledged in the timed window per
 * second), `p50_ms`, `p99_ms` (their latency, call to acknowledgement, exact percentiles over
 * every record of the window), `cpu_percent` (the child's user + system time over the window
 * from `process.cpuUsage()`, every thread, in percent of one core; not strace's). Then, on
 * stderr, a table per runtime (each implementation's records/s, p99, CPU and records/s against
 * the best peer's) and whether the log meets the goals of the issue that asked for this bench.
 *
 * Checked at every point, and the run fails loudly (exit 1, naming the point and the ids):
 * after the child closed its store, it reads every record back through the peer's own read path
 * (`readLog` for the log, `SELECT` for SQLite, `getRange` for lmdb, the file's lines for the
 * runtime's own path and the floors): every acknowledged record must be there exactly once,
 * byte for byte, and nothing else. A child that crashes, hangs (killed after a minute past its
 * time) or prints no result fails the point; the run goes on with the next point and exits with
 * 1 at the end, listing the failed points. `disk+1ms` without strace, or the floors without gcc,
 * fail before anything runs.
 *
 * A full run (not `--quick`, every implementation, writer count and device, at least 3 s per
 * point, no failure) also writes `bench/peers-<runtime>.json` per runtime run (the floors'
 * rows included) and redraws `bench/peers.svg` from those files.
 *
 * @module
 */

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { OpenLogOptions } from "../mod.ts";
import {
  bin,
  buildC,
  type Device,
  DEVICES,
  diskFolder,
  fsType,
  listOption,
  numberOption,
  quantile,
  record,
  recordId,
  recordIds,
  requireStrace,
  runToEnd,
  slowed,
  stringOption,
  syncsByFd,
} from "./common.ts";

/** The runtimes a point can run in. */
type Runtime = "deno" | "bun" | "node";

/** How a point's child runs in a runtime, and what differs there. */
interface RuntimeEntry {
  /** The command line that runs `script` with `args` in this runtime. */
  command(script: string, args: string[]): string[];
  /** The runtime's SQLite: the module, and its class of a database (`new (file)`). */
  sqlite: { module: string; database: string };
  /** The runtime's own paths: `own` (`node:fs/promises`), and any other. */
  own: readonly string[];
}

/** One entry per runtime: adding a runtime is adding its entry. */
const RUNTIMES: Readonly<Record<Runtime, RuntimeEntry>> = {
  deno: {
    command: (script, args) => [bin("deno"), "run", "--allow-all", script, ...args],
    sqlite: { module: "node:sqlite", database: "DatabaseSync" },
    own: ["own", "own-fsfile"],
  },
  bun: {
    command: (script, args) => [bin("bun"), script, ...args],
    sqlite: { module: "bun:sqlite", database: "Database" },
    own: ["own"],
  },
  node: {
    command: (script, args) => [bin("node"), "--disable-warning=ExperimentalWarning", script, ...args],
    sqlite: { module: "node:sqlite", database: "DatabaseSync" },
    own: ["own"],
  },
};

const RUNTIME_NAMES = Object.keys(RUNTIMES) as Runtime[];

/** The log's implementations, with the options of `openLog()`. */
const LOGS: Readonly<Record<string, OpenLogOptions>> = {
  "log-framed": {},
  "log-framed-noprealloc": { preallocate: false },
  "log-plain": { format: "plain", separator: "\n" },
};

/** The peers' implementations (those of the runtime's own path are in `RUNTIMES`). */
const PEERS: readonly string[] = ["lmdb", "sqlite", "own", "own-fsfile"];

/** The floors in C, by implementation name: `bench/peers_floor.c`'s mode. */
const FLOORS: ReadonlyMap<string, string> = new Map([
  ["c-append", "append"],
  ["c-prealloc", "prealloc"],
  ["c-aio", "aio"],
]);

/** Every implementation, in the order of the table and the chart. */
const IMPLS: readonly string[] = [...Object.keys(LOGS), ...PEERS, ...FLOORS.keys()];

const WRITERS: readonly number[] = [1, 16, 64];

/** Bytes of a floor's record (a framed 100-byte record takes 112). */
const FLOOR_RECORD_BYTES = 128;

/** The syscalls strace slows on `disk+1ms`. */
const SYNCS: readonly string[] = ["fdatasync", "fsync"];

/** A child is killed this long after its warm-up and timed window should have ended (ms). */
const CHILD_GRACE_MS = 60_000;

/** Seconds a point takes beside its warm-up and window (start, open, read back), for the estimate. */
const POINT_OVERHEAD_S = { runtime: 0.6, floor: 0.1 };

const script = fileURLToPath(import.meta.url);

/** One point, as printed. */
interface Row {
  runtime: Runtime | "c";
  impl: string;
  writers: number;
  device: Device;
  records_per_s: number;
  p50_ms: number;
  p99_ms: number;
  cpu_percent: number;
}

/** What a child (or a floor) measured. */
interface Measured {
  /** Records acknowledged in the timed window, and its length. */
  records: number;
  seconds: number;
  p50_ms: number;
  p99_ms: number;
  /** CPU time (user + system) of the process over the window. */
  cpu_ms: number;
  /** Records acknowledged in all, warm-up included. */
  acked: number;
  /** The runtime's version (children only). */
  version?: string;
}

/** What a child is asked to do. */
interface Plan {
  runtime: Runtime;
  impl: string;
  device: Device;
  writers: number;
  warmup_ms: number;
  duration_ms: number;
  dir: string;
}

/** A point, as messages name it. */
function label({ runtime, impl, writers, device }: Point | Plan): string {
  return `${runtime} ${impl}, ${writers} writer${writers === 1 ? "" : "s"}, ${device}`;
}

// ---------------------------------------------------------------------------------------------
// Child: one implementation, one point (`<runtime> bench/peers_bench.ts --child <plan>`)
// ---------------------------------------------------------------------------------------------

/** A store records are appended to: `append` settles once the record is durable. */
interface Store {
  append(id: number, text: string): unknown;
  close(): unknown;
}

/** An implementation: opens its store, and reads back the ids of the records it holds. */
interface Subject {
  open(): Promise<Store>;
  /** Every record in the store, through its own read path, each checked whole (its id). */
  readBack(): Promise<number[]>;
}

/** The part of bun:sqlite and node:sqlite the bench uses (the same in both). */
interface SqliteDatabase {
  exec(sql: string): void;
  prepare(sql: string): { run(...values: unknown[]): unknown; all(): unknown[] };
  close(): void;
}

const deno = (globalThis as { Deno?: typeof Deno }).Deno;

/** The id of `text`, a record read back as `where`; throws if it is not one the bench wrote. */
function idOf(text: string, where: string): number {
  const id = recordId(text);
  if (id === undefined) {
    throw new Error(`${where} is not a record the bench wrote: ${JSON.stringify(text.slice(0, 200))}`);
  }
  return id;
}

/** The implementation `plan.impl` on a file in `plan.dir`. */
async function subject(plan: Plan): Promise<Subject> {
  const file = path.join(plan.dir, "records");
  const options = LOGS[plan.impl];
  if (options !== undefined) {
    const { openLog, readLog } = await import("../mod.ts");
    const plain = options.format === "plain";
    return {
      async open(): Promise<Store> {
        const log = await openLog(file, options);
        return { append: (_id, text) => log.append(text), close: () => log.close() };
      },
      async readBack(): Promise<number[]> {
        const decoder = new TextDecoder();
        const ids: number[] = [];
        // readLog yields a plain log's records without their separator.
        for await (const bytes of readLog(file)) {
          ids.push(idOf(decoder.decode(bytes) + (plain ? "\n" : ""), `readLog's record ${ids.length}`));
        }
        return ids;
      },
    };
  }
  switch (plan.impl) {
    case "lmdb": {
      const { open } = await import("lmdb");
      return {
        open(): Promise<Store> {
          const db = open<string, number>({ path: file, overlappingSync: false });
          return Promise.resolve({ append: (id, text) => db.put(id, text), close: () => db.close() });
        },
        async readBack(): Promise<number[]> {
          const db = open<string, number>({ path: file, readOnly: true });
          try {
            return [...db.getRange()].map(({ key, value }) => {
              const id = idOf(value, `lmdb's value of key ${key}`);
              if (id !== key) throw new Error(`lmdb holds record ${id} under key ${key}`);
              return id;
            });
          } finally {
            await db.close();
          }
        },
      };
    }
    case "sqlite": {
      const { module, database } = RUNTIMES[plan.runtime].sqlite;
      const Database = (await import(module))[database] as new(file: string) => SqliteDatabase;
      return {
        open(): Promise<Store> {
          const db = new Database(file);
          db.exec("PRAGMA journal_mode=WAL");
          db.exec("PRAGMA synchronous=FULL");
          db.exec("CREATE TABLE records (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
          const insert = db.prepare("INSERT INTO records (id, body) VALUES (?, ?)");
          return Promise.resolve({ append: (id, text) => insert.run(id, text), close: () => db.close() });
        },
        readBack(): Promise<number[]> {
          const db = new Database(file);
          try {
            const rows = db.prepare("SELECT id, body FROM records").all() as { id: number; body: string }[];
            return Promise.resolve(rows.map(({ id, body }) => {
              if (idOf(body, `SQLite's row ${id}`) !== id) throw new Error(`SQLite holds another record in row ${id}`);
              return id;
            }));
          } finally {
            db.close();
          }
        },
      };
    }
    case "own":
    case "own-fsfile": {
      const readBack = async (): Promise<number[]> =>
        recordIds(await fs.promises.readFile(file, "utf8"), Infinity, "the file");
      if (plan.impl === "own") {
        return {
          async open(): Promise<Store> {
            const handle = await fs.promises.open(file, "a");
            return {
              async append(_id, text): Promise<void> {
                const { bytesWritten } = await handle.write(text);
                if (bytesWritten !== text.length) {
                  throw new Error(`A short write: ${bytesWritten} of ${text.length} bytes`);
                }
                await handle.datasync();
              },
              close: () => handle.close(),
            };
          },
          readBack,
        };
      }
      if (deno === undefined) throw new Error("own-fsfile runs in Deno only");
      const encoder = new TextEncoder();
      return {
        async open(): Promise<Store> {
          const handle = await deno.open(file, { write: true, append: true, create: true });
          return {
            async append(_id, text): Promise<void> {
              const bytes = encoder.encode(text);
              const written = await handle.write(bytes);
              if (written !== bytes.length) throw new Error(`A short write: ${written} of ${bytes.length} bytes`);
              await handle.syncData();
            },
            close: () => handle.close(),
          };
        },
        readBack,
      };
    }
    default:
      throw new Error(`Unknown impl ${JSON.stringify(plan.impl)} in ${plan.runtime}`);
  }
}

/** The runtime's version. */
function runtimeVersion(): string {
  if (deno !== undefined) return `Deno ${deno.version.deno}`;
  const bun = (globalThis as { Bun?: { version: string } }).Bun;
  return bun !== undefined ? `Bun ${bun.version}` : `Node ${process.versions.node}`;
}

/**
 * `plan.writers` loops, each appending a record and awaiting it, then the next: a warm-up, then
 * the timed window. The phase is read from the clock after each record (a store whose appends
 * are synchronous never lets a timer run). Resolves once every loop has seen the window end.
 */
async function drive(store: Store, plan: Plan): Promise<{ measured: Measured; acked: number[]; issued: number }> {
  const acked: number[] = [];
  const latencies: number[] = [];
  let issued = 0;
  let phase: "warm-up" | "timed" | "done" = "warm-up";
  const began = performance.now();
  let start = 0;
  let end = 0;
  let cpu = process.cpuUsage();
  let used = cpu;
  const writer = async (): Promise<void> => {
    while (phase !== "done") {
      const id = issued++;
      const sent = performance.now();
      await store.append(id, record(id));
      const now = performance.now();
      acked.push(id);
      if (phase === "timed") latencies.push(now - sent);
      if (phase === "warm-up" && now - began >= plan.warmup_ms) {
        phase = "timed";
        start = now;
        cpu = process.cpuUsage();
      } else if (phase === "timed" && now - start >= plan.duration_ms) {
        phase = "done";
        end = now;
        used = process.cpuUsage(cpu);
      }
    }
  };
  await Promise.all(Array.from({ length: plan.writers }, writer));
  const sorted = Float64Array.from(latencies).sort();
  return {
    measured: {
      records: latencies.length,
      seconds: (end - start) / 1000,
      p50_ms: quantile(sorted, 0.5),
      p99_ms: quantile(sorted, 0.99),
      cpu_ms: (used.user + used.system) / 1000,
      acked: acked.length,
      version: runtimeVersion(),
    },
    acked,
    issued,
  };
}

/**
 * Fails, naming `label` and the ids, unless `stored` (ids read back) holds every id of `acked`
 * exactly once and nothing but ids below `issued`.
 */
function verify(label: string, stored: number[], acked: readonly number[], issued: number): void {
  const seen = new Map<number, number>();
  for (const id of stored) seen.set(id, (seen.get(id) ?? 0) + 1);
  const list = (ids: number[]): string => ids.slice(0, 20).join(", ") + (ids.length > 20 ? ", …" : "");
  const problems: string[] = [];
  const missing = acked.filter((id) => !seen.has(id));
  if (missing.length > 0) {
    problems.push(`${missing.length} of ${acked.length} acknowledged records are missing (ids ${list(missing)})`);
  }
  const twice = [...seen].filter(([, count]) => count > 1).map(([id]) => id);
  if (twice.length > 0) problems.push(`${twice.length} records are held more than once (ids ${list(twice)})`);
  const unknown = [...seen.keys()].filter((id) => id >= issued);
  if (unknown.length > 0) problems.push(`${unknown.length} records were never appended (ids ${list(unknown)})`);
  if (problems.length > 0) throw new Error(`${label}: read back: ${problems.join("; ")}`);
}

/** Child process: runs one point and prints what it measured. */
async function child(plan: Plan): Promise<void> {
  const chosen = await subject(plan);
  const store = await chosen.open();
  const { measured, acked, issued } = await drive(store, plan);
  await store.close();
  let stored: number[];
  try {
    stored = await chosen.readBack();
  } catch (error) {
    throw new Error(`${label(plan)}: read back: ${error instanceof Error ? error.message : error}`);
  }
  verify(label(plan), stored, acked, issued);
  console.log(JSON.stringify(measured));
}

// ---------------------------------------------------------------------------------------------
// Parent
// ---------------------------------------------------------------------------------------------

/** A point to run. */
interface Point {
  runtime: Runtime | "c";
  impl: string;
  writers: number;
  device: Device;
}

/** How the points run: the folder, the timings, the floors' program. */
interface Setup {
  dir: string;
  warmupMs: number;
  durationMs: number;
  floor: string | undefined;
}

/** Runs `command` (under strace on `disk+1ms`); returns the last line it printed, as JSON. */
async function runMeasured(
  point: Point,
  command: string[],
  straceLog: string,
  timeoutMs: number,
): Promise<Measured> {
  if (point.device === "disk+1ms") command = [...slowed(SYNCS, straceLog), ...command];
  const done = await runToEnd(command, timeoutMs);
  const said = done.stderr.trim();
  if (done.timedOut) throw new Error(`${label(point)}: killed after ${timeoutMs / 1000} s${said ? `:\n${said}` : ""}`);
  if (done.code !== 0) {
    throw new Error(`${label(point)}: the child exited with ${done.signal ?? done.code}${said ? `:\n${said}` : ""}`);
  }
  if (said !== "") console.error(said);
  const last = done.stdout.trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(last) as Measured;
  } catch {
    throw new Error(`${label(point)}: the child printed no result: ${JSON.stringify(done.stdout.slice(-500))}`);
  }
}

/** Runs one point in a fresh folder; returns its row. */
async function runPoint(point: Point, setup: Setup): Promise<{ row: Row; version?: string; note: string }> {
  const dir = fs.mkdtempSync(path.join(setup.dir, `${point.runtime}-${point.impl}-${point.writers}-`));
  const straceLog = path.join(setup.dir, "strace.log");
  const timeoutMs = setup.warmupMs + setup.durationMs + CHILD_GRACE_MS;
  try {
    let measured: Measured;
    if (point.runtime === "c") {
      const file = path.join(dir, "records");
      const mode = FLOORS.get(point.impl)!;
      const args = [mode, file, String(FLOOR_RECORD_BYTES), String(setup.warmupMs), String(setup.durationMs)];
      measured = await runMeasured(point, [setup.floor!, ...args], straceLog, timeoutMs);
      // Read back: whole records up to the end, or up to the space allocated ahead (zeros).
      let text = fs.readFileSync(file, "latin1");
      const zero = text.indexOf("\0");
      if (zero >= 0) text = text.slice(0, zero);
      const ids = recordIds(text, measured.acked, `${label(point)}: the file`, FLOOR_RECORD_BYTES);
      verify(label(point), ids, Array.from({ length: measured.acked }, (_, id) => id), measured.acked);
    } else {
      const plan: Plan = {
        runtime: point.runtime,
        impl: point.impl,
        device: point.device,
        writers: point.writers,
        warmup_ms: setup.warmupMs,
        duration_ms: setup.durationMs,
        dir,
      };
      const command = RUNTIMES[point.runtime].command(script, ["--child", JSON.stringify(plan)]);
      measured = await runMeasured(point, command, straceLog, timeoutMs);
    }
    let note = `${measured.acked} records read back`;
    if (point.device === "disk+1ms") {
      const syncs = [...syncsByFd(straceLog, SYNCS).values()].reduce((sum, count) => sum + count, 0);
      note += `, ${(measured.acked / Math.max(1, syncs)).toFixed(1)} per sync (${syncs} syncs)`;
    }
    const row: Row = {
      ...point,
      records_per_s: Math.round(measured.records / measured.seconds),
      p50_ms: Math.round(measured.p50_ms * 1000) / 1000,
      p99_ms: Math.round(measured.p99_ms * 1000) / 1000,
      cpu_percent: Math.round(measured.cpu_ms / measured.seconds / 10 * 10) / 10,
    };
    return { row, version: measured.version, note };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(straceLog, { force: true });
  }
}

/** What a full run leaves in `bench/peers-<runtime>.json`, for the chart and the table. */
interface Results {
  runtime: Runtime;
  version: string;
  date: string;
  duration_s: number;
  cpus: number;
  disk: string;
  rows: Row[];
}

/** Where the results of full runs and the chart go. */
const OUT_DIR: string = path.dirname(script);

/** The results of the last full run of each runtime that has one. */
function savedResults(): Results[] {
  return RUNTIME_NAMES.map((name) => path.join(OUT_DIR, `peers-${name}.json`))
    .filter((file) => fs.existsSync(file))
    .map((file) => JSON.parse(fs.readFileSync(file, "utf8")) as Results);
}

async function main(args: string[]): Promise<void> {
  if (args.includes("--chart")) {
    const runs = savedResults();
    if (runs.length === 0) throw new Error(`No bench/peers-<runtime>.json in ${OUT_DIR}: run a full bench first`);
    writeChart(runs);
    for (const run of runs) console.log(table(run.runtime, run.rows).join("\n") + "\n");
    return;
  }
  const quick = args.includes("--quick");
  const runtimes = listOption(args, "runtime", RUNTIME_NAMES, RUNTIME_NAMES);
  const impls = listOption(args, "impl", IMPLS, IMPLS);
  const writers = listOption(args, "writers", WRITERS, quick ? [1, 64] : WRITERS);
  const devices = listOption(args, "device", DEVICES, DEVICES);
  const duration = numberOption(args, "duration", quick ? 1 : 3);
  const full = !quick && duration >= 3 && ["impl", "writers", "device"].every((name) => !stringOption(args, name));
  requireStrace(devices);
  // The points: the floors first (one writer, in no runtime), then each runtime's.
  const points: Point[] = [];
  for (const device of devices) {
    for (const impl of impls.filter((each) => FLOORS.has(each) && writers.includes(1))) {
      points.push({ runtime: "c", impl, writers: 1, device });
    }
  }
  for (const runtime of runtimes) {
    const available = new Set([...Object.keys(LOGS), "lmdb", "sqlite", ...RUNTIMES[runtime].own]);
    for (const device of devices) {
      for (const count of writers) {
        for (const impl of impls.filter((each) => available.has(each))) {
          points.push({ runtime, impl, writers: count, device });
        }
      }
    }
  }
  if (points.length === 0) throw new Error("No point to run: --impl, --writers and --runtime leave none");
  const dir = diskFolder(stringOption(args, "dir"), "posix-aio-peers-bench-");
  const disk = fsType(dir);
  const setup: Setup = { dir, warmupMs: quick ? 300 : 1000, durationMs: duration * 1000, floor: undefined };
  const started = performance.now();
  const rows: Row[] = [];
  const versions = new Map<string, string>();
  const failures: string[] = [];
  try {
    if (points.some((point) => point.runtime === "c")) {
      const built = buildC("peers_floor.c", dir, ["-lrt", "-lm"]);
      if ("why" in built) throw new Error(`The C floors need gcc: ${built.why} (or pass --impl= without c-*)`);
      setup.floor = built.program;
    }
    const estimate = points.reduce(
      (sum, point) =>
        sum + (setup.warmupMs + setup.durationMs) / 1000
        + (point.runtime === "c" ? POINT_OVERHEAD_S.floor : POINT_OVERHEAD_S.runtime),
      0,
    );
    console.error(
      `${points.length} point${points.length === 1 ? "" : "s"} in ${dir} (${disk}), about `
        + (estimate < 90 ? `${Math.ceil(estimate)} s` : `${Math.ceil(estimate / 60)} min`)
        + (full ? "; a full run: writes bench/peers-<runtime>.json and bench/peers.svg" : ""),
    );
    for (const [index, point] of points.entries()) {
      const load = os.loadavg()[0].toFixed(1);
      try {
        const { row, version, note } = await runPoint(point, setup);
        if (version !== undefined) versions.set(point.runtime, version);
        rows.push(row);
        console.log(JSON.stringify(row));
        console.error(
          `point ${index + 1}/${points.length}: ${label(point)}: ${row.records_per_s} records/s, `
            + `p99 ${row.p99_ms} ms, ${row.cpu_percent}% CPU; ${note} (load ${load})`,
        );
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        failures.push(message);
        console.error(`point ${index + 1}/${points.length} FAILED: ${message}`);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const minutes = (performance.now() - started) / 60_000;
  for (const runtime of runtimes) {
    const mine = rows.filter((row) => row.runtime === runtime || row.runtime === "c");
    if (mine.some((row) => row.runtime === runtime)) console.error("\n" + table(runtime, mine).join("\n"));
  }
  console.error(`\n${rows.length} of ${points.length} points in ${minutes.toFixed(1)} min`);
  if (failures.length > 0) {
    throw new Error(`${failures.length} of ${points.length} points failed:\n- ${failures.join("\n- ")}`);
  }
  if (full) {
    for (const runtime of runtimes) {
      const results: Results = {
        runtime,
        version: versions.get(runtime) ?? runtime,
        date: new Date().toISOString(),
        duration_s: duration,
        cpus: os.cpus().length,
        disk,
        rows: rows.filter((row) => row.runtime === runtime || row.runtime === "c"),
      };
      fs.writeFileSync(path.join(OUT_DIR, `peers-${runtime}.json`), JSON.stringify(results, null, 2) + "\n");
    }
    writeChart(savedResults());
  }
}

// ---------------------------------------------------------------------------------------------
// Table, goals and chart
// ---------------------------------------------------------------------------------------------

/** The kind of an implementation. */
function kind(impl: string): "log" | "peer" | "floor" {
  if (impl in LOGS) return "log";
  return FLOORS.has(impl) ? "floor" : "peer";
}

/** A number with thousands grouped. */
function grouped(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

/** Milliseconds to 3 significant digits or so. */
function ms(value: number): string {
  return value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

/** The peer with the most records/s among `rows` (one runtime, device and writer count). */
function bestPeer(rows: Row[]): Row | undefined {
  return rows.filter((row) => kind(row.impl) === "peer").toSorted((a, b) => b.records_per_s - a.records_per_s)[0];
}

/**
 * The summary of one runtime as markdown: a row per device and writer count, a column per
 * implementation (records/s, p99, CPU, and records/s against the best peer's), then the goals.
 */
function table(runtime: Runtime, rows: Row[]): string[] {
  const impls = IMPLS.filter((impl) => rows.some((row) => row.impl === impl));
  const lines = [
    `${runtime}: records/s (p99 ms, CPU % of one core; records/s / best peer's)`,
    "",
    `| device | writers | ${impls.join(" | ")} |`,
    `| --- | ---: | ${impls.map(() => "---").join(" | ")} |`,
  ];
  const goals: string[] = [];
  for (const device of DEVICES) {
    for (const writers of WRITERS) {
      const here = rows.filter((row) =>
        row.device === device && row.writers === writers && (row.runtime === runtime || row.runtime === "c")
      );
      if (!here.some((row) => row.runtime === runtime)) continue;
      const best = bestPeer(here);
      const cells = impls.map((impl) => {
        const row = here.find((each) => each.impl === impl);
        if (row === undefined) return "";
        const ratio = best === undefined ? "" : `; ${(row.records_per_s / best.records_per_s).toFixed(2)}x`;
        return `${grouped(row.records_per_s)} (${ms(row.p99_ms)} ms, ${row.cpu_percent}%${ratio})`;
      });
      lines.push(`| ${device} | ${writers} | ${cells.join(" | ")} |`);
      goals.push(...goalLines(here, device, writers));
    }
  }
  return goals.length > 0 ? [...lines, "", "Goals:", ...goals] : lines;
}

/**
 * Whether each log implementation meets the issue's goals at one device and writer count: at
 * 1 writer, records/s at least the best peer's, CPU at most the best peer's + 10 points, p99 at
 * most the best peer's, time per record within 1.3x the C floor's (the faster of `c-append` and
 * `c-prealloc`); at more, records/s at least 3x the best peer's and p99 below every peer's.
 */
function goalLines(rows: Row[], device: Device, writers: number): string[] {
  const best = bestPeer(rows);
  if (best === undefined) return [];
  const peers = rows.filter((row) => kind(row.impl) === "peer");
  const floor = rows.filter((row) => row.impl === "c-append" || row.impl === "c-prealloc")
    .toSorted((a, b) => b.records_per_s - a.records_per_s)[0];
  const mark = (met: boolean): string => met ? "met" : "MISSED";
  const lines: string[] = [];
  for (const log of rows.filter((row) => kind(row.impl) === "log")) {
    const ratio = log.records_per_s / best.records_per_s;
    const checks: string[] = [];
    if (writers === 1) {
      checks.push(`records/s ${ratio.toFixed(2)}x ${best.impl}'s ${mark(ratio >= 1)}`);
      checks.push(
        `CPU ${log.cpu_percent}% vs ${best.cpu_percent}% + 10 ${mark(log.cpu_percent <= best.cpu_percent + 10)}`,
      );
      checks.push(`p99 ${ms(log.p99_ms)} vs ${ms(best.p99_ms)} ms ${mark(log.p99_ms <= best.p99_ms)}`);
      if (floor !== undefined) {
        const times = floor.records_per_s / log.records_per_s;
        checks.push(`time per record ${times.toFixed(2)}x ${floor.impl}'s ${mark(times <= 1.3)}`);
      }
    } else {
      const lowest = Math.min(...peers.map((row) => row.p99_ms));
      checks.push(`records/s ${ratio.toFixed(2)}x ${best.impl}'s (3x) ${mark(ratio >= 3)}`);
      checks.push(`p99 ${ms(log.p99_ms)} vs the peers' lowest ${ms(lowest)} ms ${mark(log.p99_ms < lowest)}`);
    }
    lines.push(`- ${device}, ${writers} writer${writers === 1 ? "" : "s"}, ${log.impl}: ${checks.join("; ")}`);
  }
  return lines;
}

/** Escapes text for SVG. */
function xml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/** A records/s figure as the chart prints it: 2 significant digits, in thousands from 1,000. */
function short(value: number): string {
  if (value >= 10_000) return `${Math.round(value / 1000)}k`;
  if (value >= 1000) return `${(value / 1000).toFixed(1)}k`;
  return String(Math.round(value));
}

/** Colors of the implementations: the log's in blues and greens, the peers warm, the floors grey. */
const COLORS: Readonly<Record<string, string>> = {
  "log-framed": "#1f5f99",
  "log-framed-noprealloc": "#5b9bd5",
  "log-plain": "#2e8b57",
  "lmdb": "#c2620a",
  "sqlite": "#8e44ad",
  "own": "#b42318",
  "own-fsfile": "#e8846f",
  "c-append": "#555555",
  "c-prealloc": "#999999",
  "c-aio": "#cccccc",
};

/**
 * Writes `bench/peers.svg`: a panel per runtime and device, records/s (log scale) of each
 * implementation at 1, 16 and 64 writers (the floors at 1).
 */
function writeChart(runs: Results[]): void {
  const impls = IMPLS.filter((impl) => runs.some((run) => run.rows.some((row) => row.impl === impl)));
  const barWidth = 11, gap = 2, groupGap = 18, plotHeight = 220, left = 64, top = 108;
  const groupWidth = impls.length * (barWidth + gap) + groupGap;
  const panelWidth = WRITERS.length * groupWidth + 30;
  const panelHeight = plotHeight + 70;
  const width = left + DEVICES.length * panelWidth + 10;
  const height = top + runs.length * panelHeight + 10;
  const values = runs.flatMap((run) => run.rows.map((row) => row.records_per_s)).filter((value) => value > 0);
  const low = Math.floor(Math.log10(Math.min(...values)));
  const high = Math.ceil(Math.log10(Math.max(...values)));
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" `
    + `font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${left}" y="20" font-size="15" font-weight="bold">Durable appends of 100-byte records: `
    + `records/s (log scale), the log against its peers</text>`,
    `<text x="${left}" y="38" fill="#555">${
      xml(
        runs.map((run) =>
          `${run.version}: ${run.date.slice(0, 16).replace("T", " ")} UTC, ${run.duration_s} s points, `
          + `${run.cpus} CPUs, ${run.disk}`
        ).join("; "),
      )
    }</text>`,
    `<text x="${left}" y="54" fill="#555">Each writer awaits its record before the next; each point a fresh process and `
    + `file. c-*: floors in C, one record at a time, no runtime. A bar's tooltip: p50, p99, CPU.</text>`,
  ];
  impls.forEach((impl, index) => {
    const x = left + (index % 5) * 150, y = 66 + Math.floor(index / 5) * 16;
    out.push(`<rect x="${x}" y="${y}" width="12" height="12" fill="${COLORS[impl]}"/>`);
    out.push(`<text x="${x + 16}" y="${y + 10}">${impl}</text>`);
  });
  runs.forEach((run, row) => {
    DEVICES.forEach((device, column) => {
      const x0 = left + column * panelWidth, y0 = top + row * panelHeight + 20;
      const y = (value: number): number => y0 + plotHeight - (Math.log10(value) - low) / (high - low) * plotHeight;
      out.push(
        `<text x="${x0 + panelWidth / 2}" y="${y0 - 8}" text-anchor="middle" font-weight="bold">${
          xml(`${run.version}, ${device}`)
        }</text>`,
      );
      for (let exponent = low; exponent <= high; exponent++) {
        const at = y(10 ** exponent);
        out.push(`<line x1="${x0}" x2="${x0 + panelWidth - 20}" y1="${at}" y2="${at}" stroke="#ddd"/>`);
        if (column === 0) {
          out.push(`<text x="${x0 - 6}" y="${at + 4}" text-anchor="end">${grouped(10 ** exponent)}</text>`);
        }
      }
      out.push(`<line x1="${x0}" x2="${x0}" y1="${y0}" y2="${y0 + plotHeight}" stroke="#999"/>`);
      WRITERS.forEach((writers, group) => {
        const gx = x0 + 8 + group * groupWidth;
        impls.forEach((impl, slot) => {
          const found = run.rows.find((each) =>
            each.impl === impl && each.device === device && each.writers === writers
          );
          if (found === undefined || found.records_per_s <= 0) return;
          const x = gx + slot * (barWidth + gap), at = y(found.records_per_s);
          out.push(
            `<rect x="${x}" y="${at.toFixed(1)}" width="${barWidth}" height="${(y0 + plotHeight - at).toFixed(1)}" `
              + `fill="${COLORS[impl]}"><title>${
                xml(
                  `${impl}, ${writers} writers: ${grouped(found.records_per_s)} records/s, p50 ${found.p50_ms} ms, `
                    + `p99 ${found.p99_ms} ms, ${found.cpu_percent}% CPU`,
                )
              }</title></rect>`,
          );
          const tx = x + barWidth / 2 + 3, ty = at - 3;
          out.push(
            `<text x="${tx}" y="${ty}" font-size="8" transform="rotate(-90 ${tx} ${ty})">${
              short(found.records_per_s)
            }</text>`,
          );
        });
        const label = `${writers} writer${writers === 1 ? "" : "s"}`;
        out.push(
          `<text x="${gx + (groupWidth - groupGap) / 2}" y="${
            y0 + plotHeight + 16
          }" text-anchor="middle">${label}</text>`,
        );
      });
    });
  });
  out.push(`</svg>`);
  fs.writeFileSync(path.join(OUT_DIR, "peers.svg"), out.join("\n") + "\n");
}

const args = process.argv.slice(2);
if (args[0] === "--child") {
  try {
    await child(JSON.parse(args[1]) as Plan);
  } catch (error) {
    console.error(error instanceof Error ? error.stack ?? error.message : error);
    process.exit(1);
  }
} else {
  try {
    await main(args);
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  }
}
