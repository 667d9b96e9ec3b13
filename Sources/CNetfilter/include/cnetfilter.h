#ifndef CNETFILTER_H
#define CNETFILTER_H
/*
 * kube-natd's C shim over libiptc (libip4tc / libip6tc).
 *
 * Swift encodes a table's wanted state into one flat program (knat_program.h). knat_apply_table reads the table
 * once, compares it with the program and, only when something differs, replays exactly the differences through
 * libiptc in one iptc_commit, holding /run/xtables.lock for the whole read..commit like the iptables binaries do.
 * One comparison decides both "is the table already in its wanted state?" and "what has to be written".
 *
 * Errors, everywhere in this shim (cconntrack.h too): a function returns 0 or a positive errno value; the same
 * value is in result->error, and result->message says what failed (table, chain, rule index, iptc_strerror).
 */
#include <stddef.h>
#include <stdint.h>
#include "knat_program.h" /* the program format (CRuleProgram) */

/* What one call did, or why it failed. */
typedef struct knat_result {
    int error;               /* 0 on success, else the errno value the function returned */
    int attempts;            /* read..commit rounds (EAGAIN from commit starts a new one) */
    double lock_wait_seconds;
    double init_seconds;     /* iptc_init alone (last attempt): the kernel's copy of the table, libiptc's parse */
    double build_seconds;    /* iptc_init through the last cache edit (last attempt) */
    double commit_seconds;   /* iptc_commit alone (last attempt): compile + SO_SET_REPLACE */
    unsigned chains_created;
    unsigned chains_flushed;  /* existing declared chains whose rules differed: flushed and refilled */
    unsigned chains_unchanged; /* existing declared chains that already held exactly their rules: untouched */
    int committed;           /* 1 when iptc_commit ran; 0 when the table already held the wanted state */
    unsigned chains_deleted;
    unsigned rules_appended; /* rules of refilled chains, and ensured rules added */
    unsigned jumps_inserted;
    unsigned rules_deleted;
    int checked;             /* with KNAT_APPLY_CHECK_FIRST: 1 the table held the wanted state (no commit), 2 it
                                differed (written through libiptc); 0 without the flag */
    double check_seconds;    /* with KNAT_APPLY_CHECK_FIRST: reading the entries (unless prefetched) and deciding */
    unsigned warnings;       /* non-fatal (e.g. a stale chain still referenced by a foreign rule) */
    char message[1024];      /* error text; or the last warning */
} knat_result;

/* A table's chains and rules as read once (opaque). */
typedef struct knat_snapshot knat_snapshot;

/*
 * Reads the table's entries under the xtables lock (one IPT_SO_GET_ENTRIES, no libiptc parse) into *out, for a
 * later knat_apply_table. May run on another thread ahead of the apply. *out is NULL on failure.
 */
int knat_snapshot_take(int family, const char *table, int lock_timeout_ms, knat_snapshot **out,
                       knat_result *result);
void knat_snapshot_free(knat_snapshot *snapshot);

enum {
    /* Read the table from its raw entries first: when nothing differs, neither iptc_init nor a commit happens.
       Without it the table is read through iptc_init, which the write needs anyway (a change is expected). Both
       readers feed the same comparison. */
    KNAT_APPLY_CHECK_FIRST = 1,
};

/*
 * Applies one table program. family is 4 or 6. lock_timeout_ms < 0 waits forever, 0 tries once. max_attempts
 * bounds the read..commit rounds when commit sees EAGAIN (another writer replaced the table). flags: KNAT_APPLY_*.
 * snapshot (may be NULL; implies KNAT_APPLY_CHECK_FIRST) is used instead of reading when the kernel's table still
 * has its size, entry count and hooks (checked under the lock), else the table is read again.
 */
int knat_apply_table(int family, const char *table, const uint8_t *program, size_t length,
                     int lock_timeout_ms, int max_attempts, int flags, const knat_snapshot *snapshot,
                     knat_result *result);

/* One chain: its rule count and a digest of its rules (header, matches, target; not counters). */
typedef struct knat_chain_digest {
    char name[32];
    uint32_t rules;
    uint8_t builtin;
    uint64_t digest;
} knat_chain_digest;

/* Chains in table order; free with knat_chain_list_free. */
typedef struct knat_chain_list {
    knat_chain_digest *chains;
    size_t count;
} knat_chain_list;
void knat_chain_list_free(knat_chain_list *list);

/* Every chain of the table, read once under the lock (the same reader knat_apply_table uses). */
int knat_list_table(int family, const char *table, int lock_timeout_ms, knat_chain_list *out, knat_result *result);

/*
 * What knat_list_table will show for each KNAT_OP_CHAIN of the program once it is applied (builtin 0), from the
 * program alone: drift is the difference.
 */
int knat_digest_program(int family, const uint8_t *program, size_t length, knat_chain_list *out,
                        knat_result *result);

/* IPT_SO_GET_INFO / IP6T_SO_GET_INFO alone: no copy of the entries. */
typedef struct knat_table_info {
    uint32_t size, entries, hooks;
    uint32_t extra_entries; /* entries beyond an empty table's (a policy per base chain and the final ERROR entry):
                               each rule counts one, each user chain two */
} knat_table_info;

/* Only ask for tables the kernel already lists in /proc/net/ip{,6}_tables_names: naming another one instantiates
   it. ENOENT when the table does not exist. */
int knat_table_info_read(int family, const char *table, knat_table_info *info, knat_result *result);

#endif
