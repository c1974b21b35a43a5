/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Secret buffers: allocation limits, copy, truncation wiping, constant-time
 * equality, free setting the pointer to NULL, and process hardening leaving
 * the process non-dumpable with no core limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "coffer/secret.h"

#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

static void test_new_is_zeroed(void **state)
{
    struct coffer_secret *s = NULL;
    struct coffer_secret_view v;
    size_t i;

    (void)state;
    assert_int_equal(coffer_secret_new(100, &s), COFFER_OK);
    v = coffer_secret_view(s);
    assert_int_equal(v.len, 100);
    for (i = 0; i < v.len; i++) {
        assert_int_equal(v.data[i], 0);
    }
    coffer_secret_free(&s);
    assert_null(s);
}

static void test_limits(void **state)
{
    struct coffer_secret *s = (struct coffer_secret *)&s;

    (void)state;
    assert_int_equal(coffer_secret_new(COFFER_SECRET_MAX + 1, &s), COFFER_E_LIMIT);
    assert_null(s);
    assert_int_equal(coffer_secret_new(0, &s), COFFER_OK);
    assert_int_equal(coffer_secret_len(s), 0);
    coffer_secret_free(&s);
    coffer_secret_free(&s); /* a second free is harmless */
    coffer_secret_free(NULL);
}

static void test_from_and_equal(void **state)
{
    struct coffer_secret *a = NULL;
    struct coffer_secret *b = NULL;
    struct coffer_secret *c = NULL;
    struct coffer_secret *d = NULL;
    const char bin[] = {'a', 0, 'b', (char)0xff};

    (void)state;
    assert_int_equal(coffer_secret_from(bin, sizeof(bin), &a), COFFER_OK);
    assert_int_equal(coffer_secret_from(bin, sizeof(bin), &b), COFFER_OK);
    assert_int_equal(coffer_secret_from("a\0bX", 4, &c), COFFER_OK);
    assert_int_equal(coffer_secret_from(bin, 3, &d), COFFER_OK);
    assert_memory_equal(coffer_secret_view(a).data, bin, sizeof(bin));
    assert_true(coffer_secret_equal(a, b));
    assert_false(coffer_secret_equal(a, c));
    assert_false(coffer_secret_equal(a, d));
    coffer_secret_free(&a);
    coffer_secret_free(&b);
    coffer_secret_free(&c);
    coffer_secret_free(&d);
}

static void test_truncate_wipes_tail(void **state)
{
    struct coffer_secret *s = NULL;
    struct coffer_secret_view v;

    (void)state;
    assert_int_equal(coffer_secret_from("0123456789", 10, &s), COFFER_OK);
    v = coffer_secret_view(s);
    assert_int_equal(coffer_secret_truncate(s, 4), COFFER_OK);
    assert_int_equal(coffer_secret_len(s), 4);
    assert_memory_equal(v.data, "0123", 4);
    assert_int_equal(v.data[4], 0);
    assert_int_equal(v.data[9], 0);
    assert_int_equal(coffer_secret_truncate(s, 5), COFFER_E_INVALID);
    coffer_secret_free(&s);
}

static void test_large_secret(void **state)
{
    struct coffer_secret *s = NULL;

    (void)state;
    /* Larger than a typical arena block: must still work (own mapping or heap). */
    assert_int_equal(coffer_secret_new(COFFER_SECRET_MAX, &s), COFFER_OK);
    coffer_secret_view(s).data[COFFER_SECRET_MAX - 1] = 7;
    coffer_secret_free(&s);
}

static void test_harden(void **state)
{
    struct rlimit rl;

    (void)state;
    assert_int_equal(coffer_harden_process(), COFFER_OK);
    assert_int_equal(getrlimit(RLIMIT_CORE, &rl), 0);
    assert_int_equal(rl.rlim_cur, 0);
    assert_int_equal(rl.rlim_max, 0);
    assert_int_equal(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
}

static void test_wipe(void **state)
{
    unsigned char b[8];

    (void)state;
    memset(b, 0xaa, sizeof(b));
    coffer_wipe(b, sizeof(b));
    for (size_t i = 0; i < sizeof(b); i++) {
        assert_int_equal(b[i], 0);
    }
    coffer_wipe(NULL, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_is_zeroed),  cmocka_unit_test(test_limits),
        cmocka_unit_test(test_from_and_equal), cmocka_unit_test(test_truncate_wipes_tail),
        cmocka_unit_test(test_large_secret),   cmocka_unit_test(test_harden),
        cmocka_unit_test(test_wipe),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
