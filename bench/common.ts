/**
 * Helpers shared by the benchmarks that run children on the machine's disk
 * (`bench/server_bench.ts`, `bench/peers_bench.ts`): options, the records they write and check,
 * the folder on a real disk, the strace delay of the slowed device, percentiles and CPU time.
 *
 * @module
 */

import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** The devices a point runs on: the disk, or the disk with every sync 1 ms slower. */
export type Device = "disk" | "disk+1ms";

/** Every device, in the order the benches run them. */
export const DEVICES: readonly Device[] = ["disk", "disk+1ms"];

/** Microseconds strace adds to each sync on `disk+1ms`. */
export const DELAY_US = 1000;

/** Bytes of a record the benches write, line feed included. */
export const RECORD_BYTES = 100;

/** The repository's root folder. */
export const ROOT: string = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** A program installed by npm in `node_modules/.bin`. */
export function bin(name: string): string {
  return path.join(ROOT, "node_modules", ".bin", name);
}

/** Filesystems that live in memory (statfs f_type): tmpfs, ramfs. */
const MEMORY_FILESYSTEMS = new Set([0x01021994, 0x858458f6]);

/**
 * A new folder for the bench's files in `base`, which must be on a disk (tmpfs and ramfs are
 * refused); without `base`, in the first of the system's temporary folder, the home folder and
 * the current folder that is on a disk.
 */
export function diskFolder(base: string | undefined, prefix: string): string {
  const inMemory = (dir: string): boolean => MEMORY_FILESYSTEMS.has(fs.statfsSync(dir).type);
  const where = base ?? [os.tmpdir(), os.homedir(), process.cwd()].find((dir) => !inMemory(dir));
  if (where === undefined) {
    throw new Error(`The temporary, home and current folders are in memory: pass --dir= on a disk`);
  }
  if (inMemory(where)) {
    const type = fs.statfsSync(where).type;
    throw new Error(`Invalid dir: ${where} is in memory (filesystem 0x${type.toString(16)}), pass --dir= on a disk`);
  }
  return fs.mkdtempSync(path.join(where, prefix));
}

/** The file system type of `dir`, as `stat -f` names it ("ext2/ext3", "xfs", ...). */
export function fsType(dir: string): string {
  const out = spawnSync("stat", ["-f", "-c", "%T", dir], { encoding: "utf8" });
  return out.status === 0 ? out.stdout.trim() : "unknown";
}

/** Fails unless strace runs, when one of `devices` needs it. */
export function requireStrace(devices: readonly Device[]): void {
  if (devices.includes("disk+1ms") && spawnSync("strace", ["-V"]).status !== 0) {
    throw new Error("Device disk+1ms needs strace: install it, or pass --device=disk");
  }
}

/**
 * What runs a command under strace with every call of `syscalls` taking `DELAY_US` more
 * (`--seccomp-bpf`: only those calls stop in the tracer; the others run at full speed), each
 * call logged to `log`.
 */
export function slowed(syscalls: readonly string[], log: string): string[] {
  const set = syscalls.join(",");
  return [
    ...["strace", "-f", "--seccomp-bpf", "-qq", "-o", log, "-e", `trace=${set}`],
    ...["-e", `inject=${set}:delay_exit=${DELAY_US}`],
  ];
}

/** Calls of each of `syscalls` in a strace log of `slowed()`, by file descriptor. */
export function syncsByFd(log: string, syscalls: readonly string[]): Map<string, number> {
  const perFd = new Map<string, number>();
  const pattern = new RegExp(`\\b(?:${syscalls.join("|")})\\((\\d+)`, "g");
  for (const match of fs.readFileSync(log, "utf8").matchAll(pattern)) {
    perFd.set(match[1], (perFd.get(match[1]) ?? 0) + 1);
  }
  return perFd;
}

/**
 * The record of id `id`: `{"id":id,"pad":"xx…"}` and a line feed, `bytes` long in all (the C
 * floor of `bench/peers_floor.c` writes the same bytes).
 */
export function record(id: number, bytes: number = RECORD_BYTES): string {
  const head = `{"id":${id},"pad":"`;
  return head + "x".repeat(Math.max(0, bytes - head.length - 3)) + `"}\n`;
}

/** The id of `line` (a record with its line feed) if it is exactly the record the bench sends, else undefined. */
export function recordId(line: string, bytes: number = RECORD_BYTES): number | undefined {
  const match = /^\{"id":(\d+),/.exec(line);
  if (match === null) return undefined;
  const id = Number(match[1]);
  return line === record(id, bytes) ? id : undefined;
}

/** Ids of the records in `text` (whole lines, each below `sent`); throws on anything else. */
export function recordIds(text: string, sent: number, where: string, bytes: number = RECORD_BYTES): number[] {
  if (text !== "" && !text.endsWith("\n")) throw new Error(`${where} ends with a torn record`);
  const lines = text === "" ? [] : text.slice(0, -1).split("\n");
  return lines.map((line, index) => {
    const id = recordId(line + "\n", bytes);
    if (id === undefined || id >= sent) {
      throw new Error(`${where}: record ${index} is not one the bench sent: ${JSON.stringify(line.slice(0, 200))}`);
    }
    return id;
  });
}

/** The `q` quantile of sorted values (nearest rank). */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

/** Utime + stime of a process, in clock ticks, from /proc/<pid>/stat. */
export function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces), from field 3 (state) on.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

/** Clock ticks per second (`getconf CLK_TCK`). */
export function clockTicks(): number {
  const result = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
  const ticks = Number(result.stdout.trim());
  return Number.isInteger(ticks) && ticks > 0 ? ticks : 100;
}

/** `--name=value` as a list, checked against `allowed`. */
export function listOption<T extends string | number>(
  args: string[],
  name: string,
  allowed: readonly T[],
  fallback: readonly T[],
): T[] {
  const raw = stringOption(args, name);
  if (raw === undefined) return [...fallback];
  return raw.split(",").map((item) => {
    const value = allowed.find((each) => String(each) === item);
    if (value === undefined) {
      throw new TypeError(`Invalid ${name}: expected one of ${allowed.join(", ")}, received ${JSON.stringify(item)}`);
    }
    return value;
  });
}

/** `--name=value` as a positive integer. */
export function numberOption(args: string[], name: string, fallback: number): number {
  const raw = stringOption(args, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new RangeError(`Invalid ${name}: expected a positive integer, received ${JSON.stringify(raw)}`);
  }
  return value;
}

/** `--name=value`, or undefined. */
export function stringOption(args: string[], name: string): string | undefined {
  const prefix = `--${name}=`;
  return args.findLast((arg) => arg.startsWith(prefix))?.slice(prefix.length);
}

/** What a child printed, and how it ended. */
export interface Finished {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: string | null;
  timedOut: boolean;
}

/** Runs a command to its end (killed after `timeoutMs`), keeping its stdout and stderr. */
export function runToEnd([command, ...rest]: string[], timeoutMs: number): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, rest, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => stdout += chunk);
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => stderr += chunk);
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`${command} could not run: ${error.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code, signal, timedOut });
    });
  });
}

/**
 * Compiles the C program `source` (a file in bench/) into `dir` with gcc; returns the program's
 * path, or why it cannot be built here.
 */
export function buildC(
  source: string,
  dir: string,
  flags: readonly string[] = [],
): { program: string } | { why: string } {
  const program = path.join(dir, path.basename(source, ".c"));
  const file = path.join(ROOT, "bench", source);
  const built = spawnSync("gcc", ["-O2", "-Wall", "-o", program, file, ...flags], { encoding: "utf8" });
  if (built.status === 0) return { program };
  if (built.error !== undefined) return { why: "gcc is not installed" };
  return { why: `${source} does not build: ${built.stderr.trim().split("\n")[0]}` };
}
