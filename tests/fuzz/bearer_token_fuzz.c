/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes what a bearer token's request passes through before any lookup:
 * the bytes as an Authorization header value (coffer_token_from_header),
 * as a token (coffer_token_format_ok) and as a token's principal
 * ("agent/<type>/<instance>" or "admin/<name>", coffer_token_principal_parse),
 * which must format back when it parses.
 */
#include "fuzz.h"

#include "coffer/ops.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *token = NULL;
    struct coffer_principal p;
    char back[256];

    if (coffer_token_from_header(s, size, &token)) {
        /* The token points into the value and passed the format check itself. */
        if (token < s || token > s + size ||
            !coffer_token_format_ok(token, size - (size_t)(token - s))) {
            abort();
        }
    }
    (void)coffer_token_format_ok(s, size);
    if (coffer_token_principal_parse(s, size, "fuzz", &p) == COFFER_OK) {
        coffer_token_principal_format(&p, back, sizeof(back));
    }
    return 0;
}
