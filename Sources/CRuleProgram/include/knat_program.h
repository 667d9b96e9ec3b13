#ifndef KNAT_PROGRAM_H
#define KNAT_PROGRAM_H
/*
 * The flat "table program" Swift encodes from a Ruleset (Sources/Netfilter/RuleEncoding.swift) and the kernel
 * shims replay: the libiptc shim (CNetfilter) into ipt_entry / ip6t_entry, the nf_tables shim into expressions.
 *
 * Record: uint16 kind, uint16 payload length, payload. Integers are native-endian; strings have no NUL.
 * A program is a sequence of table-level operations (KNAT_OP_*); the records of one rule (KNAT_E_* elements in
 * written order, ended by exactly one KNAT_T_* target) follow the operation that owns them.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Table-level operations. */
enum {
    KNAT_OP_STALE_PREFIX = 1,  /* str: existing non-declared chains with this prefix are deleted */
    KNAT_OP_CHAIN = 2,         /* str: declared chain (created, or flushed and refilled when it differs); rules follow */
    KNAT_OP_ENSURE_CHAIN = 3,  /* str: created if missing, never flushed (canaries) */
    KNAT_OP_DELETE_CHAIN = 4,  /* str: flushed and deleted if it exists */
    KNAT_OP_JUMP = 5,          /* str base chain; one rule follows; kept exactly once at the top, in order */
    KNAT_OP_DELETE_RULE = 6,   /* str chain; one rule follows; every identical rule is deleted */
    KNAT_OP_ENSURE_RULE = 7,   /* str chain; one rule follows; the chain is created if missing and the rule added if
                                  no identical rule is in it: right after kube-natd's jumps in a base chain, else
                                  appended. Never flushed, replaced or deleted (kubelet's rules, v1.23 layout). */
    KNAT_OP_DELETE_OWN_JUMPS = 8, /* no payload: every base-chain rule kube-natd itself wrote as one of its jumps
                                     is deleted, identical rules another tool wrote stay (--cleanup). A backend that
                                     cannot tell who wrote a rule deletes none. */
};

/* Rule elements, in written order. */
enum {
    KNAT_E_COMMENT = 16,   /* str */
    KNAT_E_PROTO = 17,     /* u8 protocol number; loads tcp/udp/sctp match */
    KNAT_E_SRC = 18,       /* u8 negated, addr[4|16], mask[4|16] */
    KNAT_E_DST = 19,       /* same */
    KNAT_E_IN_IFACE = 20,  /* u8 negated, name[16], mask[16] */
    KNAT_E_DPORT = 21,     /* u16 port, applies to the preceding proto match */
    KNAT_E_ADDRTYPE = 22,  /* u8 direction (0 source, 1 destination), type LOCAL */
    KNAT_E_CTSTATE = 23,   /* u8 negated, u16 kernel state mask */
    KNAT_E_MARK = 24,      /* u32 value, u32 mask, u8 negated */
    KNAT_E_STATISTIC = 25, /* u32 probability (lround(2^31 * p)) */
    KNAT_E_RECENT = 26,    /* u32 seconds, u8 check_set flags, str name */
    KNAT_E_NFACCT = 27,    /* str */
};

/* Targets; each ends a rule. */
enum {
    KNAT_T_STANDARD = 64,   /* str: "" (no target), ACCEPT, DROP, RETURN, or a user chain to jump to */
    KNAT_T_REJECT = 65,     /* default icmp(6)-port-unreachable */
    KNAT_T_DNAT = 66,       /* addr[4|16], u16 port */
    KNAT_T_MASQUERADE = 67, /* u8 random-fully */
    KNAT_T_MARK = 68,       /* u32 mark, u32 mask (rev 2 --set-xmark) */
};

typedef struct knat_record {
    uint16_t kind;
    uint16_t length;
    const uint8_t *payload;
} knat_record;

typedef struct knat_reader {
    const uint8_t *base;
    size_t length;
    size_t offset;
} knat_reader;

/* Reads the next record; 1 on success, 0 at the end, -1 on a truncated program. */
static inline int knat_next(knat_reader *r, knat_record *out) {
    if (r->offset == r->length) return 0;
    if (r->length - r->offset < 4) return -1;
    memcpy(&out->kind, r->base + r->offset, 2);
    memcpy(&out->length, r->base + r->offset + 2, 2);
    if (r->length - r->offset - 4 < out->length) return -1;
    out->payload = r->base + r->offset + 4;
    r->offset += 4 + (size_t)out->length;
    return 1;
}

/* The kind of the next record, or -1 at the end. */
static inline int knat_peek_kind(const knat_reader *r) {
    uint16_t k;
    if (r->length - r->offset < 4) return -1;
    memcpy(&k, r->base + r->offset, 2);
    return k;
}

/* Copies a record string (after `skip` bytes) into a NUL-terminated buffer; 0 if it does not fit. */
static inline int knat_copy_str(const knat_record *rec, size_t skip, char *out, size_t cap) {
    if (rec->length < skip) return 0;
    size_t n = rec->length - skip;
    if (n + 1 > cap) return 0;
    memcpy(out, rec->payload + skip, n);
    out[n] = 0;
    return 1;
}

static inline uint32_t knat_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t knat_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* FNV-1a 64. */
static inline uint64_t knat_fnv(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = (const uint8_t *)data;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ULL; }
    return h;
}
#define KNAT_FNV_INIT 14695981039346656037ULL

#endif
