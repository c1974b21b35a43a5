/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The handlers of the core routes (table.c maps requests to them). A
 * handler checks its body against the route's schema (known fields only,
 * each of the right JSON type), calls one operation of ops.h, and turns the
 * result into JSON. An agent is told
 * "permission_denied" for every denial, whatever the reason the audit log
 * keeps, so that it cannot tell a missing credential from a forbidden one;
 * the one exception is secretless_only (see access_denied).
 *
 * Values travel only in the access response and the put request; both are
 * jansson objects whose memory api_json_init made wiping.
 */
#include "api/api_int.h"

#include "coffer/log.h"
#include "coffer/mem.h"
#include "coffer/text.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define LOG_MOD "api"

/* ---- Errors ------------------------------------------------------------------- */

/* Answers an operation's error with the fitting status; details only where safe. */
void api_fail_op(struct api_req *r, enum coffer_err e)
{
    const char *detail = coffer_err_detail();

    switch (e) {
    case COFFER_E_INVALID:
    case COFFER_E_LIMIT:
        api_error(r, 400, "invalid_request", detail[0] != '\0' ? detail : "invalid request");
        return;
    case COFFER_E_NOT_FOUND:
        api_error(r, 404, "not_found", "not found");
        return;
    case COFFER_E_STATE:
    case COFFER_E_CONFLICT:
    case COFFER_E_EXISTS:
        api_error(r, 409, "conflict", detail[0] != '\0' ? detail : "conflict");
        return;
    case COFFER_E_DB_UNAVAILABLE:
        /* The operator needs the cause (a lost connection, a full disk); the client does not. */
        coffer_warn(LOG_MOD, "request %s refused: %s", r->id, detail);
        api_error(r, 503, "database_unavailable", "the database is unavailable");
        return;
    case COFFER_E_TOKEN_UNAVAILABLE:
    case COFFER_E_TOKEN:
    case COFFER_E_PIN:
    case COFFER_E_FORKED:
        api_error(r, 503, "token_unavailable", "the key token is unavailable");
        return;
    default:
        coffer_error(LOG_MOD, "request %s failed: %s: %s", r->id, coffer_err_str(e), detail);
        api_error(r, 500, "internal", "internal error");
        return;
    }
}

/* Refuses fields the route does not know; true if all are known. */
bool api_only_fields(struct api_req *r, const char *const *known)
{
    const char *key;
    json_t *v;

    json_object_foreach(r->body, key, v)
    {
        bool ok = false;

        (void)v;
        for (const char *const *k = known; *k != NULL; k++) {
            ok = ok || strcmp(*k, key) == 0;
        }
        if (!ok) {
            char msg[160];

            if (coffer_text_ok(key, strlen(key), 64)) {
                (void)snprintf(msg, sizeof(msg), "unknown field '%s'", key);
            } else {
                (void)snprintf(msg, sizeof(msg), "unknown field");
            }
            api_error(r, 400, "invalid_request", msg);
            return false;
        }
    }
    return true;
}

/* A string field: *out NULL when absent; false (answered) when present but not a string. */
bool api_string_field(struct api_req *r, const char *name, const char **out, size_t *len)
{
    json_t *v = json_object_get(r->body, name);
    char msg[128];

    *out = NULL;
    if (len != NULL) {
        *len = 0;
    }
    if (v == NULL || json_is_null(v)) {
        return true;
    }
    if (!json_is_string(v)) {
        (void)snprintf(msg, sizeof(msg), "'%s' must be a string", name);
        api_error(r, 400, "invalid_request", msg);
        return false;
    }
    *out = json_string_value(v);
    if (len != NULL) {
        *len = json_string_length(v);
    }
    return true;
}

json_t *api_cred_json(const struct api_req *r)
{
    return json_pack("{s:s, s:s, s:s}", "org", r->params[0], "project", r->params[1], "credential",
                     r->n_params > 2 ? r->params[2] : "");
}

struct coffer_op_meta api_meta(const struct api_req *r)
{
    struct coffer_op_meta m = {.who = &r->who, .request_id = r->id, .client_addr = r->client_addr};

    return m;
}

/* ---- Handlers ------------------------------------------------------------------- */

/*
 * Liveness and readiness: this worker answers, and its database connection
 * works (a failed one is reopened by the ping). The token is not exercised
 * here: a health probe must not cost a token operation.
 */
void api_health(struct api_req *r)
{
    if (coffer_store_ping(r->api_ops->st) != COFFER_OK) {
        coffer_err_clear();
        api_reply(r, 503,
                  json_pack("{s:s, s:s}", "status", "unavailable", "database", "unavailable"));
        return;
    }
    api_reply(r, 200, json_pack("{s:s, s:s}", "status", "ok", "database", "ok"));
}

bool api_access_prepare(struct api_req *r, struct coffer_op_access *a)
{
    static const char *const known[] = {"purpose", NULL};

    memset(a, 0, sizeof(*a));
    if (!api_only_fields(r, known) ||
        !api_string_field(r, "purpose", &a->purpose, &a->purpose_len)) {
        return false;
    }
    a->org = r->params[0];
    a->project = r->params[1];
    a->name = r->params[2];
    return true;
}

/* ["a", "b"] of the comma-joined names of keys left out; NULL when out of memory. */
static json_t *expired_json(const char *names)
{
    json_t *arr = json_array();
    const char *at = names;

    while (arr != NULL && *at != '\0') {
        const char *end = strchr(at, ',');
        size_t len = end != NULL ? (size_t)(end - at) : strlen(at);

        if (json_array_append_new(arr, json_stringn(at, len)) != 0) {
            json_decref(arr);
            arr = NULL;
        }
        at = end != NULL ? end + 1 : at + len;
    }
    return arr;
}

/*
 * The answer to a denied access, by reason. Every reason but two is
 * "permission_denied", so that a missing credential looks like a forbidden
 * one. secretless_only and token_unavailable are decided only for an agent
 * that holds a grant for the current phase, which may know that the
 * credential exists: the first is told to use the credential through
 * Coffer, since asking again cannot succeed; the second that the token
 * could not open it, a fault of the server worth retrying (503).
 */
static void access_denied(struct api_req *r, enum coffer_authz_reason reason)
{
    switch (reason) {
    case COFFER_AUTHZ_SECRETLESS_ONLY:
        api_error(r, 403, "secretless_only",
                  "this credential is never revealed; use it through Coffer (POST "
                  ".../credentials/{name}/use) instead of reading its values");
        return;
    case COFFER_AUTHZ_TOKEN_UNAVAILABLE:
        api_error(r, 503, "token_unavailable",
                  "the key token could not open this credential; try again later");
        return;
    case COFFER_AUTHZ_GRANTED:
    case COFFER_AUTHZ_NO_GRANT:
    case COFFER_AUTHZ_WRONG_PHASE:
    case COFFER_AUTHZ_EXPIRED:
    case COFFER_AUTHZ_REVOKED:
    case COFFER_AUTHZ_NOT_FOUND:
    case COFFER_AUTHZ_NOT_PROJECT_MEMBER:
    case COFFER_AUTHZ_PURPOSE_MISSING:
    case COFFER_AUTHZ_APPROVAL_REQUIRED:
    case COFFER_AUTHZ_INTEGRITY_ERROR:
    default:
        api_error(r, 403, "permission_denied", "permission denied");
        return;
    }
}

void api_refresh_failed(struct api_req *r, const struct coffer_op_refresh *f)
{
    char msg[COFFER_OP_REFRESH_ERROR_MAX + 320];

    /* Only an agent that holds a grant gets here: it may know the credential exists. */
    (void)snprintf(msg, sizeof(msg),
                   "the access token has expired and could not be refreshed (%s): %s", f->error,
                   f->message);
    api_error(r, 502, "refresh_failed", msg);
}

void api_access_answer(struct api_req *r, struct coffer_op_access *a, enum coffer_err e)
{
    json_t *out = NULL;
    json_t *keys = NULL;
    json_t *expired = NULL;

    if (e != COFFER_OK) {
        coffer_keyset_free(&a->keys);
        coffer_free(a->expired_keys);
        a->expired_keys = NULL;
        api_fail_op(r, e);
        return;
    }
    if (!a->decision.allow) {
        coffer_keyset_free(&a->keys);
        coffer_free(a->expired_keys);
        a->expired_keys = NULL;
        if (a->refresh.failed && a->decision.reason == COFFER_AUTHZ_EXPIRED) {
            api_refresh_failed(r, &a->refresh);
            return;
        }
        access_denied(r, a->decision.reason);
        return;
    }
    if (a->expired_keys != NULL) {
        expired = expired_json(a->expired_keys);
        coffer_free(a->expired_keys);
        a->expired_keys = NULL;
        if (expired == NULL) {
            coffer_keyset_free(&a->keys);
            api_error(r, 500, "internal", "the expired keys could not be encoded");
            return;
        }
    }
    out = api_cred_json(r);
    keys = json_object();
    for (size_t i = 0; out != NULL && keys != NULL && i < coffer_keyset_count(a->keys); i++) {
        struct coffer_secret_view v = coffer_secret_view(coffer_keyset_value(a->keys, i));
        json_t *s = json_stringn((const char *)v.data, v.len);

        if (s == NULL || json_object_set_new(keys, coffer_keyset_name(a->keys, i), s) != 0) {
            json_decref(keys);
            keys = NULL;
        }
    }
    coffer_keyset_free(&a->keys);
    if (out == NULL || keys == NULL || json_object_set_new(out, "keys", keys) != 0 ||
        json_object_set_new(out, "version", json_integer(a->version)) != 0) {
        json_decref(out);
        json_decref(expired);
        api_error(r, 500, "internal", "a value could not be encoded as JSON text");
        return;
    }
    if (a->decision.purpose_unexpected) {
        (void)json_object_set_new(out, "purpose_unexpected", json_true());
    }
    if (expired != NULL && json_object_set_new(out, "expired_keys", expired) != 0) {
        json_decref(out);
        api_error(r, 500, "internal", "the expired keys could not be encoded");
        return;
    }
    api_reply(r, 200, out);
}

void api_access(struct api_req *r)
{
    struct coffer_op_access a;
    struct coffer_op_meta m = api_meta(r);

    if (!api_access_prepare(r, &a)) {
        return;
    }
    api_access_answer(r, &a, coffer_op_access(r->api_ops, &m, &a));
}

/* Parses "YYYY-MM-DDTHH:MM:SSZ" into microseconds since the epoch. */
bool api_parse_time(const char *s, int64_t *us)
{
    struct tm tm;
    const char *end;
    time_t t;

    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (end == NULL || *end != '\0') {
        return false;
    }
    t = timegm(&tm);
    if (t <= 0) {
        return false;
    }
    *us = (int64_t)t * 1000000;
    return true;
}

void api_format_time(int64_t us, char out[32])
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        out[0] = '\0';
    }
}

/* Reads the "grants" array into g (at most COFFER_POLICY_GRANTS_MAX); false if answered. */
bool api_read_grants(struct api_req *r, struct coffer_policy_grant *g, const char *(*phases)[32],
                     size_t *n)
{
    json_t *arr = json_object_get(r->body, "grants");
    json_t *item;
    size_t i;

    *n = 0;
    if (arr == NULL || json_is_null(arr)) {
        return true;
    }
    if (!json_is_array(arr) || json_array_size(arr) > COFFER_POLICY_GRANTS_MAX) {
        api_error(r, 400, "invalid_request", "'grants' must be an array of at most 256 grants");
        return false;
    }
    json_array_foreach(arr, i, item)
    {
        const char *key;
        json_t *v;
        json_t *ph;

        memset(&g[i], 0, sizeof(g[i]));
        if (!json_is_object(item)) {
            api_error(r, 400, "invalid_request", "each grant must be an object");
            return false;
        }
        json_object_foreach(item, key, v)
        {
            if (strcmp(key, "agent_type") != 0 && strcmp(key, "instance") != 0 &&
                strcmp(key, "phases") != 0) {
                api_error(r, 400, "invalid_request",
                          "a grant has only agent_type, instance and phases");
                return false;
            }
        }
        v = json_object_get(item, "agent_type");
        if (!json_is_string(v)) {
            api_error(r, 400, "invalid_request", "a grant needs 'agent_type', a string");
            return false;
        }
        g[i].agent_type = json_string_value(v);
        v = json_object_get(item, "instance");
        if (v != NULL && !json_is_null(v)) {
            if (!json_is_string(v)) {
                api_error(r, 400, "invalid_request", "a grant's 'instance' must be a string");
                return false;
            }
            g[i].instance = json_string_value(v);
        }
        ph = json_object_get(item, "phases");
        if (ph != NULL && !json_is_null(ph)) {
            size_t j;

            if (!json_is_array(ph) || json_array_size(ph) == 0 ||
                json_array_size(ph) > COFFER_POLICY_PHASES_MAX) {
                api_error(r, 400, "invalid_request",
                          "a grant's 'phases' must be a non-empty array of at most 32 names");
                return false;
            }
            json_array_foreach(ph, j, v)
            {
                if (!json_is_string(v)) {
                    api_error(r, 400, "invalid_request", "phases are strings");
                    return false;
                }
                phases[i][j] = json_string_value(v);
            }
            g[i].phases = phases[i];
            g[i].n_phases = json_array_size(ph);
        }
    }
    *n = json_array_size(arr);
    return true;
}

bool api_read_key_expiry(struct api_req *r, struct coffer_op_key_expiry *out, size_t *n)
{
    json_t *obj = json_object_get(r->body, "key_expires_at");
    const char *name;
    json_t *v;
    size_t i = 0;

    *n = 0;
    if (obj == NULL || json_is_null(obj)) {
        return true;
    }
    if (!json_is_object(obj) || json_object_size(obj) > COFFER_KEYS_MAX) {
        api_error(r, 400, "invalid_request",
                  "'key_expires_at' must be an object of at most 64 key names to times");
        return false;
    }
    /* jansson keeps one entry per name, so a key cannot be given two times here. */
    json_object_foreach(obj, name, v)
    {
        if (!json_is_string(v) || !api_parse_time(json_string_value(v), &out[i].expires_us)) {
            api_error(r, 400, "invalid_request",
                      "each time in 'key_expires_at' must be YYYY-MM-DDTHH:MM:SSZ");
            return false;
        }
        out[i].name = name;
        i++;
    }
    *n = i;
    return true;
}

/*
 * The "oauth2" object of a put, as compact JSON text into out (cap bytes),
 * *len 0 when absent. Its fields are the operation's to check.
 */
bool api_read_oauth2(struct api_req *r, char *out, size_t cap, size_t *len)
{
    json_t *v = json_object_get(r->body, "oauth2");
    size_t n;

    *len = 0;
    if (v == NULL || json_is_null(v)) {
        return true;
    }
    if (!json_is_object(v)) {
        api_error(r, 400, "invalid_request",
                  "'oauth2' must be an object: token_url, client_id, client_secret, client_auth");
        return false;
    }
    n = json_dumpb(v, out, cap - 1, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (n == 0 || n >= cap) {
        api_error(r, 400, "invalid_request", "'oauth2' is larger than 4096 bytes");
        return false;
    }
    out[n] = '\0';
    *len = n;
    return true;
}

/*
 * Reads a put's body into *p and a new key set *ks (the caller frees it;
 * the values are secrets), with grants, phases and key_expiry as storage
 * for those lists. False when answered (400 or 503).
 */
static bool put_read(struct api_req *r, struct coffer_op_put *p, struct coffer_keyset **ks,
                     struct coffer_policy_grant *grants, const char *(*phases)[32],
                     struct coffer_op_key_expiry *key_expiry, char *provider, size_t provider_cap)
{
    static const char *const known[] = {
        "type",           "tier",   "keys",        "ttl",
        "expires_at",     "grants", "description", "expire_on_phase_end",
        "key_expires_at", "oauth2", NULL};
    const char *ttl = NULL;
    const char *expires = NULL;
    json_t *keys;
    json_t *v;
    const char *name;
    enum coffer_err e;

    memset(p, 0, sizeof(*p));
    *ks = NULL;
    if (!api_only_fields(r, known) || !api_string_field(r, "type", &p->type, NULL) ||
        !api_string_field(r, "tier", &p->tier, NULL) || !api_string_field(r, "ttl", &ttl, NULL) ||
        !api_string_field(r, "expires_at", &expires, NULL) ||
        !api_string_field(r, "description", &p->description, NULL) ||
        !api_string_field(r, "expire_on_phase_end", &p->expire_on_phase_end, NULL) ||
        !api_read_grants(r, grants, phases, &p->n_grants) ||
        !api_read_key_expiry(r, key_expiry, &p->n_key_expiry) ||
        !api_read_oauth2(r, provider, provider_cap, &p->oauth2_provider_len)) {
        return false;
    }
    p->grants = p->n_grants > 0 ? grants : NULL;
    p->key_expiry = p->n_key_expiry > 0 ? key_expiry : NULL;
    p->oauth2_provider = p->oauth2_provider_len > 0 ? provider : NULL;
    if (p->type == NULL || p->tier == NULL) {
        api_error(r, 400, "invalid_request", "'type' and 'tier' are required");
        return false;
    }
    if (ttl != NULL && coffer_policy_ttl_parse(ttl, strlen(ttl), &p->ttl_s) != COFFER_OK) {
        api_error(r, 400, "invalid_request", "'ttl' is not a duration such as 90d or 12h");
        return false;
    }
    if (expires != NULL && !api_parse_time(expires, &p->expires_at_us)) {
        api_error(r, 400, "invalid_request", "'expires_at' must be YYYY-MM-DDTHH:MM:SSZ");
        return false;
    }
    keys = json_object_get(r->body, "keys");
    if (!json_is_object(keys) || json_object_size(keys) == 0) {
        api_error(r, 400, "invalid_request", "'keys' must be an object of names to strings");
        return false;
    }
    if ((e = coffer_keyset_new(ks)) != COFFER_OK) {
        api_fail_op(r, e);
        return false;
    }
    json_object_foreach(keys, name, v)
    {
        if (!json_is_string(v)) {
            coffer_keyset_free(ks);
            api_error(r, 400, "invalid_request", "every value in 'keys' must be a string");
            return false;
        }
        if ((e = coffer_keyset_add(*ks, name, json_string_value(v), json_string_length(v))) !=
            COFFER_OK) {
            coffer_keyset_free(ks);
            api_fail_op(r, e);
            return false;
        }
    }
    p->org = r->params[0];
    p->project = r->params[1];
    p->name = r->params[2];
    p->keys = *ks;
    return true;
}

void api_put_answer(struct api_req *r, const struct coffer_op_put *p, enum coffer_err e)
{
    char when[32];
    json_t *out;

    if (e != COFFER_OK) {
        api_fail_op(r, e);
        return;
    }
    out = api_cred_json(r);
    if (out != NULL) {
        (void)json_object_set_new(out, "version", json_integer(p->version));
        if (p->expires_us == COFFER_AUTHZ_NO_EXPIRY) {
            (void)json_object_set_new(out, "expires_at", json_null());
        } else {
            api_format_time(p->expires_us, when);
            (void)json_object_set_new(out, "expires_at", json_string(when));
        }
    }
    api_reply(r, p->version == 1 ? 201 : 200, out);
}

/* A put's grants while it is read and written: a worker runs one handler at a time. */
static struct coffer_policy_grant put_grants[COFFER_POLICY_GRANTS_MAX];
static const char *put_phases[COFFER_POLICY_GRANTS_MAX][32];

void api_put(struct api_req *r)
{
    struct coffer_op_key_expiry key_expiry[COFFER_KEYS_MAX];
    char provider[COFFER_OAUTH2_PROVIDER_JSON_MAX + 1];
    struct coffer_op_put p;
    struct coffer_op_meta m = api_meta(r);
    struct coffer_keyset *ks = NULL;
    enum coffer_err e;

    if (!put_read(r, &p, &ks, put_grants, put_phases, key_expiry, provider, sizeof(provider))) {
        return;
    }
    e = coffer_op_put(r->api_ops, &m, &p);
    coffer_keyset_free(&ks);
    api_put_answer(r, &p, e);
}

/* Whether a body field is given (present and not null). */
static bool given(const struct api_req *r, const char *field)
{
    json_t *v = json_object_get(r->body, field);

    return v != NULL && !json_is_null(v);
}

bool api_put_prepare(struct api_req *r)
{
    json_t *type = json_object_get(r->body, "type");

    if (given(r, "grants") || given(r, "key_expires_at") || given(r, "oauth2") ||
        (json_is_string(type) && strcmp(json_string_value(type), "oauth2") == 0)) {
        api_put(r); /* lists of its own, or a provider: written and answered alone */
        return false;
    }
    {
        struct coffer_op_key_expiry key_expiry[COFFER_KEYS_MAX];
        char provider[COFFER_OAUTH2_PROVIDER_JSON_MAX + 1];

        /* None of the lists is given, so the queued put points into none of this storage. */
        return put_read(r, &r->put, &r->put_keys, put_grants, put_phases, key_expiry, provider,
                        sizeof(provider));
    }
}

void api_revoke(struct api_req *r)
{
    static const char *const known[] = {"reason", NULL};
    struct coffer_op_revoke v = {0};
    struct coffer_op_meta m = api_meta(r);
    json_t *out;
    enum coffer_err e;

    if (!api_only_fields(r, known) || !api_string_field(r, "reason", &v.reason, NULL)) {
        return;
    }
    if (v.reason == NULL) {
        api_error(r, 400, "invalid_request", "'reason' is required");
        return;
    }
    v.org = r->params[0];
    v.project = r->params[1];
    v.name = r->params[2];
    if ((e = coffer_op_revoke(r->api_ops, &m, &v)) != COFFER_OK) {
        api_fail_op(r, e);
        return;
    }
    out = api_cred_json(r);
    if (out != NULL) {
        (void)json_object_set_new(out, "revoked", json_true());
    }
    api_reply(r, 200, out);
}

void api_phase(struct api_req *r)
{
    static const char *const known[] = {"phase", NULL};
    struct coffer_store_phase_result res;
    struct coffer_op_meta m = api_meta(r);
    struct coffer_arena *a = NULL;
    const char *to = NULL;
    json_t *out;
    json_t *expired;
    enum coffer_err e;

    if (!api_only_fields(r, known) || !api_string_field(r, "phase", &to, NULL)) {
        return;
    }
    if (to == NULL) {
        api_error(r, 400, "invalid_request", "'phase' is required");
        return;
    }
    if ((e = coffer_arena_new(0, &a)) != COFFER_OK ||
        (e = coffer_op_phase(r->api_ops, &m, r->params[0], r->params[1], to, a, &res)) !=
            COFFER_OK) {
        coffer_arena_free(&a);
        api_fail_op(r, e);
        return;
    }
    expired = json_array();
    for (size_t i = 0; expired != NULL && i < res.n_expired; i++) {
        (void)json_array_append_new(expired, json_string(res.expired[i]));
    }
    out = json_pack("{s:s, s:s, s:s, s:b, s:o}", "org", r->params[0], "project", r->params[1],
                    "phase", res.to, "changed", res.changed, "expired",
                    expired != NULL ? expired : json_array());
    if (out != NULL && res.from[0] != '\0') {
        (void)json_object_set_new(out, "previous_phase", json_string(res.from));
    }
    coffer_arena_free(&a);
    api_reply(r, 200, out);
}
