/**
 * No native memory libc still owns is ever freed or reused, and no way out of `lio_listio`
 * leaves anything behind: `lio_listio` as each C library has it (glibc queues any opcode but
 * LIO_NOP and goes on past a refused entry; musl queues reads and writes only and stops at the
 * first entry it cannot queue, and keeps the list's sigevent), control blocks after their end,
 * and the ABI table's widths and limits against the C compiler.
 *
 * @module
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { AioError, stats, target } from "../mod.ts";
import { ABI } from "../src/abi.ts";
import {
  aio_error,
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
  fifo,
  hasProgram,
  lastJson,
  root,
  run,
  runtime,
  runtimeCommand,
  tempFile,
  testTarget,
  until,
  withDir,
  within,
} from "./helpers.ts";

const encoder = new TextEncoder();

/** Waits until the request of `cb` is final, the C way. */
async function settle(cb: Aiocb): Promise<void> {
  for (const start = performance.now(); aio_error(cb) === constants.EINPROGRESS;) {
    if (performance.now() - start > 10_000) throw new Error("the request did not end within 10 s");
    await aio_suspend([cb], { tv_sec: 1, tv_nsec: 0 });
  }
}

/** Whether `aio_error(cb)` says the block has no request: -1 with EINVAL. */
function idle(cb: Aiocb): boolean {
  return aio_error(cb) === -1 && errno() === constants.EINVAL;
}

/** What the C sources say each libc does with a list (the table must agree: last test). */
const LIST_BEHAVIOUR = {
  glibc: { queues: "not-nop", on_refusal: "continue", sigevent: "copied" },
  musl: { queues: "read-write", on_refusal: "stop", sigevent: "kept" },
  darwin: { queues: "all", on_refusal: "continue", sigevent: "copied" },
} as const;

const features = (): (typeof LIST_BEHAVIOUR)[keyof typeof LIST_BEHAVIOUR] => LIST_BEHAVIOUR[target.libc];

// ---------------------------------------------------------------------------------------------
// 1. lio_listio as C has it

test("lio_listio: an unknown opcode is queued by glibc (status EINVAL, LIO_WAIT -1/EIO), skipped by musl", () =>
  withDir(async (dir) => {
    const { fd, file } = tempFile(dir);
    using unknown = new Aiocb({ aio_fildes: fd, aio_lio_opcode: -1 });
    using write = new Aiocb({ aio_fildes: fd, aio_buf: encoder.encode("ok"), aio_lio_opcode: constants.LIO_WRITE });
    const result = await lio_listio(constants.LIO_WAIT, [unknown, write]);
    assert.equal(aio_return(write), 2);
    assert.equal(fs.readFileSync(file, "utf8"), "ok");
    if (features().queues === "not-nop") {
      assert.equal(result, -1, "glibc: a failed entry makes LIO_WAIT fail");
      assert.equal(errno(), constants.EIO);
      assert.equal(aio_error(unknown), constants.EINVAL, "its status is EINVAL, not 'no request'");
      assert.equal(aio_return(unknown), -1);
    } else {
      assert.equal(result, 0, "musl skips it like LIO_NOP");
      assert.ok(idle(unknown), "never submitted");
    }
    fs.closeSync(fd);
  }));

test(
  "lio_listio: an entry glibc queued with an unknown opcode is owned by libc until final",
  () =>
    withDir(async (dir) => {
      const pipe = fifo(dir);
      // glibc runs one fd's requests in order: the unknown entry waits behind the blocked read.
      using blocker = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1) });
      assert.equal(aio_read(blocker), 0);
      const unknown = new Aiocb({ aio_fildes: pipe.fd, aio_lio_opcode: 7 });
      assert.equal(await lio_listio(constants.LIO_NOWAIT, [unknown]), 0);
      assert.equal(aio_error(unknown), constants.EINPROGRESS);
      assert.throws(() => unknown.free(), /in flight/);
      assert.throws(() => unknown.aio_lio_opcode = constants.LIO_NOP, /in flight/);
      await assert.rejects(lio_listio(constants.LIO_NOWAIT, [unknown]), /in flight/);
      pipe.feed("x");
      await settle(blocker);
      await settle(unknown);
      assert.equal(aio_error(unknown), constants.EINVAL);
      assert.equal(aio_return(unknown), -1);
      unknown.free();
      pipe.close();
    }),
  { skip: target.libc !== "glibc" ? "glibc queues unknown opcodes; musl skips them (tested above)" : false },
);

test(
  "lio_listio: glibc goes on past an entry it refuses; the entries it took stay owned by libc",
  () =>
    withDir(async (dir) => {
      const pipe = fifo(dir);
      const before = stats();
      const taken = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1), aio_lio_opcode: constants.LIO_READ });
      // glibc refuses a priority above AIO_PRIO_DELTA_MAX before queuing, and records EINVAL for it.
      const refused = new Aiocb({
        aio_fildes: pipe.fd,
        aio_buf: new Uint8Array(1),
        aio_reqprio: 21,
        aio_lio_opcode: constants.LIO_READ,
      });
      const after = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1), aio_lio_opcode: constants.LIO_READ });
      assert.equal(await lio_listio(constants.LIO_NOWAIT, [taken, refused, after]), -1);
      assert.equal(errno(), constants.EINVAL);
      assert.equal(aio_error(taken), constants.EINPROGRESS, "the first entry is in libc");
      assert.equal(aio_error(after), constants.EINPROGRESS, "glibc queued the one after the refused one too");
      assert.throws(() => taken.free(), /in flight/);
      assert.equal(aio_error(refused), constants.EINVAL, "the refused one carries the status glibc recorded");
      assert.equal(aio_return(refused), -1);
      refused.free();
      pipe.feed("ab");
      await settle(taken);
      await settle(after);
      assert.equal(aio_return(taken) + aio_return(after), 2);
      taken.free();
      after.free();
      assert.deepEqual(stats(), before);
      pipe.close();
    }),
  { skip: target.libc !== "glibc" ? "glibc's refusal (aio_reqprio above AIO_PRIO_DELTA_MAX)" : false },
);

test(
  "lio_listio: musl stops at the first entry it cannot queue; the rest read as never submitted",
  () =>
    withDir(async (dir) => {
      const pipe = fifo(dir);
      const { fd, file } = tempFile(dir);
      const before = stats();
      const taken = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1), aio_lio_opcode: constants.LIO_READ });
      // musl finds no queue for a negative fd and refuses the entry with EAGAIN.
      const refused = new Aiocb({ aio_fildes: -1, aio_buf: new Uint8Array(1), aio_lio_opcode: constants.LIO_WRITE });
      const after = new Aiocb({ aio_fildes: fd, aio_buf: encoder.encode("no"), aio_lio_opcode: constants.LIO_WRITE });
      assert.equal(await lio_listio(constants.LIO_NOWAIT, [taken, refused, after]), -1);
      assert.equal(errno(), constants.EAGAIN);
      assert.equal(aio_error(taken), constants.EINPROGRESS, "the entry before is in libc");
      assert.throws(() => taken.free(), /in flight/);
      assert.ok(idle(refused), "the refused entry reads as never submitted");
      assert.ok(idle(after), "the entry after it was never tried");
      assert.equal(fs.readFileSync(file, "utf8"), "", "and nothing was written");
      // A block musl refused can be used again: here as a write that succeeds.
      refused.aio_fildes = fd;
      assert.equal(aio_write(refused), 0);
      await settle(refused);
      assert.equal(aio_return(refused), 1);
      refused.free();
      after.free();
      pipe.feed("z");
      await settle(taken);
      assert.equal(aio_return(taken), 1);
      taken.free();
      assert.deepEqual(stats(), before);
      fs.closeSync(fd);
      pipe.close();
    }),
  { skip: target.libc !== "musl" ? "musl's refusal (no queue for fd -1)" : false },
);

test("lio_listio: a refused LIO_WAIT list waits for the entries libc took, then fails", () =>
  withDir(async (dir) => {
    const { fd } = tempFile(dir);
    const before = stats();
    using good = new Aiocb({ aio_fildes: fd, aio_buf: encoder.encode("ab"), aio_lio_opcode: constants.LIO_WRITE });
    using bad = target.libc === "glibc"
      ? new Aiocb({ aio_fildes: fd, aio_buf: new Uint8Array(1), aio_reqprio: 21, aio_lio_opcode: constants.LIO_WRITE })
      : new Aiocb({ aio_fildes: -1, aio_buf: new Uint8Array(1), aio_lio_opcode: constants.LIO_WRITE });
    assert.equal(await lio_listio(constants.LIO_WAIT, [good, bad]), -1);
    assert.ok([constants.EIO, constants.EAGAIN].includes(errno()), `errno ${errno()}`);
    assert.notEqual(aio_error(good), constants.EINPROGRESS, "final when the call returns");
    assert.equal(aio_return(good), 2);
    assert.equal(stats().pending, before.pending);
  }), { skip: target.libc === "darwin" ? "Linux refusals" : false });

test("lio_listio: a LIO_NOP (or skipped) entry with SIGEV_THREAD does not keep the process alive", async () => {
  const result = await run(runtimeCommand(`${root}/tests/fixtures/lio_exits.ts`, []).concat("nop-thread"), {
    timeout: 30_000,
  });
  assert.equal(result.signal, null, `killed: the process did not exit (${result.stderr})`);
  assert.equal(result.status, 0, result.stderr);
  const outcome = lastJson<{ result: number; status: unknown[]; leaked: number; notified: string[] }>(result);
  assert.equal(outcome.result, 0);
  assert.ok(outcome.status.every((status) => status === "idle"), JSON.stringify(outcome.status));
  assert.equal(outcome.leaked, 0);
  assert.deepEqual(outcome.notified, []);
});

for (const scenario of ["notice-alloc-fails", "data-alloc-fails"]) {
  test(`lio_listio: ${scenario.replaceAll("-", " ")}: nothing leaks, nothing stays armed, the entries stay idle`, async () => {
    const result = await run(runtimeCommand(`${root}/tests/fixtures/lio_exits.ts`, []).concat(scenario), {
      timeout: 30_000,
    });
    assert.equal(result.signal, null, `killed: a withdrawn notification kept the process alive (${result.stderr})`);
    assert.equal(result.status, 0, result.stderr);
    const outcome = lastJson<
      { result: number | string; errno: number; status: unknown[]; leaked: number; stats: unknown }
    >(result);
    if (scenario === "notice-alloc-fails") {
      assert.equal(outcome.result, -1);
      assert.equal(outcome.errno, native().abi.constants.EAGAIN);
    } else {
      assert.equal(outcome.result, "RangeError");
    }
    assert.deepEqual(outcome.status, ["idle", "idle"], "never submitted");
    assert.equal(outcome.leaked, 0, "every native block allocated by the call was freed");
    assert.deepEqual(outcome.stats, { pending: 0, allocated: 0 });
  });
}

test("lio_listio: a throw from the argument checks leaves every entry as it was", () =>
  withDir(async (dir) => {
    const { fd } = tempFile(dir);

    using good = new Aiocb({
      aio_fildes: fd,
      aio_buf: encoder.encode("x"),
      aio_lio_opcode: constants.LIO_WRITE,
      aio_sigevent: { sigev_notify: constants.SIGEV_THREAD, sigev_notify_function: () => {} },
    });
    const buffer = new Uint8Array(new ArrayBuffer(4));
    using detached = new Aiocb({ aio_fildes: fd, aio_buf: buffer, aio_lio_opcode: constants.LIO_WRITE });
    structuredClone(buffer.buffer, { transfer: [buffer.buffer] });
    const before = stats();
    await assert.rejects(lio_listio(constants.LIO_NOWAIT, [good, detached]), /detached/);
    await assert.rejects(lio_listio(constants.LIO_NOWAIT, [good], { sigev_notify: 99 }), /sevp.sigev_notify/);
    assert.ok(idle(good));
    assert.deepEqual(stats(), before);
  }));

test("lio_listio: the list's sigevent stays allocated until its notification ran (musl reads it late)", () =>
  withDir(async (dir) => {
    const pipe = fifo(dir);
    const { c, abi } = native();
    const { calloc, free } = c;
    const sigevents = new Set<string>();
    const freedEarly: string[] = [];
    let notifiedWith: unknown;
    let resolve!: () => void;
    const notified = new Promise<void>((done) => resolve = done);
    const read = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1), aio_lio_opcode: constants.LIO_READ });
    c.calloc = (n, size) => {
      const address = calloc(n, size);
      if (n === 1 && size === abi.sigevent.size && address) sigevents.add(String(address));
      return address;
    };
    c.free = (address) => {
      if (sigevents.delete(String(address)) && notifiedWith === undefined) freedEarly.push(String(address));
      free(address);
    };
    try {
      const sevp: Partial<Sigevent> = {
        sigev_notify: constants.SIGEV_THREAD,
        sigev_value: 42,
        sigev_notify_function: (value) => {
          notifiedWith = value;
          resolve();
        },
      };
      assert.equal(await lio_listio(constants.LIO_NOWAIT, [read], sevp), 0);
      c.calloc = calloc;
      assert.equal(sigevents.size + freedEarly.length, 1, "one sigevent was allocated");
      if (features().sigevent === "kept") {
        assert.deepEqual(freedEarly, [], "not freed while musl may read it");
        assert.throws(() => read.free(), /in flight|lists/);
      }
      pipe.feed("n");
      await within(notified, 10_000, "the list notification");
      assert.equal(notifiedWith, 42);
      await until(() => sigevents.size === 0, "the sigevent freed");
      await settle(read);
      assert.equal(aio_return(read), 1);
      read.free();
    } finally {
      Object.assign(c, { calloc, free });
      pipe.close();
    }
  }));

test("lio_listio: SIGEV_SIGNAL for the list is delivered once every entry is final", () =>
  withDir(async (dir) => {
    const { fd } = tempFile(dir);
    let count = 0;
    const listener = (): void => {
      count++;
    };
    const deno = (globalThis as { Deno?: typeof Deno }).Deno;
    if (runtime === "deno") deno!.addSignalListener("SIGUSR2", listener);
    else process.on("SIGUSR2", listener);
    try {
      using write = new Aiocb({ aio_fildes: fd, aio_buf: encoder.encode("s"), aio_lio_opcode: constants.LIO_WRITE });
      const SIGUSR2 = 12;
      assert.equal(
        await lio_listio(constants.LIO_NOWAIT, [write], { sigev_notify: constants.SIGEV_SIGNAL, sigev_signo: SIGUSR2 }),
        0,
      );
      await until(() => count > 0, "SIGUSR2");
      await settle(write);
      assert.equal(aio_return(write), 1);
    } finally {
      if (runtime === "deno") deno!.removeSignalListener("SIGUSR2", listener);
      else process.off("SIGUSR2", listener);
    }
  }), { skip: target.os !== "linux" ? "SIGUSR2 is 12 on Linux" : false });

// ---------------------------------------------------------------------------------------------
// 2. Control blocks after their end

test("a freed Aiocb throws on every field instead of answering with the block that reused its slot", () => {
  const cb = new Aiocb({ aio_fildes: 7, aio_offset: 9, aio_buf: new Uint8Array(3), aio_lio_opcode: 1 });
  cb.free();
  using reuser = new Aiocb({ aio_fildes: 42, aio_offset: 43 });
  assert.equal(reuser.aio_fildes, 42);
  for (
    const field of [
      "aio_fildes",
      "aio_offset",
      "aio_buf",
      "aio_nbytes",
      "aio_reqprio",
      "aio_lio_opcode",
      "aio_sigevent",
    ]
  ) {
    assert.throws(() => (cb as unknown as Record<string, unknown>)[field], new RegExp(`${field}.*freed`), field);
  }
  assert.throws(() => cb.aio_fildes = 1, /freed/);
});

test("an Aiocb whose slab was released throws instead of reading freed memory", () => {
  // Two slabs of 64 blocks: freeing every block of the second returns it to libc.
  const held = Array.from({ length: 130 }, () => new Aiocb({ aio_fildes: 5 }));
  const last = held.at(-1)!;
  for (const cb of held.slice(64)) cb.free();
  assert.throws(() => last.aio_fildes, /freed/);
  assert.throws(() => last.aio_offset, /freed/);
  for (const cb of held.slice(0, 64)) cb.free();
});

test("`using` leaving its scope while the request is in flight hands the block over instead of throwing", () =>
  withDir(async (dir) => {
    const pipe = fifo(dir);
    const before = stats();
    {
      using cb = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1) });
      assert.equal(aio_read(cb), 0);
    }
    let caught: unknown;
    try {
      using cb = new Aiocb({ aio_fildes: pipe.fd, aio_buf: new Uint8Array(1) });
      assert.equal(aio_read(cb), 0);
      throw new Error("boom");
    } catch (error) {
      caught = error;
    }
    assert.ok(caught instanceof Error && caught.message === "boom", `the error itself, not ${caught}`);
    assert.equal(stats().allocated, before.allocated + 2, "kept while libc may write into them");
    pipe.feed("ab");
    await until(() => stats().allocated === before.allocated, "both blocks freed once final");
    assert.deepEqual(stats(), before);
    pipe.close();
  }));

test("a freed Aiocb cannot be submitted, and a disposed idle one is freed at once", () =>
  withDir((dir) => {
    const { fd } = tempFile(dir);
    const before = stats().allocated;
    const cb = new Aiocb({ aio_fildes: fd, aio_buf: encoder.encode("x") });
    cb[Symbol.dispose]();
    assert.equal(stats().allocated, before);
    assert.throws(() => aio_write(cb), /freed/);
    fs.closeSync(fd);
  }));

// ---------------------------------------------------------------------------------------------
// 3. The platform from the table

test("AioError names an errno of the platform it is given (Darwin's EAGAIN is 35, Linux's EDEADLK)", () => {
  const darwin = new AioError(35, "aio_read", { errnos: ABI["darwin-aarch64"].constants, fd: 3 });
  assert.equal(darwin.code, "EAGAIN");
  assert.equal(darwin.errno, 35);
  assert.match(darwin.message, /^EAGAIN: resource temporarily unavailable, aio_read \(fd 3\)$/);
  assert.equal(new AioError(11, "aio_read").code, target.os === "linux" ? "EAGAIN" : "UNKNOWN");
});

test("sigev_signo is checked against the table's highest signal number", () => {
  const { max_signal } = native().abi;
  using cb = new Aiocb();
  cb.aio_sigevent = { sigev_notify: constants.SIGEV_SIGNAL, sigev_signo: max_signal };
  assert.throws(
    () => cb.aio_sigevent = { sigev_notify: constants.SIGEV_SIGNAL, sigev_signo: max_signal + 1 },
    new RegExp(`from 1 to ${max_signal}, received ${max_signal + 1}`),
  );
});

/** C compilers of this machine and the table each one's output must match. */
const compilers = [
  { command: "gcc", table: "linux-x86_64-glibc", status: "__error_code" },
  { command: "musl-gcc", table: "linux-x86_64-musl", status: "__err" },
] as const;

for (const { command, table, status } of compilers) {
  const skip = testTarget !== undefined && testTarget !== table
    ? `the matrix runs ${testTarget}`
    : !hasProgram(command)
    ? `${command} is not installed`
    : process.arch !== "x64"
    ? "x86_64 compilers"
    : false;
  test(
    `${command}: pointer size, SIGRTMAX and libc's status field in struct aiocb match the table`,
    () =>
      withDir((dir) => {
        const source = path.join(dir, "probe.c");
        fs.writeFileSync(
          source,
          `#include <aio.h>\n#include <signal.h>\n#include <stddef.h>\n#include <stdio.h>\n`
            + `int main(void) { printf("{\\"pointer_size\\":%zu,\\"max_signal\\":%d,\\"aiocb_status\\":[%zu,%zu]}\\n", `
            + `sizeof(void *), SIGRTMAX, offsetof(struct aiocb, ${status}), sizeof(((struct aiocb *)0)->${status})); return 0; }\n`,
        );
        const binary = path.join(dir, "probe");
        execFileSync(command, ["-o", binary, source]);
        const probe = JSON.parse(execFileSync(binary, { encoding: "utf8" }));
        const abi = ABI[table];
        assert.deepEqual(
          { pointer_size: abi.pointer_size, max_signal: abi.max_signal, aiocb_status: abi.aiocb_status },
          probe,
        );
      }),
    { skip },
  );
}

test("every table says how lio_listio treats its list, as the C sources do, and Darwin's limits are its own", () => {
  for (const [name, abi] of Object.entries(ABI)) {
    assert.deepEqual(abi.features.lio_listio, LIST_BEHAVIOUR[abi.libc], name);
    assert.equal(abi.pointer_size, 8, name);
  }
  assert.equal(ABI["darwin-aarch64"].max_signal, 31, "NSIG is 32 on macOS");
  assert.equal(ABI["darwin-aarch64"].aiocb_status, null, "the kernel keeps the status");
  assert.equal(ABI["linux-x86_64-musl"].features.lio_listio.on_refusal, "stop");
});
