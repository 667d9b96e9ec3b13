/* Shared by the decision's files (wanted.c, emit.c, plan.c): the wanted state of one program, the messages,
   and the plan's record of model changes. */
#ifndef KNFT_PLAN_H
#define KNFT_PLAN_H
#include "internal.h"

/* ---- base chains as iptables-nft creates them ---- */
typedef struct knft_builtin {
    const char *table, *chain, *type;
    uint32_t hook;
    int32_t prio;
} knft_builtin;
/* iptables-nft's base chain of that name in that table (its xtables_ipv4/ipv6 lists), or NULL. */
const knft_builtin *knft_find_builtin(const char *table, const char *chain);

/* ---- the wanted state of one program ---- */
typedef struct want_rule {
    knft_span span;
    uint64_t tag, target, content; /* content: only for jumps, ensured rules and rules to delete */
} want_rule;

typedef struct named_rule { /* a jump, ensured rule or rule to delete */
    const char *chain;
    want_rule rule;
} named_rule;

typedef struct want_chain {
    const char *name;
    int ensure_only; /* KNAT_OP_ENSURE_CHAIN: created if missing, never filled */
    size_t first, count; /* into wanted.rules */
} want_chain;

typedef struct wanted {
    want_chain *chains;
    size_t nchains;
    want_rule *rules;
    size_t nrules;
    const char **deleted, **prefixes;
    size_t ndeleted, nprefixes;
    named_rule *jumps, *ensured, *delrules;
    size_t njumps, nensured, ndelrules;
    int delete_own_jumps;
    /* incremental: the chains the program no longer declares (the program's changed ranges of length 0) */
    const char **removed;
    size_t nremoved;
    size_t capc, capr, capd, capp, capj, cape, capx, capm;
} wanted;

/*
 * Parses a program (names are kept by the plan, which outlives the batch's error reporting): all of it, or with
 * `incremental` only its head, its changed chains and its tail (the rest is as the index says). 0 or errno.
 */
int knft_wanted_parse(knft_plan *plan, const knft_program *p, int incremental, knft_form form, wanted *w,
                      knft_result *res);
void knft_wanted_free(wanted *w);

/* ---- the plan's bookkeeping ---- */
enum { CH_SET, CH_DELETE, CH_TABLE };

typedef struct change {
    int op;
    knft_table *table;
    char *chain;       /* owned by the plan */
    int base;
    knft_rule *rules;  /* owned by the plan (CH_SET) */
    uint32_t nrules;
} change;

struct knft_plan {
    change *changes;
    size_t n, cap;
    void **allocs; /* strings and arrays the batch's origins point into */
    size_t nallocs, capallocs;
};

/* Keeps memory until the plan is freed (NULL in, NULL out). */
void *knft_plan_keep(knft_plan *p, void *mem);
change *knft_plan_change(knft_plan *p, int op, knft_table *t, const char *chain);
/* The last change the plan makes to a chain, or NULL. */
const change *knft_planned(const knft_plan *plan, const knft_table *t, const char *name);

/* ---- messages ---- */
typedef struct emitter {
    knft_batch *bt;
    knft_table *t;
    knft_form form;
    knft_stamping *stamping;
    knft_table_report *report;
    knft_result *res;
} emitter;

enum { AT_TAIL, AT_HEAD, BEFORE, AFTER, REPLACE };

int knft_emit_table(emitter *em);
/* A user chain as `iptables -N` does (b NULL), or a base chain as iptables-nft adds it. */
int knft_emit_chain(emitter *em, const char *name, const knft_builtin *b);
/* NEWRULE: appended, at the head, before/after the rule with handle `ref`, or replacing it; with kube-natd's
   tag in the given role (0: none, as another tool would write it), and the stamp on the stamp's rule. */
int knft_emit_rule(emitter *em, const char *chain, int index, const want_rule *r, int role, int where, uint64_t ref);
/* DELRULE by handle, or a flush of the chain (handle 0). */
int knft_emit_delrule(emitter *em, const char *chain, uint64_t handle);
int knft_emit_delchain(emitter *em, const char *chain);
/* The error for a by-handle operation whose handle is not known. */
int knft_no_handle(emitter *em, const char *chain);

#endif
