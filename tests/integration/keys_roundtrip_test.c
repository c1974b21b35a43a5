/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The envelope against a real SoftHSMv2 token and a real PostgreSQL: every
 * credential shape round-trips; versions are kept; lookups are confined to
 * their org; the master key and loaded org keys read back sensitive and not
 * extractable with CKA_VALUE unreadable; and no table holds a plaintext.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "keys/keys_int.h"
#include "world.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct world w;

/* Distinctive plaintexts so a scan cannot match by accident. */
#define CANARY_A "canary-alpha-7f3c9e1d-plaintext"
#define CANARY_B "canary-bravo-\xc3\xa9\xe2\x82\xac-\x00-binary"
#define CANARY_B_LEN (sizeof(CANARY_B) - 1)

static void read_ok(const char *cred, uint32_t version, struct coffer_keyset **out,
                    struct coffer_keys_read_info *info)
{
    enum coffer_err r =
        coffer_keys_cred_read(w.k, w.st, &w.org.id, &w.proj.id, cred, version, out, info);

    if (r != COFFER_OK) {
        fprintf(stderr, "read %s: %s: %s\n", cred, coffer_err_str(r), coffer_err_detail());
    }
    assert_int_equal(r, COFFER_OK);
}

static void check_value(const struct coffer_keyset *ks, const char *name, const void *v, size_t len)
{
    const struct coffer_secret *s = coffer_keyset_get(ks, name);
    struct coffer_secret_view view;

    assert_non_null(s);
    view = coffer_secret_view(s);
    assert_int_equal(view.len, len);
    if (len > 0) {
        assert_memory_equal(view.data, v, len);
    }
}

static void test_one_key(void **state)
{
    const char *n[] = {"api_key"};
    const char *v[] = {CANARY_A};
    size_t l[] = {strlen(CANARY_A)};
    struct coffer_keyset *ks = NULL;
    struct coffer_keys_read_info info;

    (void)state;
    assert_int_equal(world_put(&w, &w.org, &w.proj, "one", 1, n, v, l), 1);
    read_ok("one", 0, &ks, &info);
    assert_int_equal(coffer_keyset_count(ks), 1);
    check_value(ks, "api_key", CANARY_A, l[0]);
    assert_int_equal(info.version, 1);
    assert_int_equal(info.org_key_version, 1);
    assert_false(info.rewrapped);
    coffer_keyset_free(&ks);
}

static void test_several_keys_empty_and_binary(void **state)
{
    const char *n[] = {"username", "password", "empty", "binary"};
    const char *v[] = {"svc-deploy", "p\xc3\xa4ss\xe2\x82\xac\xf0\x9f\x94\x91", "", CANARY_B};
    size_t l[] = {10, 11, 0, CANARY_B_LEN};
    struct coffer_keyset *ks = NULL;
    struct coffer_keys_read_info info;
    size_t i;

    (void)state;
    assert_int_equal(world_put(&w, &w.org, &w.proj, "several", 4, n, v, l), 1);
    read_ok("several", 0, &ks, &info);
    assert_int_equal(coffer_keyset_count(ks), 4);
    for (i = 0; i < 4; i++) {
        assert_string_equal(coffer_keyset_name(ks, i), n[i]);
        check_value(ks, n[i], v[i], l[i]);
    }
    coffer_keyset_free(&ks);
}

static void test_64k_value(void **state)
{
    static char big[COFFER_VALUE_MAX];
    const char *n[] = {"blob"};
    const char *v[] = {big};
    size_t l[] = {sizeof(big)};
    struct coffer_keyset *ks = NULL;
    struct coffer_keys_read_info info;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(big); i++) {
        big[i] = (char)(i * 31 + 7);
    }
    assert_int_equal(world_put(&w, &w.org, &w.proj, "big", 1, n, v, l), 1);
    read_ok("big", 0, &ks, &info);
    check_value(ks, "blob", big, sizeof(big));
    coffer_keyset_free(&ks);
}

static void test_versions(void **state)
{
    const char *n[] = {"token"};
    const char *v1[] = {"first-value"};
    const char *v2[] = {"second-value"};
    size_t l1[] = {11};
    size_t l2[] = {12};
    struct coffer_keyset *ks = NULL;
    struct coffer_keys_read_info info;

    (void)state;
    assert_int_equal(world_put(&w, &w.org, &w.proj, "versioned", 1, n, v1, l1), 1);
    assert_int_equal(world_put(&w, &w.org, &w.proj, "versioned", 1, n, v2, l2), 2);
    read_ok("versioned", 0, &ks, &info);
    assert_int_equal(info.version, 2);
    check_value(ks, "token", "second-value", 12);
    coffer_keyset_free(&ks);
    read_ok("versioned", 1, &ks, &info);
    assert_int_equal(info.version, 1);
    check_value(ks, "token", "first-value", 11);
    coffer_keyset_free(&ks);
    assert_int_equal(
        coffer_keys_cred_read(w.k, w.st, &w.org.id, &w.proj.id, "versioned", 3, &ks, &info),
        COFFER_E_NOT_FOUND);
    assert_null(ks);
}

static void test_not_found_and_org_confinement(void **state)
{
    struct coffer_org other;
    struct coffer_project other_proj;
    struct coffer_keyset *ks = NULL;
    struct coffer_keys_read_info info;

    (void)state;
    assert_int_equal(coffer_keys_cred_read(w.k, w.st, &w.org.id, &w.proj.id, "nope", 0, &ks, &info),
                     COFFER_E_NOT_FOUND);
    assert_int_equal(coffer_keys_org_create(w.k, w.st, "other-org", &other, NULL), COFFER_OK);
    assert_int_equal(coffer_store_project_insert(w.st, &other.id, "proj", &other_proj), COFFER_OK);
    /* The credential "one" exists in w.org; asking with another org's id finds nothing. */
    assert_int_equal(coffer_keys_cred_read(w.k, w.st, &other.id, &w.proj.id, "one", 0, &ks, &info),
                     COFFER_E_NOT_FOUND);
    assert_int_equal(
        coffer_keys_cred_read(w.k, w.st, &other.id, &other_proj.id, "one", 0, &ks, &info),
        COFFER_E_NOT_FOUND);
    assert_null(ks);
}

static void test_bad_writes(void **state)
{
    struct coffer_keyset *ks = NULL;
    struct coffer_keys_write wr = {&w.org.id, &w.proj.id, "bad", "custom", "medium", NULL};
    uint32_t version = 0;

    (void)state;
    assert_int_equal(coffer_keyset_new(&ks), COFFER_OK);
    wr.keys = ks;
    /* No keys. */
    assert_int_equal(coffer_keys_cred_write(w.k, w.st, &wr, &version), COFFER_E_INVALID);
    assert_int_equal(coffer_keyset_add(ks, "k", "v", 1), COFFER_OK);
    wr.tier = "extreme";
    assert_int_equal(coffer_keys_cred_write(w.k, w.st, &wr, &version), COFFER_E_INVALID);
    wr.tier = "low";
    wr.type = "Bad Type";
    assert_int_equal(coffer_keys_cred_write(w.k, w.st, &wr, &version), COFFER_E_INVALID);
    wr.type = "custom";
    wr.name = "Not A Name";
    assert_int_not_equal(coffer_keys_cred_write(w.k, w.st, &wr, &version), COFFER_OK);
    /* Nothing half-written: no credential row exists for the refused names. */
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.credentials WHERE name IN ('bad', "
                             "'Not A Name')",
                             "0"));
    coffer_keyset_free(&ks);
}

static void test_master_key_attributes(void **state)
{
    struct coffer_p11_session *s = NULL;
    struct coffer_p11_attrs a;
    coffer_p11_obj obj = 0;

    (void)state;
    /* As created. */
    assert_true(w.mk1.attrs.token);
    assert_true(w.mk1.attrs.sensitive);
    assert_false(w.mk1.attrs.extractable);
    assert_true(w.mk1.attrs.never_extractable);
    assert_false(w.mk1.attrs.value_readable);
    assert_string_equal(w.mk1.label, "coffer-mk-v1");
    /* As found in the token now. */
    assert_int_equal(coffer_p11_session_get(w.p11, &s), COFFER_OK);
    assert_int_equal(coffer_p11_find_key(s, "coffer-mk-v1", &obj), COFFER_OK);
    assert_int_equal(coffer_p11_attrs(s, obj, &a), COFFER_OK);
    assert_true(a.sensitive);
    assert_false(a.extractable);
    assert_false(a.value_readable);
    assert_true(a.wrap);
    assert_true(a.unwrap);
    assert_false(a.encrypt);
    assert_false(a.decrypt);
    coffer_p11_session_put(w.p11, &s);
}

static void test_org_key_attributes(void **state)
{
    struct coffer_p11_session *s = NULL;
    struct coffer_p11_attrs a;
    coffer_p11_obj ok = 0;

    (void)state;
    assert_int_equal(coffer_p11_session_get(w.p11, &s), COFFER_OK);
    assert_int_equal(coffer_keys_org_key_handle(w.k, s, w.st, &w.org.id, 1, &ok), COFFER_OK);
    assert_int_equal(coffer_p11_attrs(s, ok, &a), COFFER_OK);
    assert_false(a.token);
    assert_true(a.sensitive);
    assert_false(a.extractable);
    assert_false(a.value_readable);
    assert_true(a.wrap);
    assert_false(a.encrypt);
    coffer_p11_session_put(w.p11, &s);
}

/* Returns true if needle (raw or as lower-case hex) occurs in any row of any coffer table. */
static bool database_contains(const void *needle, size_t len)
{
    char hex[2 * 64 + 1];
    const unsigned char *p = needle;
    PGresult *tables;
    bool found = false;
    int i;

    assert_true(len <= 64);
    coffer_hex(p, len, hex);
    tables = PQexec(w.owner, "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) "
                             "FROM information_schema.tables WHERE table_schema IN "
                             "('coffer', 'audit', 'public')");
    assert_int_equal(PQresultStatus(tables), PGRES_TUPLES_OK);
    assert_true(PQntuples(tables) >= 6);
    for (i = 0; i < PQntuples(tables) && !found; i++) {
        char sql[256];
        PGresult *rows;
        int j;

        snprintf(sql, sizeof(sql), "SELECT t::text FROM %s t", PQgetvalue(tables, i, 0));
        rows = PQexec(w.owner, sql);
        assert_int_equal(PQresultStatus(rows), PGRES_TUPLES_OK);
        for (j = 0; j < PQntuples(rows) && !found; j++) {
            const char *text = PQgetvalue(rows, j, 0);

            found = memmem(text, strlen(text), needle, len) != NULL || strstr(text, hex) != NULL;
        }
        PQclear(rows);
    }
    PQclear(tables);
    return found;
}

static void test_no_plaintext_in_database(void **state)
{
    const char *n[] = {"value"};
    const char *v[] = {"unrelated-value"};
    size_t l[] = {15};

    (void)state;
    /* The scan itself works: a value written as metadata is found. */
    assert_int_equal(world_put(&w, &w.org, &w.proj, "scan-marker-3b1f", 1, n, v, l), 1);
    assert_true(database_contains("scan-marker-3b1f", 16));
    /* Credential plaintexts are found nowhere, raw or hex. */
    assert_false(database_contains(CANARY_A, strlen(CANARY_A)));
    assert_false(database_contains(CANARY_B, CANARY_B_LEN));
    assert_false(database_contains("svc-deploy", 10));
    assert_false(database_contains("first-value", 11));
    assert_false(database_contains("second-value", 12));
}

static void set_req(struct coffer_keys_read_req *r, const char *name, uint32_t version)
{
    memset(r, 0, sizeof(*r));
    r->org_id = &w.org.id;
    r->project_id = &w.proj.id;
    r->name = name;
    r->version = version;
}

static void test_batch_reads(void **state)
{
    struct coffer_keys_read_req a[4];
    struct coffer_keys_read_req b[2];
    size_t i;

    (void)state;
    set_req(&a[0], "one", 0);
    set_req(&a[1], "nope", 0);      /* not found */
    set_req(&a[2], "Bad Name", 0);  /* refused before it is sent */
    set_req(&a[3], "versioned", 1); /* an older version */
    set_req(&b[0], "versioned", 0);
    set_req(&b[1], "several", 0);
    /* Pipelined: b is looked up while a is opened. */
    assert_int_equal(coffer_keys_read_start(w.k, w.st, a, 4), COFFER_OK);
    assert_true(coffer_store_in_flight(w.st));
    assert_int_equal(coffer_keys_read_finish(w.k, w.st, a, 4, b, 2), COFFER_OK);
    assert_true(coffer_store_in_flight(w.st));
    assert_int_equal(a[0].result, COFFER_OK);
    check_value(a[0].keys, "api_key", CANARY_A, strlen(CANARY_A));
    assert_int_equal(a[1].result, COFFER_E_NOT_FOUND);
    assert_null(a[1].keys);
    assert_int_equal(a[2].result, COFFER_E_INVALID);
    assert_null(a[2].keys);
    assert_int_equal(a[3].result, COFFER_OK);
    assert_int_equal(a[3].info.version, 1);
    check_value(a[3].keys, "token", "first-value", 11);
    assert_int_equal(coffer_keys_read_finish(w.k, w.st, b, 2, NULL, 0), COFFER_OK);
    assert_false(coffer_store_in_flight(w.st));
    assert_int_equal(b[0].result, COFFER_OK);
    assert_int_equal(b[0].info.version, 2);
    check_value(b[0].keys, "token", "second-value", 12);
    assert_int_equal(b[1].result, COFFER_OK);
    assert_int_equal(coffer_keyset_count(b[1].keys), 4);
    for (i = 0; i < 4; i++) {
        coffer_keyset_free(&a[i].keys);
    }
    for (i = 0; i < 2; i++) {
        coffer_keyset_free(&b[i].keys);
    }
    /* A finish without a start looks the batch up itself. */
    set_req(&a[0], "one", 0);
    assert_int_equal(coffer_keys_read_finish(w.k, w.st, a, 1, NULL, 0), COFFER_OK);
    assert_int_equal(a[0].result, COFFER_OK);
    coffer_keyset_free(&a[0].keys);
    /* Batch sizes outside 1..COFFER_KEYS_BATCH_MAX are refused. */
    assert_int_equal(coffer_keys_cred_read_many(w.k, w.st, a, 0), COFFER_E_INVALID);
    assert_int_equal(coffer_keys_cred_read_many(w.k, w.st, a, COFFER_KEYS_BATCH_MAX + 1),
                     COFFER_E_INVALID);
}

static void test_in_flight_blocks_other_statements(void **state)
{
    struct coffer_keys_read_req a[1];
    struct coffer_org org;

    (void)state;
    set_req(&a[0], "one", 0);
    assert_int_equal(coffer_keys_read_start(w.k, w.st, a, 1), COFFER_OK);
    /* The connection answers one statement at a time: anything else is refused, not mixed. */
    assert_int_equal(coffer_store_org_by_name(w.st, "acme", &org), COFFER_E_STATE);
    assert_int_equal(coffer_store_begin(w.st), COFFER_E_STATE);
    /* A rollback discards the answer and frees the connection. */
    coffer_store_rollback(w.st);
    assert_false(coffer_store_in_flight(w.st));
    assert_int_equal(coffer_store_org_by_name(w.st, "acme", &org), COFFER_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_key),
        cmocka_unit_test(test_several_keys_empty_and_binary),
        cmocka_unit_test(test_64k_value),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_not_found_and_org_confinement),
        cmocka_unit_test(test_bad_writes),
        cmocka_unit_test(test_master_key_attributes),
        cmocka_unit_test(test_org_key_attributes),
        cmocka_unit_test(test_no_plaintext_in_database),
        cmocka_unit_test(test_batch_reads),
        cmocka_unit_test(test_in_flight_blocks_other_statements),
    };
    int failed;

    world_open("keys_roundtrip", "acme", &w);
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    world_close(&w);
    return failed;
}
