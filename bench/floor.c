/*
 * The floor of the bench's workloads, in C, without any JavaScript runtime: what the same
 * writes and syncs cost when a program calls the C library directly. bench/fsync_bench.ts
 * compiles it with gcc at run time (nothing is committed built) and runs it in the same cases,
 * under the same strace delay, as the implementations `c-sync` and `c-aio`.
 *
 *   floor sync|aio|relay seq|many DIR FILES COUNT
 *
 * - `sync`: fdatasync(2) called directly: in `seq` by the one thread, one after another; in
 *   `many` by one thread per file, all at once (what a thread pool could do at best).
 * - `aio`: aio_fsync(O_DSYNC), then aio_suspend until it is final, then aio_return; in `many`,
 *   every file's sync is submitted, then aio_suspend over those still pending until none is.
 *   glibc's pool is set up as the module sets it (aio_init: 64 threads, 10 s idle).
 * - `relay`: `aio` with the wait off the main thread, as a JavaScript runtime must do it: a
 *   second thread, already waiting on a semaphore, is told of the submitted syncs, waits in
 *   aio_suspend and writes an eventfd at each return; the main thread sleeps in epoll_wait on
 *   that eventfd and checks the syncs when it wakes. One thread hand-off more than `aio` per
 *   completion, no runtime: what any binding whose main thread must not block pays at least.
 * - `seq`: FILES is 1; COUNT writes of 4 KiB, each followed by a sync (after 500 untimed).
 * - `many`: FILES files, COUNT rounds of (each file: write 4 KiB, sync), one untimed round first.
 *
 * Prints one JSON line: {"ops":N,"ms":WALL,"cpuMs":USER+SYSTEM of the whole process}.
 */
#define _GNU_SOURCE
#include <aio.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <semaphore.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096
#define SEQ_WARMUP 500

static char block[BLOCK];
static int use_aio;
static int use_relay;
static int event_fd;
static int epoll_fd;
static sem_t relay_start;
static volatile int relay_count;
static int files;
static int *fds;
static struct aiocb *blocks;
static const struct aiocb **list;
static pthread_barrier_t barrier;
static int rounds_left;

static void fail(const char *what) {
  perror(what);
  exit(1);
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static double cpu_ms(void) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e3
    + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e3;
}

static void write_block(int fd) {
  if (write(fd, block, BLOCK) != BLOCK) fail("write");
}

/* Submits the sync of file i. */
static void submit(int i) {
  memset(&blocks[i], 0, sizeof blocks[i]);
  blocks[i].aio_fildes = fds[i];
  if (aio_fsync(O_DSYNC, &blocks[i]) != 0) fail("aio_fsync");
}

/* The relay thread: each time the main thread posts, one aio_suspend over the syncs of
 * [0, relay_count) still in progress (none: no call), then a write to the eventfd. */
static void *relay_thread(void *arg) {
  (void)arg;
  for (;;) {
    while (sem_wait(&relay_start) != 0) continue;
    int count = relay_count;
    if (count < 0) return NULL;
    int listed = 0;
    for (int i = 0; i < count; i++) if (aio_error(&blocks[i]) == EINPROGRESS) list[listed++] = &blocks[i];
    if (listed > 0 && aio_suspend(list, listed, NULL) != 0 && errno != EINTR) fail("aio_suspend");
    uint64_t one = 1;
    if (write(event_fd, &one, sizeof one) != sizeof one) fail("write eventfd");
  }
}

/* Waits in epoll_wait until the syncs of [0, count) are final, the relay thread waiting in
 * aio_suspend for it and called again after each return while some are in progress. */
static void relay_wait_all(int count) {
  int pending = count;
  char *done = calloc(count, 1);
  relay_count = count;
  sem_post(&relay_start);
  while (pending > 0) {
    struct epoll_event event;
    if (epoll_wait(epoll_fd, &event, 1, -1) < 0) {
      if (errno == EINTR) continue;
      fail("epoll_wait");
    }
    uint64_t value;
    if (read(event_fd, &value, sizeof value) < 0) fail("read eventfd");
    for (int i = 0; i < count; i++) {
      if (done[i] || aio_error(&blocks[i]) == EINPROGRESS) continue;
      if (aio_error(&blocks[i]) != 0 || aio_return(&blocks[i]) != 0) fail("fdatasync (aio)");
      done[i] = 1;
      pending--;
    }
    if (pending > 0) sem_post(&relay_start);
  }
  free(done);
}

/* Waits in aio_suspend until the syncs of files [0, count) are final. */
static void wait_all(int count) {
  if (use_relay) {
    relay_wait_all(count);
    return;
  }
  int pending = count;
  char *done = calloc(count, 1);
  while (pending > 0) {
    int listed = 0;
    for (int i = 0; i < count; i++) if (!done[i]) list[listed++] = &blocks[i];
    if (aio_suspend(list, listed, NULL) != 0 && errno != EINTR) fail("aio_suspend");
    for (int i = 0; i < count; i++) {
      if (done[i] || aio_error(&blocks[i]) == EINPROGRESS) continue;
      if (aio_error(&blocks[i]) != 0 || aio_return(&blocks[i]) != 0) fail("fdatasync (aio)");
      done[i] = 1;
      pending--;
    }
  }
  free(done);
}

static void seq(int count) {
  for (int n = 0; n < count; n++) {
    write_block(fds[0]);
    if (use_aio) {
      submit(0);
      wait_all(1);
    } else if (fdatasync(fds[0]) != 0) {
      fail("fdatasync");
    }
  }
}

/* One thread per file in `many` with `sync`: a round starts and ends at the barrier. */
static void *file_thread(void *arg) {
  int fd = fds[(long)arg];
  for (;;) {
    pthread_barrier_wait(&barrier);
    if (rounds_left < 0) return NULL;
    write_block(fd);
    if (fdatasync(fd) != 0) fail("fdatasync");
    pthread_barrier_wait(&barrier);
  }
}

static void many_round(void) {
  if (use_aio) {
    for (int i = 0; i < files; i++) {
      write_block(fds[i]);
      submit(i);
    }
    wait_all(files);
  } else {
    pthread_barrier_wait(&barrier);
    pthread_barrier_wait(&barrier);
  }
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s sync|aio|relay seq|many DIR FILES COUNT\n", argv[0]);
    return 2;
  }
  use_relay = strcmp(argv[1], "relay") == 0;
  use_aio = use_relay || strcmp(argv[1], "aio") == 0;
  int many = strcmp(argv[2], "many") == 0;
  files = atoi(argv[4]);
  int count = atoi(argv[5]);
  if (files < 1 || count < 1) {
    fprintf(stderr, "FILES and COUNT must be positive\n");
    return 2;
  }
  memset(block, 'a', BLOCK);
  fds = calloc(files, sizeof *fds);
  blocks = calloc(files, sizeof *blocks);
  list = calloc(files, sizeof *list);
  for (int i = 0; i < files; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/floor-%d.bin", argv[3], i);
    fds[i] = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fds[i] < 0) fail(path);
  }
  if (use_aio) {
    struct aioinit init;
    memset(&init, 0, sizeof init);
    init.aio_threads = 64;
    init.aio_num = 64;
    init.aio_idle_time = 10;
    aio_init(&init);
  }
  pthread_t relay;
  if (use_relay) {
    event_fd = eventfd(0, EFD_NONBLOCK);
    epoll_fd = epoll_create1(0);
    struct epoll_event event = { .events = EPOLLIN };
    if (event_fd < 0 || epoll_fd < 0 || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, event_fd, &event) != 0) fail("eventfd");
    sem_init(&relay_start, 0, 0);
    if (pthread_create(&relay, NULL, relay_thread, NULL) != 0) fail("pthread_create");
  }
  pthread_t *threads = NULL;
  if (many && !use_aio) {
    pthread_barrier_init(&barrier, NULL, files + 1);
    threads = calloc(files, sizeof *threads);
    for (long i = 0; i < files; i++) {
      if (pthread_create(&threads[i], NULL, file_thread, (void *)i) != 0) fail("pthread_create");
    }
  }
  int ops;
  double start, cpu;
  if (many) {
    many_round();
    start = now_ms();
    cpu = cpu_ms();
    for (rounds_left = count; rounds_left > 0; rounds_left--) many_round();
    ops = count * files;
  } else {
    seq(count < SEQ_WARMUP ? count : SEQ_WARMUP);
    start = now_ms();
    cpu = cpu_ms();
    seq(count);
    ops = count;
  }
  double ms = now_ms() - start;
  double cpu_used = cpu_ms() - cpu;
  if (threads != NULL) {
    rounds_left = -1;
    pthread_barrier_wait(&barrier);
    for (int i = 0; i < files; i++) pthread_join(threads[i], NULL);
  }
  if (use_relay) {
    relay_count = -1;
    sem_post(&relay_start);
    pthread_join(relay, NULL);
  }
  for (int i = 0; i < files; i++) close(fds[i]);
  printf("{\"ops\":%d,\"ms\":%.3f,\"cpuMs\":%.3f}\n", ops, ms, cpu_used);
  return 0;
}
