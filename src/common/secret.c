/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Secret buffers and process hardening. The only definition of
 * struct coffer_secret.
 *
 * Secret bytes live in OpenSSL's secure heap: one mlock'ed arena, excluded
 * from core dumps (MADV_DONTDUMP) and fenced by guard pages. If the arena
 * cannot be set up (RLIMIT_MEMLOCK too small) or is full, a secret gets its
 * own anonymous mapping, locked when the kernel allows and always excluded
 * from dumps. Every release wipes with OPENSSL_cleanse, which the compiler
 * cannot elide. This file never prints, logs or formats secret bytes.
 */
#include "coffer/secret.h"

#include "coffer/log.h"
#include "coffer/mem.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

/* Size of the secure arena: holds many concurrent 64 KiB credential payloads. */
#define SECURE_HEAP_SIZE (16u * 1024u * 1024u)
#define SECURE_HEAP_MIN 64u

struct coffer_secret {
    unsigned char *data;
    size_t len;  /* visible length */
    size_t cap;  /* bytes allocated at data (>= 1) */
    bool mapped; /* own mmap rather than the secure heap */
};

static pthread_once_t heap_once = PTHREAD_ONCE_INIT;
static bool heap_ready;

static void heap_init(void)
{
    heap_ready = CRYPTO_secure_malloc_init(SECURE_HEAP_SIZE, SECURE_HEAP_MIN) == 1;
}

enum coffer_err coffer_harden_process(void)
{
    struct rlimit none = {0, 0};

    if (setrlimit(RLIMIT_CORE, &none) != 0) {
        return coffer_err_set(COFFER_E_IO, "setrlimit(RLIMIT_CORE): %s", strerror(errno));
    }
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        return coffer_err_set(COFFER_E_IO, "prctl(PR_SET_DUMPABLE): %s", strerror(errno));
    }
    pthread_once(&heap_once, heap_init);
    if (!heap_ready) {
        coffer_warn("secret", "secure heap unavailable (RLIMIT_MEMLOCK?); secrets use "
                              "per-buffer mappings");
    }
    return COFFER_OK;
}

static enum coffer_err map_buffer(struct coffer_secret *s, size_t want)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t psz = page > 0 ? (size_t)page : 4096u;
    size_t cap = (want + psz - 1) / psz * psz;
    void *p;

    p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return coffer_err_set(COFFER_E_NOMEM, "mmap of %zu bytes for a secret failed", cap);
    }
    (void)madvise(p, cap, MADV_DONTDUMP);
    /* Locking may be refused without CAP_IPC_LOCK; dumps stay excluded regardless. */
    (void)mlock(p, cap);
    s->data = p;
    s->cap = cap;
    s->mapped = true;
    return COFFER_OK;
}

enum coffer_err coffer_secret_new(size_t len, struct coffer_secret **out)
{
    struct coffer_secret *s;
    size_t want = len == 0 ? 1 : len;
    enum coffer_err r;

    *out = NULL;
    if (len > COFFER_SECRET_MAX) {
        return coffer_err_set(COFFER_E_LIMIT, "secret of %zu bytes exceeds the %u-byte limit", len,
                              COFFER_SECRET_MAX);
    }
    pthread_once(&heap_once, heap_init);
    s = coffer_calloc(1, sizeof(*s));
    if (s == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "secret header");
    }
    if (heap_ready) {
        s->data = OPENSSL_secure_zalloc(want);
        s->cap = want;
    }
    if (s->data == NULL) {
        if ((r = map_buffer(s, want)) != COFFER_OK) {
            coffer_free(s);
            return r;
        }
    }
    s->len = len;
    *out = s;
    return COFFER_OK;
}

enum coffer_err coffer_secret_from(const void *src, size_t len, struct coffer_secret **out)
{
    enum coffer_err r;

    if ((r = coffer_secret_new(len, out)) != COFFER_OK) {
        return r;
    }
    coffer_memcpy((*out)->data, src, len);
    return COFFER_OK;
}

enum coffer_err coffer_secret_truncate(struct coffer_secret *s, size_t len)
{
    if (len > s->len) {
        return coffer_err_set(COFFER_E_INVALID, "cannot grow a secret by truncation");
    }
    OPENSSL_cleanse(s->data + len, s->len - len);
    s->len = len;
    return COFFER_OK;
}

void coffer_secret_free(struct coffer_secret **sp)
{
    struct coffer_secret *s;

    if (sp == NULL || *sp == NULL) {
        return;
    }
    s = *sp;
    OPENSSL_cleanse(s->data, s->cap);
    if (s->mapped) {
        (void)munlock(s->data, s->cap);
        (void)munmap(s->data, s->cap);
    } else {
        OPENSSL_secure_clear_free(s->data, s->cap);
    }
    coffer_free(s);
    *sp = NULL;
}

struct coffer_secret_view coffer_secret_view(const struct coffer_secret *s)
{
    struct coffer_secret_view v = {s->data, s->len};

    return v;
}

size_t coffer_secret_len(const struct coffer_secret *s)
{
    return s->len;
}

bool coffer_secret_equal(const struct coffer_secret *a, const struct coffer_secret *b)
{
    if (a->len != b->len) {
        return false;
    }
    return coffer_ct_equal(a->data, b->data, a->len);
}

void coffer_wipe(void *p, size_t len)
{
    if (p != NULL && len > 0) {
        OPENSSL_cleanse(p, len);
    }
}
