/*
 * One program rule as the expressions iptables-nft writes for the same command line (reference nftables.md
 * §a): IP-header fields first (in the release's order), then every match in written order (native payload /
 * meta / cmp / bitwise where the release uses them, nft_compat with the same xt blob elsewhere), a counter,
 * then the verdict or compat target. NFTA_RULE_COMPAT is always set. The xt blobs come from knat_xtinfo.h,
 * shared with the libiptc shim, so both shims write the bytes iptables itself writes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <libmnl/libmnl.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <netinet/in.h>
#include "internal.h"
#include "knat_xtinfo.h"

#define IFNAMSIZ_ 16

int knft_rule_span(knat_reader *rd, knft_span *span, uint64_t *target) {
    span->bytes = rd->base + rd->offset;
    *target = 0;
    knat_record rec;
    for (;;) {
        int n = knat_next(rd, &rec);
        if (n <= 0) return EINVAL;
        if (rec.kind == KNAT_T_STANDARD) {
            /* a user chain, not a verdict */
            int verdict = rec.length == 0 || (rec.length == 6 && !memcmp(rec.payload, "ACCEPT", 6)) ||
                          (rec.length == 4 && !memcmp(rec.payload, "DROP", 4)) ||
                          (rec.length == 6 && !memcmp(rec.payload, "RETURN", 6));
            if (!verdict) *target = knft_hash(0, rec.payload, rec.length);
        }
        if (rec.kind >= KNAT_T_STANDARD) break;
        if (rec.kind < KNAT_E_COMMENT) return EINVAL;
    }
    span->length = (size_t)(rd->base + rd->offset - span->bytes);
    return 0;
}

uint64_t knft_rule_tag(const knft_span *span, knft_form form, int family, int role) {
    uint64_t seed = ((uint64_t)KNFT_ENCODER_VERSION << 32) | ((uint64_t)form << 16) | ((uint64_t)family << 8) |
                    (uint64_t)role;
    return knft_hash(seed, span->bytes, span->length);
}

/* ---- expression builders (the same calls iptables-nft makes, with its register choices) ----------------- */

static int add(struct nftnl_rule *r, struct nftnl_expr *e) {
    if (!e) return ENOMEM;
    nftnl_rule_add_expr(r, e);
    return 0;
}

static struct nftnl_expr *meta(uint32_t key) {
    struct nftnl_expr *e = nftnl_expr_alloc("meta");
    if (!e) return NULL;
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
    return e;
}

static struct nftnl_expr *payload(uint32_t base, uint32_t offset, uint32_t len) {
    struct nftnl_expr *e = nftnl_expr_alloc("payload");
    if (!e) return NULL;
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
    return e;
}

static struct nftnl_expr *cmp(uint32_t op, const void *data, uint32_t len) {
    struct nftnl_expr *e = nftnl_expr_alloc("cmp");
    if (!e) return NULL;
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
    nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
    return e;
}

static struct nftnl_expr *bitwise(const void *mask, uint32_t len) {
    static const uint8_t zero[16] = {0};
    struct nftnl_expr *e = nftnl_expr_alloc("bitwise");
    if (!e) return NULL;
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, zero, len);
    return e;
}

/* A compat match or target: name and revision as iptables loads them, and a zeroed blob of the length
   iptables sends (XT_ALIGN of the struct) for the caller to fill before xt_add hands it to the expression. */
typedef struct xt_expr {
    struct nftnl_expr *e;
    void *blob;
    size_t size;
    int target;
} xt_expr;

static int xt_new(xt_expr *x, knat_xt_kind kind, int family) {
    const knat_xt_desc *d = knat_xt_describe(kind);
    x->size = knat_xt_size(kind, family);
    x->target = d->is_target;
    x->e = nftnl_expr_alloc(d->is_target ? "target" : "match");
    x->blob = calloc(1, x->size);
    if (!x->e || !x->blob) {
        if (x->e) nftnl_expr_free(x->e);
        free(x->blob);
        return ENOMEM;
    }
    nftnl_expr_set(x->e, d->is_target ? NFTNL_EXPR_TG_NAME : NFTNL_EXPR_MT_NAME, d->name, (uint32_t)strlen(d->name));
    nftnl_expr_set_u32(x->e, d->is_target ? NFTNL_EXPR_TG_REV : NFTNL_EXPR_MT_REV, d->revision);
    return 0;
}

static void xt_drop(xt_expr *x) {
    nftnl_expr_free(x->e);
    free(x->blob);
}

/* libnftnl keeps the blob pointer and frees it with the expression. */
static void xt_add(struct nftnl_rule *r, xt_expr *x) {
    nftnl_expr_set(x->e, x->target ? NFTNL_EXPR_TG_INFO : NFTNL_EXPR_MT_INFO, x->blob, (uint32_t)x->size);
    nftnl_rule_add_expr(r, x->e);
}

static struct nftnl_expr *verdict(int code, const char *chain) {
    struct nftnl_expr *e = nftnl_expr_alloc("immediate");
    if (!e) return NULL;
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)code);
    if (chain) nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
    return e;
}

/* `-s`/`-d` as iptables' add_addr(): a prefix on byte boundaries loads only the prefix bytes, any other mask
   loads the whole address and masks it; the compared address is the masked one. */
static int add_addr(struct nftnl_rule *r, uint32_t offset, const uint8_t *addr, const uint8_t *mask, size_t w,
                    int negated) {
    uint8_t data[16];
    int masked = 0;
    size_t i = 0;
    for (; i < w; i++) {
        if (mask[i] != 0xFF) {
            masked = mask[i] != 0;
            break;
        }
    }
    for (size_t j = i + 1; !masked && j < w; j++) masked = mask[j] != 0;
    size_t len = masked ? w : i;
    if (len == 0) return EINVAL;
    for (size_t k = 0; k < w; k++) data[k] = addr[k] & mask[k];
    int rc;
    if ((rc = add(r, payload(NFT_PAYLOAD_NETWORK_HEADER, offset, (uint32_t)len)))) return rc;
    if (masked && (rc = add(r, bitwise(mask, (uint32_t)len)))) return rc;
    return add(r, cmp(negated ? NFT_CMP_NEQ : NFT_CMP_EQ, data, (uint32_t)len));
}

/* What a rule's header fields are, collected from its elements (iptables keeps them in the entry's header,
   wherever they appear on the command line). */
typedef struct header {
    int proto;               /* 0 none */
    const uint8_t *src, *dst; /* record payloads: negated, addr, mask */
    const uint8_t *iface;    /* negated, name[16], mask[16] */
} header;

static int add_iface(struct nftnl_rule *r, const uint8_t *iface, char *why, size_t wl) {
    /* meta iifname, then a compare over the compared bytes: the name and its NUL, or the part before '+' */
    const uint8_t *name = iface + 1, *mask = iface + 1 + IFNAMSIZ_;
    size_t n = 0;
    while (n < IFNAMSIZ_ && mask[n] == 0xFF) n++;
    if (n == 0) {
        snprintf(why, wl, "interface match without a name");
        return EINVAL;
    }
    int rc = add(r, meta(NFT_META_IIFNAME));
    return rc ? rc : add(r, cmp(iface[0] ? NFT_CMP_NEQ : NFT_CMP_EQ, name, (uint32_t)n));
}

static int add_proto(struct nftnl_rule *r, int proto, knft_form form, int family) {
    uint8_t p = (uint8_t)proto;
    /* 1.8.10 loads the IPv4 protocol byte from the header; IPv6, and older releases, use meta l4proto */
    int rc = form == KNFT_FORM_1_8_10 && family == 4 ? add(r, payload(NFT_PAYLOAD_NETWORK_HEADER, 9, 1))
                                                      : add(r, meta(NFT_META_L4PROTO));
    return rc ? rc : add(r, cmp(NFT_CMP_EQ, &p, 1));
}

static int add_addresses(struct nftnl_rule *r, const header *h, int family, char *why, size_t wl) {
    size_t w = family == 6 ? 16 : 4;
    uint32_t soff = family == 6 ? 8 : 12, doff = family == 6 ? 24 : 16;
    int rc = 0;
    if (h->src) rc = add_addr(r, soff, h->src + 1, h->src + 1 + w, w, h->src[0]);
    if (!rc && h->dst) rc = add_addr(r, doff, h->dst + 1, h->dst + 1 + w, w, h->dst[0]);
    if (rc == EINVAL) snprintf(why, wl, "address with an empty mask");
    return rc;
}

/* The header fields in the release's order: -i,-o,-p,-s,-d up to 1.8.9, -s,-d,-i,-o,-p from 1.8.10 on. */
static int add_header(struct nftnl_rule *r, const header *h, knft_form form, int family, char *why, size_t wl) {
    int rc = 0;
    if (form == KNFT_FORM_1_8_10 && (rc = add_addresses(r, h, family, why, wl))) return rc;
    if (h->iface && (rc = add_iface(r, h->iface, why, wl))) return rc;
    if (h->proto && (rc = add_proto(r, h->proto, form, family))) return rc;
    if (form != KNFT_FORM_1_8_10 && (rc = add_addresses(r, h, family, why, wl))) return rc;
    return 0;
}

int knft_encode_rule(struct nftnl_rule *r, const knft_span *span, knft_form form, int family, char *why,
                     size_t wl) {
    size_t w = family == 6 ? 16 : 4;
    header h = {0};
    knat_reader rd = {span->bytes, span->length, 0};
    knat_record rec = {0};
    /* pass 1: header fields; which dport belongs to which protocol match */
    while (knat_next(&rd, &rec) == 1) {
        switch (rec.kind) {
        case KNAT_E_PROTO:
            if (rec.length != 1) goto malformed;
            if (!h.proto) h.proto = rec.payload[0];
            break;
        case KNAT_E_SRC:
        case KNAT_E_DST:
            if (rec.length != 1 + 2 * w) goto malformed;
            /* iptables emits nothing for 0.0.0.0/0 */
            {
                int any = rec.payload[0];
                for (size_t i = 1; i < rec.length && !any; i++) any = rec.payload[i] != 0;
                if (!any) break;
            }
            if (rec.kind == KNAT_E_SRC) h.src = rec.payload;
            else h.dst = rec.payload;
            break;
        case KNAT_E_IN_IFACE:
            if (rec.length != 1 + 2 * IFNAMSIZ_) goto malformed;
            h.iface = rec.payload;
            break;
        default:
            break;
        }
    }
    int rc = add_header(r, &h, form, family, why, wl);
    if (rc) return rc;
    nftnl_rule_set_u32(r, NFTNL_RULE_COMPAT_PROTO, (uint32_t)h.proto);
    nftnl_rule_set_u32(r, NFTNL_RULE_COMPAT_FLAGS, 0);

    /* pass 2: matches in written order, then counter and target */
    rd.offset = 0;
    xt_expr x;
    while (knat_next(&rd, &rec) == 1) {
        const uint8_t *p = rec.payload;
        switch (rec.kind) {
        case KNAT_E_COMMENT:
            if ((rc = xt_new(&x, KNAT_XT_COMMENT, family))) return rc;
            knat_xt_comment(x.blob, p, rec.length);
            xt_add(r, &x);
            break;
        case KNAT_E_PROTO: {
            /* the protocol's match; its --dport (if any) is the next KNAT_E_DPORT before another protocol */
            int dport = -1;
            knat_reader ahead = rd;
            knat_record next;
            while (knat_next(&ahead, &next) == 1 && next.kind != KNAT_E_PROTO && next.kind < KNAT_T_STANDARD)
                if (next.kind == KNAT_E_DPORT && next.length == 2) {
                    dport = knat_u16(next.payload);
                    break;
                }
            uint8_t proto = p[0];
            if (proto == IPPROTO_SCTP) {
                /* always compat (iptables has no native sctp) */
                if ((rc = xt_new(&x, KNAT_XT_SCTP, family))) return rc;
                knat_xt_sctp(x.blob, dport);
                xt_add(r, &x);
            } else if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
                knat_xt_kind kind = proto == IPPROTO_TCP ? KNAT_XT_TCP : KNAT_XT_UDP;
                if (dport >= 0 && form != KNFT_FORM_COMPAT) {
                    /* 1.8.8+: a single --dport is a transport-header load and compare */
                    uint16_t port = htons((uint16_t)dport);
                    if ((rc = add(r, payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)))) return rc;
                    if ((rc = add(r, cmp(NFT_CMP_EQ, &port, 2)))) return rc;
                } else {
                    /* all-default tcp/udp stays compat in every release; 1.8.7 writes ports compat too */
                    if ((rc = xt_new(&x, kind, family))) return rc;
                    if (kind == KNAT_XT_TCP) knat_xt_tcp(x.blob, dport);
                    else knat_xt_udp(x.blob, dport);
                    xt_add(r, &x);
                }
            } else {
                snprintf(why, wl, "unsupported protocol %u", proto);
                return EINVAL;
            }
            break;
        }
        case KNAT_E_SRC:
        case KNAT_E_DST:
        case KNAT_E_IN_IFACE:
        case KNAT_E_DPORT:
            break; /* header fields and protocol options: written above */
        case KNAT_E_ADDRTYPE:
            if (rec.length != 1) goto malformed;
            if ((rc = xt_new(&x, KNAT_XT_ADDRTYPE, family))) return rc;
            knat_xt_addrtype_local(x.blob, p[0] != 0);
            xt_add(r, &x);
            break;
        case KNAT_E_CTSTATE:
            if (rec.length != 3) goto malformed;
            if ((rc = xt_new(&x, KNAT_XT_CONNTRACK, family))) return rc;
            knat_xt_conntrack(x.blob, p[0], knat_u16(p + 1));
            xt_add(r, &x);
            break;
        case KNAT_E_MARK: {
            if (rec.length != 9) goto malformed;
            uint32_t value = knat_u32(p), mask = knat_u32(p + 4);
            if (form == KNFT_FORM_COMPAT) {
                if ((rc = xt_new(&x, KNAT_XT_MARK, family))) return rc;
                knat_xt_mark(x.blob, value, mask, p[8]);
                xt_add(r, &x);
                break;
            }
            /* 1.8.8+: meta mark, masked unless the mask is all ones; host byte order, as iptables stores it */
            if ((rc = add(r, meta(NFT_META_MARK)))) return rc;
            if (mask != 0xFFFFFFFFu && (rc = add(r, bitwise(&mask, 4)))) return rc;
            if ((rc = add(r, cmp(p[8] ? NFT_CMP_NEQ : NFT_CMP_EQ, &value, 4)))) return rc;
            break;
        }
        case KNAT_E_STATISTIC:
            if (rec.length != 4) goto malformed;
            if ((rc = xt_new(&x, KNAT_XT_STATISTIC, family))) return rc;
            knat_xt_statistic_random(x.blob, knat_u32(p));
            xt_add(r, &x);
            break;
        case KNAT_E_RECENT:
            if (rec.length < 6) goto malformed;
            if ((rc = xt_new(&x, KNAT_XT_RECENT, family))) return rc;
            if (!knat_xt_recent(x.blob, knat_u32(p), p[4], p + 5, rec.length - 5u)) {
                xt_drop(&x);
                goto malformed;
            }
            xt_add(r, &x);
            break;
        case KNAT_E_NFACCT:
            if ((rc = xt_new(&x, KNAT_XT_NFACCT, family))) return rc;
            if (!knat_xt_nfacct(x.blob, p, rec.length)) {
                xt_drop(&x);
                goto malformed;
            }
            xt_add(r, &x);
            break;
        default:
            if (rec.kind < KNAT_T_STANDARD) goto malformed;
            /* the counter goes before the verdict, so it counts only packets that matched */
            struct nftnl_expr *counter = nftnl_expr_alloc("counter");
            if (!counter) return ENOMEM;
            nftnl_expr_set_u64(counter, NFTNL_EXPR_CTR_PACKETS, 0);
            nftnl_expr_set_u64(counter, NFTNL_EXPR_CTR_BYTES, 0);
            nftnl_rule_add_expr(r, counter);
            switch (rec.kind) {
            case KNAT_T_STANDARD: {
                char label[KNFT_NAME_MAX];
                if (!knat_copy_str(&rec, 0, label, sizeof(label))) goto malformed;
                if (!label[0]) return 0; /* no -j: the rule only counts */
                if (!strcmp(label, "ACCEPT")) return add(r, verdict(NF_ACCEPT, NULL));
                if (!strcmp(label, "DROP")) return add(r, verdict(NF_DROP, NULL));
                if (!strcmp(label, "RETURN")) return add(r, verdict(NFT_RETURN, NULL));
                return add(r, verdict(NFT_JUMP, label));
            }
            case KNAT_T_REJECT:
                if ((rc = xt_new(&x, KNAT_XT_REJECT, family))) return rc;
                knat_xt_reject(x.blob, family);
                xt_add(r, &x);
                return 0;
            case KNAT_T_DNAT:
                if (rec.length != w + 2) goto malformed;
                if ((rc = xt_new(&x, KNAT_XT_DNAT, family))) return rc;
                knat_xt_dnat(x.blob, family, p, knat_u16(p + w));
                xt_add(r, &x);
                return 0;
            case KNAT_T_MASQUERADE:
                if (rec.length != 1) goto malformed;
                if ((rc = xt_new(&x, KNAT_XT_MASQUERADE, family))) return rc;
                knat_xt_masquerade(x.blob, family, p[0]);
                xt_add(r, &x);
                return 0;
            case KNAT_T_MARK:
                if (rec.length != 8) goto malformed;
                if ((rc = xt_new(&x, KNAT_XT_MARK_TARGET, family))) return rc;
                knat_xt_mark_target(x.blob, knat_u32(p), knat_u32(p + 4));
                xt_add(r, &x);
                return 0;
            default:
                goto malformed;
            }
        }
    }
malformed:
    snprintf(why, wl, "malformed rule record (kind %u, %u bytes)", rec.kind, rec.length);
    return EINVAL;
}

int knft_wanted_content(const knft_span *span, knft_form form, int family, uint64_t *content, char *why,
                        size_t wl) {
    struct nftnl_rule *r = nftnl_rule_alloc();
    if (!r) return ENOMEM;
    int rc = knft_encode_rule(r, span, form, family, why, wl);
    if (!rc) {
        /* serialized as it would be sent, then read back through the same canonical reader as a dump */
        char chain[] = "x";
        nftnl_rule_set_str(r, NFTNL_RULE_TABLE, "x");
        nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
        size_t cap = 65536;
        char *buf = calloc(1, cap);
        if (!buf) rc = ENOMEM;
        else {
            struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_NEWRULE, family == 6 ? NFPROTO_IPV6 : NFPROTO_IPV4,
                                                         0, 0);
            nftnl_rule_nlmsg_build_payload(nlh, r);
            knft_rule_view view;
            rc = knft_canon_rule(nlh, &view, NULL);
            *content = view.content;
            free(buf);
        }
    }
    nftnl_rule_free(r);
    return rc;
}
