/*
 * A slow device without ptrace, for bench/fsync_bench.ts: a FUSE file system (libfuse3's
 * high-level API, libfuse 3.12 or later) that passes every operation through to a backing
 * folder, except that fsync(2) and fdatasync(2) first sleep DELAY_US microseconds in the
 * daemon and then fsync/fdatasync the backing file. The bench compiles it with gcc at run time
 * (nothing is committed built), mounts one per delay and runs its `-fuse` cases on it.
 *
 *   slow_fs BACKING MOUNTPOINT DELAY_US [FUSE OPTIONS...]   (e.g. -d to trace every request)
 *
 * - Runs in the foreground; prints "mounted" on stdout once the mount exists. It unmounts and
 *   exits on SIGTERM/SIGINT/SIGHUP, when its stdin reaches end of file (the parent closed it or
 *   died), or when the mount is taken away (fusermount3 -u).
 * - Multithreaded: up to 256 threads serve requests at once and up to 256 stay when idle, so
 *   concurrent syncs sleep in parallel and no thread is created again and again.
 * - No writeback cache (each write(2) reaches the daemon before it returns; a sync has no dirty
 *   pages to send first), hard_remove (no .fuse_hidden files), default attribute timeouts.
 * - The delay is a clock_nanosleep to an absolute deadline with 1 ns of timer slack.
 * - Operations: getattr, readdir, mkdir, rmdir, unlink, create, open, read, write, truncate,
 *   fsync, release, statfs: what the bench's files, mkdtemp and rm -r need.
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define THREADS 256

static const char *backing;
static long long delay_ns;

/* The backing path of `path` (which starts with "/") into `out`; -ENAMETOOLONG if it does not fit. */
static int backing_path(const char *path, char out[PATH_MAX]) {
  int length = snprintf(out, PATH_MAX, "%s%s", backing, path);
  return length < 0 || length >= PATH_MAX ? -ENAMETOOLONG : 0;
}

/* 0, or -errno if `result` is -1. */
static int check(int result) {
  return result == -1 ? -errno : 0;
}

static void *slow_init(struct fuse_conn_info *conn, struct fuse_config *config) {
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  config->hard_remove = 1;
  return NULL;
}

static int slow_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
  if (fi != NULL) return check(fstat((int)fi->fh, st));
  char full[PATH_MAX];
  int error = backing_path(path, full);
  return error != 0 ? error : check(lstat(full, st));
}

static int slow_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t offset,
                        struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
  (void)offset;
  (void)fi;
  (void)flags;
  char full[PATH_MAX];
  int error = backing_path(path, full);
  if (error != 0) return error;
  DIR *dir = opendir(full);
  if (dir == NULL) return -errno;
  for (struct dirent *entry; (entry = readdir(dir)) != NULL;) {
    if (fill(buf, entry->d_name, NULL, 0, 0) != 0) break;
  }
  closedir(dir);
  return 0;
}

static int slow_mkdir(const char *path, mode_t mode) {
  char full[PATH_MAX];
  int error = backing_path(path, full);
  return error != 0 ? error : check(mkdir(full, mode));
}

static int slow_rmdir(const char *path) {
  char full[PATH_MAX];
  int error = backing_path(path, full);
  return error != 0 ? error : check(rmdir(full));
}

static int slow_unlink(const char *path) {
  char full[PATH_MAX];
  int error = backing_path(path, full);
  return error != 0 ? error : check(unlink(full));
}

/* Opens the backing file with the caller's flags (and O_CREAT with `mode` if `create`). */
static int open_backing(const char *path, struct fuse_file_info *fi, int create, mode_t mode) {
  char full[PATH_MAX];
  int error = backing_path(path, full);
  if (error != 0) return error;
  int fd = create ? open(full, fi->flags | O_CREAT, mode) : open(full, fi->flags);
  if (fd == -1) return -errno;
  fi->fh = (uint64_t)fd;
  return 0;
}

static int slow_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
  return open_backing(path, fi, 1, mode);
}

static int slow_open(const char *path, struct fuse_file_info *fi) {
  return open_backing(path, fi, 0, 0);
}

static int slow_read(const char *path, char *buf, size_t size, off_t offset, struct fuse_file_info *fi) {
  (void)path;
  ssize_t done = pread((int)fi->fh, buf, size, offset);
  return done == -1 ? -errno : (int)done;
}

static int slow_write(const char *path, const char *buf, size_t size, off_t offset,
                      struct fuse_file_info *fi) {
  (void)path;
  ssize_t done = pwrite((int)fi->fh, buf, size, offset);
  return done == -1 ? -errno : (int)done;
}

static int slow_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
  if (fi != NULL) return check(ftruncate((int)fi->fh, size));
  char full[PATH_MAX];
  int error = backing_path(path, full);
  return error != 0 ? error : check(truncate(full, size));
}

/* The slow part: the device takes `delay_ns` more for every sync, then the backing file syncs. */
static int slow_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
  (void)path;
  if (delay_ns > 0) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    long long ns = until.tv_nsec + delay_ns;
    until.tv_sec += ns / 1000000000;
    until.tv_nsec = ns % 1000000000;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR) continue;
  }
  int fd = (int)fi->fh;
  return check(datasync ? fdatasync(fd) : fsync(fd));
}

static int slow_release(const char *path, struct fuse_file_info *fi) {
  (void)path;
  close((int)fi->fh);
  return 0;
}

static int slow_statfs(const char *path, struct statvfs *st) {
  char full[PATH_MAX];
  int error = backing_path(path, full);
  return error != 0 ? error : check(statvfs(full, st));
}

static const struct fuse_operations operations = {
  .init = slow_init,
  .getattr = slow_getattr,
  .readdir = slow_readdir,
  .mkdir = slow_mkdir,
  .rmdir = slow_rmdir,
  .unlink = slow_unlink,
  .create = slow_create,
  .open = slow_open,
  .read = slow_read,
  .write = slow_write,
  .truncate = slow_truncate,
  .fsync = slow_fsync,
  .release = slow_release,
  .statfs = slow_statfs,
};

/* Waits for end of file on stdin (the parent closed it or died), then stops the daemon. */
static void *watch_stdin(void *arg) {
  (void)arg;
  char buf[64];
  for (;;) {
    ssize_t got = read(STDIN_FILENO, buf, sizeof buf);
    if (got == 0 || (got == -1 && errno != EINTR)) break;
  }
  /* This thread blocks every signal: SIGTERM interrupts the loop's own threads. */
  kill(getpid(), SIGTERM);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s BACKING MOUNTPOINT DELAY_US [FUSE OPTIONS...]\n", argv[0]);
    return 2;
  }
  backing = argv[1];
  char *end;
  long long delay_us = strtoll(argv[3], &end, 10);
  if (*argv[3] == '\0' || *end != '\0' || delay_us < 0) {
    fprintf(stderr, "DELAY_US must be a non-negative integer, received %s\n", argv[3]);
    return 2;
  }
  delay_ns = delay_us * 1000;
  /* Sleep the delay, not the delay plus the default 50 us of timer slack (threads inherit it). */
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

  struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
  fuse_opt_add_arg(&args, argv[0]);
  fuse_opt_add_arg(&args, "-ofsname=slow_fs,subtype=slow_fs");
  for (int i = 4; i < argc; i++) fuse_opt_add_arg(&args, argv[i]);
  struct fuse *fuse = fuse_new(&args, &operations, sizeof operations, NULL);
  fuse_opt_free_args(&args);
  if (fuse == NULL) return 1;
  if (fuse_mount(fuse, argv[2]) != 0) {
    fuse_destroy(fuse);
    return 1;
  }
  struct fuse_session *session = fuse_get_session(fuse);
  if (fuse_set_signal_handlers(session) != 0) {
    fuse_unmount(fuse);
    fuse_destroy(fuse);
    return 1;
  }
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t watcher;
  int watching = pthread_create(&watcher, NULL, watch_stdin, NULL) == 0;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (watching) pthread_detach(watcher);
  printf("mounted\n");
  fflush(stdout);

  struct fuse_loop_config *config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(config, THREADS);
  fuse_loop_cfg_set_idle_threads(config, THREADS);
  int status = fuse_loop_mt(fuse, config);
  fuse_loop_cfg_destroy(config);
  fuse_remove_signal_handlers(session);
  fuse_unmount(fuse);
  fuse_destroy(fuse);
  /* The loop returns a signal's number when one stopped it, -errno on failure. */
  return status < 0 ? 1 : 0;
}
