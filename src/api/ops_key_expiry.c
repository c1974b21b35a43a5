/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-key expiry in the operations: the checks a put makes of the expiry
 * times it is given for some of its keys, their write inside put's
 * transaction, and, on an access, leaving out of the answer the keys whose
 * own expiry the access load found passed.
 *
 * Whether every key has expired is the access decision's (authz: expired);
 * this file only removes the expired keys of an allowed access, wiping
 * their values with the set they came in. It must never put a value into
 * an error detail, an event or a log line: only key names, which are
 * checked names, go there.
 */
#include "api/ops_int.h"

#include "coffer/mem.h"

#include <stdio.h>
#include <string.h>

/* 9999-12-31T23:59:59Z: the last instant the API's time format can name. */
#define EXPIRY_MAX_US (INT64_C(253402300799) * INT64_C(1000000))

enum coffer_err ops_key_expiry_check(const struct coffer_op_put *p)
{
    if (p->n_key_expiry == 0) {
        return COFFER_OK;
    }
    if (p->key_expiry == NULL || p->n_key_expiry > COFFER_KEYS_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "%zu key expiry times; at most one per key",
                              p->n_key_expiry);
    }
    for (size_t i = 0; i < p->n_key_expiry; i++) {
        const struct coffer_op_key_expiry *k = &p->key_expiry[i];

        /* A name the key set holds is a checked key name; any other is not echoed. */
        if (k->name == NULL || p->keys == NULL || coffer_keyset_get(p->keys, k->name) == NULL) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "key expiry %zu: the name is not one of the keys stored", i);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(p->key_expiry[j].name, k->name) == 0) {
                return coffer_err_set(COFFER_E_INVALID, "key expiry: %s is given twice", k->name);
            }
        }
        if (k->expires_us <= 0 || k->expires_us > EXPIRY_MAX_US) {
            return coffer_err_set(COFFER_E_INVALID, "key expiry of %s: time out of range", k->name);
        }
    }
    return COFFER_OK;
}

enum coffer_err ops_key_expiry_write(struct coffer_ops *o, const struct coffer_op_put *p,
                                     const struct coffer_uuid *org_id,
                                     const struct coffer_uuid *credential_id, uint32_t version,
                                     int64_t issued_us, int64_t expires_us)
{
    const char *names[COFFER_KEYS_MAX];
    int64_t times[COFFER_KEYS_MAX];
    enum coffer_err r;

    if (p->n_key_expiry == 0) {
        return COFFER_OK;
    }
    if ((r = ops_key_expiry_check(p)) != COFFER_OK) {
        return r;
    }
    /* issued_us is the database's time of this write: "in the future" means after it. */
    for (size_t i = 0; i < p->n_key_expiry; i++) {
        const struct coffer_op_key_expiry *k = &p->key_expiry[i];

        if (k->expires_us <= issued_us) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "the expiry time of key %s is not in the future", k->name);
        }
        if (expires_us != COFFER_AUTHZ_NO_EXPIRY && k->expires_us > expires_us) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "the expiry time of key %s is after the credential's own",
                                  k->name);
        }
        names[i] = k->name;
        times[i] = k->expires_us;
    }
    return coffer_store_cred_set_key_expiry(o->st, org_id, credential_id, version, names, times,
                                            p->n_key_expiry);
}

/* The names of list joined by commas, newly allocated; NULL when out of memory. */
static char *join(const char *const *list, size_t n)
{
    size_t len = 0;
    size_t at = 0;
    char *out;

    for (size_t i = 0; i < n; i++) {
        len += strlen(list[i]) + 1;
    }
    if ((out = coffer_calloc(1, len + 1)) == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(list[i]);

        if (i > 0) {
            out[at++] = ',';
        }
        coffer_memcpy(out + at, list[i], k);
        at += k;
    }
    out[at] = '\0';
    return out;
}

enum coffer_err ops_key_expiry_withhold(const struct coffer_store_access *acc,
                                        struct coffer_keyset **keys, char **names)
{
    struct coffer_keyset *kept = NULL;
    size_t n;
    enum coffer_err r;

    *names = NULL;
    if (acc->n_expired_keys == 0) {
        return COFFER_OK;
    }
    n = coffer_keyset_count(*keys);
    if ((r = coffer_keyset_copy_without(*keys, acc->expired_keys, acc->n_expired_keys, &kept)) !=
        COFFER_OK) {
        return r;
    }
    /* The load counted the keys of this very version: every expired one was among them. */
    if (coffer_keyset_count(kept) + acc->n_expired_keys != n || coffer_keyset_count(kept) == 0) {
        r = coffer_err_set(COFFER_E_INTEGRITY,
                           "the expired keys of the version are not among the keys unsealed");
        goto out;
    }
    if ((*names = join(acc->expired_keys, acc->n_expired_keys)) == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "naming %zu expired keys", acc->n_expired_keys);
        goto out;
    }
    coffer_keyset_free(keys);
    *keys = kept;
    kept = NULL;
out:
    coffer_keyset_free(&kept);
    return r;
}

void ops_key_expiry_detail(const char *names, char *out, size_t cap)
{
    /* Room kept for " and 99 more". */
    const size_t tail = 16;
    const char *prefix = "expired keys: ";
    size_t used = 0;
    size_t shown = 0;
    size_t total = 1;
    const char *at = names;
    int n;

    if (cap == 0) {
        return;
    }
    for (const char *q = names; *q != '\0'; q++) {
        total += *q == ',';
    }
    n = snprintf(out, cap, "%s", prefix);
    used = n > 0 ? (size_t)n : 0;
    while (*at != '\0') {
        const char *end = strchr(at, ',');
        size_t len = end != NULL ? (size_t)(end - at) : strlen(at);

        if (used + len + 1 + tail >= cap) {
            break;
        }
        n = snprintf(out + used, cap - used, "%s%.*s", shown > 0 ? "," : "", (int)len, at);
        used += n > 0 ? (size_t)n : 0;
        shown++;
        at = end != NULL ? end + 1 : at + len;
    }
    if (shown < total && used < cap) {
        (void)snprintf(out + used, cap - used, " and %zu more", total - shown);
    }
}
