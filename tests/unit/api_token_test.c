/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bearer-token format and the Authorization header parser: tokens made
 * by an independent encoder (OpenSSL's base64, turned into base64url) are
 * accepted; every way a token or a header can be off by one character is
 * refused (prefix, length, alphabet, the bits past 256, the scheme's case
 * and spacing); the parsers never read past the length they are given; and
 * the principal text of a token ("agent/<type>/<instance>", "admin/<name>")
 * is parsed strictly and formatted back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "coffer/ops.h"

#define ZERO_TOKEN "cft_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

/* A token for 32 bytes, encoded with OpenSSL's base64 and turned into base64url. */
static void independent_token(const unsigned char raw[32], char out[COFFER_TOKEN_LEN + 1])
{
    unsigned char b64[48];
    int n = EVP_EncodeBlock(b64, raw, 32);

    assert_int_equal(n, 44);
    assert_int_equal(b64[43], '=');
    memcpy(out, COFFER_TOKEN_PREFIX, COFFER_TOKEN_PREFIX_LEN);
    for (int i = 0; i < 43; i++) {
        char c = (char)b64[i];

        out[COFFER_TOKEN_PREFIX_LEN + i] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    out[COFFER_TOKEN_LEN] = '\0';
}

static void test_lengths_are_fixed(void **state)
{
    (void)state;
    assert_int_equal(COFFER_TOKEN_LEN, 47);
    assert_int_equal(strlen(ZERO_TOKEN), COFFER_TOKEN_LEN);
    assert_true(coffer_token_format_ok(ZERO_TOKEN, strlen(ZERO_TOKEN)));
}

static void test_independent_encodings_accepted(void **state)
{
    unsigned char raw[32];
    char tok[COFFER_TOKEN_LEN + 1];
    int saw_dash = 0;
    int saw_underscore = 0;

    (void)state;
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(RAND_bytes(raw, sizeof(raw)), 1);
        independent_token(raw, tok);
        assert_true(coffer_token_format_ok(tok, strlen(tok)));
        saw_dash |= strchr(tok, '-') != NULL;
        saw_underscore |= strchr(tok + COFFER_TOKEN_PREFIX_LEN, '_') != NULL;
    }
    /* The two characters base64url has and base64 has not were both exercised. */
    assert_true(saw_dash);
    assert_true(saw_underscore);
    /* All bytes 0xff: every character '_' (63) but the last. */
    memset(raw, 0xff, sizeof(raw));
    independent_token(raw, tok);
    assert_true(coffer_token_format_ok(tok, strlen(tok)));
    /* The last character holds the last 4 bits, shifted: 0x0f << 2 is 60, '8'. */
    assert_int_equal(tok[COFFER_TOKEN_LEN - 1], '8');
}

static void test_malformed_tokens_refused(void **state)
{
    char tok[COFFER_TOKEN_LEN + 2];

    (void)state;
    /* Prefix. */
    assert_false(coffer_token_format_ok("cfx_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 47));
    assert_false(coffer_token_format_ok("CFT_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 47));
    assert_false(coffer_token_format_ok("cft-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 47));
    /* Length: one short, one long, empty, prefix only. */
    assert_false(coffer_token_format_ok(ZERO_TOKEN, 46));
    snprintf(tok, sizeof(tok), "%sA", ZERO_TOKEN);
    assert_false(coffer_token_format_ok(tok, 48));
    assert_false(coffer_token_format_ok("", 0));
    assert_false(coffer_token_format_ok("cft_", 4));
    assert_false(coffer_token_format_ok(NULL, 47));
    /* Alphabet: base64's '+' and '/', padding, space, NUL, a byte above 0x7f. */
    const char bad[] = {'+', '/', '=', ' ', '\0', '\x80', '.', '~'};
    for (size_t i = 0; i < sizeof(bad); i++) {
        for (size_t pos = COFFER_TOKEN_PREFIX_LEN; pos < COFFER_TOKEN_LEN; pos += 21) {
            memcpy(tok, ZERO_TOKEN, COFFER_TOKEN_LEN + 1);
            tok[pos] = bad[i];
            assert_false(coffer_token_format_ok(tok, COFFER_TOKEN_LEN));
        }
    }
}

static void test_bits_past_256_refused(void **state)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char tok[COFFER_TOKEN_LEN + 1];
    int accepted = 0;

    (void)state;
    for (int v = 0; v < 64; v++) {
        memcpy(tok, ZERO_TOKEN, sizeof(tok));
        tok[COFFER_TOKEN_LEN - 1] = alphabet[v];
        /* Only a last character whose two low bits are zero encodes exactly 32 bytes. */
        assert_int_equal(coffer_token_format_ok(tok, COFFER_TOKEN_LEN), (v & 3) == 0);
        accepted += (v & 3) == 0;
    }
    assert_int_equal(accepted, 16);
}

static void test_length_is_respected(void **state)
{
    char *exact = malloc(COFFER_TOKEN_LEN);
    char *header = malloc(7 + COFFER_TOKEN_LEN);
    const char *tok = NULL;

    (void)state;
    assert_non_null(exact);
    assert_non_null(header);
    /* No terminator: a read past the length is an overread the sanitizer reports. */
    memcpy(exact, ZERO_TOKEN, COFFER_TOKEN_LEN);
    assert_true(coffer_token_format_ok(exact, COFFER_TOKEN_LEN));
    memcpy(header, "Bearer ", 7);
    memcpy(header + 7, ZERO_TOKEN, COFFER_TOKEN_LEN);
    assert_true(coffer_token_from_header(header, 7 + COFFER_TOKEN_LEN, &tok));
    assert_ptr_equal(tok, header + 7);
    /* A valid token followed by more bytes than the length names is judged by the length. */
    assert_false(coffer_token_format_ok(ZERO_TOKEN "AAAA", 46));
    free(exact);
    free(header);
}

static void test_header_accepted(void **state)
{
    const char *tok = NULL;
    const char *h = "Bearer " ZERO_TOKEN;

    (void)state;
    assert_true(coffer_token_from_header(h, strlen(h), &tok));
    assert_non_null(tok);
    assert_memory_equal(tok, ZERO_TOKEN, COFFER_TOKEN_LEN);
}

static void test_header_refused(void **state)
{
    static const char *const bad[] = {
        "bearer " ZERO_TOKEN,                                     /* the scheme's case */
        "BEARER " ZERO_TOKEN,                                     /* the scheme's case */
        "Bearer  " ZERO_TOKEN,                                    /* two spaces */
        "Bearer\t" ZERO_TOKEN,                                    /* a tab */
        " Bearer " ZERO_TOKEN,                                    /* a space before */
        "Bearer " ZERO_TOKEN " ",                                 /* a space after */
        "Bearer " ZERO_TOKEN "A",                                 /* one character long */
        "Bearer cft_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  /* one short */
        "Bearer cfx_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* wrong prefix */
        "Bearer cft_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+", /* base64's '+' */
        "Bearer cft_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB", /* bits past 256 */
        "Basic " ZERO_TOKEN,                                      /* another scheme */
        "Token " ZERO_TOKEN,                                      /* another scheme */
        "Bearer",                                                 /* no token */
        "Bearer ",                                                /* no token */
        ZERO_TOKEN,                                               /* no scheme */
        "",
    };
    const char *tok = ZERO_TOKEN;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tok = ZERO_TOKEN;
        if (coffer_token_from_header(bad[i], strlen(bad[i]), &tok)) {
            fail_msg("header %zu accepted: '%s'", i, bad[i]);
        }
        assert_null(tok);
    }
    assert_false(coffer_token_from_header(NULL, 54, &tok));
    assert_false(coffer_token_from_header("Bearer " ZERO_TOKEN, 54, NULL));
    /* The right bytes with a length that cuts or extends them. */
    assert_false(coffer_token_from_header("Bearer " ZERO_TOKEN, 53, &tok));
}

static void test_principal_parse(void **state)
{
    struct coffer_principal p;
    char text[COFFER_TOKEN_PRINCIPAL_MAX + 1];
    const char *agent = "agent/deployer/deployer-1";
    const char *admin = "admin/root_2";

    (void)state;
    assert_int_equal(coffer_token_principal_parse(agent, strlen(agent), "dev", &p), COFFER_OK);
    assert_int_equal(p.kind, COFFER_PRINCIPAL_AGENT);
    assert_string_equal(p.org, "dev");
    assert_string_equal(p.agent_type, "deployer");
    assert_string_equal(p.instance, "deployer-1");
    assert_string_equal(p.admin, "");
    assert_string_equal(p.trust_domain, "");
    coffer_token_principal_format(&p, text, sizeof(text));
    assert_string_equal(text, agent);

    assert_int_equal(coffer_token_principal_parse(admin, strlen(admin), "acme", &p), COFFER_OK);
    assert_int_equal(p.kind, COFFER_PRINCIPAL_ADMIN);
    assert_string_equal(p.org, "acme");
    assert_string_equal(p.admin, "root_2");
    assert_string_equal(p.agent_type, "");
    assert_string_equal(p.instance, "");
    coffer_token_principal_format(&p, text, sizeof(text));
    assert_string_equal(text, admin);

    /* Only len bytes count. */
    assert_int_equal(coffer_token_principal_parse("admin/ab/cd", 8, "dev", &p), COFFER_OK);
    assert_string_equal(p.admin, "ab");
}

static void test_principal_refused(void **state)
{
    static const char *const bad[] = {
        "agent/deployer",
        "agent/deployer/",
        "agent//deployer-1",
        "agent/deployer/a/b",
        "agent/Deployer/x",
        "agent/deployer/-x",
        "admin/",
        "admin/root/extra",
        "admin/root/",
        "Admin/root",
        "user/root",
        "agent",
        "admin",
        "",
        "/admin/root",
        "agent/deployer/x y",
        "agent/deployer/x%2f",
        "admin/r\xc3\xa9",
        "spiffe://coffer.dev/org/dev/admin/root",
    };
    struct coffer_principal p;
    char long_name[128];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&p, 0x5a, sizeof(p));
        if (coffer_token_principal_parse(bad[i], strlen(bad[i]), "dev", &p) != COFFER_E_INVALID) {
            fail_msg("principal %zu accepted: '%s'", i, bad[i]);
        }
        /* Nothing half-parsed is left behind. */
        assert_int_equal(p.kind, 0);
        assert_string_equal(p.org, "");
        /* The detail never quotes the input's names. */
        assert_null(strstr(coffer_err_detail(), "deployer"));
        assert_null(strstr(coffer_err_detail(), "root"));
        assert_null(strstr(coffer_err_detail(), "spiffe"));
    }
    /* A name of 63 characters is the longest. */
    memset(long_name, 'a', sizeof(long_name));
    memcpy(long_name, "admin/", 6);
    assert_int_equal(coffer_token_principal_parse(long_name, 6 + 63, "dev", &p), COFFER_OK);
    assert_int_equal(coffer_token_principal_parse(long_name, 6 + 64, "dev", &p), COFFER_E_INVALID);
    /* A NUL inside the length. */
    assert_int_equal(coffer_token_principal_parse("admin/ro\0t", 10, "dev", &p), COFFER_E_INVALID);
    /* The org must be a name, and there must be an output. */
    assert_int_equal(coffer_token_principal_parse("admin/root", 10, "Dev", &p), COFFER_E_INVALID);
    assert_int_equal(coffer_token_principal_parse("admin/root", 10, NULL, &p), COFFER_E_INVALID);
    assert_int_equal(coffer_token_principal_parse("admin/root", 10, "dev", NULL), COFFER_E_INVALID);
    assert_int_equal(coffer_token_principal_parse(NULL, 10, "dev", &p), COFFER_E_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lengths_are_fixed),
        cmocka_unit_test(test_independent_encodings_accepted),
        cmocka_unit_test(test_malformed_tokens_refused),
        cmocka_unit_test(test_bits_past_256_refused),
        cmocka_unit_test(test_length_is_respected),
        cmocka_unit_test(test_header_accepted),
        cmocka_unit_test(test_header_refused),
        cmocka_unit_test(test_principal_parse),
        cmocka_unit_test(test_principal_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
