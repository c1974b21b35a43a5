/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes cofferd's configuration loader: the bytes are one configuration
 * file handed to coffer_config_load_buffer (the same path coffer_config_load
 * takes once it has read the file), with relative paths resolved against a
 * fixed directory. The loader only reads; it opens no file named in it.
 */
#include "fuzz.h"

#include "coffer/config.h"

#include "coffer/mem.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct coffer_config *c = coffer_calloc(1, sizeof(*c));
    struct coffer_policy_diags d = {0};

    if (c == NULL) {
        return 0;
    }
    (void)coffer_config_load_buffer("fuzz.yaml", "/etc/coffer", data, size, c, &d);
    coffer_policy_diags_cleanup(&d);
    coffer_free(c);
    return 0;
}
