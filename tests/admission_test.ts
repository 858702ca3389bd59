/**
 * The adaptive admission of requests into glibc (src/admission.ts): as logic (which descriptors
 * may enter libc, how the limit follows the latency of finished requests), and through an engine
 * that uses it (off by default) with real requests: FIFO reads that never end, syncs of real
 * files. strace_test.ts shows the limit rising on a slowed device.
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import { Admission } from "../src/admission.ts";
import { ControlBlock } from "../src/control_block.ts";
import { Engine, type EngineOperation } from "../src/engine.ts";
import { native } from "../src/target.ts";
import { test } from "./harness.ts";
import { fifo, tempDir, tempFile, within } from "./helpers.ts";

/** glibc's pool, where admission applies (not musl, not macOS). */
const glibc = native().abi.aioinit !== null && native().abi.limits.per_process_in_flight === null;
const skip = glibc ? false : "adaptive admission applies to glibc's thread pool only";

/** A request submitted through `engine`: a read of one byte, or an fdatasync. */
function submit(engine: Engine, fd: number, kind: "read" | "fdatasync", order?: number[], tag?: number) {
  const block = new ControlBlock();
  block.set("aio_fildes", fd);
  const buffer = new Uint8Array(1);
  if (kind === "read") block.prepare("read", buffer, 1);
  let complete!: () => void;
  const done = new Promise<void>((resolve) => complete = resolve);
  const op: EngineOperation = {
    block,
    fd,
    submittedAt: 0,
    token: undefined,
    complete: () => {
      if (order !== undefined && tag !== undefined) order.push(tag);
      complete();
    },
  };
  const { O_DSYNC } = native().abi.constants;
  const errno = engine.submit(op, () => kind === "read" ? block.start("read") : block.start("fdatasync", O_DSYNC));
  assert.equal(errno, 0);
  return { op, buffer, done };
}

test("Admission: starts at its minimum, admits up to that many descriptors, and always one while idle", () => {
  const admission = new Admission(2, 64, () => {}, 60_000);
  assert.equal(admission.limit, 2);
  assert.equal(admission.admits(10), true);
  admission.started(10);
  assert.equal(admission.admits(11), true);
  admission.started(11);
  assert.equal(admission.admits(12), false, "a third descriptor waits");
  assert.equal(admission.admits(10), true, "a descriptor already in libc is always admitted");
  admission.started(10);
  assert.equal(admission.active, 2);
  admission.finished(10, 0.01);
  assert.equal(admission.admits(12), false, "fd 10 still has a request in libc");
  admission.finished(10, 0.01);
  assert.equal(admission.admits(12), true);
  admission.finished(11, 0.01);
  assert.equal(admission.active, 0);
  const tiny = new Admission(0, 0, () => {}, 60_000);
  assert.equal(tiny.limit, 1, "the limit is never below one");
  assert.equal(tiny.admits(3), true, "nothing in libc: a request is always admitted");
});

test("Admission: the limit rises with slow requests up to the pool, and falls back when they turn fast", () => {
  const admission = new Admission(2, 64, () => {}, 60_000);
  for (let i = 0; i < 200; i++) {
    admission.started(i);
    admission.finished(i, 1); // 1 ms
  }
  assert.equal(admission.limit, 64);
  assert.equal(admission.peak, 64);
  for (let i = 0; i < 200; i++) {
    admission.started(i);
    admission.finished(i, 0.005); // 5 µs
  }
  assert.equal(admission.limit, 2);
  assert.equal(admission.peak, 64, "the peak is kept");
  const few = new Admission(2, 8, () => {}, 60_000);
  for (let i = 0; i < 200; i++) {
    few.started(i);
    few.finished(i, 10);
  }
  assert.equal(few.limit, 8, "never above the pool");
});

test("Admission: one slow request among fast ones moves the limit little; a fast one among slow ones more", () => {
  const admission = new Admission(2, 64, () => {}, 60_000);
  for (let i = 0; i < 50; i++) admission.finished(1, 0.01);
  admission.finished(1, 1);
  assert.ok(admission.limit < 16, `limit ${admission.limit} after one slow request`);
  for (let i = 0; i < 200; i++) admission.finished(1, 1);
  const before = admission.latencyUs;
  admission.finished(1, 0.01);
  assert.ok(admission.latencyUs < before * 0.8, "a faster request pulls the estimate down quickly");
  admission.finished(1, Number.NaN);
  assert.ok(Number.isFinite(admission.latencyUs), "a latency that is not a number is ignored");
});

test("Admission: a descriptor without progress stops counting, and hold() calls back when nothing finishes", async () => {
  let stalls = 0;
  let stalled: () => void = () => {};
  const admission = new Admission(1, 64, () => {
    stalls++;
    stalled();
  }, 5);
  admission.started(1);
  const called = new Promise<void>((resolve) => stalled = resolve);
  admission.hold();
  admission.hold(); // one callback, however many requests are held
  await within(called, 10_000, "the stall callback");
  assert.equal(stalls, 1);
  assert.equal(admission.admits(2), true, "fd 1 made no progress: fd 2 may enter");
  admission.started(2);
  admission.finished(1, 0.01);
  admission.finished(2, 0.01);
  assert.equal(admission.active, 0);
  // A request that finishes cancels the pending callback.
  admission.started(3);
  admission.hold();
  admission.finished(3, 0.01);
  const quiet = new Promise<void>((resolve) => stalled = resolve);
  const late = await Promise.race([quiet.then(() => "called"), new Promise((r) => setTimeout(() => r("quiet"), 50))]);
  assert.equal(late, "quiet");
  assert.equal(stalls, 1);
});

test("engine with admission: reads waiting for ever on FIFOs hold nothing back for ever; syncs settle", async () => {
  const { dir, remove } = tempDir();
  const pipes = Array.from({ length: 4 }, (_, i) => fifo(dir, `fifo-${i}`));
  const files = Array.from({ length: 12 }, (_, i) => tempFile(dir, `s${i}`, `sync ${i}`));
  try {
    const engine = new Engine(native(), "poll+suspend", 2);
    assert.ok(engine.admission !== null);
    const reads = pipes.map((pipe) => submit(engine, pipe.fd, "read"));
    const syncs = files.map(({ fd }) => submit(engine, fd, "fdatasync"));
    // Two FIFOs fill the limit; the other requests wait until those count as stalled.
    assert.ok(engine.held > 0, `held ${engine.held}`);
    await within(Promise.all(syncs.map((sync) => sync.done)), 30_000, "syncs while 4 reads wait on FIFOs");
    assert.ok(syncs.every((sync) => sync.op.block.error === 0 && sync.op.block.result === 0));
    assert.equal(engine.pending, 4, "the reads are still pending");
    assert.equal(engine.held, 0);
    pipes.forEach((pipe, i) => pipe.feed(String(i)));
    await within(Promise.all(reads.map((read) => read.done)), 30_000, "the reads");
    assert.deepEqual(reads.map((read) => read.buffer[0]), [48, 49, 50, 51]);
    assert.equal(engine.pending, 0);
    assert.equal(engine.admission!.active, 0);
  } finally {
    for (const pipe of pipes) pipe.close();
    for (const { fd } of files) fs.closeSync(fd);
    remove();
  }
}, { skip });

test("engine with admission: 48 descriptors at once are held back, then all settle once", async () => {
  const { dir, remove } = tempDir();
  const files = Array.from({ length: 48 }, (_, i) => tempFile(dir, `f${i}`, `file ${i}`));
  try {
    const engine = new Engine(native(), "poll+suspend", 2);
    const order: number[] = [];
    const syncs = files.map(({ fd }, i) => submit(engine, fd, "fdatasync", order, i));
    assert.ok(engine.held > 0, "more descriptors than the limit: some wait");
    assert.equal(engine.inLibc + engine.held, engine.pending);
    await within(Promise.all(syncs.map((sync) => sync.done)), 30_000, "48 syncs");
    assert.equal(order.length, 48);
    assert.ok(syncs.every((sync) => sync.op.block.error === 0 && sync.op.block.result === 0));
    assert.equal(engine.pending, 0);
    assert.equal(engine.held, 0);
    assert.equal(engine.admission!.active, 0);
    assert.deepEqual(order.toSorted((a, b) => a - b), files.map((_, i) => i), "each settled once");
  } finally {
    for (const { fd } of files) fs.closeSync(fd);
    remove();
  }
}, { skip });

test("the default engine has no admission (measured: it lost to glibc's own queueing)", () => {
  assert.equal(new Engine(native(), "poll+suspend").admission, null);
});
