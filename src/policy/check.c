/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checks that only the whole set of files can make, and the canonical
 * form of the model: every list sorted, every tier filled in, every
 * project's initial phase set. References (members, grants, phases) are
 * resolved here against what all files declared, and a reference that
 * resolves to nothing is an error at the position where it was written.
 * This file reads no input and never loosens a check for a model that did
 * not come from a file.
 */
#include "coffer/policy.h"

#include "policy/policy_int.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct checker {
    struct coffer_policy_state *st;
    struct coffer_policy_sink sink;
};

static void diag_pos(struct checker *c, struct coffer_policy_pos pos, const char *fmt, ...)
    COFFER_PRINTF(3, 4);
static void diag_pos(struct checker *c, struct coffer_policy_pos pos, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    coffer_policy_vdiag(&c->sink, pos.file != NULL ? pos.file : "<stored policy>", pos.line,
                        pos.col, fmt, ap);
    va_end(ap);
}

static int ref_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const struct coffer_policy_ref *)a)->s;
    uintptr_t y = (uintptr_t)((const struct coffer_policy_ref *)b)->s;

    return x < y ? -1 : (x > y ? 1 : 0);
}

/* Where the string s of the model was written, or fallback if it was not recorded. */
static struct coffer_policy_pos where(const struct checker *c, const char *s,
                                      struct coffer_policy_pos fallback)
{
    struct coffer_policy_ref key = {.s = s};
    const struct coffer_policy_ref *r;

    if (c->st->n_refs == 0) {
        return fallback;
    }
    r = bsearch(&key, c->st->refs, c->st->n_refs, sizeof(key), ref_cmp);
    return r != NULL ? r->pos : fallback;
}

/* ---- Sorting ---- */

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int org_cmp(const void *a, const void *b)
{
    return strcmp(((const struct coffer_policy_org *)a)->name,
                  ((const struct coffer_policy_org *)b)->name);
}

static int type_cmp(const void *a, const void *b)
{
    return strcmp(((const struct coffer_policy_agent_type *)a)->name,
                  ((const struct coffer_policy_agent_type *)b)->name);
}

static int project_cmp(const void *a, const void *b)
{
    return strcmp(((const struct coffer_policy_project *)a)->name,
                  ((const struct coffer_policy_project *)b)->name);
}

static int cred_cmp(const void *a, const void *b)
{
    return strcmp(((const struct coffer_policy_cred *)a)->name,
                  ((const struct coffer_policy_cred *)b)->name);
}

static int grant_cmp(const void *a, const void *b)
{
    const struct coffer_policy_grant *x = a;
    const struct coffer_policy_grant *y = b;
    int r = strcmp(x->agent_type, y->agent_type);

    if (r != 0) {
        return r;
    }
    /* A grant to every instance comes before grants to single instances. */
    if (x->instance == NULL || y->instance == NULL) {
        return (x->instance != NULL) - (y->instance != NULL);
    }
    return strcmp(x->instance, y->instance);
}

static void sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > 1) {
        qsort(base, n, size, cmp);
    }
}

/* The index of phase in the project's phases, or n_phases if it is none of them. */
static size_t phase_index(const struct coffer_policy_project *p, const char *phase)
{
    for (size_t i = 0; i < p->n_phases; i++) {
        if (strcmp(p->phases[i], phase) == 0) {
            return i;
        }
    }
    return p->n_phases;
}

/* Grant phases in the project's order (at most COFFER_POLICY_PHASES_MAX: insertion sort). */
static void sort_grant_phases(const struct coffer_policy_project *p, struct coffer_policy_grant *g)
{
    for (size_t i = 1; i < g->n_phases; i++) {
        const char *x = g->phases[i];
        size_t xi = phase_index(p, x);
        size_t j = i;

        while (j > 0 && phase_index(p, g->phases[j - 1]) > xi) {
            g->phases[j] = g->phases[j - 1];
            j--;
        }
        g->phases[j] = x;
    }
}

static int dest_cmp(const void *a, const void *b)
{
    return strcmp(((const struct coffer_policy_dest *)a)->url,
                  ((const struct coffer_policy_dest *)b)->url);
}

static int method_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a;
    const char *y = *(const char *const *)b;

    return coffer_policy_method_rank(x, strlen(x)) - coffer_policy_method_rank(y, strlen(y));
}

/*
 * Destinations by byte order, methods in the order GET, HEAD, POST, PUT,
 * PATCH, DELETE, OPTIONS; inject entries keep their order, which is the
 * order they are applied in. The spec was allocated by this module's loader,
 * so it is writable although the rule points to it as const.
 */
static void sort_usage(const struct coffer_policy_usage *cu)
{
    struct coffer_policy_usage *u = (struct coffer_policy_usage *)(uintptr_t)cu;

    if (u == NULL) {
        return;
    }
    sort(u->destinations, u->n_destinations, sizeof(*u->destinations), dest_cmp);
    sort(u->methods, u->n_methods, sizeof(*u->methods), method_cmp);
}

static void sort_org(struct coffer_policy_org *o)
{
    sort(o->agent_types, o->n_agent_types, sizeof(*o->agent_types), type_cmp);
    sort(o->projects, o->n_projects, sizeof(*o->projects), project_cmp);
    for (size_t i = 0; i < o->n_projects; i++) {
        struct coffer_policy_project *p = &o->projects[i];

        sort(p->members, p->n_members, sizeof(*p->members), str_cmp);
        sort(p->creds, p->n_creds, sizeof(*p->creds), cred_cmp);
        for (size_t j = 0; j < p->n_creds; j++) {
            struct coffer_policy_cred *cr = &p->creds[j];

            sort(cr->purposes, cr->n_purposes, sizeof(*cr->purposes), str_cmp);
            sort(cr->grants, cr->n_grants, sizeof(*cr->grants), grant_cmp);
            sort_usage(cr->usage);
            for (size_t k = 0; k < cr->n_grants; k++) {
                sort_grant_phases(p, &cr->grants[k]);
            }
        }
    }
}

/* ---- Checks ---- */

static bool has_type(const struct coffer_policy_org *o, const char *name)
{
    struct coffer_policy_agent_type key = {.name = name};

    return o->n_agent_types > 0 &&
           bsearch(&key, o->agent_types, o->n_agent_types, sizeof(key), type_cmp) != NULL;
}

static bool has_member(const struct coffer_policy_project *p, const char *name)
{
    return p->n_members > 0 &&
           bsearch(&name, p->members, p->n_members, sizeof(*p->members), str_cmp) != NULL;
}

static bool ttl_valid(int64_t ttl)
{
    return ttl == COFFER_TTL_NEVER || (ttl >= 1 && ttl <= COFFER_TTL_FINITE_MAX);
}

static void check_tier(struct checker *c, enum coffer_tier t, const struct coffer_policy_tier *tr)
{
    const char *name = coffer_tier_str(t);
    int64_t hard = coffer_tier_hard_max(t);
    char def[24];
    char max[24];
    char lim[24];

    coffer_policy_ttl_format(tr->default_ttl, def);
    coffer_policy_ttl_format(tr->max_ttl, max);
    coffer_policy_ttl_format(hard, lim);
    if (!ttl_valid(tr->default_ttl) || !ttl_valid(tr->max_ttl)) {
        diag_pos(c, tr->pos, "tier '%s' has a lifetime that is not a valid TTL", name);
        return;
    }
    if (hard != COFFER_TTL_NEVER) {
        if (tr->max_ttl == COFFER_TTL_NEVER) {
            diag_pos(c, tr->pos,
                     "max_ttl of tier '%s' cannot be never: %s credentials always expire, after "
                     "%s at most",
                     name, name, lim);
        } else if (tr->max_ttl > hard) {
            diag_pos(c, tr->pos, "max_ttl %s of tier '%s' is over the hard maximum %s", max, name,
                     lim);
        }
        if (tr->default_ttl == COFFER_TTL_NEVER) {
            diag_pos(c, tr->pos,
                     "default_ttl of tier '%s' cannot be never: %s credentials always expire, "
                     "after %s at most",
                     name, name, lim);
        } else if (tr->default_ttl > hard) {
            diag_pos(c, tr->pos, "default_ttl %s of tier '%s' is over the hard maximum %s", def,
                     name, lim);
        }
    }
    /* never counts as longer than any finite lifetime. */
    if (tr->max_ttl != COFFER_TTL_NEVER &&
        (tr->default_ttl == COFFER_TTL_NEVER || tr->default_ttl > tr->max_ttl)) {
        diag_pos(c, tr->pos, "default_ttl %s of tier '%s' is over its max_ttl %s", def, name, max);
    }
}

/* Two equal neighbours in a sorted list: the second one is reported. */
static void check_unique(struct checker *c, const char *prev, const char *cur,
                         struct coffer_policy_pos pos, const char *what, const char *in)
{
    if (prev != NULL && strcmp(prev, cur) == 0) {
        diag_pos(c, pos, "%s '%s' is declared twice in %s", what, cur, in);
    }
}

static void check_grant(struct checker *c, const struct coffer_policy_project *p,
                        const struct coffer_policy_cred *cr, const struct coffer_policy_grant *g)
{
    if (!has_member(p, g->agent_type)) {
        diag_pos(c, where(c, g->agent_type, g->pos),
                 "agent type '%s' is not a member of project '%s' (add it to 'members' or remove "
                 "the grant of credential rule '%s/%s')",
                 g->agent_type, p->name, p->name, cr->name);
    }
    for (size_t i = 0; i < g->n_phases; i++) {
        if (phase_index(p, g->phases[i]) == p->n_phases) {
            diag_pos(c, where(c, g->phases[i], g->pos),
                     "phase '%s' of a grant of credential rule '%s/%s' is not a phase of project "
                     "'%s'",
                     g->phases[i], p->name, cr->name, p->name);
        }
    }
}

static void check_cred(struct checker *c, const struct coffer_policy_project *p,
                       const struct coffer_policy_cred *cr)
{
    char in[2 * COFFER_POLICY_NAME_MAX + 32];

    snprintf(in, sizeof(in), "credential rule '%s/%s'", p->name, cr->name);
    if (cr->expire_on_phase_end != NULL && phase_index(p, cr->expire_on_phase_end) == p->n_phases) {
        diag_pos(c, where(c, cr->expire_on_phase_end, cr->pos),
                 "expire_on_phase_end '%s' of %s is not a phase of project '%s'",
                 cr->expire_on_phase_end, in, p->name);
    }
    for (size_t i = 0; i < cr->n_purposes; i++) {
        check_unique(c, i > 0 ? cr->purposes[i - 1] : NULL, cr->purposes[i], cr->pos,
                     "purpose pattern", in);
    }
    for (size_t i = 0; i < cr->n_grants; i++) {
        const struct coffer_policy_grant *g = &cr->grants[i];

        if (i > 0 && grant_cmp(&cr->grants[i - 1], g) == 0) {
            diag_pos(c, g->pos, "duplicate grant to %s%s%s in %s", g->agent_type,
                     g->instance != NULL ? "/" : "", g->instance != NULL ? g->instance : "", in);
        }
        check_grant(c, p, cr, g);
    }
}

static void check_project(struct checker *c, const struct coffer_policy_org *o,
                          struct coffer_policy_project *p)
{
    char in[COFFER_POLICY_NAME_MAX + 32];

    snprintf(in, sizeof(in), "project '%s'", p->name);
    if (p->n_phases == 0) {
        diag_pos(c, p->pos, "project '%s' has no phases", p->name);
    }
    for (size_t i = 0; i < p->n_phases; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(p->phases[i], p->phases[j]) == 0) {
                diag_pos(c, p->pos, "phase '%s' is declared twice in %s", p->phases[i], in);
            }
        }
    }
    if (p->initial_phase != NULL && phase_index(p, p->initial_phase) == p->n_phases) {
        diag_pos(c, where(c, p->initial_phase, p->pos),
                 "initial_phase '%s' is not a phase of project '%s'", p->initial_phase, p->name);
    }
    if (p->initial_phase == NULL && p->n_phases > 0) {
        p->initial_phase = p->phases[0];
    }
    for (size_t i = 0; i < p->n_members; i++) {
        check_unique(c, i > 0 ? p->members[i - 1] : NULL, p->members[i],
                     where(c, p->members[i], p->pos), "member", in);
        if (!has_type(o, p->members[i])) {
            diag_pos(c, where(c, p->members[i], p->pos),
                     "agent type '%s' in the members of project '%s' is not declared in org '%s'",
                     p->members[i], p->name, o->name);
        }
    }
    for (size_t i = 0; i < p->n_creds; i++) {
        check_unique(c, i > 0 ? p->creds[i - 1].name : NULL, p->creds[i].name, p->creds[i].pos,
                     "credential rule", in);
        check_cred(c, p, &p->creds[i]);
    }
}

static void check_org(struct checker *c, struct coffer_policy_org *o)
{
    char in[COFFER_POLICY_NAME_MAX + 32];

    snprintf(in, sizeof(in), "org '%s'", o->name);
    for (size_t t = 0; t < COFFER_TIER_COUNT; t++) {
        if (o->tiers[t].declared) {
            check_tier(c, (enum coffer_tier)t, &o->tiers[t]);
        } else {
            o->tiers[t] = coffer_policy_tier_default((enum coffer_tier)t);
        }
    }
    for (size_t i = 0; i < o->n_agent_types; i++) {
        check_unique(c, i > 0 ? o->agent_types[i - 1].name : NULL, o->agent_types[i].name,
                     o->agent_types[i].pos, "agent type", in);
    }
    for (size_t i = 0; i < o->n_projects; i++) {
        check_unique(c, i > 0 ? o->projects[i - 1].name : NULL, o->projects[i].name,
                     o->projects[i].pos, "project", in);
        check_project(c, o, &o->projects[i]);
    }
}

enum coffer_err coffer_policy_finish(struct coffer_policy *p, struct coffer_policy_diags *d)
{
    struct checker c = {0};

    if (p == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "finishing a policy: no policy");
    }
    c.st = coffer_policy_state(p);
    c.sink.d = d;
    if (c.st->finished) {
        return coffer_err_set(COFFER_E_STATE, "the policy is already finished");
    }
    c.st->finished = true;
    sort(c.st->refs, c.st->n_refs, sizeof(*c.st->refs), ref_cmp);
    /* Sorted first, so that references are looked up by bisection. */
    sort(p->orgs, p->n_orgs, sizeof(*p->orgs), org_cmp);
    for (size_t i = 0; i < p->n_orgs; i++) {
        sort_org(&p->orgs[i]);
    }
    for (size_t i = 0; i < p->n_orgs; i++) {
        check_unique(&c, i > 0 ? p->orgs[i - 1].name : NULL, p->orgs[i].name, p->orgs[i].pos, "org",
                     "the policy");
        check_org(&c, &p->orgs[i]);
    }
    if (c.sink.nomem) {
        return coffer_err_set(COFFER_E_NOMEM, "recording the problems of the policy");
    }
    if (c.sink.count > 0) {
        return coffer_err_set(COFFER_E_INVALID, "the policy has %zu problem%s", c.sink.count,
                              c.sink.count == 1 ? "" : "s");
    }
    return COFFER_OK;
}
