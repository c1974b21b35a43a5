/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the JSON bodies of the API routes as far as they are read without
 * a database: the bytes are loaded as http.c loads a body (jansson,
 * duplicate keys refused, an object required), then given to each field
 * reader of src/api/routes.c in turn, as the handlers call them: the
 * unknown-field check and the string fields of a put and an access
 * (api_only_fields, api_string_field, api_access_prepare), the grants
 * (api_read_grants), the per-key expiry (api_read_key_expiry, api_parse_time)
 * and the oauth2 provider (api_read_oauth2, then the operation's own check
 * ops_oauth2_put_check, which parses it). A reader that refuses answers 400
 * on a request not bound to a connection, which libevent then frees.
 * jansson allocates through the wiping allocator, as in cofferd.
 */
#include "fuzz.h"

#include "api/api_int.h"
#include "api/ops_int.h"
#include "coffer/api.h"
#include "coffer/keys.h"

#include <event2/http.h>
#include <string.h>

/* Room for the readers, as api_put keeps it. */
static struct coffer_policy_grant grants[COFFER_POLICY_GRANTS_MAX];
static const char *phases[COFFER_POLICY_GRANTS_MAX][32];
static struct coffer_op_key_expiry key_expiry[COFFER_KEYS_MAX];
static char provider[COFFER_OAUTH2_PROVIDER_JSON_MAX + 1];

/* A fresh request for one reader; false when none could be made. */
static bool fresh(struct api_req *r)
{
    r->req = evhttp_request_new(NULL, NULL);
    return r->req != NULL;
}

/* After a reader: a reader that answered (false) has handed the request to libevent. */
static void done(struct api_req *r, bool ok)
{
    if (ok) {
        evhttp_request_free(r->req);
    }
    r->req = NULL;
}

static void put_fields(struct api_req *r)
{
    static const char *const known[] = {
        "type",           "tier",   "keys",        "ttl",
        "expires_at",     "grants", "description", "expire_on_phase_end",
        "key_expires_at", "oauth2", NULL};
    const char *names[] = {"type",       "tier",        "ttl",
                           "expires_at", "description", "expire_on_phase_end"};
    const char *s = NULL;
    size_t len = 0;
    int64_t us = 0;
    bool ok;

    if (fresh(r)) {
        done(r, api_only_fields(r, known));
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (fresh(r)) {
            ok = api_string_field(r, names[i], &s, &len);
            done(r, ok);
            if (ok && s != NULL) {
                (void)api_parse_time(s, &us);
            }
        }
    }
}

static void oauth2(struct api_req *r, size_t n_expiry)
{
    struct coffer_op_put p = {0};
    struct coffer_keyset *ks = NULL;
    bool ok;

    if (!fresh(r)) {
        return;
    }
    ok = api_read_oauth2(r, provider, sizeof(provider), &p.oauth2_provider_len);
    done(r, ok);
    if (!ok || p.oauth2_provider_len == 0 || coffer_keyset_new(&ks) != COFFER_OK) {
        return;
    }
    if (coffer_keyset_add(ks, "refresh_token", "r", 1) == COFFER_OK) {
        p.type = "oauth2";
        p.name = "fuzz";
        p.keys = ks;
        p.key_expiry = key_expiry;
        p.n_key_expiry = n_expiry;
        p.oauth2_provider = provider;
        (void)ops_oauth2_put_check(&p);
    }
    coffer_keyset_free(&ks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct api_req r;
    struct coffer_op_access acc;
    json_error_t err;
    size_t n = 0;
    size_t n_expiry = 0;
    bool ok;
    static bool started;

    /* cofferd's own start: jansson allocates through the wiping allocator. */
    if (!started) {
        coffer_api_json_init();
        started = true;
    }
    memset(&r, 0, sizeof(r));
    (void)snprintf(r.id, sizeof(r.id), "%s", "0123456789abcdef0123456789abcdef");
    (void)snprintf(r.params[0], sizeof(r.params[0]), "%s", "dev");
    (void)snprintf(r.params[1], sizeof(r.params[1]), "%s", "demo");
    (void)snprintf(r.params[2], sizeof(r.params[2]), "%s", "fuzz");
    r.n_params = 3;
    r.body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err);
    if (r.body == NULL) {
        return 0;
    }
    if (!json_is_object(r.body)) {
        json_decref(r.body);
        return 0;
    }
    put_fields(&r);
    if (fresh(&r)) {
        done(&r, api_access_prepare(&r, &acc));
    }
    if (fresh(&r)) {
        done(&r, api_read_grants(&r, grants, phases, &n));
    }
    if (fresh(&r)) {
        ok = api_read_key_expiry(&r, key_expiry, &n_expiry);
        done(&r, ok);
        if (!ok) {
            n_expiry = 0;
        }
    }
    oauth2(&r, n_expiry);
    json_decref(r.body);
    return 0;
}
