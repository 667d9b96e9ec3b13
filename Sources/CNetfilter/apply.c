/* knat_apply_table: under the xtables lock, read the table, plan, and (only when the plan is not empty) execute it
   through libiptc; a round that ends in EAGAIN starts over from the read. And the snapshots it can start from. */
#include "shim.h"

int knat_snapshot_take(int family, const char *table, int lock_timeout_ms, knat_snapshot **out,
                       knat_result *result) {
    memset(result, 0, sizeof(*result));
    *out = NULL;
    const knat_family *f = knat_family_of(family);
    if (!f) return result->error = knat_fail(result, EINVAL, "family must be 4 or 6, got %d", family);
    knat_snapshot *s = calloc(1, sizeof(*s));
    if (!s) return result->error = knat_fail(result, ENOMEM, "%s: out of memory", table);
    int fd = knat_lock(lock_timeout_ms, &result->lock_wait_seconds);
    if (fd < 0) {
        free(s);
        return result->error = knat_fail(result, -fd, "%s: cannot take %s: %s", table, knat_lock_path(), strerror(-fd));
    }
    double started = knat_now();
    int rc = knat_read_raw(f, table, s, result);
    result->check_seconds = knat_now() - started;
    knat_unlock(fd);
    if (rc && rc != EBADMSG) { /* EBADMSG: a layout the raw walk does not index; the apply reads it again */
        knat_snapshot_free(s);
        return result->error = rc;
    }
    *out = s;
    return 0;
}

void knat_snapshot_free(knat_snapshot *s) {
    if (!s) return;
    knat_snapshot_release(s);
    free(s);
}

/* One read..commit round. */
static int apply_once(const knat_family *f, const char *table, const uint8_t *prog, size_t len, int check,
                      const knat_snapshot *given, int attempt, knat_result *res) {
    knat_snapshot own = {0};
    knat_plan plan = {0};
    double started = knat_now();
    const knat_snapshot *s = &own;
    int rc = 0;
    if (given && given->blob && given->f == f && !strcmp(given->table, table) && knat_snapshot_current(given))
        s = given;
    else
        rc = knat_read(f, table, !check, &own, res);
    if (!rc) rc = knat_plan_make(s, prog, len, &plan, res);
    if (rc) goto done;
    res->chains_unchanged = plan.unchanged;
    if (check) {
        res->checked = plan.writes ? 2 : 1;
        res->check_seconds = knat_now() - started;
    }
    if (!plan.writes) goto done; /* the table already holds the wanted state: no commit */
    struct xtc_handle *h = s->handle;
    if (!h) {
        knat_test_gate("KNAT_TEST_GATE_BEFORE_INIT", attempt);
        double init = knat_now();
        if (!(h = f->iptc.ops->init(table))) {
            int err = errno;
            rc = knat_fail(res, err ? err : EIO, "%s: iptc_init: %s", table, f->iptc.ops->strerror(err));
            goto done;
        }
        res->init_seconds = knat_now() - init;
    }
    rc = knat_execute(s, h, &plan, prog, len, attempt, res);
    if (h != s->handle) f->iptc.ops->free(h);
done:
    knat_plan_free(&plan);
    knat_snapshot_release(&own);
    return rc;
}

int knat_apply_table(int family, const char *table, const uint8_t *program, size_t length,
                     int lock_timeout_ms, int max_attempts, int flags, const knat_snapshot *snapshot,
                     knat_result *result) {
    memset(result, 0, sizeof(*result));
    const knat_family *f = knat_family_of(family);
    if (!f) return result->error = knat_fail(result, EINVAL, "family must be 4 or 6, got %d", family);
    int fd = knat_lock(lock_timeout_ms, &result->lock_wait_seconds);
    if (fd < 0)
        return result->error = knat_fail(result, -fd, "%s: cannot take %s after %.3fs: %s", table,
                                         knat_lock_path(), result->lock_wait_seconds, strerror(-fd));
    int check = (flags & KNAT_APPLY_CHECK_FIRST) || snapshot;
    int rc = 0;
    for (int attempt = 1; attempt <= (max_attempts < 1 ? 1 : max_attempts); attempt++) {
        double waited = result->lock_wait_seconds;
        memset(result, 0, sizeof(*result));
        result->lock_wait_seconds = waited;
        result->attempts = attempt;
        rc = apply_once(f, table, program, length, check, attempt == 1 ? snapshot : NULL, attempt, result);
        if (rc != EAGAIN) break;
    }
    if (rc == EAGAIN)
        knat_fail(result, rc, "%s: the table kept changing under us (EAGAIN) after %d attempts", table,
                  result->attempts);
    knat_unlock(fd);
    return result->error = rc;
}
