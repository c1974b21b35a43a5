/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The metadata operation: what an admin or an agent may know about
 * credentials without their values (names, types, tiers, versions, times,
 * expiry, revocation, description and key names), in one transaction with
 * its "metadata" audit event, so that no read goes unrecorded.
 *
 * The lookup is always by the principal's own org. An agent that asks about
 * a credential it holds no grant for, one that does not exist, or another
 * org's is refused the same way, and the event keeps which it was. This
 * file must never read or return a value, and never echo input that is not
 * a checked name.
 */
#include "coffer/ops.h"

#include <stdio.h>
#include <string.h>

#define DETAIL_MAX 128

static bool name_ok(const char *s)
{
    return s != NULL && coffer_policy_name_ok(s, strnlen(s, COFFER_POLICY_NAME_MAX + 1));
}

static const char *name_or_null(const char *s)
{
    return name_ok(s) ? s : NULL;
}

/* Every field of the principal is a string within its array, and its names are names. */
static bool principal_ok(const struct coffer_principal *p)
{
    if (strnlen(p->trust_domain, sizeof(p->trust_domain)) >= sizeof(p->trust_domain) ||
        strnlen(p->org, sizeof(p->org)) >= sizeof(p->org) ||
        strnlen(p->agent_type, sizeof(p->agent_type)) >= sizeof(p->agent_type) ||
        strnlen(p->instance, sizeof(p->instance)) >= sizeof(p->instance) ||
        strnlen(p->admin, sizeof(p->admin)) >= sizeof(p->admin) || !name_ok(p->org)) {
        return false;
    }
    switch (p->kind) {
    case COFFER_PRINCIPAL_AGENT:
        return name_ok(p->agent_type) && name_ok(p->instance);
    case COFFER_PRINCIPAL_ADMIN:
        return name_ok(p->admin);
    default:
        return false;
    }
}

/* What the operation decided, for the event and the caller. */
struct verdict {
    bool allowed;
    const char *reason;  /* "ok", an authz reason code, or an error code */
    const char *missing; /* an admin's refusal: "org", "project" or "credential" */
    char detail[DETAIL_MAX];
};

static void refuse(struct verdict *v, const char *reason)
{
    v->allowed = false;
    v->reason = reason;
    v->detail[0] = '\0';
}

/* An admin of the org sees everything; otherwise nothing, as for an org that does not exist. */
static enum coffer_err decide_admin(struct coffer_ops *o, const struct coffer_principal *who,
                                    struct coffer_arena *a, struct coffer_op_metadata *q,
                                    struct verdict *v)
{
    enum coffer_err r;

    if (q->org == NULL || strcmp(q->org, who->org) != 0) {
        refuse(v, coffer_err_str(COFFER_E_NOT_FOUND));
        v->missing = "org";
        return COFFER_OK;
    }
    if ((r = coffer_store_meta_load(o->st, who->org, q->project, q->name, NULL, NULL, a,
                                    &q->list)) != COFFER_OK) {
        return r;
    }
    if (!q->list.project_found || (q->name != NULL && q->list.n == 0)) {
        refuse(v, coffer_err_str(COFFER_E_NOT_FOUND));
        v->missing = q->list.project_found ? "credential" : "project";
        return COFFER_OK;
    }
    v->allowed = true;
    v->reason = coffer_err_str(COFFER_OK);
    if (q->name == NULL) {
        (void)snprintf(v->detail, sizeof(v->detail), "listed %zu credential%s", q->list.n,
                       q->list.n == 1 ? "" : "s");
    }
    return COFFER_OK;
}

/* Keeps the items the agent holds a grant for, in order. */
static size_t keep_granted(struct coffer_store_meta_list *l)
{
    size_t kept = 0;

    for (size_t i = 0; i < l->n; i++) {
        if (l->items[i].granted) {
            l->items[kept++] = l->items[i];
        }
    }
    return kept;
}

/*
 * An agent sees what it holds a grant for. The load uses its own org even
 * when the request names another, so that such a request costs what any
 * other does; the answer is then a refusal whatever was found.
 */
static enum coffer_err decide_agent(struct coffer_ops *o, const struct coffer_principal *who,
                                    struct coffer_arena *a, struct coffer_op_metadata *q,
                                    struct verdict *v)
{
    const char *not_found = coffer_authz_reason_str(COFFER_AUTHZ_NOT_FOUND);
    size_t all;
    enum coffer_err r;

    if ((r = coffer_store_meta_load(o->st, who->org, q->project, q->name, who->agent_type,
                                    who->instance, a, &q->list)) != COFFER_OK) {
        return r;
    }
    if (q->org == NULL || strcmp(q->org, who->org) != 0 || !q->list.project_found) {
        refuse(v, not_found);
        return COFFER_OK;
    }
    if (q->name != NULL) {
        if (q->list.n == 0) {
            refuse(v, not_found);
        } else if (!q->list.items[0].granted) {
            refuse(v, coffer_authz_reason_str(COFFER_AUTHZ_NO_GRANT));
        } else {
            v->allowed = true;
            v->reason = coffer_err_str(COFFER_OK);
        }
        return COFFER_OK;
    }
    if (!q->list.member) {
        refuse(v, coffer_authz_reason_str(COFFER_AUTHZ_NOT_PROJECT_MEMBER));
        return COFFER_OK;
    }
    all = q->list.n;
    q->list.n = keep_granted(&q->list);
    v->allowed = true;
    v->reason = coffer_err_str(COFFER_OK);
    (void)snprintf(v->detail, sizeof(v->detail), "listed %zu of %zu credential%s", q->list.n, all,
                   all == 1 ? "" : "s");
    return COFFER_OK;
}

static enum coffer_err check_call(const struct coffer_ops *o, const struct coffer_op_meta *m,
                                  struct coffer_arena *a, const struct coffer_op_metadata *q)
{
    if (o == NULL || o->st == NULL || m == NULL || a == NULL || q == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "metadata: missing context, request or arguments");
    }
    if (m->who == NULL || !principal_ok(m->who)) {
        return coffer_err_set(COFFER_E_INVALID, "metadata: no or a malformed principal");
    }
    return COFFER_OK;
}

enum coffer_err coffer_op_metadata(struct coffer_ops *o, const struct coffer_op_meta *m,
                                   struct coffer_arena *a, struct coffer_op_metadata *q)
{
    struct coffer_audit_event e;
    struct verdict v;
    int64_t id = 0;
    bool tx = false;
    enum coffer_err r;

    if (q != NULL) {
        q->allowed = false;
        memset(&q->list, 0, sizeof(q->list));
    }
    if ((r = check_call(o, m, a, q)) != COFFER_OK) {
        return r;
    }
    memset(&v, 0, sizeof(v));
    if ((r = coffer_store_begin(o->st)) != COFFER_OK) {
        return r;
    }
    tx = true;
    r = m->who->kind == COFFER_PRINCIPAL_ADMIN ? decide_admin(o, m->who, a, q, &v)
                                               : decide_agent(o, m->who, a, q, &v);
    if (r != COFFER_OK) {
        goto out;
    }
    memset(&e, 0, sizeof(e));
    e.action = COFFER_AUDIT_METADATA;
    e.allowed = v.allowed;
    e.reason = v.reason;
    e.request_id = m->request_id;
    e.client_addr = m->client_addr;
    e.who = m->who;
    e.org = name_or_null(q->org);
    e.project = name_or_null(q->project);
    e.credential = name_or_null(q->name);
    e.version = v.allowed && q->name != NULL ? q->list.items[0].version : 0;
    /* The phase of the project asked about: unknown when the request named another org. */
    e.phase = q->org != NULL && strcmp(q->org, m->who->org) == 0 ? q->list.phase : NULL;
    e.detail = v.detail[0] != '\0' ? v.detail : NULL;
    if ((r = coffer_store_audit_insert(o->st, &e, &id)) != COFFER_OK) {
        goto out;
    }
    tx = false;
    if ((r = coffer_store_commit(o->st)) != COFFER_OK) {
        goto out;
    }
    if (v.missing != NULL) {
        r = coffer_err_set(COFFER_E_NOT_FOUND, "no such %s", v.missing);
        goto out;
    }
    q->allowed = v.allowed;
out:
    if (tx) {
        coffer_store_rollback(o->st);
    }
    if (q != NULL && !q->allowed) {
        memset(&q->list, 0, sizeof(q->list));
    }
    return r;
}
