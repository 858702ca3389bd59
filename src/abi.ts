/**
 * Per-target ABI tables: the layout of `struct aiocb`, `struct sigevent`, `struct timespec`
 * (and glibc's `struct aioinit`), the constants, the limits, where the functions live, and the
 * few behaviours that differ. Data only: code asks this table and never tests the platform
 * itself.
 *
 * Offsets and sizes are in bytes, each field as `[offset, size]`. Written from the C headers
 * (glibc `rt/aio.h`, `bits/types/sigevent_t.h`; musl `include/aio.h`, `include/signal.h`; xnu
 * `bsd/sys/aio.h`, `bsd/sys/signal.h`) and checked by the test suite against the C compiler and
 * the reference data.
 *
 * @module
 */

/** A struct member: `[offset, size]` in bytes. */
export type Field = readonly [offset: number, size: number];

/** `struct aiocb`. */
export interface AiocbLayout {
  readonly size: number;
  readonly align: number;
  readonly aio_fildes: Field;
  readonly aio_lio_opcode: Field;
  readonly aio_reqprio: Field;
  readonly aio_buf: Field;
  readonly aio_nbytes: Field;
  readonly aio_sigevent: Field;
  readonly aio_offset: Field;
}

/** `struct sigevent`. */
export interface SigeventLayout {
  readonly size: number;
  readonly sigev_value: Field;
  readonly sigev_signo: Field;
  readonly sigev_notify: Field;
  readonly sigev_notify_function: Field;
  readonly sigev_notify_attributes: Field;
}

/** `struct timespec`. */
export interface TimespecLayout {
  readonly size: number;
  readonly tv_sec: Field;
  readonly tv_nsec: Field;
}

/** glibc's `struct aioinit` for `aio_init()` (the fields this module sets). */
export interface AioinitLayout {
  readonly size: number;
  readonly aio_threads: Field;
  readonly aio_num: Field;
  readonly aio_idle_time: Field;
}

/** errno values by name. */
export type ErrnoTable = Readonly<Record<ErrnoName, number>>;

/** The errno names every table defines. */
export type ErrnoName =
  | "EPERM"
  | "ENOENT"
  | "ESRCH"
  | "EINTR"
  | "EIO"
  | "ENXIO"
  | "E2BIG"
  | "ENOEXEC"
  | "EBADF"
  | "ECHILD"
  | "EAGAIN"
  | "ENOMEM"
  | "EACCES"
  | "EFAULT"
  | "EBUSY"
  | "EEXIST"
  | "EXDEV"
  | "ENODEV"
  | "ENOTDIR"
  | "EISDIR"
  | "EINVAL"
  | "ENFILE"
  | "EMFILE"
  | "ENOTTY"
  | "ETXTBSY"
  | "EFBIG"
  | "ENOSPC"
  | "ESPIPE"
  | "EROFS"
  | "EMLINK"
  | "EPIPE"
  | "ERANGE"
  | "EDEADLK"
  | "ENOLCK"
  | "ENOSYS"
  | "ELOOP"
  | "ENAMETOOLONG"
  | "EOVERFLOW"
  | "ENOTSUP"
  | "EOPNOTSUPP"
  | "EDQUOT"
  | "ESTALE"
  | "ETIMEDOUT"
  | "EINPROGRESS"
  | "ECANCELED";

/** The constants of `<aio.h>`, `<fcntl.h>`, `<signal.h>` and `<errno.h>` this module uses. */
export interface Constants extends ErrnoTable {
  /** `open` flag: read only. */
  readonly O_RDONLY: number;
  /** `open` flag: write only. */
  readonly O_WRONLY: number;
  /** `open` flag: read and write. */
  readonly O_RDWR: number;
  /** `aio_fsync` op: file integrity, like fsync(2). */
  readonly O_SYNC: number;
  /** `aio_fsync` op: data integrity, like fdatasync(2). */
  readonly O_DSYNC: number;
  /** `aio_cancel`: every request given was canceled. */
  readonly AIO_CANCELED: number;
  /** `aio_cancel`: at least one request could not be canceled (it is running). */
  readonly AIO_NOTCANCELED: number;
  /** `aio_cancel`: every request given was already complete. */
  readonly AIO_ALLDONE: number;
  /** `aio_lio_opcode`: read. */
  readonly LIO_READ: number;
  /** `aio_lio_opcode`: write. */
  readonly LIO_WRITE: number;
  /** `aio_lio_opcode`: nothing. */
  readonly LIO_NOP: number;
  /** `lio_listio` mode: wait until every request is final. */
  readonly LIO_WAIT: number;
  /** `lio_listio` mode: return once the requests are queued. */
  readonly LIO_NOWAIT: number;
  /** `sigev_notify`: send the signal `sigev_signo`. */
  readonly SIGEV_SIGNAL: number;
  /** `sigev_notify`: no notification. */
  readonly SIGEV_NONE: number;
  /** `sigev_notify`: call `sigev_notify_function` (on the JavaScript thread, in this module). */
  readonly SIGEV_THREAD: number;
}

/** Limits; `null` where the platform sets none. */
export interface Limits {
  /** Most entries `lio_listio` takes. */
  readonly AIO_LISTIO_MAX: number | null;
  /** Most requests one process may have in flight (finished but not yet `aio_return`ed count). */
  readonly per_process_in_flight: number | null;
  /** How far `aio_reqprio` may lower a request's priority. */
  readonly AIO_PRIO_DELTA_MAX?: number;
  /** Most entries `aio_suspend` takes. */
  readonly aio_suspend_max_entries?: number;
}

/**
 * How `lio_listio` treats its list, from the C library's source (glibc `rt/lio_listio-common.c`
 * and `sysdeps/pthread/aio_misc.c`, musl `src/aio/lio_listio.c` and `src/aio/aio.c`, xnu
 * `bsd/kern/kern_aio.c`).
 */
export interface ListFeatures {
  /**
   * Which non-null entries libc takes: `"not-nop"` (glibc: every opcode but `LIO_NOP`; an
   * unknown one is queued and finishes with status `EINVAL`), `"read-write"` (musl: `LIO_READ`
   * and `LIO_WRITE` only; any other opcode is skipped like `LIO_NOP`), `"all"` (xnu: `LIO_NOP`
   * too, which finishes with `EINVAL`; an unknown opcode refuses the whole list).
   */
  readonly queues: "not-nop" | "read-write" | "all";
  /**
   * After an entry it cannot queue: `"continue"` with the others (glibc, xnu) or `"stop"`
   * (musl: nothing after it is tried, and the refused entry's status reads `EINPROGRESS`
   * forever).
   */
  readonly on_refusal: "continue" | "stop";
  /**
   * The list's own `sigevent`: `"copied"` during the call (glibc, xnu), or `"kept"` (musl: for
   * anything but `SIGEV_NONE` a thread waits for the list, reading every non-null entry until
   * it is final, then reads the `sigevent` to notify).
   */
  readonly sigevent: "copied" | "kept";
}

/** Behaviours that differ between C libraries and that the engine must know. */
export interface Features {
  /** `SIGEV_THREAD` notification is supported. */
  readonly sigev_thread: boolean;
  /**
   * A submit refused with EAGAIN may succeed later (the kernel's per-process limit): the engine
   * queues the request and retries instead of failing it. macOS also reports invalid requests
   * as EAGAIN, so retries are bounded.
   */
  readonly requeue_on_eagain: boolean;
  /** How `lio_listio` treats its entries and its `sigevent`. */
  readonly lio_listio: ListFeatures;
  /**
   * An `aio_fsync` runs only after every write queued before it on the same fd has finished, so
   * a write and the sync that covers it can be submitted back to back (the log does). glibc:
   * one fd's requests run in submission order on one worker (`sysdeps/pthread/aio_misc.c`);
   * musl: the sync's thread waits for older writes on its fd (`src/aio/aio.c`). `false` on
   * macOS: xnu's new per-process work queue is not checked for it, and a write refused with
   * `EAGAIN` is retried by the engine after the sync was submitted; there the log waits for
   * the write before submitting the sync.
   */
  readonly fsync_after_queued_writes: boolean;
  /**
   * One fd's requests run one at a time, in submission order, each only once the one before it
   * has finished (glibc: the fd's queue in `sysdeps/pthread/aio_misc.c`, run by one worker).
   * The log then queues a batch's write and sync behind the sync of the batch before it, so
   * the device goes on to the next batch as that sync returns, with no round trip through the
   * JavaScript thread. `false` on musl (a thread per request: two writes of one fd may run at
   * once) and macOS.
   */
  readonly fd_requests_in_order: boolean;
  /**
   * `aio_cancel` of one request strands the requests queued behind it on its fd when it was
   * first in the fd's queue and not yet started (glibc `rt/aio_misc.c`, every version to date:
   * `__aio_remove_request` marks the next request runnable but never puts it on the run list, so
   * no worker ever takes it, nor any later request on that fd number, even after the fd is closed
   * and the number reused: all stay `EINPROGRESS` for ever). A request queued behind one still
   * in flight is unlinked safely. Where `true`, both layers cancel a single request only while
   * a request libc queues ahead of it on its fd is in flight, and otherwise report it as not
   * canceled (it runs and settles as usual).
   */
  readonly cancel_strands_followers: boolean;
}

/**
 * The `fcntl` commands that push a file's data through the drive's own write cache, where the
 * platform has them (macOS): its `fsync` (and `aio_fsync`) stops at the drive.
 */
export interface FullSyncCommands {
  /** `F_FULLFSYNC`: flush the file and the drive's cache to permanent storage. */
  readonly F_FULLFSYNC: number;
  /** `F_BARRIERFSYNC`: the file's data ordered before later writes by a barrier, no full flush. */
  readonly F_BARRIERFSYNC: number;
}

/**
 * How the platform allocates a file's space ahead of writes, so that a sync of data written
 * there commits no change of size or allocation.
 */
export type Preallocation =
  /**
   * Linux: `fallocate(fd, mode, offset, len)`; mode 0 grows the size over the range. The
   * blocks it allocates are unwritten extents (ext4, XFS): the first write into each converts it,
   * a change of metadata that the sync of that write must commit too (64 writers on ext4: 98k
   * records/s against 164k into blocks written with zeros beforehand). So `zero_fill`: the log
   * also writes zeros over what it allocated, and syncs them, before records go there.
   */
  | { readonly call: "fallocate"; readonly FALLOC_FL_KEEP_SIZE: number; readonly zero_fill: boolean }
  /**
   * macOS: `fcntl(fd, F_PREALLOCATE, fstore_t *)`, allocating `fst_length` bytes from the
   * physical end of the file (`F_PEOFPOSMODE`), all or nothing (`F_ALLOCATEALL`); the size is
   * then set with `ftruncate`.
   */
  | {
    readonly call: "F_PREALLOCATE";
    /** Whether zeros are written over the allocated space too (see `fallocate`). */
    readonly zero_fill: boolean;
    readonly F_PREALLOCATE: number;
    readonly F_ALLOCATEALL: number;
    readonly F_PEOFPOSMODE: number;
    /** `struct fstore`: `u32 fst_flags; int fst_posmode; off_t fst_offset, fst_length, fst_bytesalloc`. */
    readonly fstore: {
      readonly size: number;
      readonly fst_flags: Field;
      readonly fst_posmode: Field;
      readonly fst_offset: Field;
      readonly fst_length: Field;
    };
  };

/** Everything known about one target. */
export interface TargetAbi {
  /** Which C library this is. */
  readonly libc: "glibc" | "musl" | "darwin";
  /** Names to `dlopen`, in order of preference. */
  readonly library: readonly string[];
  /** The function returning the address of the calling thread's errno. */
  readonly errno_symbol: string;
  readonly aiocb: AiocbLayout;
  readonly sigevent: SigeventLayout;
  readonly timespec: TimespecLayout;
  /** `struct aioinit`, or `null` where there is no `aio_init()`. */
  readonly aioinit: AioinitLayout | null;
  /**
   * Where libc keeps a request's error status inside `struct aiocb` (glibc `__error_code`,
   * musl `__err`): written when libc takes a request, so the layer can tell which entries of
   * a refused `lio_listio` libc took, and see a request in flight without calling `aio_error`.
   * `null` where the kernel keeps it (xnu: `aio_error` says -1 for a control block it does not
   * know).
   */
  readonly aiocb_status: Field | null;
  /** Bytes in a pointer (`void *`, `size_t`): the stride of the lists `aio_suspend` and `lio_listio` take. */
  readonly pointer_size: number;
  /** The highest valid signal number: `SIGRTMAX` on Linux (64), `NSIG - 1` on macOS (31). */
  readonly max_signal: number;
  readonly constants: Constants;
  /**
   * The full-sync commands, or `null` where `fsync` already reaches permanent storage (Linux):
   * then no sync is followed by an `fcntl`.
   */
  readonly full_sync: FullSyncCommands | null;
  /** How to allocate space ahead of writes, or `null` where there is no call for it. */
  readonly preallocation: Preallocation | null;
  readonly limits: Limits;
  readonly features: Features;
}

/** The names of the supported targets: `<os>-<arch>[-<libc>]`. */
export type TargetName =
  | "linux-x86_64-glibc"
  | "linux-aarch64-glibc"
  | "linux-x86_64-musl"
  | "linux-aarch64-musl"
  | "darwin-x86_64"
  | "darwin-aarch64";

// asm-generic/errno-base.h and asm-generic/errno.h: the same on x86_64 and aarch64.
const LINUX_ERRNO: ErrnoTable = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  ETXTBSY: 26,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EMLINK: 31,
  EPIPE: 32,
  ERANGE: 34,
  EDEADLK: 35,
  ENOLCK: 37,
  ENOSYS: 38,
  ELOOP: 40,
  ENAMETOOLONG: 36,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  EOPNOTSUPP: 95,
  EDQUOT: 122,
  ESTALE: 116,
  ETIMEDOUT: 110,
  EINPROGRESS: 115,
  ECANCELED: 125,
};

// xnu bsd/sys/errno.h.
const DARWIN_ERRNO: ErrnoTable = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 35,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  ETXTBSY: 26,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EMLINK: 31,
  EPIPE: 32,
  ERANGE: 34,
  EDEADLK: 11,
  ENOLCK: 77,
  ENOSYS: 78,
  ELOOP: 62,
  ENAMETOOLONG: 63,
  EOVERFLOW: 84,
  ENOTSUP: 45,
  EOPNOTSUPP: 102,
  EDQUOT: 69,
  ESTALE: 70,
  ETIMEDOUT: 60,
  EINPROGRESS: 36,
  ECANCELED: 89,
};

// glibc and musl on LP64 Linux lay out struct aiocb and struct sigevent alike:
// int aio_fildes, aio_lio_opcode, aio_reqprio; volatile void *aio_buf; size_t aio_nbytes;
// struct sigevent aio_sigevent (64 bytes); private fields; off_t aio_offset at 128; 168 in all.
const LINUX_AIOCB: AiocbLayout = {
  size: 168,
  align: 8,
  aio_fildes: [0, 4],
  aio_lio_opcode: [4, 4],
  aio_reqprio: [8, 4],
  aio_buf: [16, 8],
  aio_nbytes: [24, 8],
  aio_sigevent: [32, 64],
  aio_offset: [128, 8],
};

// union sigval sigev_value; int sigev_signo; int sigev_notify; then the SIGEV_THREAD pair.
const LINUX_SIGEVENT: SigeventLayout = {
  size: 64,
  sigev_value: [0, 8],
  sigev_signo: [8, 4],
  sigev_notify: [12, 4],
  sigev_notify_function: [16, 8],
  sigev_notify_attributes: [24, 8],
};

const TIMESPEC_64: TimespecLayout = { size: 16, tv_sec: [0, 8], tv_nsec: [8, 8] };

// fallocate(2), in glibc and musl alike; linux/falloc.h: FALLOC_FL_KEEP_SIZE 0x01.
const LINUX_FALLOCATE: Preallocation = { call: "fallocate", FALLOC_FL_KEEP_SIZE: 1, zero_fill: true };

const LINUX_AIO_CONSTANTS = {
  O_RDONLY: 0,
  O_WRONLY: 1,
  O_RDWR: 2,
  O_SYNC: 0o4010000,
  O_DSYNC: 0o10000,
  AIO_CANCELED: 0,
  AIO_NOTCANCELED: 1,
  AIO_ALLDONE: 2,
  LIO_READ: 0,
  LIO_WRITE: 1,
  LIO_NOP: 2,
  LIO_WAIT: 0,
  LIO_NOWAIT: 1,
  SIGEV_SIGNAL: 0,
  SIGEV_NONE: 1,
  SIGEV_THREAD: 2,
} as const;

const LINUX_X86_64_GLIBC: TargetAbi = {
  libc: "glibc",
  // glibc 2.34 moved the AIO functions into libc proper; before, they live in librt.
  library: ["libc.so.6", "librt.so.1"],
  errno_symbol: "__errno_location",
  aiocb: LINUX_AIOCB,
  sigevent: LINUX_SIGEVENT,
  timespec: TIMESPEC_64,
  // struct aioinit: eight ints; aio_threads first, aio_num second, aio_idle_time seventh.
  aioinit: { size: 32, aio_threads: [0, 4], aio_num: [4, 4], aio_idle_time: [24, 4] },
  // int __error_code, after struct aiocb *__next_prio and int __abs_prio, __policy.
  aiocb_status: [112, 4],
  pointer_size: 8,
  max_signal: 64,
  constants: { ...LINUX_ERRNO, ...LINUX_AIO_CONSTANTS },
  full_sync: null,
  preallocation: LINUX_FALLOCATE,
  limits: { AIO_LISTIO_MAX: null, per_process_in_flight: null, AIO_PRIO_DELTA_MAX: 20 },
  features: {
    sigev_thread: true,
    requeue_on_eagain: false,
    lio_listio: { queues: "not-nop", on_refusal: "continue", sigevent: "copied" },
    fsync_after_queued_writes: true,
    fd_requests_in_order: true,
    cancel_strands_followers: true,
  },
};

const LINUX_X86_64_MUSL: TargetAbi = {
  libc: "musl",
  // musl answers any name starting "libc." with itself; Alpine names it by architecture.
  library: ["libc.musl-x86_64.so.1", "libc.so"],
  errno_symbol: "__errno_location",
  aiocb: LINUX_AIOCB,
  sigevent: LINUX_SIGEVENT,
  timespec: TIMESPEC_64,
  aioinit: null,
  // volatile int __err, after void *__td and int __lock[2].
  aiocb_status: [112, 4],
  pointer_size: 8,
  max_signal: 64,
  constants: { ...LINUX_ERRNO, ...LINUX_AIO_CONSTANTS },
  full_sync: null,
  preallocation: LINUX_FALLOCATE,
  limits: { AIO_LISTIO_MAX: null, per_process_in_flight: null, AIO_PRIO_DELTA_MAX: 0 },
  features: {
    sigev_thread: true,
    requeue_on_eagain: false,
    lio_listio: { queues: "read-write", on_refusal: "stop", sigevent: "kept" },
    fsync_after_queued_writes: true,
    fd_requests_in_order: false,
    cancel_strands_followers: false,
  },
};

// xnu: int aio_fildes; off_t aio_offset; volatile void *aio_buf; size_t aio_nbytes;
// int aio_reqprio; struct sigevent aio_sigevent; int aio_lio_opcode. 80 bytes.
const DARWIN: TargetAbi = {
  libc: "darwin",
  library: ["/usr/lib/libSystem.B.dylib"],
  errno_symbol: "__error",
  aiocb: {
    size: 80,
    align: 8,
    aio_fildes: [0, 4],
    aio_offset: [8, 8],
    aio_buf: [16, 8],
    aio_nbytes: [24, 8],
    aio_reqprio: [32, 4],
    aio_sigevent: [40, 32],
    aio_lio_opcode: [72, 4],
  },
  // int sigev_notify; int sigev_signo; union sigval sigev_value; then the SIGEV_THREAD pair.
  sigevent: {
    size: 32,
    sigev_notify: [0, 4],
    sigev_signo: [4, 4],
    sigev_value: [8, 8],
    sigev_notify_function: [16, 8],
    sigev_notify_attributes: [24, 8],
  },
  timespec: TIMESPEC_64,
  aioinit: null,
  aiocb_status: null,
  pointer_size: 8,
  // NSIG is 32: signals 1 to 31 (the kernel refuses signo >= NSIG).
  max_signal: 31,
  constants: {
    ...DARWIN_ERRNO,
    O_RDONLY: 0,
    O_WRONLY: 1,
    O_RDWR: 2,
    O_SYNC: 0x80,
    O_DSYNC: 0x400000,
    AIO_CANCELED: 2,
    AIO_NOTCANCELED: 4,
    AIO_ALLDONE: 1,
    LIO_READ: 1,
    LIO_WRITE: 2,
    LIO_NOP: 0,
    LIO_WAIT: 2,
    LIO_NOWAIT: 1,
    SIGEV_NONE: 0,
    SIGEV_SIGNAL: 1,
    SIGEV_THREAD: 3,
  },
  // xnu bsd/sys/fcntl.h.
  full_sync: { F_FULLFSYNC: 51, F_BARRIERFSYNC: 85 },
  // xnu bsd/sys/fcntl.h: F_PREALLOCATE 42, F_ALLOCATEALL 0x4, F_PEOFPOSMODE 3, struct fstore.
  // No zeros written ahead: whether written blocks beat allocated ones there is not measured.
  preallocation: {
    call: "F_PREALLOCATE",
    zero_fill: false,
    F_PREALLOCATE: 42,
    F_ALLOCATEALL: 4,
    F_PEOFPOSMODE: 3,
    fstore: { size: 32, fst_flags: [0, 4], fst_posmode: [4, 4], fst_offset: [8, 8], fst_length: [16, 8] },
  },
  // kern.aioprocmax and the aio_suspend entry limit default to 16.
  limits: { AIO_LISTIO_MAX: 16, per_process_in_flight: 16, aio_suspend_max_entries: 16 },
  features: {
    sigev_thread: false,
    requeue_on_eagain: true,
    // The kernel validates every entry before queuing any (an invalid one fails the whole call),
    // queues LIO_NOP entries too, goes on past the per-process limit, and copies the sigevent.
    lio_listio: { queues: "all", on_refusal: "continue", sigevent: "copied" },
    fsync_after_queued_writes: false,
    fd_requests_in_order: false,
    cancel_strands_followers: false,
  },
};

/** The ABI of every supported target, by target name. */
export const ABI: Readonly<Record<TargetName, TargetAbi>> = {
  "linux-x86_64-glibc": LINUX_X86_64_GLIBC,
  // aarch64 is LP64 too: the same layout, constants and names.
  "linux-aarch64-glibc": LINUX_X86_64_GLIBC,
  "linux-x86_64-musl": LINUX_X86_64_MUSL,
  "linux-aarch64-musl": { ...LINUX_X86_64_MUSL, library: ["libc.musl-aarch64.so.1", "libc.so"] },
  "darwin-x86_64": DARWIN,
  "darwin-aarch64": DARWIN,
};

/** Why the platforms Deno and Bun could otherwise run on are not supported. */
export const UNSUPPORTED: Readonly<Record<string, string>> = {
  "32-bit":
    "struct aiocb has another layout and 64-bit offsets need the *64 functions; Deno and Bun ship no 32-bit builds",
  windows: "Windows has no POSIX AIO (it has overlapped I/O instead)",
  freebsd: "FreeBSD's struct aiocb (160 bytes) and SIGEV_THREAD in librt are not described yet",
};
