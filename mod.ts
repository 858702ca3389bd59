/**
 * POSIX asynchronous I/O for Deno, Bun and Node.js 26, straight from the C library through FFI:
 * durable `fsync`/`fdatasync` that block neither the event loop nor the runtime's thread pool,
 * and positioned `read`/`write`, all as Promises. On them, the durable patterns: a file handle
 * (`open`), a group-committed log (`openLog`, `readLog`), atomic replace (`writeFileAtomic`) and
 * directory sync (`syncDir`). The C-faithful layer is `@posix/aio/posix`.
 *
 * Deno needs `--allow-ffi`; Node.js needs `node:ffi` (26 and later), and under its permission
 * model `--allow-ffi` and `--allow-worker`. Nothing is loaded until the first call.
 *
 * @example Append records and make them durable
 * ```ts ignore
 * import { fdatasync } from "@posix/aio";
 * import { open } from "node:fs/promises";
 *
 * const log = await open("app.log", "a");
 * await log.write("record 1\n");
 * await fdatasync(log); // the record's bytes survive a power cut from here on
 * await log.close();
 * ```
 *
 * @example A log whose appends resolve once durable (group commit)
 * ```ts ignore
 * import { openLog } from "@posix/aio";
 *
 * await using log = await openLog("app.log"); // a new file's name is made durable too
 * await log.append("record 1\n");
 * ```
 *
 * @module
 */

export { syncDir, writeFileAtomic } from "./src/atomic.ts";
export type { SyncDirOptions, WriteFileAtomicOptions } from "./src/atomic.ts";
export { AioError } from "./src/errors.ts";
export type { AioErrorOptions } from "./src/errors.ts";
export { open } from "./src/file.ts";
export type { AioFile, OpenOptions } from "./src/file.ts";
export { configure, stats, target } from "./src/info.ts";
export type { CompletionName, ConfigureOptions, Stats, Target } from "./src/info.ts";
export { CorruptLogError, openLog, readLog } from "./src/log.ts";
export type { AioLog, LogFormat, OpenLogOptions, ReadLogOptions } from "./src/log.ts";
export { AioRequest, read, write } from "./src/requests.ts";
export type { AioOperation, AioOptions, CancelResult, FdLike } from "./src/requests.ts";
export { suspend } from "./src/suspend.ts";
export type { SuspendOptions } from "./src/suspend.ts";
export { fdatasync, fsync } from "./src/sync.ts";
export type { SyncOptions } from "./src/sync.ts";
