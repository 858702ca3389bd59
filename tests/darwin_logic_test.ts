/**
 * What only macOS needs, proven on Linux by driving the engine with Darwin's limits and
 * behaviours (src/abi.ts): at most `per_process_in_flight` requests in libc, the others held in
 * order; EAGAIN from a submit retried a bounded number of times; `aio_suspend` lists split at
 * `aio_suspend_max_entries`; no SIGEV_THREAD. The requests are real (FIFO reads, syncs).
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import { AioError, open, openLog, readLog, syncDir, writeFileAtomic } from "../mod.ts";
import { ABI, type FullSyncCommands, type Preallocation } from "../src/abi.ts";
import { ControlBlock } from "../src/control_block.ts";
import { Engine, type EngineOperation, selectCompletion } from "../src/engine.ts";
import { followPlatform, fullSync, syncWith } from "../src/sync.ts";
import { type Loaded, native } from "../src/target.ts";
import { suspender, waitAny } from "../src/wait.ts";
import { test } from "./harness.ts";
import {
  DEADLINE,
  emulator,
  fifo,
  quiescent,
  releaseFifos,
  runtime,
  tempDir,
  tempFile,
  until,
  withDir,
  within,
} from "./helpers.ts";

const EINVAL = (): number => native().abi.constants.EINVAL;

const DARWIN = ABI["darwin-x86_64"];
const DARWIN_PREALLOCATE = DARWIN.preallocation as Extract<Preallocation, { call: "F_PREALLOCATE" }>;

/** The largest `nent` passed to `aio_suspend` through a `darwinLike()` library, and how often. */
const suspendCalls = { largest: 0, count: 0 };

/**
 * Every `fcntl` made through a `darwinLike()` library: fd, command, result and errno, and for
 * `F_PREALLOCATE` the `struct fstore` passed (flags, position mode, offset, length).
 */
const fcntlCalls: {
  fd: number;
  cmd: number;
  result: number;
  errno: number | undefined;
  fstore?: [number, number, bigint, bigint];
}[] = [];

/**
 * This machine's C library, with Darwin's limits and behaviours (and `limit` in flight), and
 * Darwin's full-sync commands (or `full`). Real glibc refuses Darwin's `F_FULLFSYNC` (51) and
 * `F_BARRIERFSYNC` (85) with EINVAL, as a macOS file system without them does.
 */
function darwinLike(
  limit: number | null = DARWIN.limits.per_process_in_flight,
  full?: FullSyncCommands,
): Loaded {
  const loaded = native();
  const c = { ...loaded.c };
  c.aio_suspend = (list, nent, timeout) => {
    suspendCalls.largest = Math.max(suspendCalls.largest, nent);
    suspendCalls.count++;
    return loaded.c.aio_suspend(list, nent, timeout);
  };
  c.fcntl = async (fd, cmd, argument) => {
    let fstore: [number, number, bigint, bigint] | undefined;
    if (cmd === DARWIN_PREALLOCATE.F_PREALLOCATE) {
      const view = new DataView(loaded.backend.view(argument, 32));
      fstore = [view.getUint32(0, true), view.getInt32(4, true), view.getBigInt64(8, true), view.getBigInt64(16, true)];
    }
    const outcome = await loaded.c.fcntl(fd, cmd, argument);
    fcntlCalls.push({ fd, cmd, ...outcome, fstore });
    return outcome;
  };
  return {
    ...loaded,
    c,
    abi: {
      ...loaded.abi,
      full_sync: full ?? DARWIN.full_sync,
      preallocation: DARWIN.preallocation,
      limits: { ...DARWIN.limits, per_process_in_flight: limit },
      features: DARWIN.features,
    },
  };
}

interface Read {
  readonly op: EngineOperation;
  readonly buffer: Uint8Array;
  readonly done: Promise<void>;
}

/** A read of `length` bytes on `fd` through `engine`, started by `start` (a test hook). */
function submitRead(engine: Engine, fd: number, start?: (block: ControlBlock) => number): Read & { errno: number } {
  const block = new ControlBlock(native());
  block.set("aio_fildes", fd);
  const buffer = new Uint8Array(1);
  block.prepare("read", buffer, 1);
  let complete!: () => void;
  const done = new Promise<void>((resolve) => complete = resolve);
  const op: EngineOperation = { block, fd, submittedAt: 0, token: undefined, complete };
  const errno = engine.submit(op, () => start ? start(block) : block.start("read"));
  return { op, buffer, done, errno };
}

test("at most 2 requests in libc: the others wait in order and go in as earlier ones finish", async () => {
  const { dir, remove } = tempDir();
  const pipes = Array.from({ length: 6 }, (_, i) => fifo(dir, `fifo${i}`));
  const engine = new Engine(darwinLike(2), "poll+suspend");
  let started = 0;
  const reads = pipes.map((pipe) =>
    submitRead(engine, pipe.fd, (block) => {
      started++;
      return block.start("read");
    })
  );
  try {
    assert.ok(reads.every((read) => read.errno === 0), "held back, not refused");
    assert.equal(engine.inLibc, 2);
    assert.equal(engine.pending, 6);
    assert.equal(started, 2);
    assert.deepEqual(reads.map((read) => read.op.block.state), [
      "pending",
      "pending",
      "idle",
      "idle",
      "idle",
      "idle",
    ]);
    // A held-back request is canceled without libc.
    assert.equal(engine.cancel(reads[5].op), "canceled");
    assert.equal(reads[5].op.block.error, native().abi.constants.ECANCELED);
    assert.equal(reads[5].op.block.result, -1);
    for (const [index, pipe] of pipes.slice(0, 5).entries()) {
      pipe.feed(String(index));
      await within(reads[index].done, DEADLINE, `read ${index}`);
      assert.equal(reads[index].op.block.result, 1);
      assert.equal(reads[index].buffer[0], 48 + index);
      assert.ok(engine.inLibc <= 2);
    }
    assert.equal(started, 5, "the canceled one never reached libc");
    assert.equal(engine.pending, 0);
    assert.equal(engine.inLibc, 0);
  } finally {
    await releaseFifos(pipes, () => Promise.all(reads.map((read) => read.done)), remove);
  }
});

/** Held-back requests of the queue test: a tenth under an emulator. */
const HELD = emulator === undefined ? 100_000 : 10_000;

test(`${HELD} held-back requests, canceled from the back: O(1) each (a generous deadline O(n^2) blows)`, async () => {
  const { dir, remove } = tempDir();
  const pipe = fifo(dir);
  const engine = new Engine(darwinLike(1), "poll+suspend");
  try {
    const { O_DSYNC } = native().abi.constants;
    const first = submitRead(engine, pipe.fd);
    const start = performance.now();
    const held = Array.from({ length: HELD }, () => {
      const block = new ControlBlock(native());
      block.set("aio_fildes", pipe.fd);
      let complete!: () => void;
      const done = new Promise<void>((resolve) => complete = resolve);
      const op: EngineOperation = { block, fd: pipe.fd, submittedAt: 0, token: undefined, complete };
      assert.equal(engine.submit(op, () => block.start("fdatasync", O_DSYNC)), 0);
      return { op, done };
    });
    assert.equal(engine.held, HELD);
    for (let i = HELD - 1; i >= 10; i--) assert.equal(engine.cancel(held[i].op), "canceled");
    const elapsed = performance.now() - start;
    // O(1) each takes well under a second here; O(n) each (findIndex, splice) takes minutes.
    assert.ok(elapsed < 15_000, `${HELD} submits and cancels took ${Math.round(elapsed)} ms`);
    assert.equal(engine.held, 10);
    pipe.feed("!");
    await within(Promise.all([first.done, ...held.slice(0, 10).map((item) => item.done)]), 10_000, "the rest");
    assert.equal(engine.pending, 0);
  } finally {
    await releaseFifos([pipe], () => until(() => engine.pending === 0, "every request final"), remove);
  }
});

test("EAGAIN from a submit holds the request back and retries it; it succeeds once libc accepts", async () => {
  const { dir, remove } = tempDir();
  const pipe = fifo(dir);
  const engine = new Engine(darwinLike(), "poll+suspend");
  const { EAGAIN } = native().abi.constants;
  let attempts = 0;
  // The test hook: libc says EAGAIN three times (the kernel's limit), then accepts.
  const read = submitRead(engine, pipe.fd, (block) => ++attempts <= 3 ? EAGAIN : block.start("read"));
  try {
    assert.equal(read.errno, 0);
    const state = (): string => read.op.block.state;
    assert.equal(state(), "idle");
    await until(() => state() === "pending" || attempts > 4, "the retried submit");
    assert.equal(attempts, 4);
    assert.equal(state(), "pending");
    pipe.feed("!");
    await within(read.done, DEADLINE, "the read");
    assert.equal(read.op.block.result, 1);
  } finally {
    await releaseFifos([pipe], () => read.done, remove);
  }
});

test("EAGAIN that never ends (macOS says EAGAIN for invalid requests too) fails after a bound", async () => {
  const engine = new Engine(darwinLike(), "poll+suspend");
  const { EAGAIN } = native().abi.constants;
  let attempts = 0;
  const read = submitRead(engine, 0, () => {
    attempts++;
    return EAGAIN;
  });
  assert.equal(read.errno, 0);
  await within(read.done, DEADLINE, "the failure");
  assert.equal(read.op.block.refused, true);
  assert.equal(read.op.block.error, EAGAIN);
  assert.equal(read.op.block.result, -1);
  assert.equal(attempts, 10);
  assert.equal(engine.pending, 0);
});

test("where EAGAIN means exhaustion (Linux), it is not retried: the submit is refused at once", () => {
  const engine = new Engine(native(), "poll+suspend");
  const { EAGAIN } = native().abi.constants;
  const read = submitRead(engine, 0, () => EAGAIN);
  assert.equal(read.errno, EAGAIN);
  assert.equal(engine.pending, 0);
  read.op.block.abandon(EAGAIN);
  read.op.block.free();
});

test("aio_suspend lists longer than 16 entries are split, and the wait ends at the first completion", async () => {
  const { dir, remove } = tempDir();
  const pipes = Array.from({ length: 40 }, (_, i) => fifo(dir, `fifo${i}`));
  const loaded = darwinLike(null);
  const blocks = pipes.map((pipe) => {
    const block = new ControlBlock(loaded);
    block.set("aio_fildes", pipe.fd);
    assert.equal(block.read(new Uint8Array(1), 1), 0);
    return block;
  });
  try {
    Object.assign(suspendCalls, { largest: 0, count: 0 });
    // Long enough for the driver's first calls to be made: under qemu, a cold code path of
    // Deno's arm64 build once took longer than 120 ms to make them.
    const timeout = emulator === undefined ? 500 : 5_000;
    assert.equal(await waitAny(loaded, blocks, timeout), native().abi.constants.EAGAIN, "times out");
    assert.equal(suspendCalls.largest, 16, "no call lists more than 16");
    assert.ok(suspendCalls.count >= 3, `40 entries take 3 calls at least (${suspendCalls.count})`);
    const calls = suspendCalls.count;
    const waiting = waitAny(loaded, blocks);
    await until(() => suspendCalls.count >= calls + 3, "the three split aio_suspend calls");
    pipes[37].feed("x");
    assert.equal(await within(waiting, DEADLINE, "the split wait"), 0);
    assert.equal(blocks[37].state, "complete");
    assert.ok(blocks.every((block) => !block.listed), "every call returned");
  } finally {
    await releaseFifos(pipes, async () => {
      await until(() => blocks.every((block) => block.poll()), "every read's completion");
      for (const block of blocks) block.free();
    }, remove);
  }
});

test("the suspend strategy splits its calls at 16 entries too", async () => {
  const { dir, remove } = tempDir();
  const pipes = Array.from({ length: 40 }, (_, i) => fifo(dir, `fifo${i}`));
  const loaded = darwinLike(null);
  const engine = new Engine(loaded, "suspend");
  Object.assign(suspendCalls, { largest: 0, count: 0 });
  const reads = pipes.map((pipe) => submitRead(engine, pipe.fd));
  try {
    // In flight, not made: a call's 1 s slice can end (and the call be made again) before a
    // check on a slow machine sees it.
    await until(() => suspender(loaded).calls === 3, "the strategy's 3 aio_suspend calls for 40 entries");
    assert.equal(suspendCalls.largest, 16, "no call lists more than 16");
    pipes[39].feed("z");
    await within(reads[39].done, DEADLINE, "the last read");
    pipes.slice(0, 39).forEach((pipe) => pipe.feed("w"));
    await within(Promise.all(reads.map((read) => read.done)), DEADLINE, "every read");
    assert.equal(engine.pending, 0);
  } finally {
    await releaseFifos(pipes, () => Promise.all(reads.map((read) => read.done)), remove);
  }
});

test("no SIGEV_THREAD: the default is a polling or suspending strategy, and thread is refused", () => {
  const loaded = darwinLike();
  const quiet = { ...loaded, backend: { ...loaded.backend, env: () => undefined } };
  assert.ok(["poll+suspend", "suspend", "poll"].includes(selectCompletion(quiet)));
  for (const requested of ["thread", "poll+thread"]) {
    const asking = { ...loaded, backend: { ...loaded.backend, env: () => requested } };
    assert.throws(() => selectCompletion(asking), /has no SIGEV_THREAD/);
  }
});

test("the engine and its control blocks use the platform they are given: errors named by its errno table", async () => {
  const { dir, remove } = tempDir();
  const pipe = fifo(dir);
  const loaded = darwinLike();
  // Darwin numbers EAGAIN 35, which is EDEADLK on Linux; libc refuses aio_cancel with it.
  const harness: Loaded = {
    ...loaded,
    c: { ...loaded.c, aio_cancel: () => -1 },
    library: { ...loaded.library, errno: () => DARWIN.constants.EAGAIN },
    abi: { ...loaded.abi, constants: { ...loaded.abi.constants, EAGAIN: 35, EDEADLK: 11 } },
  };
  const engine = new Engine(harness, "poll");
  const block = new ControlBlock(harness);
  block.set("aio_fildes", pipe.fd);
  block.prepare("read", new Uint8Array(1), 1);
  let complete!: () => void;
  const done = new Promise<void>((resolve) => complete = resolve);
  const op: EngineOperation = { block, fd: pipe.fd, submittedAt: 0, token: undefined, complete };
  try {
    assert.equal(engine.submit(op, () => block.start("read")), 0);
    assert.throws(() => engine.cancel(op), { name: "AioError", code: "EAGAIN", errno: 35, syscall: "aio_cancel" });
    pipe.feed("d");
    await within(done, 5000, "the read");
    assert.equal(block.result, 1);
  } finally {
    await releaseFifos([pipe], () => done, remove);
  }
});

// Linux's F_GETFD: succeeds on any open fd, standing in for a full sync the file system takes.
const F_GETFD = 1;

/** The `fcntl` calls made on `fd`: command, and whether it succeeded. */
const fcntlOf = (fd: number): { cmd: number; ok: boolean }[] =>
  fcntlCalls.filter((call) => call.fd === fd).map(({ cmd, result }) => ({ cmd, ok: result !== -1 }));

test("full sync: F_FULLFSYNC refused falls back to F_BARRIERFSYNC, refused too: the aio_fsync stands", async () => {
  await withDir(async (dir) => {
    const { fd } = tempFile(dir);
    try {
      fcntlCalls.length = 0;
      fs.writeSync(fd, "record\n");
      await fullSync(darwinLike(), fd);
      assert.deepEqual(fcntlOf(fd), [{ cmd: 51, ok: false }, { cmd: 85, ok: false }]);
      // Deno cannot read the errno of an off-thread call; Bun's and Node's workers read it.
      const errnos = fcntlCalls.map((call) => call.errno);
      assert.deepEqual(errnos, runtime === "deno" ? [undefined, undefined] : [EINVAL(), EINVAL()]);
    } finally {
      fs.closeSync(fd);
    }
  });
  await quiescent();
});

test("full sync: a first command the file system takes ends the chain", async () => {
  await withDir(async (dir) => {
    const { fd } = tempFile(dir);
    try {
      fcntlCalls.length = 0;
      await fullSync(darwinLike(null, { F_FULLFSYNC: F_GETFD, F_BARRIERFSYNC: 85 }), fd);
      assert.deepEqual(fcntlOf(fd), [{ cmd: F_GETFD, ok: true }]);
      fcntlCalls.length = 0;
      await fullSync(darwinLike(null, { F_FULLFSYNC: 51, F_BARRIERFSYNC: F_GETFD }), fd);
      assert.deepEqual(fcntlOf(fd), [{ cmd: 51, ok: false }, { cmd: F_GETFD, ok: true }]);
    } finally {
      fs.closeSync(fd);
    }
  });
});

test("full sync: a failure that is not a refusal rejects with AioError syscall fcntl (where errno is known)", async () => {
  await withDir(async () => {
    // Far above any open descriptor: a closed one's number could be reused meanwhile (a Worker
    // starting opens files), and fcntl would then be refused with EINVAL instead. F_GETFD stands
    // in for F_FULLFSYNC: qemu-user refuses a command it does not know with EINVAL before it
    // looks at the descriptor, while every kernel and emulator answers F_GETFD with EBADF.
    const fd = 1_000_000;
    fcntlCalls.length = 0;
    const platform = darwinLike(null, { F_FULLFSYNC: F_GETFD, F_BARRIERFSYNC: 85 });
    const outcome = await fullSync(platform, fd).then(() => "resolved", (error) => error);
    if (runtime !== "deno") {
      assert.ok(outcome instanceof AioError, `rejected with AioError, not ${outcome}`);
      assert.equal(outcome.code, "EBADF");
      assert.equal(outcome.syscall, "fcntl");
      assert.equal(outcome.fd, fd);
      assert.deepEqual(fcntlOf(fd), [{ cmd: F_GETFD, ok: false }], "no fallback after EBADF");
    } else {
      // Deno: errno unknown, every failure falls back (libuv's rule); aio_fsync had failed first anyway.
      assert.equal(outcome, "resolved");
      assert.deepEqual(fcntlOf(fd), [{ cmd: F_GETFD, ok: false }, { cmd: 85, ok: false }]);
    }
  });
});

test("fsync()/fdatasync() follow the aio_fsync with the full sync where the table says so; fullSync: false skips it", async () => {
  await withDir(async (dir) => {
    const { fd } = tempFile(dir);
    try {
      const darwin = darwinLike();
      for (const syscall of ["fsync", "fdatasync"] as const) {
        fcntlCalls.length = 0;
        fs.writeSync(fd, `${syscall}\n`);
        await syncWith(fd, undefined, syscall, () => darwin);
        assert.deepEqual(fcntlOf(fd).map((call) => call.cmd), [51, 85], syscall);
        fcntlCalls.length = 0;
        await syncWith(fd, { fullSync: false }, syscall, () => darwin);
        assert.deepEqual(fcntlOf(fd), [], `${syscall} with fullSync: false`);
      }
      // Linux's own table has no full sync: nothing after the aio_fsync.
      fcntlCalls.length = 0;
      await syncWith(fd, undefined, "fdatasync", () => ({ ...darwin, abi: native().abi }));
      assert.deepEqual(fcntlOf(fd), []);
      // Merged callers share one chain; one caller wanting it is enough.
      fcntlCalls.length = 0;
      const first = syncWith(fd, { fullSync: false }, "fdatasync", () => darwin);
      const merged = Array.from(
        { length: 20 },
        (_, i) => syncWith(fd, { fullSync: i === 7 }, "fdatasync", () => darwin),
      );
      await within(Promise.all([first, ...merged]), 10_000, "the syncs");
      assert.deepEqual(fcntlOf(fd).map((call) => call.cmd), [51, 85], "one chain, for the queued batch only");
    } finally {
      fs.closeSync(fd);
    }
  });
  await quiescent();
});

test("every durable path (AioFile, the log, writeFileAtomic, syncDir) takes the full sync; fullSync: false skips it", async () => {
  await withDir(async (dir) => {
    const darwin = darwinLike();
    const previous = followPlatform(() => darwin);
    /** The fcntl calls `action` made, as chains: each starts with F_FULLFSYNC, on one fd. */
    const commands = async (action: () => Promise<unknown>): Promise<number[][]> => {
      fcntlCalls.length = 0;
      await within(action(), 10_000, "the operation");
      const chains: { fd: number; cmds: number[] }[] = [];
      for (const call of fcntlCalls) {
        // F_PREALLOCATE (42): the framed log's allocation, not a sync.
        if (call.cmd === 42) continue;
        const last = chains.at(-1);
        if (last === undefined || call.cmd === 51 || last.fd !== call.fd) {
          chains.push({ fd: call.fd, cmds: [call.cmd] });
        } else last.cmds.push(call.cmd);
      }
      return chains.map((chain) => chain.cmds);
    };
    // glibc refuses Darwin's commands with EINVAL, as a file system without them: 51, then 85.
    const chain = [51, 85];
    try {
      for (const full of [true, false]) {
        const expect = (count: number): number[][] => full ? Array.from({ length: count }, () => chain) : [];
        const options = { fullSync: full };
        const file = await open(`${dir}/file-${full}`, { write: true, createNew: true, ...options });
        await file.write("data", 0);
        assert.deepEqual(await commands(() => file.datasync()), expect(1), `AioFile.datasync(), fullSync ${full}`);
        assert.deepEqual(await commands(() => file.sync()), expect(1), `AioFile.sync(), fullSync ${full}`);
        await file.close();
        let log!: Awaited<ReturnType<typeof openLog>>;
        const opening = await commands(async () => log = await openLog(`${dir}/log-${full}`, options));
        assert.deepEqual(
          opening,
          expect(2),
          `openLog() creating the file syncs it (its header and allocation), then its directory, fullSync ${full}`,
        );
        const appends = await commands(() => Promise.all([log.append("a\n"), log.append("b\n")]));
        assert.deepEqual(appends, expect(1), `one batch, one chain, fullSync ${full}`);
        await log.close();
        const replace = await commands(() => writeFileAtomic(`${dir}/atomic-${full}`, "x", options));
        assert.deepEqual(
          replace,
          expect(2),
          `writeFileAtomic(): the temporary file, then the directory, fullSync ${full}`,
        );
        assert.deepEqual(await commands(() => syncDir(dir, options)), expect(1), `syncDir(), fullSync ${full}`);
      }
    } finally {
      followPlatform(previous);
    }
  });
  await quiescent();
});

test("the tables: Darwin has F_FULLFSYNC 51 and F_BARRIERFSYNC 85, Linux none", () => {
  assert.deepEqual(ABI["darwin-x86_64"].full_sync, { F_FULLFSYNC: 51, F_BARRIERFSYNC: 85 });
  assert.deepEqual(ABI["darwin-aarch64"].full_sync, { F_FULLFSYNC: 51, F_BARRIERFSYNC: 85 });
  for (
    const name of ["linux-x86_64-glibc", "linux-aarch64-glibc", "linux-x86_64-musl", "linux-aarch64-musl"] as const
  ) {
    assert.equal(ABI[name].full_sync, null, name);
  }
});

test("a framed log on Darwin allocates ahead with F_PREALLOCATE (all of a chunk, from the physical end); refused, it writes zeros", async () => {
  await withDir(async (dir) => {
    const darwin = darwinLike();
    const previous = followPlatform(() => darwin);
    try {
      fcntlCalls.length = 0;
      const file = `${dir}/log`;
      const log = await openLog(file, { preallocate: 65536 });
      const allocations = fcntlCalls.filter((call) => call.cmd === 42);
      assert.equal(allocations.length, 1, "one F_PREALLOCATE for the first chunk");
      // F_ALLOCATEALL (4), F_PEOFPOSMODE (3), offset 0 from the physical end, the chunk's length.
      assert.deepEqual(allocations[0].fstore, [4, 3, 0n, 65536n]);
      assert.equal(allocations[0].result, -1, "glibc refuses command 42, as a file system without it would");
      assert.equal(fs.statSync(file).size, 16 + 65536, "zeros written ahead instead");
      for (let i = 0; i < 100; i++) await log.append(`record ${i}`);
      await log.close();
      const records: string[] = [];
      for await (const record of readLog(file)) records.push(new TextDecoder().decode(record));
      assert.equal(records.length, 100);
    } finally {
      followPlatform(previous);
    }
  });
  await quiescent();
});
