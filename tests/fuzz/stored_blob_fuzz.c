/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the decoders of bytes that Coffer reads back from its database:
 * the credential payload (coffer_keys_payload_decode, what AES-GCM
 * decrypted), and the binary arrays of a credential row as libpq hands
 * them over: the key names (store_col_key_names), a text[] of policy
 * values (store_col_strings), the per-key expiry int8[]
 * (store_col_key_expiry) and the four aligned arrays of standing approvals
 * (store_read_approvals). The rows are built with libpq's own result
 * constructors, so the decoders run exactly as on a query's answer.
 *
 * The first byte picks the decoder, the second a count where one is
 * needed; the rest is the blob, or for the approvals four parts each
 * prefixed by a 16-bit big-endian length. Wrapped keys are not parsed by
 * Coffer (the token unwraps them), so they have no decoder here.
 */
#include "fuzz.h"

#include "coffer/arena.h"
#include "coffer/authz.h"
#include "coffer/keys.h"
#include "coffer/mem.h"
#include "keys/keys_int.h"
#include "store/store_int.h"

#include <stdio.h>

#define OID_INT8_ARRAY 1016u

/* A one-row result of n binary columns of type oids[i] holding parts[i] (NULL for SQL NULL). */
static PGresult *row_of(size_t n, const unsigned int *oids, const uint8_t *const *parts,
                        const size_t *lens)
{
    PGresAttDesc attrs[4];
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);

    if (res == NULL || n > 4) {
        PQclear(res);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        attrs[i] = (PGresAttDesc){
            .name = (char *)"v", .format = 1, .typid = oids[i], .typlen = -1, .atttypmod = -1};
    }
    if (!PQsetResultAttrs(res, (int)n, attrs)) {
        PQclear(res);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!PQsetvalue(res, 0, (int)i, (char *)parts[i], parts[i] == NULL ? -1 : (int)lens[i])) {
            PQclear(res);
            return NULL;
        }
    }
    return res;
}

static void payload(const uint8_t *data, size_t size, size_t n)
{
    char names[COFFER_KEYS_MAX][8];
    char *ptrs[COFFER_KEYS_MAX];
    struct coffer_keyset *ks = NULL;

    for (size_t i = 0; i < n; i++) {
        (void)snprintf(names[i], sizeof(names[i]), "k%zu", i);
        ptrs[i] = names[i];
    }
    if (coffer_keys_payload_decode(data, size, ptrs, n, &ks) == COFFER_OK) {
        coffer_keyset_free(&ks);
    }
}

static void one_column(const uint8_t *data, size_t size, int mode, size_t n)
{
    static const unsigned int oids[] = {STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY, OID_INT8_ARRAY};
    const uint8_t *parts[1] = {data};
    struct coffer_arena *a = NULL;
    PGresult *res = row_of(1, &oids[mode], parts, &size);
    char **names = NULL;
    size_t got = 0;
    const char **strings = NULL;
    const int64_t *expiry = NULL;

    if (res == NULL || coffer_arena_new(0, &a) != COFFER_OK) {
        PQclear(res);
        return;
    }
    switch (mode) {
    case 0:
        if (store_col_key_names(res, 0, 0, "fuzz", &names, &got) == COFFER_OK) {
            for (size_t i = 0; i < got; i++) {
                coffer_free(names[i]);
            }
            coffer_free(names);
        }
        break;
    case 1:
        (void)store_col_strings(res, 0, 0, "fuzz", a, 64, 256, (enum store_text_kind)(n % 3), n & 4,
                                &strings, &got);
        break;
    case 2:
        (void)store_col_key_expiry(res, 0, 0, "fuzz", a, n, &expiry);
        break;
    default:
        break;
    }
    coffer_arena_free(&a);
    PQclear(res);
}

static void approvals(const uint8_t *data, size_t size)
{
    static const unsigned int oids[4] = {STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY, OID_INT8_ARRAY,
                                         OID_INT8_ARRAY};
    const uint8_t *parts[4] = {NULL, NULL, NULL, NULL};
    size_t lens[4] = {0, 0, 0, 0};
    struct coffer_authz_input in = {0};
    struct coffer_arena *a = NULL;
    PGresult *res;

    for (size_t i = 0; i < 4 && size >= 2; i++) {
        size_t len = (size_t)data[0] << 8 | data[1];

        data += 2;
        size -= 2;
        if (len == 0xffff) {
            continue; /* SQL NULL */
        }
        len = len < size ? len : size;
        parts[i] = data;
        lens[i] = len;
        data += len;
        size -= len;
    }
    res = row_of(4, oids, parts, lens);
    if (res == NULL || coffer_arena_new(0, &a) != COFFER_OK) {
        PQclear(res);
        return;
    }
    (void)store_read_approvals(res, 0, 0, a, &in);
    coffer_arena_free(&a);
    PQclear(res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int mode;
    size_t n;

    if (size < 2) {
        return 0;
    }
    mode = data[0] % 5;
    n = data[1] % COFFER_KEYS_MAX + 1;
    data += 2;
    size -= 2;
    switch (mode) {
    case 0:
        payload(data, size, n);
        break;
    case 1:
    case 2:
    case 3:
        one_column(data, size, mode - 1, n);
        break;
    default:
        approvals(data, size);
        break;
    }
    return 0;
}
