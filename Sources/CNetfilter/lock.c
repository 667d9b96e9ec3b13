/* /run/xtables.lock, taken as the iptables binaries take it, the clock the reports use, and the test pauses. The
   lock fd is the shim's only state, and it lives only for one call. */
#include "shim.h"
#include <fcntl.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

double knat_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int knat_lock(int timeout_ms, double *waited) {
    double start = knat_now();
    *waited = 0;
    int fd = open("/run/xtables.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
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

/* Test hooks: KNAT_TEST_PAUSE_BEFORE_COMMIT_MS (between iptc_init and iptc_commit) and
   KNAT_TEST_PAUSE_BEFORE_INIT_MS (between the read and iptc_init) hold the first attempt, so a kernel test can
   change the table in that window and prove the EAGAIN retry deterministically. Unset in production. */
void knat_test_pause(const char *variable, int attempt) {
    const char *ms = getenv(variable);
    long n = attempt == 1 && ms ? strtol(ms, NULL, 10) : 0;
    if (n > 0 && n <= 10000) usleep((useconds_t)n * 1000);
}
