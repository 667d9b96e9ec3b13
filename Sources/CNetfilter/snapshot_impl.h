/*
 * One IP family's raw table snapshot: the entries as IPT_SO_GET_ENTRIES returns them, indexed by chain, and the
 * "already in its wanted state?" check over it. Included by apply4.c / apply6.c after family_impl.h, which
 * defines ENTRY, encode_rule, same_matches and the family macros; these also define GETINFO, GETENTRIES,
 * SO_GETINFO, SO_GETENTRIES, SOCKLEVEL and SOCKFAMILY.
 *
 * Why: iptc_init is the kernel's copy-out plus libiptc's parse into its own rule cache (at 30k Services the nat
 * table holds ~680k entries, 150 MB; the parse is ~40% of iptc_init). A steady-state sync only has to learn that
 * nothing differs, so it reads the entries once, walks them in place and commits nothing. Anything the walk does
 * not recognise exactly as libiptc would have written it counts as "differs": the caller then takes the libiptc
 * path, which decides and writes as before.
 */
#include <sys/mman.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

static const char *const hook_names[NF_INET_NUMHOOKS] = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT",
                                                        "POSTROUTING"};

/* Reads the table's entries (GET_INFO then GET_ENTRIES; EAGAIN when it changed in between: read again). */
static int snapshot_read(const char *table, knat_snapshot *s, knat_result *res) {
    if (strlen(table) >= XT_TABLE_MAXNAMELEN) {
        knat_set_message(res, "%s: table name too long", table);
        return ENAMETOOLONG;
    }
    int fd = socket(SOCKFAMILY, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) {
        int err = errno;
        knat_set_message(res, "%s: socket: %s", table, strerror(err));
        return err;
    }
    int rc = 0;
    for (int attempt = 0; attempt < 5; attempt++) {
        GETINFO info;
        memset(&info, 0, sizeof(info));
        strcpy(info.name, table);
        socklen_t len = sizeof(info);
        if (getsockopt(fd, SOCKLEVEL, SO_GETINFO, &info, &len) < 0) {
            rc = errno;
            knat_set_message(res, "%s: reading table info: %s", table, strerror(rc));
            break;
        }
        size_t total = sizeof(GETENTRIES) + info.size;
        /* Its own mapping, with huge pages where the kernel allows them: at 30k Services this is 150 MB that the
           kernel's copy-out would otherwise fault in 4 KiB at a time. */
        GETENTRIES *g = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (g == MAP_FAILED) g = NULL;
        else madvise(g, total, MADV_HUGEPAGE);
        if (!g) {
            rc = ENOMEM;
            knat_set_message(res, "%s: out of memory for a %u-byte table", table, info.size);
            break;
        }
        memset(g, 0, sizeof(GETENTRIES));
        strcpy(g->name, table);
        g->size = info.size;
        len = (socklen_t)total;
        if (getsockopt(fd, SOCKLEVEL, SO_GETENTRIES, g, &len) < 0) {
            rc = errno;
            munmap(g, total);
            if (rc == EAGAIN) continue; /* replaced between the two calls */
            knat_set_message(res, "%s: reading entries: %s", table, strerror(rc));
            break;
        }
        s->blob = g;
        s->blob_length = total;
        s->entries = (const uint8_t *)g->entrytable;
        s->size = info.size;
        s->num_entries = info.num_entries;
        s->valid_hooks = info.valid_hooks;
        memcpy(s->hook_entry, info.hook_entry, sizeof(s->hook_entry));
        memcpy(s->underflow, info.underflow, sizeof(s->underflow));
        rc = 0;
        break;
    }
    if (!s->blob && !rc) {
        rc = EAGAIN;
        knat_set_message(res, "%s: table kept changing while being read", table);
    }
    close(fd);
    return rc;
}

static int snapshot_add_chain(knat_snapshot *s, const char *name, uint32_t first, int builtin) {
    if (s->nchains == s->capacity) {
        size_t cap = s->capacity ? s->capacity * 2 : 1024;
        knat_snapshot_chain *p = realloc(s->chains, cap * sizeof(*p));
        if (!p) return 0;
        s->chains = p;
        s->capacity = cap;
    }
    s->chains[s->nchains++] = (knat_snapshot_chain){name, first, first, (uint8_t)builtin};
    return 1;
}

/* Closes the open chain at its foot (the entry at prev) and checks the foot is what libiptc writes: the policy
   at the hook's underflow for a base chain, an unconditional RETURN for a user chain. */
static int snapshot_close_chain(knat_snapshot *s, uint32_t prev, int hook) {
    if (!s->nchains) return 1;
    knat_snapshot_chain *c = &s->chains[s->nchains - 1];
    if (prev < c->first) return 0; /* a chain without its foot */
    c->end = prev;
    if (c->builtin) return hook >= 0 && s->underflow[hook] == prev;
    const ENTRY *e = (const ENTRY *)(s->entries + prev);
    const struct xt_standard_target *t = (const void *)((const uint8_t *)e + e->target_offset);
    return e->target_offset == sizeof(ENTRY) && t->target.u.user.name[0] == 0 && t->verdict == XT_RETURN;
}

static uint64_t name_hash(const char *name) { return knat_fnv(KNAT_FNV_INIT, name, strlen(name)); }

/* Open addressing over the chain indices (+1; 0 is empty), at most half full. 0, ENOMEM, or EBADMSG for a
   name that appears twice. */
static int snapshot_hash_names(knat_snapshot *s) {
    size_t n = 1024;
    while (n < 2 * s->nchains) n *= 2;
    s->slots = calloc(n, sizeof(*s->slots));
    if (!s->slots) return ENOMEM;
    s->nslots = n;
    for (size_t i = 0; i < s->nchains; i++) {
        size_t at = name_hash(s->chains[i].name) & (n - 1);
        while (s->slots[at]) {
            if (!strcmp(s->chains[s->slots[at] - 1].name, s->chains[i].name)) return EBADMSG;
            at = (at + 1) & (n - 1);
        }
        s->slots[at] = (uint32_t)i + 1;
    }
    return 0;
}

/* Splits the entries into chains as libiptc's parser does: a base chain starts at its hook entry, a user chain
   after its ERROR head, each ends at the entry before the next start (its foot); the last entry is an ERROR.
   0 when the layout is one libiptc could have written; EBADMSG (s->comparable = 0) otherwise. */
static int snapshot_index(knat_snapshot *s) {
    uint32_t off = 0, prev = 0;
    int open_hook = -1, seen_end = 0;
    while (off < s->size) {
        if (s->size - off < sizeof(ENTRY)) return EBADMSG;
        const ENTRY *e = (const ENTRY *)(s->entries + off);
        if (e->next_offset < sizeof(ENTRY) || e->next_offset > s->size - off ||
            e->target_offset < sizeof(ENTRY) ||
            (size_t)e->target_offset + sizeof(struct xt_entry_target) > e->next_offset)
            return EBADMSG;
        const struct xt_entry_target *t = (const void *)((const uint8_t *)e + e->target_offset);
        if (t->u.target_size < sizeof(struct xt_entry_target) ||
            t->u.target_size > e->next_offset - e->target_offset)
            return EBADMSG;
        int hook = -1;
        for (int h = 0; h < NF_INET_NUMHOOKS; h++)
            if ((s->valid_hooks & (1u << h)) && s->hook_entry[h] == off) {
                if (hook >= 0) return EBADMSG;
                hook = h;
            }
        int error = strncmp(t->u.user.name, XT_ERROR_TARGET, sizeof(t->u.user.name)) == 0;
        if (hook >= 0 || error) {
            if (off && !snapshot_close_chain(s, prev, open_hook)) return EBADMSG;
        }
        if (!s->nchains && hook < 0) return EBADMSG; /* the table starts with a base chain */
        if (hook >= 0) {
            if (error) return EBADMSG;
            if (!snapshot_add_chain(s, hook_names[hook], off, 1)) return ENOMEM;
            open_hook = hook;
        } else if (error) {
            if (off + e->next_offset == s->size) {
                seen_end = 1;
                break;
            }
            const struct xt_error_target *et = (const void *)t;
            if (t->u.target_size < sizeof(*et) || strnlen(et->errorname, sizeof(et->errorname)) == sizeof(et->errorname))
                return EBADMSG;
            if (!snapshot_add_chain(s, et->errorname, off + e->next_offset, 0)) return ENOMEM;
            open_hook = -1;
        }
        prev = off;
        off += e->next_offset;
    }
    if (!seen_end) return EBADMSG;
    return snapshot_hash_names(s);
}

static const knat_snapshot_chain *snapshot_find(const knat_snapshot *s, const char *name) {
    size_t at = name_hash(name) & (s->nslots - 1);
    for (uint32_t i; (i = s->slots[at]); at = (at + 1) & (s->nslots - 1))
        if (!strcmp(s->chains[i - 1].name, name)) return &s->chains[i - 1];
    return NULL;
}

/* The label libiptc's get_target would give the entry at off: a verdict, "" (fall through), a user chain's
   name for a jump to its first rule, or the extension target's name. NULL for anything else. */
static const char *snapshot_label(const knat_snapshot *s, uint32_t off) {
    const ENTRY *e = (const ENTRY *)(s->entries + off);
    const struct xt_entry_target *t = (const void *)((const uint8_t *)e + e->target_offset);
    if (t->u.user.name[0]) return t->u.user.name;
    if (t->u.target_size < sizeof(struct xt_standard_target)) return NULL;
    int v = ((const struct xt_standard_target *)t)->verdict;
    if (v < 0) {
        if (v == -NF_ACCEPT - 1) return "ACCEPT";
        if (v == -NF_DROP - 1) return "DROP";
        if (v == -NF_QUEUE - 1) return "QUEUE";
        if (v == XT_RETURN) return "RETURN";
        return NULL;
    }
    if ((uint32_t)v == off + e->next_offset) return "";
    size_t lo = 0, hi = s->nchains; /* chains are in offset order */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->chains[mid].first == (uint32_t)v) return s->chains[mid].builtin ? NULL : s->chains[mid].name;
        if (s->chains[mid].first < (uint32_t)v) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* same_rule over the snapshot. */
static int snapshot_same_rule(const knat_snapshot *s, uint32_t off, const builder *b) {
    if (!same_entry((const ENTRY *)(s->entries + off), b)) return 0;
    const char *target = snapshot_label(s, off);
    return target && !strcmp(target, b->label);
}

static uint32_t snapshot_next(const knat_snapshot *s, uint32_t off) {
    return off + ((const ENTRY *)(s->entries + off))->next_offset;
}

/* The rules of the program that follow the reader equal the chain's? Advances the reader past what it read. */
static int snapshot_chain_matches(const knat_snapshot *s, const knat_snapshot_chain *c, knat_reader *rd,
                                  builder *b, knat_result *res) {
    uint32_t off = c->first;
    while (knat_peek_kind(rd) >= KNAT_E_COMMENT) {
        int rc = encode_rule(rd, b, res);
        if (rc) return -rc;
        if (off >= c->end || !snapshot_same_rule(s, off, b)) return 0;
        off = snapshot_next(s, off);
    }
    return off == c->end;
}

typedef struct snapshot_jump {
    char base[KNAT_CHAIN_MAX];
    builder rule;
} snapshot_jump;

/* Would apply_impl leave this table exactly as it is (no chain created, flushed or deleted, no rule appended,
   inserted or deleted)? Mirrors its decisions one by one. 1 yes, 0 no, -errno for a malformed program. */
static int snapshot_unchanged(const knat_snapshot *s, const uint8_t *prog, size_t len, knat_result *res) {
    int verdict = 1;
    uint8_t *declared = calloc(s->nchains ? s->nchains : 1, 1); /* per snapshot chain: the program declares it */
    const char *prefixes[KNAT_MAX_PREFIXES];
    size_t prefix_len[KNAT_MAX_PREFIXES], nprefixes = 0;
    snapshot_jump *jumps = NULL;
    size_t njumps = 0;
    unsigned unchanged = 0;
    char name[KNAT_CHAIN_MAX];
    builder b = {0};
    knat_record rec;
    knat_reader rd = {prog, len, 0};
    b.buf = malloc(KNAT_ENTRY_CAP);
    if (!b.buf || !declared) { verdict = -ENOMEM; goto done; }

    int more;
    while (verdict == 1 && (more = knat_next(&rd, &rec)) == 1) {
        switch (rec.kind) {
        case KNAT_OP_STALE_PREFIX:
            if (nprefixes == KNAT_MAX_PREFIXES) { verdict = -E2BIG; break; }
            prefixes[nprefixes] = (const char *)rec.payload;
            prefix_len[nprefixes++] = rec.length;
            break;
        case KNAT_OP_CHAIN:
        case KNAT_OP_ENSURE_CHAIN: {
            if (!knat_copy_str(&rec, 0, name, sizeof(name))) { verdict = -ENAMETOOLONG; break; }
            const knat_snapshot_chain *c = snapshot_find(s, name);
            if (!c) { verdict = 0; break; } /* would be created */
            declared[c - s->chains] = 1;
            if (rec.kind == KNAT_OP_ENSURE_CHAIN) {
                if (skip_rules(&rd)) verdict = -EINVAL;
                break;
            }
            if (c->builtin) { verdict = 0; break; } /* apply_impl refuses: let it say so */
            int same = snapshot_chain_matches(s, c, &rd, &b, res);
            if (same < 0) verdict = same;
            else if (!same) verdict = 0;
            else unchanged++;
            break;
        }
        case KNAT_OP_JUMP: {
            if (njumps % 8 == 0) {
                snapshot_jump *p = realloc(jumps, (njumps + 8) * sizeof(*jumps));
                if (!p) { verdict = -ENOMEM; break; }
                jumps = p;
            }
            snapshot_jump *j = &jumps[njumps];
            memset(j, 0, sizeof(*j));
            if (!knat_copy_str(&rec, 0, j->base, sizeof(j->base))) { verdict = -ENAMETOOLONG; break; }
            if (!(j->rule.buf = malloc(KNAT_ENTRY_CAP))) { verdict = -ENOMEM; break; }
            njumps++;
            int rc = encode_rule(&rd, &j->rule, res);
            if (rc) verdict = -rc;
            break;
        }
        case KNAT_OP_DELETE_CHAIN:
            /* Decided once every declared chain is known (below). */
            if (skip_rules(&rd)) verdict = -EINVAL;
            break;
        case KNAT_OP_DELETE_RULE: {
            if (!knat_copy_str(&rec, 0, name, sizeof(name))) { verdict = -ENAMETOOLONG; break; }
            int rc = encode_rule(&rd, &b, res);
            if (rc) { verdict = -rc; break; }
            const knat_snapshot_chain *c = snapshot_find(s, name);
            if (!c) break;
            for (uint32_t off = c->first; off < c->end && verdict == 1; off = snapshot_next(s, off))
                if (snapshot_same_rule(s, off, &b)) verdict = 0; /* would be deleted */
            break;
        }
        default:
            verdict = -EINVAL;
        }
    }
    if (verdict != 1) goto done;
    if (more < 0) { verdict = -EINVAL; goto done; }

    /* Stale chains: a listed deletion that exists, or a service-prefixed chain nobody declares. */
    rd = (knat_reader){prog, len, 0};
    while (verdict == 1 && knat_next(&rd, &rec) == 1) {
        if (rec.kind != KNAT_OP_DELETE_CHAIN || !knat_copy_str(&rec, 0, name, sizeof(name))) continue;
        const knat_snapshot_chain *c = snapshot_find(s, name);
        if (c && !c->builtin && !declared[c - s->chains]) verdict = 0;
    }
    for (size_t i = 0; verdict == 1 && nprefixes && i < s->nchains; i++) {
        const knat_snapshot_chain *c = &s->chains[i];
        if (c->builtin) continue;
        for (size_t p = 0; p < nprefixes; p++)
            if (!strncmp(c->name, prefixes[p], prefix_len[p])) {
                if (!declared[i]) verdict = 0;
                break;
            }
    }

    /* Jumps: each base chain's group already at its top, in order, and nowhere else. */
    for (size_t i = 0; verdict == 1 && i < njumps; i++) {
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++) seen = !strcmp(jumps[k].base, jumps[i].base);
        if (seen) continue;
        const knat_snapshot_chain *c = snapshot_find(s, jumps[i].base);
        if (!c) { verdict = 0; break; }
        size_t index = 0, n = 0;
        const builder *group[KNAT_MAX_JUMPS];
        for (size_t k = i; k < njumps && n < KNAT_MAX_JUMPS; k++)
            if (!strcmp(jumps[k].base, jumps[i].base)) group[n++] = &jumps[k].rule;
        for (uint32_t off = c->first; off < c->end && verdict == 1; off = snapshot_next(s, off), index++) {
            if (index < n) {
                if (!snapshot_same_rule(s, off, group[index])) verdict = 0;
                continue;
            }
            for (size_t k = 0; k < n && verdict == 1; k++)
                if (snapshot_same_rule(s, off, group[k])) verdict = 0; /* a second copy: would be removed */
        }
        if (index < n) verdict = 0;
    }
    if (verdict == 1) res->chains_unchanged = unchanged;

done:
    for (size_t i = 0; i < njumps; i++) free(jumps[i].rule.buf);
    free(jumps);
    free(b.buf);
    free(declared);
    return verdict;
}

static int snapshot_take_impl(const char *table, knat_snapshot *s, knat_result *res) {
    int rc = snapshot_read(table, s, res);
    if (rc) return rc;
    rc = snapshot_index(s);
    if (rc == EBADMSG) {
        s->comparable = 0;
        return 0;
    }
    if (rc) {
        knat_set_message(res, "%s: out of memory indexing %zu chains", table, s->nchains);
        return rc;
    }
    s->comparable = 1;
    return 0;
}

/* list_libiptc's lines from the snapshot: the same chains in the same (kernel) order, the same digests.
   -EBADMSG when a jump does not resolve (the caller then asks libiptc). */
static long snapshot_list(const knat_snapshot *s, knat_text *out) {
    for (size_t i = 0; i < s->nchains; i++) {
        const knat_snapshot_chain *c = &s->chains[i];
        uint64_t digest = KNAT_FNV_INIT;
        unsigned rules = 0;
        for (uint32_t off = c->first; off < c->end; off = snapshot_next(s, off)) {
            const ENTRY *e = (const ENTRY *)(s->entries + off);
            const struct xt_entry_target *t = (const void *)((const uint8_t *)e + e->target_offset);
            const char *label = snapshot_label(s, off);
            if (!label) return -EBADMSG;
            rules++;
            digest = digest_entry(digest, e, label, t->u.user.name[0] != 0);
        }
        knat_text_line(out, "%s\t%d\t%u\t%016llx\n", c->name, c->builtin, rules, (unsigned long long)digest);
    }
    return (long)out->used;
}

static long list_impl(const char *table, knat_text *out, knat_result *res) {
    knat_snapshot s = {0};
    long n = -EBADMSG;
    /* Test hook: KNAT_TEST_LIST_VIA_LIBIPTC=1 lists through libiptc, so a test can compare both readers. */
    const char *via = getenv("KNAT_TEST_LIST_VIA_LIBIPTC");
    int libiptc_only = via && via[0] == '1';
    if (!libiptc_only && snapshot_take_impl(table, &s, res) == 0 && s.comparable) n = snapshot_list(&s, out);
    knat_snapshot_release(&s);
    if (n != -EBADMSG) return n;
    out->used = 0;
    res->message[0] = 0;
    return list_libiptc(table, out, res);
}
