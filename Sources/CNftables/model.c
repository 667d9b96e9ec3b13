/*
 * The kernel model: what the kernel holds of the tables kube-natd writes (chains with their rules' handles, tags,
 * content digests and jump targets), as read by a dump or as left by this context's last commit. Plain data;
 * nothing here talks to the kernel.
 */
#include <stdio.h>
#include <stdlib.h>
#include "internal.h"

knft_table *knft_model_table(knft_model *m, int family, const char *name, int create) {
    for (size_t i = 0; i < m->ntables; i++)
        if (m->tables[i].family == family && !strcmp(m->tables[i].name, name)) return &m->tables[i];
    if (!create) return NULL;
    if (m->ntables == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        knft_table *p = realloc(m->tables, cap * sizeof(*p));
        if (!p) return NULL;
        m->tables = p;
        m->cap = cap;
    }
    knft_table *t = &m->tables[m->ntables++];
    memset(t, 0, sizeof(*t));
    t->family = family;
    snprintf(t->name, sizeof(t->name), "%s", name);
    return t;
}

static knft_chain *lookup(knft_table *t, const char *name, uint64_t h) {
    if (!t->nslots) return NULL;
    for (size_t i = h & (t->nslots - 1);; i = (i + 1) & (t->nslots - 1)) {
        uint32_t s = t->slots[i];
        if (!s) return NULL;
        knft_chain *c = &t->chains[s - 1];
        if (c->name_hash == h && !strcmp(c->name, name)) return c;
    }
}

knft_chain *knft_table_chain(knft_table *t, const char *name) {
    knft_chain *c = lookup(t, name, knft_hash_str(name));
    return c && !c->dead ? c : NULL;
}

static int rehash(knft_table *t, size_t nslots) {
    uint32_t *slots = calloc(nslots, sizeof(*slots));
    if (!slots) return 0;
    for (size_t k = 0; k < t->nchains; k++) {
        size_t i = t->chains[k].name_hash & (nslots - 1);
        while (slots[i]) i = (i + 1) & (nslots - 1);
        slots[i] = (uint32_t)k + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->nslots = nslots;
    return 1;
}

knft_chain *knft_table_add_chain(knft_table *t, const char *name, int base) {
    uint64_t h = knft_hash_str(name);
    knft_chain *c = lookup(t, name, h);
    if (c) {
        if (c->dead) {
            c->dead = 0;
            c->nrules = 0;
        }
        c->base = base;
        return c;
    }
    if (t->nchains == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        knft_chain *p = realloc(t->chains, cap * sizeof(*p));
        if (!p) return NULL;
        t->chains = p;
        t->cap = cap;
    }
    /* keep the load factor under one half */
    if ((t->nchains + 1) * 2 > t->nslots && !rehash(t, t->nslots ? t->nslots * 2 : 128)) return NULL;
    c = &t->chains[t->nchains];
    memset(c, 0, sizeof(*c));
    c->name = strdup(name);
    if (!c->name) return NULL;
    c->name_hash = h;
    c->base = base;
    size_t i = h & (t->nslots - 1);
    while (t->slots[i]) i = (i + 1) & (t->nslots - 1);
    t->slots[i] = (uint32_t)t->nchains + 1;
    t->nchains++;
    return c;
}

int knft_chain_push(knft_chain *c, const knft_rule *r) {
    if (c->nrules == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2 : 4;
        knft_rule *p = realloc(c->rules, cap * sizeof(*p));
        if (!p) return 0;
        c->rules = p;
        c->cap = cap;
    }
    c->rules[c->nrules++] = *r;
    return 1;
}

void knft_chain_clear(knft_chain *c) { c->nrules = 0; }

static void table_free(knft_table *t) {
    for (size_t i = 0; i < t->nchains; i++) {
        free(t->chains[i].name);
        free(t->chains[i].rules);
    }
    free(t->chains);
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

void knft_model_clear(knft_model *m) {
    for (size_t i = 0; i < m->ntables; i++) table_free(&m->tables[i]);
    m->ntables = 0;
    m->valid = 0;
    m->genid = 0;
    m->epoch++;
}

void knft_model_free(knft_model *m) {
    knft_model_clear(m);
    free(m->tables);
    memset(m, 0, sizeof(*m));
}
