/**
 * The C-faithful layer against ../shared/reference/conformance.md, on real files, FIFOs and
 * closed descriptors. Each test names its checklist item; where Linux and POSIX differ, the
 * test accepts what Linux does and says so.
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import { stats, target } from "../mod.ts";
import { ControlBlock } from "../src/control_block.ts";
import {
  aio_cancel,
  aio_error,
  aio_fsync,
  aio_read,
  aio_return,
  aio_suspend,
  aio_write,
  Aiocb,
  constants,
  errno,
  lio_listio,
  type Sigevent,
} from "../src/posix.ts";
import { native } from "../src/target.ts";
import { test } from "./harness.ts";
import {
  canGc,
  closedFd,
  collected,
  DEADLINE,
  fifo,
  gc,
  quiescent,
  readRunning,
  sleep,
  tempFile,
  until,
  withDir,
  within,
} from "./helpers.ts";

const encoder = new TextEncoder();

/**
 * Waits until the request of `cb` is final, the C way, each aio_suspend call bounded; fails
 * after DEADLINE instead of looping for ever (an aio_suspend that keeps failing at once, a
 * request that never ends).
 */
async function settle(cb: Aiocb): Promise<void> {
  const start = performance.now();
  while (aio_error(cb) === constants.EINPROGRESS) {
    if (performance.now() - start > DEADLINE) throw new Error(`the request did not end within ${DEADLINE} ms`);
    await aio_suspend([cb], { tv_sec: 1, tv_nsec: 0 });
  }
}

test("1. aio_fsync with an op other than O_SYNC/O_DSYNC: -1, EINVAL, nothing queued", () =>
  withDir((dir) => {
    const { fd } = tempFile(dir);
    using cb = new Aiocb({ aio_fildes: fd });
    const before = stats().pending;
    assert.equal(aio_fsync(12345, cb), -1);
    assert.equal(errno(), constants.EINVAL);
    assert.equal(stats().pending, before);
    assert.equal(aio_error(cb), -1, "no request was queued");
    assert.equal(errno(), constants.EINVAL);
    fs.closeSync(fd);
  }));

test("2. aio_fsync on fd -1 and on a closed fd: -1, EBADF", () =>
  withDir((dir) => {
    for (const fd of [-1, closedFd(dir)]) {
      using cb = new Aiocb({ aio_fildes: fd });
      assert.equal(aio_fsync(constants.O_SYNC, cb), -1, `fd ${fd}`);
      assert.equal(errno(), constants.EBADF, `fd ${fd}`);
    }
  }));

test("3/4. a successful aio_fsync returns 0, is EINPROGRESS or 0 at once, then 0 and 0", () =>
  withDir(async (dir) => {
    const { fd } = tempFile(dir);
    fs.writeSync(fd, "data");
    for (const op of [constants.O_SYNC, constants.O_DSYNC]) {
      using cb = new Aiocb({ aio_fildes: fd });
      assert.equal(aio_fsync(op, cb), 0);
      assert.ok([constants.EINPROGRESS, 0].includes(aio_error(cb)));
      await settle(cb);
      assert.equal(aio_error(cb), 0);
      assert.equal(aio_return(cb), 0);
    }
    fs.closeSync(fd);
  }));

for (const [item, name] of [["5", "O_DSYNC"], ["6", "O_SYNC"]] as const) {
  test(`${item}. ${name}: a write queued before the sync has completed when the sync completes`, () =>
    withDir(async (dir) => {
      const { fd, file } = tempFile(dir);
      const data = encoder.encode(`queued before ${name}\n`);
      using write = new Aiocb({ aio_fildes: fd, aio_buf: data, aio_offset: 0 });
      using sync = new Aiocb({ aio_fildes: fd });
      assert.equal(aio_write(write), 0);
      assert.equal(aio_fsync(constants[name], sync), 0);
      await settle(sync);
      assert.equal(aio_error(sync), 0);
      assert.notEqual(aio_error(write), constants.EINPROGRESS, "the write is final");
      assert.equal(aio_return(write), data.length);
      assert.deepEqual(new Uint8Array(fs.readFileSync(file)), data);
      aio_return(sync);
      fs.closeSync(fd);
    }));
}

test("7. only aio_fildes and aio_sigevent matter to aio_fsync: garbage elsewhere changes nothing", () =>
  withDir(async (dir) => {
    const { fd, file } = tempFile(dir, "data.bin", "unchanged");
    using cb = new Aiocb({
      aio_fildes: fd,
      aio_buf: crypto.getRandomValues(new Uint8Array(64)),
      aio_nbytes: 17,
      aio_offset: 123_456_789,
      aio_reqprio: 3,
      aio_lio_opcode: 77,
    });
    assert.equal(aio_fsync(constants.O_DSYNC, cb), 0);
    await settle(cb);
    assert.equal(aio_error(cb), 0);
    assert.equal(aio_return(cb), 0);
    assert.equal(fs.readFileSync(file, "utf8"), "unchanged");
    fs.closeSync(fd);
  }));

test("8. a sync that fails (fsync on a FIFO: EINVAL on Linux) reports the errno, and -1", () =>
  withDir(async (dir) => {
    const pipe = fifo(dir);
    using cb = new Aiocb({ aio_fildes: pipe.fd });
    assert.equal(aio_fsync(constants.O_SYNC, cb), 0, "Linux accepts the submit");
    await settle(cb);
    assert.equal(aio_error(cb), constants.EINVAL);
    assert.equal(aio_return(cb), -1);
    pipe.close();
  }));

test("9. a read-only fd: POSIX says EBADF, glibc and musl accept the sync and succeed", () =>
  withDir(async (dir) => {
    const { file } = tempFile(dir, "ro.bin", "read only");
    const fd = fs.openSync(file, "r");
    using cb = new Aiocb({ aio_fildes: fd });
    const submitted = aio_fsync(constants.O_SYNC, cb);
    if (target.libc === "darwin") {
      assert.equal(submitted, -1);
    } else {
      assert.equal(submitted, 0);
      await settle(cb);
      assert.equal(aio_error(cb), 0);
      assert.equal(aio_return(cb), 0);
    }
    fs.closeSync(fd);
  }));

test("11. SIGEV_NONE is the default; SIGEV_THREAD calls the function with sigev_value", () =>
  withDir(async (dir) => {
    const { fd } = tempFile(dir);
    using none = new Aiocb({ aio_fildes: fd });
    assert.equal(none.aio_sigevent.sigev_notify, constants.SIGEV_NONE);
    const values: (number | bigint)[] = [];
    let notified!: () => void;
    const arrived = new Promise<void>((resolve) => notified = resolve);
    using thread = new Aiocb({
      aio_fildes: fd,
      aio_sigevent: {
        sigev_notify: constants.SIGEV_THREAD,
        sigev_value: 4242,
        sigev_notify_function: (value) => {
          values.push(value);
          notified();
        },
      },
    });
    assert.equal(aio_fsync(constants.O_DSYNC, none), 0);
    assert.equal(aio_fsync(constants.O_DSYNC, thread), 0);
    await within(arrived, DEADLINE, "the SIGEV_THREAD notification");
    assert.deepEqual(values, [4242]);
    assert.equal(aio_error(thread), 0, "the status is final when the notification runs");
    await settle(none);
    aio_return(none);
    aio_return(thread);
    fs.closeSync(fd);
  }), { skip: target.os === "darwin" ? "macOS has no SIGEV_THREAD" : false });

test(
  "11. SIGEV_THREAD: 200 notifications in flight at once, 3 rounds: each arrives once, with its own sigev_value",
  () =>
    withDir(async (dir) => {
      const files = Array.from({ length: 200 }, (_, i) => tempFile(dir, `f${i}`).fd);
      for (let round = 0; round < 3; round++) {
        const seen = new Map<number, number>();
        let left = files.length;
        let done!: () => void;
        const all = new Promise<void>((resolve) => done = resolve);
        const blocks = files.map((fd, i) =>
          new Aiocb({
            aio_fildes: fd,
            aio_sigevent: {
              sigev_notify: constants.SIGEV_THREAD,
              sigev_value: round * 1000 + i,
              sigev_notify_function: (value) => {
                seen.set(Number(value), (seen.get(Number(value)) ?? 0) + 1);
                if (--left === 0) done();
              },
            },
          })
        );
        for (const cb of blocks) assert.equal(aio_fsync(constants.O_DSYNC, cb), 0);
        await within(all, DEADLINE, `round ${round}: 200 notifications`);
        assert.deepEqual([...seen.keys()].sort((a, b) => a - b), files.map((_, i) => round * 1000 + i));
        assert.ok([...seen.values()].every((count) => count === 1), "each once");
        for (const cb of blocks) {
          assert.equal(aio_error(cb), 0);
          assert.equal(aio_return(cb), 0);
          cb.free();
        }
      }
      for (const fd of files) fs.closeSync(fd);
      await quiescent();
    }),
  { skip: target.os === "darwin" ? "macOS has no SIGEV_THREAD" : false },
);

test("11. SIGEV_SIGNAL delivers sigev_signo when the request completes", () =>
  withDir(async (dir) => {
    const { fd } = tempFile(dir);
    let received!: () => void;
    const signaled = new Promise<void>((resolve) => received = resolve);
    const deno = (globalThis as { Deno?: unknown }).Deno !== undefined;
    // A signal with no listener would kill the process: listen first, stop only after it came.
    if (deno) Deno.addSignalListener("SIGUSR2", received);
    else process.on("SIGUSR2", received);
    try {
      using cb = new Aiocb({
        aio_fildes: fd,
        aio_sigevent: { sigev_notify: constants.SIGEV_SIGNAL, sigev_signo: 12, sigev_value: 1 },
      });
      assert.equal(aio_fsync(constants.O_DSYNC, cb), 0);
      await settle(cb);
      await within(signaled, DEADLINE, "SIGUSR2");
      assert.equal(aio_return(cb), 0);
    } finally {
      if (deno) Deno.removeSignalListener("SIGUSR2", received);
      else process.off("SIGUSR2", received);
    }
    fs.closeSync(fd);
  }), { skip: target.os !== "linux" ? "SIGUSR2 is 12 on Linux only" : false });

test("12. aio_error: EINPROGRESS while pending, 0 after success, the failure's errno, ECANCELED", () =>
  withDir(async (dir) => {
    const pipe = fifo(dir);
    const glibc = target.libc === "glibc";
    using running = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(8) });
    assert.equal(aio_read(running), 0);
    await readRunning(pipe.fd, () => aio_error(running));
    assert.equal(aio_error(running), constants.EINPROGRESS);
    // ECANCELED after a successful cancel: glibc cancels a request queued behind the running
    // read (it cannot cancel a running one); musl cancels the running one itself.
    using queued = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(8) });
    assert.equal(aio_read(queued), 0);
    const canceled = glibc ? queued : running;
    const survivor = glibc ? running : queued;
    assert.equal(aio_cancel(pipe.fd, canceled), constants.AIO_CANCELED);
    assert.equal(aio_error(canceled), constants.ECANCELED);
    assert.equal(aio_return(canceled), -1);
    pipe.feed("abc");
    await settle(survivor);
    assert.equal(aio_error(survivor), 0);
    assert.equal(aio_return(survivor), 3);
    assert.equal(new TextDecoder().decode(survivor.aio_buf!.subarray(0, 3)), "abc");
    // A read on a descriptor open for writing only fails when it runs: EBADF as its status.
    const { file } = tempFile(dir, "wo.bin", "x");
    const writeOnly = fs.openSync(file, "w");
    using failing = new Aiocb({ aio_fildes: writeOnly, aio_buf: new Uint8Array(4) });
    assert.equal(aio_read(failing), 0);
    await settle(failing);
    assert.equal(aio_error(failing), constants.EBADF);
    assert.equal(aio_return(failing), -1);
    fs.closeSync(writeOnly);
    pipe.close();
  }));

test("13. asking aio_error twice changes nothing", () =>
  withDir(async (dir) => {
    const { fd } = tempFile(dir);
    using cb = new Aiocb({ aio_fildes: fd });
    aio_fsync(constants.O_SYNC, cb);
    await settle(cb);
    assert.equal(aio_error(cb), 0);
    assert.equal(aio_error(cb), 0);
    assert.equal(aio_return(cb), 0);
    fs.closeSync(fd);
  }));

test("14. aio_error/aio_return on a block never submitted or already collected: -1, EINVAL", () =>
  withDir(async (dir) => {
    const { fd } = tempFile(dir);
    using cb = new Aiocb({ aio_fildes: fd });
    assert.equal(aio_error(cb), -1);
    assert.equal(errno(), constants.EINVAL);
    assert.equal(aio_return(cb), -1);
    assert.equal(errno(), constants.EINVAL);
    aio_fsync(constants.O_SYNC, cb);
    await settle(cb);
    assert.equal(aio_return(cb), 0);
    assert.equal(aio_error(cb), -1, "collected");
    assert.equal(errno(), constants.EINVAL);
    fs.closeSync(fd);
  }));

test("15. aio_return: bytes for read and write, 0 for a sync, -1 for a failure", () =>
  withDir(async (dir) => {
    const { fd } = tempFile(dir);
    using write = new Aiocb({ aio_fildes: fd, aio_buf: encoder.encode("0123456789"), aio_offset: 0 });
    aio_write(write);
    await settle(write);
    assert.equal(aio_return(write), 10);
    using read = new Aiocb({ aio_fildes: fd, aio_buf: new Uint8Array(4), aio_offset: 8 });
    aio_read(read);
    await settle(read);
    assert.equal(aio_return(read), 2, "a short read at the end of the file");
    assert.deepEqual([...read.aio_buf!.subarray(0, 2)], [56, 57]);
    using sync = new Aiocb({ aio_fildes: fd });
    aio_fsync(constants.O_DSYNC, sync);
    await settle(sync);
    assert.equal(aio_return(sync), 0);
    using bad = new Aiocb({ aio_fildes: fd, aio_buf: new Uint8Array(1), aio_offset: -5 });
    aio_read(bad);
    await settle(bad);
    assert.equal(aio_error(bad), constants.EINVAL, "pread at a negative offset");
    assert.equal(aio_return(bad), -1);
    fs.closeSync(fd);
  }));

test("16. aio_return while pending: refused (-1, EINPROGRESS) without consuming the result", () =>
  withDir(async (dir) => {
    const pipe = fifo(dir);
    using cb = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(4) });
    aio_read(cb);
    assert.equal(aio_return(cb), -1);
    assert.equal(errno(), constants.EINPROGRESS);
    pipe.feed("xy");
    await settle(cb);
    assert.equal(aio_return(cb), 2);
    pipe.close();
  }));

test("17. aio_return is taken once: a second call is -1, EINVAL", () =>
  withDir(async (dir) => {
    const { fd } = tempFile(dir);
    using cb = new Aiocb({ aio_fildes: fd, aio_buf: encoder.encode("abc") });
    aio_write(cb);
    await settle(cb);
    assert.equal(aio_return(cb), 3);
    assert.equal(aio_return(cb), -1);
    assert.equal(errno(), constants.EINVAL);
    fs.closeSync(fd);
  }));

test("18. reusing a control block: aio_return reports the new request", () =>
  withDir(async (dir) => {
    const { fd } = tempFile(dir);
    using cb = new Aiocb({ aio_fildes: fd, aio_buf: encoder.encode("hello") });
    aio_write(cb);
    await settle(cb);
    assert.equal(aio_return(cb), 5);
    cb.aio_buf = new Uint8Array(3);
    aio_read(cb);
    await settle(cb);
    assert.equal(aio_return(cb), 3);
    assert.equal(new TextDecoder().decode(cb.aio_buf!), "hel");
    fs.closeSync(fd);
  }));

test("[timing] 19. aio_suspend without a timeout waits as long as it takes, then returns 0", () =>
  withDir(async (dir) => {
    const pipe = fifo(dir);
    using cb = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1) });
    aio_read(cb);
    const start = performance.now();
    setTimeout(() => pipe.feed("!"), 150);
    assert.equal(await aio_suspend([cb]), 0);
    assert.ok(performance.now() - start >= 140, "it waited for the data");
    assert.equal(aio_error(cb), 0);
    assert.equal(aio_return(cb), 1);
    pipe.close();
  }));

test("[timing] 20. aio_suspend returns at once if one listed request is complete, beside a blocked one", () =>
  withDir(async (dir) => {
    const pipe = fifo(dir);
    const { fd } = tempFile(dir);
    using blocked = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1) });
    using done = new Aiocb({ aio_fildes: fd });
    aio_read(blocked);
    aio_fsync(constants.O_DSYNC, done);
    await settle(done);
    // A wait that ignored the complete entry would last the whole minute.
    const start = performance.now();
    assert.equal(await aio_suspend([blocked, done], { tv_sec: 60, tv_nsec: 0 }), 0);
    assert.ok(performance.now() - start < DEADLINE, `returned after ${performance.now() - start} ms`);
    aio_return(done);
    pipe.feed("z");
    await settle(blocked);
    aio_return(blocked);
    pipe.close();
    fs.closeSync(fd);
  }));

test("21. aio_suspend ignores null entries", () =>
  withDir(async (dir) => {
    const { fd } = tempFile(dir);
    using cb = new Aiocb({ aio_fildes: fd });
    aio_fsync(constants.O_SYNC, cb);
    assert.equal(await aio_suspend([null, cb, null]), 0);
    await settle(cb);
    assert.equal(aio_return(cb), 0);
    fs.closeSync(fd);
  }));

test("22. aio_suspend with an empty or all-null list is rejected (glibc returns, musl sleeps)", async () => {
  await assert.rejects(aio_suspend([]), TypeError);
  await assert.rejects(aio_suspend([null, null]), TypeError);
});

test("[timing] 23. aio_suspend timeout: -1, EAGAIN, after at least the timeout; a zero timeout polls", () =>
  withDir(async (dir) => {
    const pipe = fifo(dir);
    using cb = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1) });
    aio_read(cb);
    const start = performance.now();
    assert.equal(await aio_suspend([cb], { tv_sec: 0, tv_nsec: 200_000_000 }), -1);
    assert.ok(performance.now() - start >= 199, `waited ${performance.now() - start} ms`);
    assert.equal(errno(), constants.EAGAIN);
    // A zero timeout that were taken for "no timeout" would never return: the deadline fails it.
    assert.equal(await within(aio_suspend([cb], { tv_sec: 0, tv_nsec: 0 }), DEADLINE, "a zero-timeout wait"), -1);
    assert.equal(errno(), constants.EAGAIN);
    pipe.feed("a");
    await settle(cb);
    aio_return(cb);
    pipe.close();
  }));

test("[timing] 24. aio_suspend keeps waiting for its whole timeout while signals arrive", () =>
  withDir(async (dir) => {
    const pipe = fifo(dir);
    using cb = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1) });
    aio_read(cb);
    const deno = (globalThis as { Deno?: unknown }).Deno !== undefined;
    // SIGWINCH: handled while the listener is there, and ignored by default once it is gone,
    // so a signal still on its way when the test ends cannot end the process (SIGUSR1 did, on
    // a loaded machine).
    let received = 0;
    const count = (): void => void received++;
    if (deno) Deno.addSignalListener("SIGWINCH", count);
    else process.on("SIGWINCH", count);
    let ticker: ReturnType<typeof setInterval> | undefined;
    try {
      const start = performance.now();
      const waiting = aio_suspend([cb], { tv_sec: 0, tv_nsec: 300_000_000 });
      process.kill(process.pid, "SIGWINCH");
      ticker = setInterval(() => process.kill(process.pid, "SIGWINCH"), 20);
      assert.equal(await waiting, -1);
      assert.equal(errno(), constants.EAGAIN, "not EINTR: interrupted waits are resumed");
      assert.ok(performance.now() - start >= 299);
      clearInterval(ticker);
      await until(() => received > 0, "a SIGWINCH delivered");
    } finally {
      clearInterval(ticker);
      if (deno) Deno.removeSignalListener("SIGWINCH", count);
      else process.off("SIGWINCH", count);
    }
    pipe.feed("a");
    await settle(cb);
    aio_return(cb);
    pipe.close();
  }));

test("25. a mixed list (read, write, fsync) whose first entry is pending works", () =>
  withDir(async (dir) => {
    const pipe = fifo(dir);
    const { fd } = tempFile(dir);
    using read = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1) });
    using write = new Aiocb({ aio_fildes: fd, aio_buf: encoder.encode("mixed") });
    using sync = new Aiocb({ aio_fildes: fd });
    aio_read(read);
    aio_write(write);
    aio_fsync(constants.O_DSYNC, sync);
    await settle(write);
    await settle(sync);
    assert.equal(await aio_suspend([read, write, sync]), 0, "returns at once: two entries are complete");
    assert.equal(aio_error(read), constants.EINPROGRESS);
    assert.equal(aio_return(write), 5);
    assert.equal(aio_return(sync), 0);
    pipe.feed("r");
    await settle(read);
    assert.equal(aio_return(read), 1);
    pipe.close();
    fs.closeSync(fd);
  }));

test("26. aio_cancel on an invalid fd: -1, EBADF (musl: a closed fd with no queue is AIO_ALLDONE)", () =>
  withDir((dir) => {
    assert.equal(aio_cancel(-1, null), -1);
    assert.equal(errno(), constants.EBADF);
    if (target.libc === "musl") {
      assert.equal(aio_cancel(closedFd(dir), null), constants.AIO_ALLDONE);
    } else {
      assert.equal(aio_cancel(closedFd(dir), null), -1);
      assert.equal(errno(), constants.EBADF);
    }
  }));

test("27. aio_cancel when everything is complete: AIO_ALLDONE, also for (fd, null)", () =>
  withDir(async (dir) => {
    const { fd } = tempFile(dir);
    using cb = new Aiocb({ aio_fildes: fd });
    assert.equal(aio_cancel(fd, null), constants.AIO_ALLDONE);
    aio_fsync(constants.O_SYNC, cb);
    await settle(cb);
    assert.equal(aio_cancel(fd, cb), constants.AIO_ALLDONE);
    assert.equal(aio_return(cb), 0);
    fs.closeSync(fd);
  }));

test(
  "28. canceling a queued request: AIO_CANCELED, ECANCELED, -1, and its notification fires",
  () =>
    withDir(async (dir) => {
      const pipe = fifo(dir);
      using blocker = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1) });
      let notified!: (value: number | bigint) => void;
      const notification = new Promise<number | bigint>((resolve) => notified = resolve);
      const sigevent: Partial<Sigevent> = {
        sigev_notify: constants.SIGEV_THREAD,
        sigev_value: 28,
        sigev_notify_function: (value) => notified(value),
      };
      using queued = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1), aio_sigevent: sigevent });
      assert.equal(aio_read(blocker), 0);
      await readRunning(pipe.fd, () => aio_error(blocker));
      assert.equal(aio_read(queued), 0);
      assert.equal(aio_cancel(pipe.fd, queued), constants.AIO_CANCELED);
      assert.equal(aio_error(queued), constants.ECANCELED);
      assert.equal(aio_return(queued), -1);
      assert.equal(await within(notification, DEADLINE, "the notification"), 28);
      pipe.feed("b");
      await settle(blocker);
      aio_return(blocker);
      pipe.close();
    }),
  { skip: target.libc !== "glibc" ? "needs glibc's per-fd queue and SIGEV_THREAD" : false },
);

test(
  "29. canceling a request in progress: AIO_NOTCANCELED (glibc), it still finishes and is collected",
  () =>
    withDir(async (dir) => {
      const pipe = fifo(dir);
      using cb = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(2) });
      aio_read(cb);
      await readRunning(pipe.fd, () => aio_error(cb));
      assert.equal(aio_cancel(pipe.fd, cb), constants.AIO_NOTCANCELED);
      assert.equal(aio_error(cb), constants.EINPROGRESS, "untouched");
      pipe.feed("ok");
      await settle(cb);
      assert.equal(aio_error(cb), 0);
      assert.equal(aio_return(cb), 2);
      pipe.close();
    }),
  { skip: target.libc === "musl" ? "musl cancels running requests instead" : false },
);

test("30. aio_cancel(fd, null) cancels every cancelable request on the fd", () =>
  withDir(async (dir) => {
    const pipe = fifo(dir);
    using running = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1) });
    using first = new Aiocb({ aio_fildes: pipe.fd });
    using second = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1) });
    aio_read(running);
    await readRunning(pipe.fd, () => aio_error(running));
    aio_fsync(constants.O_DSYNC, first);
    aio_read(second);
    assert.equal(aio_cancel(pipe.fd, null), constants.AIO_NOTCANCELED, "one could not be canceled");
    assert.equal(aio_error(first), constants.ECANCELED);
    assert.equal(aio_error(second), constants.ECANCELED);
    assert.equal(aio_error(running), constants.EINPROGRESS);
    pipe.feed("c");
    await settle(running);
    assert.equal(aio_return(running), 1);
    aio_return(first);
    aio_return(second);
    pipe.close();
  }), { skip: target.libc !== "glibc" ? "needs glibc's per-fd queue" : false });

test("31. aio_cancel with a block of another open fd is refused before libc (EINVAL)", () =>
  withDir((dir) => {
    const { fd } = tempFile(dir);
    const other = tempFile(dir, "other.bin");
    using cb = new Aiocb({ aio_fildes: fd });
    assert.equal(aio_cancel(other.fd, cb), -1);
    assert.equal(errno(), constants.EINVAL);
    fs.closeSync(other.fd);
    fs.closeSync(fd);
  }));

test("32. a refused submit leaves nothing in flight and the block can be freed", () => {
  const before = stats();
  const cb = new Aiocb({ aio_fildes: -1, aio_buf: new Uint8Array(16) });
  assert.equal(aio_fsync(constants.O_SYNC, cb), -1);
  assert.equal(errno(), constants.EBADF);
  assert.equal(stats().pending, before.pending);
  assert.equal(aio_error(cb), -1, "no request");
  cb.free();
  assert.deepEqual(stats(), before);
});

test("33. an Aiocb cannot be freed, changed or reused while its request is in flight", () =>
  withDir(async (dir) => {
    const pipe = fifo(dir);
    const cb = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1) });
    aio_read(cb);
    assert.throws(() => cb.free(), /in flight/);
    assert.throws(() => cb.aio_offset = 5, /in flight/);
    assert.throws(() => cb.aio_buf = new Uint8Array(4), /in flight/);
    assert.throws(() => aio_read(cb), /in flight/);
    assert.throws(() => aio_fsync(constants.O_SYNC, cb), /in flight/);
    const waiting = aio_suspend([cb]);
    pipe.feed("d");
    assert.equal(await waiting, 0);
    await settle(cb);
    aio_return(cb);
    cb.free();
    assert.throws(() => aio_error(cb), /freed/);
    pipe.close();
  }));

test("33. a final block still listed by an aio_suspend call is freed only after that call returns", () =>
  withDir(async (dir) => {
    const { fd } = tempFile(dir);
    const block = new ControlBlock(native());
    block.set("aio_fildes", fd);
    assert.equal(block.fsync(constants.O_SYNC), 0);
    block.list();
    await until(() => block.poll(), "the sync's completion");
    assert.throws(() => block.free(), /aio_suspend/);
    assert.throws(() => block.fsync(constants.O_SYNC), /aio_suspend/);
    const allocated = stats().allocated;
    block.retire();
    assert.equal(stats().allocated, allocated, "still allocated while listed");
    block.unlist();
    assert.equal(stats().allocated, allocated - 1);
    assert.equal(block.state, "freed");
    fs.closeSync(fd);
  }));

test("35. a buffer changed right after aio_write still writes what was submitted", () =>
  withDir(async (dir) => {
    const { fd, file } = tempFile(dir);
    const data = encoder.encode("original");
    using cb = new Aiocb({ aio_fildes: fd, aio_buf: data });
    aio_write(cb);
    data.fill(0);
    await settle(cb);
    assert.equal(aio_return(cb), 8);
    assert.equal(fs.readFileSync(file, "utf8"), "original");
    fs.closeSync(fd);
  }));

test("aio_nbytes cannot exceed aio_buf and defaults to its length", () => {
  using cb = new Aiocb({ aio_buf: new Uint8Array(10) });
  assert.equal(cb.aio_nbytes, 10);
  cb.aio_nbytes = 4;
  assert.equal(cb.aio_nbytes, 4);
  assert.throws(() => cb.aio_nbytes = 11, RangeError);
  assert.throws(() => new Aiocb({ aio_nbytes: 1 }), /aio_nbytes/);
});

test("Aiocb accessors read back what native memory holds", () => {
  using cb = new Aiocb({ aio_fildes: 7, aio_offset: 2 ** 40 + 3, aio_reqprio: 2, aio_lio_opcode: constants.LIO_WRITE });
  assert.equal(cb.aio_fildes, 7);
  assert.equal(cb.aio_offset, 2 ** 40 + 3);
  cb.aio_offset = -1;
  assert.equal(cb.aio_offset, -1);
  assert.equal(cb.aio_reqprio, 2);
  assert.equal(cb.aio_lio_opcode, constants.LIO_WRITE);
  assert.throws(() => cb.aio_fildes = 2 ** 31, RangeError);
  assert.throws(() => cb.aio_offset = 2 ** 53, RangeError);
  assert.throws(() => cb.aio_sigevent = { sigev_notify: 99 }, /sigev_notify/);
  assert.throws(() => cb.aio_sigevent = { sigev_notify: constants.SIGEV_THREAD }, /sigev_notify_function/);
  assert.throws(() => cb.aio_sigevent = { sigev_notify: constants.SIGEV_SIGNAL, sigev_signo: 0 }, /sigev_signo/);
});

test("lio_listio(LIO_WAIT) waits off-thread for every entry; LIO_NOP entries are skipped", () =>
  withDir(async (dir) => {
    const { fd, file } = tempFile(dir);
    using a = new Aiocb({ aio_fildes: fd, aio_buf: encoder.encode("head"), aio_lio_opcode: constants.LIO_WRITE });
    using b = new Aiocb({
      aio_fildes: fd,
      aio_buf: encoder.encode("tail"),
      aio_offset: 4,
      aio_lio_opcode: constants.LIO_WRITE,
    });
    using nop = new Aiocb({ aio_fildes: fd, aio_lio_opcode: constants.LIO_NOP });
    assert.equal(await lio_listio(constants.LIO_WAIT, [a, null, b, nop]), 0);
    assert.equal(aio_return(a), 4);
    assert.equal(aio_return(b), 4);
    assert.equal(aio_error(nop), -1, "a LIO_NOP entry has no request");
    assert.equal(fs.readFileSync(file, "utf8"), "headtail");
    using r = new Aiocb({ aio_fildes: fd, aio_buf: new Uint8Array(8), aio_lio_opcode: constants.LIO_READ });
    assert.equal(await lio_listio(constants.LIO_NOWAIT, [r]), 0);
    await settle(r);
    assert.equal(aio_return(r), 8);
    assert.equal(new TextDecoder().decode(r.aio_buf!), "headtail");
    fs.closeSync(fd);
  }));

test("lio_listio(LIO_WAIT) reports a failed entry as -1, EIO; the entry keeps its own errno", () =>
  withDir(async (dir) => {
    const { file } = tempFile(dir, "wo.bin", "x");
    const writeOnly = fs.openSync(file, "w");
    using bad = new Aiocb({ aio_fildes: writeOnly, aio_buf: new Uint8Array(1), aio_lio_opcode: constants.LIO_READ });
    assert.equal(await lio_listio(constants.LIO_WAIT, [bad]), -1);
    assert.equal(errno(), constants.EIO);
    assert.equal(aio_error(bad), constants.EBADF);
    assert.equal(aio_return(bad), -1);
    fs.closeSync(writeOnly);
  }));

test("the posix layer's argument checks throw TypeError/RangeError naming the argument", async () => {
  using cb = new Aiocb();
  assert.throws(() => aio_fsync(constants.O_SYNC, {} as Aiocb), /Invalid aiocbp: expected an Aiocb/);
  assert.throws(() => aio_fsync("1" as unknown as number, cb), /Invalid op/);
  assert.throws(() => aio_cancel(1.5, null), /Invalid fildes/);
  assert.throws(() => new Aiocb({ aio_fildes: 1.5 }), /Invalid aio_fildes/);
  assert.throws(() => new Aiocb({ aio_buf: [1, 2] as unknown as Uint8Array }), /Invalid aio_buf/);
  await assert.rejects(aio_suspend([{}] as unknown as Aiocb[]), /Invalid list\[0\]/);
  await assert.rejects(aio_suspend([cb], { tv_sec: 0, tv_nsec: 1e9 }), /tv_nsec/);
  await assert.rejects(aio_suspend([cb], { tv_sec: -1, tv_nsec: 0 }), /tv_sec/);
});

test("a dropped Aiocb in flight is freed only after its request ends", () =>
  withDir(async (dir) => {
    const pipe = fifo(dir);
    // Blocks dropped by earlier tests are freed first, so that the count below is this test's.
    await collected(() => stats().allocated === 0, "the blocks of earlier tests freed");
    const before = stats().allocated;
    (() => {
      const cb = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1) });
      aio_read(cb);
    })();
    for (let i = 0; i < 5; i++) {
      gc();
      await sleep(10);
    }
    assert.equal(stats().allocated, before + 1, "kept while libc may still write into it");
    pipe.feed("g");
    await collected(() => stats().allocated === before, "the dropped block freed once final");
    assert.equal(stats().pending, 0);
    pipe.close();
  }), { skip: canGc ? false : "needs a forced garbage collection (--v8-flags=--expose-gc)" });
