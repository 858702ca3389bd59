/**
 * Canceling never strands other requests, and cancels everything else. glibc's `aio_cancel` of a
 * request that is first in its fd's queue and still waiting for a worker, with another request
 * of the fd queued behind it, leaves the one behind marked runnable but off the run list: no
 * worker ever takes it, nor any later request on that fd number, even after the fd is closed and
 * the number reused (`Features.cancel_strands_followers`). The tests occupy every glibc AIO
 * thread with reads on empty FIFOs, so that requests on a regular file wait for a worker, and
 * check that cancels leave nothing pending for ever, in both layers; and that a request queued
 * behind one still running on its fd (a read blocked on a FIFO), where glibc can cancel it
 * safely, is canceled, in both layers.
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import { AioRequest, write } from "../mod.ts";
import { aio_cancel, aio_error, aio_read, aio_return, aio_write, Aiocb, constants } from "../src/posix.ts";
import { native, settings } from "../src/target.ts";
import { test } from "./harness.ts";
import {
  blockedReading,
  DEADLINE,
  fifo,
  quiescent,
  readRunning,
  releaseFifos,
  tempDir,
  tempFile,
  until,
  withDir,
  within,
} from "./helpers.ts";

const skip = native().abi.features.cancel_strands_followers
  ? false
  : `${native().target}'s aio_cancel strands nothing (no per-fd queue in libc)`;

let rounds = 0;

/**
 * Runs `body` while every glibc AIO thread is blocked reading an empty FIFO (settings.threads
 * reads), so that a request on another fd waits for a worker; then feeds the FIFOs and waits
 * for the reads.
 */
async function withWorkersBusy(dir: string, body: () => void | Promise<void>): Promise<void> {
  const round = ++rounds;
  const pipes = Array.from({ length: settings.threads }, (_, i) => fifo(dir, `busy${round}.${i}`));
  const reads = pipes.map((pipe) => AioRequest.read(pipe.fd, new Uint8Array(1), 0));
  try {
    await until(() => pipes.every((pipe) => blockedReading(pipe.fd)), `${pipes.length} AIO threads reading`);
    await body();
  } finally {
    for (const pipe of pipes) pipe.feed("z");
    await within(Promise.all(reads.map((read) => read.done)), DEADLINE, "the FIFO reads");
    for (const pipe of pipes) pipe.close();
  }
}

test(
  "AioRequest.cancel() of a request waiting for a worker, another queued behind it: both run, the fd stays usable",
  () =>
    withDir(async (dir) => {
      const { fd, file } = tempFile(dir, "data.bin");
      const encoder = new TextEncoder();
      let first!: AioRequest;
      let second!: AioRequest;
      await withWorkersBusy(dir, () => {
        first = AioRequest.write(fd, encoder.encode("one"), 0);
        second = AioRequest.write(fd, encoder.encode("two"), 3);
        assert.equal(first.error(), constants.EINPROGRESS, "waiting for a worker");
        assert.equal(first.cancel(), "notcanceled", "canceling it could strand the second");
      });
      assert.equal(await within(first.done, DEADLINE, "the first write"), 3);
      assert.equal(await within(second.done, DEADLINE, "the second write"), 3);
      // The last request of its fd has nothing behind it: that one is canceled.
      await withWorkersBusy(dir, async () => {
        const last = AioRequest.write(fd, encoder.encode("six"), 6);
        assert.equal(last.cancel(), "canceled");
        await assert.rejects(last.done, { name: "AioError", code: "ECANCELED" });
      });
      assert.equal(fs.readFileSync(file, "utf8"), "onetwo");
      // The fd number, reused by another file, still gets its requests run.
      fs.closeSync(fd);
      const other = tempFile(dir, "other.bin");
      assert.equal(await within(write(other.fd, encoder.encode("new"), 0), DEADLINE, "a write on the reused fd"), 3);
      fs.closeSync(other.fd);
      await quiescent();
    }),
  { skip },
);

test(
  "aborting a write waiting for a worker, a sync queued behind it: it is written, the sync runs",
  () =>
    withDir(async (dir) => {
      const { fd, file } = tempFile(dir, "data.bin");
      let written!: Promise<number>;
      let synced!: Promise<void>;
      await withWorkersBusy(dir, () => {
        const controller = new AbortController();
        written = write(fd, new TextEncoder().encode("kept"), 0, { signal: controller.signal });
        synced = AioRequest.fsync(fd, "dsync").done.then(() => undefined);
        controller.abort(new Error("too late"));
      });
      assert.equal(await within(written, DEADLINE, "the aborted write"), 4);
      await within(synced, DEADLINE, "the sync behind it");
      assert.equal(fs.readFileSync(file, "utf8"), "kept");
      fs.closeSync(fd);
      await quiescent();
    }),
  { skip },
);

test(
  "aio_cancel of a request waiting for a worker with another queued behind it: AIO_NOTCANCELED, both run",
  () =>
    withDir(async (dir) => {
      const { fd, file } = tempFile(dir, "data.bin");
      using first = new Aiocb({ aio_fildes: fd, aio_buf: new TextEncoder().encode("abc") });
      using second = new Aiocb({ aio_fildes: fd, aio_buf: new TextEncoder().encode("def"), aio_offset: 3 });
      await withWorkersBusy(dir, () => {
        assert.equal(aio_write(first), 0);
        assert.equal(aio_write(second), 0);
        assert.equal(aio_error(first), constants.EINPROGRESS, "waiting for a worker");
        assert.equal(aio_cancel(fd, first), constants.AIO_NOTCANCELED);
        // The second waits behind the first, which is still in flight: glibc cancels it safely.
        assert.equal(aio_cancel(fd, second), constants.AIO_CANCELED);
        assert.equal(aio_error(second), constants.ECANCELED);
      });
      await until(() => aio_error(first) !== constants.EINPROGRESS, "the first write");
      assert.equal(aio_error(first), 0);
      assert.equal(aio_return(first), 3);
      assert.equal(aio_return(second), -1);
      assert.equal(fs.readFileSync(file, "utf8"), "abc");
      fs.closeSync(fd);
    }),
  { skip },
);

test(
  "AioRequest.cancel() of a request queued behind a read running on its fd, more behind it: canceled, the others run in order",
  async () => {
    const { dir, remove } = tempDir();
    const pipe = fifo(dir);
    const requests: AioRequest[] = [];
    try {
      const running = AioRequest.read(pipe.fd, new Uint8Array(1), 0);
      requests.push(running);
      await readRunning(pipe.fd, () => running.error());
      const buffers = [new Uint8Array(1), new Uint8Array(1), new Uint8Array(1)];
      const queued = buffers.map((buffer) => AioRequest.read(pipe.fd, buffer, 0));
      requests.push(...queued);
      // POSIX, and glibc itself: a request queued behind one in progress is canceled.
      assert.equal(queued[0].cancel(), "canceled", "right behind the running read, two behind it");
      await assert.rejects(queued[0].done, { name: "AioError", code: "ECANCELED" });
      assert.equal(queued[1].cancel(), "canceled", "in the middle of the queue");
      await assert.rejects(queued[1].done, { name: "AioError", code: "ECANCELED" });
      assert.equal(queued[2].error(), constants.EINPROGRESS, "the last one still waits");
      pipe.feed("ab");
      const done = Promise.all([running.done, queued[2].done]);
      assert.deepEqual(await within(done, DEADLINE, "the running read and the last one"), [1, 1]);
      assert.deepEqual(buffers.map((buffer) => String.fromCharCode(buffer[0])), ["\0", "\0", "b"]);
      assert.equal(running.cancel(), "alldone");
    } finally {
      pipe.feed("-".repeat(requests.length));
      await releaseFifos([pipe], () => Promise.allSettled(requests.map((request) => request.done)), remove);
    }
    await quiescent();
  },
  { skip },
);

test(
  "aio_cancel of a request queued behind a read running on its fd, more behind it: AIO_CANCELED, ECANCELED, the others run in order",
  async () => {
    const { dir, remove } = tempDir();
    const pipe = fifo(dir);
    const blocks = Array.from({ length: 4 }, () => new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1) }));
    const [running, first, second, third] = blocks;
    try {
      assert.equal(aio_read(running), 0);
      await readRunning(pipe.fd, () => aio_error(running));
      for (const block of [first, second, third]) assert.equal(aio_read(block), 0);
      assert.equal(aio_cancel(pipe.fd, first), constants.AIO_CANCELED, "right behind the running read, two behind it");
      assert.equal(aio_error(first), constants.ECANCELED);
      assert.equal(aio_return(first), -1);
      assert.equal(aio_cancel(pipe.fd, second), constants.AIO_CANCELED, "in the middle of the queue");
      assert.equal(aio_error(second), constants.ECANCELED);
      assert.equal(aio_error(third), constants.EINPROGRESS, "the last one still waits");
      pipe.feed("ab");
      await until(() => aio_error(third) !== constants.EINPROGRESS, "the last read");
      assert.deepEqual([aio_error(running), aio_return(running), aio_return(second)], [0, 1, -1]);
      assert.deepEqual([aio_error(third), aio_return(third)], [0, 1]);
      assert.deepEqual(blocks.map((block) => String.fromCharCode(block.aio_buf![0])), ["a", "\0", "\0", "b"]);
      assert.equal(aio_cancel(pipe.fd, running), constants.AIO_ALLDONE);
    } finally {
      pipe.feed("-".repeat(blocks.length));
      const final = () => blocks.every((block) => aio_error(block) !== constants.EINPROGRESS);
      await releaseFifos([pipe], () => until(final, "every read final"), remove);
      for (const block of blocks) block.free();
    }
    await quiescent();
  },
  { skip },
);

/**
 * Makes `P`'s second read first in P's queue and waiting for a worker, a third read of P behind
 * it, its first read final in libc and never checked: every glibc AIO thread but one is blocked
 * on a FIFO of its own, the last on P's first read (`first()`), and a read of another FIFO, Q,
 * waits for a worker. Feeding P ends P's first read; its worker puts P's second read on the run
 * list behind Q's, then takes Q's. `body` runs then; afterwards everything is fed and awaited.
 */
async function withFirstWaiting(
  dir: string,
  first: (fd: number) => { final(): boolean },
  behind: (fd: number) => { final(): boolean },
  body: (fd: number) => void,
): Promise<void> {
  const busy = Array.from({ length: settings.threads - 1 }, (_, i) => fifo(dir, `busy.${i}`));
  const p = fifo(dir, "p");
  const q = fifo(dir, "q");
  const reads = busy.map((pipe) => AioRequest.read(pipe.fd, new Uint8Array(1), 0));
  const watched: { final(): boolean }[] = [];
  let failure: unknown;
  try {
    watched.push(first(p.fd));
    const all = [...busy, p];
    await until(() => all.every((pipe) => blockedReading(pipe.fd)), `${all.length} AIO threads reading`);
    const waiting = AioRequest.read(q.fd, new Uint8Array(1), 0);
    reads.push(waiting);
    watched.push(behind(p.fd), behind(p.fd));
    p.feed("a");
    await until(() => blockedReading(q.fd) && !blockedReading(p.fd), "Q's read running, none of P's");
    body(p.fd);
    q.feed("q");
    await until(() => blockedReading(p.fd), "P's second read running");
    p.feed("bc");
    await until(() => watched.every((each) => each.final()), "P's reads final");
  } catch (error) {
    failure = error;
  }
  // A failure of the cleanup (reads stranded for good) does not hide the test's own.
  p.feed("---");
  const cleanup = releaseFifos([...busy, p, q], async () => {
    await Promise.allSettled(reads.map((read) => read.done));
    await until(() => watched.every((each) => each.final()), "P's reads final");
  });
  if (failure === undefined) return cleanup;
  await cleanup.catch(() => {});
  throw failure;
}

test(
  "aio_cancel of a request now first in its fd's queue, waiting for a worker (the one before it final, unchecked), one behind: AIO_NOTCANCELED, all run",
  () =>
    withDir(async (dir) => {
      const blocks: Aiocb[] = [];
      const read = (fd: number) => {
        const block = new Aiocb({ aio_fildes: fd, aio_buf: new Uint8Array(1) });
        blocks.push(block);
        assert.equal(aio_read(block), 0);
        return { final: () => aio_error(block) !== constants.EINPROGRESS };
      };
      await withFirstWaiting(dir, read, read, (fd) => {
        // A request final in libc that nobody checked yet is not in front of it any more.
        assert.equal(aio_cancel(fd, blocks[1]), constants.AIO_NOTCANCELED);
      });
      assert.deepEqual(blocks.map((block) => [aio_error(block), aio_return(block)]), [[0, 1], [0, 1], [0, 1]]);
      assert.deepEqual(blocks.map((block) => String.fromCharCode(block.aio_buf![0])), ["a", "b", "c"]);
      for (const block of blocks) block.free();
      await quiescent();
    }),
  { skip },
);

test(
  "AioRequest.cancel() of a request now first in its fd's queue, waiting for a worker, one behind: not canceled, all run",
  () =>
    withDir(async (dir) => {
      const requests: AioRequest[] = [];
      const read = (fd: number) => {
        const request = AioRequest.read(fd, new Uint8Array(1), 0);
        requests.push(request);
        return { final: () => request.error() !== constants.EINPROGRESS };
      };
      await withFirstWaiting(dir, read, read, () => {
        assert.equal(requests[1].cancel(), "notcanceled");
      });
      assert.deepEqual(await Promise.all(requests.map((request) => request.done)), [1, 1, 1]);
      await quiescent();
    }),
  { skip },
);
