/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The handlers of the credential request flow and of standing approvals
 * (table.c maps requests to them): an agent files a request and polls it,
 * an admin lists, fulfils and denies requests, and gives and revokes
 * standing approvals of critical credentials. Each handler checks its body
 * against the route's schema (known fields only, each of the right JSON
 * type), calls one operation of ops.h, and turns the result into JSON.
 *
 * An agent is told "permission_denied" for every refusal, whatever reason
 * the audit log keeps. Values travel only in the body of a fulfilment,
 * which goes straight into a key set and is never echoed or logged.
 */
#include "api/api_int.h"

#include "coffer/keys.h"
#include "coffer/spiffe.h"

#include <stdio.h>
#include <string.h>

/* ---- Reading bodies --------------------------------------------------------------- */

/*
 * Reads the array field of the body into g (room for COFFER_POLICY_GRANTS_MAX
 * grants) with their phase lists in phases. *given says whether the field
 * was there (null counts as absent). False if answered 400.
 */
static bool read_grant_list(struct api_req *r, const char *field, struct coffer_policy_grant *g,
                            const char *(*phases)[COFFER_POLICY_PHASES_MAX], size_t *n, bool *given)
{
    json_t *arr = json_object_get(r->body, field);
    json_t *item;
    char msg[160];
    size_t i;

    *n = 0;
    *given = false;
    if (arr == NULL || json_is_null(arr)) {
        return true;
    }
    if (!json_is_array(arr) || json_array_size(arr) > COFFER_POLICY_GRANTS_MAX) {
        (void)snprintf(msg, sizeof(msg), "'%s' must be an array of at most %d grants", field,
                       COFFER_POLICY_GRANTS_MAX);
        api_error(r, 400, "invalid_request", msg);
        return false;
    }
    json_array_foreach(arr, i, item)
    {
        const char *key;
        json_t *v;
        json_t *ph;

        memset(&g[i], 0, sizeof(g[i]));
        if (!json_is_object(item)) {
            (void)snprintf(msg, sizeof(msg), "each of '%s' must be an object", field);
            api_error(r, 400, "invalid_request", msg);
            return false;
        }
        json_object_foreach(item, key, v)
        {
            if (strcmp(key, "agent_type") != 0 && strcmp(key, "instance") != 0 &&
                strcmp(key, "phases") != 0) {
                (void)snprintf(msg, sizeof(msg),
                               "each of '%s' has only agent_type, instance and phases", field);
                api_error(r, 400, "invalid_request", msg);
                return false;
            }
        }
        v = json_object_get(item, "agent_type");
        if (!json_is_string(v)) {
            (void)snprintf(msg, sizeof(msg), "each of '%s' needs 'agent_type', a string", field);
            api_error(r, 400, "invalid_request", msg);
            return false;
        }
        g[i].agent_type = json_string_value(v);
        v = json_object_get(item, "instance");
        if (v != NULL && !json_is_null(v)) {
            if (!json_is_string(v)) {
                (void)snprintf(msg, sizeof(msg), "an 'instance' in '%s' must be a string", field);
                api_error(r, 400, "invalid_request", msg);
                return false;
            }
            g[i].instance = json_string_value(v);
        }
        ph = json_object_get(item, "phases");
        if (ph != NULL && !json_is_null(ph)) {
            size_t j;

            if (!json_is_array(ph) || json_array_size(ph) == 0 ||
                json_array_size(ph) > COFFER_POLICY_PHASES_MAX) {
                (void)snprintf(msg, sizeof(msg),
                               "'phases' in '%s' must be a non-empty array of at most %d names",
                               field, COFFER_POLICY_PHASES_MAX);
                api_error(r, 400, "invalid_request", msg);
                return false;
            }
            json_array_foreach(ph, j, v)
            {
                if (!json_is_string(v)) {
                    (void)snprintf(msg, sizeof(msg), "'phases' in '%s' are strings", field);
                    api_error(r, 400, "invalid_request", msg);
                    return false;
                }
                phases[i][j] = json_string_value(v);
            }
            g[i].phases = phases[i];
            g[i].n_phases = json_array_size(ph);
        }
    }
    *n = json_array_size(arr);
    *given = true;
    return true;
}

/* The "keys" object of the body as a new key set; NULL if answered. */
static struct coffer_keyset *read_keys(struct api_req *r)
{
    json_t *keys = json_object_get(r->body, "keys");
    struct coffer_keyset *ks = NULL;
    const char *name;
    json_t *v;
    enum coffer_err e;

    if (!json_is_object(keys) || json_object_size(keys) == 0) {
        api_error(r, 400, "invalid_request", "'keys' must be an object of names to strings");
        return NULL;
    }
    if ((e = coffer_keyset_new(&ks)) != COFFER_OK) {
        api_fail_op(r, e);
        return NULL;
    }
    json_object_foreach(keys, name, v)
    {
        if (!json_is_string(v)) {
            coffer_keyset_free(&ks);
            api_error(r, 400, "invalid_request", "every value in 'keys' must be a string");
            return NULL;
        }
        if ((e = coffer_keyset_add(ks, name, json_string_value(v), json_string_length(v))) !=
            COFFER_OK) {
            coffer_keyset_free(&ks);
            api_fail_op(r, e);
            return NULL;
        }
    }
    return ks;
}

/* An optional time field: false if answered 400; *us 0 when absent. */
static bool time_field(struct api_req *r, const char *name, int64_t *us)
{
    const char *s = NULL;
    char msg[96];

    *us = 0;
    if (!api_string_field(r, name, &s, NULL)) {
        return false;
    }
    if (s != NULL && !api_parse_time(s, us)) {
        (void)snprintf(msg, sizeof(msg), "'%s' must be YYYY-MM-DDTHH:MM:SSZ", name);
        api_error(r, 400, "invalid_request", msg);
        return false;
    }
    return true;
}

/* ---- Writing requests ---------------------------------------------------------------- */

static bool set_str(json_t *o, const char *key, const char *value)
{
    return json_object_set_new(o, key, value != NULL ? json_string(value) : json_null()) == 0;
}

static bool set_time(json_t *o, const char *key, int64_t us)
{
    char when[32];

    api_format_time(us, when);
    return set_str(o, key, when[0] != '\0' ? when : NULL);
}

static json_t *grants_json(const struct coffer_policy_grant *g, size_t n)
{
    json_t *arr = json_array();

    for (size_t i = 0; arr != NULL && i < n; i++) {
        json_t *item = json_pack("{s:s}", "agent_type", g[i].agent_type);
        json_t *ph = json_array();
        bool ok = item != NULL && ph != NULL;

        for (size_t j = 0; ok && j < g[i].n_phases; j++) {
            ok = json_array_append_new(ph, json_string(g[i].phases[j])) == 0;
        }
        if (ok && g[i].instance != NULL) {
            ok = set_str(item, "instance", g[i].instance);
        }
        if (ok && g[i].n_phases > 0) {
            ok = json_object_set(item, "phases", ph) == 0;
        }
        json_decref(ph);
        if (!ok || json_array_append_new(arr, item) != 0) {
            if (!ok) {
                json_decref(item);
            }
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

/* {"spiffe", "agent_type", "instance"} of the agent that filed q (spiffe null without one). */
static json_t *requester_json(const struct api_req *r, const struct coffer_store_request *q)
{
    struct coffer_principal p;
    char id[COFFER_SPIFFE_MAX + 1];
    json_t *o;

    memset(&p, 0, sizeof(p));
    p.kind = COFFER_PRINCIPAL_AGENT;
    (void)snprintf(p.trust_domain, sizeof(p.trust_domain), "%s",
                   q->requester_trust_domain != NULL ? q->requester_trust_domain : "");
    (void)snprintf(p.org, sizeof(p.org), "%s", r->params[0]);
    (void)snprintf(p.agent_type, sizeof(p.agent_type), "%s", q->requester_agent_type);
    (void)snprintf(p.instance, sizeof(p.instance), "%s", q->requester_instance);
    if (q->requester_trust_domain == NULL ||
        coffer_spiffe_format(&p, id, sizeof(id)) != COFFER_OK) {
        id[0] = '\0';
    }
    o = json_pack("{s:s, s:s}", "agent_type", q->requester_agent_type, "instance",
                  q->requester_instance);
    if (o != NULL && !set_str(o, "spiffe", id[0] != '\0' ? id : NULL)) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

/*
 * A request as JSON: what its filing answered ("id", "state", "org",
 * "project", "name", "type", "tier", "urgency", "created_at") and, when
 * full, everything else it holds. NULL on allocation failure.
 */
static json_t *request_json(const struct api_req *r, const struct coffer_store_request *q,
                            bool full)
{
    char id[COFFER_UUID_STR_LEN];
    json_t *o;
    bool ok;

    coffer_uuid_format(&q->id, id);
    o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "state",
                  coffer_request_state_str(q->state), "org", r->params[0], "project", r->params[1],
                  "name", q->name, "type", q->type, "tier", q->tier, "urgency", q->urgency);
    ok = o != NULL && set_time(o, "created_at", q->created_us);
    if (ok && full) {
        ok = set_str(o, "purpose", q->purpose) &&
             json_object_set_new(o, "suggested_grants", grants_json(q->grants, q->n_grants)) == 0 &&
             json_object_set_new(o, "requester", requester_json(r, q)) == 0;
        if (ok && q->description != NULL) {
            ok = set_str(o, "description", q->description);
        }
        if (ok && q->state != COFFER_REQUEST_PENDING) {
            ok =
                set_time(o, "decided_at", q->decided_us) && set_str(o, "decided_by", q->decided_by);
        }
        if (ok && q->state == COFFER_REQUEST_FULFILLED) {
            ok = set_str(o, "credential", q->name) &&
                 json_object_set_new(o, "version", json_integer(q->credential_version)) == 0;
        }
        if (ok && q->state == COFFER_REQUEST_DENIED) {
            ok = set_str(o, "reason", q->reason);
        }
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Sends obj with status, or a 500 when it could not be built. */
static void reply_json(struct api_req *r, int status, json_t *obj)
{
    if (obj == NULL) {
        api_error(r, 500, "internal", "the answer could not be encoded");
        return;
    }
    api_reply(r, status, obj);
}

/* ---- Requests ------------------------------------------------------------------------ */

void api_request_file(struct api_req *r)
{
    static const char *const known[] = {
        "name", "type", "tier", "purpose", "urgency", "suggested_grants", "description", NULL};
    /* A worker runs one request at a time, so these can live outside the stack. */
    static struct coffer_policy_grant grants[COFFER_POLICY_GRANTS_MAX];
    static const char *phases[COFFER_POLICY_GRANTS_MAX][COFFER_POLICY_PHASES_MAX];
    struct coffer_op_request_file f = {0};
    struct coffer_op_meta m = api_meta(r);
    struct coffer_arena *a = NULL;
    bool given = false;
    enum coffer_err e;

    if (!api_only_fields(r, known) || !api_string_field(r, "name", &f.name, NULL) ||
        !api_string_field(r, "type", &f.type, NULL) ||
        !api_string_field(r, "tier", &f.tier, NULL) ||
        !api_string_field(r, "purpose", &f.purpose, &f.purpose_len) ||
        !api_string_field(r, "urgency", &f.urgency, NULL) ||
        !api_string_field(r, "description", &f.description, NULL) ||
        !read_grant_list(r, "suggested_grants", grants, phases, &f.n_grants, &given)) {
        return;
    }
    if (f.name == NULL || f.type == NULL || f.tier == NULL || f.purpose == NULL) {
        api_error(r, 400, "invalid_request", "'name', 'type', 'tier' and 'purpose' are required");
        return;
    }
    f.org = r->params[0];
    f.project = r->params[1];
    f.grants = grants;
    if ((e = coffer_arena_new(0, &a)) != COFFER_OK ||
        (e = coffer_op_request_file(r->api_ops, &m, a, &f)) != COFFER_OK) {
        coffer_arena_free(&a);
        api_fail_op(r, e);
        return;
    }
    if (!f.allowed) {
        coffer_arena_free(&a);
        api_error(r, 403, "permission_denied", "permission denied");
        return;
    }
    reply_json(r, 201, request_json(r, &f.req, false));
    coffer_arena_free(&a);
}

void api_request_list(struct api_req *r)
{
    struct coffer_op_request_list q = {0};
    struct coffer_op_meta m = api_meta(r);
    struct coffer_arena *a = NULL;
    json_t *arr = NULL;
    json_t *out = NULL;
    enum coffer_err e;

    q.org = r->params[0];
    q.project = r->params[1];
    if ((e = coffer_arena_new(0, &a)) != COFFER_OK ||
        (e = coffer_op_request_list(r->api_ops, &m, a, &q)) != COFFER_OK) {
        coffer_arena_free(&a);
        api_fail_op(r, e);
        return;
    }
    arr = json_array();
    for (size_t i = 0; arr != NULL && i < q.n; i++) {
        if (json_array_append_new(arr, request_json(r, &q.items[i], true)) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    if (arr != NULL) {
        out = json_object();
        if (out == NULL) {
            json_decref(arr);
        } else if (json_object_set_new(out, "requests", arr) != 0) {
            json_decref(out);
            out = NULL;
        }
    }
    coffer_arena_free(&a);
    reply_json(r, 200, out);
}

void api_request_get(struct api_req *r)
{
    struct coffer_op_request_get q = {0};
    struct coffer_op_meta m = api_meta(r);
    struct coffer_arena *a = NULL;
    enum coffer_err e;

    q.org = r->params[0];
    q.project = r->params[1];
    q.id = r->params[2];
    if ((e = coffer_arena_new(0, &a)) != COFFER_OK ||
        (e = coffer_op_request_get(r->api_ops, &m, a, &q)) != COFFER_OK) {
        coffer_arena_free(&a);
        api_fail_op(r, e);
        return;
    }
    if (!q.allowed) {
        coffer_arena_free(&a);
        api_error(r, 403, "permission_denied", "permission denied");
        return;
    }
    reply_json(r, 200, request_json(r, &q.req, true));
    coffer_arena_free(&a);
}

void api_request_fulfill(struct api_req *r)
{
    static const char *const known[] = {"keys",        "grants",         "ttl", "expires_at",
                                        "description", "key_expires_at", NULL};
    static struct coffer_policy_grant grants[COFFER_POLICY_GRANTS_MAX];
    static const char *phases[COFFER_POLICY_GRANTS_MAX][COFFER_POLICY_PHASES_MAX];
    struct coffer_op_key_expiry key_expiry[COFFER_KEYS_MAX];
    struct coffer_op_request_fulfill f = {0};
    struct coffer_op_meta m = api_meta(r);
    struct coffer_arena *a = NULL;
    struct coffer_keyset *ks = NULL;
    const char *ttl = NULL;
    json_t *out;
    enum coffer_err e;

    if (!api_only_fields(r, known) || !api_string_field(r, "ttl", &ttl, NULL) ||
        !time_field(r, "expires_at", &f.expires_at_us) ||
        !api_string_field(r, "description", &f.description, NULL) ||
        !read_grant_list(r, "grants", grants, phases, &f.n_grants, &f.grants_given) ||
        !api_read_key_expiry(r, key_expiry, &f.n_key_expiry)) {
        return;
    }
    f.key_expiry = key_expiry;
    if (ttl != NULL && coffer_policy_ttl_parse(ttl, strlen(ttl), &f.ttl_s) != COFFER_OK) {
        api_error(r, 400, "invalid_request", "'ttl' is not a duration such as 90d or 12h");
        return;
    }
    if ((ks = read_keys(r)) == NULL) {
        return;
    }
    f.org = r->params[0];
    f.project = r->params[1];
    f.id = r->params[2];
    f.keys = ks;
    f.grants = grants;
    if ((e = coffer_arena_new(0, &a)) == COFFER_OK) {
        e = coffer_op_request_fulfill(r->api_ops, &m, a, &f);
    }
    coffer_keyset_free(&ks);
    if (e != COFFER_OK) {
        coffer_arena_free(&a);
        api_fail_op(r, e);
        return;
    }
    out = request_json(r, &f.req, true);
    if (out != NULL &&
        !(f.expires_us == COFFER_AUTHZ_NO_EXPIRY ? set_str(out, "expires_at", NULL)
                                                 : set_time(out, "expires_at", f.expires_us))) {
        json_decref(out);
        out = NULL;
    }
    coffer_arena_free(&a);
    reply_json(r, 200, out);
}

void api_request_deny(struct api_req *r)
{
    static const char *const known[] = {"reason", NULL};
    struct coffer_op_request_deny d = {0};
    struct coffer_op_meta m = api_meta(r);
    struct coffer_arena *a = NULL;
    enum coffer_err e;

    if (!api_only_fields(r, known) || !api_string_field(r, "reason", &d.reason, NULL)) {
        return;
    }
    if (d.reason == NULL) {
        api_error(r, 400, "invalid_request", "'reason' is required");
        return;
    }
    d.org = r->params[0];
    d.project = r->params[1];
    d.id = r->params[2];
    if ((e = coffer_arena_new(0, &a)) != COFFER_OK ||
        (e = coffer_op_request_deny(r->api_ops, &m, a, &d)) != COFFER_OK) {
        coffer_arena_free(&a);
        api_fail_op(r, e);
        return;
    }
    reply_json(r, 200, request_json(r, &d.req, true));
    coffer_arena_free(&a);
}

/* ---- Standing approvals ------------------------------------------------------------- */

static json_t *approval_json(const struct api_req *r, const struct coffer_store_approval *ap)
{
    char id[COFFER_UUID_STR_LEN];
    json_t *o = api_cred_json(r);

    coffer_uuid_format(&ap->id, id);
    if (o == NULL || !set_str(o, "id", id) || !set_str(o, "agent_type", ap->agent_type) ||
        !set_str(o, "instance", ap->instance) || !set_time(o, "from", ap->from_us) ||
        !set_time(o, "until", ap->until_us)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

void api_approval_create(struct api_req *r)
{
    static const char *const known[] = {"agent_type", "instance", "from", "until", NULL};
    struct coffer_op_approve ap = {0};
    struct coffer_op_meta m = api_meta(r);
    enum coffer_err e;

    if (!api_only_fields(r, known) || !api_string_field(r, "agent_type", &ap.agent_type, NULL) ||
        !api_string_field(r, "instance", &ap.instance, NULL) ||
        !time_field(r, "from", &ap.from_us) || !time_field(r, "until", &ap.until_us)) {
        return;
    }
    if (ap.agent_type == NULL || ap.instance == NULL || ap.until_us == 0) {
        api_error(r, 400, "invalid_request", "'agent_type', 'instance' and 'until' are required");
        return;
    }
    ap.org = r->params[0];
    ap.project = r->params[1];
    ap.name = r->params[2];
    if ((e = coffer_op_approve(r->api_ops, &m, &ap)) != COFFER_OK) {
        api_fail_op(r, e);
        return;
    }
    reply_json(r, 201, approval_json(r, &ap.approval));
}

void api_approval_revoke(struct api_req *r)
{
    static const char *const known[] = {NULL};
    struct coffer_op_approval_revoke rv = {0};
    struct coffer_op_meta m = api_meta(r);
    json_t *out;
    enum coffer_err e;

    if (!api_only_fields(r, known)) {
        return;
    }
    rv.org = r->params[0];
    rv.project = r->params[1];
    rv.name = r->params[2];
    rv.id = r->params[3];
    if ((e = coffer_op_approval_revoke(r->api_ops, &m, &rv)) != COFFER_OK) {
        api_fail_op(r, e);
        return;
    }
    out = approval_json(r, &rv.approval);
    if (out != NULL && json_object_set_new(out, "revoked", json_true()) != 0) {
        json_decref(out);
        out = NULL;
    }
    reply_json(r, 200, out);
}
