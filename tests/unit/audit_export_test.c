/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The audit export files: a generated log (signed with a software P-256 key
 * made by OpenSSL) written as JSONL and as CSV and read back verifies; the
 * records have the exact shape of docs/auditors.md; an edited event line is
 * reported as altered; a selection leaves events out without a problem and a
 * complete export may not; and every kind of malformed file is refused with
 * its file name and line number. Also the writer's refusals.
 *
 * The log: events 1 2 3 5 6 7 8 9 10 11 12 13; checkpoint 1 seals [1,5],
 * checkpoint 2 an empty range, checkpoint 3 [6,10]; 11 to 13 are unsealed.
 * Event 6 holds text that CSV must quote (a comma, quotes, CR LF) and UTF-8.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "coffer/auditlog.h"
#include "coffer/buf.h"
#include "coffer/err.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#define N_EVENTS 12
#define N_CPS 3

struct tevent {
    struct coffer_audit_row row;
    char id[24];
    char at[32];
    char request_id[32];
    char purpose[80];
    bool skip;
};

struct tcp {
    struct coffer_audit_cp_fields f;
    struct coffer_audit_checkpoint cp;
    unsigned char message[COFFER_AUDIT_MESSAGE_MAX];
    unsigned char sig[COFFER_AUDIT_SIG_MAX];
    unsigned char sealed[COFFER_AUDIT_SEALED_ENTRY * N_EVENTS];
};

struct tlog {
    EVP_PKEY *key;
    unsigned char spki[COFFER_AUDIT_SPKI_MAX];
    size_t spki_len;
    unsigned char fp[COFFER_AUDIT_HASH_LEN];
    struct tevent ev[N_EVENTS];
    struct tcp cps[N_CPS];
};

static const int64_t event_ids[N_EVENTS] = {1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13};
static const int64_t ranges[N_CPS][2] = {{1, 5}, {6, 5}, {6, 10}};

static void set_event(struct tevent *e, int64_t id)
{
    memset(e, 0, sizeof(*e));
    e->row.id = id;
    (void)snprintf(e->id, sizeof(e->id), "%" PRId64, id);
    (void)snprintf(e->at, sizeof(e->at), "2024-05-01T12:00:%02d.123456Z", (int)id);
    (void)snprintf(e->request_id, sizeof(e->request_id), "req-%" PRId64, id);
    if (id == 6) {
        (void)snprintf(e->purpose, sizeof(e->purpose), "deploy, \"quoted\" \xc3\xbc");
        e->row.f[COFFER_AF_DETAIL] = "two\r\nlines";
    } else {
        (void)snprintf(e->purpose, sizeof(e->purpose), "deploy build %" PRId64, id);
    }
    e->row.f[COFFER_AF_ID] = e->id;
    e->row.f[COFFER_AF_AT] = e->at;
    e->row.f[COFFER_AF_ACTION] = "access";
    e->row.f[COFFER_AF_ALLOWED] = id == 9 ? "false" : "true";
    e->row.f[COFFER_AF_REASON] = id == 9 ? "no_grant" : "granted";
    e->row.f[COFFER_AF_PURPOSE_UNEXPECTED] = "false";
    e->row.f[COFFER_AF_REQUEST_ID] = e->request_id;
    e->row.f[COFFER_AF_CLIENT_ADDR] = "192.0.2.7:5000";
    e->row.f[COFFER_AF_PRINCIPAL_KIND] = "agent";
    e->row.f[COFFER_AF_TRUST_DOMAIN] = "example.org";
    e->row.f[COFFER_AF_ORG] = "acme";
    e->row.f[COFFER_AF_AGENT_TYPE] = "builder";
    e->row.f[COFFER_AF_INSTANCE] = "ci-1";
    e->row.f[COFFER_AF_TARGET_ORG] = "acme";
    e->row.f[COFFER_AF_PROJECT] = "web";
    e->row.f[COFFER_AF_CREDENTIAL] = "db";
    e->row.f[COFFER_AF_VERSION] = id == 9 ? NULL : "1";
    e->row.f[COFFER_AF_PHASE] = "build";
    e->row.f[COFFER_AF_PURPOSE] = e->purpose;
    e->row.f[COFFER_AF_ORG_KEY_VERSION] = "1";
    e->row.f[COFFER_AF_MK_VERSION] = "1";
    assert_int_equal(coffer_audit_row_hash(&e->row, e->row.row_hash), COFFER_OK);
}

static void sign_cp(EVP_PKEY *key, struct tcp *c)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t len = 0;
    size_t sig_len = sizeof(c->sig);

    assert_int_equal(
        coffer_audit_message_build(&c->f, (char *)c->message, sizeof(c->message), &len), COFFER_OK);
    c->cp.seq = c->f.seq;
    c->cp.message = c->message;
    c->cp.message_len = len;
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestSign(ctx, c->sig, &sig_len, c->message, len), 1);
    EVP_MD_CTX_free(ctx);
    c->cp.signature = c->sig;
    c->cp.signature_len = sig_len;
}

static void seal_cp(struct tlog *log, size_t i)
{
    struct tcp *c = &log->cps[i];
    unsigned char chain[COFFER_AUDIT_HASH_LEN] = {0};
    unsigned int hl = 0;
    size_t n = 0;
    size_t k;

    memset(&c->f, 0, sizeof(c->f));
    c->f.seq = (int64_t)i + 1;
    (void)snprintf(c->f.at, sizeof(c->f.at), "2024-05-01T13:00:0%zu.000000Z", i);
    c->f.first_event = ranges[i][0];
    c->f.last_event = ranges[i][1];
    if (i > 0) {
        memcpy(chain, log->cps[i - 1].f.chain, sizeof(chain));
        assert_int_equal(EVP_Digest(log->cps[i - 1].message, log->cps[i - 1].cp.message_len,
                                    c->f.previous, &hl, EVP_sha256(), NULL),
                         1);
    }
    for (k = 0; k < N_EVENTS; k++) {
        const struct coffer_audit_row *r = &log->ev[k].row;

        if (r->id >= c->f.first_event && r->id <= c->f.last_event) {
            unsigned char *e = c->sealed + n * COFFER_AUDIT_SEALED_ENTRY;
            int b;

            for (b = 0; b < 8; b++) {
                e[b] = (unsigned char)((uint64_t)r->id >> (56 - 8 * b));
            }
            memcpy(e + 8, r->row_hash, COFFER_AUDIT_HASH_LEN);
            coffer_audit_chain_step(chain, r->id, r->row_hash);
            n++;
        }
    }
    c->f.events = (int64_t)n;
    memcpy(c->f.chain, chain, sizeof(chain));
    memset(c->f.schema, 0x5a, sizeof(c->f.schema));
    c->f.key_version = 1;
    memcpy(c->f.fingerprint, log->fp, sizeof(log->fp));
    c->cp.sealed = c->sealed;
    c->cp.sealed_len = n * COFFER_AUDIT_SEALED_ENTRY;
    sign_cp(log->key, c);
}

static int setup(void **state)
{
    struct tlog *log = calloc(1, sizeof(*log));
    unsigned char *p;
    size_t i;
    int len;

    assert_non_null(log);
    log->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(log->key);
    p = log->spki;
    len = i2d_PUBKEY(log->key, &p);
    assert_true(len > 0 && len <= COFFER_AUDIT_SPKI_MAX);
    log->spki_len = (size_t)len;
    coffer_audit_fingerprint(log->spki, log->spki_len, log->fp);
    for (i = 0; i < N_EVENTS; i++) {
        set_event(&log->ev[i], event_ids[i]);
    }
    for (i = 0; i < N_CPS; i++) {
        seal_cp(log, i);
    }
    *state = log;
    return 0;
}

static int teardown(void **state)
{
    struct tlog *log = *state;

    EVP_PKEY_free(log->key);
    free(log);
    return 0;
}

struct wopts {
    bool complete;
    size_t first_cp; /* write checkpoints from this one; the one before as anchor */
};

/* Writes the log as an export to a new temporary file, rewound. */
static FILE *write_export(struct tlog *log, enum coffer_audit_format fmt, const struct wopts *o)
{
    struct coffer_audit_export_header h = {
        .exported_at = "2024-05-02T00:00:00.000000Z",
        .complete = o->complete,
        .first_checkpoint = (int64_t)o->first_cp + 1,
        .last_checkpoint = N_CPS,
    };
    struct coffer_audit_writer *w = NULL;
    FILE *f = tmpfile();
    size_t i;
    size_t k = 0;

    assert_non_null(f);
    assert_int_equal(coffer_audit_writer_new(f, fmt, &w), COFFER_OK);
    assert_int_equal(coffer_audit_write_header(w, &h), COFFER_OK);
    assert_int_equal(coffer_audit_write_key(w, 1, "coffer-audit-v1", log->spki, log->spki_len),
                     COFFER_OK);
    if (o->first_cp > 0) {
        struct coffer_audit_checkpoint a = log->cps[o->first_cp - 1].cp;

        a.anchor = true;
        a.sealed = NULL;
        a.sealed_len = 0;
        assert_int_equal(coffer_audit_write_checkpoint(w, &a), COFFER_OK);
    }
    for (i = o->first_cp; i < N_CPS; i++) {
        assert_int_equal(coffer_audit_write_checkpoint(w, &log->cps[i].cp), COFFER_OK);
        for (; k < N_EVENTS && log->ev[k].row.id <= log->cps[i].f.last_event; k++) {
            if (log->ev[k].row.id >= log->cps[i].f.first_event && !log->ev[k].skip) {
                assert_int_equal(coffer_audit_write_event(w, &log->ev[k].row), COFFER_OK);
            }
        }
    }
    for (; k < N_EVENTS; k++) {
        assert_int_equal(coffer_audit_write_event(w, &log->ev[k].row), COFFER_OK);
    }
    assert_int_equal(coffer_audit_write_end(w), COFFER_OK);
    coffer_audit_writer_free(&w);
    assert_null(w);
    rewind(f);
    return f;
}

/* The whole file as a NUL-terminated string (free). */
static char *text_of(FILE *f)
{
    long n;
    char *s;

    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    s = calloc((size_t)n + 1, 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    rewind(f);
    return s;
}

static FILE *file_of(const char *text)
{
    FILE *f = tmpfile();

    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    rewind(f);
    return f;
}

/* 1-based line number of the first occurrence of needle. */
static int line_of(const char *text, const char *needle)
{
    const char *at = strstr(text, needle);
    int line = 1;

    assert_non_null(at);
    for (; text < at; text++) {
        line += *text == '\n';
    }
    return line;
}

/* A copy of text with its first `from` on line `line` replaced by `to` (free). */
static char *edit(const char *text, int line, const char *from, const char *to)
{
    const char *start = text;
    const char *end;
    const char *at;
    char *out;
    int l;

    for (l = 1; l < line; l++) {
        start = strchr(start, '\n');
        assert_non_null(start);
        start++;
    }
    end = strchr(start, '\n');
    at = strstr(start, from);
    assert_non_null(at);
    assert_true(end == NULL || at < end);
    out = calloc(strlen(text) + strlen(to) + 1, 1);
    assert_non_null(out);
    memcpy(out, text, (size_t)(at - text));
    strcat(out, to);
    strcat(out, at + strlen(from));
    return out;
}

/* A copy of text with the JSON string value of key on line `line` replaced (free). */
static char *set_value(const char *text, int line, const char *key, const char *value)
{
    char pat[64];
    const char *start = text;
    const char *v;
    const char *q;
    char *old;
    char *out;
    int l;

    (void)snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    for (l = 1; l < line; l++) {
        start = strchr(start, '\n') + 1;
    }
    v = strstr(start, pat);
    assert_non_null(v);
    v += strlen(pat);
    q = strchr(v, '"');
    assert_non_null(q);
    old = calloc((size_t)(q - v) + strlen(pat) + 2, 1);
    assert_non_null(old);
    memcpy(old, v - strlen(pat), (size_t)(q - v) + strlen(pat) + 1);
    {
        char *repl = calloc(strlen(pat) + strlen(value) + 2, 1);

        assert_non_null(repl);
        (void)sprintf(repl, "%s%s\"", pat, value);
        out = edit(text, line, old, repl);
        free(repl);
    }
    free(old);
    return out;
}

static bool starts_with(const char *text, const char *prefix)
{
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

/* A copy of text with ins inserted at the start of line `line` (free). */
static char *insert_line(const char *text, int line, const char *ins)
{
    const char *start = text;
    char *out = calloc(strlen(text) + strlen(ins) + 1, 1);
    int l;

    assert_non_null(out);
    for (l = 1; l < line; l++) {
        start = strchr(start, '\n') + 1;
    }
    memcpy(out, text, (size_t)(start - text));
    strcat(out, ins);
    strcat(out, start);
    return out;
}

/* Verifies text as an export named name; returns the result, *rep the report. */
static enum coffer_err verify_text(const char *text, const char *name,
                                   struct coffer_audit_report *rep)
{
    FILE *f = file_of(text);
    enum coffer_err r;

    coffer_err_clear();
    r = coffer_audit_verify_file(f, name, NULL, NULL, NULL, NULL, rep);
    fclose(f);
    return r;
}

/* The text must be refused as malformed at line `line`. */
static void assert_refused_at(const char *text, const char *name, int line)
{
    struct coffer_audit_report rep;
    char prefix[64];

    (void)snprintf(prefix, sizeof(prefix), "%s:%d: ", name, line);
    if (verify_text(text, name, &rep) != COFFER_E_INVALID) {
        fail_msg("accepted, want refusal at %s", prefix);
    }
    if (strncmp(coffer_err_detail(), prefix, strlen(prefix)) != 0) {
        fail_msg("detail \"%s\" does not start with \"%s\"", coffer_err_detail(), prefix);
    }
}

static void assert_intact(const struct coffer_audit_report *rep)
{
    if (rep->first != COFFER_AUDIT_OK) {
        fail_msg("not intact: %s", rep->first_message);
    }
    assert_int_equal(rep->problems, 0);
}

static void test_jsonl_round_trip(void **state)
{
    struct tlog *log = *state;
    struct wopts o = {.complete = true};
    FILE *f = write_export(log, COFFER_AUDIT_JSONL, &o);
    struct coffer_audit_report rep;
    bool complete = false;
    int64_t first = 0;
    int64_t last = 0;
    char *text = text_of(f);

    assert_int_equal(
        coffer_audit_verify_file(f, "t.jsonl", log->fp, &complete, &first, &last, &rep), COFFER_OK);
    assert_intact(&rep);
    assert_true(complete);
    assert_int_equal(first, 1);
    assert_int_equal(last, 3);
    assert_int_equal(rep.checkpoints, 3);
    assert_int_equal(rep.events_verified, 9);
    assert_int_equal(rep.events_unsealed, 3);
    assert_int_equal(rep.last_seq, 3);
    assert_int_equal(rep.last_event, 10);
    fclose(f);

    /* The records' exact shape. */
    assert_true(starts_with(text,
                            "{\"type\":\"header\",\"format\":\"coffer-audit-export\",\"version\":1,"
                            "\"exported_at\":\"2024-05-02T00:00:00.000000Z\",\"since\":null,"
                            "\"until\":null,\"org\":null,\"complete\":true,\"first_checkpoint\":1,"
                            "\"last_checkpoint\":3}\n{\"type\":\"signing_key\",\"version\":1,"
                            "\"label\":\"coffer-audit-v1\",\"public_key\":\""));
    assert_non_null(strstr(text, "\n{\"type\":\"event\",\"id\":9,\"at\":\"2024-05-01T12:00:09."
                                 "123456Z\",\"action\":\"access\",\"allowed\":false,"
                                 "\"reason\":\"no_grant\",\"purpose_unexpected\":false,"));
    assert_non_null(strstr(text, "\"version\":null,\"phase\":\"build\""));
    assert_non_null(strstr(text, "\"admin\":null,"));
    assert_non_null(strstr(text, "\"org_key_version\":1,\"mk_version\":1,\"row_hash\":\""));
    assert_non_null(strstr(text, "\n{\"type\":\"end\",\"checkpoints\":3,\"events\":12}\n"));
    assert_int_equal(text[strlen(text) - 1], '\n');
    free(text);
}

static void test_csv_round_trip(void **state)
{
    struct tlog *log = *state;
    struct wopts o = {.complete = true};
    FILE *f = write_export(log, COFFER_AUDIT_CSV, &o);
    struct coffer_audit_report rep;
    char *text = text_of(f);

    assert_int_equal(coffer_audit_verify_file(f, "t.csv", NULL, NULL, NULL, NULL, &rep), COFFER_OK);
    assert_intact(&rep);
    assert_int_equal(rep.checkpoints, 3);
    assert_int_equal(rep.events_verified, 9);
    assert_int_equal(rep.events_unsealed, 3);
    fclose(f);

    assert_true(starts_with(text,
                            "record,id,at,action,allowed,reason,purpose_unexpected,request_id,"
                            "client_addr,principal_kind,trust_domain,org,agent_type,instance,admin,"
                            "target_org,project,credential,version,phase,purpose,detail,"
                            "org_key_version,mk_version,row_hash,proof\r\n"
                            "header,,,,,,,,,,,,,,,,,,,,,,,,,\"{\"\"type\"\":\"\"header\"\","));
    /* Quoted where needed, NULL as an empty cell, CR LF kept inside quotes. */
    assert_non_null(strstr(text, "\r\nevent,6,2024-05-01T12:00:06.123456Z,access,true,granted,"
                                 "false,req-6,192.0.2.7:5000,agent,example.org,acme,builder,"
                                 "ci-1,,acme,web,db,1,build,\"deploy, \"\"quoted\"\" \xc3\xbc\","
                                 "\"two\r\nlines\",1,1,"));
    assert_non_null(strstr(text, ",false,no_grant,"));
    assert_non_null(strstr(text, "\r\nend,,,,,,,,,,,,,,,,,,,,,,,,,\"{\"\"type\"\":\"\"end\"\","
                                 "\"\"checkpoints\"\":3,\"\"events\"\":12}\"\r\n"));
    free(text);
}

static void test_anchor_export(void **state)
{
    struct tlog *log = *state;
    struct wopts o = {.complete = true, .first_cp = 1};
    struct coffer_audit_report rep;
    int64_t first = 0;
    FILE *f = write_export(log, COFFER_AUDIT_JSONL, &o);

    assert_int_equal(coffer_audit_verify_file(f, "t.jsonl", NULL, NULL, &first, NULL, &rep),
                     COFFER_OK);
    fclose(f);
    assert_intact(&rep);
    assert_int_equal(first, 2);
    assert_int_equal(rep.checkpoints, 2);
    assert_int_equal(rep.events_verified, 5);

    f = write_export(log, COFFER_AUDIT_CSV, &o);
    assert_int_equal(coffer_audit_verify_file(f, "t.csv", NULL, NULL, NULL, NULL, &rep), COFFER_OK);
    fclose(f);
    assert_intact(&rep);
}

static void test_selection_and_complete(void **state)
{
    struct tlog *log = *state;
    struct wopts o = {.complete = false};
    struct coffer_audit_report rep;
    FILE *f;

    log->ev[2].skip = true; /* event 3 */
    f = write_export(log, COFFER_AUDIT_JSONL, &o);
    assert_int_equal(coffer_audit_verify_file(f, "t.jsonl", NULL, NULL, NULL, NULL, &rep),
                     COFFER_OK);
    fclose(f);
    assert_intact(&rep);
    assert_int_equal(rep.events_absent, 1);

    o.complete = true;
    f = write_export(log, COFFER_AUDIT_CSV, &o);
    assert_int_equal(coffer_audit_verify_file(f, "t.csv", NULL, NULL, NULL, NULL, &rep), COFFER_OK);
    fclose(f);
    assert_int_equal(rep.first, COFFER_AUDIT_EVENT_DELETED);
    assert_int_equal(rep.first_event, 3);
}

static void test_tampered_lines(void **state)
{
    struct tlog *log = *state;
    struct wopts o = {.complete = true};
    FILE *f = write_export(log, COFFER_AUDIT_JSONL, &o);
    char *text = text_of(f);
    char *bad;
    struct coffer_audit_report rep;
    unsigned char pin[COFFER_AUDIT_HASH_LEN];

    fclose(f);
    bad = set_value(text, line_of(text, "\"id\":7,"), "purpose", "exfiltrate");
    assert_int_equal(verify_text(bad, "t.jsonl", &rep), COFFER_OK);
    assert_int_equal(rep.first, COFFER_AUDIT_EVENT_ALTERED);
    assert_int_equal(rep.first_event, 7);
    assert_int_equal(rep.first_seq, 3);
    free(bad);

    /* A signature forged as a well-formed ECDSA-Sig-Value (r = s = 1). */
    bad = set_value(text, line_of(text, "\"type\":\"checkpoint\",\"seq\":2,"), "signature",
                    "MAYCAQECAQE=");
    assert_int_equal(verify_text(bad, "t.jsonl", &rep), COFFER_OK);
    assert_int_equal(rep.first, COFFER_AUDIT_CHECKPOINT_SIGNATURE);
    assert_int_equal(rep.first_seq, 2);
    free(bad);

    /* Pinned to another key. */
    memcpy(pin, log->fp, sizeof(pin));
    pin[0] ^= 0xff;
    f = file_of(text);
    assert_int_equal(coffer_audit_verify_file(f, "t.jsonl", pin, NULL, NULL, NULL, &rep),
                     COFFER_OK);
    fclose(f);
    assert_int_equal(rep.first, COFFER_AUDIT_UNKNOWN_KEY);
    free(text);

    f = write_export(log, COFFER_AUDIT_CSV, &o);
    text = text_of(f);
    fclose(f);
    bad = edit(text, line_of(text, "\r\nevent,7,") + 1, "deploy build 7", "exfiltrate");
    assert_int_equal(verify_text(bad, "t.csv", &rep), COFFER_OK);
    assert_int_equal(rep.first, COFFER_AUDIT_EVENT_ALTERED);
    assert_int_equal(rep.first_event, 7);
    free(bad);
    free(text);
}

static void test_malformed_jsonl(void **state)
{
    struct tlog *log = *state;
    struct wopts o = {.complete = true};
    FILE *f = write_export(log, COFFER_AUDIT_JSONL, &o);
    char *text = text_of(f);
    int ev7 = line_of(text, "\"id\":7,");
    int cp1 = line_of(text, "\"type\":\"checkpoint\",\"seq\":1,");
    int end = line_of(text, "{\"type\":\"end\"");
    char hex[2 * COFFER_AUDIT_HASH_LEN + 1];
    char upper[2 * COFFER_AUDIT_HASH_LEN + 1];
    char *big;
    char *bad;
    size_t i;

    fclose(f);
    assert_int_equal(ev7, 11);
    assert_int_equal(cp1, 3);
    assert_int_equal(end, 18);

#define REFUSED(expr, line)                                                                        \
    do {                                                                                           \
        bad = (expr);                                                                              \
        assert_refused_at(bad, "t.jsonl", (line));                                                 \
        free(bad);                                                                                 \
    } while (0)

    REFUSED(set_value(text, 2, "public_key", "!!!!"), 2);
    REFUSED(set_value(text, 2, "public_key", "MFkw"), 2);
    REFUSED(set_value(text, 2, "fingerprint", "00"), 2);
    REFUSED(set_value(text, 2, "label", "coffer-audit-v2"), 2);
    REFUSED(edit(text, ev7, "\"type\":\"event\",", "\"type\":\"event\",\"extra\":1,"), ev7);
    REFUSED(edit(text, ev7, "\"type\":\"event\",", "\"type\":\"event\",\"type\":\"event\","), ev7);
    REFUSED(edit(text, ev7, "\"id\":7,", "\"id\":null,"), ev7);
    REFUSED(edit(text, ev7, "\"id\":7,", "\"id\":\"7\","), ev7);
    REFUSED(edit(text, ev7, "\"allowed\":true", "\"allowed\":\"true\""), ev7);
    REFUSED(edit(text, ev7, "\"version\":1,", "\"version\":1.5,"), ev7);
    REFUSED(set_value(text, ev7, "purpose", ""), ev7);
    REFUSED(set_value(text, ev7, "at", "2024-05-01 12:00:07"), ev7);
    REFUSED(edit(text, ev7, "{", "[{"), ev7);
    REFUSED(edit(text, ev7, "{\"type\":\"event\"", "{garbage"), ev7);
    REFUSED(edit(text, ev7, "\"type\":\"event\"", "\"type\":\"evnt\""), ev7);
    REFUSED(set_value(text, cp1, "sealed", "AAAA"), cp1);
    REFUSED(set_value(text, cp1, "sealed", "AAAA AAAA"), cp1);
    REFUSED(set_value(text, cp1, "message", ""), cp1);
    REFUSED(edit(text, 1, "\"version\":1", "\"version\":2"), 1);
    REFUSED(edit(text, 1, "\"first_checkpoint\":1", "\"first_checkpoint\":2"), cp1);
    REFUSED(edit(text, 1, "\"last_checkpoint\":3", "\"last_checkpoint\":4"), end);
    REFUSED(edit(text, end, "\"events\":12", "\"events\":11"), end);
    REFUSED(edit(text, end, "}\n", "}\r\n"), end);

    /* Upper-case hex of a row hash. */
    coffer_hex(log->ev[5].row.row_hash, COFFER_AUDIT_HASH_LEN, hex);
    for (i = 0; i <= 2 * COFFER_AUDIT_HASH_LEN; i++) {
        upper[i] = (char)(hex[i] >= 'a' && hex[i] <= 'f' ? hex[i] - 32 : hex[i]);
    }
    REFUSED(edit(text, ev7, hex, upper), ev7);

    /* A line past the cap of a non-checkpoint record. */
    big = calloc(70001, 1);
    assert_non_null(big);
    memset(big, 'x', 70000);
    REFUSED(set_value(text, ev7, "purpose", big), ev7);
    free(big);

    /* Order: the header first, keys before checkpoints, nothing after the end. */
    REFUSED(strdup(strchr(text, '\n') + 1), 1);
    {
        const char *l2 = strchr(text, '\n') + 1;
        char *key_line = strndup(l2, (size_t)(strchr(l2, '\n') - l2) + 1);
        int cp2 = line_of(text, "{\"type\":\"checkpoint\",\"seq\":2,");

        assert_non_null(key_line);
        REFUSED(insert_line(text, cp2, key_line), cp2);
        free(key_line);
    }
    bad = calloc(strlen(text) + 64, 1);
    assert_non_null(bad);
    (void)sprintf(bad, "%s{\"type\":\"end\",\"checkpoints\":3,\"events\":12}\n", text);
    assert_refused_at(bad, "t.jsonl", end + 1);
    free(bad);

    /* Truncated: without its end record, or without the final newline. */
    bad = strdup(text);
    assert_non_null(bad);
    *strstr(bad, "{\"type\":\"end\"") = '\0';
    assert_refused_at(bad, "t.jsonl", end);
    free(bad);
    bad = strdup(text);
    assert_non_null(bad);
    bad[strlen(bad) - 1] = '\0';
    assert_refused_at(bad, "t.jsonl", end);
    free(bad);

    /* Not an export at all. */
    assert_refused_at("hello\n", "t.jsonl", 1);
    assert_refused_at("", "t.jsonl", 1);
#undef REFUSED
    free(text);
}

static void test_malformed_csv(void **state)
{
    struct tlog *log = *state;
    struct wopts o = {.complete = true};
    FILE *f = write_export(log, COFFER_AUDIT_CSV, &o);
    char *text = text_of(f);
    int ev7 = line_of(text, "\r\nevent,7,") + 1;
    int key = line_of(text, "\r\nsigning_key,") + 1;
    char *bad;

    fclose(f);
    /* Event 6's detail spans two lines, so event 7 is on line 13 of the file. */
    assert_int_equal(ev7, 13);

#define REFUSED(expr, line)                                                                        \
    do {                                                                                           \
        bad = (expr);                                                                              \
        assert_refused_at(bad, "t.csv", (line));                                                   \
        free(bad);                                                                                 \
    } while (0)

    REFUSED(edit(text, 1, "purpose_unexpected", "purpose_unexpectedx"), 1);
    REFUSED(edit(text, 1, "\r\n", "\n"), 1);
    REFUSED(edit(text, ev7, ",granted,", ",granted"), ev7);
    REFUSED(edit(text, ev7, ",granted,", ",granted,,"), ev7);
    REFUSED(edit(text, ev7, ",granted,", ",gra\"nted,"), ev7);
    REFUSED(edit(text, ev7, ",granted,", ",\"granted\"x,"), ev7);
    REFUSED(edit(text, ev7, ",true,", ",yes,"), ev7);
    REFUSED(edit(text, ev7, ",req-7,", ",req-7\r,"), ev7);
    REFUSED(edit(text, ev7, "event,7,", "event,07,"), ev7);
    REFUSED(edit(text, ev7, "event,7,", "event,,"), ev7);
    REFUSED(edit(text, ev7, ",1,1,", ",1,+1,"), ev7);
    REFUSED(edit(text, ev7, "\r\n", ",{}\r\n"), ev7);
    REFUSED(edit(text, ev7, "event,7,", "evt,7,"), ev7);
    REFUSED(edit(text, key, "signing_key,", "anchor,"), key);
    REFUSED(edit(text, key, "signing_key,,", "signing_key,x,"), key);
    REFUSED(edit(text, key, "\"\"version\"\":1", "\"\"version\"\":0"), key);

    /* An unclosed quote runs to the end of the file. */
    bad = calloc(strlen(text) + 16, 1);
    assert_non_null(bad);
    (void)sprintf(bad, "%sevent,\"14\r\n", text);
    assert_refused_at(bad, "t.csv", line_of(text, "\r\nend,") + 2);
    free(bad);
#undef REFUSED
    free(text);
}

static void test_writer_refusals(void **state)
{
    struct tlog *log = *state;
    struct coffer_audit_export_header h = {.exported_at = "2024-05-02T00:00:00.000000Z"};
    struct coffer_audit_writer *w = NULL;
    struct coffer_audit_row row = log->ev[0].row;
    struct coffer_audit_checkpoint cp = log->cps[0].cp;
    FILE *f = tmpfile();
    FILE *full;

    assert_non_null(f);
    assert_int_equal(coffer_audit_writer_new(NULL, COFFER_AUDIT_JSONL, &w), COFFER_E_INVALID);
    assert_int_equal(coffer_audit_writer_new(f, (enum coffer_audit_format)5, &w), COFFER_E_INVALID);
    assert_int_equal(coffer_audit_writer_new(f, COFFER_AUDIT_JSONL, &w), COFFER_OK);

    /* Order: nothing before the header, the header once. */
    assert_int_equal(coffer_audit_write_key(w, 1, "coffer-audit-v1", log->spki, log->spki_len),
                     COFFER_E_STATE);
    assert_int_equal(coffer_audit_write_event(w, &row), COFFER_E_STATE);
    h.first_checkpoint = 2;
    assert_int_equal(coffer_audit_write_header(w, &h), COFFER_E_INVALID);
    h.first_checkpoint = 0;
    h.org = "bad\norg";
    assert_int_equal(coffer_audit_write_header(w, &h), COFFER_E_INVALID);
    h.org = NULL;
    assert_int_equal(coffer_audit_write_header(w, &h), COFFER_OK);
    assert_int_equal(coffer_audit_write_header(w, &h), COFFER_E_STATE);

    /* Keys: label and size. */
    assert_int_equal(coffer_audit_write_key(w, 1, "coffer-audit-v2", log->spki, log->spki_len),
                     COFFER_E_INVALID);
    assert_int_equal(coffer_audit_write_key(w, 1, "coffer-audit-v1", log->spki, 0),
                     COFFER_E_INVALID);

    /* Events that could not be read back as written. */
    row.f[COFFER_AF_PURPOSE] = "";
    assert_int_equal(coffer_audit_write_event(w, &row), COFFER_E_INVALID);
    row = log->ev[0].row;
    row.f[COFFER_AF_ID] = "2";
    assert_int_equal(coffer_audit_write_event(w, &row), COFFER_E_INVALID);
    row = log->ev[0].row;
    row.f[COFFER_AF_VERSION] = "01";
    assert_int_equal(coffer_audit_write_event(w, &row), COFFER_E_INVALID);
    row = log->ev[0].row;
    row.f[COFFER_AF_ALLOWED] = "yes";
    assert_int_equal(coffer_audit_write_event(w, &row), COFFER_E_INVALID);
    row = log->ev[0].row;
    row.f[COFFER_AF_CLIENT_ADDR] = "\xff\xfe";
    assert_int_equal(coffer_audit_write_event(w, &row), COFFER_E_INVALID);

    /* Checkpoints: a sealed list of part of an entry; an anchor after a checkpoint. */
    cp.sealed_len = 39;
    assert_int_equal(coffer_audit_write_checkpoint(w, &cp), COFFER_E_INVALID);
    assert_int_equal(coffer_audit_write_checkpoint(w, &log->cps[0].cp), COFFER_OK);
    cp = log->cps[0].cp;
    cp.anchor = true;
    assert_int_equal(coffer_audit_write_checkpoint(w, &cp), COFFER_E_STATE);
    assert_int_equal(coffer_audit_write_end(w), COFFER_OK);
    assert_int_equal(coffer_audit_write_event(w, &log->ev[0].row), COFFER_E_STATE);
    assert_int_equal(coffer_audit_write_end(w), COFFER_E_STATE);
    coffer_audit_writer_free(&w);
    fclose(f);

    /* A stream that fails. */
    full = fopen("/dev/full", "w");
    if (full != NULL) {
        assert_int_equal(setvbuf(full, NULL, _IONBF, 0), 0);
        assert_int_equal(coffer_audit_writer_new(full, COFFER_AUDIT_CSV, &w), COFFER_OK);
        assert_int_equal(coffer_audit_write_header(w, &h), COFFER_E_IO);
        assert_int_equal(coffer_audit_write_end(w), COFFER_E_STATE);
        coffer_audit_writer_free(&w);
        fclose(full);
    }
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_jsonl_round_trip),       T(test_csv_round_trip),  T(test_anchor_export),
        T(test_selection_and_complete), T(test_tampered_lines),  T(test_malformed_jsonl),
        T(test_malformed_csv),          T(test_writer_refusals),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
