/*
 * The decision engine: compares a table as read (snapshot.c) with the program and writes down every change that
 * brings the table to the program's wanted state. An empty plan is the steady-state answer (nothing to write, no
 * commit); a non-empty one is exactly what execute.c replays through libiptc. Nothing else in the shim decides.
 *
 * What kube-natd owns, as the program states it: declared chains (created, or flushed and refilled when their
 * rules differ), stale chains (listed, or with a service prefix and no longer declared: flushed and deleted), its
 * jumps in base chains (exactly once each, at the top, in order), and rules to delete wherever they are. Ensured
 * rules are only added when missing. Everything else in the table is foreign and left where it is.
 */
#include "shim.h"

enum { MARK_DECLARED = 1, MARK_STALE = 2 }; /* per chain of the snapshot */

/* A record that edits rules of a chain it names (JUMP, DELETE_RULE, ENSURE_RULE), or a DELETE_CHAIN. */
typedef struct edit {
    uint32_t at;
    uint16_t kind;
    char chain[KNAT_CHAIN_MAX];
    knat_rule_buf rule;
} edit;

typedef struct doom {
    uint32_t index;
    uint8_t moved_only; /* ours: deleted only when the jumps are not in place (they are then inserted again) */
    uint64_t digest;
} doom;

typedef struct planner {
    const knat_family *f;
    const knat_snapshot *s;
    knat_plan *p;
    knat_result *res;
    uint8_t *marks;
    const char *prefixes[16];
    size_t prefix_len[16], nprefixes;
    edit *edits;
    size_t nedits, edit_cap;
    doom *dooms;
    size_t ndooms, doom_cap;
    const edit **group; /* one chain's jumps, deletes and ensured rules: 3 * nedits */
    knat_rule_buf b;
} planner;

static int same(const planner *pl, const knat_rule *r, const knat_rule_buf *b) {
    return knat_rule_same(pl->f, r->entry, r->label, b);
}

static int declared_cmp(const void *a, const void *b) { return strcmp(a, b); }

static int step(planner *pl, uint8_t what, uint32_t at, uint32_t index, uint64_t digest) {
    knat_plan *p = pl->p;
    if (knat_grow((void **)&p->steps, &p->step_cap, p->nsteps, sizeof(*p->steps))) return ENOMEM;
    p->steps[p->nsteps++] = (knat_step){at, index, digest, what};
    return 0;
}

/* Records a chain the program creates or keeps; *c: the table's chain of that name, or NULL. */
static int declare(planner *pl, const char *name, int owned, const knat_chain **c) {
    knat_plan *p = pl->p;
    if (knat_grow((void **)&p->declared, &p->declared_cap, p->ndeclared, sizeof(*p->declared))) return ENOMEM;
    knat_declared *d = &p->declared[p->ndeclared++];
    memset(d, 0, sizeof(*d));
    strcpy(d->name, name); /* read_program checked the length */
    d->owned = (uint8_t)owned;
    if ((*c = knat_find_chain(pl->s, name))) pl->marks[*c - pl->s->chains] |= MARK_DECLARED;
    return 0;
}

/* Sorted only once the plan is known to write something (a steady state never looks names up). */
static const knat_declared *find_declared(const knat_plan *p, const char *name) {
    knat_declared key = {{0}, 0};
    snprintf(key.name, sizeof(key.name), "%s", name);
    if (p->sorted) return p->ndeclared ? bsearch(&key, p->declared, p->ndeclared, sizeof(key), declared_cmp) : NULL;
    for (size_t i = 0; i < p->ndeclared; i++)
        if (!strcmp(p->declared[i].name, name)) return &p->declared[i];
    return NULL;
}

int knat_plan_declares(const knat_plan *p, const char *name) { return find_declared(p, name) != NULL; }

/* A KNAT_OP_CHAIN or KNAT_OP_ENSURE_CHAIN and the rules that follow it. */
static int plan_chain(planner *pl, uint32_t at, int kind, const char *name, knat_reader *rd) {
    const knat_snapshot *s = pl->s;
    const knat_chain *c;
    int rc = declare(pl, name, kind == KNAT_OP_CHAIN, &c);
    if (rc) return rc;
    if (!c) {
        if ((rc = step(pl, KNAT_DO_CREATE, at, 0, 0))) return rc;
        if (kind == KNAT_OP_CHAIN && (rc = step(pl, KNAT_DO_FILL, at, 0, 0))) return rc;
        return knat_skip_rules(rd);
    }
    if (kind == KNAT_OP_ENSURE_CHAIN) return knat_skip_rules(rd);
    if (c->builtin) return knat_fail(pl->res, EPERM, "%s: refusing to flush base chain %s", s->table, name);
    /* A chain that already holds exactly its rules is left alone: no flush, no refill. */
    uint32_t i = 0;
    int held = 1;
    while (held && knat_peek_kind(rd) >= KNAT_E_COMMENT) {
        if ((rc = knat_rule_encode(pl->f, rd, &pl->b, pl->res)))
            return knat_rule_error(pl->res, rc, s->table, name, i + 1);
        held = i < c->count && same(pl, &s->rules[c->first + i], &pl->b);
        i += held;
    }
    if (held && i == c->count) {
        pl->p->unchanged++;
        return 0;
    }
    if ((rc = step(pl, KNAT_DO_FLUSH, at, 0, 0)) || (rc = step(pl, KNAT_DO_FILL, at, 0, 0))) return rc;
    return knat_skip_rules(rd);
}

static int add_edit(planner *pl, uint32_t at, int kind, const char *name, knat_reader *rd) {
    if (knat_grow((void **)&pl->edits, &pl->edit_cap, pl->nedits, sizeof(*pl->edits))) return ENOMEM;
    edit *e = &pl->edits[pl->nedits++];
    memset(e, 0, sizeof(*e));
    e->at = at;
    e->kind = (uint16_t)kind;
    strcpy(e->chain, name);
    if (kind == KNAT_OP_DELETE_CHAIN) return knat_skip_rules(rd);
    const knat_chain *c;
    if (kind == KNAT_OP_ENSURE_RULE && declare(pl, name, 0, &c)) return ENOMEM; /* kept, never stale */
    if (!(e->rule.entry = malloc(KNAT_ENTRY_CAP))) return ENOMEM;
    int rc = knat_rule_encode(pl->f, rd, &e->rule, pl->res);
    return rc ? knat_rule_error(pl->res, rc, pl->s->table, name, 1) : 0;
}

/* One pass over the program: declared chains decided, prefixes and edits collected. */
static int read_program(planner *pl, const uint8_t *prog, size_t len) {
    const char *table = pl->s->table;
    knat_reader rd = {prog, len, 0};
    knat_record rec;
    int more, rc = 0;
    while (!rc && (more = knat_next(&rd, &rec)) == 1) {
        uint32_t at = (uint32_t)(rd.offset - 4 - rec.length);
        char name[KNAT_CHAIN_MAX];
        if (rec.kind == KNAT_OP_STALE_PREFIX) {
            if (pl->nprefixes == 16) return knat_fail(pl->res, E2BIG, "%s: more than 16 stale prefixes", table);
            pl->prefixes[pl->nprefixes] = (const char *)rec.payload;
            pl->prefix_len[pl->nprefixes++] = rec.length;
            continue;
        }
        if (!knat_copy_str(&rec, 0, name, sizeof(name)) || strlen(name) > KNAT_CHAIN_NAME_MAX)
            return knat_fail(pl->res, ENAMETOOLONG, "%s: chain name longer than %d characters", table,
                             KNAT_CHAIN_NAME_MAX);
        switch (rec.kind) {
        case KNAT_OP_CHAIN:
        case KNAT_OP_ENSURE_CHAIN: rc = plan_chain(pl, at, rec.kind, name, &rd); break;
        case KNAT_OP_DELETE_CHAIN:
        case KNAT_OP_JUMP:
        case KNAT_OP_DELETE_RULE:
        case KNAT_OP_ENSURE_RULE: rc = add_edit(pl, at, rec.kind, name, &rd); break;
        default: return knat_fail(pl->res, EINVAL, "%s: unknown program record %u", table, rec.kind);
        }
    }
    if (!rc && more < 0) rc = knat_fail(pl->res, EINVAL, "%s: truncated program", table);
    return rc;
}

/* Stale: a listed deletion that exists, or a chain with a service prefix the program does not declare. */
static int plan_stale(planner *pl) {
    const knat_snapshot *s = pl->s;
    for (size_t i = 0; i < pl->nedits; i++) {
        const knat_chain *c = pl->edits[i].kind == KNAT_OP_DELETE_CHAIN ? knat_find_chain(s, pl->edits[i].chain) : NULL;
        if (c && !c->builtin && !(pl->marks[c - s->chains] & MARK_DECLARED)) pl->marks[c - s->chains] |= MARK_STALE;
    }
    knat_plan *p = pl->p;
    for (size_t i = 0; i < s->nchains; i++) {
        const knat_chain *c = &s->chains[i];
        for (size_t k = 0; k < pl->nprefixes && !c->builtin && !(pl->marks[i] & MARK_DECLARED); k++)
            if (!strncmp(c->name, pl->prefixes[k], pl->prefix_len[k])) pl->marks[i] |= MARK_STALE;
        if (!(pl->marks[i] & MARK_STALE)) continue;
        if (knat_grow((void **)&p->stale, &p->stale_cap, p->nstale, sizeof(knat_name))) return ENOMEM;
        snprintf(p->stale[p->nstale++], sizeof(knat_name), "%s", c->name);
    }
    return 0;
}

static int add_doom(planner *pl, uint32_t index, int moved_only, const knat_rule *r) {
    if (knat_grow((void **)&pl->dooms, &pl->doom_cap, pl->ndooms, sizeof(*pl->dooms))) return ENOMEM;
    uint64_t digest = knat_rule_digest(pl->f, KNAT_FNV_INIT, r->entry, r->label, knat_entry_module(pl->f, r->entry));
    pl->dooms[pl->ndooms++] = (doom){index, (uint8_t)moved_only, digest};
    return 0;
}

static int matches_any(const planner *pl, const knat_rule *r, const edit *const *list, size_t n) {
    for (size_t k = 0; k < n; k++)
        if (same(pl, r, &list[k]->rule)) return 1;
    return 0;
}

/* Every rule edit of one chain, decided over its rules in one walk. The jumps are in place when the rules left
   after the deletions start with exactly them, in order, and no other rule of ours (a copy of a jump, or a jump
   into a stale chain) follows; otherwise ours are deleted and the jumps inserted at the top again. A missing
   ensured rule goes right after the jumps in a base chain, at the end elsewhere. */
static int plan_chain_edits(planner *pl, const char *chain, uint32_t name_at) {
    const knat_snapshot *s = pl->s;
    const knat_chain *c = knat_find_chain(s, chain);
    const edit **jumps = pl->group, **deletes = jumps + pl->nedits, **ensured = deletes + pl->nedits;
    size_t nj = 0, nd = 0, ne = 0;
    for (size_t k = 0; k < pl->nedits; k++) {
        const edit *e = &pl->edits[k];
        if (strcmp(e->chain, chain)) continue;
        if (e->kind == KNAT_OP_JUMP) jumps[nj++] = e;
        if (e->kind == KNAT_OP_DELETE_RULE) deletes[nd++] = e;
        if (e->kind == KNAT_OP_ENSURE_RULE) ensured[ne++] = e;
    }
    const knat_declared *d = find_declared(pl->p, chain);
    if (ne && d && d->owned)
        return knat_fail(pl->res, EINVAL, "%s: chain %s is both declared and ensured", s->table, chain);
    if (nj && !c) return knat_fail(pl->res, ENOENT, "%s: base chain %s does not exist", s->table, chain);
    int rc = !c && ne ? step(pl, KNAT_DO_CREATE, name_at, 0, 0) : 0;
    for (size_t k = 0; !c && k < ne && !rc; k++) rc = step(pl, KNAT_DO_INSERT, ensured[k]->at, KNAT_APPEND, 0);
    if (!c || (pl->marks[c - s->chains] & MARK_STALE)) return rc; /* nothing to delete in a new (or doomed) chain */

    int in_place = 1;
    size_t kept = 0;
    pl->ndooms = 0;
    for (uint32_t i = 0; i < c->count && !rc; i++) {
        const knat_rule *r = &s->rules[c->first + i];
        if (matches_any(pl, r, deletes, nd)) {
            rc = add_doom(pl, i, 0, r);
            continue;
        }
        const knat_chain *target = nj && r->label && r->label[0] ? knat_find_chain(s, r->label) : NULL;
        int ours = matches_any(pl, r, jumps, nj) || (target && (pl->marks[target - s->chains] & MARK_STALE));
        if (kept < nj ? !same(pl, r, &jumps[kept]->rule) : ours) in_place = 0;
        kept++;
        if (ours) rc = add_doom(pl, i, 1, r);
    }
    if (kept < nj) in_place = 0;
    for (size_t k = pl->ndooms; k-- > 0 && !rc;) /* from the bottom: the indices above stay valid */
        if (!pl->dooms[k].moved_only || !in_place)
            rc = step(pl, KNAT_DO_DELETE, name_at, pl->dooms[k].index, pl->dooms[k].digest);
    for (uint32_t k = 0; k < nj && !in_place && !rc; k++) rc = step(pl, KNAT_DO_INSERT, jumps[k]->at, k, 0);
    uint32_t at = c->builtin ? (uint32_t)nj : KNAT_APPEND;
    for (size_t k = 0; k < ne && !rc; k++) {
        int present = 0; /* anywhere in the chain, unless deleted above */
        for (uint32_t i = 0; i < c->count && !present; i++) {
            const knat_rule *r = &s->rules[c->first + i];
            present = same(pl, r, &ensured[k]->rule) && !matches_any(pl, r, deletes, nd);
        }
        if (present) continue;
        rc = step(pl, KNAT_DO_INSERT, ensured[k]->at, at, 0);
        if (at != KNAT_APPEND) at++;
    }
    return rc;
}

int knat_plan_make(const knat_snapshot *s, const uint8_t *prog, size_t len, knat_plan *p, knat_result *res) {
    memset(p, 0, sizeof(*p));
    planner pl = {.f = s->f, .s = s, .p = p, .res = res};
    pl.marks = calloc(s->nchains + 1, 1);
    pl.b.entry = malloc(KNAT_ENTRY_CAP);
    int rc = pl.marks && pl.b.entry ? read_program(&pl, prog, len) : ENOMEM;
    if (!rc) rc = plan_stale(&pl);
    if (!rc && pl.nedits && !(pl.group = malloc(3 * pl.nedits * sizeof(*pl.group)))) rc = ENOMEM;
    for (size_t g = 0; g < pl.nedits && !rc; g++) {
        const edit *e = &pl.edits[g];
        int first = e->kind != KNAT_OP_DELETE_CHAIN;
        for (size_t k = 0; k < g && first; k++)
            first = pl.edits[k].kind == KNAT_OP_DELETE_CHAIN || strcmp(pl.edits[k].chain, e->chain);
        if (first) rc = plan_chain_edits(&pl, e->chain, e->at);
    }
    if (!rc && (p->nsteps || p->nstale)) { /* the executor checks jump targets against them */
        qsort(p->declared, p->ndeclared, sizeof(*p->declared), declared_cmp);
        p->sorted = 1;
    }
    if (rc && !res->message[0])
        knat_fail(res, rc, "%s: %s", s->table, rc == ENOMEM ? "out of memory" : "malformed program");
    for (size_t i = 0; i < pl.nedits; i++) free(pl.edits[i].rule.entry);
    free(pl.edits);
    free(pl.dooms);
    free(pl.group);
    free(pl.marks);
    free(pl.b.entry);
    if (rc) knat_plan_free(p);
    return rc;
}

void knat_plan_free(knat_plan *p) {
    free(p->steps);
    free(p->stale);
    free(p->declared);
    memset(p, 0, sizeof(*p));
}
