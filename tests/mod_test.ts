/**
 * The idiomatic layer: fsync/fdatasync/read/write, AioRequest, suspend, AioError, abort,
 * target and stats, on real files and FIFOs, under whichever completion strategy
 * POSIX_AIO_COMPLETION selects.
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import { open } from "node:fs/promises";
import { AioError, AioRequest, fdatasync, fsync, read, stats, suspend, target, write } from "../mod.ts";
import { getEngine } from "../src/engine.ts";
import { constants } from "../src/posix.ts";
import { test } from "./harness.ts";
import {
  blockedReading,
  CHILD_TIMEOUT,
  closedFd,
  fifo,
  lastJson,
  quiescent,
  readRunning,
  root,
  run,
  runtime,
  runtimeCommand,
  sleep,
  tempFile,
  withDir,
  within,
} from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A test in a fresh folder, after which nothing may be left in flight or allocated. */
function inDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  return withDir(fn).then(() => quiescent());
}

test("fsync and fdatasync resolve once the data is durable, and free everything", () =>
  inDir(async (dir) => {
    const { fd } = tempFile(dir);
    fs.writeSync(fd, "durable");
    assert.equal(await fsync(fd), undefined);
    assert.equal(await fdatasync(fd), undefined);
    fs.closeSync(fd);
  }));

test("fsync accepts a node:fs/promises FileHandle (any object with a numeric fd)", () =>
  inDir(async (dir) => {
    const handle = await open(`${dir}/handle.txt`, "w");
    await handle.write("via FileHandle");
    await fdatasync(handle);
    await fsync({ fd: handle.fd });
    await handle.close();
  }));

test("a refused sync rejects with AioError EBADF from aio_fsync, naming the fd", () =>
  inDir(async (dir) => {
    const fd = closedFd(dir);
    const error = await fdatasync(fd).then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof AioError);
    assert.equal(error.code, "EBADF");
    assert.equal(error.errno, constants.EBADF);
    assert.equal(error.syscall, "aio_fsync");
    assert.equal(error.fd, fd);
    assert.match(error.message, /^EBADF: bad file descriptor, aio_fsync \(fd \d+\)$/);
  }));

test("a sync that fails after submission rejects with the operation's name (fsync on a FIFO: EINVAL)", () =>
  inDir(async (dir) => {
    const pipe = fifo(dir);
    await assert.rejects(fsync(pipe.fd), (error: unknown) => {
      assert.ok(error instanceof AioError);
      assert.equal(error.code, "EINVAL");
      assert.equal(error.syscall, "fsync");
      return true;
    });
    await assert.rejects(fdatasync(pipe.fd), { code: "EINVAL", syscall: "fdatasync" });
    pipe.close();
  }));

test("bad arguments reject (never throw) with TypeError or RangeError naming the argument", async () => {
  const cases: [() => Promise<unknown>, RegExp, ErrorConstructor][] = [
    [() => fsync("3" as unknown as number), /Invalid fd: .*received "3"/, TypeError],
    [() => fsync(null as unknown as number), /Invalid fd: .*received null/, TypeError],
    [() => fdatasync(undefined as unknown as number), /Invalid fd: .*received undefined/, TypeError],
    [() => fdatasync(-1), /Invalid fd: .*received -1/, RangeError],
    [() => fdatasync(1.5), /Invalid fd: .*received 1.5/, RangeError],
    [() => fdatasync(NaN), /Invalid fd: .*received NaN/, RangeError],
    [() => fdatasync(2 ** 31), /Invalid fd: .*received 2147483648/, RangeError],
    [() => fdatasync({} as unknown as number), /Invalid fd/, TypeError],
    [() => fdatasync({ fd: "1" } as unknown as number), /Invalid fd\.fd/, TypeError],
    [() => fsync(1, { signal: "x" } as unknown as undefined), /Invalid options\.signal/, TypeError],
    [() => read(1, [] as unknown as Uint8Array, 0), /Invalid buffer: expected a Uint8Array/, TypeError],
    [() => read(1, new Uint8Array(1), -1), /Invalid position: .*received -1/, RangeError],
    [() => read(1, new Uint8Array(1), 0.5), /Invalid position: .*received 0.5/, RangeError],
    [() => write(1, new Uint8Array(1), 2 ** 53), /Invalid position/, RangeError],
    [() => write(1, "text" as unknown as Uint8Array, 0), /Invalid data: .*received "text"/, TypeError],
  ];
  for (const [call, message, type] of cases) {
    let promise: Promise<unknown> | undefined;
    assert.doesNotThrow(() => promise = call());
    await assert.rejects(promise!, (error: unknown) => {
      assert.ok(error instanceof type, `${error} is a ${type.name}`);
      assert.match((error as Error).message, message);
      return true;
    });
  }
  await quiescent();
});

test("write then read round-trips, at positions, with short reads at the end of the file", () =>
  inDir(async (dir) => {
    const { fd } = tempFile(dir);
    assert.equal(await write(fd, encoder.encode("hello "), 0), 6);
    assert.equal(await write(fd, encoder.encode("world"), 6), 5);
    const buffer = new Uint8Array(32);
    assert.equal(await read(fd, buffer, 0), 11);
    assert.equal(decoder.decode(buffer.subarray(0, 11)), "hello world");
    assert.equal(await read(fd, buffer, 6), 5);
    assert.equal(await read(fd, buffer, 100), 0, "end of file");
    assert.equal(await read(fd, new Uint8Array(0), 0), 0, "zero-length read");
    fs.closeSync(fd);
  }));

test("a large write and read (4 MiB) round-trip through the native copies", () =>
  inDir(async (dir) => {
    const { fd } = tempFile(dir);
    const data = new Uint8Array(4 << 20);
    for (let i = 0; i < data.length; i += 4096) crypto.getRandomValues(data.subarray(i, i + 4096));
    assert.equal(await write(fd, data, 0), data.length);
    await fdatasync(fd);
    const back = new Uint8Array(data.length);
    assert.equal(await read(fd, back, 0), data.length);
    assert.ok(back.every((byte, i) => byte === data[i]));
    fs.closeSync(fd);
  }));

test("35. data changed right after write() is written as it was at the call", () =>
  inDir(async (dir) => {
    const { fd, file } = tempFile(dir);
    const data = encoder.encode("snapshot");
    const pending = write(fd, data, 0);
    data.fill(0x21);
    assert.equal(await pending, 8);
    assert.equal(fs.readFileSync(file, "utf8"), "snapshot");
    fs.closeSync(fd);
  }));

test("AioRequest: submit at once, error() and result() follow aio_error and aio_return", () =>
  inDir(async (dir) => {
    const { fd } = tempFile(dir);
    const request = AioRequest.write(fd, encoder.encode("abc"), 0);
    assert.equal(request.fd, fd);
    assert.equal(request.op, "write");
    assert.equal(await request.done, 3);
    assert.equal(request.error(), 0);
    assert.equal(request.result(), 3);
    assert.equal(request.result(), 3, "cached");
    const sync = AioRequest.fsync(fd, "dsync");
    assert.equal(sync.op, "fdatasync");
    assert.equal(await sync.done, 0);
    const full = AioRequest.fsync({ fd });
    assert.equal(full.op, "fsync");
    assert.equal(await full.done, 0);
    assert.throws(() => AioRequest.fsync(fd, "full" as "sync"), /Invalid mode/);
    assert.throws(() => AioRequest.fsync(-1), RangeError);
    fs.closeSync(fd);
  }));

test("AioRequest refused by libc throws AioError synchronously", () =>
  inDir((dir) => {
    assert.throws(() => AioRequest.fsync(closedFd(dir)), { name: "AioError", code: "EBADF", syscall: "aio_fsync" });
  }));

test("AioRequest on a FIFO: pending until data arrives; result() throws EINPROGRESS meanwhile", () =>
  inDir(async (dir) => {
    const pipe = fifo(dir);
    const buffer = new Uint8Array(5);
    const request = AioRequest.read(pipe.fd, buffer, 0);
    await readRunning(pipe.fd, () => request.error());
    assert.equal(request.error(), constants.EINPROGRESS);
    assert.throws(() => request.result(), { name: "AioError", code: "EINPROGRESS" });
    assert.equal(stats().pending, 1);
    pipe.feed("fifo!");
    assert.equal(await request.done, 5);
    assert.equal(decoder.decode(buffer), "fifo!");
    pipe.close();
  }));

test(
  "AioRequest.cancel(): notcanceled while running, canceled (ECANCELED) while queued, alldone after",
  () =>
    inDir(async (dir) => {
      const pipe = fifo(dir);
      const running = AioRequest.read(pipe.fd, new Uint8Array(1), 0);
      await readRunning(pipe.fd, () => running.error());
      const queued = AioRequest.fsync(pipe.fd, "dsync");
      assert.equal(queued.cancel(), "canceled");
      await assert.rejects(queued.done, { name: "AioError", code: "ECANCELED", syscall: "fdatasync" });
      assert.equal(queued.result(), -1);
      assert.equal(running.cancel(), "notcanceled");
      pipe.feed("x");
      assert.equal(await running.done, 1);
      assert.equal(running.cancel(), "alldone");
      pipe.close();
    }),
  { skip: target.os === "linux" && target.libc === "glibc" ? false : "needs glibc's per-fd queue" },
);

test("aborting a queued sync cancels it and rejects with the signal's reason", () =>
  inDir(async (dir) => {
    const pipe = fifo(dir);
    const blocker = read(pipe.fd, new Uint8Array(1), 0);
    await readRunning(pipe.fd);
    const controller = new AbortController();
    const sync = fdatasync(pipe.fd, { signal: controller.signal });
    const reason = new Error("no longer needed");
    controller.abort(reason);
    await assert.rejects(sync, (error) => error === reason);
    pipe.feed("y");
    assert.equal(await blocker, 1);
    pipe.close();
  }), { skip: target.libc === "glibc" ? false : "needs glibc's per-fd queue" });

test(
  "aborting one caller of a queued sync that others share leaves it queued: it runs and settles theirs",
  () =>
    inDir(async (dir) => {
      const pipe = fifo(dir);
      const blocker = read(pipe.fd, new Uint8Array(1), 0);
      await readRunning(pipe.fd);
      const running = fdatasync(pipe.fd);
      const controller = new AbortController();
      const queued = [fdatasync(pipe.fd), fdatasync(pipe.fd, { signal: controller.signal }), fdatasync(pipe.fd)];
      const reason = new Error("no longer needed");
      controller.abort(reason);
      await assert.rejects(queued[1], (error) => error === reason);
      pipe.feed("y");
      assert.equal(await blocker, 1);
      // A sync of a FIFO fails with EINVAL once glibc runs it: the queued one ran too.
      for (const sync of [running, queued[0], queued[2]]) {
        await assert.rejects(sync, (error: unknown) => error instanceof AioError && error.code === "EINVAL");
      }
      pipe.close();
    }),
  { skip: target.libc === "glibc" ? false : "needs glibc's per-fd queue" },
);

test("aborting a running read does not cancel it: it settles as libc finishes it", () =>
  inDir(async (dir) => {
    const pipe = fifo(dir);
    const controller = new AbortController();
    const buffer = new Uint8Array(2);
    let settled = false;
    const pending = read(pipe.fd, buffer, 0, { signal: controller.signal });
    pending.then(() => settled = true, () => settled = true);
    await readRunning(pipe.fd);
    controller.abort();
    // Nothing is expected to happen: give a wrong rejection a few turns of the loop to show.
    await sleep(10);
    assert.equal(settled, false, "the abort did not settle it");
    assert.equal(stats().pending, 1, "still in flight: its buffer and control block stay alive");
    assert.ok(blockedReading(pipe.fd), "libc still reads the FIFO");
    pipe.feed("ok");
    assert.equal(await pending, 2);
    assert.equal(decoder.decode(buffer), "ok");
    pipe.close();
  }), { skip: target.libc === "musl" ? "musl cancels running requests" : false });

test("an already aborted signal rejects with its reason and submits nothing", async () => {
  const controller = new AbortController();
  controller.abort(new Error("early"));
  await assert.rejects(fsync(0, { signal: controller.signal }), /early/);
  await assert.rejects(read(0, new Uint8Array(1), 0, { signal: controller.signal }), /early/);
  await quiescent();
});

// How many fdatasync(2) calls they cost is counted with strace in tests/strace_test.ts.
test("1,000 concurrent fdatasync on one fd all resolve", () =>
  inDir(async (dir) => {
    const { fd } = tempFile(dir);
    fs.writeSync(fd, "x".repeat(4096));
    const results = await Promise.all(Array.from({ length: 1000 }, () => fdatasync(fd)));
    assert.deepEqual(new Set(results), new Set([undefined]));
    assert.equal(results.length, 1000);
    fs.closeSync(fd);
  }));

test("concurrent syncs of one fd each get a promise of their own, and a failure rejects each", () =>
  inDir(async (dir) => {
    const pipe = fifo(dir);
    // fdatasync of a FIFO fails with EINVAL once glibc runs it.
    const syncs = Array.from({ length: 4 }, () => fdatasync(pipe.fd));
    assert.equal(new Set(syncs).size, 4, "no two callers share a promise");
    const errors = await Promise.all(syncs.map((sync) => sync.then(() => undefined, (error: unknown) => error)));
    for (const error of errors) assert.ok(error instanceof AioError && error.code === "EINVAL", String(error));
    pipe.close();
  }));

test("a sync queued behind writes on one fd completes after them and the data reads back", () =>
  inDir(async (dir) => {
    const { fd, file } = tempFile(dir);
    const writes = Array.from({ length: 64 }, (_, i) => write(fd, encoder.encode(`${i % 10}`.repeat(64)), i * 64));
    const sync = fdatasync(fd);
    const order: string[] = [];
    await Promise.all([
      ...writes.map((w) => w.then(() => order.push("write"))),
      sync.then(() => order.push("sync")),
    ]);
    assert.equal(order.lastIndexOf("write") < order.indexOf("sync"), true, order.join(","));
    const back = fs.readFileSync(file, "utf8");
    assert.equal(back.length, 64 * 64);
    for (let i = 0; i < 64; i++) assert.equal(back.slice(i * 64, i * 64 + 64), `${i % 10}`.repeat(64));
    fs.closeSync(fd);
  }));

test("many files at once: write + fdatasync on 64 fds", () =>
  inDir(async (dir) => {
    const files = Array.from({ length: 64 }, (_, i) => tempFile(dir, `f${i}`));
    await Promise.all(files.map(async ({ fd }, i) => {
      assert.equal(await write(fd, encoder.encode(`file ${i}`), 0), `file ${i}`.length);
      await fdatasync(fd);
    }));
    for (const [i, { fd, file }] of files.entries()) {
      assert.equal(fs.readFileSync(file, "utf8"), `file ${i}`);
      fs.closeSync(fd);
    }
  }));

test("many files at once, several requests each: every request settles, each sync after its fd's writes", () =>
  inDir(async (dir) => {
    const files = Array.from({ length: 48 }, (_, i) => tempFile(dir, `o${i}`));
    const seen = files.map(() => [] as string[]);
    const all: Promise<unknown>[] = [];
    for (const [i, { fd }] of files.entries()) {
      for (let k = 0; k < 3; k++) {
        all.push(write(fd, encoder.encode(`${k}`.repeat(16)), k * 16).then(() => seen[i].push(`write ${k}`)));
      }
      all.push(fdatasync(fd).then(() => seen[i].push("sync")));
    }
    // Everything is either in libc or held back before it; nothing is lost in between.
    const engine = getEngine();
    assert.equal(engine.inLibc + engine.held, engine.pending);
    await within(Promise.all(all), 60_000, "192 requests on 48 files");
    for (const [i, { fd, file }] of files.entries()) {
      // Writes on one fd may be noticed in any order (SIGEV_THREAD notifications race); a sync
      // settles after the requests submitted before it on its fd.
      assert.deepEqual(seen[i].toSorted(), ["sync", "write 0", "write 1", "write 2"], `fd ${fd}`);
      assert.equal(seen[i].at(-1), "sync", `fd ${fd}: ${seen[i].join(", ")}`);
      assert.equal(fs.readFileSync(file, "utf8"), "0".repeat(16) + "1".repeat(16) + "2".repeat(16));
      fs.closeSync(fd);
    }
    assert.equal(engine.held, 0);
  }));

test("requests waiting in libc for ever (reads on empty FIFOs) hold nothing back: syncs on other files settle", () =>
  inDir(async (dir) => {
    // More pending reads than the fewest descriptors the engine admits at once, on their own fds.
    const pipes = Array.from({ length: 4 }, (_, i) => fifo(dir, `fifo-${i}`));
    const buffers = pipes.map(() => new Uint8Array(4));
    const reads = pipes.map((pipe, i) => read(pipe.fd, buffers[i], 0));
    const files = Array.from({ length: 16 }, (_, i) => tempFile(dir, `s${i}`, `sync ${i}`));
    await within(Promise.all(files.map(({ fd }) => fdatasync(fd))), 30_000, "syncs while 4 reads wait on FIFOs");
    for (const { fd } of files) fs.closeSync(fd);
    assert.equal(stats().pending, 4, "the reads are still pending");
    pipes.forEach((pipe, i) => pipe.feed(`pip${i}`));
    assert.deepEqual(await within(Promise.all(reads), 30_000, "the reads"), [4, 4, 4, 4]);
    assert.deepEqual(buffers.map((buffer) => decoder.decode(buffer)), ["pip0", "pip1", "pip2", "pip3"]);
    for (const pipe of pipes) pipe.close();
  }));

test("[timing] suspend(): TypeError for [] or foreign entries, at once for settled ones, EAGAIN on timeout", () =>
  inDir(async (dir) => {
    await assert.rejects(suspend([]), TypeError);
    await assert.rejects(suspend([{}] as AioRequest[]), /Invalid requests\[0\]/);
    await assert.rejects(suspend("x" as unknown as AioRequest[]), TypeError);
    const { fd } = tempFile(dir);
    const done = AioRequest.fsync(fd);
    await done.done;
    assert.deepEqual(await suspend([done]), [done]);
    const pipe = fifo(dir);
    const pending = AioRequest.read(pipe.fd, new Uint8Array(1), 0);
    await assert.rejects(suspend([pending], { timeout: -1 }), RangeError);
    await assert.rejects(suspend([pending], { timeout: NaN }), RangeError);
    await assert.rejects(suspend([pending], { timeout: Infinity }), RangeError);
    const start = performance.now();
    await assert.rejects(suspend([pending], { timeout: 100 }), { name: "AioError", code: "EAGAIN" });
    assert.ok(performance.now() - start >= 99);
    const sync = AioRequest.fsync(fd, "dsync");
    const first = await suspend([pending, sync]);
    assert.deepEqual(first, [sync]);
    pipe.feed("s");
    assert.deepEqual(await suspend([pending]), [pending]);
    pipe.close();
    fs.closeSync(fd);
  }));

test("target names the runtime, platform, library and completion strategy", () => {
  assert.equal(target.runtime, runtime);
  assert.ok(["linux", "darwin"].includes(target.os));
  assert.ok(["x86_64", "aarch64"].includes(target.arch));
  assert.ok(["glibc", "musl", "darwin"].includes(target.libc));
  assert.equal(typeof target.library, "string");
  const requested = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env
    .POSIX_AIO_COMPLETION;
  if (requested) assert.equal(target.completion, requested);
  assert.ok(["poll+suspend", "poll+thread", "poll", "suspend", "thread"].includes(target.completion));
});

test("a script whose last line awaits fdatasync exits 0 as soon as it settles", async () => {
  const result = await run(runtimeCommand(`${root}/tests/fixtures/last_await.ts`), { timeout: CHILD_TIMEOUT });
  assert.equal(result.status, 0, result.stderr);
  assert.deepEqual(lastJson(result), { synced: true, pending: 0 });
});

test("36. a script with a read pending on an empty FIFO exits cleanly through exit()", async () => {
  const result = await run(runtimeCommand(`${root}/tests/fixtures/exit_pending.ts`), { timeout: CHILD_TIMEOUT });
  assert.equal(result.status, 0, result.stderr);
  assert.deepEqual(lastJson(result), { pending: 1 });
});
