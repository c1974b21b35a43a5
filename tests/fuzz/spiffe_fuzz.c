/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes coffer_spiffe_parse, which reads the SPIFFE ID of a client
 * certificate (the principal of every mTLS request). A parsed ID must
 * format back: coffer_spiffe_format of the result is called too.
 */
#include "fuzz.h"

#include "coffer/spiffe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct coffer_principal p;
    char back[512];

    if (coffer_spiffe_parse((const char *)data, size, &p) == COFFER_OK) {
        (void)coffer_spiffe_format(&p, back, sizeof(back));
    }
    return 0;
}
