/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the token URI as cofferd reads it: the bytes, made a C string at
 * the first NUL, go to p11_uri_parse (p11-kit's RFC 7512 parser and the
 * refusal of pin-value) that token selection uses. A URI that parses is
 * matched against a token description, as selection does for each slot.
 */
#include "fuzz.h"

#include "p11/p11_int.h"

#include "coffer/mem.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = coffer_calloc(size + 1, 1);
    P11KitUri *uri = NULL;
    CK_TOKEN_INFO ti;

    if (text == NULL) {
        return 0;
    }
    coffer_memcpy(text, data, size);
    if (p11_uri_parse(text, &uri) == COFFER_OK) {
        memset(&ti, ' ', sizeof(ti));
        coffer_memcpy(ti.label, "coffer-dev", strlen("coffer-dev"));
        (void)p11_kit_uri_match_token_info(uri, &ti);
        p11_kit_uri_free(uri);
    }
    coffer_free(text);
    return 0;
}
