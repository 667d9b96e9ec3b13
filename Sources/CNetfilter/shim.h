/*
 * Inside the libiptc shim. Data flows one way:
 *   snapshot.c reads a table (raw entries, or libiptc's cache when the raw layout is not libiptc's),
 *   plan.c shows it to the one planner (knat_plan.h, CRuleProgram), which decides every change,
 *   execute.c replays the planner's steps through libiptc and commits.
 * family.c holds what differs between IPv4 and IPv6; rule.c encodes, compares and digests one rule.
 */
#ifndef KNAT_SHIM_H
#define KNAT_SHIM_H
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libiptc/xtcshared.h>
#include "cnetfilter.h"
#include "knat_xtinfo.h"
#include "knat_plan.h"

#define KNAT_CHAIN_MAX 32   /* xt_chainlabel */
#define KNAT_ENTRY_CAP 8192 /* one encoded rule; kube-proxy's largest is well under 2 KiB */

/* libiptc for one family. libip4tc and libip6tc export the same functions under two prefixes: the family-neutral
   ones come from their own ops table (iptc_ops / ip6tc_ops), the ones typed by entry through thin wrappers. */
typedef struct knat_iptc {
    const struct xtc_ops *ops;
    int (*delete_chain)(const char *chain, struct xtc_handle *h);
    int (*delete_num_entry)(const char *chain, unsigned index, struct xtc_handle *h);
    int (*append_entry)(const char *chain, const void *entry, struct xtc_handle *h);
    int (*insert_entry)(const char *chain, const void *entry, unsigned index, struct xtc_handle *h);
    const void *(*first_rule)(const char *chain, struct xtc_handle *h);
    const void *(*next_rule)(const void *entry, struct xtc_handle *h);
    const char *(*get_target)(const void *entry, struct xtc_handle *h);
} knat_iptc;

/* What differs between struct ipt_entry and struct ip6t_entry, their sockopts and libraries. Offsets are into
   the entry; the entry starts with its ipt_ip / ip6t_ip6 header (ip_size bytes, compared as bytes). */
typedef struct knat_family {
    int family; /* 4 or 6 */
    int af, level, so_get_info, so_get_entries;
    uint16_t entry_size, ip_size, addr_len;
    uint16_t src, smsk, dst, dmsk, iniface, iniface_mask, proto, flags, invflags, target_offset, next_offset;
    uint8_t inv_src, inv_dst, inv_in;
    uint8_t proto_flag; /* ip6tables also flags that -p was given (IP6T_F_PROTO) */
    knat_iptc iptc;
} knat_family;

const knat_family *knat_family_of(int family); /* NULL unless 4 or 6 */

static inline uint16_t knat_u16_field(const uint8_t *entry, uint16_t at) {
    uint16_t v;
    memcpy(&v, entry + at, 2);
    return v;
}
#define KNAT_TARGET_OFFSET(f, e) knat_u16_field((e), (f)->target_offset)
#define KNAT_NEXT_OFFSET(f, e) knat_u16_field((e), (f)->next_offset)

/* Messages: every failure returns its errno and says where it happened. */
static inline int knat_fail(knat_result *r, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline int knat_fail(knat_result *r, int err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof(r->message), fmt, ap);
    va_end(ap);
    return err;
}
/* Room for one more item in a growable array (doubling); 0 or ENOMEM. */
static inline int knat_grow(void **items, size_t *cap, size_t count, size_t size) {
    if (count < *cap) return 0;
    size_t n = *cap ? *cap * 2 : 256;
    void *p = realloc(*items, n * size);
    if (!p) return ENOMEM;
    *items = p;
    *cap = n;
    return 0;
}
double knat_now(void);
/* Takes the xtables lock (LOCK_EX): knat_lock_path(), /run/xtables.lock unless XTABLES_LOCKFILE names another
   file, as in iptables. The fd, or -errno; waited seconds in *waited. */
const char *knat_lock_path(void);
int knat_lock(int timeout_ms, double *waited);
void knat_unlock(int fd);
void knat_test_gate(const char *variable, int attempt); /* see lock.c */

/* One rule encoded as the family's entry, exactly as iptables would hand it to libiptc. */
typedef struct knat_rule_buf {
    uint8_t *entry; /* KNAT_ENTRY_CAP bytes */
    size_t used;
    size_t proto_match; /* offset of the tcp/udp/sctp match data, for a following --dport (0: none yet) */
    uint8_t proto;
    uint8_t module;     /* the target is an extension (compared by its bytes), not a verdict or a jump */
    char label[KNAT_CHAIN_MAX]; /* the target as libiptc's get_target names it */
} knat_rule_buf;

/* Reads the rule elements that follow, up to and including the target. 0 or an errno, with the reason. */
int knat_rule_encode(const knat_family *f, knat_reader *rd, knat_rule_buf *b, knat_result *res);
/* The entry (labelled as libiptc would) is the rule in b: header, matches, target; counters aside. */
int knat_rule_same(const knat_family *f, const uint8_t *entry, const char *label, const knat_rule_buf *b);
/* FNV-1a of the same bytes knat_rule_same compares. module: the target is an extension. */
uint64_t knat_rule_digest(const knat_family *f, uint64_t d, const uint8_t *entry, const char *label, int module);
int knat_entry_module(const knat_family *f, const uint8_t *entry);
/* Prefixes the reason in res->message with the rule's place; returns rc. */
int knat_rule_error(knat_result *res, int rc, const char *table, const char *chain, unsigned index);
/* Skips the rule records that follow (a chain's rules, or an operation's one rule). 0, or EINVAL. */
int knat_skip_rules(knat_reader *rd);
/* A reader just past the operation record at offset `at` (which the plan validated), its string in name. */
knat_reader knat_open_record(const uint8_t *prog, size_t len, uint32_t at, char name[KNAT_CHAIN_MAX]);

/* A table as read once: chains in table order, each owning a run of rules. */
typedef struct knat_chain {
    const char *name;
    uint32_t first, count; /* rules[first, first + count) */
    uint32_t offset;       /* raw read: offset of the first rule (or of the foot), where jumps to the chain land */
    uint8_t builtin;
} knat_chain;

typedef struct knat_rule {
    const uint8_t *entry;
    const char *label; /* libiptc's get_target: a verdict, "" (fall through), a chain, or the extension's name */
} knat_rule;

struct knat_snapshot {
    const knat_family *f;
    char table[32];
    knat_chain *chains;
    size_t nchains, chain_cap;
    knat_rule *rules;
    size_t nrules, rule_cap;
    uint32_t *slots; /* chain names hashed: chain index + 1, 0 empty */
    size_t nslots;
    uint32_t size, num_entries, valid_hooks, hook_entry[5], underflow[5]; /* IPT_SO_GET_INFO at the read */
    void *blob; /* raw read: the ipt_get_entries mapping the rules point into */
    size_t blob_length;
    struct xtc_handle *handle; /* read through libiptc: its cache, which the rules point into */
};

/* Reads the table: its raw entries, or through libiptc when that layout is not one libiptc writes (or when
   via_libiptc, or KNAT_TEST_READ_VIA_LIBIPTC=1 in the environment). */
int knat_read(const knat_family *f, const char *table, int via_libiptc, knat_snapshot *s, knat_result *res);
/* Raw read only: 0, EBADMSG for a layout libiptc would not write (s then holds no chains), or an errno. */
int knat_read_raw(const knat_family *f, const char *table, knat_snapshot *s, knat_result *res);
/* The kernel's table still has the snapshot's size, entry count and hooks (a same-size replacement is not seen). */
int knat_snapshot_current(const knat_snapshot *s);
const knat_chain *knat_find_chain(const knat_snapshot *s, const char *name);
void knat_snapshot_release(knat_snapshot *s); /* what it holds, not the struct */
int knat_get_info(const knat_family *f, const char *table, knat_snapshot *s, knat_result *res);

/* The decision is the one planner's (knat_plan.h, in CRuleProgram): plan.c only shows it the table as read,
   rules compared as entries. 0 or an errno, with the reason in res. */
int knat_plan_make(const knat_snapshot *s, const uint8_t *prog, size_t len, knat_plan *p, knat_result *res);

/* Replays the plan into h (iptc_init of the table s was read from, or s's own handle) and commits. attempt: the
   read..commit round (the test gate holds the first). EAGAIN when the table changed under us. */
int knat_execute(const knat_snapshot *s, struct xtc_handle *h, const knat_plan *p, const uint8_t *prog,
                 size_t len, int attempt, knat_result *res);

#endif
