/**
 * `open()` and `AioFile`: a file handle whose reads, writes and syncs are POSIX AIO requests,
 * for Deno, Bun and Node programs that want one without `node:fs`.
 *
 * @module
 */

import { AioError } from "./errors.ts";
import { closeFd, O, openFd, toAioError, toBoolean, toData, toMode, toPath } from "./fs.ts";
import { AioRequest } from "./requests.ts";
import { fdatasync, fsync, toFullSync } from "./sync.ts";
import { native } from "./target.ts";
import { toBytes, toOptions, toSafeIndex } from "./validate.ts";

/** How to open a file: the flags users know from `Deno.open` and `fs.open`. */
export interface OpenOptions {
  /** Open for reading. Default `true` when no options are given, else `false`. */
  read?: boolean;
  /** Open for writing. Default `false`. */
  write?: boolean;
  /** Writes go to the end of the file, whatever the position (`O_APPEND`); implies `write`. */
  append?: boolean;
  /** Create the file if it does not exist (`O_CREAT`); needs `write` or `append`. */
  create?: boolean;
  /** Empty the file on opening (`O_TRUNC`); needs `write`, not `append`. */
  truncate?: boolean;
  /** Create the file, failing with `EEXIST` if it exists (`O_CREAT | O_EXCL`); needs `write` or `append`. */
  createNew?: boolean;
  /** Permissions of a created file, before the umask. Default `0o666`. */
  mode?: number;
  /**
   * macOS: `sync()` and `datasync()` follow the sync with `F_FULLFSYNC`, as the runtime's own
   * `fsync` does. Default `true`; `false` skips it. No effect on Linux.
   */
  fullSync?: boolean;
}

/**
 * An open file: positioned reads and writes and syncs, each one AIO request, none blocking the
 * event loop or the runtime's thread pool. Made by `open()`.
 */
export interface AioFile {
  /** The file descriptor (valid until `close()`). */
  readonly fd: number;
  /** The path the file was opened by. */
  readonly path: string;
  /**
   * Reads up to `buffer.length` bytes at `position`; resolves with the number read (0 at the end
   * of the file).
   */
  read(buffer: Uint8Array, position: number): Promise<number>;
  /**
   * Writes all of `data` (a string as UTF-8) at `position`, continuing a short write until every
   * byte is written; resolves with the number of bytes (`data.length`, or the length of the
   * string's UTF-8 encoding). In append mode the data
   * goes to the end whatever `position` says.
   */
  write(data: Uint8Array | string, position: number): Promise<number>;
  /** Makes data and metadata durable (fsync); on macOS with `F_FULLFSYNC` unless turned off. */
  sync(): Promise<void>;
  /** Makes the data durable (fdatasync); on macOS with `F_FULLFSYNC` unless turned off. */
  datasync(): Promise<void>;
  /**
   * Closes the file once the operations already started on it have ended; later calls reject
   * with `EBADF`. Closing again resolves at once.
   */
  close(): Promise<void>;
  /** `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Writes all of `data` at `position` with `aio_write`, continuing short writes. */
export async function writeAll(fd: number, data: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < data.length) {
    const written = await AioRequest.write(fd, data.subarray(done), position + done).done;
    if (written <= 0) {
      // A regular file never takes 0 bytes of a non-empty write; do not spin on one that does.
      throw new AioError(native().abi.constants.EIO, "write", { fd });
    }
    done += written;
  }
  return done;
}

class File implements AioFile {
  readonly fd: number;
  readonly path: string;
  readonly #fullSync: boolean;
  readonly #inFlight = new Set<Promise<unknown>>();
  #closing: Promise<void> | undefined;

  constructor(fd: number, path: string, fullSync: boolean) {
    this.fd = fd;
    this.path = path;
    this.#fullSync = fullSync;
  }

  #run<T>(syscall: string, start: () => Promise<T>): Promise<T> {
    if (this.#closing !== undefined) {
      return Promise.reject(new AioError(native().abi.constants.EBADF, syscall, { fd: this.fd, path: this.path }));
    }
    let promise: Promise<T>;
    try {
      promise = start();
    } catch (error) {
      return Promise.reject(toAioError(error, syscall, this.path, this.fd));
    }
    const settled = promise.then(() => {}, () => {});
    this.#inFlight.add(settled);
    settled.then(() => this.#inFlight.delete(settled));
    return promise.catch((error) => {
      throw toAioError(error, syscall, this.path, this.fd);
    });
  }

  read(buffer: Uint8Array, position: number): Promise<number> {
    let target: Uint8Array;
    let offset: number;
    try {
      target = toBytes(buffer, "buffer");
      offset = toSafeIndex(position, "position");
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#run("read", () => AioRequest.read(this.fd, target, offset).done);
  }

  write(data: Uint8Array | string, position: number): Promise<number> {
    let bytes: Uint8Array;
    let offset: number;
    try {
      bytes = toData(data);
      offset = toSafeIndex(position, "position");
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#run("write", () => writeAll(this.fd, bytes, offset));
  }

  sync(): Promise<void> {
    return this.#run("fsync", () => fsync(this.fd, { fullSync: this.#fullSync }));
  }

  datasync(): Promise<void> {
    return this.#run("fdatasync", () => fdatasync(this.fd, { fullSync: this.#fullSync }));
  }

  close(): Promise<void> {
    return this.#closing ??= Promise.all([...this.#inFlight]).then(() => closeFd(this.fd, this.path));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The `open(2)` flags for `options`, checked the way `Deno.open` checks them. */
export function openFlags(options: OpenOptions | undefined): number {
  const given = toOptions<OpenOptions>(options);
  const read = toBoolean(given.read, options === undefined, "options.read");
  const append = toBoolean(given.append, false, "options.append");
  const write = toBoolean(given.write, false, "options.write") || append;
  const create = toBoolean(given.create, false, "options.create");
  const truncate = toBoolean(given.truncate, false, "options.truncate");
  const createNew = toBoolean(given.createNew, false, "options.createNew");
  for (const [name, value] of [["create", create], ["createNew", createNew], ["truncate", truncate]] as const) {
    if (value && !write) throw new RangeError(`Invalid options.${name}: it needs options.write or options.append`);
  }
  if (!read && !write) {
    throw new RangeError("Invalid options: expected at least one of read, write or append to be true");
  }
  if (truncate && append) throw new RangeError("Invalid options.truncate: it cannot be combined with options.append");
  let flags = read && write ? O.O_RDWR : write ? O.O_WRONLY : O.O_RDONLY;
  if (append) flags |= O.O_APPEND;
  if (createNew) flags |= O.O_CREAT | O.O_EXCL;
  else if (create) flags |= O.O_CREAT;
  if (truncate) flags |= O.O_TRUNC;
  return flags;
}

/**
 * Opens a file and resolves to an `AioFile`, whose reads, writes and syncs are AIO requests.
 * Flags as in `Deno.open` (with no options: read only). A created file's name is durable only
 * once its directory is synced: `syncDir()`.
 *
 * Rejects with TypeError or RangeError naming a bad argument or option, and with AioError
 * (`code`, `errno`, `syscall` `"open"`, `path`) when the system refuses.
 *
 * @example Write a file, make it durable, read it back
 * ```ts ignore
 * import { open } from "@posix/aio";
 *
 * await using file = await open("data.txt", { write: true, read: true, create: true, truncate: true });
 * await file.write("hello\n", 0);
 * await file.datasync(); // the bytes survive a power cut (the name too once the directory is synced)
 * const buffer = new Uint8Array(6);
 * await file.read(buffer, 0);
 * ```
 *
 * @param path The file's path, or a `file:` URL.
 * @param options Flags (`read`, `write`, `append`, `create`, `truncate`, `createNew`), `mode`
 * and `fullSync`.
 */
export async function open(path: string | URL, options?: OpenOptions): Promise<AioFile> {
  const file = toPath(path);
  const flags = openFlags(options);
  const mode = toMode(options?.mode, 0o666);
  const fullSync = toFullSync(options?.fullSync);
  native();
  const fd = await openFd(file, flags, mode);
  return new File(fd, file, fullSync);
}
