/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The verifier, fed a log generated here and signed with a software P-256
 * key made by OpenSSL (this tests the pure verifier; signing in the token is
 * tested with the keys module): the intact log verifies, and each kind of
 * tampering is reported as the right problem at the right event or
 * checkpoint. Also the call errors of the verifier's interface.
 *
 * The log: events 1 2 3 5 6 7 8 9 10 11 12 13 (4 was rolled back);
 * checkpoint 1 seals [1,5], checkpoint 2 is an empty range, checkpoint 3
 * seals [6,10] under a new schema digest; events 11 to 13 are not sealed yet.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "coffer/auditlog.h"

#include <inttypes.h>
#include <stdio.h>
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
    char purpose[64];
    bool skip;
};

struct tcp {
    struct coffer_audit_cp_fields f;
    struct coffer_audit_checkpoint cp;
    unsigned char message[COFFER_AUDIT_MESSAGE_MAX];
    unsigned char sig[COFFER_AUDIT_SIG_MAX];
    unsigned char sealed[COFFER_AUDIT_SEALED_ENTRY * N_EVENTS];
    bool skip;
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
    (void)snprintf(e->purpose, sizeof(e->purpose), "deploy build %" PRId64, id);
    e->row.f[COFFER_AF_ID] = e->id;
    e->row.f[COFFER_AF_AT] = e->at;
    e->row.f[COFFER_AF_ACTION] = "access";
    e->row.f[COFFER_AF_ALLOWED] = "true";
    e->row.f[COFFER_AF_REASON] = "granted";
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
    e->row.f[COFFER_AF_VERSION] = "1";
    e->row.f[COFFER_AF_PHASE] = "build";
    e->row.f[COFFER_AF_PURPOSE] = e->purpose;
    e->row.f[COFFER_AF_ORG_KEY_VERSION] = "1";
    e->row.f[COFFER_AF_MK_VERSION] = "1";
    assert_int_equal(coffer_audit_row_hash(&e->row, e->row.row_hash), COFFER_OK);
}

/* Rebuilds the message of c from c->f, its hash and its signature under key. */
static void sign_cp(EVP_PKEY *key, struct tcp *c)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t len = 0;
    size_t sig_len = sizeof(c->sig);
    unsigned int hl = 0;

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
    assert_int_equal(EVP_Digest(c->message, len, c->cp.hash, &hl, EVP_sha256(), NULL), 1);
    c->cp.columns = c->f;
}

/* Seals checkpoint i over the current events, linked to checkpoint i - 1. */
static void seal_cp(struct tlog *log, size_t i)
{
    struct tcp *c = &log->cps[i];
    unsigned char chain[COFFER_AUDIT_HASH_LEN] = {0};
    size_t n = 0;
    size_t k;

    memset(&c->f, 0, sizeof(c->f));
    c->f.seq = (int64_t)i + 1;
    (void)snprintf(c->f.at, sizeof(c->f.at), "2024-05-01T13:00:0%zu.000000Z", i);
    c->f.first_event = ranges[i][0];
    c->f.last_event = ranges[i][1];
    if (i > 0) {
        memcpy(chain, log->cps[i - 1].f.chain, sizeof(chain));
        memcpy(c->f.previous, log->cps[i - 1].cp.hash, sizeof(c->f.previous));
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
    memset(c->f.schema, i < 2 ? 0x5a : 0x5b, sizeof(c->f.schema));
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

static struct tevent *event(struct tlog *log, int64_t id)
{
    size_t i;

    for (i = 0; i < N_EVENTS; i++) {
        if (log->ev[i].row.id == id) {
            return &log->ev[i];
        }
    }
    fail_msg("no event %" PRId64, id);
    return &log->ev[0];
}

struct feed_opts {
    enum coffer_audit_source source;
    const unsigned char *pin;
    int64_t pruned;
    bool columns;
    bool no_key;
    size_t first_cp;                      /* feed from this checkpoint on */
    bool anchor_prev;                     /* and the one before it as anchor */
    const struct coffer_audit_row *extra; /* fed in id order with the others */
};

static void feed_event(struct coffer_audit_verifier *v, const struct coffer_audit_row *r)
{
    assert_int_equal(coffer_audit_verifier_event(v, r), COFFER_OK);
}

/* Feeds the log as the database reader would and returns the report. */
static struct coffer_audit_report run(struct tlog *log, const struct feed_opts *o)
{
    struct coffer_audit_verifier *v = NULL;
    struct coffer_audit_report rep;
    bool extra_done = o->extra == NULL;
    size_t i;
    size_t k = 0;

    assert_int_equal(coffer_audit_verifier_new(o->source, &v), COFFER_OK);
    if (!o->no_key) {
        assert_int_equal(coffer_audit_verifier_add_key(v, 1, log->spki, log->spki_len), COFFER_OK);
    }
    if (o->pin != NULL) {
        coffer_audit_verifier_pin(v, o->pin);
    }
    coffer_audit_verifier_pruned(v, o->pruned);
    if (o->anchor_prev) {
        struct coffer_audit_checkpoint a = log->cps[o->first_cp - 1].cp;

        a.anchor = true;
        a.sealed = NULL;
        a.sealed_len = 0;
        a.has_columns = o->columns;
        assert_int_equal(coffer_audit_verifier_checkpoint(v, &a), COFFER_OK);
    }
    for (i = o->first_cp; i < N_CPS; i++) {
        struct tcp *c = &log->cps[i];

        if (c->skip) {
            continue;
        }
        c->cp.has_columns = o->columns;
        assert_int_equal(coffer_audit_verifier_checkpoint(v, &c->cp), COFFER_OK);
        for (; k < N_EVENTS && log->ev[k].row.id <= c->f.last_event; k++) {
            if (!extra_done && o->extra->id < log->ev[k].row.id) {
                feed_event(v, o->extra);
                extra_done = true;
            }
            if (log->ev[k].row.id >= c->f.first_event && !log->ev[k].skip) {
                feed_event(v, &log->ev[k].row);
            }
        }
    }
    for (; k < N_EVENTS; k++) {
        if (!log->ev[k].skip) {
            feed_event(v, &log->ev[k].row);
        }
    }
    assert_int_equal(coffer_audit_verifier_finish(v, &rep), COFFER_OK);
    coffer_audit_verifier_free(&v);
    assert_null(v);
    return rep;
}

static struct coffer_audit_report run_db(struct tlog *log)
{
    struct feed_opts o = {.source = COFFER_AUDIT_FROM_DATABASE};

    return run(log, &o);
}

static void assert_problem(const struct coffer_audit_report *rep, enum coffer_audit_problem p,
                           int64_t event_id, int64_t seq)
{
    if (rep->first != p || rep->first_event != event_id || rep->first_seq != seq) {
        fail_msg("want %s at event %" PRId64 " checkpoint %" PRId64 ", got %s at %" PRId64
                 " / %" PRId64 ": %s",
                 coffer_audit_problem_str(p), event_id, seq, coffer_audit_problem_str(rep->first),
                 rep->first_event, rep->first_seq, rep->first_message);
    }
    assert_true(rep->problems >= 1);
    assert_true(strlen(rep->first_message) > 0);
    assert_null(strchr(rep->first_message, '\n'));
}

static void test_intact(void **state)
{
    struct tlog *log = *state;
    struct feed_opts o = {.source = COFFER_AUDIT_FROM_DATABASE, .columns = true};
    struct coffer_audit_report rep = run_db(log);

    assert_int_equal(rep.first, COFFER_AUDIT_OK);
    assert_int_equal(rep.problems, 0);
    assert_string_equal(rep.first_message, "");
    assert_int_equal(rep.checkpoints, 3);
    assert_int_equal(rep.events_verified, 9);
    assert_int_equal(rep.events_unsealed, 3);
    assert_int_equal(rep.events_absent, 0);
    assert_int_equal(rep.events_pruned, 0);
    assert_int_equal(rep.last_seq, 3);
    assert_int_equal(rep.last_event, 10);
    assert_int_equal(rep.schema_changes, 1);
    assert_int_equal(rep.first_schema_change_seq, 3);

    /* With the stored columns given too, and pinned to the right key. */
    o.pin = log->fp;
    rep = run(log, &o);
    assert_int_equal(rep.first, COFFER_AUDIT_OK);
    assert_int_equal(rep.problems, 0);
}

static void test_event_altered(void **state)
{
    struct tlog *log = *state;
    struct coffer_audit_report rep;

    (void)snprintf(event(log, 7)->purpose, sizeof(event(log, 7)->purpose), "exfiltrate");
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_EVENT_ALTERED, 7, 3);
    assert_int_equal(rep.problems, 1);
    assert_non_null(strstr(rep.first_message, "event 7"));
}

static void test_event_altered_hash_recomputed(void **state)
{
    struct tlog *log = *state;
    struct tevent *e = event(log, 7);
    struct coffer_audit_report rep;

    (void)snprintf(e->purpose, sizeof(e->purpose), "exfiltrate");
    assert_int_equal(coffer_audit_row_hash(&e->row, e->row.row_hash), COFFER_OK);
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_EVENT_HASH_CHANGED, 7, 3);
    assert_int_equal(rep.problems, 1);
}

static void test_event_id_field_changed(void **state)
{
    struct tlog *log = *state;
    struct coffer_audit_report rep;

    /* The content names another id than the row it is filed under. */
    event(log, 8)->row.f[COFFER_AF_ID] = "9";
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_EVENT_ALTERED, 8, 3);
}

static void test_event_deleted(void **state)
{
    struct tlog *log = *state;
    struct feed_opts o = {.source = COFFER_AUDIT_FROM_DATABASE};
    struct coffer_audit_report rep;

    event(log, 3)->skip = true;
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_EVENT_DELETED, 3, 1);
    assert_int_equal(rep.problems, 1);

    /* A selection may leave it out; an export that claims to be complete may not. */
    o.source = COFFER_AUDIT_FROM_EXPORT;
    rep = run(log, &o);
    assert_int_equal(rep.first, COFFER_AUDIT_OK);
    assert_int_equal(rep.events_absent, 1);
    o.source = COFFER_AUDIT_FROM_COMPLETE_EXPORT;
    rep = run(log, &o);
    assert_problem(&rep, COFFER_AUDIT_EVENT_DELETED, 3, 1);

    /* Pruned after an export: counted, not a problem; one past the horizon still is. */
    o.source = COFFER_AUDIT_FROM_DATABASE;
    o.pruned = 3;
    rep = run(log, &o);
    assert_int_equal(rep.first, COFFER_AUDIT_OK);
    assert_int_equal(rep.events_pruned, 1);
    o.pruned = 2;
    rep = run(log, &o);
    assert_problem(&rep, COFFER_AUDIT_EVENT_DELETED, 3, 1);
}

static void test_last_event_of_range_deleted(void **state)
{
    struct tlog *log = *state;
    struct coffer_audit_report rep;

    /* Found when the range closes, at the next checkpoint or at the end. */
    event(log, 5)->skip = true;
    event(log, 10)->skip = true;
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_EVENT_DELETED, 5, 1);
    assert_int_equal(rep.problems, 2);
}

static void test_events_swapped(void **state)
{
    struct tlog *log = *state;
    struct tevent *a = event(log, 2);
    struct tevent *b = event(log, 3);
    struct coffer_audit_report rep;
    struct tevent tmp = *a;
    int i;

    /* Every field but the id changes place; the stored hashes stay. */
    for (i = 1; i < COFFER_AUDIT_FIELDS; i++) {
        a->row.f[i] = b->row.f[i];
        b->row.f[i] = tmp.row.f[i];
    }
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_EVENT_ALTERED, 2, 1);
    assert_int_equal(rep.problems, 2);

    /* With their hashes swapped as well, each still fails its own hash (the id is in it). */
    memcpy(a->row.row_hash, b->row.row_hash, COFFER_AUDIT_HASH_LEN);
    memcpy(b->row.row_hash, tmp.row.row_hash, COFFER_AUDIT_HASH_LEN);
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_EVENT_ALTERED, 2, 1);
}

static void test_event_inserted(void **state)
{
    struct tlog *log = *state;
    struct feed_opts o = {.source = COFFER_AUDIT_FROM_DATABASE};
    struct coffer_audit_report rep;
    struct tevent extra;

    /* Into the gap left by a rolled-back transaction, with a correct hash of its own. */
    set_event(&extra, 4);
    o.extra = &extra.row;
    rep = run(log, &o);
    assert_problem(&rep, COFFER_AUDIT_EVENT_INSERTED, 4, 1);
    assert_int_equal(rep.problems, 1);
}

static void test_events_out_of_order(void **state)
{
    struct tlog *log = *state;
    struct coffer_audit_verifier *v = NULL;
    struct coffer_audit_report rep;

    assert_int_equal(coffer_audit_verifier_new(COFFER_AUDIT_FROM_DATABASE, &v), COFFER_OK);
    assert_int_equal(coffer_audit_verifier_add_key(v, 1, log->spki, log->spki_len), COFFER_OK);
    assert_int_equal(coffer_audit_verifier_checkpoint(v, &log->cps[0].cp), COFFER_OK);
    feed_event(v, &event(log, 1)->row);
    feed_event(v, &event(log, 2)->row);
    feed_event(v, &event(log, 2)->row);
    feed_event(v, &event(log, 3)->row);
    feed_event(v, &event(log, 5)->row);
    assert_int_equal(coffer_audit_verifier_finish(v, &rep), COFFER_OK);
    coffer_audit_verifier_free(&v);
    assert_problem(&rep, COFFER_AUDIT_EVENT_OUT_OF_ORDER, 2, 1);
    assert_int_equal(rep.problems, 1);

    /*
     * Swapped in the feed: when 3 comes, 2 has not, so 2 is missing from
     * the sealed order; then 2 comes late. Both are counted.
     */
    assert_int_equal(coffer_audit_verifier_new(COFFER_AUDIT_FROM_DATABASE, &v), COFFER_OK);
    assert_int_equal(coffer_audit_verifier_add_key(v, 1, log->spki, log->spki_len), COFFER_OK);
    assert_int_equal(coffer_audit_verifier_checkpoint(v, &log->cps[0].cp), COFFER_OK);
    feed_event(v, &event(log, 1)->row);
    feed_event(v, &event(log, 3)->row);
    feed_event(v, &event(log, 2)->row);
    feed_event(v, &event(log, 5)->row);
    assert_int_equal(coffer_audit_verifier_finish(v, &rep), COFFER_OK);
    coffer_audit_verifier_free(&v);
    assert_problem(&rep, COFFER_AUDIT_EVENT_DELETED, 2, 1);
    assert_int_equal(rep.problems, 2);

    /* An event given before the checkpoint that seals it. */
    assert_int_equal(coffer_audit_verifier_new(COFFER_AUDIT_FROM_DATABASE, &v), COFFER_OK);
    assert_int_equal(coffer_audit_verifier_add_key(v, 1, log->spki, log->spki_len), COFFER_OK);
    feed_event(v, &event(log, 1)->row);
    assert_int_equal(coffer_audit_verifier_checkpoint(v, &log->cps[0].cp), COFFER_OK);
    assert_int_equal(coffer_audit_verifier_finish(v, &rep), COFFER_OK);
    coffer_audit_verifier_free(&v);
    assert_problem(&rep, COFFER_AUDIT_EVENT_OUT_OF_ORDER, 1, 1);
}

static void test_unsealed_event_altered(void **state)
{
    struct tlog *log = *state;
    struct coffer_audit_report rep;

    (void)snprintf(event(log, 12)->purpose, sizeof(event(log, 12)->purpose), "x");
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_EVENT_ALTERED, 12, 0);
    assert_int_equal(rep.events_unsealed, 3);
}

static void test_signature_flipped(void **state)
{
    struct tlog *log = *state;
    struct coffer_audit_report rep;

    log->cps[2].sig[log->cps[2].cp.signature_len - 3] ^= 0x01;
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_SIGNATURE, 0, 3);
    assert_int_equal(rep.problems, 1);

    /* An empty or oversized signature does not verify either. */
    log->cps[2].cp.signature_len = 0;
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_SIGNATURE, 0, 3);
}

static void test_message_edited(void **state)
{
    struct tlog *log = *state;
    struct feed_opts o = {.source = COFFER_AUDIT_FROM_DATABASE, .columns = true};
    struct coffer_audit_report rep;
    char *at = strstr((char *)log->cps[1].message, "\nat 2024");

    /* The time in the message changes; the signature and the stored columns do not. */
    assert_non_null(at);
    at[4] = '3';
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_SIGNATURE, 0, 2);
    rep = run(log, &o);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_BAD, 0, 2);
    assert_non_null(strstr(rep.first_message, "column at"));
}

static void test_stored_columns_edited(void **state)
{
    struct tlog *log = *state;
    struct feed_opts o = {.source = COFFER_AUDIT_FROM_DATABASE, .columns = true};
    struct coffer_audit_report rep;

    /* A column that no longer says what the signed message says. */
    log->cps[0].cp.columns.last_event = 4;
    rep = run(log, &o);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_BAD, 0, 1);
    log->cps[0].cp.columns.last_event = 5;

    log->cps[1].cp.hash[0] ^= 0x80;
    rep = run(log, &o);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_BAD, 0, 2);
    log->cps[1].cp.hash[0] ^= 0x80;

    log->cps[2].cp.seq = 4;
    rep = run(log, &o);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_BAD, 0, 3);
}

static void test_message_malformed(void **state)
{
    struct tlog *log = *state;
    struct coffer_audit_report rep;

    /* Upper-case hex in a signed field: not the message format, whatever the signature. */
    char *chain = strstr((char *)log->cps[0].message, "\nchain ");

    assert_non_null(chain);
    chain[7] = 'X';
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_BAD, 0, 1);
}

static void test_checkpoint_skipped(void **state)
{
    struct tlog *log = *state;
    struct coffer_audit_report rep;

    log->cps[1].skip = true;
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_MISSING, 0, 3);
    assert_int_equal(rep.problems, 1);
}

static void test_pins_and_keys(void **state)
{
    struct tlog *log = *state;
    struct feed_opts o = {.source = COFFER_AUDIT_FROM_DATABASE};
    unsigned char wrong[COFFER_AUDIT_HASH_LEN];
    struct coffer_audit_verifier *v = NULL;
    struct coffer_audit_report rep;
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    unsigned char spki[COFFER_AUDIT_SPKI_MAX];
    unsigned char *p = spki;
    int len;

    memcpy(wrong, log->fp, sizeof(wrong));
    wrong[31] ^= 0x01;
    o.pin = wrong;
    rep = run(log, &o);
    assert_problem(&rep, COFFER_AUDIT_UNKNOWN_KEY, 0, 1);
    assert_int_equal(rep.problems, 3);

    /* No key given at all. */
    o.pin = NULL;
    o.no_key = true;
    rep = run(log, &o);
    assert_problem(&rep, COFFER_AUDIT_UNKNOWN_KEY, 0, 1);

    /* Another key under the same version: its fingerprint is not the one signed. */
    assert_non_null(other);
    len = i2d_PUBKEY(other, &p);
    assert_true(len > 0);
    assert_int_equal(coffer_audit_verifier_new(COFFER_AUDIT_FROM_DATABASE, &v), COFFER_OK);
    assert_int_equal(coffer_audit_verifier_add_key(v, 1, spki, (size_t)len), COFFER_OK);
    assert_int_equal(coffer_audit_verifier_checkpoint(v, &log->cps[0].cp), COFFER_OK);
    assert_int_equal(coffer_audit_verifier_finish(v, &rep), COFFER_OK);
    coffer_audit_verifier_free(&v);
    assert_problem(&rep, COFFER_AUDIT_UNKNOWN_KEY, 0, 1);

    EVP_PKEY_free(other);
}

static void test_signed_by_other_key_same_fingerprint(void **state)
{
    struct tlog *log = *state;
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    struct coffer_audit_report rep;

    /* A forger without the key signs a message that names the real key. */
    assert_non_null(other);
    sign_cp(other, &log->cps[1]);
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_SIGNATURE, 0, 2);
    EVP_PKEY_free(other);
}

static void test_link_broken(void **state)
{
    struct tlog *log = *state;
    struct coffer_audit_report rep;

    /* Validly signed, but not pointing at checkpoint 1. */
    log->cps[1].f.previous[0] ^= 0x01;
    sign_cp(log->key, &log->cps[1]);
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_LINK, 0, 2);
}

static void test_range_gap(void **state)
{
    struct tlog *log = *state;
    struct coffer_audit_report rep;

    /* Checkpoint 2 claims to start later than checkpoint 1 ended: events 6.. would escape. */
    log->cps[1].f.first_event = 7;
    log->cps[1].f.last_event = 6;
    sign_cp(log->key, &log->cps[1]);
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_LINK, 0, 2);
}

static void test_first_checkpoint_links(void **state)
{
    struct tlog *log = *state;
    struct coffer_audit_report rep;

    log->cps[0].f.previous[5] = 1;
    sign_cp(log->key, &log->cps[0]);
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_LINK, 0, 1);
}

static void test_chain_broken(void **state)
{
    struct tlog *log = *state;
    struct coffer_audit_report rep;

    /* The sealed list no longer hashes to the signed chain. */
    log->cps[0].sealed[COFFER_AUDIT_SEALED_ENTRY + 20] ^= 0x01;
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_CHAIN, 0, 1);
    assert_true(rep.problems >= 2); /* and event 2 no longer matches its sealed hash */
    log->cps[0].sealed[COFFER_AUDIT_SEALED_ENTRY + 20] ^= 0x01;

    /* A sealed list cut short. */
    log->cps[0].cp.sealed_len -= COFFER_AUDIT_SEALED_ENTRY;
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_CHAIN, 0, 1);
    log->cps[0].cp.sealed_len += COFFER_AUDIT_SEALED_ENTRY;

    /* Not a whole number of entries. */
    log->cps[2].cp.sealed_len -= 1;
    rep = run_db(log);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_CHAIN, 0, 3);
}

static void test_anchor(void **state)
{
    struct tlog *log = *state;
    struct feed_opts o = {.source = COFFER_AUDIT_FROM_DATABASE, .first_cp = 1};
    struct coffer_audit_report rep;

    /* Without an anchor, the database must start at checkpoint 1. */
    rep = run(log, &o);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_MISSING, 0, 2);
    /* An export may start later, but the link then cannot be checked. */
    o.source = COFFER_AUDIT_FROM_EXPORT;
    rep = run(log, &o);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_LINK, 0, 2);

    /* With checkpoint 1 as anchor, both are intact. */
    o.anchor_prev = true;
    rep = run(log, &o);
    assert_int_equal(rep.first, COFFER_AUDIT_OK);
    assert_int_equal(rep.checkpoints, 2);
    assert_int_equal(rep.events_verified, 5);
    o.source = COFFER_AUDIT_FROM_DATABASE;
    o.columns = true;
    rep = run(log, &o);
    assert_int_equal(rep.first, COFFER_AUDIT_OK);

    /* A forged anchor does not hash to what checkpoint 2 signed as previous. */
    log->cps[0].f.last_event = 4;
    log->cps[0].f.events = 3;
    sign_cp(log->key, &log->cps[0]);
    o.columns = false;
    rep = run(log, &o);
    assert_problem(&rep, COFFER_AUDIT_CHECKPOINT_LINK, 0, 2);
}

static void test_call_errors(void **state)
{
    struct tlog *log = *state;
    struct coffer_audit_verifier *v = NULL;
    struct coffer_audit_report rep;
    struct coffer_audit_checkpoint anchor = log->cps[0].cp;
    unsigned char junk[64];
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    unsigned char spki[256];
    unsigned char *p = spki;
    int len;

    assert_int_equal(coffer_audit_verifier_new((enum coffer_audit_source)7, &v), COFFER_E_INVALID);
    assert_null(v);
    assert_int_equal(coffer_audit_verifier_new(COFFER_AUDIT_FROM_DATABASE, NULL), COFFER_E_INVALID);
    assert_int_equal(coffer_audit_verifier_new(COFFER_AUDIT_FROM_DATABASE, &v), COFFER_OK);

    /* Keys: duplicates, version 0, not a key, not P-256, too long. */
    assert_int_equal(coffer_audit_verifier_add_key(v, 1, log->spki, log->spki_len), COFFER_OK);
    assert_int_equal(coffer_audit_verifier_add_key(v, 1, log->spki, log->spki_len),
                     COFFER_E_EXISTS);
    assert_int_equal(coffer_audit_verifier_add_key(v, 0, log->spki, log->spki_len),
                     COFFER_E_INVALID);
    memset(junk, 0x30, sizeof(junk));
    assert_int_equal(coffer_audit_verifier_add_key(v, 2, junk, sizeof(junk)), COFFER_E_INVALID);
    assert_int_equal(coffer_audit_verifier_add_key(v, 2, log->spki, log->spki_len - 1),
                     COFFER_E_INVALID);
    assert_non_null(p384);
    len = i2d_PUBKEY(p384, &p);
    assert_true(len > 0);
    assert_int_equal(coffer_audit_verifier_add_key(v, 2, spki, (size_t)len), COFFER_E_INVALID);
    assert_int_equal(coffer_audit_verifier_add_key(v, 2, log->spki, COFFER_AUDIT_SPKI_MAX + 1),
                     COFFER_E_INVALID);
    assert_int_equal(coffer_audit_verifier_add_key(v, 2, NULL, 10), COFFER_E_INVALID);

    /* Arguments, lengths without bytes, and an anchor after a checkpoint. */
    assert_int_equal(coffer_audit_verifier_checkpoint(v, NULL), COFFER_E_INVALID);
    assert_int_equal(coffer_audit_verifier_event(v, NULL), COFFER_E_INVALID);
    anchor.sealed = NULL;
    assert_int_equal(coffer_audit_verifier_checkpoint(v, &anchor), COFFER_E_INVALID);
    anchor.sealed_len = 0;
    assert_int_equal(coffer_audit_verifier_checkpoint(v, &log->cps[0].cp), COFFER_OK);
    anchor.anchor = true;
    assert_int_equal(coffer_audit_verifier_checkpoint(v, &anchor), COFFER_E_STATE);

    /* Nothing after the report. */
    assert_int_equal(coffer_audit_verifier_finish(v, NULL), COFFER_E_INVALID);
    assert_int_equal(coffer_audit_verifier_finish(v, &rep), COFFER_OK);
    assert_int_equal(coffer_audit_verifier_finish(v, &rep), COFFER_E_STATE);
    assert_int_equal(coffer_audit_verifier_event(v, &log->ev[0].row), COFFER_E_STATE);
    assert_int_equal(coffer_audit_verifier_checkpoint(v, &log->cps[1].cp), COFFER_E_STATE);
    coffer_audit_verifier_free(&v);
    coffer_audit_verifier_free(&v);
    coffer_audit_verifier_free(NULL);
    EVP_PKEY_free(p384);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_intact),
        T(test_event_altered),
        T(test_event_altered_hash_recomputed),
        T(test_event_id_field_changed),
        T(test_event_deleted),
        T(test_last_event_of_range_deleted),
        T(test_events_swapped),
        T(test_event_inserted),
        T(test_events_out_of_order),
        T(test_unsealed_event_altered),
        T(test_signature_flipped),
        T(test_message_edited),
        T(test_stored_columns_edited),
        T(test_message_malformed),
        T(test_checkpoint_skipped),
        T(test_pins_and_keys),
        T(test_signed_by_other_key_same_fingerprint),
        T(test_link_broken),
        T(test_range_gap),
        T(test_first_checkpoint_links),
        T(test_chain_broken),
        T(test_anchor),
        T(test_call_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
