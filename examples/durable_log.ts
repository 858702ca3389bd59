/**
 * A durable append-only log: records are appended in batches and each batch is made durable
 * with `fdatasync` before the next one starts. Prints what it wrote, how long the syncs took,
 * and which C library and completion strategy did the work.
 *
 * ```sh
 * deno run --allow-ffi --allow-read --allow-write --allow-env examples/durable_log.ts [file]
 * bun examples/durable_log.ts [file]
 * ```
 *
 * @module
 */

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { fdatasync, stats, target } from "../mod.ts";

const BATCHES = 20;
const RECORDS_PER_BATCH = 50;

const file = process.argv[2] ?? path.join(os.tmpdir(), `durable-log-${process.pid}.log`);
const keep = process.argv[2] !== undefined;
const fd = fs.openSync(file, "a");
const encoder = new TextEncoder();
const timings: number[] = [];
let bytes = 0;

for (let batch = 0; batch < BATCHES; batch++) {
  for (let record = 0; record < RECORDS_PER_BATCH; record++) {
    const line = JSON.stringify({ batch, record, at: new Date().toISOString() }) + "\n";
    bytes += fs.writeSync(fd, encoder.encode(line));
  }
  const start = performance.now();
  await fdatasync(fd); // every record of this batch now survives a crash or power loss
  timings.push(performance.now() - start);
}
fs.closeSync(fd);

timings.sort((a, b) => a - b);
const ms = (value: number): string => `${value.toFixed(3)} ms`;
const total = timings.reduce((sum, value) => sum + value, 0);
console.log(`wrote ${BATCHES * RECORDS_PER_BATCH} records (${bytes} bytes) to ${file}`);
console.log(`in ${BATCHES} batches, each made durable with fdatasync before the next`);
console.log(
  `fdatasync: total ${ms(total)}, median ${ms(timings[timings.length >> 1])}, slowest ${ms(timings.at(-1)!)}`,
);
console.log(`runtime ${target.runtime} on ${target.os}-${target.arch}`);
console.log(`C library ${target.library} (${target.libc}), completion strategy "${target.completion}"`);
console.log(`still in flight: ${stats().pending}, control blocks allocated: ${stats().allocated}`);
if (!keep) fs.rmSync(file);
