/**
 * What the durable layer needs from the file system besides AIO: opening, closing, renaming,
 * removing and `fstat`, through `node:fs` (Deno, Bun and Node all have it, and its descriptors
 * are the process's real file descriptors, which libc accepts). Its errors become AioError with the
 * platform's errno (from the ABI table), `syscall` and `path`.
 *
 * @module
 */

import * as fs from "node:fs";
import { fileURLToPath } from "node:url";
import type { ErrnoName } from "./abi.ts";
import { AioError } from "./errors.ts";
import { native } from "./target.ts";
import { describe } from "./validate.ts";

/** The `open` flags of the platform the runtime runs on, as `node:fs` gives them. */
export const O = fs.constants;

/** A path: a non-empty string without NUL, or a `file:` URL. */
export function toPath(value: unknown, name = "path"): string {
  if (value instanceof URL) {
    if (value.protocol !== "file:") {
      throw new TypeError(`Invalid ${name}: expected a file: URL, received ${JSON.stringify(value.href)}`);
    }
    return fileURLToPath(value);
  }
  if (typeof value !== "string") {
    throw new TypeError(`Invalid ${name}: expected a string or a file: URL, received ${describe(value)}`);
  }
  if (value === "") throw new RangeError(`Invalid ${name}: expected a non-empty path, received ""`);
  if (value.includes("\0")) throw new RangeError(`Invalid ${name}: it contains a NUL character`);
  return value;
}

/** Data to write: a Uint8Array as it is, a string as UTF-8. */
export function toData(value: unknown, name = "data"): Uint8Array {
  if (typeof value === "string") return new TextEncoder().encode(value);
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(`Invalid ${name}: expected a Uint8Array or a string, received ${describe(value)}`);
  }
  if ((value.buffer as ArrayBuffer & { detached?: boolean }).detached === true) {
    throw new TypeError(`Invalid ${name}: its ArrayBuffer is detached`);
  }
  return value;
}

/** A file mode: an integer from 0 to 0o7777. */
export function toMode(value: unknown, fallback: number, name = "options.mode"): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number") throw new TypeError(`Invalid ${name}: expected a number, received ${describe(value)}`);
  if (!Number.isInteger(value) || value < 0 || value > 0o7777) {
    throw new RangeError(`Invalid ${name}: expected an integer from 0 to 0o7777, received ${value}`);
  }
  return value;
}

/** A boolean option, `fallback` when left out. */
export function toBoolean(value: unknown, fallback: boolean, name: string): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") {
    throw new TypeError(`Invalid ${name}: expected a boolean, received ${describe(value)}`);
  }
  return value;
}

/**
 * A `node:fs` error as AioError (code, the platform's errno, syscall, path), or `error` itself
 * if it is not a system error.
 */
export function toAioError(error: unknown, syscall: string, path: string, fd?: number): unknown {
  if (error instanceof AioError) {
    if (error.path !== undefined) return error;
    return new AioError(error.errno, error.syscall, { fd: error.fd ?? fd, path, cause: error.cause ?? error });
  }
  const system = error as { code?: unknown; errno?: unknown; syscall?: unknown } | null;
  if (typeof system?.code !== "string") return error;
  const table = native().abi.constants;
  const errno = system.code in table
    ? table[system.code as ErrnoName]
    : typeof system.errno === "number"
    ? Math.abs(system.errno)
    : undefined;
  if (errno === undefined) return error;
  const name = typeof system.syscall === "string" ? system.syscall : syscall;
  return new AioError(errno, name, { fd, path, cause: error });
}

/** `open(2)` through `node:fs`: the file descriptor. */
export function openFd(path: string, flags: number, mode: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.open(path, flags, mode, (error, fd) => error ? reject(toAioError(error, "open", path)) : resolve(fd));
  });
}

/** `close(2)` through `node:fs`. */
export function closeFd(fd: number, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.close(fd, (error) => error ? reject(toAioError(error, "close", path, fd)) : resolve());
  });
}

/** `fstat(2)` through `node:fs`: size and mode. */
export function statFd(fd: number, path: string): Promise<{ size: number; mode: number }> {
  return new Promise((resolve, reject) => {
    fs.fstat(fd, (error, stats) => error ? reject(toAioError(error, "fstat", path, fd)) : resolve(stats));
  });
}

/** `stat(2)` through `node:fs`; `undefined` if nothing is there. */
export function statPath(path: string): Promise<{ mode: number; isDirectory(): boolean } | undefined> {
  return new Promise((resolve, reject) => {
    fs.stat(path, (error, stats) => {
      if (error === null) resolve(stats);
      else if ((error as { code?: string }).code === "ENOENT") resolve(undefined);
      else reject(toAioError(error, "stat", path));
    });
  });
}

/** `fchmod(2)` through `node:fs`. */
export function chmodFd(fd: number, mode: number, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.fchmod(fd, mode, (error) => error ? reject(toAioError(error, "fchmod", path, fd)) : resolve());
  });
}

/** `rename(2)` through `node:fs`. */
export function renamePath(from: string, to: string): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.rename(from, to, (error) => error ? reject(toAioError(error, "rename", to)) : resolve());
  });
}

/** `unlink(2)` through `node:fs`. */
export function unlinkPath(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.unlink(path, (error) => error ? reject(toAioError(error, "unlink", path)) : resolve());
  });
}

/**
 * `readlink(2)` through `node:fs`: where the symbolic link at `path` points, or `undefined` if
 * `path` is not a symbolic link or nothing is there.
 */
export function readLink(path: string): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    fs.readlink(path, (error, link) => {
      if (error === null) resolve(link);
      else if (["EINVAL", "ENOENT"].includes((error as { code?: string }).code ?? "")) resolve(undefined);
      else reject(toAioError(error, "readlink", path));
    });
  });
}

/**
 * `pwrite(2)` of all of `data` at `position` (or `write(2)` at the descriptor's offset, when
 * `undefined`) from the JavaScript thread, through `node:fs`, a short write continued: for a
 * small write into the page cache, which takes microseconds. Throws AioError (`syscall` `"write"`).
 */
export function writeFdSync(fd: number, data: Uint8Array, position: number | undefined, path: string): void {
  for (let done = 0; done < data.length;) {
    let written: number;
    try {
      written = position === undefined
        ? fs.writeSync(fd, data, done, data.length - done)
        : fs.writeSync(fd, data, done, data.length - done, position + done);
    } catch (error) {
      throw toAioError(error, "write", path, fd);
    }
    // A regular file never takes 0 bytes of a non-empty write; do not spin on one that does.
    if (written <= 0) throw new AioError(native().abi.constants.EIO, "write", { fd, path });
    done += written;
  }
}

/**
 * `realpath(3)` through `node:fs` (its native form: the kernel resolves `..` after a link as
 * open(2) does, where Bun's JavaScript `fs.realpath` removes it from the text first).
 */
export function realPath(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    fs.realpath.native(path, (error, real) => error ? reject(toAioError(error, "realpath", path)) : resolve(real));
  });
}

/** `ftruncate(2)` through `node:fs`. */
export function truncateFd(fd: number, length: number, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.ftruncate(fd, length, (error) => error ? reject(toAioError(error, "ftruncate", path, fd)) : resolve());
  });
}
