/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the policy loader: the bytes are one policy file handed to
 * coffer_policy_add_buffer (libyaml, the YAML tree, every rule of
 * docs/policy.md), then coffer_policy_finish and, for a policy that
 * loads, coffer_policy_emit of each org. Everything is freed on every
 * path; a leak is a finding.
 */
#include "fuzz.h"

#include "coffer/buf.h"
#include "coffer/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};

    if (coffer_policy_new(&p) != COFFER_OK) {
        return 0;
    }
    if (coffer_policy_add_buffer(p, "fuzz.yaml", data, size, &d) == COFFER_OK &&
        coffer_policy_finish(p, &d) == COFFER_OK) {
        for (size_t i = 0; i < p->n_orgs; i++) {
            struct coffer_buf out = {0};

            (void)coffer_policy_emit(&p->orgs[i], &out);
            coffer_buf_cleanup(&out);
        }
    }
    coffer_policy_diags_cleanup(&d);
    coffer_policy_free(&p);
    return 0;
}
