/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CK_RV translation without a token: every CKR_ constant of pkcs11.h has its
 * own name, unknown codes are named as such, the mapping to coffer_err
 * differs between the normal and the decrypt/unwrap path exactly where it
 * should, and a failure's detail reads "C_Fn: CKR_NAME (0xhex)".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "p11/rv.h"

struct named_rv {
    CK_RV rv;
    const char *name;
};

/* The name is the macro's own spelling, so the table cannot disagree with the header. */
/* clang-format off */
#define RV(x) {x, #x}
/* clang-format on */

static const struct named_rv every_rv[] = {
    RV(CKR_OK),
    RV(CKR_CANCEL),
    RV(CKR_HOST_MEMORY),
    RV(CKR_SLOT_ID_INVALID),
    RV(CKR_GENERAL_ERROR),
    RV(CKR_FUNCTION_FAILED),
    RV(CKR_ARGUMENTS_BAD),
    RV(CKR_NO_EVENT),
    RV(CKR_NEED_TO_CREATE_THREADS),
    RV(CKR_CANT_LOCK),
    RV(CKR_ATTRIBUTE_READ_ONLY),
    RV(CKR_ATTRIBUTE_SENSITIVE),
    RV(CKR_ATTRIBUTE_TYPE_INVALID),
    RV(CKR_ATTRIBUTE_VALUE_INVALID),
    RV(CKR_ACTION_PROHIBITED),
    RV(CKR_DATA_INVALID),
    RV(CKR_DATA_LEN_RANGE),
    RV(CKR_DEVICE_ERROR),
    RV(CKR_DEVICE_MEMORY),
    RV(CKR_DEVICE_REMOVED),
    RV(CKR_ENCRYPTED_DATA_INVALID),
    RV(CKR_ENCRYPTED_DATA_LEN_RANGE),
    RV(CKR_FUNCTION_CANCELED),
    RV(CKR_FUNCTION_NOT_PARALLEL),
    RV(CKR_FUNCTION_NOT_SUPPORTED),
    RV(CKR_KEY_HANDLE_INVALID),
    RV(CKR_KEY_SIZE_RANGE),
    RV(CKR_KEY_TYPE_INCONSISTENT),
    RV(CKR_KEY_NOT_NEEDED),
    RV(CKR_KEY_CHANGED),
    RV(CKR_KEY_NEEDED),
    RV(CKR_KEY_INDIGESTIBLE),
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED),
    RV(CKR_KEY_NOT_WRAPPABLE),
    RV(CKR_KEY_UNEXTRACTABLE),
    RV(CKR_MECHANISM_INVALID),
    RV(CKR_MECHANISM_PARAM_INVALID),
    RV(CKR_OBJECT_HANDLE_INVALID),
    RV(CKR_OPERATION_ACTIVE),
    RV(CKR_OPERATION_NOT_INITIALIZED),
    RV(CKR_PIN_INCORRECT),
    RV(CKR_PIN_INVALID),
    RV(CKR_PIN_LEN_RANGE),
    RV(CKR_PIN_EXPIRED),
    RV(CKR_PIN_LOCKED),
    RV(CKR_SESSION_CLOSED),
    RV(CKR_SESSION_COUNT),
    RV(CKR_SESSION_HANDLE_INVALID),
    RV(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
    RV(CKR_SESSION_READ_ONLY),
    RV(CKR_SESSION_EXISTS),
    RV(CKR_SESSION_READ_ONLY_EXISTS),
    RV(CKR_SESSION_READ_WRITE_SO_EXISTS),
    RV(CKR_SIGNATURE_INVALID),
    RV(CKR_SIGNATURE_LEN_RANGE),
    RV(CKR_TEMPLATE_INCOMPLETE),
    RV(CKR_TEMPLATE_INCONSISTENT),
    RV(CKR_TOKEN_NOT_PRESENT),
    RV(CKR_TOKEN_NOT_RECOGNIZED),
    RV(CKR_TOKEN_WRITE_PROTECTED),
    RV(CKR_UNWRAPPING_KEY_SIZE_RANGE),
    RV(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
    RV(CKR_USER_ALREADY_LOGGED_IN),
    RV(CKR_USER_NOT_LOGGED_IN),
    RV(CKR_USER_PIN_NOT_INITIALIZED),
    RV(CKR_USER_TYPE_INVALID),
    RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    RV(CKR_USER_TOO_MANY_TYPES),
    RV(CKR_WRAPPED_KEY_INVALID),
    RV(CKR_WRAPPED_KEY_LEN_RANGE),
    RV(CKR_WRAPPING_KEY_HANDLE_INVALID),
    RV(CKR_WRAPPING_KEY_SIZE_RANGE),
    RV(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
    RV(CKR_RANDOM_SEED_NOT_SUPPORTED),
    RV(CKR_RANDOM_NO_RNG),
    RV(CKR_DOMAIN_PARAMS_INVALID),
    RV(CKR_CURVE_NOT_SUPPORTED),
    RV(CKR_BUFFER_TOO_SMALL),
    RV(CKR_SAVED_STATE_INVALID),
    RV(CKR_INFORMATION_SENSITIVE),
    RV(CKR_STATE_UNSAVEABLE),
    RV(CKR_CRYPTOKI_NOT_INITIALIZED),
    RV(CKR_CRYPTOKI_ALREADY_INITIALIZED),
    RV(CKR_MUTEX_BAD),
    RV(CKR_MUTEX_NOT_LOCKED),
    RV(CKR_NEW_PIN_MODE),
    RV(CKR_NEXT_OTP),
    RV(CKR_EXCEEDED_MAX_ITERATIONS),
    RV(CKR_FIPS_SELF_TEST_FAILED),
    RV(CKR_LIBRARY_LOAD_FAILED),
    RV(CKR_PIN_TOO_WEAK),
    RV(CKR_PUBLIC_KEY_INVALID),
    RV(CKR_FUNCTION_REJECTED),
    RV(CKR_VENDOR_DEFINED),
};

#undef RV

static void test_every_constant_has_its_name(void **state)
{
    (void)state;
    assert_int_equal(sizeof(every_rv) / sizeof(every_rv[0]), 94);
    for (size_t i = 0; i < sizeof(every_rv) / sizeof(every_rv[0]); i++) {
        assert_string_equal(p11_rv_name(every_rv[i].rv), every_rv[i].name);
    }
}

static void test_known_names(void **state)
{
    (void)state;
    assert_string_equal(p11_rv_name(CKR_OK), "CKR_OK");
    assert_string_equal(p11_rv_name(0xa0), "CKR_PIN_INCORRECT");
    assert_string_equal(p11_rv_name(0x110), "CKR_WRAPPED_KEY_INVALID");
    assert_string_equal(p11_rv_name(0x5), "CKR_GENERAL_ERROR");
    assert_string_equal(p11_rv_name(0x190), "CKR_CRYPTOKI_NOT_INITIALIZED");
    assert_string_equal(p11_rv_name(0x150), "CKR_BUFFER_TOO_SMALL");
    assert_string_equal(p11_rv_name(0x80000000UL), "CKR_VENDOR_DEFINED");
}

static void test_unknown_names(void **state)
{
    (void)state;
    /* 0x4 and 0x111 fall in gaps of the numbering; 0x1ff is past the last standard one. */
    assert_string_equal(p11_rv_name(0x4), "unknown CK_RV");
    assert_string_equal(p11_rv_name(0x111), "unknown CK_RV");
    assert_string_equal(p11_rv_name(0x1ff), "unknown CK_RV");
    assert_string_equal(p11_rv_name(0x80000001UL), "vendor-defined CK_RV");
    assert_string_equal(p11_rv_name(0xce534351UL), "vendor-defined CK_RV");
}

struct mapping {
    CK_RV rv;
    enum coffer_err normal;
    enum coffer_err integrity;
};

static const struct mapping mappings[] = {
    {CKR_OK, COFFER_OK, COFFER_OK},
    {CKR_HOST_MEMORY, COFFER_E_NOMEM, COFFER_E_NOMEM},
    {CKR_PIN_INCORRECT, COFFER_E_PIN, COFFER_E_PIN},
    {CKR_PIN_INVALID, COFFER_E_PIN, COFFER_E_PIN},
    {CKR_PIN_LEN_RANGE, COFFER_E_PIN, COFFER_E_PIN},
    {CKR_PIN_EXPIRED, COFFER_E_PIN, COFFER_E_PIN},
    {CKR_PIN_LOCKED, COFFER_E_PIN, COFFER_E_PIN},
    {CKR_USER_PIN_NOT_INITIALIZED, COFFER_E_PIN, COFFER_E_PIN},
    {CKR_DEVICE_REMOVED, COFFER_E_TOKEN_UNAVAILABLE, COFFER_E_TOKEN_UNAVAILABLE},
    {CKR_DEVICE_ERROR, COFFER_E_TOKEN_UNAVAILABLE, COFFER_E_TOKEN_UNAVAILABLE},
    {CKR_TOKEN_NOT_PRESENT, COFFER_E_TOKEN_UNAVAILABLE, COFFER_E_TOKEN_UNAVAILABLE},
    {CKR_SESSION_CLOSED, COFFER_E_TOKEN_UNAVAILABLE, COFFER_E_TOKEN_UNAVAILABLE},
    {CKR_SESSION_HANDLE_INVALID, COFFER_E_TOKEN_UNAVAILABLE, COFFER_E_TOKEN_UNAVAILABLE},
    {CKR_CRYPTOKI_NOT_INITIALIZED, COFFER_E_TOKEN_UNAVAILABLE, COFFER_E_TOKEN_UNAVAILABLE},
    /* What SoftHSMv2 says for a bad tag, a corrupt blob or a wrong wrapping key. */
    {CKR_GENERAL_ERROR, COFFER_E_TOKEN, COFFER_E_INTEGRITY},
    {CKR_ENCRYPTED_DATA_INVALID, COFFER_E_TOKEN, COFFER_E_INTEGRITY},
    {CKR_ENCRYPTED_DATA_LEN_RANGE, COFFER_E_TOKEN, COFFER_E_INTEGRITY},
    {CKR_WRAPPED_KEY_INVALID, COFFER_E_TOKEN, COFFER_E_INTEGRITY},
    {CKR_WRAPPED_KEY_LEN_RANGE, COFFER_E_TOKEN, COFFER_E_INTEGRITY},
    /* Failures that are not about the data stay token errors on every path. */
    {CKR_KEY_HANDLE_INVALID, COFFER_E_TOKEN, COFFER_E_TOKEN},
    {CKR_MECHANISM_INVALID, COFFER_E_TOKEN, COFFER_E_TOKEN},
    {CKR_BUFFER_TOO_SMALL, COFFER_E_TOKEN, COFFER_E_TOKEN},
    {CKR_FUNCTION_FAILED, COFFER_E_TOKEN, COFFER_E_TOKEN},
    {CKR_OBJECT_HANDLE_INVALID, COFFER_E_TOKEN, COFFER_E_TOKEN},
    {CKR_USER_NOT_LOGGED_IN, COFFER_E_TOKEN, COFFER_E_TOKEN},
    {CKR_KEY_FUNCTION_NOT_PERMITTED, COFFER_E_TOKEN, COFFER_E_TOKEN},
    {0x4, COFFER_E_TOKEN, COFFER_E_TOKEN},
    {0x80000123UL, COFFER_E_TOKEN, COFFER_E_TOKEN},
};

static void test_err_mapping(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(mappings) / sizeof(mappings[0]); i++) {
        const struct mapping *m = &mappings[i];

        if (p11_rv_err(m->rv, P11_PATH_NORMAL) != m->normal ||
            p11_rv_err(m->rv, P11_PATH_INTEGRITY) != m->integrity) {
            fail_msg("%s (0x%lx): normal %s, integrity %s", p11_rv_name(m->rv),
                     (unsigned long)m->rv, coffer_err_str(p11_rv_err(m->rv, P11_PATH_NORMAL)),
                     coffer_err_str(p11_rv_err(m->rv, P11_PATH_INTEGRITY)));
        }
    }
}

static void test_every_error_is_an_error(void **state)
{
    (void)state;
    /* No CKR_ code other than CKR_OK may ever read as success, on either path. */
    for (size_t i = 0; i < sizeof(every_rv) / sizeof(every_rv[0]); i++) {
        if (every_rv[i].rv == CKR_OK) {
            continue;
        }
        assert_int_not_equal(p11_rv_err(every_rv[i].rv, P11_PATH_NORMAL), COFFER_OK);
        assert_int_not_equal(p11_rv_err(every_rv[i].rv, P11_PATH_INTEGRITY), COFFER_OK);
    }
}

static void test_format(void **state)
{
    char buf[128];
    char small[12];
    size_t n;

    (void)state;
    n = p11_rv_format(buf, sizeof(buf), "C_UnwrapKey", CKR_WRAPPED_KEY_INVALID);
    assert_string_equal(buf, "C_UnwrapKey: CKR_WRAPPED_KEY_INVALID (0x110)");
    assert_int_equal(n, strlen(buf));

    (void)p11_rv_format(buf, sizeof(buf), "C_Login", CKR_PIN_INCORRECT);
    assert_string_equal(buf, "C_Login: CKR_PIN_INCORRECT (0xa0)");

    (void)p11_rv_format(buf, sizeof(buf), "C_Encrypt", 0x4);
    assert_string_equal(buf, "C_Encrypt: unknown CK_RV (0x4)");

    /* A short buffer is cut and terminated; the full length is still reported. */
    n = p11_rv_format(small, sizeof(small), "C_UnwrapKey", CKR_WRAPPED_KEY_INVALID);
    assert_int_equal(n, strlen("C_UnwrapKey: CKR_WRAPPED_KEY_INVALID (0x110)"));
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_string_equal(small, "C_UnwrapKey");
}

static void test_fail_records_detail(void **state)
{
    (void)state;
    coffer_err_clear();
    assert_int_equal(p11_rv_fail("C_Decrypt", CKR_GENERAL_ERROR, P11_PATH_INTEGRITY),
                     COFFER_E_INTEGRITY);
    assert_string_equal(coffer_err_detail(), "C_Decrypt: CKR_GENERAL_ERROR (0x5)");

    assert_int_equal(p11_rv_fail("C_Encrypt", CKR_GENERAL_ERROR, P11_PATH_NORMAL), COFFER_E_TOKEN);
    assert_string_equal(coffer_err_detail(), "C_Encrypt: CKR_GENERAL_ERROR (0x5)");

    assert_int_equal(p11_rv_fail("C_Login", CKR_PIN_INCORRECT, P11_PATH_NORMAL), COFFER_E_PIN);
    assert_string_equal(coffer_err_detail(), "C_Login: CKR_PIN_INCORRECT (0xa0)");

    /* Success records nothing: the earlier detail stays. */
    assert_int_equal(p11_rv_fail("C_Login", CKR_OK, P11_PATH_NORMAL), COFFER_OK);
    assert_string_equal(coffer_err_detail(), "C_Login: CKR_PIN_INCORRECT (0xa0)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_constant_has_its_name),
        cmocka_unit_test(test_known_names),
        cmocka_unit_test(test_unknown_names),
        cmocka_unit_test(test_err_mapping),
        cmocka_unit_test(test_every_error_is_an_error),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_fail_records_detail),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
