/*
 * The executor: replays a plan through libiptc and commits it. It decides nothing; every create, flush, append,
 * delete and insert is a step of the plan, run in this order: creates (so jumps between new chains resolve),
 * flushes, refills, rule edits per chain, stale chain deletions. Where the plan was made from a raw read and
 * libiptc read the table again, a rule deleted by position must still be the one planned: if not (a writer that
 * ignores the lock changed the table in between) the round ends with EAGAIN and the apply reads and plans again.
 */
#include "shim.h"

typedef struct exec {
    const knat_family *f;
    const knat_iptc *tc;
    struct xtc_handle *h;
    const knat_plan *p;
    const char *table;
    knat_result *res;
    knat_rule_buf b;
} exec;

static int failed(exec *x, const char *what, const char *chain) {
    int err = errno;
    return knat_fail(x->res, err ? err : EIO, "%s: %s %s: %s", x->table, what, chain, x->tc->ops->strerror(err));
}

static int changed(exec *x) {
    return knat_fail(x->res, EAGAIN, "%s: the table changed between the read and iptc_init", x->table);
}

/* Encodes the rule that follows in rd and checks that its jump lands on a chain that exists by now. */
static int encode(exec *x, knat_reader *rd, const char *chain, unsigned index) {
    int rc = knat_rule_encode(x->f, rd, &x->b, x->res);
    if (rc) return knat_rule_error(x->res, rc, x->table, chain, index);
    const char *l = x->b.label;
    if (x->b.module || !l[0] || !strcmp(l, "ACCEPT") || !strcmp(l, "DROP") || !strcmp(l, "RETURN") ||
        !strcmp(l, "QUEUE") || knat_plan_declares(x->p, l) || x->tc->ops->is_chain(l, x->h))
        return 0;
    return knat_fail(x->res, ENOENT, "%s: chain %s rule %u: jump to missing chain %s", x->table, chain, index, l);
}

/* Deletes rule `index` of the chain if it is still the rule the plan saw there. */
static int delete_rule(exec *x, const char *chain, const knat_step *st) {
    const void *e = x->tc->first_rule(chain, x->h);
    for (uint32_t i = 0; e && i < st->index; i++) e = x->tc->next_rule(e, x->h);
    const char *label = e ? x->tc->get_target(e, x->h) : NULL;
    if (!label || knat_rule_digest(x->f, KNAT_FNV_INIT, e, label, knat_entry_module(x->f, e)) != st->digest)
        return changed(x);
    if (!x->tc->delete_num_entry(chain, st->index, x->h)) return failed(x, "deleting a rule of", chain);
    x->res->rules_deleted++;
    return 0;
}

static int insert_rule(exec *x, const uint8_t *prog, size_t len, const knat_step *st) {
    char chain[KNAT_CHAIN_MAX];
    knat_reader rd = knat_open_record(prog, len, st->at, chain);
    int jump = knat_u16(prog + st->at) == KNAT_OP_JUMP;
    int rc = encode(x, &rd, chain, jump ? st->index + 1 : 1);
    if (rc) return rc;
    if (st->index == KNAT_APPEND ? !x->tc->append_entry(chain, x->b.entry, x->h)
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

static int run(exec *x, const uint8_t *prog, size_t len, int attempt) {
    const knat_iptc *tc = x->tc;
    const knat_plan *p = x->p;
    knat_result *res = x->res;
    char chain[KNAT_CHAIN_MAX];
    int rc = 0;
    for (size_t i = 0; i < p->nsteps && !rc; i++) {
        if (p->steps[i].what != KNAT_DO_CREATE) continue;
        knat_open_record(prog, len, p->steps[i].at, chain);
        if (tc->ops->create_chain(chain, x->h)) res->chains_created++;
        else rc = errno == EEXIST ? changed(x) : failed(x, "creating chain", chain);
    }
    for (size_t i = 0; i < p->nsteps && !rc; i++) {
        if (p->steps[i].what != KNAT_DO_FLUSH) continue;
        knat_open_record(prog, len, p->steps[i].at, chain);
        if (tc->ops->flush_entries(chain, x->h)) res->chains_flushed++;
        else rc = errno == ENOENT ? changed(x) : failed(x, "flushing chain", chain);
    }
    for (size_t i = 0; i < p->nstale && !rc; i++)
        if (!tc->ops->flush_entries(p->stale[i], x->h))
            rc = errno == ENOENT ? changed(x) : failed(x, "flushing stale chain", p->stale[i]);
    for (size_t i = 0; i < p->nsteps && !rc; i++)
        if (p->steps[i].what == KNAT_DO_FILL) rc = fill_chain(x, prog, len, &p->steps[i]);
    for (size_t i = 0; i < p->nsteps && !rc; i++) {
        const knat_step *st = &p->steps[i];
        if (st->what == KNAT_DO_INSERT) rc = insert_rule(x, prog, len, st);
        if (st->what != KNAT_DO_DELETE) continue;
        knat_open_record(prog, len, st->at, chain);
        rc = delete_rule(x, chain, st);
    }
    for (size_t i = 0; i < p->nstale && !rc; i++) {
        if (tc->delete_chain(p->stale[i], x->h)) {
            res->chains_deleted++;
        } else { /* still referenced by a rule kube-natd does not own: leave it, say so */
            int err = errno;
            res->warnings++;
            knat_fail(res, 0, "%s: stale chain %s kept: %s", x->table, p->stale[i], tc->ops->strerror(err));
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
    exec x = {s->f, &s->f->iptc, h, p, s->table, res, {0}};
    double started = knat_now();
    if (!(x.b.entry = malloc(KNAT_ENTRY_CAP))) return knat_fail(res, ENOMEM, "%s: out of memory", s->table);
    int rc = run(&x, prog, len, attempt);
    res->build_seconds = res->init_seconds + (knat_now() - started) - res->commit_seconds;
    free(x.b.entry);
    return rc;
}
