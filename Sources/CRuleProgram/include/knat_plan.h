#ifndef KNAT_PLAN_H
#define KNAT_PLAN_H
/*
 * The one planner: what kube-natd owns in one table and what to write so the table holds a program's wanted
 * state. Every backend asks it (the libiptc shim, the nf_tables shim, the text and restore backends); none of them
 * decides ownership itself. The planner reads the program (knat_program.h) and an abstract view of the table as the
 * backend read it, and writes a list of abstract steps; the backend executes them its own way.
 *
 * The view is callbacks over the backend's own read of the table (no copy): chains by index (name, base chain or
 * not, rule count), a lookup by name, per rule the chain it jumps to and whether the backend knows kube-natd wrote
 * it as one of its jumps, and "is kernel rule i of chain c the same as this program rule?" — each backend compares
 * its own way (libiptc: entries; nf_tables: kube-natd's tag for declared chains' rules, content for the rest;
 * text and restore: rendered rule text).
 *
 * THE DECISIONS (each made here only; upstream kube-proxy is the reference where it has an opinion):
 *
 *  D1 Chain names (declared, canary, deleted, jumped to, named by a rule edit, stale prefixes) are 1..28 bytes:
 *     KNAT_CHAIN_NAME_MAX = XT_EXTENSION_MAXNAMELEN - 1. x_tables stores names in 29 bytes with the NUL, and
 *     iptables-nft refuses longer names too ("chain name `%s' too long (must be under 29 chars)"), so a name
 *     nf_tables itself would take (255) could not be listed or deleted by iptables-nft afterwards. ENAMETOOLONG.
 *  D2 Declared chains (KNAT_OP_CHAIN): created and filled when missing; UNCHANGED when the kernel chain holds
 *     exactly the program's rules in order (nothing is written); else REWRITE (the backend chooses how: flush and
 *     refill, or edit by handle). A base chain is never declared (EPERM); a name declared twice is EINVAL.
 *     KNAT_OP_ENSURE_CHAIN (canaries): created when missing, never compared, flushed or deleted.
 *  D3 Stale chains: a chain named by KNAT_OP_DELETE_CHAIN, or whose name starts with a KNAT_OP_STALE_PREFIX,
 *     that exists, is not a base chain and is not kept by the program (KNAT_OP_CHAIN, _ENSURE_CHAIN, or named by
 *     _ENSURE_RULE / _JUMP) is deleted (flushed first).
 *  D4 A stale chain that a rule staying in the table still jumps to (a rule of a chain that is neither stale nor
 *     declared, and that this plan does not delete) is flushed and kept, with a warning naming the chain that
 *     jumps to it (KNAT_STEP_KEEP_CHAIN). The planner deletes only rules it can tell are kube-natd's (D6, D7):
 *     kube-proxy's own jumps into a chain the program deletes are listed by the encoder as KNAT_OP_DELETE_RULE
 *     (upstream's exact jump rules), so they go before the chain; any other rule is foreign and keeps the chain
 *     alive. (Upstream has no opinion: its restore fails on a referenced -X.) Stale chains are deleted in an order
 *     the kernel accepts inside one transaction: each after every stale chain that jumps to it; kept ones first.
 *  D5 kube-natd's jumps (KNAT_OP_JUMP, in program order per chain) are kept exactly once each, at the top of
 *     their chain, in order. Rules are compared by content, so an identical rule another tool wrote counts as
 *     the jump when it is in place. After the deletions of D6/D7, the longest prefix of the chain that already is
 *     jumps[0..k) stays; every other rule identical to one of the chain's jumps (out of order, duplicated,
 *     below foreign rules) is deleted, and jumps[k..n) are inserted right after the prefix, in order.
 *  D6 KNAT_OP_DELETE_RULE: every rule of that chain identical to it is deleted, wherever it is.
 *  D7 Own jumps (provenance): a rule the view marks own_jump (the backend knows kube-natd wrote it as one of its
 *     jumps) in a base chain or a chain with KNAT_OP_JUMP records, that is not identical to one of that chain's
 *     wanted jumps or ensured rules, is deleted when the program declares chains (it is a table's whole wanted
 *     state, so a jump it no longer lists is stale) or holds KNAT_OP_DELETE_OWN_JUMPS (--cleanup). Otherwise
 *     (canary programs) own jumps are left alone. A view that cannot tell who wrote a rule (x_tables has no room
 *     for a tag; text; restore) marks none, so there the record deletes nothing: --cleanup's own-jump deletion
 *     means the same everywhere — "the rules this backend knows kube-natd wrote as jumps" — and every backend
 *     accepts the record. Upstream's jumps are deleted by --cleanup through DELETE_RULE records in every backend.
 *  D8 Ensured rules (KNAT_OP_ENSURE_RULE): added only when no identical rule is in the chain (after this plan's
 *     deletions); identical ensured rules in the program are added once (upstream's EnsureRule checks before each
 *     add, so the second finds the first). Where: in a base chain right after kube-natd's jumps; elsewhere
 *     appended. The chain is created when missing. Never flushed, replaced or deleted.
 *  D9 A chain named by KNAT_OP_JUMP / _ENSURE_RULE that does not exist is created (KNAT_STEP_CREATE with
 *     KNAT_STEP_JUMPS or KNAT_STEP_ENSURED): nf_tables creates a missing base chain as iptables-nft does; x_tables
 *     always has its base chains, so there a CREATE with KNAT_STEP_JUMPS is the backend's error to report.
 *     A chain both declared (KNAT_OP_CHAIN) and named by a rule edit (JUMP, ENSURE_RULE, DELETE_RULE) is EINVAL.
 *
 * Errors: 0, or an errno with `message` (may be NULL) saying what is wrong in the program. An errno a view
 * callback returns (as -errno) aborts the plan and is returned as is, `message` left empty (the view has its own).
 */
#include <stddef.h>
#include <stdint.h>
#include "knat_program.h"
#include "knat_xtinfo.h"

#define KNAT_PLAN_END UINT32_MAX /* KNAT_STEP_INSERT: append (index), or no kernel rule follows (before) */
#define KNAT_PLAN_NONE UINT32_MAX

/* One program rule, as the planner hands it to the view's `same`. */
typedef struct knat_plan_rule {
    uint32_t id;     /* the rule's ordinal in the program: every rule (of chains, jumps, ensured and deleted
                        rules) numbered from 0 in program order */
    uint32_t at;     /* program offset of its first element record (or of its target when it has no element) */
    uint32_t length; /* bytes of its records, target included: {prog + at, length} reads exactly the rule */
    uint32_t op_at;  /* program offset of the operation record it belongs to */
    uint16_t op;     /* KNAT_OP_CHAIN, _JUMP, _ENSURE_RULE or _DELETE_RULE */
    uint16_t edit;   /* for JUMP / ENSURE_RULE / DELETE_RULE: its ordinal among those records (dense, for a cache of
                        their encodings); UINT16_MAX for a declared chain's rule */
} knat_plan_rule;

/* One declared chain (KNAT_OP_CHAIN), as the planner hands it to the view's optional `chain_same`. */
typedef struct knat_plan_chain {
    uint32_t at;       /* program offset of the KNAT_OP_CHAIN record */
    uint32_t first;    /* id of its first rule */
    uint32_t count;    /* its rules */
    uint32_t rules_at; /* program offset of its first rule's first record */
    uint32_t rules_length; /* bytes of all its rules' records */
} knat_plan_chain;

typedef struct knat_view_chain {
    const char *name; /* NUL-terminated; valid for the whole knat_plan_table call */
    uint32_t rules;
    uint8_t builtin;  /* a base chain */
} knat_view_chain;

typedef struct knat_view_rule {
    const char *target; /* the user chain it jumps to, or NULL / "" / a verdict / an extension's name otherwise
                           (the planner only looks it up as a chain name) */
    uint8_t own_jump;   /* the backend knows kube-natd wrote it as one of its jumps (D7); 0 when it cannot tell */
} knat_view_rule;

/* A table as one backend read it. Chain indices are 0..nchains-1; rule indices 0..rules-1 in chain order. */
typedef struct knat_view {
    void *ctx;
    const char *table; /* for messages */
    uint32_t nchains;
    knat_view_chain (*chain)(void *ctx, uint32_t chain);
    int32_t (*find)(void *ctx, const char *name); /* the chain's index, or -1 */
    knat_view_rule (*rule)(void *ctx, uint32_t chain, uint32_t index);
    /* Is kernel rule `index` of `chain` this program rule? 1 yes, 0 no, -errno on failure (e.g. the rule does not
       encode; the view keeps its own message). */
    int (*same)(void *ctx, uint32_t chain, uint32_t index, const knat_plan_rule *want);
    /* Optional (NULL: ask `same` per rule). Does the kernel chain hold exactly this declared chain's rules?
       1 yes, 0 no, 2 cannot tell cheaply (ask `same` per rule), -errno on failure. */
    int (*chain_same)(void *ctx, uint32_t chain, const knat_plan_chain *want);
} knat_view;

/* The steps, in the order a backend may run them (it may run every CREATE first; a chain's rule steps must run
   in the given order):
     1. each KNAT_OP_CHAIN / _ENSURE_CHAIN in program order: CREATE (+ FILL), UNCHANGED or REWRITE;
     2. each chain named by JUMP / ENSURE_RULE / DELETE_RULE records (in order of first naming), then each other
        base chain with own jumps to delete (D7): CREATE when missing, its DELETE_RULE steps (highest index
        first), then its INSERT steps;
     3. stale chains: KEEP_CHAIN steps, then DELETE_CHAIN steps, each after every stale chain jumping to it. */
enum {
    KNAT_STEP_CREATE = 1,       /* create the chain named by the record at `at` (`chain` -1) */
    KNAT_STEP_FILL = 2,         /* append the `count` rules of the KNAT_OP_CHAIN at `at` (first id `rule`) to the
                                   chain just created */
    KNAT_STEP_UNCHANGED = 3,    /* the declared chain at `at` is kernel chain `chain` and holds exactly its rules */
    KNAT_STEP_REWRITE = 4,      /* the declared chain at `at` is kernel chain `chain` and differs from rule `index`
                                   on: make it hold the `count` program rules (first id `rule`), the backend's way */
    KNAT_STEP_DELETE_RULE = 5,  /* delete rule `index` (as read) of kernel chain `chain` */
    KNAT_STEP_INSERT = 6,       /* insert the one rule (id `rule`) of the JUMP / ENSURE_RULE record at `at` into
                                   that chain at position `index` (once this chain's earlier steps ran; 
                                   KNAT_PLAN_END: append), i.e. right before rule `before` as read (KNAT_PLAN_END:
                                   at the end; several inserts before the same rule go in step order). `chain`:
                                   the kernel chain, or -1 when this plan creates it */
    KNAT_STEP_DELETE_CHAIN = 7, /* stale kernel chain `chain` (`count` rules): flush and delete it */
    KNAT_STEP_KEEP_CHAIN = 8,   /* stale kernel chain `chain` (`count` rules) that a staying rule jumps to: flush it
                                   (when count > 0) and keep it; `warning` says why */
};

/* Step flags. */
enum {
    KNAT_STEP_JUMPS = 1,       /* CREATE: the chain receives kube-natd's jumps (it must be a base chain);
                                  INSERT: the rule is one of kube-natd's jumps (nf_tables tags it so) */
    KNAT_STEP_ENSURED = 2,     /* CREATE: the chain receives ensured rules; INSERT: an ensured rule (untagged) */
    KNAT_STEP_ENSURE_ONLY = 4, /* CREATE: of a KNAT_OP_ENSURE_CHAIN (no FILL follows) */
};

typedef struct knat_step {
    uint8_t kind;   /* KNAT_STEP_* */
    uint8_t flags;  /* KNAT_STEP_JUMPS | ... */
    int32_t chain;  /* kernel chain index in the view, or -1 */
    uint32_t at;    /* program offset of the operation record (its string names the chain); KNAT_PLAN_NONE for
                       stale chain steps */
    uint32_t index;
    uint32_t before;
    uint32_t rule;  /* program rule id: INSERT's rule; a declared chain's first rule */
    uint32_t count; /* declared chain: its program rules; stale chain: its kernel rules */
    const char *warning; /* KEEP_CHAIN: owned by the plan */
} knat_step;

typedef struct knat_plan {
    knat_step *steps;
    size_t nsteps, step_cap;
    size_t writes;      /* steps that change the table: 0 means it already holds the wanted state (UNCHANGED steps,
                           and KEEP_CHAIN of an empty chain, write nothing) */
    unsigned unchanged; /* declared chains that already hold exactly their rules */
    unsigned warnings;  /* KEEP_CHAIN steps */
    char **strings;     /* the warnings' memory */
    size_t nstrings, string_cap;
} knat_plan;

/* Plans one table. 0, or an errno (see Errors above); *plan is empty on failure. Free with knat_plan_free. */
int knat_plan_table(const uint8_t *program, size_t length, const knat_view *view, knat_plan *plan, char *message,
                    size_t message_cap);
void knat_plan_free(knat_plan *plan);

/* The string of the operation record at `at` (a step's chain name), NUL-terminated; 0 if it is not a valid name. */
int knat_plan_record_name(const uint8_t *program, size_t length, uint32_t at, char out[KNAT_CHAIN_NAME_MAX + 1]);

#endif
