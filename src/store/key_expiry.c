/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-key expiry of a credential version (sql/007_key_expiry.sql): the
 * setter that the put of a version runs in its own transaction, and the
 * reader of the aligned expiry array that the metadata load uses. The
 * access load reads which keys have expired in its own query (access.c),
 * judged by the database's clock there.
 *
 * An expiry is metadata, never a value: nothing here reads a ciphertext or
 * a wrapped key. The setter fills only a version whose keys have no expiry
 * yet, so a stored expiry is never moved afterwards.
 */
#include "coffer/store.h"

#include "coffer/authz.h"
#include "coffer/buf.h"
#include "coffer/mem.h"

#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "store/store_int.h"

#define OID_INT8_ARRAY 1016u
/* 9999-12-31T23:59:59Z: the last instant the API's time format can name. */
#define EXPIRY_MAX_US (INT64_C(253402300799) * INT64_C(1000000))

/*
 * Builds the aligned array from the version's own key_names, so the order
 * is the stored one whatever order the names came in; a key not named gets
 * NULL. "$4 <@ key_names" makes a name that is not a key of the version
 * change nothing, and the caller reports it.
 */
static const struct store_stmt key_expiry_set = {
    .name = "coffer_cred_key_expiry_set",
    .sql = "UPDATE coffer.credential_versions v SET key_expires_at = ARRAY("
           "SELECT CASE WHEN x.us IS NULL THEN NULL "
           "ELSE timestamptz 'epoch' + x.us * interval '1 microsecond' END "
           "FROM unnest(v.key_names) WITH ORDINALITY AS k(name, i) "
           "LEFT JOIN unnest($4::text[], $5::int8[]) AS x(name, us) ON x.name = k.name "
           "ORDER BY k.i) "
           "WHERE v.org_id = $1 AND v.credential_id = $2 AND v.version = $3 "
           "AND v.key_expires_at IS NULL AND $4::text[] <@ v.key_names",
    .nparams = 5,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_INT4, STORE_OID_TEXT_ARRAY, OID_INT8_ARRAY},
};

const struct store_stmt *const store_stmts_key_expiry[] = {&key_expiry_set, NULL};

static enum coffer_err check_input(uint32_t version, const char *const *names,
                                   const int64_t *expires_us, size_t n)
{
    enum coffer_err r;

    if ((r = store_check_version(version, "credential version")) != COFFER_OK) {
        return r;
    }
    if (n == 0 || n > COFFER_KEYS_MAX || names == NULL || expires_us == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "key expiry: %zu keys, want 1..%d", n,
                              COFFER_KEYS_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        if (names[i] == NULL ||
            !store_key_name_ok(names[i], strnlen(names[i], COFFER_KEY_NAME_MAX + 1))) {
            return coffer_err_set(COFFER_E_INVALID, "key expiry %zu: not a key name", i);
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(names[k], names[i]) == 0) {
                return coffer_err_set(COFFER_E_INVALID, "key expiry: key %s is given twice",
                                      names[i]);
            }
        }
        if (expires_us[i] <= 0 || expires_us[i] > EXPIRY_MAX_US) {
            return coffer_err_set(COFFER_E_INVALID, "key expiry of %s: time out of range",
                                  names[i]);
        }
    }
    return COFFER_OK;
}

enum coffer_err coffer_store_cred_set_key_expiry(struct coffer_store *s,
                                                 const struct coffer_uuid *org_id,
                                                 const struct coffer_uuid *credential_id,
                                                 uint32_t version, const char *const *names,
                                                 const int64_t *expires_us, size_t n)
{
    unsigned char be[COFFER_KEYS_MAX][8];
    const void *elems[COFFER_KEYS_MAX];
    size_t lens[COFFER_KEYS_MAX];
    struct coffer_buf cols[2] = {{0}};
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;
    long changed;

    if (s == NULL || org_id == NULL || credential_id == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "key expiry: missing store or credential");
    }
    if ((r = store_require_tx(s, "setting key expiry")) != COFFER_OK ||
        (r = check_input(version, names, expires_us, n)) != COFFER_OK) {
        return r;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t v = (uint64_t)expires_us[i];

        for (int b = 0; b < 8; b++) {
            be[i][b] = (unsigned char)(v >> (56 - 8 * b));
        }
        elems[i] = be[i];
        lens[i] = 8;
    }
    if ((r = store_encode_strings(names, n, &cols[0])) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_INT8, n, elems, lens, &cols[1])) != COFFER_OK) {
        goto out;
    }
    store_param_uuid(&p, org_id);
    store_param_uuid(&p, credential_id);
    store_param_int4(&p, (int32_t)version);
    store_param_binary(&p, cols[0].data, cols[0].len);
    store_param_binary(&p, cols[1].data, cols[1].len);
    if ((r = store_exec(s, &key_expiry_set, &p, "setting key expiry", &res)) != COFFER_OK) {
        goto out;
    }
    changed = store_affected(res);
    if (changed != 1) {
        r = coffer_err_set(COFFER_E_NOT_FOUND,
                           "key expiry: no version %" PRIu32
                           " of this credential holds every key named and no expiry yet",
                           version);
    }
out:
    PQclear(res);
    coffer_buf_cleanup(&cols[0]);
    coffer_buf_cleanup(&cols[1]);
    return r;
}

enum coffer_err store_col_key_expiry(const PGresult *res, int row, int col, const char *where,
                                     struct coffer_arena *a, size_t n_keys, const int64_t **out)
{
    const unsigned char *p;
    const unsigned char *e;
    size_t len;
    struct coffer_cursor c;
    uint32_t ndim = 0;
    uint32_t flags = 0;
    uint32_t elemtype = 0;
    uint32_t count = 0;
    uint32_t lbound = 0;
    int64_t *v;
    enum coffer_err r;

    *out = NULL;
    if ((r = store_col_raw(res, row, col, where, OID_INT8_ARRAY, &p, &len)) != COFFER_OK ||
        p == NULL) {
        return r;
    }
    c = coffer_cursor_init(p, len);
    if (coffer_cursor_u32(&c, &ndim) != COFFER_OK || coffer_cursor_u32(&c, &flags) != COFFER_OK ||
        coffer_cursor_u32(&c, &elemtype) != COFFER_OK || elemtype != STORE_OID_INT8 || flags > 1 ||
        ndim != 1 || coffer_cursor_u32(&c, &count) != COFFER_OK ||
        coffer_cursor_u32(&c, &lbound) != COFFER_OK || lbound != 1 || count != n_keys) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "%s: want a one-dimensional int8 array of %zu elements", where,
                              n_keys);
    }
    if ((v = coffer_arena_alloc(a, n_keys, sizeof(*v))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "%s: %zu elements", where, n_keys);
    }
    for (uint32_t i = 0; i < count; i++) {
        uint32_t elen = 0;
        uint64_t x = 0;

        if (coffer_cursor_u32(&c, &elen) != COFFER_OK) {
            return coffer_err_set(COFFER_E_INTEGRITY, "%s: element %" PRIu32 " is cut short", where,
                                  i);
        }
        if (elen == UINT32_MAX) {
            v[i] = COFFER_AUTHZ_NO_EXPIRY; /* SQL NULL: this key has no expiry of its own */
            continue;
        }
        if (elen != 8 || coffer_cursor_bytes(&c, 8, &e) != COFFER_OK) {
            return coffer_err_set(COFFER_E_INTEGRITY, "%s: element %" PRIu32 " is not an int8",
                                  where, i);
        }
        for (int b = 0; b < 8; b++) {
            x = x << 8 | e[b];
        }
        v[i] = (int64_t)x;
        if (v[i] <= 0 || v[i] > EXPIRY_MAX_US) {
            return coffer_err_set(COFFER_E_INTEGRITY, "%s: element %" PRIu32 " is out of range",
                                  where, i);
        }
    }
    if (coffer_cursor_end(&c) != COFFER_OK) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: bytes after the array", where);
    }
    *out = v;
    return COFFER_OK;
}
