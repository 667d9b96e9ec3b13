/* IPv6 half of the shim (libip6tc). */
#include "common.h"
#include <libiptc/libip6tc.h>

#define KNAT_FAM 6
#define ENTRY struct ip6t_entry
#define TC(x) ip6tc_##x
#define HDR ipv6
#define ADDRLEN 16
#define INV_SRC IP6T_INV_SRCIP
#define INV_DST IP6T_INV_DSTIP
#define INV_IN IP6T_INV_VIA_IN
/* ip6tables also flags that a protocol was given (IP6T_F_PROTO). */
#define SET_PROTO(e, p) ((e)->ipv6.proto = (p), (e)->ipv6.flags |= IP6T_F_PROTO)


#include "family_impl.h"

#define GETINFO struct ip6t_getinfo
#define GETENTRIES struct ip6t_get_entries
#define SO_GETINFO IP6T_SO_GET_INFO
#define SO_GETENTRIES IP6T_SO_GET_ENTRIES
#define SOCKLEVEL IPPROTO_IPV6
#define SOCKFAMILY AF_INET6
#include "snapshot_impl.h"

int knat_apply_table6(const char *table, const uint8_t *program, size_t length, knat_result *result) {
    return apply_impl(table, program, length, result);
}

long knat_list_table6(const char *table, knat_text *out, knat_result *result) {
    return list_impl(table, out, result);
}

long knat_digest_program6(const uint8_t *program, size_t length, knat_text *out, knat_result *result) {
    return digest_program_impl(program, length, out, result);
}

int knat_snapshot_take6(const char *table, knat_snapshot *s, knat_result *result) {
    return snapshot_take_impl(table, s, result);
}

int knat_snapshot_unchanged6(const knat_snapshot *s, const uint8_t *program, size_t length, knat_result *result) {
    return snapshot_unchanged(s, program, length, result);
}
