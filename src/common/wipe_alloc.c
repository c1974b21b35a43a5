/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The libraries that see secrets in passing — OpenSSL (TLS records and
 * their buffers), libevent (HTTP bodies in evbuffers), libcurl (brokered
 * calls and token endpoint answers) and jansson (JSON text) — allocate
 * through the wiping functions of mem.c: every block they free is wiped
 * first, so a value that went through a library does not linger in freed
 * memory after the request. libpq is not hooked: it carries ciphertext and
 * metadata only.
 *
 * This must run before any of those libraries allocates: the first thing a
 * program does. It never sees a secret itself.
 */
#include "coffer/mem.h"
#include "coffer/secret.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/crypto.h>

static void *ossl_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return coffer_wipe_malloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return coffer_wipe_realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    coffer_wipe_free(p);
}

enum coffer_err coffer_wipe_libraries(void)
{
    /* OpenSSL refuses once it has allocated: then a library was used too early. */
    if (CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) != 1) {
        return coffer_err_set(COFFER_E_STATE,
                              "OpenSSL allocated before its allocator could be replaced");
    }
    event_set_mem_functions(coffer_wipe_malloc, coffer_wipe_realloc, coffer_wipe_free);
    json_set_alloc_funcs(coffer_wipe_malloc, coffer_wipe_free);
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, coffer_wipe_malloc, coffer_wipe_free,
                             coffer_wipe_realloc, coffer_wipe_strdup,
                             coffer_wipe_calloc) != CURLE_OK) {
        return coffer_err_set(COFFER_E_IO, "libcurl could not be initialised");
    }
    return COFFER_OK;
}
