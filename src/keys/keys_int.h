/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to keys: the context, the encodings of the envelope (additional
 * data and payload), and the loaders that turn stored key rows into cached
 * token handles.
 */
#ifndef COFFER_KEYS_INT_H
#define COFFER_KEYS_INT_H

#include "coffer/buf.h"
#include "coffer/keys.h"

struct coffer_keys {
    struct coffer_p11 *p11;
    void (*rewrap_hook)(void *);
    void *rewrap_hook_arg;
};

/* Domain separation prefix of the additional data, version 1. */
#define COFFER_AAD_PREFIX "coffer.cred.v1"
/* First byte of an encoded payload. */
#define COFFER_PAYLOAD_FORMAT 1

/*
 * Additional data of one credential version: the prefix, org, project and
 * credential ids, the version and the key names, each length-prefixed so no
 * two different rows share an encoding.
 */
enum coffer_err coffer_keys_aad(const struct coffer_uuid *org, const struct coffer_uuid *project,
                                const struct coffer_uuid *credential, uint32_t version,
                                char *const *names, size_t n_names,
                                struct coffer_buf *out) COFFER_MUST_USE;

/*
 * Encodes the values of ks (in order) into a new secret: format byte, u32
 * count, then each value as u32 length and bytes. The plaintext never leaves
 * locked memory.
 */
enum coffer_err coffer_keys_payload_encode(const struct coffer_keyset *ks,
                                           struct coffer_secret **out) COFFER_MUST_USE;

/*
 * Decodes a payload whose values belong to names (n of them) into a new key
 * set. COFFER_E_INTEGRITY if the encoding is malformed in any way.
 */
enum coffer_err coffer_keys_payload_decode(const unsigned char *p, size_t len, char *const *names,
                                           size_t n, struct coffer_keyset **out) COFFER_MUST_USE;

/* The names of ks, in order (coffer_keyset_count of them); borrowed. */
char *const *coffer_keys_keyset_names(const struct coffer_keyset *ks);

/* Handle of MK version (a cached session copy of the token object). */
enum coffer_err coffer_keys_mk_handle(struct coffer_keys *k, struct coffer_p11_session *s,
                                      struct coffer_store *st, uint32_t version,
                                      coffer_p11_obj *out) COFFER_MUST_USE;

/*
 * Handle of an org key version (unwrapped once per session, cached). A row
 * under an older MK is rewrapped under the current MK on the way.
 */
enum coffer_err coffer_keys_org_key_handle(struct coffer_keys *k, struct coffer_p11_session *s,
                                           struct coffer_store *st,
                                           const struct coffer_uuid *org_id, uint32_t version,
                                           coffer_p11_obj *out) COFFER_MUST_USE;

/*
 * Moves an org key row to the current MK: unwraps it (extractable, briefly),
 * wraps it under current_mk, compare-and-swaps. *won as in the store.
 */
enum coffer_err coffer_keys_org_key_rewrap(struct coffer_keys *k, struct coffer_p11_session *s,
                                           struct coffer_store *st,
                                           const struct coffer_store_org_key *row,
                                           const struct coffer_store_mk *current_mk,
                                           bool *won) COFFER_MUST_USE;

/* Fixed specs of the keys Coffer makes. */
extern const struct coffer_p11_keyspec coffer_keys_spec_org_key_new; /* extractable, wrap/unwrap */
extern const struct coffer_p11_keyspec coffer_keys_spec_org_key_loaded; /* non-extractable */
extern const struct coffer_p11_keyspec coffer_keys_spec_cek_new;        /* extractable, enc/dec */
extern const struct coffer_p11_keyspec coffer_keys_spec_cek_read;       /* non-extractable, dec */
extern const struct coffer_p11_keyspec coffer_keys_spec_cek_rewrap;     /* extractable, dec */

#endif
