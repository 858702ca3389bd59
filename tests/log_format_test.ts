/**
 * The framed log format on real files: its bytes as the README documents them, `readLog()` and
 * `openLog()` against what a crash leaves (space allocated ahead, a torn last record, a record
 * whose sectors were not all written) and against corruption (which is an error naming its
 * offset, never skipped), records of any bytes and size, and the space allocated ahead (its
 * size, and a disk that fills up while allocating).
 *
 * @module
 */

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { AioError, CorruptLogError, openLog, readLog } from "../mod.ts";
import { crc32c, encodeFrame, encodeHeader, frameSize, HEADER_SIZE, maskCrc } from "../src/log_format.ts";
import { test } from "./harness.ts";
import {
  emulator,
  hasProgram,
  lastJson,
  quiescent,
  root,
  run,
  runtimeCommand,
  until,
  withDir,
  within,
} from "./helpers.ts";
import { type Call, fdOf, parseTrace } from "./trace.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function records(file: string, chunkSize?: number): Promise<string[]> {
  const all: string[] = [];
  for await (const record of readLog(file, { chunkSize })) all.push(decoder.decode(record));
  return all;
}

async function outcome(promise: Promise<unknown>): Promise<unknown> {
  return await promise.then(() => "resolved", (error) => error);
}

/** A framed log file made by hand: the header, then a frame per record, then `tail`. */
function handMade(file: string, items: (string | Uint8Array)[], tail: Uint8Array = new Uint8Array(0)): number[] {
  const bytes = items.map((item) => typeof item === "string" ? encoder.encode(item) : item);
  const size = HEADER_SIZE + bytes.reduce((sum, item) => sum + frameSize(item.length), 0);
  const buffer = new Uint8Array(size + tail.length);
  buffer.set(encodeHeader());
  const offsets: number[] = [];
  const view = new DataView(buffer.buffer);
  let at = HEADER_SIZE;
  for (const item of bytes) {
    offsets.push(at);
    at = encodeFrame(buffer, view, at, item);
  }
  buffer.set(tail, at);
  fs.writeFileSync(file, buffer);
  return offsets;
}

test("CRC32C: the Castagnoli check values, continued over parts, and LevelDB's mask", () => {
  assert.equal(crc32c(encoder.encode("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa, "32 zero bytes (RFC 3720)");
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43, "32 bytes of 0xff (RFC 3720)");
  const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
  assert.equal(crc32c(ascending), 0x46dd794e, "32 ascending bytes (RFC 3720)");
  const text = encoder.encode("The quick brown fox jumps over the lazy dog, and then some more bytes");
  for (let cut = 0; cut <= text.length; cut++) {
    assert.equal(crc32c(text.subarray(cut), crc32c(text.subarray(0, cut))), crc32c(text), `cut at ${cut}`);
  }
  assert.equal(maskCrc(0), 0xa282ead8);
  assert.equal(maskCrc(0xe3069283), ((((0xe3069283 >>> 15) | (0xe3069283 << 17)) >>> 0) + 0xa282ead8) % 2 ** 32);
});

test("the framed format byte by byte, as the README documents it", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "bytes.log");
    const log = await openLog(file, { preallocate: false });
    await log.append("hello");
    await log.append(new Uint8Array(0));
    await log.close();
    const bytes = new Uint8Array(fs.readFileSync(file));
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    // Header: magic "\x89AIOLOG\n", version 1, masked CRC32C of the 12 bytes before.
    assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x41, 0x49, 0x4f, 0x4c, 0x4f, 0x47, 0x0a]);
    assert.equal(view.getUint32(8, true), 1);
    assert.equal(view.getUint32(12, true), maskCrc(crc32c(bytes.subarray(0, 12))));
    // "hello": length 5, masked CRC32C of the length bytes then the record, the record, 3 bytes of padding.
    assert.equal(view.getUint32(16, true), 5);
    assert.equal(view.getUint32(20, true), maskCrc(crc32c(encoder.encode("hello"), crc32c(bytes.subarray(16, 20)))));
    assert.equal(decoder.decode(bytes.subarray(24, 29)), "hello");
    assert.deepEqual([...bytes.subarray(29, 32)], [0, 0, 0]);
    // The empty record: length 0 and a checksum that is not 0, so its header is never all zeros.
    assert.equal(view.getUint32(32, true), 0);
    assert.equal(view.getUint32(36, true), maskCrc(crc32c(new Uint8Array(4))));
    assert.notEqual(view.getUint32(36, true), 0);
    assert.equal(bytes.length, 40, "nothing after the last frame without preallocation");
  });
  await quiescent();
});

test("framed: records of any bytes come back as appended, at every chunk size; long records too", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "any.log");
    const inner = path.join(dir, "inner.log");
    handMade(inner, ["a", "b"]);
    const framedInside = new Uint8Array(fs.readFileSync(inner)); // a whole framed log as one record
    const items: Uint8Array[] = [
      encoder.encode("line\nwith\nnewlines\n"),
      new Uint8Array(0),
      new Uint8Array(1000), // zeros, more than a sector's worth
      encodeHeader(), // a log's own header inside a record
      Uint8Array.from({ length: 256 }, (_, i) => i),
      new Uint8Array(5 * 2 ** 20).map((_, i) => (i * 31) & 0xff), // past what a batch writes directly
      framedInside,
      encoder.encode("é ✓ 🙂"),
    ];
    const log = await openLog(file, { preallocate: 4096 });
    await Promise.all(items.slice(0, 4).map((item) => log.append(item)));
    for (const item of items.slice(4)) await log.append(item);
    await log.close();
    for (const chunkSize of [1, 3, 8, 9, 100, 4096, 65536]) {
      const read: Uint8Array[] = [];
      for await (const record of readLog(file, { chunkSize })) read.push(record);
      assert.equal(read.length, items.length, `chunkSize ${chunkSize}`);
      read.forEach((record, i) => assert.deepEqual(record, items[i], `record ${i}, chunkSize ${chunkSize}`));
    }
  });
  await quiescent();
});

test("framed: a record over 2,147,483,647 bytes rejects with a RangeError naming it, nothing copied", async () => {
  await withDir(async (dir) => {
    const log = await openLog(path.join(dir, "big.log"));
    // 2 GiB of zeros, never touched: the check comes before any copy.
    const huge = new Uint8Array(2 ** 31);
    const error = await outcome(log.append(huge));
    assert.ok(error instanceof RangeError);
    assert.match(
      error.message,
      /^Invalid data: a record of a framed log holds at most 2147483647 bytes, received 2147483648/,
    );
    await log.append("still fine");
    await log.close();
    assert.deepEqual(await records(path.join(dir, "big.log")), ["still fine"]);
  });
  await quiescent();
});

test("framed: the space allocated ahead reads as the end; the file's size includes it", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "ahead.log");
    const log = await openLog(file, { preallocate: 8192 });
    assert.equal(fs.statSync(file).size, HEADER_SIZE + 8192, "the first chunk, allocated before the log resolved");
    const all: string[] = [];
    for (let i = 0; i < 600; i++) {
      const record = `record ${i} `.padEnd(40, "x");
      all.push(record);
      await log.append(record);
      const { size } = fs.statSync(file);
      const end = HEADER_SIZE + (i + 1) * frameSize(40);
      assert.ok(size >= end, `the size covers the records (${size} >= ${end})`);
    }
    await log.close();
    const { size } = fs.statSync(file);
    const end = HEADER_SIZE + 600 * frameSize(40);
    assert.ok(size > end && size <= end + 2 * 8192, `allocated ahead: ${size} after ${end} bytes of records`);
    assert.deepEqual(await records(file), all, "zeros after the records are the end, not records");
    // Reopening cuts the space allocated ahead, allocates again, and appends after the records.
    const again = await openLog(file, { preallocate: 8192 });
    assert.equal(fs.statSync(file).size, end + 8192);
    await again.append("after");
    await again.close();
    assert.deepEqual(await records(file), [...all, "after"]);
    // Without preallocation the size is the records' end.
    const bare = path.join(dir, "bare.log");
    const plain = await openLog(bare, { preallocate: false });
    await plain.append("one");
    await plain.close();
    assert.equal(fs.statSync(bare).size, HEADER_SIZE + frameSize(3));
  });
  await quiescent();
});

test("framed: what a crash can leave at the end is never read, and is cut durably before new appends", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "torn.log");
    const frame = (record: string): Uint8Array => {
      const bytes = new Uint8Array(frameSize(record.length));
      encodeFrame(bytes, new DataView(bytes.buffer), 0, encoder.encode(record));
      return bytes;
    };
    const whole = frame("x".repeat(2000));
    const cases: [string, Uint8Array][] = [
      ["a write cut short: the frame runs past the end", whole.subarray(0, 1000)],
      ["zeros after the records (space allocated ahead)", new Uint8Array(4096)],
      ["a few bytes, less than a frame header", Uint8Array.of(7, 0, 0)],
      [
        "a frame whose sector was not written (zeros) and does not match",
        whole.map((b, i) => i >= 512 && i < 1536 ? 0 : b),
      ],
      ["a bad frame with nothing valid after it", whole.map((b, i) => i === 100 ? b ^ 1 : b)],
      ["a header that was written, its record not", whole.map((b, i) => i >= 8 ? 0 : b)],
      // The torn batch, then a later batch that reached the disk: zeros where the first was.
      [
        "zeros, then frames of a later batch",
        Uint8Array.from([...new Uint8Array(600), ...frame("late"), ...frame("later")]),
      ],
      // A batch whose middle sector was never written, and a later batch that was.
      [
        "a frame with an unwritten sector, then a later batch",
        Uint8Array.from([...whole.map((b, i) => i >= 512 && i < 1536 ? 0 : b), ...frame("late")]),
      ],
    ];
    for (const [what, tail] of cases) {
      fs.rmSync(file, { force: true });
      handMade(file, ["one", "two"], tail);
      assert.deepEqual(await records(file), ["one", "two"], `readLog stops: ${what}`);
      const log = await openLog(file, { preallocate: false });
      const end = HEADER_SIZE + 2 * frameSize(3);
      assert.equal(fs.statSync(file).size, end, `cut at the end of the last record: ${what}`);
      await log.append("three");
      await log.close();
      assert.deepEqual(await records(file), ["one", "two", "three"], `appended after it: ${what}`);
    }
    // A file a crash left with zeros where the header goes (or nothing at all) is a new log.
    fs.writeFileSync(file, new Uint8Array(100));
    const fresh = await openLog(file);
    await fresh.append("first");
    await fresh.close();
    assert.deepEqual(await records(file), ["first"]);
  });
  await quiescent();
});

test("framed: a corrupted record before valid ones is a CorruptLogError naming its offset, never skipped", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "bad.log");
    const flips: [string, (offsets: number[]) => number][] = [
      ["a byte of a record", (offsets) => offsets[1] + 8 + 2],
      ["its checksum", (offsets) => offsets[1] + 5],
      ["its length", (offsets) => offsets[1]],
      ["its length's reserved bit", (offsets) => offsets[1] + 3],
    ];
    for (const [what, where] of flips) {
      const offsets = handMade(file, ["zero", "one!", "two", "three"]);
      const bytes = fs.readFileSync(file);
      bytes[where(offsets)] ^= what.includes("reserved") ? 0x80 : 0x01;
      fs.writeFileSync(file, bytes);
      const seen: string[] = [];
      const reading = (async () => {
        for await (const record of readLog(file)) seen.push(decoder.decode(record));
      })();
      const error = await outcome(reading);
      assert.ok(error instanceof CorruptLogError, `readLog: ${what}: ${error}`);
      assert.equal(error.offset, offsets[1], what);
      assert.equal(error.path, file);
      assert.match(error.message, new RegExp(`at offset ${offsets[1]}`));
      assert.deepEqual(seen, ["zero"], `the records before it were read: ${what}`);
      const opened = await outcome(openLog(file));
      assert.ok(opened instanceof CorruptLogError && opened.offset === offsets[1], `openLog rejects: ${what}`);
      assert.deepEqual([...fs.readFileSync(file)], [...bytes], `openLog changed nothing: ${what}`);
    }
  });
  await quiescent();
});

test("framed: a file that is not a framed log, or of another version, rejects naming what it is", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "text.log");
    fs.writeFileSync(file, "a plain line\n");
    const error = await outcome(openLog(file));
    assert.ok(error instanceof CorruptLogError);
    assert.equal(error.offset, 0);
    assert.match(error.message, /format: "plain"/);
    assert.equal(fs.readFileSync(file, "utf8"), "a plain line\n", "untouched");
    // readLog reads it as plain text unless told it is framed.
    assert.deepEqual(await records(file), ["a plain line"]);
    assert.ok((await outcome(readLog(file, { format: "framed" }).next())) instanceof CorruptLogError);
    const header = encodeHeader();
    new DataView(header.buffer).setUint32(8, 2, true);
    new DataView(header.buffer).setUint32(12, maskCrc(crc32c(header.subarray(0, 12))), true);
    fs.writeFileSync(file, header);
    const version = await outcome(openLog(file));
    assert.ok(version instanceof CorruptLogError && version.offset === 8 && /version is 2/.test(version.message));
  });
  await quiescent();
});

test("openLog() and readLog(): options are checked, naming the option", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "options.log");
    const cases: [() => Promise<unknown>, new(...args: never[]) => Error, RegExp][] = [
      [
        () => openLog(file, { format: "json" as "plain" }),
        TypeError,
        /^Invalid options\.format: expected "framed" or "plain", received "json"/,
      ],
      [() => openLog(file, { separator: "\n" }), TypeError, /^Invalid options\.separator: a framed log/],
      [
        () => openLog(file, { preallocate: 100 }),
        RangeError,
        /^Invalid options\.preallocate: expected an integer from 4096/,
      ],
      [() => openLog(file, { preallocate: "1M" as unknown as number }), TypeError, /^Invalid options\.preallocate/],
      [() => openLog(file, { format: "plain", preallocate: 65536 }), RangeError, /only the framed format/],
      [() => readLog(file, { format: "framed", separator: "\n" }).next(), TypeError, /^Invalid options\.separator/],
      [() => readLog(file, { format: 7 as unknown as "plain" }).next(), TypeError, /^Invalid options\.format/],
    ];
    for (const [call, type, pattern] of cases) {
      const error = await outcome(call());
      assert.ok(error instanceof type, `${pattern}: ${error}`);
      assert.match((error as Error).message, pattern);
    }
    assert.ok(!fs.existsSync(file), "no file made by a call with bad options");
  });
  await quiescent();
});

/** Whether this process may mount a small tmpfs (root, with mount(2) allowed). */
function canMount(): string | false {
  if (process.getuid?.() !== 0) return "needs root to mount a small tmpfs";
  if (!hasProgram("mount") || !hasProgram("umount")) return "mount is not installed";
  return false;
}

test(
  "framed: a disk that fills up while the log allocates ahead fails the log with ENOSPC; nothing acknowledged is lost",
  async () => {
    await withDir(async (dir) => {
      const mount = path.join(dir, "small");
      fs.mkdirSync(mount);
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mount]);
      try {
        const file = path.join(mount, "full.log");
        const log = await openLog(file, { preallocate: 64 * 1024 });
        const acknowledged: string[] = [];
        let failure: unknown;
        for (let i = 0; i < 100_000 && failure === undefined; i++) {
          const record = `record ${i} `.padEnd(200, "x");
          await log.append(record).then(() => acknowledged.push(record), (error) => failure = error);
        }
        assert.ok(failure instanceof AioError, `the log failed: ${failure}`);
        assert.equal(failure.code, "ENOSPC");
        assert.equal(failure.path, file);
        assert.ok(acknowledged.length > 100, `records fitted before (${acknowledged.length})`);
        // It failed allocating ahead, while its records still had room: the 256 KiB were not full of them.
        const written = HEADER_SIZE + acknowledged.length * frameSize(200);
        assert.ok(written < 256 * 1024 - 32 * 1024, `the log failed allocating, ${written} bytes of records in`);
        assert.equal(await outcome(log.append("later")), failure, "the failure is final");
        await within(log.close(), 10_000, "close()");
        const back = await records(file);
        assert.deepEqual(back.slice(0, acknowledged.length), acknowledged, "every acknowledged record reads back");
        assert.ok(back.length <= acknowledged.length + 1, "at most the failed batch after them");
      } finally {
        execFileSync("umount", [mount]);
      }
    });
    await quiescent();
  },
  { skip: canMount() },
);

test("framed: where fallocate is refused (EOPNOTSUPP), zeros allocate the space ahead and the log works", async () => {
  // strace makes fallocate(2) fail with EOPNOTSUPP (a file system without it) in a child.
  await withDir(async (dir) => {
    const file = path.join(dir, "zeros.log");
    const script = path.join(dir, "zeros.ts");
    fs.writeFileSync(
      script,
      `import { openLog, readLog } from ${JSON.stringify(path.join(root, "mod.ts"))};
const log = await openLog(${JSON.stringify(file)}, { preallocate: 65536 });
for (let i = 0; i < 2000; i++) await log.append("record " + i);
await log.close();
let count = 0;
for await (const _ of readLog(${JSON.stringify(file)})) count++;
console.log(JSON.stringify({ count }));`,
    );
    const trace = path.join(dir, "trace");
    const strace = ["strace", "-f", "--seccomp-bpf", "-qq", "-o", trace, "-e", "trace=fallocate"];
    const inject = ["-e", "inject=fallocate:error=EOPNOTSUPP"];
    const result = await run([...strace, ...inject, ...runtimeCommand(script)]);
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(lastJson(result), { count: 2000 });
    const refused = fs.readFileSync(trace, "utf8").match(/fallocate\(.*EOPNOTSUPP/g) ?? [];
    assert.ok(refused.length >= 2, `fallocate was tried and refused for each chunk (${refused.length})`);
    const { size } = fs.statSync(file);
    assert.ok(size >= HEADER_SIZE + 2000 * 16 + 65536 / 2, `zeros written ahead of the records (size ${size})`);
  });
  await quiescent();
}, { skip: hasProgram("strace") ? false : "strace is not installed" });

for (const format of ["framed", "plain"] as const) {
  test(`${format}: a writer killed mid-batch leaves a log that reads to its end, every acknowledged record in it`, async () => {
    await withDir(async (dir) => {
      const file = path.join(dir, "log");
      // Fewer rounds under an emulator, where starting a runtime takes 10-15 s.
      for (let round = 0; round < (emulator === undefined ? 4 : 1); round++) {
        fs.rmSync(path.join(dir, "acks"), { force: true });
        const child = spawn(runtimeCommand(path.join(root, "tests", "fixtures", "log_killed.ts"))[0], [
          ...runtimeCommand(path.join(root, "tests", "fixtures", "log_killed.ts")).slice(1),
          dir,
          format,
          `${round * 1_000_000}`,
        ], { stdio: "ignore" });
        // Killed once it has acknowledged some records: at a random point of a batch.
        const wanted = 50 + round * 200;
        await until(
          () =>
            fs.existsSync(path.join(dir, "acks"))
            && fs.readFileSync(path.join(dir, "acks"), "utf8").split("\n").length > wanted,
          `${wanted} acknowledgements`,
        );
        child.kill("SIGKILL");
        await new Promise((resolve) => child.once("exit", resolve));
        const acked = fs.readFileSync(path.join(dir, "acks"), "utf8").split("\n").filter(Boolean).map(Number);
        const seen = new Map<number, number>();
        for await (const bytes of readLog(file)) {
          const text = decoder.decode(bytes);
          for (const match of text.matchAll(/<(\d+):(\d+):x*>/g)) {
            assert.equal(match[0].length + 1, Number(match[2]), `record ${match[1]} is whole`);
            seen.set(Number(match[1]), (seen.get(Number(match[1])) ?? 0) + 1);
          }
        }
        for (const id of acked) {
          assert.equal(seen.get(id), 1, `acknowledged record ${id} is in the log once (round ${round})`);
        }
        // Reopened (plain: cutting a torn record at the last separator), it appends after what is there.
        const log = await openLog(file, format === "plain" ? { format, separator: "\n" } : { format });
        await log.append(`<after${round}>\n`);
        await log.close();
        const last: string[] = [];
        for await (const bytes of readLog(file)) last.push(decoder.decode(bytes));
        assert.equal(last.at(-1), format === "plain" ? `<after${round}>` : `<after${round}>\n`);
      }
    });
    await quiescent();
  });
}

test("framed: chunks allocated ahead one after another under 16 writers: no record lands where zeros are being written", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "chunks.log");
    // 4 KiB chunks: an allocation (and its zeros) every 36 records, while 16 writers append.
    const log = await openLog(file, { preallocate: 4096 });
    const appended: string[][] = Array.from({ length: 16 }, () => []);
    await Promise.all(appended.map(async (mine, writer) => {
      for (let i = 0; i < 150; i++) {
        const record = `<${writer}.${i}>`.padEnd(100, "-");
        mine.push(record);
        await log.append(record);
      }
    }));
    await log.close();
    const back = await records(file);
    assert.equal(back.length, 16 * 150, "every record reads back");
    for (const [writer, mine] of appended.entries()) {
      assert.deepEqual(back.filter((record) => record.startsWith(`<${writer}.`)), mine, `writer ${writer}'s in order`);
    }
  });
  await quiescent();
});

test(
  "framed on Linux: the zeros written over allocated space go through a descriptor of their own, synced piece by piece",
  async () => {
    await withDir(async (dir) => {
      const file = path.join(dir, "zeros.log");
      const script = path.join(dir, "zeros.ts");
      fs.writeFileSync(
        script,
        `import { openLog } from ${JSON.stringify(path.join(root, "mod.ts"))};
const log = await openLog(${JSON.stringify(file)}, { preallocate: 1 << 20 });
for (let i = 0; i < 100; i++) await log.append("record " + i);
await log.close();`,
      );
      const trace = path.join(dir, "trace");
      const strace = ["strace", "-f", "--seccomp-bpf", "-qq", "-o", trace, "-P", file];
      const result = await run([
        ...strace,
        "-e",
        "trace=openat,open,pwrite64,fallocate,fdatasync",
        ...runtimeCommand(script),
      ]);
      assert.equal(result.status, 0, result.stderr);
      const calls = parseTrace(fs.readFileSync(trace, "utf8"));
      const opened = calls.filter((call) => /^open/.test(call.name) && /^\d+$/.test(call.ret)).map((call) =>
        Number(call.ret)
      );
      assert.equal(opened.length, 2, "the log's descriptor, and one for the zeros");
      const [log, zeros] = opened;
      const on = (fd: number, name: string): Call[] => calls.filter((call) => call.name === name && fdOf(call) === fd);
      assert.equal(on(log, "fallocate").length, 1, "the first chunk allocated through the log's descriptor");
      const pieces = on(zeros, "pwrite64");
      assert.equal(pieces.length, 4, "1 MiB of zeros in 256 KiB pieces");
      assert.ok(pieces.every((call) => /\\0\\0\\0/.test(call.args) && call.ret === "262144"), "zeros");
      assert.equal(on(zeros, "fdatasync").length, 4, "each piece synced");
      const records = on(log, "pwrite64").filter((call) => call.args.includes("record "));
      assert.ok(
        records.length >= 1 && records[0].entry > pieces[3].exit,
        "records written after the zeros, on the log's descriptor",
      );
    });
    await quiescent();
  },
  { skip: hasProgram("strace") ? (process.platform === "linux" ? false : "Linux only") : "strace is not installed" },
);
