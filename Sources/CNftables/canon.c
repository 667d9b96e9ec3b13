/*
 * Canonical rules: one NEWRULE message (a kernel dump reply, or a message kube-natd built) reduced to what the
 * rule does, independent of attribute order and of what the kernel adds when it echoes (a default bitwise op,
 * counter values). Identity checks (is kube-natd's jump there? is this ensured rule already there?), read-back
 * digests and the tests' byte-level dumps all go through here, so the kernel's view and ours are compared in
 * one form.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nf_tables_compat.h>
#include "internal.h"

void knft_text_printf(knft_text *t, const char *fmt, ...) {
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = t->capacity - t->used;
        int n = vsnprintf(t->data ? t->data + t->used : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            t->used += (size_t)n;
            return;
        }
        size_t cap = t->capacity ? t->capacity * 2 : 4096;
        while (cap - t->used <= (size_t)n) cap *= 2;
        char *p = realloc(t->data, cap);
        if (!p) {
            t->failed = 1;
            return;
        }
        t->data = p;
        t->capacity = cap;
    }
}

void knft_text_hex(knft_text *t, const uint8_t *p, size_t n) {
    static const char digits[] = "0123456789abcdef";
    char chunk[129];
    while (n) {
        size_t k = n > 64 ? 64 : n;
        for (size_t i = 0; i < k; i++) {
            chunk[2 * i] = digits[p[i] >> 4];
            chunk[2 * i + 1] = digits[p[i] & 15];
        }
        chunk[2 * k] = 0;
        knft_text_printf(t, "%s", chunk);
        p += k;
        n -= k;
    }
}

/* The canonical byte stream of a rule, hashed at the end. Rules are small; a stream that outgrows the buffer
   is hashed in pieces. */
typedef struct stream {
    uint8_t buf[4096];
    size_t used;
    uint64_t hash;
} stream;

static void flush(stream *s) {
    if (s->used) s->hash = knft_hash(s->hash, s->buf, s->used);
    s->used = 0;
}

static void put(stream *s, const void *p, size_t n) {
    if (n > sizeof(s->buf)) {
        flush(s);
        s->hash = knft_hash(s->hash, p, n);
        return;
    }
    if (s->used + n > sizeof(s->buf)) flush(s);
    memcpy(s->buf + s->used, p, n);
    s->used += n;
}

static void put_item(stream *s, uint8_t code, const void *p, uint32_t n) {
    put(s, &code, 1);
    put(s, &n, sizeof(n));
    put(s, p, n);
}

/* Attributes of a nested list, by type (flags masked); later duplicates win, as in the kernel's nla_parse. */
#define ATTRS_MAX 16
static void parse_nest(const struct nlattr *nest, const struct nlattr **tb) {
    memset(tb, 0, ATTRS_MAX * sizeof(*tb));
    const struct nlattr *a;
    mnl_attr_for_each_nested(a, nest) {
        uint16_t type = mnl_attr_get_type(a);
        if (type < ATTRS_MAX) tb[type] = a;
    }
}

static uint32_t be32(const struct nlattr *a) {
    return mnl_attr_get_payload_len(a) >= 4 ? ntohl(mnl_attr_get_u32(a)) : 0;
}

/* An nft_data nest: a value (bytes) or a verdict (code, chain). */
static void put_data(stream *s, uint8_t code, const struct nlattr *nest, knft_text *text, const char *label,
                     uint64_t *target) {
    const struct nlattr *tb[ATTRS_MAX];
    parse_nest(nest, tb);
    if (tb[NFTA_DATA_VALUE]) {
        const uint8_t *v = mnl_attr_get_payload(tb[NFTA_DATA_VALUE]);
        uint16_t n = mnl_attr_get_payload_len(tb[NFTA_DATA_VALUE]);
        put_item(s, code, v, n);
        if (text) {
            knft_text_printf(text, " %s=", label);
            knft_text_hex(text, v, n);
        }
    } else if (tb[NFTA_DATA_VERDICT]) {
        const struct nlattr *vt[ATTRS_MAX];
        parse_nest(tb[NFTA_DATA_VERDICT], vt);
        int32_t verdict = vt[NFTA_VERDICT_CODE] ? (int32_t)be32(vt[NFTA_VERDICT_CODE]) : 0;
        const char *chain = vt[NFTA_VERDICT_CHAIN] ? mnl_attr_get_str(vt[NFTA_VERDICT_CHAIN]) : "";
        size_t clen = vt[NFTA_VERDICT_CHAIN] ? strnlen(chain, mnl_attr_get_payload_len(vt[NFTA_VERDICT_CHAIN])) : 0;
        put_item(s, (uint8_t)(code | 0x80), &verdict, sizeof(verdict));
        put_item(s, (uint8_t)(code | 0x40), chain, (uint32_t)clen);
        if (clen && target) *target = knft_hash(0, chain, clen);
        if (text) {
            const char *name = verdict == NF_ACCEPT ? "accept" : verdict == NF_DROP ? "drop"
                             : verdict == NFT_RETURN ? "return" : verdict == NFT_JUMP ? "jump"
                             : verdict == NFT_GOTO ? "goto" : verdict == NFT_CONTINUE ? "continue" : "?";
            knft_text_printf(text, " %s=%s", label, name);
            if (clen) knft_text_printf(text, ":%.*s", (int)clen, chain);
        }
    } else {
        put_item(s, code, "", 0);
        if (text) knft_text_printf(text, " %s=?", label);
    }
}

/* How each attribute of the expressions kube-natd writes is read: u32, nft_data, string or bytes. */
typedef struct attr_schema {
    const char *expr;
    const char *kinds; /* kinds[type]: 'u' u32, 'd' data, 's' string, 'b' bytes, '-' ignored; beyond: bytes */
    const char *const *labels;
} attr_schema;

static const char *const payload_labels[] = {"", "dreg", "base", "offset", "len", "sreg", "csum_type",
                                             "csum_offset", "csum_flags"};
static const char *const meta_labels[] = {"", "dreg", "key", "sreg"};
static const char *const cmp_labels[] = {"", "sreg", "op", "data"};
static const char *const bitwise_labels[] = {"", "sreg", "dreg", "len", "mask", "xor", "op", "data"};
static const char *const imm_labels[] = {"", "dreg", "data"};
static const char *const xt_labels[] = {"", "name", "rev", "info"};

static const attr_schema schemas[] = {
    {"payload", "-uuuuuuuu", payload_labels},
    {"meta", "-uuu", meta_labels},
    {"cmp", "-uud", cmp_labels},
    {"bitwise", "-uuuddud", bitwise_labels},
    {"immediate", "-ud", imm_labels},
    {"match", "-sub", xt_labels},
    {"target", "-sub", xt_labels},
};

/* One expression into the stream (and text). */
static void put_expr(stream *s, const struct nlattr *elem, knft_text *text, uint64_t *target) {
    const struct nlattr *tb[ATTRS_MAX];
    parse_nest(elem, tb);
    const char *name = tb[NFTA_EXPR_NAME] ? mnl_attr_get_str(tb[NFTA_EXPR_NAME]) : "?";
    size_t nlen = tb[NFTA_EXPR_NAME] ? strnlen(name, mnl_attr_get_payload_len(tb[NFTA_EXPR_NAME])) : 1;
    put_item(s, 1, name, (uint32_t)nlen);
    if (text) knft_text_printf(text, "[%.*s", (int)nlen, name);
    /* counter values change with traffic; whether a counter is there is what matters */
    if (nlen == 7 && !memcmp(name, "counter", 7)) {
        if (text) knft_text_printf(text, "]");
        return;
    }
    const attr_schema *schema = NULL;
    for (size_t i = 0; i < sizeof(schemas) / sizeof(schemas[0]); i++)
        if (strlen(schemas[i].expr) == nlen && !memcmp(schemas[i].expr, name, nlen)) schema = &schemas[i];
    const struct nlattr *data = tb[NFTA_EXPR_DATA];
    if (!data) {
        if (text) knft_text_printf(text, "]");
        return;
    }
    if (!schema) {
        /* an expression kube-natd never writes: compared by its raw attributes */
        const uint8_t *p = mnl_attr_get_payload(data);
        uint16_t n = mnl_attr_get_payload_len(data);
        put_item(s, 2, p, n);
        if (text) {
            knft_text_printf(text, " raw=");
            knft_text_hex(text, p, n);
            knft_text_printf(text, "]");
        }
        return;
    }
    const struct nlattr *at[ATTRS_MAX];
    parse_nest(data, at);
    size_t nkinds = strlen(schema->kinds);
    /* The kernel echoes a bitwise expression's op (boolean, 0) even when the message left it out. */
    uint32_t zero = 0;
    int bitwise = !strcmp(schema->expr, "bitwise");
    for (uint16_t type = 1; type < ATTRS_MAX; type++) {
        char kind = type < nkinds ? schema->kinds[type] : 'b';
        const struct nlattr *a = at[type];
        const char *label = type < nkinds ? schema->labels[type] : "attr";
        if (!a) {
            if (bitwise && type == NFTA_BITWISE_OP) {
                put_item(s, (uint8_t)(16 + type), &zero, 4);
                if (text) knft_text_printf(text, " op=0");
            }
            continue;
        }
        switch (kind) {
        case 'u': {
            uint32_t v = be32(a);
            put_item(s, (uint8_t)(16 + type), &v, 4);
            if (text) knft_text_printf(text, " %s=%u", label, v);
            break;
        }
        case 'd':
            put_data(s, (uint8_t)(16 + type), a, text, label, target);
            break;
        case 's': {
            const char *str = mnl_attr_get_str(a);
            size_t n = strnlen(str, mnl_attr_get_payload_len(a));
            put_item(s, (uint8_t)(16 + type), str, (uint32_t)n);
            if (text) knft_text_printf(text, " %s=%.*s", label, (int)n, str);
            break;
        }
        case '-':
            break;
        default: {
            const uint8_t *p = mnl_attr_get_payload(a);
            uint16_t n = mnl_attr_get_payload_len(a);
            put_item(s, (uint8_t)(16 + type), p, n);
            if (text) {
                knft_text_printf(text, " %s=", label);
                knft_text_hex(text, p, n);
            }
        }
        }
    }
    if (text) knft_text_printf(text, "]");
}

int knft_canon_rule(const struct nlmsghdr *nlh, knft_rule_view *view, knft_text *text) {
    memset(view, 0, sizeof(*view));
    const struct nlattr *exprs = NULL, *udata = NULL;
    const struct nlattr *a;
    mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
        switch (mnl_attr_get_type(a)) {
        case NFTA_RULE_CHAIN: view->chain = mnl_attr_get_str(a); break;
        case NFTA_RULE_HANDLE: view->handle = be64toh(mnl_attr_get_u64(a)); break;
        case NFTA_RULE_EXPRESSIONS: exprs = a; break;
        case NFTA_RULE_USERDATA: udata = a; break;
        default: break;
        }
    }
    if (!view->chain) return EINVAL;
    stream s;
    s.used = 0;
    s.hash = 0x6B6E6674; /* any seed; content digests are only compared with each other */
    int first = 1;
    if (exprs) {
        const struct nlattr *e;
        mnl_attr_for_each_nested(e, exprs) {
            if (text && !first) knft_text_printf(text, " ");
            first = 0;
            put_expr(&s, e, text, &view->target);
        }
    }
    if (text) knft_text_printf(text, "\t");
    if (udata) {
        const uint8_t *p = mnl_attr_get_payload(udata);
        uint16_t n = mnl_attr_get_payload_len(udata);
        /* TLVs: u8 type, u8 length, value */
        for (uint16_t i = 0; i + 2 <= n;) {
            uint8_t type = p[i], len = p[i + 1];
            if (i + 2 + len > n) break;
            if (type == KNFT_UDATA_TAG && len == 9) {
                view->tag_role = p[i + 2];
                memcpy(&view->tag, p + i + 3, 8);
                if (text) knft_text_printf(text, "tag ");
            } else if (type == KNFT_UDATA_STAMP && len == 12) {
                view->stamped = 1;
                memcpy(&view->stamp_genid, p + i + 2, 4);
                memcpy(&view->stamp_hash, p + i + 6, 8);
                if (text) knft_text_printf(text, "stamp ");
            } else {
                put_item(&s, 3, p + i, (uint32_t)len + 2);
                if (text) {
                    knft_text_printf(text, "udata%u=", type);
                    knft_text_hex(text, p + i + 2, len);
                    knft_text_printf(text, " ");
                }
            }
            i = (uint16_t)(i + 2 + len);
        }
    }
    flush(&s);
    view->content = s.hash ? s.hash : 1;
    return 0;
}
