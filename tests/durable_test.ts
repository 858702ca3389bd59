/**
 * The durable layer on real files, in both runtimes: `open()`/AioFile, `openLog()`/`readLog()`,
 * `syncDir()`, `writeFileAtomic()`. strace proves the order of what reaches the kernel (each
 * acknowledged record written, then fdatasync(2) of that fd, before its promise resolved; for
 * the atomic replace: write, fdatasync, rename, fsync of the directory) and injects device
 * faults (EIO, ENOSPC) into the writes and syncs.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as fs from "node:fs";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { AioError, fdatasync, fsync, open, openLog, readLog, syncDir, target, writeFileAtomic } from "../mod.ts";
import { native } from "../src/target.ts";
import { test } from "./harness.ts";
import {
  emulator,
  hasProgram,
  lastJson,
  quiescent,
  root,
  run,
  runtimeCommand,
  tempDir,
  withDir,
  within,
} from "./helpers.ts";
import { type Call, parseTrace } from "./trace.ts";

const skip = hasProgram("strace") ? false : "strace is not installed";
const decoder = new TextDecoder();
const fixture = (name: string): string => path.join(root, "tests", "fixtures", name);

/** The fd returned by the first successful open of `file` after line `after`. */
function openedFd(calls: Call[], file: string, after = -1): { fd: number; call: Call } {
  const opens = calls.filter((call) =>
    (call.name === "openat" || call.name === "open") && call.args.includes(`"${file}"`) && /^\d+$/.test(call.ret)
    && call.entry > after
  );
  assert.ok(opens.length > 0, `no open of ${file} in the trace`);
  const call = opens[0];
  return { fd: Number(call.ret), call };
}

const onFd = (calls: Call[], names: string[], fd: number, after: number): Call[] =>
  calls.filter((call) => names.includes(call.name) && call.args.startsWith(`${fd}`) && call.entry > after)
    .filter((call) => new RegExp(`^${fd}(,|$)`).test(call.args));

/** Runs a fixture under strace; returns its result and the parsed trace. */
async function traced(name: string, options: string[], args: string[]) {
  const { dir, remove } = tempDir();
  try {
    const log = path.join(dir, "strace.log");
    const command = ["strace", "-f", "--seccomp-bpf", "-qq", "-s", "65536", "-o", log, ...options];
    const result = await run([...command, ...runtimeCommand(fixture(name)), ...args], { timeout: 90_000 });
    return { result, calls: parseTrace(fs.readFileSync(log, "utf8")) };
  } finally {
    remove();
  }
}

/** A way the log runs: its format, and whether small batches are written from the JavaScript thread. */
interface LogVariant {
  readonly format: "framed" | "plain";
  /** `direct`: as the log does (small batches from the JavaScript thread); `aio`: every batch with aio_write. */
  readonly path: "direct" | "aio";
}

/** Each format, each way of writing a batch. */
const LOG_VARIANTS: readonly LogVariant[] = [
  { format: "plain", path: "direct" },
  { format: "plain", path: "aio" },
  { format: "framed", path: "direct" },
  { format: "framed", path: "aio" },
];

const variantName = ({ format, path }: LogVariant): string =>
  `${format}, ${path === "direct" ? "direct write" : "aio_write"}`;

const variantFlags = ({ format, path }: LogVariant): string[] => [`--format=${format}`, `--path=${path}`];

/**
 * The log fixture in `mode` (tests/fixtures/durable_log.ts) under strace, writes and syncs of its
 * file traced, `inject` (an strace injection) applied to them. A framed log allocates nothing
 * ahead here: the zeros it writes and syncs over what it allocates (on a descriptor of its own)
 * would take the faults meant for its records; tests/log_format_test.ts covers that part.
 */
function tracedLog(dir: string, mode: string, inject: string, variant: LogVariant): ReturnType<typeof traced> {
  const options = ["-P", path.join(dir, "log"), "-e", "trace=pwrite64,write,fdatasync", "-e", `inject=${inject}`];
  return traced("durable_log.ts", options, [mode, dir, ...variantFlags(variant), "--preallocate=off"]);
}

/** The calls that wrote records (not a framed log's header) in a trace. */
const recordWrites = (calls: Call[], marker: string): Call[] =>
  calls.filter((call) => (call.name === "pwrite64" || call.name === "write") && call.args.includes(marker));

/** Skips a test whose strace injection counts calls (`when=1`): strace counts them per thread. */
const countsCalls = skip
  || (target.libc === "musl" ? "strace counts when=1 per thread; musl runs each request on a new thread" : false);

const outcome = (promise: Promise<unknown>): Promise<unknown> => promise.then(() => "resolved", (error) => error);

async function rejectsWith(
  promise: Promise<unknown>,
  type: abstract new(...args: never[]) => Error,
  pattern: RegExp,
): Promise<void> {
  const error = await outcome(promise);
  assert.ok(error instanceof type, `expected a ${type.name}, got ${error}`);
  assert.match((error as Error).message, pattern);
}

// ---------------------------------------------------------------------------------------------
// The proof, with strace.

for (const variant of LOG_VARIANTS) {
  test(
    `each acknowledged record was written, then fdatasync(2) of that fd returned, before its promise resolved (${
      variantName(variant)
    })`,
    async () => {
      await withDir(async (dir) => {
        const trace = "trace=pwrite64,write,fdatasync,fsync,openat,open";
        const { result, calls } = await traced("durable_log.ts", ["-e", trace], [
          "order",
          dir,
          ...variantFlags(variant),
        ]);
        assert.equal(result.status, 0, result.stderr);
        const report = lastJson<{ ids: string[]; exact: boolean; pending: number; allocated: number }>(result);
        assert.equal(report.exact, true, "the file is the records concatenated in call order");
        assert.deepEqual([report.pending, report.allocated], [0, 0]);
        const log = openedFd(calls, path.join(dir, "log"));
        const acks = openedFd(calls, path.join(dir, "acks"));
        const writes = recordWrites(onFd(calls, ["pwrite64", "write"], log.fd, log.call.exit), "<rec-");
        const syncs = onFd(calls, ["fdatasync"], log.fd, writes[0]?.entry ?? log.call.exit);
        const acked = onFd(calls, ["write", "pwrite64"], acks.fd, acks.call.exit);
        assert.equal(acked.length, 200, "200 acknowledgements");
        const dirOpen = openedFd(calls, dir, log.call.exit);
        const dirSync = onFd(calls, ["fsync"], dirOpen.fd, dirOpen.call.exit)[0];
        assert.ok(dirSync?.ret === "0", "openLog() created the file, so it synced the directory");
        assert.ok(dirSync.exit < Math.min(...acked.map((ack) => ack.entry)), "before any acknowledgement");
        assert.ok(
          writes.length >= 1 && writes.length <= 10,
          `10 ticks of appends make at most 10 batches (${writes.length})`,
        );
        assert.equal(syncs.length, writes.length, "one fdatasync per batch write");
        for (const ack of acked) {
          const id = /"ack ([\d.]+)\\n"/.exec(ack.args)![1];
          const holding = writes.filter((write) => write.args.includes(`<rec-${id};>`));
          assert.equal(holding.length, 1, `record ${id} is in exactly one write`);
          const [write] = holding;
          assert.ok(
            write.exit < ack.entry && /^\d+$/.test(write.ret),
            `record ${id}: its write returned before the ack`,
          );
          const length = Number(/, (\d+)(, \d+)?$/.exec(write.args)![1]);
          assert.equal(Number(write.ret), length, `record ${id}: the write was whole`);
          // The log may submit the sync before the write returned (features.fsync_after_queued_writes):
          // what counts is that libc ran the fdatasync(2) only after the pwrite64 of the record returned.
          const sync = syncs.find((sync) => sync.entry > write.exit && sync.exit < ack.entry && sync.ret === "0");
          assert.ok(
            sync !== undefined,
            `record ${id}: an fdatasync(${log.fd}) started after its write and returned 0 before the ack`,
          );
        }
      });
    },
    { skip },
  );
}

for (const format of ["framed", "plain"] as const) {
  test(
    `openLog() (${format}) on a file that exists already (created without a sync) syncs its directory before any acknowledgement`,
    async () => {
      await withDir(async (dir) => {
        const trace = "trace=pwrite64,write,fdatasync,fsync,openat,open";
        const { result, calls } = await traced("durable_log.ts", ["-e", trace], [
          "order",
          dir,
          "existing",
          `--format=${format}`,
        ]);
        assert.equal(result.status, 0, result.stderr);
        assert.equal(lastJson<{ exact: boolean }>(result).exact, true);
        const log = openedFd(calls, path.join(dir, "log"));
        const acks = openedFd(calls, path.join(dir, "acks"));
        const acked = onFd(calls, ["write", "pwrite64"], acks.fd, acks.call.exit);
        assert.equal(acked.length, 200, "200 acknowledgements");
        const dirOpen = openedFd(calls, dir, log.call.exit);
        const dirSync = onFd(calls, ["fsync"], dirOpen.fd, dirOpen.call.exit)[0];
        assert.ok(dirSync?.ret === "0", "the directory of the file found was synced");
        assert.ok(dirSync.exit < Math.min(...acked.map((ack) => ack.entry)), "before any acknowledgement");
      });
    },
    { skip },
  );
}

for (const format of ["framed", "plain"] as const) {
  test(
    `openLog() (${format}): on a slow device, writers that append again just after their batch share one batch per round`,
    async () => {
      await withDir(async (dir) => {
        // 16 writers, 10 rounds: each appends again a macrotask after its append resolved (as
        // clients of a server do). Without waiting for them, the first one back would start a
        // batch of its own and the others the next (19 syncs seen); the log waits a little for
        // the callers of the last batch instead.
        const options = ["-e", "trace=openat,open,fdatasync", "-e", "inject=fdatasync:delay_exit=1000"];
        const { result, calls } = await traced("durable_log.ts", options, ["clients", dir, `--format=${format}`]);
        assert.equal(result.status, 0, result.stderr);
        const report = lastJson<{ exact: boolean; pending: number; allocated: number }>(result);
        assert.equal(report.exact, true, "the file is the records in call order");
        assert.deepEqual([report.pending, report.allocated], [0, 0]);
        const log = openedFd(calls, path.join(dir, "log"));
        const syncs = onFd(calls, ["fdatasync"], log.fd, log.call.exit);
        assert.ok(
          syncs.length >= 10 && syncs.length <= 13,
          `10 rounds: 10 batches, a few more at most (${syncs.length})`,
        );
      });
    },
    {
      // Measured under qemu-aarch64 (Deno), the old log and the new alike: 19-20 syncs, the writers'
      // next appends come back later than the commit delay's bound (2 ms).
      skip: skip
        || (emulator === undefined
          ? false
          : `under ${emulator} the writers come back later than the commit delay's 2 ms`),
    },
  );
}

for (const link of [false, true]) {
  test(
    `writeFileAtomic${
      link ? " through a symbolic link into another directory" : ""
    }: write, fdatasync, rename, then fsync of the directory, before it resolves; the temporary file in the target's directory`,
    async () => {
      await withDir(async (dir) => {
        const trace = "trace=pwrite64,write,fdatasync,fsync,rename,renameat,renameat2,openat,open";
        const { result, calls } = await traced("durable_atomic.ts", ["-e", trace], link ? [dir, "link"] : [dir]);
        assert.equal(result.status, 0, result.stderr);
        assert.deepEqual(lastJson(result), {
          outcome: "ok",
          content: "new content",
          files: link ? ["marker", "sub", "target"] : ["marker", "target"],
          ...(link ? { link: true, inSub: ["target"] } : {}),
          pending: 0,
          allocated: 0,
        });
        // The file replaced, and its directory: the one the temporary file must be created in
        // (rename cannot cross file systems; a name beside the link would be renamed over it
        // from another directory), renamed in, and the directory synced.
        const home = link ? path.join(dir, "sub") : dir;
        const replaced = path.join(home, "target");
        const temp = calls.find((call) =>
          (call.name === "openat" || call.name === "open") && /\/\.target\.[0-9a-f]+\.tmp"/.test(call.args)
          && call.args.includes("O_EXCL")
        );
        assert.ok(temp !== undefined, "the temporary file is created exclusively");
        const tempPath = /"([^"]+\.tmp)"/.exec(temp.args)![1];
        assert.equal(path.dirname(tempPath), home, "in the directory of the file replaced");
        const tempFd = Number(temp.ret);
        const write = onFd(calls, ["pwrite64", "write"], tempFd, temp.exit).find((call) =>
          call.args.includes('"new content"')
        );
        assert.ok(write !== undefined && write.ret === "11", "the content is written to the temporary file");
        const sync = onFd(calls, ["fdatasync"], tempFd, write.exit)[0];
        assert.ok(sync !== undefined && sync.ret === "0", "then fdatasync of it");
        const rename = calls.find((call) => call.name.startsWith("rename") && call.entry > sync.exit);
        assert.ok(rename !== undefined && rename.ret === "0", "then the rename");
        const names = [...rename.args.matchAll(/"([^"]*)"/g)].map((match) => match[1]);
        assert.deepEqual(names, [tempPath, replaced], "of the temporary file over the file replaced");
        const dirOpen = openedFd(calls, home, rename.exit);
        const dirSync = onFd(calls, ["fsync"], dirOpen.fd, dirOpen.call.exit)[0];
        assert.ok(dirSync !== undefined && dirSync.ret === "0", "then fsync of that directory");
        const marker = openedFd(calls, path.join(dir, "marker"));
        const done = onFd(calls, ["write", "pwrite64"], marker.fd, marker.call.exit)[0];
        assert.ok(done !== undefined && dirSync.exit < done.entry, "all before the promise resolved");
      });
    },
    { skip },
  );
}

test(
  "writeFileAtomic: 40 calls made at once for one path resolve after two renames, the last content kept",
  async () => {
    await withDir(async (dir) => {
      const { result, calls } = await traced("atomic_coalesce.ts", ["-e", "trace=rename,renameat,renameat2"], [dir]);
      assert.equal(result.status, 0, result.stderr);
      assert.deepEqual(lastJson(result), { ok: 40, last: true, files: ["f.json"], pending: 0 });
      const renames = calls.filter((call) => call.args.includes(`${path.join(dir, "f.json")}"`));
      assert.equal(renames.length, 2, "the first call's content, then the latest of the 39 that waited");
    });
  },
  { skip },
);

test(
  "writeFileAtomic: 40 calls made at once, every other one through a symbolic link to the file, resolve after two renames, the last content kept",
  async () => {
    await withDir(async (dir) => {
      const trace = "trace=rename,renameat,renameat2";
      const { result, calls } = await traced("atomic_coalesce.ts", ["-e", trace], [dir, "link"]);
      assert.equal(result.status, 0, result.stderr);
      assert.deepEqual(lastJson(result), { ok: 40, last: true, files: ["f.json", "link.json"], pending: 0 });
      const renames = calls.filter((call) => call.name.startsWith("rename"));
      assert.equal(renames.length, 2, "one file: the first call's content, then the latest of the 39 that waited");
      for (const rename of renames) assert.ok(rename.args.includes(`${path.join(dir, "f.json")}"`), rename.args);
    });
  },
  { skip },
);

for (const variant of LOG_VARIANTS) {
  for (
    const [syscall, error] of [["write", "EIO"], ["write", "ENOSPC"], ["fdatasync", "EIO"], ["fdatasync", "ENOSPC"]]
  ) {
    // A plain log's file is opened O_APPEND: glibc's aio_write writes it with pwrite64, musl's
    // with write. A framed log's header is written with write: records always with pwrite64.
    const injected = syscall === "fdatasync" ? syscall : variant.format === "plain" ? "pwrite64,write" : "pwrite64";
    const direct = variant.path === "direct";
    test(
      `${error} injected into the log's ${syscall}${
        syscall === "write" && !direct ? " (100 ms late, the batch's sync queued behind it)" : ""
      } (${variantName(variant)}): every caller of the batch and every later append reject with it`,
      async () => {
        await withDir(async (dir) => {
          // A failing aio_write returns late, so the sync submitted right behind it is surely queued.
          const late = syscall === "write" ? ":delay_exit=100000" : "";
          const { result, calls } = await tracedLog(dir, "fault", `${injected}:error=${error}${late}`, variant);
          assert.equal(result.status, 0, result.stderr);
          const operation = syscall;
          assert.deepEqual(lastJson(result), {
            rejected: 10,
            failure: `${error}:${operation}:true`,
            sameError: true,
            laterSame: true,
            healthy: "ok",
            pending: 0,
            allocated: 0,
          });
          const writes = recordWrites(calls, "record ");
          const syncs = calls.filter((call) => call.name === "fdatasync");
          assert.equal(writes.length, 1, "one write for the batch of 10, none after the failure");
          // Where the log submits the batch's sync right behind its aio_write, that sync was queued
          // before the write failed: libc runs it after the write, and still the batch rejects. A
          // write from the JavaScript thread fails before any sync is submitted.
          const queued = syscall === "write" && !direct && native().abi.features.fsync_after_queued_writes;
          assert.equal(
            syncs.length,
            syscall === "write" && !queued ? 0 : 1,
            queued ? "only the sync queued with the write, none after the failure" : "none after the failure",
          );
          if (syncs.length === 1) assert.ok(syncs[0].entry > writes[0].exit, "the sync ran after the write returned");
        });
      },
      { skip },
    );
  }
}

for (
  const [syscall, error, operation] of [
    ["pwrite64", "ENOSPC", "write"],
    ["fdatasync", "EIO", "fdatasync"],
    ["rename,renameat,renameat2", "EIO", "rename"],
  ]
) {
  test(
    `writeFileAtomic with ${error} injected into ${syscall}: rejects, the old file intact, no temporary file left`,
    async () => {
      await withDir(async (dir) => {
        const { result } = await traced("durable_atomic.ts", [
          "-e",
          `trace=${syscall}`,
          "-e",
          `inject=${syscall}:error=${error}`,
        ], [dir]);
        assert.equal(result.status, 0, result.stderr);
        assert.deepEqual(lastJson(result), {
          outcome: `${error}:${operation}`,
          content: "old content",
          files: ["marker", "target"],
          pending: 0,
          allocated: 0,
        });
      });
    },
    { skip },
  );
}

test(
  "writeFileAtomic with EIO injected into the directory's fsync, after the rename: rejects, the new content in place, no temporary file left",
  async () => {
    await withDir(async (dir) => {
      const { result } = await traced("durable_atomic.ts", ["-e", "trace=fsync", "-e", "inject=fsync:error=EIO"], [
        dir,
      ]);
      assert.equal(result.status, 0, result.stderr);
      // What the doc comment says the caller then has: readers see the new content; its name is
      // not known to be durable.
      assert.deepEqual(lastJson(result), {
        outcome: "EIO:fsync",
        content: "new content",
        files: ["marker", "target"],
        pending: 0,
        allocated: 0,
      });
    });
  },
  { skip },
);

for (const variant of LOG_VARIANTS) {
  test(
    `a batch appended while the sync before it is held, then fails: it rejects with that failure, even where its own sync succeeded (${
      variantName(variant)
    })`,
    async () => {
      await withDir(async (dir) => {
        // The first batch's sync is held 1.5 s, then fails: the second batch is appended meanwhile.
        const inject = "fdatasync:error=EIO:delay_enter=1500000:when=1";
        const { result, calls } = await tracedLog(dir, "ahead", inject, variant);
        assert.equal(result.status, 0, result.stderr);
        const report = lastJson<Record<string, unknown>>(result);
        const ahead = native().abi.features.fd_requests_in_order;
        const first = "<a-0;><a-1;><a-2;><a-3;><a-4;><a-5;><a-6;><a-7;><a-8;><a-9;>";
        const second = first.replaceAll("a-", "b-");
        assert.deepEqual(report, {
          // In order (glibc): the second batch went in behind the held sync, its write and its sync.
          inLibc: ahead ? 3 : 1,
          failure: "EIO:fdatasync",
          sameError: true,
          laterSame: true,
          content: ahead ? first + second : first,
          pending: 0,
          allocated: 0,
        });
        const seen = recordWrites(calls, "-0;>").concat(calls.filter((call) => call.name === "fdatasync"))
          .sort((a, b) => a.entry - b.entry)
          .map((call) => `${call.name === "write" ? "pwrite64" : call.name} = ${call.ret}`);
        // Ten records of 6 bytes: 60 bytes plain, 10 frames of 8 + 8 bytes framed.
        const batch = variant.format === "plain" ? 60 : 160;
        assert.deepEqual(
          seen,
          ahead
            ? [
              `pwrite64 = ${batch}`,
              "fdatasync = -1 EIO (Input/output error) (INJECTED) (DELAYED)",
              `pwrite64 = ${batch}`,
              "fdatasync = 0",
            ]
            : [`pwrite64 = ${batch}`, "fdatasync = -1 EIO (Input/output error) (INJECTED) (DELAYED)"],
          "libc ran the second batch after the failed sync, and its sync succeeded, yet it rejected",
        );
      });
    },
    { skip: countsCalls },
  );
}

for (const variant of LOG_VARIANTS) {
  test(
    `openLog(): a short batch write is continued, then synced again, before the batch resolves (${
      variantName(variant)
    })`,
    async () => {
      await withDir(async (dir) => {
        const { result, calls } = await tracedLog(dir, "short", "pwrite64:retval=3:when=1", variant);
        assert.equal(result.status, 0, result.stderr);
        const report = lastJson<{ outcomes: string[]; content?: string; records: string; pending: number }>(result);
        assert.deepEqual(report.outcomes, Array(10).fill("ok"));
        // strace skipped the first call (nothing was written) and said 3 bytes were. Plain (O_APPEND):
        // the rest was appended. Framed: the rest was written 3 bytes further on (the 3 bytes strace
        // did not write read as zeros, so the file is not a valid log: no content to compare).
        if (variant.format === "plain") assert.equal(report.content, report.records.slice(3));
        const writes = calls.filter((call) => call.name === "pwrite64");
        const size = variant.format === "plain" ? report.records.length : 160;
        const seen = calls.filter((call) => call.name !== "write").map((call) => `${call.name} = ${call.ret}`);
        const rest = `pwrite64 = ${size - 3}`;
        // With the sync queued behind an aio_write, it runs after the short write, and again after
        // the rest; a write from the JavaScript thread is continued at once, then synced.
        assert.deepEqual(
          seen,
          variant.path === "aio" && native().abi.features.fsync_after_queued_writes
            ? ["pwrite64 = 3 (INJECTED)", "fdatasync = 0", rest, "fdatasync = 0"]
            : ["pwrite64 = 3 (INJECTED)", rest, "fdatasync = 0"],
        );
        if (variant.format === "framed") {
          const offset = (call: Call): number => Number(/, (\d+)$/.exec(call.args)![1]);
          assert.equal(offset(writes[1]), offset(writes[0]) + 3, "the rest goes 3 bytes after the start");
        }
        assert.equal(report.pending, 0);
      });
    },
    { skip: countsCalls },
  );
}

test(
  "AioFile.write() continues a short write (strace makes the first pwrite64 return 3) until all is written",
  async () => {
    await withDir(async (dir) => {
      const file = path.join(dir, "short.txt");
      const { result, calls } = await traced("short_write.ts", [
        "-P",
        file,
        "-e",
        "trace=pwrite64,write",
        "-e",
        "inject=pwrite64:retval=3:when=1",
      ], [file]);
      assert.equal(result.status, 0, result.stderr);
      const report = lastJson<{ written: number; content: number[]; pending: number; allocated: number }>(result);
      assert.equal(report.written, 11, "resolves with every byte, not the 3 of the short write");
      const writes = calls.filter((call) => call.name === "pwrite64").map((call) =>
        `${call.args.replace(/^\d+, /, "")} = ${call.ret}`
      );
      assert.deepEqual(writes, ['"hello world", 11, 0 = 3 (INJECTED)', '"lo world", 8, 3 = 8']);
      // strace skipped the first call: its 3 bytes are a hole, the rest was written where it belongs.
      assert.equal(decoder.decode(new Uint8Array(report.content).subarray(3)), "lo world");
      assert.deepEqual([report.pending, report.allocated], [0, 0]);
    });
  },
  { skip: countsCalls },
);

// ---------------------------------------------------------------------------------------------
// open() and AioFile.

test("open(): read, write, sync, datasync, close on a real file; a string path and a file: URL", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "data.txt");
    {
      await using handle = await open(file, { read: true, write: true, create: true });
      assert.equal(handle.path, file);
      assert.ok(Number.isInteger(handle.fd) && handle.fd >= 0);
      assert.equal(await handle.write("hello, world\n", 0), 13);
      assert.equal(await handle.write(new Uint8Array([0x21, 0x0a]), 13), 2);
      await handle.datasync();
      await handle.sync();
      const buffer = new Uint8Array(32);
      assert.equal(await handle.read(buffer, 7), 8);
      assert.equal(decoder.decode(buffer.subarray(0, 8)), "world\n!\n");
      assert.equal(await handle.read(buffer, 100), 0, "0 at the end of the file");
    }
    assert.equal(fs.readFileSync(file, "utf8"), "hello, world\n!\n");
    const byUrl = await open(pathToFileURL(file));
    const buffer = new Uint8Array(5);
    assert.equal(await byUrl.read(buffer, 0), 5);
    assert.equal(decoder.decode(buffer), "hello");
    await rejectsWith(byUrl.write("x", 0), AioError, /^EBADF: .*write '.*data\.txt'/);
    await byUrl.close();
  });
  await quiescent();
});

test("open(): the flags behave as in Deno.open (append, truncate, createNew, mode)", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "flags.txt");
    fs.writeFileSync(file, "0123456789");
    const appending = await open(file, { append: true });
    await appending.write("AB", 0); // the position is ignored in append mode
    await appending.close();
    assert.equal(fs.readFileSync(file, "utf8"), "0123456789AB");
    const truncating = await open(file, { write: true, truncate: true });
    await truncating.write("xy", 0);
    await truncating.close();
    assert.equal(fs.readFileSync(file, "utf8"), "xy");
    const exists = await outcome(open(file, { write: true, createNew: true }));
    assert.ok(exists instanceof AioError);
    assert.deepEqual([exists.code, exists.syscall, exists.path], ["EEXIST", "open", file]);
    assert.equal(exists.errno, (await import("../src/posix.ts")).constants.EEXIST);
    const fresh = path.join(dir, "fresh.txt");
    const created = await open(fresh, { write: true, createNew: true, mode: 0o600 });
    await created.close();
    assert.equal(fs.statSync(fresh).mode & 0o777, 0o600);
    const missing = await outcome(open(path.join(dir, "missing")));
    assert.ok(missing instanceof AioError);
    assert.equal(missing.code, "ENOENT");
    assert.match(missing.message, /^ENOENT: no such file or directory, open '.*missing'$/);
  });
  await quiescent();
});

test(
  "AioFile.close() right after a write (strace holds its pwrite64 200 ms) and a datasync: close(2) of the fd only after both returned, then the promises in order",
  async () => {
    await withDir(async (dir) => {
      const file = path.join(dir, "held.bin");
      const { result, calls } = await traced("close_waits.ts", [
        "-P",
        file,
        "-e",
        "trace=openat,open,pwrite64,fdatasync,close",
        "-e",
        "inject=pwrite64:delay_exit=200000",
      ], [file]);
      assert.equal(result.status, 0, result.stderr);
      assert.deepEqual(lastJson(result), {
        order: ["write", "datasync", "close"],
        written: 65536,
        after: "EBADF",
        content: true,
        pending: 0,
        allocated: 0,
      });
      const { fd, call: opened } = openedFd(calls, file);
      const [write] = onFd(calls, ["pwrite64"], fd, opened.exit);
      const [sync] = onFd(calls, ["fdatasync"], fd, opened.exit);
      const [close] = onFd(calls, ["close"], fd, opened.exit);
      assert.ok(write?.ret.startsWith("65536") && sync?.ret === "0" && close?.ret === "0", "write, sync, close");
      assert.ok(close.entry > write.exit, "close(2) only after the held pwrite64 returned");
      assert.ok(close.entry > sync.exit, "and after the fdatasync returned");
    });
  },
  { skip },
);

test("AioFile.write() writes everything; close() after it resolves, again at once; later calls reject", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "big.bin");
    const handle = await open(file, { write: true, create: true });
    const data = new Uint8Array(8 * 1024 * 1024).map((_, i) => i * 7);
    const writing = handle.write(data, 0);
    const closing = handle.close();
    assert.equal(await writing, data.length);
    await closing;
    assert.equal(await handle.close(), undefined, "closing again resolves");
    await rejectsWith(handle.datasync(), AioError, /^EBADF/);
    assert.deepEqual(new Uint8Array(fs.readFileSync(file)), data);
  });
  await quiescent();
});

// ---------------------------------------------------------------------------------------------
// openLog() and readLog().

test("openLog() (plain): concurrent appends land in call order with nothing between them; reopening appends after", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "events.log");
    const expected: string[] = [];
    {
      await using log = await openLog(file, { format: "plain" });
      assert.equal(log.path, file);
      const pending: Promise<void>[] = [];
      for (let i = 0; i < 500; i++) {
        const record = i % 2 === 0 ? `{"i":${i}}\n` : new TextEncoder().encode(`{"i":${i},"é":true}\n`);
        expected.push(typeof record === "string" ? record : decoder.decode(record));
        pending.push(log.append(record));
        if (i % 37 === 0) await new Promise((resolve) => setTimeout(resolve, 0));
      }
      await within(Promise.all(pending), 30_000, "500 appends");
    }
    assert.equal(fs.readFileSync(file, "utf8"), expected.join(""));
    const again = await openLog(file, { format: "plain" });
    await again.append("last\n");
    await again.close();
    await rejectsWith(again.append("after close\n"), AioError, /^EBADF/);
    assert.equal(fs.readFileSync(file, "utf8"), expected.join("") + "last\n");
    const records: string[] = [];
    for await (const record of readLog(file, { chunkSize: 100 })) records.push(decoder.decode(record));
    assert.deepEqual(records, [...expected.map((line) => line.slice(0, -1)), "last"]);
  });
  await quiescent();
});

test('openLog({ format: "plain", separator }): a torn last record left by a crash is cut off before new appends', async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "torn.log");
    fs.writeFileSync(file, "one\ntwo\nthr");
    const log = await openLog(file, { format: "plain", separator: "\n" });
    await log.append("four\n");
    await log.close();
    assert.equal(fs.readFileSync(file, "utf8"), "one\ntwo\nfour\n", "the new record does not join the torn one");
    const records: string[] = [];
    for await (const record of readLog(file)) records.push(decoder.decode(record));
    assert.deepEqual(records, ["one", "two", "four"]);
    // The last separator across the boundary of the 64 KiB windows read backwards.
    const filler = "x".repeat(100_000);
    fs.writeFileSync(file, `a<|>${filler}<|>${"y".repeat(65_535)}`);
    await (await openLog(file, { format: "plain", separator: new TextEncoder().encode("<|>") })).close();
    assert.equal(fs.statSync(file).size, 4 + filler.length + 3);
    fs.writeFileSync(file, "no separator at all");
    await (await openLog(pathToFileURL(file), { format: "plain", separator: "\n" })).close();
    assert.equal(fs.statSync(file).size, 0, "no complete record: nothing kept");
    fs.writeFileSync(file, "whole\n");
    await (await openLog(file, { format: "plain", separator: "\n" })).close();
    assert.equal(fs.readFileSync(file, "utf8"), "whole\n", "a file ending with a separator is kept");
    fs.writeFileSync(file, "kept as it is");
    await (await openLog(file, { format: "plain" })).close();
    assert.equal(fs.readFileSync(file, "utf8"), "kept as it is", "without separator nothing is cut");
  });
  await quiescent();
});

test("openLog(): a buffer appended is copied at once; close() waits for the appends made", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "copied.log");
    const log = await openLog(file, { format: "plain" });
    const buffer = new TextEncoder().encode("first\n");
    const first = log.append(buffer);
    buffer.fill(0x78);
    const second = log.append("second\n");
    await log.close();
    assert.deepEqual(await Promise.all([first, second]), [undefined, undefined]);
    assert.equal(fs.readFileSync(file, "utf8"), "first\nsecond\n");
  });
  await quiescent();
});

test("openLog() and writeFileAtomic(): a Node Buffer given is copied at once, not viewed", async () => {
  await withDir(async (dir) => {
    // Buffer's slice() is a view of the same memory: copying with it would write what the caller
    // put in its buffer after the call.
    const file = path.join(dir, "buffer.log");
    const log = await openLog(file, { format: "plain" });
    const record = Buffer.from("first\n");
    const appended = log.append(record);
    record.write("XXXXX\n");
    await appended;
    await log.close();
    assert.equal(fs.readFileSync(file, "utf8"), "first\n");
    const target = path.join(dir, "buffer.txt");
    const content = Buffer.from("content");
    const replaced = writeFileAtomic(target, content);
    content.fill(0x2d);
    await replaced;
    assert.equal(fs.readFileSync(target, "utf8"), "content");
  });
  await quiescent();
});

test("readLog(): stops at a torn last record; any separator", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "torn.log");
    fs.writeFileSync(file, "one\ntwo\nthr");
    const lines: string[] = [];
    for await (const record of readLog(file)) lines.push(decoder.decode(record));
    assert.deepEqual(lines, ["one", "two"], "the torn record is not yielded");
    fs.writeFileSync(file, "a||bb||||ccc||dd|");
    const parts: string[] = [];
    for await (const record of readLog(pathToFileURL(file), { separator: "||", chunkSize: 3 })) {
      parts.push(decoder.decode(record));
    }
    assert.deepEqual(parts, ["a", "bb", "", "ccc"]);
    fs.writeFileSync(file, "");
    for await (const _ of readLog(file)) assert.fail("an empty log has no records");
  });
  await quiescent();
});

test("readLog(): records far longer than chunkSize are read in linear time; every chunk size", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "long.log");
    // 64 MiB in one record: with the pending bytes copied again for every 64 KiB chunk this took
    // minutes (about 140 s here); read in linear time it takes about a second.
    const long = new Uint8Array(64 * 2 ** 20).fill(0x61);
    fs.writeFileSync(file, Buffer.concat([long, Buffer.from("\nshort\n")]));
    const read = async (): Promise<number[]> => {
      const lengths: number[] = [];
      for await (const record of readLog(file)) lengths.push(record.length);
      return lengths;
    };
    assert.deepEqual(await within(read(), 60_000, "reading a 64 MiB record back"), [long.length, 5]);
    // A separator cut by chunk boundaries anywhere, records of every length around the chunk size.
    const records = Array.from({ length: 40 }, (_, i) => "r".repeat(i % 11) + i);
    fs.writeFileSync(file, records.map((record) => record + "<|>").join("") + "torn<|");
    for (const chunkSize of [1, 2, 3, 4, 5, 7, 16, 1000]) {
      const seen: string[] = [];
      for await (const record of readLog(file, { separator: "<|>", chunkSize })) seen.push(decoder.decode(record));
      assert.deepEqual(seen, records, `chunkSize ${chunkSize}`);
    }
  });
  await quiescent();
});

// ---------------------------------------------------------------------------------------------
// syncDir() and writeFileAtomic().

test("syncDir(): a directory syncs; a file or a missing path rejects with AioError naming the path", async () => {
  await withDir(async (dir) => {
    await syncDir(dir);
    await syncDir(pathToFileURL(dir));
    const file = path.join(dir, "plain");
    fs.writeFileSync(file, "");
    const notDir = await outcome(syncDir(file));
    assert.ok(notDir instanceof AioError);
    assert.deepEqual([notDir.code, notDir.path], ["ENOTDIR", file]);
    const missing = await outcome(syncDir(path.join(dir, "nope")));
    assert.ok(missing instanceof AioError);
    assert.equal(missing.code, "ENOENT");
  });
  await quiescent();
});

test("writeFileAtomic(): replaces content, keeps the mode, and readers never see a mix", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "settings.json");
    await writeFileAtomic(file, "first");
    assert.equal(fs.readFileSync(file, "utf8"), "first");
    fs.chmodSync(file, 0o640);
    const contents = Array.from({ length: 40 }, (_, i) => `${i}`.repeat(20_000 + i));
    const seen = new Set<string>();
    let writing = true;
    const reader = (async () => {
      while (writing) {
        seen.add(fs.readFileSync(file, "utf8"));
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    })();
    const writes = contents.map((content) => writeFileAtomic(file, content));
    await within(Promise.all(writes), 30_000, "40 concurrent replacements");
    writing = false;
    await reader;
    assert.equal(fs.readFileSync(file, "utf8"), contents.at(-1), "the last call's content wins");
    for (const content of seen) assert.ok(content === "first" || contents.includes(content), "a whole version");
    assert.equal(fs.statSync(file).mode & 0o777, 0o640, "the mode of the replaced file");
    assert.deepEqual(fs.readdirSync(dir), ["settings.json"], "no temporary file left");
    const missing = await outcome(writeFileAtomic(path.join(dir, "no", "such.json"), "x"));
    assert.ok(missing instanceof AioError);
    assert.equal(missing.code, "ENOENT");
    await writeFileAtomic(pathToFileURL(path.join(dir, "new.bin")), new Uint8Array([1, 2]), { mode: 0o600 });
    assert.equal(fs.statSync(path.join(dir, "new.bin")).mode & 0o777, 0o600);
  });
  await quiescent();
});

test("writeFileAtomic(): through a symbolic link the file it points to is replaced; a 255-byte name; a directory is refused", async () => {
  await withDir(async (dir) => {
    fs.mkdirSync(path.join(dir, "data"));
    const real = path.join(dir, "data", "real.json");
    fs.writeFileSync(real, "old");
    fs.chmodSync(real, 0o600);
    const link = path.join(dir, "link.json");
    fs.symlinkSync(path.join("data", "real.json"), link);
    // As fs.writeFile and Deno.writeFile: the link stays, the file it points to has the content.
    await writeFileAtomic(link, "new");
    assert.ok(fs.lstatSync(link).isSymbolicLink(), "the link is still a link");
    assert.equal(fs.readFileSync(real, "utf8"), "new");
    assert.equal(fs.statSync(real).mode & 0o777, 0o600, "the mode of the file pointed to");
    // Where the temporary file was made (beside the file, not the link): the strace test above.
    assert.deepEqual(fs.readdirSync(path.join(dir, "data")), ["real.json"], "no temporary file left");
    fs.symlinkSync("created.json", path.join(dir, "dangling.json"));
    await writeFileAtomic(path.join(dir, "dangling.json"), "made");
    assert.equal(fs.readFileSync(path.join(dir, "created.json"), "utf8"), "made");
    // A name of NAME_MAX (255 bytes): the temporary file's name must fit too.
    const long = path.join(dir, "é".repeat(100) + "n".repeat(55));
    await writeFileAtomic(long, "long name");
    assert.equal(fs.readFileSync(long, "utf8"), "long name");
    fs.unlinkSync(long);
    fs.symlinkSync("loop.b", path.join(dir, "loop.a"));
    fs.symlinkSync("loop.a", path.join(dir, "loop.b"));
    const loop = await outcome(writeFileAtomic(path.join(dir, "loop.a"), "x"));
    assert.ok(loop instanceof AioError);
    assert.equal(loop.code, "ELOOP");
    // "name/" names a directory: open(2) refuses it with EISDIR; it never writes the file "name".
    const slash = await outcome(writeFileAtomic(path.join(dir, "file.txt") + "/", "x"));
    assert.ok(slash instanceof AioError);
    assert.equal(slash.code, "EISDIR");
    fs.writeFileSync(path.join(dir, "file.txt"), "kept");
    for (const name of ["file.txt/.", "file.txt/..", "."]) {
      const dotted = await outcome(writeFileAtomic(`${dir}/${name}`, "x"));
      assert.ok(dotted instanceof AioError && dotted.code === "EISDIR", `${name}: ${dotted}`);
    }
    assert.equal(fs.readFileSync(path.join(dir, "file.txt"), "utf8"), "kept");
    fs.unlinkSync(path.join(dir, "file.txt"));
    const directory = await outcome(writeFileAtomic(path.join(dir, "data"), "x"));
    assert.ok(directory instanceof AioError);
    assert.equal(directory.code, "EISDIR");
    assert.ok(fs.statSync(path.join(dir, "data")).isDirectory());
    assert.deepEqual(
      fs.readdirSync(dir).sort(),
      ["created.json", "dangling.json", "data", "link.json", "loop.a", "loop.b"],
      "nothing else written, no temporary file left",
    );
  });
  await quiescent();
});

// ---------------------------------------------------------------------------------------------
// Bad input: TypeError or RangeError naming the argument, as a rejection.

test("bad input to every new function rejects with TypeError/RangeError naming the argument", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, "input.txt");
    fs.writeFileSync(file, "x");
    const cases: [() => Promise<unknown>, abstract new(...args: never[]) => Error, RegExp][] = [
      [() => open(42 as unknown as string), TypeError, /^Invalid path: .*received 42/],
      [() => open(""), RangeError, /^Invalid path/],
      [() => open("a\0b"), RangeError, /^Invalid path: it contains a NUL/],
      [() => open(new URL("https://example.invalid/x")), TypeError, /^Invalid path: expected a file: URL/],
      [() => open(file, "r" as unknown as object), TypeError, /^Invalid options: /],
      [() => open(file, { read: "yes" as unknown as boolean }), TypeError, /^Invalid options\.read: .*"yes"/],
      [() => open(file, { create: true }), RangeError, /^Invalid options\.create: it needs options\.write/],
      [() => open(file, { read: true, truncate: true }), RangeError, /^Invalid options\.truncate/],
      [() => open(file, { append: true, truncate: true }), RangeError, /^Invalid options\.truncate/],
      [() => open(file, {}), RangeError, /^Invalid options: expected at least one of read, write or append/],
      [() => open(file, { write: true, mode: -1 }), RangeError, /^Invalid options\.mode: .*-1/],
      [() => open(file, { write: true, mode: "644" as unknown as number }), TypeError, /^Invalid options\.mode/],
      [() => open(file, { read: true, fullSync: 1 as unknown as boolean }), TypeError, /^Invalid options\.fullSync/],
      [() => openLog(null as unknown as string), TypeError, /^Invalid path: .*null/],
      [() => openLog(file, { mode: 1.5 }), RangeError, /^Invalid options\.mode: .*1\.5/],
      [() => openLog(file, { fullSync: "no" as unknown as boolean }), TypeError, /^Invalid options\.fullSync/],
      [
        () => openLog(file, { format: "plain", separator: "" }),
        RangeError,
        /^Invalid options\.separator: expected at least one byte/,
      ],
      [
        () => openLog(file, { format: "plain", separator: 10 as unknown as string }),
        TypeError,
        /^Invalid options\.separator: .*10/,
      ],
      [() => readLog(file, { separator: "" }).next(), RangeError, /^Invalid options\.separator/],
      [() => readLog(file, { separator: 10 as unknown as string }).next(), TypeError, /^Invalid options\.separator/],
      [() => readLog(file, { chunkSize: 0 }).next(), RangeError, /^Invalid options\.chunkSize/],
      [() => readLog(7 as unknown as string).next(), TypeError, /^Invalid path/],
      [() => syncDir(5 as unknown as string), TypeError, /^Invalid path: .*5/],
      [() => syncDir(dir, { fullSync: null as unknown as boolean }), TypeError, /^Invalid options\.fullSync/],
      [() => writeFileAtomic(file, 5 as unknown as string), TypeError, /^Invalid data: .*5/],
      [() => writeFileAtomic({} as unknown as string, "x"), TypeError, /^Invalid path/],
      [() => writeFileAtomic(file, "x", { mode: 0o10000 }), RangeError, /^Invalid options\.mode/],
      [() => writeFileAtomic(file, "x", 3 as unknown as object), TypeError, /^Invalid options/],
      [() => fsync(0, { fullSync: 0 as unknown as boolean }), TypeError, /^Invalid options\.fullSync/],
      [() => fdatasync(0, { fullSync: "" as unknown as boolean }), TypeError, /^Invalid options\.fullSync/],
    ];
    for (const [call, type, pattern] of cases) {
      let promise: Promise<unknown>;
      assert.doesNotThrow(() => promise = call(), "rejects, never throws synchronously");
      await rejectsWith(promise!, type, pattern);
    }
    const handle = await open(file, { read: true, write: true });
    await rejectsWith(handle.write(7 as unknown as string, 0), TypeError, /^Invalid data/);
    await rejectsWith(handle.write("x", -1), RangeError, /^Invalid position: .*-1/);
    await rejectsWith(handle.read("buffer" as unknown as Uint8Array, 0), TypeError, /^Invalid buffer/);
    await rejectsWith(handle.read(new Uint8Array(1), 0.5), RangeError, /^Invalid position/);
    await handle.close();
    const log = await openLog(path.join(dir, "input.log"));
    await rejectsWith(
      log.append({} as unknown as string),
      TypeError,
      /^Invalid data: .*received an instance of Object/,
    );
    await log.append("still works\n");
    await log.close();
  });
  await quiescent();
});
