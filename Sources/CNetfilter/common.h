/* Internal helpers shared by the IPv4 and IPv6 halves of the shim. */
#ifndef KNAT_COMMON_H
#define KNAT_COMMON_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "cnetfilter.h"
#include "knat_xtinfo.h"

#define KNAT_LOCK_PATH "/run/xtables.lock"
#define KNAT_CHAIN_MAX 32 /* xt_chainlabel; chain names themselves are at most 28 characters */

double knat_now(void);
void knat_set_message(knat_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Takes /run/xtables.lock (LOCK_EX). Returns the fd, or -errno; waited seconds in *waited. */
int knat_lock(int timeout_ms, double *waited);
void knat_unlock(int fd);

/* A sorted set of chain names (pointers into the program), for the stale-chain test. */
typedef struct knat_names {
    char (*names)[KNAT_CHAIN_MAX];
    size_t count, capacity;
} knat_names;
int knat_names_add(knat_names *s, const char *name);
void knat_names_sort(knat_names *s);
int knat_names_contains(const knat_names *s, const char *name);
void knat_names_free(knat_names *s);

/* A table's entries as IPT_SO_GET_ENTRIES returned them, split into chains (see snapshot_impl.h). */
typedef struct knat_snapshot_chain {
    const char *name; /* into the entries (a user chain's ERROR head) or a static base chain name */
    uint32_t first;   /* offset of the first rule */
    uint32_t end;     /* offset of the foot (policy or RETURN): the rules are [first, end) */
    uint8_t builtin;
} knat_snapshot_chain;

struct knat_snapshot {
    int family;
    char table[32];
    void *blob; /* the ipt_get_entries / ip6t_get_entries mapping */
    size_t blob_length;
    const uint8_t *entries;
    uint32_t size, num_entries, valid_hooks;
    uint32_t hook_entry[5], underflow[5];
    int comparable; /* 0: a layout libiptc would not write; every check says "differs" */
    knat_snapshot_chain *chains; /* in offset order */
    size_t nchains, capacity;
    uint32_t *slots; /* name hash: chain index + 1, 0 empty */
    size_t nslots;
};

int knat_snapshot_take4(const char *table, knat_snapshot *s, knat_result *result);
int knat_snapshot_take6(const char *table, knat_snapshot *s, knat_result *result);
/* 1: applying the program would change nothing; 0: it would (or the snapshot is not comparable); -errno. */
int knat_snapshot_unchanged4(const knat_snapshot *s, const uint8_t *program, size_t length, knat_result *result);
int knat_snapshot_unchanged6(const knat_snapshot *s, const uint8_t *program, size_t length, knat_result *result);
/* Frees what a snapshot holds (not the struct itself: list_impl keeps one on the stack). */
void knat_snapshot_release(knat_snapshot *s);
/* Does the kernel's table still have the snapshot's size, entry count and hooks? */
int knat_snapshot_current(const knat_snapshot *s);

int knat_apply_table4(const char *table, const uint8_t *program, size_t length, knat_result *result);
int knat_apply_table6(const char *table, const uint8_t *program, size_t length, knat_result *result);
/* A growing text buffer (knat_list_table's output). */
typedef struct knat_text {
    char *data;
    size_t used, capacity;
    int failed; /* out of memory */
} knat_text;
void knat_text_line(knat_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

long knat_list_table4(const char *table, knat_text *out, knat_result *result);
long knat_list_table6(const char *table, knat_text *out, knat_result *result);
long knat_digest_program4(const uint8_t *program, size_t length, knat_text *out, knat_result *result);
long knat_digest_program6(const uint8_t *program, size_t length, knat_text *out, knat_result *result);
/* Test hook: with KNAT_TEST_PAUSE_BEFORE_COMMIT_MS set, the first attempt sleeps that long between iptc_init
 * and iptc_commit, so a kernel test can change the table in between and prove the EAGAIN retry
 * deterministically. Unset in production; costs one getenv per commit. */
void knat_test_pause_before_commit(int attempt);

#endif
