/* IPT_SO_GET_INFO / IP6T_SO_GET_INFO: a table's entry count without reading the entries. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include "ctableinfo.h"
#include "common.h"

/* IPT_SO_GET_INFO / IP6T_SO_GET_INFO: 0 with the table's size, entry count and hook mask, or -errno. */
static int table_info(int family, const char *table, unsigned *size, unsigned *entries, unsigned *hooks) {
    if (strlen(table) >= XT_TABLE_MAXNAMELEN) return -ENAMETOOLONG;
    int fd = socket(family == 6 ? AF_INET6 : AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) return -errno;
    int rc;
    if (family == 6) {
        struct ip6t_getinfo info;
        memset(&info, 0, sizeof(info));
        strcpy(info.name, table);
        socklen_t len = sizeof(info);
        rc = getsockopt(fd, IPPROTO_IPV6, IP6T_SO_GET_INFO, &info, &len);
        *size = info.size, *entries = info.num_entries, *hooks = info.valid_hooks;
    } else {
        struct ipt_getinfo info;
        memset(&info, 0, sizeof(info));
        strcpy(info.name, table);
        socklen_t len = sizeof(info);
        rc = getsockopt(fd, IPPROTO_IP, IPT_SO_GET_INFO, &info, &len);
        *size = info.size, *entries = info.num_entries, *hooks = info.valid_hooks;
    }
    int err = errno;
    close(fd);
    return rc < 0 ? -err : 0;
}

long knat_table_extra_entries(int family, const char *table) {
    unsigned size, entries, hooks;
    int rc = table_info(family, table, &size, &entries, &hooks);
    if (rc < 0) return rc;
    unsigned builtins = (unsigned)__builtin_popcount(hooks);
    return entries > builtins + 1 ? (long)(entries - builtins - 1) : 0;
}

/* Whether the kernel's table still has the snapshot's size, entry count and hooks (a cheap staleness test for a
 * snapshot taken ahead of the apply: a same-size replacement in between is not seen). */
int knat_snapshot_current(const knat_snapshot *s) {
    unsigned size, entries, hooks;
    return table_info(s->family, s->table, &size, &entries, &hooks) == 0 && size == s->size &&
           entries == s->num_entries && hooks == s->valid_hooks;
}
