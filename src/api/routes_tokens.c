/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The handlers of the bearer-token routes (table.c maps requests to them):
 * an admin issues a token for a principal of its org, and revokes one.
 *
 * The answer that issues a token is the only place the token ever appears:
 * it travels from a struct coffer_secret into a jansson string, whose
 * memory api_json_init made wiping, and the secret is freed at once. This
 * file never logs a token and never puts one into an error.
 */
#include "api/api_int.h"

#include "coffer/mem.h"

#include <stdio.h>
#include <string.h>

void api_token_create(struct api_req *r)
{
    static const char *const known[] = {"principal", "ttl", "description", NULL};
    struct coffer_op_token_create t;
    struct coffer_op_meta m = api_meta(r);
    struct coffer_secret_view v;
    const char *ttl = NULL;
    char id[COFFER_UUID_STR_LEN];
    char when[32];
    json_t *out;
    enum coffer_err e;

    memset(&t, 0, sizeof(t));
    if (!api_only_fields(r, known) || !api_string_field(r, "principal", &t.principal, NULL) ||
        !api_string_field(r, "ttl", &ttl, NULL) ||
        !api_string_field(r, "description", &t.description, NULL)) {
        return;
    }
    if (t.principal == NULL) {
        api_error(r, 400, "invalid_request",
                  "'principal' is required: agent/<type>/<instance> or admin/<name>");
        return;
    }
    if (ttl != NULL && (coffer_policy_ttl_parse(ttl, strlen(ttl), &t.ttl_s) != COFFER_OK ||
                        t.ttl_s < 1 || t.ttl_s > COFFER_TOKEN_TTL_MAX)) {
        coffer_err_clear();
        api_error(r, 400, "invalid_request",
                  "'ttl' is a duration such as 12h or 7d, of at most 30 days");
        return;
    }
    t.org = r->params[0];
    if ((e = coffer_op_token_create(r->api_ops, &m, &t)) != COFFER_OK) {
        api_fail_op(r, e);
        return;
    }
    v = coffer_secret_view(t.token);
    coffer_uuid_format(&t.id, id);
    api_format_time(t.expires_us, when);
    out = json_pack("{s:s, s:s#, s:s, s:s, s:s}", "id", id, "token", (const char *)v.data,
                    (int)v.len, "expires_at", when, "principal", t.principal, "org", r->params[0]);
    coffer_secret_free(&t.token);
    if (out == NULL) {
        /* The token was stored but cannot be shown: it is useless, and expires unused. */
        api_error(r, 500, "internal", "the token could not be encoded");
        return;
    }
    api_reply(r, 201, out);
}

void api_token_revoke(struct api_req *r)
{
    static const char *const known[] = {"reason", NULL};
    struct coffer_op_token_revoke t;
    struct coffer_op_meta m = api_meta(r);
    json_t *out;
    enum coffer_err e;

    memset(&t, 0, sizeof(t));
    if (!api_only_fields(r, known) || !api_string_field(r, "reason", &t.reason, NULL)) {
        return;
    }
    if (t.reason == NULL) {
        api_error(r, 400, "invalid_request", "'reason' is required");
        return;
    }
    t.org = r->params[0];
    t.id = r->params[1];
    if ((e = coffer_op_token_revoke(r->api_ops, &m, &t)) != COFFER_OK) {
        api_fail_op(r, e);
        return;
    }
    out = json_pack("{s:s, s:s, s:b}", "org", r->params[0], "id", r->params[1], "revoked", 1);
    api_reply(r, 200, out);
}
