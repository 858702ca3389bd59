/**
 * Argument checks shared by both layers. Each throws a TypeError (wrong type) or RangeError
 * (right type, wrong value) whose message names the argument and the value received.
 *
 * @module
 */

const INT32_MAX = 2 ** 31 - 1;
const INT32_MIN = -(2 ** 31);

/** A short, safe rendering of a received value for an error message. */
export function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "function") return `a function`;
  if (value === null || typeof value !== "object") return String(value);
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  const name = (value as { constructor?: { name?: string } }).constructor?.name;
  return name ? `an instance of ${name}` : "an object";
}

/** A file descriptor: a non-negative int32, or an object with one in its `fd` property. */
export function toFd(value: unknown, name = "fd"): number {
  if (typeof value === "object" && value !== null && "fd" in value) {
    return toFd((value as { fd: unknown }).fd, `${name}.fd`);
  }
  if (typeof value !== "number") {
    throw new TypeError(
      `Invalid ${name}: expected a file descriptor number or an object with a numeric "fd", received ${
        describe(value)
      }`,
    );
  }
  if (!Number.isInteger(value) || value < 0 || value > INT32_MAX) {
    throw new RangeError(`Invalid ${name}: expected an integer from 0 to ${INT32_MAX}, received ${value}`);
  }
  return value;
}

/** A 32-bit signed integer (C `int`). */
export function toInt32(value: unknown, name: string): number {
  if (typeof value !== "number") throw new TypeError(`Invalid ${name}: expected a number, received ${describe(value)}`);
  if (!Number.isInteger(value) || value < INT32_MIN || value > INT32_MAX) {
    throw new RangeError(`Invalid ${name}: expected an integer from ${INT32_MIN} to ${INT32_MAX}, received ${value}`);
  }
  return value;
}

/** A non-negative safe integer: a file position or a byte count. */
export function toSafeIndex(value: unknown, name: string): number {
  if (typeof value !== "number") throw new TypeError(`Invalid ${name}: expected a number, received ${describe(value)}`);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(
      `Invalid ${name}: expected an integer from 0 to ${Number.MAX_SAFE_INTEGER}, received ${value}`,
    );
  }
  return value;
}

/** A safe integer of either sign (C `off_t` as this module accepts it). */
export function toSafeInteger(value: unknown, name: string): number {
  if (typeof value !== "number") throw new TypeError(`Invalid ${name}: expected a number, received ${describe(value)}`);
  if (!Number.isSafeInteger(value)) {
    throw new RangeError(`Invalid ${name}: expected a safe integer, received ${value}`);
  }
  return value;
}

/** A Uint8Array whose memory is still attached. */
export function toBytes(value: unknown, name: string): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(`Invalid ${name}: expected a Uint8Array, received ${describe(value)}`);
  }
  if ((value.buffer as ArrayBuffer & { detached?: boolean }).detached === true) {
    throw new TypeError(`Invalid ${name}: its ArrayBuffer is detached`);
  }
  return value;
}

/** An options object or undefined. */
export function toOptions<T extends object>(value: unknown, name = "options"): Partial<T> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null) {
    throw new TypeError(`Invalid ${name}: expected an object or undefined, received ${describe(value)}`);
  }
  return value as Partial<T>;
}

/** An AbortSignal or undefined. */
export function toSignal(value: unknown, name = "options.signal"): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) {
    throw new TypeError(`Invalid ${name}: expected an AbortSignal, received ${describe(value)}`);
  }
  return value;
}

/** A timeout in milliseconds: finite and non-negative. */
export function toTimeout(value: unknown, name = "options.timeout"): number {
  if (typeof value !== "number") throw new TypeError(`Invalid ${name}: expected a number, received ${describe(value)}`);
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(`Invalid ${name}: expected a finite number of milliseconds >= 0, received ${value}`);
  }
  return value;
}
