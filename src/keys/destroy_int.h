/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to keys and its tests: the four steps of coffer_keys_org_shred,
 * each idempotent, so that a test can stop between any two of them (as a
 * crash would) and show that running the whole shred again finishes the job.
 * coffer_keys_org_shred is exactly these four in order.
 */
#ifndef COFFER_KEYS_DESTROY_INT_H
#define COFFER_KEYS_DESTROY_INT_H

#include "coffer/keys.h"

/*
 * Step 1: in one transaction under the org's row lock, overwrites the
 * wrapped blob of every org key version of the org that is not destroyed yet
 * with random bytes of the same length and marks it destroyed, then drops
 * the cached handles of those versions in this process. Fills
 * org_key_versions and credential_versions of *rep. COFFER_E_NOT_FOUND if
 * there is no such org.
 */
enum coffer_err coffer_keys_shred_org_keys(struct coffer_keys *k, struct coffer_store *st,
                                           const struct coffer_uuid *org_id,
                                           struct coffer_keys_shred_report *rep) COFFER_MUST_USE;

/*
 * Step 2: makes sure the current master key never wrapped a key of the org:
 * creates a new MK version unless the current one is newer than every MK
 * version that wrapped one. COFFER_E_STATE if step 1 is not done. Fills
 * new_mk_version and new_mk_kcv.
 */
enum coffer_err coffer_keys_shred_new_mk(struct coffer_keys *k, struct coffer_store *st,
                                         const struct coffer_uuid *org_id,
                                         struct coffer_keys_shred_report *rep) COFFER_MUST_USE;

/*
 * Step 3: rewraps under the current MK every org key version (of any org)
 * that is not destroyed and not under it yet. Adds to org_keys_rewrapped. A
 * version that does not unwrap fails the step (COFFER_E_INTEGRITY): the MK
 * that wraps it could not be destroyed without destroying it too.
 */
enum coffer_err coffer_keys_shred_rewrap(struct coffer_keys *k, struct coffer_store *st,
                                         struct coffer_keys_shred_report *rep) COFFER_MUST_USE;

/*
 * Step 4: retires (if still active) and destroys every MK version but the
 * current one. COFFER_E_STATE if step 2 is not done, COFFER_E_REFERENCED if
 * step 3 is not. Fills old_mk_version and old_mk_kcv.
 */
enum coffer_err coffer_keys_shred_old_mks(struct coffer_keys *k, struct coffer_store *st,
                                          const struct coffer_uuid *org_id,
                                          struct coffer_keys_shred_report *rep) COFFER_MUST_USE;

#endif
