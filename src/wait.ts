/**
 * Waiting off the JavaScript thread until one of several control blocks is final, with
 * `aio_suspend`: the C layer's `aio_suspend` and `lio_listio(LIO_WAIT)` use it.
 *
 * @module
 */

import type { Address } from "../ffi/mod.ts";
import type { ControlBlock } from "./control_block.ts";
import type { Loaded } from "./target.ts";

/**
 * While a list is split over several calls, each call returns after this long (ms) at the
 * latest: one that saw nothing must not outlive the wait, since it keeps its blocks listed.
 */
const SPLIT_SLICE_MS = 50;

/** One `aio_suspend` call off the JavaScript thread over `blocks`, for at most `ms` (or forever). */
async function suspendOnce(loaded: Loaded, blocks: ControlBlock[], ms: number): Promise<number | undefined> {
  const { backend, c, abi } = loaded;
  const list = c.calloc(blocks.length, 8);
  const timespec: Address = ms === Infinity ? backend.NULL : c.calloc(1, abi.timespec.size);
  if (!list || (ms !== Infinity && !timespec)) {
    if (list) c.free(list);
    if (timespec) c.free(timespec);
    throw new RangeError(`Cannot allocate an aio_suspend list of ${blocks.length} entries`);
  }
  const view = new DataView(backend.view(list, blocks.length * 8));
  blocks.forEach((block, index) => view.setBigUint64(index * 8, backend.toBigInt(block.address), true));
  if (timespec) {
    const time = new DataView(backend.view(timespec, abi.timespec.size));
    const seconds = Math.floor(ms / 1000);
    time.setBigInt64(abi.timespec.tv_sec[0], BigInt(seconds), true);
    time.setBigInt64(abi.timespec.tv_nsec[0], BigInt(Math.ceil((ms - seconds * 1000) * 1e6)), true);
  }
  for (const block of blocks) block.list();
  try {
    const { result, errno } = await c.aio_suspend(list, blocks.length, timespec);
    return result === 0 ? 0 : errno;
  } finally {
    for (const block of blocks) block.unlist();
    c.free(list);
    if (timespec) c.free(timespec);
  }
}

/**
 * Waits until one of `blocks` is final, or `milliseconds` pass (forever when undefined).
 * Resolves 0 or an errno (`EAGAIN` on timeout). Interrupted calls are made again with the time
 * left. A list longer than the platform's `aio_suspend` limit is split over several calls.
 */
export async function waitAny(loaded: Loaded, blocks: ControlBlock[], milliseconds?: number): Promise<number> {
  const { EINTR, EAGAIN } = loaded.abi.constants;
  const most = loaded.abi.limits.aio_suspend_max_entries ?? Infinity;
  const chunks: ControlBlock[][] = [];
  for (let i = 0; i < blocks.length; i += Math.min(most, blocks.length)) {
    chunks.push(blocks.slice(i, i + Math.min(most, blocks.length)));
  }
  const deadline = milliseconds === undefined ? Infinity : performance.now() + milliseconds;
  while (true) {
    if (blocks.some((block) => block.poll())) return 0;
    const left = deadline - performance.now();
    if (left <= 0) return EAGAIN;
    const slice = chunks.length === 1 ? left : Math.min(left, SPLIT_SLICE_MS);
    const outcomes = await Promise.all(chunks.map((chunk) => suspendOnce(loaded, chunk, slice)));
    if (outcomes.includes(0)) {
      for (const block of blocks) block.poll();
      return 0;
    }
    // Deno cannot read the errno of a nonblocking call: a timeout shows as the deadline passed.
    const failure = outcomes.find((errno) => errno !== undefined && errno !== EINTR && errno !== EAGAIN);
    if (failure !== undefined) return failure;
  }
}
