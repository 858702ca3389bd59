/**
 * `AioError`, the one error class for failures reported by the C library.
 *
 * @module
 */

import type { ErrnoName } from "./abi.ts";
import { native } from "./target.ts";

const DESCRIPTIONS: Readonly<Record<ErrnoName, string>> = {
  EPERM: "operation not permitted",
  ENOENT: "no such file or directory",
  ESRCH: "no such process",
  EINTR: "interrupted system call",
  EIO: "input/output error",
  ENXIO: "no such device or address",
  E2BIG: "argument list too long",
  ENOEXEC: "exec format error",
  EBADF: "bad file descriptor",
  ECHILD: "no child processes",
  EAGAIN: "resource temporarily unavailable",
  ENOMEM: "cannot allocate memory",
  EACCES: "permission denied",
  EFAULT: "bad address",
  EBUSY: "device or resource busy",
  EEXIST: "file exists",
  EXDEV: "invalid cross-device link",
  ENODEV: "no such device",
  ENOTDIR: "not a directory",
  EISDIR: "is a directory",
  EINVAL: "invalid argument",
  ENFILE: "too many open files in system",
  EMFILE: "too many open files",
  ENOTTY: "inappropriate ioctl for device",
  ETXTBSY: "text file busy",
  EFBIG: "file too large",
  ENOSPC: "no space left on device",
  ESPIPE: "illegal seek",
  EROFS: "read-only file system",
  EMLINK: "too many links",
  EPIPE: "broken pipe",
  ERANGE: "numerical result out of range",
  EDEADLK: "resource deadlock avoided",
  ENOLCK: "no locks available",
  ENOSYS: "function not implemented",
  ELOOP: "too many levels of symbolic links",
  ENAMETOOLONG: "file name too long",
  EOVERFLOW: "value too large for defined data type",
  ENOTSUP: "operation not supported",
  EOPNOTSUPP: "operation not supported",
  EDQUOT: "disk quota exceeded",
  ESTALE: "stale file handle",
  ETIMEDOUT: "connection timed out",
  EINPROGRESS: "operation now in progress",
  ECANCELED: "operation canceled",
};

/**
 * The name of an errno value on the loaded platform (`"EIO"`), or `"UNKNOWN"`.
 *
 * @param errno The platform's errno number.
 */
export function errnoName(errno: number): string {
  const { constants } = native().abi;
  for (const name in DESCRIPTIONS) {
    if (constants[name as ErrnoName] === errno) return name;
  }
  return "UNKNOWN";
}

/** What an AioError is about, besides its errno. */
export interface AioErrorOptions {
  /** The file descriptor the failing call was about. */
  fd?: number;
  /** The path the failing call was about. */
  path?: string;
  /** The underlying cause, if any. */
  cause?: unknown;
}

/**
 * A failure reported by the C library, shaped like Node's system errors: switch on `code`.
 *
 * `syscall` is the C function that refused the request (`"aio_fsync"`, `"aio_read"`,
 * `"aio_write"`, `"aio_suspend"`) or the operation that failed after it was accepted
 * (`"fsync"`, `"fdatasync"`, `"read"`, `"write"`).
 *
 * @example Handle a failed sync
 * ```ts ignore
 * import { AioError, fdatasync } from "@posix/aio";
 *
 * try {
 *   await fdatasync(fd);
 * } catch (error) {
 *   if (error instanceof AioError && error.code === "EIO") {
 *     console.error(`the data of fd ${error.fd} may be lost`);
 *   }
 *   throw error;
 * }
 * ```
 */
export class AioError extends Error {
  /** The errno name, such as `"EIO"` or `"EBADF"` (`"UNKNOWN"` for one this module has no name for). */
  readonly code: string;
  /** The platform's errno number. */
  readonly errno: number;
  /** The C function or operation that failed. */
  readonly syscall: string;
  /** The file descriptor involved, when there is one. */
  readonly fd: number | undefined;
  /** The path involved, when there is one (`open()`, `openLog()`, `syncDir()`, ...). */
  readonly path: string | undefined;

  /**
   * Creates an AioError for an errno of the loaded platform.
   *
   * @param errno The platform's errno number.
   * @param syscall The C function or operation that failed.
   * @param options The file descriptor and path involved, and a cause.
   */
  constructor(errno: number, syscall: string, options: AioErrorOptions = {}) {
    const code = errnoName(errno);
    const description = DESCRIPTIONS[code as ErrnoName] ?? `errno ${errno}`;
    const at = options.path === undefined ? "" : ` '${options.path}'`;
    const where = `${at}${options.fd === undefined ? "" : ` (fd ${options.fd})`}`;
    super(`${code}: ${description}, ${syscall}${where}`, { cause: options.cause });
    this.name = "AioError";
    this.code = code;
    this.errno = errno;
    this.syscall = syscall;
    this.fd = options.fd;
    this.path = options.path;
  }
}
