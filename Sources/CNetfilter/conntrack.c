/* Stale UDP conntrack entries: stream one family's table and delete what the decision function names. */
#include "include/cconntrack.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

typedef struct knat_ct_walk {
    uint8_t l3proto;
    knat_ct_decide decide;
    void *context;
    struct nfct_handle *deleter;
    knat_ct_result *result;
} knat_ct_walk;

static void knat_ct_message(knat_ct_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void knat_ct_message(knat_ct_result *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof(r->message), fmt, ap);
    va_end(ap);
}

static uint64_t knat_be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

/* Reads the fields the decision needs; 0 when one is missing (never the case for a dumped UDP entry). */
static int knat_ct_read(const struct nf_conntrack *ct, uint8_t l3proto, knat_ct_udp_flow *flow) {
    if (!nfct_attr_is_set(ct, ATTR_ORIG_PORT_DST) || !nfct_attr_is_set(ct, ATTR_ORIG_PORT_SRC)) return 0;
    memset(flow, 0, sizeof(*flow));
    if (l3proto == AF_INET) {
        if (!nfct_attr_is_set(ct, ATTR_ORIG_IPV4_DST) || !nfct_attr_is_set(ct, ATTR_REPL_IPV4_SRC)) return 0;
        flow->orig_dst_low = ntohl(nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_DST));
        flow->reply_src_low = ntohl(nfct_get_attr_u32(ct, ATTR_REPL_IPV4_SRC));
    } else {
        const uint8_t *dst = nfct_get_attr(ct, ATTR_ORIG_IPV6_DST);
        const uint8_t *src = nfct_get_attr(ct, ATTR_REPL_IPV6_SRC);
        if (dst == NULL || src == NULL) return 0;
        flow->orig_dst_high = knat_be64(dst);
        flow->orig_dst_low = knat_be64(dst + 8);
        flow->reply_src_high = knat_be64(src);
        flow->reply_src_low = knat_be64(src + 8);
    }
    flow->orig_dst_port = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_DST));
    flow->orig_src_port = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_SRC));
    return 1;
}

static int knat_ct_visit(enum nf_conntrack_msg_type type, struct nf_conntrack *ct, void *data) {
    (void)type;
    knat_ct_walk *w = data;
    knat_ct_result *r = w->result;
    /* The kernel filters the dump by family; checked again so an old kernel cannot hand us the other one. */
    if (nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO) != w->l3proto) return NFCT_CB_CONTINUE;
    r->entries++;
    if (nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO) != IPPROTO_UDP) return NFCT_CB_CONTINUE;
    r->udp_entries++;
    knat_ct_udp_flow flow;
    if (!knat_ct_read(ct, w->l3proto, &flow)) return NFCT_CB_CONTINUE;
    if (!w->decide(w->context, &flow)) return NFCT_CB_CONTINUE;
    r->stale++;
    /* The dumped object carries both tuples and the entry id, so the delete hits this entry only: a newer
     * entry for the same tuple (created after our dump read this one) has another id and is kept.
     * Deleting from a second socket while the dump runs is what conntrack(8) -D does. */
    if (nfct_query(w->deleter, NFCT_Q_DESTROY, ct) == 0) {
        r->deleted++;
    } else if (errno == ENOENT) {
        r->vanished++;
    } else {
        int e = errno;
        r->delete_failures++;
        if (r->error == 0) {
            r->error = e;
            knat_ct_message(r, "deleting a UDP entry to port %u: %s", flow.orig_dst_port, strerror(e));
        }
    }
    return NFCT_CB_CONTINUE;
}

int knat_ct_reconcile_udp(int family, knat_ct_decide decide, void *context, knat_ct_result *result) {
    memset(result, 0, sizeof(*result));
    if ((family != 4 && family != 6) || decide == NULL) {
        result->error = EINVAL;
        knat_ct_message(result, "conntrack: family must be 4 or 6 and a decision function given");
        return EINVAL;
    }
    uint8_t l3proto = family == 4 ? AF_INET : AF_INET6;
    struct nfct_handle *dumper = nfct_open(CONNTRACK, 0);
    if (dumper == NULL) {
        result->error = errno ? errno : EIO;
        knat_ct_message(result, "conntrack: opening the netlink socket: %s", strerror(result->error));
        return result->error;
    }
    struct nfct_handle *deleter = nfct_open(CONNTRACK, 0);
    if (deleter == NULL) {
        result->error = errno ? errno : EIO;
        knat_ct_message(result, "conntrack: opening the netlink socket for deletes: %s", strerror(result->error));
        nfct_close(dumper);
        return result->error;
    }
    knat_ct_walk walk = {l3proto, decide, context, deleter, result};
    int rc = nfct_callback_register(dumper, NFCT_T_ALL, knat_ct_visit, &walk);
    if (rc == 0) {
        uint32_t af = l3proto;
        rc = nfct_query(dumper, NFCT_Q_DUMP, &af);
        if (rc != 0) {
            /* A dump failure outranks a delete failure seen before it: the table was not walked to the end. */
            int e = errno ? errno : EIO;
            result->error = e;
            knat_ct_message(result, "conntrack: dumping the IPv%d table: %s", family, strerror(e));
        }
        nfct_callback_unregister(dumper);
    } else {
        result->error = errno ? errno : EIO;
        knat_ct_message(result, "conntrack: registering the dump callback: %s", strerror(result->error));
    }
    nfct_close(deleter);
    nfct_close(dumper);
    return result->error;
}
