/*
 * The floor of bench/peers_bench.ts, in C without any runtime: durable records one at a time,
 * each written with pwrite(2) and synced before the next is written. bench/peers_bench.ts
 * compiles it with gcc at run time (nothing is committed built) and runs it on the same devices
 * as the runtimes, under the same strace delay on `disk+1ms`.
 *
 *   peers_floor append|prealloc|aio FILE RECORD_BYTES WARMUP_MS DURATION_MS
 *
 * - `append`: each record written at the end of the file, which grows, then fdatasync(2): the
 *   sync also commits the new size.
 * - `prealloc`: the file's space allocated ahead with fallocate(2) (mode 0, so the size covers
 *   it; 64 MiB at a time, the first chunk synced before the first record), each record written
 *   into it, then fdatasync(2).
 * - `aio`: as `prealloc`, but each sync is aio_fsync(O_DSYNC), then aio_suspend until it is
 *   final, then aio_error and aio_return: glibc's thread runs the fdatasync(2) and this thread
 *   waits for its notice, which is what glibc's own hand-off adds (its pool set up as
 *   @posix/aio sets it: aio_init with 64 threads, 10 s idle).
 *
 * Each record is `{"id":N,"pad":"xx…"}` and a line feed, RECORD_BYTES long in all, ids 0, 1, …
 * in file order (bench/common.ts `record()` makes the same bytes). Records are written for
 * WARMUP_MS, then timed for DURATION_MS: the latency of each record of the window (write and
 * sync) is kept, and the process's CPU time (user + system, every thread) over the window.
 *
 * Prints one JSON line: {"records":R,"seconds":S,"p50_ms":…,"p99_ms":…,"cpu_ms":…,"acked":N},
 * R the records of the window, N every record made durable (warm-up included), the percentiles
 * exact over the window's records (nearest rank). Exits with 1 and a message on any failure.
 */
#define _GNU_SOURCE
#include <aio.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64L << 20)

static void fail(const char *what) {
  perror(what);
  exit(1);
}

/* Milliseconds on `clock`: CLOCK_MONOTONIC for time, CLOCK_PROCESS_CPUTIME_ID for the CPU time
 * of the process (user + system, every thread). */
static double clock_ms(clockid_t clock) {
  struct timespec t;
  if (clock_gettime(clock, &t) != 0) fail("clock_gettime");
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The q quantile of sorted values (nearest rank), as bench/common.ts `quantile()`. */
static double quantile(const double *sorted, long count, double q) {
  long rank = (long)ceil(q * count) - 1;
  if (rank < 0) rank = 0;
  return sorted[rank < count ? rank : count - 1];
}

/* The record of id `id`, `bytes` long, into `out`. */
static void make_record(char *out, long bytes, long id) {
  int head = snprintf(out, bytes, "{\"id\":%ld,\"pad\":\"", id);
  if (head < 0 || head + 3 > bytes) {
    fprintf(stderr, "RECORD_BYTES %ld is too small for record %ld\n", bytes, id);
    exit(1);
  }
  memset(out + head, 'x', bytes - head - 3);
  memcpy(out + bytes - 3, "\"}\n", 3);
}

/* aio_fsync(O_DSYNC) of fd, waited for in aio_suspend. */
static void aio_sync(int fd) {
  struct aiocb block;
  memset(&block, 0, sizeof block);
  block.aio_fildes = fd;
  if (aio_fsync(O_DSYNC, &block) != 0) fail("aio_fsync");
  const struct aiocb *list[1] = {&block};
  while (aio_error(&block) == EINPROGRESS) {
    if (aio_suspend(list, 1, NULL) != 0 && errno != EINTR) fail("aio_suspend");
  }
  int error = aio_error(&block);
  if (aio_return(&block) != 0) {
    errno = error;
    fail("fdatasync (aio)");
  }
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s append|prealloc|aio FILE RECORD_BYTES WARMUP_MS DURATION_MS\n", argv[0]);
    return 2;
  }
  const char *mode = argv[1];
  int use_aio = strcmp(mode, "aio") == 0;
  int preallocate = use_aio || strcmp(mode, "prealloc") == 0;
  if (!preallocate && strcmp(mode, "append") != 0) {
    fprintf(stderr, "unknown mode %s: expected append, prealloc or aio\n", mode);
    return 2;
  }
  long bytes = atol(argv[3]);
  double warmup = atof(argv[4]), duration = atof(argv[5]);
  if (bytes < 16 || bytes > 4096 || warmup < 0 || duration <= 0) {
    fprintf(stderr, "RECORD_BYTES must be within 16-4096, WARMUP_MS at least 0, DURATION_MS positive\n");
    return 2;
  }
  int fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail(argv[2]);
  if (use_aio) {
    /* glibc's pool as @posix/aio sets it up. */
    struct aioinit init = {.aio_threads = 64, .aio_num = 64, .aio_idle_time = 10};
    aio_init(&init);
  }
  long allocated = 0;
  if (preallocate) {
    if (fallocate(fd, 0, 0, CHUNK) != 0) fail("fallocate");
    if (fsync(fd) != 0) fail("fsync");
    allocated = CHUNK;
  }
  char *buffer = malloc(bytes);
  long capacity = 1 << 16, count = 0;
  double *latencies = malloc(capacity * sizeof *latencies);
  if (buffer == NULL || latencies == NULL) fail("malloc");
  long id = 0;
  int timing = 0;
  double begin = clock_ms(CLOCK_MONOTONIC), window_start = 0, cpu_start = 0, end;
  for (;;) {
    double start = clock_ms(CLOCK_MONOTONIC);
    if (!timing && start - begin >= warmup) {
      timing = 1;
      window_start = start;
      cpu_start = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
    }
    if (timing && start - window_start >= duration) {
      end = start;
      break;
    }
    long offset = id * bytes;
    if (preallocate && offset + bytes > allocated) {
      if (fallocate(fd, 0, allocated, CHUNK) != 0) fail("fallocate");
      allocated += CHUNK;
    }
    make_record(buffer, bytes, id);
    if (pwrite(fd, buffer, bytes, offset) != bytes) fail("pwrite");
    if (use_aio) aio_sync(fd);
    else if (fdatasync(fd) != 0) fail("fdatasync");
    id++;
    if (!timing) continue;
    if (count == capacity) {
      capacity *= 2;
      latencies = realloc(latencies, capacity * sizeof *latencies);
      if (latencies == NULL) fail("realloc");
    }
    latencies[count++] = clock_ms(CLOCK_MONOTONIC) - start;
  }
  double cpu = clock_ms(CLOCK_PROCESS_CPUTIME_ID) - cpu_start;
  if (close(fd) != 0) fail("close");
  qsort(latencies, count, sizeof *latencies, compare);
  printf(
    "{\"records\":%ld,\"seconds\":%.6f,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"cpu_ms\":%.3f,\"acked\":%ld}\n",
    count, (end - window_start) / 1e3, count > 0 ? quantile(latencies, count, 0.5) : 0,
    count > 0 ? quantile(latencies, count, 0.99) : 0, cpu, id);
  return 0;
}
