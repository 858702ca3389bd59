/**
 * What only macOS needs, proven on Linux by driving the engine with Darwin's limits and
 * behaviours (src/abi.ts): at most `per_process_in_flight` requests in libc, the others held in
 * order; EAGAIN from a submit retried a bounded number of times; `aio_suspend` lists split at
 * `aio_suspend_max_entries`; no SIGEV_THREAD. The requests are real (FIFO reads, syncs).
 */

import assert from "node:assert/strict";
import { ABI } from "../src/abi.ts";
import { ControlBlock } from "../src/control_block.ts";
import { Engine, type EngineOperation, selectCompletion } from "../src/engine.ts";
import { type Loaded, native } from "../src/target.ts";
import { waitAny } from "../src/wait.ts";
import { test } from "./harness.ts";
import { emulator, fifo, sleep, tempDir, within } from "./helpers.ts";

const DARWIN = ABI["darwin-x86_64"];

/** The largest `nent` passed to `aio_suspend` through a `darwinLike()` library, and how often. */
const suspendCalls = { largest: 0, count: 0 };

/** This machine's C library, with Darwin's limits and behaviours (and `limit` in flight). */
function darwinLike(limit: number | null = DARWIN.limits.per_process_in_flight): Loaded {
  const loaded = native();
  const c = { ...loaded.c };
  c.aio_suspend = (list, nent, timeout) => {
    suspendCalls.largest = Math.max(suspendCalls.largest, nent);
    suspendCalls.count++;
    return loaded.c.aio_suspend(list, nent, timeout);
  };
  return {
    ...loaded,
    c,
    abi: {
      ...loaded.abi,
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
  const block = new ControlBlock();
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
  try {
    const engine = new Engine(darwinLike(2), "poll+suspend");
    let started = 0;
    const reads = pipes.map((pipe) =>
      submitRead(engine, pipe.fd, (block) => {
        started++;
        return block.start("read");
      })
    );
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
      await within(reads[index].done, 5000, `read ${index}`);
      assert.equal(reads[index].op.block.result, 1);
      assert.equal(reads[index].buffer[0], 48 + index);
      assert.ok(engine.inLibc <= 2);
    }
    assert.equal(started, 5, "the canceled one never reached libc");
    assert.equal(engine.pending, 0);
    assert.equal(engine.inLibc, 0);
  } finally {
    for (const pipe of pipes) pipe.close();
    remove();
  }
});

/** Held-back requests of the queue test: a tenth under an emulator. */
const HELD = emulator === undefined ? 100_000 : 10_000;

test(`${HELD} held-back requests, canceled from the back: O(1) each (a generous deadline O(n^2) blows)`, async () => {
  const { dir, remove } = tempDir();
  const pipe = fifo(dir);
  try {
    const engine = new Engine(darwinLike(1), "poll+suspend");
    const { O_DSYNC } = native().abi.constants;
    const first = submitRead(engine, pipe.fd);
    const start = performance.now();
    const held = Array.from({ length: HELD }, () => {
      const block = new ControlBlock();
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
    pipe.close();
    remove();
  }
});

test("EAGAIN from a submit holds the request back and retries it; it succeeds once libc accepts", async () => {
  const { dir, remove } = tempDir();
  const pipe = fifo(dir);
  try {
    const engine = new Engine(darwinLike(), "poll+suspend");
    const { EAGAIN } = native().abi.constants;
    let attempts = 0;
    // The test hook: libc says EAGAIN three times (the kernel's limit), then accepts.
    const read = submitRead(engine, pipe.fd, (block) => ++attempts <= 3 ? EAGAIN : block.start("read"));
    assert.equal(read.errno, 0);
    const state = (): string => read.op.block.state;
    assert.equal(state(), "idle");
    for (let i = 0; i < 200 && state() !== "pending"; i++) await sleep(5);
    assert.equal(attempts, 4);
    assert.equal(state(), "pending");
    pipe.feed("!");
    await within(read.done, 5000, "the read");
    assert.equal(read.op.block.result, 1);
  } finally {
    pipe.close();
    remove();
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
  await within(read.done, 10_000, "the failure");
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
  const blocks = pipes.map((pipe) => {
    const block = new ControlBlock();
    block.set("aio_fildes", pipe.fd);
    assert.equal(block.read(new Uint8Array(1), 1), 0);
    return block;
  });
  try {
    const loaded = darwinLike(null);
    Object.assign(suspendCalls, { largest: 0, count: 0 });
    assert.equal(await waitAny(loaded, blocks, 120), native().abi.constants.EAGAIN, "times out");
    assert.equal(suspendCalls.largest, 16, "no call lists more than 16");
    assert.ok(suspendCalls.count >= 3, `40 entries take 3 calls at least (${suspendCalls.count})`);
    const waiting = waitAny(loaded, blocks);
    await sleep(30);
    pipes[37].feed("x");
    assert.equal(await within(waiting, 5000, "the split wait"), 0);
    assert.equal(blocks[37].state, "complete");
    assert.ok(blocks.every((block) => !block.listed), "every call returned");
  } finally {
    pipes.forEach((pipe, index) => index !== 37 && pipe.feed("y"));
    for (const block of blocks) {
      while (!block.poll()) await sleep(1);
      block.free();
    }
    for (const pipe of pipes) pipe.close();
    remove();
  }
});

test("the suspend strategy splits its calls at 16 entries too", async () => {
  const { dir, remove } = tempDir();
  const pipes = Array.from({ length: 40 }, (_, i) => fifo(dir, `fifo${i}`));
  try {
    const engine = new Engine(darwinLike(null), "suspend");
    Object.assign(suspendCalls, { largest: 0, count: 0 });
    const reads = pipes.map((pipe) => submitRead(engine, pipe.fd));
    await sleep(30);
    assert.equal(suspendCalls.largest, 16, "no call lists more than 16");
    assert.equal(suspendCalls.count, 3, "40 entries in 3 calls");
    pipes[39].feed("z");
    await within(reads[39].done, 5000, "the last read");
    pipes.slice(0, 39).forEach((pipe) => pipe.feed("w"));
    await within(Promise.all(reads.map((read) => read.done)), 5000, "every read");
    assert.equal(engine.pending, 0);
  } finally {
    for (const pipe of pipes) pipe.close();
    remove();
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
