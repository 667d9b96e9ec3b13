/*
 * Whole tables by name: delete one, with everything in it, in a batch of its own. For the tables kube-proxy's
 * nftables mode leaves (`table ip kube-proxy`, `table ip6 kube-proxy`), which kube-proxy's iptables mode deletes on
 * every start; nothing here touches the tables kube-natd writes through knft_apply.
 *
 * The table is looked up first (GETTABLE), so a kernel without it sees no batch at all and its generation id does
 * not move: a steady start still finds its stamp current.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netlink.h>
#include "internal.h"

/* 1 when the table exists, 0 when the kernel says ENOENT, else -errno (result->message says where). */
static int table_exists(knft_context *ctx, int family, const char *name, knft_result *res) {
    char req[512] = {0};
    uint32_t seq = ++ctx->seq;
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(req, NFT_MSG_GETTABLE, family == 6 ? NFPROTO_IPV6 : NFPROTO_IPV4,
                                                 NLM_F_ACK, seq);
    mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, name);
    if (mnl_socket_sendto(ctx->nl, nlh, nlh->nlmsg_len) < 0) {
        res->error = errno;
        knft_set_message(res, "GETTABLE ipv%d %s: %s", family, name, strerror(errno));
        return -errno;
    }
    int found = 0;
    for (int tries = 0; tries < 64; tries++) {
        ssize_t got = mnl_socket_recvfrom(ctx->nl, ctx->buf, ctx->buflen);
        if (got < 0) {
            res->error = errno;
            knft_set_message(res, "GETTABLE ipv%d %s: %s", family, name, strerror(errno));
            return -errno;
        }
        int n = (int)got;
        for (const struct nlmsghdr *m = (void *)ctx->buf; mnl_nlmsg_ok(m, n); m = mnl_nlmsg_next(m, &n)) {
            if (m->nlmsg_seq != seq) continue; /* a leftover of an earlier exchange */
            if (m->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = mnl_nlmsg_get_payload(m);
                if (e->error == 0) return found; /* the ack ends the exchange */
                if (e->error == -ENOENT) return 0;
                res->error = -e->error;
                knft_set_message(res, "GETTABLE ipv%d %s: %s", family, name, strerror(-e->error));
                return e->error;
            }
            found = 1;
        }
    }
    res->error = EPROTO;
    knft_set_message(res, "GETTABLE ipv%d %s: no answer", family, name);
    return -EPROTO;
}

int knft_delete_table(knft_context *ctx, int family, const char *name, int max_attempts, int *deleted,
                      knft_result *res) {
    *deleted = 0;
    if (max_attempts < 1) max_attempts = 1;
    for (int attempt = 1; attempt <= max_attempts; attempt++) {
        res->attempts = attempt;
        int exists = table_exists(ctx, family, name, res);
        if (exists < 0) return -exists;
        if (!exists) return 0;
        uint32_t genid = 0;
        int rc = knft_getgen(ctx, &genid, res);
        if (rc) return rc;
        knft_batch bt;
        if (knft_batch_init(&bt, ctx)) {
            res->error = ENOMEM;
            knft_set_message(res, "out of memory");
            return ENOMEM;
        }
        knft_origin origin = {.family = (uint8_t)family, .table = name};
        struct nlmsghdr *nlh = knft_batch_msg(&bt, NFT_MSG_DELTABLE, family, 0, &origin);
        if (nlh) {
            mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, name);
            knft_batch_commit_msg(&bt);
        }
        rc = knft_batch_send(&bt, ctx, genid, res);
        knft_batch_free(&bt);
        if (rc == 0) {
            res->batches = 1;
            res->messages = 1;
            *deleted = 1;
            return 0;
        }
        /* gone in between (someone else deleted it), or another writer committed: look again */
        if (rc == ENOENT) return 0;
        if (rc != ERESTART) return rc;
    }
    return ERESTART;
}
