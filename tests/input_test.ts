/**
 * Bad input on every public function of both layers: each gets a TypeError, RangeError or
 * AioError whose message names the argument and the value; never a crash, a hang or a request
 * left pending.
 */

import assert from "node:assert/strict";
import * as fs from "node:fs";
import { AioError, AioRequest, configure, fdatasync, fsync, read, suspend, write } from "../mod.ts";
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
  lio_listio,
} from "../src/posix.ts";
import { test } from "./harness.ts";
import { closedFd, quiescent, tempDir, tempFile } from "./helpers.ts";

type ErrorType = typeof TypeError | typeof RangeError | typeof AioError;

/** Asserts that `call` throws synchronously, or returns a promise that rejects, as described. */
async function fails(call: () => unknown, type: ErrorType, message: RegExp, what: string): Promise<void> {
  let error: unknown;
  try {
    const result = call();
    if (!(result instanceof Promise)) assert.fail(`${what}: returned ${String(result)} instead of failing`);
    error = await result.then(() => undefined, (reason) => reason ?? "undefined reason");
    if (error === undefined) assert.fail(`${what}: resolved instead of rejecting`);
  } catch (thrown) {
    if (thrown instanceof assert.AssertionError) throw thrown;
    error = thrown;
  }
  assert.ok(error instanceof type, `${what}: ${error} is not a ${type.name}`);
  assert.match((error as Error).message, message, what);
}

/** Asserts that a promise-returning call rejects with a TypeError instead of throwing synchronously. */
async function rejectsOnly(call: () => unknown, what: string): Promise<void> {
  let result: unknown;
  assert.doesNotThrow(() => result = call(), `${what} threw synchronously`);
  assert.ok(result instanceof Promise, `${what} returned a Promise`);
  await assert.rejects(result as Promise<unknown>, TypeError, `${what} rejected with a TypeError`);
}

const BAD_FDS: [unknown, ErrorType, string][] = [
  [-1, RangeError, "-1"],
  [1.5, RangeError, "1.5"],
  [NaN, RangeError, "NaN"],
  [Infinity, RangeError, "Infinity"],
  [2 ** 31, RangeError, "2147483648"],
  ["3", TypeError, '"3"'],
  [null, TypeError, "null"],
  [undefined, TypeError, "undefined"],
  [{}, TypeError, "an instance of Object"],
  [{ fd: "3" }, TypeError, '"3"'],
  [3n, TypeError, "3n"],
];

test("bad file descriptors: every function of the idiomatic layer names fd and the value", async () => {
  const buffer = new Uint8Array(4);
  const calls: [string, (fd: unknown) => unknown][] = [
    ["fsync", (fd) => fsync(fd as number)],
    ["fdatasync", (fd) => fdatasync(fd as number)],
    ["read", (fd) => read(fd as number, buffer, 0)],
    ["write", (fd) => write(fd as number, buffer, 0)],
    ["AioRequest.fsync", (fd) => AioRequest.fsync(fd as number)],
    ["AioRequest.read", (fd) => AioRequest.read(fd as number, buffer, 0)],
    ["AioRequest.write", (fd) => AioRequest.write(fd as number, buffer, 0)],
  ];
  for (const [name, call] of calls) {
    for (const [fd, type, shown] of BAD_FDS) {
      const message = new RegExp(`Invalid fd(\\.fd)?: .*received ${shown.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);
      await fails(() => call(fd), type, message, `${name}(${String(fd)})`);
    }
    if (!name.startsWith("AioRequest")) await rejectsOnly(() => call("bad"), name);
  }
  await quiescent();
});

test("a closed fd: AioError EBADF, from aio_fsync at submit or from the read/write itself", () => {
  const { dir, remove } = tempDir();
  return (async () => {
    const fd = closedFd(dir);
    const buffer = new Uint8Array(4);
    await fails(() => fsync(fd), AioError, /^EBADF: .*aio_fsync \(fd \d+\)$/, "fsync");
    await fails(() => fdatasync(fd), AioError, /^EBADF: .*aio_fsync/, "fdatasync");
    // glibc accepts the request and the read fails as it runs; musl refuses it at submit.
    await fails(() => read(fd, buffer, 0), AioError, /^EBADF: .*, (aio_)?read \(fd \d+\)$/, "read");
    await fails(() => write(fd, buffer, 0), AioError, /^EBADF: .*, (aio_)?write \(fd \d+\)$/, "write");
    await fails(() => AioRequest.fsync(fd, "dsync"), AioError, /^EBADF: .*aio_fsync/, "AioRequest.fsync");
    remove();
    await quiescent();
  })();
});

test("bad buffers: not a Uint8Array, or detached; a zero-length one transfers 0 bytes", () => {
  const { dir, remove } = tempDir();
  return (async () => {
    const { fd } = tempFile(dir, "data.bin", "content");
    const notBytes: [unknown, string][] = [
      [[1, 2], "an array of length 2"],
      ["text", '"text"'],
      [new ArrayBuffer(4), "an instance of ArrayBuffer"],
      [new Uint16Array(2), "an instance of Uint16Array"],
      [new DataView(new ArrayBuffer(2)), "an instance of DataView"],
      [null, "null"],
      [undefined, "undefined"],
    ];
    for (const [value, shown] of notBytes) {
      const bytes = value as Uint8Array;
      await fails(() => read(fd, bytes, 0), TypeError, new RegExp(`Invalid buffer: .*received ${shown}`), "read");
      await fails(() => write(fd, bytes, 0), TypeError, new RegExp(`Invalid data: .*received ${shown}`), "write");
      await fails(() => AioRequest.read(fd, bytes, 0), TypeError, /Invalid buffer/, "AioRequest.read");
      await fails(() => AioRequest.write(fd, bytes, 0), TypeError, /Invalid data/, "AioRequest.write");
    }
    const detached = new Uint8Array(8);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    await fails(() => read(fd, detached, 0), TypeError, /Invalid buffer: its ArrayBuffer is detached/, "read");
    await fails(() => write(fd, detached, 0), TypeError, /Invalid data: its ArrayBuffer is detached/, "write");
    assert.equal(await read(fd, new Uint8Array(0), 0), 0);
    assert.equal(await write(fd, new Uint8Array(0), 0), 0);
    assert.equal(fs.readFileSync(`${dir}/data.bin`, "utf8"), "content");
    fs.closeSync(fd);
    remove();
    await quiescent();
  })();
});

test("bad positions: negative, fractional, above 2**53, not a number", () => {
  const { dir, remove } = tempDir();
  return (async () => {
    const { fd } = tempFile(dir);
    const buffer = new Uint8Array(1);
    const positions: [unknown, ErrorType, string][] = [
      [-1, RangeError, "-1"],
      [0.5, RangeError, "0.5"],
      [2 ** 53, RangeError, "9007199254740992"],
      [NaN, RangeError, "NaN"],
      [Infinity, RangeError, "Infinity"],
      ["0", TypeError, '"0"'],
      [null, TypeError, "null"],
      [undefined, TypeError, "undefined"],
      [1n, TypeError, "1n"],
    ];
    for (const [position, type, shown] of positions) {
      const at = position as number;
      const message = new RegExp(`Invalid position: .*received ${shown}$`);
      await fails(() => read(fd, buffer, at), type, message, `read at ${String(position)}`);
      await fails(() => write(fd, buffer, at), type, message, `write at ${String(position)}`);
      await fails(() => AioRequest.read(fd, buffer, at), type, message, `AioRequest.read at ${String(position)}`);
    }
    fs.closeSync(fd);
    remove();
    await quiescent();
  })();
});

test("bad options and signals", async () => {
  const buffer = new Uint8Array(1);
  for (const options of [null, "x", 5]) {
    await fails(() => fsync(0, options as never), TypeError, /Invalid options: .*received/, "fsync options");
    await fails(() => read(0, buffer, 0, options as never), TypeError, /Invalid options/, "read options");
  }
  for (const signal of [null, "abort", {}]) {
    await fails(() => fdatasync(0, { signal } as never), TypeError, /Invalid options\.signal/, "signal");
  }
  await fails(() => AioRequest.fsync(0, "full" as "sync"), TypeError, /Invalid mode: .*received "full"/, "mode");
  await quiescent();
});

test("suspend(): bad lists and timeouts", () => {
  const { dir, remove } = tempDir();
  return (async () => {
    const { fd } = tempFile(dir);
    const settled = AioRequest.fsync(fd);
    await settled.done;
    await fails(
      () => suspend([]),
      TypeError,
      /Invalid requests: expected at least one AioRequest, received \[\]/,
      "[]",
    );
    await fails(() => suspend("x" as never), TypeError, /Invalid requests: .*received "x"/, '"x"');
    await fails(
      () => suspend([settled, {} as AioRequest]),
      TypeError,
      /Invalid requests\[1\]: .*an instance of Object/,
      "{}",
    );
    for (const timeout of [-1, NaN, Infinity]) {
      await fails(
        () => suspend([settled], { timeout }),
        RangeError,
        new RegExp(`options\\.timeout: .*${timeout}`),
        "timeout",
      );
    }
    await fails(() => suspend([settled], { timeout: "1" as never }), TypeError, /options\.timeout: .*"1"/, "timeout");
    assert.deepEqual(await suspend([settled]), [settled], "a settled request is returned at once");
    fs.closeSync(fd);
    remove();
    await quiescent();
  })();
});

test("configure(): bad values are refused before anything else, and nothing changes once loaded", () => {
  for (
    const [options, type, message] of [
      [{ threads: 0 }, RangeError, /options\.threads: .*received 0/],
      [{ threads: 1.5 }, RangeError, /options\.threads: .*received 1.5/],
      [{ threads: "8" }, TypeError, /options\.threads: .*received "8"/],
      [{ idleTime: -1 }, RangeError, /options\.idleTime/],
      [{ completion: "fast" }, RangeError, /options\.completion: .*received "fast"/],
      [null, TypeError, /Invalid options/],
    ] as const
  ) {
    assert.throws(
      () => configure(options as never),
      (error: Error) => error instanceof type && message.test(error.message),
    );
  }
  assert.throws(() => configure({ threads: 8 }), /before the first request/);
});

test("Aiocb members out of range: TypeError or RangeError naming the member", () => {
  using cb = new Aiocb();
  const members: [string, unknown, ErrorType, RegExp][] = [
    ["aio_fildes", 2 ** 31, RangeError, /Invalid aio_fildes: .*received 2147483648/],
    ["aio_fildes", -(2 ** 31) - 1, RangeError, /Invalid aio_fildes/],
    ["aio_fildes", 1.5, RangeError, /Invalid aio_fildes: .*1.5/],
    ["aio_fildes", "1", TypeError, /Invalid aio_fildes: .*"1"/],
    ["aio_offset", 2 ** 53, RangeError, /Invalid aio_offset: .*9007199254740992/],
    ["aio_offset", 0.5, RangeError, /Invalid aio_offset/],
    ["aio_offset", 1n, TypeError, /Invalid aio_offset: .*1n/],
    ["aio_nbytes", -1, RangeError, /Invalid aio_nbytes: .*-1/],
    ["aio_nbytes", 1, RangeError, /Invalid aio_nbytes: expected at most aio_buf\.length \(0\), received 1/],
    ["aio_reqprio", 2 ** 31, RangeError, /Invalid aio_reqprio/],
    ["aio_lio_opcode", 0.5, RangeError, /Invalid aio_lio_opcode/],
    ["aio_buf", [1, 2], TypeError, /Invalid aio_buf: expected a Uint8Array, received an array of length 2/],
    ["aio_buf", "abc", TypeError, /Invalid aio_buf/],
    ["aio_sigevent", null, TypeError, /Invalid aio_sigevent: expected an object, received null/],
    ["aio_sigevent", { sigev_notify: 77 }, RangeError, /Invalid aio_sigevent\.sigev_notify: .*received 77/],
    ["aio_sigevent", { sigev_notify: constants.SIGEV_SIGNAL, sigev_signo: 65 }, RangeError, /sigev_signo: .*65/],
    ["aio_sigevent", { sigev_value: 2n ** 64n }, RangeError, /sigev_value: .*18446744073709551616n/],
    ["aio_sigevent", { sigev_value: 0.5 }, RangeError, /sigev_value/],
    ["aio_sigevent", { sigev_notify_function: "f" }, TypeError, /sigev_notify_function: .*"f"/],
  ];
  for (const [member, value, type, message] of members) {
    assert.throws(
      () => (cb as unknown as Record<string, unknown>)[member] = value,
      (error: Error) => error instanceof type && message.test(error.message),
      `${member} = ${String(value)}`,
    );
  }
  assert.equal(cb.aio_fildes, 0, "a refused value changes nothing");
  assert.throws(() => new Aiocb("x" as never), /Invalid init: expected an object, received "x"/);
});

test("posix functions: bad arguments throw (or reject, for the async ones) naming the argument", async () => {
  using cb = new Aiocb();
  const notAiocb = [{}, null, undefined, 3, "cb"];
  for (const value of notAiocb) {
    for (
      const [name, call] of [
        ["aio_read", () => aio_read(value as Aiocb)],
        ["aio_write", () => aio_write(value as Aiocb)],
        ["aio_fsync", () => aio_fsync(constants.O_SYNC, value as Aiocb)],
        ["aio_error", () => aio_error(value as Aiocb)],
        ["aio_return", () => aio_return(value as Aiocb)],
      ] as const
    ) {
      assert.throws(call, /Invalid aiocbp: expected an Aiocb/, `${name}(${String(value)})`);
    }
  }
  assert.throws(() => aio_cancel(1, {} as Aiocb), /Invalid aiocbp/);
  assert.throws(() => aio_cancel("1" as never, null), /Invalid fildes: expected a number, received "1"/);
  assert.throws(() => aio_fsync(1.5, cb), /Invalid op: .*1.5/);
  await fails(() => aio_suspend("x" as never), TypeError, /Invalid list: .*received "x"/, "aio_suspend");
  await fails(() => aio_suspend([cb, 5 as never]), TypeError, /Invalid list\[1\]/, "aio_suspend");
  await fails(() => aio_suspend([cb], { tv_sec: 1.5, tv_nsec: 0 }), RangeError, /timeout\.tv_sec/, "tv_sec");
  await fails(() => aio_suspend([cb], "1s" as never), TypeError, /Invalid timeout/, "timeout");
  await fails(() => lio_listio("wait" as never, []), TypeError, /Invalid mode/, "lio_listio mode");
  await fails(() => lio_listio(constants.LIO_WAIT, [{} as Aiocb]), TypeError, /Invalid list\[0\]/, "lio_listio list");
  await fails(() => lio_listio(constants.LIO_WAIT, [cb, cb]), TypeError, /appears more than once/, "lio_listio twice");
  assert.equal(await lio_listio(12345, [cb]), -1, "an unknown mode is EINVAL, as in C");
  assert.equal(aio_error(cb), -1, "nothing was submitted");
  cb.free();
  await quiescent();
});

test("nothing public takes a raw address", () => {
  using cb = new Aiocb();
  assert.throws(() => cb.aio_buf = 0x1000 as never, TypeError);
  assert.throws(() => cb.aio_buf = 0x1000n as never, TypeError);
  assert.throws(() => cb.aio_sigevent = { sigev_notify_function: 0x1000 as never }, TypeError);
  assert.equal(Object.keys(cb).length, 0, "no enumerable state, no address exposed");
});
