#ifndef CNFTABLES_H
#define CNFTABLES_H
/*
 * kube-natd's C shim over libnftnl + libmnl: the rules iptables-nft would write, as nf_tables expressions.
 *
 * Swift encodes each (family, table) into the flat program of knat_program.h. knft_apply() compares every
 * program with the kernel (or with what this context's last commit left there, when the generation id says
 * nothing changed since) and sends only the difference, for every table and family at once, in ONE netlink
 * batch: all of it commits or none of it does.
 *
 * Errors follow libmnl: a call returns 0 or an errno value, and fills result->message with the place (family,
 * table, chain, rule). A context holds the socket and the kernel model; nothing else is kept between calls.
 * A context is used by one thread at a time.
 */
#include <stddef.h>
#include <stdint.h>
#include "knat_program.h" /* the program format (CRuleProgram) */

/* The expression forms of the iptables-nft releases (reference nftables.md §a.7). */
typedef enum knft_form {
    /* 1.8.7 and older, or unknown: compat tcp/udp (ports) and mark; -i,-o,-p,-s,-d; -p as meta l4proto */
    KNFT_FORM_COMPAT = 0,
    /* 1.8.8, 1.8.9: native --dport and -m mark; -i,-o,-p,-s,-d; -p as meta l4proto */
    KNFT_FORM_1_8_8 = 1,
    /* 1.8.10 and newer: as 1.8.8 but -s,-d,-i,-o,-p, and IPv4 -p as a payload load of the protocol byte */
    KNFT_FORM_1_8_10 = 2,
} knft_form;

/* One declared chain's records in a program (KNAT_OP_CHAIN and its rules), or a chain the program no longer
   declares (length 0). */
typedef struct knft_chain_range {
    const char *name; /* NUL-terminated */
    size_t offset, length;
} knft_chain_range;

/*
 * One (family, table) to make match its program.
 *
 * A program may say how it differs from the one applied before (the change the compiler knows): `base` is the
 * id of that earlier program, `changed` lists the chains added, rewritten or removed since, and [chains_start,
 * chains_end) is where its declared chains are (the head before them, the tail after: stale prefixes, deleted
 * chains, jumps, ensured rules, always compared). When this context's last apply of the table was program
 * `base` and the kernel has not moved since, the shim parses, hashes and plans only those chains and the tail;
 * otherwise (or with base 0, or compare_all) it compares the whole program with the kernel.
 */
typedef struct knft_program {
    int family;          /* 4 or 6 */
    char table[16];      /* "nat", "filter", "mangle" */
    const uint8_t *bytes;
    size_t length;
    uint64_t id;         /* names these bytes (0: unnamed; nothing of it is kept for a later change) */
    uint64_t base;       /* 0, or the id of the program these bytes differ from only in `changed` */
    const knft_chain_range *changed;
    size_t nchanged;
    size_t chains_start, chains_end; /* with base != 0: where the declared chains are */
    size_t stamp_offset, stamp_length; /* with base != 0: the stamp's chain in this table, if declared (else 0) */
    int compare_all;     /* 1: a full sync: `changed` serves the index only; every chain is compared with the kernel */
} knft_program;

/* What one table's part of the batch did. */
typedef struct knft_table_report {
    int family;
    char table[16];
    unsigned chains_created;   /* declared, canary or ensured-rule chains that were missing */
    unsigned chains_rewritten; /* existing declared chains whose rules differed: edited in place or refilled */
    unsigned chains_unchanged; /* existing declared chains that already held exactly their rules */
    unsigned chains_deleted;
    unsigned rules_written;    /* NEWRULE messages in owned chains (appends, inserts, replacements) */
    unsigned rules_deleted;    /* DELRULE messages (by handle) in owned and base chains */
    unsigned jumps_inserted;   /* kube-natd jumps (re)inserted at the top of base chains */
    unsigned ensured_added;    /* ensured rules that were missing */
    unsigned messages;         /* this table's share of the batch */
    /* what the call cost in chains (work proportional to the change shows here) */
    unsigned chains_indexed;   /* declared chains of the program parsed and hashed */
    unsigned chains_planned;   /* declared chains compared with the kernel model */
    int incremental;           /* 1: only the program's changed chains and its tail were parsed and planned */
} knft_table_report;

#define KNFT_MAX_TABLES 8

/* What one call did, or why it failed. */
typedef struct knft_result {
    int error;             /* 0, or an errno value (ERESTART: still raced after every attempt) */
    int attempts;          /* read..send rounds (a batch refused with ERESTART starts another) */
    int read_kernel;       /* 1: the tables were dumped; 0: this context's model was current (generation id), or
                              the stamp said nothing changed since kube-natd last wrote these programs */
    int stamp_current;     /* 1: the stamp showed the kernel as the last batch of these same programs left it */
    unsigned messages;     /* messages in the batch (BEGIN/END not counted); 0 when nothing differed */
    unsigned batches;      /* 1 when a batch was committed, else 0 */
    size_t batch_bytes;
    uint32_t genid;        /* the generation the kernel is at afterwards */
    double read_seconds;   /* GETGEN + dumps (last attempt) */
    double decide_seconds; /* comparing and building the batch (last attempt) */
    double send_seconds;   /* sendmsg (the kernel validates and commits inside it) and reading the replies */
    unsigned warnings;     /* non-fatal: e.g. a stale chain kept because a foreign rule still jumps to it */
    size_t ntables;
    knft_table_report tables[KNFT_MAX_TABLES];
    char message[1024];    /* error: where and why; else the last warning */
} knft_result;

typedef struct knft_context knft_context;

/* Opens the netlink socket. NULL on failure (result->error, result->message). */
knft_context *knft_open(knft_result *result);
void knft_close(knft_context *ctx);

/* Forget the kernel model: the next call reads the kernel. */
void knft_forget(knft_context *ctx);

enum {
    /* Use neither the model nor the stamp: dump the kernel (the stateless path without shortcut, for tests). */
    KNFT_APPLY_READ = 1,
};

/*
 * The stamp: every batch writes, in the userdata of the first rule of this declared chain, the generation id
 * its commit produces and a hash of the programs it applied. A caller with no model of its own (a new process)
 * that finds the stamp equal to the kernel's generation id and to its own programs' hash knows that nothing in
 * the netns changed since that batch and that the kernel holds exactly its programs: it sends nothing and reads
 * nothing else. Any other commit in the netns moves the generation id and the next call reads the kernel.
 */
typedef struct knft_stamp {
    int family;     /* 4 or 6 */
    char table[16];
    char chain[32]; /* a declared chain that always has a rule (kube-natd passes nat KUBE-MARK-MASQ) */
} knft_stamp;

/*
 * Makes each (family, table) hold its program's wanted state, all in one batch begun with the generation id
 * read before the decision; ERESTART (another writer committed in between) re-reads, re-decides and retries up
 * to max_attempts times. Nothing is sent when nothing differs (result->messages == 0).
 * stamp: NULL for none. flags: KNFT_APPLY_*. Returns 0 or an errno value.
 */
int knft_apply(knft_context *ctx, const knft_program *programs, size_t count, knft_form form,
               const knft_stamp *stamp, int max_attempts, int flags, knft_result *result);

/*
 * Test-only fault injection (nft-harness --fault; the daemon never calls it, and with no fault set each point
 * costs one compare). Calls number FIRST..FIRST+COUNT-1 (1-based, counted per point from this call on) fail:
 *   KNFT_FAULT_BATCH_ERESTART  the batch is not sent and comes back ERESTART, as when another writer committed
 *   KNFT_FAULT_BATCH_ENOBUFS   the batch is sent (and committed), its replies are lost: ENOBUFS
 *   KNFT_FAULT_DUMP_INTR       a dump ends marked NLM_F_DUMP_INTR, as when a commit interrupted it
 * knft_test_fault_hits(point): how many calls of the point failed so far.
 */
enum { KNFT_FAULT_BATCH_ERESTART = 0, KNFT_FAULT_BATCH_ENOBUFS = 1, KNFT_FAULT_DUMP_INTR = 2, KNFT_FAULT_POINTS = 3 };
void knft_test_fault(int point, unsigned first, unsigned count);
unsigned knft_test_fault_hits(int point);

/*
 * Reads ahead (e.g. on another thread, in a context of its own, while the caller compiles): the tables
 * (families[i], tables[i]) into the context's model, unless the stamp shows the kernel as a batch of kube-natd
 * left it (then the apply's stamp check is all it needs). knft_has_model says which happened.
 */
int knft_prefetch(knft_context *ctx, const int *families, const char *const *tables, size_t n,
                  const knft_stamp *stamp, knft_result *result);
/* 1 when the context holds a model read or written at some generation (it is checked against the kernel's at
   use), else 0. */
int knft_has_model(const knft_context *ctx);

/*
 * Test view of what knft_apply hashes, without a kernel: a set of program indexes (as a context keeps), the
 * stamp hash of the programs (through the set: a program naming the one indexed as its base is hashed from its
 * changed chains), and per table in result->tables[i] the chains parsed (chains_indexed) and `incremental`.
 */
typedef struct knft_indexes knft_indexes;
knft_indexes *knft_indexes_new(void);
void knft_indexes_free(knft_indexes *set);
int knft_indexes_hash(knft_indexes *set, const knft_program *programs, size_t count, knft_form form, uint64_t *hash,
                      knft_result *result);

/* One chain of a table as read back: rule count and digest (see knft_read_owned). */
typedef struct knft_chain_digest {
    int family;
    char table[16];
    char name[32];
    uint32_t rules;
    uint64_t digest;
} knft_chain_digest;

/* Which chains a read returns: any chain whose name starts with one of the prefixes or equals one of the names. */
typedef struct knft_selection {
    const char *const *prefixes;
    size_t nprefixes;
    const char *const *names;
    size_t nnames;
} knft_selection;

/*
 * The selected chains of the tables (family 4 or 6) with each chain's digest: the rules' identities in order,
 * kube-natd's rules by the tag it wrote with them, other rules by their expressions (counters aside). When the
 * generation id is the one this context's last commit or read produced, the model answers without a dump.
 * *out is malloc'd (the caller frees it); returns the count, or -errno with result->message.
 */
long knft_read_owned(knft_context *ctx, int family, const char *const *tables, size_t ntables,
                     const knft_selection *selection, int flags, knft_chain_digest **out, knft_result *result);

/*
 * What knft_read_owned returns for each KNAT_OP_CHAIN of the programs once applied, from the programs alone.
 * *out is malloc'd; returns the count, or -errno.
 */
long knft_expected_owned(const knft_program *programs, size_t count, knft_form form, knft_chain_digest **out,
                         knft_result *result);

/*
 * Test and diagnostic view: every rule of the table (family 4 or 6) in a canonical text form, one line per
 * rule, "chain<TAB>expressions<TAB>userdata": every expression with its attributes, xt info blobs in hex,
 * counters and handles left out, kube-natd's private userdata shown as "tag" only. Chains in name order,
 * rules in kernel order; a chain line "chain<TAB>base hook prio type policy" or "chain<TAB>user" first.
 * *out is malloc'd (NUL-terminated); returns its length, or -errno.
 */
long knft_dump_table(knft_context *ctx, int family, const char *table, char **out, knft_result *result);

/* The kernel's current generation id; 0 on success with *genid set, else an errno value. */
int knft_generation(knft_context *ctx, uint32_t *genid, knft_result *result);

/*
 * How many rules the family's (4 or 6) nf_tables tables hold, counting chain by chain and stopping once `limit`
 * is reached (0: no limit). For host-mode detection, which needs "any rules?" or "more than N?".
 */
int knft_count_rules(knft_context *ctx, int family, unsigned limit, unsigned *count, knft_result *result);

/*
 * Deletes table `name` of family 4 or 6 (nft's `ip` / `ip6`) with everything in it, in a batch of its own begun
 * with the generation id (ERESTART: looked up and tried again, max_attempts in all). A table that is not there is
 * not an error: *deleted says whether this call removed one. Nothing is sent when there is none.
 * Returns 0 or an errno value (EPROTONOSUPPORT from knft_open or EOPNOTSUPP here: no nf_tables in this kernel).
 */
int knft_delete_table(knft_context *ctx, int family, const char *name, int max_attempts, int *deleted,
                      knft_result *result);

#endif
