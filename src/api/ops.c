/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operations behind the API, independent of HTTP: an agent's access,
 * and an admin's put, revoke and phase change. Each runs in one database
 * transaction that reads afresh what it decides on, makes its change and
 * writes its audit event, so the effect and its event commit together or
 * not at all.
 *
 * Every lookup is by the principal's own org, never by the org a request
 * names: a request for another org's credential is refused exactly like one
 * for a credential that does not exist. Values unsealed for an access are
 * handed to the caller only after the commit of their event, and are wiped
 * on every other path. This file must never put a value into an event, an
 * error detail or a log line, and never echo input that has not been
 * checked. The checks of a caller, the audit event and put's core are
 * shared with the other operation files through ops_int.h.
 */
#include "coffer/ops.h"

#include "api/ops_int.h"

#include "coffer/log.h"
#include "coffer/mem.h"
#include "coffer/text.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define US_PER_S INT64_C(1000000)
#define DETAIL_MAX 1024
#define REASON_TEXT_MAX 1024

/* ---- Credential types ---------------------------------------------------------- */

/* A type and the key names a credential of it must hold (extra keys are allowed). */
struct cred_type {
    const char *name;
    const char *required[2];
};

static const struct cred_type cred_types[] = {
    {"api_key", {"api_key", NULL}},
    {"oauth2", {"access_token", NULL}},
    {"basic_auth", {"username", "password"}},
    {"bearer_token", {"token", NULL}},
    {"certificate", {"certificate", "private_key"}},
    {"connection_string", {"connection_string", NULL}},
    {"custom", {NULL, NULL}},
};

static const struct cred_type *find_type(const char *type)
{
    if (type == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(cred_types) / sizeof(cred_types[0]); i++) {
        if (strcmp(cred_types[i].name, type) == 0) {
            return &cred_types[i];
        }
    }
    return NULL;
}

bool coffer_op_type_known(const char *type)
{
    return find_type(type) != NULL;
}

/* ---- Principals and names -------------------------------------------------------- */

bool ops_name_ok(const char *s)
{
    return s != NULL && coffer_policy_name_ok(s, strnlen(s, COFFER_POLICY_NAME_MAX + 1));
}

/* The name for an audit event: a name the request gave that is not a name is left out. */
static const char *name_or_null(const char *s)
{
    return ops_name_ok(s) ? s : NULL;
}

/* Every field of a principal ends inside its array, so it can be read as a string. */
static bool principal_terminated(const struct coffer_principal *p)
{
    return strnlen(p->trust_domain, sizeof(p->trust_domain)) < sizeof(p->trust_domain) &&
           strnlen(p->org, sizeof(p->org)) < sizeof(p->org) &&
           strnlen(p->agent_type, sizeof(p->agent_type)) < sizeof(p->agent_type) &&
           strnlen(p->instance, sizeof(p->instance)) < sizeof(p->instance) &&
           strnlen(p->admin, sizeof(p->admin)) < sizeof(p->admin);
}

bool ops_is_agent(const struct coffer_principal *who)
{
    return who != NULL && who->kind == COFFER_PRINCIPAL_AGENT && ops_name_ok(who->org) &&
           ops_name_ok(who->agent_type) && ops_name_ok(who->instance);
}

bool ops_is_admin_of(const struct coffer_principal *who, const char *org)
{
    return who != NULL && who->kind == COFFER_PRINCIPAL_ADMIN && ops_name_ok(who->org) &&
           ops_name_ok(who->admin) && org != NULL && strcmp(who->org, org) == 0;
}

enum coffer_err ops_check_call(const struct coffer_ops *o, const struct coffer_op_meta *m,
                               const void *args, const char *what)
{
    if (o == NULL || o->st == NULL || o->k == NULL || m == NULL || args == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "%s: missing context, request or arguments", what);
    }
    if (m->who != NULL && !principal_terminated(m->who)) {
        return coffer_err_set(COFFER_E_INVALID, "%s: malformed principal", what);
    }
    return COFFER_OK;
}

void ops_event_init(struct coffer_audit_event *e, const char *action,
                    const struct coffer_op_meta *m, const char *org, const char *project,
                    const char *credential)
{
    memset(e, 0, sizeof(*e));
    e->action = action;
    e->request_id = m->request_id;
    e->client_addr = m->client_addr;
    e->who = m->who;
    e->org = name_or_null(org);
    e->project = name_or_null(project);
    e->credential = name_or_null(credential);
}

/*
 * The answer to a principal that is not an admin of the org the request
 * names is the one for an org that does not exist, so that nobody learns
 * from it what another org holds; the attempt itself is audited.
 */
enum coffer_err ops_refuse(struct coffer_ops *o, const struct coffer_op_meta *m, const char *action,
                           const char *org, const char *project, const char *credential)
{
    struct coffer_audit_event e;
    int64_t id = 0;
    enum coffer_err r;

    ops_event_init(&e, action, m, org, project, credential);
    e.allowed = false;
    e.reason = coffer_err_str(COFFER_E_NOT_FOUND);
    if ((r = coffer_store_audit_insert(o->st, &e, &id)) != COFFER_OK) {
        return coffer_err_wrap(r, "%s refused", action);
    }
    return coffer_err_set(COFFER_E_NOT_FOUND, "no such org%s%s", e.org != NULL ? " " : "",
                          e.org != NULL ? e.org : "");
}

/* ---- access ------------------------------------------------------------------------ */

static void deny(struct coffer_authz_decision *d, enum coffer_authz_reason reason)
{
    d->reason = reason;
    d->allow = false;
    d->purpose_unexpected = false;
    d->grant = -1;
}

/*
 * The principal and purpose of an agent's access, and the lookup that loads
 * the rest. The load always uses the principal's org; when the request
 * names another org the credential it names was never looked up, so the
 * decision sees none (not_found). The load runs all the same, so that such
 * a request costs what any other does.
 */
static void agent_lookup(const struct coffer_principal *who, const struct coffer_op_access *a,
                         struct coffer_authz_input *in, struct coffer_store_access *acc,
                         struct coffer_store_access_req *q)
{
    in->principal.org = who->org;
    in->principal.agent_type = who->agent_type;
    in->principal.instance = who->instance;
    in->purpose = a->purpose;
    in->purpose_len = a->purpose != NULL ? a->purpose_len : 0;
    q->org = who->org;
    q->project = a->project;
    q->name = a->name;
    q->in = in;
    q->out = acc;
}

/* Decides an agent's access once its lookup is loaded. */
static void decide_loaded(const struct coffer_principal *who, const struct coffer_op_access *a,
                          struct coffer_authz_input *in, struct coffer_store_access *acc,
                          struct coffer_authz_decision *d)
{
    if (a->org == NULL || strcmp(a->org, who->org) != 0) {
        in->found = false;
        in->org = NULL;
        acc->found = false;
    }
    coffer_authz_decide(in, d);
}

/* One access of a batch: what phase 1 learnt, for phases 2 and 3. */
struct batch_item {
    struct coffer_authz_input in;
    struct coffer_store_access acc;
    struct coffer_authz_decision d;
    uint32_t org_key_version; /* the keys that opened an allowed read, for its event */
    uint32_t mk_version;
};

_Static_assert(COFFER_OP_BATCH_MAX <= COFFER_STORE_BATCH_MAX,
               "a batch is one lookup and one insert");

enum coffer_err coffer_op_access_batch(struct coffer_ops *o, const struct coffer_op_meta *m,
                                       struct coffer_op_access *a, size_t n)
{
    struct batch_item items[COFFER_OP_BATCH_MAX];
    struct coffer_keys_read_req reqs[COFFER_OP_BATCH_MAX];
    struct coffer_store_access_req lookups[COFFER_OP_BATCH_MAX];
    struct coffer_audit_event events[COFFER_OP_BATCH_MAX];
    size_t idx[COFFER_OP_BATCH_MAX];
    struct coffer_arena *arena = NULL;
    size_t nr = 0;
    size_t nl = 0;
    size_t ne = 0;
    enum coffer_err r;

    if (n > COFFER_OP_BATCH_MAX || o == NULL || o->st == NULL) {
        return coffer_err_set(COFFER_E_STATE, "access batch: bad call");
    }
    if ((r = coffer_arena_new(0, &arena)) != COFFER_OK) {
        return r;
    }
    /* 1. Load every agent's access in one query (grants, phase, lifetime are read afresh). */
    for (size_t i = 0; i < n; i++) {
        struct batch_item *it = &items[i];

        memset(it, 0, sizeof(*it));
        a[i].keys = NULL;
        a[i].expired_keys = NULL;
        a[i].version = 0;
        a[i].refresh_due = false;
        if (!a[i].no_refresh) {
            memset(&a[i].refresh, 0, sizeof(a[i].refresh));
        }
        deny(&a[i].decision, COFFER_AUTHZ_NO_GRANT);
        deny(&it->d, COFFER_AUTHZ_NO_GRANT);
    }
    for (size_t i = 0; i < n; i++) {
        if (ops_check_call(o, &m[i], &a[i], "access") != COFFER_OK) {
            r = coffer_err_set(COFFER_E_INVALID, "access batch: item %zu is malformed", i);
            goto out;
        }
        if (ops_is_agent(m[i].who)) {
            agent_lookup(m[i].who, &a[i], &items[i].in, &items[i].acc, &lookups[nl++]);
        }
    }
    if (nl > 0 && (r = coffer_store_access_load_many(o->st, lookups, nl, arena)) != COFFER_OK) {
        goto out;
    }
    /* ... and decide each. */
    for (size_t i = 0; i < n; i++) {
        struct batch_item *it = &items[i];

        if (ops_is_agent(m[i].who)) {
            decide_loaded(m[i].who, &a[i], &it->in, &it->acc, &it->d);
        }
        if (it->d.allow && !a[i].no_refresh && ops_oauth2_due(&it->acc, it->in.now_us)) {
            /* Refreshed and decided again outside this batch; nothing is written for it here. */
            a[i].refresh_due = true;
            continue;
        }
        if (it->d.allow) {
            memset(&reqs[nr], 0, sizeof(reqs[nr]));
            reqs[nr].org_id = &it->acc.org_id;
            reqs[nr].project_id = &it->acc.project_id;
            reqs[nr].name = a[i].name;
            reqs[nr].version = it->acc.current_version;
            idx[nr++] = i;
        }
    }
    /* 2. Fetch and unseal every allowed one: one round trip for all rows. */
    if (nr > 0 && (r = coffer_keys_cred_read_many(o->k, o->st, reqs, nr)) != COFFER_OK) {
        goto out;
    }
    for (size_t j = 0; j < nr; j++) {
        struct batch_item *it = &items[idx[j]];

        if (reqs[j].result == COFFER_OK) {
            a[idx[j]].keys = reqs[j].keys;
            a[idx[j]].version = reqs[j].info.version;
            items[idx[j]].org_key_version = reqs[j].info.opened_org_key_version;
            items[idx[j]].mk_version = reqs[j].info.opened_mk_version;
            reqs[j].keys = NULL;
            if ((r = ops_key_expiry_withhold(&it->acc, &a[idx[j]].keys, &a[idx[j]].expired_keys)) !=
                    COFFER_OK ||
                (r = ops_oauth2_withhold(&it->acc, &a[idx[j]].keys)) != COFFER_OK) {
                goto out;
            }
            if (coffer_keyset_count(a[idx[j]].keys) == 0 ||
                (it->acc.oauth2_provider != NULL &&
                 coffer_keyset_get(a[idx[j]].keys, "access_token") == NULL)) {
                /* The access token has expired (its refresh failed): nothing worth answering. */
                coffer_keyset_free(&a[idx[j]].keys);
                deny(&it->d, COFFER_AUTHZ_EXPIRED);
            }
            continue;
        }
        coffer_authz_after_unseal(&it->d, reqs[j].result);
        if (it->d.allow) {
            r = reqs[j].result;
            goto out;
        }
        coffer_warn("ops", "credential %s/%s/%s could not be unsealed (%s)", a[idx[j]].org,
                    a[idx[j]].project, a[idx[j]].name, coffer_authz_reason_str(it->d.reason));
    }
    /* 3. Audit every decision with one statement. */
    for (size_t i = 0; i < n; i++) {
        struct batch_item *it = &items[i];
        struct coffer_audit_event *ev = &events[ne];

        if (a[i].refresh_due) {
            continue;
        }
        ops_event_init(ev, COFFER_AUDIT_ACCESS, &m[i], a[i].org, a[i].project, a[i].name);
        if (a[i].expired_keys != NULL) {
            char *detail = coffer_arena_alloc(arena, DETAIL_MAX, 1);

            if (detail == NULL) {
                r = coffer_err_set(COFFER_E_NOMEM, "access batch: an event's detail");
                goto out;
            }
            ops_key_expiry_detail(a[i].expired_keys, detail, DETAIL_MAX);
            ev->detail = detail;
        }
        ev->allowed = it->d.allow;
        ev->reason = coffer_authz_reason_str(it->d.reason);
        if (!it->d.allow && it->d.reason == COFFER_AUTHZ_EXPIRED && a[i].refresh.failed) {
            ev->reason = "refresh_failed"; /* expired because the refresh it needed failed */
        }
        ev->purpose_unexpected = it->d.purpose_unexpected;
        ev->version = it->d.allow ? a[i].version : (it->acc.found ? it->acc.current_version : 0);
        ev->phase = it->acc.found ? it->in.phase : NULL;
        if (it->d.allow) {
            ev->org_key_version = it->org_key_version;
            ev->mk_version = it->mk_version;
        }
        if (a[i].purpose != NULL && coffer_authz_purpose_ok(a[i].purpose, a[i].purpose_len)) {
            ev->purpose = a[i].purpose;
            ev->purpose_len = a[i].purpose_len;
        }
        ne++;
    }
    if (ne > 0 && (r = coffer_store_audit_insert_many(o->st, events, ne)) != COFFER_OK) {
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (!a[i].refresh_due) {
            a[i].decision = items[i].d;
        }
    }
    r = COFFER_OK;
out:
    if (r != COFFER_OK) {
        for (size_t j = 0; j < nr; j++) {
            coffer_keyset_free(&reqs[j].keys);
        }
        for (size_t i = 0; i < n; i++) {
            coffer_keyset_free(&a[i].keys);
            coffer_free(a[i].expired_keys);
            a[i].expired_keys = NULL;
            a[i].version = 0;
            deny(&a[i].decision, COFFER_AUTHZ_NO_GRANT);
        }
    }
    coffer_arena_free(&arena);
    return r;
}

/* One access in a transaction of its own: a batch of one, as the server's batches decide. */
static enum coffer_err access_once(struct coffer_ops *o, const struct coffer_op_meta *m,
                                   struct coffer_op_access *a)
{
    enum coffer_err r;

    if ((r = coffer_store_begin(o->st)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_op_access_batch(o, m, a, 1)) != COFFER_OK) {
        coffer_store_rollback(o->st);
        return r;
    }
    if ((r = coffer_store_commit(o->st)) != COFFER_OK) {
        coffer_keyset_free(&a->keys);
        coffer_free(a->expired_keys);
        a->expired_keys = NULL;
        a->version = 0;
        deny(&a->decision, COFFER_AUTHZ_NO_GRANT);
    }
    return r;
}

enum coffer_err coffer_op_access(struct coffer_ops *o, const struct coffer_op_meta *m,
                                 struct coffer_op_access *a)
{
    enum coffer_err r;

    if (a != NULL) {
        a->keys = NULL;
        a->expired_keys = NULL;
        a->version = 0;
        a->no_refresh = false;
        a->refresh_due = false;
        memset(&a->refresh, 0, sizeof(a->refresh));
        deny(&a->decision, COFFER_AUTHZ_NO_GRANT);
    }
    if ((r = ops_check_call(o, m, a, "access")) != COFFER_OK ||
        (r = access_once(o, m, a)) != COFFER_OK || !a->refresh_due) {
        return r;
    }
    /*
     * Nothing was written for it: refresh (or find it refreshed by another
     * server), then decide again without refreshing. A failed refresh is
     * in a->refresh; the second decision answers the current version while
     * its access token is valid and refuses it (refresh_failed) after.
     */
    if ((r = coffer_op_oauth2_refresh(o, m, a->project, a->name, &a->refresh)) != COFFER_OK) {
        return r;
    }
    a->no_refresh = true;
    r = access_once(o, m, a);
    a->no_refresh = false;
    return r;
}

/* ---- put --------------------------------------------------------------------------- */

static bool listed(const char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (list[i] != NULL && strcmp(list[i], name) == 0) {
            return true;
        }
    }
    return false;
}

static bool same_grantee(const struct coffer_policy_grant *x, const struct coffer_policy_grant *y)
{
    if (strcmp(x->agent_type, y->agent_type) != 0) {
        return false;
    }
    if (x->instance == NULL || y->instance == NULL) {
        return x->instance == y->instance;
    }
    return strcmp(x->instance, y->instance) == 0;
}

enum coffer_err ops_check_grants(const struct coffer_policy_grant *grants, size_t n,
                                 const char *what)
{
    if (n > COFFER_POLICY_GRANTS_MAX || (n > 0 && grants == NULL)) {
        return coffer_err_set(COFFER_E_INVALID, "%zu %ss; at most %d", n, what,
                              COFFER_POLICY_GRANTS_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        const struct coffer_policy_grant *g = &grants[i];

        if (!ops_name_ok(g->agent_type)) {
            return coffer_err_set(COFFER_E_INVALID, "%s %zu: the agent type is not a name", what,
                                  i);
        }
        if (g->instance != NULL && !ops_name_ok(g->instance)) {
            return coffer_err_set(COFFER_E_INVALID, "%s %zu: the instance is not a name", what, i);
        }
        if (g->n_phases > COFFER_POLICY_PHASES_MAX || (g->n_phases > 0 && g->phases == NULL)) {
            return coffer_err_set(COFFER_E_INVALID, "%s %zu: %zu phases; at most %d", what, i,
                                  g->n_phases, COFFER_POLICY_PHASES_MAX);
        }
        for (size_t j = 0; j < g->n_phases; j++) {
            if (!ops_name_ok(g->phases[j])) {
                return coffer_err_set(COFFER_E_INVALID, "%s %zu: phase %zu is not a name", what, i,
                                      j);
            }
            if (listed((const char *const *)g->phases, j, g->phases[j])) {
                return coffer_err_set(COFFER_E_INVALID, "%s %zu: phase %s is listed twice", what, i,
                                      g->phases[j]);
            }
        }
        for (size_t k = 0; k < i; k++) {
            if (same_grantee(&grants[k], g)) {
                return coffer_err_set(COFFER_E_INVALID,
                                      "%ss %zu and %zu name the same agent type and instance", what,
                                      k, i);
            }
        }
    }
    return COFFER_OK;
}

static enum coffer_err check_keys(const struct coffer_op_put *p, const struct cred_type *t)
{
    size_t n = p->keys != NULL ? coffer_keyset_count(p->keys) : 0;

    if (n == 0) {
        return coffer_err_set(COFFER_E_INVALID, "a credential needs at least one key");
    }
    if (n > COFFER_KEYS_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "%zu keys; at most %d", n, COFFER_KEYS_MAX);
    }
    for (size_t i = 0; i < sizeof(t->required) / sizeof(t->required[0]); i++) {
        if (t->required[i] != NULL && coffer_keyset_get(p->keys, t->required[i]) == NULL) {
            return coffer_err_set(COFFER_E_INVALID, "a %s credential needs a key named %s", t->name,
                                  t->required[i]);
        }
    }
    return COFFER_OK;
}

/* The checks that need nothing but the request. */
static enum coffer_err check_put(const struct coffer_op_put *p, enum coffer_tier *tier)
{
    const struct cred_type *t = find_type(p->type);
    enum coffer_err r;

    if (!ops_name_ok(p->project) || !ops_name_ok(p->name)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "project and credential names must match ^[a-z0-9][a-z0-9_-]{0,62}$");
    }
    if (t == NULL) {
        return coffer_err_set(COFFER_E_INVALID,
                              "unknown credential type; one of api_key, oauth2, basic_auth, "
                              "bearer_token, certificate, connection_string, custom");
    }
    if (p->tier == NULL || !coffer_tier_parse(p->tier, strnlen(p->tier, 16), tier)) {
        return coffer_err_set(COFFER_E_INVALID, "tier must be low, medium, high or critical");
    }
    if ((r = check_keys(p, t)) != COFFER_OK) {
        return r;
    }
    if (p->ttl_s != 0 && p->expires_at_us != 0) {
        return coffer_err_set(COFFER_E_INVALID, "give a ttl or an expiry time, not both");
    }
    if (p->ttl_s != 0 && p->ttl_s != COFFER_TTL_NEVER &&
        (p->ttl_s < 1 || p->ttl_s > COFFER_TTL_FINITE_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "ttl must be never or 1 to %" PRId64 " seconds, not %" PRId64,
                              COFFER_TTL_FINITE_MAX, p->ttl_s);
    }
    if (p->expires_at_us < 0) {
        return coffer_err_set(COFFER_E_INVALID, "expiry time before 1970");
    }
    if (p->description != NULL &&
        !coffer_text_ok(p->description, strnlen(p->description, COFFER_POLICY_DESC_MAX + 1),
                        COFFER_POLICY_DESC_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "description must be 1 to %u bytes of UTF-8 without control "
                              "characters",
                              COFFER_POLICY_DESC_MAX);
    }
    if (p->expire_on_phase_end != NULL && !ops_name_ok(p->expire_on_phase_end)) {
        return coffer_err_set(COFFER_E_INVALID, "expire_on_phase_end is not a name");
    }
    if ((r = ops_key_expiry_check(p)) != COFFER_OK || (r = ops_oauth2_put_check(p)) != COFFER_OK) {
        return r;
    }
    return ops_check_grants(p->grants, p->n_grants, "grant");
}

const struct coffer_policy_project *ops_find_project(const struct coffer_policy_org *pol,
                                                     const char *name)
{
    for (size_t i = 0; i < pol->n_projects; i++) {
        if (strcmp(pol->projects[i].name, name) == 0) {
            return &pol->projects[i];
        }
    }
    return NULL;
}

/* Phases and members come from the policy in force; a project it does not declare has none. */
enum coffer_err ops_grants_in_policy(const struct coffer_policy_grant *grants, size_t n,
                                     const char *what, const char *project,
                                     const struct coffer_policy_project *pp)
{
    const char *const *phases = pp != NULL ? (const char *const *)pp->phases : NULL;
    const char *const *members = pp != NULL ? (const char *const *)pp->members : NULL;
    size_t n_phases = pp != NULL ? pp->n_phases : 0;
    size_t n_members = pp != NULL ? pp->n_members : 0;

    for (size_t i = 0; i < n; i++) {
        const struct coffer_policy_grant *g = &grants[i];

        if (!listed(members, n_members, g->agent_type)) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "%s %zu: agent type %s is not a member of project %s in the "
                                  "policy in force",
                                  what, i, g->agent_type, project);
        }
        for (size_t j = 0; j < g->n_phases; j++) {
            if (!listed(phases, n_phases, g->phases[j])) {
                return coffer_err_set(COFFER_E_INVALID,
                                      "%s %zu: project %s has no phase %s in the policy in force",
                                      what, i, project, g->phases[j]);
            }
        }
    }
    return COFFER_OK;
}

static enum coffer_err check_against_policy(const struct coffer_op_put *p,
                                            const struct coffer_policy_project *pp)
{
    const char *const *phases = pp != NULL ? (const char *const *)pp->phases : NULL;
    size_t n_phases = pp != NULL ? pp->n_phases : 0;

    if (p->expire_on_phase_end != NULL && !listed(phases, n_phases, p->expire_on_phase_end)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "expire_on_phase_end: project %s has no phase %s in the policy in "
                              "force",
                              p->project, p->expire_on_phase_end);
    }
    return ops_grants_in_policy(p->grants, p->n_grants, "grant", p->project, pp);
}

/* The longest lifetime of a tier: the org's max_ttl, never beyond the hard maximum. */
static int64_t tier_max(const struct coffer_policy_tier *limits, enum coffer_tier tier)
{
    int64_t hard = coffer_tier_hard_max(tier);
    int64_t max = limits->max_ttl;

    if (hard != COFFER_TTL_NEVER && (max == COFFER_TTL_NEVER || max > hard)) {
        return hard;
    }
    return max;
}

static enum coffer_err over_max(const char *what, enum coffer_tier tier, int64_t max)
{
    char text[24];

    coffer_policy_ttl_format(max, text);
    return coffer_err_set(COFFER_E_INVALID, "%s exceeds the max_ttl of tier %s, %s", what,
                          coffer_tier_str(tier), text);
}

/*
 * The expiry of a version stored at issued_us (the database's time of the
 * write, the same instant the access decision counts the tier's maximum
 * from): the ttl or expiry time given, else the tier's default. No expiry
 * only when the tier's maximum is never.
 */
static enum coffer_err lifetime(const struct coffer_op_put *p, enum coffer_tier tier,
                                const struct coffer_policy_tier *limits, int64_t issued_us,
                                int64_t *expires_us)
{
    int64_t max = tier_max(limits, tier);
    int64_t ttl = p->ttl_s;

    if (p->expires_at_us != 0) {
        if (p->expires_at_us <= issued_us) {
            return coffer_err_set(COFFER_E_INVALID, "the expiry time is not in the future");
        }
        if (max != COFFER_TTL_NEVER && p->expires_at_us - issued_us > max * US_PER_S) {
            return over_max("the expiry time", tier, max);
        }
        *expires_us = p->expires_at_us;
        return COFFER_OK;
    }
    if (ttl == 0) {
        ttl = limits->default_ttl;
        if (ttl == COFFER_TTL_NEVER || (max != COFFER_TTL_NEVER && ttl > max)) {
            ttl = max;
        }
    }
    if (ttl == COFFER_TTL_NEVER) {
        if (max != COFFER_TTL_NEVER) {
            return over_max("never", tier, max);
        }
        *expires_us = COFFER_AUTHZ_NO_EXPIRY;
        return COFFER_OK;
    }
    if (max != COFFER_TTL_NEVER && ttl > max) {
        return over_max("the ttl", tier, max);
    }
    *expires_us = issued_us + ttl * US_PER_S;
    return COFFER_OK;
}

/* What the event of a stored version says: its type, tier, keys, lifetime and grants. */
static void put_detail(const struct coffer_op_put *p, int64_t issued_us, int64_t expires_us,
                       char *out, size_t cap)
{
    size_t n_keys = coffer_keyset_count(p->keys);
    char ttl[24];
    char life[40] = "never expires";

    if (expires_us != COFFER_AUTHZ_NO_EXPIRY) {
        int64_t s = (expires_us - issued_us) / US_PER_S;

        if (s >= 1) {
            coffer_policy_ttl_format(s, ttl);
        } else {
            (void)snprintf(ttl, sizeof(ttl), "under 1s");
        }
        (void)snprintf(life, sizeof(life), "expires in %s", ttl);
    }
    (void)snprintf(out, cap, "type %s, tier %s, %zu key%s, %zu grant%s, %s%s%s", p->type, p->tier,
                   n_keys, n_keys == 1 ? "" : "s", p->n_grants, p->n_grants == 1 ? "" : "s", life,
                   p->expire_on_phase_end != NULL ? " or at the end of phase " : "",
                   p->expire_on_phase_end != NULL ? p->expire_on_phase_end : "");
    if (p->n_key_expiry > 0) {
        size_t used = strnlen(out, cap);

        (void)snprintf(out + used, cap - used, ", %zu key%s with an expiry of its own",
                       p->n_key_expiry, p->n_key_expiry == 1 ? "" : "s");
    }
}

struct put_ctx {
    struct coffer_org org;
    struct coffer_project proj;
    struct coffer_policy_org pol;
    enum coffer_tier tier;
    uint32_t version;
    int64_t expires_us;
    struct coffer_authz_input in;
    struct coffer_store_access acc;
};

/* Inside the open transaction: everything put writes, short of its event. */
static enum coffer_err put_write(struct coffer_ops *o, const struct coffer_op_meta *m,
                                 const struct coffer_op_put *p, struct coffer_arena *arena,
                                 struct put_ctx *c)
{
    struct coffer_keys_write w;
    enum coffer_err r;

    if ((r = coffer_store_org_by_name(o->st, m->who->org, &c->org)) != COFFER_OK ||
        (r = coffer_store_project_by_name(o->st, &c->org.id, p->project, &c->proj)) != COFFER_OK ||
        (r = coffer_store_policy_load(o->st, &c->org, arena, &c->pol)) != COFFER_OK ||
        (r = check_against_policy(p, ops_find_project(&c->pol, p->project))) != COFFER_OK) {
        return r;
    }
    w.org_id = &c->org.id;
    w.project_id = &c->proj.id;
    w.name = p->name;
    w.type = p->type;
    w.tier = p->tier;
    w.keys = p->keys;
    if ((r = coffer_keys_cred_write(o->k, o->st, &w, &c->version)) != COFFER_OK) {
        return r;
    }
    /* Read back in the same transaction: the credential's id, its state and the write's time. */
    if ((r = coffer_store_access_load(o->st, m->who->org, p->project, p->name, arena, &c->in,
                                      &c->acc)) != COFFER_OK) {
        return r;
    }
    if (!c->acc.found || c->acc.current_version != c->version) {
        return coffer_err_set(COFFER_E_NOT_FOUND, "project %s/%s is not in use", m->who->org,
                              p->project);
    }
    if (c->in.revoked) {
        return coffer_err_set(COFFER_E_STATE,
                              "credential %s/%s/%s is revoked; store it under another name",
                              m->who->org, p->project, p->name);
    }
    if ((r = lifetime(p, c->tier, &c->pol.tiers[c->tier], c->in.issued_us, &c->expires_us)) !=
            COFFER_OK ||
        (r = coffer_store_cred_set_lifetime(o->st, &c->org.id, &c->acc.credential_id, c->expires_us,
                                            p->expire_on_phase_end)) != COFFER_OK ||
        (r = ops_key_expiry_write(o, p, &c->org.id, &c->acc.credential_id, c->version,
                                  c->in.issued_us, c->expires_us)) != COFFER_OK) {
        return r;
    }
    if (p->description != NULL &&
        (r = coffer_store_cred_set_description(o->st, &c->org.id, &c->acc.credential_id,
                                               p->description)) != COFFER_OK) {
        return r;
    }
    return coffer_store_grants_add(o->st, &c->org.id, &c->proj.id, p->name, p->grants, p->n_grants);
}

enum coffer_err ops_put_in_tx(struct coffer_ops *o, const struct coffer_op_meta *m,
                              struct coffer_op_put *p)
{
    struct coffer_arena *arena = NULL;
    struct put_ctx c;
    struct coffer_audit_event e;
    char detail[DETAIL_MAX];
    int64_t id = 0;
    enum coffer_err r;

    if (!coffer_store_in_tx(o->st)) {
        return coffer_err_set(COFFER_E_STATE, "put: must run inside a transaction");
    }
    memset(&c, 0, sizeof(c));
    if ((r = check_put(p, &c.tier)) != COFFER_OK ||
        (r = coffer_arena_new(0, &arena)) != COFFER_OK) {
        return r;
    }
    if ((r = put_write(o, m, p, arena, &c)) != COFFER_OK ||
        (r = ops_oauth2_put_write(o, p, &c.org.id, &c.acc.credential_id, c.version)) != COFFER_OK) {
        goto out;
    }
    put_detail(p, c.in.issued_us, c.expires_us, detail, sizeof(detail));
    ops_event_init(&e, COFFER_AUDIT_CREATE, m, p->org, p->project, p->name);
    e.allowed = true;
    e.reason = coffer_err_str(COFFER_OK);
    e.version = c.version;
    e.phase = c.in.phase;
    e.detail = detail;
    if ((r = coffer_store_audit_insert(o->st, &e, &id)) != COFFER_OK) {
        goto out;
    }
    p->version = c.version;
    p->expires_us = c.expires_us;
out:
    coffer_arena_free(&arena);
    return r;
}

enum coffer_err coffer_op_put(struct coffer_ops *o, const struct coffer_op_meta *m,
                              struct coffer_op_put *p)
{
    enum coffer_tier tier;
    bool tx = false;
    enum coffer_err r;

    if (p != NULL) {
        p->version = 0;
        p->expires_us = 0;
    }
    if ((r = ops_check_call(o, m, p, "put")) != COFFER_OK) {
        return r;
    }
    if (!ops_is_admin_of(m->who, p->org)) {
        return ops_refuse(o, m, COFFER_AUDIT_CREATE, p->org, p->project, p->name);
    }
    /* A request that breaks a rule of its own is refused before the database is asked. */
    if ((r = check_put(p, &tier)) != COFFER_OK || (r = coffer_store_begin(o->st)) != COFFER_OK) {
        return r;
    }
    tx = true;
    if ((r = ops_put_in_tx(o, m, p)) != COFFER_OK) {
        goto out;
    }
    tx = false;
    r = coffer_store_commit(o->st);
out:
    if (tx) {
        coffer_store_rollback(o->st);
    }
    if (r != COFFER_OK) {
        p->version = 0;
        p->expires_us = 0;
    }
    return r;
}

/* ---- put, many at once ------------------------------------------------------------ */

/* An org of a batch of puts: looked up, with its policy, once for all of them. */
struct put_org {
    const char *name;
    bool ok; /* found, its policy loaded */
    struct coffer_org org;
    struct coffer_policy_org pol;
};

/* Whether the batch takes p as it is: only what needs no statement of its own. */
static bool put_batchable(struct coffer_ops *o, const struct coffer_op_meta *m,
                          const struct coffer_op_put *p, enum coffer_tier *tier)
{
    return ops_check_call(o, m, p, "put") == COFFER_OK && ops_is_admin_of(m->who, p->org) &&
           check_put(p, tier) == COFFER_OK && p->n_grants == 0 && p->n_key_expiry == 0 &&
           p->oauth2_provider == NULL && strcmp(p->type, "oauth2") != 0;
}

/* Whether put i names a credential an earlier taken put names. */
static bool put_repeated(const struct coffer_op_put *p, const bool *taken, size_t i)
{
    for (size_t k = 0; k < i; k++) {
        if (taken[k] && strcmp(p[k].org, p[i].org) == 0 &&
            strcmp(p[k].project, p[i].project) == 0 && strcmp(p[k].name, p[i].name) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * The org of a put, looked up and its policy loaded on first use. NULL with
 * *r COFFER_OK when the org is not found (that put alone answers why);
 * NULL with *r set on trouble that ends the batch.
 */
static struct put_org *put_org_of(struct coffer_ops *o, struct coffer_arena *arena,
                                  struct put_org *orgs, size_t *n_orgs, const char *name,
                                  enum coffer_err *r)
{
    struct put_org *po;

    *r = COFFER_OK;
    for (size_t i = 0; i < *n_orgs; i++) {
        if (strcmp(orgs[i].name, name) == 0) {
            return orgs[i].ok ? &orgs[i] : NULL;
        }
    }
    po = &orgs[(*n_orgs)++];
    memset(po, 0, sizeof(*po));
    po->name = name;
    *r = coffer_store_org_by_name(o->st, name, &po->org);
    if (*r == COFFER_OK) {
        *r = coffer_store_policy_load(o->st, &po->org, arena, &po->pol);
    }
    if (*r == COFFER_E_NOT_FOUND) {
        *r = COFFER_OK;
        return NULL;
    }
    po->ok = *r == COFFER_OK;
    return po->ok ? po : NULL;
}

/* The project of put i, found by an earlier put of the batch in the same project or looked up. */
static enum coffer_err put_project_of(struct coffer_ops *o, const struct coffer_org *org,
                                      const struct coffer_op_put *p, const bool *taken,
                                      const struct coffer_project *projs, size_t i,
                                      struct coffer_project *out)
{
    for (size_t k = 0; k < i; k++) {
        if (taken[k] && strcmp(p[k].org, p[i].org) == 0 &&
            strcmp(p[k].project, p[i].project) == 0) {
            *out = projs[k];
            return COFFER_OK;
        }
    }
    return coffer_store_project_by_name(o->st, &org->id, p[i].project, out);
}

/* Whether put x comes before put y in the order a batch writes them: org, project, name. */
static bool put_before(const struct coffer_op_put *x, const struct coffer_op_put *y)
{
    int c = strcmp(x->org, y->org);

    if (c == 0) {
        c = strcmp(x->project, y->project);
    }
    return c != 0 ? c < 0 : strcmp(x->name, y->name) < 0;
}

/*
 * Inside the open transaction: writes the taken puts, their lifetimes and
 * their events. A put found not to fit before anything is written leaves
 * the batch (taken[i] false); an error ends the whole batch.
 */
static enum coffer_err put_many_tx(struct coffer_ops *o, const struct coffer_op_meta *m,
                                   struct coffer_op_put *p, const enum coffer_tier *tier, size_t n,
                                   bool *taken, struct coffer_arena *arena)
{
    struct put_org orgs[COFFER_OP_BATCH_MAX];
    struct coffer_project projs[COFFER_OP_BATCH_MAX];
    struct coffer_keys_write w[COFFER_OP_BATCH_MAX];
    struct coffer_store_cred_next out[COFFER_OP_BATCH_MAX];
    struct coffer_audit_event ev[COFFER_OP_BATCH_MAX];
    struct put_org *of;
    size_t idx[COFFER_OP_BATCH_MAX];
    size_t n_orgs = 0;
    size_t k = 0;
    size_t pos;
    int64_t now_us = 0;
    enum coffer_err r;

    /* Every credential written in this transaction is issued at its time. */
    if ((r = coffer_store_tx_now(o->st, &now_us)) != COFFER_OK) {
        return r;
    }
    for (size_t i = 0; i < n; i++) {
        if (!taken[i]) {
            continue;
        }
        if ((of = put_org_of(o, arena, orgs, &n_orgs, p[i].org, &r)) == NULL) {
            if (r != COFFER_OK) {
                return r;
            }
            taken[i] = false;
            continue;
        }
        r = put_project_of(o, &of->org, p, taken, projs, i, &projs[i]);
        if (r == COFFER_OK) {
            r = check_against_policy(&p[i], ops_find_project(&of->pol, p[i].project));
        }
        if (r == COFFER_OK) {
            r = lifetime(&p[i], tier[i], &of->pol.tiers[tier[i]], now_us, &p[i].expires_us);
        }
        if (r == COFFER_E_NOT_FOUND || r == COFFER_E_INVALID) {
            taken[i] = false; /* answered alone, with its reason */
            p[i].expires_us = 0;
            continue;
        }
        if (r != COFFER_OK) {
            return r;
        }
        /*
         * In the order of (org, project, name), whatever the order of arrival: two
         * workers' batches then lock the credentials they share in the same order
         * and never wait for each other in a circle.
         */
        for (pos = k; pos > 0 && put_before(&p[i], &p[idx[pos - 1]]); pos--) {
            w[pos] = w[pos - 1];
            out[pos] = out[pos - 1];
            idx[pos] = idx[pos - 1];
        }
        w[pos] = (struct coffer_keys_write){&of->org.id, &projs[i].id, p[i].name,
                                            p[i].type,   p[i].tier,    p[i].keys};
        memset(&out[pos], 0, sizeof(out[pos]));
        out[pos].expires_us = p[i].expires_us;
        out[pos].expire_on_phase_end = p[i].expire_on_phase_end;
        out[pos].description = p[i].description;
        idx[pos] = i;
        k++;
    }
    if (k == 0) {
        return COFFER_OK;
    }
    if ((r = coffer_keys_cred_write_many(o->k, o->st, w, out, k)) != COFFER_OK) {
        return r;
    }
    for (size_t j = 0; j < k; j++) {
        size_t i = idx[j];
        char *detail = coffer_arena_alloc(arena, DETAIL_MAX, 1);

        if (detail == NULL) {
            return coffer_err_set(COFFER_E_NOMEM, "put: event detail");
        }
        if (out[j].issued_us != now_us) {
            return coffer_err_set(COFFER_E_INTEGRITY,
                                  "put: credential %s was not issued at its transaction's time",
                                  p[i].name);
        }
        p[i].version = out[j].out.current_version;
        put_detail(&p[i], now_us, p[i].expires_us, detail, DETAIL_MAX);
        ops_event_init(&ev[j], COFFER_AUDIT_CREATE, &m[i], p[i].org, p[i].project, p[i].name);
        ev[j].allowed = true;
        ev[j].reason = coffer_err_str(COFFER_OK);
        ev[j].version = p[i].version;
        ev[j].phase = out[j].phase[0] != '\0' ? coffer_arena_strdup(arena, out[j].phase) : NULL;
        ev[j].detail = detail;
    }
    return coffer_store_audit_insert_many(o->st, ev, k);
}

enum coffer_err coffer_op_put_many(struct coffer_ops *o, const struct coffer_op_meta *m,
                                   struct coffer_op_put *p, size_t n, bool *taken)
{
    enum coffer_tier tier[COFFER_OP_BATCH_MAX];
    struct coffer_arena *arena = NULL;
    size_t n_taken = 0;
    enum coffer_err r;

    if (taken == NULL || n > COFFER_OP_BATCH_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "put: a batch of at most %d puts",
                              COFFER_OP_BATCH_MAX);
    }
    memset(taken, 0, n * sizeof(*taken));
    if (o == NULL || m == NULL || p == NULL) {
        return COFFER_OK; /* nothing taken: each put answers for itself alone */
    }
    for (size_t i = 0; i < n; i++) {
        p[i].version = 0;
        p[i].expires_us = 0;
        taken[i] = put_batchable(o, &m[i], &p[i], &tier[i]) && !put_repeated(p, taken, i);
        n_taken += taken[i] ? 1 : 0;
    }
    coffer_err_clear();
    if (n_taken == 0 || coffer_arena_new(0, &arena) != COFFER_OK) {
        memset(taken, 0, n * sizeof(*taken));
        coffer_err_clear();
        return COFFER_OK;
    }
    r = coffer_store_begin(o->st);
    if (r == COFFER_OK && (r = put_many_tx(o, m, p, tier, n, taken, arena)) != COFFER_OK) {
        coffer_store_rollback(o->st);
    }
    coffer_arena_free(&arena);
    if (r != COFFER_OK) {
        /* Nothing was written: every put is answered alone, with its own reason. */
        memset(taken, 0, n * sizeof(*taken));
        for (size_t i = 0; i < n; i++) {
            p[i].version = 0;
            p[i].expires_us = 0;
        }
        coffer_err_clear();
        return COFFER_OK;
    }
    /* From here the outcome is the commit's, and the taken puts share its answer. */
    if ((r = coffer_store_commit(o->st)) != COFFER_OK) {
        for (size_t i = 0; i < n; i++) {
            p[i].version = 0;
            p[i].expires_us = 0;
        }
    }
    return r;
}

/* ---- revoke ------------------------------------------------------------------------ */

enum coffer_err coffer_op_revoke(struct coffer_ops *o, const struct coffer_op_meta *m,
                                 const struct coffer_op_revoke *rv)
{
    struct coffer_arena *arena = NULL;
    struct coffer_authz_input in;
    struct coffer_store_access acc;
    struct coffer_audit_event e;
    int64_t id = 0;
    bool tx = false;
    enum coffer_err r;

    if ((r = ops_check_call(o, m, rv, "revoke")) != COFFER_OK) {
        return r;
    }
    if (!ops_is_admin_of(m->who, rv->org)) {
        return ops_refuse(o, m, COFFER_AUDIT_REVOKE, rv->org, rv->project, rv->name);
    }
    if (!ops_name_ok(rv->project) || !ops_name_ok(rv->name)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "project and credential names must match ^[a-z0-9][a-z0-9_-]{0,62}$");
    }
    if (rv->reason == NULL ||
        !coffer_text_ok(rv->reason, strnlen(rv->reason, REASON_TEXT_MAX + 1), REASON_TEXT_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "a revocation reason is 1 to %d bytes of UTF-8 without control "
                              "characters",
                              REASON_TEXT_MAX);
    }
    memset(&in, 0, sizeof(in));
    if ((r = coffer_arena_new(0, &arena)) != COFFER_OK ||
        (r = coffer_store_begin(o->st)) != COFFER_OK) {
        goto out;
    }
    tx = true;
    if ((r = coffer_store_access_load(o->st, m->who->org, rv->project, rv->name, arena, &in,
                                      &acc)) != COFFER_OK) {
        goto out;
    }
    if (!acc.found) {
        r = coffer_err_set(COFFER_E_NOT_FOUND, "no credential %s/%s/%s", rv->org, rv->project,
                           rv->name);
        goto out;
    }
    if ((r = coffer_store_cred_revoke(o->st, &acc.org_id, &acc.credential_id, rv->reason)) !=
        COFFER_OK) {
        r = coffer_err_wrap(r, "%s/%s/%s", rv->org, rv->project, rv->name);
        goto out;
    }
    ops_event_init(&e, COFFER_AUDIT_REVOKE, m, rv->org, rv->project, rv->name);
    e.allowed = true;
    e.reason = coffer_err_str(COFFER_OK);
    e.version = acc.current_version;
    e.phase = in.phase;
    e.detail = rv->reason;
    if ((r = coffer_store_audit_insert(o->st, &e, &id)) != COFFER_OK) {
        goto out;
    }
    tx = false;
    r = coffer_store_commit(o->st);
out:
    if (tx) {
        coffer_store_rollback(o->st);
    }
    coffer_arena_free(&arena);
    return r;
}

/* ---- phase -------------------------------------------------------------------------- */

void ops_principal_text(const struct coffer_principal *who, char out[OPS_PRINCIPAL_TEXT_MAX])
{
    /* coffer_spiffe_format refuses what does not fit; the plain words below serve then. */
    if (who->trust_domain[0] != '\0' &&
        coffer_spiffe_format(who, out, OPS_PRINCIPAL_TEXT_MAX) == COFFER_OK) {
        return;
    }
    if (who->kind == COFFER_PRINCIPAL_AGENT) {
        (void)snprintf(out, OPS_PRINCIPAL_TEXT_MAX, "agent %s/%s of org %s", who->agent_type,
                       who->instance, who->org);
    } else {
        (void)snprintf(out, OPS_PRINCIPAL_TEXT_MAX, "admin %s of org %s", who->admin, who->org);
    }
}

/*
 * "from -> to" and the credentials that expired, cut at a name boundary
 * with a count of the rest when the list does not fit.
 */
static void phase_detail(const struct coffer_store_phase_result *res, char *out, size_t cap)
{
    /* Room kept for ", and 99999 more". */
    const size_t tail = 24;
    size_t used;
    size_t i;
    int n;

    n = snprintf(out, cap, "%s -> %s%s", res->from[0] != '\0' ? res->from : "(none)", res->to,
                 res->changed ? "" : " (unchanged)");
    used = n > 0 ? (size_t)n : 0;
    for (i = 0; i < res->n_expired; i++) {
        size_t need = strlen(res->expired[i]) + (i == 0 ? strlen("; expired: ") : 2);

        if (used + need + tail >= cap) {
            break;
        }
        n = snprintf(out + used, cap - used, "%s%s", i == 0 ? "; expired: " : ", ",
                     res->expired[i]);
        used += n > 0 ? (size_t)n : 0;
    }
    if (i < res->n_expired && used < cap) {
        (void)snprintf(out + used, cap - used, "%s%zu more", i == 0 ? "; expired: " : ", and ",
                       res->n_expired - i);
    }
}

enum coffer_err coffer_op_phase(struct coffer_ops *o, const struct coffer_op_meta *m,
                                const char *org, const char *project, const char *phase,
                                struct coffer_arena *a, struct coffer_store_phase_result *out)
{
    struct coffer_audit_event e;
    char by[OPS_PRINCIPAL_TEXT_MAX];
    char detail[DETAIL_MAX];
    int64_t id = 0;
    bool tx = false;
    enum coffer_err r;

    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if ((r = ops_check_call(o, m, out, "phase")) != COFFER_OK) {
        return r;
    }
    if (a == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "phase: no arena");
    }
    if (!ops_is_admin_of(m->who, org)) {
        return ops_refuse(o, m, COFFER_AUDIT_PHASE, org, project, NULL);
    }
    ops_principal_text(m->who, by);
    if ((r = coffer_store_begin(o->st)) != COFFER_OK) {
        return r;
    }
    tx = true;
    if ((r = coffer_store_project_phase(o->st, org, project, phase, by, a, out)) != COFFER_OK) {
        goto out;
    }
    phase_detail(out, detail, sizeof(detail));
    ops_event_init(&e, COFFER_AUDIT_PHASE, m, org, project, NULL);
    e.allowed = true;
    e.reason = coffer_err_str(COFFER_OK);
    e.phase = out->from[0] != '\0' ? out->from : NULL;
    e.detail = detail;
    if ((r = coffer_store_audit_insert(o->st, &e, &id)) != COFFER_OK) {
        goto out;
    }
    tx = false;
    r = coffer_store_commit(o->st);
out:
    if (tx) {
        coffer_store_rollback(o->st);
    }
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}
