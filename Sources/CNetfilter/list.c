/* The listers: every chain of a table with its digest (read by the same reader the apply uses), the digests a
   program's chains will have once applied, and a table's size from IPT_SO_GET_INFO alone. */
#include "shim.h"

static int add(knat_chain_list *out, size_t *cap, const char *name, uint32_t rules, int builtin, uint64_t digest) {
    if (knat_grow((void **)&out->chains, cap, out->count, sizeof(*out->chains))) return ENOMEM;
    knat_chain_digest *c = &out->chains[out->count++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->rules = rules;
    c->builtin = (uint8_t)builtin;
    c->digest = digest;
    return 0;
}

void knat_chain_list_free(knat_chain_list *list) {
    free(list->chains);
    list->chains = NULL;
    list->count = 0;
}

int knat_list_table(int family, const char *table, int lock_timeout_ms, knat_chain_list *out, knat_result *result) {
    memset(result, 0, sizeof(*result));
    memset(out, 0, sizeof(*out));
    const knat_family *f = knat_family_of(family);
    if (!f) return result->error = knat_fail(result, EINVAL, "family must be 4 or 6, got %d", family);
    int fd = knat_lock(lock_timeout_ms, &result->lock_wait_seconds);
    if (fd < 0)
        return result->error = knat_fail(result, -fd, "%s: cannot take %s: %s", table, knat_lock_path(), strerror(-fd));
    knat_snapshot s = {0};
    int rc = knat_read(f, table, 0, &s, result);
    knat_unlock(fd); /* what was read is ours now (the blob, or libiptc's cache) */
    size_t cap = 0;
    for (size_t i = 0; i < s.nchains && !rc; i++) {
        const knat_chain *c = &s.chains[i];
        uint64_t digest = KNAT_FNV_INIT;
        for (uint32_t k = c->first; k < c->first + c->count; k++) {
            const knat_rule *r = &s.rules[k];
            digest = knat_rule_digest(f, digest, r->entry, r->label, knat_entry_module(f, r->entry));
        }
        rc = add(out, &cap, c->name, c->count, c->builtin, digest);
    }
    knat_snapshot_release(&s);
    if (rc == ENOMEM) knat_fail(result, rc, "%s: out of memory listing the table", table);
    if (rc) knat_chain_list_free(out);
    return result->error = rc;
}

int knat_digest_program(int family, const uint8_t *program, size_t length, knat_chain_list *out,
                        knat_result *result) {
    memset(result, 0, sizeof(*result));
    memset(out, 0, sizeof(*out));
    const knat_family *f = knat_family_of(family);
    if (!f) return result->error = knat_fail(result, EINVAL, "family must be 4 or 6, got %d", family);
    knat_rule_buf b = {0};
    if (!(b.entry = malloc(KNAT_ENTRY_CAP))) return result->error = knat_fail(result, ENOMEM, "out of memory");
    knat_reader rd = {program, length, 0};
    knat_record rec;
    size_t cap = 0;
    int more, rc = 0;
    while (!rc && (more = knat_next(&rd, &rec)) == 1) {
        char name[KNAT_CHAIN_MAX];
        if (rec.kind != KNAT_OP_CHAIN || !knat_copy_str(&rec, 0, name, sizeof(name))) {
            rc = knat_skip_rules(&rd);
            continue;
        }
        uint64_t digest = KNAT_FNV_INIT;
        uint32_t rules = 0;
        while (!rc && knat_peek_kind(&rd) >= KNAT_E_COMMENT) {
            if ((rc = knat_rule_encode(f, &rd, &b, result))) {
                rc = knat_rule_error(result, rc, "program", name, rules + 1);
            } else {
                digest = knat_rule_digest(f, digest, b.entry, b.label, b.module);
                rules++;
            }
        }
        if (!rc) rc = add(out, &cap, name, rules, 0, digest);
    }
    if (!rc && more < 0) rc = knat_fail(result, EINVAL, "truncated program");
    free(b.entry);
    if (rc == ENOMEM) knat_fail(result, rc, "out of memory");
    if (rc) knat_chain_list_free(out);
    return result->error = rc;
}

int knat_table_info_read(int family, const char *table, knat_table_info *info, knat_result *result) {
    memset(result, 0, sizeof(*result));
    memset(info, 0, sizeof(*info));
    const knat_family *f = knat_family_of(family);
    if (!f) return result->error = knat_fail(result, EINVAL, "family must be 4 or 6, got %d", family);
    knat_snapshot s = {0};
    int rc = knat_get_info(f, table, &s, result);
    if (rc) return result->error = rc;
    unsigned empty = (unsigned)__builtin_popcount(s.valid_hooks) + 1;
    *info = (knat_table_info){s.size, s.num_entries, s.valid_hooks, s.num_entries > empty ? s.num_entries - empty : 0};
    return 0;
}
