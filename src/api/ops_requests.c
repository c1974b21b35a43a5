/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operations of the credential request flow and of standing approvals:
 * an agent files a request for a credential it lacks and polls it; an
 * admin of its org lists the pending ones and fulfils one (storing the
 * credential through put's own core, in the same transaction) or denies
 * it; an admin gives and revokes standing approvals of critical
 * credentials. Each runs in one transaction with its audit event, like the
 * operations of ops.c.
 *
 * Every lookup is by the principal's own org. An agent learns nothing from
 * a refusal (the caller answers permission_denied whatever the reason the
 * event keeps); an admin of another org is answered as if the org did not
 * exist. A request's purpose goes into the purpose field of its event,
 * never into a detail or a log line; keys handed to a fulfilment go only to
 * put's core and are never read here.
 */
#include "coffer/ops.h"

#include "api/ops_int.h"

#include "coffer/text.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define US_PER_S INT64_C(1000000)
#define DETAIL_MAX 1024

/* ---- Lookups and events ------------------------------------------------------------ */

static bool listed(const char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (list[i] != NULL && strcmp(list[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* A request or approval id given as text; false when it cannot name one. */
static bool parse_id(const char *s, struct coffer_uuid *out)
{
    if (s == NULL || strnlen(s, COFFER_UUID_STR_LEN) != COFFER_UUID_STR_LEN - 1) {
        return false;
    }
    if (coffer_uuid_parse(s, out) != COFFER_OK) {
        coffer_err_clear();
        return false;
    }
    return true;
}

/*
 * The org of the principal and its project called project. *found is false
 * (and COFFER_OK returned) when either does not exist.
 */
static enum coffer_err find_project(struct coffer_ops *o, const char *org, const char *project,
                                    struct coffer_org *org_out, struct coffer_project *proj_out,
                                    bool *found)
{
    enum coffer_err r;

    *found = false;
    if (!ops_name_ok(org) || !ops_name_ok(project)) {
        return COFFER_OK;
    }
    r = coffer_store_org_by_name(o->st, org, org_out);
    if (r == COFFER_OK) {
        r = coffer_store_project_by_name(o->st, &org_out->id, project, proj_out);
    }
    if (r == COFFER_E_NOT_FOUND) {
        coffer_err_clear();
        return COFFER_OK;
    }
    *found = r == COFFER_OK;
    return r;
}

/*
 * After the caller rolled back: audits a refusal for something that does
 * not exist (in a transaction of its own) and returns COFFER_E_NOT_FOUND.
 */
static enum coffer_err missing(struct coffer_ops *o, const struct coffer_op_meta *m,
                               const char *action, const char *org, const char *project,
                               const char *credential, const char *what)
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
    return coffer_err_set(COFFER_E_NOT_FOUND, "no such %s", what);
}

/* Writes the event and commits; on failure the transaction is rolled back. */
static enum coffer_err finish(struct coffer_ops *o, const struct coffer_audit_event *e)
{
    int64_t id = 0;
    enum coffer_err r;

    if ((r = coffer_store_audit_insert(o->st, e, &id)) != COFFER_OK) {
        coffer_store_rollback(o->st);
        return r;
    }
    return coffer_store_commit(o->st);
}

static void time_text(int64_t us, char out[32])
{
    time_t t = (time_t)(us / US_PER_S);
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        (void)snprintf(out, 32, "%" PRId64 "us", us);
    }
}

/* "request <id>: type T, tier X, urgency U, N suggested grants" */
static void request_detail(const struct coffer_store_request *q, const char *what, char *out,
                           size_t cap)
{
    char id[COFFER_UUID_STR_LEN];

    coffer_uuid_format(&q->id, id);
    (void)snprintf(out, cap, "request %s%s: type %s, tier %s, urgency %s, %zu suggested grant%s",
                   id, what, q->type, q->tier, q->urgency, q->n_grants,
                   q->n_grants == 1 ? "" : "s");
}

/* ---- Filing ------------------------------------------------------------------------- */

/* The checks that need nothing but the request. */
static enum coffer_err check_file(const struct coffer_op_request_file *r)
{
    enum coffer_tier tier;

    if (!ops_name_ok(r->project) || !ops_name_ok(r->name)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "project and credential names must match ^[a-z0-9][a-z0-9_-]{0,62}$");
    }
    if (!coffer_op_type_known(r->type)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "unknown credential type; one of api_key, oauth2, basic_auth, "
                              "bearer_token, certificate, connection_string, custom");
    }
    if (r->tier == NULL || !coffer_tier_parse(r->tier, strnlen(r->tier, 16), &tier)) {
        return coffer_err_set(COFFER_E_INVALID, "tier must be low, medium, high or critical");
    }
    if (r->purpose == NULL ||
        !coffer_text_ok(r->purpose, r->purpose_len, COFFER_REQUEST_PURPOSE_MAX) ||
        strnlen(r->purpose, r->purpose_len + 1) != r->purpose_len) {
        return coffer_err_set(COFFER_E_INVALID,
                              "a purpose is required: 1 to %d bytes of UTF-8 without control "
                              "characters",
                              COFFER_REQUEST_PURPOSE_MAX);
    }
    if (r->urgency != NULL && !coffer_request_urgency_ok(r->urgency)) {
        return coffer_err_set(COFFER_E_INVALID, "urgency must be low, normal or high");
    }
    if (r->description != NULL &&
        !coffer_text_ok(r->description, strnlen(r->description, COFFER_REQUEST_TEXT_MAX + 1),
                        COFFER_REQUEST_TEXT_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "a description is 1 to %d bytes of UTF-8 without control characters",
                              COFFER_REQUEST_TEXT_MAX);
    }
    return ops_check_grants(r->grants, r->n_grants, "suggested grant");
}

/*
 * Inside the open transaction: decides whether the agent may file in
 * r->project and files it. *reason is set when it may not.
 */
static enum coffer_err file_in_tx(struct coffer_ops *o, const struct coffer_principal *who,
                                  struct coffer_arena *a, struct coffer_op_request_file *r,
                                  enum coffer_authz_reason *reason)
{
    struct coffer_org org;
    struct coffer_project proj;
    struct coffer_policy_org pol;
    const struct coffer_policy_project *pp;
    struct coffer_store_request_new in;
    bool found = false;
    enum coffer_err e;

    *reason = COFFER_AUTHZ_NOT_FOUND;
    /* The lookup is by the agent's own org: another org's project is never read. */
    if (r->org == NULL || strcmp(r->org, who->org) != 0) {
        return COFFER_OK;
    }
    if ((e = find_project(o, who->org, r->project, &org, &proj, &found)) != COFFER_OK || !found) {
        return e;
    }
    memset(&pol, 0, sizeof(pol));
    if ((e = coffer_store_policy_load(o->st, &org, a, &pol)) != COFFER_OK) {
        return e;
    }
    pp = ops_find_project(&pol, r->project);
    if (pp == NULL || !listed((const char *const *)pp->members, pp->n_members, who->agent_type)) {
        *reason = COFFER_AUTHZ_NOT_PROJECT_MEMBER;
        return COFFER_OK;
    }
    if ((e = ops_grants_in_policy(r->grants, r->n_grants, "suggested grant", r->project, pp)) !=
        COFFER_OK) {
        return e;
    }
    memset(&in, 0, sizeof(in));
    in.org_id = &org.id;
    in.project_id = &proj.id;
    in.name = r->name;
    in.type = r->type;
    in.tier = r->tier;
    in.purpose = r->purpose;
    in.urgency = r->urgency != NULL ? r->urgency : "normal";
    in.description = r->description;
    in.grants = r->grants;
    in.n_grants = r->n_grants;
    in.trust_domain = who->trust_domain;
    in.agent_type = who->agent_type;
    in.instance = who->instance;
    if ((e = coffer_store_request_insert(o->st, &in, a, &r->req)) != COFFER_OK) {
        return e;
    }
    r->allowed = true;
    *reason = COFFER_AUTHZ_GRANTED;
    return COFFER_OK;
}

enum coffer_err coffer_op_request_file(struct coffer_ops *o, const struct coffer_op_meta *m,
                                       struct coffer_arena *a, struct coffer_op_request_file *r)
{
    struct coffer_audit_event e;
    enum coffer_authz_reason reason = COFFER_AUTHZ_NO_GRANT;
    char detail[DETAIL_MAX];
    bool tx = false;
    enum coffer_err rc;

    if (r != NULL) {
        r->allowed = false;
        r->reason = COFFER_AUTHZ_NO_GRANT;
        memset(&r->req, 0, sizeof(r->req));
    }
    if ((rc = ops_check_call(o, m, r, "request")) != COFFER_OK) {
        return rc;
    }
    if (a == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "request: no arena");
    }
    if ((rc = check_file(r)) != COFFER_OK || (rc = coffer_store_begin(o->st)) != COFFER_OK) {
        return rc;
    }
    tx = true;
    /* Only agents file requests; anyone else is refused without anything being read. */
    if (ops_is_agent(m->who) && (rc = file_in_tx(o, m->who, a, r, &reason)) != COFFER_OK) {
        goto out;
    }
    ops_event_init(&e, COFFER_AUDIT_REQUEST, m, r->org, r->project, r->name);
    e.allowed = r->allowed;
    e.reason = r->allowed ? coffer_err_str(COFFER_OK) : coffer_authz_reason_str(reason);
    e.purpose = r->purpose;
    e.purpose_len = r->purpose_len;
    if (r->allowed) {
        request_detail(&r->req, " filed", detail, sizeof(detail));
        e.detail = detail;
    }
    tx = false;
    if ((rc = finish(o, &e)) == COFFER_OK) {
        r->reason = reason;
    }
out:
    if (tx) {
        coffer_store_rollback(o->st);
    }
    if (rc != COFFER_OK) {
        r->allowed = false;
        memset(&r->req, 0, sizeof(r->req));
    }
    return rc;
}

/* ---- Reading ------------------------------------------------------------------------ */

enum coffer_err coffer_op_request_list(struct coffer_ops *o, const struct coffer_op_meta *m,
                                       struct coffer_arena *a, struct coffer_op_request_list *q)
{
    struct coffer_org org;
    struct coffer_project proj;
    struct coffer_audit_event e;
    char detail[64];
    bool found = false;
    bool tx = false;
    enum coffer_err r;

    if (q != NULL) {
        q->items = NULL;
        q->n = 0;
    }
    if ((r = ops_check_call(o, m, q, "list requests")) != COFFER_OK) {
        return r;
    }
    if (a == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "list requests: no arena");
    }
    if (!ops_is_admin_of(m->who, q->org)) {
        return ops_refuse(o, m, COFFER_AUDIT_REQUEST, q->org, q->project, NULL);
    }
    if ((r = coffer_store_begin(o->st)) != COFFER_OK) {
        return r;
    }
    tx = true;
    if ((r = find_project(o, m->who->org, q->project, &org, &proj, &found)) != COFFER_OK) {
        goto out;
    }
    if (!found) {
        coffer_store_rollback(o->st);
        tx = false;
        r = missing(o, m, COFFER_AUDIT_REQUEST, q->org, q->project, NULL, "project");
        goto out;
    }
    if ((r = coffer_store_request_pending(o->st, &org.id, &proj.id, a, &q->items, &q->n)) !=
        COFFER_OK) {
        goto out;
    }
    ops_event_init(&e, COFFER_AUDIT_REQUEST, m, q->org, q->project, NULL);
    e.allowed = true;
    e.reason = coffer_err_str(COFFER_OK);
    (void)snprintf(detail, sizeof(detail), "listed %zu pending request%s", q->n,
                   q->n == 1 ? "" : "s");
    e.detail = detail;
    tx = false;
    r = finish(o, &e);
out:
    if (tx) {
        coffer_store_rollback(o->st);
    }
    if (r != COFFER_OK) {
        q->items = NULL;
        q->n = 0;
    }
    return r;
}

/*
 * Inside the open transaction: the request q names in the principal's org,
 * and whether the principal may read it (*reason when not). *found tells
 * whether the request exists there.
 */
static enum coffer_err get_in_tx(struct coffer_ops *o, const struct coffer_principal *who,
                                 struct coffer_arena *a, struct coffer_op_request_get *q,
                                 bool *found, enum coffer_authz_reason *reason)
{
    struct coffer_org org;
    struct coffer_project proj;
    struct coffer_uuid id;
    bool project_found = false;
    enum coffer_err r;

    *found = false;
    *reason = COFFER_AUTHZ_NOT_FOUND;
    if (q->org == NULL || strcmp(q->org, who->org) != 0 || !parse_id(q->id, &id)) {
        return COFFER_OK;
    }
    if ((r = find_project(o, who->org, q->project, &org, &proj, &project_found)) != COFFER_OK ||
        !project_found) {
        return r;
    }
    r = coffer_store_request_get(o->st, &org.id, &proj.id, &id, false, a, &q->req);
    if (r == COFFER_E_NOT_FOUND) {
        coffer_err_clear();
        return COFFER_OK;
    }
    if (r != COFFER_OK) {
        return r;
    }
    *found = true;
    if (who->kind == COFFER_PRINCIPAL_AGENT &&
        (strcmp(q->req.requester_agent_type, who->agent_type) != 0 ||
         strcmp(q->req.requester_instance, who->instance) != 0)) {
        *reason = COFFER_AUTHZ_NO_GRANT;
        return COFFER_OK;
    }
    q->allowed = true;
    *reason = COFFER_AUTHZ_GRANTED;
    return COFFER_OK;
}

enum coffer_err coffer_op_request_get(struct coffer_ops *o, const struct coffer_op_meta *m,
                                      struct coffer_arena *a, struct coffer_op_request_get *q)
{
    struct coffer_audit_event e;
    enum coffer_authz_reason reason = COFFER_AUTHZ_NO_GRANT;
    char detail[DETAIL_MAX];
    char id[COFFER_UUID_STR_LEN];
    bool found = false;
    bool agent;
    bool tx = false;
    enum coffer_err r;

    if (q != NULL) {
        q->allowed = false;
        q->reason = COFFER_AUTHZ_NO_GRANT;
        memset(&q->req, 0, sizeof(q->req));
    }
    if ((r = ops_check_call(o, m, q, "read request")) != COFFER_OK) {
        return r;
    }
    if (a == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "read request: no arena");
    }
    agent = ops_is_agent(m->who);
    if (!agent && !ops_is_admin_of(m->who, q->org)) {
        return ops_refuse(o, m, COFFER_AUDIT_REQUEST, q->org, q->project, NULL);
    }
    if ((r = coffer_store_begin(o->st)) != COFFER_OK) {
        return r;
    }
    tx = true;
    if ((r = get_in_tx(o, m->who, a, q, &found, &reason)) != COFFER_OK) {
        goto out;
    }
    if (!agent && !found) {
        coffer_store_rollback(o->st);
        tx = false;
        r = missing(o, m, COFFER_AUDIT_REQUEST, q->org, q->project, NULL, "request");
        goto out;
    }
    ops_event_init(&e, COFFER_AUDIT_REQUEST, m, q->org, q->project, found ? q->req.name : NULL);
    e.allowed = q->allowed;
    e.reason = q->allowed ? coffer_err_str(COFFER_OK) : coffer_authz_reason_str(reason);
    if (found) {
        coffer_uuid_format(&q->req.id, id);
        (void)snprintf(detail, sizeof(detail), "request %s read (%s)", id,
                       coffer_request_state_str(q->req.state));
        e.detail = detail;
        e.version = q->req.credential_version;
    }
    if (!q->allowed) {
        /* Nothing of a request the principal may not read leaves this function. */
        memset(&q->req, 0, sizeof(q->req));
    }
    tx = false;
    if ((r = finish(o, &e)) == COFFER_OK) {
        q->reason = reason;
    }
out:
    if (tx) {
        coffer_store_rollback(o->st);
    }
    if (r != COFFER_OK) {
        q->allowed = false;
        memset(&q->req, 0, sizeof(q->req));
    }
    return r;
}

/* ---- Deciding ----------------------------------------------------------------------- */

/*
 * Inside the open transaction: the pending request id of project, locked.
 * *found is false when it does not exist; COFFER_E_STATE when it is no
 * longer pending.
 */
static enum coffer_err lock_pending(struct coffer_ops *o, const struct coffer_principal *who,
                                    const char *project, const char *id_text,
                                    struct coffer_arena *a, struct coffer_store_request *out,
                                    bool *found)
{
    struct coffer_org org;
    struct coffer_project proj;
    struct coffer_uuid id;
    bool project_found = false;
    enum coffer_err r;

    *found = false;
    if (!parse_id(id_text, &id)) {
        return COFFER_OK;
    }
    if ((r = find_project(o, who->org, project, &org, &proj, &project_found)) != COFFER_OK ||
        !project_found) {
        return r;
    }
    r = coffer_store_request_get(o->st, &org.id, &proj.id, &id, true, a, out);
    if (r == COFFER_E_NOT_FOUND) {
        coffer_err_clear();
        return COFFER_OK;
    }
    if (r != COFFER_OK) {
        return r;
    }
    *found = true;
    if (out->state != COFFER_REQUEST_PENDING) {
        return coffer_err_set(COFFER_E_STATE, "request %s is already %s", id_text,
                              coffer_request_state_str(out->state));
    }
    return COFFER_OK;
}

/*
 * After the caller rolled back an operation refused because what it would
 * change was changed already (a request decided, an approval revoked):
 * audits the attempt with detail (may be NULL) and returns COFFER_E_STATE
 * with the detail that was set.
 */
static enum coffer_err refused_state(struct coffer_ops *o, const struct coffer_op_meta *m,
                                     const char *action, const char *org, const char *project,
                                     const char *credential, const char *detail)
{
    struct coffer_audit_event e;
    char saved[512];
    int64_t id = 0;
    enum coffer_err r;

    (void)snprintf(saved, sizeof(saved), "%s", coffer_err_detail());
    ops_event_init(&e, action, m, org, project, credential);
    e.allowed = false;
    e.reason = coffer_err_str(COFFER_E_STATE);
    e.detail = detail;
    if ((r = coffer_store_audit_insert(o->st, &e, &id)) != COFFER_OK) {
        return coffer_err_wrap(r, "%s refused", action);
    }
    return coffer_err_set(COFFER_E_STATE, "%s", saved);
}

/*
 * Inside the open transaction: the request, locked and pending, for a
 * decision. *refused says that the caller must answer without deciding:
 * the transaction has then been rolled back and the refusal audited, and
 * the result is COFFER_E_NOT_FOUND or COFFER_E_STATE.
 */
static enum coffer_err lock_for_decision(struct coffer_ops *o, const struct coffer_op_meta *m,
                                         const char *action, const char *org, const char *project,
                                         const char *id, struct coffer_arena *a,
                                         struct coffer_store_request *q, bool *refused)
{
    bool found = false;
    enum coffer_err r;

    *refused = false;
    r = lock_pending(o, m->who, project, id, a, q, &found);
    if (r == COFFER_OK && found) {
        return COFFER_OK;
    }
    if (r != COFFER_OK && r != COFFER_E_STATE) {
        return r;
    }
    coffer_store_rollback(o->st);
    *refused = true;
    if (r == COFFER_E_STATE) {
        char detail[DETAIL_MAX];

        request_detail(q, " was decided already", detail, sizeof(detail));
        return refused_state(o, m, action, org, project, q->name, detail);
    }
    return missing(o, m, action, org, project, NULL, "request");
}

enum coffer_err coffer_op_request_fulfill(struct coffer_ops *o, const struct coffer_op_meta *m,
                                          struct coffer_arena *a,
                                          struct coffer_op_request_fulfill *f)
{
    struct coffer_store_request q;
    struct coffer_op_put p;
    struct coffer_audit_event e;
    char by[OPS_PRINCIPAL_TEXT_MAX];
    char detail[DETAIL_MAX];
    char what[48];
    bool refused = false;
    bool tx = false;
    enum coffer_err r;

    if (f != NULL) {
        memset(&f->req, 0, sizeof(f->req));
        f->expires_us = 0;
    }
    if ((r = ops_check_call(o, m, f, "fulfill")) != COFFER_OK) {
        return r;
    }
    if (a == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "fulfill: no arena");
    }
    if (!ops_is_admin_of(m->who, f->org)) {
        return ops_refuse(o, m, COFFER_AUDIT_FULFILL, f->org, f->project, NULL);
    }
    ops_principal_text(m->who, by);
    memset(&q, 0, sizeof(q));
    if ((r = coffer_store_begin(o->st)) != COFFER_OK) {
        return r;
    }
    tx = true;
    if ((r = lock_for_decision(o, m, COFFER_AUDIT_FULFILL, f->org, f->project, f->id, a, &q,
                               &refused)) != COFFER_OK) {
        tx = !refused;
        goto out;
    }
    /* The credential is stored exactly as a put of the request's name, type and tier. */
    memset(&p, 0, sizeof(p));
    p.org = f->org;
    p.project = f->project;
    p.name = q.name;
    p.type = q.type;
    p.tier = q.tier;
    p.keys = f->keys;
    p.ttl_s = f->ttl_s;
    p.expires_at_us = f->expires_at_us;
    p.description = f->description;
    p.key_expiry = f->key_expiry;
    p.n_key_expiry = f->n_key_expiry;
    p.grants = f->grants_given ? f->grants : q.grants;
    p.n_grants = f->grants_given ? f->n_grants : q.n_grants;
    if ((r = ops_put_in_tx(o, m, &p)) != COFFER_OK ||
        (r = coffer_store_request_decide(o->st, &q.org_id, &q.project_id, &q.id,
                                         COFFER_REQUEST_FULFILLED, by, NULL, p.version, a,
                                         &f->req)) != COFFER_OK) {
        goto out;
    }
    (void)snprintf(what, sizeof(what), " fulfilled as version %" PRIu32, p.version);
    request_detail(&f->req, what, detail, sizeof(detail));
    ops_event_init(&e, COFFER_AUDIT_FULFILL, m, f->org, f->project, q.name);
    e.allowed = true;
    e.reason = coffer_err_str(COFFER_OK);
    e.version = p.version;
    e.detail = detail;
    tx = false;
    if ((r = finish(o, &e)) == COFFER_OK) {
        f->expires_us = p.expires_us;
    }
out:
    if (tx) {
        coffer_store_rollback(o->st);
    }
    if (r != COFFER_OK) {
        memset(&f->req, 0, sizeof(f->req));
    }
    return r;
}

enum coffer_err coffer_op_request_deny(struct coffer_ops *o, const struct coffer_op_meta *m,
                                       struct coffer_arena *a, struct coffer_op_request_deny *d)
{
    struct coffer_store_request q;
    struct coffer_audit_event e;
    char by[OPS_PRINCIPAL_TEXT_MAX];
    char detail[DETAIL_MAX];
    bool refused = false;
    bool tx = false;
    enum coffer_err r;

    if (d != NULL) {
        memset(&d->req, 0, sizeof(d->req));
    }
    if ((r = ops_check_call(o, m, d, "deny")) != COFFER_OK) {
        return r;
    }
    if (a == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "deny: no arena");
    }
    if (!ops_is_admin_of(m->who, d->org)) {
        return ops_refuse(o, m, COFFER_AUDIT_DENY, d->org, d->project, NULL);
    }
    if (d->reason == NULL ||
        !coffer_text_ok(d->reason, strnlen(d->reason, COFFER_REQUEST_TEXT_MAX + 1),
                        COFFER_REQUEST_TEXT_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "a denial reason is 1 to %d bytes of UTF-8 without control "
                              "characters",
                              COFFER_REQUEST_TEXT_MAX);
    }
    ops_principal_text(m->who, by);
    memset(&q, 0, sizeof(q));
    if ((r = coffer_store_begin(o->st)) != COFFER_OK) {
        return r;
    }
    tx = true;
    if ((r = lock_for_decision(o, m, COFFER_AUDIT_DENY, d->org, d->project, d->id, a, &q,
                               &refused)) != COFFER_OK) {
        tx = !refused;
        goto out;
    }
    if ((r = coffer_store_request_decide(o->st, &q.org_id, &q.project_id, &q.id,
                                         COFFER_REQUEST_DENIED, by, d->reason, 0, a, &d->req)) !=
        COFFER_OK) {
        goto out;
    }
    request_detail(&d->req, " denied", detail, sizeof(detail));
    ops_event_init(&e, COFFER_AUDIT_DENY, m, d->org, d->project, q.name);
    e.allowed = true;
    e.reason = coffer_err_str(COFFER_OK);
    e.detail = detail;
    tx = false;
    r = finish(o, &e);
out:
    if (tx) {
        coffer_store_rollback(o->st);
    }
    if (r != COFFER_OK) {
        memset(&d->req, 0, sizeof(d->req));
    }
    return r;
}

/* ---- Standing approvals ------------------------------------------------------------- */

enum coffer_err coffer_op_approval_window(int64_t now_us, int64_t from_us, int64_t until_us,
                                          int64_t *start_us)
{
    int64_t start = from_us != 0 ? from_us : now_us;

    if (start_us != NULL) {
        *start_us = 0;
    }
    if (start_us == NULL || now_us <= 0) {
        return coffer_err_set(COFFER_E_INVALID, "approval window: no clock or no result");
    }
    if (start < 0) {
        return coffer_err_set(COFFER_E_INVALID, "an approval cannot start before 1970");
    }
    if (until_us <= start) {
        return coffer_err_set(COFFER_E_INVALID,
                              "the approval window is empty: 'until' must come after 'from'");
    }
    if (until_us <= now_us) {
        return coffer_err_set(COFFER_E_INVALID, "the approval window must end in the future");
    }
    if (until_us - start > COFFER_TTL_HARD_MAX_CRITICAL * US_PER_S) {
        return coffer_err_set(COFFER_E_INVALID,
                              "the approval window is longer than 24 hours, the most a critical "
                              "credential allows");
    }
    *start_us = start;
    return COFFER_OK;
}

/* "approval <id> of <type>/<instance> from <time> until <time><tail>" */
static void approval_detail(const struct coffer_store_approval *ap, const char *tail, char *out,
                            size_t cap)
{
    char id[COFFER_UUID_STR_LEN];
    char from[32];
    char until[32];

    coffer_uuid_format(&ap->id, id);
    time_text(ap->from_us, from);
    time_text(ap->until_us, until);
    (void)snprintf(out, cap, "approval %s of %s/%s from %s until %s%s", id, ap->agent_type,
                   ap->instance, from, until, tail);
}

/*
 * Inside the open transaction: the credential of org (the principal's),
 * project and name, for an approval. *found is false when it does not
 * exist.
 */
static enum coffer_err load_credential(struct coffer_ops *o, const char *org, const char *project,
                                       const char *name, struct coffer_arena *a,
                                       struct coffer_authz_input *in,
                                       struct coffer_store_access *acc, bool *found)
{
    enum coffer_err r;

    memset(in, 0, sizeof(*in));
    r = coffer_store_access_load(o->st, org, project, name, a, in, acc);
    *found = r == COFFER_OK && acc->found;
    return r;
}

static enum coffer_err approve_in_tx(struct coffer_ops *o, const struct coffer_op_meta *m,
                                     struct coffer_op_approve *ap, struct coffer_arena *a,
                                     struct coffer_authz_input *in, struct coffer_store_access *acc,
                                     bool *found)
{
    char by[OPS_PRINCIPAL_TEXT_MAX];
    int64_t start = 0;
    enum coffer_err r;

    if ((r = load_credential(o, m->who->org, ap->project, ap->name, a, in, acc, found)) !=
            COFFER_OK ||
        !*found) {
        return r;
    }
    if (in->tier != COFFER_TIER_CRITICAL) {
        return coffer_err_set(COFFER_E_STATE,
                              "credential %s/%s is tier %s; standing approvals are for critical "
                              "credentials",
                              ap->project, ap->name, coffer_tier_str(in->tier));
    }
    if (!listed(in->members, in->n_members, ap->agent_type)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "agent type %s is not a member of project %s in the policy in force",
                              ap->agent_type, ap->project);
    }
    if ((r = coffer_op_approval_window(in->now_us, ap->from_us, ap->until_us, &start)) !=
        COFFER_OK) {
        return r;
    }
    ops_principal_text(m->who, by);
    return coffer_store_approval_insert(o->st, &acc->org_id, &acc->project_id, &acc->credential_id,
                                        ap->agent_type, ap->instance, start, ap->until_us, by,
                                        &ap->approval);
}

enum coffer_err coffer_op_approve(struct coffer_ops *o, const struct coffer_op_meta *m,
                                  struct coffer_op_approve *ap)
{
    struct coffer_arena *arena = NULL;
    struct coffer_authz_input in;
    struct coffer_store_access acc;
    struct coffer_audit_event e;
    char detail[DETAIL_MAX];
    bool found = false;
    bool tx = false;
    enum coffer_err r;

    if (ap != NULL) {
        memset(&ap->approval, 0, sizeof(ap->approval));
    }
    if ((r = ops_check_call(o, m, ap, "approve")) != COFFER_OK) {
        return r;
    }
    if (!ops_is_admin_of(m->who, ap->org)) {
        return ops_refuse(o, m, COFFER_AUDIT_APPROVE, ap->org, ap->project, ap->name);
    }
    if (!ops_name_ok(ap->agent_type) || !ops_name_ok(ap->instance)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "agent_type and instance must match ^[a-z0-9][a-z0-9_-]{0,62}$");
    }
    if ((r = coffer_arena_new(0, &arena)) != COFFER_OK ||
        (r = coffer_store_begin(o->st)) != COFFER_OK) {
        goto out;
    }
    tx = true;
    if ((r = approve_in_tx(o, m, ap, arena, &in, &acc, &found)) != COFFER_OK) {
        goto out;
    }
    if (!found) {
        coffer_store_rollback(o->st);
        tx = false;
        r = missing(o, m, COFFER_AUDIT_APPROVE, ap->org, ap->project, ap->name, "credential");
        goto out;
    }
    approval_detail(&ap->approval, "", detail, sizeof(detail));
    ops_event_init(&e, COFFER_AUDIT_APPROVE, m, ap->org, ap->project, ap->name);
    e.allowed = true;
    e.reason = coffer_err_str(COFFER_OK);
    e.version = acc.current_version;
    e.phase = in.phase;
    e.detail = detail;
    tx = false;
    r = finish(o, &e);
out:
    if (tx) {
        coffer_store_rollback(o->st);
    }
    if (r != COFFER_OK) {
        memset(&ap->approval, 0, sizeof(ap->approval));
    }
    coffer_arena_free(&arena);
    return r;
}

enum coffer_err coffer_op_approval_revoke(struct coffer_ops *o, const struct coffer_op_meta *m,
                                          struct coffer_op_approval_revoke *rv)
{
    struct coffer_arena *arena = NULL;
    struct coffer_authz_input in;
    struct coffer_store_access acc;
    struct coffer_audit_event e;
    struct coffer_uuid id;
    char detail[DETAIL_MAX];
    bool found = false;
    bool tx = false;
    enum coffer_err r;

    if (rv != NULL) {
        memset(&rv->approval, 0, sizeof(rv->approval));
    }
    if ((r = ops_check_call(o, m, rv, "revoke approval")) != COFFER_OK) {
        return r;
    }
    if (!ops_is_admin_of(m->who, rv->org)) {
        return ops_refuse(o, m, COFFER_AUDIT_APPROVAL_REVOKE, rv->org, rv->project, rv->name);
    }
    if ((r = coffer_arena_new(0, &arena)) != COFFER_OK ||
        (r = coffer_store_begin(o->st)) != COFFER_OK) {
        goto out;
    }
    tx = true;
    if (parse_id(rv->id, &id) &&
        (r = load_credential(o, m->who->org, rv->project, rv->name, arena, &in, &acc, &found)) ==
            COFFER_OK &&
        found) {
        r = coffer_store_approval_revoke(o->st, &acc.org_id, &acc.credential_id, &id,
                                         &rv->approval);
        if (r == COFFER_E_NOT_FOUND) {
            coffer_err_clear();
            found = false;
            r = COFFER_OK;
        }
    }
    if (r == COFFER_E_STATE) {
        /* Revoked already: nothing changes, and the attempt is audited. */
        coffer_store_rollback(o->st);
        tx = false;
        r = refused_state(o, m, COFFER_AUDIT_APPROVAL_REVOKE, rv->org, rv->project, rv->name, NULL);
        goto out;
    }
    if (r != COFFER_OK) {
        goto out;
    }
    if (!found) {
        coffer_store_rollback(o->st);
        tx = false;
        r = missing(o, m, COFFER_AUDIT_APPROVAL_REVOKE, rv->org, rv->project, rv->name, "approval");
        goto out;
    }
    approval_detail(&rv->approval, " revoked", detail, sizeof(detail));
    ops_event_init(&e, COFFER_AUDIT_APPROVAL_REVOKE, m, rv->org, rv->project, rv->name);
    e.allowed = true;
    e.reason = coffer_err_str(COFFER_OK);
    e.version = acc.current_version;
    e.phase = in.phase;
    e.detail = detail;
    tx = false;
    r = finish(o, &e);
out:
    if (tx) {
        coffer_store_rollback(o->st);
    }
    if (r != COFFER_OK) {
        memset(&rv->approval, 0, sizeof(rv->approval));
    }
    coffer_arena_free(&arena);
    return r;
}
