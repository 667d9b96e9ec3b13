/*
 * How many rules a family's iptables-nft tables (filter, nat, mangle, raw, security) hold, up to a limit: what host-mode detection needs (kube-proxy's
 * wrapper counts the rules iptables-nft-save prints). Chain by chain, stopping once the limit is reached, so a
 * large ruleset costs a chain listing and a few small dumps instead of a full save.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/rule.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include "internal.h"

typedef struct chain_ref {
    char table[64];
    char chain[KNFT_NAME_MAX];
} chain_ref;

typedef struct chain_list {
    chain_ref *items;
    size_t count, capacity;
} chain_list;

static int on_chain(const struct nlmsghdr *nlh, void *data) {
    chain_list *l = data;
    const char *table = NULL, *name = NULL;
    const struct nlattr *a;
    mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
        if (mnl_attr_get_type(a) == NFTA_CHAIN_TABLE) table = mnl_attr_get_str(a);
        if (mnl_attr_get_type(a) == NFTA_CHAIN_NAME) name = mnl_attr_get_str(a);
    }
    if (!table || !name) return 0;
    /* Only iptables' tables: what iptables-nft-save prints (an nft-native table of another tool is not counted). */
    static const char *const iptables_tables[] = {"filter", "nat", "mangle", "raw", "security"};
    int known = 0;
    for (size_t i = 0; i < 5; i++) known |= !strcmp(table, iptables_tables[i]);
    if (!known) return 0;
    if (l->count == l->capacity) {
        size_t cap = l->capacity ? l->capacity * 2 : 256;
        chain_ref *p = realloc(l->items, cap * sizeof(*p));
        if (!p) return ENOMEM;
        l->items = p;
        l->capacity = cap;
    }
    snprintf(l->items[l->count].table, sizeof(l->items[0].table), "%s", table);
    snprintf(l->items[l->count].chain, sizeof(l->items[0].chain), "%s", name);
    l->count++;
    return 0;
}

static int on_rule(const struct nlmsghdr *nlh, void *data) {
    (void)nlh;
    (*(unsigned *)data)++;
    return 0;
}

int knft_count_rules(knft_context *ctx, int family, unsigned limit, unsigned *count, knft_result *res) {
    uint16_t proto = family == 6 ? NFPROTO_IPV6 : NFPROTO_IPV4;
    char buf[1024] = {0};
    chain_list chains = {0};
    *count = 0;
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETCHAIN, proto, NLM_F_DUMP, 0);
    int rc = knft_dump(ctx, nlh, on_chain, &chains, res);
    for (size_t i = 0; !rc && i < chains.count && (!limit || *count < limit); i++) {
        memset(buf, 0, sizeof(buf));
        nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETRULE, proto, NLM_F_DUMP, 0);
        struct nftnl_rule *r = nftnl_rule_alloc();
        if (!r) {
            rc = ENOMEM;
            break;
        }
        nftnl_rule_set_str(r, NFTNL_RULE_TABLE, chains.items[i].table);
        nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chains.items[i].chain);
        nftnl_rule_nlmsg_build_payload(nlh, r);
        nftnl_rule_free(r);
        rc = knft_dump(ctx, nlh, on_rule, count, res);
    }
    free(chains.items);
    if (rc == EINTR) rc = 0; /* the ruleset changed meanwhile: the count is an estimate anyway */
    if (rc && !res->message[0]) knft_set_message(res, "counting rules: %s", strerror(rc));
    res->error = rc;
    return rc;
}
