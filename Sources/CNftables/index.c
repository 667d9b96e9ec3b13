/*
 * The program index: per (family, table), what the last declared program said chain by chain (rule tags and
 * each chain's digest) and the table's digest built from them. A program that names its base and its changed
 * chains updates the index in O(those chains); any other program is indexed whole. The stamp, the "nothing
 * changed" shortcut and the incremental plan all rest on these digests, so a one-chain change hashes one chain.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include "internal.h"

knft_index *knft_index_of(knft_indexes *set, int family, const char *table) {
    for (size_t i = 0; i < set->n; i++)
        if (set->items[i]->family == family && !strcmp(set->items[i]->table, table)) return set->items[i];
    knft_index **p = realloc(set->items, (set->n + 1) * sizeof(*p));
    if (!p) return NULL;
    set->items = p;
    knft_index *x = calloc(1, sizeof(*x));
    if (!x) return NULL;
    x->family = family;
    snprintf(x->table, sizeof(x->table), "%s", table);
    set->items[set->n++] = x;
    return x;
}

static void index_clear(knft_index *x) {
    for (size_t i = 0; i < x->nchains; i++) {
        free(x->chains[i].name);
        free(x->chains[i].tags);
    }
    free(x->chains);
    free(x->slots);
    x->chains = NULL;
    x->slots = NULL;
    x->nchains = x->cap = x->live = x->nslots = 0;
    x->sum = x->others = 0;
    x->id = 0;
    x->model_epoch = 0;
}

void knft_index_free(knft_index *x) { index_clear(x); }

static long slot_of(const knft_index *x, const char *name, uint64_t h) {
    if (!x->nslots) return -1;
    for (size_t i = h & (x->nslots - 1);; i = (i + 1) & (x->nslots - 1)) {
        uint32_t s = x->slots[i];
        if (!s) return -1;
        const knft_index_chain *c = &x->chains[s - 1];
        if (c->name_hash == h && !strcmp(c->name, name)) return (long)s - 1;
    }
}

const knft_index_chain *knft_index_chain_named(const knft_index *x, const char *name, uint64_t h) {
    long k = slot_of(x, name, h);
    return k >= 0 && x->chains[k].live ? &x->chains[k] : NULL;
}

/* Rebuilds the slots over the live chains only (dropping removed ones), with room for `more`. */
static int compact(knft_index *x, size_t more) {
    size_t n = 0;
    for (size_t i = 0; i < x->nchains; i++) {
        if (x->chains[i].live) x->chains[n++] = x->chains[i];
        else {
            free(x->chains[i].name);
            free(x->chains[i].tags);
        }
    }
    x->nchains = n;
    size_t nslots = 64;
    while (nslots < (n + more) * 2 + 2) nslots *= 2;
    uint32_t *slots = calloc(nslots, sizeof(*slots));
    if (!slots) return ENOMEM;
    for (size_t k = 0; k < n; k++) {
        size_t i = x->chains[k].name_hash & (nslots - 1);
        while (slots[i]) i = (i + 1) & (nslots - 1);
        slots[i] = (uint32_t)k + 1;
    }
    free(x->slots);
    x->slots = slots;
    x->nslots = nslots;
    return 0;
}

static uint64_t term(const knft_index_chain *c) { return knft_mix(c->name_hash ^ 0x636861696EULL, c->digest); }

/* Sets chain `name`'s tags (taking them over), or removes it (tags NULL, n 0, remove 1). */
static int index_set(knft_index *x, const char *name, uint64_t h, uint64_t *tags, uint32_t n, int remove) {
    long k = slot_of(x, name, h);
    if (k >= 0) {
        knft_index_chain *c = &x->chains[k];
        if (c->live) {
            x->sum -= term(c);
            x->live--;
        }
        free(c->tags);
        c->tags = NULL;
        c->ntags = 0;
        c->live = 0;
        if (remove) return 0;
        c->tags = tags;
        c->ntags = n;
        c->digest = knft_chain_digest_of(tags, n);
        c->live = 1;
        x->live++;
        x->sum += term(c);
        return 0;
    }
    if (remove) return 0;
    /* the load factor: rebuild, dropping removed chains (so their slots do not pile up over a long run) */
    if ((x->nchains + 1) * 2 > x->nslots && compact(x, x->live / 2 + 64)) return ENOMEM;
    if (x->nchains == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 256;
        knft_index_chain *p = realloc(x->chains, cap * sizeof(*p));
        if (!p) return ENOMEM;
        x->chains = p;
        x->cap = cap;
    }
    knft_index_chain *c = &x->chains[x->nchains];
    memset(c, 0, sizeof(*c));
    c->name = strdup(name);
    if (!c->name) return ENOMEM;
    c->name_hash = h;
    c->tags = tags;
    c->ntags = n;
    c->digest = knft_chain_digest_of(tags, n);
    c->live = 1;
    size_t i = h & (x->nslots - 1);
    while (x->slots[i]) i = (i + 1) & (x->nslots - 1);
    x->slots[i] = (uint32_t)x->nchains + 1;
    x->nchains++;
    x->live++;
    x->sum += term(c);
    return 0;
}

/* Walks the records of [from, to): each declared chain (with its rules' tags) goes to on_chain, every other
   operation (with its rule, if any) is hashed into *others in order. */
typedef int (*chain_fn)(void *data, const char *name, size_t namelen, uint64_t *tags, uint32_t n);

static int walk(const knft_program *p, size_t from, size_t to, knft_form form, uint64_t *others, chain_fn on_chain,
                void *data, unsigned *chains) {
    if (from > to || to > p->length) return EINVAL;
    knat_reader rd = {p->bytes, to, from};
    knat_record rec;
    int n;
    while ((n = knat_next(&rd, &rec)) == 1) {
        size_t start = rd.offset - 4 - rec.length;
        if (rec.kind == KNAT_OP_CHAIN) {
            if (rec.length == 0 || rec.length >= KNFT_NAME_MAX) return EINVAL;
            uint64_t *tags = NULL;
            uint32_t nt = 0, cap = 0;
            while (knat_peek_kind(&rd) >= KNAT_E_COMMENT) {
                knft_span span;
                uint64_t target;
                if (knft_rule_span(&rd, &span, &target)) {
                    free(tags);
                    return EINVAL;
                }
                if (nt == cap) {
                    cap = cap ? cap * 2 : 8;
                    uint64_t *q = realloc(tags, cap * sizeof(*q));
                    if (!q) {
                        free(tags);
                        return ENOMEM;
                    }
                    tags = q;
                }
                tags[nt++] = knft_rule_tag(&span, form, p->family, KNFT_ROLE_OWNED);
            }
            (*chains)++;
            int rc = on_chain(data, (const char *)rec.payload, rec.length, tags, nt);
            if (rc) return rc;
            continue;
        }
        /* an operation and the rule records that belong to it */
        while (knat_peek_kind(&rd) >= KNAT_E_COMMENT) {
            knft_span span;
            uint64_t target;
            if (knft_rule_span(&rd, &span, &target)) return EINVAL;
        }
        *others = knft_hash(*others, p->bytes + start, rd.offset - start);
    }
    return n < 0 ? EINVAL : 0;
}

static int set_chain(void *data, const char *name, size_t len, uint64_t *tags, uint32_t n) {
    knft_index *x = data;
    char buf[KNFT_NAME_MAX];
    memcpy(buf, name, len);
    buf[len] = 0;
    int rc = index_set(x, buf, knft_hash_str(buf), tags, n, 0);
    if (rc) free(tags);
    return rc;
}

typedef struct summing {
    uint64_t sum;
} summing;

static int sum_chain(void *data, const char *name, size_t len, uint64_t *tags, uint32_t n) {
    summing *s = data;
    char buf[KNFT_NAME_MAX];
    memcpy(buf, name, len);
    buf[len] = 0;
    knft_index_chain c = {.name_hash = knft_hash_str(buf), .digest = knft_chain_digest_of(tags, n)};
    s->sum += term(&c);
    free(tags);
    return 0;
}

#define OTHERS_SEED 0x6F7468657273ULL

static int malformed(knft_result *res, const knft_program *p, int rc) {
    if (rc == EINVAL) knft_set_message(res, "ipv%d %s: malformed program", p->family, p->table);
    else knft_set_message(res, "out of memory");
    return rc;
}

int knft_index_update(knft_index *x, const knft_program *p, knft_form form, int *incremental, unsigned *indexed,
                      knft_result *res) {
    *incremental = 0;
    int rc = 0;
    if (p->base && x->id && x->id == p->base && p->chains_start <= p->chains_end && p->chains_end <= p->length) {
        /* only the changed chains, and the head and tail (small, and always compared) */
        uint64_t others = OTHERS_SEED;
        for (size_t i = 0; i < p->nchanged && !rc; i++) {
            const knft_chain_range *c = &p->changed[i];
            if (!c->length) rc = index_set(x, c->name, knft_hash_str(c->name), NULL, 0, 1);
        }
        for (size_t i = 0; i < p->nchanged && !rc; i++) {
            const knft_chain_range *c = &p->changed[i];
            if (c->length) rc = walk(p, c->offset, c->offset + c->length, form, &others, set_chain, x, indexed);
        }
        /* a changed range holds its chain only */
        if (!rc && others != OTHERS_SEED) rc = EINVAL;
        others = OTHERS_SEED;
        if (!rc) rc = walk(p, 0, p->chains_start, form, &others, set_chain, x, indexed);
        if (!rc) rc = walk(p, p->chains_end, p->length, form, &others, set_chain, x, indexed);
        if (!rc) {
            x->others = others;
            x->id = p->id;
            *incremental = 1;
            return 0;
        }
        index_clear(x);
        return malformed(res, p, rc);
    }
    index_clear(x);
    uint64_t others = OTHERS_SEED;
    if (compact(x, 1024)) return malformed(res, p, ENOMEM);
    rc = walk(p, 0, p->length, form, &others, set_chain, x, indexed);
    if (rc) {
        index_clear(x);
        return malformed(res, p, rc);
    }
    x->others = others;
    x->id = p->id;
    return 0;
}

static uint64_t table_digest(int family, const char *table, uint64_t sum, uint64_t others) {
    uint64_t h = knft_mix(0x7461626C65ULL, (uint64_t)family);
    h = knft_mix(h, knft_hash_str(table));
    h = knft_mix(h, sum);
    return knft_mix(h, others);
}

uint64_t knft_index_digest(const knft_index *x) { return table_digest(x->family, x->table, x->sum, x->others); }

int knft_program_digest(const knft_program *p, knft_form form, uint64_t *digest, knft_result *res) {
    summing s = {0};
    uint64_t others = OTHERS_SEED;
    unsigned chains = 0;
    int rc = walk(p, 0, p->length, form, &others, sum_chain, &s, &chains);
    if (rc) return malformed(res, p, rc);
    char table[16];
    snprintf(table, sizeof(table), "%s", p->table);
    *digest = table_digest(p->family, table, s.sum, others);
    return 0;
}

void knft_indexes_clear(knft_indexes *set) {
    for (size_t i = 0; i < set->n; i++) {
        knft_index_free(set->items[i]);
        free(set->items[i]);
    }
    free(set->items);
    set->items = NULL;
    set->n = 0;
}

uint64_t knft_programs_hash(const uint64_t *digests, size_t count, knft_form form) {
    uint64_t h = knft_hash(((uint64_t)KNFT_ENCODER_VERSION << 32) | (uint64_t)form, &count, sizeof(count));
    for (size_t i = 0; i < count; i++) h = knft_mix(h, digests[i]);
    return h;
}

int knft_index_programs(knft_indexes *set, const knft_program *programs, size_t count, knft_form form,
                        uint64_t *digests, knft_index **indexes, int *from_change, unsigned *indexed,
                        knft_result *res) {
    for (size_t i = 0; i < count; i++) {
        indexes[i] = NULL;
        from_change[i] = 0;
        indexed[i] = 0;
        int rc;
        if (!programs[i].id) {
            if ((rc = knft_program_digest(&programs[i], form, &digests[i], res))) return rc;
            continue;
        }
        knft_index *x = knft_index_of(set, programs[i].family, programs[i].table);
        if (!x) {
            knft_set_message(res, "out of memory");
            return ENOMEM;
        }
        if ((rc = knft_index_update(x, &programs[i], form, &from_change[i], &indexed[i], res))) return rc;
        indexes[i] = x;
        digests[i] = knft_index_digest(x);
    }
    return 0;
}

knft_indexes *knft_indexes_new(void) { return calloc(1, sizeof(knft_indexes)); }

void knft_indexes_free(knft_indexes *set) {
    if (!set) return;
    knft_indexes_clear(set);
    free(set);
}

int knft_indexes_hash(knft_indexes *set, const knft_program *programs, size_t count, knft_form form, uint64_t *hash,
                      knft_result *res) {
    memset(res, 0, sizeof(*res));
    if (count > KNFT_MAX_TABLES) return res->error = EINVAL;
    uint64_t digests[KNFT_MAX_TABLES];
    knft_index *indexes[KNFT_MAX_TABLES];
    int from_change[KNFT_MAX_TABLES];
    unsigned indexed[KNFT_MAX_TABLES];
    int rc = knft_index_programs(set, programs, count, form, digests, indexes, from_change, indexed, res);
    if (rc) return res->error = rc;
    res->ntables = count;
    for (size_t i = 0; i < count; i++) {
        res->tables[i].family = programs[i].family;
        snprintf(res->tables[i].table, sizeof(res->tables[i].table), "%s", programs[i].table);
        res->tables[i].chains_indexed = indexed[i];
        res->tables[i].incremental = from_change[i];
    }
    *hash = knft_programs_hash(digests, count, form);
    return 0;
}
