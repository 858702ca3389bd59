/**
 * The C functions this module calls, declared once for every runtime backend.
 *
 * Types are runtime-neutral: `"pointer"` is a native address (a bigint in Deno, a number in
 * Bun: whatever each runtime passes fastest), `"buffer"` is a Uint8Array passed by address for
 * the duration of one call only. A symbol marked `offThread` blocks in C, so the backends run it
 * away from the JavaScript thread and return a Promise.
 *
 * @module
 */

/** A C parameter or result type, as the backends map it onto their FFI. */
export type NativeType = "i32" | "isize" | "usize" | "pointer" | "buffer" | "void";

/** One C function: its parameters, its result, and how to call it. */
export interface SymbolDefinition {
  /** Parameter types, in order. */
  readonly params: readonly NativeType[];
  /** Result type. */
  readonly result: NativeType;
  /** The exported name, when it differs from the key (several JS views of one C function). */
  readonly symbol?: string;
  /** Absent from some C libraries: the backend reports it missing instead of failing. */
  readonly optional?: boolean;
  /** Blocks in C: called off the JavaScript thread, returns a Promise of the result. */
  readonly offThread?: boolean;
}

/** Every C function the module binds. The errno accessor's real name comes from the ABI table. */
export const SYMBOLS = {
  // void *calloc(size_t nmemb, size_t size);
  calloc: { params: ["usize", "usize"], result: "pointer" },
  // void *malloc(size_t size);
  malloc: { params: ["usize"], result: "pointer" },
  // void free(void *ptr);
  free: { params: ["pointer"], result: "void" },
  // void *memcpy(void *dest, const void *src, size_t n);  (into native memory)
  copy_in: { symbol: "memcpy", params: ["pointer", "buffer", "usize"], result: "pointer" },
  // void *memcpy(void *dest, const void *src, size_t n);  (out of native memory)
  copy_out: { symbol: "memcpy", params: ["buffer", "pointer", "usize"], result: "pointer" },
  // int aio_read(struct aiocb *aiocbp);
  aio_read: { params: ["pointer"], result: "i32" },
  // int aio_write(struct aiocb *aiocbp);
  aio_write: { params: ["pointer"], result: "i32" },
  // int aio_fsync(int op, struct aiocb *aiocbp);
  aio_fsync: { params: ["i32", "pointer"], result: "i32" },
  // int aio_error(const struct aiocb *aiocbp);
  aio_error: { params: ["pointer"], result: "i32" },
  // ssize_t aio_return(struct aiocb *aiocbp);
  aio_return: { params: ["pointer"], result: "isize" },
  // int aio_cancel(int fildes, struct aiocb *aiocbp);
  aio_cancel: { params: ["i32", "pointer"], result: "i32" },
  // int aio_suspend(const struct aiocb *const list[], int nent, const struct timespec *timeout);
  aio_suspend: { params: ["pointer", "i32", "pointer"], result: "i32", offThread: true },
  // int aio_suspend(const struct aiocb *const list[], int nent, const struct timespec *timeout);
  // (on the JavaScript thread, with a timeout of microseconds: the spin's naps)
  aio_suspend_nap: { symbol: "aio_suspend", params: ["pointer", "i32", "pointer"], result: "i32" },
  // int fcntl(int fd, int cmd, ...);  (F_FULLFSYNC with a null third argument; F_PREALLOCATE
  // with a pointer to a struct fstore)
  fcntl: { params: ["i32", "i32", "pointer"], result: "i32", offThread: true },
  // int fallocate(int fd, int mode, off_t offset, off_t len);  (Linux)
  fallocate: { params: ["i32", "i32", "isize", "isize"], result: "i32", offThread: true, optional: true },
  // int lio_listio(int mode, struct aiocb *const list[], int nent, struct sigevent *sevp);
  lio_listio: { params: ["i32", "pointer", "i32", "pointer"], result: "i32" },
  // int sched_yield(void);
  sched_yield: { params: [], result: "i32" },
  // pid_t getpid(void);
  getpid: { params: [], result: "i32" },
  // int sigqueue(pid_t pid, int sig, const union sigval value);  (the union passed as one word)
  sigqueue: { params: ["i32", "i32", "usize"], result: "i32", optional: true },
  // void aio_init(const struct aioinit *init);  (GNU extension)
  aio_init: { params: ["pointer"], result: "void", optional: true },
  // const char *gnu_get_libc_version(void);  (present in glibc only: tells glibc from musl)
  gnu_get_libc_version: { params: [], result: "pointer", optional: true },
} as const satisfies Record<string, SymbolDefinition>;

/** The key under which the errno accessor (`__errno_location` or `__error`) is bound. */
export const ERRNO_LOCATION = "errno_location";

/** The errno accessor: `int *__errno_location(void)` on Linux, `int *__error(void)` on macOS. */
export const ERRNO_DEFINITION: SymbolDefinition = { params: [], result: "pointer" };
