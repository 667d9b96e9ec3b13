/* What differs between IPv4 and IPv6: the entry layout, the sockopts that read a table, and libiptc's two
   libraries. Everything else in the shim takes a knat_family and reads in one direction. */
#include "shim.h"
#include <netinet/in.h>
#include <sys/socket.h>
#include <libiptc/libiptc.h>
#include <libiptc/libip6tc.h>

/* The raw reader uses one struct for both families' GET_INFO and GET_ENTRIES: the kernel defines them alike. */
_Static_assert(sizeof(struct ipt_getinfo) == sizeof(struct ip6t_getinfo), "getinfo layouts");
_Static_assert(offsetof(struct ipt_getinfo, size) == offsetof(struct ip6t_getinfo, size), "getinfo layouts");
_Static_assert(offsetof(struct ipt_get_entries, entrytable) == offsetof(struct ip6t_get_entries, entrytable),
               "get_entries layouts");

/* libip4tc and libip6tc type their entries; the shim passes entries as bytes. */
static int append4(const char *c, const void *e, struct xtc_handle *h) { return iptc_append_entry(c, e, h); }
static int insert4(const char *c, const void *e, unsigned i, struct xtc_handle *h) {
    return iptc_insert_entry(c, e, i, h);
}
static const void *first4(const char *c, struct xtc_handle *h) { return iptc_first_rule(c, h); }
static const void *next4(const void *e, struct xtc_handle *h) { return iptc_next_rule(e, h); }
static const char *target4(const void *e, struct xtc_handle *h) { return iptc_get_target(e, h); }

static int append6(const char *c, const void *e, struct xtc_handle *h) { return ip6tc_append_entry(c, e, h); }
static int insert6(const char *c, const void *e, unsigned i, struct xtc_handle *h) {
    return ip6tc_insert_entry(c, e, i, h);
}
static const void *first6(const char *c, struct xtc_handle *h) { return ip6tc_first_rule(c, h); }
static const void *next6(const void *e, struct xtc_handle *h) { return ip6tc_next_rule(e, h); }
static const char *target6(const void *e, struct xtc_handle *h) { return ip6tc_get_target(e, h); }

static const knat_family ipv4 = {
    .family = 4, .af = AF_INET, .level = IPPROTO_IP,
    .so_get_info = IPT_SO_GET_INFO, .so_get_entries = IPT_SO_GET_ENTRIES,
    .entry_size = sizeof(struct ipt_entry), .ip_size = sizeof(struct ipt_ip), .addr_len = 4,
    .src = offsetof(struct ipt_entry, ip.src), .smsk = offsetof(struct ipt_entry, ip.smsk),
    .dst = offsetof(struct ipt_entry, ip.dst), .dmsk = offsetof(struct ipt_entry, ip.dmsk),
    .iniface = offsetof(struct ipt_entry, ip.iniface), .iniface_mask = offsetof(struct ipt_entry, ip.iniface_mask),
    .proto = offsetof(struct ipt_entry, ip.proto), .flags = offsetof(struct ipt_entry, ip.flags),
    .invflags = offsetof(struct ipt_entry, ip.invflags),
    .target_offset = offsetof(struct ipt_entry, target_offset), .next_offset = offsetof(struct ipt_entry, next_offset),
    .inv_src = IPT_INV_SRCIP, .inv_dst = IPT_INV_DSTIP, .inv_in = IPT_INV_VIA_IN,
    .proto_flag = 0, /* iptables sets only the protocol number for -p */
    .iptc = {&iptc_ops, iptc_delete_chain, iptc_delete_num_entry, append4, insert4, first4, next4, target4},
};

static const knat_family ipv6 = {
    .family = 6, .af = AF_INET6, .level = IPPROTO_IPV6,
    .so_get_info = IP6T_SO_GET_INFO, .so_get_entries = IP6T_SO_GET_ENTRIES,
    .entry_size = sizeof(struct ip6t_entry), .ip_size = sizeof(struct ip6t_ip6), .addr_len = 16,
    .src = offsetof(struct ip6t_entry, ipv6.src), .smsk = offsetof(struct ip6t_entry, ipv6.smsk),
    .dst = offsetof(struct ip6t_entry, ipv6.dst), .dmsk = offsetof(struct ip6t_entry, ipv6.dmsk),
    .iniface = offsetof(struct ip6t_entry, ipv6.iniface),
    .iniface_mask = offsetof(struct ip6t_entry, ipv6.iniface_mask),
    .proto = offsetof(struct ip6t_entry, ipv6.proto), .flags = offsetof(struct ip6t_entry, ipv6.flags),
    .invflags = offsetof(struct ip6t_entry, ipv6.invflags),
    .target_offset = offsetof(struct ip6t_entry, target_offset),
    .next_offset = offsetof(struct ip6t_entry, next_offset),
    .inv_src = IP6T_INV_SRCIP, .inv_dst = IP6T_INV_DSTIP, .inv_in = IP6T_INV_VIA_IN,
    .proto_flag = IP6T_F_PROTO,
    .iptc = {&ip6tc_ops, ip6tc_delete_chain, ip6tc_delete_num_entry, append6, insert6, first6, next6, target6},
};

const knat_family *knat_family_of(int family) { return family == 4 ? &ipv4 : family == 6 ? &ipv6 : NULL; }
