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
  realPath,
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

/** Per file replaced (its real path, links followed): the replacement in progress and the one to do next. */
const slots = new Map<string, Slot>();

/**
 * Settles once the latest call has joined its file's slot. Paths resolve in any order (one
 * through three links takes longer than one without); calls join their slots in the order they
 * were made, so the last call made for a file is the last one written.
 */
let joined: Promise<void> = Promise.resolve();

let counter = 0;

/** Links followed at most in the last component of a path, as the kernel (`MAXSYMLINKS`). */
const MAX_LINKS = 40;

/**
 * The file that open(2) of `path` reaches, which need not exist (a dangling link names the file
 * to create): the directory part resolved by `realpath(3)` (so that `..` after a link, and
 * relative links inside linked directories, lead where the kernel takes them), then each link
 * of the last component followed from the real directory that holds it, at most 40 (then
 * `ELOOP`). A name that can only be a directory (`name/`, `.`, `..`, `/`) rejects with `EISDIR`.
 */
async function resolveTarget(path: string): Promise<string> {
  const { EISDIR, ELOOP } = native().abi.constants;
  let spelled = path;
  for (let links = 0;; links++) {
    const cut = spelled.lastIndexOf("/");
    const name = spelled.slice(cut + 1);
    if (name === "" || name === "." || name === "..") throw new AioError(EISDIR, "open", { path });
    const real = pathModule.join(await realPath(cut < 0 ? "." : spelled.slice(0, cut) || "/"), name);
    const link = await readLink(real);
    if (link === undefined) return real;
    if (links === MAX_LINKS) throw new AioError(ELOOP, "open", { path });
    spelled = link.startsWith("/") ? link : `${pathModule.dirname(real)}/${link}`;
  }
}

async function replace(target: string, job: Job): Promise<void> {
  const dir = pathModule.dirname(target);
  const existing = await statPath(target);
  if (existing?.isDirectory()) throw new AioError(native().abi.constants.EISDIR, "open", { path: target });
  const random = Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, "0");
  // At most 48 characters of the name (192 bytes of UTF-8), so that the temporary file's name
  // fits NAME_MAX (255 bytes) whenever the target's does.
  const name = Array.from(pathModule.basename(target)).slice(0, 48).join("");
  const temp = pathModule.join(dir, `.${name}.${random}${(counter++).toString(16)}.tmp`);
  const fd = await openFd(temp, O.O_WRONLY | O.O_CREAT | O.O_EXCL, job.mode ?? 0o666);
  let open = true;
  try {
    if (existing !== undefined && job.mode === undefined) await chmodFd(fd, existing.mode & 0o7777, temp);
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
  // From here on a failure leaves the new content in place, its name not known to be durable.
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

/** Adds a call to the slot of the file `target`: it starts a replacement, or waits for the next one. */
function join(target: string, data: Uint8Array, mode: number | undefined, fullSync: boolean, waiter: Waiter): void {
  const slot = slots.get(target);
  if (slot === undefined) {
    const fresh: Slot = { running: { data, mode, fullSync, waiters: [waiter] }, queued: undefined };
    slots.set(target, fresh);
    start(target, fresh);
  } else if (slot.queued === undefined) {
    slot.queued = { data, mode, fullSync, waiters: [waiter] };
  } else {
    // The waiting content is overwritten before its sync started: only the latest is written.
    Object.assign(slot.queued, { data, mode, fullSync: slot.queued.fullSync || fullSync });
    slot.queued.waiters.push(waiter);
  }
}

/**
 * Replaces the file at `path` with `data` (a string as UTF-8) atomically and durably: writes a
 * temporary file in the same directory, `fdatasync`s it, renames it over the file and syncs the
 * directory, then resolves. A reader sees the old content or the new, never a mix; after a power
 * cut the file holds the old content or the new.
 *
 * Symbolic links are followed as `fs.writeFile` and `Deno.writeFile` follow them (the kernel's
 * open(2)), when the call is made: the file they lead to is replaced, in its own directory, and
 * the links stay; a dangling link creates the file it names. A directory, or a path that can only
 * name one (ending in `/`), rejects with `EISDIR`; a loop of links with `ELOOP`.
 *
 * Concurrent calls that replace one file are coalesced, whatever path each names it by: while
 * one replacement runs, the latest data given waits for the next one and earlier waiting data
 * is skipped; calls count in the order they were made, and each call resolves once its content
 * or a later one is durable.
 *
 * A failure up to the rename (open, write, `fdatasync`, rename) rejects after removing the
 * temporary file, the old file left as it was. A failure of the directory's sync, after the
 * rename, rejects too (`syscall` `"fsync"` or `"open"`, `path` the directory): readers already
 * see the new content, but after a power cut the old may come back. Treat the content as not
 * durable: call again (a new replacement, synced again) before relying on it.
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
  const resolved = resolveTarget(file);
  resolved.catch(() => {}); // awaited below, possibly after other calls' paths resolved
  await new Promise<void>((resolve, reject) => {
    const waiter = { resolve, reject };
    joined = joined.then(() => resolved).then((target) => join(target, bytes, mode, fullSync, waiter)).catch(reject);
  });
}
