/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bearer tokens issued by Coffer: their format, issuing and revoking them
 * (admins of an org, each in one transaction with its audit event), and
 * authenticating a request that presents one.
 *
 * A token exists in plaintext only in a struct coffer_secret between its
 * random bytes and the answer that shows it once, and, when presented, in
 * the caller's buffer while it is digested. The database and the audit log
 * see its id and its HMAC under a key that never leaves the PKCS#11 token.
 * This file must never put a token or a digest into an event, an error
 * detail or a log line, and never echo input it has not checked.
 */
#include "coffer/ops.h"

#include "api/ops_int.h"

#include "coffer/mem.h"
#include "coffer/text.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#define TEXT_MAX 1024
#define SCHEME "Bearer "
#define SCHEME_LEN (sizeof(SCHEME) - 1)

/* ---- Format ---------------------------------------------------------------------- */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The 6-bit value of a base64url character, or -1. */
static int b64url_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '-') {
        return 62;
    }
    if (c == '_') {
        return 63;
    }
    return -1;
}

bool coffer_token_format_ok(const char *s, size_t len)
{
    int last;

    if (s == NULL || len != COFFER_TOKEN_LEN ||
        strncmp(s, COFFER_TOKEN_PREFIX, COFFER_TOKEN_PREFIX_LEN) != 0) {
        return false;
    }
    for (size_t i = COFFER_TOKEN_PREFIX_LEN; i < COFFER_TOKEN_LEN; i++) {
        if (b64url_value(s[i]) < 0) {
            return false;
        }
    }
    /* 43 characters carry 258 bits: the last two must be zero for 32 bytes. */
    last = b64url_value(s[COFFER_TOKEN_LEN - 1]);
    return (last & 3) == 0;
}

bool coffer_token_from_header(const char *value, size_t len, const char **token)
{
    if (token != NULL) {
        *token = NULL;
    }
    if (value == NULL || token == NULL || len != SCHEME_LEN + COFFER_TOKEN_LEN ||
        strncmp(value, SCHEME, SCHEME_LEN) != 0 ||
        !coffer_token_format_ok(value + SCHEME_LEN, COFFER_TOKEN_LEN)) {
        return false;
    }
    *token = value + SCHEME_LEN;
    return true;
}

/* Encodes 32 bytes as the 43 characters of a token body (RFC 4648 base64url, no padding). */
static void encode_body(const unsigned char in[COFFER_TOKEN_RANDOM_LEN],
                        unsigned char out[COFFER_TOKEN_BODY_LEN])
{
    size_t o = 0;
    size_t i = 0;

    for (; i + 3 <= COFFER_TOKEN_RANDOM_LEN; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];

        out[o++] = (unsigned char)b64url[(v >> 18) & 63];
        out[o++] = (unsigned char)b64url[(v >> 12) & 63];
        out[o++] = (unsigned char)b64url[(v >> 6) & 63];
        out[o++] = (unsigned char)b64url[v & 63];
    }
    /* 32 = 3 * 10 + 2: the last two bytes make three characters. */
    {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;

        out[o++] = (unsigned char)b64url[(v >> 18) & 63];
        out[o++] = (unsigned char)b64url[(v >> 12) & 63];
        out[o++] = (unsigned char)b64url[(v >> 6) & 63];
    }
}

/* A new token in locked memory: the prefix and 32 bytes from the CSPRNG. */
static enum coffer_err new_token(struct coffer_secret **out)
{
    struct coffer_secret *raw = NULL;
    struct coffer_secret *tok = NULL;
    struct coffer_secret_view rv;
    struct coffer_secret_view tv;
    enum coffer_err r;

    *out = NULL;
    if ((r = coffer_secret_new(COFFER_TOKEN_RANDOM_LEN, &raw)) != COFFER_OK ||
        (r = coffer_secret_new(COFFER_TOKEN_LEN, &tok)) != COFFER_OK) {
        goto out;
    }
    rv = coffer_secret_view(raw);
    tv = coffer_secret_view(tok);
    if (RAND_bytes(rv.data, (int)rv.len) != 1) {
        r = coffer_err_set(COFFER_E_CRYPTO, "drawing the random bytes of a token");
        goto out;
    }
    coffer_memcpy(tv.data, COFFER_TOKEN_PREFIX, COFFER_TOKEN_PREFIX_LEN);
    encode_body(rv.data, tv.data + COFFER_TOKEN_PREFIX_LEN);
    if (!coffer_token_format_ok((const char *)tv.data, tv.len)) {
        r = coffer_err_set(COFFER_E_CRYPTO, "a new token does not have the token format");
        goto out;
    }
    *out = tok;
    tok = NULL;
out:
    coffer_secret_free(&raw);
    coffer_secret_free(&tok);
    return r;
}

/* ---- Principals -------------------------------------------------------------------- */

/* The next '/'-separated field of s (from *pos), which must be a name; false otherwise. */
static bool next_name(const char *s, size_t len, size_t *pos, char out[64])
{
    size_t start = *pos;
    size_t end = start;

    while (end < len && s[end] != '/') {
        end++;
    }
    if (!coffer_policy_name_ok(s + start, end - start)) {
        return false;
    }
    coffer_memcpy(out, s + start, end - start);
    out[end - start] = '\0';
    *pos = end < len ? end + 1 : end;
    /* A '/' at the very end leaves an empty field that nobody reads: refuse it. */
    return !(end < len && end + 1 == len);
}

enum coffer_err coffer_token_principal_parse(const char *s, size_t len, const char *org,
                                             struct coffer_principal *out)
{
    static const char agent[] = "agent/";
    static const char admin[] = "admin/";
    size_t pos;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "principal: no output");
    }
    memset(out, 0, sizeof(*out));
    if (org == NULL || !coffer_policy_name_ok(org, strnlen(org, COFFER_POLICY_NAME_MAX + 1))) {
        return coffer_err_set(COFFER_E_INVALID, "principal: the org is not a name");
    }
    if (s == NULL || len == 0 || len > COFFER_TOKEN_PRINCIPAL_MAX || memchr(s, '\0', len) != NULL) {
        return coffer_err_set(COFFER_E_INVALID,
                              "principal: want agent/<type>/<instance> or admin/<name>");
    }
    (void)snprintf(out->org, sizeof(out->org), "%s", org);
    if (len > sizeof(agent) - 1 && strncmp(s, agent, sizeof(agent) - 1) == 0) {
        pos = sizeof(agent) - 1;
        out->kind = COFFER_PRINCIPAL_AGENT;
        if (next_name(s, len, &pos, out->agent_type) && pos < len &&
            next_name(s, len, &pos, out->instance) && pos == len) {
            return COFFER_OK;
        }
    } else if (len > sizeof(admin) - 1 && strncmp(s, admin, sizeof(admin) - 1) == 0) {
        pos = sizeof(admin) - 1;
        out->kind = COFFER_PRINCIPAL_ADMIN;
        if (next_name(s, len, &pos, out->admin) && pos == len) {
            return COFFER_OK;
        }
    }
    memset(out, 0, sizeof(*out));
    return coffer_err_set(COFFER_E_INVALID,
                          "principal: want agent/<type>/<instance> or admin/<name>, each name "
                          "matching ^[a-z0-9][a-z0-9_-]{0,62}$");
}

void coffer_token_principal_format(const struct coffer_principal *p, char *out, size_t cap)
{
    if (out == NULL || cap == 0) {
        return;
    }
    switch (p != NULL ? p->kind : 0) {
    case COFFER_PRINCIPAL_AGENT:
        (void)snprintf(out, cap, "agent/%s/%s", p->agent_type, p->instance);
        return;
    case COFFER_PRINCIPAL_ADMIN:
        (void)snprintf(out, cap, "admin/%s", p->admin);
        return;
    default:
        (void)snprintf(out, cap, "unknown");
        return;
    }
}

/* ---- Shared checks ------------------------------------------------------------------ */

static enum coffer_err check_text(const char *s, size_t max, const char *what)
{
    if (s != NULL && !coffer_text_ok(s, strnlen(s, max + 1), max)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "%s is not 1 to %zu bytes of UTF-8 without control characters", what,
                              max);
    }
    return COFFER_OK;
}

/* Copies src into out (cap bytes) cut at a UTF-8 character boundary. */
static void copy_text(char *out, size_t cap, const char *src)
{
    size_t n = strlen(src);

    if (n >= cap) {
        n = cap - 1;
        /* Never end inside a multi-byte character: back off over continuation bytes. */
        while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80) {
            n--;
        }
    }
    coffer_memcpy(out, src, n);
    out[n] = '\0';
}

/* ---- Create ------------------------------------------------------------------------- */

static enum coffer_err check_create(struct coffer_op_token_create *t,
                                    struct coffer_principal *subject, int64_t *ttl)
{
    enum coffer_err r;

    if (t->principal == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "'principal' is required");
    }
    if ((r = coffer_token_principal_parse(t->principal,
                                          strnlen(t->principal, COFFER_TOKEN_PRINCIPAL_MAX + 1),
                                          t->org, subject)) != COFFER_OK) {
        return r;
    }
    *ttl = t->ttl_s == 0 ? COFFER_TOKEN_TTL_DEFAULT : t->ttl_s;
    if (*ttl < 1 || *ttl > COFFER_TOKEN_TTL_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "a token lives 1 second to 30 days");
    }
    return check_text(t->description, TEXT_MAX, "the description");
}

/* Inside the open transaction: the row and its event. */
static enum coffer_err create_write(struct coffer_ops *o, const struct coffer_op_meta *m,
                                    const struct coffer_op_token_create *t,
                                    const struct coffer_principal *subject, int64_t ttl,
                                    const unsigned char digest[COFFER_TOKEN_DIGEST_LEN],
                                    struct coffer_store_token *row)
{
    struct coffer_store_token_new n;
    struct coffer_audit_event e;
    struct coffer_org org;
    char by[OPS_PRINCIPAL_TEXT_MAX];
    char id[COFFER_UUID_STR_LEN];
    char who[COFFER_TOKEN_PRINCIPAL_MAX + 1];
    char life[24];
    char detail[TEXT_MAX];
    int64_t event_id = 0;
    enum coffer_err r;

    if ((r = coffer_store_org_by_name(o->st, m->who->org, &org)) != COFFER_OK) {
        return r;
    }
    ops_principal_text(m->who, by);
    memset(&n, 0, sizeof(n));
    n.org_id = &org.id;
    n.digest = digest;
    n.mac_key = COFFER_TOKEN_MAC_LABEL;
    n.admin = subject->kind == COFFER_PRINCIPAL_ADMIN;
    n.agent_type = n.admin ? NULL : subject->agent_type;
    n.instance = n.admin ? NULL : subject->instance;
    n.admin_name = n.admin ? subject->admin : NULL;
    n.description = t->description;
    n.created_by = by;
    n.ttl_s = ttl;
    if ((r = coffer_store_token_insert(o->st, &n, row)) != COFFER_OK) {
        return r;
    }
    coffer_uuid_format(&row->id, id);
    coffer_token_principal_format(subject, who, sizeof(who));
    coffer_policy_ttl_format(ttl, life);
    (void)snprintf(detail, sizeof(detail), "token %s for %s, expires in %s", id, who, life);
    ops_event_init(&e, COFFER_AUDIT_TOKEN_CREATE, m, t->org, NULL, NULL);
    e.allowed = true;
    e.reason = coffer_err_str(COFFER_OK);
    e.detail = detail;
    return coffer_store_audit_insert(o->st, &e, &event_id);
}

enum coffer_err coffer_op_token_create(struct coffer_ops *o, const struct coffer_op_meta *m,
                                       struct coffer_op_token_create *t)
{
    struct coffer_principal subject;
    struct coffer_store_token row;
    struct coffer_secret *token = NULL;
    struct coffer_secret_view v;
    unsigned char digest[COFFER_TOKEN_DIGEST_LEN];
    int64_t ttl = 0;
    bool tx = false;
    enum coffer_err r;

    memset(digest, 0, sizeof(digest));
    if (t != NULL) {
        memset(&t->id, 0, sizeof(t->id));
        t->token = NULL;
        t->expires_us = 0;
    }
    if ((r = ops_check_call(o, m, t, "token create")) != COFFER_OK) {
        return r;
    }
    if (!ops_is_admin_of(m->who, t->org)) {
        return ops_refuse(o, m, COFFER_AUDIT_TOKEN_CREATE, t->org, NULL, NULL);
    }
    if ((r = check_create(t, &subject, &ttl)) != COFFER_OK) {
        return r;
    }
    if ((r = new_token(&token)) != COFFER_OK) {
        goto out;
    }
    v = coffer_secret_view(token);
    if ((r = coffer_keys_token_digest(o->k, v.data, v.len, digest)) != COFFER_OK ||
        (r = coffer_store_begin(o->st)) != COFFER_OK) {
        goto out;
    }
    tx = true;
    if ((r = create_write(o, m, t, &subject, ttl, digest, &row)) != COFFER_OK) {
        goto out;
    }
    tx = false;
    if ((r = coffer_store_commit(o->st)) != COFFER_OK) {
        goto out;
    }
    t->id = row.id;
    t->expires_us = row.expires_us;
    t->token = token;
    token = NULL;
out:
    if (tx) {
        coffer_store_rollback(o->st);
    }
    coffer_wipe(digest, sizeof(digest));
    coffer_secret_free(&token);
    return r;
}

/* ---- Revoke ------------------------------------------------------------------------- */

enum coffer_err coffer_op_token_revoke(struct coffer_ops *o, const struct coffer_op_meta *m,
                                       const struct coffer_op_token_revoke *t)
{
    struct coffer_store_token row;
    struct coffer_audit_event e;
    struct coffer_principal subject;
    struct coffer_uuid token_id;
    struct coffer_org org;
    char id[COFFER_UUID_STR_LEN];
    char who[COFFER_TOKEN_PRINCIPAL_MAX + 1];
    char head[COFFER_UUID_STR_LEN + COFFER_TOKEN_PRINCIPAL_MAX + 16];
    char detail[TEXT_MAX];
    int64_t event_id = 0;
    bool tx = false;
    enum coffer_err r;

    if ((r = ops_check_call(o, m, t, "token revoke")) != COFFER_OK) {
        return r;
    }
    if (!ops_is_admin_of(m->who, t->org)) {
        return ops_refuse(o, m, COFFER_AUDIT_TOKEN_REVOKE, t->org, NULL, NULL);
    }
    if (t->id == NULL || strnlen(t->id, COFFER_UUID_STR_LEN) != COFFER_UUID_STR_LEN - 1 ||
        coffer_uuid_parse(t->id, &token_id) != COFFER_OK) {
        return coffer_err_set(COFFER_E_INVALID, "a token id is a UUID");
    }
    if (t->reason == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "'reason' is required");
    }
    if ((r = check_text(t->reason, TEXT_MAX, "a revocation reason")) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_store_begin(o->st)) != COFFER_OK) {
        return r;
    }
    tx = true;
    if ((r = coffer_store_org_by_name(o->st, m->who->org, &org)) != COFFER_OK ||
        (r = coffer_store_token_revoke(o->st, &org.id, &token_id, t->reason, &row)) != COFFER_OK) {
        goto out;
    }
    memset(&subject, 0, sizeof(subject));
    subject.kind = row.admin ? COFFER_PRINCIPAL_ADMIN : COFFER_PRINCIPAL_AGENT;
    (void)snprintf(subject.agent_type, sizeof(subject.agent_type), "%s", row.agent_type);
    (void)snprintf(subject.instance, sizeof(subject.instance), "%s", row.instance);
    (void)snprintf(subject.admin, sizeof(subject.admin), "%s", row.admin_name);
    coffer_uuid_format(&row.id, id);
    coffer_token_principal_format(&subject, who, sizeof(who));
    (void)snprintf(head, sizeof(head), "token %s for %s: ", id, who);
    coffer_memcpy(detail, head, strlen(head));
    copy_text(detail + strlen(head), sizeof(detail) - strlen(head), t->reason);
    ops_event_init(&e, COFFER_AUDIT_TOKEN_REVOKE, m, t->org, NULL, NULL);
    e.allowed = true;
    e.reason = coffer_err_str(COFFER_OK);
    e.detail = detail;
    if ((r = coffer_store_audit_insert(o->st, &e, &event_id)) != COFFER_OK) {
        goto out;
    }
    tx = false;
    r = coffer_store_commit(o->st);
out:
    if (tx) {
        coffer_store_rollback(o->st);
    }
    return r;
}

/* ---- Authenticate --------------------------------------------------------------------- */

static void principal_of(const struct coffer_store_token *row, struct coffer_principal *who)
{
    memset(who, 0, sizeof(*who));
    who->kind = row->admin ? COFFER_PRINCIPAL_ADMIN : COFFER_PRINCIPAL_AGENT;
    (void)snprintf(who->org, sizeof(who->org), "%s", row->org);
    (void)snprintf(who->agent_type, sizeof(who->agent_type), "%s", row->agent_type);
    (void)snprintf(who->instance, sizeof(who->instance), "%s", row->instance);
    (void)snprintf(who->admin, sizeof(who->admin), "%s", row->admin_name);
}

_Static_assert(sizeof(((struct coffer_op_token_check *)0)->digest) == COFFER_TOKEN_DIGEST_LEN &&
                   COFFER_TOKEN_DIGEST_LEN == COFFER_STORE_TOKEN_DIGEST_LEN,
               "a token check holds one digest");

enum coffer_err coffer_op_token_check(struct coffer_ops *o, const char *token, size_t len,
                                      struct coffer_op_token_check *c)
{
    enum coffer_err r;

    if (c == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "token authentication: no output");
    }
    memset(c, 0, sizeof(*c));
    c->auth.state = COFFER_TOKEN_UNKNOWN;
    if (o == NULL || o->st == NULL || o->k == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "token authentication: missing context");
    }
    if (!coffer_token_format_ok(token, len)) {
        return COFFER_OK;
    }
    if ((r = coffer_keys_token_digest(o->k, token, len, c->digest)) != COFFER_OK) {
        return r;
    }
    c->formed = true;
    return COFFER_OK;
}

enum coffer_err coffer_op_token_check_many(struct coffer_ops *o, struct coffer_op_token_check *c,
                                           size_t n)
{
    unsigned char digests[COFFER_STORE_BATCH_MAX][COFFER_STORE_TOKEN_DIGEST_LEN];
    struct coffer_store_token rows[COFFER_STORE_BATCH_MAX];
    bool found[COFFER_STORE_BATCH_MAX];
    size_t idx[COFFER_STORE_BATCH_MAX];
    size_t nf = 0;
    enum coffer_err r = COFFER_OK;

    if (o == NULL || o->st == NULL || c == NULL || n > COFFER_STORE_BATCH_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "token authentication: bad call");
    }
    for (size_t i = 0; i < n; i++) {
        c[i].auth.state = COFFER_TOKEN_UNKNOWN;
        if (c[i].formed) {
            coffer_memcpy(digests[nf], c[i].digest, sizeof(digests[nf]));
            idx[nf++] = i;
        }
    }
    if (nf > 0 && (r = coffer_store_token_find_many(o->st, digests, nf, COFFER_TOKEN_MAC_LABEL,
                                                    rows, found)) == COFFER_OK) {
        for (size_t j = 0; j < nf; j++) {
            struct coffer_op_token_auth *out = &c[idx[j]].auth;

            if (!found[j]) {
                continue;
            }
            out->id = rows[j].id;
            if (rows[j].revoked) {
                out->state = COFFER_TOKEN_REVOKED;
            } else if (rows[j].now_us >= rows[j].expires_us) {
                out->state = COFFER_TOKEN_EXPIRED;
            } else {
                out->state = COFFER_TOKEN_VALID;
                principal_of(&rows[j], &out->who);
            }
        }
    }
    coffer_wipe(digests, sizeof(digests));
    for (size_t i = 0; i < n; i++) {
        coffer_wipe(c[i].digest, sizeof(c[i].digest));
    }
    return r;
}
