/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CK_RV translation, private to src/p11/: the name of every CKR_ constant of
 * p11-kit's pkcs11.h, the mapping to enum coffer_err, and the one format of
 * a token failure's detail, "C_UnwrapKey: CKR_WRAPPED_KEY_INVALID (0x110)".
 */
#ifndef COFFER_P11_RV_H
#define COFFER_P11_RV_H

#include <stdbool.h>
#include <stddef.h>

#include <p11-kit/pkcs11.h>

#include "coffer/err.h"

/*
 * Which path a call is on. On P11_PATH_INTEGRITY (decrypt and unwrap) the
 * codes that mean "the data or the key did not authenticate" become
 * COFFER_E_INTEGRITY; SoftHSMv2 reports a bad tag or a wrong wrapping key as
 * CKR_GENERAL_ERROR, so that one is among them.
 */
enum p11_path {
    P11_PATH_NORMAL = 0,
    P11_PATH_INTEGRITY = 1,
};

/*
 * Static name of rv, e.g. "CKR_PIN_INCORRECT". Never NULL: an unknown code
 * gives "unknown CK_RV", one in the vendor range "vendor-defined CK_RV".
 */
const char *p11_rv_name(CK_RV rv);

/* The coffer_err for rv on the given path; COFFER_OK for CKR_OK. */
enum coffer_err p11_rv_err(CK_RV rv, enum p11_path path);

/*
 * Writes "<fn>: <CKR name> (0x<hex>)" into buf (always NUL-terminated when
 * n > 0) and returns the length the full text needs, like snprintf.
 */
size_t p11_rv_format(char *buf, size_t n, const char *fn, CK_RV rv);

/*
 * Records the detail of a failed call fn with p11_rv_format and returns
 * p11_rv_err(rv, path). For rv == CKR_OK it records nothing and returns
 * COFFER_OK.
 */
enum coffer_err p11_rv_fail(const char *fn, CK_RV rv, enum p11_path path);

#endif
