/*
 * The messages of a batch, as iptables-nft builds them: NEWTABLE, NEWCHAIN (user chains as `-N`, base chains
 * with iptables-nft's type, hook, priority and policy ACCEPT), NEWRULE (encode.c's expressions, kube-natd's
 * tag and stamp in private userdata), DELRULE, DELCHAIN. Each names its origin for error reports.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include "plan.h"

/* ---- base chains as iptables-nft creates them (its xtables_ipv4/ipv6 tables; the same for both) ---------- */

static const knft_builtin builtins[] = {
    {"nat", "PREROUTING", "nat", NF_INET_PRE_ROUTING, -100},
    {"nat", "INPUT", "nat", NF_INET_LOCAL_IN, 100},
    {"nat", "OUTPUT", "nat", NF_INET_LOCAL_OUT, -100},
    {"nat", "POSTROUTING", "nat", NF_INET_POST_ROUTING, 100},
    {"filter", "INPUT", "filter", NF_INET_LOCAL_IN, 0},
    {"filter", "FORWARD", "filter", NF_INET_FORWARD, 0},
    {"filter", "OUTPUT", "filter", NF_INET_LOCAL_OUT, 0},
    {"mangle", "PREROUTING", "filter", NF_INET_PRE_ROUTING, -150},
    {"mangle", "INPUT", "filter", NF_INET_LOCAL_IN, -150},
    {"mangle", "FORWARD", "filter", NF_INET_FORWARD, -150},
    {"mangle", "OUTPUT", "route", NF_INET_LOCAL_OUT, -150},
    {"mangle", "POSTROUTING", "filter", NF_INET_POST_ROUTING, -150},
    {"raw", "PREROUTING", "filter", NF_INET_PRE_ROUTING, -300},
    {"raw", "OUTPUT", "filter", NF_INET_LOCAL_OUT, -300},
    {"security", "INPUT", "filter", NF_INET_LOCAL_IN, 150},
    {"security", "FORWARD", "filter", NF_INET_FORWARD, 150},
    {"security", "OUTPUT", "filter", NF_INET_LOCAL_OUT, 150},
};

const knft_builtin *knft_find_builtin(const char *table, const char *chain) {
    for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
        if (!strcmp(builtins[i].table, table) && !strcmp(builtins[i].chain, chain)) return &builtins[i];
    return NULL;
}


/* ---- messages --------------------------------------------------------------------------------------------- */

/* Is this the stamp's rule (the first rule of the stamp's chain)? */
static int stamp_rule(const emitter *em, const char *chain, int index) {
    const knft_stamping *s = em->stamping;
    return s && s->where && index == 1 && s->where->family == em->t->family && !strcmp(s->where->table, em->t->name) &&
           !strcmp(s->where->chain, chain);
}

static knft_origin origin(const emitter *em, const char *chain, int rule) {
    knft_origin o = {.family = (uint8_t)em->t->family, .table = em->t->name, .chain = chain, .rule = rule};
    return o;
}

static void counted(emitter *em) { em->report->messages++; }

int knft_emit_table(emitter *em) {
    knft_origin o = origin(em, NULL, 0);
    struct nlmsghdr *nlh = knft_batch_msg(em->bt, NFT_MSG_NEWTABLE, em->t->family, NLM_F_CREATE, &o);
    struct nftnl_table *tb = nftnl_table_alloc();
    if (!nlh || !tb) {
        if (tb) nftnl_table_free(tb);
        return ENOMEM;
    }
    nftnl_table_set_str(tb, NFTNL_TABLE_NAME, em->t->name);
    nftnl_table_nlmsg_build_payload(nlh, tb);
    nftnl_table_free(tb);
    knft_batch_commit_msg(em->bt);
    counted(em);
    return 0;
}

int knft_emit_chain(emitter *em, const char *name, const knft_builtin *b) {
    knft_origin o = origin(em, name, 0);
    /* a user chain as `iptables -N` (fails if it appeared meanwhile); a base chain as iptables-nft adds it */
    uint16_t flags = b ? NLM_F_CREATE : NLM_F_CREATE | NLM_F_EXCL;
    struct nlmsghdr *nlh = knft_batch_msg(em->bt, NFT_MSG_NEWCHAIN, em->t->family, flags, &o);
    struct nftnl_chain *c = nftnl_chain_alloc();
    if (!nlh || !c) {
        if (c) nftnl_chain_free(c);
        return ENOMEM;
    }
    nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, em->t->name);
    nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
    if (b) {
        nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, b->hook);
        nftnl_chain_set_u32(c, NFTNL_CHAIN_PRIO, (uint32_t)b->prio);
        nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
        nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, b->type);
    }
    nftnl_chain_nlmsg_build_payload(nlh, c);
    nftnl_chain_free(c);
    knft_batch_commit_msg(em->bt);
    counted(em);
    return 0;
}

/* A by-handle operation without a handle would address the wrong rule (a DELRULE without one flushes). */
int knft_no_handle(emitter *em, const char *chain) {
    knft_set_message(em->res, "ipv%d %s: chain %s: a rule's handle is not known", em->t->family, em->t->name, chain);
    return EIO;
}

/* NEWRULE: appended, at the head, before/after the rule with handle `ref`, or replacing it. */
int knft_emit_rule(emitter *em, const char *chain, int index, const want_rule *r, int role, int where,
                     uint64_t ref) {
    knft_origin o = origin(em, chain, index);
    if (where != AT_TAIL && where != AT_HEAD && !ref) return knft_no_handle(em, chain);
    uint16_t flags = NLM_F_CREATE;
    if (where == AT_TAIL || where == AFTER) flags |= NLM_F_APPEND;
    if (where == REPLACE) flags |= NLM_F_REPLACE;
    struct nlmsghdr *nlh = knft_batch_msg(em->bt, NFT_MSG_NEWRULE, em->t->family, flags, &o);
    struct nftnl_rule *nr = nftnl_rule_alloc();
    if (!nlh || !nr) {
        if (nr) nftnl_rule_free(nr);
        return ENOMEM;
    }
    nftnl_rule_set_str(nr, NFTNL_RULE_TABLE, em->t->name);
    nftnl_rule_set_str(nr, NFTNL_RULE_CHAIN, chain);
    if (where == REPLACE) nftnl_rule_set_u64(nr, NFTNL_RULE_HANDLE, ref);
    if (where == BEFORE || where == AFTER) nftnl_rule_set_u64(nr, NFTNL_RULE_POSITION, ref);
    char why[160] = "";
    int rc = knft_encode_rule(nr, &r->span, em->form, em->t->family, why, sizeof(why));
    if (rc) {
        nftnl_rule_free(nr);
        knft_set_message(em->res, "ipv%d %s: chain %s rule %d: %s", em->t->family, em->t->name, chain, index,
                         why[0] ? why : strerror(rc));
        return rc;
    }
    if (role) {
        /* kube-natd's tag: private TLV (type, length, value = role + 64-bit tag); on the stamp's rule, the stamp */
        uint8_t udata[11 + 14] = {KNFT_UDATA_TAG, 9, (uint8_t)role};
        size_t len = 11;
        memcpy(udata + 3, &r->tag, 8);
        if (role == KNFT_ROLE_OWNED && stamp_rule(em, chain, index)) {
            udata[11] = KNFT_UDATA_STAMP;
            udata[12] = 12;
            memcpy(udata + 13, &em->stamping->genid, 4);
            memcpy(udata + 17, &em->stamping->hash, 8);
            len += 14;
            em->stamping->written = 1;
        }
        nftnl_rule_set_data(nr, NFTNL_RULE_USERDATA, udata, (uint32_t)len);
    }
    nftnl_rule_nlmsg_build_payload(nlh, nr);
    nftnl_rule_free(nr);
    knft_batch_commit_msg(em->bt);
    counted(em);
    return 0;
}

/* DELRULE by handle, or a flush of the chain (handle 0). */
int knft_emit_delrule(emitter *em, const char *chain, uint64_t handle) {
    knft_origin o = origin(em, chain, 0);
    struct nlmsghdr *nlh = knft_batch_msg(em->bt, NFT_MSG_DELRULE, em->t->family, 0, &o);
    struct nftnl_rule *nr = nftnl_rule_alloc();
    if (!nlh || !nr) {
        if (nr) nftnl_rule_free(nr);
        return ENOMEM;
    }
    nftnl_rule_set_str(nr, NFTNL_RULE_TABLE, em->t->name);
    nftnl_rule_set_str(nr, NFTNL_RULE_CHAIN, chain);
    if (handle) nftnl_rule_set_u64(nr, NFTNL_RULE_HANDLE, handle);
    nftnl_rule_nlmsg_build_payload(nlh, nr);
    nftnl_rule_free(nr);
    knft_batch_commit_msg(em->bt);
    counted(em);
    return 0;
}

/* DELCHAIN without NLM_F_NONREC: the kernel removes the chain's rules with it (it refuses while anything
   still jumps to it). */
int knft_emit_delchain(emitter *em, const char *chain) {
    knft_origin o = origin(em, chain, 0);
    struct nlmsghdr *nlh = knft_batch_msg(em->bt, NFT_MSG_DELCHAIN, em->t->family, 0, &o);
    struct nftnl_chain *c = nftnl_chain_alloc();
    if (!nlh || !c) {
        if (c) nftnl_chain_free(c);
        return ENOMEM;
    }
    nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, em->t->name);
    nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, chain);
    nftnl_chain_nlmsg_build_payload(nlh, c);
    nftnl_chain_free(c);
    knft_batch_commit_msg(em->bt);
    counted(em);
    return 0;
}

