/*
 * One IP family's half of the shim. Included by apply4.c and apply6.c, which define:
 *   KNAT_FAM (4|6), ENTRY (struct ipt_entry | struct ip6t_entry), TC(x) (iptc_x | ip6tc_x),
 *   HDR (ip | ipv6), ADDRLEN (4|16), INV_SRC, INV_DST, INV_IN, SET_PROTO. Extension blobs come from
 *   knat_xtinfo.h (the family is passed down), so nothing here calls back into the including file.
 * Everything here is static; the two families share no symbols but the entry points.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <linux/netfilter/x_tables.h>

#define KNAT_ENTRY_CAP 8192 /* one rule; the largest we write is well under 2 KiB */
#define KNAT_MAX_PREFIXES 16
#define KNAT_MAX_JUMPS 64

typedef struct builder {
    uint8_t *buf;
    size_t used;
    struct xt_entry_match *proto_match; /* for --dport */
    uint8_t proto;
    int module_target; /* target is an extension, compared by bytes */
    char label[KNAT_CHAIN_MAX];
} builder;

#define ENTRY_OF(b) ((ENTRY *)(b)->buf)

/* strlcpy for the short extension names (the field was zeroed): snprintf was a visible cost per rule. */
static inline void knat_copy_name(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* Appends an extension's header and room for its blob; the blob itself is filled by the knat_xt_* function of
   knat_xtinfo.h (shared with the nf_tables shim). Returns the blob, or NULL when the entry is full. */
static void *add_extension(builder *b, knat_xt_kind kind) {
    const knat_xt_desc *d = knat_xt_describe(kind);
    size_t hdr = d->is_target ? XT_ALIGN(sizeof(struct xt_entry_target)) : XT_ALIGN(sizeof(struct xt_entry_match));
    size_t size = hdr + knat_xt_size(kind, KNAT_FAM);
    if (b->used + size > KNAT_ENTRY_CAP) return NULL;
    uint8_t *p = b->buf + b->used;
    memset(p, 0, hdr);
    if (d->is_target) {
        struct xt_entry_target *t = (struct xt_entry_target *)p;
        ENTRY_OF(b)->target_offset = (uint16_t)b->used;
        t->u.target_size = (uint16_t)size;
        knat_copy_name(t->u.user.name, sizeof(t->u.user.name), d->name);
        t->u.user.revision = d->revision;
    } else {
        struct xt_entry_match *m = (struct xt_entry_match *)p;
        m->u.match_size = (uint16_t)size;
        knat_copy_name(m->u.user.name, sizeof(m->u.user.name), d->name);
        m->u.user.revision = d->revision;
    }
    b->used += size;
    if (d->is_target) ENTRY_OF(b)->next_offset = (uint16_t)b->used;
    return p + hdr;
}

/* A standard target: a verdict or a jump (the label is resolved by libiptc). */
static void *add_standard_target(builder *b, const char *label) {
    size_t size = XT_ALIGN(sizeof(struct xt_entry_target)) + XT_ALIGN(sizeof(int));
    if (b->used + size > KNAT_ENTRY_CAP) return NULL;
    ENTRY_OF(b)->target_offset = (uint16_t)b->used;
    struct xt_entry_target *t = (struct xt_entry_target *)(b->buf + b->used);
    memset(t, 0, size);
    t->u.target_size = (uint16_t)size;
    knat_copy_name(t->u.user.name, sizeof(t->u.user.name), label);
    b->used += size;
    ENTRY_OF(b)->next_offset = (uint16_t)b->used;
    return t->data;
}

/* Reads rule elements up to and including the target into b. 0, or an errno with result->message. */
static int encode_rule(knat_reader *rd, builder *b, knat_result *res) {
    memset(b->buf, 0, sizeof(ENTRY));
    b->used = sizeof(ENTRY);
    b->proto_match = NULL;
    b->proto = 0;
    b->module_target = 0;
    b->label[0] = 0;
    ENTRY *e = ENTRY_OF(b);
    knat_record rec;
    for (;;) {
        int n = knat_next(rd, &rec);
        if (n <= 0) {
            knat_set_message(res, "program ends inside a rule");
            return EINVAL;
        }
        const uint8_t *p = rec.payload;
        void *data = NULL;
        switch (rec.kind) {
        case KNAT_E_COMMENT:
            if ((data = add_extension(b, KNAT_XT_COMMENT))) knat_xt_comment(data, p, rec.length);
            break;
        case KNAT_E_PROTO: {
            if (rec.length < 1) goto malformed;
            b->proto = p[0];
            SET_PROTO(e, p[0]);
            knat_xt_kind kind;
            if (p[0] == IPPROTO_TCP) kind = KNAT_XT_TCP;
            else if (p[0] == IPPROTO_UDP) kind = KNAT_XT_UDP;
            else if (p[0] == IPPROTO_SCTP) kind = KNAT_XT_SCTP;
            else {
                knat_set_message(res, "unsupported protocol %u", p[0]);
                return EINVAL;
            }
            if (!(data = add_extension(b, kind))) break;
            if (kind == KNAT_XT_TCP) knat_xt_tcp(data, -1);
            else if (kind == KNAT_XT_UDP) knat_xt_udp(data, -1);
            else knat_xt_sctp(data, -1);
            b->proto_match = (struct xt_entry_match *)((uint8_t *)data - XT_ALIGN(sizeof(struct xt_entry_match)));
            break;
        }
        case KNAT_E_SRC:
        case KNAT_E_DST: {
            if (rec.length != 1 + 2 * ADDRLEN) goto malformed;
            int src = rec.kind == KNAT_E_SRC;
            memcpy(src ? (void *)&e->HDR.src : (void *)&e->HDR.dst, p + 1, ADDRLEN);
            memcpy(src ? (void *)&e->HDR.smsk : (void *)&e->HDR.dmsk, p + 1 + ADDRLEN, ADDRLEN);
            if (p[0]) e->HDR.invflags |= src ? INV_SRC : INV_DST;
            data = e;
            break;
        }
        case KNAT_E_IN_IFACE:
            if (rec.length != 1 + 2 * IFNAMSIZ) goto malformed;
            memcpy(e->HDR.iniface, p + 1, IFNAMSIZ);
            memcpy(e->HDR.iniface_mask, p + 1 + IFNAMSIZ, IFNAMSIZ);
            e->HDR.iniface[IFNAMSIZ - 1] = 0;
            if (p[0]) e->HDR.invflags |= INV_IN;
            data = e;
            break;
        case KNAT_E_DPORT: {
            if (rec.length != 2 || !b->proto_match) goto malformed;
            int port = knat_u16(p);
            data = b->proto_match->data;
            if (b->proto == IPPROTO_TCP) knat_xt_tcp(data, port);
            else if (b->proto == IPPROTO_UDP) knat_xt_udp(data, port);
            else knat_xt_sctp(data, port);
            break;
        }
        case KNAT_E_ADDRTYPE:
            if (rec.length != 1) goto malformed;
            if ((data = add_extension(b, KNAT_XT_ADDRTYPE))) knat_xt_addrtype_local(data, p[0] != 0);
            break;
        case KNAT_E_CTSTATE:
            if (rec.length != 3) goto malformed;
            if ((data = add_extension(b, KNAT_XT_CONNTRACK))) knat_xt_conntrack(data, p[0], knat_u16(p + 1));
            break;
        case KNAT_E_MARK:
            if (rec.length != 9) goto malformed;
            if ((data = add_extension(b, KNAT_XT_MARK))) knat_xt_mark(data, knat_u32(p), knat_u32(p + 4), p[8]);
            break;
        case KNAT_E_STATISTIC:
            if (rec.length != 4) goto malformed;
            if ((data = add_extension(b, KNAT_XT_STATISTIC))) knat_xt_statistic_random(data, knat_u32(p));
            break;
        case KNAT_E_RECENT:
            if (rec.length < 6) goto malformed;
            if ((data = add_extension(b, KNAT_XT_RECENT)) &&
                !knat_xt_recent(data, knat_u32(p), p[4], p + 5, rec.length - 5u))
                goto malformed;
            break;
        case KNAT_E_NFACCT:
            if ((data = add_extension(b, KNAT_XT_NFACCT)) && !knat_xt_nfacct(data, p, rec.length)) goto malformed;
            break;
        case KNAT_T_STANDARD:
            if (!knat_copy_str(&rec, 0, b->label, sizeof(b->label))) goto malformed;
            if (!add_standard_target(b, b->label)) goto full;
            return 0;
        case KNAT_T_REJECT:
            if (!(data = add_extension(b, KNAT_XT_REJECT))) goto full;
            knat_xt_reject(data, KNAT_FAM);
            knat_copy_name(b->label, sizeof(b->label), "REJECT");
            b->module_target = 1;
            return 0;
        case KNAT_T_DNAT:
            if (rec.length != ADDRLEN + 2) goto malformed;
            if (!(data = add_extension(b, KNAT_XT_DNAT))) goto full;
            knat_xt_dnat(data, KNAT_FAM, p, knat_u16(p + ADDRLEN));
            knat_copy_name(b->label, sizeof(b->label), "DNAT");
            b->module_target = 1;
            return 0;
        case KNAT_T_MASQUERADE:
            if (rec.length != 1) goto malformed;
            if (!(data = add_extension(b, KNAT_XT_MASQUERADE))) goto full;
            knat_xt_masquerade(data, KNAT_FAM, p[0]);
            knat_copy_name(b->label, sizeof(b->label), "MASQUERADE");
            b->module_target = 1;
            return 0;
        case KNAT_T_MARK:
            if (rec.length != 8) goto malformed;
            if (!(data = add_extension(b, KNAT_XT_MARK_TARGET))) goto full;
            knat_xt_mark_target(data, knat_u32(p), knat_u32(p + 4));
            knat_copy_name(b->label, sizeof(b->label), "MARK");
            b->module_target = 1;
            return 0;
        default:
            goto malformed;
        }
        if (!data) goto full;
    }
malformed:
    knat_set_message(res, "malformed rule record (kind %u, %u bytes)", rec.kind, rec.length);
    return EINVAL;
full:
    knat_set_message(res, "rule larger than %d bytes", KNAT_ENTRY_CAP);
    return E2BIG;
}

/* The names libiptc gives base chains; only these need its (slower) builtin lookup. */
static int is_builtin_name(const char *name) {
    return !strcmp(name, "PREROUTING") || !strcmp(name, "INPUT") || !strcmp(name, "FORWARD") ||
           !strcmp(name, "OUTPUT") || !strcmp(name, "POSTROUTING");
}

static int is_verdict(const char *label) {
    return !label[0] || !strcmp(label, "ACCEPT") || !strcmp(label, "DROP") || !strcmp(label, "RETURN");
}

/* The kernel echoes a match's name with strlen+1 bytes only; the rest of the 29-byte field holds whatever the
   kernel's own copy held (pointer bytes). So matches are compared as name, revision, size, then data. */
static int same_matches(const ENTRY *e, const ENTRY *w) {
    const size_t hdr = XT_ALIGN(sizeof(struct xt_entry_match));
    for (size_t i = sizeof(ENTRY); i < e->target_offset;) {
        const struct xt_entry_match *m = (const void *)((const uint8_t *)e + i);
        const struct xt_entry_match *n = (const void *)((const uint8_t *)w + i);
        if (m->u.match_size != n->u.match_size || m->u.match_size < hdr) return 0;
        if (strncmp(m->u.user.name, n->u.user.name, sizeof(m->u.user.name))) return 0;
        if (m->u.user.revision != n->u.user.revision) return 0;
        if (memcmp(m->data, n->data, m->u.match_size - hdr)) return 0;
        i += m->u.match_size;
    }
    return 1;
}

/* Digest of a rule's matches with the same rule as same_matches. */
static uint64_t digest_matches(uint64_t d, const ENTRY *e) {
    const size_t hdr = XT_ALIGN(sizeof(struct xt_entry_match));
    for (size_t i = sizeof(ENTRY); i < e->target_offset;) {
        const struct xt_entry_match *m = (const void *)((const uint8_t *)e + i);
        if (m->u.match_size < hdr) break;
        d = knat_fnv(d, &m->u.match_size, sizeof(m->u.match_size));
        d = knat_fnv(d, m->u.user.name, strnlen(m->u.user.name, sizeof(m->u.user.name)));
        d = knat_fnv(d, &m->u.user.revision, 1);
        d = knat_fnv(d, m->data, m->u.match_size - hdr);
        i += m->u.match_size;
    }
    return d;
}

/* One rule's contribution to a chain digest: header, matches, target label, extension target bytes. */
static uint64_t digest_entry(uint64_t d, const ENTRY *e, const char *label, int module_target) {
    d = knat_fnv(d, &e->HDR, sizeof(e->HDR));
    d = knat_fnv(d, &e->target_offset, sizeof(e->target_offset));
    d = knat_fnv(d, &e->next_offset, sizeof(e->next_offset));
    d = digest_matches(d, e);
    d = knat_fnv(d, label, strlen(label) + 1);
    if (module_target) {
        const struct xt_entry_target *t = (const void *)((const uint8_t *)e + e->target_offset);
        d = knat_fnv(d, &t->u.target_size, sizeof(t->u.target_size));
        d = knat_fnv(d, &t->u.user.revision, 1);
        d = knat_fnv(d, t->data, t->u.target_size - XT_ALIGN(sizeof(struct xt_entry_target)));
    }
    return d;
}

/* The entry's bytes equal the rule in b: header, matches, and an extension target's data (not counters; a
   verdict or jump's label is compared by the caller, who knows how to resolve it). */
static int same_entry(const ENTRY *e, const builder *b) {
    const ENTRY *w = (const ENTRY *)b->buf;
    if (e->target_offset != w->target_offset || e->next_offset != w->next_offset) return 0;
    if (memcmp(&e->HDR, &w->HDR, sizeof(e->HDR))) return 0;
    if (!same_matches(e, w)) return 0;
    if (b->module_target) {
        const struct xt_entry_target *t = (const void *)((const uint8_t *)e + e->target_offset);
        const struct xt_entry_target *u = (const void *)(b->buf + w->target_offset);
        size_t hdr = XT_ALIGN(sizeof(struct xt_entry_target));
        if (t->u.target_size != u->u.target_size) return 0;
        if (t->u.user.revision != u->u.user.revision) return 0;
        if (memcmp(t->data, u->data, t->u.target_size - hdr)) return 0;
    }
    return 1;
}

/* Same rule as the one in b (header, matches, target; not counters)? */
static int same_rule(const ENTRY *e, const builder *b, struct xtc_handle *h) {
    if (!same_entry(e, b)) return 0;
    const char *target = TC(get_target)(e, h);
    return target && !strcmp(target, b->label);
}

typedef struct jump_want {
    const char *base; /* points into names below */
    char base_name[KNAT_CHAIN_MAX];
    builder rule;
} jump_want;

/* Puts wanted[0..n) at the top of base, exactly once, in order; drops our stale copies and jumps into
   chains about to be deleted. Foreign rules keep their relative order. */
static int ensure_jumps(struct xtc_handle *h, const char *base, jump_want *wanted, size_t n,
                        const knat_names *stale, const char *table, knat_result *res) {
    if (!TC(is_chain)(base, h)) {
        knat_set_message(res, "%s: base chain %s does not exist", table, base);
        return ENOENT;
    }
    unsigned doomed[1024];
    size_t ndoomed = 0;
    int in_place = 1;
    unsigned index = 0;
    for (const ENTRY *e = TC(first_rule)(base, h); e; e = TC(next_rule)(e, h), index++) {
        int ours = 0;
        for (size_t j = 0; j < n && !ours; j++) ours = same_rule(e, &wanted[j].rule, h);
        if (!ours) {
            const char *t = TC(get_target)(e, h);
            ours = t && knat_names_contains(stale, t);
        }
        if (index < n) {
            if (!same_rule(e, &wanted[index].rule, h)) in_place = 0;
        } else if (ours) {
            in_place = 0;
        }
        if (ours) {
            if (ndoomed == sizeof(doomed) / sizeof(doomed[0])) {
                knat_set_message(res, "%s: %s holds more than %zu kube-natd rules", table, base, ndoomed);
                return E2BIG;
            }
            doomed[ndoomed++] = index;
        }
    }
    if (index < n) in_place = 0;
    if (in_place) return 0;
    while (ndoomed > 0) {
        unsigned i = doomed[--ndoomed];
        if (!TC(delete_num_entry)(base, i, h)) {
            int err = errno;
            knat_set_message(res, "%s: %s: deleting rule %u: %s", table, base, i + 1, TC(strerror)(err));
            return err ? err : EIO;
        }
        res->rules_deleted++;
    }
    for (size_t j = 0; j < n; j++) {
        if (!TC(insert_entry)(base, (const ENTRY *)wanted[j].rule.buf, (unsigned)j, h)) {
            int err = errno;
            knat_set_message(res, "%s: %s: inserting jump %zu (-j %s): %s", table, base, j + 1,
                             wanted[j].rule.label, TC(strerror)(err));
            return err ? err : EIO;
        }
        res->jumps_inserted++;
    }
    return 0;
}

static int rule_target_ok(struct xtc_handle *h, const builder *b, const knat_names *declared, const char *table,
                          const char *chain, unsigned index, knat_result *res) {
    /* Declared chains were all created in pass 1; only other labels need libiptc's slower lookup. */
    if (b->module_target || is_verdict(b->label) || knat_names_contains(declared, b->label)) return 1;
    if (TC(is_chain)(b->label, h)) return 1;
    knat_set_message(res, "%s: chain %s rule %u: jump to missing chain %s", table, chain, index, b->label);
    return 0;
}

/* Does the kernel chain already hold exactly the rules that follow in the program (header, matches, target;
   counters aside)? Reads a copy of the reader, so the caller's position does not move. 1 yes, 0 no, -errno. */
static int chain_matches(struct xtc_handle *h, const ENTRY *e, knat_reader rd, builder *b, knat_result *res) {
    while (knat_peek_kind(&rd) >= KNAT_E_COMMENT) {
        int rc = encode_rule(&rd, b, res);
        if (rc) return -rc;
        if (!e || !same_rule(e, b, h)) return 0;
        e = TC(next_rule)(e, h);
    }
    return e == NULL;
}

/* Skips the rule that follows a JUMP/DELETE_RULE record or the rules of a chain. */
static int skip_rules(knat_reader *rd) {
    knat_record rec;
    while (knat_peek_kind(rd) >= KNAT_E_COMMENT)
        if (knat_next(rd, &rec) != 1) return -1;
    return 0;
}

#define FAIL(code) do { rc = (code); goto done; } while (0)
#define FAIL_IPTC(fmt, ...) do { int err_ = errno; \
        knat_set_message(res, fmt ": %s", __VA_ARGS__, TC(strerror)(err_)); \
        rc = err_ ? err_ : EIO; goto done; } while (0)

static int apply_impl(const char *table, const uint8_t *prog, size_t len, knat_result *res) {
    int rc = 0;
    knat_names declared = {0}, stale = {0};
    const char *prefixes[KNAT_MAX_PREFIXES];
    size_t prefix_len[KNAT_MAX_PREFIXES], nprefixes = 0;
    char name[KNAT_CHAIN_MAX];
    jump_want *jumps = NULL;
    size_t njumps = 0;
    uint8_t *kept = NULL; /* per KNAT_OP_CHAIN, in program order: 1 when the kernel already holds it */
    size_t nchains = 0, chain_index = 0;
    builder b = {0};
    knat_record rec;
    knat_reader rd;

    double started = knat_now();
    struct xtc_handle *h = TC(init)(table);
    if (!h) {
        int err = errno;
        knat_set_message(res, "%s: iptc_init: %s", table, TC(strerror)(err));
        return err ? err : EIO;
    }
    res->init_seconds = knat_now() - started;
    b.buf = malloc(KNAT_ENTRY_CAP);
    if (!b.buf) FAIL(ENOMEM);

    /* Pass 1: chains. Create every declared chain first so that jumps between them resolve. */
    rd = (knat_reader){prog, len, 0};
    int more;
    while ((more = knat_next(&rd, &rec)) == 1) {
        switch (rec.kind) {
        case KNAT_OP_STALE_PREFIX:
            if (nprefixes == KNAT_MAX_PREFIXES) FAIL(E2BIG);
            prefixes[nprefixes] = (const char *)rec.payload;
            prefix_len[nprefixes++] = rec.length;
            break;
        case KNAT_OP_CHAIN:
        case KNAT_OP_ENSURE_CHAIN:
            if (!knat_copy_str(&rec, 0, name, sizeof(name)) || strlen(name) > 28) {
                knat_set_message(res, "%s: chain name longer than 28 characters", table);
                FAIL(ENAMETOOLONG);
            }
            if (!knat_names_add(&declared, name)) FAIL(ENOMEM);
            int keep = 0;
            /* One libiptc lookup per chain (each is a bsearch plus a strcmp walk; there are ~47k chains at 10k
               Services): first_rule tells a missing chain (ENOENT) from an empty one. */
            errno = 0;
            const ENTRY *first = TC(first_rule)(name, h);
            int exists = first != NULL || errno != ENOENT;
            if (!exists) {
                if (!TC(create_chain)(name, h)) FAIL_IPTC("%s: creating chain %s", table, name);
                res->chains_created++;
            } else if (rec.kind == KNAT_OP_CHAIN) {
                if (is_builtin_name(name) && TC(builtin)(name, h)) {
                    knat_set_message(res, "%s: refusing to flush base chain %s", table, name);
                    FAIL(EPERM);
                }
                /* A chain that already holds exactly its rules is left alone: no flush, no refill. */
                int same = chain_matches(h, first, rd, &b, res);
                if (same < 0) {
                    char why[sizeof(res->message)];
                    memcpy(why, res->message, sizeof(why));
                    knat_set_message(res, "%s: chain %s: %.900s", table, name, why);
                    FAIL(-same);
                }
                if (same) {
                    keep = 1;
                    res->chains_unchanged++;
                } else {
                    if (!TC(flush_entries)(name, h)) FAIL_IPTC("%s: flushing chain %s", table, name);
                    res->chains_flushed++;
                }
            }
            if (rec.kind == KNAT_OP_CHAIN) {
                if (nchains % 4096 == 0) {
                    uint8_t *p = realloc(kept, nchains + 4096);
                    if (!p) FAIL(ENOMEM);
                    kept = p;
                }
                kept[nchains++] = (uint8_t)keep;
            }
            if (skip_rules(&rd)) FAIL(EINVAL);
            break;
        case KNAT_OP_JUMP: {
            if (njumps % 8 == 0) {
                jump_want *p = realloc(jumps, (njumps + 8) * sizeof(*jumps));
                if (!p) FAIL(ENOMEM);
                jumps = p;
            }
            jump_want *j = &jumps[njumps];
            memset(j, 0, sizeof(*j));
            if (!knat_copy_str(&rec, 0, j->base_name, sizeof(j->base_name))) FAIL(ENAMETOOLONG);
            j->rule.buf = malloc(KNAT_ENTRY_CAP);
            if (!j->rule.buf) FAIL(ENOMEM);
            njumps++;
            if ((rc = encode_rule(&rd, &j->rule, res))) goto done;
            break;
        }
        case KNAT_OP_DELETE_CHAIN:
        case KNAT_OP_DELETE_RULE:
            if (skip_rules(&rd)) FAIL(EINVAL);
            break;
        default:
            knat_set_message(res, "%s: unknown program record %u", table, rec.kind);
            FAIL(EINVAL);
        }
    }
    if (more < 0) FAIL(EINVAL);
    knat_names_sort(&declared);

    /* Stale chains: listed deletions, and service chains the program no longer declares. */
    rd = (knat_reader){prog, len, 0};
    while (knat_next(&rd, &rec) == 1) {
        if (rec.kind != KNAT_OP_DELETE_CHAIN) continue;
        if (!knat_copy_str(&rec, 0, name, sizeof(name))) continue;
        if (TC(is_chain)(name, h) && !TC(builtin)(name, h) && !knat_names_contains(&declared, name))
            if (!knat_names_add(&stale, name)) FAIL(ENOMEM);
    }
    if (nprefixes) {
        /* Cheapest test first: at 10k Services there are ~40k chains and libiptc lookups are strcmp walks. */
        for (const char *c = TC(first_chain)(h); c; c = TC(next_chain)(h)) {
            for (size_t i = 0; i < nprefixes; i++) {
                if (strncmp(c, prefixes[i], prefix_len[i]) == 0) {
                    if (knat_names_contains(&declared, c) || TC(builtin)(c, h)) break;
                    if (!knat_names_add(&stale, c)) FAIL(ENOMEM);
                    break;
                }
            }
        }
    }
    knat_names_sort(&stale);
    for (size_t i = 0; i < stale.count; i++)
        if (!TC(flush_entries)(stale.names[i], h)) FAIL_IPTC("%s: flushing stale chain %s", table, stale.names[i]);

    /* Pass 2: rules of the declared chains, in order. */
    rd = (knat_reader){prog, len, 0};
    while (knat_next(&rd, &rec) == 1) {
        if (rec.kind == KNAT_OP_CHAIN) {
            if (kept[chain_index++]) {
                if (skip_rules(&rd)) FAIL(EINVAL);
                continue;
            }
            knat_copy_str(&rec, 0, name, sizeof(name));
            unsigned index = 0;
            while (knat_peek_kind(&rd) >= KNAT_E_COMMENT) {
                index++;
                if ((rc = encode_rule(&rd, &b, res))) {
                    char why[sizeof(res->message)];
                    memcpy(why, res->message, sizeof(why));
                    knat_set_message(res, "%s: chain %s rule %u: %.900s", table, name, index, why);
                    goto done;
                }
                if (!rule_target_ok(h, &b, &declared, table, name, index, res)) FAIL(ENOENT);
                if (!TC(append_entry)(name, (const ENTRY *)b.buf, h))
                    FAIL_IPTC("%s: chain %s rule %u (-j %s)", table, name, index, b.label);
                res->rules_appended++;
            }
        } else if (rec.kind == KNAT_OP_DELETE_RULE) {
            if (!knat_copy_str(&rec, 0, name, sizeof(name))) FAIL(ENAMETOOLONG);
            if ((rc = encode_rule(&rd, &b, res))) goto done;
            if (!TC(is_chain)(name, h)) continue;
            unsigned index = 0, found = 0;
            for (const ENTRY *e = TC(first_rule)(name, h); e;) {
                if (same_rule(e, &b, h)) {
                    if (!TC(delete_num_entry)(name, index, h))
                        FAIL_IPTC("%s: %s: deleting rule %u", table, name, index + 1);
                    res->rules_deleted++;
                    found++;
                    /* the cache changed under the iterator: restart from the same index */
                    e = TC(first_rule)(name, h);
                    for (unsigned k = 0; e && k < index; k++) e = TC(next_rule)(e, h);
                    continue;
                }
                e = TC(next_rule)(e, h);
                index++;
            }
            (void)found;
        } else if (rec.kind == KNAT_OP_JUMP) {
            skip_rules(&rd);
        }
    }

    /* Jumps from base chains, grouped per base chain in first-appearance order. */
    for (size_t i = 0; i < njumps; i++) {
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++) seen = !strcmp(jumps[k].base_name, jumps[i].base_name);
        if (seen) continue;
        jump_want group[KNAT_MAX_JUMPS];
        size_t n = 0;
        for (size_t k = i; k < njumps && n < KNAT_MAX_JUMPS; k++)
            if (!strcmp(jumps[k].base_name, jumps[i].base_name)) group[n++] = jumps[k];
        for (size_t k = 0; k < n; k++)
            if (!rule_target_ok(h, &group[k].rule, &declared, table, group[k].base_name, (unsigned)k + 1, res))
                FAIL(ENOENT);
        if ((rc = ensure_jumps(h, jumps[i].base_name, group, n, &stale, table, res))) goto done;
    }

    for (size_t i = 0; i < stale.count; i++) {
        if (TC(delete_chain)(stale.names[i], h)) {
            res->chains_deleted++;
        } else {
            /* Still referenced by a rule kube-natd does not own: leave it, say so. */
            int err = errno;
            res->warnings++;
            knat_set_message(res, "%s: stale chain %s kept: %s", table, stale.names[i], TC(strerror)(err));
        }
    }

    double committing = knat_now();
    res->build_seconds = committing - started;
    if (!res->chains_created && !res->chains_flushed && !res->chains_deleted && !res->rules_appended &&
        !res->jumps_inserted && !res->rules_deleted && !stale.count) {
        /* The kernel already holds exactly this table's wanted state: a commit would rewrite it unchanged. */
        res->committed = 0;
        goto done;
    }
    knat_test_pause_before_commit(res->attempts);
    committing = knat_now();
    int committed = TC(commit)(h);
    res->commit_seconds = knat_now() - committing;
    if (!committed) {
        int err = errno;
        if (err == EAGAIN) FAIL(EAGAIN);
        knat_set_message(res, "%s: commit: %s", table, TC(strerror)(err));
        FAIL(err ? err : EIO);
    }
    res->committed = 1;
done:
    if (rc == ENOMEM && !res->message[0]) knat_set_message(res, "%s: out of memory", table);
    if (rc == EINVAL && !res->message[0]) knat_set_message(res, "%s: malformed program", table);
    if (rc == E2BIG && !res->message[0]) knat_set_message(res, "%s: program too large", table);
    if (rc == ENAMETOOLONG && !res->message[0]) knat_set_message(res, "%s: name too long", table);
    for (size_t i = 0; i < njumps; i++) free(jumps[i].rule.buf);
    free(jumps);
    free(kept);
    free(b.buf);
    knat_names_free(&declared);
    knat_names_free(&stale);
    TC(free)(h);
    return rc;
}

/* One table's chain lines through libiptc (the fallback for layouts the snapshot does not index). */
static long list_libiptc(const char *table, knat_text *out, knat_result *res) {
    struct xtc_handle *h = TC(init)(table);
    if (!h) {
        int err = errno;
        knat_set_message(res, "%s: iptc_init: %s", table, TC(strerror)(err));
        res->error = err;
        return -(long)(err ? err : EIO);
    }
    for (const char *c = TC(first_chain)(h); c; c = TC(next_chain)(h)) {
        uint64_t digest = KNAT_FNV_INIT;
        unsigned rules = 0;
        for (const ENTRY *e = TC(first_rule)(c, h); e; e = TC(next_rule)(e, h)) {
            rules++;
            const struct xt_entry_target *t = (const void *)((const uint8_t *)e + e->target_offset);
            /* an extension target has a name in the entry; a verdict or jump does not (its offset is irrelevant) */
            digest = digest_entry(digest, e, TC(get_target)(e, h), t->u.user.name[0] != 0);
        }
        int builtin = is_builtin_name(c) && TC(builtin)(c, h);
        knat_text_line(out, "%s\t%d\t%u\t%016llx\n", c, builtin, rules, (unsigned long long)digest);
    }
    TC(free)(h);
    return (long)out->used;
}

/* The digests list_impl would report for the program's declared chains once applied; no kernel access. */
static long digest_program_impl(const uint8_t *prog, size_t len, knat_text *out, knat_result *res) {
    builder b = {0};
    b.buf = malloc(KNAT_ENTRY_CAP);
    if (!b.buf) {
        knat_set_message(res, "out of memory");
        return -ENOMEM;
    }
    knat_reader rd = {prog, len, 0};
    knat_record rec;
    char name[KNAT_CHAIN_MAX];
    long rc = 0;
    int more;
    while ((more = knat_next(&rd, &rec)) == 1) {
        int chain = rec.kind == KNAT_OP_CHAIN;
        if (rec.kind == KNAT_OP_JUMP || rec.kind == KNAT_OP_DELETE_RULE) {
            if ((rc = encode_rule(&rd, &b, res))) break;
            continue;
        }
        if (!chain) {
            if (skip_rules(&rd)) { rc = EINVAL; break; }
            continue;
        }
        knat_copy_str(&rec, 0, name, sizeof(name));
        uint64_t digest = KNAT_FNV_INIT;
        unsigned rules = 0;
        while (knat_peek_kind(&rd) >= KNAT_E_COMMENT) {
            if ((rc = encode_rule(&rd, &b, res))) break;
            rules++;
            digest = digest_entry(digest, (const ENTRY *)b.buf, b.label, b.module_target);
        }
        if (rc) break;
        knat_text_line(out, "%s\t0\t%u\t%016llx\n", name, rules, (unsigned long long)digest);
    }
    free(b.buf);
    if (more < 0 && !rc) rc = EINVAL;
    if (rc) {
        res->error = (int)rc;
        if (!res->message[0]) knat_set_message(res, "malformed program");
        return -rc;
    }
    return (long)out->used;
}
