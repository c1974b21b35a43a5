/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What changes between two models of one org: the list `coffer policy
 * apply` prints and a policy version records. Each list is compared by one
 * merge walk over a sorted view of it, so a model read from the database in
 * another order compares as equal to the same model read from files (a
 * grant's phases are a set, shown in the project's order; a project's own
 * phases are compared in their order, which matters). The order of the
 * changes is fixed (agent types, tiers, projects, then each project's
 * members, phases and credential rules with their grants), so the same two
 * models always give the same list; a field that differs is always
 * reported, so an empty list means the models are equal. Additions list
 * what they bring (a new project's members, rules and grants, since those
 * give access); removals name only the removed element. This file never
 * modifies a model.
 */
#include "coffer/policy.h"

#include "coffer/mem.h"
#include "policy/policy_int.h"

#include <stdlib.h>
#include <string.h>

struct differ {
    struct coffer_arena *a;
    struct coffer_policy_changes *out;
    size_t cap;
    enum coffer_err err;
};

static void change(struct differ *d, enum coffer_policy_change_op op, const char *what,
                   const char *how)
{
    if (d->err != COFFER_OK) {
        return;
    }
    if (what == NULL) {
        d->err = coffer_err_set(COFFER_E_NOMEM, "listing policy changes");
        return;
    }
    if (d->out->n == d->cap) {
        size_t cap = d->cap == 0 ? 16 : d->cap * 2;
        struct coffer_policy_change *items =
            coffer_arena_grow(d->a, d->out->items, d->out->n, cap, sizeof(*items));

        if (items == NULL) {
            d->err = coffer_err_set(COFFER_E_NOMEM, "listing policy changes");
            return;
        }
        d->out->items = items;
        d->cap = cap;
    }
    d->out->items[d->out->n].op = op;
    d->out->items[d->out->n].what = what;
    d->out->items[d->out->n].how = how;
    d->out->n++;
}

static void modified(struct differ *d, const char *what, const char *how)
{
    if (how == NULL && d->err == COFFER_OK) {
        d->err = coffer_err_set(COFFER_E_NOMEM, "listing policy changes");
        return;
    }
    change(d, COFFER_POLICY_MODIFIED, what, how);
}

static bool same_str(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return strcmp(a, b) == 0;
}

static bool same_list(const char *const *a, size_t na, const char *const *b, size_t nb)
{
    if (na != nb) {
        return false;
    }
    for (size_t i = 0; i < na; i++) {
        if (strcmp(a[i], b[i]) != 0) {
            return false;
        }
    }
    return true;
}

/* "design,build", or empty_text when the list is empty. */
static const char *join(struct differ *d, const char *const *list, size_t n, const char *empty_text)
{
    size_t len = 0;
    char *s;
    char *p;

    if (n == 0) {
        return empty_text;
    }
    for (size_t i = 0; i < n; i++) {
        len += strlen(list[i]) + 1;
    }
    s = coffer_arena_alloc(d->a, len, 1);
    if (s == NULL) {
        return NULL;
    }
    p = s;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(list[i]);

        if (i > 0) {
            *p++ = ',';
        }
        coffer_memcpy(p, list[i], l);
        p += l;
    }
    *p = '\0';
    return s;
}

static const char *list_change(struct differ *d, const char *field, const char *const *a, size_t na,
                               const char *const *b, size_t nb, const char *empty_text)
{
    const char *from = join(d, a, na, empty_text);
    const char *to = join(d, b, nb, empty_text);

    if (from == NULL || to == NULL) {
        return NULL;
    }
    return coffer_arena_printf(d->a, "%s %s -> %s", field, from, to);
}

static const char *const *cl(const char **list)
{
    return (const char *const *)list;
}

/* ---- Sorted views ---- */

static void *view_alloc(struct differ *d, size_t n, size_t size)
{
    void *p = coffer_arena_alloc(d->a, n, size);

    if (p == NULL && d->err == COFFER_OK) {
        d->err = coffer_err_set(COFFER_E_NOMEM, "listing policy changes");
    }
    return p;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The n strings of list in byte order (NULL, with d->err set, if out of memory). */
static const char **sorted_strs(struct differ *d, const char *const *list, size_t n)
{
    const char **v = view_alloc(d, n, sizeof(*v));

    if (v == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = list[i];
    }
    if (n > 1) {
        qsort(v, n, sizeof(*v), str_cmp);
    }
    return v;
}

/* Pointers to the n elements of size bytes at base, sorted with cmp (which gets two of them). */
static const void **sorted_view(struct differ *d, const void *base, size_t n, size_t size,
                                int (*cmp)(const void *, const void *))
{
    const void **v = view_alloc(d, n, sizeof(*v));

    if (v == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = (const unsigned char *)base + i * size;
    }
    if (n > 1) {
        qsort(v, n, sizeof(*v), cmp);
    }
    return v;
}

#define VIEW_ITEM(type, p) ((const type *)*(const void *const *)(p))

static int type_cmp(const void *a, const void *b)
{
    return strcmp(VIEW_ITEM(struct coffer_policy_agent_type, a)->name,
                  VIEW_ITEM(struct coffer_policy_agent_type, b)->name);
}

static int project_cmp(const void *a, const void *b)
{
    return strcmp(VIEW_ITEM(struct coffer_policy_project, a)->name,
                  VIEW_ITEM(struct coffer_policy_project, b)->name);
}

static int cred_cmp(const void *a, const void *b)
{
    return strcmp(VIEW_ITEM(struct coffer_policy_cred, a)->name,
                  VIEW_ITEM(struct coffer_policy_cred, b)->name);
}

/* By agent type, then instance, the grant to every instance first. */
static int grant_order(const struct coffer_policy_grant *a, const struct coffer_policy_grant *b)
{
    int r = strcmp(a->agent_type, b->agent_type);

    if (r != 0) {
        return r;
    }
    if (a->instance == NULL || b->instance == NULL) {
        return (a->instance != NULL) - (b->instance != NULL);
    }
    return strcmp(a->instance, b->instance);
}

static int grant_cmp(const void *a, const void *b)
{
    return grant_order(VIEW_ITEM(struct coffer_policy_grant, a),
                       VIEW_ITEM(struct coffer_policy_grant, b));
}

static size_t phase_index(const struct coffer_policy_project *p, const char *phase)
{
    for (size_t i = 0; i < p->n_phases; i++) {
        if (strcmp(p->phases[i], phase) == 0) {
            return i;
        }
    }
    return p->n_phases;
}

/* A grant's phases in the project's order, unknown ones last by name (insertion sort). */
static const char **grant_phases(struct differ *d, const struct coffer_policy_project *p,
                                 const struct coffer_policy_grant *g)
{
    const char **v = view_alloc(d, g->n_phases, sizeof(*v));

    if (v == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < g->n_phases; i++) {
        const char *x = g->phases[i];
        size_t xi = phase_index(p, x);
        size_t j = i;

        while (j > 0) {
            size_t yi = phase_index(p, v[j - 1]);

            if (yi < xi || (yi == xi && strcmp(v[j - 1], x) <= 0)) {
                break;
            }
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
    return v;
}

/*
 * The next step of a merge walk over two sorted lists at i (of ni) and j (of
 * nj): 1 when only the new list has items left, -1 when only the old one
 * does, 0 when both do and their items must be compared.
 */
static int side(size_t i, size_t ni, size_t j, size_t nj)
{
    if (i == ni) {
        return 1;
    }
    return j == nj ? -1 : 0;
}

/* ---- Agent types and tiers ---- */

static void diff_agent_types(struct differ *d, const struct coffer_policy_org *o,
                             const struct coffer_policy_org *n)
{
    const void **ov =
        sorted_view(d, o->agent_types, o->n_agent_types, sizeof(*o->agent_types), type_cmp);
    const void **nv =
        sorted_view(d, n->agent_types, n->n_agent_types, sizeof(*n->agent_types), type_cmp);
    size_t i = 0;
    size_t j = 0;

    if (d->err != COFFER_OK) {
        return;
    }
    while (i < o->n_agent_types || j < n->n_agent_types) {
        int c = side(i, o->n_agent_types, j, n->n_agent_types);
        const struct coffer_policy_agent_type *a = c <= 0 ? ov[i] : NULL;
        const struct coffer_policy_agent_type *b = c >= 0 ? nv[j] : NULL;

        if (a != NULL && b != NULL) {
            c = strcmp(a->name, b->name);
        }
        if (c < 0 && a != NULL) {
            change(d, COFFER_POLICY_REMOVED, coffer_arena_printf(d->a, "agent type %s", a->name),
                   NULL);
            i++;
        } else if (c > 0 && b != NULL) {
            change(d, COFFER_POLICY_ADDED, coffer_arena_printf(d->a, "agent type %s", b->name),
                   NULL);
            j++;
        } else if (a != NULL && b != NULL) {
            if (!same_str(a->description, b->description)) {
                modified(d, coffer_arena_printf(d->a, "agent type %s", a->name), "description");
            }
            i++;
            j++;
        }
    }
}

static void diff_tiers(struct differ *d, const struct coffer_policy_org *o,
                       const struct coffer_policy_org *n)
{
    for (size_t t = 0; t < COFFER_TIER_COUNT; t++) {
        const char *name = coffer_tier_str((enum coffer_tier)t);
        char from[24];
        char to[24];

        /* Whether a tier was written out does not matter, only its lifetimes. */
        if (o->tiers[t].default_ttl != n->tiers[t].default_ttl) {
            coffer_policy_ttl_format(o->tiers[t].default_ttl, from);
            coffer_policy_ttl_format(n->tiers[t].default_ttl, to);
            modified(d, coffer_arena_printf(d->a, "tier %s", name),
                     coffer_arena_printf(d->a, "default_ttl %s -> %s", from, to));
        }
        if (o->tiers[t].max_ttl != n->tiers[t].max_ttl) {
            coffer_policy_ttl_format(o->tiers[t].max_ttl, from);
            coffer_policy_ttl_format(n->tiers[t].max_ttl, to);
            modified(d, coffer_arena_printf(d->a, "tier %s", name),
                     coffer_arena_printf(d->a, "max_ttl %s -> %s", from, to));
        }
    }
}

/* ---- Grants and credential rules ---- */

/* One side of a comparison of credential rules: the rule and its project. */
struct rule {
    const struct coffer_policy_project *project;
    const struct coffer_policy_cred *cred;
};

static const char *grant_what(struct differ *d, const char *project, const char *cred,
                              const struct coffer_policy_grant *g)
{
    return coffer_arena_printf(d->a, "grant %s/%s to %s%s%s", project, cred, g->agent_type,
                               g->instance != NULL ? "/" : "",
                               g->instance != NULL ? g->instance : "");
}

static void added_cred(struct differ *d, const char *project, const struct coffer_policy_cred *c)
{
    const void **v = sorted_view(d, c->grants, c->n_grants, sizeof(*c->grants), grant_cmp);

    change(d, COFFER_POLICY_ADDED,
           coffer_arena_printf(d->a, "credential rule %s/%s", project, c->name), NULL);
    for (size_t i = 0; i < c->n_grants && d->err == COFFER_OK; i++) {
        change(d, COFFER_POLICY_ADDED, grant_what(d, project, c->name, v[i]), NULL);
    }
}

static void diff_grant_phases(struct differ *d, struct rule o, const struct coffer_policy_grant *a,
                              struct rule n, const struct coffer_policy_grant *b)
{
    /* A grant's phases are a set: compared by name, shown in the project's order. */
    const char **sa = sorted_strs(d, cl(a->phases), a->n_phases);
    const char **sb = sorted_strs(d, cl(b->phases), b->n_phases);
    const char **pa = grant_phases(d, o.project, a);
    const char **pb = grant_phases(d, n.project, b);

    if (d->err != COFFER_OK) {
        return;
    }
    if (!same_list(sa, a->n_phases, sb, b->n_phases)) {
        modified(d, grant_what(d, o.project->name, o.cred->name, a),
                 list_change(d, "phases", pa, a->n_phases, pb, b->n_phases, "(every phase)"));
    }
}

static void diff_grants(struct differ *d, struct rule o, struct rule n)
{
    const char *project = o.project->name;
    const void **ov =
        sorted_view(d, o.cred->grants, o.cred->n_grants, sizeof(*o.cred->grants), grant_cmp);
    const void **nv =
        sorted_view(d, n.cred->grants, n.cred->n_grants, sizeof(*n.cred->grants), grant_cmp);
    size_t i = 0;
    size_t j = 0;

    if (d->err != COFFER_OK) {
        return;
    }
    while (i < o.cred->n_grants || j < n.cred->n_grants) {
        int c = side(i, o.cred->n_grants, j, n.cred->n_grants);
        const struct coffer_policy_grant *a = c <= 0 ? ov[i] : NULL;
        const struct coffer_policy_grant *b = c >= 0 ? nv[j] : NULL;

        if (a != NULL && b != NULL) {
            c = grant_order(a, b);
        }
        if (c < 0 && a != NULL) {
            change(d, COFFER_POLICY_REMOVED, grant_what(d, project, o.cred->name, a), NULL);
            i++;
        } else if (c > 0 && b != NULL) {
            change(d, COFFER_POLICY_ADDED, grant_what(d, project, n.cred->name, b), NULL);
            j++;
        } else if (a != NULL && b != NULL) {
            diff_grant_phases(d, o, a, n, b);
            i++;
            j++;
        }
    }
}

/*
 * Usage specs are compared through their canonical JSON, in which order that
 * does not matter (destinations, methods) is already settled.
 */
static void diff_usage(struct differ *d, const char *what, const struct coffer_policy_cred *a,
                       const struct coffer_policy_cred *b)
{
    struct coffer_buf ja = {0};
    struct coffer_buf jb = {0};
    enum coffer_err r;

    if (a->usage == NULL || b->usage == NULL) {
        if (a->usage != b->usage) {
            modified(d, what, a->usage == NULL ? "usage (none) -> set" : "usage set -> (none)");
        }
        return;
    }
    if ((r = coffer_policy_usage_json(a->usage, &ja)) != COFFER_OK ||
        (r = coffer_policy_usage_json(b->usage, &jb)) != COFFER_OK) {
        if (d->err == COFFER_OK) {
            d->err = r;
        }
    } else if (ja.len != jb.len || (ja.len > 0 && !coffer_mem_equal(ja.data, jb.data, ja.len))) {
        modified(d, what, "usage");
    }
    coffer_buf_cleanup(&ja);
    coffer_buf_cleanup(&jb);
}

static void diff_cred(struct differ *d, struct rule o, struct rule n)
{
    const char *what =
        coffer_arena_printf(d->a, "credential rule %s/%s", o.project->name, o.cred->name);
    const char **pa = sorted_strs(d, cl(o.cred->purposes), o.cred->n_purposes);
    const char **pb = sorted_strs(d, cl(n.cred->purposes), n.cred->n_purposes);

    if (d->err != COFFER_OK) {
        return;
    }
    if (!same_str(o.cred->description, n.cred->description)) {
        modified(d, what, "description");
    }
    if (!same_str(o.cred->expire_on_phase_end, n.cred->expire_on_phase_end)) {
        modified(d, what,
                 coffer_arena_printf(
                     d->a, "expire_on_phase_end %s -> %s",
                     o.cred->expire_on_phase_end != NULL ? o.cred->expire_on_phase_end : "(none)",
                     n.cred->expire_on_phase_end != NULL ? n.cred->expire_on_phase_end : "(none)"));
    }
    if (!same_list(pa, o.cred->n_purposes, pb, n.cred->n_purposes)) {
        modified(d, what, "purposes");
    }
    diff_usage(d, what, o.cred, n.cred);
    if (o.cred->secretless_only != n.cred->secretless_only) {
        modified(d, what,
                 o.cred->secretless_only ? "reveal false -> true" : "reveal true -> false");
    }
    diff_grants(d, o, n);
}

static void diff_creds(struct differ *d, const struct coffer_policy_project *o,
                       const struct coffer_policy_project *n)
{
    const void **ov = sorted_view(d, o->creds, o->n_creds, sizeof(*o->creds), cred_cmp);
    const void **nv = sorted_view(d, n->creds, n->n_creds, sizeof(*n->creds), cred_cmp);
    size_t i = 0;
    size_t j = 0;

    if (d->err != COFFER_OK) {
        return;
    }
    while (i < o->n_creds || j < n->n_creds) {
        int c = side(i, o->n_creds, j, n->n_creds);
        const struct coffer_policy_cred *a = c <= 0 ? ov[i] : NULL;
        const struct coffer_policy_cred *b = c >= 0 ? nv[j] : NULL;

        if (a != NULL && b != NULL) {
            c = strcmp(a->name, b->name);
        }
        if (c < 0 && a != NULL) {
            change(d, COFFER_POLICY_REMOVED,
                   coffer_arena_printf(d->a, "credential rule %s/%s", o->name, a->name), NULL);
            i++;
        } else if (c > 0 && b != NULL) {
            added_cred(d, n->name, b);
            j++;
        } else if (a != NULL && b != NULL) {
            diff_cred(d, (struct rule){o, a}, (struct rule){n, b});
            i++;
            j++;
        }
    }
}

/* ---- Projects ---- */

static void diff_members(struct differ *d, const struct coffer_policy_project *o,
                         const struct coffer_policy_project *n)
{
    const char **ov = sorted_strs(d, cl(o->members), o->n_members);
    const char **nv = sorted_strs(d, cl(n->members), n->n_members);
    size_t i = 0;
    size_t j = 0;

    if (d->err != COFFER_OK) {
        return;
    }
    while (i < o->n_members || j < n->n_members) {
        int c = side(i, o->n_members, j, n->n_members);
        const char *a = c <= 0 ? ov[i] : NULL;
        const char *b = c >= 0 ? nv[j] : NULL;

        if (a != NULL && b != NULL) {
            c = strcmp(a, b);
        }
        if (c < 0 && a != NULL) {
            change(d, COFFER_POLICY_REMOVED, coffer_arena_printf(d->a, "member %s/%s", o->name, a),
                   NULL);
            i++;
        } else if (c > 0 && b != NULL) {
            change(d, COFFER_POLICY_ADDED, coffer_arena_printf(d->a, "member %s/%s", n->name, b),
                   NULL);
            j++;
        } else {
            i++;
            j++;
        }
    }
}

/* The inside of a project present in both models, or (o empty) of an added one. */
static void diff_project_body(struct differ *d, const struct coffer_policy_project *o,
                              const struct coffer_policy_project *n, bool added)
{
    const char *what = coffer_arena_printf(d->a, "project %s", n->name);

    diff_members(d, o, n);
    if (!added && !same_list(cl(o->phases), o->n_phases, cl(n->phases), n->n_phases)) {
        modified(d, what,
                 list_change(d, "phases", cl(o->phases), o->n_phases, cl(n->phases), n->n_phases,
                             "(none)"));
    }
    if (!added && !same_str(o->initial_phase, n->initial_phase)) {
        modified(d, what,
                 coffer_arena_printf(d->a, "initial_phase %s -> %s",
                                     o->initial_phase != NULL ? o->initial_phase : "(none)",
                                     n->initial_phase != NULL ? n->initial_phase : "(none)"));
    }
    diff_creds(d, o, n);
}

static void diff_projects(struct differ *d, const struct coffer_policy_org *o,
                          const struct coffer_policy_org *n)
{
    const void **ov = sorted_view(d, o->projects, o->n_projects, sizeof(*o->projects), project_cmp);
    const void **nv = sorted_view(d, n->projects, n->n_projects, sizeof(*n->projects), project_cmp);
    size_t i = 0;
    size_t j = 0;

    if (d->err != COFFER_OK) {
        return;
    }
    /* First the projects themselves ... */
    while (i < o->n_projects || j < n->n_projects) {
        int c = side(i, o->n_projects, j, n->n_projects);
        const struct coffer_policy_project *a = c <= 0 ? ov[i] : NULL;
        const struct coffer_policy_project *b = c >= 0 ? nv[j] : NULL;

        if (a != NULL && b != NULL) {
            c = strcmp(a->name, b->name);
        }
        if (c < 0 && a != NULL) {
            change(d, COFFER_POLICY_REMOVED, coffer_arena_printf(d->a, "project %s", a->name),
                   NULL);
            i++;
        } else if (c > 0 && b != NULL) {
            change(d, COFFER_POLICY_ADDED, coffer_arena_printf(d->a, "project %s", b->name), NULL);
            j++;
        } else if (a != NULL && b != NULL) {
            if (!same_str(a->description, b->description)) {
                modified(d, coffer_arena_printf(d->a, "project %s", a->name), "description");
            }
            i++;
            j++;
        }
    }
    /* ... then what is inside each project that remains or is new. */
    i = 0;
    for (j = 0; j < n->n_projects; j++) {
        const struct coffer_policy_project *b = nv[j];
        struct coffer_policy_project none = {.name = b->name};

        while (i < o->n_projects && project_cmp(&ov[i], &nv[j]) < 0) {
            i++;
        }
        if (i < o->n_projects && project_cmp(&ov[i], &nv[j]) == 0) {
            diff_project_body(d, ov[i], b, false);
        } else {
            diff_project_body(d, &none, b, true);
        }
    }
}

enum coffer_err coffer_policy_diff(const struct coffer_policy_org *old,
                                   const struct coffer_policy_org *new_org, struct coffer_arena *a,
                                   struct coffer_policy_changes *out)
{
    struct differ d = {.a = a, .out = out};

    if (old == NULL || new_org == NULL || a == NULL || out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "comparing policies: a model is missing");
    }
    out->items = NULL;
    out->n = 0;
    if (old->name == NULL || new_org->name == NULL || strcmp(old->name, new_org->name) != 0) {
        return coffer_err_set(COFFER_E_INVALID, "comparing policies of different orgs");
    }
    diff_agent_types(&d, old, new_org);
    diff_tiers(&d, old, new_org);
    diff_projects(&d, old, new_org);
    if (d.err != COFFER_OK) {
        out->items = NULL;
        out->n = 0;
    }
    return d.err;
}
