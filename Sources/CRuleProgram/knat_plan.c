/*
 * The one planner (knat_plan.h has the decisions D1..D9 and why). Read the program once, then decide: declared
 * chains, stale chains, the rule edits of each chain named by a jump / ensured rule / rule to delete, and the order
 * stale chains can go in. Nothing here knows a kernel: the view answers every question about the table.
 */
#include "knat_plan.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* A declared name (KNAT_OP_CHAIN, _ENSURE_CHAIN) of the program. */
typedef struct pchain {
    knat_plan_chain c;
    const char *name; /* into the program, not NUL-terminated */
    uint16_t namelen;
    uint16_t op;
} pchain;

/* A JUMP, ENSURE_RULE or DELETE_RULE record and its one rule. */
typedef struct pedit {
    knat_plan_rule rule;
    const char *name;
    uint16_t namelen;
} pedit;

/* One chain the rule edits touch, as planned: which kernel rules go. */
typedef struct edited {
    int32_t chain;
    uint8_t *del; /* per kernel rule */
} edited;

enum { M_DECLARED = 1, M_KEPT = 2, M_STALE = 4, M_BLOCKED = 8, M_DONE = 16 };

typedef struct planner {
    const uint8_t *prog;
    size_t len;
    const knat_view *v;
    knat_plan *p;
    char *message;
    size_t cap;
    pchain *chains;
    size_t nchains, chain_cap;
    pedit *edits;
    size_t nedits, edit_cap;
    const char **deleted; /* KNAT_OP_DELETE_CHAIN names (into the program) */
    uint16_t *deleted_len;
    size_t ndeleted, deleted_cap;
    const char **prefixes;
    uint16_t *prefix_len;
    size_t nprefixes, prefix_cap;
    int delete_own_jumps;
    uint32_t nrules; /* program rules seen */
    uint32_t *slots;  /* declared names hashed: pchain index + 1 */
    size_t nslots;
    uint8_t *marks; /* per kernel chain */
    edited *ed;
    size_t ned, ed_cap;
} planner;

static int fail(planner *pl, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(planner *pl, int err, const char *fmt, ...) {
    if (pl->message && pl->cap) {
        int n = snprintf(pl->message, pl->cap, "%s: ", pl->v->table ? pl->v->table : "table");
        va_list ap;
        va_start(ap, fmt);
        if (n >= 0 && (size_t)n < pl->cap) vsnprintf(pl->message + n, pl->cap - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return err;
}

static int grow(void **items, size_t *cap, size_t count, size_t size) {
    if (count < *cap) return 0;
    size_t n = *cap ? *cap * 2 : 64;
    void *p = realloc(*items, n * size);
    if (!p) return ENOMEM;
    *items = p;
    *cap = n;
    return 0;
}

static int step(planner *pl, knat_step s) {
    knat_plan *p = pl->p;
    if (grow((void **)&p->steps, &p->step_cap, p->nsteps, sizeof(*p->steps))) return ENOMEM;
    p->steps[p->nsteps++] = s;
    int writes = s.kind != KNAT_STEP_UNCHANGED && !(s.kind == KNAT_STEP_KEEP_CHAIN && s.count == 0);
    p->writes += writes;
    return 0;
}

/* ---- names ---------------------------------------------------------------------------------------------- */

static uint64_t hash(const char *s, size_t n) { return knat_fnv(KNAT_FNV_INIT, s, n); }

static int name_eq(const char *a, size_t an, const char *b) { return strlen(b) == an && !memcmp(a, b, an); }

/* The declared chain of that name, or NULL. */
static const pchain *declared(const planner *pl, const char *name, size_t n) {
    if (!pl->nslots) return NULL;
    for (size_t at = hash(name, n) & (pl->nslots - 1); pl->slots[at]; at = (at + 1) & (pl->nslots - 1)) {
        const pchain *c = &pl->chains[pl->slots[at] - 1];
        if (c->namelen == n && !memcmp(c->name, name, n)) return c;
    }
    return NULL;
}

static int hash_declared(planner *pl) {
    size_t n = 64;
    while (n < 2 * pl->nchains) n *= 2;
    if (!(pl->slots = calloc(n, sizeof(*pl->slots)))) return ENOMEM;
    pl->nslots = n;
    for (size_t i = 0; i < pl->nchains; i++) {
        const pchain *c = &pl->chains[i];
        size_t at = hash(c->name, c->namelen) & (n - 1);
        for (; pl->slots[at]; at = (at + 1) & (n - 1)) {
            const pchain *o = &pl->chains[pl->slots[at] - 1];
            if (o->namelen == c->namelen && !memcmp(o->name, c->name, c->namelen))
                return fail(pl, EINVAL, "chain %.*s declared twice", (int)c->namelen, c->name);
        }
        pl->slots[at] = (uint32_t)i + 1;
    }
    return 0;
}

/* The kernel chain of a program name (not NUL-terminated), or -1. */
static int32_t find(const planner *pl, const char *name, size_t n) {
    char buf[KNAT_CHAIN_NAME_MAX + 1];
    memcpy(buf, name, n); /* read_program checked n */
    buf[n] = 0;
    return pl->v->find(pl->v->ctx, buf);
}

int knat_plan_record_name(const uint8_t *program, size_t length, uint32_t at, char out[KNAT_CHAIN_NAME_MAX + 1]) {
    knat_reader rd = {program, length, at};
    knat_record rec;
    out[0] = 0;
    if (at >= length || knat_next(&rd, &rec) != 1 || rec.length == 0 || rec.length > KNAT_CHAIN_NAME_MAX) return 0;
    return knat_copy_str(&rec, 0, out, KNAT_CHAIN_NAME_MAX + 1);
}

/* ---- the program ---------------------------------------------------------------------------------------- */

/* One rule: elements, then exactly one target. */
static int read_rule(planner *pl, knat_reader *rd, knat_plan_rule *r, const char *chain, size_t n) {
    knat_record rec;
    r->id = pl->nrules++;
    r->at = (uint32_t)rd->offset;
    for (;;) {
        int kind = knat_peek_kind(rd);
        if (kind < KNAT_E_COMMENT || knat_next(rd, &rec) != 1)
            return fail(pl, EINVAL, "chain %.*s: rule %u has no target", (int)n, chain, r->id);
        if (rec.kind < KNAT_T_STANDARD) continue;
        if (rec.kind == KNAT_T_STANDARD && rec.length > KNAT_CHAIN_NAME_MAX)
            return fail(pl, ENAMETOOLONG, "chain %.*s: jump to a chain name longer than %d bytes: %.*s", (int)n,
                        chain, KNAT_CHAIN_NAME_MAX, (int)rec.length, (const char *)rec.payload);
        break;
    }
    r->length = (uint32_t)(rd->offset - r->at);
    return 0;
}

static int read_program(planner *pl) {
    knat_reader rd = {pl->prog, pl->len, 0};
    knat_record rec;
    int more;
    while ((more = knat_next(&rd, &rec)) == 1) {
        uint32_t at = (uint32_t)(rd.offset - 4 - rec.length);
        const char *name = (const char *)rec.payload;
        uint16_t n = rec.length;
        if (rec.kind == KNAT_OP_DELETE_OWN_JUMPS) {
            if (n) return fail(pl, EINVAL, "KNAT_OP_DELETE_OWN_JUMPS with a payload");
            pl->delete_own_jumps = 1;
            continue;
        }
        if (rec.kind < KNAT_OP_STALE_PREFIX || rec.kind > KNAT_OP_ENSURE_RULE)
            return fail(pl, EINVAL, "unknown program record %u", rec.kind);
        if (n == 0 || memchr(name, 0, n)) return fail(pl, EINVAL, "empty or malformed chain name");
        if (n > KNAT_CHAIN_NAME_MAX)
            return fail(pl, ENAMETOOLONG, "chain name longer than %d bytes: %.*s", KNAT_CHAIN_NAME_MAX, (int)n, name);
        switch (rec.kind) {
        case KNAT_OP_STALE_PREFIX:
            if (grow((void **)&pl->prefixes, &pl->prefix_cap, pl->nprefixes, sizeof(*pl->prefixes))) return ENOMEM;
            if (!(pl->prefix_len = realloc(pl->prefix_len, pl->prefix_cap * sizeof(uint16_t)))) return ENOMEM;
            pl->prefixes[pl->nprefixes] = name;
            pl->prefix_len[pl->nprefixes++] = n;
            break;
        case KNAT_OP_DELETE_CHAIN:
            if (grow((void **)&pl->deleted, &pl->deleted_cap, pl->ndeleted, sizeof(*pl->deleted))) return ENOMEM;
            if (!(pl->deleted_len = realloc(pl->deleted_len, pl->deleted_cap * sizeof(uint16_t)))) return ENOMEM;
            pl->deleted[pl->ndeleted] = name;
            pl->deleted_len[pl->ndeleted++] = n;
            break;
        case KNAT_OP_CHAIN:
        case KNAT_OP_ENSURE_CHAIN: {
            if (grow((void **)&pl->chains, &pl->chain_cap, pl->nchains, sizeof(*pl->chains))) return ENOMEM;
            pchain *c = &pl->chains[pl->nchains++];
            memset(c, 0, sizeof(*c));
            c->name = name;
            c->namelen = n;
            c->op = rec.kind;
            c->c.at = at;
            c->c.first = pl->nrules;
            c->c.rules_at = (uint32_t)rd.offset;
            knat_plan_rule r;
            while (knat_peek_kind(&rd) >= KNAT_E_COMMENT) {
                if (rec.kind == KNAT_OP_ENSURE_CHAIN)
                    return fail(pl, EINVAL, "canary chain %.*s with rules", (int)n, name);
                int rc = read_rule(pl, &rd, &r, name, n);
                if (rc) return rc;
                c->c.count++;
            }
            c->c.rules_length = (uint32_t)rd.offset - c->c.rules_at;
            break;
        }
        default: { /* JUMP, DELETE_RULE, ENSURE_RULE */
            if (grow((void **)&pl->edits, &pl->edit_cap, pl->nedits, sizeof(*pl->edits))) return ENOMEM;
            if (pl->nedits >= UINT16_MAX) return fail(pl, E2BIG, "more than %d rule edits", UINT16_MAX - 1);
            pedit *e = &pl->edits[pl->nedits];
            e->name = name;
            e->namelen = n;
            e->rule.op = rec.kind;
            e->rule.op_at = at;
            e->rule.edit = (uint16_t)pl->nedits++;
            int rc = read_rule(pl, &rd, &e->rule, name, n);
            if (rc) return rc;
            if (knat_peek_kind(&rd) >= KNAT_E_COMMENT)
                return fail(pl, EINVAL, "chain %.*s: more than one rule after a rule edit", (int)n, name);
        }
        }
    }
    if (more < 0) return fail(pl, EINVAL, "truncated program");
    return 0;
}

/* ---- declared chains (D2) ------------------------------------------------------------------------------- */

static int same(planner *pl, int32_t chain, uint32_t index, const knat_plan_rule *want) {
    int r = pl->v->same(pl->v->ctx, (uint32_t)chain, index, want);
    return r < 0 ? r : r != 0;
}

/* How many leading kernel rules are the chain's program rules (stops at the first that is not); -errno. */
static int64_t matching_prefix(planner *pl, int32_t chain, const pchain *c, uint32_t kernel_rules) {
    knat_reader rd = {pl->prog, c->c.rules_at + c->c.rules_length, c->c.rules_at};
    knat_plan_rule r = {.op = KNAT_OP_CHAIN, .op_at = c->c.at, .edit = UINT16_MAX};
    uint32_t i = 0;
    for (; i < c->c.count && i < kernel_rules; i++) {
        r.id = c->c.first + i;
        r.at = (uint32_t)rd.offset;
        knat_record rec;
        do knat_next(&rd, &rec);
        while (rec.kind < KNAT_T_STANDARD);
        r.length = (uint32_t)rd.offset - r.at;
        int s = same(pl, chain, i, &r);
        if (s < 0) return s;
        if (!s) break;
    }
    return i;
}

static int plan_declared(planner *pl) {
    for (size_t k = 0; k < pl->nchains; k++) {
        const pchain *c = &pl->chains[k];
        int32_t ch = find(pl, c->name, c->namelen);
        knat_step s = {.chain = ch, .at = c->c.at, .index = 0, .before = KNAT_PLAN_NONE, .rule = c->c.first,
                       .count = c->c.count};
        int rc;
        if (ch < 0) {
            s.kind = KNAT_STEP_CREATE;
            s.flags = c->op == KNAT_OP_ENSURE_CHAIN ? KNAT_STEP_ENSURE_ONLY : 0;
            if ((rc = step(pl, s))) return rc;
            s.kind = KNAT_STEP_FILL;
            if (c->op == KNAT_OP_CHAIN && (rc = step(pl, s))) return rc;
            continue;
        }
        knat_view_chain vc = pl->v->chain(pl->v->ctx, (uint32_t)ch);
        pl->marks[ch] |= M_KEPT;
        if (c->op == KNAT_OP_ENSURE_CHAIN) continue;
        if (vc.builtin) return fail(pl, EPERM, "refusing to declare (flush) base chain %s", vc.name);
        pl->marks[ch] |= M_DECLARED;
        int verdict = 2;
        if (pl->v->chain_same) verdict = pl->v->chain_same(pl->v->ctx, (uint32_t)ch, &c->c);
        if (verdict < 0) return -verdict;
        int64_t prefix = 0;
        if (verdict == 2) {
            prefix = matching_prefix(pl, ch, c, vc.rules);
            if (prefix < 0) return (int)-prefix;
            verdict = prefix == c->c.count && vc.rules == c->c.count;
        }
        s.kind = verdict ? KNAT_STEP_UNCHANGED : KNAT_STEP_REWRITE;
        s.index = (uint32_t)prefix;
        if (verdict) pl->p->unchanged++;
        if ((rc = step(pl, s))) return rc;
    }
    return 0;
}

/* ---- stale chains (D3) ---------------------------------------------------------------------------------- */

static void mark_stale(planner *pl, int32_t ch) {
    if (ch < 0 || (pl->marks[ch] & (M_KEPT | M_DECLARED))) return;
    if (pl->v->chain(pl->v->ctx, (uint32_t)ch).builtin) return;
    pl->marks[ch] |= M_STALE;
}

static void plan_stale(planner *pl) {
    for (size_t k = 0; k < pl->ndeleted; k++) mark_stale(pl, find(pl, pl->deleted[k], pl->deleted_len[k]));
    if (!pl->nprefixes) return;
    for (uint32_t i = 0; i < pl->v->nchains; i++) {
        if (pl->marks[i] & (M_KEPT | M_DECLARED | M_STALE)) continue;
        knat_view_chain vc = pl->v->chain(pl->v->ctx, i);
        for (size_t k = 0; k < pl->nprefixes && !vc.builtin; k++)
            if (!strncmp(vc.name, pl->prefixes[k], pl->prefix_len[k])) {
                pl->marks[i] |= M_STALE;
                break;
            }
    }
}

/* ---- rule edits (D5..D8) -------------------------------------------------------------------------------- */

static int identical(const planner *pl, const knat_plan_rule *a, const knat_plan_rule *b) {
    return a->length == b->length && !memcmp(pl->prog + a->at, pl->prog + b->at, a->length);
}

/* Is kernel rule i the same as one of the n program rules in list? 1, 0 or -errno. */
static int same_any(planner *pl, int32_t ch, uint32_t i, const pedit *const *list, size_t n) {
    for (size_t k = 0; k < n; k++) {
        int s = same(pl, ch, i, &list[k]->rule);
        if (s) return s;
    }
    return 0;
}

/* Every edit of one chain, decided over its rules in one walk. `name`/`n`: the chain's name; `first`: the first
   edit record naming it (its CREATE is named by that record), or NULL for a base chain visited only for D7. */
static int plan_edits(planner *pl, const char *name, size_t n, const pedit *first, int32_t ch, int own) {
    const pedit **jumps = NULL, **dels, **ens;
    size_t nj = 0, nd = 0, ne = 0;
    uint8_t *del = NULL;
    int rc = 0;
    if (!(jumps = malloc((3 * pl->nedits + 1) * sizeof(*jumps)))) return ENOMEM;
    dels = jumps + pl->nedits;
    ens = dels + pl->nedits;
    for (size_t k = 0; k < pl->nedits; k++) {
        const pedit *e = &pl->edits[k];
        if (e->namelen != n || memcmp(e->name, name, n)) continue;
        if (e->rule.op == KNAT_OP_JUMP) jumps[nj++] = e;
        if (e->rule.op == KNAT_OP_DELETE_RULE) dels[nd++] = e;
        if (e->rule.op == KNAT_OP_ENSURE_RULE) {
            int dup = 0; /* D8: identical ensured rules are ensured once */
            for (size_t q = 0; q < ne && !dup; q++) dup = identical(pl, &ens[q]->rule, &e->rule);
            if (!dup) ens[ne++] = e;
        }
    }
    if (ch >= 0 && (pl->marks[ch] & M_STALE)) goto out; /* D3 wins: it goes as a whole */
    knat_view_chain vc = {0};
    if (ch >= 0) vc = pl->v->chain(pl->v->ctx, (uint32_t)ch);
    uint32_t count = ch >= 0 ? vc.rules : 0;
    if (ch < 0) {
        if (!nj && !ne) goto out; /* only rules to delete, in a chain that is not there */
        const pchain *d = declared(pl, name, n);
        if (!d) { /* D9; a missing canary chain was created in step 1 */
            knat_step s = {.kind = KNAT_STEP_CREATE, .chain = -1, .at = first->rule.op_at, .before = KNAT_PLAN_NONE,
                           .rule = KNAT_PLAN_NONE, .index = 0};
            s.flags = (uint8_t)((nj ? KNAT_STEP_JUMPS : 0) | (ne ? KNAT_STEP_ENSURED : 0));
            if ((rc = step(pl, s))) goto out;
        }
    }
    if (!(del = calloc(count + 1, 1))) {
        rc = ENOMEM;
        goto out;
    }
    /* D6, D7: rules to delete wherever they are; own jumps only in a base chain or one that gets jumps */
    own = own && (nj || vc.builtin);
    for (uint32_t i = 0; i < count; i++) {
        int s = same_any(pl, ch, i, dels, nd);
        if (s < 0) { rc = -s; goto out; }
        if (s) { del[i] = 1; continue; }
        if (!own || !pl->v->rule(pl->v->ctx, (uint32_t)ch, i).own_jump) continue;
        if ((s = same_any(pl, ch, i, jumps, nj)) == 0) s = same_any(pl, ch, i, ens, ne);
        if (s < 0) { rc = -s; goto out; }
        del[i] = !s;
    }
    /* D5: the prefix already in place stays; every other copy of a jump goes */
    uint32_t kept = 0, i = 0;
    for (; i < count && kept < nj; i++) {
        if (del[i]) continue;
        int s = same(pl, ch, i, &jumps[kept]->rule);
        if (s < 0) { rc = -s; goto out; }
        if (!s) break;
        kept++;
    }
    uint32_t after = i; /* first kernel rule past the prefix */
    for (uint32_t q = after; q < count && nj; q++) {
        if (del[q]) continue;
        int s = same_any(pl, ch, q, jumps, nj);
        if (s < 0) { rc = -s; goto out; }
        del[q] = (uint8_t)s;
    }
    uint32_t before = KNAT_PLAN_END; /* the first rule that stays past the prefix */
    for (uint32_t q = after; q < count && before == KNAT_PLAN_END; q++)
        if (!del[q]) before = q;
    for (uint32_t q = count; q-- > 0;) {
        if (!del[q]) continue;
        knat_step s = {.kind = KNAT_STEP_DELETE_RULE, .chain = ch, .at = KNAT_PLAN_NONE, .index = q,
                       .before = KNAT_PLAN_NONE, .rule = KNAT_PLAN_NONE};
        if ((rc = step(pl, s))) goto out;
    }
    uint32_t pos = kept;
    for (size_t k = kept; k < nj; k++) {
        knat_step s = {.kind = KNAT_STEP_INSERT, .flags = KNAT_STEP_JUMPS, .chain = ch, .at = jumps[k]->rule.op_at,
                       .index = pos++, .before = before, .rule = jumps[k]->rule.id};
        if ((rc = step(pl, s))) goto out;
    }
    /* D8: after the deletions; right after the jumps in a base chain, appended elsewhere */
    for (size_t k = 0; k < ne; k++) {
        int present = 0;
        for (uint32_t q = 0; q < count && !present; q++) {
            if (del[q]) continue;
            int s = same(pl, ch, q, &ens[k]->rule);
            if (s < 0) { rc = -s; goto out; }
            present = s;
        }
        if (present) continue;
        knat_step s = {.kind = KNAT_STEP_INSERT, .flags = KNAT_STEP_ENSURED, .chain = ch, .at = ens[k]->rule.op_at,
                       .rule = ens[k]->rule.id};
        if (vc.builtin) {
            s.index = pos++;
            s.before = before;
        } else {
            s.index = KNAT_PLAN_END;
            s.before = KNAT_PLAN_END;
        }
        if ((rc = step(pl, s))) goto out;
    }
    if (ch >= 0) {
        if ((rc = grow((void **)&pl->ed, &pl->ed_cap, pl->ned, sizeof(*pl->ed)))) goto out;
        pl->ed[pl->ned++] = (edited){ch, del};
        del = NULL;
    }
out:
    free(jumps);
    free(del);
    return rc;
}

static int plan_rule_edits(planner *pl) {
    for (size_t g = 0; g < pl->nedits; g++) {
        const pedit *e = &pl->edits[g];
        int firstname = 1;
        for (size_t k = 0; k < g && firstname; k++)
            firstname = pl->edits[k].namelen != e->namelen || memcmp(pl->edits[k].name, e->name, e->namelen);
        if (!firstname) continue;
        const pchain *d = declared(pl, e->name, e->namelen);
        if (d && d->op == KNAT_OP_CHAIN)
            return fail(pl, EINVAL, "chain %.*s is both declared and edited (a jump, ensured or deleted rule)",
                        (int)e->namelen, e->name);
    }
    /* chains named by a rule edit, or holding jumps, are kept (D3) */
    for (size_t g = 0; g < pl->nedits; g++) {
        const pedit *e = &pl->edits[g];
        if (e->rule.op == KNAT_OP_DELETE_RULE) continue;
        int32_t ch = find(pl, e->name, e->namelen);
        if (ch >= 0) pl->marks[ch] |= M_KEPT;
    }
    return 0;
}

static int plan_edited_chains(planner *pl) {
    int own = pl->delete_own_jumps;
    for (size_t k = 0; k < pl->nchains && !own; k++) own = pl->chains[k].op == KNAT_OP_CHAIN;
    int rc = 0;
    for (size_t g = 0; g < pl->nedits && !rc; g++) {
        const pedit *e = &pl->edits[g];
        int firstname = 1;
        for (size_t k = 0; k < g && firstname; k++)
            firstname = pl->edits[k].namelen != e->namelen || memcmp(pl->edits[k].name, e->name, e->namelen);
        if (!firstname) continue;
        int32_t ch = find(pl, e->name, e->namelen);
        if (ch >= 0) pl->marks[ch] |= M_DONE;
        rc = plan_edits(pl, e->name, e->namelen, e, ch, own);
    }
    /* D7: base chains no record names, for own jumps to delete */
    for (uint32_t i = 0; i < pl->v->nchains && own && !rc; i++) {
        if (pl->marks[i] & M_DONE) continue;
        knat_view_chain vc = pl->v->chain(pl->v->ctx, i);
        if (!vc.builtin) continue;
        int any = 0;
        for (uint32_t q = 0; q < vc.rules && !any; q++) any = pl->v->rule(pl->v->ctx, i, q).own_jump;
        if (any) rc = plan_edits(pl, vc.name, strlen(vc.name), NULL, (int32_t)i, own);
    }
    for (uint32_t i = 0; i < pl->v->nchains; i++) pl->marks[i] &= (uint8_t)~M_DONE;
    return rc;
}

/* ---- stale chains still jumped to (D4), and their order -------------------------------------------------- */

static const uint8_t *deletions_of(const planner *pl, uint32_t ch) {
    for (size_t k = 0; k < pl->ned; k++)
        if (pl->ed[k].chain == (int32_t)ch) return pl->ed[k].del;
    return NULL;
}

static int32_t target_of(planner *pl, uint32_t ch, uint32_t i) {
    knat_view_rule r = pl->v->rule(pl->v->ctx, ch, i);
    if (!r.target || !r.target[0] || strlen(r.target) > KNAT_CHAIN_NAME_MAX) return -1;
    return pl->v->find(pl->v->ctx, r.target);
}

static int plan_stale_steps(planner *pl) {
    uint32_t nstale = 0;
    for (uint32_t i = 0; i < pl->v->nchains; i++) nstale += (pl->marks[i] & M_STALE) != 0;
    if (!nstale) return 0;
    int rc = 0;
    /* D4: a rule that stays jumps to it */
    for (uint32_t i = 0; i < pl->v->nchains && !rc; i++) {
        if (pl->marks[i] & (M_STALE | M_DECLARED)) continue;
        knat_view_chain vc = pl->v->chain(pl->v->ctx, i);
        const uint8_t *del = deletions_of(pl, i);
        for (uint32_t q = 0; q < vc.rules && !rc; q++) {
            if (del && del[q]) continue;
            int32_t t = target_of(pl, i, q);
            if (t < 0 || !(pl->marks[t] & M_STALE) || (pl->marks[t] & M_BLOCKED)) continue;
            pl->marks[t] |= M_BLOCKED;
            knat_view_chain tc = pl->v->chain(pl->v->ctx, (uint32_t)t);
            char *w = malloc(3 * (KNAT_CHAIN_NAME_MAX + 1) + 64);
            if (!w || grow((void **)&pl->p->strings, &pl->p->string_cap, pl->p->nstrings, sizeof(char *))) {
                free(w);
                return ENOMEM;
            }
            snprintf(w, 3 * (KNAT_CHAIN_NAME_MAX + 1) + 64, "chain %.28s kept (flushed): chain %.28s still jumps to it",
                     tc.name, vc.name);
            pl->p->strings[pl->p->nstrings++] = w;
            pl->p->warnings++;
            rc = step(pl, (knat_step){.kind = KNAT_STEP_KEEP_CHAIN, .chain = t, .at = KNAT_PLAN_NONE,
                                      .before = KNAT_PLAN_NONE, .rule = KNAT_PLAN_NONE, .count = tc.rules,
                                      .warning = w});
        }
    }
    /* the rest, each after every stale chain still to go that jumps to it (a kept chain is flushed first) */
    uint32_t *refs = calloc(pl->v->nchains + 1, sizeof(*refs));
    if (!refs) return ENOMEM;
    for (uint32_t i = 0; i < pl->v->nchains; i++) {
        if ((pl->marks[i] & (M_STALE | M_BLOCKED)) != M_STALE) continue;
        uint32_t n = pl->v->chain(pl->v->ctx, i).rules;
        for (uint32_t q = 0; q < n; q++) {
            int32_t t = target_of(pl, i, q);
            if (t >= 0 && (uint32_t)t != i && (pl->marks[t] & (M_STALE | M_BLOCKED)) == M_STALE) refs[t]++;
        }
    }
    for (uint32_t left = 1; left && !rc;) {
        uint32_t progress = 0;
        left = 0;
        for (uint32_t i = 0; i < pl->v->nchains && !rc; i++) {
            if ((pl->marks[i] & (M_STALE | M_BLOCKED | M_DONE)) != M_STALE) continue;
            if (refs[i]) {
                left++;
                continue;
            }
            pl->marks[i] |= M_DONE;
            progress++;
            knat_view_chain vc = pl->v->chain(pl->v->ctx, i);
            for (uint32_t q = 0; q < vc.rules; q++) {
                int32_t t = target_of(pl, i, q);
                if (t >= 0 && (uint32_t)t != i && refs[t]) refs[t]--;
            }
            rc = step(pl, (knat_step){.kind = KNAT_STEP_DELETE_CHAIN, .chain = (int32_t)i, .at = KNAT_PLAN_NONE,
                                      .before = KNAT_PLAN_NONE, .rule = KNAT_PLAN_NONE, .count = vc.rules});
        }
        if (left && !progress) /* a cycle the kernel would not hold: go on, the kernel says what is wrong */
            for (uint32_t i = 0; i < pl->v->nchains; i++) refs[i] = 0;
    }
    free(refs);
    return rc;
}

/* ---- one table -------------------------------------------------------------------------------------------- */

int knat_plan_table(const uint8_t *program, size_t length, const knat_view *view, knat_plan *plan, char *message,
                    size_t message_cap) {
    memset(plan, 0, sizeof(*plan));
    if (message && message_cap) message[0] = 0;
    planner pl = {.prog = program, .len = length, .v = view, .p = plan, .message = message, .cap = message_cap};
    int rc = length > UINT32_MAX - 1 ? fail(&pl, E2BIG, "program too long") : 0;
    if (!rc && !(pl.marks = calloc(view->nchains + 1, 1))) rc = ENOMEM;
    if (!rc) rc = read_program(&pl);
    if (!rc) rc = hash_declared(&pl);
    if (!rc) rc = plan_rule_edits(&pl);
    if (!rc) rc = plan_declared(&pl);
    if (!rc) plan_stale(&pl);
    if (!rc) rc = plan_edited_chains(&pl);
    if (!rc) rc = plan_stale_steps(&pl);
    if (rc == ENOMEM && message && message_cap && !message[0]) fail(&pl, ENOMEM, "out of memory planning");
    for (size_t k = 0; k < pl.ned; k++) free(pl.ed[k].del);
    free(pl.ed);
    free(pl.chains);
    free(pl.edits);
    free(pl.deleted);
    free(pl.deleted_len);
    free(pl.prefixes);
    free(pl.prefix_len);
    free(pl.slots);
    free(pl.marks);
    if (rc) knat_plan_free(plan);
    return rc;
}

void knat_plan_free(knat_plan *plan) {
    for (size_t i = 0; i < plan->nstrings; i++) free(plan->strings[i]);
    free(plan->strings);
    free(plan->steps);
    memset(plan, 0, sizeof(*plan));
}
