/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rotation: a rotation touches no credential row; rows under three older org
 * key versions stay readable and are all moved by one sweep; a read of a
 * stale row rewraps it; two threads reading one stale row at once leave
 * exactly one rewrap and both succeed; master key rotation moves org keys;
 * and retirement refuses a version that still wraps anything.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "world.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct world w;

#define ROWS_PER_VERSION 5

static void put_value(const char *cred, const char *value)
{
    const char *n[] = {"token"};
    const char *v[] = {value};
    size_t l[] = {strlen(value)};

    (void)world_put(&w, &w.org, &w.proj, cred, 1, n, v, l);
}

static void check_read(const char *cred, const char *value, struct coffer_keys_read_info *info)
{
    struct coffer_keyset *ks = NULL;
    const struct coffer_secret *s;
    enum coffer_err r;

    r = coffer_keys_cred_read(w.k, w.st, &w.org.id, &w.proj.id, cred, 0, &ks, info);
    if (r != COFFER_OK) {
        fprintf(stderr, "read %s: %s: %s\n", cred, coffer_err_str(r), coffer_err_detail());
    }
    assert_int_equal(r, COFFER_OK);
    s = coffer_keyset_get(ks, "token");
    assert_non_null(s);
    assert_int_equal(coffer_secret_len(s), strlen(value));
    assert_memory_equal(coffer_secret_view(s).data, value, strlen(value));
    coffer_keyset_free(&ks);
}

static char org_id[COFFER_UUID_STR_LEN];
static char sql_buf[512];

/* SQL with the test org's id in place of %s; the format is a literal at every use. */
#define org_sql(fmt) (snprintf(sql_buf, sizeof(sql_buf), fmt, org_id), sql_buf)

static void rotate_org(uint32_t expect_version)
{
    struct coffer_keys_created c;

    assert_int_equal(coffer_keys_org_rotate(w.k, w.st, &w.org.id, &c), COFFER_OK);
    assert_int_equal(c.version, expect_version);
}

static void sweep_all(struct coffer_keys_sweep *sw)
{
    int steps = 0;

    memset(sw, 0, sizeof(*sw));
    while (!sw->done) {
        enum coffer_err r = coffer_keys_sweep_step(w.k, w.st, 4, sw);

        if (r != COFFER_OK) {
            fprintf(stderr, "sweep: %s: %s\n", coffer_err_str(r), coffer_err_detail());
        }
        assert_int_equal(r, COFFER_OK);
        assert_true(++steps < 1000);
    }
}

static void test_rotation_and_one_sweep(void **state)
{
    struct coffer_keys_sweep sw;
    struct coffer_keys_read_info info;
    char name[32];
    char value[32];
    uint32_t v;
    int i;

    (void)state;
    /* Rows under org key versions 1, 2 and 3; then version 4 becomes current. */
    for (v = 1; v <= 3; v++) {
        for (i = 0; i < ROWS_PER_VERSION; i++) {
            snprintf(name, sizeof(name), "rot-%u-%d", v, i);
            snprintf(value, sizeof(value), "value-%u-%d", v, i);
            put_value(name, value);
        }
        rotate_org(v + 1);
    }
    /* Rotation is constant time: it rewrote no credential row. */
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.credential_versions WHERE "
                             "rewrapped_at IS NOT NULL",
                             "0"));
    assert_true(world_sql_is(&w,
                             org_sql("SELECT count(*) FROM coffer.credential_versions WHERE "
                                     "org_id = '%s' AND org_key_version < 4"),
                             "15"));
    /* One sweep moves every row. */
    sweep_all(&sw);
    assert_int_equal(sw.rewrapped, 3 * ROWS_PER_VERSION);
    assert_int_equal(sw.failed, 0);
    assert_int_equal(sw.remaining, 0);
    assert_true(world_sql_is(&w,
                             org_sql("SELECT count(*) FROM coffer.credential_versions WHERE "
                                     "org_id = '%s' AND org_key_version <> 4"),
                             "0"));
    /* All still readable, now under version 4, with no further rewrap. */
    for (v = 1; v <= 3; v++) {
        for (i = 0; i < ROWS_PER_VERSION; i++) {
            snprintf(name, sizeof(name), "rot-%u-%d", v, i);
            snprintf(value, sizeof(value), "value-%u-%d", v, i);
            check_read(name, value, &info);
            assert_false(info.rewrapped);
            assert_int_equal(info.org_key_version, 4);
        }
    }
    /* A second sweep has nothing to do. */
    sweep_all(&sw);
    assert_int_equal(sw.rewrapped, 0);
}

static void test_read_rewraps_lazily(void **state)
{
    struct coffer_keys_read_info info;

    (void)state;
    put_value("lazy", "lazy-value");
    rotate_org(5);
    check_read("lazy", "lazy-value", &info);
    assert_true(info.rewrapped);
    assert_int_equal(info.org_key_version, 5);
    assert_true(world_sql_is(&w,
                             "SELECT org_key_version FROM coffer.credential_versions cv JOIN "
                             "coffer.credentials c ON c.id = cv.credential_id WHERE c.name = "
                             "'lazy'",
                             "5"));
    check_read("lazy", "lazy-value", &info);
    assert_false(info.rewrapped);
}

static void test_retire_org_key(void **state)
{
    struct coffer_keys_sweep sw;
    int64_t refs = -1;

    (void)state;
    /* Current version: refused whatever the references. */
    assert_int_equal(coffer_keys_org_key_retire(w.k, w.st, &w.org.id, 5, &refs), COFFER_E_STATE);
    put_value("pinned", "pinned-value");
    rotate_org(6);
    /* Version 5 still wraps "pinned" (and everything the last sweep moved). */
    assert_int_equal(coffer_keys_org_key_retire(w.k, w.st, &w.org.id, 5, &refs),
                     COFFER_E_REFERENCED);
    assert_true(refs >= 1);
    assert_non_null(strstr(coffer_err_detail(), "still wraps"));
    sweep_all(&sw);
    assert_int_equal(coffer_keys_org_key_retire(w.k, w.st, &w.org.id, 5, &refs), COFFER_OK);
    assert_int_equal(refs, 0);
    assert_true(world_sql_is(&w,
                             org_sql("SELECT state FROM coffer.org_keys WHERE org_id = '%s' "
                                     "AND version = 5"),
                             "retired"));
    /* Retiring twice is refused. */
    assert_int_equal(coffer_keys_org_key_retire(w.k, w.st, &w.org.id, 5, &refs), COFFER_E_STATE);
}

/* ---- Two readers of one stale row ------------------------------------------- */

static pthread_barrier_t barrier;

static void both_at_the_swap(void *arg)
{
    (void)arg;
    /* Both readers have decrypted the stale row before either swaps. */
    pthread_barrier_wait(&barrier);
}

struct reader {
    struct coffer_store *st;
    enum coffer_err r;
    struct coffer_keys_read_info info;
    bool value_ok;
};

static void *read_thread(void *arg)
{
    struct reader *rd = arg;
    struct coffer_keyset *ks = NULL;
    const struct coffer_secret *s;

    rd->r =
        coffer_keys_cred_read(w.k, rd->st, &w.org.id, &w.proj.id, "contended", 0, &ks, &rd->info);
    if (rd->r == COFFER_OK) {
        s = coffer_keyset_get(ks, "token");
        rd->value_ok = s != NULL && coffer_secret_len(s) == 15 &&
                       memcmp(coffer_secret_view(s).data, "contended-value", 15) == 0;
    }
    coffer_keyset_free(&ks);
    return NULL;
}

static void test_two_readers_one_rewrap(void **state)
{
    struct reader rd[2];
    pthread_t t[2];
    int i;

    (void)state;
    put_value("contended", "contended-value");
    rotate_org(7);
    assert_int_equal(pthread_barrier_init(&barrier, NULL, 2), 0);
    coffer_keys_set_rewrap_hook(w.k, both_at_the_swap, NULL);
    for (i = 0; i < 2; i++) {
        memset(&rd[i], 0, sizeof(rd[i]));
        rd[i].st = world_store(&w);
        assert_int_equal(pthread_create(&t[i], NULL, read_thread, &rd[i]), 0);
    }
    for (i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        coffer_store_close(&rd[i].st);
    }
    coffer_keys_set_rewrap_hook(w.k, NULL, NULL);
    pthread_barrier_destroy(&barrier);
    assert_int_equal(rd[0].r, COFFER_OK);
    assert_int_equal(rd[1].r, COFFER_OK);
    assert_true(rd[0].value_ok);
    assert_true(rd[1].value_ok);
    /* Exactly one swap won. */
    assert_int_equal((int)rd[0].info.rewrapped + (int)rd[1].info.rewrapped, 1);
    assert_true(world_sql_is(&w,
                             "SELECT org_key_version FROM coffer.credential_versions cv JOIN "
                             "coffer.credentials c ON c.id = cv.credential_id WHERE c.name = "
                             "'contended'",
                             "7"));
}

static void test_pipelined_batch_with_stale_rows(void **state)
{
    struct coffer_keys_read_req a[2];
    struct coffer_keys_read_req b[1];
    size_t i;

    (void)state;
    put_value("pipe-a", "pipe-a-value");
    put_value("pipe-b", "pipe-b-value");
    rotate_org(8);
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    for (i = 0; i < 2; i++) {
        a[i].org_id = &w.org.id;
        a[i].project_id = &w.proj.id;
    }
    a[0].name = "pipe-a";
    a[1].name = "lazy";
    b[0].org_id = &w.org.id;
    b[0].project_id = &w.proj.id;
    b[0].name = "pipe-b";
    /* Stale rows in the batch: their rewraps use the connection before the next lookup goes. */
    assert_int_equal(coffer_keys_read_start(w.k, w.st, a, 2), COFFER_OK);
    assert_int_equal(coffer_keys_read_finish(w.k, w.st, a, 2, b, 1), COFFER_OK);
    assert_int_equal(a[0].result, COFFER_OK);
    assert_true(a[0].info.rewrapped);
    assert_int_equal(a[0].info.org_key_version, 8);
    assert_int_equal(a[1].result, COFFER_OK);
    assert_true(a[1].info.rewrapped);
    assert_true(coffer_store_in_flight(w.st));
    assert_int_equal(coffer_keys_read_finish(w.k, w.st, b, 1, NULL, 0), COFFER_OK);
    assert_int_equal(b[0].result, COFFER_OK);
    assert_true(b[0].info.rewrapped);
    assert_true(coffer_secret_len(coffer_keyset_get(b[0].keys, "token")) == 12);
    for (i = 0; i < 2; i++) {
        coffer_keyset_free(&a[i].keys);
    }
    coffer_keyset_free(&b[0].keys);
    assert_true(world_sql_is(&w,
                             org_sql("SELECT count(*) FROM coffer.credential_versions v JOIN "
                                     "coffer.credentials c ON c.id = v.credential_id WHERE "
                                     "c.org_id = '%s' AND c.name IN ('pipe-a', 'pipe-b', 'lazy') "
                                     "AND v.org_key_version = 8"),
                             "3"));
}

/* ---- Master key rotation ----------------------------------------------------- */

static void test_master_key_rotation(void **state)
{
    struct coffer_keys_created mk2;
    struct coffer_keys_sweep sw;
    struct coffer_keys_read_info info;
    int64_t refs = -1;

    (void)state;
    assert_int_equal(coffer_keys_mk_create(w.k, w.st, &mk2), COFFER_OK);
    assert_int_equal(mk2.version, 2);
    assert_string_equal(mk2.label, "coffer-mk-v2");
    assert_false(mk2.attrs.extractable);
    assert_true(mk2.attrs.sensitive);
    /* Constant time: no org key row was rewrapped by the rotation itself. */
    assert_true(world_sql_is(&w, "SELECT count(*) FROM coffer.org_keys WHERE mk_version = 2", "0"));
    /* v1 still wraps org keys: retiring it is refused with the count. */
    assert_int_equal(coffer_keys_mk_retire(w.k, w.st, 1, &refs), COFFER_E_REFERENCED);
    assert_true(refs >= 1);
    assert_int_equal(coffer_keys_mk_retire(w.k, w.st, 2, &refs), COFFER_E_STATE);
    /* With empty caches a read loads the org key under v1 and moves it to v2 on the way. */
    world_reopen_token(&w);
    check_read("lazy", "lazy-value", &info);
    assert_true(world_sql_is(&w,
                             org_sql("SELECT mk_version FROM coffer.org_keys WHERE org_id = "
                                     "'%s' AND version = 8"),
                             "2"));
    /* The sweep moves the remaining (older, retired) org key versions too. */
    sweep_all(&sw);
    assert_int_equal(sw.failed, 0);
    assert_int_equal(sw.remaining_org_keys, 0);
    assert_true(world_sql_is(&w, "SELECT count(*) FROM coffer.org_keys WHERE mk_version = 1", "0"));
    assert_int_equal(coffer_keys_mk_retire(w.k, w.st, 1, &refs), COFFER_OK);
    assert_int_equal(refs, 0);
    /* Everything still reads through the new master key only. */
    world_reopen_token(&w);
    check_read("rot-1-0", "value-1-0", &info);
    check_read("contended", "contended-value", &info);
}

/*
 * The next label already in the token but not in the database: a rotation
 * that stopped between generating its key and committing. A key the token
 * generated and never let out is taken up; anything else is refused.
 */
static void test_mk_label_collision(void **state)
{
    struct coffer_p11_session *s = NULL;
    struct coffer_p11_keyspec bad = {true, true, COFFER_P11_WRAP | COFFER_P11_UNWRAP,
                                     "coffer-mk-v3"};
    struct coffer_p11_keyspec good = {true, false, COFFER_P11_WRAP | COFFER_P11_UNWRAP,
                                      "coffer-mk-v3"};
    unsigned char kcv[COFFER_KCV_LEN];
    struct coffer_keys_created mk;
    struct coffer_keys_created ok;
    struct coffer_keys_read_info info;
    coffer_p11_obj obj = 0;
    static const char *const names[] = {"token"};
    static const char *const values[] = {"under-adopted-mk"};
    static const size_t lens[] = {16};

    (void)state;
    assert_int_equal(coffer_p11_session_get(w.p11, &s), COFFER_OK);
    /* An extractable key under the label could be known to someone: refused. */
    assert_int_equal(coffer_p11_generate_aes(s, &bad, &obj), COFFER_OK);
    assert_int_equal(coffer_keys_mk_create(w.k, w.st, &mk), COFFER_E_EXISTS);
    assert_non_null(strstr(coffer_err_detail(), "not a key Coffer would make"));
    assert_true(world_sql_is(&w, "SELECT max(version) FROM coffer.master_keys", "2"));
    coffer_p11_destroy(s, &obj);
    /* A key as a rotation makes it, left without its commit: taken up, with its own KCV. */
    assert_int_equal(coffer_p11_generate_aes(s, &good, &obj), COFFER_OK);
    assert_int_equal(coffer_p11_kcv(s, obj, kcv), COFFER_OK);
    coffer_p11_session_put(w.p11, &s);
    assert_int_equal(coffer_keys_mk_create(w.k, w.st, &mk), COFFER_OK);
    assert_int_equal(mk.version, 3);
    assert_memory_equal(mk.kcv, kcv, COFFER_KCV_LEN);
    assert_true(world_sql_is(&w,
                             "SELECT version || ' ' || state || ' ' || encode(kcv, 'hex') = "
                             "(SELECT '3 current ' || encode(kcv, 'hex') FROM coffer.master_keys "
                             "WHERE version = 3) FROM coffer.master_keys WHERE version = 3",
                             "t"));
    /* And it wraps: a new org key version is made under it, and what it protects reads. */
    assert_int_equal(coffer_keys_org_rotate(w.k, w.st, &w.org.id, &ok), COFFER_OK);
    (void)world_put(&w, &w.org, &w.proj, "adopted", 1, names, values, lens);
    world_reopen_token(&w);
    check_read("adopted", "under-adopted-mk", &info);
    assert_true(
        world_sql_is(&w, "SELECT mk_version FROM coffer.org_keys WHERE state = 'current'", "3"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotation_and_one_sweep),
        cmocka_unit_test(test_read_rewraps_lazily),
        cmocka_unit_test(test_retire_org_key),
        cmocka_unit_test(test_two_readers_one_rewrap),
        cmocka_unit_test(test_pipelined_batch_with_stale_rows),
        cmocka_unit_test(test_master_key_rotation),
        cmocka_unit_test(test_mk_label_collision),
    };
    int failed;

    world_open("keys_rotation", "acme", &w);
    coffer_uuid_format(&w.org.id, org_id);
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    world_close(&w);
    return failed;
}
