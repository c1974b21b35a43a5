/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The per-session handle cache: session objects (org keys unwrapped once,
 * session copies of master keys) kept under a caller-chosen name, at most
 * P11_CACHE_CAP per session, least recently used evicted first. The cache
 * owns its handles: every entry that leaves it, by replacement, eviction or
 * drop, has its object destroyed, so a dropped key does not linger in the
 * token. It never destroys an object it does not hold. Names are found
 * through an index by hash, so that a lookup costs the same with one org
 * key cached or two thousand; the index is rebuilt whenever an entry leaves.
 *
 * A handle returned by coffer_p11_cache_get stays valid until the next
 * cache call on the same session or until the session goes back to the pool:
 * those are the only points where this lessee's entries are destroyed.
 *
 * Dropping a name must reach every session of the pool, including sessions
 * leased by other threads at that moment, which this thread must not touch.
 * So coffer_p11_cache_drop, under the pool lock, destroys the entry at once
 * in idle sessions and leaves the name on a pending list for leased ones;
 * the lessee applies the list at its next cache call and when it returns
 * the session. A dropped name is therefore never served again after
 * coffer_p11_cache_drop returns.
 */
#include "p11/p11_int.h"

#include <string.h>

#include "coffer/log.h"
#include "coffer/mem.h"

void p11_cache_init(struct p11_cache *c)
{
    memset(c, 0, sizeof(*c));
}

_Static_assert(P11_CACHE_CAP <= UINT16_MAX && P11_CACHE_SLOTS >= 2 * P11_CACHE_CAP &&
                   (P11_CACHE_SLOTS & (P11_CACHE_SLOTS - 1)) == 0,
               "the cache index holds entry numbers + 1 in a power-of-two table");

void p11_cache_forget_all(struct p11_cache *c)
{
    memset(c->entries, 0, sizeof(c->entries));
    memset(c->index, 0, sizeof(c->index));
    c->n_pending = 0;
    c->pending_all = false;
}

static bool name_ok(const char *name)
{
    return name != NULL && name[0] != '\0' &&
           strnlen(name, P11_CACHE_NAME_MAX + 1) <= P11_CACHE_NAME_MAX;
}

/* FNV-1a: the names are Coffer's own (key labels), not chosen by clients. */
static size_t slot_of(const char *name)
{
    uint32_t h = 2166136261u;

    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        h = (h ^ *p) * 16777619u;
    }
    return h & (P11_CACHE_SLOTS - 1);
}

static void index_add(struct p11_cache *c, size_t entry)
{
    size_t i = slot_of(c->entries[entry].name);

    while (c->index[i] != 0) {
        i = (i + 1) & (P11_CACHE_SLOTS - 1);
    }
    c->index[i] = (uint16_t)(entry + 1);
}

static void index_rebuild(struct p11_cache *c)
{
    memset(c->index, 0, sizeof(c->index));
    for (size_t i = 0; i < P11_CACHE_CAP; i++) {
        if (c->entries[i].obj != 0) {
            index_add(c, i);
        }
    }
}

static struct p11_cache_entry *find_entry(struct p11_cache *c, const char *name)
{
    /* At most half the slots are used, so the probe ends at an empty one. */
    for (size_t i = slot_of(name); c->index[i] != 0; i = (i + 1) & (P11_CACHE_SLOTS - 1)) {
        struct p11_cache_entry *e = &c->entries[c->index[i] - 1];

        if (e->obj != 0 && strcmp(e->name, name) == 0) {
            return e;
        }
    }
    return NULL;
}

/* Destroys an entry's object and empties it; the caller rebuilds the index. */
static void destroy_entry(struct coffer_p11_session *s, struct p11_cache_entry *e)
{
    coffer_p11_obj obj = e->obj;

    coffer_p11_destroy(s, &obj);
    memset(e, 0, sizeof(*e));
}

void p11_cache_remove(struct coffer_p11_session *s, const char *name)
{
    struct p11_cache_entry *e = find_entry(&s->cache, name);

    if (e != NULL) {
        destroy_entry(s, e);
        index_rebuild(&s->cache);
    }
}

void p11_cache_purge_pending_locked(struct coffer_p11_session *s)
{
    struct p11_cache *c = &s->cache;

    if (c->pending_all) {
        for (size_t i = 0; i < P11_CACHE_CAP; i++) {
            if (c->entries[i].obj != 0) {
                destroy_entry(s, &c->entries[i]);
            }
        }
        memset(c->index, 0, sizeof(c->index));
    } else {
        for (unsigned i = 0; i < c->n_pending; i++) {
            p11_cache_remove(s, c->pending[i]);
        }
    }
    memset(c->pending, 0, sizeof(c->pending));
    c->n_pending = 0;
    c->pending_all = false;
}

static void apply_pending(struct coffer_p11_session *s)
{
    pthread_mutex_lock(&s->owner->lock);
    p11_cache_purge_pending_locked(s);
    pthread_mutex_unlock(&s->owner->lock);
}

static enum coffer_err check_args(const struct coffer_p11_session *s, const char *name)
{
    enum coffer_err rc;

    if ((rc = p11_check_session(s)) != COFFER_OK) {
        return rc;
    }
    if (!name_ok(name)) {
        return coffer_err_set(COFFER_E_INVALID, "cache name must be 1 to %u bytes",
                              P11_CACHE_NAME_MAX);
    }
    return COFFER_OK;
}

enum coffer_err coffer_p11_cache_get(struct coffer_p11_session *s, const char *name,
                                     coffer_p11_obj *out)
{
    struct p11_cache_entry *e;
    enum coffer_err rc;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_cache_get: no output");
    }
    *out = 0;
    if ((rc = check_args(s, name)) != COFFER_OK) {
        return rc;
    }
    apply_pending(s);
    e = find_entry(&s->cache, name);
    if (e == NULL) {
        return coffer_err_set(COFFER_E_NOT_FOUND, "no cached object named '%s'", name);
    }
    e->stamp = ++s->cache.clock;
    *out = e->obj;
    return COFFER_OK;
}

/* An empty slot, or the least recently used entry after destroying its object. */
static struct p11_cache_entry *free_slot(struct coffer_p11_session *s)
{
    struct p11_cache_entry *oldest = NULL;

    for (size_t i = 0; i < P11_CACHE_CAP; i++) {
        struct p11_cache_entry *e = &s->cache.entries[i];

        if (e->obj == 0) {
            return e;
        }
        if (oldest == NULL || e->stamp < oldest->stamp) {
            oldest = e;
        }
    }
    coffer_debug("p11", "cache full: evicting '%s'", oldest->name);
    destroy_entry(s, oldest);
    index_rebuild(&s->cache);
    return oldest;
}

/*
 * On success the cache owns obj. On error nothing was stored and the caller
 * still owns obj.
 */
enum coffer_err coffer_p11_cache_put(struct coffer_p11_session *s, const char *name,
                                     coffer_p11_obj obj)
{
    struct p11_cache_entry *e;
    enum coffer_err rc;

    if ((rc = check_args(s, name)) != COFFER_OK) {
        return rc;
    }
    if (obj == 0) {
        return coffer_err_set(COFFER_E_INVALID, "cache entry '%s' has no object", name);
    }
    apply_pending(s);
    /* One object under two names would be destroyed twice. */
    for (size_t i = 0; i < P11_CACHE_CAP; i++) {
        e = &s->cache.entries[i];
        if (e->obj == obj && strcmp(e->name, name) != 0) {
            return coffer_err_set(COFFER_E_INVALID, "object %lu is cached already as '%s'", obj,
                                  e->name);
        }
    }
    e = find_entry(&s->cache, name);
    if (e != NULL && e->obj != obj) {
        destroy_entry(s, e);
        index_rebuild(&s->cache);
        e = NULL;
    }
    if (e == NULL) {
        e = free_slot(s);
        coffer_memcpy(e->name, name, strlen(name) + 1);
        e->obj = obj;
        index_add(&s->cache, (size_t)(e - s->cache.entries));
    }
    e->stamp = ++s->cache.clock;
    return COFFER_OK;
}

static void add_pending_locked(struct p11_cache *c, const char *name)
{
    for (unsigned i = 0; i < c->n_pending; i++) {
        if (strcmp(c->pending[i], name) == 0) {
            return;
        }
    }
    if (c->n_pending == P11_PENDING_MAX) {
        /* Too many drops at once: purging everything is always correct. */
        c->pending_all = true;
        return;
    }
    coffer_memcpy(c->pending[c->n_pending], name, strlen(name) + 1);
    c->n_pending++;
}

void coffer_p11_cache_drop(struct coffer_p11 *p, const char *name)
{
    if (p == NULL || !name_ok(name)) {
        coffer_warn("p11", "coffer_p11_cache_drop: no context or an invalid name");
        return;
    }
    if (p11_check_fork(p) != COFFER_OK) {
        coffer_warn("p11", "not dropping '%s': %s", name, coffer_err_detail());
        return;
    }
    pthread_mutex_lock(&p->lock);
    for (unsigned i = 0; i < p->n_sessions; i++) {
        struct coffer_p11_session *s = &p->sessions[i];

        if (s->leased) {
            add_pending_locked(&s->cache, name);
        } else if (s->open) {
            p11_cache_remove(s, name);
        }
    }
    pthread_mutex_unlock(&p->lock);
}
