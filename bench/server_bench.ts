/**
 * Benchmark of a real server: examples/http_log.ts under `Deno.serve`, `Bun.serve` and Node's
 * `node:http`, driven
 * over loopback by autocannon (npm) in a process of its own, for each way of making a record
 * durable side by side.
 *
 * ```sh
 * npm run bench:server                      # everything: about 7 minutes
 * bun bench/server_bench.ts --quick         # 1 s points, 1 and 64 connections
 * bun bench/server_bench.ts --runtime=deno --device=disk+1ms --variant=log,native --connections=64
 * ```
 *
 * Options (`--name=value`, lists comma-separated): `--runtime` (deno, bun, node), `--device` (disk,
 * disk+1ms, memory), `--variant` (native, fdatasync, log), `--connections` (1, 16, 64), `--duration`
 * (seconds per point, default 5), `--dir` (where the record files go: a folder on a real disk,
 * default the system's temporary folder, else the home or the current folder, whichever is on a
 * disk: tmpfs and ramfs are refused), `--pin` (run the server
 * on CPU 0 and the load generator on CPU 1, with taskset), `--quick`.
 *
 * Devices:
 * - `disk`: the folder's own disk.
 * - `disk+1ms`: the same disk with every fdatasync(2) of the server process taking 1 ms more
 *   (strace -f --seccomp-bpf with `inject=fdatasync:delay_exit=1000`: only fdatasync(2) stops
 *   in the tracer, other syscalls run at full speed): a cloud volume or a consumer SSD.
 * - `memory`: a folder on /dev/shm (tmpfs), where a sync costs next to nothing: not a device a
 *   durable store would use, but the ceiling of each variant on this machine, what the server
 *   and the load generator serve when the device never waits, measured in the same run.
 *
 * Each point starts a fresh server on a fresh file, sends a warm-up of requests, then loads it
 * for `duration` seconds with `connections` keep-alive connections, each with one request in
 * flight. Every request carries a record of its own (`{"id":n,...}`, 100 bytes with the line
 * feed). Printed, one JSON line per point: `runtime`, `device`, `variant`, `connections`,
 * `requests_per_s`, `p50_ms`, `p99_ms` (latency of the requests of the timed window, exact
 * percentiles), `cpu_percent` (the server process's user + system time over the window, in
 * percent of one core, from /proc/<pid>/stat), then `load_cpu_percent` (the load generator's
 * own) and, on `disk+1ms`, `records_per_sync` (requests acknowledged per fdatasync(2) strace
 * saw, warm-up included).
 *
 * Checked at every point, and the bench fails loudly otherwise: every response is a 201 (no
 * error, no timeout, no other status); afterwards, `GET /records` returns every acknowledged
 * record, and the file holds every acknowledged record exactly once, nothing but whole records
 * that were sent, and `GET /records` is a prefix of it.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import {
  bin,
  clockTicks,
  cpuTicks,
  type Device,
  DEVICES,
  diskFolder,
  listOption,
  numberOption,
  quantile,
  record,
  recordIds,
  requireStrace,
  ROOT,
  slowed,
  stringOption,
  syncsByFd,
} from "./common.ts";

type Runtime = "deno" | "bun" | "node";
/** The bench's devices: the disks of `./common.ts`, and memory for the ceiling. */
type ServerDevice = Device | "memory";
type Variant = "native" | "fdatasync" | "log";

/** One point, as printed. */
interface Row {
  runtime: Runtime;
  device: ServerDevice;
  variant: Variant;
  connections: number;
  requests_per_s: number;
  p50_ms: number;
  p99_ms: number;
  cpu_percent: number;
  load_cpu_percent: number;
  records_per_sync?: number;
}

/** What the load generator reports. */
interface LoadReport {
  /** Ids of the records acknowledged with 201, warm-up included. */
  acked: number[];
  /** Ids handed out: every record sent has an id below this. */
  sent: number;
  /** Responses that were not 201, connection errors, timeouts (all must be 0). */
  failures: string[];
  /** The timed window. */
  requests: number;
  seconds: number;
  p50_ms: number;
  p99_ms: number;
  /** Server's utime + stime (clock ticks) at the start and end of the window. */
  server_ticks: number;
  load_cpu_ms: number;
}

/** What the load generator is asked to do. */
interface LoadPlan {
  url: string;
  connections: number;
  seconds: number;
  warmup: number;
  pid: number;
}

const RUNTIMES: readonly Runtime[] = ["deno", "bun", "node"];
const SERVER_DEVICES: readonly ServerDevice[] = [...DEVICES, "memory"];
/** Where the `memory` device's folder goes. */
const MEMORY_ROOT = "/dev/shm";
const VARIANTS: readonly Variant[] = ["native", "fdatasync", "log"];
const CONNECTIONS: readonly number[] = [1, 16, 64];
/** A server that does not listen within this is a failure (ms). */
const START_TIMEOUT_MS = 30_000;
/** A server that does not exit within this after SIGTERM is a failure (ms). */
const STOP_TIMEOUT_MS = 20_000;

const script = fileURLToPath(import.meta.url);
const example = path.join(ROOT, "examples", "http_log.ts");

// ---------------------------------------------------------------------------------------------
// Load generator (its own process: `bun bench/server_bench.ts --load <plan>`)
// ---------------------------------------------------------------------------------------------

/** The part of autocannon used here (it ships no types). */
interface Autocannon {
  (options: Record<string, unknown>): AutocannonInstance;
}
interface AutocannonInstance extends PromiseLike<AutocannonResult> {
  on(event: "response", listener: (client: unknown, status: number, bytes: number, ms: number) => void): void;
}
interface AutocannonResult {
  errors: number;
  timeouts: number;
  non2xx: number;
  mismatches: number;
}

async function load(plan: LoadPlan): Promise<void> {
  const { default: autocannon } = await import("autocannon") as { default: Autocannon };
  const acked: number[] = [];
  const failures: string[] = [];
  let next = 0;
  const requests = [{
    setupRequest: (request: Record<string, unknown>, context: { id?: number }) => {
      const id = context.id = next++;
      return { ...request, body: record(id) };
    },
    onResponse: (status: number, body: string, context: { id?: number }) => {
      if (status === 201) acked.push(context.id!);
      else if (failures.length < 10) failures.push(`record ${context.id}: status ${status} ${body}`);
    },
  }];
  const run = async (options: Record<string, unknown>, latencies?: number[]): Promise<void> => {
    const instance = autocannon({
      url: plan.url,
      method: "POST",
      headers: { "content-type": "application/json" },
      connections: plan.connections,
      pipelining: 1,
      timeout: 10,
      requests,
      ...options,
    });
    if (latencies !== undefined) instance.on("response", (_client, _status, _bytes, ms) => latencies.push(ms));
    const result = await instance;
    for (const key of ["errors", "timeouts", "non2xx", "mismatches"] as const) {
      if (result[key] !== 0) failures.push(`${result[key]} ${key}`);
    }
  };
  await run({ amount: plan.warmup });
  const latencies: number[] = [];
  const cpu = process.cpuUsage();
  const ticks = cpuTicks(plan.pid);
  const start = performance.now();
  await run({ duration: plan.seconds }, latencies);
  const seconds = (performance.now() - start) / 1000;
  const serverTicks = cpuTicks(plan.pid) - ticks;
  const used = process.cpuUsage(cpu);
  const sorted = Float64Array.from(latencies).sort();
  const report: LoadReport = {
    acked,
    sent: next,
    failures,
    requests: latencies.length,
    seconds,
    p50_ms: quantile(sorted, 0.5),
    p99_ms: quantile(sorted, 0.99),
    server_ticks: serverTicks,
    load_cpu_ms: (used.user + used.system) / 1000,
  };
  console.log(JSON.stringify(report));
}

// ---------------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------------

/** A running server. */
interface Server {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  stdout(): string;
  stderr(): string;
}

/** Starts the example in `runtime` on a free port, under strace on `disk+1ms`. */
async function startServer(
  runtime: Runtime,
  device: ServerDevice,
  variant: Variant,
  file: string,
  straceLog: string,
  pin: boolean,
): Promise<Server> {
  const args = ["--port=0", `--file=${file}`, `--variant=${variant}`];
  let command = runtime === "deno"
    ? [bin("deno"), "run", "--allow-all", example, ...args]
    : runtime === "bun"
    ? [bin("bun"), example, ...args]
    : [bin("node"), "--disable-warning=ExperimentalWarning", example, ...args];
  if (device === "disk+1ms") command = [...slowed(["fdatasync"], straceLog), ...command];
  if (pin) command = ["taskset", "-c", "0", ...command];
  const child = spawn(command[0], command.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => stdout += chunk);
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => stderr += chunk);
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal }))
  );
  const ready = new Promise<{ pid: number; port: number }>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`The server did not listen within ${START_TIMEOUT_MS} ms`)),
      START_TIMEOUT_MS,
    );
    child.stdout!.on("data", () => {
      const line = stdout.split("\n").find((each) => each.startsWith('{"listening"'));
      if (line === undefined) return;
      clearTimeout(timer);
      const ready = JSON.parse(line) as { pid: number; listening: { port: number } };
      resolve({ pid: ready.pid, port: ready.listening.port });
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`The server exited with ${signal ?? code} before listening:\n${stderr}`));
    });
    child.on("error", reject);
  });
  try {
    const { pid, port } = await ready;
    return { child, pid, port, exited, stdout: () => stdout, stderr: () => stderr };
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
}

/** Runs the load generator in a process of its own; returns its report. */
function runLoad(plan: LoadPlan, pin: boolean): Promise<LoadReport> {
  let command = [bin("bun"), script, "--load", JSON.stringify(plan)];
  if (pin) command = ["taskset", "-c", "1", ...command];
  return new Promise((resolve, reject) => {
    const child = spawn(command[0], command.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
    let stdout = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => stdout += chunk);
    const timer = setTimeout(() => child.kill("SIGKILL"), (plan.seconds + 60) * 1000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`The load generator exited with ${signal ?? code}:\n${stdout}`));
      else resolve(JSON.parse(stdout.trim().split("\n").at(-1)!) as LoadReport);
    });
  });
}

/** Fails unless the file and `GET /records` hold what the load generator was told. */
function verify(report: LoadReport, served: string, stored: string, label: string): void {
  if (report.failures.length > 0) throw new Error(`${label}: failed requests: ${report.failures.join("; ")}`);
  if (!stored.startsWith(served)) throw new Error(`${label}: GET /records is not a prefix of the file`);
  const inFile = recordIds(stored, report.sent, `${label}: the file`);
  const unique = new Set(inFile);
  if (unique.size !== inFile.length) throw new Error(`${label}: the file holds a record twice`);
  const inGet = new Set(recordIds(served, report.sent, `${label}: GET /records`));
  for (const id of report.acked) {
    if (!unique.has(id)) throw new Error(`${label}: record ${id} was acknowledged and is not in the file`);
    if (!inGet.has(id)) throw new Error(`${label}: record ${id} was acknowledged and GET /records does not return it`);
  }
}

/** Runs one point: fresh server, warm-up, timed load, checks. */
async function point(
  runtime: Runtime,
  device: ServerDevice,
  variant: Variant,
  connections: number,
  options: { dir: string; memoryDir: string | undefined; seconds: number; ticks: number; pin: boolean },
): Promise<Row> {
  const label = `${runtime} ${device} ${variant} ${connections}`;
  const dir = device === "memory" ? options.memoryDir! : options.dir;
  const file = path.join(dir, `${runtime}-${device}-${variant}-${connections}.log`);
  const straceLog = `${file}.strace`;
  const server = await startServer(runtime, device, variant, file, straceLog, options.pin);
  let report: LoadReport;
  let served: string;
  try {
    const url = `http://127.0.0.1:${server.port}/records`;
    report = await runLoad({
      url,
      connections,
      seconds: options.seconds,
      warmup: Math.max(200, connections * 20),
      pid: server.pid,
    }, options.pin);
    try {
      const response = await fetch(url);
      if (response.status !== 200) throw new Error(`answered ${response.status}`);
      served = await response.text();
    } catch (error) {
      throw new Error(`${label}: GET /records failed: ${error instanceof Error ? error.message : error}`);
    }
  } finally {
    process.kill(server.pid, "SIGTERM");
    const timer = setTimeout(() => server.child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await server.exited;
    clearTimeout(timer);
  }
  const { code, signal } = await server.exited;
  if (code !== 0) throw new Error(`${label}: the server exited with ${signal ?? code}:\n${server.stderr()}`);
  verify(report, served, fs.readFileSync(file, "utf8"), label);
  const row: Row = {
    runtime,
    device,
    variant,
    connections,
    requests_per_s: Math.round(report.requests / report.seconds),
    p50_ms: Math.round(report.p50_ms * 1000) / 1000,
    p99_ms: Math.round(report.p99_ms * 1000) / 1000,
    cpu_percent: Math.round(report.server_ticks / options.ticks / report.seconds * 1000) / 10,
    load_cpu_percent: Math.round(report.load_cpu_ms / 10 / report.seconds * 10) / 10,
  };
  if (device === "disk+1ms") {
    // The fd synced most often is the record file's (the runtime may sync files of its own).
    const syncs = Math.max(1, ...syncsByFd(straceLog, ["fdatasync"]).values());
    row.records_per_sync = Math.round(report.acked.length / syncs * 10) / 10;
  }
  fs.rmSync(file, { force: true });
  fs.rmSync(straceLog, { force: true });
  return row;
}

async function main(args: string[]): Promise<void> {
  const quick = args.includes("--quick");
  const pin = args.includes("--pin");
  const runtimes = listOption(args, "runtime", RUNTIMES, RUNTIMES);
  const devices = listOption(args, "device", SERVER_DEVICES, SERVER_DEVICES);
  const variants = listOption(args, "variant", VARIANTS, VARIANTS);
  const connections = listOption(args, "connections", CONNECTIONS, quick ? [1, 64] : CONNECTIONS);
  const seconds = numberOption(args, "duration", quick ? 1 : 5);
  requireStrace(devices.filter((device): device is Device => device !== "memory"));
  const dir = diskFolder(stringOption(args, "dir"), "posix-aio-server-bench-");
  const memoryDir = devices.includes("memory")
    ? fs.mkdtempSync(path.join(MEMORY_ROOT, "posix-aio-server-bench-"))
    : undefined;
  const ticks = clockTicks();
  try {
    const total = runtimes.length * devices.length * connections.length * variants.length;
    let done = 0;
    for (const runtime of runtimes) {
      for (const device of devices) {
        for (const count of connections) {
          for (const variant of variants) {
            const load = os.loadavg()[0].toFixed(1);
            console.error(
              `point ${++done}/${total}: ${runtime} ${device} ${variant} ${count} connections (load ${load})`,
            );
            const row = await point(runtime, device, variant, count, { dir, memoryDir, seconds, ticks, pin });
            console.log(JSON.stringify(row));
          }
        }
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    if (memoryDir !== undefined) fs.rmSync(memoryDir, { recursive: true, force: true });
  }
}

const args = process.argv.slice(2);
if (args[0] === "--load") await load(JSON.parse(args[1]) as LoadPlan);
else await main(args);
