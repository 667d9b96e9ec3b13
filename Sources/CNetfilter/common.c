#include "common.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

void knat_set_message(knat_result *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof(r->message), fmt, ap);
    va_end(ap);
}

double knat_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int knat_lock(int timeout_ms, double *waited) {
    double start = knat_now();
    *waited = 0;
    int fd = open(KNAT_LOCK_PATH, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) return -errno;
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) break;
        int e = errno;
        if (e != EWOULDBLOCK && e != EINTR) { close(fd); return -e; }
        double elapsed = knat_now() - start;
        if (timeout_ms >= 0 && elapsed * 1000.0 >= (double)timeout_ms) {
            *waited = elapsed;
            close(fd);
            return -ETIMEDOUT;
        }
        struct timespec pause = {0, 10 * 1000 * 1000}; /* poll every 10 ms */
        nanosleep(&pause, NULL);
    }
    *waited = knat_now() - start;
    return fd;
}

void knat_unlock(int fd) {
    if (fd >= 0) close(fd); /* closing drops the flock */
}

int knat_names_add(knat_names *s, const char *name) {
    if (s->count == s->capacity) {
        size_t cap = s->capacity ? s->capacity * 2 : 64;
        void *p = realloc(s->names, cap * sizeof(*s->names));
        if (!p) return 0;
        s->names = p;
        s->capacity = cap;
    }
    snprintf(s->names[s->count++], KNAT_CHAIN_MAX, "%s", name);
    return 1;
}

static int knat_name_cmp(const void *a, const void *b) { return strcmp(a, b); }

void knat_names_sort(knat_names *s) {
    if (s->count > 1) qsort(s->names, s->count, sizeof(*s->names), knat_name_cmp);
}

int knat_names_contains(const knat_names *s, const char *name) {
    char key[KNAT_CHAIN_MAX];
    snprintf(key, sizeof(key), "%s", name);
    return s->count && bsearch(key, s->names, s->count, sizeof(*s->names), knat_name_cmp) != NULL;
}

void knat_names_free(knat_names *s) {
    free(s->names);
    memset(s, 0, sizeof(*s));
}

knat_snapshot *knat_snapshot_take(int family, const char *table, int lock_timeout_ms, knat_result *result) {
    memset(result, 0, sizeof(*result));
    if (family != 4 && family != 6) {
        result->error = EINVAL;
        knat_set_message(result, "family must be 4 or 6, got %d", family);
        return NULL;
    }
    knat_snapshot *s = calloc(1, sizeof(*s));
    if (!s) {
        result->error = ENOMEM;
        knat_set_message(result, "%s: out of memory", table);
        return NULL;
    }
    s->family = family;
    snprintf(s->table, sizeof(s->table), "%s", table);
    int fd = knat_lock(lock_timeout_ms, &result->lock_wait_seconds);
    if (fd < 0) {
        result->error = -fd;
        knat_set_message(result, "%s: cannot take %s: %s", table, KNAT_LOCK_PATH, strerror(-fd));
        free(s);
        return NULL;
    }
    double started = knat_now();
    int rc = family == 4 ? knat_snapshot_take4(table, s, result) : knat_snapshot_take6(table, s, result);
    result->check_seconds = knat_now() - started;
    knat_unlock(fd);
    if (rc) {
        result->error = rc;
        knat_snapshot_free(s);
        return NULL;
    }
    return s;
}

void knat_snapshot_release(knat_snapshot *s) {
    if (s->blob) munmap(s->blob, s->blob_length);
    free(s->chains);
    free(s->slots);
    s->blob = NULL;
    s->chains = NULL;
    s->slots = NULL;
}

void knat_snapshot_free(knat_snapshot *s) {
    if (!s) return;
    knat_snapshot_release(s);
    free(s);
}

/* The snapshot check of knat_apply_table, under the lock: 1 the table already holds the program's state. */
static int check_first(int family, const char *table, const uint8_t *program, size_t length,
                       const knat_snapshot *given, knat_result *result) {
    double started = knat_now();
    knat_snapshot *own = NULL;
    const knat_snapshot *s = given;
    if (s && (s->family != family || strcmp(s->table, table) || !knat_snapshot_current(s))) s = NULL;
    if (!s) {
        knat_result scratch = {0};
        own = calloc(1, sizeof(*own));
        if (own) {
            own->family = family;
            snprintf(own->table, sizeof(own->table), "%s", table);
            int rc = family == 4 ? knat_snapshot_take4(table, own, &scratch) : knat_snapshot_take6(table, own, &scratch);
            if (!rc) s = own;
        }
    }
    int same = 0;
    if (s && s->comparable) {
        same = family == 4 ? knat_snapshot_unchanged4(s, program, length, result)
                           : knat_snapshot_unchanged6(s, program, length, result);
        if (same < 0) { /* a malformed program: the libiptc path reports it with its context */
            same = 0;
            result->message[0] = 0;
        }
    }
    knat_snapshot_free(own);
    result->checked = same == 1 ? 1 : 2;
    result->check_seconds = knat_now() - started;
    return same == 1;
}

int knat_apply_table(int family, const char *table, const uint8_t *program, size_t length,
                     int lock_timeout_ms, int max_attempts, int flags, const knat_snapshot *snapshot,
                     knat_result *result) {
    memset(result, 0, sizeof(*result));
    if (family != 4 && family != 6) {
        result->error = EINVAL;
        knat_set_message(result, "family must be 4 or 6, got %d", family);
        return EINVAL;
    }
    int fd = knat_lock(lock_timeout_ms, &result->lock_wait_seconds);
    if (fd < 0) {
        result->error = -fd;
        knat_set_message(result, "%s: cannot take %s after %.3fs: %s", table, KNAT_LOCK_PATH,
                         result->lock_wait_seconds, strerror(-fd));
        return -fd;
    }
    if ((flags & KNAT_APPLY_CHECK_FIRST) || snapshot) {
        if (check_first(family, table, program, length, snapshot, result)) {
            result->attempts = 0;
            result->committed = 0;
            knat_unlock(fd);
            return 0;
        }
        result->chains_unchanged = 0;
    }
    if (max_attempts < 1) max_attempts = 1;
    int rc = 0;
    for (int attempt = 1; attempt <= max_attempts; attempt++) {
        knat_result keep = *result;
        memset(result, 0, sizeof(*result));
        result->lock_wait_seconds = keep.lock_wait_seconds;
        result->checked = keep.checked;
        result->check_seconds = keep.check_seconds;
        result->attempts = attempt;
        rc = family == 4 ? knat_apply_table4(table, program, length, result)
                         : knat_apply_table6(table, program, length, result);
        if (rc != EAGAIN) break;
        if (attempt == max_attempts) {
            knat_set_message(result, "%s: commit kept failing with EAGAIN (table changed under us) after %d attempts",
                             table, attempt);
        }
    }
    result->error = rc;
    knat_unlock(fd);
    return rc;
}

void knat_text_line(knat_text *t, const char *fmt, ...) {
    char line[160];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || t->failed) return;
    if ((size_t)n >= sizeof(line)) n = sizeof(line) - 1;
    if (t->used + (size_t)n + 1 > t->capacity) {
        size_t cap = t->capacity ? t->capacity * 2 : 1 << 16;
        while (cap < t->used + (size_t)n + 1) cap *= 2;
        char *p = realloc(t->data, cap);
        if (!p) { t->failed = 1; return; }
        t->data = p;
        t->capacity = cap;
    }
    memcpy(t->data + t->used, line, (size_t)n + 1);
    t->used += (size_t)n;
}

/* Hands the text to the caller, or frees it and returns the error. */
static long knat_text_finish(knat_text *t, long rc, char **out, knat_result *result) {
    if (rc >= 0 && t->failed) {
        knat_set_message(result, "out of memory listing the table");
        rc = -ENOMEM;
    }
    if (rc < 0) {
        free(t->data);
        *out = NULL;
        return rc;
    }
    if (!t->data) knat_text_line(t, "%s", "");
    *out = t->data;
    return (long)t->used;
}

long knat_list_table(int family, const char *table, char **out, int lock_timeout_ms, knat_result *result) {
    memset(result, 0, sizeof(*result));
    *out = NULL;
    int fd = knat_lock(lock_timeout_ms, &result->lock_wait_seconds);
    if (fd < 0) {
        result->error = -fd;
        knat_set_message(result, "%s: cannot take %s: %s", table, KNAT_LOCK_PATH, strerror(-fd));
        return fd;
    }
    knat_text text = {0};
    long n = family == 4 ? knat_list_table4(table, &text, result) : knat_list_table6(table, &text, result);
    knat_unlock(fd);
    return knat_text_finish(&text, n, out, result);
}

long knat_digest_program(int family, const uint8_t *program, size_t length, char **out, knat_result *result) {
    memset(result, 0, sizeof(*result));
    *out = NULL;
    knat_text text = {0};
    long n = family == 4 ? knat_digest_program4(program, length, &text, result)
                         : knat_digest_program6(program, length, &text, result);
    return knat_text_finish(&text, n, out, result);
}

void knat_test_pause_before_commit(int attempt) {
    if (attempt != 1) return;
    const char *ms = getenv("KNAT_TEST_PAUSE_BEFORE_COMMIT_MS");
    if (ms == NULL || *ms == 0) return;
    long n = strtol(ms, NULL, 10);
    if (n > 0 && n <= 10000) usleep((useconds_t)n * 1000);
}
