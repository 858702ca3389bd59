/**
 * The adaptive admission of requests into glibc (src/admission.ts), as logic: which descriptors
 * may enter libc, and how the limit follows the latency of finished requests. The engine's use
 * of it, with real requests, is tested in mod_test.ts and strace_test.ts.
 */

import assert from "node:assert/strict";
import { Admission } from "../src/admission.ts";
import { test } from "./harness.ts";
import { within } from "./helpers.ts";

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
