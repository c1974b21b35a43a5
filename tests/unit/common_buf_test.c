/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Buffers and cursors: big-endian encodings, limits, and a cursor that
 * refuses every read past its end; also UUID parsing and error details.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "coffer/buf.h"
#include "coffer/uuid.h"

#include <string.h>

static void test_put_and_read(void **state)
{
    struct coffer_buf b = {0};
    struct coffer_cursor c;
    const unsigned char *p = NULL;
    uint8_t u8 = 0;
    uint16_t u16 = 0;
    uint32_t u32 = 0;

    (void)state;
    assert_int_equal(coffer_buf_put_u8(&b, 0x01), COFFER_OK);
    assert_int_equal(coffer_buf_put_u16(&b, 0x0203), COFFER_OK);
    assert_int_equal(coffer_buf_put_u32(&b, 0x04050607), COFFER_OK);
    assert_int_equal(coffer_buf_put_lv32(&b, "xyz", 3), COFFER_OK);
    assert_int_equal(b.len, 1 + 2 + 4 + 4 + 3);
    assert_memory_equal(b.data, "\x01\x02\x03\x04\x05\x06\x07\x00\x00\x00\x03xyz", b.len);

    c = coffer_cursor_init(b.data, b.len);
    assert_int_equal(coffer_cursor_u8(&c, &u8), COFFER_OK);
    assert_int_equal(u8, 1);
    assert_int_equal(coffer_cursor_u16(&c, &u16), COFFER_OK);
    assert_int_equal(u16, 0x0203);
    assert_int_equal(coffer_cursor_u32(&c, &u32), COFFER_OK);
    assert_int_equal(u32, 0x04050607);
    assert_int_equal(coffer_cursor_u32(&c, &u32), COFFER_OK);
    assert_int_equal(u32, 3);
    assert_int_equal(coffer_cursor_end(&c), COFFER_E_INVALID);
    assert_int_equal(coffer_cursor_bytes(&c, 4, &p), COFFER_E_INVALID);
    assert_int_equal(coffer_cursor_bytes(&c, 3, &p), COFFER_OK);
    assert_memory_equal(p, "xyz", 3);
    assert_int_equal(coffer_cursor_end(&c), COFFER_OK);
    assert_int_equal(coffer_cursor_u8(&c, &u8), COFFER_E_INVALID);
    coffer_buf_cleanup(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void test_limit(void **state)
{
    struct coffer_buf b = {.max = 8};

    (void)state;
    assert_int_equal(coffer_buf_put(&b, "12345678", 8), COFFER_OK);
    assert_int_equal(coffer_buf_put_u8(&b, 9), COFFER_E_LIMIT);
    assert_int_equal(b.len, 8);
    coffer_buf_cleanup(&b);
    assert_int_equal(b.max, 8);
}

static void test_growth_keeps_content(void **state)
{
    struct coffer_buf b = {0};
    unsigned char chunk[1000];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(chunk); i++) {
        chunk[i] = (unsigned char)i;
    }
    for (i = 0; i < 100; i++) {
        assert_int_equal(coffer_buf_put(&b, chunk, sizeof(chunk)), COFFER_OK);
    }
    assert_int_equal(b.len, 100000);
    assert_memory_equal(b.data + 99000, chunk, sizeof(chunk));
    coffer_buf_cleanup(&b);
}

static void test_hex(void **state)
{
    char out[7];

    (void)state;
    coffer_hex((const unsigned char *)"\x00\xab\xff", 3, out);
    assert_string_equal(out, "00abff");
}

static void test_uuid(void **state)
{
    struct coffer_uuid u;
    struct coffer_uuid v;
    char s[COFFER_UUID_STR_LEN];

    (void)state;
    assert_int_equal(coffer_uuid_parse("0123abcd-4567-89AB-cdef-0123456789ab", &u), COFFER_OK);
    coffer_uuid_format(&u, s);
    assert_string_equal(s, "0123abcd-4567-89ab-cdef-0123456789ab");
    assert_int_equal(coffer_uuid_parse(s, &v), COFFER_OK);
    assert_true(coffer_uuid_equal(&u, &v));
    assert_int_equal(coffer_uuid_parse("0123abcd-4567-89ab-cdef-0123456789a", &u),
                     COFFER_E_INVALID);
    assert_int_equal(coffer_uuid_parse("0123abcd+4567-89ab-cdef-0123456789ab", &u),
                     COFFER_E_INVALID);
    assert_int_equal(coffer_uuid_parse("0123abcd-4567-89ab-cdef-0123456789ag", &u),
                     COFFER_E_INVALID);
    assert_int_equal(coffer_uuid_parse(NULL, &u), COFFER_E_INVALID);
}

static void test_err_detail(void **state)
{
    (void)state;
    coffer_err_clear();
    assert_string_equal(coffer_err_detail(), "");
    assert_int_equal(coffer_err_set(COFFER_E_INTEGRITY, "row %d", 7), COFFER_E_INTEGRITY);
    assert_string_equal(coffer_err_detail(), "row 7");
    assert_int_equal(coffer_err_wrap(COFFER_E_INTEGRITY, "reading %s", "x"), COFFER_E_INTEGRITY);
    assert_string_equal(coffer_err_detail(), "reading x: row 7");
    assert_string_equal(coffer_err_str(COFFER_E_INTEGRITY), "integrity_error");
    assert_string_equal(coffer_err_str(COFFER_E_DB_UNAVAILABLE), "database_unavailable");
    assert_string_equal(coffer_err_str((enum coffer_err) - 999), "unknown_error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_and_read),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_growth_keeps_content),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_err_detail),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
