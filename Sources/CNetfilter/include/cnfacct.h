#ifndef CNFACCT_H
#define CNFACCT_H
/*
 * nfacct accounting objects over nfnetlink_acct (libmnl): make sure a named object exists, and read its
 * packet and byte counts. kube-proxy creates `ct_state_invalid_dropped_pkts` and `localhost_nps_accepted_pkts`
 * itself (pkg/proxy/iptables NewProxier, nfacct.Runner.Ensure) and reads them for its metrics; so does kube-natd.
 *
 * Objects live in the caller's network namespace. Errors follow the shim's one convention (cnetfilter.h): 0 or a
 * positive errno, with `message` saying which step failed. ENOENT from knat_nfacct_get means "no such object";
 * EPROTONOSUPPORT / ENOENT from the socket or the subsystem means the kernel has no nfnetlink_acct.
 */
#include <stddef.h>
#include <stdint.h>

/* Creates the object `name` unless it exists already (an existing one keeps its counts). */
int knat_nfacct_ensure(const char *name, char *message, size_t message_size);

/* Reads the counts of the object `name`. */
int knat_nfacct_get(const char *name, uint64_t *packets, uint64_t *bytes, char *message, size_t message_size);

#endif
