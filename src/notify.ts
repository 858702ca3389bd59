/**
 * SIGEV_THREAD notifications. One thread-safe callback serves the whole process and is never
 * closed (C may hold its address until the process ends); each request registers a one-shot
 * handler under a token that travels in `sigev_value`. The callback keeps the process alive
 * exactly while some handler is waiting.
 *
 * @module
 */

import type { Address, ThreadSafeCallback } from "../ffi/mod.ts";
import { native } from "./target.ts";

const handlers = new Map<bigint, () => void>();
let callback: ThreadSafeCallback | undefined;
let nextToken = 1n;

function dispatch(token: bigint): void {
  const handler = handlers.get(token);
  if (handler === undefined) return;
  handlers.delete(token);
  if (handlers.size === 0) callback!.unref();
  handler();
}

/** The address of the process-wide notification function. */
export function notificationFunction(): Address {
  callback ??= native().backend.callback(dispatch);
  return callback.address;
}

/**
 * Registers a handler run once, on the JavaScript thread, when the notification carrying the
 * returned token arrives. The process stays alive until it has run or is withdrawn.
 */
export function expectNotification(handler: () => void): bigint {
  notificationFunction();
  const token = nextToken++;
  if (handlers.size === 0) callback!.ref();
  handlers.set(token, handler);
  return token;
}

/** Withdraws a handler whose notification will never come (the submit was refused). */
export function withdrawNotification(token: bigint): void {
  if (handlers.delete(token) && handlers.size === 0) callback!.unref();
}

/** Handlers still waiting for their notification. */
export function waitingNotifications(): number {
  return handlers.size;
}
