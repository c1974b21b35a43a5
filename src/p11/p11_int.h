/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The inside of a PKCS#11 context, shared by the files of src/p11/ and by
 * nothing else: the loaded module's function list, the selected slot, the
 * session pool with its lock, and each session's handle cache.
 *
 * Locking: p->lock guards every session's `leased` flag and its cache's
 * pending-drop list. A session's cache entries are touched only by the
 * thread that leases the session, or, while the session is idle in the pool,
 * by a thread holding p->lock (coffer_p11_cache_drop). So no cache needs a
 * lock of its own, and a thread that drops a name while it holds a lease
 * itself can never wait for itself.
 */
#ifndef COFFER_P11_INT_H
#define COFFER_P11_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "coffer/p11.h"
#include "p11/rv.h"

#define P11_POOL_DEFAULT 4u
#define P11_POOL_MAX 64u
#define P11_CACHE_CAP 2048u   /* org keys a session keeps: a server's orgs, with room to spare */
#define P11_CACHE_SLOTS 4096u /* the index by name: twice the entries, a power of two */
#define P11_CACHE_NAME_MAX 95u
#define P11_PENDING_MAX 16u
#define P11_PIN_MAX 256u
#define P11_LABEL_MAX 64u

struct p11_cache_entry {
    char name[P11_CACHE_NAME_MAX + 1];
    coffer_p11_obj obj; /* 0: the slot is empty */
    uint64_t stamp;     /* last use, for LRU eviction */
};

struct p11_cache {
    struct p11_cache_entry entries[P11_CACHE_CAP];
    /* Entry number + 1 of each name, at its hash, linear probing; 0: an empty slot. */
    uint16_t index[P11_CACHE_SLOTS];
    uint64_t clock;
    /* Names dropped while the session was leased; guarded by the pool lock. */
    char pending[P11_PENDING_MAX][P11_CACHE_NAME_MAX + 1];
    unsigned n_pending;
    bool pending_all; /* the pending list overflowed: purge every entry */
};

struct coffer_p11_session {
    struct coffer_p11 *owner;
    CK_SESSION_HANDLE handle;
    bool open;   /* handle is a live session */
    bool leased; /* guarded by owner->lock */
    struct p11_cache cache;
};

struct coffer_p11 {
    CK_FUNCTION_LIST *fn;
    bool module_held; /* a p11_module_acquire to release at close */
    pid_t pid;        /* the process that opened the context */
    CK_SLOT_ID slot;
    struct coffer_p11_token_info info;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    bool sync_ready; /* lock and freed are initialised */
    struct coffer_p11_session *sessions;
    unsigned n_sessions;
    atomic_uint_fast64_t objects_made; /* session objects created (coffer_p11_objects_made) */
};

/*
 * Loads module (an absolute path, or a p11-kit registered module name) and
 * makes sure it is initialised once in this process, with OS locking, no
 * matter how many contexts use it. Pair every success with p11_module_release.
 * COFFER_E_CONFIG if the module cannot be loaded, or the C_Initialize error.
 */
enum coffer_err p11_module_acquire(const char *module, CK_FUNCTION_LIST **out) COFFER_MUST_USE;

/*
 * Drops one use of fn; the last one in this process finalizes the module.
 * In a forked child it does nothing: the module belongs to the parent's
 * initialisation and must not be finalized or unloaded from here.
 */
void p11_module_release(CK_FUNCTION_LIST *fn);

/* True if fn is used by exactly one context of this process. */
bool p11_module_sole_user(CK_FUNCTION_LIST *fn);

/* COFFER_E_FORKED if p was opened by another process than the caller. */
enum coffer_err p11_check_fork(const struct coffer_p11 *p) COFFER_MUST_USE;

/* COFFER_E_INVALID for a NULL session, COFFER_E_FORKED after fork. */
enum coffer_err p11_check_session(const struct coffer_p11_session *s) COFFER_MUST_USE;

/*
 * Closes and reopens s's PKCS#11 session, used when an operation could not be
 * brought to an end any other way. Session objects of the old session are
 * gone, so the cache forgets its entries without destroying them.
 */
enum coffer_err p11_session_reset(struct coffer_p11_session *s) COFFER_MUST_USE;

/*
 * Parses a token URI (RFC 7512) into a new *out (p11_kit_uri_free it).
 * COFFER_E_CONFIG if uri_text is empty, not a PKCS#11 URI, or carries
 * pin-value (a PIN belongs in a PIN source; the detail never repeats such a
 * URI); COFFER_E_NOMEM. *out is NULL on error.
 */
enum coffer_err p11_uri_parse(const char *uri_text, P11KitUri **out) COFFER_MUST_USE;

/*
 * The slots with a token present, as a new array (coffer_free it) of *out_n
 * entries. Errors as p11_rv_fail for C_GetSlotList, or COFFER_E_NOMEM.
 */
enum coffer_err p11_list_slots(CK_FUNCTION_LIST *fn, CK_SLOT_ID **out,
                               CK_ULONG *out_n) COFFER_MUST_USE;

/*
 * Reads one boolean attribute on its own, so that a token that does not know
 * one of them does not hide the others. An attribute the token does not
 * have, or keeps sensitive, reads as false.
 */
enum coffer_err p11_attr_bool(struct coffer_p11_session *s, coffer_p11_obj obj,
                              CK_ATTRIBUTE_TYPE type, const char *name, bool *out) COFFER_MUST_USE;

/* Reads a CK_ULONG attribute (CKA_CLASS, CKA_KEY_TYPE) that the object must have. */
enum coffer_err p11_attr_ulong(struct coffer_p11_session *s, coffer_p11_obj obj,
                               CK_ATTRIBUTE_TYPE type, const char *name,
                               CK_ULONG *out) COFFER_MUST_USE;

/* Copies a space-padded token field into a NUL-terminated string without the padding. */
void p11_trim_field(char *dst, size_t dst_size, const unsigned char *src, size_t src_len);

/* Cache internals called by the pool (cache.c). */

/* Empties a fresh cache. */
void p11_cache_init(struct p11_cache *c);

/* Applies s's pending drops. Caller holds s->owner->lock and owns s's use. */
void p11_cache_purge_pending_locked(struct coffer_p11_session *s);

/* Destroys the entry with this name, if any. Caller owns s's use. */
void p11_cache_remove(struct coffer_p11_session *s, const char *name);

/* Forgets every entry without destroying (the session that held them is closed). */
void p11_cache_forget_all(struct p11_cache *c);

#endif
