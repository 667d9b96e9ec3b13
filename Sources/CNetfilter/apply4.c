/* IPv4 half of the shim (libip4tc). */
#include "common.h"
#include <libiptc/libiptc.h>

#define KNAT_FAM 4
#define ENTRY struct ipt_entry
#define TC(x) iptc_##x
#define HDR ip
#define ADDRLEN 4
#define INV_SRC IPT_INV_SRCIP
#define INV_DST IPT_INV_DSTIP
#define INV_IN IPT_INV_VIA_IN
/* iptables sets only the protocol number for -p on IPv4. */
#define SET_PROTO(e, p) ((e)->ip.proto = (p))


#include "family_impl.h"

#define GETINFO struct ipt_getinfo
#define GETENTRIES struct ipt_get_entries
#define SO_GETINFO IPT_SO_GET_INFO
#define SO_GETENTRIES IPT_SO_GET_ENTRIES
#define SOCKLEVEL IPPROTO_IP
#define SOCKFAMILY AF_INET
#include "snapshot_impl.h"

int knat_apply_table4(const char *table, const uint8_t *program, size_t length, knat_result *result) {
    return apply_impl(table, program, length, result);
}

long knat_list_table4(const char *table, knat_text *out, knat_result *result) {
    return list_impl(table, out, result);
}

long knat_digest_program4(const uint8_t *program, size_t length, knat_text *out, knat_result *result) {
    return digest_program_impl(program, length, out, result);
}

int knat_snapshot_take4(const char *table, knat_snapshot *s, knat_result *result) {
    return snapshot_take_impl(table, s, result);
}

int knat_snapshot_unchanged4(const knat_snapshot *s, const uint8_t *program, size_t length, knat_result *result) {
    return snapshot_unchanged(s, program, length, result);
}
