/*
 * A table in canonical text, for tests and diagnostics: every chain (base chains with hook, priority, type and
 * policy) and every rule with all its expressions and xt blobs in hex, handles and counters left out. Two
 * namespaces loaded by different writers compare equal exactly when their kernels hold the same rules.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/rule.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include "internal.h"

typedef struct line {
    char *chain;  /* into the chain names */
    long index;   /* -1 for the chain's own line, else the rule's position */
    size_t start, length; /* into the text */
} line;

typedef struct dumping {
    const char *table;
    knft_text text;
    line *lines;
    size_t n, cap;
    char **names;
    size_t nnames, capnames;
    const char *last;
    long index;
    int failed;
} dumping;

/* Rules come chain by chain: only the last name is looked up (a repeated copy would only cost memory). */
static char *intern(dumping *d, const char *name) {
    if (d->nnames && !strcmp(d->names[d->nnames - 1], name)) return d->names[d->nnames - 1];
    if (d->nnames == d->capnames) {
        size_t cap = d->capnames ? d->capnames * 2 : 64;
        char **p = realloc(d->names, cap * sizeof(*p));
        if (!p) return NULL;
        d->names = p;
        d->capnames = cap;
    }
    char *copy = strdup(name);
    if (copy) d->names[d->nnames++] = copy;
    return copy;
}

static int add_line(dumping *d, const char *chain, long index, size_t start) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        line *p = realloc(d->lines, cap * sizeof(*p));
        if (!p) return ENOMEM;
        d->lines = p;
        d->cap = cap;
    }
    char *name = intern(d, chain);
    if (!name) return ENOMEM;
    d->lines[d->n++] = (line){name, index, start, d->text.used - start};
    return 0;
}

static int on_chain(const struct nlmsghdr *nlh, void *data) {
    dumping *d = data;
    const char *table = NULL, *name = NULL, *type = "";
    uint32_t hook = 0, policy = 0;
    int32_t prio = 0;
    int base = 0;
    const struct nlattr *a;
    mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
        switch (mnl_attr_get_type(a)) {
        case NFTA_CHAIN_TABLE: table = mnl_attr_get_str(a); break;
        case NFTA_CHAIN_NAME: name = mnl_attr_get_str(a); break;
        case NFTA_CHAIN_POLICY: policy = ntohl(mnl_attr_get_u32(a)); break;
        case NFTA_CHAIN_TYPE: type = mnl_attr_get_str(a); break;
        case NFTA_CHAIN_HOOK: {
            base = 1;
            const struct nlattr *h;
            mnl_attr_for_each_nested(h, a) {
                if (mnl_attr_get_type(h) == NFTA_HOOK_HOOKNUM) hook = ntohl(mnl_attr_get_u32(h));
                if (mnl_attr_get_type(h) == NFTA_HOOK_PRIORITY) prio = (int32_t)ntohl(mnl_attr_get_u32(h));
            }
            break;
        }
        default: break;
        }
    }
    if (!table || !name || strcmp(table, d->table)) return 0;
    size_t start = d->text.used;
    if (base) knft_text_printf(&d->text, "%s\tbase hook=%u prio=%d type=%s policy=%u\n", name, hook, prio, type, policy);
    else knft_text_printf(&d->text, "%s\tuser\n", name);
    return add_line(d, name, -1, start);
}

static int on_rule(const struct nlmsghdr *nlh, void *data) {
    dumping *d = data;
    knft_rule_view v;
    size_t start = d->text.used;
    knft_text_printf(&d->text, "%s\t", "");
    /* the chain name is known only after parsing; print the rule, then prefix it through the line record */
    if (knft_canon_rule(nlh, &v, &d->text)) return 0;
    knft_text_printf(&d->text, "\n");
    if (!d->last || strcmp(d->last, v.chain)) {
        d->index = 0;
        d->last = intern(d, v.chain);
        if (!d->last) return ENOMEM;
    }
    return add_line(d, v.chain, d->index++, start);
}

static int by_chain(const void *x, const void *y) {
    const line *a = x, *b = y;
    int c = strcmp(a->chain, b->chain);
    if (c) return c;
    return a->index < b->index ? -1 : a->index > b->index;
}

long knft_dump_table(knft_context *ctx, int family, const char *table, char **out, knft_result *res) {
    memset(res, 0, sizeof(*res));
    *out = NULL;
    dumping d = {.table = table};
    char buf[1024] = {0};
    uint16_t proto = family == 6 ? NFPROTO_IPV6 : NFPROTO_IPV4;
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, proto, NLM_F_DUMP, 0);
    int rc = knft_dump(ctx, nlh, on_chain, &d, res);
    if (!rc) {
        nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETRULE, proto, NLM_F_DUMP, 0);
        struct nftnl_rule *r = nftnl_rule_alloc();
        if (!r) rc = ENOMEM;
        else {
            nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table);
            nftnl_rule_nlmsg_build_payload(nlh, r);
            nftnl_rule_free(r);
            rc = knft_dump(ctx, nlh, on_rule, &d, res);
        }
    }
    if (!rc && d.text.failed) rc = ENOMEM;
    knft_text sorted = {0};
    if (!rc) {
        qsort(d.lines, d.n, sizeof(line), by_chain);
        for (size_t i = 0; i < d.n; i++) {
            const line *l = &d.lines[i];
            if (l->index >= 0) knft_text_printf(&sorted, "%s\t#%ld", l->chain, l->index + 1);
            knft_text_printf(&sorted, "%.*s", (int)l->length, d.text.data + l->start);
        }
        knft_text_printf(&sorted, "%s", "");
        if (sorted.failed) rc = ENOMEM;
    }
    for (size_t i = 0; i < d.nnames; i++) free(d.names[i]);
    free(d.names);
    free(d.lines);
    free(d.text.data);
    if (rc) {
        free(sorted.data);
        res->error = rc;
        if (!res->message[0]) knft_set_message(res, "dumping %s: %s", table, strerror(rc));
        return -rc;
    }
    *out = sorted.data;
    return (long)sorted.used;
}
