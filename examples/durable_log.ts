/**
 * A durable append-only log with group commit: 1,000 records appended by 50 concurrent writers,
 * each append resolving once its record is durable. Appends that arrive while a batch is being
 * synced share the next write and the next `fdatasync`, so the log needs far fewer syncs than
 * records. Prints what it wrote, how many batches that took, how long appends waited, and which
 * C library and completion strategy did the work; then reads the records back.
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
import { openLog, readLog, stats, target } from "../mod.ts";

const WRITERS = 50;
const RECORDS_PER_WRITER = 20;

const file = process.argv[2] ?? path.join(os.tmpdir(), `durable-log-${process.pid}.log`);
const keep = process.argv[2] !== undefined;
const waits: number[] = [];
let bytes = 0;

const log = await openLog(file);
const writer = async (id: number): Promise<void> => {
  for (let record = 0; record < RECORDS_PER_WRITER; record++) {
    const json = JSON.stringify({ writer: id, record, at: new Date().toISOString() });
    bytes += new TextEncoder().encode(json).length;
    const start = performance.now();
    await log.append(json); // this record now survives a crash or a power cut
    waits.push(performance.now() - start);
  }
};
const start = performance.now();
await Promise.all(Array.from({ length: WRITERS }, (_, id) => writer(id)));
const elapsed = performance.now() - start;
await log.close();

// Each record comes back as appended (its length and CRC32C checked), in call order.
let read = 0;
for await (const record of readLog(file)) {
  JSON.parse(new TextDecoder().decode(record));
  read++;
}

waits.sort((a, b) => a - b);
const ms = (value: number): string => `${value.toFixed(3)} ms`;
console.log(`wrote ${WRITERS * RECORDS_PER_WRITER} records (${bytes} bytes) to ${file} in ${ms(elapsed)}`);
console.log(`${WRITERS} writers, each awaiting every append before the next`);
console.log(`append until durable: median ${ms(waits[waits.length >> 1])}, slowest ${ms(waits.at(-1)!)}`);
console.log(`read back ${read} records with readLog()`);
console.log(`runtime ${target.runtime} on ${target.os}-${target.arch}`);
console.log(`C library ${target.library} (${target.libc}), completion strategy "${target.completion}"`);
console.log(`still in flight: ${stats().pending}, control blocks allocated: ${stats().allocated}`);
if (!keep) fs.rmSync(file);
