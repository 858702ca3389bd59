/**
 * Canceling never strands other requests. glibc's `aio_cancel` of a request that is first in its
 * fd's queue and still waiting for a worker, with another request of the fd queued behind it,
 * leaves the one behind marked runnable but off the run list: no worker ever takes it, nor any
 * later request on that fd number, even after the fd is closed and the number reused
 * (`Features.cancel_strands_followers`). The tests occupy every glibc AIO thread with reads on
 * empty FIFOs, so that requests on a regular file wait for a worker, and check that cancels
 * leave nothing pending for ever, in both layers.
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import { AioRequest, write } from "../mod.ts";
import { aio_cancel, aio_error, aio_return, aio_write, Aiocb, constants } from "../src/posix.ts";
import { native, settings } from "../src/target.ts";
import { test } from "./harness.ts";
import { blockedReading, DEADLINE, fifo, quiescent, tempFile, until, withDir, within } from "./helpers.ts";

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
        // The last one has nothing behind it: glibc cancels it.
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
