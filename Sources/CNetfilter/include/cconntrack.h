#ifndef CCONNTRACK_H
#define CCONNTRACK_H
/*
 * kube-natd's C shim over libnetfilter_conntrack: stream one family's conntrack table, ask a decision
 * function about every UDP entry, and delete the entries it calls stale. Nothing of the table is kept:
 * each entry lives only for the duration of its callback, so memory does not grow with the table
 * (upstream's list-then-filter reconciler reached 12 GB RSS, kubernetes #129982).
 *
 * The conntrack table is per network namespace: the netlink socket sees the namespace of the caller.
 * Errors follow the shim's one convention (cnetfilter.h): 0 or a positive errno, also in result->error, with
 * result->message.
 */
#include <stdint.h>

/* One UDP entry as the decision function sees it. Addresses are split in two host-order words like
 * KubeModel's IPAddress: IPv4 lives in the low 32 bits of `low`, `high` is 0. */
typedef struct knat_ct_udp_flow {
    uint64_t orig_dst_high, orig_dst_low;   /* original direction destination (the frontend the client used) */
    uint64_t reply_src_high, reply_src_low; /* reply direction source (the endpoint after DNAT) */
    uint16_t orig_dst_port;                 /* host order */
    uint16_t orig_src_port;                 /* host order; for logs */
} knat_ct_udp_flow;

/* Returns non-zero when the entry is stale and must be deleted. Must not block. */
typedef int (*knat_ct_decide)(void *context, const knat_ct_udp_flow *flow);

/* What one knat_ct_reconcile_udp call did, or why it failed. */
typedef struct knat_ct_result {
    int error;                  /* 0, or the first errno (dump failure, else the first failed delete) */
    uint64_t entries;           /* entries of the family the dump delivered (every protocol) */
    uint64_t udp_entries;       /* of which UDP */
    uint64_t stale;             /* UDP entries the decision function called stale */
    uint64_t deleted;           /* stale entries the kernel deleted */
    uint64_t vanished;          /* stale entries already gone when deleted (ENOENT: expired meanwhile) */
    uint64_t delete_failures;   /* other delete errors */
    char message[256];          /* error text: which step failed and strerror */
} knat_ct_result;

/*
 * Dumps the conntrack table of one family (4 or 6) in the caller's network namespace, calls decide for
 * every UDP entry and deletes, by its exact tuple and id, each entry decide calls stale. Delete failures
 * other than ENOENT are counted and do not stop the dump. Returns 0 or an errno value (also in
 * result->error, with result->message); EINVAL for a bad family or a NULL decide.
 */
int knat_ct_reconcile_udp(int family, knat_ct_decide decide, void *context, knat_ct_result *result);

#endif
