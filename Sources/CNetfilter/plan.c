/*
 * The libiptc shim's view of a table for the one planner (knat_plan.h, in CRuleProgram): the chains and rules
 * snapshot.c read, each rule compared with a program rule as libiptc would see it (knat_rule_same over the entry
 * the program rule encodes to). Nothing here decides: an empty plan (no writes) is the steady-state answer, a
 * non-empty one is what execute.c replays. x_tables has no room to record who wrote a rule, so no rule is marked
 * as kube-natd's own jump (knat_plan.h D7).
 */
#include "shim.h"

typedef struct view_ctx {
    const knat_snapshot *s;
    const uint8_t *prog;
    size_t len;
    knat_result *res;
    knat_rule_buf b;      /* a declared chain's rule, encoded for one comparison */
    knat_rule_buf *edits; /* jumps, ensured and deleted rules, each encoded once (by knat_plan_rule.edit) */
    size_t nedits;
    uint32_t first; /* id of the first rule of the declared chain being compared (for messages) */
} view_ctx;

static knat_view_chain view_chain(void *ctx, uint32_t i) {
    const knat_chain *c = &((view_ctx *)ctx)->s->chains[i];
    return (knat_view_chain){c->name, c->count, c->builtin};
}

static int32_t view_find(void *ctx, const char *name) {
    const knat_snapshot *s = ((view_ctx *)ctx)->s;
    const knat_chain *c = knat_find_chain(s, name);
    return c ? (int32_t)(c - s->chains) : -1;
}

static knat_view_rule view_rule(void *ctx, uint32_t chain, uint32_t index) {
    const knat_snapshot *s = ((view_ctx *)ctx)->s;
    return (knat_view_rule){s->rules[s->chains[chain].first + index].label, 0};
}

/* The entry a program rule encodes to; NULL with res set (and *rc) when it does not encode. */
static const knat_rule_buf *encoded(view_ctx *x, const knat_plan_rule *want, int *rc) {
    knat_rule_buf *b = &x->b;
    if (want->edit != UINT16_MAX) {
        if (want->edit >= x->nedits) {
            size_t n = (size_t)want->edit + 16;
            knat_rule_buf *e = realloc(x->edits, n * sizeof(*e));
            if (!e) return *rc = ENOMEM, NULL;
            memset(e + x->nedits, 0, (n - x->nedits) * sizeof(*e));
            x->edits = e;
            x->nedits = n;
        }
        b = &x->edits[want->edit];
        if (b->entry) return b;
        if (!(b->entry = malloc(KNAT_ENTRY_CAP))) return *rc = ENOMEM, NULL;
    }
    knat_reader rd = {x->prog, (size_t)want->at + want->length, want->at};
    if ((*rc = knat_rule_encode(x->s->f, &rd, b, x->res))) {
        char chain[KNAT_CHAIN_NAME_MAX + 1];
        knat_plan_record_name(x->prog, x->len, want->op_at, chain);
        unsigned index = want->op == KNAT_OP_CHAIN ? want->id - x->first + 1 : 1;
        knat_rule_error(x->res, *rc, x->s->table, chain, index);
        if (want->edit != UINT16_MAX) {
            free(b->entry);
            b->entry = NULL;
        }
        return NULL;
    }
    return b;
}

static int view_same(void *ctx, uint32_t chain, uint32_t index, const knat_plan_rule *want) {
    view_ctx *x = ctx;
    int rc = 0;
    const knat_rule_buf *b = encoded(x, want, &rc);
    if (!b) return -rc;
    const knat_rule *r = &x->s->rules[x->s->chains[chain].first + index];
    return knat_rule_same(x->s->f, r->entry, r->label, b);
}

/* Not a shortcut: only notes which chain the rules compared next belong to, for messages. */
static int view_chain_same(void *ctx, uint32_t chain, const knat_plan_chain *want) {
    (void)chain;
    ((view_ctx *)ctx)->first = want->first;
    return 2;
}

int knat_plan_make(const knat_snapshot *s, const uint8_t *prog, size_t len, knat_plan *p, knat_result *res) {
    view_ctx x = {.s = s, .prog = prog, .len = len, .res = res};
    memset(p, 0, sizeof(*p));
    if (!(x.b.entry = malloc(KNAT_ENTRY_CAP))) return knat_fail(res, ENOMEM, "%s: out of memory", s->table);
    knat_view v = {.ctx = &x, .table = s->table, .nchains = (uint32_t)s->nchains, .chain = view_chain,
                   .find = view_find, .rule = view_rule, .same = view_same, .chain_same = view_chain_same};
    char message[sizeof(res->message)];
    res->message[0] = 0;
    int rc = knat_plan_table(prog, len, &v, p, message, sizeof(message));
    if (rc && message[0]) knat_fail(res, rc, "%s", message);
    else if (rc && !res->message[0]) knat_fail(res, rc, "%s: %s", s->table, strerror(rc));
    for (size_t i = 0; !rc && i < p->nsteps; i++) /* what the plan keeps and why, reported whether or not it writes */
        if (p->steps[i].kind == KNAT_STEP_KEEP_CHAIN) {
            res->warnings++;
            knat_fail(res, 0, "%s: %s", s->table, p->steps[i].warning);
        }
    for (size_t i = 0; i < x.nedits; i++) free(x.edits[i].entry);
    free(x.edits);
    free(x.b.entry);
    return rc;
}
