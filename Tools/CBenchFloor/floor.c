#include "cbenchfloor.h"

#include <errno.h>
#include <libiptc/libiptc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int knat_floor_round(const char *table, const char *chain, double *init_seconds, double *commit_seconds,
                     unsigned *rules_refilled, char *message, unsigned long message_capacity) {
    message[0] = 0;
    *rules_refilled = 0;
    double t0 = now();
    struct xtc_handle *h = iptc_init(table);
    if (!h) {
        int e = errno ? errno : EIO;
        snprintf(message, message_capacity, "iptc_init %s: %s", table, iptc_strerror(errno));
        return e;
    }
    if (!iptc_is_chain(chain, h)) {
        snprintf(message, message_capacity, "%s: no chain %s (load the table first)", table, chain);
        iptc_free(h);
        return ENOENT;
    }
    /* Copy the chain's rules out. Jumps and verdicts are stored with an empty target name and an
     * offset; libiptc maps a name back when a rule is appended, so write the name iptc_get_target gives. */
    struct ipt_entry *copies[256];
    unsigned n = 0;
    for (const struct ipt_entry *e = iptc_first_rule(chain, h); e && n < 256; e = iptc_next_rule(e, h)) {
        struct ipt_entry *c = malloc(e->next_offset);
        if (!c) break;
        memcpy(c, e, e->next_offset);
        struct xt_entry_target *t = (struct xt_entry_target *)((char *)c + c->target_offset);
        if (t->u.user.name[0] == 0) {
            const char *name = iptc_get_target(e, h);
            snprintf(t->u.user.name, sizeof(t->u.user.name), "%s", name ? name : "");
        }
        copies[n++] = c;
    }
    int rc = 0;
    if (!iptc_flush_entries(chain, h)) rc = errno ? errno : EIO;
    for (unsigned i = 0; i < n && rc == 0; i++) {
        if (!iptc_append_entry(chain, copies[i], h)) rc = errno ? errno : EIO;
    }
    for (unsigned i = 0; i < n; i++) free(copies[i]);
    if (rc) {
        snprintf(message, message_capacity, "%s %s: refill: %s", table, chain, iptc_strerror(rc));
        iptc_free(h);
        return rc;
    }
    double t1 = now();
    if (!iptc_commit(h)) {
        rc = errno ? errno : EIO;
        snprintf(message, message_capacity, "iptc_commit %s: %s", table, iptc_strerror(rc));
    }
    double t2 = now();
    iptc_free(h);
    *init_seconds = t1 - t0;
    *commit_seconds = t2 - t1;
    *rules_refilled = n;
    return rc;
}
