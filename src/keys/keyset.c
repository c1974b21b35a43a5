/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Key sets: the named values of one credential version. Names are checked
 * here once, so every encoder and the additional data can rely on them;
 * values live only in struct coffer_secret and are wiped with the set.
 */
#include "keys_int.h"

#include "coffer/mem.h"

#include <string.h>

struct coffer_keyset {
    size_t n;
    size_t cap;
    size_t total; /* sum of value lengths */
    char **names; /* cap entries; the first n in use */
    struct coffer_secret **values;
};

/* Room for one more entry: grows by doubling up to COFFER_KEYS_MAX. */
static enum coffer_err reserve_one(struct coffer_keyset *ks)
{
    size_t cap;
    char **names;
    struct coffer_secret **values;

    if (ks->n < ks->cap) {
        return COFFER_OK;
    }
    cap = ks->cap == 0 ? 4 : ks->cap * 2;
    if (cap > COFFER_KEYS_MAX) {
        cap = COFFER_KEYS_MAX;
    }
    names = coffer_reallocarray(ks->names, cap, sizeof(*names));
    if (names == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "key set of %zu keys", cap);
    }
    ks->names = names;
    values = coffer_reallocarray(ks->values, cap, sizeof(*values));
    if (values == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "key set of %zu keys", cap);
    }
    ks->values = values;
    ks->cap = cap;
    return COFFER_OK;
}

bool coffer_keys_name_valid(const char *name)
{
    size_t i;
    size_t len;

    if (name == NULL) {
        return false;
    }
    len = strlen(name);
    if (len == 0 || len > COFFER_KEY_NAME_MAX) {
        return false;
    }
    for (i = 0; i < len; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');

        if (alnum || c == '_') {
            continue;
        }
        if (i > 0 && (c == '.' || c == '-')) {
            continue;
        }
        return false;
    }
    return true;
}

enum coffer_err coffer_keyset_new(struct coffer_keyset **out)
{
    *out = coffer_calloc(1, sizeof(**out));
    if (*out == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "key set");
    }
    return COFFER_OK;
}

void coffer_keyset_free(struct coffer_keyset **ks)
{
    size_t i;

    if (ks == NULL || *ks == NULL) {
        return;
    }
    for (i = 0; i < (*ks)->n; i++) {
        coffer_free((*ks)->names[i]);
        coffer_secret_free(&(*ks)->values[i]);
    }
    coffer_free((*ks)->names);
    coffer_free((*ks)->values);
    coffer_free(*ks);
    *ks = NULL;
}

static enum coffer_err check_new_entry(const struct coffer_keyset *ks, const char *name, size_t len)
{
    if (!coffer_keys_name_valid(name)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "key name must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}");
    }
    if (coffer_keyset_get(ks, name) != NULL) {
        return coffer_err_set(COFFER_E_EXISTS, "key '%s' appears twice", name);
    }
    if (ks->n == COFFER_KEYS_MAX) {
        return coffer_err_set(COFFER_E_LIMIT, "a credential holds at most %d keys",
                              COFFER_KEYS_MAX);
    }
    if (len > COFFER_VALUE_MAX) {
        return coffer_err_set(COFFER_E_LIMIT, "value of key '%s' is %zu bytes, limit %u", name, len,
                              COFFER_VALUE_MAX);
    }
    if (ks->total + len > COFFER_PAYLOAD_MAX) {
        return coffer_err_set(COFFER_E_LIMIT, "values total more than %u bytes",
                              COFFER_PAYLOAD_MAX);
    }
    return COFFER_OK;
}

enum coffer_err coffer_keyset_add_secret(struct coffer_keyset *ks, const char *name,
                                         struct coffer_secret **value)
{
    size_t len = coffer_secret_len(*value);
    enum coffer_err r;
    char *copy;

    if ((r = check_new_entry(ks, name, len)) != COFFER_OK || (r = reserve_one(ks)) != COFFER_OK) {
        return r;
    }
    copy = coffer_strdup(name);
    if (copy == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "key name");
    }
    ks->names[ks->n] = copy;
    ks->values[ks->n] = *value;
    ks->n++;
    ks->total += len;
    *value = NULL;
    return COFFER_OK;
}

enum coffer_err coffer_keyset_add(struct coffer_keyset *ks, const char *name, const void *value,
                                  size_t len)
{
    struct coffer_secret *s = NULL;
    enum coffer_err r;

    if ((r = check_new_entry(ks, name, len)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_secret_from(value, len, &s)) != COFFER_OK) {
        return r;
    }
    r = coffer_keyset_add_secret(ks, name, &s);
    coffer_secret_free(&s);
    return r;
}

size_t coffer_keyset_count(const struct coffer_keyset *ks)
{
    return ks->n;
}

const char *coffer_keyset_name(const struct coffer_keyset *ks, size_t i)
{
    return i < ks->n ? ks->names[i] : NULL;
}

const struct coffer_secret *coffer_keyset_value(const struct coffer_keyset *ks, size_t i)
{
    return i < ks->n ? ks->values[i] : NULL;
}

const struct coffer_secret *coffer_keyset_get(const struct coffer_keyset *ks, const char *name)
{
    size_t i;

    for (i = 0; i < ks->n; i++) {
        if (strcmp(ks->names[i], name) == 0) {
            return ks->values[i];
        }
    }
    return NULL;
}

char *const *coffer_keys_keyset_names(const struct coffer_keyset *ks)
{
    return ks->names;
}

enum coffer_err coffer_keyset_copy_without(const struct coffer_keyset *ks,
                                           const char *const *leave_out, size_t n,
                                           struct coffer_keyset **out)
{
    struct coffer_keyset *kept = NULL;
    enum coffer_err r;

    *out = NULL;
    if ((r = coffer_keyset_new(&kept)) != COFFER_OK) {
        return r;
    }
    for (size_t i = 0; i < ks->n; i++) {
        struct coffer_secret_view v = coffer_secret_view(ks->values[i]);
        bool left_out = false;

        for (size_t j = 0; j < n && !left_out; j++) {
            left_out = strcmp(ks->names[i], leave_out[j]) == 0;
        }
        if (!left_out && (r = coffer_keyset_add(kept, ks->names[i], v.data, v.len)) != COFFER_OK) {
            coffer_keyset_free(&kept);
            return r;
        }
    }
    *out = kept;
    return COFFER_OK;
}
