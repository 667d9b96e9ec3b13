/* xt extension info blobs, as iptables fills them (see knat_xtinfo.h). */
#include "knat_xtinfo.h"
#include <arpa/inet.h>
#include <string.h>
#include <net/if.h>
#include <netinet/in.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/x_tables.h>
#include <linux/netfilter/xt_addrtype.h>
#include <linux/netfilter/xt_comment.h>
#include <linux/netfilter/xt_conntrack.h>
#include <linux/netfilter/xt_mark.h>
#include <linux/netfilter/xt_nfacct.h>
#include <linux/netfilter/xt_recent.h>
#include <linux/netfilter/xt_sctp.h>
#include <linux/netfilter/xt_statistic.h>
#include <linux/netfilter/xt_tcpudp.h>
#include <linux/netfilter_ipv4/ipt_REJECT.h>
#include <linux/netfilter_ipv6/ip6t_REJECT.h>

_Static_assert(XT_CONNTRACK_STATE_BIT(IP_CT_ESTABLISHED) == KNAT_CT_STATE_ESTABLISHED, "ct state bit");
_Static_assert(XT_CONNTRACK_STATE_BIT(IP_CT_RELATED) == KNAT_CT_STATE_RELATED, "ct state bit");
_Static_assert(XT_CONNTRACK_STATE_BIT(IP_CT_NEW) == KNAT_CT_STATE_NEW, "ct state bit");
_Static_assert(XT_CONNTRACK_STATE_INVALID == KNAT_CT_STATE_INVALID, "ct state bit");
_Static_assert(XT_CONNTRACK_STATE_DNAT == KNAT_CT_STATE_DNAT, "ct state bit");
_Static_assert((XT_RECENT_CHECK | XT_RECENT_REAP) == KNAT_RECENT_CHECK_AND_REAP, "recent flags");
_Static_assert(XT_RECENT_SET == KNAT_RECENT_SET, "recent flags");
_Static_assert(IPPROTO_TCP == KNAT_PROTO_TCP && IPPROTO_UDP == KNAT_PROTO_UDP && IPPROTO_SCTP == KNAT_PROTO_SCTP,
               "protocol numbers");
_Static_assert(IFNAMSIZ == KNAT_IFNAMSIZ, "interface names");
_Static_assert(XT_EXTENSION_MAXNAMELEN - 1 == KNAT_CHAIN_NAME_MAX, "chain names");
_Static_assert(XT_RECENT_NAME_LEN - 1 == KNAT_RECENT_NAME_MAX, "recent names");
_Static_assert(NFACCT_NAME_MAX - 1 == KNAT_NFACCT_NAME_MAX, "nfacct names");
_Static_assert(XT_MAX_COMMENT_LEN - 1 == KNAT_COMMENT_MAX, "comments");

static const knat_xt_desc descriptions[KNAT_XT_COUNT] = {
    [KNAT_XT_COMMENT] = {"comment", 0, 0},
    [KNAT_XT_TCP] = {"tcp", 0, 0},
    [KNAT_XT_UDP] = {"udp", 0, 0},
    [KNAT_XT_SCTP] = {"sctp", 0, 0},
    [KNAT_XT_ADDRTYPE] = {"addrtype", 1, 0},
    [KNAT_XT_CONNTRACK] = {"conntrack", 3, 0},
    [KNAT_XT_MARK] = {"mark", 1, 0},
    [KNAT_XT_STATISTIC] = {"statistic", 0, 0},
    [KNAT_XT_RECENT] = {"recent", 1, 0},
    /* iptables 1.8.9 loads revision 1 (same layout as 0, the pointer forced to 8-byte alignment). */
    [KNAT_XT_NFACCT] = {"nfacct", 1, 0},
    [KNAT_XT_REJECT] = {"REJECT", 0, 1},
    [KNAT_XT_DNAT] = {"DNAT", 2, 1},
    [KNAT_XT_MASQUERADE] = {"MASQUERADE", 0, 1},
    [KNAT_XT_MARK_TARGET] = {"MARK", 2, 1},
};

const knat_xt_desc *knat_xt_describe(knat_xt_kind kind) {
    return kind < KNAT_XT_COUNT ? &descriptions[kind] : NULL;
}

size_t knat_xt_size(knat_xt_kind kind, int family) {
    switch (kind) {
    case KNAT_XT_COMMENT: return XT_ALIGN(sizeof(struct xt_comment_info));
    case KNAT_XT_TCP: return XT_ALIGN(sizeof(struct xt_tcp));
    case KNAT_XT_UDP: return XT_ALIGN(sizeof(struct xt_udp));
    case KNAT_XT_SCTP: return XT_ALIGN(sizeof(struct xt_sctp_info));
    case KNAT_XT_ADDRTYPE: return XT_ALIGN(sizeof(struct xt_addrtype_info_v1));
    case KNAT_XT_CONNTRACK: return XT_ALIGN(sizeof(struct xt_conntrack_mtinfo3));
    case KNAT_XT_MARK: return XT_ALIGN(sizeof(struct xt_mark_mtinfo1));
    case KNAT_XT_STATISTIC: return XT_ALIGN(sizeof(struct xt_statistic_info));
    case KNAT_XT_RECENT: return XT_ALIGN(sizeof(struct xt_recent_mtinfo_v1));
    case KNAT_XT_NFACCT: return XT_ALIGN(sizeof(struct xt_nfacct_match_info_v1));
    case KNAT_XT_REJECT:
        return family == 6 ? XT_ALIGN(sizeof(struct ip6t_reject_info)) : XT_ALIGN(sizeof(struct ipt_reject_info));
    case KNAT_XT_DNAT: return XT_ALIGN(sizeof(struct nf_nat_range2));
    case KNAT_XT_MASQUERADE:
        return family == 6 ? XT_ALIGN(sizeof(struct nf_nat_range))
                           : XT_ALIGN(sizeof(struct nf_nat_ipv4_multi_range_compat));
    case KNAT_XT_MARK_TARGET: return XT_ALIGN(sizeof(struct xt_mark_tginfo2));
    default: return 0;
    }
}

void knat_xt_comment(void *info, const uint8_t *text, size_t length) {
    struct xt_comment_info *c = info;
    memset(c, 0, knat_xt_size(KNAT_XT_COMMENT, 4));
    if (length > XT_MAX_COMMENT_LEN - 1) length = XT_MAX_COMMENT_LEN - 1;
    memcpy(c->comment, text, length);
}

/* libxt_tcp / libxt_udp init: every source and destination port. */
void knat_xt_tcp(void *info, int dport) {
    struct xt_tcp *t = info;
    memset(t, 0, knat_xt_size(KNAT_XT_TCP, 4));
    t->spts[1] = 0xFFFF;
    t->dpts[1] = 0xFFFF;
    if (dport >= 0) t->dpts[0] = t->dpts[1] = (uint16_t)dport;
}

void knat_xt_udp(void *info, int dport) {
    struct xt_udp *u = info;
    memset(u, 0, knat_xt_size(KNAT_XT_UDP, 4));
    u->spts[1] = 0xFFFF;
    u->dpts[1] = 0xFFFF;
    if (dport >= 0) u->dpts[0] = u->dpts[1] = (uint16_t)dport;
}

void knat_xt_sctp(void *info, int dport) {
    struct xt_sctp_info *s = info;
    memset(s, 0, knat_xt_size(KNAT_XT_SCTP, 4));
    /* libxt_sctp's init marks every flag slot unused. */
    for (int i = 0; i < XT_NUM_SCTP_FLAGS; i++) s->flag_info[i].chunktype = 0xFF;
    if (dport >= 0) {
        s->dpts[0] = s->dpts[1] = (uint16_t)dport;
        s->flags |= XT_SCTP_DEST_PORTS;
    }
}

void knat_xt_addrtype_local(void *info, int destination) {
    struct xt_addrtype_info_v1 *a = info;
    memset(a, 0, knat_xt_size(KNAT_XT_ADDRTYPE, 4));
    if (destination) a->dest = XT_ADDRTYPE_LOCAL;
    else a->source = XT_ADDRTYPE_LOCAL;
}

void knat_xt_conntrack(void *info, int negated, uint16_t state_mask) {
    struct xt_conntrack_mtinfo3 *c = info;
    memset(c, 0, knat_xt_size(KNAT_XT_CONNTRACK, 4));
    c->match_flags = XT_CONNTRACK_STATE;
    if (negated) c->invert_flags = XT_CONNTRACK_STATE;
    c->state_mask = state_mask;
}

void knat_xt_mark(void *info, uint32_t mark, uint32_t mask, int negated) {
    struct xt_mark_mtinfo1 *m = info;
    memset(m, 0, knat_xt_size(KNAT_XT_MARK, 4));
    m->mark = mark;
    m->mask = mask;
    m->invert = negated ? 1 : 0;
}

void knat_xt_statistic_random(void *info, uint32_t probability) {
    struct xt_statistic_info *s = info;
    memset(s, 0, knat_xt_size(KNAT_XT_STATISTIC, 4));
    s->mode = XT_STATISTIC_MODE_RANDOM;
    s->u.random.probability = probability;
    /* libxt_statistic's final check runs count = every - packet whatever the mode, and in random mode "every"
       aliases the probability; the kernel echoes it back, so do the same. */
    s->u.nth.count = s->u.nth.every - s->u.nth.packet;
}

int knat_xt_recent(void *info, uint32_t seconds, uint8_t check_set, const uint8_t *name, size_t length) {
    struct xt_recent_mtinfo_v1 *r = info;
    memset(r, 0, knat_xt_size(KNAT_XT_RECENT, 4));
    if (length + 1 > sizeof(r->name)) return 0;
    r->seconds = seconds;
    r->check_set = check_set;
    r->side = XT_RECENT_SOURCE;
    memset(&r->mask, 0xFF, sizeof(r->mask)); /* libxt_recent's init: --mask all ones, also for IPv4 */
    memcpy(r->name, name, length);
    return 1;
}

int knat_xt_nfacct(void *info, const uint8_t *name, size_t length) {
    struct xt_nfacct_match_info_v1 *a = info;
    memset(a, 0, knat_xt_size(KNAT_XT_NFACCT, 4));
    if (length + 1 > sizeof(a->name)) return 0;
    memcpy(a->name, name, length);
    return 1;
}

void knat_xt_reject(void *info, int family) {
    memset(info, 0, knat_xt_size(KNAT_XT_REJECT, family));
    if (family == 6) ((struct ip6t_reject_info *)info)->with = IP6T_ICMP6_PORT_UNREACH;
    else ((struct ipt_reject_info *)info)->with = IPT_ICMP_PORT_UNREACHABLE;
}

void knat_xt_dnat(void *info, int family, const uint8_t *addr, uint16_t port) {
    struct nf_nat_range2 *r = info;
    size_t alen = family == 6 ? 16 : 4;
    memset(r, 0, knat_xt_size(KNAT_XT_DNAT, family));
    r->flags = NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED;
    memcpy(&r->min_addr, addr, alen);
    memcpy(&r->max_addr, addr, alen);
    r->min_proto.all = r->max_proto.all = htons(port);
}

void knat_xt_masquerade(void *info, int family, int random_fully) {
    unsigned flags = random_fully ? NF_NAT_RANGE_PROTO_RANDOM_FULLY : 0;
    memset(info, 0, knat_xt_size(KNAT_XT_MASQUERADE, family));
    if (family == 6) {
        ((struct nf_nat_range *)info)->flags = flags;
    } else {
        struct nf_nat_ipv4_multi_range_compat *m = info;
        m->rangesize = 1;
        m->range[0].flags = flags;
    }
}

void knat_xt_mark_target(void *info, uint32_t mark, uint32_t mask) {
    struct xt_mark_tginfo2 *m = info;
    memset(m, 0, knat_xt_size(KNAT_XT_MARK_TARGET, 4));
    m->mark = mark;
    m->mask = mask;
}
