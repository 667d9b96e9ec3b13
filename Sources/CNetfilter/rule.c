/* One rule: program records -> the family's entry bytes (as iptables hands them to libiptc), and the comparison
   and digest of an entry against them. The extension blobs come from knat_xtinfo.h (shared with nf_tables). */
#include "shim.h"
#include <netinet/in.h>
#include <net/if.h>
#include <linux/netfilter/x_tables.h>

/* Names here are short NUL-terminated constants or labels: strlen is enough (and cheaper per rule). */
static inline void copy_name(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* Appends an extension (or, with no descriptor, the standard target named label) and room for its blob; returns
   the blob, NULL when the entry is full. Matches and targets share the header layout. */
static inline void *add_extension(const knat_family *f, knat_rule_buf *b, const knat_xt_desc *d,
                                  const char *label, size_t blob) {
    int target = d ? d->is_target : 1;
    size_t size = XT_ALIGN(sizeof(struct xt_entry_match)) + blob;
    if (b->used + size > KNAT_ENTRY_CAP) return NULL;
    struct xt_entry_match *m = (void *)(b->entry + b->used);
    /* the header; an extension's fill function zeroes its blob, a verdict (and its padding) is zeroed here */
    memset(m, 0, d ? XT_ALIGN(sizeof(*m)) : size);
    m->u.user.match_size = (uint16_t)size;
    copy_name(m->u.user.name, sizeof(m->u.user.name), d ? d->name : label);
    m->u.user.revision = d ? d->revision : 0;
    if (target) memcpy(b->entry + f->target_offset, &(uint16_t){(uint16_t)b->used}, 2);
    b->used += size;
    if (target) memcpy(b->entry + f->next_offset, &(uint16_t){(uint16_t)b->used}, 2);
    return m->data;
}

static inline void *add_match(const knat_family *f, knat_rule_buf *b, knat_xt_kind kind) {
    return add_extension(f, b, knat_xt_describe(kind), NULL, knat_xt_size(kind, f->family));
}

/* A target ends the rule: its label is what libiptc's get_target will say. kind KNAT_XT_COUNT: a verdict or a
   jump, which libiptc resolves (and clears the name of) when the entry is added. */
static int add_target(const knat_family *f, knat_rule_buf *b, knat_xt_kind kind, const char *label, void **data) {
    int standard = kind == KNAT_XT_COUNT;
    *data = standard ? add_extension(f, b, NULL, label, XT_ALIGN(sizeof(int))) : add_match(f, b, kind);
    copy_name(b->label, sizeof(b->label), label);
    b->module = !standard;
    return *data != NULL;
}

int knat_rule_encode(const knat_family *f, knat_reader *rd, knat_rule_buf *b, knat_result *res) {
    memset(b->entry, 0, f->entry_size);
    b->used = f->entry_size;
    b->proto_match = 0;
    b->proto = b->module = 0;
    b->label[0] = 0;
    uint8_t *e = b->entry;
    knat_record rec;
    for (;;) {
        if (knat_next(rd, &rec) != 1) return knat_fail(res, EINVAL, "program ends inside a rule");
        const uint8_t *p = rec.payload;
        void *data = e;
        switch (rec.kind) {
        case KNAT_E_COMMENT:
            if ((data = add_match(f, b, KNAT_XT_COMMENT))) knat_xt_comment(data, p, rec.length);
            break;
        case KNAT_E_PROTO: {
            if (rec.length < 1) goto malformed;
            knat_xt_kind kind = p[0] == IPPROTO_TCP ? KNAT_XT_TCP : p[0] == IPPROTO_UDP ? KNAT_XT_UDP
                              : p[0] == IPPROTO_SCTP ? KNAT_XT_SCTP : KNAT_XT_COUNT;
            if (kind == KNAT_XT_COUNT) return knat_fail(res, EINVAL, "unsupported protocol %u", p[0]);
            b->proto = p[0];
            memcpy(e + f->proto, &(uint16_t){p[0]}, 2);
            e[f->flags] |= f->proto_flag;
            if (!(data = add_match(f, b, kind))) break;
            b->proto_match = (size_t)((uint8_t *)data - e);
            if (kind == KNAT_XT_TCP) knat_xt_tcp(data, -1);
            else if (kind == KNAT_XT_UDP) knat_xt_udp(data, -1);
            else knat_xt_sctp(data, -1);
            break;
        }
        case KNAT_E_SRC:
        case KNAT_E_DST: {
            if (rec.length != 1 + 2 * f->addr_len) goto malformed;
            int src = rec.kind == KNAT_E_SRC;
            memcpy(e + (src ? f->src : f->dst), p + 1, f->addr_len);
            memcpy(e + (src ? f->smsk : f->dmsk), p + 1 + f->addr_len, f->addr_len);
            if (p[0]) e[f->invflags] |= src ? f->inv_src : f->inv_dst;
            break;
        }
        case KNAT_E_IN_IFACE:
            if (rec.length != 1 + 2 * IFNAMSIZ) goto malformed;
            memcpy(e + f->iniface, p + 1, IFNAMSIZ - 1);
            memcpy(e + f->iniface_mask, p + 1 + IFNAMSIZ, IFNAMSIZ);
            if (p[0]) e[f->invflags] |= f->inv_in;
            break;
        case KNAT_E_DPORT:
            if (rec.length != 2 || !b->proto_match) goto malformed;
            data = e + b->proto_match;
            if (b->proto == IPPROTO_TCP) knat_xt_tcp(data, knat_u16(p));
            else if (b->proto == IPPROTO_UDP) knat_xt_udp(data, knat_u16(p));
            else knat_xt_sctp(data, knat_u16(p));
            break;
        case KNAT_E_ADDRTYPE:
            if (rec.length != 1) goto malformed;
            if ((data = add_match(f, b, KNAT_XT_ADDRTYPE))) knat_xt_addrtype_local(data, p[0] != 0);
            break;
        case KNAT_E_CTSTATE:
            if (rec.length != 3) goto malformed;
            if ((data = add_match(f, b, KNAT_XT_CONNTRACK))) knat_xt_conntrack(data, p[0], knat_u16(p + 1));
            break;
        case KNAT_E_MARK:
            if (rec.length != 9) goto malformed;
            if ((data = add_match(f, b, KNAT_XT_MARK))) knat_xt_mark(data, knat_u32(p), knat_u32(p + 4), p[8]);
            break;
        case KNAT_E_STATISTIC:
            if (rec.length != 4) goto malformed;
            if ((data = add_match(f, b, KNAT_XT_STATISTIC))) knat_xt_statistic_random(data, knat_u32(p));
            break;
        case KNAT_E_RECENT:
            if (rec.length < 6) goto malformed;
            if ((data = add_match(f, b, KNAT_XT_RECENT)) &&
                !knat_xt_recent(data, knat_u32(p), p[4], p + 5, rec.length - 5u))
                goto malformed;
            break;
        case KNAT_E_NFACCT:
            if ((data = add_match(f, b, KNAT_XT_NFACCT)) && !knat_xt_nfacct(data, p, rec.length)) goto malformed;
            break;
        case KNAT_T_STANDARD: {
            char label[KNAT_CHAIN_MAX];
            if (!knat_copy_str(&rec, 0, label, sizeof(label))) goto malformed;
            if (!add_target(f, b, KNAT_XT_COUNT, label, &data)) goto full;
            return 0;
        }
        case KNAT_T_REJECT:
            if (!add_target(f, b, KNAT_XT_REJECT, "REJECT", &data)) goto full;
            knat_xt_reject(data, f->family);
            return 0;
        case KNAT_T_DNAT:
            if (rec.length != f->addr_len + 2) goto malformed;
            if (!add_target(f, b, KNAT_XT_DNAT, "DNAT", &data)) goto full;
            knat_xt_dnat(data, f->family, p, knat_u16(p + f->addr_len));
            return 0;
        case KNAT_T_MASQUERADE:
            if (rec.length != 1) goto malformed;
            if (!add_target(f, b, KNAT_XT_MASQUERADE, "MASQUERADE", &data)) goto full;
            knat_xt_masquerade(data, f->family, p[0]);
            return 0;
        case KNAT_T_MARK:
            if (rec.length != 8) goto malformed;
            if (!add_target(f, b, KNAT_XT_MARK_TARGET, "MARK", &data)) goto full;
            knat_xt_mark_target(data, knat_u32(p), knat_u32(p + 4));
            return 0;
        default:
            goto malformed;
        }
        if (!data) goto full;
    }
malformed:
    return knat_fail(res, EINVAL, "malformed rule record (kind %u, %u bytes)", rec.kind, rec.length);
full:
    return knat_fail(res, E2BIG, "rule larger than %d bytes", KNAT_ENTRY_CAP);
}

int knat_entry_module(const knat_family *f, const uint8_t *entry) {
    const struct xt_entry_target *t = (const void *)(entry + KNAT_TARGET_OFFSET(f, entry));
    return t->u.user.name[0] != 0; /* a verdict or jump has no name in the kernel or libiptc's cache */
}

/* The kernel echoes a match's name with strlen+1 bytes only; the rest of the 29-byte field holds whatever the
   kernel's own copy held. So matches are compared (and digested) as name, revision, size, then data. */
static int same_matches(const knat_family *f, const uint8_t *e, const uint8_t *w) {
    const size_t hdr = XT_ALIGN(sizeof(struct xt_entry_match));
    for (size_t i = f->entry_size; i < KNAT_TARGET_OFFSET(f, e);) {
        const struct xt_entry_match *m = (const void *)(e + i), *n = (const void *)(w + i);
        if (m->u.match_size != n->u.match_size || m->u.match_size < hdr) return 0;
        if (strncmp(m->u.user.name, n->u.user.name, sizeof(m->u.user.name))) return 0;
        if (m->u.user.revision != n->u.user.revision || memcmp(m->data, n->data, m->u.match_size - hdr)) return 0;
        i += m->u.match_size;
    }
    return 1;
}

static uint64_t digest_matches(const knat_family *f, uint64_t d, const uint8_t *e) {
    const size_t hdr = XT_ALIGN(sizeof(struct xt_entry_match));
    for (size_t i = f->entry_size; i < KNAT_TARGET_OFFSET(f, e);) {
        const struct xt_entry_match *m = (const void *)(e + i);
        if (m->u.match_size < hdr) break;
        d = knat_fnv(d, &m->u.match_size, sizeof(m->u.match_size));
        d = knat_fnv(d, m->u.user.name, strnlen(m->u.user.name, sizeof(m->u.user.name)));
        d = knat_fnv(d, &m->u.user.revision, 1);
        d = knat_fnv(d, m->data, m->u.match_size - hdr);
        i += m->u.match_size;
    }
    return d;
}

int knat_rule_same(const knat_family *f, const uint8_t *e, const char *label, const knat_rule_buf *b) {
    const uint8_t *w = b->entry;
    if (KNAT_TARGET_OFFSET(f, e) != KNAT_TARGET_OFFSET(f, w) || KNAT_NEXT_OFFSET(f, e) != KNAT_NEXT_OFFSET(f, w))
        return 0;
    if (memcmp(e, w, f->ip_size) || !same_matches(f, e, w)) return 0;
    if (b->module) {
        const struct xt_entry_target *t = (const void *)(e + KNAT_TARGET_OFFSET(f, e));
        const struct xt_entry_target *u = (const void *)(w + KNAT_TARGET_OFFSET(f, w));
        if (t->u.target_size != u->u.target_size || t->u.user.revision != u->u.user.revision ||
            memcmp(t->data, u->data, t->u.target_size - XT_ALIGN(sizeof(struct xt_entry_target))))
            return 0;
    }
    return label && !strcmp(label, b->label);
}

uint64_t knat_rule_digest(const knat_family *f, uint64_t d, const uint8_t *e, const char *label, int module) {
    uint16_t target = KNAT_TARGET_OFFSET(f, e), next = KNAT_NEXT_OFFSET(f, e);
    d = knat_fnv(d, e, f->ip_size);
    d = knat_fnv(d, &target, 2);
    d = knat_fnv(d, &next, 2);
    d = digest_matches(f, d, e);
    d = knat_fnv(d, label, strlen(label) + 1);
    if (module) {
        const struct xt_entry_target *t = (const void *)(e + target);
        d = knat_fnv(d, &t->u.target_size, sizeof(t->u.target_size));
        d = knat_fnv(d, &t->u.user.revision, 1);
        d = knat_fnv(d, t->data, t->u.target_size - XT_ALIGN(sizeof(struct xt_entry_target)));
    }
    return d;
}

int knat_rule_error(knat_result *res, int rc, const char *table, const char *chain, unsigned index) {
    char why[sizeof(res->message)];
    memcpy(why, res->message, sizeof(why));
    return knat_fail(res, rc, "%s: chain %s rule %u: %.900s", table, chain, index, why);
}

int knat_skip_rules(knat_reader *rd) {
    knat_record rec;
    while (knat_peek_kind(rd) >= KNAT_E_COMMENT)
        if (knat_next(rd, &rec) != 1) return EINVAL;
    return 0;
}

knat_reader knat_open_record(const uint8_t *prog, size_t len, uint32_t at, char name[KNAT_CHAIN_MAX]) {
    knat_reader rd = {prog, len, at};
    knat_record rec;
    name[0] = 0;
    if (knat_next(&rd, &rec) == 1) knat_copy_str(&rec, 0, name, KNAT_CHAIN_MAX);
    return rd;
}
