/**
 * `suspend()`: wait until at least one of several requests is final.
 *
 * @module
 */

import { AioError } from "./errors.ts";
import { AioRequest, whenFinal } from "./requests.ts";
import { native } from "./target.ts";
import { describe, toOptions, toTimeout } from "./validate.ts";

/** Options of `suspend()`. */
export interface SuspendOptions {
  /** Milliseconds to wait at most; on expiry the promise rejects with AioError `EAGAIN`. */
  timeout?: number;
}

function finished(requests: readonly AioRequest[]): AioRequest[] {
  const { EINPROGRESS } = native().abi.constants;
  return requests.filter((request) => request.error() !== EINPROGRESS);
}

/**
 * Resolves with the listed requests that are final, as soon as there is at least one, like
 * `aio_suspend`. With `options.timeout` (ms), rejects with AioError `EAGAIN` if none became
 * final in time. Rejects with TypeError for an empty list or an entry that is not an AioRequest.
 *
 * @example Handle whichever finishes first
 * ```ts ignore
 * import { AioRequest, suspend } from "@posix/aio";
 *
 * const pending = [AioRequest.fsync(fdA), AioRequest.fsync(fdB)];
 * const [first] = await suspend(pending, { timeout: 1000 });
 * console.log(`fd ${first.fd} synced: ${first.result()}`);
 * ```
 *
 * @param requests The requests to wait for.
 * @param options A timeout in milliseconds.
 */
export function suspend(requests: readonly AioRequest[], options?: SuspendOptions): Promise<AioRequest[]> {
  let timeout: number | undefined;
  try {
    if (!Array.isArray(requests)) {
      throw new TypeError(`Invalid requests: expected an array of AioRequest, received ${describe(requests)}`);
    }
    if (requests.length === 0) throw new TypeError("Invalid requests: expected at least one AioRequest, received []");
    requests.forEach((request, index) => {
      if (!(request instanceof AioRequest)) {
        throw new TypeError(`Invalid requests[${index}]: expected an AioRequest, received ${describe(request)}`);
      }
    });
    const { timeout: value } = toOptions<SuspendOptions>(options);
    if (value !== undefined) timeout = toTimeout(value);
    const done = finished(requests);
    if (done.length > 0) return Promise.resolve(done);
  } catch (error) {
    return Promise.reject(error);
  }
  return new Promise((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let settled = false;
    // Nothing stays attached to the requests once this call settles, however it ends.
    const stop = (): void => {
      settled = true;
      clearTimeout(timer);
      for (const unsubscribe of subscriptions) unsubscribe();
    };
    // Resolved after the engine is done settling the request (listeners run inside it).
    const settle = (): void =>
      queueMicrotask(() => {
        if (settled) return;
        stop();
        resolve(finished(requests));
      });
    const subscriptions = [...new Set(requests)].map((request) => whenFinal(request, settle));
    if (timeout !== undefined) {
      timer = setTimeout(() => {
        if (settled) return;
        stop();
        reject(new AioError(native().abi.constants.EAGAIN, "aio_suspend"));
      }, timeout);
    }
  });
}
