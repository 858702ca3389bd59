/**
 * An outside conformance suite for the C-faithful layer: cases checked against the POSIX text
 * and against what the same C calls return on glibc (a small C program compiled here), where
 * the binding once differed. Each test names the rule it checks.
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import { aio_cancel, aio_error, aio_suspend, Aiocb, constants, errno, lio_listio } from "../src/posix.ts";
import { test } from "./harness.ts";
import { closedFd, tempFile, withDir } from "./helpers.ts";

test("aio_cancel: an fd that is not open is EBADF even when the Aiocb names another fd (POSIX, glibc)", () =>
  withDir((dir) => {
    const { fd } = tempFile(dir);
    const closed = closedFd(dir);
    using cb = new Aiocb({ aio_fildes: fd });
    for (const fildes of [closed, -1]) {
      assert.equal(aio_cancel(fildes, cb), -1, `fildes ${fildes}`);
      assert.equal(errno(), constants.EBADF, `fildes ${fildes}`);
    }
    fs.closeSync(fd);
  }));

test("aio_cancel: an open fd that differs from aio_fildes is EINVAL, as glibc and musl say", () =>
  withDir((dir) => {
    const a = tempFile(dir, "a.bin");
    const b = tempFile(dir, "b.bin");
    using cb = new Aiocb({ aio_fildes: a.fd });
    assert.equal(aio_cancel(b.fd, cb), -1);
    assert.equal(errno(), constants.EINVAL);
    fs.closeSync(a.fd);
    fs.closeSync(b.fd);
  }));

test("lio_listio: an Aiocb listed twice is rejected, the message naming both entries", () =>
  withDir(async (dir) => {
    const { fd } = tempFile(dir);
    using a = new Aiocb({ aio_fildes: fd, aio_buf: new Uint8Array(1), aio_lio_opcode: constants.LIO_READ });
    using b = new Aiocb({ aio_fildes: fd, aio_buf: new Uint8Array(1), aio_lio_opcode: constants.LIO_READ });
    await assert.rejects(
      lio_listio(constants.LIO_WAIT, [a, null, b, a]),
      (error: Error) => error instanceof TypeError && error.message.includes("list[0] and list[3]"),
    );
    assert.equal(aio_error(a), -1, "nothing was queued");
    assert.equal(errno(), constants.EINVAL);
    fs.closeSync(fd);
  }));

test("SIGEV_THREAD without sigev_notify_function: TypeError naming the member and its value", () => {
  assert.throws(
    () => new Aiocb({ aio_sigevent: { sigev_notify: constants.SIGEV_THREAD } }),
    (error: Error) =>
      error instanceof TypeError && error.message.includes("aio_sigevent.sigev_notify_function")
      && error.message.includes("received undefined"),
  );
});

test("aio_suspend: a timeout that is not a valid timespec rejects (documented; glibc says EAGAIN at once)", () =>
  withDir(async (dir) => {
    const { fd } = tempFile(dir);
    using cb = new Aiocb({ aio_fildes: fd });
    for (const timeout of [{ tv_sec: -1, tv_nsec: 0 }, { tv_sec: 0, tv_nsec: -1 }, { tv_sec: 0, tv_nsec: 1e9 }]) {
      await assert.rejects(aio_suspend([cb], timeout), RangeError, JSON.stringify(timeout));
    }
    fs.closeSync(fd);
  }));
