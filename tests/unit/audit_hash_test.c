/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The audit log's encodings: the row hash and the chain step against vectors
 * computed by an independent implementation, the field names, the key
 * fingerprint and PEM, and the signed checkpoint message built exactly and
 * parsed strictly (every other spelling refused).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "coffer/auditlog.h"
#include "coffer/buf.h"
#include "coffer/mem.h"

#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/*
 * The expected hashes below were computed once with Python's hashlib, from
 * the encoding of docs/auditors.md, independently of this code:
 *
 *   h = hashlib.sha256(b"coffer-audit-event-v1")
 *   for f in fields:
 *       if f is None: h.update(b"\x00")
 *       else: b = f.encode(); h.update(b"\x01" + len(b).to_bytes(4, "big") + b)
 *   chain = hashlib.sha256(bytes(32) + (42).to_bytes(8, "big") + h.digest())
 *
 * with fields as in full_row() (the purpose holds non-ASCII UTF-8, a comma and
 * quotes), and for the sparse row: "1" then 22 NULLs.
 */
static const char full_row_hash[] =
    "9bb37023245871d44effbde3f379a0ad733868d80929f8f099634e7c6690a448";
static const char full_row_chain[] =
    "db1739eb2db9dd4d24edfcf2cafb8c9e75a67b68aea96b7cad31ad8d2b7a486a";
static const char sparse_row_hash[] =
    "35edae651241907581b463f482468d6414d69e582fe00d012ab56c4df77e39fc";

static void full_row(struct coffer_audit_row *row)
{
    static const char *const f[COFFER_AUDIT_FIELDS] = {
        "42",
        "2024-05-01T12:34:56.789012Z",
        "access",
        "true",
        "granted",
        "false",
        "req-42",
        "192.0.2.1:443",
        "agent",
        "example.org",
        "acme",
        "builder",
        "ci-1",
        NULL,
        "acme",
        "web",
        "db-password",
        "3",
        "build",
        "deploy \xc3\xbcn\xc3\xaf"
        "code, \"quoted\"",
        NULL,
        "2",
        "1",
    };
    int i;

    memset(row, 0, sizeof(*row));
    row->id = 42;
    for (i = 0; i < COFFER_AUDIT_FIELDS; i++) {
        row->f[i] = f[i];
    }
}

static void hex_of(const unsigned char *p, char out[2 * COFFER_AUDIT_HASH_LEN + 1])
{
    coffer_hex(p, COFFER_AUDIT_HASH_LEN, out);
}

static void test_row_hash_known_answer(void **state)
{
    struct coffer_audit_row row;
    unsigned char h[COFFER_AUDIT_HASH_LEN];
    char hex[2 * COFFER_AUDIT_HASH_LEN + 1];

    (void)state;
    full_row(&row);
    assert_int_equal(coffer_audit_row_hash(&row, h), COFFER_OK);
    hex_of(h, hex);
    assert_string_equal(hex, full_row_hash);

    memset(&row, 0, sizeof(row));
    row.id = 1;
    row.f[COFFER_AF_ID] = "1";
    assert_int_equal(coffer_audit_row_hash(&row, h), COFFER_OK);
    hex_of(h, hex);
    assert_string_equal(hex, sparse_row_hash);
}

static void test_row_hash_sensitivity(void **state)
{
    struct coffer_audit_row row;
    unsigned char base[COFFER_AUDIT_HASH_LEN];
    unsigned char h[COFFER_AUDIT_HASH_LEN];

    (void)state;
    full_row(&row);
    assert_int_equal(coffer_audit_row_hash(&row, base), COFFER_OK);

    /* NULL and a value are different encodings, whatever the value. */
    row.f[COFFER_AF_ADMIN] = "";
    assert_int_equal(coffer_audit_row_hash(&row, h), COFFER_OK);
    assert_memory_not_equal(h, base, sizeof(h));

    /* Moving a byte from one field to the next changes the hash (lengths are encoded). */
    full_row(&row);
    row.f[COFFER_AF_ORG] = "acm";
    row.f[COFFER_AF_AGENT_TYPE] = "ebuilder";
    assert_int_equal(coffer_audit_row_hash(&row, h), COFFER_OK);
    assert_memory_not_equal(h, base, sizeof(h));

    /* row->id is not part of the hash: the id field is. */
    full_row(&row);
    row.id = 7;
    assert_int_equal(coffer_audit_row_hash(&row, h), COFFER_OK);
    assert_memory_equal(h, base, sizeof(h));
    row.f[COFFER_AF_ID] = "7";
    assert_int_equal(coffer_audit_row_hash(&row, h), COFFER_OK);
    assert_memory_not_equal(h, base, sizeof(h));

    assert_int_equal(coffer_audit_row_hash(NULL, h), COFFER_E_INVALID);
}

static void test_chain_step_known_answer(void **state)
{
    struct coffer_audit_row row;
    unsigned char h[COFFER_AUDIT_HASH_LEN];
    unsigned char chain[COFFER_AUDIT_HASH_LEN] = {0};
    unsigned char other[COFFER_AUDIT_HASH_LEN] = {0};
    char hex[2 * COFFER_AUDIT_HASH_LEN + 1];

    (void)state;
    full_row(&row);
    assert_int_equal(coffer_audit_row_hash(&row, h), COFFER_OK);
    coffer_audit_chain_step(chain, 42, h);
    hex_of(chain, hex);
    assert_string_equal(hex, full_row_chain);

    /* The id is bound into the chain. */
    coffer_audit_chain_step(other, 43, h);
    assert_memory_not_equal(other, chain, sizeof(chain));
}

static void test_field_names(void **state)
{
    (void)state;
    assert_string_equal(coffer_audit_field_names[COFFER_AF_ID], "id");
    assert_string_equal(coffer_audit_field_names[COFFER_AF_AT], "at");
    assert_string_equal(coffer_audit_field_names[COFFER_AF_PURPOSE_UNEXPECTED],
                        "purpose_unexpected");
    assert_string_equal(coffer_audit_field_names[COFFER_AF_CLIENT_ADDR], "client_addr");
    assert_string_equal(coffer_audit_field_names[COFFER_AF_PURPOSE], "purpose");
    assert_string_equal(coffer_audit_field_names[COFFER_AF_DETAIL], "detail");
    assert_string_equal(coffer_audit_field_names[COFFER_AF_MK_VERSION], "mk_version");
    assert_int_equal(COFFER_AF_MK_VERSION, COFFER_AUDIT_FIELDS - 1);
}

static void test_fingerprint_and_pem(void **state)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    unsigned char *der = NULL;
    unsigned char fp[COFFER_AUDIT_HASH_LEN];
    unsigned char want[COFFER_AUDIT_HASH_LEN];
    unsigned char bad[COFFER_AUDIT_SPKI_MAX + 1];
    unsigned int wlen = 0;
    char *pem = NULL;
    EVP_PKEY *back;
    BIO *bio;
    int len;

    (void)state;
    assert_non_null(key);
    len = i2d_PUBKEY(key, &der);
    assert_int_equal(len, 91);
    coffer_audit_fingerprint(der, (size_t)len, fp);
    assert_int_equal(EVP_Digest(der, (size_t)len, want, &wlen, EVP_sha256(), NULL), 1);
    assert_memory_equal(fp, want, sizeof(fp));

    assert_int_equal(coffer_audit_spki_pem(der, (size_t)len, &pem), COFFER_OK);
    assert_non_null(pem);
    assert_non_null(strstr(pem, "-----BEGIN PUBLIC KEY-----\n"));
    bio = BIO_new_mem_buf(pem, -1);
    back = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    assert_non_null(back);
    assert_int_equal(EVP_PKEY_eq(back, key), 1);
    EVP_PKEY_free(back);
    BIO_free(bio);
    coffer_free(pem);

    /* Not a SubjectPublicKeyInfo, a trailing byte, nothing, too long: refused. */
    memset(bad, 0x30, sizeof(bad));
    assert_int_equal(coffer_audit_spki_pem(bad, 20, &pem), COFFER_E_INVALID);
    assert_null(pem);
    memcpy(bad, der, (size_t)len);
    bad[len] = 0;
    assert_int_equal(coffer_audit_spki_pem(bad, (size_t)len + 1, &pem), COFFER_E_INVALID);
    assert_int_equal(coffer_audit_spki_pem(der, 0, &pem), COFFER_E_INVALID);
    assert_int_equal(coffer_audit_spki_pem(bad, sizeof(bad), &pem), COFFER_E_INVALID);
    assert_int_equal(coffer_audit_spki_pem(der, (size_t)len, NULL), COFFER_E_INVALID);
    OPENSSL_free(der);
    EVP_PKEY_free(key);
}

static void sample_fields(struct coffer_audit_cp_fields *f)
{
    memset(f, 0, sizeof(*f));
    f->seq = 17;
    (void)snprintf(f->at, sizeof(f->at), "2024-05-01T12:00:00.000001Z");
    f->first_event = 1001;
    f->last_event = 1100;
    f->events = 98;
    memset(f->chain, 0xab, sizeof(f->chain));
    memset(f->previous, 0x01, sizeof(f->previous));
    memset(f->schema, 0x5c, sizeof(f->schema));
    f->key_version = 2;
    memset(f->fingerprint, 0xf0, sizeof(f->fingerprint));
}

#define HEX32(b) b b b b b b b b b b b b b b b b b b b b b b b b b b b b b b b b
static const char sample_message[] =
    "coffer-audit-checkpoint v1\n"
    "seq 17\n"
    "at 2024-05-01T12:00:00.000001Z\n"
    "first-event 1001\n"
    "last-event 1100\n"
    "events 98\n"
    "chain " HEX32("ab") "\n"
                         "previous " HEX32("01") "\n"
                                                 "schema " HEX32("5c") "\n"
                                                                       "key 2\n"
                                                                       "fingerprint " HEX32(
                                                                           "f0") "\n";

static void test_message_build_and_parse(void **state)
{
    struct coffer_audit_cp_fields f;
    struct coffer_audit_cp_fields back;
    char msg[COFFER_AUDIT_MESSAGE_MAX];
    size_t len = 0;

    (void)state;
    sample_fields(&f);
    assert_int_equal(coffer_audit_message_build(&f, msg, sizeof(msg), &len), COFFER_OK);
    assert_int_equal(len, strlen(sample_message));
    assert_memory_equal(msg, sample_message, len);

    assert_int_equal(coffer_audit_message_parse((const unsigned char *)msg, len, &back), COFFER_OK);
    assert_memory_equal(&back, &f, sizeof(f));

    /* An empty range (only the schema changed) is a valid checkpoint. */
    f.last_event = 1000;
    f.events = 0;
    assert_int_equal(coffer_audit_message_build(&f, msg, sizeof(msg), &len), COFFER_OK);
    assert_int_equal(coffer_audit_message_parse((const unsigned char *)msg, len, &back), COFFER_OK);
    assert_int_equal(back.last_event, 1000);
    assert_int_equal(back.events, 0);
}

static void test_message_build_refusals(void **state)
{
    struct coffer_audit_cp_fields f;
    char msg[COFFER_AUDIT_MESSAGE_MAX];
    size_t len = 0;

    (void)state;
    sample_fields(&f);
    f.seq = 0;
    assert_int_equal(coffer_audit_message_build(&f, msg, sizeof(msg), &len), COFFER_E_INVALID);
    sample_fields(&f);
    (void)snprintf(f.at, sizeof(f.at), "2024-05-01 12:00:00");
    assert_int_equal(coffer_audit_message_build(&f, msg, sizeof(msg), &len), COFFER_E_INVALID);
    sample_fields(&f);
    f.events = 101;
    assert_int_equal(coffer_audit_message_build(&f, msg, sizeof(msg), &len), COFFER_E_INVALID);
    sample_fields(&f);
    f.last_event = 999;
    assert_int_equal(coffer_audit_message_build(&f, msg, sizeof(msg), &len), COFFER_E_INVALID);
    sample_fields(&f);
    f.key_version = 0;
    assert_int_equal(coffer_audit_message_build(&f, msg, sizeof(msg), &len), COFFER_E_INVALID);
    sample_fields(&f);
    assert_int_equal(coffer_audit_message_build(&f, msg, 100, &len), COFFER_E_LIMIT);
    assert_int_equal(coffer_audit_message_build(NULL, msg, sizeof(msg), &len), COFFER_E_INVALID);
}

/* Parses sample_message with the first `from` replaced by `to`; returns the result. */
static enum coffer_err parse_with(const char *from, const char *to)
{
    struct coffer_audit_cp_fields f;
    char buf[2 * COFFER_AUDIT_MESSAGE_MAX];
    const char *at = strstr(sample_message, from);
    size_t head;

    assert_non_null(at);
    head = (size_t)(at - sample_message);
    (void)snprintf(buf, sizeof(buf), "%.*s%s%s", (int)head, sample_message, to, at + strlen(from));
    return coffer_audit_message_parse((const unsigned char *)buf, strlen(buf), &f);
}

static void test_message_parse_refusals(void **state)
{
    static const struct {
        const char *from;
        const char *to;
    } cases[] = {
        {"v1\n", "v2\n"},
        {"seq 17\n", "seq 017\n"},
        {"seq 17\n", "seq +17\n"},
        {"seq 17\n", "seq -17\n"},
        {"seq 17\n", "seq 0\n"},
        {"seq 17\n", "seq  17\n"},
        {"seq 17\n", "seq 17 \n"},
        {"seq 17\n", "seq 17\r\n"},
        {"seq 17\n", "seq 99999999999999999999\n"},
        {"seq 17\n", "seq 9223372036854775808\n"},
        {"seq 17\n", "SEQ 17\n"},
        {"seq 17\n", ""},
        {"at 2024-05-01", "at 2024-13-01"},
        {"at 2024-05-01", "at 2023-02-29"},
        {"12:00:00.000001Z", "12:00:60.000001Z"},
        {"12:00:00.000001Z", "12:00:00Z"},
        {"12:00:00.000001Z", "12:00:00.000001+00"},
        {"first-event 1001\nlast-event 1100\n", "last-event 1100\nfirst-event 1001\n"},
        {"first-event 1001\n", "first-event 0\n"},
        {"last-event 1100\n", "last-event 999\n"},
        {"events 98\n", "events 101\n"},
        {"events 98\n", ""},
        {"chain abab", "chain ABab"},
        {"chain abab", "chain ab"},
        {"chain abab", "chain ababab"},
        {"chain abab", "chain xyab"},
        {"key 2\n", "key 0\n"},
        {"key 2\n", "key 2147483648\n"},
        {"key 2\n", "key 02\n"},
        {"fingerprint", "fingerprint2"},
        {"\nfingerprint", "\nextra 1\nfingerprint"},
    };
    size_t i;

    (void)state;
    assert_int_equal(parse_with("seq 17\n", "seq 17\n"), COFFER_OK);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (parse_with(cases[i].from, cases[i].to) != COFFER_E_INVALID) {
            fail_msg("case %zu (%s -> %s) was accepted", i, cases[i].from, cases[i].to);
        }
    }
}

static void test_message_parse_framing(void **state)
{
    struct coffer_audit_cp_fields f;
    char buf[2 * COFFER_AUDIT_MESSAGE_MAX];
    size_t n = strlen(sample_message);

    (void)state;
    memcpy(buf, sample_message, n);
    /* No final newline. */
    assert_int_equal(coffer_audit_message_parse((const unsigned char *)buf, n - 1, &f),
                     COFFER_E_INVALID);
    /* Anything after the last line. */
    buf[n] = '\n';
    assert_int_equal(coffer_audit_message_parse((const unsigned char *)buf, n + 1, &f),
                     COFFER_E_INVALID);
    /* A NUL byte inside. */
    buf[5] = '\0';
    assert_int_equal(coffer_audit_message_parse((const unsigned char *)buf, n, &f),
                     COFFER_E_INVALID);
    /* Oversize, even if it were otherwise fine. */
    memset(buf, 'a', sizeof(buf));
    assert_int_equal(
        coffer_audit_message_parse((const unsigned char *)buf, COFFER_AUDIT_MESSAGE_MAX + 1, &f),
        COFFER_E_INVALID);
    assert_int_equal(coffer_audit_message_parse((const unsigned char *)buf, 0, &f),
                     COFFER_E_INVALID);
    assert_int_equal(coffer_audit_message_parse(NULL, 10, &f), COFFER_E_INVALID);
    /* The fields are cleared on refusal. */
    assert_int_equal(f.seq, 0);
}

static void test_problem_names(void **state)
{
    (void)state;
    assert_string_equal(coffer_audit_problem_str(COFFER_AUDIT_OK), "ok");
    assert_string_equal(coffer_audit_problem_str(COFFER_AUDIT_EVENT_ALTERED), "event_altered");
    assert_string_equal(coffer_audit_problem_str(COFFER_AUDIT_CHECKPOINT_MISSING),
                        "checkpoint_missing");
    assert_string_equal(coffer_audit_problem_str(COFFER_AUDIT_UNKNOWN_KEY), "unknown_key");
    assert_string_equal(coffer_audit_problem_str((enum coffer_audit_problem)99), "unknown_problem");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_hash_known_answer),
        cmocka_unit_test(test_row_hash_sensitivity),
        cmocka_unit_test(test_chain_step_known_answer),
        cmocka_unit_test(test_field_names),
        cmocka_unit_test(test_fingerprint_and_pem),
        cmocka_unit_test(test_message_build_and_parse),
        cmocka_unit_test(test_message_build_refusals),
        cmocka_unit_test(test_message_parse_refusals),
        cmocka_unit_test(test_message_parse_framing),
        cmocka_unit_test(test_problem_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
