/**
 * SIGEV_THREAD notifications. One thread-safe callback serves the whole process and is never
 * closed (C may hold its address until the process ends); each request registers a one-shot
 * handler under a token that travels in `sigev_value`.
 *
 * The callback keeps the process alive while some notification is still to come, even for a
 * request already known to be final: a process that ends while a C thread is calling into the
 * runtime can crash. If glibc could not start the notification thread it sends none at all, so
 * a final request's notification is awaited for a grace period only.
 *
 * @module
 */

import type { Address, ThreadSafeCallback } from "../ffi/mod.ts";
import { native } from "./target.ts";

interface Expected {
  readonly handler: () => void;
  grace?: ReturnType<typeof setTimeout>;
}

/** How long a notification is still awaited once its request is known to be final (ms). */
const GRACE_MS = 5000;

const expected = new Map<bigint, Expected>();
let callback: ThreadSafeCallback | undefined;
let nextToken = 1n;

/**
 * Drops the handler of `token`. `settled`: its notification came or will never come, so the
 * backend may issue the token again (one whose grace period ended is never issued again: its
 * notification could still come).
 */
function forget(token: bigint, settled: boolean): Expected | undefined {
  const entry = expected.get(token);
  if (entry === undefined) return undefined;
  expected.delete(token);
  clearTimeout(entry.grace);
  if (settled) callback!.release?.(token);
  if (expected.size === 0) callback!.unref();
  return entry;
}

/**
 * Runs the handler of a notification that arrived. An exception it throws (a user's
 * `sigev_notify_function`) never reaches the runtime's callback machinery: the backend reports
 * it (Deno: an `error` event on `globalThis`; Bun and Node: `uncaughtException` on `process`;
 * stderr when nobody listens) without ending the process, and later notifications are dispatched as usual.
 * `reportError()` itself would end the process when nobody listens, and an exit while glibc's
 * notification threads call into the runtime can crash it (seen in Deno: SIGSEGV).
 */
function dispatch(token: bigint): void {
  const entry = forget(token, true);
  if (entry === undefined) {
    // Came after its grace period: only now may the backend issue the token again.
    callback!.release?.(token);
    return;
  }
  try {
    entry.handler();
  } catch (error) {
    native().backend.reportError(error);
  }
}

/** The address of the process-wide notification function. */
export function notificationFunction(): Address {
  callback ??= native().backend.callback(dispatch);
  return callback.address;
}

/**
 * Registers a handler run once, on the JavaScript thread, when the notification carrying the
 * returned token arrives. The process stays alive until it has arrived or is withdrawn.
 */
export function expectNotification(handler: () => void): bigint {
  notificationFunction();
  const token = callback!.token?.() ?? nextToken++;
  if (expected.size === 0) callback!.ref();
  expected.set(token, { handler });
  return token;
}

/** Withdraws a handler whose notification will never come (the submit was refused). */
export function withdrawNotification(token: bigint): void {
  forget(token, true);
}

/**
 * The request is final (noticed some other way): its notification should follow at once. It
 * is still awaited, for `GRACE_MS` at most, without running the handler's work twice.
 */
export function notificationDue(token: bigint): void {
  const entry = expected.get(token);
  if (entry === undefined || entry.grace !== undefined) return;
  entry.grace = setTimeout(() => forget(token, false), GRACE_MS);
  // The callback's reference keeps the process alive; this timer only ends the wait.
  native().backend.unrefTimer(entry.grace);
}
