/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cmocka checks of end-to-end tests (see expect.h). The only harness
 * file that depends on cmocka. A failure message carries at most the error
 * code of an answer, never its body: an access or a brokered use answers
 * with a credential's value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "expect.h"

#include <stdio.h>
#include <string.h>

void expect_identity(const struct https_target *t, const char *who, const char **cert,
                     const char **key)
{
    *cert = NULL;
    *key = NULL;
    if (who == NULL) {
        return;
    }
    if (t->ids != NULL && https_dev_identity(t->ids, who, cert, key)) {
        return;
    }
    for (size_t i = 0; i < t->n_certs; i++) {
        if (strcmp(who, t->certs[i]->who) == 0) {
            *cert = t->certs[i]->cert;
            *key = t->certs[i]->key;
            return;
        }
    }
    fail_msg("no identity %s", who);
}

void expect_request(const struct https_target *t, const char *method, const char *path,
                    const char *body, const char *who, const char *const *headers,
                    struct https_reply *out)
{
    const char *cert;
    const char *key;
    CURLcode rc;

    expect_identity(t, who, &cert, &key);
    rc = https_request(t, method, path, body, cert, key, headers, out);
    if (rc != CURLE_OK) {
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
    }
}

/* The "error" code of a JSON error answer, only [a-z0-9_], into out ("" when there is none). */
static void error_code(const char *body, char *out, size_t cap)
{
    static const char key[] = "\"error\":\"";
    const char *p = strstr(body, key);
    size_t n = 0;

    out[0] = '\0';
    if (p == NULL) {
        return;
    }
    p += strlen(key);
    while (n + 1 < cap &&
           ((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= '0' && p[n] <= '9') || p[n] == '_')) {
        out[n] = p[n];
        n++;
    }
    out[n] = '\0';
}

void expect_answer(const struct https_target *t, const char *method, const char *path,
                   const char *body, const char *who, const char *const *headers, long status,
                   const char *needle, struct https_reply *out)
{
    static struct https_reply r;
    char code[48];

    expect_request(t, method, path, body, who, headers, &r);
    if (r.status != status || strstr(r.body, needle) == NULL) {
        error_code(r.body, code, sizeof(code));
        fail_msg("%s %s as %s: %ld, error '%s' (want %ld with '%s')", method, path,
                 who != NULL ? who : "nobody", r.status, code, status, needle);
    }
    if (out != NULL) {
        *out = r;
    }
}
