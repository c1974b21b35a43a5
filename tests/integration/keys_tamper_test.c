/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tampering with stored rows, as someone with write access to the database
 * would: every modified ciphertext, nonce, tag, wrapped CEK or key name, every
 * blob copied to another row, version or org, a corrupted wrapped org key and
 * a master key whose recorded KCV no longer matches must give
 * COFFER_E_INTEGRITY and no plaintext at all. Restoring the row makes it
 * readable again, which shows each failure came from the change itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "world.h"

#include <stdio.h>
#include <string.h>

static struct world w;
static struct coffer_org org2;
static struct coffer_project proj2;

static enum coffer_err read_in(const struct coffer_org *org, const struct coffer_project *proj,
                               const char *cred, uint32_t version)
{
    struct coffer_keyset *ks = NULL;
    struct coffer_keys_read_info info;
    enum coffer_err r;

    r = coffer_keys_cred_read(w.k, w.st, &org->id, &proj->id, cred, version, &ks, &info);
    if (r != COFFER_OK) {
        assert_null(ks);
    }
    coffer_keyset_free(&ks);
    return r;
}

static enum coffer_err read_cred(const char *cred)
{
    return read_in(&w.org, &w.proj, cred, 0);
}

/* XORs one byte of a bytea column of credential cred's current version with 1. */
static void flip(const char *cred, const char *column, int offset)
{
    char sql[512];

    snprintf(sql, sizeof(sql),
             "UPDATE coffer.credential_versions cv SET %s = set_byte(cv.%s, %d, "
             "get_byte(cv.%s, %d) # 1) FROM coffer.credentials c WHERE c.id = cv.credential_id "
             "AND c.name = '%s' AND cv.version = c.current_version",
             column, column, offset, column, offset, cred);
    assert_int_equal(world_sql(&w, sql), 1);
}

static void put(const struct coffer_org *org, const struct coffer_project *proj, const char *cred,
                const char *value)
{
    const char *n[] = {"user", "secret"};
    const char *v[] = {"someone", value};
    size_t l[] = {7, strlen(value)};

    (void)world_put(&w, org, proj, cred, 2, n, v, l);
}

static int setup(void **state)
{
    (void)state;
    put(&w.org, &w.proj, "alpha", "alpha-secret-value");
    put(&w.org, &w.proj, "bravo", "bravo-secret-value");
    put(&w.org, &w.proj, "multi", "multi-v1");
    put(&w.org, &w.proj, "multi", "multi-v2");
    assert_int_equal(coffer_keys_org_create(w.k, w.st, "tamper-other", &org2, NULL), COFFER_OK);
    assert_int_equal(coffer_store_project_insert(w.st, &org2.id, "proj", &proj2), COFFER_OK);
    put(&org2, &proj2, "charlie", "charlie-secret-value");
    return 0;
}

static void test_untouched_rows_read(void **state)
{
    (void)state;
    assert_int_equal(read_cred("alpha"), COFFER_OK);
    assert_int_equal(read_cred("bravo"), COFFER_OK);
    assert_int_equal(read_in(&org2, &proj2, "charlie", 0), COFFER_OK);
}

static void test_flipped_fields(void **state)
{
    static const struct {
        const char *column;
        int offset;
    } cases[] = {
        {"ciphertext", 0}, {"ciphertext", 20}, {"nonce", 0},       {"nonce", 11},
        {"tag", 0},        {"tag", 15},        {"wrapped_cek", 0}, {"wrapped_cek", 39},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        flip("alpha", cases[i].column, cases[i].offset);
        assert_int_equal(read_cred("alpha"), COFFER_E_INTEGRITY);
        flip("alpha", cases[i].column, cases[i].offset);
        assert_int_equal(read_cred("alpha"), COFFER_OK);
    }
}

static void test_truncated_ciphertext(void **state)
{
    (void)state;
    world_sql(&w, "CREATE TEMP TABLE saved AS SELECT cv.credential_id, cv.version, cv.ciphertext "
                  "FROM coffer.credential_versions cv JOIN coffer.credentials c ON c.id = "
                  "cv.credential_id WHERE c.name = 'alpha'");
    assert_int_equal(world_sql(&w, "UPDATE coffer.credential_versions cv SET ciphertext = "
                                   "substring(cv.ciphertext from 1 for 5) FROM saved s WHERE "
                                   "s.credential_id = cv.credential_id"),
                     1);
    assert_int_equal(read_cred("alpha"), COFFER_E_INTEGRITY);
    world_sql(&w, "UPDATE coffer.credential_versions cv SET ciphertext = s.ciphertext FROM saved "
                  "s WHERE s.credential_id = cv.credential_id");
    world_sql(&w, "DROP TABLE saved");
    assert_int_equal(read_cred("alpha"), COFFER_OK);
}

static void test_key_names_bound(void **state)
{
    (void)state;
    /* Same number of names, swapped order: the values would come back under the wrong names. */
    assert_int_equal(world_sql(&w, "UPDATE coffer.credential_versions cv SET key_names = "
                                   "ARRAY['secret','user'] FROM coffer.credentials c WHERE c.id = "
                                   "cv.credential_id AND c.name = 'alpha'"),
                     1);
    assert_int_equal(read_cred("alpha"), COFFER_E_INTEGRITY);
    world_sql(&w, "UPDATE coffer.credential_versions cv SET key_names = ARRAY['user','secret'] "
                  "FROM coffer.credentials c WHERE c.id = cv.credential_id AND c.name = 'alpha'");
    assert_int_equal(read_cred("alpha"), COFFER_OK);
}

/* Copies the envelope columns of (src, src_version) over (dst, dst_version), saving dst first. */
static void copy_envelope(const char *src, int src_version, const char *dst, int dst_version,
                          const char *columns_set)
{
    char sql[1024];

    snprintf(sql, sizeof(sql),
             "CREATE TEMP TABLE saved AS SELECT cv.* FROM coffer.credential_versions cv JOIN "
             "coffer.credentials c ON c.id = cv.credential_id WHERE c.name = '%s' AND "
             "cv.version = %d",
             dst, dst_version);
    world_sql(&w, sql);
    snprintf(sql, sizeof(sql),
             "UPDATE coffer.credential_versions d SET %s FROM coffer.credential_versions s, "
             "coffer.credentials sc, coffer.credentials dc WHERE sc.id = s.credential_id AND "
             "sc.name = '%s' AND s.version = %d AND dc.id = d.credential_id AND dc.name = '%s' "
             "AND d.version = %d",
             columns_set, src, src_version, dst, dst_version);
    assert_int_equal(world_sql(&w, sql), 1);
}

static void restore_envelope(void)
{
    world_sql(&w, "UPDATE coffer.credential_versions d SET nonce = s.nonce, ciphertext = "
                  "s.ciphertext, tag = s.tag, wrapped_cek = s.wrapped_cek, org_key_version = "
                  "s.org_key_version, key_names = s.key_names FROM saved s WHERE "
                  "d.credential_id = s.credential_id AND d.version = s.version");
    world_sql(&w, "DROP TABLE saved");
}

#define ALL_COLUMNS                                                                                \
    "nonce = s.nonce, ciphertext = s.ciphertext, tag = s.tag, wrapped_cek = s.wrapped_cek"

static void test_copied_to_another_row(void **state)
{
    (void)state;
    copy_envelope("alpha", 1, "bravo", 1, ALL_COLUMNS);
    assert_int_equal(read_cred("bravo"), COFFER_E_INTEGRITY);
    restore_envelope();
    assert_int_equal(read_cred("bravo"), COFFER_OK);
}

static void test_wrapped_cek_copied(void **state)
{
    (void)state;
    copy_envelope("alpha", 1, "bravo", 1, "wrapped_cek = s.wrapped_cek");
    assert_int_equal(read_cred("bravo"), COFFER_E_INTEGRITY);
    restore_envelope();
    assert_int_equal(read_cred("bravo"), COFFER_OK);
}

static void test_copied_to_another_version(void **state)
{
    (void)state;
    copy_envelope("multi", 1, "multi", 2, ALL_COLUMNS);
    assert_int_equal(read_in(&w.org, &w.proj, "multi", 2), COFFER_E_INTEGRITY);
    assert_int_equal(read_in(&w.org, &w.proj, "multi", 1), COFFER_OK);
    restore_envelope();
    assert_int_equal(read_in(&w.org, &w.proj, "multi", 2), COFFER_OK);
}

static void test_copied_to_another_org(void **state)
{
    (void)state;
    copy_envelope("alpha", 1, "charlie", 1, ALL_COLUMNS);
    assert_int_equal(read_in(&org2, &proj2, "charlie", 0), COFFER_E_INTEGRITY);
    restore_envelope();
    assert_int_equal(read_in(&org2, &proj2, "charlie", 0), COFFER_OK);
}

static void test_corrupt_wrapped_org_key(void **state)
{
    char sql[512];
    char id[COFFER_UUID_STR_LEN];

    (void)state;
    coffer_uuid_format(&w.org.id, id);
    snprintf(sql, sizeof(sql),
             "UPDATE coffer.org_keys SET wrapped = set_byte(wrapped, 3, get_byte(wrapped, 3) # 1) "
             "WHERE org_id = '%s' AND version = 1",
             id);
    assert_int_equal(world_sql(&w, sql), 1);
    world_reopen_token(&w); /* no cached org key handle */
    assert_int_equal(read_cred("alpha"), COFFER_E_INTEGRITY);
    assert_int_equal(world_sql(&w, sql), 1);
    assert_int_equal(read_cred("alpha"), COFFER_OK);
}

static void test_org_key_swapped_between_orgs(void **state)
{
    char sql[768];
    char a[COFFER_UUID_STR_LEN];
    char b[COFFER_UUID_STR_LEN];

    (void)state;
    coffer_uuid_format(&w.org.id, a);
    coffer_uuid_format(&org2.id, b);
    /* Put org2's (valid, MK-wrapped) key where org 1's key should be. */
    world_sql(&w, "CREATE TEMP TABLE saved_ok AS SELECT * FROM coffer.org_keys");
    snprintf(sql, sizeof(sql),
             "UPDATE coffer.org_keys d SET wrapped = s.wrapped, kcv = s.kcv FROM coffer.org_keys "
             "s WHERE d.org_id = '%s' AND d.version = 1 AND s.org_id = '%s' AND s.version = 1",
             a, b);
    assert_int_equal(world_sql(&w, sql), 1);
    world_reopen_token(&w);
    assert_int_equal(read_cred("alpha"), COFFER_E_INTEGRITY);
    world_sql(&w, "UPDATE coffer.org_keys d SET wrapped = s.wrapped, kcv = s.kcv FROM saved_ok s "
                  "WHERE d.id = s.id");
    world_sql(&w, "DROP TABLE saved_ok");
    world_reopen_token(&w);
    assert_int_equal(read_cred("alpha"), COFFER_OK);
}

static void test_master_key_kcv_mismatch(void **state)
{
    (void)state;
    assert_int_equal(world_sql(&w, "UPDATE coffer.master_keys SET kcv = set_byte(kcv, 0, "
                                   "get_byte(kcv, 0) # 1) WHERE version = 1"),
                     1);
    world_reopen_token(&w);
    assert_int_equal(read_cred("alpha"), COFFER_E_INTEGRITY);
    assert_non_null(strstr(coffer_err_detail(), "KCV"));
    world_sql(&w, "UPDATE coffer.master_keys SET kcv = set_byte(kcv, 0, get_byte(kcv, 0) # 1) "
                  "WHERE version = 1");
    assert_int_equal(read_cred("alpha"), COFFER_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_untouched_rows_read),
        cmocka_unit_test(test_flipped_fields),
        cmocka_unit_test(test_truncated_ciphertext),
        cmocka_unit_test(test_key_names_bound),
        cmocka_unit_test(test_copied_to_another_row),
        cmocka_unit_test(test_wrapped_cek_copied),
        cmocka_unit_test(test_copied_to_another_version),
        cmocka_unit_test(test_copied_to_another_org),
        cmocka_unit_test(test_corrupt_wrapped_org_key),
        cmocka_unit_test(test_org_key_swapped_between_orgs),
        cmocka_unit_test(test_master_key_kcv_mismatch),
    };
    int failed;

    world_open("keys_tamper", "acme", &w);
    failed = cmocka_run_group_tests(tests, setup, NULL);
    world_close(&w);
    return failed;
}
