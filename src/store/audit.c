/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Audit events: the one statement that appends to coffer.audit_events, and
 * the check of every field before it is bound.
 *
 * An event is written inside the transaction of the operation it records,
 * so the operation and its event commit or vanish together. Every text is
 * checked here against the same rules as the table's constraints, so that a
 * bad field is refused with a detail naming it rather than as a constraint
 * violation, and so that nothing with a control character reaches a report.
 * This file never reads events back and never formats a purpose, a detail
 * or any other free text into an error detail or a log line.
 */
#include "coffer/audit.h"
#include "coffer/store.h"

#include "coffer/buf.h"
#include "coffer/text.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "store/store_int.h"

#define REASON_MAX 40
#define REQUEST_ID_MAX 64
#define CLIENT_ADDR_MAX 128
#define PURPOSE_MAX 512
#define DETAIL_MAX 1024

/* The principal's fields travel as one text[]: kind, trust domain, org, agent type, instance,
 * admin. */
#define PRINCIPAL_FIELDS 6

static const struct store_stmt audit_insert = {
    .name = "coffer_audit_insert",
    .sql = "INSERT INTO coffer.audit_events (action, allowed, reason, purpose_unexpected, "
           "request_id, client_addr, principal_kind, trust_domain, org, agent_type, instance, "
           "admin, target_org, project, credential, version, phase, purpose, detail, "
           "org_key_version, mk_version) "
           "VALUES ($1, $2, $3, $4, $5, $6, $7[1], $7[2], $7[3], $7[4], $7[5], $7[6], "
           "$8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id",
    .nparams = 16,
    .types = {STORE_OID_TEXT, STORE_OID_BOOL, STORE_OID_TEXT, STORE_OID_BOOL, STORE_OID_TEXT,
              STORE_OID_TEXT, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT,
              STORE_OID_INT4, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_INT4,
              STORE_OID_INT4},
    .ncols = 1,
};

/* The columns of audit_insert_many, one text[] each, in this order. */
enum {
    COL_ACTION,
    COL_ALLOWED,
    COL_REASON,
    COL_PURPOSE_UNEXPECTED,
    COL_REQUEST_ID,
    COL_CLIENT_ADDR,
    COL_PRINCIPAL, /* PRINCIPAL_FIELDS columns */
    COL_TARGET_ORG = COL_PRINCIPAL + PRINCIPAL_FIELDS,
    COL_PROJECT,
    COL_CREDENTIAL,
    COL_VERSION,
    COL_PHASE,
    COL_PURPOSE,
    COL_DETAIL,
    COL_ORG_KEY_VERSION,
    COL_MK_VERSION,
    EVENT_COLS
};

/*
 * Many events in one statement: parallel text[] columns, one element per
 * event, numbered (and hashed) by the trigger in the order given.
 */
static const struct store_stmt audit_insert_many = {
    .name = "coffer_audit_insert_many",
    .sql = "INSERT INTO coffer.audit_events (action, allowed, reason, purpose_unexpected, "
           "request_id, client_addr, principal_kind, trust_domain, org, agent_type, instance, "
           "admin, target_org, project, credential, version, phase, purpose, detail, "
           "org_key_version, mk_version) "
           "SELECT u.action, u.allowed::bool, u.reason, u.purpose_unexpected::bool, u.request_id, "
           "u.client_addr, u.principal_kind, u.trust_domain, u.org, u.agent_type, u.instance, "
           "u.admin, u.target_org, u.project, u.credential, u.version::int4, u.phase, u.purpose, "
           "u.detail, u.org_key_version::int4, u.mk_version::int4 "
           "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], "
           "$7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], "
           "$13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], "
           "$19::text[], $20::text[], $21::text[]) WITH ORDINALITY AS u(action, allowed, reason, "
           "purpose_unexpected, request_id, client_addr, principal_kind, trust_domain, org, "
           "agent_type, instance, admin, target_org, project, credential, version, phase, "
           "purpose, detail, org_key_version, mk_version, i) ORDER BY u.i",
    .nparams = EVENT_COLS,
    .types = {STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY,
              STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY,
              STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY,
              STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY,
              STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY,
              STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY,
              STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY},
};
_Static_assert(EVENT_COLS == 21 && EVENT_COLS <= STORE_MAX_PARAMS, "audit_insert_many columns");

const struct store_stmt *const store_stmts_audit[] = {&audit_insert, &audit_insert_many, NULL};

bool coffer_store_in_tx(const struct coffer_store *s)
{
    return s != NULL && s->in_tx;
}

static bool action_ok(const char *a)
{
    static const char *const actions[] = {
        COFFER_AUDIT_ACCESS,          COFFER_AUDIT_CREATE,       COFFER_AUDIT_REVOKE,
        COFFER_AUDIT_PHASE,           COFFER_AUDIT_METADATA,     COFFER_AUDIT_AUTH_FAILURE,
        COFFER_AUDIT_TOKEN_CREATE,    COFFER_AUDIT_TOKEN_REVOKE, COFFER_AUDIT_REQUEST,
        COFFER_AUDIT_FULFILL,         COFFER_AUDIT_DENY,         COFFER_AUDIT_APPROVE,
        COFFER_AUDIT_APPROVAL_REVOKE, COFFER_AUDIT_USE,          COFFER_AUDIT_REFRESH,
    };

    if (a == NULL) {
        return false;
    }
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
        if (strcmp(a, actions[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* ^[a-z_]{1,40}$: reason codes and error names. */
static bool reason_ok(const char *s)
{
    size_t len = s == NULL ? 0 : strnlen(s, REASON_MAX + 1);

    if (len == 0 || len > REASON_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_')) {
            return false;
        }
    }
    return true;
}

/* ^[A-Za-z0-9._-]{1,64}$: request ids are echoed to clients and into logs. */
static bool request_id_ok(const char *s)
{
    size_t len = s == NULL ? 0 : strnlen(s, REQUEST_ID_MAX + 1);

    if (len == 0 || len > REQUEST_ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

/* ^[a-z0-9._-]{1,255}$ within a field of cap bytes that must hold its terminator. */
static bool trust_domain_ok(const char *s, size_t cap)
{
    size_t len = strnlen(s, cap);

    if (len == 0 || len == cap || len > COFFER_TRUST_DOMAIN_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-')) {
            return false;
        }
    }
    return true;
}

/* A name held in a fixed field of cap bytes (terminated inside it). */
static bool field_name_ok(const char *s, size_t cap)
{
    size_t len = strnlen(s, cap);

    return len < cap && store_name_ok(s, len);
}

static bool field_empty(const char *s)
{
    return s[0] == '\0';
}

/* A name given by pointer, or NULL. */
static bool opt_name_ok(const char *s)
{
    return s == NULL || store_name_ok(s, strnlen(s, COFFER_NAME_MAX + 1));
}

/* Free text of 1..max bytes, or NULL. */
static bool opt_text_ok(const char *s, size_t max)
{
    return s == NULL || coffer_text_ok(s, strnlen(s, max + 1), max);
}

/* Checks the principal and fills its fields, in the order of PRINCIPAL_FIELDS. */
static enum coffer_err check_principal(const struct coffer_principal *who,
                                       const char *fields[PRINCIPAL_FIELDS])
{
    /* A principal authenticated by a bearer token has no SPIFFE ID: its trust domain is "". */
    if (who->trust_domain[0] != '\0' &&
        !trust_domain_ok(who->trust_domain, sizeof(who->trust_domain))) {
        return coffer_err_set(
            COFFER_E_INVALID,
            "audit event: the principal's trust domain is not ^[a-z0-9._-]{1,255}$");
    }
    if (!field_name_ok(who->org, sizeof(who->org))) {
        return coffer_err_set(COFFER_E_INVALID, "audit event: the principal's org is not a name");
    }
    fields[1] = who->trust_domain[0] != '\0' ? who->trust_domain : NULL;
    fields[2] = who->org;
    switch (who->kind) {
    case COFFER_PRINCIPAL_AGENT:
        if (!field_name_ok(who->agent_type, sizeof(who->agent_type)) ||
            !field_name_ok(who->instance, sizeof(who->instance)) || !field_empty(who->admin)) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "audit event: an agent principal needs an agent type and an "
                                  "instance that are names, and no admin name");
        }
        fields[0] = "agent";
        fields[3] = who->agent_type;
        fields[4] = who->instance;
        return COFFER_OK;
    case COFFER_PRINCIPAL_ADMIN:
        if (!field_name_ok(who->admin, sizeof(who->admin)) || !field_empty(who->agent_type) ||
            !field_empty(who->instance)) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "audit event: an admin principal needs an admin name that is a "
                                  "name, and no agent type or instance");
        }
        fields[0] = "admin";
        fields[5] = who->admin;
        return COFFER_OK;
    default:
        return coffer_err_set(COFFER_E_INVALID, "audit event: principal kind %d is unknown",
                              (int)who->kind);
    }
}

static enum coffer_err check_event(const struct coffer_audit_event *e,
                                   const char *fields[PRINCIPAL_FIELDS])
{
    enum coffer_err r;

    if (!action_ok(e->action)) {
        return coffer_err_set(COFFER_E_INVALID, "audit event: unknown action");
    }
    if (!reason_ok(e->reason)) {
        return coffer_err_set(COFFER_E_INVALID, "audit event: the reason is not ^[a-z_]{1,40}$");
    }
    if (strcmp(e->action, COFFER_AUDIT_ACCESS) == 0 &&
        e->allowed != (strcmp(e->reason, "granted") == 0)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "audit event: an access is allowed exactly when it is granted");
    }
    if (e->purpose_unexpected && !e->allowed) {
        return coffer_err_set(COFFER_E_INVALID,
                              "audit event: only an allowed access can have an unexpected purpose");
    }
    if (!request_id_ok(e->request_id)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "audit event: the request id is not ^[A-Za-z0-9._-]{1,64}$");
    }
    if (!opt_text_ok(e->client_addr, CLIENT_ADDR_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "audit event: the client address is not 1 to %d bytes of text",
                              CLIENT_ADDR_MAX);
    }
    if (e->who != NULL && (r = check_principal(e->who, fields)) != COFFER_OK) {
        return r;
    }
    if (!opt_name_ok(e->org)) {
        return coffer_err_set(COFFER_E_INVALID, "audit event: the target org is not a name");
    }
    if (!opt_name_ok(e->project)) {
        return coffer_err_set(COFFER_E_INVALID, "audit event: the project is not a name");
    }
    if (!opt_name_ok(e->credential)) {
        return coffer_err_set(COFFER_E_INVALID, "audit event: the credential is not a name");
    }
    if (e->version > INT32_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "audit event: version %u is out of range",
                              e->version);
    }
    if (e->org_key_version > INT32_MAX || e->mk_version > INT32_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "audit event: a key version is out of range");
    }
    if (!opt_name_ok(e->phase)) {
        return coffer_err_set(COFFER_E_INVALID, "audit event: the phase is not a name");
    }
    if (e->purpose != NULL && !coffer_text_ok(e->purpose, e->purpose_len, PURPOSE_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "audit event: the purpose (%zu bytes) is not 1 to %d bytes of text",
                              e->purpose_len, PURPOSE_MAX);
    }
    if (!opt_text_ok(e->detail, DETAIL_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "audit event: the detail is not 1 to %d bytes of text", DETAIL_MAX);
    }
    return COFFER_OK;
}

/* A version number, or NULL for 0. */
static void opt_int4(struct store_params *p, uint32_t v)
{
    if (v == 0) {
        store_param_null(p);
    } else {
        store_param_int4(p, (int32_t)v);
    }
}

struct insert {
    const struct coffer_audit_event *e;
    const struct coffer_buf *principal; /* NULL: no principal */
    int64_t id;
};

static enum coffer_err insert_tx(struct coffer_store *s, void *arg)
{
    struct insert *in = arg;
    const struct coffer_audit_event *e = in->e;
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    store_param_text(&p, e->action);
    store_param_text(&p, e->allowed ? "true" : "false");
    store_param_text(&p, e->reason);
    store_param_text(&p, e->purpose_unexpected ? "true" : "false");
    store_param_text(&p, e->request_id);
    store_param_text(&p, e->client_addr);
    if (in->principal != NULL) {
        store_param_binary(&p, in->principal->data, in->principal->len);
    } else {
        store_param_null(&p);
    }
    store_param_text(&p, e->org);
    store_param_text(&p, e->project);
    store_param_text(&p, e->credential);
    if (e->version == 0) {
        store_param_null(&p);
    } else {
        store_param_int4(&p, (int32_t)e->version);
    }
    store_param_text(&p, e->phase);
    /* The purpose is bound by length (the binary form of text is its bytes): it need not end in
     * a NUL. */
    if (e->purpose != NULL) {
        store_param_binary(&p, (const unsigned char *)e->purpose, e->purpose_len);
    } else {
        store_param_null(&p);
    }
    store_param_text(&p, e->detail);
    opt_int4(&p, e->org_key_version);
    opt_int4(&p, e->mk_version);
    if ((r = store_exec(s, &audit_insert, &p, "writing audit event", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "coffer.audit_events")) == COFFER_OK &&
        (r = store_col_count(res, 0, 0, "coffer.audit_events.id", &in->id)) == COFFER_OK &&
        in->id < 1) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "coffer.audit_events.id: not positive");
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_audit_insert(struct coffer_store *s,
                                          const struct coffer_audit_event *e, int64_t *id)
{
    const char *fields[PRINCIPAL_FIELDS] = {NULL};
    struct coffer_buf principal = {0};
    struct insert in = {.e = e};
    enum coffer_err r;

    if (id != NULL) {
        *id = 0;
    }
    if (s == NULL || e == NULL || id == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "audit event: missing store, event or id");
    }
    if ((r = check_event(e, fields)) != COFFER_OK) {
        return r;
    }
    if (e->who != NULL) {
        if ((r = store_encode_strings(fields, PRINCIPAL_FIELDS, &principal)) != COFFER_OK) {
            goto out;
        }
        in.principal = &principal;
    }
    if ((r = store_in_tx(s, insert_tx, &in, "writing audit event")) != COFFER_OK) {
        goto out;
    }
    *id = in.id;
out:
    coffer_buf_cleanup(&principal);
    return r;
}

/* A version number as text in buf, or NULL for 0 (as opt_int4 binds it). */
static const char *opt_number(uint32_t v, char buf[12])
{
    if (v == 0) {
        return NULL;
    }
    (void)snprintf(buf, 12, "%u", v);
    return buf;
}

enum coffer_err coffer_store_audit_insert_many(struct coffer_store *s,
                                               const struct coffer_audit_event *e, size_t n)
{
    const char *v[EVENT_COLS][COFFER_STORE_BATCH_MAX];
    size_t purpose_lens[COFFER_STORE_BATCH_MAX];
    char numbers[COFFER_STORE_BATCH_MAX][3][12];
    struct coffer_buf cols[EVENT_COLS];
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r = COFFER_OK;

    if (s == NULL || e == NULL || n == 0 || n > COFFER_STORE_BATCH_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "audit events: %zu events, want 1 to %d", n,
                              COFFER_STORE_BATCH_MAX);
    }
    memset(cols, 0, sizeof(cols));
    for (size_t i = 0; i < n; i++) {
        const char *fields[PRINCIPAL_FIELDS] = {NULL};

        if ((r = check_event(&e[i], fields)) != COFFER_OK) {
            return coffer_err_wrap(r, "audit event %zu of %zu", i + 1, n);
        }
        v[COL_ACTION][i] = e[i].action;
        v[COL_ALLOWED][i] = e[i].allowed ? "true" : "false";
        v[COL_REASON][i] = e[i].reason;
        v[COL_PURPOSE_UNEXPECTED][i] = e[i].purpose_unexpected ? "true" : "false";
        v[COL_REQUEST_ID][i] = e[i].request_id;
        v[COL_CLIENT_ADDR][i] = e[i].client_addr;
        for (size_t f = 0; f < PRINCIPAL_FIELDS; f++) {
            v[COL_PRINCIPAL + f][i] = fields[f];
        }
        v[COL_TARGET_ORG][i] = e[i].org;
        v[COL_PROJECT][i] = e[i].project;
        v[COL_CREDENTIAL][i] = e[i].credential;
        v[COL_VERSION][i] = opt_number(e[i].version, numbers[i][0]);
        v[COL_PHASE][i] = e[i].phase;
        /* The purpose is bound by length: it need not end in a NUL. */
        v[COL_PURPOSE][i] = e[i].purpose;
        purpose_lens[i] = e[i].purpose != NULL ? e[i].purpose_len : 0;
        v[COL_DETAIL][i] = e[i].detail;
        v[COL_ORG_KEY_VERSION][i] = opt_number(e[i].org_key_version, numbers[i][1]);
        v[COL_MK_VERSION][i] = opt_number(e[i].mk_version, numbers[i][2]);
    }
    for (size_t c = 0; c < EVENT_COLS && r == COFFER_OK; c++) {
        r = store_encode_texts(v[c], c == COL_PURPOSE ? purpose_lens : NULL, n, &cols[c]);
        store_param_binary(&p, cols[c].data, cols[c].len);
    }
    if (r == COFFER_OK &&
        (r = store_exec(s, &audit_insert_many, &p, "writing audit events", &res)) == COFFER_OK &&
        store_affected(res) != (long)n) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "writing audit events: %ld of %zu inserted",
                           store_affected(res), n);
    }
    PQclear(res);
    for (size_t c = 0; c < EVENT_COLS; c++) {
        coffer_buf_cleanup(&cols[c]);
    }
    return r;
}
