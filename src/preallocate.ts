/**
 * Allocating a file's space ahead of writes, off the JavaScript thread: `fallocate` on Linux,
 * `F_PREALLOCATE` and `ftruncate` on macOS (`abi.preallocation`), and writing zeros with
 * `aio_write` where the call is missing or refused. A sync of data written into allocated space
 * commits the data and nothing else: no new size, no new blocks.
 *
 * @module
 */

import { AioError } from "./errors.ts";
import { writeAll } from "./file.ts";
import { truncateFd } from "./fs.ts";
import { type Loaded, native } from "./target.ts";

/** The platform's call. */
export interface Allocator {
  /**
   * Allocates `length` bytes at `offset`; the file's size grows to cover them unless `keepSize`
   * (on macOS by `ftruncate` to `offset + length`: nothing may be written past that meanwhile).
   * Resolves with `true` once done, `false` where the platform has no such call or the file
   * system does not support it; rejects with AioError (`syscall` `"fallocate"` or `"fcntl"`) for
   * any other failure (`ENOSPC`...). Where the runtime cannot read the errno of a call made off
   * the JavaScript thread (Deno), every failure resolves with `false`.
   */
  allocate(fd: number, offset: number, length: number, keepSize: boolean, path: string): Promise<boolean>;
}

/** Whether a failed allocation says the call is not there for this file (then zeros do instead). */
function unsupported(loaded: Loaded, errno: number | undefined): boolean {
  const { EOPNOTSUPP, ENOTSUP, ENOSYS, EINVAL, ENODEV } = loaded.abi.constants;
  return errno === undefined || [EOPNOTSUPP, ENOTSUP, ENOSYS, EINVAL, ENODEV].includes(errno);
}

/** Zeros written at a time by `writeZeros`. */
const ZEROS_PER_WRITE = 1 << 20;
let zeros: Uint8Array | undefined;

/**
 * Writes zeros over `[offset, offset + length)` with `aio_write`: space allocated by hand, where
 * the platform cannot allocate it. Rejects with AioError (`ENOSPC`...) as a write does.
 */
export async function writeZeros(fd: number, offset: number, length: number): Promise<void> {
  zeros ??= new Uint8Array(ZEROS_PER_WRITE);
  for (let done = 0; done < length;) {
    const size = Math.min(ZEROS_PER_WRITE, length - done);
    await writeAll(fd, zeros.subarray(0, size), offset + done);
    done += size;
  }
}

/** The allocator of `loaded`'s platform. */
export function allocator(loaded: Loaded = native()): Allocator {
  const { abi, c, backend, library } = loaded;
  const platform = abi.preallocation;
  if (platform?.call === "fallocate" && library.has("fallocate")) {
    return {
      async allocate(fd, offset, length, keepSize, path): Promise<boolean> {
        const { result, errno } = await c.fallocate(fd, keepSize ? platform.FALLOC_FL_KEEP_SIZE : 0, offset, length);
        if (result === 0) return true;
        if (unsupported(loaded, errno)) return false;
        throw new AioError(errno!, "fallocate", { fd, path });
      },
    };
  }
  if (platform?.call === "F_PREALLOCATE") {
    return {
      async allocate(fd, offset, length, keepSize, path): Promise<boolean> {
        const { fstore } = platform;
        const store = c.calloc(1, fstore.size);
        if (!store) return false;
        let result: number;
        let errno: number | undefined;
        try {
          const view = new DataView(backend.view(store, fstore.size));
          view.setUint32(fstore.fst_flags[0], platform.F_ALLOCATEALL, true);
          view.setInt32(fstore.fst_posmode[0], platform.F_PEOFPOSMODE, true);
          view.setBigInt64(fstore.fst_offset[0], 0n, true);
          view.setBigInt64(fstore.fst_length[0], BigInt(length), true);
          ({ result, errno } = await c.fcntl(fd, platform.F_PREALLOCATE, store));
        } finally {
          c.free(store);
        }
        if (result === -1) {
          if (unsupported(loaded, errno)) return false;
          throw new AioError(errno!, "fcntl", { fd, path });
        }
        if (!keepSize) await truncateFd(fd, offset + length, path);
        return true;
      },
    };
  }
  return { allocate: () => Promise.resolve(false) };
}
