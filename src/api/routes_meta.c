/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The metadata routes: GET .../credentials and GET .../credentials/{name}
 * answer what a credential is (name, type, tier, version, times, expiry,
 * revocation, description, key names and their own expiry) through
 * coffer_op_metadata, never what it holds. An agent is told "permission_denied" for every refusal,
 * whatever reason the audit log keeps; an admin of another org is told
 * "not_found", as for an org that does not exist.
 *
 * This file must never put a value into a response: the operation reads
 * none, and nothing here asks the keys module for one.
 */
#include "api/api_int.h"

#include "coffer/arena.h"

#include <string.h>

/* "YYYY-MM-DDTHH:MM:SSZ" of a time in microseconds, as a JSON string. */
static json_t *time_json(int64_t us)
{
    char when[32];

    api_format_time(us, when);
    return when[0] != '\0' ? json_string(when) : NULL;
}

/* "key_expires_at": {"name": time} of the keys that have an expiry of their own. */
static bool add_key_expiry(json_t *o, const struct coffer_store_meta *c)
{
    json_t *times = json_object();

    for (size_t i = 0; times != NULL && i < c->n_keys; i++) {
        json_t *t;

        if (c->key_expires_us[i] == COFFER_AUTHZ_NO_EXPIRY) {
            continue;
        }
        if ((t = time_json(c->key_expires_us[i])) == NULL ||
            json_object_set_new(times, c->keys[i], t) != 0) {
            json_decref(times);
            times = NULL;
        }
    }
    if (times == NULL) {
        return false;
    }
    if (json_object_size(times) == 0) {
        json_decref(times);
        return true;
    }
    return json_object_set_new(o, "key_expires_at", times) == 0;
}

/* One credential's metadata as the routes show it; NULL when out of memory. */
static json_t *meta_json(const struct coffer_store_meta *c)
{
    json_t *keys = json_array();
    json_t *o;

    for (size_t i = 0; keys != NULL && i < c->n_keys; i++) {
        if (json_array_append_new(keys, json_string(c->keys[i])) != 0) {
            json_decref(keys);
            keys = NULL;
        }
    }
    if (keys == NULL) {
        return NULL;
    }
    o = json_pack("{s:s, s:s, s:s, s:I, s:o, s:o, s:o, s:b, s:o, s:o}", "name", c->name, "type",
                  c->type, "tier", c->tier, "version", (json_int_t)c->version, "created_at",
                  time_json(c->created_us), "updated_at", time_json(c->updated_us), "expires_at",
                  c->expires_us == COFFER_AUTHZ_NO_EXPIRY ? json_null() : time_json(c->expires_us),
                  "revoked", c->revoked, "description",
                  c->description != NULL ? json_string(c->description) : json_null(), "keys", keys);
    if (o != NULL && c->key_expires_us != NULL && !add_key_expiry(o, c)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/*
 * Runs the operation for the route's parameters; name is NULL for a list.
 * Answers every refusal and error itself and returns false then.
 */
static bool run(struct api_req *r, const char *name, struct coffer_arena **a,
                struct coffer_op_metadata *q)
{
    struct coffer_op_meta m = api_meta(r);
    enum coffer_err e;

    memset(q, 0, sizeof(*q));
    q->org = r->params[0];
    q->project = r->params[1];
    q->name = name;
    if ((e = coffer_arena_new(0, a)) != COFFER_OK ||
        (e = coffer_op_metadata(r->api_ops, &m, *a, q)) != COFFER_OK) {
        api_fail_op(r, e);
        return false;
    }
    if (!q->allowed) {
        api_error(r, 403, "permission_denied", "permission denied");
        return false;
    }
    return true;
}

void api_meta_list(struct api_req *r)
{
    struct coffer_arena *a = NULL;
    struct coffer_op_metadata q;
    json_t *list;
    json_t *out = NULL;

    if (!run(r, NULL, &a, &q)) {
        coffer_arena_free(&a);
        return;
    }
    list = json_array();
    for (size_t i = 0; list != NULL && i < q.list.n; i++) {
        if (json_array_append_new(list, meta_json(&q.list.items[i])) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    coffer_arena_free(&a);
    if (list == NULL || (out = json_pack("{s:o}", "credentials", list)) == NULL) {
        api_error(r, 500, "internal", "could not encode the credentials");
        return;
    }
    api_reply(r, 200, out);
}

void api_meta_get(struct api_req *r)
{
    struct coffer_arena *a = NULL;
    struct coffer_op_metadata q;
    json_t *out = NULL;

    if (!run(r, r->params[2], &a, &q)) {
        coffer_arena_free(&a);
        return;
    }
    if (q.list.n == 1) {
        out = meta_json(&q.list.items[0]);
    }
    coffer_arena_free(&a);
    if (out == NULL) {
        api_error(r, 500, "internal", "could not encode the credential");
        return;
    }
    api_reply(r, 200, out);
}
