#ifndef KNAT_XTINFO_H
#define KNAT_XTINFO_H
/*
 * The info blobs of the xt extensions kube-proxy's rules use, filled exactly as iptables 1.8.x fills them (each
 * extension's defaults, every padding byte zero: `iptables -C` compares blobs with memcmp). The libiptc shim
 * places them inside ipt_entry / ip6t_entry; the nf_tables shim sends them as nft_compat match/target info.
 *
 * Every fill function zeroes the whole blob (knat_xt_size bytes) first; `info` must hold that many bytes.
 */
#include <stddef.h>
#include <stdint.h>

typedef enum knat_xt_kind {
    /* matches */
    KNAT_XT_COMMENT,
    KNAT_XT_TCP,
    KNAT_XT_UDP,
    KNAT_XT_SCTP,
    KNAT_XT_ADDRTYPE,
    KNAT_XT_CONNTRACK,
    KNAT_XT_MARK,
    KNAT_XT_STATISTIC,
    KNAT_XT_RECENT,
    KNAT_XT_NFACCT,
    /* targets */
    KNAT_XT_REJECT,
    KNAT_XT_DNAT,
    KNAT_XT_MASQUERADE,
    KNAT_XT_MARK_TARGET,
    KNAT_XT_COUNT
} knat_xt_kind;

/* An extension's name, revision (the highest every kernel since 4.x has, as iptables 1.8.9 picks) and kind. */
typedef struct knat_xt_desc {
    const char *name;
    uint8_t revision;
    uint8_t is_target;
} knat_xt_desc;

const knat_xt_desc *knat_xt_describe(knat_xt_kind kind);
/* XT_ALIGN(sizeof(info struct)) for the family (4 or 6): the blob length iptables uses. */
size_t knat_xt_size(knat_xt_kind kind, int family);

/* Matches. A port < 0 means no --dport (all ports). */
void knat_xt_comment(void *info, const uint8_t *text, size_t length); /* at most 255 bytes kept */
void knat_xt_tcp(void *info, int dport);
void knat_xt_udp(void *info, int dport);
void knat_xt_sctp(void *info, int dport);
void knat_xt_addrtype_local(void *info, int destination); /* --src-type LOCAL (0) or --dst-type LOCAL (1) */
void knat_xt_conntrack(void *info, int negated, uint16_t state_mask);
void knat_xt_mark(void *info, uint32_t mark, uint32_t mask, int negated);
void knat_xt_statistic_random(void *info, uint32_t probability);
/* 0 when the name does not fit (199 bytes). */
int knat_xt_recent(void *info, uint32_t seconds, uint8_t check_set, const uint8_t *name, size_t length);
/* 0 when the name does not fit (31 bytes). */
int knat_xt_nfacct(void *info, const uint8_t *name, size_t length);

/* Targets. */
void knat_xt_reject(void *info, int family);
/* addr: 4 or 16 bytes (network order); port in host order. */
void knat_xt_dnat(void *info, int family, const uint8_t *addr, uint16_t port);
void knat_xt_masquerade(void *info, int family, int random_fully);
void knat_xt_mark_target(void *info, uint32_t mark, uint32_t mask); /* MARK rev 2: --set-xmark mark/mask */

/* Constants of the kernel ABI the Swift encoder needs (exported so Swift does not re-declare them). */
enum {
    KNAT_CT_STATE_INVALID = 1 << 0,     /* XT_CONNTRACK_STATE_BIT(IP_CT_INVALID-ish): see xt_conntrack.h */
    KNAT_CT_STATE_ESTABLISHED = 1 << 1, /* XT_CONNTRACK_STATE_BIT(IP_CT_ESTABLISHED) */
    KNAT_CT_STATE_RELATED = 1 << 2,     /* XT_CONNTRACK_STATE_BIT(IP_CT_RELATED) */
    KNAT_CT_STATE_NEW = 1 << 3,         /* XT_CONNTRACK_STATE_BIT(IP_CT_NEW) */
    KNAT_CT_STATE_DNAT = 1 << 7,        /* XT_CONNTRACK_STATE_DNAT */
    KNAT_RECENT_CHECK_AND_REAP = 0x01 | 0x20, /* XT_RECENT_CHECK | XT_RECENT_REAP */
    KNAT_RECENT_SET = 0x02,                   /* XT_RECENT_SET */
    KNAT_PROTO_TCP = 6,                       /* IPPROTO_TCP */
    KNAT_PROTO_UDP = 17,                      /* IPPROTO_UDP */
    KNAT_PROTO_SCTP = 132,                    /* IPPROTO_SCTP */
    KNAT_IFNAMSIZ = 16,                       /* IFNAMSIZ: an interface name and its mask, NUL included */
    KNAT_CHAIN_NAME_MAX = 28,                 /* XT_EXTENSION_MAXNAMELEN - 1: the longest chain name iptables takes */
    KNAT_RECENT_NAME_MAX = 199,               /* XT_RECENT_NAME_LEN - 1 */
    KNAT_NFACCT_NAME_MAX = 31,                /* NFACCT_NAME_MAX - 1 */
    KNAT_COMMENT_MAX = 255,                   /* XT_MAX_COMMENT_LEN - 1 */
};

#endif
