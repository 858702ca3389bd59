/**
 * An outside conformance suite for the C-faithful layer: cases checked against the POSIX text
 * and against what the same C calls return on glibc (a small C program compiled here), where
 * the binding once differed. Each test names the rule it checks.
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import { aio_cancel, aio_error, Aiocb, constants, errno, lio_listio } from "../src/posix.ts";
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
