/* SPDX-License-Identifier: Apache-2.0 */
/*
 * p11: the only module that calls PKCS#11.
 *
 * It loads the module through p11-kit (a path or a registered module name),
 * selects the token by an RFC 7512 URI, logs in once per process with the user
 * PIN, keeps a pool of sessions for the threads of this process, checks the
 * mechanisms Coffer needs, and turns every CK_RV into a coffer_err with a
 * detail naming the function and the CKR_ constant.
 *
 * p11 hands out object handles and wrapped blobs, never key bytes. A context
 * belongs to the process that opened it: used after fork() every call fails
 * with COFFER_E_FORKED, and the child must open its own.
 *
 * On the decrypt and unwrap paths a failure that means "the data or the key
 * did not authenticate" (SoftHSMv2 reports these as CKR_GENERAL_ERROR) is
 * returned as COFFER_E_INTEGRITY.
 */
#ifndef COFFER_P11_H
#define COFFER_P11_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/err.h"
#include "coffer/secret.h"

struct coffer_p11;
struct coffer_p11_session;

/* An object handle (CK_OBJECT_HANDLE); 0 is never valid. */
typedef unsigned long coffer_p11_obj;

#define COFFER_KCV_LEN 3      /* CKA_CHECK_VALUE of an AES key */
#define COFFER_WRAPPED_MAX 64 /* an AES-256 key wrapped with RFC 5649 is 40 bytes */
#define COFFER_GCM_IV_LEN 12
#define COFFER_GCM_TAG_LEN 16

struct coffer_p11_config {
    const char *module;     /* absolute path of a PKCS#11 library, or a p11-kit module name */
    const char *token_uri;  /* RFC 7512, e.g. "pkcs11:token=coffer-dev" */
    const char *pin_source; /* "file:/path", "env:NAME" or "prompt"; never the PIN itself */
    unsigned pool_size;     /* sessions kept open; 0 means 4 */
};

/* What the token says about itself, for transcripts and errors. */
struct coffer_p11_token_info {
    char label[33];
    char manufacturer[33];
    char model[17];
    char serial[17];
    unsigned long slot;
};

/*
 * Loads the module, finds exactly one token matching the URI, checks that it
 * offers every required mechanism, reads the PIN from cfg->pin_source, logs
 * in, and opens the session pool. The PIN is wiped before return.
 * Returns COFFER_OK, COFFER_E_CONFIG (bad module or URI), COFFER_E_TOKEN_NOT_FOUND
 * (no token or more than one matches), COFFER_E_MECHANISM (detail names each
 * missing mechanism), COFFER_E_PIN, COFFER_E_TOKEN or COFFER_E_NOMEM.
 */
enum coffer_err coffer_p11_open(const struct coffer_p11_config *cfg,
                                struct coffer_p11 **out) COFFER_MUST_USE;

/*
 * Closes every session (destroying session objects), finalizes the module and
 * frees *p, then sets *p to NULL. Must not be called while sessions are leased.
 * After fork() in a child, it frees memory only and leaves the token alone.
 */
void coffer_p11_close(struct coffer_p11 **p);

/*
 * Session objects this context has created in the token (keys generated,
 * unwrapped or copied) since it was opened. SoftHSMv2 2.6 keeps a little
 * memory for every session object ever made, destroyed or not, until the
 * module is finalized; a long-running process closes and reopens its
 * context once this passes its configured pkcs11.renew_objects.
 */
uint64_t coffer_p11_objects_made(struct coffer_p11 *p);

/* Copies the selected token's description into *out. */
void coffer_p11_token_info(const struct coffer_p11 *p, struct coffer_p11_token_info *out);

/*
 * Leases a session for the calling thread, waiting while all are in use.
 * Return it with coffer_p11_session_put. COFFER_E_FORKED after fork().
 */
enum coffer_err coffer_p11_session_get(struct coffer_p11 *p,
                                       struct coffer_p11_session **out) COFFER_MUST_USE;

/* Returns a leased session to the pool and sets *s to NULL. Safe on NULL. */
void coffer_p11_session_put(struct coffer_p11 *p, struct coffer_p11_session **s);

/* ---- Keys ---------------------------------------------------------------- */

/* Allowed uses of a secret key (CKA_WRAP, CKA_UNWRAP, CKA_ENCRYPT, CKA_DECRYPT). */
enum {
    COFFER_P11_WRAP = 1 << 0,
    COFFER_P11_UNWRAP = 1 << 1,
    COFFER_P11_ENCRYPT = 1 << 2,
    COFFER_P11_DECRYPT = 1 << 3,
};

/* How to create an AES-256 key. Every key Coffer makes is CKA_SENSITIVE and CKA_PRIVATE. */
struct coffer_p11_keyspec {
    bool persistent;   /* CKA_TOKEN: a token object that survives the session */
    bool extractable;  /* CKA_EXTRACTABLE: may be wrapped by another key */
    unsigned usage;    /* COFFER_P11_* flags; all others are set FALSE */
    const char *label; /* CKA_LABEL, or NULL for none */
};

/* Attributes as read back from the token. */
struct coffer_p11_attrs {
    bool token, private_, sensitive, always_sensitive, extractable, never_extractable;
    bool wrap, unwrap, encrypt, decrypt;
    bool value_readable; /* true if C_GetAttributeValue(CKA_VALUE) returned bytes */
    unsigned long value_len;
    char label[65];
};

/* Generates an AES-256 key in the token. */
enum coffer_err coffer_p11_generate_aes(struct coffer_p11_session *s,
                                        const struct coffer_p11_keyspec *spec,
                                        coffer_p11_obj *out) COFFER_MUST_USE;

/*
 * Finds the one secret-key token object with this CKA_LABEL.
 * COFFER_E_NOT_FOUND if none, COFFER_E_INTEGRITY if more than one.
 */
enum coffer_err coffer_p11_find_key(struct coffer_p11_session *s, const char *label,
                                    coffer_p11_obj *out) COFFER_MUST_USE;

/* Reads CKA_CHECK_VALUE (3 bytes). COFFER_E_STATE if the token has none for it. */
enum coffer_err coffer_p11_kcv(struct coffer_p11_session *s, coffer_p11_obj key,
                               unsigned char kcv[COFFER_KCV_LEN]) COFFER_MUST_USE;

/* Reads back the security attributes of a key. Never returns key bytes. */
enum coffer_err coffer_p11_attrs(struct coffer_p11_session *s, coffer_p11_obj key,
                                 struct coffer_p11_attrs *out) COFFER_MUST_USE;

/* C_CopyObject with CKA_TOKEN=FALSE: a session copy, still sensitive and non-extractable. */
enum coffer_err coffer_p11_copy_to_session(struct coffer_p11_session *s, coffer_p11_obj key,
                                           coffer_p11_obj *out) COFFER_MUST_USE;

/* C_DestroyObject. Errors are logged, not returned: there is nothing a caller can do. */
void coffer_p11_destroy(struct coffer_p11_session *s, coffer_p11_obj *key);

/*
 * Wraps key under wrapping with CKM_AES_KEY_WRAP_PAD (RFC 5649).
 * out must hold COFFER_WRAPPED_MAX bytes; *out_len receives the length.
 */
enum coffer_err coffer_p11_wrap(struct coffer_p11_session *s, coffer_p11_obj wrapping,
                                coffer_p11_obj key, unsigned char *out,
                                size_t *out_len) COFFER_MUST_USE;

/*
 * Unwraps an AES-256 key with CKM_AES_KEY_WRAP_PAD into a session object with
 * the given spec (spec->persistent must be false). COFFER_E_INTEGRITY if the
 * blob does not authenticate under wrapping.
 */
enum coffer_err coffer_p11_unwrap(struct coffer_p11_session *s, coffer_p11_obj wrapping,
                                  const unsigned char *wrapped, size_t wrapped_len,
                                  const struct coffer_p11_keyspec *spec,
                                  coffer_p11_obj *out) COFFER_MUST_USE;

/*
 * AES-256-GCM encryption inside the token, 128-bit tag.
 * ct must hold pt_len bytes; tag receives the tag.
 */
enum coffer_err coffer_p11_gcm_encrypt(struct coffer_p11_session *s, coffer_p11_obj key,
                                       const unsigned char iv[COFFER_GCM_IV_LEN],
                                       const unsigned char *aad, size_t aad_len,
                                       const unsigned char *pt, size_t pt_len, unsigned char *ct,
                                       unsigned char tag[COFFER_GCM_TAG_LEN]) COFFER_MUST_USE;

/*
 * AES-256-GCM decryption inside the token. On success *out is a new secret
 * holding ct_len bytes of plaintext. COFFER_E_INTEGRITY if the tag does not
 * verify; then *out is NULL and nothing partial is returned.
 */
enum coffer_err coffer_p11_gcm_decrypt(struct coffer_p11_session *s, coffer_p11_obj key,
                                       const unsigned char iv[COFFER_GCM_IV_LEN],
                                       const unsigned char *aad, size_t aad_len,
                                       const unsigned char *ct, size_t ct_len,
                                       const unsigned char tag[COFFER_GCM_TAG_LEN],
                                       struct coffer_secret **out) COFFER_MUST_USE;

/* ---- Per-session handle cache ---------------------------------------------
 * Session objects (org keys unwrapped once, session copies of master keys)
 * are cached per session under a caller-chosen name of at most 95 bytes. The
 * cache owns the handles: an evicted or dropped entry's object is destroyed.
 */

/* Looks up name. COFFER_E_NOT_FOUND if absent. */
enum coffer_err coffer_p11_cache_get(struct coffer_p11_session *s, const char *name,
                                     coffer_p11_obj *out) COFFER_MUST_USE;

/* Stores obj under name, taking ownership; replaces (and destroys) an older entry. */
enum coffer_err coffer_p11_cache_put(struct coffer_p11_session *s, const char *name,
                                     coffer_p11_obj obj) COFFER_MUST_USE;

/* Drops (and destroys) the entry with this name in every session of the pool. */
void coffer_p11_cache_drop(struct coffer_p11 *p, const char *name);

/* ---- PIN and provisioning -------------------------------------------------- */

/*
 * Reads a PIN from "file:/path" (the file must not be readable by group or
 * others; one trailing newline is removed), "env:NAME" or "prompt" (the
 * terminal, echo off). COFFER_E_PIN with a detail saying which source failed.
 */
enum coffer_err coffer_p11_read_pin(const char *source, struct coffer_secret **out) COFFER_MUST_USE;

/*
 * Initialises a fresh token in the first slot without one (C_InitToken, then
 * C_InitPIN), giving it label, SO PIN and user PIN. For the embedded default
 * and the tests; production tokens are initialised by their own tools.
 * The module is loaded, used and finalized within the call.
 */
enum coffer_err coffer_p11_init_token(const char *module, const char *label,
                                      const struct coffer_secret *so_pin,
                                      const struct coffer_secret *user_pin) COFFER_MUST_USE;

/* ---- HMAC keys (digests of bearer tokens) ------------------------------------ */

#define COFFER_HMAC_KEY_LEN 32    /* bytes of a generic secret made for HMAC-SHA256 */
#define COFFER_HMAC_SHA256_LEN 32 /* bytes of an HMAC-SHA256 value */

/* What the token says an HMAC key may do, beyond struct coffer_p11_attrs. */
struct coffer_p11_mac_attrs {
    struct coffer_p11_attrs common;
    bool generic_secret; /* CKA_KEY_TYPE is CKK_GENERIC_SECRET */
    bool sign, verify, derive;
};

/*
 * Generates a persistent 32-byte generic secret (CKM_GENERIC_SECRET_KEY_GEN)
 * labelled label: CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE,
 * CKA_SIGN and CKA_VERIFY and no other use. The caller reads it back with
 * coffer_p11_mac_attrs before trusting it.
 */
enum coffer_err coffer_p11_generate_hmac_key(struct coffer_p11_session *s, const char *label,
                                             coffer_p11_obj *out) COFFER_MUST_USE;

/* Reads back the attributes of an HMAC key. Never returns key bytes. */
enum coffer_err coffer_p11_mac_attrs(struct coffer_p11_session *s, coffer_p11_obj key,
                                     struct coffer_p11_mac_attrs *out) COFFER_MUST_USE;

/*
 * HMAC-SHA256 (CKM_SHA256_HMAC) of the len bytes at data under key, inside
 * the token. COFFER_E_INVALID for a missing key or data, COFFER_E_TOKEN if
 * the token answers with another length; out is zeroed on failure.
 */
enum coffer_err coffer_p11_hmac_sha256(struct coffer_p11_session *s, coffer_p11_obj key,
                                       const void *data, size_t len,
                                       unsigned char out[COFFER_HMAC_SHA256_LEN]) COFFER_MUST_USE;

/* ---- EC key pairs (the audit signing key) ------------------------------------- */

#define COFFER_EC_P256_POINT_LEN 65  /* uncompressed point: 0x04 || X || Y */
#define COFFER_ECDSA_P256_SIG_LEN 64 /* raw r || s, 32 bytes each */
#define COFFER_ECDSA_DIGEST_LEN 32   /* the SHA-256 digest CKM_ECDSA signs */

/*
 * How to create a persistent P-256 key pair. The private key is always
 * CKA_TOKEN, CKA_PRIVATE and CKA_SENSITIVE with CKA_SIGN and no other use;
 * the public key CKA_TOKEN with CKA_VERIFY and no other use. Both objects
 * carry label as CKA_LABEL and as CKA_ID.
 */
struct coffer_p11_ec_spec {
    const char *label; /* 1 to 64 bytes */
    bool extractable;  /* CKA_EXTRACTABLE of the private key; Coffer's own keys are FALSE */
};

/* The two token objects of one key pair. */
struct coffer_p11_ec_pair {
    coffer_p11_obj priv; /* CKO_PRIVATE_KEY */
    coffer_p11_obj pub;  /* CKO_PUBLIC_KEY */
};

/* What the token says about a key pair. Never holds private key bytes. */
struct coffer_p11_ec_attrs {
    struct coffer_p11_attrs common;  /* of the private key (token .. decrypt, label) */
    bool private_key;                /* the private half's CKA_CLASS is CKO_PRIVATE_KEY */
    bool ec;                         /* both halves' CKA_KEY_TYPE is CKK_EC */
    bool p256;                       /* both halves' CKA_EC_PARAMS name prime256v1 */
    bool sign, sign_recover, derive; /* of the private key */
    bool pub_token, pub_verify;      /* of the public key */
    bool pub_other_use; /* the public key may encrypt, wrap, verify-recover or derive */
    bool same_id;       /* both halves carry the same, non-empty CKA_ID */
    char pub_label[65];
    /* The public key's CKA_EC_POINT, unwrapped from its DER OCTET STRING; set when p256. */
    unsigned char point[COFFER_EC_P256_POINT_LEN];
};

/*
 * Generates a P-256 key pair (CKM_EC_KEY_PAIR_GEN) as described by spec.
 * The caller reads it back with coffer_p11_ec_attrs before trusting it.
 * COFFER_E_INVALID for a bad spec; token errors otherwise, *out zeroed.
 */
enum coffer_err coffer_p11_generate_ec_p256(struct coffer_p11_session *s,
                                            const struct coffer_p11_ec_spec *spec,
                                            struct coffer_p11_ec_pair *out) COFFER_MUST_USE;

/*
 * Finds the token objects labelled label: exactly one private key and
 * exactly one public key. COFFER_E_NOT_FOUND if either is missing (the detail
 * says which), COFFER_E_INTEGRITY if either exists more than once.
 */
enum coffer_err coffer_p11_find_ec_pair(struct coffer_p11_session *s, const char *label,
                                        struct coffer_p11_ec_pair *out) COFFER_MUST_USE;

/*
 * Reads back the attributes of both halves of a pair, and the public key's
 * CKA_EC_POINT when its CKA_EC_PARAMS is P-256. COFFER_E_INTEGRITY if that
 * point is not a DER OCTET STRING holding a 65-byte uncompressed point.
 * Never asks for the private key's value.
 */
enum coffer_err coffer_p11_ec_attrs(struct coffer_p11_session *s,
                                    const struct coffer_p11_ec_pair *pair,
                                    struct coffer_p11_ec_attrs *out) COFFER_MUST_USE;

/*
 * ECDSA (CKM_ECDSA) over a 32-byte digest with a P-256 private key, inside the
 * token; sig receives r || s. COFFER_E_INVALID for a missing key or digest,
 * COFFER_E_TOKEN if the token answers with another length; sig is zeroed on
 * failure.
 */
enum coffer_err coffer_p11_ecdsa_sign(struct coffer_p11_session *s, coffer_p11_obj priv,
                                      const unsigned char digest[COFFER_ECDSA_DIGEST_LEN],
                                      unsigned char sig[COFFER_ECDSA_P256_SIG_LEN]) COFFER_MUST_USE;

/*
 * The largest n for which a token object (of any class) is labelled
 * prefix followed by n in decimal (1..INT32_MAX, no leading zero); 0 if
 * there is none. Labels of another shape are ignored. COFFER_E_LIMIT if the
 * token holds more than 100000 objects.
 */
enum coffer_err coffer_p11_label_max_version(struct coffer_p11_session *s, const char *prefix,
                                             uint32_t *out) COFFER_MUST_USE;

/* ---- Destroying persistent objects by label --------------------------------------- */

/*
 * How many token objects (CKA_TOKEN, any class) carry CKA_LABEL label, up to
 * 32 (a larger count reads as 32). COFFER_E_INVALID for a label that is not
 * 1 to 64 bytes; token errors otherwise.
 */
enum coffer_err coffer_p11_count_labelled(struct coffer_p11_session *s, const char *label,
                                          size_t *out) COFFER_MUST_USE;

/*
 * Destroys every token object (CKA_TOKEN, any class) labelled label with
 * C_DestroyObject, then searches again and succeeds only if none is left.
 * No such object at all is success with *destroyed 0. *destroyed (may be
 * NULL) receives how many this call destroyed, also on failure.
 * COFFER_E_INVALID for a bad label, COFFER_E_TOKEN if an object is still
 * there afterwards (the detail says how many) or the token refuses.
 * Session objects (cached copies) are not touched: drop them from the cache.
 */
enum coffer_err coffer_p11_destroy_labelled(struct coffer_p11_session *s, const char *label,
                                            size_t *destroyed) COFFER_MUST_USE;

#endif
