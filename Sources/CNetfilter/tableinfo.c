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

long knat_table_extra_entries(int family, const char *table) {
    if (strlen(table) >= XT_TABLE_MAXNAMELEN) return -ENAMETOOLONG;
    int fd = socket(family == 6 ? AF_INET6 : AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) return -errno;
    unsigned int entries, hooks;
    int rc;
    if (family == 6) {
        struct ip6t_getinfo info;
        memset(&info, 0, sizeof(info));
        strcpy(info.name, table);
        socklen_t len = sizeof(info);
        rc = getsockopt(fd, IPPROTO_IPV6, IP6T_SO_GET_INFO, &info, &len);
        entries = info.num_entries;
        hooks = info.valid_hooks;
    } else {
        struct ipt_getinfo info;
        memset(&info, 0, sizeof(info));
        strcpy(info.name, table);
        socklen_t len = sizeof(info);
        rc = getsockopt(fd, IPPROTO_IP, IPT_SO_GET_INFO, &info, &len);
        entries = info.num_entries;
        hooks = info.valid_hooks;
    }
    int err = errno;
    close(fd);
    if (rc < 0) return -err;
    unsigned builtins = (unsigned)__builtin_popcount(hooks);
    return entries > builtins + 1 ? (long)(entries - builtins - 1) : 0;
}

/* Whether the kernel's table still has the snapshot's size, entry count and hooks (a cheap staleness test for a
 * snapshot taken ahead of the apply: a same-size replacement in between is not seen). */
int knat_snapshot_current(const knat_snapshot *s) {
    int fd = socket(s->family == 6 ? AF_INET6 : AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) return 0;
    int rc;
    unsigned size, entries, hooks;
    if (s->family == 6) {
        struct ip6t_getinfo info;
        memset(&info, 0, sizeof(info));
        strcpy(info.name, s->table);
        socklen_t len = sizeof(info);
        rc = getsockopt(fd, IPPROTO_IPV6, IP6T_SO_GET_INFO, &info, &len);
        size = info.size, entries = info.num_entries, hooks = info.valid_hooks;
    } else {
        struct ipt_getinfo info;
        memset(&info, 0, sizeof(info));
        strcpy(info.name, s->table);
        socklen_t len = sizeof(info);
        rc = getsockopt(fd, IPPROTO_IP, IPT_SO_GET_INFO, &info, &len);
        size = info.size, entries = info.num_entries, hooks = info.valid_hooks;
    }
    close(fd);
    return rc == 0 && size == s->size && entries == s->num_entries && hooks == s->valid_hooks;
}
