/* Internals shared by the files of the nf_tables shim; each file has one job (see the comment at its top). */
#ifndef KNFT_INTERNAL_H
#define KNFT_INTERNAL_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include "cnftables.h"

struct nftnl_rule;
struct nftnl_batch;
struct mnl_socket;
struct nlattr;
struct nlmsghdr;

#define KNFT_NAME_MAX 256 /* nf_tables' own limit on chain names (iptables uses 28) */

/* The private TLV type of the stamp (see knft_stamp): u32 generation id, u64 programs hash. */
#define KNFT_UDATA_STAMP 0xF1

/* The private rule-userdata TLV type that carries kube-natd's tag. iptables-nft and nft ignore unknown types
   (reference nftables.md §a.5): the rule still saves, checks and deletes as iptables-nft's own. */
#define KNFT_UDATA_TAG 0xF0
/* The tag's roles, part of the TLV value: a rule of an owned chain, or one of kube-natd's base-chain jumps. */
enum { KNFT_ROLE_OWNED = 1, KNFT_ROLE_JUMP = 2 };

/* ---- hashing ---------------------------------------------------------------------------------------------- */

/* A 64-bit hash over bytes, a word at a time (tags are computed for every rule of every sync, so byte-wise FNV
   showed); not cryptographic, only collision-resistant enough for identities. Never 0: 0 means "none". */
static inline uint64_t knft_mix(uint64_t h, uint64_t v) {
    h ^= v;
    h *= 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 31);
}
static inline uint64_t knft_hash(uint64_t seed, const void *data, size_t length) {
    const uint8_t *p = (const uint8_t *)data;
    uint64_t h = knft_mix(seed ^ 0xA0761D6478BD642FULL, length);
    size_t i = 0;
    for (; i + 8 <= length; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = knft_mix(h, w);
    }
    if (i < length) {
        uint64_t w = 0;
        memcpy(&w, p + i, length - i);
        h = knft_mix(h, w ^ 0xFF);
    }
    h = knft_mix(h, 0x2D358DCCAA6C78A5ULL);
    return h ? h : 1;
}
static inline uint64_t knft_hash_str(const char *s) { return knft_hash(0, s, strlen(s)); }

/* ---- the kernel model (model.c) --------------------------------------------------------------------------- */

enum {
    KNFT_R_TAGGED = 1, /* carries kube-natd's tag */
    KNFT_R_JUMP = 2,   /* tagged with the jump role */
};

typedef struct knft_rule {
    uint64_t handle;  /* 0 when not known (written in a batch without echo); a dump of the chain learns it */
    uint64_t tag;     /* kube-natd's tag, 0 when untagged */
    uint64_t content; /* digest of the expressions and foreign userdata, 0 when not computed */
    uint64_t target;  /* knft_hash_str of the jump/goto target chain, 0 when the rule does not jump */
    uint32_t flags;   /* KNFT_R_* */
} knft_rule;

typedef struct knft_chain {
    char *name;
    uint64_t name_hash;
    int base;         /* has a hook */
    int dead;         /* deleted (kept as a tombstone so indices stay valid) */
    knft_rule *rules;
    uint32_t nrules, cap;
    /* base-chain details, for the test dump */
    uint32_t hook, policy;
    int32_t prio;
    char type[16];
} knft_chain;

typedef struct knft_table {
    int family; /* 4 or 6 */
    char name[16];
    int exists;
    int loaded; /* its chains and rules have been read */
    knft_chain *chains;
    size_t nchains, cap;
    uint32_t *slots; /* open addressing by name hash: chain index + 1, 0 empty */
    size_t nslots;
} knft_table;

typedef struct knft_model {
    knft_table *tables;
    size_t ntables, cap;
    uint32_t genid;
    int valid;
    uint64_t epoch; /* bumped whenever the model is cleared: what was known to hold in it no longer does */
} knft_model;

knft_table *knft_model_table(knft_model *m, int family, const char *name, int create);
knft_chain *knft_table_chain(knft_table *t, const char *name);
/* Adds a chain (or revives a dead one); NULL when out of memory. */
knft_chain *knft_table_add_chain(knft_table *t, const char *name, int base);
int knft_chain_push(knft_chain *c, const knft_rule *r);
void knft_chain_clear(knft_chain *c);
void knft_model_clear(knft_model *m);
void knft_model_free(knft_model *m);

/* ---- canonical expressions (canon.c) ---------------------------------------------------------------------- */

/* A growing text buffer. */
typedef struct knft_text {
    char *data;
    size_t used, capacity;
    int failed;
} knft_text;
void knft_text_printf(knft_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void knft_text_hex(knft_text *t, const uint8_t *p, size_t n);

/* What one rule's attributes say, in the canonical form both the kernel's dumps and our own messages reduce to. */
typedef struct knft_rule_view {
    const char *chain;
    uint64_t handle;
    uint64_t tag;
    uint32_t tag_role;
    uint64_t content;
    uint64_t target;
    int stamped;
    uint32_t stamp_genid;
    uint64_t stamp_hash;
} knft_rule_view;

/*
 * Reads a NEWRULE message's attributes (a dump reply, or a message we built): chain, handle, tag, the content
 * digest over the expressions (counter values left out) and any foreign userdata, and the jump target. With
 * text non-NULL, also prints the canonical form. 0, or EINVAL for a malformed message.
 */
int knft_canon_rule(const struct nlmsghdr *nlh, knft_rule_view *view, knft_text *text);

/* ---- encoding a program rule (encode.c) ------------------------------------------------------------------- */

/* Bumped whenever encode.c would encode some program rule differently: tags and stamps written by an older
   encoder then stop matching, and the next sync rewrites those rules. */
#define KNFT_ENCODER_VERSION 1

/* A rule of a program: its records from the first element up to and including the target. */
typedef struct knft_span {
    const uint8_t *bytes;
    size_t length;
} knft_span;

/* Reads one rule's records starting at the reader; fills span and the jump target's name hash. 0 or EINVAL. */
int knft_rule_span(knat_reader *rd, knft_span *span, uint64_t *target);

/* kube-natd's tag of a rule: the program bytes, form, family and role, and this encoder's version. Never 0. */
uint64_t knft_rule_tag(const knft_span *span, knft_form form, int family, int role);

/*
 * Adds the rule's expressions and NFTA_RULE_COMPAT to r, exactly as the iptables-nft release of `form` would
 * for the same command line. 0, or an errno value with a reason in why (at least 128 bytes).
 */
int knft_encode_rule(struct nftnl_rule *r, const knft_span *span, knft_form form, int family, char *why,
                     size_t whylen);

/* The content digest (knft_canon_rule) of a rule as kube-natd would write it (built, serialized, read back). */
int knft_wanted_content(const knft_span *span, knft_form form, int family, uint64_t *content, char *why,
                        size_t whylen);

/* ---- the program index (index.c) -------------------------------------------------------------------------- */

/*
 * What the last program applied to one (family, table) declared, chain by chain: each chain's rule tags and
 * digest (the digest knft_read_owned gives that chain once applied), and the table's digest built from them (a
 * sum over chains, so one chain's change updates it in O(that chain)). Kept between calls so a program that
 * names its base and its changed chains is parsed and hashed only where it changed.
 */
typedef struct knft_index_chain {
    char *name;
    uint64_t name_hash;
    uint64_t *tags;
    uint32_t ntags;
    uint64_t digest;
    int live; /* 0: removed (the slot stays until the next compaction) */
} knft_index_chain;

typedef struct knft_index {
    int family;
    char table[16];
    uint64_t id;          /* the program indexed (0: none) */
    knft_index_chain *chains;
    size_t nchains, cap, live;
    uint32_t *slots;      /* open addressing by name hash: chain index + 1, 0 empty */
    size_t nslots;
    uint64_t sum;         /* sum of knft_mix(name_hash, digest) over live chains */
    uint64_t others;      /* hash of every record outside the declared chains, in order */
    uint64_t model_epoch; /* the model epoch at which the kernel model held exactly this program (0: never) */
} knft_index;

/* The chain digest both read-back and the index use: over the rules' identities in order. */
static inline uint64_t knft_chain_digest_of(const uint64_t *ids, uint32_t n) {
    return knft_hash(0x6F776E6564ULL, ids, (size_t)n * sizeof(uint64_t));
}

struct knft_indexes {
    knft_index **items; /* each allocated on its own: callers hold pointers to several while others are added */
    size_t n;
};

/* The index of (family, table), created empty when missing (NULL: out of memory). */
knft_index *knft_index_of(knft_indexes *set, int family, const char *table);
void knft_indexes_clear(knft_indexes *set);
/*
 * Indexes each program (declared programs, with an id, through set; others parsed whole) and gives each table's
 * digest, its index (NULL when not kept), whether it was indexed from its change, and the chains parsed.
 */
int knft_index_programs(knft_indexes *set, const knft_program *programs, size_t count, knft_form form,
                        uint64_t *digests, knft_index **indexes, int *from_change, unsigned *indexed,
                        knft_result *res);
/* What a stamp records of the programs: their tables' digests, the form and the encoder. */
uint64_t knft_programs_hash(const uint64_t *digests, size_t count, knft_form form);
const knft_index_chain *knft_index_chain_named(const knft_index *x, const char *name, uint64_t name_hash);
/*
 * Makes x the index of program p: from p's changed chains and its head and tail when x indexes p->base (then
 * *incremental = 1), else from all of it. 0, EINVAL (malformed program) or ENOMEM (x is then emptied).
 */
int knft_index_update(knft_index *x, const knft_program *p, knft_form form, int *incremental, unsigned *indexed,
                      knft_result *res);
/* The table digest of an index: its chains' digests and other records, with the table's name and family. */
uint64_t knft_index_digest(const knft_index *x);
/* The same digest for a program not kept (parsed whole, nothing stored). */
int knft_program_digest(const knft_program *p, knft_form form, uint64_t *digest, knft_result *res);
void knft_index_free(knft_index *x);

/* ---- socket and batch (socket.c) -------------------------------------------------------------------------- */

/* Where a message of the batch came from, to name it in an error. */
typedef struct knft_origin {
    uint16_t type;  /* NFT_MSG_* */
    uint8_t family;
    const char *table;
    const char *chain;
    int32_t rule;   /* 1-based index in the wanted chain, 0 when not a rule of a program */
} knft_origin;

typedef struct knft_batch {
    struct nftnl_batch *b;
    uint32_t seq0;    /* seq of BATCH_BEGIN */
    uint32_t next;    /* next seq */
    knft_origin *origins; /* by seq - seq0 - 1 */
    size_t norigins, cap;
    int failed;       /* out of memory while building */
} knft_batch;

struct knft_context {
    struct mnl_socket *nl;
    uint32_t portid;
    uint32_t seq;
    int sndbuf, rcvbuf; /* what the socket buffers are set to */
    knft_model model;
    uint64_t applied;   /* hash of the programs the model is known to hold (0: none) */
    knft_indexes indexes; /* the declared programs last applied, per (family, table) */
    uint8_t *buf;       /* receive buffer */
    size_t buflen;
};

void knft_set_message(knft_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double knft_now(void);

int knft_getgen(knft_context *ctx, uint32_t *genid, knft_result *res);
/* Sends a dump request and calls cb for each reply message until NLMSG_DONE. cb returns 0 or an errno. */
typedef int (*knft_msg_cb)(const struct nlmsghdr *nlh, void *data);
int knft_dump(knft_context *ctx, struct nlmsghdr *request, knft_msg_cb cb, void *data, knft_result *res);

int knft_batch_init(knft_batch *bt, knft_context *ctx);
void knft_batch_free(knft_batch *bt);
/* The header of the next message (write its payload, then knft_batch_commit_msg). */
struct nlmsghdr *knft_batch_msg(knft_batch *bt, uint16_t type, int family, uint16_t flags, const knft_origin *origin);
void knft_batch_commit_msg(knft_batch *bt);
static inline unsigned knft_batch_count(const knft_batch *bt) { return (unsigned)bt->norigins; }
/*
 * Closes the batch (BEGIN carries genid), sizes the socket buffers, sends it in one sendmsg and reads every
 * reply. 0 when the kernel committed it; ERESTART when the generation moved; else the first error, named.
 */
int knft_batch_send(knft_batch *bt, knft_context *ctx, uint32_t genid, knft_result *res);

/* ---- reading the kernel (read.c) -------------------------------------------------------------------------- */

/*
 * Reads the tables (families[i], tables[i]) into the model between two equal generation ids. With `add`, the
 * model is current and only the tables it lacks are read (at its generation id, else everything is read again).
 */
int knft_read_tables(knft_context *ctx, const int *families, const char *const *tables, size_t n, int add,
                     knft_result *res);
/* The stamp on the first rule of the stamp's chain (0, 0 when there is none). */
int knft_read_stamp(knft_context *ctx, const knft_stamp *stamp, uint32_t *genid, uint64_t *hash, knft_result *res);
/* Re-reads one chain's rules (to learn handles the model lacks). */
int knft_read_chain(knft_context *ctx, knft_table *t, knft_chain *c, knft_result *res);

/* ---- the decision (plan.c) --------------------------------------------------------------------------------- */

/* The stamp a batch writes (see knft_stamp), and whether a message of the batch already carries it. */
typedef struct knft_stamping {
    const knft_stamp *where;
    uint32_t genid; /* the generation the batch's commit produces */
    uint64_t hash;  /* of the programs */
    int written;
    /* the stamp chain's first rule in its program, as knft_plan_table parsed it (so knft_plan_stamp need not
       parse that program again); first_known 0 when the program has no such rule */
    int first_known;
    knft_span first_span;
    uint64_t first_tag, first_target;
} knft_stamping;

/* A decided change to the model, applied to it once the batch committed. */
typedef struct knft_plan knft_plan;
knft_plan *knft_plan_new(void);
void knft_plan_free(knft_plan *p);
void knft_plan_apply(knft_plan *p, knft_model *m);

/*
 * Compares one program with its table in the model and appends the difference to the batch, recording the
 * model changes in the plan. May dump single chains whose handles the model lacks. With `incremental`, the model
 * holds the program `index` indexed before its last update, and only the program's changed chains, the chains
 * it removed and its tail are compared (index: the program's declared chains). 0 or an errno value.
 */
int knft_plan_table(knft_context *ctx, knft_table *t, const knft_program *program, knft_form form,
                    const knft_index *index, int incremental, knft_batch *bt, knft_plan *plan,
                    knft_stamping *stamping, knft_table_report *report, knft_result *res);

/* When no message of the batch wrote the stamp's rule: a replacement of that rule (same rule, new stamp), from
   what knft_plan_table recorded of it in `stamping`. */
int knft_plan_stamp(knft_context *ctx, knft_table *t, knft_form form, knft_batch *bt, knft_plan *plan,
                    knft_stamping *stamping, knft_table_report *report, knft_result *res);

/* Test gate: with KNAT_TEST_NFT_GATE_BEFORE_SEND=GATE set, the first attempt creates GATE.ready between the
   decision and the send and waits (at most 60 s) until GATE exists, so a kernel test commits a foreign change in
   between and then opens the gate: the ERESTART retry without a clock. Unset in production; one getenv per batch. */
void knft_test_gate_before_send(int attempt);

/* Test-only fault injection (see knft_test_fault): 1 when this call of the point must fail. */
extern int knft_faults_armed;
int knft_fault_hit(int point);

#endif
