/* nfacct objects: one request, one answer, over a NETLINK_NETFILTER socket of its own. */
#include "include/cnfacct.h"
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_acct.h>

static void knat_nfacct_message(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void knat_nfacct_message(char *out, size_t size, const char *fmt, ...) {
    if (out == NULL || size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, size, fmt, ap);
    va_end(ap);
}

typedef struct knat_nfacct_counts {
    int seen;
    uint64_t packets, bytes;
} knat_nfacct_counts;

static int knat_nfacct_attr(const struct nlattr *attr, void *data) {
    knat_nfacct_counts *c = data;
    switch (mnl_attr_get_type(attr)) {
    case NFACCT_PKTS:
        if (mnl_attr_validate(attr, MNL_TYPE_U64) < 0) return MNL_CB_ERROR;
        c->packets = be64toh(mnl_attr_get_u64(attr));
        c->seen = 1;
        break;
    case NFACCT_BYTES:
        if (mnl_attr_validate(attr, MNL_TYPE_U64) < 0) return MNL_CB_ERROR;
        c->bytes = be64toh(mnl_attr_get_u64(attr));
        break;
    default: break;
    }
    return MNL_CB_OK;
}

static int knat_nfacct_reply(const struct nlmsghdr *nlh, void *data) {
    return mnl_attr_parse(nlh, sizeof(struct nfgenmsg), knat_nfacct_attr, data);
}

/* Sends one NFNL_SUBSYS_ACCT request for `name` and runs the answer through `cb`; 0 or a positive errno. */
static int knat_nfacct_request(uint8_t type, uint16_t flags, const char *name, mnl_cb_t cb, void *data,
                               const char *what, char *message, size_t message_size) {
    if (name == NULL || strlen(name) == 0 || strlen(name) >= NFACCT_NAME_MAX) {
        knat_nfacct_message(message, message_size, "nfacct %s: invalid name", what);
        return EINVAL;
    }
    /* Zeroed: libmnl leaves an attribute's alignment padding as it finds it, and the kernel would be sent those
     * bytes (valgrind: "sendto points to uninitialised bytes"). */
    char buf[MNL_SOCKET_BUFFER_SIZE];
    memset(buf, 0, 1024);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = (NFNL_SUBSYS_ACCT << 8) | type;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    nlh->nlmsg_seq = (uint32_t)time(NULL);
    struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
    nfg->nfgen_family = AF_UNSPEC;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = 0;
    mnl_attr_put_strz(nlh, NFACCT_NAME, name);

    struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
    if (nl == NULL) {
        int e = errno;
        knat_nfacct_message(message, message_size, "nfacct %s %s: netlink socket: %s", what, name, strerror(e));
        return e;
    }
    int rc = 0;
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0 || mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
        rc = errno;
    } else {
        uint32_t portid = mnl_socket_get_portid(nl);
        for (int rounds = 0; rounds < 16; rounds++) {
            ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
            if (n < 0) { rc = errno; break; }
            int r = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, portid, cb, data);
            if (r == MNL_CB_STOP) break;      /* the ACK */
            if (r < 0) { rc = errno ? errno : EPROTO; break; }
        }
    }
    mnl_socket_close(nl);
    if (rc != 0) knat_nfacct_message(message, message_size, "nfacct %s %s: %s", what, name, strerror(rc));
    return rc;
}

int knat_nfacct_get(const char *name, uint64_t *packets, uint64_t *bytes, char *message, size_t message_size) {
    knat_nfacct_counts c = {0, 0, 0};
    int rc = knat_nfacct_request(NFNL_MSG_ACCT_GET, 0, name, knat_nfacct_reply, &c, "get", message, message_size);
    if (rc != 0) return rc;
    if (!c.seen) {
        knat_nfacct_message(message, message_size, "nfacct get %s: the answer carried no counts", name);
        return EPROTO;
    }
    if (packets) *packets = c.packets;
    if (bytes) *bytes = c.bytes;
    return 0;
}

int knat_nfacct_ensure(const char *name, char *message, size_t message_size) {
    /* As upstream's Ensure: look first, create only what is missing (a NEW without flags on an existing object is
     * EBUSY, and NLM_F_REPLACE would zero its counts). EEXIST: someone created it in between, which is as good. */
    int rc = knat_nfacct_get(name, NULL, NULL, message, message_size);
    if (rc != ENOENT) return rc;
    rc = knat_nfacct_request(NFNL_MSG_ACCT_NEW, NLM_F_CREATE | NLM_F_EXCL, name, NULL, NULL, "add", message,
                             message_size);
    return rc == EEXIST ? 0 : rc;
}
