#ifndef CNETFILTER_H
#define CNETFILTER_H
/*
 * kube-natd's C shim over libiptc (libip4tc / libip6tc).
 *
 * Swift encodes a table's wanted state into one flat "program" (knat_program.h); knat_apply_table() replays it
 * into struct ipt_entry / ip6t_entry and commits it in one iptc_commit, holding /run/xtables.lock for the whole
 * init..commit like the iptables binaries do.
 */
#include <stddef.h>
#include <stdint.h>
#include "knat_program.h" /* the program format (CRuleProgram) */

/* What one knat_apply_table call did, or why it failed. */
typedef struct knat_result {
    int error;               /* 0 on success, else an errno value */
    int attempts;            /* init..commit rounds (EAGAIN from commit starts a new one) */
    double lock_wait_seconds;
    double init_seconds;     /* iptc_init alone (last attempt): the kernel's copy of the table, libiptc's parse */
    double build_seconds;    /* iptc_init through the last cache edit (last attempt) */
    double commit_seconds;   /* iptc_commit alone (last attempt): compile + SO_SET_REPLACE */
    unsigned chains_created;
    unsigned chains_flushed;  /* existing declared chains whose rules differed: flushed and refilled */
    unsigned chains_unchanged; /* existing declared chains that already held exactly their rules: untouched */
    int committed;           /* 1 when iptc_commit ran; 0 when the table already held the wanted state */
    unsigned chains_deleted;
    unsigned rules_appended;
    unsigned jumps_inserted;
    unsigned rules_deleted;
    int checked;             /* 0: no snapshot check; 1: the snapshot showed the wanted state (libiptc not used);
                                2: it showed a difference, or a layout it does not compare: libiptc path taken */
    double check_seconds;    /* reading the snapshot (when not given) and comparing it */
    unsigned warnings;       /* non-fatal (e.g. a stale chain still referenced by a foreign rule) */
    char message[1024];      /* error text: table, chain, rule index, iptc_strerror; or the last warning */
} knat_result;

/* A table's entries read once, for knat_apply_table's check (opaque). */
typedef struct knat_snapshot knat_snapshot;

/*
 * Reads the table's entries under the xtables lock (one IPT_SO_GET_ENTRIES, no libiptc parse). NULL on failure,
 * with result->error and result->message. A snapshot may be taken on another thread ahead of the apply.
 */
knat_snapshot *knat_snapshot_take(int family, const char *table, int lock_timeout_ms, knat_result *result);
void knat_snapshot_free(knat_snapshot *snapshot);

enum {
    /* Before libiptc: read the entries (or use the snapshot given) and, when the table already holds exactly the
       program's wanted state, return without iptc_init or commit. Costs one read when something differs. */
    KNAT_APPLY_CHECK_FIRST = 1,
};

/*
 * Applies one table program. family is 4 or 6. lock_timeout_ms < 0 waits forever, 0 tries once.
 * flags: KNAT_APPLY_*. snapshot (may be NULL; implies KNAT_APPLY_CHECK_FIRST) is used for the check when the
 * kernel's table still has its size, entry count and hooks (checked under the lock), else read again.
 * Returns 0 or an errno value (also in result->error, with result->message).
 */
int knat_apply_table(int family, const char *table, const uint8_t *program, size_t length,
                     int lock_timeout_ms, int max_attempts, int flags, const knat_snapshot *snapshot,
                     knat_result *result);

/*
 * One line per chain of the table, "name\tbuiltin\trules\tdigest16hex\n", into *out (malloc'd, NUL-terminated;
 * the caller frees it). The digest covers every rule's header, matches and target (not counters). The table is
 * read once (raw entries; through libiptc only for a layout libiptc would not write). Returns the length, or
 * -errno with result->message (*out NULL).
 */
long knat_list_table(int family, const char *table, char **out, int lock_timeout_ms, knat_result *result);

/*
 * The lines knat_list_table would print for each KNAT_OP_CHAIN of the program once it is applied (builtin
 * column 0), computed from the program alone: drift detection compares the two without re-reading twice.
 */
long knat_digest_program(int family, const uint8_t *program, size_t length, char **out, knat_result *result);

#endif
