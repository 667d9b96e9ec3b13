/*
 * The decision: one table's program against what the model says the kernel holds, written as the messages
 * that make the difference, in an order the kernel accepts within one transaction:
 *
 *   1. the table, missing user chains, missing base chains (iptables-nft's type, hook, priority, policy ACCEPT;
 *      an existing base chain is never sent again, which would reset its policy);
 *   2. base chains and chains with ensured rules: stray or misplaced kube-natd jumps out, missing jumps in at
 *      the top in order, missing ensured rules right after them (foreign rules keep their order below);
 *   3. declared chains: new ones filled; changed ones edited rule by rule (replace by handle, delete by
 *      handle, insert before a kept rule) or flushed and refilled, whichever takes fewer messages;
 *   4. deleted and stale chains, each after every chain that jumps to it (a chain a foreign rule still
 *      jumps to is flushed and kept, with a warning).
 *
 * Rules of owned chains are compared by kube-natd's tag (written with them, see encode.c), everything else
 * (jumps, ensured rules, rules to delete) by content, so rules another tool wrote identically count as present.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include "plan.h"

/* ---- the plan: model changes to make once the batch committed, and the memory the batch's origins use -- */

knft_plan *knft_plan_new(void) { return calloc(1, sizeof(knft_plan)); }

void knft_plan_free(knft_plan *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) free(p->changes[i].rules);
    for (size_t i = 0; i < p->nallocs; i++) free(p->allocs[i]);
    free(p->changes);
    free(p->allocs);
    free(p);
}

void *knft_plan_keep(knft_plan *p, void *mem) {
    if (!mem) return NULL;
    if (p->nallocs == p->capallocs) {
        size_t cap = p->capallocs ? p->capallocs * 2 : 64;
        void **a = realloc(p->allocs, cap * sizeof(*a));
        if (!a) {
            free(mem);
            return NULL;
        }
        p->allocs = a;
        p->capallocs = cap;
    }
    p->allocs[p->nallocs++] = mem;
    return mem;
}

change *knft_plan_change(knft_plan *p, int op, knft_table *t, const char *chain) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        change *c = realloc(p->changes, cap * sizeof(*c));
        if (!c) return NULL;
        p->changes = c;
        p->cap = cap;
    }
    change *c = &p->changes[p->n];
    memset(c, 0, sizeof(*c));
    c->op = op;
    c->table = t;
    c->chain = chain ? knft_plan_keep(p, strdup(chain)) : NULL;
    if (chain && !c->chain) return NULL;
    p->n++;
    return c;
}

void knft_plan_apply(knft_plan *p, knft_model *m) {
    for (size_t i = 0; i < p->n; i++) {
        change *c = &p->changes[i];
        if (c->op == CH_TABLE) {
            c->table->exists = 1;
            continue;
        }
        if (c->op == CH_DELETE) {
            knft_chain *k = knft_table_chain(c->table, c->chain);
            if (k) {
                k->dead = 1;
                k->nrules = 0;
            }
            continue;
        }
        knft_chain *k = knft_table_add_chain(c->table, c->chain, c->base);
        if (!k) {
            m->valid = 0; /* out of memory: the next call reads the kernel */
            continue;
        }
        free(k->rules);
        k->rules = c->rules;
        k->nrules = k->cap = c->nrules;
        c->rules = NULL;
    }
}

/* The rules a chain will hold after the batch, when the plan changes it; else NULL. */
const change *knft_planned(const knft_plan *plan, const knft_table *t, const char *name) {
    for (size_t i = plan->n; i-- > 0;)
        if (plan->changes[i].table == t && plan->changes[i].chain && !strcmp(plan->changes[i].chain, name))
            return &plan->changes[i];
    return NULL;
}

/* ---- the decisions ---------------------------------------------------------------------------------------- */

static knft_rule model_rule(const want_rule *r, int role) {
    knft_rule k = {.tag = r->tag, .content = r->content, .target = r->target, .flags = KNFT_R_TAGGED};
    if (role == KNFT_ROLE_JUMP) k.flags |= KNFT_R_JUMP;
    return k;
}

/* Every rule of the chain has a known handle; re-reads the chain when one is missing. */
static int need_handles(knft_context *ctx, knft_table *t, knft_chain *c, knft_result *res) {
    for (uint32_t i = 0; i < c->nrules; i++)
        if (!c->rules[i].handle) return knft_read_chain(ctx, t, c, res);
    return 0;
}

/* ---- 2: base chains and chains holding ensured rules --------------------------------------------------- */

static int same_content(const knft_rule *k, const want_rule *w) { return k->content && k->content == w->content; }

static int plan_edited_chain(knft_context *ctx, emitter *em, knft_plan *plan, const wanted *w, const char *name,
                             int base, int full_sync) {
    knft_table *t = em->t;
    knft_chain *c = knft_table_chain(t, name);
    uint32_t n = c ? c->nrules : 0;
    /* this chain's wanted jumps and ensured rules, and the rules to delete from it */
    size_t nj = 0, ne = 0, nd = 0;
    const named_rule **jumps = NULL, **ens = NULL, **dels = NULL;
    int rc = 0;
    uint8_t *del = NULL;
    knft_rule *out = NULL;
    jumps = calloc(w->njumps + 1, sizeof(*jumps));
    ens = calloc(w->nensured + 1, sizeof(*ens));
    dels = calloc(w->ndelrules + 1, sizeof(*dels));
    if (!jumps || !ens || !dels) { rc = ENOMEM; goto done; }
    for (size_t i = 0; i < w->njumps; i++) if (!strcmp(w->jumps[i].chain, name)) jumps[nj++] = &w->jumps[i];
    for (size_t i = 0; i < w->nensured; i++) if (!strcmp(w->ensured[i].chain, name)) ens[ne++] = &w->ensured[i];
    for (size_t i = 0; i < w->ndelrules; i++) if (!strcmp(w->delrules[i].chain, name)) dels[nd++] = &w->delrules[i];

    for (int pass = 0; pass < 2; pass++) {
        n = c ? c->nrules : 0;
        free(del);
        del = calloc(n + 1, 1);
        if (!del) { rc = ENOMEM; goto done; }
        /* kube-natd's jumps already in place at the top, in order */
        uint32_t kept = 0;
        while (kept < n && kept < nj && same_content(&c->rules[kept], &jumps[kept]->rule)) kept++;
        int changes = kept < nj;
        for (uint32_t i = kept; i < n; i++) {
            const knft_rule *k = &c->rules[i];
            int wanted_jump = 0, ensured = 0;
            for (size_t j = 0; j < nj && !wanted_jump; j++) wanted_jump = same_content(k, &jumps[j]->rule);
            for (size_t j = 0; j < ne && !ensured; j++) ensured = same_content(k, &ens[j]->rule);
            /* misplaced or duplicate jump; or a jump kube-natd wrote that is no longer wanted */
            if (wanted_jump) del[i] = 1;
            else if (k->flags & KNFT_R_JUMP && !ensured && (full_sync || w->delete_own_jumps)) del[i] = 1;
            for (size_t j = 0; j < nd && !del[i]; j++) del[i] = same_content(k, &dels[j]->rule);
            changes |= del[i];
        }
        for (size_t j = 0; j < ne && !changes; j++) {
            int present = 0;
            for (uint32_t i = 0; i < n && !present; i++) present = !del[i] && same_content(&c->rules[i], &ens[j]->rule);
            changes = !present;
        }
        if (!changes) goto done;
        /* deletions and positions go by handle: learn them first if the model lacks some */
        if (pass == 0 && c) {
            int missing = 0;
            for (uint32_t i = 0; i < n && !missing; i++) missing = !c->rules[i].handle;
            if (missing) {
                if ((rc = need_handles(ctx, t, c, em->res))) goto done;
                continue;
            }
        }
        /* the messages, and the chain as it will be */
        out = calloc((size_t)n + nj + ne + 1, sizeof(*out));
        if (!out) { rc = ENOMEM; goto done; }
        uint32_t m = 0;
        for (uint32_t i = 0; i < n; i++)
            if (del[i]) {
                if (!c->rules[i].handle) { rc = knft_no_handle(em, name); goto done; }
                if ((rc = knft_emit_delrule(em, name, c->rules[i].handle))) goto done;
                em->report->rules_deleted++;
            }
        for (uint32_t i = 0; i < kept; i++) out[m++] = c->rules[i];
        /* jumps after the last one in place (or at the head), last first so they end up in order */
        for (size_t j = nj; j-- > kept;) {
            if (kept) rc = knft_emit_rule(em, name, (int)j + 1, &jumps[j]->rule, KNFT_ROLE_JUMP, AFTER, c->rules[kept - 1].handle);
            else rc = knft_emit_rule(em, name, (int)j + 1, &jumps[j]->rule, KNFT_ROLE_JUMP, AT_HEAD, 0);
            if (rc) goto done;
            em->report->jumps_inserted++;
        }
        for (size_t j = kept; j < nj; j++) out[m++] = model_rule(&jumps[j]->rule, KNFT_ROLE_JUMP);
        /* ensured rules: right after kube-natd's jumps in a base chain (before the first rule that stays), at the
           end elsewhere */
        uint32_t anchor = n;
        if (base)
            for (uint32_t i = kept; i < n; i++)
                if (!del[i]) { anchor = i; break; }
        for (uint32_t i = kept; i <= n; i++) {
            if (i == anchor) {
                for (size_t j = 0; j < ne; j++) {
                    int present = 0;
                    for (uint32_t q = 0; q < n && !present; q++)
                        present = !del[q] && same_content(&c->rules[q], &ens[j]->rule);
                    /* two identical ensured rules need only one */
                    for (size_t q = 0; q < j && !present; q++) present = ens[q]->rule.content == ens[j]->rule.content;
                    if (present) continue;
                    if (anchor < n) rc = knft_emit_rule(em, name, (int)j + 1, &ens[j]->rule, 0, BEFORE, c->rules[anchor].handle);
                    else rc = knft_emit_rule(em, name, (int)j + 1, &ens[j]->rule, 0, AT_TAIL, 0);
                    if (rc) goto done;
                    em->report->ensured_added++;
                    knft_rule k = {.content = ens[j]->rule.content, .target = ens[j]->rule.target};
                    out[m++] = k;
                }
            }
            if (i < n && !del[i]) out[m++] = c->rules[i];
        }
        change *ch = knft_plan_change(plan, CH_SET, t, name);
        if (!ch) { rc = ENOMEM; goto done; }
        ch->base = base;
        ch->rules = out;
        ch->nrules = m;
        out = NULL;
        break;
    }
done:
    free(jumps);
    free(ens);
    free(dels);
    free(del);
    free(out);
    return rc;
}

/* ---- 3: declared chains -------------------------------------------------------------------------------- */

/* Positions of a's rules by tag, for matching b's rules in order (earliest unused match after the last). */
typedef struct tag_index {
    uint32_t *slots; /* a tag's first position + 1 (identifies the slot's tag) */
    uint32_t *cur;   /* the tag's earliest position not yet passed + 1, 0 when none is left */
    uint32_t *next;  /* the next position with the same tag */
    size_t nslots;
} tag_index;

static int index_build(tag_index *ix, const knft_rule *a, uint32_t lo, uint32_t hi) {
    size_t need = 16;
    while (need < (size_t)(hi - lo) * 2) need *= 2;
    ix->nslots = need;
    ix->slots = calloc(need, sizeof(uint32_t));
    ix->cur = calloc(need, sizeof(uint32_t));
    ix->next = calloc((size_t)(hi - lo) + 1, sizeof(uint32_t));
    if (!ix->slots || !ix->cur || !ix->next) return ENOMEM;
    /* inserted from the back, so each tag's list is in ascending order */
    for (uint32_t i = hi; i-- > lo;) {
        size_t s = a[i].tag & (need - 1);
        while (ix->slots[s] && a[ix->slots[s] - 1].tag != a[i].tag) s = (s + 1) & (need - 1);
        ix->next[i - lo] = ix->cur[s];
        ix->slots[s] = ix->cur[s] = i + 1;
    }
    return 0;
}

static void index_free(tag_index *ix) {
    free(ix->slots);
    free(ix->cur);
    free(ix->next);
}

/* The earliest position > after with this tag, or UINT32_MAX. */
static uint32_t index_find(tag_index *ix, const knft_rule *a, uint32_t lo, uint64_t tag, int64_t after) {
    size_t s = tag & (ix->nslots - 1);
    while (ix->slots[s] && a[ix->slots[s] - 1].tag != tag) s = (s + 1) & (ix->nslots - 1);
    if (!ix->slots[s]) return UINT32_MAX;
    uint32_t p = ix->cur[s];
    while (p && (int64_t)(p - 1) <= after) p = ix->next[p - 1 - lo];
    ix->cur[s] = p; /* positions at or before `after` are never useful again: `after` only grows */
    return p ? p - 1 : UINT32_MAX;
}

static int plan_declared(knft_context *ctx, emitter *em, knft_plan *plan, const wanted *w, const want_chain *wc,
                         int created) {
    knft_table *t = em->t;
    const want_rule *b = w->rules + wc->first;
    uint32_t nb = (uint32_t)wc->count;
    knft_chain *c = created ? NULL : knft_table_chain(t, wc->name);
    uint32_t na = c ? c->nrules : 0;
    int rc = 0;
    em->report->chains_planned++;
    if (c && na == nb) {
        uint32_t i = 0;
        while (i < nb && c->rules[i].tag == b[i].tag) i++;
        if (i == nb) {
            em->report->chains_unchanged++;
            return 0;
        }
    }
    knft_rule *out = calloc((size_t)nb + 1, sizeof(*out));
    uint32_t *match = calloc((size_t)nb + 1, sizeof(uint32_t)); /* b index -> a index or UINT32_MAX */
    if (!out || !match) {
        free(out);
        free(match);
        return ENOMEM;
    }
    for (int pass = 0; pass < 2; pass++) {
        na = c ? c->nrules : 0;
        const knft_rule *a = c ? c->rules : NULL;
        int use_edit = 0;
        if (c && na) {
            /* common prefix and suffix, then the middle matched greedily by tag */
            uint32_t p = 0;
            while (p < na && p < nb && a[p].tag == b[p].tag) p++;
            uint32_t s = 0;
            while (s < na - p && s < nb - p && a[na - 1 - s].tag == b[nb - 1 - s].tag) s++;
            for (uint32_t i = 0; i < nb; i++) match[i] = UINT32_MAX;
            for (uint32_t i = 0; i < p; i++) match[i] = i;
            for (uint32_t i = 0; i < s; i++) match[nb - 1 - i] = na - 1 - i;
            if (na - p - s > 0 && nb - p - s > 0) {
                tag_index ix = {0};
                if ((rc = index_build(&ix, a, p, na - s))) {
                    index_free(&ix);
                    break;
                }
                int64_t last = (int64_t)p - 1;
                for (uint32_t j = p; j < nb - s; j++) {
                    uint32_t q = index_find(&ix, a, p, b[j].tag, last);
                    if (q != UINT32_MAX) {
                        match[j] = q;
                        last = q;
                    }
                }
                index_free(&ix);
            }
            /* cost of editing: per gap between kept rules, max(unmatched a, unmatched b) messages */
            size_t cost = 0;
            int missing_handle = 0;
            uint32_t ai = 0;
            for (uint32_t j = 0; j <= nb; j++) {
                if (j < nb && match[j] == UINT32_MAX) continue;
                uint32_t anext = j < nb ? match[j] : na;
                uint32_t bstart = j;
                while (bstart > 0 && match[bstart - 1] == UINT32_MAX) bstart--;
                size_t la = anext - ai, lb = j - bstart;
                cost += la > lb ? la : lb;
                for (uint32_t q = ai; q < anext; q++) missing_handle |= !a[q].handle;
                if (lb > la && j < nb) missing_handle |= !a[anext].handle;
                ai = anext + 1;
            }
            use_edit = cost <= (size_t)nb + 1;
            if (use_edit && missing_handle && pass == 0) {
                if ((rc = need_handles(ctx, t, c, em->res))) break;
                continue;
            }
        }
        if (!use_edit) {
            /* new chain, or flush and refill */
            if (c && na && (rc = knft_emit_delrule(em, wc->name, 0))) break;
            for (uint32_t j = 0; j < nb; j++) {
                if ((rc = knft_emit_rule(em, wc->name, (int)j + 1, &b[j], KNFT_ROLE_OWNED, AT_TAIL, 0))) break;
                out[j] = model_rule(&b[j], KNFT_ROLE_OWNED);
            }
            if (rc) break;
            em->report->rules_written += nb;
        } else {
            /* gap by gap: replace pairwise, delete the extra old rules, insert the extra new ones before the
               next kept rule (or at the end) */
            uint32_t ai = 0, bj = 0;
            for (uint32_t j = 0; j <= nb && !rc; j++) {
                if (j < nb && match[j] == UINT32_MAX) continue;
                uint32_t anext = j < nb ? match[j] : na;
                uint32_t la = anext - ai, lb = j - bj, pairs = la < lb ? la : lb;
                for (uint32_t q = 0; q < pairs && !rc; q++) {
                    rc = knft_emit_rule(em, wc->name, (int)(bj + q) + 1, &b[bj + q], KNFT_ROLE_OWNED, REPLACE, a[ai + q].handle);
                    out[bj + q] = model_rule(&b[bj + q], KNFT_ROLE_OWNED);
                    out[bj + q].handle = a[ai + q].handle;
                    em->report->rules_written++;
                }
                for (uint32_t q = pairs; q < la && !rc; q++) {
                    rc = a[ai + q].handle ? knft_emit_delrule(em, wc->name, a[ai + q].handle) : knft_no_handle(em, wc->name);
                    em->report->rules_deleted++;
                }
                for (uint32_t q = pairs; q < lb && !rc; q++) {
                    if (j < nb) rc = knft_emit_rule(em, wc->name, (int)(bj + q) + 1, &b[bj + q], KNFT_ROLE_OWNED, BEFORE, a[anext].handle);
                    else rc = knft_emit_rule(em, wc->name, (int)(bj + q) + 1, &b[bj + q], KNFT_ROLE_OWNED, AT_TAIL, 0);
                    out[bj + q] = model_rule(&b[bj + q], KNFT_ROLE_OWNED);
                    em->report->rules_written++;
                }
                if (j < nb) out[j] = a[anext];
                ai = anext + 1;
                bj = j + 1;
            }
            if (rc) break;
        }
        if (c) em->report->chains_rewritten++;
        change *ch = knft_plan_change(plan, CH_SET, t, wc->name);
        if (!ch) { rc = ENOMEM; break; }
        ch->rules = out;
        ch->nrules = nb;
        out = NULL;
        break;
    }
    free(out);
    free(match);
    return rc;
}

/* ---- sets of chain names (by hash) ------------------------------------------------------------------------ */

typedef struct name_set {
    uint64_t *h;
    size_t n;
} name_set;

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* owned: declared chains only; kept: declared, canary (ensure-only) and ensured-rule chains (never deleted). */
static int set_build(name_set *s, const wanted *w, int kept) {
    s->n = 0;
    s->h = malloc((w->nchains + w->nensured + 1) * sizeof(uint64_t));
    if (!s->h) return ENOMEM;
    for (size_t i = 0; i < w->nchains; i++)
        if (kept || !w->chains[i].ensure_only) s->h[s->n++] = knft_hash_str(w->chains[i].name);
    if (kept)
        for (size_t i = 0; i < w->nensured; i++) s->h[s->n++] = knft_hash_str(w->ensured[i].chain);
    qsort(s->h, s->n, sizeof(uint64_t), cmp_u64);
    return 0;
}

static int set_has(const name_set *s, uint64_t h) {
    return s->n && bsearch(&h, s->h, s->n, sizeof(uint64_t), cmp_u64) != NULL;
}

/* Which chains the program declares and keeps: from the whole program (a full plan), or from the index of the
   program's declared chains and the parsed tail (an incremental plan, which parsed only the changed chains). */
typedef struct owners {
    name_set owned, kept;
    const knft_index *index; /* incremental only */
    const wanted *w;
} owners;

static int in_program(const wanted *w, const char *name) {
    for (size_t i = 0; i < w->nchains; i++)
        if (!strcmp(w->chains[i].name, name)) return 1;
    return 0;
}

/* A declared chain (rules kube-natd writes). */
static int owns(const owners *o, const knft_chain *c) {
    if (o->index) return knft_index_chain_named(o->index, c->name, c->name_hash) != NULL;
    return set_has(&o->owned, c->name_hash);
}

/* Declared, canary (ensure-only) or holding ensured rules: never deleted. */
static int keeps(const owners *o, const knft_chain *c) {
    if (!o->index) return set_has(&o->kept, c->name_hash);
    if (owns(o, c) || in_program(o->w, c->name)) return 1;
    for (size_t i = 0; i < o->w->nensured; i++)
        if (!strcmp(o->w->ensured[i].chain, c->name)) return 1;
    return 0;
}

/* Named by the program as one of its chains (declared or ensure-only). */
static int declares(const owners *o, const char *name) {
    if (in_program(o->w, name)) return 1;
    return o->index && knft_index_chain_named(o->index, name, knft_hash_str(name)) != NULL;
}

/* ---- 4: deleted and stale chains ------------------------------------------------------------------------- */

typedef struct doomed {
    knft_chain *chain;
    uint32_t refs;   /* references from other doomed chains still to be deleted */
    int blocked;     /* a rule that stays jumps to it */
    int done;
} doomed;

static int has_prefix(const char *name, const wanted *w) {
    for (size_t i = 0; i < w->nprefixes; i++)
        if (!strncmp(name, w->prefixes[i], strlen(w->prefixes[i]))) return 1;
    return 0;
}

static void consider(doomed *d, size_t *nd, knft_chain *c, const wanted *w, const owners *o, int unique) {
    if (!c || c->dead || c->base || keeps(o, c)) return;
    for (size_t k = 0; k < *nd && !unique; k++)
        if (d[k].chain == c) return;
    int go = has_prefix(c->name, w);
    for (size_t k = 0; k < w->ndeleted && !go; k++) go = !strcmp(w->deleted[k], c->name);
    if (go) d[(*nd)++].chain = c;
}

static int plan_deletions(emitter *em, knft_plan *plan, const wanted *w, const owners *o) {
    knft_table *t = em->t;
    size_t room = o->index ? w->nremoved + w->ndeleted : t->nchains;
    doomed *d = calloc(room + 1, sizeof(*d));
    if (!d) return ENOMEM;
    size_t nd = 0;
    /* which chains go: listed deletions and stale service chains, never a base chain or a declared one; an
       incremental plan looks only at the chains the change removed (the kernel held the base program, so no
       other stale chain can be there) */
    if (o->index) {
        for (size_t k = 0; k < w->nremoved; k++) consider(d, &nd, knft_table_chain(t, w->removed[k]), w, o, 0);
        for (size_t k = 0; k < w->ndeleted; k++) consider(d, &nd, knft_table_chain(t, w->deleted[k]), w, o, 0);
    } else {
        for (size_t i = 0; i < t->nchains; i++) consider(d, &nd, &t->chains[i], w, o, 1);
    }
    int rc = 0;
    if (!nd) goto out;
    /* name hash -> doomed index, to resolve jump targets */
    size_t nslots = 16;
    while (nslots < nd * 2) nslots *= 2;
    uint32_t *slots = calloc(nslots, sizeof(uint32_t));
    if (!slots) { rc = ENOMEM; goto out; }
#define FIND(h, res_)                                                                 \
    do {                                                                              \
        size_t s_ = (h) & (nslots - 1);                                               \
        res_ = -1;                                                                    \
        while (slots[s_]) {                                                           \
            if (d[slots[s_] - 1].chain->name_hash == (h)) { res_ = (long)slots[s_] - 1; break; } \
            s_ = (s_ + 1) & (nslots - 1);                                             \
        }                                                                             \
    } while (0)
    for (size_t k = 0; k < nd; k++) {
        size_t s = d[k].chain->name_hash & (nslots - 1);
        while (slots[s]) s = (s + 1) & (nslots - 1);
        slots[s] = (uint32_t)k + 1;
    }
    /* references from the rules that stay: chains kube-natd does not own (as the plan leaves them) */
    for (size_t i = 0; i < t->nchains; i++) {
        knft_chain *c = &t->chains[i];
        if (c->dead) continue;
        long self;
        FIND(c->name_hash, self);
        if (self >= 0) continue;
        /* declared chains hold the program's rules, which jump only to declared chains */
        if (owns(o, c)) continue;
        const change *ch = knft_planned(plan, t, c->name);
        const knft_rule *rules = ch ? ch->rules : c->rules;
        uint32_t n = ch ? ch->nrules : c->nrules;
        for (uint32_t r = 0; r < n; r++) {
            if (!rules[r].target) continue;
            long hit;
            FIND(rules[r].target, hit);
            if (hit >= 0 && !d[hit].blocked) {
                d[hit].blocked = 1;
                em->res->warnings++;
                knft_set_message(em->res, "ipv%d %s: chain %s kept (flushed): chain %s still jumps to it", t->family,
                                 t->name, d[hit].chain->name, c->name);
            }
        }
    }
    /* a blocked chain is flushed first, which drops its own references */
    for (size_t k = 0; k < nd && !rc; k++) {
        if (!d[k].blocked) continue;
        d[k].done = 1;
        if (d[k].chain->nrules) {
            rc = knft_emit_delrule(em, d[k].chain->name, 0);
            change *ch = knft_plan_change(plan, CH_SET, t, d[k].chain->name);
            if (!ch) rc = ENOMEM;
        }
    }
    /* references among the chains that go: each is deleted after every chain that jumps to it */
    for (size_t k = 0; k < nd; k++) {
        if (d[k].done) continue;
        for (uint32_t r = 0; r < d[k].chain->nrules; r++) {
            long hit;
            FIND(d[k].chain->rules[r].target, hit);
            if (hit >= 0 && hit != (long)k) d[hit].refs++;
        }
    }
    size_t left = 0;
    for (size_t k = 0; k < nd; k++) left += !d[k].done;
    while (left && !rc) {
        size_t progress = 0;
        for (size_t k = 0; k < nd && !rc; k++) {
            if (d[k].done || d[k].refs) continue;
            d[k].done = 1;
            left--;
            progress++;
            rc = knft_emit_delchain(em, d[k].chain->name);
            em->report->chains_deleted++;
            if (!knft_plan_change(plan, CH_DELETE, t, d[k].chain->name)) rc = ENOMEM;
            for (uint32_t r = 0; r < d[k].chain->nrules; r++) {
                long hit;
                FIND(d[k].chain->rules[r].target, hit);
                if (hit >= 0 && hit != (long)k && d[hit].refs) d[hit].refs--;
            }
        }
        if (!progress) {
            /* a cycle cannot be in the kernel; delete the rest and let the kernel say what is wrong */
            for (size_t k = 0; k < nd; k++) d[k].refs = 0;
        }
    }
#undef FIND
    free(slots);
out:
    free(d);
    return rc;
}

/* ---- one table ------------------------------------------------------------------------------------------- */

int knft_plan_stamp(knft_context *ctx, knft_table *t, knft_form form, knft_batch *bt, knft_plan *plan,
                    knft_stamping *stamping, knft_table_report *report, knft_result *res) {
    /* no such chain in the program, or an empty one, or not in the kernel yet: nothing carries the stamp, and
       stateless callers read the kernel */
    if (!stamping->first_known) return 0;
    char *name = knft_plan_keep(plan, strdup(stamping->where->chain));
    if (!name) return ENOMEM;
    knft_chain *c = knft_table_chain(t, name);
    if (!c) return 0;
    /* the rule is kept by this batch (no message wrote it): replace it with itself, newly stamped */
    want_rule first = {.span = stamping->first_span, .tag = stamping->first_tag, .target = stamping->first_target};
    uint64_t handle = 0;
    int rc = 0;
    for (int pass = 0; pass < 2 && !handle && !rc; pass++) {
        for (uint32_t i = 0; i < c->nrules && !handle; i++)
            if (c->rules[i].tag == first.tag) handle = c->rules[i].handle;
        if (!handle && pass == 0) rc = knft_read_chain(ctx, t, c, res);
    }
    if (!rc && handle) {
        emitter em = {.bt = bt, .t = t, .form = form, .stamping = stamping, .report = report, .res = res};
        rc = knft_emit_rule(&em, name, 1, &first, KNFT_ROLE_OWNED, REPLACE, handle);
    }
    return rc;
}

/* Records the stamp chain's first rule when this program is the stamp's table (see knft_plan_stamp). */
static void note_stamp_rule(const knft_program *program, const wanted *w, int incremental, knft_form form,
                            knft_stamping *stamping) {
    const knft_stamp *s = stamping->where;
    if (!s || program->family != s->family || strcmp(program->table, s->table)) return;
    if (incremental) {
        /* the chain's range, which the program names so that it need not be found by parsing the rest */
        if (!program->stamp_length || program->stamp_offset + program->stamp_length > program->length) return;
        knat_reader rd = {program->bytes, program->stamp_offset + program->stamp_length, program->stamp_offset};
        knat_record rec;
        if (knat_next(&rd, &rec) != 1 || rec.kind != KNAT_OP_CHAIN || rec.length != strlen(s->chain) ||
            memcmp(rec.payload, s->chain, rec.length) || knat_peek_kind(&rd) < KNAT_E_COMMENT)
            return;
        knft_span span;
        uint64_t target;
        if (knft_rule_span(&rd, &span, &target)) return;
        stamping->first_known = 1;
        stamping->first_span = span;
        stamping->first_tag = knft_rule_tag(&span, form, program->family, KNFT_ROLE_OWNED);
        stamping->first_target = target;
        return;
    }
    for (size_t i = 0; i < w->nchains; i++) {
        const want_chain *wc = &w->chains[i];
        if (wc->ensure_only || strcmp(wc->name, s->chain)) continue;
        if (wc->count) {
            const want_rule *r = &w->rules[wc->first];
            stamping->first_known = 1;
            stamping->first_span = r->span;
            stamping->first_tag = r->tag;
            stamping->first_target = r->target;
        }
        return;
    }
}

int knft_plan_table(knft_context *ctx, knft_table *t, const knft_program *program, knft_form form,
                    const knft_index *index, int incremental, knft_batch *bt, knft_plan *plan,
                    knft_stamping *stamping, knft_table_report *report, knft_result *res) {
    wanted w;
    owners o = {.w = &w, .index = incremental ? index : NULL};
    uint8_t *created = NULL;
    int rc = knft_wanted_parse(plan, program, incremental, form, &w, res);
    if (rc) goto done;
    report->incremental = incremental;
    note_stamp_rule(program, &w, incremental, form, stamping);
    if (!incremental && ((rc = set_build(&o.owned, &w, 0)) || (rc = set_build(&o.kept, &w, 1)))) goto done;
    emitter em = {.bt = bt, .t = t, .form = form, .stamping = stamping, .report = report, .res = res};
    int full_sync = incremental ? index->live > 0 : o.owned.n > 0;
    int creates = w.nchains || w.njumps || w.nensured || (incremental && index->live > 0);
    if (!t->exists && !creates) goto done; /* nothing of ours can be in a missing table */
    size_t first_change = plan->n;

    /* 1: the table and the chains */
    if (!t->exists) {
        if ((rc = knft_emit_table(&em))) goto done;
        if (!knft_plan_change(plan, CH_TABLE, t, NULL)) { rc = ENOMEM; goto done; }
    }
    created = calloc(w.nchains + 1, 1);
    if (!created) { rc = ENOMEM; goto done; }
    for (size_t i = 0; i < w.nchains && !rc; i++) {
        if (knft_table_chain(t, w.chains[i].name)) continue;
        created[i] = 1;
        rc = knft_emit_chain(&em, w.chains[i].name, NULL);
        report->chains_created++;
        if (!rc && w.chains[i].ensure_only && !knft_plan_change(plan, CH_SET, t, w.chains[i].name)) rc = ENOMEM;
    }
    /* chains named by jumps and ensured rules: base chains as iptables-nft makes them, others as -N */
    for (int pass = 0; pass < 2 && !rc; pass++) {
        const named_rule *list = pass ? w.ensured : w.jumps;
        size_t count = pass ? w.nensured : w.njumps;
        for (size_t i = 0; i < count && !rc; i++) {
            const char *name = list[i].chain;
            if (knft_table_chain(t, name) || declares(&o, name) || knft_planned(plan, t, name)) continue;
            const knft_builtin *b = knft_find_builtin(t->name, name);
            if (!b && pass == 0) {
                knft_set_message(res, "ipv%d %s: %s is not a base chain of this table", t->family, t->name, name);
                rc = EINVAL;
                break;
            }
            rc = knft_emit_chain(&em, name, b);
            if (!b) report->chains_created++;
            change *ch = knft_plan_change(plan, CH_SET, t, name);
            if (!ch) rc = ENOMEM;
            else ch->base = b != NULL;
        }
    }
    if (rc) goto done;

    /* 2: base chains (kube-natd's jumps, its stray jumps, ensured rules, rules to delete), and other chains
       holding ensured rules or rules to delete */
    size_t nnamed = w.nensured + w.ndelrules;
    uint64_t *named = calloc(nnamed + 1, sizeof(uint64_t));
    if (!named) { rc = ENOMEM; goto done; }
    for (size_t k = 0; k < w.nensured; k++) named[k] = knft_hash_str(w.ensured[k].chain);
    for (size_t k = 0; k < w.ndelrules; k++) named[w.nensured + k] = knft_hash_str(w.delrules[k].chain);
    for (size_t i = 0; i < t->nchains && !rc; i++) {
        knft_chain *c = &t->chains[i];
        if (c->dead) continue;
        int touched = c->base;
        for (size_t k = 0; k < nnamed && !touched; k++) touched = named[k] == c->name_hash;
        if (touched && !owns(&o, c)) rc = plan_edited_chain(ctx, &em, plan, &w, c->name, c->base, full_sync);
    }
    free(named);
    /* the chains this batch creates for jumps and ensured rules (the changes recorded in step 1) */
    size_t upto = plan->n;
    for (size_t i = first_change; i < upto && !rc; i++) {
        if (plan->changes[i].op != CH_SET || knft_table_chain(t, plan->changes[i].chain)) continue;
        char *name = plan->changes[i].chain; /* owned by the plan; the array may move below */
        int base = plan->changes[i].base;
        int named = 0;
        for (size_t k = 0; k < w.njumps && !named; k++) named = !strcmp(w.jumps[k].chain, name);
        for (size_t k = 0; k < w.nensured && !named; k++) named = !strcmp(w.ensured[k].chain, name);
        if (named) rc = plan_edited_chain(ctx, &em, plan, &w, name, base, full_sync);
    }

    /* 3: declared chains (an incremental plan parsed only the changed ones) */
    for (size_t i = 0; i < w.nchains && !rc; i++) {
        if (w.chains[i].ensure_only) continue;
        rc = plan_declared(ctx, &em, plan, &w, &w.chains[i], created[i]);
    }

    /* 4: deletions */
    if (!rc) rc = plan_deletions(&em, plan, &w, &o);
done:
    free(created);
    free(o.owned.h);
    free(o.kept.h);
    knft_wanted_free(&w);
    return rc;
}
