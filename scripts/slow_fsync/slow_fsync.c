/* An LD_PRELOAD shim that makes fsync(2) and fdatasync(2) take FSYNC_DELAY_US microseconds
 * longer (default 5000), to measure on a fast disk what a slow one does to a durable queue:
 * scripts/bench_queue.py --slow-fsync runs every server under it, the same for all.
 * Build: cc -shared -fPIC -O2 -o slow_fsync.so slow_fsync.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

static useconds_t delay(void) {
    const char *text = getenv("FSYNC_DELAY_US");
    return text ? (useconds_t)strtoul(text, NULL, 10) : 5000;
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    usleep(delay());
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    usleep(delay());
    return real(fd);
}
