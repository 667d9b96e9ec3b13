/* latency-probe: one sample of Benchmarks/latency.sh. Sends the PUT that moves a Service's endpoint from one pod
 * to another, then opens new TCP connections to the Service in a paced loop until the new pod answers.
 *
 *   latency-probe API_NETNS API_HOST API_PORT BODY_FILE TARGET_IP TARGET_PORT OLD_POD NEW_POD
 *                 [INTERVAL_US [TIMEOUT_MS [LIMIT_S]]]
 *
 * Runs in the client's network namespace (`ip netns exec CLIENT latency-probe ...`); only the connection to the
 * apiserver is opened in API_NETNS (a name under /run/netns, or a path), through setns and back, before anything
 * is timed. Steps, each bounded:
 *   1. connections to TARGET until OLD_POD answers (at most 10 s): the Service starts where the sample expects;
 *   2. t0 = CLOCK_MONOTONIC, then the PUT of BODY_FILE to /control/objects (the text TRIGGER_TIME in it becomes
 *      the wall-clock time, the EndpointSlice's last-change-trigger-time);
 *   3. a new connection every INTERVAL_US (default 1000) from its start to the next, each given TIMEOUT_MS
 *      (default 100) to connect and answer, until NEW_POD answers or LIMIT_S (default 60) have passed;
 *   4. the apiserver's answer to the PUT (200 wanted).
 * Prints one line: new_ms (the first answer from NEW_POD, since t0), new_sent_ms (when that connection was
 * started), last_old_ms (the last answer from OLD_POD), attempts and their outcomes, the PUT's HTTP status.
 * Exit status: 0 measured; 1 NEW_POD never answered; 2 usage or set-up; 3 OLD_POD did not answer first; 4 the
 * PUT failed. Each connection is closed with a reset (SO_LINGER 0), so thousands of samples leave no sockets in
 * TIME_WAIT behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_until_ms(double when) {
    struct timespec ts = {.tv_sec = (time_t)(when / 1e3), .tv_nsec = (long)((when - (double)(time_t)(when / 1e3) * 1e3) * 1e6)};
    if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
}

static void fail(int code, const char *what) {
    fprintf(stderr, "latency-probe: %s\n", what);
    exit(code);
}

enum outcome { ANSWER, TIMEOUT, REFUSED, OTHER };

/* One connection to `to`: connect, read the answer line, reset. `answer` gets the first word of the answer. */
static enum outcome attempt(const struct sockaddr_in *to, int timeout_ms, char *answer, size_t size) {
    answer[0] = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return OTHER;
    double deadline = mono_ms() + timeout_ms;
    enum outcome result = OTHER;
    if (connect(fd, (const struct sockaddr *)to, sizeof(*to)) < 0 && errno != EINPROGRESS) {
        result = errno == ECONNREFUSED ? REFUSED : OTHER;
        goto done;
    }
    char buf[256];
    size_t got = 0;
    for (;;) {
        int left = (int)(deadline - mono_ms());
        if (left <= 0) { result = TIMEOUT; goto done; }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { result = TIMEOUT; goto done; }
        ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            result = errno == ECONNREFUSED ? REFUSED : OTHER;
            goto done;
        }
        got += (size_t)r;
        buf[got] = 0;
        if (r == 0 || memchr(buf, '\n', got) || got == sizeof(buf) - 1) break;
    }
    size_t word = strcspn(buf, " \n");
    if (word == 0) goto done;
    if (word >= size) word = size - 1;
    memcpy(answer, buf, word);
    answer[word] = 0;
    result = ANSWER;
done:;
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(fd);
    return result;
}

/* A blocking TCP connection to host:port opened in the network namespace `netns`; the caller's namespace after. */
static int connect_in(const char *netns, const char *host, int port) {
    char path[512];
    if (strchr(netns, '/')) snprintf(path, sizeof(path), "%s", netns);
    else snprintf(path, sizeof(path), "/run/netns/%s", netns);
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int there = open(path, O_RDONLY | O_CLOEXEC);
    if (self < 0 || there < 0) fail(2, "cannot open the network namespaces");
    if (setns(there, CLONE_NEWNET) < 0) fail(2, "setns into the apiserver's namespace failed");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int saved = fd < 0 ? errno : 0;
    if (setns(self, CLONE_NEWNET) < 0) fail(2, "setns back failed");
    close(self);
    close(there);
    if (fd < 0) { errno = saved; fail(2, "socket for the apiserver failed"); }
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) fail(2, "API_HOST must be an IPv4 address");
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) fail(2, "cannot connect to the apiserver");
    return fd;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) fail(2, "cannot read BODY_FILE");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (1 << 20)) fail(2, "BODY_FILE too large");
    char *s = malloc((size_t)n + 1);
    if (!s || fread(s, 1, (size_t)n, f) != (size_t)n) fail(2, "cannot read BODY_FILE");
    s[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return s;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 9 || argc > 12) {
        fprintf(stderr, "usage: latency-probe API_NETNS API_HOST API_PORT BODY_FILE TARGET_IP TARGET_PORT OLD_POD NEW_POD "
                        "[INTERVAL_US [TIMEOUT_MS [LIMIT_S]]]\n");
        return 2;
    }
    const char *old_pod = argv[7], *new_pod = argv[8];
    double interval_ms = (argc > 9 ? atof(argv[9]) : 1000) / 1e3;
    int timeout_ms = argc > 10 ? atoi(argv[10]) : 100;
    double limit_ms = (argc > 11 ? atof(argv[11]) : 60) * 1e3;
    if (interval_ms < 0 || timeout_ms <= 0 || limit_ms <= 0) fail(2, "INTERVAL_US, TIMEOUT_MS and LIMIT_S must be positive");
    struct sockaddr_in target = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[6]))};
    if (inet_pton(AF_INET, argv[5], &target.sin_addr) != 1) fail(2, "TARGET_IP must be an IPv4 address");

    size_t body_len;
    char *body = read_file(argv[4], &body_len);
    int api = connect_in(argv[1], argv[2], atoi(argv[3]));

    /* 1. the old pod answers */
    char answer[64];
    double until = mono_ms() + 10e3;
    for (;;) {
        double start = mono_ms();
        if (attempt(&target, timeout_ms, answer, sizeof(answer)) == ANSWER) {
            if (!strcmp(answer, old_pod)) break;
            fprintf(stderr, "latency-probe: %s answered before the change, %s expected\n", answer, old_pod);
            return 3;
        }
        if (mono_ms() > until) {
            fprintf(stderr, "latency-probe: %s did not answer within 10 s\n", old_pod);
            return 3;
        }
        sleep_until_ms(start + 10);
    }

    /* 2. the PUT, its trigger time stamped now */
    char *at = strstr(body, "TRIGGER_TIME");
    char *request = malloc(body_len + 512);
    if (!request) fail(2, "out of memory");
    double t0 = mono_ms();
    if (at) {
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        struct tm tm;
        gmtime_r(&wall.tv_sec, &tm);
        char stamp[64];
        size_t k = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(stamp + k, sizeof(stamp) - k, ".%06ldZ", wall.tv_nsec / 1000);
        size_t prefix = (size_t)(at - body), rest = body_len - prefix - strlen("TRIGGER_TIME");
        int h = snprintf(request, 512, "PUT /control/objects HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                                       "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                         argv[2], argv[3], prefix + strlen(stamp) + rest);
        memcpy(request + h, body, prefix);
        memcpy(request + h + prefix, stamp, strlen(stamp));
        memcpy(request + h + prefix + strlen(stamp), at + strlen("TRIGGER_TIME"), rest);
        if (send_all(api, request, (size_t)h + prefix + strlen(stamp) + rest) < 0) fail(4, "sending the PUT failed");
    } else {
        int h = snprintf(request, 512, "PUT /control/objects HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                                       "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                         argv[2], argv[3], body_len);
        memcpy(request + h, body, body_len);
        if (send_all(api, request, (size_t)h + body_len) < 0) fail(4, "sending the PUT failed");
    }

    /* 3. new connections until the new pod answers */
    unsigned attempts = 0, old = 0, timeouts = 0, refused = 0, other = 0, foreign = 0;
    double new_ms = -1, new_sent_ms = -1, last_old_ms = -1, next = t0;
    while (mono_ms() - t0 < limit_ms) {
        sleep_until_ms(next);
        double start = mono_ms();
        next = start + interval_ms;
        attempts++;
        enum outcome o = attempt(&target, timeout_ms, answer, sizeof(answer));
        double end = mono_ms();
        if (o == TIMEOUT) timeouts++;
        else if (o == REFUSED) refused++;
        else if (o == OTHER) other++;
        else if (!strcmp(answer, new_pod)) {
            new_ms = end - t0;
            new_sent_ms = start - t0;
            break;
        } else if (!strcmp(answer, old_pod)) {
            old++;
            last_old_ms = end - t0;
        } else foreign++;
    }

    /* 4. the apiserver's answer */
    char reply[512];
    ssize_t n = recv(api, reply, sizeof(reply) - 1, 0);
    int status = 0;
    if (n > 0) {
        reply[n] = 0;
        sscanf(reply, "HTTP/1.%*d %d", &status);
    }
    close(api);
    printf("new_ms=%.3f new_sent_ms=%.3f last_old_ms=%.3f attempts=%u old=%u timeouts=%u refused=%u errors=%u other_pod=%u http=%d\n",
           new_ms, new_sent_ms, last_old_ms, attempts, old, timeouts, refused, other, foreign, status);
    if (status != 200) return 4;
    return new_ms < 0 ? 1 : 0;
}
