/*
 * The netlink side: the socket, GETGEN, dumps, and sending one batch as one transaction.
 *
 * A batch is BEGIN (carrying the generation id the decision was made at), the messages, END, in one sendmsg: the
 * kernel validates and commits it inside that call, all or nothing, and refuses it whole with ERESTART when any
 * other writer committed since the generation id was read. Messages carry no ACK flag (as iptables-nft's): the
 * kernel answers only errors, each with the sequence number of the message it refers to, which names the table,
 * chain and rule here.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/common.h>
#include <libnftnl/gen.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include "internal.h"

#define RECV_BUFFER (256 * 1024)
/* Batch pages: large enough that even a 30k-Service first sync stays well under IOV_MAX pages. */
#define PAGE_SIZE_ (512 * 1024)
#define PAGE_OVERRUN (64 * 1024) /* more than the largest message we build */

void knft_set_message(knft_result *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof(r->message), fmt, ap);
    va_end(ap);
}

double knft_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

knft_context *knft_open(knft_result *res) {
    knft_context *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) {
        res->error = ENOMEM;
        knft_set_message(res, "out of memory");
        return NULL;
    }
    ctx->buf = malloc(RECV_BUFFER);
    ctx->buflen = RECV_BUFFER;
    ctx->nl = mnl_socket_open(NETLINK_NETFILTER);
    if (!ctx->buf || !ctx->nl || mnl_socket_bind(ctx->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        res->error = errno ? errno : ENOMEM;
        knft_set_message(res, "netlink socket: %s", strerror(res->error));
        knft_close(ctx);
        return NULL;
    }
    ctx->portid = mnl_socket_get_portid(ctx->nl);
    ctx->seq = (uint32_t)time(NULL);
    /* Errors echo only the failing message's header, not all of it, and carry the kernel's extended reason:
       a batch where thousands of messages fail must not overflow the receive buffer with copies of them. */
    int one = 1;
    mnl_socket_setsockopt(ctx->nl, NETLINK_CAP_ACK, &one, sizeof(one));
    mnl_socket_setsockopt(ctx->nl, NETLINK_EXT_ACK, &one, sizeof(one));
    return ctx;
}

void knft_close(knft_context *ctx) {
    if (!ctx) return;
    if (ctx->nl) mnl_socket_close(ctx->nl);
    knft_model_free(&ctx->model);
    knft_indexes_clear(&ctx->indexes);
    free(ctx->buf);
    free(ctx);
}

void knft_forget(knft_context *ctx) {
    knft_model_clear(&ctx->model);
    ctx->applied = 0;
}

/* The text of an NLMSG_ERROR's extended ack, if any. */
static const char *ext_ack(const struct nlmsghdr *nlh) {
    if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS)) return NULL;
    const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);
    size_t off = sizeof(*err);
    if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) off += mnl_nlmsg_get_payload_len(&err->msg) ;
    const struct nlattr *a;
    mnl_attr_for_each(a, nlh, off) {
        if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG) return mnl_attr_get_str(a);
    }
    return NULL;
}

int knft_getgen(knft_context *ctx, uint32_t *genid, knft_result *res) {
    char req[256] = {0};
    uint32_t seq = ++ctx->seq;
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(req, NFT_MSG_GETGEN, AF_UNSPEC, 0, seq);
    if (mnl_socket_sendto(ctx->nl, nlh, nlh->nlmsg_len) < 0) {
        res->error = errno;
        knft_set_message(res, "GETGEN: %s", strerror(errno));
        return errno;
    }
    for (int tries = 0; tries < 64; tries++) {
        ssize_t n = mnl_socket_recvfrom(ctx->nl, ctx->buf, ctx->buflen);
        if (n < 0) {
            res->error = errno;
            knft_set_message(res, "GETGEN: %s", strerror(errno));
            return errno;
        }
        for (const struct nlmsghdr *m = (void *)ctx->buf; mnl_nlmsg_ok(m, (int)n); m = mnl_nlmsg_next(m, (int *)&n)) {
            if (m->nlmsg_seq != seq) continue; /* a leftover of an earlier exchange */
            if (m->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = mnl_nlmsg_get_payload(m);
                if (!e->error) continue;
                res->error = -e->error;
                knft_set_message(res, "GETGEN: %s", strerror(-e->error));
                return -e->error;
            }
            const struct nlattr *a;
            mnl_attr_for_each(a, m, sizeof(struct nfgenmsg)) {
                if (mnl_attr_get_type(a) == NFTA_GEN_ID) {
                    *genid = ntohl(mnl_attr_get_u32(a));
                    return 0;
                }
            }
        }
    }
    res->error = EPROTO;
    knft_set_message(res, "GETGEN: no generation id in the reply");
    return EPROTO;
}

int knft_generation(knft_context *ctx, uint32_t *genid, knft_result *res) { return knft_getgen(ctx, genid, res); }

int knft_dump(knft_context *ctx, struct nlmsghdr *request, knft_msg_cb cb, void *data, knft_result *res) {
    uint32_t seq = ++ctx->seq;
    request->nlmsg_seq = seq;
    if (mnl_socket_sendto(ctx->nl, request, request->nlmsg_len) < 0) {
        res->error = errno;
        knft_set_message(res, "dump request: %s", strerror(errno));
        return errno;
    }
    int rc = 0;
    for (;;) {
        ssize_t got = mnl_socket_recvfrom(ctx->nl, ctx->buf, ctx->buflen);
        if (got < 0) {
            res->error = errno;
            knft_set_message(res, "dump: %s", strerror(errno));
            return errno;
        }
        int n = (int)got;
        for (const struct nlmsghdr *m = (void *)ctx->buf; mnl_nlmsg_ok(m, n); m = mnl_nlmsg_next(m, &n)) {
            if (m->nlmsg_seq != seq) continue;
            if (m->nlmsg_type == NLMSG_DONE) {
                if (!rc && knft_faults_armed && knft_fault_hit(KNFT_FAULT_DUMP_INTR)) rc = EINTR; /* test only */
                return rc;
            }
            if (m->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = mnl_nlmsg_get_payload(m);
                if (!e->error) continue;
                res->error = -e->error;
                knft_set_message(res, "dump: %s", strerror(-e->error));
                return -e->error;
            }
            /* the ruleset changed while the kernel was dumping: the caller reads again */
            if (m->nlmsg_flags & NLM_F_DUMP_INTR) rc = EINTR;
            if (!rc) rc = cb(m, data);
        }
    }
}

/* ---- batches ---------------------------------------------------------------------------------------------- */

int knft_batch_init(knft_batch *bt, knft_context *ctx) {
    memset(bt, 0, sizeof(*bt));
    bt->b = nftnl_batch_alloc(PAGE_SIZE_, PAGE_OVERRUN);
    if (!bt->b) return ENOMEM;
    /* libmnl leaves attribute padding as it finds it: pages start zeroed so no stale heap bytes are sent */
    memset(nftnl_batch_buffer(bt->b), 0, PAGE_SIZE_ + PAGE_OVERRUN);
    /* well above the sequence numbers single-chain dumps take while the batch is being decided */
    bt->seq0 = ctx->seq + (1u << 20);
    bt->next = bt->seq0 + 1;
    return 0;
}

void knft_batch_free(knft_batch *bt) {
    if (bt->b) nftnl_batch_free(bt->b);
    free(bt->origins);
    memset(bt, 0, sizeof(*bt));
}

struct nlmsghdr *knft_batch_msg(knft_batch *bt, uint16_t type, int family, uint16_t flags, const knft_origin *origin) {
    if (bt->norigins == bt->cap) {
        size_t cap = bt->cap ? bt->cap * 2 : 256;
        knft_origin *p = realloc(bt->origins, cap * sizeof(*p));
        if (!p) {
            bt->failed = 1;
            return NULL;
        }
        bt->origins = p;
        bt->cap = cap;
    }
    bt->origins[bt->norigins] = *origin;
    bt->origins[bt->norigins].type = type;
    bt->norigins++;
    return nftnl_nlmsg_build_hdr(nftnl_batch_buffer(bt->b), type, family == 6 ? NFPROTO_IPV6 : NFPROTO_IPV4, flags,
                                 bt->next++);
}

/* Closes the message just built. When it did not fit, libnftnl moved it to a fresh page: the rest of that
   page is zeroed like the first one. */
static void advance(knft_batch *bt) {
    const struct nlmsghdr *msg = nftnl_batch_buffer(bt->b);
    size_t len = MNL_ALIGN(msg->nlmsg_len);
    if (nftnl_batch_update(bt->b) < 0) {
        bt->failed = 1;
        return;
    }
    char *next = nftnl_batch_buffer(bt->b);
    if (next != (const char *)msg + len) memset(next, 0, PAGE_SIZE_ + PAGE_OVERRUN - len);
}

void knft_batch_commit_msg(knft_batch *bt) { advance(bt); }

static const char *msg_name(uint16_t type) {
    switch (type) {
    case NFT_MSG_NEWTABLE: return "NEWTABLE";
    case NFT_MSG_NEWCHAIN: return "NEWCHAIN";
    case NFT_MSG_DELCHAIN: return "DELCHAIN";
    case NFT_MSG_NEWRULE: return "NEWRULE";
    case NFT_MSG_DELRULE: return "DELRULE";
    case NFT_MSG_DELTABLE: return "DELTABLE";
    default: return "message";
    }
}

/* The error text for an error reply: which message of the batch, and where it came from. */
static void describe(const knft_batch *bt, const struct nlmsghdr *m, int err, knft_result *res) {
    const struct nlmsgerr *e = mnl_nlmsg_get_payload(m);
    const char *why = ext_ack(m);
    uint32_t seq = e->msg.nlmsg_seq;
    if (seq == bt->seq0 || seq < bt->seq0 || seq - bt->seq0 - 1 >= bt->norigins) {
        knft_set_message(res, "batch refused: %s%s%s", strerror(err), why ? ": " : "", why ? why : "");
        return;
    }
    const knft_origin *o = &bt->origins[seq - bt->seq0 - 1];
    char where[512];
    int n = snprintf(where, sizeof(where), "ipv%d %s", o->family, o->table ? o->table : "?");
    if (o->chain) n += snprintf(where + n, sizeof(where) - (size_t)n, ": chain %s", o->chain);
    if (o->rule > 0) snprintf(where + n, sizeof(where) - (size_t)n, " rule %d", o->rule);
    knft_set_message(res, "%s (%s): %s%s%s", where, msg_name(o->type), strerror(err), why ? ": " : "",
                     why ? why : "");
}

static void size_buffers(knft_context *ctx, size_t bytes, size_t messages) {
    /* The whole batch goes in one skb, which the socket's send buffer must hold; the force variants (we are
       CAP_NET_ADMIN) go past net.core.wmem_max, as iptables-nft does. */
    if (bytes + 4096 > (size_t)ctx->sndbuf) {
        int v = (int)(bytes + 65536 > (size_t)(1 << 30) ? (1 << 30) : bytes + 65536);
        if (setsockopt(mnl_socket_get_fd(ctx->nl), SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) == 0) ctx->sndbuf = v;
    }
    /* one capped error per failing message at worst */
    size_t want = messages * 96 + (1 << 20);
    if (want > (size_t)(256 << 20)) want = (size_t)(256 << 20);
    if (want > (size_t)ctx->rcvbuf) {
        int v = (int)want;
        if (setsockopt(mnl_socket_get_fd(ctx->nl), SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) == 0) ctx->rcvbuf = v;
    }
}

int knft_batch_send(knft_batch *bt, knft_context *ctx, uint32_t genid, knft_result *res) {
    if (bt->failed) {
        res->error = ENOMEM;
        knft_set_message(res, "out of memory building the batch");
        return ENOMEM;
    }
    /* BEGIN goes first: it is built in a page of its own and prepended to the iovec. */
    char begin[256] = {0};
    struct nlmsghdr *b = nftnl_batch_begin(begin, bt->seq0);
    mnl_attr_put_u32(b, NFNL_BATCH_GENID, htonl(genid));
    nftnl_batch_end(nftnl_batch_buffer(bt->b), bt->next++);
    advance(bt);
    if (bt->failed) {
        res->error = ENOMEM;
        knft_set_message(res, "out of memory building the batch");
        return ENOMEM;
    }
    ctx->seq = bt->next;
    int pages = nftnl_batch_iovec_len(bt->b);
    struct iovec *iov = calloc((size_t)pages + 1, sizeof(*iov));
    if (!iov) {
        res->error = ENOMEM;
        return ENOMEM;
    }
    iov[0].iov_base = b;
    iov[0].iov_len = b->nlmsg_len;
    nftnl_batch_iovec(bt->b, iov + 1, (uint32_t)pages);
    size_t total = 0;
    for (int i = 0; i <= pages; i++) total += iov[i].iov_len;
    res->batch_bytes = total;
    size_buffers(ctx, total, bt->norigins);

    if (knft_faults_armed && knft_fault_hit(KNFT_FAULT_BATCH_ERESTART)) { /* test only: refused, not sent */
        free(iov);
        res->error = ERESTART;
        knft_set_message(res, "generation id changed (another writer committed)");
        return ERESTART;
    }
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    struct msghdr msg = {.msg_name = &kernel, .msg_namelen = sizeof(kernel), .msg_iov = iov,
                         .msg_iovlen = (size_t)pages + 1};
    ssize_t sent = sendmsg(mnl_socket_get_fd(ctx->nl), &msg, 0);
    int saved = errno;
    free(iov);
    if (sent < 0) {
        res->error = saved;
        knft_set_message(res, "sending the batch (%zu bytes, %zu messages): %s", total, bt->norigins,
                         strerror(saved));
        return saved;
    }
    /* The kernel handled the whole batch inside sendmsg: every reply is queued by now. */
    int first = 0;
    if (knft_faults_armed && knft_fault_hit(KNFT_FAULT_BATCH_ENOBUFS)) { /* test only: the replies are lost */
        while (recv(mnl_socket_get_fd(ctx->nl), ctx->buf, ctx->buflen, MSG_DONTWAIT) > 0) {}
        res->error = ENOBUFS;
        knft_set_message(res, "reading the batch's replies: %s", strerror(ENOBUFS));
        return ENOBUFS;
    }
    for (;;) {
        ssize_t got = recv(mnl_socket_get_fd(ctx->nl), ctx->buf, ctx->buflen, MSG_DONTWAIT);
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            /* ENOBUFS: replies were lost, so the outcome is unknown; the caller re-reads the kernel */
            if (!first) {
                first = errno;
                knft_set_message(res, "reading the batch's replies: %s", strerror(errno));
            }
            break;
        }
        int n = (int)got;
        for (const struct nlmsghdr *m = (void *)ctx->buf; mnl_nlmsg_ok(m, n); m = mnl_nlmsg_next(m, &n)) {
            if (m->nlmsg_type != NLMSG_ERROR) continue;
            const struct nlmsgerr *e = mnl_nlmsg_get_payload(m);
            if (!e->error) continue;
            int err = -e->error;
            /* the generation moved: the batch was dropped before any message was looked at */
            if (err == ERESTART && e->msg.nlmsg_seq == bt->seq0) {
                if (first != ERESTART) knft_set_message(res, "generation id changed (another writer committed)");
                first = ERESTART;
                continue;
            }
            if (!first) {
                first = err;
                describe(bt, m, err, res);
            }
        }
    }
    if (first) res->error = first;
    return first;
}
