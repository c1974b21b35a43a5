/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes coffer_policy_usage_from_json, which reads a rule's usage spec
 * back from its database column. A spec that reads must write back
 * (coffer_policy_usage_json) and read again to the same bytes: the column
 * is canonical, so a difference is a finding.
 */
#include "fuzz.h"

#include "coffer/arena.h"
#include "coffer/buf.h"
#include "coffer/mem.h"
#include "coffer/policy.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct coffer_arena *a = NULL;
    const struct coffer_policy_usage *u = NULL;
    const struct coffer_policy_usage *again = NULL;
    struct coffer_buf one = {0};
    struct coffer_buf two = {0};

    if (coffer_arena_new(0, &a) != COFFER_OK) {
        return 0;
    }
    if (coffer_policy_usage_from_json(a, (const char *)data, size, &u) == COFFER_OK &&
        coffer_policy_usage_json(u, &one) == COFFER_OK) {
        if (coffer_policy_usage_from_json(a, (const char *)one.data, one.len, &again) !=
                COFFER_OK ||
            coffer_policy_usage_json(again, &two) != COFFER_OK || one.len != two.len ||
            !coffer_mem_equal(one.data, two.data, one.len)) {
            abort();
        }
    }
    coffer_buf_cleanup(&one);
    coffer_buf_cleanup(&two);
    coffer_arena_free(&a);
    return 0;
}
