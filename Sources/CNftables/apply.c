/*
 * The entry points: apply (read or trust the model, decide, send one batch, retry on ERESTART), the read-back
 * of owned chains with digests, and the digests a set of programs will give once applied.
 *
 * The model is trusted only while the kernel's generation id is the one this context last read at or last
 * committed: nf_tables bumps it on every commit by anyone in the netns, so an unchanged id means an unchanged
 * ruleset, and no dump is needed to know what differs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include "internal.h"

void knft_test_gate_before_send(int attempt) {
    if (attempt != 1) return;
    const char *gate = getenv("KNAT_TEST_NFT_GATE_BEFORE_SEND");
    if (!gate || !*gate) return;
    char ready[4096];
    if (snprintf(ready, sizeof(ready), "%s.ready", gate) >= (int)sizeof(ready)) return;
    FILE *f = fopen(ready, "w");
    if (f) fclose(f);
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 6000 && access(gate, F_OK) != 0; i++) nanosleep(&tick, NULL);
}

/* ---- test-only faults --------------------------------------------------------------------------------------- */

int knft_faults_armed;
static struct {
    unsigned first, count, calls, hits;
} faults[KNFT_FAULT_POINTS];

void knft_test_fault(int point, unsigned first, unsigned count) {
    if (point < 0 || point >= KNFT_FAULT_POINTS) return;
    faults[point].first = first;
    faults[point].count = count;
    faults[point].calls = 0;
    faults[point].hits = 0;
    knft_faults_armed = 1;
}

unsigned knft_test_fault_hits(int point) {
    return point >= 0 && point < KNFT_FAULT_POINTS ? faults[point].hits : 0;
}

int knft_fault_hit(int point) {
    if (!knft_faults_armed || !faults[point].count) return 0;
    unsigned n = ++faults[point].calls;
    if (n < faults[point].first || n - faults[point].first >= faults[point].count) return 0;
    faults[point].hits++;
    return 1;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Is every (family, table) in the model, and the model current? */
static int model_covers(knft_context *ctx, const int *families, const char *const *tables, size_t n, uint32_t genid) {
    if (!ctx->model.valid || ctx->model.genid != genid) return 0;
    for (size_t i = 0; i < n; i++)
        if (!knft_model_table(&ctx->model, families[i], tables[i], 0)) return 0;
    return 1;
}

/* The model, current for these tables: kept when the generation id allows, else read. */
static int current_model(knft_context *ctx, const int *families, const char *const *tables, size_t n, int flags,
                         knft_result *res) {
    uint32_t genid;
    int rc = knft_getgen(ctx, &genid, res);
    if (rc) return rc;
    if (!(flags & KNFT_APPLY_READ) && model_covers(ctx, families, tables, n, genid)) {
        res->read_kernel = 0;
        return 0;
    }
    res->read_kernel = 1;
    /* current but missing a table (e.g. mangle, which an apply does not write): read only that one */
    int add = !(flags & KNFT_APPLY_READ) && ctx->model.valid && ctx->model.genid == genid;
    return knft_read_tables(ctx, families, tables, n, add, res);
}

/* A program of ENSURE_CHAIN records only (the canaries): it changes no declared chain. */
static int only_ensures(const knft_program *p) {
    knat_reader rd = {p->bytes, p->length, 0};
    knat_record rec;
    int n;
    while ((n = knat_next(&rd, &rec)) == 1)
        if (rec.kind != KNAT_OP_ENSURE_CHAIN) return 0;
    return n == 0;
}

/* The kernel model now holds exactly what the programs say: a later program naming one of them as its base may
   be planned from its change alone. Other programs (cleanup) may have changed declared chains: not so. */
static void note_applied(knft_context *ctx, const knft_program *programs, size_t count, knft_index *const *indexes) {
    for (size_t i = 0; i < count; i++) {
        if (indexes[i]) {
            indexes[i]->model_epoch = ctx->model.valid ? ctx->model.epoch : 0;
            continue;
        }
        if (only_ensures(&programs[i])) continue;
        knft_index *x = knft_index_of(&ctx->indexes, programs[i].family, programs[i].table);
        if (x) x->model_epoch = 0;
    }
}

int knft_apply(knft_context *ctx, const knft_program *programs, size_t count, knft_form form,
               const knft_stamp *stamp, int max_attempts, int flags, knft_result *res) {
    memset(res, 0, sizeof(*res));
    if (count > KNFT_MAX_TABLES) {
        res->error = EINVAL;
        knft_set_message(res, "at most %d tables per batch", KNFT_MAX_TABLES);
        return EINVAL;
    }
    if (max_attempts < 1) max_attempts = 1;
    int families[KNFT_MAX_TABLES];
    const char *tables[KNFT_MAX_TABLES];
    for (size_t i = 0; i < count; i++) {
        families[i] = programs[i].family;
        tables[i] = programs[i].table;
    }
    int rc = 0;
    /* each table's digest: declared programs (with an id) through their kept index, updated from the change
       when the program names the one indexed as its base; others parsed whole */
    uint64_t digests[KNFT_MAX_TABLES];
    knft_index *indexes[KNFT_MAX_TABLES] = {0};
    int from_change[KNFT_MAX_TABLES] = {0};
    unsigned indexed[KNFT_MAX_TABLES] = {0};
    double t00 = knft_now();
    if ((rc = knft_index_programs(&ctx->indexes, programs, count, form, digests, indexes, from_change, indexed, res)))
        return res->error = rc;
    double index_seconds = knft_now() - t00;
    uint64_t hash = knft_programs_hash(digests, count, form);
    knft_stamping stamping = {.where = stamp, .hash = hash};
    for (int attempt = 1; attempt <= max_attempts; attempt++) {
        res->attempts = attempt;
        res->error = 0;
        res->message[0] = 0;
        res->warnings = 0;
        res->ntables = count;
        for (size_t i = 0; i < count; i++) {
            memset(&res->tables[i], 0, sizeof(res->tables[i]));
            res->tables[i].family = programs[i].family;
            snprintf(res->tables[i].table, sizeof(res->tables[i].table), "%s", programs[i].table);
            res->tables[i].chains_indexed = attempt == 1 ? indexed[i] : 0;
        }
        double t0 = knft_now();
        if (stamp && !(flags & KNFT_APPLY_READ)) {
            /* no model of our own: the stamp may say that nothing changed since these programs were applied */
            uint32_t now, stamped;
            uint64_t hash;
            if ((rc = knft_getgen(ctx, &now, res))) return rc;
            if (!model_covers(ctx, families, tables, count, now)) {
                if ((rc = knft_read_stamp(ctx, stamp, &stamped, &hash, res))) return rc;
                if (stamped == now && hash == stamping.hash) {
                    res->stamp_current = 1;
                    res->genid = now;
                    res->read_seconds = knft_now() - t0;
                    res->decide_seconds = index_seconds;
                    return 0;
                }
            }
        }
        if ((rc = current_model(ctx, families, tables, count, flags, res))) return rc;
        double t1 = knft_now();
        res->read_seconds = t1 - t0;
        uint32_t genid = ctx->model.genid;
        if (!res->read_kernel && ctx->applied == hash) {
            /* nothing committed since the model was known to hold exactly these programs */
            res->genid = genid;
            res->decide_seconds = index_seconds;
            note_applied(ctx, programs, count, indexes);
            return 0;
        }

        knft_batch bt;
        knft_plan *plan = knft_plan_new();
        if (!plan || knft_batch_init(&bt, ctx)) {
            knft_plan_free(plan);
            res->error = ENOMEM;
            knft_set_message(res, "out of memory");
            return ENOMEM;
        }
        stamping.genid = genid + 1 ? genid + 1 : 1;
        stamping.written = 0;
        stamping.first_known = 0;
        for (size_t i = 0; i < count && !rc; i++) {
            knft_table *t = knft_model_table(&ctx->model, programs[i].family, programs[i].table, 0);
            /* only the change, when the model holds the program it changes (nothing else wrote since) */
            int incremental = from_change[i] && !programs[i].compare_all && !res->read_kernel &&
                              !(flags & KNFT_APPLY_READ) &&
                              ctx->model.valid && indexes[i]->model_epoch == ctx->model.epoch;
            rc = knft_plan_table(ctx, t, &programs[i], form, indexes[i], incremental, &bt, plan, &stamping,
                                 &res->tables[i], res);
        }
        if (!rc && stamp && knft_batch_count(&bt) && !stamping.written) {
            for (size_t i = 0; i < count && !rc; i++) {
                if (programs[i].family != stamp->family || strcmp(programs[i].table, stamp->table)) continue;
                knft_table *t = knft_model_table(&ctx->model, programs[i].family, programs[i].table, 0);
                rc = knft_plan_stamp(ctx, t, form, &bt, plan, &stamping, &res->tables[i], res);
                break;
            }
        }
        res->decide_seconds = knft_now() - t1 + (attempt == 1 ? index_seconds : 0);
        unsigned messages = knft_batch_count(&bt);
        if (!rc && messages == 0) {
            /* the kernel already holds the wanted state: nothing to send */
            res->genid = genid;
            ctx->applied = hash;
            note_applied(ctx, programs, count, indexes);
            knft_batch_free(&bt);
            knft_plan_free(plan);
            return 0;
        }
        if (!rc) {
            knft_test_gate_before_send(attempt);
            double t2 = knft_now();
            rc = knft_batch_send(&bt, ctx, genid, res);
            res->send_seconds = knft_now() - t2;
        }
        if (!rc) {
            knft_plan_apply(plan, &ctx->model);
            /* our commit is the one that moved the generation: nothing else can have committed in between */
            ctx->model.genid = genid + 1 ? genid + 1 : 1;
            ctx->applied = hash;
            note_applied(ctx, programs, count, indexes);
            res->genid = ctx->model.genid;
            res->messages = messages;
            res->batches = 1;
        } else {
            /* the kernel is as it was (or, after a lost reply, unknown): read it next time */
            knft_forget(ctx);
        }
        knft_batch_free(&bt);
        knft_plan_free(plan);
        if (rc != ERESTART) {
            res->error = rc;
            return rc;
        }
        if (attempt < max_attempts) {
            rc = 0;
            sleep_ms(10L * attempt * attempt);
        }
    }
    res->error = ERESTART;
    knft_set_message(res, "another writer kept committing between read and batch: gave up after %d attempts",
                     max_attempts);
    return ERESTART;
}

/* ---- read-back -------------------------------------------------------------------------------------------- */

static int selected(const char *name, const knft_selection *s) {
    for (size_t i = 0; i < s->nprefixes; i++)
        if (!strncmp(name, s->prefixes[i], strlen(s->prefixes[i]))) return 1;
    for (size_t i = 0; i < s->nnames; i++)
        if (!strcmp(name, s->names[i])) return 1;
    return 0;
}

/* A rule's identity for digests: kube-natd's tag, or for a rule another tool wrote, its content (marked, so
   it never equals a tag). */
static uint64_t identity(const knft_rule *r) {
    return r->flags & KNFT_R_TAGGED ? r->tag : (r->content ^ 0x8000000000000001ULL);
}

typedef struct digests {
    knft_chain_digest *items;
    size_t n, cap;
} digests;

static int add_digest(digests *d, int family, const char *table, const char *name, const uint64_t *ids, uint32_t n) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        knft_chain_digest *p = realloc(d->items, cap * sizeof(*p));
        if (!p) return ENOMEM;
        d->items = p;
        d->cap = cap;
    }
    knft_chain_digest *c = &d->items[d->n++];
    memset(c, 0, sizeof(*c));
    c->family = family;
    snprintf(c->table, sizeof(c->table), "%s", table);
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->rules = n;
    c->digest = knft_chain_digest_of(ids, n);
    return 0;
}

long knft_read_owned(knft_context *ctx, int family, const char *const *tables, size_t ntables,
                     const knft_selection *selection, int flags, knft_chain_digest **out, knft_result *res) {
    memset(res, 0, sizeof(*res));
    *out = NULL;
    if (ntables > KNFT_MAX_TABLES) return -EINVAL;
    int families[KNFT_MAX_TABLES];
    for (size_t i = 0; i < ntables; i++) families[i] = family;
    double t0 = knft_now();
    int rc = current_model(ctx, families, tables, ntables, flags, res);
    res->read_seconds = knft_now() - t0;
    if (rc) return -rc;
    res->genid = ctx->model.genid;
    digests d = {0};
    uint64_t *ids = NULL;
    size_t idcap = 0;
    for (size_t i = 0; i < ntables && !rc; i++) {
        knft_table *t = knft_model_table(&ctx->model, family, tables[i], 0);
        for (size_t k = 0; t && k < t->nchains && !rc; k++) {
            knft_chain *c = &t->chains[k];
            if (c->dead || c->base || !selected(c->name, selection)) continue;
            if (c->nrules > idcap) {
                idcap = c->nrules * 2;
                uint64_t *p = realloc(ids, idcap * sizeof(*p));
                if (!p) { rc = ENOMEM; break; }
                ids = p;
            }
            for (uint32_t r = 0; r < c->nrules; r++) ids[r] = identity(&c->rules[r]);
            rc = add_digest(&d, family, t->name, c->name, ids, c->nrules);
        }
    }
    free(ids);
    if (rc) {
        free(d.items);
        res->error = rc;
        knft_set_message(res, "out of memory");
        return -rc;
    }
    *out = d.items;
    return (long)d.n;
}

long knft_expected_owned(const knft_program *programs, size_t count, knft_form form, knft_chain_digest **out,
                         knft_result *res) {
    memset(res, 0, sizeof(*res));
    *out = NULL;
    digests d = {0};
    uint64_t *ids = NULL;
    size_t idcap = 0;
    int rc = 0;
    for (size_t i = 0; i < count && !rc; i++) {
        const knft_program *p = &programs[i];
        knat_reader rd = {p->bytes, p->length, 0};
        knat_record rec;
        int n = 0;
        while (!rc && (n = knat_next(&rd, &rec)) == 1) {
            int chain = rec.kind == KNAT_OP_CHAIN;
            char name[KNFT_NAME_MAX];
            if (rec.kind != KNAT_OP_DELETE_OWN_JUMPS && !knat_copy_str(&rec, 0, name, sizeof(name))) rc = EINVAL;
            uint32_t nr = 0;
            while (!rc && knat_peek_kind(&rd) >= KNAT_E_COMMENT) {
                knft_span span;
                uint64_t target;
                if (knft_rule_span(&rd, &span, &target)) {
                    rc = EINVAL;
                    break;
                }
                if (!chain) continue;
                if (nr == idcap) {
                    idcap = idcap ? idcap * 2 : 256;
                    uint64_t *q = realloc(ids, idcap * sizeof(*q));
                    if (!q) { rc = ENOMEM; break; }
                    ids = q;
                }
                ids[nr++] = knft_rule_tag(&span, form, p->family, KNFT_ROLE_OWNED);
            }
            if (!rc && chain) rc = add_digest(&d, p->family, p->table, name, ids, nr);
        }
        if (!rc && n < 0) rc = EINVAL;
    }
    free(ids);
    if (rc) {
        free(d.items);
        res->error = rc;
        knft_set_message(res, rc == EINVAL ? "malformed program" : "out of memory");
        return -rc;
    }
    *out = d.items;
    return (long)d.n;
}

int knft_prefetch(knft_context *ctx, const int *families, const char *const *tables, size_t n,
                  const knft_stamp *stamp, knft_result *res) {
    memset(res, 0, sizeof(*res));
    double t0 = knft_now();
    int rc = 0;
    if (stamp) {
        uint32_t now, stamped;
        uint64_t hash;
        if ((rc = knft_getgen(ctx, &now, res)) || (rc = knft_read_stamp(ctx, stamp, &stamped, &hash, res))) return rc;
        if (stamped == now) {
            /* as a batch of kube-natd left it: most likely the same programs, which the stamp alone confirms */
            res->stamp_current = 1;
            res->read_seconds = knft_now() - t0;
            return 0;
        }
    }
    res->read_kernel = 1;
    rc = knft_read_tables(ctx, families, tables, n, 0, res);
    res->read_seconds = knft_now() - t0;
    return rc;
}

int knft_has_model(const knft_context *ctx) { return ctx->model.valid; }
