/**
 * Admission of requests into libc, adapted to the device: how many file descriptors may have
 * requests in libc at once.
 *
 * glibc runs the requests of different descriptors on different threads of its pool, and
 * wakes (or creates) a thread for each. When syncs take microseconds (tmpfs, a write-back
 * cache), 64 threads woken at once for 64 syncs contend for the same few cores, and each wake
 * costs more than the sync: a few descriptors at a time do the same work sooner. When syncs
 * take hundreds of microseconds, every descriptor in flight is a sync overlapping the others,
 * so the whole pool is used. Requests on a descriptor that already has one in libc are always
 * admitted: glibc chains them on the thread already working on it, without a wake-up.
 *
 * The device's service time is estimated as the lowest latency (submission to noticed final)
 * among the last `WINDOW` finished requests: on a fast device some requests of every burst
 * finish in microseconds even when the cores are busy and the others queue, while on a slow
 * device none does. One fast request brings the limit down at once; a slow device raises it
 * after `WINDOW` slow requests.
 *
 * A descriptor whose requests made no progress for `STALL_MS` (a read waiting on a pipe, a
 * sync on a stuck device) stops counting against the limit: nothing waits behind it for ever.
 * The engine calls `hold()` when it holds a request back; if nothing in libc finishes within
 * `STALL_MS`, `onStall` runs, for the engine to try again.
 *
 * @module
 */

/** Service time per descriptor in libc: a limit of `latency / LANE_US` descriptors (µs). */
const LANE_US = 8;
/** Finished requests whose lowest latency estimates the device's. */
const WINDOW = 16;
/** A descriptor without progress for this long no longer counts against the limit (ms). */
export const STALL_MS = 2;

/** Requests in libc on one descriptor. */
interface Lane {
  count: number;
  /** `performance.now()` when it last made progress (a request entered an idle lane, or left). */
  since: number;
}

/**
 * How many descriptors may have requests in libc at once, from `min` (fast device) to `max`
 * (the thread pool), following the measured latency of finished requests.
 *
 * @example
 * ```ts
 * import { Admission } from "./admission.ts";
 *
 * const admission = new Admission(2, 64, () => {});
 * if (admission.admits(3)) admission.started(3);
 * admission.finished(3, 0.5); // a sync that took 500 µs: the limit rises
 * ```
 */
export class Admission {
  /** Fewest descriptors admitted at once. */
  readonly min: number;
  /** Most descriptors admitted at once. */
  readonly max: number;
  /** Requests in libc per descriptor. */
  readonly #active = new Map<number, Lane>();
  readonly #onStall: () => void;
  readonly #stallMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #stall = (): void => {
    this.#timer = undefined;
    this.#onStall();
  };
  /** Latencies of the last `WINDOW` finished requests (µs), a ring. */
  readonly #samples = new Float64Array(WINDOW);
  #next = 0;
  /** Estimated latency of a request (µs). */
  #latencyUs = 0;
  #limit: number;
  /** Highest limit reached so far. */
  #peak: number;

  /**
   * `onStall`: nothing finished within `stallMs` of `hold()`, so admission may have changed.
   * `stallMs`: how long a descriptor may go without progress before it stops counting.
   */
  constructor(min: number, max: number, onStall: () => void, stallMs: number = STALL_MS) {
    this.#onStall = onStall;
    this.#stallMs = stallMs;
    this.min = Math.max(1, Math.min(min, max));
    this.max = Math.max(this.min, max);
    this.#limit = this.min;
    this.#peak = this.min;
  }

  /** Descriptors admitted at once now. */
  get limit(): number {
    return this.#limit;
  }

  /** Highest limit reached so far. */
  get peak(): number {
    return this.#peak;
  }

  /** Descriptors with requests in libc. */
  get active(): number {
    return this.#active.size;
  }

  /** Estimated latency of a request (µs). */
  get latencyUs(): number {
    return this.#latencyUs;
  }

  /**
   * Whether a request on `fd` may enter libc now: `fd` has requests in libc already, or fewer
   * than `limit` descriptors made progress within `STALL_MS`. Always true while nothing is in libc.
   */
  admits(fd: number): boolean {
    if (this.#active.has(fd) || this.#active.size < this.#limit) return true;
    const now = performance.now();
    let moving = 0;
    for (const lane of this.#active.values()) if (now - lane.since < this.#stallMs) moving++;
    return moving < this.#limit;
  }

  /** A request was held back: calls `onStall` if nothing finishes within `STALL_MS`. */
  hold(): void {
    this.#timer ??= setTimeout(this.#stall, this.#stallMs);
  }

  /** A request on `fd` entered libc. */
  started(fd: number): void {
    const lane = this.#active.get(fd);
    if (lane === undefined) this.#active.set(fd, { count: 1, since: performance.now() });
    else lane.count++;
  }

  /** A request on `fd` left libc, `latencyMs` after it entered. */
  finished(fd: number, latencyMs: number): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const lane = this.#active.get(fd);
    if (lane !== undefined && --lane.count <= 0) this.#active.delete(fd);
    else if (lane !== undefined) lane.since = performance.now();
    if (!(latencyMs >= 0)) return;
    const sample = latencyMs * 1000;
    const evicted = this.#samples[this.#next];
    this.#samples[this.#next] = sample;
    this.#next = (this.#next + 1) % WINDOW;
    if (sample <= this.#latencyUs) this.#latencyUs = sample;
    else if (evicted <= this.#latencyUs) {
      // The lowest sample left the window: find the lowest of those left.
      let lowest = Infinity;
      for (const each of this.#samples) if (each < lowest) lowest = each;
      this.#latencyUs = lowest;
    }
    this.#limit = Math.min(this.max, Math.max(this.min, Math.round(this.#latencyUs / LANE_US)));
    if (this.#limit > this.#peak) this.#peak = this.#limit;
  }
}
