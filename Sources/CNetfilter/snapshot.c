/*
 * The table reader: a table's chains and rules, each rule labelled as libiptc's get_target would label it.
 *
 * Normally from one IPT_SO_GET_ENTRIES, walked in place: iptc_init is the same copy-out plus libiptc's parse into
 * its own cache, and a steady-state sync only has to learn that nothing differs. A layout the walk does not
 * recognise exactly as libiptc writes it is read through iptc_init instead, into the same structure, so the
 * decision engine and the lister never know which reader ran.
 */
#include "shim.h"
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/netfilter_ipv4/ip_tables.h>

static const char *const hook_names[NF_INET_NUMHOOKS] = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT",
                                                        "POSTROUTING"};

/* One getsockopt on a raw socket of the family: the x_tables read interface. 0 or an errno. */
static int xt_get(const knat_family *f, int option, void *buf, socklen_t len) {
    int fd = socket(f->af, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) return errno;
    int rc = getsockopt(fd, f->level, option, buf, &len) < 0 ? errno : 0;
    close(fd);
    return rc;
}

/* GET_INFO: struct ipt_getinfo and ip6t_getinfo are the same layout (family.c asserts it). */
int knat_get_info(const knat_family *f, const char *table, knat_snapshot *s, knat_result *res) {
    struct ipt_getinfo info;
    if (strlen(table) >= sizeof(info.name)) return knat_fail(res, ENAMETOOLONG, "%s: table name too long", table);
    memset(&info, 0, sizeof(info));
    strcpy(info.name, table);
    int rc = xt_get(f, f->so_get_info, &info, sizeof(info));
    if (rc) return knat_fail(res, rc, "%s: reading table info: %s", table, strerror(rc));
    s->size = info.size;
    s->num_entries = info.num_entries;
    s->valid_hooks = info.valid_hooks;
    memcpy(s->hook_entry, info.hook_entry, sizeof(s->hook_entry));
    memcpy(s->underflow, info.underflow, sizeof(s->underflow));
    return 0;
}

int knat_snapshot_current(const knat_snapshot *s) {
    knat_snapshot now = {0};
    knat_result scratch;
    return knat_get_info(s->f, s->table, &now, &scratch) == 0 && now.size == s->size &&
           now.num_entries == s->num_entries && now.valid_hooks == s->valid_hooks;
}

/* GET_INFO then GET_ENTRIES into a mapping of its own (huge pages where the kernel allows: large tables would
   otherwise fault in 4 KiB at a time); EAGAIN from the kernel when the table changed in between: read again. */
static int read_entries(const knat_family *f, const char *table, knat_snapshot *s, knat_result *res) {
    for (int attempt = 0; attempt < 5; attempt++) {
        int rc = knat_get_info(f, table, s, res);
        if (rc) return rc;
        size_t total = offsetof(struct ipt_get_entries, entrytable) + s->size;
        struct ipt_get_entries *g = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (g == MAP_FAILED) return knat_fail(res, ENOMEM, "%s: out of memory for a %u-byte table", table, s->size);
        madvise(g, total, MADV_HUGEPAGE);
        strcpy(g->name, table);
        g->size = s->size;
        if (!(rc = xt_get(f, f->so_get_entries, g, (socklen_t)total))) {
            s->blob = g;
            s->blob_length = total;
            return 0;
        }
        munmap(g, total);
        if (rc != EAGAIN) return knat_fail(res, rc, "%s: reading entries: %s", table, strerror(rc));
    }
    return knat_fail(res, EAGAIN, "%s: table kept changing while being read", table);
}

static int add_chain(knat_snapshot *s, const char *name, uint32_t offset, int builtin) {
    if (knat_grow((void **)&s->chains, &s->chain_cap, s->nchains, sizeof(*s->chains))) return ENOMEM;
    s->chains[s->nchains++] = (knat_chain){name, (uint32_t)s->nrules, 0, offset, (uint8_t)builtin};
    return 0;
}

static int add_rule(knat_snapshot *s, const uint8_t *entry, const char *label) {
    if (knat_grow((void **)&s->rules, &s->rule_cap, s->nrules, sizeof(*s->rules))) return ENOMEM;
    s->rules[s->nrules++] = (knat_rule){entry, label};
    return 0;
}

static const uint8_t *raw_entries(const knat_snapshot *s) {
    return (const uint8_t *)s->blob + offsetof(struct ipt_get_entries, entrytable);
}

/* Ends the open chain at its foot, the last entry taken as a rule, and checks the foot is what libiptc writes:
   the policy at the hook's underflow for a base chain, an unconditional RETURN for a user chain. */
static int close_chain(knat_snapshot *s, int hook) {
    knat_chain *c = &s->chains[s->nchains - 1];
    if (s->nrules == c->first) return 0;
    const uint8_t *foot = s->rules[--s->nrules].entry;
    c->count = (uint32_t)s->nrules - c->first;
    if (c->builtin) return hook >= 0 && s->underflow[hook] == (uint32_t)(foot - raw_entries(s));
    const struct xt_standard_target *t = (const void *)(foot + KNAT_TARGET_OFFSET(s->f, foot));
    return KNAT_TARGET_OFFSET(s->f, foot) == s->f->entry_size && t->target.u.user.name[0] == 0 &&
           t->verdict == XT_RETURN;
}

/* The label libiptc's get_target gives a kernel entry: its extension's name, a verdict, "" (fall through), or the
   user chain whose first rule a jump lands on. NULL for anything libiptc would not have written. */
static const char *raw_label(const knat_snapshot *s, uint32_t off) {
    const uint8_t *e = raw_entries(s) + off;
    const struct xt_entry_target *t = (const void *)(e + KNAT_TARGET_OFFSET(s->f, e));
    if (t->u.user.name[0]) return t->u.user.name;
    if (t->u.target_size < sizeof(struct xt_standard_target)) return NULL;
    int v = ((const struct xt_standard_target *)t)->verdict;
    if (v < 0) {
        return v == -NF_ACCEPT - 1 ? "ACCEPT" : v == -NF_DROP - 1 ? "DROP" : v == -NF_QUEUE - 1 ? "QUEUE"
             : v == XT_RETURN ? "RETURN" : NULL;
    }
    if ((uint32_t)v == off + KNAT_NEXT_OFFSET(s->f, e)) return "";
    size_t lo = 0, hi = s->nchains; /* chains are in offset order */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->chains[mid].offset == (uint32_t)v) return s->chains[mid].builtin ? NULL : s->chains[mid].name;
        if (s->chains[mid].offset < (uint32_t)v) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* Splits the entries into chains as libiptc's parser does: a base chain starts at its hook entry, a user chain
   after its ERROR head, each ends at the entry before the next start (its foot); the last entry is an ERROR.
   EBADMSG for anything else. */
static int index_raw(knat_snapshot *s) {
    const knat_family *f = s->f;
    const uint8_t *entries = raw_entries(s);
    int open_hook = -1;
    for (uint32_t off = 0; off < s->size;) {
        const uint8_t *e = entries + off;
        if (s->size - off < f->entry_size) return EBADMSG;
        uint16_t to = KNAT_TARGET_OFFSET(f, e), next = KNAT_NEXT_OFFSET(f, e);
        if (next < f->entry_size || next > s->size - off || to < f->entry_size ||
            (size_t)to + sizeof(struct xt_entry_target) > next)
            return EBADMSG;
        const struct xt_entry_target *t = (const void *)(e + to);
        if (t->u.target_size < sizeof(*t) || t->u.target_size > next - to) return EBADMSG;
        int hook = -1;
        for (int h = 0; h < NF_INET_NUMHOOKS; h++)
            if ((s->valid_hooks & (1u << h)) && s->hook_entry[h] == off) {
                if (hook >= 0) return EBADMSG;
                hook = h;
            }
        int error = strncmp(t->u.user.name, XT_ERROR_TARGET, sizeof(t->u.user.name)) == 0;
        if ((hook >= 0 || error) && s->nchains && !close_chain(s, open_hook)) return EBADMSG;
        if ((!s->nchains && hook < 0) || (hook >= 0 && error)) return EBADMSG; /* it starts with a base chain */
        if (error) {
            if (off + next == s->size) break; /* the table's end */
            const struct xt_error_target *et = (const void *)t;
            if (t->u.target_size < sizeof(*et) || !memchr(et->errorname, 0, sizeof(et->errorname))) return EBADMSG;
            if (add_chain(s, et->errorname, off + next, 0)) return ENOMEM;
            open_hook = -1;
        } else {
            if (hook >= 0 && add_chain(s, hook_names[hook], off, 1)) return ENOMEM;
            if (hook >= 0) open_hook = hook;
            if (add_rule(s, e, NULL)) return ENOMEM;
        }
        off += next;
        if (off == s->size) return EBADMSG; /* no final ERROR entry */
    }
    for (size_t i = 0; i < s->nrules; i++)
        if (!(s->rules[i].label = raw_label(s, (uint32_t)(s->rules[i].entry - entries)))) return EBADMSG;
    return 0;
}

static int is_builtin_name(const char *name) {
    for (int h = 0; h < NF_INET_NUMHOOKS; h++)
        if (!strcmp(name, hook_names[h])) return 1;
    return 0;
}

static int read_libiptc(const knat_family *f, const char *table, knat_snapshot *s, knat_result *res) {
    const knat_iptc *tc = &f->iptc;
    double started = knat_now();
    struct xtc_handle *h = s->handle = tc->ops->init(table);
    int err = errno;
    if (!h) return knat_fail(res, err ? err : EIO, "%s: iptc_init: %s", table, tc->ops->strerror(err));
    res->init_seconds = knat_now() - started;
    for (const char *c = tc->ops->first_chain(h); c; c = tc->ops->next_chain(h)) {
        /* libiptc's builtin() is a lookup by name; only base chain names can be one */
        if (add_chain(s, c, 0, is_builtin_name(c) && tc->ops->builtin(c, h))) return ENOMEM;
        for (const void *e = tc->first_rule(c, h); e; e = tc->next_rule(e, h))
            if (add_rule(s, e, tc->get_target(e, h))) return ENOMEM;
        s->chains[s->nchains - 1].count = (uint32_t)s->nrules - s->chains[s->nchains - 1].first;
    }
    return 0;
}

static uint64_t name_hash(const char *name) { return knat_fnv(KNAT_FNV_INIT, name, strlen(name)); }

/* Open addressing over the chain indices (+1; 0 is empty), at most half full. EBADMSG for a name seen twice. */
static int hash_names(knat_snapshot *s) {
    size_t n = 1024;
    while (n < 2 * s->nchains) n *= 2;
    if (!(s->slots = calloc(n, sizeof(*s->slots)))) return ENOMEM;
    s->nslots = n;
    for (size_t i = 0; i < s->nchains; i++) {
        size_t at = name_hash(s->chains[i].name) & (n - 1);
        for (; s->slots[at]; at = (at + 1) & (n - 1))
            if (!strcmp(s->chains[s->slots[at] - 1].name, s->chains[i].name)) return EBADMSG;
        s->slots[at] = (uint32_t)i + 1;
    }
    return 0;
}

const knat_chain *knat_find_chain(const knat_snapshot *s, const char *name) {
    size_t at = name_hash(name) & (s->nslots - 1);
    for (uint32_t i; (i = s->slots[at]); at = (at + 1) & (s->nslots - 1))
        if (!strcmp(s->chains[i - 1].name, name)) return &s->chains[i - 1];
    return NULL;
}

static void reset(knat_snapshot *s, const knat_family *f, const char *table) {
    knat_snapshot_release(s);
    s->f = f;
    snprintf(s->table, sizeof(s->table), "%s", table);
}

int knat_read_raw(const knat_family *f, const char *table, knat_snapshot *s, knat_result *res) {
    reset(s, f, table);
    int rc = read_entries(f, table, s, res);
    /* every entry but the heads, feet and the final ERROR is a rule: one allocation instead of regrowth */
    if (!rc && !(s->rules = malloc((s->rule_cap = s->num_entries + 1) * sizeof(*s->rules)))) rc = ENOMEM;
    if (!rc) rc = index_raw(s);
    if (!rc) rc = hash_names(s);
    if (rc == EBADMSG) reset(s, f, table); /* holds nothing: no blob */
    if (rc == ENOMEM) knat_fail(res, rc, "%s: out of memory indexing %zu chains", table, s->nchains);
    return rc;
}

int knat_read(const knat_family *f, const char *table, int via_libiptc, knat_snapshot *s, knat_result *res) {
    const char *test = getenv("KNAT_TEST_READ_VIA_LIBIPTC"); /* so a kernel test can run both readers */
    int rc = EBADMSG;
    if (!via_libiptc && !(test && test[0] == '1')) rc = knat_read_raw(f, table, s, res);
    if (rc != EBADMSG) return rc;
    reset(s, f, table);
    rc = read_libiptc(f, table, s, res);
    if (!rc) rc = hash_names(s);
    if (rc == ENOMEM) knat_fail(res, rc, "%s: out of memory indexing %zu chains", table, s->nchains);
    return rc;
}

void knat_snapshot_release(knat_snapshot *s) {
    if (s->blob) munmap(s->blob, s->blob_length);
    if (s->handle) s->f->iptc.ops->free(s->handle);
    free(s->chains);
    free(s->rules);
    free(s->slots);
    memset(s, 0, sizeof(*s));
}
