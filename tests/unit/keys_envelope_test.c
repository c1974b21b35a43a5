/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The envelope's encodings without a token: key-set validation and copies, the
 * additional data (every field changes it; no two rows share one), and the
 * payload format (round trip of every shape, and rejection of every
 * malformed encoding).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "keys/keys_int.h"

#include <stdio.h>
#include <string.h>

static struct coffer_uuid uuid_of(unsigned char fill)
{
    struct coffer_uuid u;

    memset(u.b, fill, sizeof(u.b));
    return u;
}

static void test_keyset_names(void **state)
{
    struct coffer_keyset *ks = NULL;
    char long_name[COFFER_KEY_NAME_MAX + 2];

    (void)state;
    assert_int_equal(coffer_keyset_new(&ks), COFFER_OK);
    assert_int_equal(coffer_keyset_add(ks, "access_token", "v", 1), COFFER_OK);
    assert_int_equal(coffer_keyset_add(ks, "Refresh.Token-2", "v", 1), COFFER_OK);
    assert_int_equal(coffer_keyset_add(ks, "_x", "", 0), COFFER_OK);
    assert_int_equal(coffer_keyset_add(ks, "access_token", "w", 1), COFFER_E_EXISTS);
    assert_int_equal(coffer_keyset_add(ks, "", "w", 1), COFFER_E_INVALID);
    assert_int_equal(coffer_keyset_add(ks, ".hidden", "w", 1), COFFER_E_INVALID);
    assert_int_equal(coffer_keyset_add(ks, "-dash", "w", 1), COFFER_E_INVALID);
    assert_int_equal(coffer_keyset_add(ks, "sp ace", "w", 1), COFFER_E_INVALID);
    assert_int_equal(coffer_keyset_add(ks, "caf\xc3\xa9", "w", 1), COFFER_E_INVALID);
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_int_equal(coffer_keyset_add(ks, long_name, "w", 1), COFFER_E_INVALID);
    long_name[COFFER_KEY_NAME_MAX] = '\0';
    assert_int_equal(coffer_keyset_add(ks, long_name, "w", 1), COFFER_OK);
    assert_int_equal(coffer_keyset_count(ks), 4);
    assert_string_equal(coffer_keyset_name(ks, 1), "Refresh.Token-2");
    assert_non_null(coffer_keyset_get(ks, "_x"));
    assert_null(coffer_keyset_get(ks, "missing"));
    coffer_keyset_free(&ks);
    assert_null(ks);
}

static void test_keyset_limits(void **state)
{
    static unsigned char big[COFFER_VALUE_MAX + 1];
    struct coffer_keyset *ks = NULL;
    char name[16];
    int i;

    (void)state;
    assert_int_equal(coffer_keyset_new(&ks), COFFER_OK);
    assert_int_equal(coffer_keyset_add(ks, "big", big, sizeof(big)), COFFER_E_LIMIT);
    assert_int_equal(coffer_keyset_add(ks, "max", big, COFFER_VALUE_MAX), COFFER_OK);
    for (i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "k%d", i);
        assert_int_equal(coffer_keyset_add(ks, name, big, COFFER_VALUE_MAX), COFFER_OK);
    }
    /* Four full values reach the payload limit: one more byte is refused. */
    assert_int_equal(coffer_keyset_add(ks, "one_more", "x", 1), COFFER_E_LIMIT);
    coffer_keyset_free(&ks);

    assert_int_equal(coffer_keyset_new(&ks), COFFER_OK);
    for (i = 0; i < COFFER_KEYS_MAX; i++) {
        snprintf(name, sizeof(name), "k%d", i);
        assert_int_equal(coffer_keyset_add(ks, name, "v", 1), COFFER_OK);
    }
    assert_int_equal(coffer_keyset_add(ks, "extra", "v", 1), COFFER_E_LIMIT);
    coffer_keyset_free(&ks);
}

static void aad_of(const struct coffer_uuid *o, const struct coffer_uuid *p,
                   const struct coffer_uuid *c, uint32_t v, char *const *names, size_t n,
                   struct coffer_buf *out)
{
    assert_int_equal(coffer_keys_aad(o, p, c, v, names, n, out), COFFER_OK);
}

static bool same(const struct coffer_buf *a, const struct coffer_buf *b)
{
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

static void test_keyset_copy_without(void **state)
{
    static const char *const leave[] = {"refresh_token", "absent"};
    struct coffer_keyset *ks = NULL;
    struct coffer_keyset *kept = NULL;
    struct coffer_secret_view v;

    (void)state;
    assert_int_equal(coffer_keyset_new(&ks), COFFER_OK);
    assert_int_equal(coffer_keyset_add(ks, "access_token", "at", 2), COFFER_OK);
    assert_int_equal(coffer_keyset_add(ks, "refresh_token", "rt", 2), COFFER_OK);
    assert_int_equal(coffer_keyset_add(ks, "scope", "", 0), COFFER_OK);
    assert_int_equal(coffer_keyset_copy_without(ks, leave, 2, &kept), COFFER_OK);
    /* The others, in their order, with their values; the original is unchanged. */
    assert_int_equal(coffer_keyset_count(kept), 2);
    assert_string_equal(coffer_keyset_name(kept, 0), "access_token");
    assert_string_equal(coffer_keyset_name(kept, 1), "scope");
    v = coffer_secret_view(coffer_keyset_get(kept, "access_token"));
    assert_int_equal(v.len, 2);
    assert_memory_equal(v.data, "at", 2);
    assert_null(coffer_keyset_get(kept, "refresh_token"));
    assert_int_equal(coffer_keyset_count(ks), 3);
    coffer_keyset_free(&kept);
    /* Leaving nothing out copies the whole set. */
    assert_int_equal(coffer_keyset_copy_without(ks, NULL, 0, &kept), COFFER_OK);
    assert_int_equal(coffer_keyset_count(kept), 3);
    coffer_keyset_free(&kept);
    coffer_keyset_free(&ks);
}

static void test_aad_binds_every_field(void **state)
{
    struct coffer_uuid o = uuid_of(1), p = uuid_of(2), c = uuid_of(3), x = uuid_of(9);
    char *names[] = {"ab", "c"};
    char *names_moved[] = {"a", "bc"};
    char *names_swapped[] = {"c", "ab"};
    struct coffer_buf base = {0}, b = {0};

    (void)state;
    aad_of(&o, &p, &c, 1, names, 2, &base);
    aad_of(&o, &p, &c, 1, names, 2, &b);
    assert_true(same(&base, &b)); /* deterministic */
    coffer_buf_cleanup(&b);

    aad_of(&x, &p, &c, 1, names, 2, &b);
    assert_false(same(&base, &b));
    coffer_buf_cleanup(&b);
    aad_of(&o, &x, &c, 1, names, 2, &b);
    assert_false(same(&base, &b));
    coffer_buf_cleanup(&b);
    aad_of(&o, &p, &x, 1, names, 2, &b);
    assert_false(same(&base, &b));
    coffer_buf_cleanup(&b);
    aad_of(&o, &p, &c, 2, names, 2, &b);
    assert_false(same(&base, &b));
    coffer_buf_cleanup(&b);
    aad_of(&o, &p, &c, 1, names_moved, 2, &b);
    assert_false(same(&base, &b));
    coffer_buf_cleanup(&b);
    aad_of(&o, &p, &c, 1, names_swapped, 2, &b);
    assert_false(same(&base, &b));
    coffer_buf_cleanup(&b);
    aad_of(&o, &p, &c, 1, names, 1, &b);
    assert_false(same(&base, &b));
    coffer_buf_cleanup(&b);
    coffer_buf_cleanup(&base);
}

static void test_aad_rejects_bad_names(void **state)
{
    struct coffer_uuid u = uuid_of(0);
    char *bad[] = {"ok", "no space"};
    struct coffer_buf b = {0};

    (void)state;
    assert_int_equal(coffer_keys_aad(&u, &u, &u, 1, bad, 2, &b), COFFER_E_INVALID);
    coffer_buf_cleanup(&b);
    assert_int_equal(coffer_keys_aad(&u, &u, &u, 1, bad, 0, &b), COFFER_E_INVALID);
    coffer_buf_cleanup(&b);
}

static void roundtrip(const char *const *names, const void *const *values, const size_t *lens,
                      size_t n)
{
    struct coffer_keyset *ks = NULL;
    struct coffer_keyset *back = NULL;
    struct coffer_secret *enc = NULL;
    size_t i;

    assert_int_equal(coffer_keyset_new(&ks), COFFER_OK);
    for (i = 0; i < n; i++) {
        assert_int_equal(coffer_keyset_add(ks, names[i], values[i], lens[i]), COFFER_OK);
    }
    assert_int_equal(coffer_keys_payload_encode(ks, &enc), COFFER_OK);
    assert_int_equal(coffer_keys_payload_decode(coffer_secret_view(enc).data,
                                                coffer_secret_len(enc),
                                                coffer_keys_keyset_names(ks), n, &back),
                     COFFER_OK);
    assert_int_equal(coffer_keyset_count(back), n);
    for (i = 0; i < n; i++) {
        assert_string_equal(coffer_keyset_name(back, i), names[i]);
        assert_true(coffer_secret_equal(coffer_keyset_value(back, i), coffer_keyset_value(ks, i)));
    }
    coffer_keyset_free(&back);
    coffer_keyset_free(&ks);
    coffer_secret_free(&enc);
}

static void test_payload_shapes(void **state)
{
    static unsigned char big[COFFER_VALUE_MAX];
    const char *one_n[] = {"api_key"};
    const void *one_v[] = {"k-123"};
    size_t one_l[] = {5};
    const char *many_n[] = {"username", "password", "empty", "utf8", "binary"};
    const void *many_v[] = {"alice", "p\xc3\xa4ss\xe2\x82\xac", "", "\xf0\x9f\x94\x91 key",
                            "\x00\x01\xff\x00"};
    size_t many_l[] = {5, 8, 0, 8, 4};
    const char *big_n[] = {"blob"};
    const void *big_v[] = {big};
    size_t big_l[] = {sizeof(big)};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(big); i++) {
        big[i] = (unsigned char)(i * 7);
    }
    roundtrip(one_n, one_v, one_l, 1);
    roundtrip(many_n, many_v, many_l, 5);
    roundtrip(big_n, big_v, big_l, 1);
}

static void expect_reject(const unsigned char *p, size_t len, char *const *names, size_t n)
{
    struct coffer_keyset *out = (struct coffer_keyset *)&out;

    assert_int_equal(coffer_keys_payload_decode(p, len, names, n, &out), COFFER_E_INTEGRITY);
    assert_null(out);
}

static void test_payload_rejects_malformed(void **state)
{
    char *names[] = {"a", "b"};
    /* format 1, two values: "x" and "yz" */
    const unsigned char good[] = {1, 0, 0, 0, 2, 0, 0, 0, 1, 'x', 0, 0, 0, 2, 'y', 'z'};
    unsigned char m[sizeof(good) + 1];
    struct coffer_keyset *ks = NULL;
    size_t cut;

    (void)state;
    assert_int_equal(coffer_keys_payload_decode(good, sizeof(good), names, 2, &ks), COFFER_OK);
    coffer_keyset_free(&ks);
    for (cut = 0; cut < sizeof(good); cut++) {
        expect_reject(good, cut, names, 2); /* every truncation */
    }
    memcpy(m, good, sizeof(good));
    m[sizeof(good)] = 0;
    expect_reject(m, sizeof(good) + 1, names, 2); /* trailing byte */
    memcpy(m, good, sizeof(good));
    m[0] = 2;
    expect_reject(m, sizeof(good), names, 2); /* unknown format */
    memcpy(m, good, sizeof(good));
    m[4] = 3;
    expect_reject(m, sizeof(good), names, 2); /* count differs from the names */
    expect_reject(good, sizeof(good), names, 1);
    memcpy(m, good, sizeof(good));
    m[5] = 0xff;
    expect_reject(m, sizeof(good), names, 2); /* length far beyond the input */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyset_names),
        cmocka_unit_test(test_keyset_limits),
        cmocka_unit_test(test_keyset_copy_without),
        cmocka_unit_test(test_aad_binds_every_field),
        cmocka_unit_test(test_aad_rejects_bad_names),
        cmocka_unit_test(test_payload_shapes),
        cmocka_unit_test(test_payload_rejects_malformed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
