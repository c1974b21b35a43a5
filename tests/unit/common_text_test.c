/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The text checks every parser of outside input relies on: coffer_utf8_ok
 * accepts exactly the well-formed UTF-8 of Unicode's table 3-7, and
 * coffer_text_ok additionally refuses control characters (C0, DEL, C1) and
 * lengths outside 1..max. A table covers each boundary and each kind of
 * malformed sequence; an exhaustive pass encodes every code point.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "coffer/text.h"

struct text_case {
    const char *name;
    const char *bytes;
    size_t len;
    bool utf8;
    bool text;
};

/* Cases of a C string literal; the length is the literal's without its terminating NUL. */
#define CASE(name, lit, utf8, text)                                                                \
    {                                                                                              \
        name, lit, sizeof(lit) - 1, utf8, text                                                     \
    }

/* clang-format off */
static const struct text_case cases[] = {
    /* Well-formed, 1 to 4 bytes */
    CASE("ASCII letter", "A", true, true),
    CASE("space", " ", true, true),
    CASE("tilde U+007E", "~", true, true),
    CASE("ASCII sentence", "deploy payments v1.2", true, true),
    CASE("U+00A0, first after C1", "\xc2\xa0", true, true),
    CASE("U+00E9", "\xc3\xa9", true, true),
    CASE("U+07FF, last of 2 bytes", "\xdf\xbf", true, true),
    CASE("U+0800, first of 3 bytes", "\xe0\xa0\x80", true, true),
    CASE("U+20AC", "\xe2\x82\xac", true, true),
    CASE("U+D7FF, before the surrogates", "\xed\x9f\xbf", true, true),
    CASE("U+E000, after the surrogates", "\xee\x80\x80", true, true),
    CASE("U+FFFF, last of 3 bytes", "\xef\xbf\xbf", true, true),
    CASE("U+10000, first of 4 bytes", "\xf0\x90\x80\x80", true, true),
    CASE("U+1F600", "\xf0\x9f\x98\x80", true, true),
    CASE("U+10FFFF, the last code point", "\xf4\x8f\xbf\xbf", true, true),
    CASE("mixed widths", "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z", true, true),

    /* Control characters: well-formed, refused as text */
    CASE("NUL", "\0", true, false),
    CASE("NUL inside", "a\0b", true, false),
    CASE("U+0001", "\x01", true, false),
    CASE("tab", "a\tb", true, false),
    CASE("newline", "a\nb", true, false),
    CASE("carriage return", "a\rb", true, false),
    CASE("escape", "\x1b[31m", true, false),
    CASE("U+001F, last C0", "\x1f", true, false),
    CASE("DEL U+007F", "\x7f", true, false),
    CASE("U+0080, first C1", "\xc2\x80", true, false),
    CASE("U+0085 next line", "a\xc2\x85z", true, false),
    CASE("U+009F, last C1", "\xc2\x9f", true, false),

    /* Beyond U+10FFFF */
    CASE("U+110000", "\xf4\x90\x80\x80", false, false),
    CASE("F4 BF BF BF", "\xf4\xbf\xbf\xbf", false, false),
    CASE("lead F5", "\xf5\x80\x80\x80", false, false),
    CASE("lead F7", "\xf7\xbf\xbf\xbf", false, false),
    CASE("lead F8, old 5-byte form", "\xf8\x88\x80\x80\x80", false, false),
    CASE("lead FC, old 6-byte form", "\xfc\x84\x80\x80\x80\x80", false, false),
    CASE("FE", "\xfe", false, false),
    CASE("FF", "\xff", false, false),

    /* Overlong forms */
    CASE("C0 80, overlong NUL", "\xc0\x80", false, false),
    CASE("C1 BF, overlong U+007F", "\xc1\xbf", false, false),
    CASE("C0 AF, overlong slash", "\xc0\xaf", false, false),
    CASE("E0 80 80", "\xe0\x80\x80", false, false),
    CASE("E0 9F BF, overlong U+07FF", "\xe0\x9f\xbf", false, false),
    CASE("F0 80 80 80", "\xf0\x80\x80\x80", false, false),
    CASE("F0 8F BF BF, overlong U+FFFF", "\xf0\x8f\xbf\xbf", false, false),

    /* Surrogates */
    CASE("ED A0 80, U+D800", "\xed\xa0\x80", false, false),
    CASE("ED AF BF, U+DBFF", "\xed\xaf\xbf", false, false),
    CASE("ED B0 80, U+DC00", "\xed\xb0\x80", false, false),
    CASE("ED BF BF, U+DFFF", "\xed\xbf\xbf", false, false),
    CASE("surrogate pair as CESU-8", "\xed\xa0\xbd\xed\xb8\x80", false, false),

    /* Truncated at the end */
    CASE("2-byte lead alone", "\xc3", false, false),
    CASE("2-byte lead at the end", "abc\xc3", false, false),
    CASE("3-byte missing 1", "\xe2\x82", false, false),
    CASE("3-byte missing 2", "\xe2", false, false),
    CASE("4-byte missing 1", "\xf0\x9f\x98", false, false),
    CASE("4-byte missing 2", "a\xf0\x9f", false, false),
    CASE("4-byte missing 3", "a\xf0", false, false),

    /* Bad or stray continuation bytes */
    CASE("lone continuation 80", "\x80", false, false),
    CASE("lone continuation BF", "\xbf", false, false),
    CASE("continuation inside ASCII", "a\xbf" "b", false, false),
    CASE("one continuation too many", "\xc3\xa9\xa9", false, false),
    CASE("2-byte with ASCII second", "\xc3\x28", false, false),
    CASE("3-byte with ASCII third", "\xe2\x82\x28", false, false),
    CASE("3-byte with ASCII second", "\xe2\x28\xa1", false, false),
    CASE("4-byte with ASCII third", "\xf0\x9f\x28\x80", false, false),
    CASE("4-byte with ASCII fourth", "\xf0\x9f\x98\x28", false, false),
    CASE("lead followed by a lead", "\xc3\xc3\xa9", false, false),
    CASE("valid then invalid", "ok \xc3\xa9 \xff", false, false),
};
/* clang-format on */

static void test_table(void **state)
{
    size_t failures = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct text_case *c = &cases[i];
        bool utf8 = coffer_utf8_ok(c->bytes, c->len);
        bool text = coffer_text_ok(c->bytes, c->len, 64);

        if (utf8 != c->utf8 || text != c->text) {
            print_error("\"%s\": utf8_ok %d (want %d), text_ok %d (want %d)\n", c->name, utf8,
                        c->utf8, text, c->text);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

/* Only the given length is read: a sequence cut by len is truncated whatever follows it. */
static void test_length_bounds_reading(void **state)
{
    static const char e_acute[] = "\xc3\xa9";
    static const char euro[] = "\xe2\x82\xac";
    static const char emoji[] = "\xf0\x9f\x98\x80";

    (void)state;
    assert_true(coffer_utf8_ok(e_acute, 2));
    assert_false(coffer_utf8_ok(e_acute, 1));
    assert_false(coffer_text_ok(e_acute, 1, 64));
    assert_true(coffer_utf8_ok(euro, 3));
    assert_false(coffer_utf8_ok(euro, 2));
    assert_false(coffer_utf8_ok(euro, 1));
    assert_true(coffer_utf8_ok(emoji, 4));
    assert_false(coffer_utf8_ok(emoji, 3));
    assert_false(coffer_text_ok(emoji, 3, 64));
    /* Bytes past len do not count, even invalid ones. */
    assert_true(coffer_text_ok("ab\xff", 2, 64));
    assert_true(coffer_utf8_ok("ab\xff", 2));
}

static void test_lengths(void **state)
{
    (void)state;
    /* Empty: valid UTF-8, not text. */
    assert_true(coffer_utf8_ok("", 0));
    assert_false(coffer_text_ok("", 0, 64));
    assert_false(coffer_text_ok("abc", 0, 64));
    /* NULL */
    assert_true(coffer_utf8_ok(NULL, 0));
    assert_false(coffer_utf8_ok(NULL, 1));
    assert_false(coffer_text_ok(NULL, 0, 64));
    assert_false(coffer_text_ok(NULL, 3, 64));
    /* max is inclusive and counts bytes, not characters. */
    assert_true(coffer_text_ok("abcd", 4, 4));
    assert_false(coffer_text_ok("abcde", 5, 4));
    assert_true(coffer_text_ok("\xc3\xa9", 2, 2));
    assert_false(coffer_text_ok("\xc3\xa9", 2, 1));
    assert_false(coffer_text_ok("a", 1, 0));
    assert_true(coffer_text_ok("a", 1, SIZE_MAX));
}

static void test_long_input(void **state)
{
    static char buf[4096];

    (void)state;
    for (size_t i = 0; i + 3 <= sizeof(buf); i += 3) {
        buf[i] = '\xe2';
        buf[i + 1] = '\x82';
        buf[i + 2] = '\xac';
    }
    /* 4095 bytes of euro signs, 1365 characters. */
    assert_true(coffer_utf8_ok(buf, 4095));
    assert_true(coffer_text_ok(buf, 4095, 4095));
    assert_false(coffer_text_ok(buf, 4095, 4094));
    /* Cut in the middle of the last character. */
    assert_false(coffer_utf8_ok(buf, 4094));
    /* A control character at the very end. */
    buf[4094] = '\n';
    assert_true(coffer_utf8_ok(buf, 4095 - 3));
    buf[4092] = 'x';
    buf[4093] = 'y';
    assert_true(coffer_utf8_ok(buf, 4095));
    assert_false(coffer_text_ok(buf, 4095, 4095));
    assert_true(coffer_text_ok(buf, 4094, 4095));
}

/* The shortest encoding of cp (which may be a surrogate): its length in bytes. */
static size_t encode(uint32_t cp, unsigned char out[4])
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * Every code point from U+0000 to U+10FFFF and a little beyond: the shortest
 * encoding is UTF-8 unless it is a surrogate or above U+10FFFF, and text
 * unless it is also a control character. Every encoding one byte short is
 * refused.
 */
static void test_every_code_point(void **state)
{
    size_t failures = 0;

    (void)state;
    for (uint32_t cp = 0; cp <= 0x110100; cp++) {
        unsigned char b[4];
        size_t n = encode(cp, b);
        bool valid = cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
        bool control = cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);

        if (coffer_utf8_ok((const char *)b, n) != valid ||
            coffer_text_ok((const char *)b, n, 4) != (valid && !control) ||
            (n > 1 && coffer_utf8_ok((const char *)b, n - 1))) {
            if (failures < 10) {
                print_error("U+%04X wrongly judged\n", (unsigned)cp);
            }
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

/* Every lead byte that can start nothing (80..C1, F5..FF) is refused before any continuation. */
static void test_impossible_leads(void **state)
{
    (void)state;
    for (unsigned v = 0x80; v <= 0xFF; v++) {
        char b[4] = {(char)v, '\x80', '\x80', '\x80'};
        size_t want;

        if (v <= 0xC1 || v >= 0xF5) {
            for (size_t n = 1; n <= 4; n++) {
                assert_false(coffer_utf8_ok(b, n));
            }
            continue;
        }
        /* With the smallest second byte its lead allows, the sequence is valid, and only whole. */
        want = v < 0xE0 ? 2 : v < 0xF0 ? 3 : 4;
        b[1] = (char)(v == 0xE0 ? 0xA0 : v == 0xF0 ? 0x90 : 0x80);
        assert_true(coffer_utf8_ok(b, want));
        assert_false(coffer_utf8_ok(b, want - 1));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_length_bounds_reading),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_long_input),
        cmocka_unit_test(test_every_code_point),
        cmocka_unit_test(test_impossible_leads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
