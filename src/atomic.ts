/**
 * `syncDir()` and `writeFileAtomic()`: making names durable, and replacing a file's content
 * atomically and durably.
 *
 * @module
 */

import * as pathModule from "node:path";
import { AioError } from "./errors.ts";
import { writeAll } from "./file.ts";
import {
  chmodFd,
  closeFd,
  O,
  openFd,
  readLink,
  renamePath,
  statPath,
  toAioError,
  toData,
  toMode,
  toPath,
  unlinkPath,
} from "./fs.ts";
import { fdatasync, fsync, toFullSync } from "./sync.ts";
import { native } from "./target.ts";
import { toOptions } from "./validate.ts";

/** Options of `syncDir()`. */
export interface SyncDirOptions {
  /** macOS: follow the sync with `F_FULLFSYNC` (default `true`). No effect on Linux. */
  fullSync?: boolean;
}

async function syncDirectory(dir: string, fullSync: boolean): Promise<void> {
  const fd = await openFd(dir, O.O_RDONLY | (O.O_DIRECTORY ?? 0), 0);
  try {
    await fsync(fd, { fullSync });
  } catch (error) {
    await closeFd(fd, dir).catch(() => {});
    throw toAioError(error, "fsync", dir, fd);
  }
  await closeFd(fd, dir);
}

/**
 * Makes a directory's entries durable: files created, renamed or removed in it keep their new
 * names after a power cut. Opens the directory read-only and syncs it with `aio_fsync` (on
 * macOS followed by `F_FULLFSYNC`).
 *
 * @example Create a file that survives a power cut, name included
 * ```ts ignore
 * import { open, syncDir } from "@posix/aio";
 *
 * await using file = await open("data/new.bin", { write: true, createNew: true });
 * await file.write(new Uint8Array([1, 2, 3]), 0);
 * await file.datasync(); // the bytes
 * await syncDir("data"); // the name
 * ```
 *
 * @param path The directory's path, or a `file:` URL.
 * @param options `fullSync` (macOS).
 */
export async function syncDir(path: string | URL, options?: SyncDirOptions): Promise<void> {
  const dir = toPath(path);
  const fullSync = toFullSync(toOptions<SyncDirOptions>(options).fullSync);
  native();
  await syncDirectory(dir, fullSync);
}

/** Options of `writeFileAtomic()`. */
export interface WriteFileAtomicOptions {
  /**
   * Permissions of the new file (before the umask). Default: those of the file being replaced,
   * or `0o666` for a new one.
   */
  mode?: number;
  /** macOS: the syncs with `F_FULLFSYNC` (default `true`). No effect on Linux. */
  fullSync?: boolean;
}

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

interface Job {
  data: Uint8Array;
  mode: number | undefined;
  fullSync: boolean;
  readonly waiters: Waiter[];
}

interface Slot {
  running: Job;
  queued: Job | undefined;
}

/** Per absolute path: the replacement in progress and the one to do next. */
const slots = new Map<string, Slot>();

let counter = 0;

/**
 * The file a path names once its symbolic links are followed (at most 40, the kernel's own
 * limit; past that `stat` rejects with `ELOOP`), so that writing through a link
 * replaces the file it points to, as `fs.writeFile` and `Deno.writeFile` do, and keeps the link.
 */
async function followLinks(path: string): Promise<string> {
  let current = path;
  for (let hops = 0; hops < 40; hops++) {
    const link = await readLink(current);
    if (link === undefined) return current;
    current = pathModule.resolve(pathModule.dirname(current), link);
  }
  await statPath(current); // rejects with ELOOP
  return current;
}

async function replace(path: string, job: Job): Promise<void> {
  const target = await followLinks(path);
  const dir = pathModule.dirname(target);
  const random = Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, "0");
  // At most 48 characters of the name (192 bytes of UTF-8), so that the temporary file's name
  // fits NAME_MAX (255 bytes) whenever the target's does.
  const name = Array.from(pathModule.basename(target)).slice(0, 48).join("");
  const temp = pathModule.join(dir, `.${name}.${random}${(counter++).toString(16)}.tmp`);
  const existing = job.mode === undefined ? await statPath(target) : undefined;
  const fd = await openFd(temp, O.O_WRONLY | O.O_CREAT | O.O_EXCL, job.mode ?? 0o666);
  let open = true;
  try {
    if (existing !== undefined) await chmodFd(fd, existing.mode & 0o7777, temp);
    await writeAll(fd, job.data, 0).catch((error) => {
      throw toAioError(error, "write", temp, fd);
    });
    await fdatasync(fd, { fullSync: job.fullSync }).catch((error) => {
      throw toAioError(error, "fdatasync", temp, fd);
    });
    open = false;
    await closeFd(fd, temp);
    await renamePath(temp, target);
  } catch (error) {
    if (open) await closeFd(fd, temp).catch(() => {});
    await unlinkPath(temp).catch(() => {});
    throw error;
  }
  await syncDirectory(dir, job.fullSync);
}

function start(key: string, slot: Slot): void {
  const job = slot.running;
  replace(key, job).then(
    () => {
      for (const waiter of job.waiters) waiter.resolve();
    },
    (error) => {
      for (const waiter of job.waiters) waiter.reject(error);
    },
  ).finally(() => {
    if (slot.queued === undefined) {
      slots.delete(key);
    } else {
      slot.running = slot.queued;
      slot.queued = undefined;
      start(key, slot);
    }
  });
}

/**
 * Replaces the file at `path` with `data` (a string as UTF-8) atomically and durably: writes a
 * temporary file in the same directory, `fdatasync`s it, renames it over `path` and syncs the
 * directory, then resolves. A reader sees the old content or the new, never a mix; after a power
 * cut the file holds the old content or the new. On any failure the temporary file is removed
 * and the old file is left as it was. A symbolic link at `path` is followed (the file it points
 * to is replaced, the link stays); a directory at `path` rejects with `EISDIR`.
 *
 * Concurrent calls for one path are coalesced: while one replacement runs, the latest data
 * given waits for the next one and earlier waiting data is skipped; each call resolves once its
 * content or a later one is durable.
 *
 * @example Save settings
 * ```ts ignore
 * import { writeFileAtomic } from "@posix/aio";
 *
 * await writeFileAtomic("settings.json", JSON.stringify({ theme: "dark" }));
 * ```
 *
 * @param path The file's path, or a `file:` URL.
 * @param data The new content.
 * @param options `mode` and `fullSync` (macOS).
 */
export async function writeFileAtomic(
  path: string | URL,
  data: Uint8Array | string,
  options?: WriteFileAtomicOptions,
): Promise<void> {
  const file = toPath(path);
  const given = toOptions<WriteFileAtomicOptions>(options);
  // Bytes are copied now: the caller may change its buffer at once (not with `slice()`, which
  // for a Node `Buffer` is a view of the same memory).
  const bytes = typeof data === "string" ? toData(data) : new Uint8Array(toData(data));
  const mode = given.mode === undefined ? undefined : toMode(given.mode, 0o666);
  const fullSync = toFullSync(given.fullSync);
  native();
  const key = pathModule.resolve(file);
  // "name/", "name/." and "name/.." name directories (open(2) says EISDIR), never a file "name".
  if (/(^|\/)(\.\.?)?$/.test(file) || key === pathModule.dirname(key)) {
    throw new AioError(native().abi.constants.EISDIR, "open", { path: file });
  }
  await new Promise<void>((resolve, reject) => {
    const waiter = { resolve, reject };
    const slot = slots.get(key);
    if (slot === undefined) {
      const fresh: Slot = { running: { data: bytes, mode, fullSync, waiters: [waiter] }, queued: undefined };
      slots.set(key, fresh);
      start(key, fresh);
    } else if (slot.queued === undefined) {
      slot.queued = { data: bytes, mode, fullSync, waiters: [waiter] };
    } else {
      // The waiting content is overwritten before its sync started: only the latest is written.
      Object.assign(slot.queued, { data: bytes, mode, fullSync: slot.queued.fullSync || fullSync });
      slot.queued.waiters.push(waiter);
    }
  });
}
