/*
 * Reading the kernel into the model: which tables exist, their chains (base chains with their hooks), and every
 * rule of the tables kube-natd writes, reduced by canon.c to handle, tag, content digest and jump target.
 * A read is consistent when the generation id is the same before and after it, as iptables-nft checks.
 */
#include <arpa/inet.h>
#include <endian.h>
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

#define READ_ATTEMPTS 8

typedef struct reading {
    knft_model *model;
    int family;
    knft_table *table; /* for rule dumps */
    knft_chain *last;  /* dumps come chain by chain */
    int failed;
} reading;

static int nfproto(int family) { return family == 6 ? NFPROTO_IPV6 : NFPROTO_IPV4; }

static int on_table(const struct nlmsghdr *nlh, void *data) {
    reading *rd = data;
    const struct nlattr *a;
    mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
        if (mnl_attr_get_type(a) != NFTA_TABLE_NAME) continue;
        knft_table *t = knft_model_table(rd->model, rd->family, mnl_attr_get_str(a), 0);
        if (t && !t->loaded) t->exists = 1;
    }
    return 0;
}

static int on_chain(const struct nlmsghdr *nlh, void *data) {
    reading *rd = data;
    const char *table = NULL, *name = NULL, *type = NULL;
    const struct nlattr *hook = NULL;
    uint32_t policy = NF_ACCEPT;
    const struct nlattr *a;
    mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
        switch (mnl_attr_get_type(a)) {
        case NFTA_CHAIN_TABLE: table = mnl_attr_get_str(a); break;
        case NFTA_CHAIN_NAME: name = mnl_attr_get_str(a); break;
        case NFTA_CHAIN_HOOK: hook = a; break;
        case NFTA_CHAIN_POLICY: policy = ntohl(mnl_attr_get_u32(a)); break;
        case NFTA_CHAIN_TYPE: type = mnl_attr_get_str(a); break;
        default: break;
        }
    }
    if (!table || !name) return 0;
    knft_table *t = knft_model_table(rd->model, rd->family, table, 0);
    if (!t || t->loaded) return 0;
    knft_chain *c = knft_table_add_chain(t, name, hook != NULL);
    if (!c) return ENOMEM;
    if (hook) {
        const struct nlattr *h;
        mnl_attr_for_each_nested(h, hook) {
            if (mnl_attr_get_type(h) == NFTA_HOOK_HOOKNUM) c->hook = ntohl(mnl_attr_get_u32(h));
            if (mnl_attr_get_type(h) == NFTA_HOOK_PRIORITY) c->prio = (int32_t)ntohl(mnl_attr_get_u32(h));
        }
        c->policy = policy;
        snprintf(c->type, sizeof(c->type), "%s", type ? type : "");
    }
    return 0;
}

static int on_rule(const struct nlmsghdr *nlh, void *data) {
    reading *rd = data;
    knft_rule_view v;
    if (knft_canon_rule(nlh, &v, NULL)) return 0;
    knft_chain *c = rd->last;
    if (!c || strcmp(c->name, v.chain)) {
        c = knft_table_chain(rd->table, v.chain);
        if (!c) return 0; /* created after the chain dump: the generation check catches it */
        rd->last = c;
    }
    knft_rule r = {.handle = v.handle, .content = v.content, .target = v.target};
    if (v.tag) {
        r.tag = v.tag;
        r.flags = KNFT_R_TAGGED | (v.tag_role == KNFT_ROLE_JUMP ? KNFT_R_JUMP : 0);
    }
    return knft_chain_push(c, &r) ? 0 : ENOMEM;
}

static int dump_rules(knft_context *ctx, knft_table *t, const char *chain, knft_result *res) {
    char buf[1024] = {0};
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETRULE, (uint16_t)nfproto(t->family), NLM_F_DUMP, 0);
    struct nftnl_rule *r = nftnl_rule_alloc();
    if (!r) return ENOMEM;
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, t->name);
    if (chain) nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
    nftnl_rule_nlmsg_build_payload(nlh, r);
    nftnl_rule_free(r);
    reading rd = {.model = &ctx->model, .family = t->family, .table = t};
    return knft_dump(ctx, nlh, on_rule, &rd, res);
}

/* Reads every table of the model not yet loaded. */
static int read_once(knft_context *ctx, knft_result *res) {
    knft_model *m = &ctx->model;
    int families[2] = {0, 0};
    for (size_t i = 0; i < m->ntables; i++) {
        knft_table *t = &m->tables[i];
        if (t->loaded) continue;
        if (t->family == 4) families[0] = 4;
        else families[1] = 6;
    }
    int rc;
    for (int f = 0; f < 2; f++) {
        if (!families[f]) continue;
        char buf[256] = {0};
        reading rd = {.model = m, .family = families[f]};
        struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, (uint16_t)nfproto(families[f]),
                                                     NLM_F_DUMP, 0);
        if ((rc = knft_dump(ctx, nlh, on_table, &rd, res))) return rc;
        nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, (uint16_t)nfproto(families[f]), NLM_F_DUMP, 0);
        if ((rc = knft_dump(ctx, nlh, on_chain, &rd, res))) return rc;
    }
    /* Chain by chain: the kernel resumes a whole-table rule dump by counting again from the table's first rule
       for every 32 KiB message, which is quadratic in the table size; a dump of one named chain finds
       the chain by hash. */
    for (size_t i = 0; i < m->ntables; i++) {
        knft_table *t = &m->tables[i];
        if (t->loaded || !t->exists) continue;
        for (size_t k = 0; k < t->nchains; k++)
            if ((rc = dump_rules(ctx, t, t->chains[k].name, res))) return rc;
    }
    for (size_t i = 0; i < m->ntables; i++) m->tables[i].loaded = 1;
    return 0;
}

int knft_read_tables(knft_context *ctx, const int *families, const char *const *tables, size_t n, int add,
                     knft_result *res) {
    uint32_t current = ctx->model.genid;
    for (int attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
        if (!add || attempt > 0) {
            knft_model_clear(&ctx->model);
            ctx->applied = 0;
        }
        for (size_t i = 0; i < n; i++)
            if (!knft_model_table(&ctx->model, families[i], tables[i], 1)) return ENOMEM;
        uint32_t before, after;
        int rc = knft_getgen(ctx, &before, res);
        if (!rc) rc = read_once(ctx, res);
        if (rc == EINTR) continue; /* a dump was interrupted by a commit */
        if (!rc) rc = knft_getgen(ctx, &after, res);
        if (rc) {
            knft_model_clear(&ctx->model);
            ctx->applied = 0;
            return rc;
        }
        /* an addition is only valid at the generation the rest of the model was read or written at */
        if (before == after && (!add || attempt > 0 || before == current)) {
            ctx->model.genid = before;
            ctx->model.valid = 1;
            res->error = 0;
            res->message[0] = 0;
            return 0;
        }
    }
    knft_model_clear(&ctx->model);
    ctx->applied = 0;
    res->error = EAGAIN;
    knft_set_message(res, "the ruleset kept changing while it was read (%d reads)", READ_ATTEMPTS);
    return EAGAIN;
}

int knft_read_chain(knft_context *ctx, knft_table *t, knft_chain *c, knft_result *res) {
    knft_chain_clear(c);
    int rc = dump_rules(ctx, t, c->name, res);
    return rc == EINTR ? ERESTART : rc;
}

typedef struct stamp_reading {
    int seen;
    knft_rule_view first;
} stamp_reading;

static int on_stamp_rule(const struct nlmsghdr *nlh, void *data) {
    stamp_reading *sr = data;
    if (sr->seen) return 0;
    knft_rule_view v;
    if (knft_canon_rule(nlh, &v, NULL)) return 0;
    sr->seen = 1;
    sr->first = v;
    return 0;
}

int knft_read_stamp(knft_context *ctx, const knft_stamp *stamp, uint32_t *genid, uint64_t *hash, knft_result *res) {
    char buf[1024] = {0};
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETRULE, (uint16_t)nfproto(stamp->family), NLM_F_DUMP, 0);
    struct nftnl_rule *r = nftnl_rule_alloc();
    if (!r) return ENOMEM;
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, stamp->table);
    nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, stamp->chain);
    nftnl_rule_nlmsg_build_payload(nlh, r);
    nftnl_rule_free(r);
    stamp_reading sr = {0};
    int rc = knft_dump(ctx, nlh, on_stamp_rule, &sr, res);
    if (rc == ENOENT) rc = 0; /* no such table or chain yet */
    if (rc) return rc;
    *genid = sr.seen && sr.first.stamped ? sr.first.stamp_genid : 0;
    *hash = sr.seen && sr.first.stamped ? sr.first.stamp_hash : 0;
    res->error = 0;
    res->message[0] = 0;
    return 0;
}
