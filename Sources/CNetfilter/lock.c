/* /run/xtables.lock, taken as the iptables binaries take it, the clock the reports use, and the test gates. The
   lock fd is the shim's only state, and it lives only for one call. */
#include "shim.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

double knat_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The lock file: XTABLES_LOCKFILE when set and not empty, as the iptables binaries read it (xshared.c), else
   /run/xtables.lock. The kernel tests set it to a private file so they never hold or wait on the host's lock. */
const char *knat_lock_path(void) {
    const char *path = getenv("XTABLES_LOCKFILE");
    return path && *path ? path : "/run/xtables.lock";
}

int knat_lock(int timeout_ms, double *waited) {
    double start = knat_now();
    *waited = 0;
    int fd = open(knat_lock_path(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) return -errno;
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        *waited = knat_now() - start;
        if (e != EWOULDBLOCK && e != EINTR) e = -e;
        else if (timeout_ms >= 0 && *waited * 1000.0 >= (double)timeout_ms) e = -ETIMEDOUT;
        else e = 0;
        if (e) {
            close(fd);
            return e;
        }
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL); /* poll every 10 ms */
    }
    *waited = knat_now() - start;
    return fd;
}

void knat_unlock(int fd) {
    if (fd >= 0) close(fd); /* closing drops the flock */
}

/* Test gates: KNAT_TEST_GATE_BEFORE_COMMIT (between iptc_init and iptc_commit) and KNAT_TEST_GATE_BEFORE_INIT
   (between the read and iptc_init) name a file GATE. The first attempt creates GATE.ready, then waits until GATE
   exists (at most 60 s), so a kernel test changes the table inside the window and then opens it: a condition, not
   a clock. Unset in production (one getenv per attempt). */
void knat_test_gate(const char *variable, int attempt) {
    const char *gate = getenv(variable);
    if (attempt != 1 || !gate || !*gate) return;
    char ready[4096];
    if (snprintf(ready, sizeof(ready), "%s.ready", gate) >= (int)sizeof(ready)) return;
    int fd = open(ready, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    if (fd >= 0) close(fd);
    for (int i = 0; i < 6000 && access(gate, F_OK) != 0; i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
}
