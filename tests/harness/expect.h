/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cmocka checks over https.h for the tests that call a real cofferd: a
 * request as a named identity that fails the test when it cannot be made,
 * and one that also fails it unless the answer has the wanted status and
 * text. A failure names the request, the status and the answer's error
 * code, never the answer's body, which may hold a credential's value.
 */
#ifndef COFFER_TEST_EXPECT_H
#define COFFER_TEST_EXPECT_H

#include "https.h"

/*
 * The certificate and key of who for t: "admin", "agent" or "agent2" of
 * t->ids, or the who of one of t->certs; both NULL for who NULL. Fails the
 * test for any other name.
 */
void expect_identity(const struct https_target *t, const char *who, const char **cert,
                     const char **key);

/*
 * One request to t as who (see expect_identity) with an optional JSON body
 * and NULL-terminated extra header lines; fails the test if libcurl could
 * not complete it. The answer is in *out.
 */
void expect_request(const struct https_target *t, const char *method, const char *path,
                    const char *body, const char *who, const char *const *headers,
                    struct https_reply *out);

/*
 * expect_request, then fails the test unless the answer's status is status
 * and its body contains needle. The answer is copied to *out unless out is
 * NULL.
 */
void expect_answer(const struct https_target *t, const char *method, const char *path,
                   const char *body, const char *who, const char *const *headers, long status,
                   const char *needle, struct https_reply *out);

#endif
