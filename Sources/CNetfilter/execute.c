/*
 * The executor: replays the one planner's steps (knat_plan.h) through libiptc and commits. It decides nothing:
 * creates run first (so jumps between new chains resolve), then every other step in the plan's order (declared
 * chains filled or flushed and refilled, rule edits per chain, stale chains flushed and deleted or kept). Where the plan was made from a raw read and
 * libiptc read the table again, a rule deleted by position must still be the one planned: if not (a writer that
 * ignores the lock changed the table in between) the round ends with EAGAIN and the apply reads and plans again.
 */
#include "shim.h"

typedef struct exec {
    const knat_snapshot *s;
    const knat_family *f;
    const knat_iptc *tc;
    struct xtc_handle *h;
    const knat_plan *p;
    const char *table;
    knat_result *res;
    knat_rule_buf b;
    char **created; /* names of the chains the plan creates, sorted (jump targets that exist by then) */
    size_t ncreated;
} exec;

static int failed(exec *x, const char *what, const char *chain) {
    int err = errno;
    return knat_fail(x->res, err ? err : EIO, "%s: %s %s: %s", x->table, what, chain, x->tc->ops->strerror(err));
}

static int changed(exec *x) {
    return knat_fail(x->res, EAGAIN, "%s: the table changed between the read and iptc_init", x->table);
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_created(const exec *x, const char *name) {
    return x->ncreated && bsearch(&name, x->created, x->ncreated, sizeof(char *), name_cmp) != NULL;
}

/* Encodes the rule that follows in rd and checks that its jump lands on a chain that exists by now. */
static int encode(exec *x, knat_reader *rd, const char *chain, unsigned index) {
    int rc = knat_rule_encode(x->f, rd, &x->b, x->res);
    if (rc) return knat_rule_error(x->res, rc, x->table, chain, index);
    const char *l = x->b.label;
    if (x->b.module || !l[0] || !strcmp(l, "ACCEPT") || !strcmp(l, "DROP") || !strcmp(l, "RETURN") ||
        !strcmp(l, "QUEUE") || knat_find_chain(x->s, l) || is_created(x, l) || x->tc->ops->is_chain(l, x->h))
        return 0;
    return knat_fail(x->res, ENOENT, "%s: chain %s rule %u: jump to missing chain %s", x->table, chain, index, l);
}

/* Deletes rule `index` of the chain if it is still the rule the plan saw there (its entry as read). */
static int delete_rule(exec *x, const knat_step *st) {
    const knat_chain *c = &x->s->chains[st->chain];
    const knat_rule *seen = &x->s->rules[c->first + st->index];
    uint64_t digest = knat_rule_digest(x->f, KNAT_FNV_INIT, seen->entry, seen->label,
                                       knat_entry_module(x->f, seen->entry));
    const void *e = x->tc->first_rule(c->name, x->h);
    for (uint32_t i = 0; e && i < st->index; i++) e = x->tc->next_rule(e, x->h);
    const char *label = e ? x->tc->get_target(e, x->h) : NULL;
    if (!label || knat_rule_digest(x->f, KNAT_FNV_INIT, e, label, knat_entry_module(x->f, e)) != digest)
        return changed(x);
    if (!x->tc->delete_num_entry(c->name, st->index, x->h)) return failed(x, "deleting a rule of", c->name);
    x->res->rules_deleted++;
    return 0;
}

static int insert_rule(exec *x, const uint8_t *prog, size_t len, const knat_step *st) {
    char chain[KNAT_CHAIN_MAX];
    knat_reader rd = knat_open_record(prog, len, st->at, chain);
    int jump = st->flags & KNAT_STEP_JUMPS;
    int rc = encode(x, &rd, chain, jump && st->index != KNAT_PLAN_END ? st->index + 1 : 1);
    if (rc) return rc;
    if (st->index == KNAT_PLAN_END ? !x->tc->append_entry(chain, x->b.entry, x->h)
                                   : !x->tc->insert_entry(chain, x->b.entry, st->index, x->h))
        return failed(x, jump ? "inserting a jump into" : "adding an ensured rule to", chain);
    if (jump) x->res->jumps_inserted++;
    else x->res->rules_appended++;
    return 0;
}

static int fill_chain(exec *x, const uint8_t *prog, size_t len, const knat_step *st) {
    char chain[KNAT_CHAIN_MAX];
    knat_reader rd = knat_open_record(prog, len, st->at, chain);
    for (unsigned index = 1; knat_peek_kind(&rd) >= KNAT_E_COMMENT; index++) {
        int rc = encode(x, &rd, chain, index);
        if (rc) return rc;
        if (!x->tc->append_entry(chain, x->b.entry, x->h)) {
            int err = errno;
            return knat_fail(x->res, err ? err : EIO, "%s: chain %s rule %u (-j %s): %s", x->table, chain, index,
                             x->b.label, x->tc->ops->strerror(err));
        }
        x->res->rules_appended++;
    }
    return 0;
}

/* Creates first (so jumps between new chains resolve), then every other step in the plan's order. */
static int run(exec *x, const uint8_t *prog, size_t len, int attempt) {
    const knat_iptc *tc = x->tc;
    const knat_plan *p = x->p;
    knat_result *res = x->res;
    char chain[KNAT_CHAIN_MAX];
    int rc = 0;
    for (size_t i = 0; i < p->nsteps && !rc; i++) {
        const knat_step *st = &p->steps[i];
        if (st->kind != KNAT_STEP_CREATE) continue;
        knat_open_record(prog, len, st->at, chain);
        if (st->flags & KNAT_STEP_JUMPS) /* x_tables always has its base chains (knat_plan.h D9) */
            return knat_fail(res, ENOENT, "%s: base chain %s does not exist", x->table, chain);
        if (tc->ops->create_chain(chain, x->h)) res->chains_created++;
        else rc = errno == EEXIST ? changed(x) : failed(x, "creating chain", chain);
    }
    for (size_t i = 0; i < p->nsteps && !rc; i++) {
        const knat_step *st = &p->steps[i];
        const char *name = st->chain >= 0 ? x->s->chains[st->chain].name : NULL;
        switch (st->kind) {
        case KNAT_STEP_FILL: rc = fill_chain(x, prog, len, st); break;
        case KNAT_STEP_REWRITE:
            if (!tc->ops->flush_entries(name, x->h)) {
                rc = errno == ENOENT ? changed(x) : failed(x, "flushing chain", name);
                break;
            }
            res->chains_flushed++;
            rc = fill_chain(x, prog, len, st);
            break;
        case KNAT_STEP_DELETE_RULE: rc = delete_rule(x, st); break;
        case KNAT_STEP_INSERT: rc = insert_rule(x, prog, len, st); break;
        case KNAT_STEP_KEEP_CHAIN:
            if (st->count && !tc->ops->flush_entries(name, x->h))
                rc = errno == ENOENT ? changed(x) : failed(x, "flushing stale chain", name);
            break;
        case KNAT_STEP_DELETE_CHAIN:
            if (!tc->ops->flush_entries(name, x->h)) {
                rc = errno == ENOENT ? changed(x) : failed(x, "flushing stale chain", name);
            } else if (tc->delete_chain(name, x->h)) {
                res->chains_deleted++;
            } else { /* a reference the read did not show: another writer changed the table */
                rc = errno == EMLINK || errno == EBUSY ? changed(x) : failed(x, "deleting stale chain", name);
            }
            break;
        default: break;
        }
    }
    if (rc) return rc;
    knat_test_gate("KNAT_TEST_GATE_BEFORE_COMMIT", attempt);
    double committing = knat_now();
    if (!tc->ops->commit(x->h)) {
        int err = errno;
        return knat_fail(res, err ? err : EIO, "%s: commit: %s", x->table, tc->ops->strerror(err));
    }
    res->commit_seconds = knat_now() - committing;
    res->committed = 1;
    return 0;
}

int knat_execute(const knat_snapshot *s, struct xtc_handle *h, const knat_plan *p, const uint8_t *prog,
                 size_t len, int attempt, knat_result *res) {
    exec x = {.s = s, .f = s->f, .tc = &s->f->iptc, .h = h, .p = p, .table = s->table, .res = res};
    double started = knat_now();
    int rc = 0;
    if (!(x.b.entry = malloc(KNAT_ENTRY_CAP))) rc = ENOMEM;
    if (!rc) {
        size_t n = 0;
        for (size_t i = 0; i < p->nsteps; i++) n += p->steps[i].kind == KNAT_STEP_CREATE;
        if (n && !(x.created = calloc(n, sizeof(char *)))) rc = ENOMEM;
        for (size_t i = 0; i < p->nsteps && !rc; i++) {
            if (p->steps[i].kind != KNAT_STEP_CREATE) continue;
            if (!(x.created[x.ncreated] = malloc(KNAT_CHAIN_MAX))) rc = ENOMEM;
            else knat_open_record(prog, len, p->steps[i].at, x.created[x.ncreated++]);
        }
        if (!rc && x.ncreated) qsort(x.created, x.ncreated, sizeof(char *), name_cmp);
    }
    if (rc) knat_fail(res, rc, "%s: out of memory", s->table);
    else rc = run(&x, prog, len, attempt);
    res->build_seconds = res->init_seconds + (knat_now() - started) - res->commit_seconds;
    for (size_t i = 0; i < x.ncreated; i++) free(x.created[i]);
    free(x.created);
    free(x.b.entry);
    return rc;
}
