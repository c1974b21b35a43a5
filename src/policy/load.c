/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policy files into the model: reading a file (bounded, regular files only),
 * its SHA-256, the walk from the YAML tree to agent types, tiers and
 * projects of one org, and the merge of that org into the policy. Every
 * problem becomes a diagnostic at its position and the walk goes on, so that
 * an admin sees all of a file's problems at once. Cross-references between
 * files wait for check.c. This file owns the diagnostics list and the
 * policy's private state; it never writes anything but the model.
 */
#include "coffer/policy.h"

#include "coffer/broker.h"
#include "coffer/mem.h"
#include "coffer/text.h"
#include "policy/policy_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- Diagnostics and quoting ---- */

void coffer_policy_vdiag(struct coffer_policy_sink *s, const char *file, uint32_t line,
                         uint32_t col, const char *fmt, va_list ap)
{
    va_list ap2;
    int head;
    int body;
    char *text;

    s->count++;
    if (s->d == NULL) {
        return;
    }
    if (s->d->n >= COFFER_POLICY_DIAGS_MAX) {
        s->d->dropped++;
        return;
    }
    head = snprintf(NULL, 0, "%s:%u:%u: ", file, line, col);
    va_copy(ap2, ap);
    body = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (head < 0 || body < 0) {
        s->d->dropped++;
        return;
    }
    text = coffer_calloc((size_t)head + (size_t)body + 1, 1);
    if (text == NULL) {
        s->nomem = true;
        s->d->dropped++;
        return;
    }
    (void)snprintf(text, (size_t)head + 1, "%s:%u:%u: ", file, line, col);
    (void)vsnprintf(text + head, (size_t)body + 1, fmt, ap);
    s->d->lines[s->d->n++] = text;
}

void coffer_policy_diag(struct coffer_policy_sink *s, const char *file, uint32_t line, uint32_t col,
                        const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    coffer_policy_vdiag(s, file, line, col, fmt, ap);
    va_end(ap);
}

void coffer_policy_diags_cleanup(struct coffer_policy_diags *d)
{
    if (d == NULL) {
        return;
    }
    for (size_t i = 0; i < d->n && i < COFFER_POLICY_DIAGS_MAX; i++) {
        coffer_free(d->lines[i]);
        d->lines[i] = NULL;
    }
    d->n = 0;
    d->dropped = 0;
}

struct coffer_policy_quoted coffer_policy_quote(const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    struct coffer_policy_quoted q = {{0}};
    size_t o = 0;

    if (s == NULL) {
        return q;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (i == COFFER_POLICY_QUOTE_MAX) {
            q.s[o++] = '.';
            q.s[o++] = '.';
            q.s[o++] = '.';
            break;
        }
        if (c < 0x20 || c > 0x7E || c == '\'' || c == '\\') {
            q.s[o++] = '\\';
            q.s[o++] = 'x';
            q.s[o++] = hex[c >> 4];
            q.s[o++] = hex[c & 0x0F];
        } else {
            q.s[o++] = (char)c;
        }
    }
    q.s[o] = '\0';
    return q;
}

/* ---- The policy object ---- */

struct coffer_policy_state *coffer_policy_state(struct coffer_policy *p)
{
    /* Every policy comes from coffer_policy_new, where pub is the first member. */
    return (struct coffer_policy_state *)p;
}

enum coffer_err coffer_policy_new(struct coffer_policy **out)
{
    struct coffer_policy_state *st;
    enum coffer_err r;

    *out = NULL;
    st = coffer_calloc(1, sizeof(*st));
    if (st == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "allocating a policy");
    }
    r = coffer_arena_new(0, &st->pub.arena);
    if (r != COFFER_OK) {
        coffer_free(st);
        return r;
    }
    *out = &st->pub;
    return COFFER_OK;
}

void coffer_policy_free(struct coffer_policy **p)
{
    struct coffer_policy_state *st;

    if (p == NULL || *p == NULL) {
        return;
    }
    st = coffer_policy_state(*p);
    coffer_arena_free(&st->pub.arena);
    coffer_free(st->refs);
    coffer_free(st);
    *p = NULL;
}

enum coffer_err coffer_policy_ref_add(struct coffer_policy_state *st, const char *s,
                                      struct coffer_policy_pos pos)
{
    if (st->n_refs == st->cap_refs) {
        size_t cap = st->cap_refs == 0 ? 64 : st->cap_refs * 2;
        struct coffer_policy_ref *refs = coffer_reallocarray(st->refs, cap, sizeof(*refs));

        if (refs == NULL) {
            return coffer_err_set(COFFER_E_NOMEM, "recording positions of the policy");
        }
        st->refs = refs;
        st->cap_refs = cap;
    }
    st->refs[st->n_refs].s = s;
    st->refs[st->n_refs].pos = pos;
    st->n_refs++;
    return COFFER_OK;
}

const struct coffer_policy_org *coffer_policy_org_find(const struct coffer_policy *p,
                                                       const char *name)
{
    if (p == NULL || name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < p->n_orgs; i++) {
        if (strcmp(p->orgs[i].name, name) == 0) {
            return &p->orgs[i];
        }
    }
    return NULL;
}

/* ---- The walk from tree to model ---- */

struct loader {
    struct coffer_policy_state *st;
    struct coffer_arena *a;
    struct coffer_policy_sink *sink;
    const char *file;
    enum coffer_err err; /* the first failure that is not a problem of the input */
    struct coffer_policy_org org;
    const char *org_name; /* for messages: the org's name, or its quoted text */
};

/* A key of a mapping with a fixed set of keys, and the value found for it. */
struct field {
    const char *key;
    const struct coffer_ynode *k;
    const struct coffer_ynode *v;
};

static void diag_at(struct loader *l, const struct coffer_ynode *n, const char *fmt, ...)
    COFFER_PRINTF(3, 4);
static void diag_at(struct loader *l, const struct coffer_ynode *n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    coffer_policy_vdiag(l->sink, l->file, n->line, n->col, fmt, ap);
    va_end(ap);
}

static struct coffer_policy_pos pos_of(const struct loader *l, const struct coffer_ynode *n)
{
    struct coffer_policy_pos p = {.file = l->file, .line = n->line, .col = n->col};

    return p;
}

static void *alloc(struct loader *l, size_t n, size_t size)
{
    void *p = coffer_arena_alloc(l->a, n, size);

    if (p == NULL && l->err == COFFER_OK) {
        l->err = coffer_err_set(COFFER_E_NOMEM, "%s: the policy needs more memory", l->file);
    }
    return p;
}

static const char *copy_str(struct loader *l, const struct coffer_ynode *n)
{
    char *s = coffer_arena_strndup(l->a, n->str, n->len);

    if (s == NULL && l->err == COFFER_OK) {
        l->err = coffer_err_set(COFFER_E_NOMEM, "%s: the policy needs more memory", l->file);
    }
    return s;
}

static void add_ref(struct loader *l, const char *s, const struct coffer_ynode *n)
{
    if (s != NULL && l->err == COFFER_OK) {
        l->err = coffer_policy_ref_add(l->st, s, pos_of(l, n));
    }
}

/* "text", "a sequence", "a mapping" or "empty": what a value is, for messages. */
static const char *kind_of(const struct coffer_ynode *n)
{
    return coffer_policy_ynode_null(n) ? "empty" : coffer_policy_ynode_kind_str(n->kind);
}

static bool is_mapping(const struct coffer_ynode *n)
{
    return n->kind == COFFER_YNODE_MAPPING;
}

static bool is_sequence(const struct coffer_ynode *n)
{
    return n->kind == COFFER_YNODE_SEQUENCE;
}

/*
 * Sorts the keys of m into fields; any other key is reported with where
 * ("in project 'payments'") and the keys that are known.
 */
static void take_fields(struct loader *l, const struct coffer_ynode *m, struct field *f, size_t nf,
                        const char *where)
{
    char known[256] = "";
    size_t used = 0;

    for (size_t i = 0; i < nf; i++) {
        int w = snprintf(known + used, sizeof(known) - used, "%s%s", i > 0 ? ", " : "", f[i].key);

        if (w > 0 && (size_t)w < sizeof(known) - used) {
            used += (size_t)w;
        }
    }
    for (const struct coffer_ynode *k = m->head; k != NULL; k = k->next->next) {
        bool found = false;

        for (size_t i = 0; i < nf && !found; i++) {
            if (strcmp(k->str, f[i].key) == 0) {
                f[i].k = k;
                f[i].v = k->next;
                found = true;
            }
        }
        if (!found) {
            diag_at(l, k, "unknown key '%s' %s (known keys: %s)",
                    coffer_policy_quote(k->str, k->len).s, where, known);
        }
    }
}

static void missing(struct loader *l, const struct coffer_ynode *at, const char *key,
                    const char *where)
{
    diag_at(l, at, "missing required key '%s' %s", key, where);
}

/* A name written as the key of a mapping; NULL (reported) if it breaks the rule. */
static const char *key_name(struct loader *l, const struct coffer_ynode *k, const char *noun)
{
    if (!coffer_policy_name_ok(k->str, k->len)) {
        diag_at(l, k, "%s name '%s' is not valid: %s", noun, coffer_policy_quote(k->str, k->len).s,
                COFFER_POLICY_NAME_RULE);
        return NULL;
    }
    return copy_str(l, k);
}

/* A name written as a value; subject says what it is ("'org'", "an entry of 'members'"). */
static const char *value_name(struct loader *l, const struct coffer_ynode *v, const char *subject,
                              const char *noun)
{
    if (coffer_policy_ynode_null(v)) {
        if (strcmp(v->str, "null") == 0) {
            diag_at(l, v,
                    "%s must be a name, not empty (write 'null' in quotes to use it as a name)",
                    subject);
        } else {
            diag_at(l, v, "%s must be a name, not empty", subject);
        }
        return NULL;
    }
    if (v->kind != COFFER_YNODE_SCALAR) {
        diag_at(l, v, "%s must be a name, not %s", subject, kind_of(v));
        return NULL;
    }
    if (!coffer_policy_name_ok(v->str, v->len)) {
        diag_at(l, v, "%s name '%s' is not valid: %s", noun, coffer_policy_quote(v->str, v->len).s,
                COFFER_POLICY_NAME_RULE);
        return NULL;
    }
    return copy_str(l, v);
}

/* Text (a description or a purpose pattern) of at most max bytes. */
static const char *value_text(struct loader *l, const struct coffer_ynode *v, const char *subject,
                              size_t max)
{
    if (v->kind != COFFER_YNODE_SCALAR || coffer_policy_ynode_null(v)) {
        diag_at(l, v, "%s must be text, not %s", subject, kind_of(v));
        return NULL;
    }
    if (v->len == 0) {
        diag_at(l, v, "%s is empty", subject);
        return NULL;
    }
    if (v->len > max) {
        diag_at(l, v, "%s is %zu bytes; the limit is %zu", subject, v->len, max);
        return NULL;
    }
    if (!coffer_utf8_ok(v->str, v->len)) {
        diag_at(l, v, "%s is not valid UTF-8", subject);
        return NULL;
    }
    if (!coffer_text_ok(v->str, v->len, max)) {
        diag_at(l, v, "%s holds a control character (tabs and line breaks are not allowed)",
                subject);
        return NULL;
    }
    return copy_str(l, v);
}

/* A TTL value of key in tier; false (reported) if it is not one. */
static bool value_ttl(struct loader *l, const struct coffer_ynode *v, const char *key,
                      const char *tier, int64_t *out)
{
    if (v->kind != COFFER_YNODE_SCALAR || coffer_policy_ynode_null(v)) {
        diag_at(l, v, "%s of tier '%s' must be a TTL such as 90d, 12h or never, not %s", key, tier,
                kind_of(v));
        return false;
    }
    if (coffer_policy_ttl_parse(v->str, v->len, out) != COFFER_OK) {
        diag_at(l, v, "%s '%s' of tier '%s' is not a valid TTL: %s", key,
                coffer_policy_quote(v->str, v->len).s, tier, coffer_err_detail());
        return false;
    }
    return true;
}

/*
 * The index of the earlier item of nodes[0..n) whose text equals nodes[n]'s,
 * or n. Lists checked this way are bounded by their limits (at most 1000).
 */
static size_t earlier(const struct coffer_ynode *const *nodes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (nodes[i] != NULL && strcmp(nodes[i]->str, nodes[n]->str) == 0) {
            return i;
        }
    }
    return n;
}

/*
 * A sequence of names (phases or members) of at most max items without
 * repeats. Items that are not valid are left out (and reported).
 */
struct name_list {
    const char *subject;   /* "'phases'" */
    const char *item;      /* "an entry of 'phases'" */
    const char *noun;      /* "phase" */
    const char *expect;    /* "phase names" */
    const char *where;     /* "project 'payments'" */
    const char *too_many;  /* "phases" */
    const char *repeat_in; /* "in project 'payments'" */
    size_t max;
    bool refs; /* record the position of every name */
};

static void names_of(struct loader *l, const struct coffer_ynode *v, const struct name_list *spec,
                     const char ***out, size_t *n_out)
{
    const struct coffer_ynode **seen = NULL;
    const char **names;
    size_t n = 0;
    size_t i = 0;

    *out = NULL;
    *n_out = 0;
    if (!is_sequence(v)) {
        diag_at(l, v, "%s must be a sequence of %s, not %s", spec->subject, spec->expect,
                kind_of(v));
        return;
    }
    names = alloc(l, v->n < spec->max ? v->n : spec->max, sizeof(*names));
    seen = alloc(l, v->n < spec->max ? v->n : spec->max, sizeof(*seen));
    if (names == NULL || seen == NULL) {
        return;
    }
    for (const struct coffer_ynode *it = v->head; it != NULL; it = it->next, i++) {
        const char *name;
        size_t first;

        if (i == spec->max) {
            diag_at(l, it, "%s has more than %zu %s", spec->where, spec->max, spec->too_many);
            break;
        }
        name = value_name(l, it, spec->item, spec->noun);
        if (name == NULL) {
            continue;
        }
        seen[i] = it;
        first = earlier(seen, i);
        if (first != i) {
            diag_at(l, it, "%s '%s' is listed twice %s (first at line %u, column %u)", spec->noun,
                    name, spec->repeat_in, seen[first]->line, seen[first]->col);
            seen[i] = NULL;
            continue;
        }
        if (spec->refs) {
            add_ref(l, name, it);
        }
        names[n++] = name;
    }
    *out = names;
    *n_out = n;
}

static void load_agent_types(struct loader *l, const struct coffer_ynode *v)
{
    struct coffer_policy_org *o = &l->org;
    size_t i = 0;

    if (!is_mapping(v)) {
        diag_at(l, v,
                "'agent_types' must be a mapping of agent type names to their attributes, "
                "not %s",
                kind_of(v));
        return;
    }
    o->agent_types = alloc(
        l, v->n / 2 < COFFER_POLICY_AGENT_TYPES_MAX ? v->n / 2 : COFFER_POLICY_AGENT_TYPES_MAX,
        sizeof(*o->agent_types));
    if (o->agent_types == NULL) {
        return;
    }
    for (const struct coffer_ynode *k = v->head; k != NULL; k = k->next->next, i++) {
        const struct coffer_ynode *attrs = k->next;
        struct field f[] = {{.key = "description"}};
        struct coffer_policy_agent_type *t;
        struct coffer_policy_quoted q = coffer_policy_quote(k->str, k->len);
        char where[sizeof(q.s) + 32];
        const char *name;
        const char *desc = NULL;

        if (i == COFFER_POLICY_AGENT_TYPES_MAX) {
            diag_at(l, k, "org '%s' declares more than %u agent types", l->org_name,
                    COFFER_POLICY_AGENT_TYPES_MAX);
            return;
        }
        name = key_name(l, k, "agent type");
        snprintf(where, sizeof(where), "in agent type '%s'", q.s);
        if (coffer_policy_ynode_null(attrs)) {
            /* An agent type without attributes: a bare "analyst:" is fine. */
        } else if (!is_mapping(attrs)) {
            diag_at(l, attrs,
                    "agent type '%s' must be a mapping of its attributes (description) or empty, "
                    "not %s",
                    q.s, kind_of(attrs));
        } else {
            char subject[sizeof(q.s) + 48];

            take_fields(l, attrs, f, 1, where);
            snprintf(subject, sizeof(subject), "the description of agent type '%s'", q.s);
            if (f[0].v != NULL) {
                desc = value_text(l, f[0].v, subject, COFFER_POLICY_DESC_MAX);
            }
        }
        if (name == NULL) {
            continue;
        }
        t = &o->agent_types[o->n_agent_types++];
        t->name = name;
        t->description = desc;
        t->pos = pos_of(l, k);
    }
}

static void load_tiers(struct loader *l, const struct coffer_ynode *v)
{
    if (!is_mapping(v)) {
        diag_at(l, v,
                "'tiers' must be a mapping of tier names (low, medium, high, critical) to "
                "lifetimes, not %s",
                kind_of(v));
        return;
    }
    for (const struct coffer_ynode *k = v->head; k != NULL; k = k->next->next) {
        const struct coffer_ynode *val = k->next;
        struct field f[] = {{.key = "default_ttl"}, {.key = "max_ttl"}};
        struct coffer_policy_tier *t;
        enum coffer_tier tier;
        char where[64];
        int64_t def = 0;
        int64_t max = 0;
        bool ok = true;

        if (!coffer_tier_parse(k->str, k->len, &tier)) {
            diag_at(l, k, "unknown tier '%s' (tiers are low, medium, high, critical)",
                    coffer_policy_quote(k->str, k->len).s);
            continue;
        }
        if (!is_mapping(val)) {
            diag_at(l, val, "tier '%s' must be a mapping with default_ttl and max_ttl, not %s",
                    k->str, kind_of(val));
            continue;
        }
        snprintf(where, sizeof(where), "in tier '%s'", k->str);
        take_fields(l, val, f, 2, where);
        for (size_t i = 0; i < 2; i++) {
            if (f[i].v == NULL) {
                missing(l, k, f[i].key, where);
                ok = false;
                continue;
            }
            ok = value_ttl(l, f[i].v, f[i].key, k->str, i == 0 ? &def : &max) && ok;
        }
        if (!ok) {
            continue;
        }
        t = &l->org.tiers[tier];
        t->default_ttl = def;
        t->max_ttl = max;
        t->declared = true;
        t->pos = pos_of(l, k);
    }
}

/* Context of a credential rule for messages: "credential rule 'payments/stripe-live'". */
struct cred_ctx {
    const char *project;
    char label[2 * sizeof(struct coffer_policy_quoted) + 32];
};

static void load_grant(struct loader *l, const struct cred_ctx *cc, const struct coffer_ynode *g,
                       struct coffer_policy_grant *out, bool *ok)
{
    struct field f[] = {{.key = "agent_type"}, {.key = "instance"}, {.key = "phases"}};
    char where[sizeof(cc->label) + 16];
    char repeat_in[sizeof(cc->label) + 32];
    struct name_list phases = {
        .subject = "'phases' of a grant",
        .item = "an entry of 'phases'",
        .noun = "phase",
        .expect = "phase names",
        .where = "a grant",
        .too_many = "phases",
        .repeat_in = repeat_in,
        .max = COFFER_POLICY_PHASES_MAX,
        .refs = true,
    };

    *ok = false;
    if (!is_mapping(g)) {
        diag_at(l, g,
                "a grant of %s must be a mapping with agent_type, instance and phases, not %s",
                cc->label, kind_of(g));
        return;
    }
    snprintf(where, sizeof(where), "in a grant of %s", cc->label);
    snprintf(repeat_in, sizeof(repeat_in), "in a grant of %s", cc->label);
    take_fields(l, g, f, 3, where);
    out->pos = pos_of(l, g);
    if (f[0].v == NULL) {
        missing(l, g, "agent_type", where);
    } else {
        out->agent_type = value_name(l, f[0].v, "'agent_type'", "agent type");
        add_ref(l, out->agent_type, f[0].v);
    }
    if (f[1].v != NULL) {
        out->instance = value_name(l, f[1].v, "'instance'", "instance");
    }
    if (f[2].v != NULL) {
        if (is_sequence(f[2].v) && f[2].v->n == 0) {
            /* An empty list would read as "every phase": the opposite of what it looks like. */
            diag_at(l, f[2].v,
                    "'phases' of a grant must name at least one phase; leave 'phases' out to "
                    "grant in every phase");
        } else {
            names_of(l, f[2].v, &phases, &out->phases, &out->n_phases);
        }
    }
    *ok = out->agent_type != NULL && (f[1].v == NULL || out->instance != NULL);
}

static bool same_grant(const struct coffer_policy_grant *a, const struct coffer_policy_grant *b)
{
    if (strcmp(a->agent_type, b->agent_type) != 0) {
        return false;
    }
    if (a->instance == NULL || b->instance == NULL) {
        return a->instance == b->instance;
    }
    return strcmp(a->instance, b->instance) == 0;
}

static void load_grants(struct loader *l, const struct cred_ctx *cc, const struct coffer_ynode *v,
                        struct coffer_policy_cred *c)
{
    size_t i = 0;

    if (!is_sequence(v)) {
        diag_at(l, v, "'grants' must be a sequence of grants, not %s", kind_of(v));
        return;
    }
    c->grants = alloc(l, v->n < COFFER_POLICY_GRANTS_MAX ? v->n : COFFER_POLICY_GRANTS_MAX,
                      sizeof(*c->grants));
    if (c->grants == NULL) {
        return;
    }
    for (const struct coffer_ynode *g = v->head; g != NULL; g = g->next, i++) {
        struct coffer_policy_grant *out = &c->grants[c->n_grants];
        bool ok = false;

        if (i == COFFER_POLICY_GRANTS_MAX) {
            diag_at(l, g, "%s has more than %u grants", cc->label, COFFER_POLICY_GRANTS_MAX);
            return;
        }
        load_grant(l, cc, g, out, &ok);
        if (!ok) {
            *out = (struct coffer_policy_grant){0};
            continue;
        }
        for (size_t j = 0; j < c->n_grants; j++) {
            if (same_grant(&c->grants[j], out)) {
                diag_at(l, g, "duplicate grant to %s%s%s in %s (first at line %u, column %u)",
                        out->agent_type, out->instance != NULL ? "/" : "",
                        out->instance != NULL ? out->instance : "", cc->label,
                        c->grants[j].pos.line, c->grants[j].pos.col);
                ok = false;
                break;
            }
        }
        if (!ok) {
            *out = (struct coffer_policy_grant){0};
            continue;
        }
        c->n_grants++;
    }
}

static void load_purposes(struct loader *l, const struct cred_ctx *cc, const struct coffer_ynode *v,
                          struct coffer_policy_cred *c)
{
    const struct coffer_ynode **seen;
    char subject[sizeof(cc->label) + 32];
    size_t i = 0;

    if (!is_sequence(v)) {
        diag_at(l, v, "'purposes' must be a sequence of purpose patterns, not %s", kind_of(v));
        return;
    }
    c->purposes = alloc(l, v->n < COFFER_POLICY_PURPOSES_MAX ? v->n : COFFER_POLICY_PURPOSES_MAX,
                        sizeof(*c->purposes));
    seen = alloc(l, v->n < COFFER_POLICY_PURPOSES_MAX ? v->n : COFFER_POLICY_PURPOSES_MAX,
                 sizeof(*seen));
    if (c->purposes == NULL || seen == NULL) {
        return;
    }
    snprintf(subject, sizeof(subject), "a purpose pattern of %s", cc->label);
    for (const struct coffer_ynode *it = v->head; it != NULL; it = it->next, i++) {
        const char *text;
        size_t first;

        if (i == COFFER_POLICY_PURPOSES_MAX) {
            diag_at(l, it, "%s has more than %u purpose patterns", cc->label,
                    COFFER_POLICY_PURPOSES_MAX);
            return;
        }
        text = value_text(l, it, subject, COFFER_POLICY_PURPOSE_MAX);
        if (text == NULL) {
            continue;
        }
        seen[i] = it;
        first = earlier(seen, i);
        if (first != i) {
            diag_at(l, it,
                    "purpose pattern '%s' is listed twice in %s (first at line %u, column %u)",
                    coffer_policy_quote(it->str, it->len).s, cc->label, seen[first]->line,
                    seen[first]->col);
            seen[i] = NULL;
            continue;
        }
        c->purposes[c->n_purposes++] = text;
    }
}

/* ---- Usage specs ---- */

static void load_dests(struct loader *l, const struct cred_ctx *cc, const struct coffer_ynode *v,
                       struct coffer_policy_usage *u)
{
    const struct coffer_ynode **seen;
    size_t cap = v->n < COFFER_POLICY_DESTS_MAX ? v->n : COFFER_POLICY_DESTS_MAX;
    size_t i = 0;

    if (!is_sequence(v)) {
        diag_at(l, v, "'destinations' of %s must be a sequence of https URLs, not %s", cc->label,
                kind_of(v));
        return;
    }
    if (v->n == 0) {
        diag_at(l, v, "'destinations' of %s must list at least one destination", cc->label);
        return;
    }
    u->destinations = alloc(l, cap, sizeof(*u->destinations));
    seen = alloc(l, cap, sizeof(*seen));
    if (u->destinations == NULL || seen == NULL) {
        return;
    }
    for (const struct coffer_ynode *it = v->head; it != NULL; it = it->next, i++) {
        struct coffer_broker_dest d;
        enum coffer_err r;
        size_t first;

        if (i == COFFER_POLICY_DESTS_MAX) {
            diag_at(l, it, "%s has more than %u destinations", cc->label, COFFER_POLICY_DESTS_MAX);
            return;
        }
        if (it->kind != COFFER_YNODE_SCALAR || coffer_policy_ynode_null(it)) {
            diag_at(l, it, "a destination of %s must be a URL, not %s", cc->label, kind_of(it));
            continue;
        }
        r = coffer_policy_dest_split(l->a, it->str, it->len, &d);
        if (r == COFFER_E_NOMEM) {
            if (l->err == COFFER_OK) {
                l->err = r;
            }
            return;
        }
        if (r != COFFER_OK) {
            diag_at(l, it, "destination '%s' of %s %s", coffer_policy_quote(it->str, it->len).s,
                    cc->label, coffer_err_detail());
            continue;
        }
        seen[i] = it;
        first = earlier(seen, i);
        if (first != i) {
            diag_at(l, it, "destination '%s' is listed twice in %s (first at line %u, column %u)",
                    coffer_policy_quote(it->str, it->len).s, cc->label, seen[first]->line,
                    seen[first]->col);
            seen[i] = NULL;
            continue;
        }
        u->destinations[u->n_destinations].url = copy_str(l, it);
        u->destinations[u->n_destinations].pos = pos_of(l, it);
        u->n_destinations++;
    }
}

static void load_methods(struct loader *l, const struct cred_ctx *cc, const struct coffer_ynode *v,
                         struct coffer_policy_usage *u)
{
    const struct coffer_ynode **seen;
    size_t cap = v->n < COFFER_POLICY_METHODS_MAX ? v->n : COFFER_POLICY_METHODS_MAX;
    size_t i = 0;

    if (!is_sequence(v)) {
        diag_at(l, v, "'methods' of %s must be a sequence of HTTP methods, not %s", cc->label,
                kind_of(v));
        return;
    }
    if (v->n == 0) {
        diag_at(l, v, "'methods' of %s must list at least one method", cc->label);
        return;
    }
    u->methods = alloc(l, cap, sizeof(*u->methods));
    seen = alloc(l, cap, sizeof(*seen));
    if (u->methods == NULL || seen == NULL) {
        return;
    }
    for (const struct coffer_ynode *it = v->head; it != NULL; it = it->next, i++) {
        size_t first;

        if (i == COFFER_POLICY_METHODS_MAX) {
            diag_at(l, it, "%s has more than %u methods", cc->label, COFFER_POLICY_METHODS_MAX);
            return;
        }
        if (it->kind != COFFER_YNODE_SCALAR || coffer_policy_ynode_null(it) ||
            coffer_policy_method_rank(it->str, it->len) < 0) {
            diag_at(l, it,
                    "method '%s' of %s is not one of GET, HEAD, POST, PUT, PATCH, DELETE, "
                    "OPTIONS (in upper case)",
                    it->kind == COFFER_YNODE_SCALAR ? coffer_policy_quote(it->str, it->len).s
                                                    : kind_of(it),
                    cc->label);
            continue;
        }
        seen[i] = it;
        first = earlier(seen, i);
        if (first != i) {
            diag_at(l, it, "method %s is listed twice in %s (first at line %u, column %u)", it->str,
                    cc->label, seen[first]->line, seen[first]->col);
            seen[i] = NULL;
            continue;
        }
        u->methods[u->n_methods++] = copy_str(l, it);
    }
}

/* One entry of 'inject'; false (reported) if it is not usable. */
static bool load_inject_one(struct loader *l, const struct cred_ctx *cc,
                            const struct coffer_ynode *e, struct coffer_policy_inject *out)
{
    struct field f[] = {{.key = "header"}, {.key = "query"}, {.key = "value"}};
    char where[sizeof(cc->label) + 32];
    const struct coffer_ynode *name;
    const char *why;
    bool ok = true;

    if (!is_mapping(e)) {
        diag_at(l, e,
                "an inject entry of %s must be a mapping with header or query, and value, "
                "not %s",
                cc->label, kind_of(e));
        return false;
    }
    snprintf(where, sizeof(where), "in an inject entry of %s", cc->label);
    take_fields(l, e, f, 3, where);
    out->pos = pos_of(l, e);
    if (f[0].v != NULL && f[1].v != NULL) {
        diag_at(l, f[1].k, "an inject entry of %s has both 'header' and 'query'; give one",
                cc->label);
        return false;
    }
    if (f[0].v == NULL && f[1].v == NULL) {
        diag_at(l, e, "an inject entry of %s needs 'header' or 'query'", cc->label);
        ok = false;
    }
    name = f[0].v != NULL ? f[0].v : f[1].v;
    out->query = f[1].v != NULL;
    if (name != NULL) {
        if (name->kind != COFFER_YNODE_SCALAR || coffer_policy_ynode_null(name)) {
            diag_at(l, name, "the %s name of an inject entry of %s must be text, not %s",
                    out->query ? "query parameter" : "header", cc->label, kind_of(name));
            ok = false;
        } else if ((why = out->query
                              ? coffer_policy_query_problem(name->str, name->len)
                              : coffer_policy_header_problem(name->str, name->len)) != NULL) {
            diag_at(l, name, "%s name '%s' of %s %s", out->query ? "query parameter" : "header",
                    coffer_policy_quote(name->str, name->len).s, cc->label, why);
            ok = false;
        } else {
            out->name = copy_str(l, name);
        }
    }
    if (f[2].v == NULL) {
        missing(l, e, "value", where);
        return false;
    }
    if (f[2].v->kind != COFFER_YNODE_SCALAR || coffer_policy_ynode_null(f[2].v)) {
        diag_at(l, f[2].v, "the value of an inject entry of %s must be a template, not %s",
                cc->label, kind_of(f[2].v));
        return false;
    }
    if (coffer_broker_template_check(f[2].v->str, f[2].v->len) != COFFER_OK) {
        diag_at(l, f[2].v, "the value template of an inject entry of %s is not valid: %s",
                cc->label, coffer_err_detail());
        return false;
    }
    out->value = copy_str(l, f[2].v);
    return ok && out->name != NULL && out->value != NULL;
}

static void load_inject(struct loader *l, const struct cred_ctx *cc, const struct coffer_ynode *v,
                        struct coffer_policy_usage *u)
{
    size_t i = 0;

    if (!is_sequence(v)) {
        diag_at(l, v, "'inject' of %s must be a sequence of inject entries, not %s", cc->label,
                kind_of(v));
        return;
    }
    if (v->n == 0) {
        return;
    }
    u->inject = alloc(l, v->n < COFFER_POLICY_INJECTS_MAX ? v->n : COFFER_POLICY_INJECTS_MAX,
                      sizeof(*u->inject));
    if (u->inject == NULL) {
        return;
    }
    for (const struct coffer_ynode *e = v->head; e != NULL; e = e->next, i++) {
        struct coffer_policy_inject *out = &u->inject[u->n_inject];
        bool dup = false;

        if (i == COFFER_POLICY_INJECTS_MAX) {
            diag_at(l, e, "%s has more than %u inject entries", cc->label,
                    COFFER_POLICY_INJECTS_MAX);
            return;
        }
        if (!load_inject_one(l, cc, e, out)) {
            *out = (struct coffer_policy_inject){0};
            continue;
        }
        for (size_t k = 0; k < u->n_inject && !dup; k++) {
            if (coffer_policy_same_inject(u->inject[k].query, u->inject[k].name, out->query,
                                          out->name)) {
                diag_at(l, e, "%s '%s' is injected twice in %s (first at line %u, column %u)",
                        out->query ? "query parameter" : "header", out->name, cc->label,
                        u->inject[k].pos.line, u->inject[k].pos.col);
                dup = true;
            }
        }
        if (dup) {
            *out = (struct coffer_policy_inject){0};
            continue;
        }
        u->n_inject++;
    }
}

static void load_usage(struct loader *l, const struct cred_ctx *cc, const struct coffer_ynode *k,
                       const struct coffer_ynode *v, struct coffer_policy_cred *c)
{
    struct field f[] = {{.key = "destinations"}, {.key = "methods"}, {.key = "inject"}};
    char where[sizeof(cc->label) + 16];
    struct coffer_policy_usage *u;

    if (!is_mapping(v)) {
        diag_at(l, v,
                "'usage' of %s must be a mapping with destinations, methods and inject, not %s",
                cc->label, kind_of(v));
        return;
    }
    if ((u = alloc(l, 1, sizeof(*u))) == NULL) {
        return;
    }
    snprintf(where, sizeof(where), "in the usage of %s", cc->label);
    take_fields(l, v, f, 3, where);
    u->pos = pos_of(l, v);
    if (f[0].v == NULL) {
        missing(l, k, "destinations", where);
    } else {
        load_dests(l, cc, f[0].v, u);
    }
    if (f[1].v == NULL) {
        missing(l, k, "methods", where);
    } else {
        load_methods(l, cc, f[1].v, u);
    }
    if (f[2].v != NULL) {
        load_inject(l, cc, f[2].v, u);
    }
    c->usage = u;
}

/* 'reveal': true (the default) or false, written plain. */
static void load_reveal(struct loader *l, const struct cred_ctx *cc, const struct coffer_ynode *v,
                        bool has_usage, struct coffer_policy_cred *c)
{
    if (v->kind != COFFER_YNODE_SCALAR || coffer_policy_ynode_null(v)) {
        diag_at(l, v, "'reveal' of %s must be true or false, not %s", cc->label, kind_of(v));
        return;
    }
    if (strcmp(v->str, "true") != 0 && strcmp(v->str, "false") != 0) {
        diag_at(l, v, "'reveal' of %s must be true or false, not '%s'", cc->label,
                coffer_policy_quote(v->str, v->len).s);
        return;
    }
    if (!v->plain) {
        diag_at(l, v, "'reveal' of %s must be true or false, written without quotes", cc->label);
        return;
    }
    if (strcmp(v->str, "false") != 0) {
        return;
    }
    if (!has_usage) {
        diag_at(l, v,
                "'reveal: false' in %s needs a 'usage': without one the credential could not be "
                "used at all",
                cc->label);
        return;
    }
    c->secretless_only = true;
}

static void load_cred(struct loader *l, const char *project, const struct coffer_ynode *k,
                      struct coffer_policy_cred *c, bool *ok)
{
    const struct coffer_ynode *v = k->next;
    struct field f[] = {{.key = "description"}, {.key = "grants"}, {.key = "expire_on_phase_end"},
                        {.key = "purposes"},    {.key = "usage"},  {.key = "reveal"}};
    struct cred_ctx cc = {.project = project};
    char where[sizeof(cc.label) + 8];
    char subject[sizeof(cc.label) + 32];

    snprintf(cc.label, sizeof(cc.label), "credential rule '%s/%s'", project,
             coffer_policy_quote(k->str, k->len).s);
    c->name = key_name(l, k, "credential");
    c->pos = pos_of(l, k);
    *ok = c->name != NULL;
    if (!is_mapping(v)) {
        diag_at(l, v, "%s must be a mapping of its rules (grants, purposes, ...), not %s", cc.label,
                kind_of(v));
        return;
    }
    snprintf(where, sizeof(where), "in %s", cc.label);
    take_fields(l, v, f, 6, where);
    if (f[0].v != NULL) {
        snprintf(subject, sizeof(subject), "the description of %s", cc.label);
        c->description = value_text(l, f[0].v, subject, COFFER_POLICY_DESC_MAX);
    }
    if (f[1].v != NULL) {
        load_grants(l, &cc, f[1].v, c);
    }
    if (f[2].v != NULL) {
        c->expire_on_phase_end =
            value_name(l, f[2].v, "'expire_on_phase_end'", "expire_on_phase_end phase");
        add_ref(l, c->expire_on_phase_end, f[2].v);
    }
    if (f[3].v != NULL) {
        load_purposes(l, &cc, f[3].v, c);
    }
    if (f[4].v != NULL) {
        load_usage(l, &cc, f[4].k, f[4].v, c);
    }
    if (f[5].v != NULL) {
        load_reveal(l, &cc, f[5].v, f[4].v != NULL, c);
    }
}

static void load_creds(struct loader *l, const char *project, const struct coffer_ynode *v,
                       struct coffer_policy_project *p)
{
    size_t i = 0;

    if (!is_mapping(v)) {
        diag_at(l, v, "'credentials' must be a mapping of credential names to their rules, not %s",
                kind_of(v));
        return;
    }
    p->creds = alloc(l, v->n / 2 < COFFER_POLICY_CREDS_MAX ? v->n / 2 : COFFER_POLICY_CREDS_MAX,
                     sizeof(*p->creds));
    if (p->creds == NULL) {
        return;
    }
    for (const struct coffer_ynode *k = v->head; k != NULL; k = k->next->next, i++) {
        struct coffer_policy_cred *c = &p->creds[p->n_creds];
        bool ok = false;

        if (i == COFFER_POLICY_CREDS_MAX) {
            diag_at(l, k, "project '%s' has more than %u credential rules", project,
                    COFFER_POLICY_CREDS_MAX);
            return;
        }
        load_cred(l, project, k, c, &ok);
        if (!ok) {
            *c = (struct coffer_policy_cred){0};
            continue;
        }
        p->n_creds++;
    }
}

static void load_project(struct loader *l, const struct coffer_ynode *k,
                         struct coffer_policy_project *p, bool *ok)
{
    const struct coffer_ynode *v = k->next;
    struct field f[] = {{.key = "description"},
                        {.key = "phases"},
                        {.key = "initial_phase"},
                        {.key = "members"},
                        {.key = "credentials"}};
    struct coffer_policy_quoted q = coffer_policy_quote(k->str, k->len);
    char where[sizeof(q.s) + 32];
    char label[sizeof(q.s) + 32];
    char repeat_phase[sizeof(q.s) + 32];
    char repeat_member[sizeof(q.s) + 48];
    struct name_list phases = {
        .subject = "'phases'",
        .item = "an entry of 'phases'",
        .noun = "phase",
        .expect = "phase names",
        .where = label,
        .too_many = "phases",
        .repeat_in = repeat_phase,
        .max = COFFER_POLICY_PHASES_MAX,
        .refs = false,
    };
    struct name_list members = {
        .subject = "'members'",
        .item = "an entry of 'members'",
        .noun = "agent type",
        .expect = "agent type names",
        .where = label,
        .too_many = "members",
        .repeat_in = repeat_member,
        .max = COFFER_POLICY_AGENT_TYPES_MAX,
        .refs = true,
    };

    snprintf(where, sizeof(where), "in project '%s'", q.s);
    snprintf(label, sizeof(label), "project '%s'", q.s);
    snprintf(repeat_phase, sizeof(repeat_phase), "in project '%s'", q.s);
    snprintf(repeat_member, sizeof(repeat_member), "in the members of project '%s'", q.s);
    p->name = key_name(l, k, "project");
    p->pos = pos_of(l, k);
    *ok = p->name != NULL;
    if (!is_mapping(v)) {
        diag_at(l, v,
                "project '%s' must be a mapping of its attributes (phases, members, ...), "
                "not %s",
                q.s, kind_of(v));
        return;
    }
    take_fields(l, v, f, 5, where);
    if (f[0].v != NULL) {
        char subject[sizeof(q.s) + 48];

        snprintf(subject, sizeof(subject), "the description of project '%s'", q.s);
        p->description = value_text(l, f[0].v, subject, COFFER_POLICY_DESC_MAX);
    }
    if (f[1].v == NULL) {
        missing(l, k, "phases", where);
    } else if (is_sequence(f[1].v) && f[1].v->n == 0) {
        diag_at(l, f[1].v, "project '%s' must have at least one phase", q.s);
    } else {
        names_of(l, f[1].v, &phases, &p->phases, &p->n_phases);
    }
    if (f[2].v != NULL) {
        p->initial_phase = value_name(l, f[2].v, "'initial_phase'", "initial_phase phase");
        add_ref(l, p->initial_phase, f[2].v);
    }
    if (f[3].v != NULL) {
        names_of(l, f[3].v, &members, &p->members, &p->n_members);
    }
    if (f[4].v != NULL) {
        load_creds(l, q.s, f[4].v, p);
    }
}

static void load_projects(struct loader *l, const struct coffer_ynode *v)
{
    struct coffer_policy_org *o = &l->org;
    size_t i = 0;

    if (!is_mapping(v)) {
        diag_at(l, v, "'projects' must be a mapping of project names to their attributes, not %s",
                kind_of(v));
        return;
    }
    o->projects =
        alloc(l, v->n / 2 < COFFER_POLICY_PROJECTS_MAX ? v->n / 2 : COFFER_POLICY_PROJECTS_MAX,
              sizeof(*o->projects));
    if (o->projects == NULL) {
        return;
    }
    for (const struct coffer_ynode *k = v->head; k != NULL; k = k->next->next, i++) {
        struct coffer_policy_project *p = &o->projects[o->n_projects];
        bool ok = false;

        if (i == COFFER_POLICY_PROJECTS_MAX) {
            diag_at(l, k, "org '%s' declares more than %u projects", l->org_name,
                    COFFER_POLICY_PROJECTS_MAX);
            return;
        }
        load_project(l, k, p, &ok);
        if (!ok) {
            *p = (struct coffer_policy_project){0};
            continue;
        }
        o->n_projects++;
    }
}

static void load_version(struct loader *l, const struct coffer_ynode *v)
{
    if (v->kind == COFFER_YNODE_SCALAR && v->plain && strcmp(v->str, "1") == 0) {
        return;
    }
    if (v->kind != COFFER_YNODE_SCALAR || coffer_policy_ynode_null(v)) {
        diag_at(l, v, "'version' must be 1, not %s", kind_of(v));
    } else if (!v->plain && strcmp(v->str, "1") == 0) {
        diag_at(l, v, "'version' must be the number 1, written without quotes");
    } else {
        diag_at(l, v, "unsupported policy version '%s'; this Coffer reads version 1",
                coffer_policy_quote(v->str, v->len).s);
    }
}

/* The whole document, into l->org (whose name stays NULL unless it is valid). */
static void load_root(struct loader *l, const struct coffer_ynode *root)
{
    struct field f[] = {{.key = "version"},
                        {.key = "org"},
                        {.key = "agent_types"},
                        {.key = "tiers"},
                        {.key = "projects"}};
    struct coffer_policy_quoted q = {{0}};

    if (!is_mapping(root)) {
        diag_at(l, root,
                "a policy file must be a mapping with the keys version, org, agent_types, tiers "
                "and projects, not %s",
                kind_of(root));
        return;
    }
    take_fields(l, root, f, 5, "at the top level");
    if (f[0].v == NULL) {
        missing(l, root, "version", "at the top level (write version: 1)");
    } else {
        load_version(l, f[0].v);
    }
    if (f[1].v == NULL) {
        missing(l, root, "org", "at the top level");
        l->org_name = "?";
    } else {
        l->org.name = value_name(l, f[1].v, "'org'", "org");
        l->org.pos = pos_of(l, f[1].v);
        if (f[1].v->kind == COFFER_YNODE_SCALAR) {
            q = coffer_policy_quote(f[1].v->str, f[1].v->len);
            l->org_name = q.s;
        } else {
            l->org_name = "?";
        }
    }
    if (f[2].v != NULL) {
        load_agent_types(l, f[2].v);
    }
    if (f[3].v != NULL) {
        load_tiers(l, f[3].v);
    }
    if (f[4].v != NULL) {
        load_projects(l, f[4].v);
    }
    l->org_name = NULL;
}

/* ---- Merging one file's org into the policy ---- */

static struct coffer_policy_org *org_for(struct loader *l)
{
    struct coffer_policy *p = &l->st->pub;
    struct coffer_policy_org *orgs;

    for (size_t i = 0; i < p->n_orgs; i++) {
        if (strcmp(p->orgs[i].name, l->org.name) == 0) {
            return &p->orgs[i];
        }
    }
    orgs = coffer_arena_grow(l->a, p->orgs, p->n_orgs, p->n_orgs + 1, sizeof(*orgs));
    if (orgs == NULL) {
        l->err = coffer_err_set(COFFER_E_NOMEM, "%s: the policy needs more memory", l->file);
        return NULL;
    }
    p->orgs = orgs;
    orgs[p->n_orgs].name = l->org.name;
    orgs[p->n_orgs].pos = l->org.pos;
    return &orgs[p->n_orgs++];
}

static void already(struct loader *l, struct coffer_policy_pos at, const char *what,
                    const char *name, struct coffer_policy_pos first)
{
    coffer_policy_diag(l->sink, l->file, at.line, at.col, "%s '%s' is already declared at %s:%u:%u",
                       what, name, first.file, first.line, first.col);
}

static void merge_agent_types(struct loader *l, struct coffer_policy_org *o)
{
    struct coffer_policy_agent_type *all;
    size_t n = o->n_agent_types;

    all = coffer_arena_grow(l->a, o->agent_types, o->n_agent_types,
                            o->n_agent_types + l->org.n_agent_types, sizeof(*all));
    if (all == NULL) {
        l->err = coffer_err_set(COFFER_E_NOMEM, "%s: the policy needs more memory", l->file);
        return;
    }
    for (size_t i = 0; i < l->org.n_agent_types; i++) {
        const struct coffer_policy_agent_type *t = &l->org.agent_types[i];
        bool dup = false;

        for (size_t j = 0; j < o->n_agent_types && !dup; j++) {
            if (strcmp(all[j].name, t->name) == 0) {
                already(l, t->pos, "agent type", t->name, all[j].pos);
                dup = true;
            }
        }
        if (dup) {
            continue;
        }
        if (n == COFFER_POLICY_AGENT_TYPES_MAX) {
            coffer_policy_diag(l->sink, l->file, t->pos.line, t->pos.col,
                               "org '%s' declares more than %u agent types in its files", o->name,
                               COFFER_POLICY_AGENT_TYPES_MAX);
            break;
        }
        all[n++] = *t;
    }
    o->agent_types = all;
    o->n_agent_types = n;
}

static void merge_projects(struct loader *l, struct coffer_policy_org *o)
{
    struct coffer_policy_project *all;
    size_t n = o->n_projects;

    all = coffer_arena_grow(l->a, o->projects, o->n_projects, o->n_projects + l->org.n_projects,
                            sizeof(*all));
    if (all == NULL) {
        l->err = coffer_err_set(COFFER_E_NOMEM, "%s: the policy needs more memory", l->file);
        return;
    }
    for (size_t i = 0; i < l->org.n_projects; i++) {
        const struct coffer_policy_project *p = &l->org.projects[i];
        bool dup = false;

        for (size_t j = 0; j < o->n_projects && !dup; j++) {
            if (strcmp(all[j].name, p->name) == 0) {
                already(l, p->pos, "project", p->name, all[j].pos);
                dup = true;
            }
        }
        if (dup) {
            continue;
        }
        if (n == COFFER_POLICY_PROJECTS_MAX) {
            coffer_policy_diag(l->sink, l->file, p->pos.line, p->pos.col,
                               "org '%s' declares more than %u projects in its files", o->name,
                               COFFER_POLICY_PROJECTS_MAX);
            break;
        }
        all[n++] = *p;
    }
    o->projects = all;
    o->n_projects = n;
}

static void merge(struct loader *l, const char *path, const char *sha256)
{
    struct coffer_policy_org *o = org_for(l);
    struct coffer_policy_file *files;

    if (o == NULL) {
        return;
    }
    merge_agent_types(l, o);
    for (size_t t = 0; t < COFFER_TIER_COUNT; t++) {
        if (!l->org.tiers[t].declared) {
            continue;
        }
        if (o->tiers[t].declared) {
            already(l, l->org.tiers[t].pos, "tier", coffer_tier_str((enum coffer_tier)t),
                    o->tiers[t].pos);
            continue;
        }
        o->tiers[t] = l->org.tiers[t];
    }
    merge_projects(l, o);
    files = coffer_arena_grow(l->a, o->files, o->n_files, o->n_files + 1, sizeof(*files));
    if (files == NULL) {
        l->err = coffer_err_set(COFFER_E_NOMEM, "%s: the policy needs more memory", l->file);
        return;
    }
    files[o->n_files].path = path;
    snprintf(files[o->n_files].sha256, sizeof(files[o->n_files].sha256), "%s", sha256);
    o->files = files;
    o->n_files++;
}

/* ---- Entry points ---- */

/* The name as diagnostics print it: unchanged unless it holds control characters. */
static const char *display_name(struct coffer_arena *a, const char *name)
{
    struct coffer_policy_quoted q;

    if (coffer_text_ok(name, strlen(name), SIZE_MAX)) {
        return coffer_arena_strdup(a, name);
    }
    q = coffer_policy_quote(name, strlen(name));
    return coffer_arena_strdup(a, q.s);
}

static enum coffer_err sha256_hex(const unsigned char *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        return coffer_err_set(COFFER_E_CRYPTO, "computing the SHA-256 of a policy file");
    }
    coffer_hex(md, mdlen, out);
    return COFFER_OK;
}

/* size is what the file holds, which may be more than the len bytes read. */
static enum coffer_err add_bytes(struct coffer_policy *p, const char *name,
                                 const unsigned char *data, size_t len, size_t size,
                                 struct coffer_policy_diags *d)
{
    struct coffer_policy_state *st = coffer_policy_state(p);
    struct coffer_policy_sink sink = {.d = d};
    struct loader l = {.st = st, .a = p->arena, .sink = &sink};
    struct coffer_arena *scratch = NULL;
    struct coffer_ynode *root = NULL;
    const char *path;
    char sha[65];
    enum coffer_err r;

    if (st->finished) {
        return coffer_err_set(COFFER_E_STATE, "the policy is finished; no file can be added");
    }
    l.file = display_name(p->arena, name);
    path = coffer_arena_strdup(p->arena, name);
    if (l.file == NULL || path == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "the policy needs more memory");
    }
    if (st->n_files >= COFFER_POLICY_FILES_MAX) {
        coffer_policy_diag(&sink, l.file, 1, 1, "more than %u policy files in one load",
                           COFFER_POLICY_FILES_MAX);
        return COFFER_E_INVALID;
    }
    st->n_files++;
    if (size > COFFER_POLICY_FILE_MAX) {
        coffer_policy_diag(&sink, l.file, 1, 1, "file is %zu bytes; the limit is %u", size,
                           COFFER_POLICY_FILE_MAX);
        return COFFER_E_INVALID;
    }
    r = sha256_hex(data, len, sha);
    if (r != COFFER_OK) {
        return r;
    }
    /* The tree is only needed while this file is read: it gets an arena of its own. */
    r = coffer_arena_new(0, &scratch);
    if (r != COFFER_OK) {
        return r;
    }
    r = coffer_policy_yaml_parse(scratch, l.file, data, len, &sink, &root);
    if (r != COFFER_OK) {
        goto out;
    }
    load_root(&l, root);
    if (l.err == COFFER_OK && l.org.name != NULL) {
        merge(&l, path, sha);
    }
    r = l.err;
out:
    coffer_arena_free(&scratch);
    if (r == COFFER_OK && sink.nomem) {
        r = coffer_err_set(COFFER_E_NOMEM, "recording the problems of %s", l.file);
    }
    if (r == COFFER_OK && sink.count > 0) {
        r = coffer_err_set(COFFER_E_INVALID, "%s has %zu problem%s", l.file, sink.count,
                           sink.count == 1 ? "" : "s");
    }
    return r;
}

enum coffer_err coffer_policy_add_buffer(struct coffer_policy *p, const char *name,
                                         const void *data, size_t len,
                                         struct coffer_policy_diags *d)
{
    if (p == NULL || (data == NULL && len > 0)) {
        return coffer_err_set(COFFER_E_INVALID, "adding a policy buffer: no policy or no data");
    }
    return add_bytes(p, name != NULL ? name : "<input>", data != NULL ? data : "", len, len, d);
}

static enum coffer_err read_all(int fd, unsigned char *buf, size_t cap, size_t *n)
{
    *n = 0;
    while (*n < cap) {
        ssize_t got = read(fd, buf + *n, cap - *n);

        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            return COFFER_E_IO;
        }
        if (got == 0) {
            break;
        }
        *n += (size_t)got;
    }
    return COFFER_OK;
}

enum coffer_err coffer_policy_add_file(struct coffer_policy *p, const char *path,
                                       struct coffer_policy_diags *d)
{
    const size_t cap = (size_t)COFFER_POLICY_FILE_MAX + 1;
    unsigned char *buf = NULL;
    struct stat sb;
    size_t n = 0;
    size_t size;
    int fd = -1;
    enum coffer_err r;

    if (p == NULL || path == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "adding a policy file: no policy or no path");
    }
    /*
     * Symbolic links are followed (repositories use them); O_NONBLOCK keeps a
     * FIFO from blocking the open before fstat can refuse it.
     */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        r = coffer_err_set(COFFER_E_IO, "opening policy file %s: %s",
                           coffer_policy_quote(path, strlen(path)).s, strerror(errno));
        goto out;
    }
    if (fstat(fd, &sb) != 0) {
        r = coffer_err_set(COFFER_E_IO, "reading policy file %s: %s",
                           coffer_policy_quote(path, strlen(path)).s, strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        r = coffer_err_set(COFFER_E_IO, "policy file %s is not a regular file",
                           coffer_policy_quote(path, strlen(path)).s);
        goto out;
    }
    buf = coffer_calloc(cap, 1);
    if (buf == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "allocating room to read a policy file");
        goto out;
    }
    if (read_all(fd, buf, cap, &n) != COFFER_OK) {
        r = coffer_err_set(COFFER_E_IO, "reading policy file %s: %s",
                           coffer_policy_quote(path, strlen(path)).s, strerror(errno));
        goto out;
    }
    size = n;
    if (n == cap && sb.st_size > 0 && (uintmax_t)sb.st_size > (uintmax_t)n) {
        size = (size_t)sb.st_size;
    }
    r = add_bytes(p, path, buf, n, size, d);
out:
    if (fd >= 0) {
        (void)close(fd);
    }
    coffer_free(buf);
    return r;
}
