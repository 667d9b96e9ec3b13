/*
 * One table's program as the wanted state: declared and canary chains with their rules (each with kube-natd's
 * tag), chains to delete, stale-chain prefixes, jumps, ensured rules and rules to delete (each with the content
 * digest of the rule as kube-natd would write it, to find identical rules whoever wrote them).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include "plan.h"

#define GROW(arr, n, cap)                                                   \
    do {                                                                    \
        if ((n) == (cap)) {                                                 \
            size_t c_ = (cap) ? (cap) * 2 : 16;                             \
            void *p_ = realloc((arr), c_ * sizeof(*(arr)));                 \
            if (!p_) return ENOMEM;                                         \
            (arr) = p_;                                                     \
            (cap) = c_;                                                     \
        }                                                                   \
    } while (0)

void knft_wanted_free(wanted *w) {
    free(w->chains);
    free(w->rules);
    free(w->deleted);
    free(w->prefixes);
    free(w->jumps);
    free(w->ensured);
    free(w->delrules);
    free(w->removed);
}

static int parse_range(knft_plan *plan, const knft_program *p, size_t from, size_t to, knft_form form, wanted *w,
                       knft_result *res) {
    if (from > to || to > p->length) goto malformed_range;
    knat_reader rd = {p->bytes, to, from};
    knat_record rec = {0};
    int n;
    while ((n = knat_next(&rd, &rec)) == 1) {
        char *name = NULL;
        if (rec.kind != KNAT_OP_DELETE_OWN_JUMPS) {
            if (rec.length == 0 || rec.length >= KNFT_NAME_MAX) goto malformed;
            name = knft_plan_keep(plan, strndup((const char *)rec.payload, rec.length));
            if (!name) return ENOMEM;
        }
        switch (rec.kind) {
        case KNAT_OP_CHAIN:
        case KNAT_OP_ENSURE_CHAIN: {
            GROW(w->chains, w->nchains, w->capc);
            want_chain *c = &w->chains[w->nchains++];
            c->name = name;
            c->ensure_only = rec.kind == KNAT_OP_ENSURE_CHAIN;
            c->first = w->nrules;
            c->count = 0;
            while (!c->ensure_only && knat_peek_kind(&rd) >= KNAT_E_COMMENT) {
                GROW(w->rules, w->nrules, w->capr);
                want_rule *r = &w->rules[w->nrules];
                memset(r, 0, sizeof(*r));
                if (knft_rule_span(&rd, &r->span, &r->target)) goto malformed;
                r->tag = knft_rule_tag(&r->span, form, p->family, KNFT_ROLE_OWNED);
                w->nrules++;
                c->count++;
            }
            break;
        }
        case KNAT_OP_DELETE_CHAIN:
            GROW(w->deleted, w->ndeleted, w->capd);
            w->deleted[w->ndeleted++] = name;
            break;
        case KNAT_OP_STALE_PREFIX:
            GROW(w->prefixes, w->nprefixes, w->capp);
            w->prefixes[w->nprefixes++] = name;
            break;
        case KNAT_OP_DELETE_OWN_JUMPS:
            w->delete_own_jumps = 1;
            break;
        case KNAT_OP_JUMP:
        case KNAT_OP_ENSURE_RULE:
        case KNAT_OP_DELETE_RULE: {
            named_rule nr = {.chain = name};
            if (knft_rule_span(&rd, &nr.rule.span, &nr.rule.target)) goto malformed;
            nr.rule.tag = knft_rule_tag(&nr.rule.span, form, p->family, KNFT_ROLE_JUMP);
            char why[160] = "";
            int rc = knft_wanted_content(&nr.rule.span, form, p->family, &nr.rule.content, why, sizeof(why));
            if (rc) {
                knft_set_message(res, "ipv%d %s: chain %s: %s", p->family, p->table, name, why[0] ? why : strerror(rc));
                return rc;
            }
            if (rec.kind == KNAT_OP_JUMP) {
                GROW(w->jumps, w->njumps, w->capj);
                w->jumps[w->njumps++] = nr;
            } else if (rec.kind == KNAT_OP_ENSURE_RULE) {
                GROW(w->ensured, w->nensured, w->cape);
                w->ensured[w->nensured++] = nr;
            } else {
                GROW(w->delrules, w->ndelrules, w->capx);
                w->delrules[w->ndelrules++] = nr;
            }
            break;
        }
        default:
            goto malformed;
        }
    }
    if (n < 0) goto malformed;
    return 0;
malformed:
    knft_set_message(res, "ipv%d %s: malformed program (record kind %u)", p->family, p->table, rec.kind);
    return EINVAL;
malformed_range:
    knft_set_message(res, "ipv%d %s: malformed program (a range outside it)", p->family, p->table);
    return EINVAL;
}

int knft_wanted_parse(knft_plan *plan, const knft_program *p, int incremental, knft_form form, wanted *w,
                      knft_result *res) {
    memset(w, 0, sizeof(*w));
    if (!incremental) return parse_range(plan, p, 0, p->length, form, w, res);
    int rc = parse_range(plan, p, 0, p->chains_start, form, w, res);
    for (size_t i = 0; i < p->nchanged && !rc; i++) {
        const knft_chain_range *c = &p->changed[i];
        if (c->length) {
            rc = parse_range(plan, p, c->offset, c->offset + c->length, form, w, res);
            continue;
        }
        char *name = knft_plan_keep(plan, strdup(c->name));
        if (!name) return ENOMEM;
        GROW(w->removed, w->nremoved, w->capm);
        w->removed[w->nremoved++] = name;
    }
    if (!rc) rc = parse_range(plan, p, p->chains_end, p->length, form, w, res);
    return rc;
}
