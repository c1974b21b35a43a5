/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OAuth2 credentials that Coffer keeps fresh: the provider an admin gives a
 * version (checked, stored as canonical JSON), the test an access or a
 * brokered call makes of its access token's expiry, and the refresh itself
 * (RFC 6749 section 6, the refresh-token grant).
 *
 * One refresh runs at a time per credential, across servers: the refresh
 * lock (store) is held from before the expiry is judged again until the new
 * version is committed, so a second server that waited finds it fresh and
 * sends nothing. The refresh is on record before the refresh token leaves
 * Coffer (an event committed first), and its outcome after. A refusal of
 * the provider never removes or changes the current version.
 *
 * This file must never log, audit or put into a message a token, the client
 * secret, a body or a URL's path or query: events and messages name the
 * host, the HTTP status and the provider's error code (checked to be a
 * short code, never its description, which may quote anything). Values
 * live in coffer_secret buffers, in the key sets, and in the copies libcurl
 * and jansson make, which are wiped (use_free_headers, coffer_wipe_free).
 */
#include "api/ops_int.h"
#include "api/use_int.h"

#include "coffer/broker.h"
#include "coffer/log.h"
#include "coffer/mem.h"
#include "coffer/secret.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define LOG_MOD "oauth2"
#define DETAIL_MAX 512
#define CLIENT_ID_MAX 255
#define US_PER_S INT64_C(1000000)
/* The longest lifetime an access token's expires_in is taken at: ten years. */
#define EXPIRES_IN_MAX INT64_C(315360000)
/* Between two tries of a refresh lock another server holds. */
#define LOCK_POLL_NS 20000000L

/* ---- The provider --------------------------------------------------------------------- */

struct provider {
    struct coffer_broker_url url;
    char client_id[CLIENT_ID_MAX + 1];
    char secret_credential[COFFER_NAME_MAX + 1]; /* "" for a public client */
    char secret_key[COFFER_KEY_NAME_MAX + 1];
    bool auth_post; /* client_secret_post; else client_secret_basic */
};

static void provider_cleanup(struct provider *p)
{
    coffer_broker_url_cleanup(&p->url);
    memset(p, 0, sizeof(*p));
}

static bool client_id_ok(const char *s, size_t len)
{
    if (len == 0 || len > CLIENT_ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        /* RFC 6749 appendix A.1: VSCHAR. */
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

/* The client_secret object: {"credential": name, "key": key name}. */
static enum coffer_err read_secret_ref(json_t *o, struct provider *p)
{
    json_t *cred = json_object_get(o, "credential");
    json_t *key = json_object_get(o, "key");
    const char *name;
    void *it;

    if (!json_is_object(o)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "oauth2.client_secret must be an object {\"credential\", \"key\"}");
    }
    for (it = json_object_iter(o); it != NULL; it = json_object_iter_next(o, it)) {
        name = json_object_iter_key(it);
        if (strcmp(name, "credential") != 0 && strcmp(name, "key") != 0) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "oauth2.client_secret: unknown field; it has credential and key");
        }
    }
    if (!json_is_string(cred) || !ops_name_ok(json_string_value(cred))) {
        return coffer_err_set(
            COFFER_E_INVALID,
            "oauth2.client_secret.credential must name a credential of the project");
    }
    if (!json_is_string(key) || !coffer_keys_name_valid(json_string_value(key))) {
        return coffer_err_set(COFFER_E_INVALID, "oauth2.client_secret.key must be a key name");
    }
    (void)snprintf(p->secret_credential, sizeof(p->secret_credential), "%s",
                   json_string_value(cred));
    (void)snprintf(p->secret_key, sizeof(p->secret_key), "%s", json_string_value(key));
    return COFFER_OK;
}

/* Parses and checks a provider's JSON (an admin's, or the stored canonical form). */
static enum coffer_err provider_parse(const char *json, size_t len, struct provider *p)
{
    static const char *const known[] = {"token_url", "client_id", "client_secret", "client_auth",
                                        NULL};
    json_error_t jerr;
    json_t *root;
    json_t *v;
    void *it;
    enum coffer_err r = COFFER_OK;

    memset(p, 0, sizeof(*p));
    if (len > COFFER_OAUTH2_PROVIDER_JSON_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "oauth2: more than %d bytes",
                              COFFER_OAUTH2_PROVIDER_JSON_MAX);
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        return coffer_err_set(COFFER_E_INVALID, "oauth2 must be a JSON object");
    }
    for (it = json_object_iter(root); it != NULL && r == COFFER_OK;
         it = json_object_iter_next(root, it)) {
        const char *name = json_object_iter_key(it);
        bool found = false;

        for (const char *const *k = known; *k != NULL; k++) {
            found = found || strcmp(*k, name) == 0;
        }
        if (!found) {
            r = coffer_err_set(COFFER_E_INVALID,
                               "oauth2: unknown field; it has token_url, client_id, "
                               "client_secret and client_auth");
        }
    }
    if (r != COFFER_OK) {
        goto out;
    }
    v = json_object_get(root, "token_url");
    if (!json_is_string(v)) {
        r = coffer_err_set(COFFER_E_INVALID,
                           "oauth2.token_url is required: the provider's https token endpoint");
        goto out;
    }
    if ((r = coffer_broker_url_parse(json_string_value(v), json_string_length(v), &p->url)) !=
        COFFER_OK) {
        r = coffer_err_wrap(r, "oauth2.token_url");
        goto out;
    }
    v = json_object_get(root, "client_id");
    if (!json_is_string(v) || !client_id_ok(json_string_value(v), json_string_length(v))) {
        r = coffer_err_set(COFFER_E_INVALID,
                           "oauth2.client_id is required: 1 to 255 printable ASCII characters");
        goto out;
    }
    (void)snprintf(p->client_id, sizeof(p->client_id), "%s", json_string_value(v));
    v = json_object_get(root, "client_secret");
    if (v != NULL && (r = read_secret_ref(v, p)) != COFFER_OK) {
        goto out;
    }
    v = json_object_get(root, "client_auth");
    if (v != NULL) {
        const char *a = json_is_string(v) ? json_string_value(v) : "";

        if (strcmp(a, "post") == 0) {
            p->auth_post = true;
        } else if (strcmp(a, "basic") != 0) {
            r = coffer_err_set(COFFER_E_INVALID, "oauth2.client_auth must be basic or post");
            goto out;
        }
        if (p->secret_credential[0] == '\0') {
            r = coffer_err_set(COFFER_E_INVALID, "oauth2.client_auth needs a client_secret");
            goto out;
        }
    }
out:
    json_decref(root);
    if (r != COFFER_OK) {
        provider_cleanup(p);
    }
    return r;
}

/* The canonical JSON of p: fields in a fixed order, the URL in its canonical form. */
static enum coffer_err provider_canon(const struct provider *p, char **out)
{
    json_t *root = json_object();
    json_t *ref = NULL;
    char *url = NULL;
    char text[COFFER_OAUTH2_PROVIDER_JSON_MAX + 1];
    size_t len;
    enum coffer_err r;

    *out = NULL;
    if (root == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "oauth2 provider");
    }
    if ((r = coffer_broker_url_format(&p->url, &url)) != COFFER_OK) {
        goto out;
    }
    if (json_object_set_new(root, "token_url", json_string(url)) != 0 ||
        json_object_set_new(root, "client_id", json_string(p->client_id)) != 0) {
        r = coffer_err_set(COFFER_E_NOMEM, "oauth2 provider");
        goto out;
    }
    if (p->secret_credential[0] != '\0') {
        if ((ref = json_object()) == NULL ||
            json_object_set_new(ref, "credential", json_string(p->secret_credential)) != 0 ||
            json_object_set_new(ref, "key", json_string(p->secret_key)) != 0 ||
            json_object_set(root, "client_secret", ref) != 0 ||
            json_object_set_new(root, "client_auth",
                                json_string(p->auth_post ? "post" : "basic")) != 0) {
            r = coffer_err_set(COFFER_E_NOMEM, "oauth2 provider");
            goto out;
        }
    }
    len = json_dumpb(root, text, sizeof(text) - 1, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (len == 0 || len > COFFER_OAUTH2_PROVIDER_JSON_MAX) {
        r = coffer_err_set(COFFER_E_INVALID, "oauth2: the provider takes more than %d bytes",
                           COFFER_OAUTH2_PROVIDER_JSON_MAX);
        goto out;
    }
    text[len] = '\0';
    if ((*out = coffer_strdup(text)) == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "oauth2 provider");
    }
out:
    json_decref(ref);
    json_decref(root);
    coffer_free(url);
    return r;
}

/* ---- Put: an admin gives a version its provider -------------------------------------- */

enum coffer_err ops_oauth2_put_check(const struct coffer_op_put *p)
{
    struct provider prov;
    bool expiry = false;
    enum coffer_err r;

    if (p->oauth2_provider == NULL) {
        return COFFER_OK;
    }
    if (p->type == NULL || strcmp(p->type, "oauth2") != 0) {
        return coffer_err_set(COFFER_E_INVALID, "only an oauth2 credential has an oauth2 provider");
    }
    if (p->keys == NULL || coffer_keyset_get(p->keys, "refresh_token") == NULL) {
        return coffer_err_set(COFFER_E_INVALID,
                              "an oauth2 credential that Coffer refreshes needs a key named "
                              "refresh_token");
    }
    for (size_t i = 0; i < p->n_key_expiry; i++) {
        expiry = expiry || (p->key_expiry[i].name != NULL &&
                            strcmp(p->key_expiry[i].name, "access_token") == 0);
    }
    if (!expiry) {
        return coffer_err_set(COFFER_E_INVALID,
                              "an oauth2 credential that Coffer refreshes needs the expiry of its "
                              "access_token in key_expires_at");
    }
    if ((r = provider_parse(p->oauth2_provider, p->oauth2_provider_len, &prov)) != COFFER_OK) {
        return r;
    }
    if (strcmp(prov.secret_credential, p->name) == 0) {
        r = coffer_err_set(COFFER_E_INVALID,
                           "oauth2.client_secret must name another credential than this one");
    }
    provider_cleanup(&prov);
    return r;
}

enum coffer_err ops_oauth2_put_write(struct coffer_ops *o, const struct coffer_op_put *p,
                                     const struct coffer_uuid *org_id,
                                     const struct coffer_uuid *credential_id, uint32_t version)
{
    struct provider prov;
    char *canon = NULL;
    enum coffer_err r;

    if (p->oauth2_provider == NULL) {
        return COFFER_OK;
    }
    if ((r = provider_parse(p->oauth2_provider, p->oauth2_provider_len, &prov)) != COFFER_OK) {
        return r;
    }
    if ((r = provider_canon(&prov, &canon)) == COFFER_OK) {
        r = coffer_store_cred_set_oauth2(o->st, org_id, credential_id, version, canon);
    }
    coffer_free(canon);
    provider_cleanup(&prov);
    return r;
}

/* ---- On an access ------------------------------------------------------------------- */

bool ops_oauth2_due(const struct coffer_store_access *acc, int64_t now_us)
{
    return acc->found && acc->oauth2_provider != NULL && acc->access_token_expires_us != 0 &&
           acc->access_token_expires_us - now_us <= use_refresh_margin_us();
}

enum coffer_err ops_oauth2_withhold(const struct coffer_store_access *acc,
                                    struct coffer_keyset **keys)
{
    static const char *const refresh[] = {"refresh_token"};
    struct coffer_keyset *kept = NULL;
    enum coffer_err r;

    if (acc->oauth2_provider == NULL || *keys == NULL ||
        coffer_keyset_get(*keys, "refresh_token") == NULL) {
        return COFFER_OK;
    }
    if ((r = coffer_keyset_copy_without(*keys, refresh, 1, &kept)) != COFFER_OK) {
        return r;
    }
    coffer_keyset_free(keys);
    *keys = kept;
    return COFFER_OK;
}

/* ---- The refresh ---------------------------------------------------------------------- */

/* Everything one refresh holds; wiped and freed by refresh_cleanup. */
struct refresh {
    struct coffer_arena *arena;
    struct coffer_authz_input in;
    struct coffer_store_access acc;
    struct provider prov;
    struct coffer_keyset *keys;   /* the current version's values */
    struct coffer_keyset *client; /* client_id and client_secret */
    struct coffer_keyset *next;   /* the values of the version to store */
    struct use_answer answer;
    long status;
    int64_t sent_us; /* the database's clock just before the grant was sent */
    int64_t expires_in_s;
    char where[COFFER_BROKER_HOST_MAX + 32]; /* "POST https://host[:port]" */
};

static void refresh_cleanup(struct refresh *f)
{
    provider_cleanup(&f->prov);
    coffer_keyset_free(&f->keys);
    coffer_keyset_free(&f->client);
    coffer_keyset_free(&f->next);
    use_answer_cleanup(&f->answer);
    coffer_arena_free(&f->arena);
}

static void fail(struct coffer_op_refresh *out, const char *error, const char *fmt, ...)
    COFFER_PRINTF(3, 4);

static void fail(struct coffer_op_refresh *out, const char *error, const char *fmt, ...)
{
    va_list ap;

    out->failed = true;
    (void)snprintf(out->error, sizeof(out->error), "%s", error);
    va_start(ap, fmt);
    (void)vsnprintf(out->message, sizeof(out->message), fmt, ap);
    va_end(ap);
}

/* A refresh event: "POST https://host -> what", its outcome and the version it names. */
static enum coffer_err record(struct coffer_ops *o, const struct coffer_op_meta *m,
                              const char *project, const char *name, const struct refresh *f,
                              bool ok, uint32_t version, const char *what)
{
    struct coffer_audit_event e;
    char detail[DETAIL_MAX];
    int64_t id = 0;

    ops_event_init(&e, COFFER_AUDIT_REFRESH, m, m->who->org, project, name);
    e.allowed = ok;
    e.reason = ok ? coffer_err_str(COFFER_OK) : "refresh_failed";
    e.version = version;
    e.phase = f->in.phase;
    (void)snprintf(detail, sizeof(detail), "%s -> %s", f->where, what);
    e.detail = detail;
    return coffer_store_audit_insert(o->st, &e, &id);
}

/*
 * Waits for the credential's refresh lock: at most the time a call may take
 * and a margin, since the holder is in one. *got false when it did not come.
 */
static enum coffer_err lock_wait(struct coffer_store *st, const struct coffer_uuid *id, bool *got)
{
    const struct timespec pause = {.tv_sec = 0, .tv_nsec = LOCK_POLL_NS};
    long tries = (use_total_ms() + 5000) / (LOCK_POLL_NS / 1000000L) + 1;
    enum coffer_err r;

    for (long i = 0; i < tries; i++) {
        if ((r = coffer_store_refresh_lock_try(st, id, got)) != COFFER_OK || *got) {
            return r;
        }
        (void)nanosleep(&pause, NULL);
    }
    return COFFER_OK;
}

/* Loads the credential inside the open transaction; found false when it is gone. */
static enum coffer_err load(struct coffer_ops *o, const struct coffer_op_meta *m,
                            const char *project, const char *name, struct refresh *f)
{
    memset(&f->in, 0, sizeof(f->in));
    memset(&f->acc, 0, sizeof(f->acc));
    f->in.principal.org = m->who->org;
    f->in.principal.agent_type = m->who->agent_type;
    f->in.principal.instance = m->who->instance;
    return coffer_store_access_load(o->st, m->who->org, project, name, f->arena, &f->in, &f->acc);
}

/* The client's id and secret into f->client, or a failure in out. */
static enum coffer_err read_client(struct coffer_ops *o, const struct coffer_op_meta *m,
                                   const char *project, struct refresh *f,
                                   struct coffer_op_refresh *out)
{
    struct coffer_authz_input in;
    struct coffer_store_access acc;
    struct coffer_keys_read_info info;
    struct coffer_keyset *ks = NULL;
    const struct coffer_secret *secret;
    enum coffer_err r;

    if ((r = coffer_keyset_new(&f->client)) != COFFER_OK ||
        (r = coffer_keyset_add(f->client, "client_id", f->prov.client_id,
                               strlen(f->prov.client_id))) != COFFER_OK) {
        return r;
    }
    if (f->prov.secret_credential[0] == '\0') {
        return COFFER_OK;
    }
    memset(&in, 0, sizeof(in));
    memset(&acc, 0, sizeof(acc));
    if ((r = coffer_store_access_load(o->st, m->who->org, project, f->prov.secret_credential,
                                      f->arena, &in, &acc)) != COFFER_OK) {
        return r;
    }
    if (!acc.found || in.revoked ||
        (in.expires_us != COFFER_AUTHZ_NO_EXPIRY && in.expires_us <= in.now_us)) {
        fail(out, "client_secret_unavailable",
             "the client secret credential %s is missing, revoked or expired",
             f->prov.secret_credential);
        return COFFER_OK;
    }
    r = coffer_keys_cred_read(o->k, o->st, &acc.org_id, &acc.project_id, f->prov.secret_credential,
                              acc.current_version, &ks, &info);
    if (r == COFFER_E_INTEGRITY || r == COFFER_E_STATE || r == COFFER_E_NOT_FOUND) {
        fail(out, "client_secret_unavailable", "the client secret credential %s cannot be read",
             f->prov.secret_credential);
        return COFFER_OK;
    }
    if (r != COFFER_OK) {
        return r;
    }
    secret = coffer_keyset_get(ks, f->prov.secret_key);
    if (secret == NULL) {
        fail(out, "client_secret_unavailable", "credential %s has no key %s",
             f->prov.secret_credential, f->prov.secret_key);
    } else {
        struct coffer_secret_view v = coffer_secret_view(secret);

        r = coffer_keyset_add(f->client, "client_secret", v.data, v.len);
    }
    coffer_keyset_free(&ks);
    return r;
}

/* Expands tmpl (query-encoded values) from ks into a new secret. */
static enum coffer_err expand(const char *tmpl, const struct coffer_keyset *ks,
                              struct coffer_secret **out)
{
    return coffer_broker_template_expand(tmpl, strlen(tmpl), ks, COFFER_BROKER_ENC_QUERY, out);
}

/*
 * The grant: a form body with the refresh token (and the client's id and
 * secret for post, the id alone for a public client), and for basic an
 * Authorization header of the form-encoded id and secret (RFC 6749 2.3.1).
 */
static enum coffer_err build_grant(const struct refresh *f, struct coffer_secret **body,
                                   struct curl_slist **headers)
{
    struct coffer_keyset *all = NULL;
    struct coffer_secret *pair = NULL;
    struct coffer_secret *b64 = NULL;
    const bool has_secret = coffer_keyset_get(f->client, "client_secret") != NULL;
    const char *tmpl;
    struct coffer_secret_view v;
    size_t at = 0;
    enum coffer_err r;

    if ((r = coffer_keyset_new(&all)) != COFFER_OK) {
        return r;
    }
    for (int s = 0; s < 2; s++) {
        const struct coffer_keyset *from = s == 0 ? f->keys : f->client;

        for (size_t i = 0; i < coffer_keyset_count(from); i++) {
            const char *name = coffer_keyset_name(from, i);

            if (s == 0 && strcmp(name, "refresh_token") != 0) {
                continue;
            }
            v = coffer_secret_view(coffer_keyset_value(from, i));
            if ((r = coffer_keyset_add(all, name, v.data, v.len)) != COFFER_OK) {
                goto out;
            }
        }
    }
    if (!has_secret) {
        tmpl = "grant_type=refresh_token&refresh_token={{refresh_token}}&client_id={{client_id}}";
    } else if (f->prov.auth_post) {
        tmpl = "grant_type=refresh_token&refresh_token={{refresh_token}}&client_id={{client_id}}"
               "&client_secret={{client_secret}}";
    } else {
        tmpl = "grant_type=refresh_token&refresh_token={{refresh_token}}";
    }
    if ((r = expand(tmpl, all, body)) != COFFER_OK ||
        (r = use_add_header(headers, "Content-Type", "application/x-www-form-urlencoded",
                            strlen("application/x-www-form-urlencoded"))) != COFFER_OK ||
        (r = use_add_header(headers, "Accept", "application/json", strlen("application/json"))) !=
            COFFER_OK ||
        (r = use_add_header(headers, "Expect", "", 0)) != COFFER_OK) {
        goto out;
    }
    if (has_secret && !f->prov.auth_post) {
        if ((r = expand("{{client_id}}:{{client_secret}}", all, &pair)) != COFFER_OK ||
            (r = coffer_secret_new(6 + 4 * ((coffer_secret_len(pair) + 2) / 3) + 1, &b64)) !=
                COFFER_OK ||
            (r = use_secret_put(b64, &at, "Basic ", 6)) != COFFER_OK) {
            goto out;
        }
        v = coffer_secret_view(pair);
        at += (size_t)EVP_EncodeBlock(coffer_secret_view(b64).data + at, v.data, (int)v.len);
        r = use_add_header(headers, "Authorization", coffer_secret_view(b64).data, at);
    }
out:
    coffer_secret_free(&pair);
    coffer_secret_free(&b64);
    coffer_keyset_free(&all);
    if (r != COFFER_OK) {
        coffer_secret_free(body);
        use_free_headers(headers);
    }
    return r;
}

/* An error code as RFC 6749 5.2 allows, short enough to name in an event; else NULL. */
static const char *error_code(json_t *root)
{
    json_t *v = json_is_object(root) ? json_object_get(root, "error") : NULL;
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    size_t len = s != NULL ? json_string_length(v) : 0;

    if (len == 0 || len > COFFER_OP_REFRESH_ERROR_MAX) {
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.')) {
            return NULL;
        }
    }
    return s;
}

/* expires_in: a positive integer, or a string of digits as some providers send it. */
static bool read_expires_in(json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
    } else if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 12) {
        const char *s = json_string_value(v);

        *out = 0;
        for (size_t i = 0; i < json_string_length(v); i++) {
            if (s[i] < '0' || s[i] > '9') {
                return false;
            }
            *out = *out * 10 + (s[i] - '0');
        }
    } else {
        return false;
    }
    return *out >= 1 && *out <= EXPIRES_IN_MAX;
}

/* A string token of the answer (1 to COFFER_VALUE_MAX bytes) into f->next. */
static enum coffer_err take_token(struct refresh *f, json_t *root, const char *name, bool *ok)
{
    json_t *v = json_object_get(root, name);

    *ok = json_is_string(v) && json_string_length(v) >= 1 &&
          json_string_length(v) <= COFFER_VALUE_MAX;
    if (!*ok) {
        return COFFER_OK;
    }
    return coffer_keyset_add(f->next, name, json_string_value(v), json_string_length(v));
}

/*
 * Reads the provider's answer into f->next (the new access token, the new
 * refresh token or the old one, every other key of the version as it was)
 * and f->expires_in_s; a refusal or a malformed answer is a failure in out.
 */
static enum coffer_err read_answer(struct refresh *f, struct coffer_op_refresh *out)
{
    json_error_t jerr;
    json_t *root = NULL;
    const char *code;
    bool ok = false;
    enum coffer_err r = COFFER_OK;

    if (f->answer.body.len > 0) {
        root = json_loadb((const char *)f->answer.body.data, f->answer.body.len,
                          JSON_REJECT_DUPLICATES, &jerr);
    }
    if (f->status != 200) {
        code = error_code(root);
        fail(out, code != NULL ? code : "invalid_response",
             "the provider refused the refresh: HTTP %ld%s%s", f->status, code != NULL ? ", " : "",
             code != NULL ? code : "");
        goto out;
    }
    if (!json_is_object(root)) {
        fail(out, "invalid_response", "the provider's answer is not a JSON object");
        goto out;
    }
    f->expires_in_s = 0;
    if (json_object_get(root, "expires_in") != NULL &&
        !read_expires_in(json_object_get(root, "expires_in"), &f->expires_in_s)) {
        fail(out, "invalid_response", "the provider's expires_in is not 1 to %" PRId64 " seconds",
             EXPIRES_IN_MAX);
        goto out;
    }
    if ((r = coffer_keyset_new(&f->next)) != COFFER_OK ||
        (r = take_token(f, root, "access_token", &ok)) != COFFER_OK) {
        goto out;
    }
    if (!ok) {
        fail(out, "invalid_response", "the provider's answer has no access_token");
        goto out;
    }
    if (json_object_get(root, "refresh_token") != NULL &&
        ((r = take_token(f, root, "refresh_token", &ok)) != COFFER_OK || !ok)) {
        if (r == COFFER_OK) {
            fail(out, "invalid_response", "the provider's refresh_token is not a token");
        }
        goto out;
    }
    for (size_t i = 0; i < coffer_keyset_count(f->keys); i++) {
        const char *name = coffer_keyset_name(f->keys, i);
        struct coffer_secret_view v = coffer_secret_view(coffer_keyset_value(f->keys, i));

        if (strcmp(name, "access_token") == 0 ||
            (strcmp(name, "refresh_token") == 0 &&
             coffer_keyset_get(f->next, "refresh_token") != NULL)) {
            continue;
        }
        if ((r = coffer_keyset_add(f->next, name, v.data, v.len)) != COFFER_OK) {
            goto out;
        }
    }
out:
    json_decref(root);
    return r;
}

/* Stores f->next as the next version, with its access token's expiry and the provider. */
static enum coffer_err store_next(struct coffer_ops *o, const char *project, const char *name,
                                  struct refresh *f, uint32_t *version)
{
    struct coffer_keys_write w = {
        .org_id = &f->acc.org_id,
        .project_id = &f->acc.project_id,
        .name = name,
        .type = "oauth2",
        .tier = coffer_tier_str(f->in.tier),
        .keys = f->next,
    };
    const char *names[1] = {"access_token"};
    int64_t when;
    enum coffer_err r;

    if ((r = coffer_keys_cred_write(o->k, o->st, &w, version)) != COFFER_OK) {
        return coffer_err_wrap(r, "storing the refreshed version of %s/%s", project, name);
    }
    if (f->expires_in_s > 0) {
        /* Counted from before the grant was sent: the token cannot be older than that. */
        when = f->sent_us + f->expires_in_s * US_PER_S;
        if (f->in.expires_us != COFFER_AUTHZ_NO_EXPIRY && when > f->in.expires_us) {
            when = f->in.expires_us;
        }
        if ((r = coffer_store_cred_set_key_expiry(o->st, &f->acc.org_id, &f->acc.credential_id,
                                                  *version, names, &when, 1)) != COFFER_OK) {
            return r;
        }
    }
    return coffer_store_cred_set_oauth2(o->st, &f->acc.org_id, &f->acc.credential_id, *version,
                                        f->acc.oauth2_provider);
}

/*
 * With the lock held: judges the expiry again, reads what the grant needs,
 * puts the refresh on record, calls the provider and stores or records the
 * outcome. No transaction is open on return.
 */
static enum coffer_err refresh_locked(struct coffer_ops *o, const struct coffer_op_meta *m,
                                      const char *project, const char *name, struct refresh *f,
                                      struct coffer_op_refresh *out)
{
    struct coffer_keys_read_info info;
    struct coffer_secret *body = NULL;
    struct curl_slist *headers = NULL;
    char *url = NULL;
    char what[128];
    uint32_t version = 0;
    bool tx = false;
    enum coffer_err r;

    if ((r = coffer_store_begin(o->st)) != COFFER_OK) {
        return r;
    }
    tx = true;
    if ((r = load(o, m, project, name, f)) != COFFER_OK) {
        goto out;
    }
    /* Fresh now (another server refreshed it while this one waited), gone, or revoked. */
    if (!ops_oauth2_due(&f->acc, f->in.now_us) || f->in.revoked) {
        goto commit;
    }
    if (provider_parse(f->acc.oauth2_provider, strlen(f->acc.oauth2_provider), &f->prov) !=
        COFFER_OK) {
        coffer_warn(LOG_MOD, "the stored provider of %s/%s/%s is not valid: %s", m->who->org,
                    project, name, coffer_err_detail());
        fail(out, "provider_invalid", "the stored OAuth2 provider of this credential is not valid");
        goto commit;
    }
    (void)snprintf(f->where, sizeof(f->where), "POST https://%s", f->prov.url.host);
    if (f->prov.url.port != 443) {
        (void)snprintf(f->where + strlen(f->where), sizeof(f->where) - strlen(f->where), ":%u",
                       (unsigned)f->prov.url.port);
    }
    r = coffer_keys_cred_read(o->k, o->st, &f->acc.org_id, &f->acc.project_id, name,
                              f->acc.current_version, &f->keys, &info);
    if (r != COFFER_OK) {
        goto out;
    }
    if (coffer_keyset_get(f->keys, "refresh_token") == NULL) {
        fail(out, "no_refresh_token", "the current version holds no refresh_token");
        goto failed;
    }
    if ((r = read_client(o, m, project, f, out)) != COFFER_OK) {
        goto out;
    }
    if (out->failed) {
        goto failed;
    }
    /* On record before the refresh token leaves Coffer: no event, no grant sent. */
    f->sent_us = f->in.now_us;
    if ((r = record(o, m, project, name, f, true, f->acc.current_version, "sending")) !=
            COFFER_OK ||
        (r = coffer_store_commit(o->st)) != COFFER_OK) {
        tx = false;
        goto out;
    }
    tx = false;
    if ((r = build_grant(f, &body, &headers)) != COFFER_OK ||
        (r = coffer_broker_url_format(&f->prov.url, &url)) != COFFER_OK) {
        goto out;
    }
    r = use_perform(url, "POST", coffer_secret_view(body).data, coffer_secret_len(body), headers,
                    &f->answer, &f->status);
    if (r == COFFER_E_IO || r == COFFER_E_LIMIT) {
        coffer_warn(LOG_MOD, "refresh of %s/%s/%s at %s failed: %s", m->who->org, project, name,
                    f->prov.url.host, coffer_err_detail());
        fail(out, r == COFFER_E_IO ? "unreachable" : "invalid_response", "the token endpoint %s %s",
             f->prov.url.host,
             r == COFFER_E_IO ? "could not be reached" : "answered more than the limit");
        r = COFFER_OK;
    } else if (r == COFFER_OK) {
        r = read_answer(f, out);
    }
    if (r != COFFER_OK) {
        goto out;
    }
    if ((r = coffer_store_begin(o->st)) != COFFER_OK) {
        goto out;
    }
    tx = true;
    if (out->failed) {
        goto failed;
    }
    if ((r = store_next(o, project, name, f, &version)) != COFFER_OK) {
        /* The provider may have rotated the refresh token this version still holds. */
        coffer_warn(LOG_MOD,
                    "the refreshed tokens of %s/%s/%s could not be stored: %s; if the provider "
                    "rotates refresh tokens, store a new version",
                    m->who->org, project, name, coffer_err_detail());
        goto out;
    }
    (void)snprintf(what, sizeof(what), "%ld, version %" PRIu32, f->status, version);
    if ((r = record(o, m, project, name, f, true, version, what)) != COFFER_OK) {
        goto out;
    }
    coffer_info(LOG_MOD, "refreshed %s/%s/%s: version %" PRIu32, m->who->org, project, name,
                version);
    goto commit;
failed:
    if (f->status != 0) {
        (void)snprintf(what, sizeof(what), "%ld %s", f->status, out->error);
    } else {
        (void)snprintf(what, sizeof(what), "%s", out->error);
    }
    if ((r = record(o, m, project, name, f, false, f->acc.current_version, what)) != COFFER_OK) {
        goto out;
    }
commit:
    tx = false;
    r = coffer_store_commit(o->st);
out:
    if (tx) {
        coffer_store_rollback(o->st);
    }
    use_free_headers(&headers);
    coffer_secret_free(&body);
    coffer_free(url);
    return r;
}

enum coffer_err coffer_op_oauth2_refresh(struct coffer_ops *o, const struct coffer_op_meta *m,
                                         const char *project, const char *name,
                                         struct coffer_op_refresh *out)
{
    struct refresh f;
    bool tx = false;
    bool locked = false;
    enum coffer_err r;

    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if ((r = ops_check_call(o, m, out, "refresh")) != COFFER_OK) {
        return r;
    }
    if (!ops_is_agent(m->who) || project == NULL || name == NULL || !ops_name_ok(project) ||
        !ops_name_ok(name)) {
        return coffer_err_set(COFFER_E_INVALID, "refresh: an agent names a project and credential");
    }
    memset(&f, 0, sizeof(f));
    if ((r = coffer_arena_new(0, &f.arena)) != COFFER_OK) {
        return r;
    }
    /* The credential's id names its lock. */
    if ((r = coffer_store_begin(o->st)) != COFFER_OK) {
        goto out;
    }
    tx = true;
    if ((r = load(o, m, project, name, &f)) != COFFER_OK) {
        goto out;
    }
    tx = false;
    if ((r = coffer_store_commit(o->st)) != COFFER_OK || !f.acc.found) {
        goto out;
    }
    if ((r = lock_wait(o->st, &f.acc.credential_id, &locked)) != COFFER_OK) {
        goto out;
    }
    if (!locked) {
        fail(out, "busy", "another refresh of this credential did not finish in time");
        goto out;
    }
    r = refresh_locked(o, m, project, name, &f, out);
out:
    if (tx) {
        coffer_store_rollback(o->st);
    }
    if (locked && coffer_store_refresh_unlock(o->st, &f.acc.credential_id) != COFFER_OK) {
        /* A lost connection took the lock with it; anything else is worth a line. */
        coffer_warn(LOG_MOD, "releasing the refresh lock of %s/%s/%s: %s", m->who->org, project,
                    name, coffer_err_detail());
    }
    refresh_cleanup(&f);
    return r;
}
