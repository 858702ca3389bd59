/**
 * Soak: `--ops` fdatasync calls (1,000,000 by default) on files in /dev/shm, `--in-flight` of
 * them (256) in flight at once, each on its own file. Every `--every` operations (100,000) it
 * prints a JSON line with the RSS and `stats()`, measured after a full garbage collection where
 * the runtime allows one (Deno with `--v8-flags=--expose-gc`, Bun always), so that the figure
 * is memory still held rather than garbage not yet collected. It fails (exit code 1) if the RSS
 * grew by more than `--max-growth-mib` (16) after the warm-up (the first report at or after
 * `--warmup` operations, `--every` by default), or if anything is left in flight or allocated
 * at the end. The warm-up lets the runtime's heap and glibc's AIO threads (and their cached
 * stacks) reach their working size.
 *
 * ```sh
 * deno run --allow-all --v8-flags=--expose-gc bench/soak.ts [--ops=1000000] [--in-flight=256] [--every=100000]
 * bun bench/soak.ts --ops=50000 --every=10000 --warmup=20000
 * ```
 *
 * @module
 */

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { fdatasync, stats, target } from "../mod.ts";

function option(name: string, fallback: number): number {
  const raw = process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
  const value = raw === undefined ? fallback : Number(raw);
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(`Invalid --${name}: expected a positive integer, received ${raw}`);
  }
  return value;
}

const ops = option("ops", 1_000_000);
const inFlight = option("in-flight", 256);
const every = option("every", 100_000);
const maxGrowth = option("max-growth-mib", 16) * 2 ** 20;
const warmup = option("warmup", every);

const base = fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
const dir = fs.mkdtempSync(path.join(base, "posix-aio-soak-"));
const fds = Array.from({ length: inFlight }, (_, i) => fs.openSync(path.join(dir, `f${i}`), "w"));
let started = 0;
let done = 0;
let failed = 0;
let baseline: number | undefined;
let worst = 0;
const start = performance.now();

/** A full collection, where the runtime allows one. */
function collect(): boolean {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  const gc = (globalThis as { gc?: () => void }).gc;
  if (bun !== undefined) bun.gc(true);
  else if (gc !== undefined) gc();
  return bun !== undefined || gc !== undefined;
}

function report(): void {
  const collected = collect();
  const { rss } = process.memoryUsage();
  if (done >= warmup) {
    baseline ??= rss;
    worst = Math.max(worst, rss - baseline);
  }
  const line = {
    runtime: target.runtime,
    completion: target.completion,
    done,
    failed,
    rss_mib: Math.round(rss / 2 ** 10) / 2 ** 10,
    growth_mib: baseline === undefined ? null : Math.round((rss - baseline) / 2 ** 10) / 2 ** 10,
    collected,
    us_per_op: Math.round((performance.now() - start) * 1000 / done * 100) / 100,
    ...stats(),
  };
  console.log(JSON.stringify(line));
}

async function lane(fd: number): Promise<void> {
  while (started < ops) {
    started++;
    try {
      await fdatasync(fd);
    } catch {
      failed++;
    }
    if (++done % every === 0) report();
  }
}

await Promise.all(fds.map(lane));
for (const fd of fds) fs.closeSync(fd);
fs.rmSync(dir, { recursive: true, force: true });
// A block still listed by an aio_suspend call off the JavaScript thread is freed when it returns.
for (let i = 0; i < 200 && stats().allocated > 0; i++) await new Promise((resolve) => setTimeout(resolve, 5));
const end = stats();
const ok = failed === 0 && end.pending === 0 && end.allocated === 0 && worst <= maxGrowth;
console.log(JSON.stringify({
  runtime: target.runtime,
  ops: done,
  failed,
  max_growth_mib: Math.round(worst / 2 ** 10) / 2 ** 10,
  limit_mib: maxGrowth / 2 ** 20,
  ...end,
  ok,
}));
if (!ok) process.exit(1);
