/**
 * Waiting that cannot hang or leak: exceptions of SIGEV_THREAD functions, failed off-thread
 * waits, one limit on off-thread calls for the whole process, `suspend()` that leaves nothing
 * behind. The requests are real (FIFO reads that stay pending until fed); failures are
 * injected around the real C library.
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import process from "node:process";
import { AioRequest, suspend } from "../mod.ts";
import { ControlBlock } from "../src/control_block.ts";
import { Engine, type EngineOperation } from "../src/engine.ts";
import { aio_error, aio_read, aio_return, aio_suspend, Aiocb, constants } from "../src/posix.ts";
import { type Loaded, native } from "../src/target.ts";
import { MAX_CALLS, napper, suspender, waitAny } from "../src/wait.ts";
import { test } from "./harness.ts";
import {
  canGc,
  emulator,
  fifo,
  gc,
  lastJson,
  quiescent,
  root,
  run,
  runtime,
  runtimeCommand,
  sleep,
  tempDir,
  until,
  withDir,
  within,
} from "./helpers.ts";

/** How an injected failure shows. */
type Failure = "calloc" | "worker" | "errno";

const FAILURES: Readonly<Record<Failure, string>> = {
  calloc: "calloc returns NULL for the list",
  worker: "the off-thread call rejects (a Bun or Node Worker error)",
  errno: "aio_suspend returns -1 at once with an unreadable errno (Deno)",
};

/** This machine's C library, with `failure` injected while `failing()` says so. */
function failing(failure: Failure, failing: () => boolean): { loaded: Loaded; attempts: () => number } {
  const loaded = native();
  const c = { ...loaded.c };
  let attempts = 0;
  if (failure === "calloc") {
    c.calloc = (count, size) => {
      if (!failing()) return loaded.c.calloc(count, size);
      attempts++;
      return loaded.backend.NULL;
    };
  } else {
    c.aio_suspend = (list, nent, timeout) => {
      if (!failing()) return loaded.c.aio_suspend(list, nent, timeout);
      attempts++;
      return failure === "worker"
        ? Promise.reject(new Error("The worker calling aio_suspend failed: injected"))
        : Promise.resolve({ result: -1, errno: undefined });
    };
  }
  return { loaded: { ...loaded, c }, attempts: () => attempts };
}

/** A read of 1 byte on `fd` submitted through `engine`. */
function submitRead(engine: Engine, fd: number): { op: EngineOperation; done: Promise<void> } {
  const block = new ControlBlock(native());
  block.set("aio_fildes", fd);
  block.prepare("read", new Uint8Array(1), 1);
  let complete!: () => void;
  const done = new Promise<void>((resolve) => complete = resolve);
  const op: EngineOperation = { block, fd, submittedAt: 0, token: undefined, complete };
  assert.equal(engine.submit(op, () => block.start("read")), 0);
  return { op, done };
}

test("a nap of the spin (aio_suspend on the JavaScript thread) ends at its timeout, lists at most 16, and leaves nothing listed", async () => {
  const { dir, remove } = tempDir();
  const pipe = fifo(dir);
  const block = new ControlBlock(native());
  try {
    block.set("aio_fildes", pipe.fd);
    block.prepare("read", new Uint8Array(1), 1);
    assert.equal(block.start("read"), 0);
    const nap = napper(native());
    // A read on an empty FIFO never completes meanwhile: each nap lasts its timeout (50 µs, plus
    // the kernel's timer slack and whatever a busy machine adds), not milliseconds more.
    const lengths: number[] = [];
    for (let i = 0; i < 5; i++) {
      const start = performance.now();
      assert.equal(nap.nap([block], 1, 0.05), true);
      lengths.push(performance.now() - start);
    }
    lengths.sort((a, b) => a - b);
    assert.ok(lengths[2] < 20, `naps of 50 µs took ${lengths.map((ms) => ms.toFixed(3)).join(", ")} ms`);
    // More blocks than a nap lists: no nap (the spin yields instead).
    assert.equal(nap.nap(Array(17).fill(block), 17, 0.05), false);
    assert.equal(block.listed, false);
    pipe.feed("!");
    await until(() => block.poll(), "the read");
    // Once final, a nap over it returns at once.
    const start = performance.now();
    nap.nap([block], 1, 1000);
    assert.ok(performance.now() - start < 500, "a nap over a final request returns at once");
    assert.equal(block.result, 1);
  } finally {
    block.retire();
    pipe.close();
    remove();
  }
});

const noThread = native().abi.features.sigev_thread ? false : `${native().target} has no SIGEV_THREAD`;

test("a sigev_notify_function that throws is reported, and every other notification still arrives", async () => {
  await withDir(async (dir) => {
    const script = path.join(root, "tests/fixtures/notify_throws.ts");
    const handled = await run([...runtimeCommand(script), dir, "handled"], { timeout: 60_000 });
    assert.equal(handled.status, 0, handled.stderr);
    assert.deepEqual(lastJson(handled), {
      notified: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
      reported: [0, 2, 4, 6, 8].map((value) => `notification ${value} failed`),
    });
    // Nobody listens: each is printed on stderr, and the process goes on. (reportError() would
    // end it, and an exit while glibc's notification threads call in can crash: SIGSEGV.)
    const unhandled = await run([...runtimeCommand(script), dir], { timeout: 60_000 });
    assert.equal(unhandled.status, 0, unhandled.stderr);
    assert.deepEqual(lastJson(unhandled), { notified: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], reported: [] });
    for (const value of [0, 2, 4, 6, 8]) assert.match(unhandled.stderr, new RegExp(`notification ${value} failed`));
  });
}, { skip: noThread });

for (const [failure, description] of Object.entries(FAILURES) as [Failure, string][]) {
  test(`engine: a failed off-thread wait (${description}) leaves the request watched`, async () => {
    const { dir, remove } = tempDir();
    const pipe = fifo(dir);
    try {
      let failures = 3;
      const { loaded, attempts } = failing(failure, () => failures-- > 0);
      const engine = new Engine(loaded, "suspend");
      const read = submitRead(engine, pipe.fd);
      // Three failures, then a call that waits for real.
      await until(() => attempts() === 3 && suspender(loaded).calls === 1, "a call after three failures");
      pipe.feed("!");
      await within(read.done, 10_000, "the read");
      assert.equal(read.op.block.result, 1);
      assert.equal(engine.pending, 0);
    } finally {
      pipe.close();
      remove();
    }
  });

  test(`C layer: while off-thread waits fail (${description}), retries back off and the wait still ends`, async () => {
    const { dir, remove } = tempDir();
    const pipe = fifo(dir);
    const block = new ControlBlock(native());
    block.set("aio_fildes", pipe.fd);
    assert.equal(block.read(new Uint8Array(1), 1), 0);
    try {
      const { loaded, attempts } = failing(failure, () => true);
      const waiting = waitAny(loaded, [block]);
      await sleep(400);
      // Doubling pauses from 2 ms: about 8 attempts in 400 ms; spinning would make thousands.
      assert.ok(attempts() >= 2, `it kept trying (${attempts()} attempts)`);
      assert.ok(attempts() <= 20, `it backed off (${attempts()} attempts in 400 ms)`);
      // Every call still fails: the request is checked on timers meanwhile.
      pipe.feed("!");
      assert.equal(await within(waiting, 10_000, "the wait"), 0);
      assert.equal(block.state, "complete");
      assert.equal(block.listed, false);
    } finally {
      while (!block.poll()) await sleep(1);
      block.free();
      pipe.close();
      remove();
    }
  });
}

/** Threads of this process (Linux). */
function threads(): number {
  return fs.readdirSync("/proc/self/task").length;
}

test(
  "1,000 concurrent aio_suspend calls share a few off-thread calls; the runtime's file operations still run",
  async () => {
    const { dir, remove } = tempDir();
    // 50 reads: glibc's pool (64 threads here) keeps room for other requests.
    const pipes = Array.from({ length: 50 }, (_, i) => fifo(dir, `fifo${i}`));
    const cbs = pipes.map((pipe) => new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1) }));
    const file = path.join(dir, "file");
    fs.writeFileSync(file, "still served");
    let fed = false;
    try {
      for (const cb of cbs) assert.equal(aio_read(cb), 0);
      await until(() => cbs.every((cb) => aio_error(cb) === constants.EINPROGRESS), "reads pending");
      const before = threads();
      const waits = Array.from({ length: 1000 }, (_, i) => aio_suspend([cbs[i % 50]], { tv_sec: 120, tv_nsec: 0 }));
      const driver = suspender(native());
      await until(() => driver.calls > 0, "the off-thread wait");
      assert.ok(driver.calls <= MAX_CALLS, `${driver.calls} calls`);
      const readFile = runtime === "deno" ? Deno.readFile(file) : fsp.readFile(file);
      const contents = await within(readFile, 10_000, "a file read while 1,000 aio_suspend calls wait");
      assert.equal(new TextDecoder().decode(contents), "still served");
      // One thread per call would be 1,000 more (Deno's pool stops at 512); the rest of the
      // process may start a few.
      const grown = threads() - before;
      assert.ok(grown <= 64, `${grown} threads more while 1,000 aio_suspend calls wait`);
      fed = true;
      for (const pipe of pipes) pipe.feed("x");
      assert.deepEqual(new Set(await within(Promise.all(waits), 10_000, "every aio_suspend")), new Set([0]));
      for (const cb of cbs) {
        await until(() => aio_error(cb) !== constants.EINPROGRESS, "the read");
        assert.equal(aio_return(cb), 1);
        cb.free();
      }
      await quiescent();
    } finally {
      // Reads left pending would hold glibc's threads for the rest of the process.
      if (!fed) { for (const pipe of pipes) pipe.feed("x"); }
      for (const pipe of pipes) pipe.close();
      remove();
    }
  },
  { skip: process.platform === "linux" ? false : "counts threads in /proc/self/task" },
);

/** Under an emulator everything is slower: a tenth of the calls. */
const SUSPENDS = emulator === undefined ? 100_000 : 10_000;

test(`${SUSPENDS} timed suspend() calls on a request that stays pending keep the heap flat`, async () => {
  const { dir, remove } = tempDir();
  const pipe = fifo(dir);
  try {
    const request = AioRequest.read(pipe.fd, new Uint8Array(1), 0);
    const batch = async (): Promise<void> => {
      const outcomes = await Promise.allSettled(Array.from({ length: 1000 }, () => suspend([request], { timeout: 0 })));
      assert.ok(outcomes.every((outcome) => outcome.status === "rejected" && outcome.reason.code === "EAGAIN"));
    };
    await batch();
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 1; i < SUSPENDS / 1000; i++) await batch();
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    // A reaction left on request.done per call would take well over 10 MB.
    assert.ok(grown < 4 * 2 ** 20, `the heap grew by ${(grown / 2 ** 20).toFixed(1)} MiB`);
    pipe.feed("!");
    assert.equal(await within(request.done, 5000, "the read"), 1);
  } finally {
    pipe.close();
    remove();
  }
}, { skip: canGc ? false : "needs --expose-gc" });
