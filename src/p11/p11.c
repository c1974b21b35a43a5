/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The PKCS#11 context: loading the module through p11-kit, initialising it
 * once per process, selecting exactly one token by RFC 7512 URI, checking the
 * mechanisms Coffer needs, logging in once, and the pool of sessions that the
 * threads of this process lease.
 *
 * A context belongs to the process that opened it. After fork() it must not
 * touch the token at all: every entry point checks the pid first, and close
 * in a child only frees memory. This file never logs out while the context
 * lives (C_Logout destroys every session object of the process), and never
 * keeps the PIN longer than the C_Login call.
 */
#include "p11/p11_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/uri.h>

#include "coffer/log.h"
#include "coffer/mem.h"

/* ---- Module initialisation, once per process ---------------------------------
 * One library loaded twice (by path and by p11-kit name, or by two contexts)
 * is one PKCS#11 instance: a second C_Initialize fails and any C_Finalize
 * ends every context. So initialisation is counted per function list.
 */

#define MODULE_USES_MAX 8
/* Tries at finding the configured token before it is reported missing (see coffer_p11_open). */
#define TOKEN_ATTEMPTS 8

struct module_use {
    CK_FUNCTION_LIST *fn;
    unsigned users;
    pid_t pid; /* the process the count belongs to */
};

static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static struct module_use module_uses[MODULE_USES_MAX];

static const char *p11_kit_reason(void)
{
    const char *m = p11_kit_message();

    return (m != NULL && m[0] != '\0') ? m : "no reason given by p11-kit";
}

static enum coffer_err load_by_name(const char *name, CK_FUNCTION_LIST **out)
{
    CK_FUNCTION_LIST **all;
    CK_FUNCTION_LIST *fn;

    all = p11_kit_modules_load(NULL, P11_KIT_MODULE_UNMANAGED);
    if (all == NULL) {
        return coffer_err_set(COFFER_E_CONFIG, "cannot load the p11-kit module registry: %s",
                              p11_kit_reason());
    }
    fn = p11_kit_module_for_name(all, name);
    for (size_t i = 0; all[i] != NULL; i++) {
        if (all[i] != fn) {
            p11_kit_module_release(all[i]);
        }
    }
    /* The array itself is plain heap memory of p11-kit's; the modules are released above. */
    coffer_free(all);
    if (fn == NULL) {
        return coffer_err_set(COFFER_E_CONFIG,
                              "PKCS#11 module '%s' is not registered with p11-kit "
                              "(no %s.module in its module configuration)",
                              name, name);
    }
    *out = fn;
    return COFFER_OK;
}

static enum coffer_err load_module(const char *module, CK_FUNCTION_LIST **out)
{
    CK_FUNCTION_LIST *fn;

    if (module == NULL || module[0] == '\0') {
        return coffer_err_set(COFFER_E_CONFIG, "no PKCS#11 module configured");
    }
    if (module[0] != '/') {
        return load_by_name(module, out);
    }
    fn = p11_kit_module_load(module, P11_KIT_MODULE_UNMANAGED);
    if (fn == NULL) {
        return coffer_err_set(COFFER_E_CONFIG, "cannot load PKCS#11 module %s: %s", module,
                              p11_kit_reason());
    }
    *out = fn;
    return COFFER_OK;
}

static struct module_use *find_use_locked(CK_FUNCTION_LIST *fn)
{
    for (size_t i = 0; i < MODULE_USES_MAX; i++) {
        if (module_uses[i].fn == fn) {
            return &module_uses[i];
        }
    }
    return NULL;
}

static struct module_use *claim_use_locked(CK_FUNCTION_LIST *fn)
{
    struct module_use *u = find_use_locked(fn);
    pid_t now = getpid();

    if (u != NULL) {
        if (u->pid != now) {
            /* Counted by the parent before fork(): none of those uses exist here. */
            u->users = 0;
            u->pid = now;
        }
        return u;
    }
    for (size_t i = 0; i < MODULE_USES_MAX; i++) {
        if (module_uses[i].users == 0 || module_uses[i].pid != now) {
            module_uses[i].fn = fn;
            module_uses[i].users = 0;
            module_uses[i].pid = now;
            return &module_uses[i];
        }
    }
    return NULL;
}

static enum coffer_err initialize_locked(const char *module, CK_FUNCTION_LIST *fn)
{
    CK_C_INITIALIZE_ARGS args;
    CK_RV rv;

    memset(&args, 0, sizeof(args));
    /* The OS's locks, so that the threads of this process can share the module. */
    args.flags = CKF_OS_LOCKING_OK;
    rv = fn->C_Initialize(&args);
    /*
     * Already initialised with no use counted in this process: the state was
     * inherited across fork() (nothing else in Coffer initialises a module),
     * with the parent's sessions and login, when the module does not reset
     * itself on fork. Finalize that copy and start clean, so that a process
     * never works under a login it did not make.
     */
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        rv = fn->C_Finalize(NULL);
        if (rv == CKR_OK) {
            rv = fn->C_Initialize(&args);
        }
    }
    if (rv == CKR_OK) {
        return COFFER_OK;
    }
    if (p11_rv_fail("C_Initialize", rv, P11_PATH_NORMAL) == COFFER_E_NOMEM) {
        return COFFER_E_NOMEM;
    }
    /* A module that loads but will not initialise is nearly always misconfigured. */
    return coffer_err_wrap(COFFER_E_CONFIG,
                           "initialising PKCS#11 module %s (for SoftHSMv2, check SOFTHSM2_CONF "
                           "and its token directory)",
                           module);
}

enum coffer_err p11_module_acquire(const char *module, CK_FUNCTION_LIST **out)
{
    CK_FUNCTION_LIST *fn = NULL;
    struct module_use *u;
    enum coffer_err rc;

    if ((rc = load_module(module, &fn)) != COFFER_OK) {
        return rc;
    }
    pthread_mutex_lock(&modules_lock);
    u = claim_use_locked(fn);
    if (u == NULL) {
        rc = coffer_err_set(COFFER_E_LIMIT, "more than %d PKCS#11 modules in one process",
                            MODULE_USES_MAX);
    } else if (u->users == 0) {
        rc = initialize_locked(module, fn);
    }
    if (rc == COFFER_OK) {
        u->users++;
    }
    pthread_mutex_unlock(&modules_lock);
    if (rc != COFFER_OK) {
        p11_kit_module_release(fn);
        return rc;
    }
    *out = fn;
    return COFFER_OK;
}

void p11_module_release(CK_FUNCTION_LIST *fn)
{
    struct module_use *u;
    CK_RV rv = CKR_OK;

    if (fn == NULL) {
        return;
    }
    pthread_mutex_lock(&modules_lock);
    u = find_use_locked(fn);
    if (u == NULL || u->pid != getpid() || u->users == 0) {
        pthread_mutex_unlock(&modules_lock);
        return;
    }
    u->users--;
    if (u->users == 0) {
        rv = fn->C_Finalize(NULL);
    }
    pthread_mutex_unlock(&modules_lock);
    if (rv != CKR_OK) {
        coffer_warn("p11", "C_Finalize: %s (0x%lx)", p11_rv_name(rv), (unsigned long)rv);
    }
    p11_kit_module_release(fn);
}

bool p11_module_sole_user(CK_FUNCTION_LIST *fn)
{
    struct module_use *u;
    bool sole;

    pthread_mutex_lock(&modules_lock);
    u = find_use_locked(fn);
    sole = u != NULL && u->pid == getpid() && u->users == 1;
    pthread_mutex_unlock(&modules_lock);
    return sole;
}

/* ---- Small shared checks ----------------------------------------------------- */

enum coffer_err p11_check_fork(const struct coffer_p11 *p)
{
    pid_t now = getpid();

    if (p->pid != now) {
        return coffer_err_set(COFFER_E_FORKED,
                              "PKCS#11 context opened by pid %ld used in pid %ld; open a new one "
                              "after fork",
                              (long)p->pid, (long)now);
    }
    return COFFER_OK;
}

enum coffer_err p11_check_session(const struct coffer_p11_session *s)
{
    if (s == NULL || s->owner == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "no PKCS#11 session");
    }
    return p11_check_fork(s->owner);
}

void p11_trim_field(char *dst, size_t dst_size, const unsigned char *src, size_t src_len)
{
    size_t n = src_len;

    if (dst_size == 0) {
        return;
    }
    while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\0')) {
        n--;
    }
    if (n > dst_size - 1) {
        n = dst_size - 1;
    }
    coffer_memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ---- Token selection ------------------------------------------------------- */

/* A URI with a PIN in it is refused, and never repeated in a detail. */
static const char *shown_uri(const char *uri)
{
    return strstr(uri, "pin-value") != NULL ? "(URI with pin-value, not shown)" : uri;
}

enum coffer_err p11_list_slots(CK_FUNCTION_LIST *fn, CK_SLOT_ID **out, CK_ULONG *out_n)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    CK_RV rv;

    /* Tokens may appear between the two calls; a few rounds settle it. */
    for (int round = 0; round < 4; round++) {
        rv = fn->C_GetSlotList(CK_TRUE, NULL, &n);
        if (rv != CKR_OK) {
            return p11_rv_fail("C_GetSlotList", rv, P11_PATH_NORMAL);
        }
        coffer_free(slots);
        slots = coffer_calloc(n + 1, sizeof(*slots));
        if (slots == NULL) {
            return coffer_err_set(COFFER_E_NOMEM, "slot list of %lu entries", (unsigned long)n);
        }
        rv = fn->C_GetSlotList(CK_TRUE, slots, &n);
        if (rv == CKR_OK) {
            *out = slots;
            *out_n = n;
            return COFFER_OK;
        }
        if (rv != CKR_BUFFER_TOO_SMALL) {
            coffer_free(slots);
            return p11_rv_fail("C_GetSlotList", rv, P11_PATH_NORMAL);
        }
    }
    coffer_free(slots);
    return coffer_err_set(COFFER_E_TOKEN, "C_GetSlotList: the slot list kept changing");
}

static void fill_token_info(struct coffer_p11_token_info *out, CK_SLOT_ID slot,
                            const CK_TOKEN_INFO *ti)
{
    memset(out, 0, sizeof(*out));
    p11_trim_field(out->label, sizeof(out->label), ti->label, sizeof(ti->label));
    p11_trim_field(out->manufacturer, sizeof(out->manufacturer), ti->manufacturerID,
                   sizeof(ti->manufacturerID));
    p11_trim_field(out->model, sizeof(out->model), ti->model, sizeof(ti->model));
    p11_trim_field(out->serial, sizeof(out->serial), ti->serialNumber, sizeof(ti->serialNumber));
    out->slot = slot;
}

static enum coffer_err match_slots(struct coffer_p11 *p, P11KitUri *uri, const char *uri_text)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    unsigned matches = 0;
    enum coffer_err rc;

    if ((rc = p11_list_slots(p->fn, &slots, &n)) != COFFER_OK) {
        return rc;
    }
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        CK_RV rv = p->fn->C_GetTokenInfo(slots[i], &ti);

        if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_TOKEN_NOT_RECOGNIZED) {
            continue;
        }
        if (rv != CKR_OK) {
            rc = p11_rv_fail("C_GetTokenInfo", rv, P11_PATH_NORMAL);
            goto out;
        }
        /* An uninitialised token (SoftHSMv2 always offers one) cannot be logged in to. */
        if ((ti.flags & CKF_TOKEN_INITIALIZED) == 0) {
            continue;
        }
        if (p11_kit_uri_match_token_info(uri, &ti) != 1) {
            continue;
        }
        if (matches == 0) {
            p->slot = slots[i];
            fill_token_info(&p->info, slots[i], &ti);
        }
        matches++;
    }
    if (matches == 0) {
        rc = coffer_err_set(COFFER_E_TOKEN_NOT_FOUND, "no token matches %s", uri_text);
    } else if (matches > 1) {
        rc = coffer_err_set(COFFER_E_TOKEN_NOT_FOUND,
                            "%u tokens match %s; make the URI more specific", matches, uri_text);
    }
out:
    coffer_free(slots);
    return rc;
}

enum coffer_err p11_uri_parse(const char *uri_text, P11KitUri **out)
{
    P11KitUri *uri;
    enum coffer_err rc = COFFER_OK;
    int r;

    *out = NULL;
    if (uri_text == NULL || uri_text[0] == '\0') {
        return coffer_err_set(COFFER_E_CONFIG, "no token URI configured");
    }
    uri = p11_kit_uri_new();
    if (uri == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "p11_kit_uri_new");
    }
    r = p11_kit_uri_parse(uri_text, P11_KIT_URI_FOR_TOKEN, uri);
    if (r != P11_KIT_URI_OK) {
        rc = coffer_err_set(COFFER_E_CONFIG, "token URI %s is not a valid PKCS#11 URI: %s",
                            shown_uri(uri_text), p11_kit_uri_message(r));
        goto out;
    }
    if (p11_kit_uri_get_pin_value(uri) != NULL) {
        rc = coffer_err_set(COFFER_E_CONFIG,
                            "the token URI carries pin-value; configure a PIN source instead");
        goto out;
    }
    *out = uri;
    uri = NULL;
out:
    if (uri != NULL) {
        p11_kit_uri_free(uri);
    }
    return rc;
}

static enum coffer_err select_token(struct coffer_p11 *p, const char *uri_text)
{
    P11KitUri *uri = NULL;
    enum coffer_err rc;

    if ((rc = p11_uri_parse(uri_text, &uri)) != COFFER_OK) {
        return rc;
    }
    rc = match_slots(p, uri, uri_text);
    p11_kit_uri_free(uri);
    return rc;
}

/* ---- Mechanisms ---------------------------------------------------------------- */

struct required_mech {
    CK_MECHANISM_TYPE type;
    const char *name;
    CK_FLAGS flags;
};

/* What Coffer does with the token, and nothing more. */
static const struct required_mech required_mechs[] = {
    {CKM_AES_KEY_GEN, "CKM_AES_KEY_GEN", CKF_GENERATE},
    {CKM_AES_KEY_WRAP_PAD, "CKM_AES_KEY_WRAP_PAD", CKF_WRAP | CKF_UNWRAP},
    {CKM_AES_GCM, "CKM_AES_GCM", CKF_ENCRYPT | CKF_DECRYPT},
    {CKM_EC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN", CKF_GENERATE_KEY_PAIR},
    {CKM_ECDSA, "CKM_ECDSA", CKF_SIGN},
    {CKM_GENERIC_SECRET_KEY_GEN, "CKM_GENERIC_SECRET_KEY_GEN", CKF_GENERATE},
    {CKM_SHA256_HMAC, "CKM_SHA256_HMAC", CKF_SIGN},
};

static const struct {
    CK_FLAGS flag;
    const char *name;
} mech_flag_names[] = {
    {CKF_ENCRYPT, "encrypt"},   {CKF_DECRYPT, "decrypt"},
    {CKF_WRAP, "wrap"},         {CKF_UNWRAP, "unwrap"},
    {CKF_GENERATE, "generate"}, {CKF_GENERATE_KEY_PAIR, "generate key pair"},
    {CKF_SIGN, "sign"},
};

struct text {
    char buf[480];
    size_t len;
};

static void text_add(struct text *t, const char *fmt, ...) COFFER_PRINTF(2, 3);

static void text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->len >= sizeof(t->buf) - 1) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(t->buf + t->len, sizeof(t->buf) - t->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    t->len += (size_t)n;
    if (t->len > sizeof(t->buf) - 1) {
        t->len = sizeof(t->buf) - 1;
    }
}

static bool mech_listed(const CK_MECHANISM_TYPE *list, CK_ULONG n, CK_MECHANISM_TYPE type)
{
    for (CK_ULONG i = 0; i < n; i++) {
        if (list[i] == type) {
            return true;
        }
    }
    return false;
}

/* Which of want's flags the token does not offer for type; all of them if it lacks type. */
static enum coffer_err missing_flags(struct coffer_p11 *p, const CK_MECHANISM_TYPE *list,
                                     CK_ULONG n, const struct required_mech *want,
                                     CK_FLAGS *missing)
{
    CK_MECHANISM_INFO info;
    CK_RV rv;

    *missing = want->flags;
    if (!mech_listed(list, n, want->type)) {
        return COFFER_OK;
    }
    rv = p->fn->C_GetMechanismInfo(p->slot, want->type, &info);
    if (rv == CKR_MECHANISM_INVALID) {
        return COFFER_OK;
    }
    if (rv != CKR_OK) {
        return coffer_err_wrap(p11_rv_fail("C_GetMechanismInfo", rv, P11_PATH_NORMAL),
                               "asking about %s", want->name);
    }
    *missing = want->flags & ~info.flags;
    return COFFER_OK;
}

static enum coffer_err check_mechanisms(struct coffer_p11 *p)
{
    CK_MECHANISM_TYPE *list = NULL;
    CK_ULONG n = 0;
    struct text missing_text = {.len = 0};
    unsigned n_missing = 0;
    enum coffer_err rc = COFFER_OK;
    CK_RV rv;

    rv = p->fn->C_GetMechanismList(p->slot, NULL, &n);
    if (rv != CKR_OK) {
        return p11_rv_fail("C_GetMechanismList", rv, P11_PATH_NORMAL);
    }
    list = coffer_calloc(n + 1, sizeof(*list));
    if (list == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "mechanism list of %lu entries", (unsigned long)n);
    }
    rv = p->fn->C_GetMechanismList(p->slot, list, &n);
    if (rv != CKR_OK) {
        rc = p11_rv_fail("C_GetMechanismList", rv, P11_PATH_NORMAL);
        goto out;
    }
    for (size_t i = 0; i < sizeof(required_mechs) / sizeof(required_mechs[0]); i++) {
        CK_FLAGS missing = 0;
        bool first = true;

        if ((rc = missing_flags(p, list, n, &required_mechs[i], &missing)) != COFFER_OK) {
            goto out;
        }
        if (missing == 0) {
            continue;
        }
        text_add(&missing_text, "%s%s (", n_missing > 0 ? ", " : "", required_mechs[i].name);
        for (size_t f = 0; f < sizeof(mech_flag_names) / sizeof(mech_flag_names[0]); f++) {
            if ((missing & mech_flag_names[f].flag) != 0) {
                text_add(&missing_text, "%s%s", first ? "" : ", ", mech_flag_names[f].name);
                first = false;
            }
        }
        text_add(&missing_text, ")");
        n_missing++;
    }
    if (n_missing > 0) {
        rc = coffer_err_set(COFFER_E_MECHANISM, "token '%s' lacks required mechanisms: %s",
                            p->info.label, missing_text.buf);
    }
out:
    coffer_free(list);
    return rc;
}

/* ---- Sessions and login --------------------------------------------------------- */

static enum coffer_err open_session(struct coffer_p11 *p, struct coffer_p11_session *s)
{
    CK_RV rv;

    rv = p->fn->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s->handle);
    if (rv != CKR_OK) {
        s->open = false;
        return p11_rv_fail("C_OpenSession", rv, P11_PATH_NORMAL);
    }
    s->open = true;
    return COFFER_OK;
}

static void close_session(struct coffer_p11_session *s)
{
    CK_RV rv;

    if (!s->open) {
        return;
    }
    /* Closing the session destroys its session objects, cached ones included. */
    rv = s->owner->fn->C_CloseSession(s->handle);
    if (rv != CKR_OK) {
        coffer_warn("p11", "C_CloseSession: %s (0x%lx)", p11_rv_name(rv), (unsigned long)rv);
    }
    s->open = false;
    p11_cache_forget_all(&s->cache);
}

enum coffer_err p11_session_reset(struct coffer_p11_session *s)
{
    enum coffer_err rc;

    if ((rc = p11_check_session(s)) != COFFER_OK) {
        return rc;
    }
    close_session(s);
    return open_session(s->owner, s);
}

static enum coffer_err login(struct coffer_p11 *p, const struct coffer_p11_config *cfg,
                             struct coffer_p11_session *s)
{
    struct coffer_secret *pin = NULL;
    struct coffer_secret_view v;
    enum coffer_err rc;
    CK_RV rv;

    if ((rc = coffer_p11_read_pin(cfg->pin_source, &pin)) != COFFER_OK) {
        return rc;
    }
    v = coffer_secret_view(pin);
    rv = p->fn->C_Login(s->handle, CKU_USER, v.data, v.len);
    coffer_secret_free(&pin);
    /* Another context of this process logged in to the token already. */
    if (rv == CKR_USER_ALREADY_LOGGED_IN) {
        return COFFER_OK;
    }
    /*
     * SoftHSMv2 answers this, too, when it reads the token file while another
     * process rewrites it. No PIN was tried, so asking again cannot lock the
     * token: it is a token error, which opening tries again.
     */
    if (rv == CKR_USER_PIN_NOT_INITIALIZED) {
        return coffer_err_set(
            COFFER_E_TOKEN,
            "logging in to token '%s': C_Login: CKR_USER_PIN_NOT_INITIALIZED: the "
            "token has no user PIN (or its file was being rewritten)",
            p->info.label);
    }
    if (rv != CKR_OK) {
        return coffer_err_wrap(p11_rv_fail("C_Login", rv, P11_PATH_NORMAL),
                               "logging in to token '%s'", p->info.label);
    }
    return COFFER_OK;
}

static enum coffer_err open_pool(struct coffer_p11 *p, const struct coffer_p11_config *cfg,
                                 unsigned pool_size)
{
    enum coffer_err rc;

    p->sessions = coffer_calloc(pool_size, sizeof(*p->sessions));
    if (p->sessions == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "session pool of %u", pool_size);
    }
    p->n_sessions = pool_size;
    for (unsigned i = 0; i < pool_size; i++) {
        p->sessions[i].owner = p;
        p11_cache_init(&p->sessions[i].cache);
    }
    for (unsigned i = 0; i < pool_size; i++) {
        if ((rc = open_session(p, &p->sessions[i])) != COFFER_OK) {
            return coffer_err_wrap(rc, "opening session %u of %u on token '%s'", i + 1, pool_size,
                                   p->info.label);
        }
        if (i == 0 && (rc = login(p, cfg, &p->sessions[0])) != COFFER_OK) {
            return rc;
        }
    }
    return COFFER_OK;
}

static enum coffer_err init_sync(struct coffer_p11 *p)
{
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        return coffer_err_set(COFFER_E_NOMEM, "pthread_mutex_init for the session pool");
    }
    if (pthread_cond_init(&p->freed, NULL) != 0) {
        pthread_mutex_destroy(&p->lock);
        return coffer_err_set(COFFER_E_NOMEM, "pthread_cond_init for the session pool");
    }
    p->sync_ready = true;
    return COFFER_OK;
}

/* ---- Open and close ------------------------------------------------------------- */

static void free_context(struct coffer_p11 *p)
{
    coffer_free(p->sessions);
    coffer_free(p);
}

void coffer_p11_close(struct coffer_p11 **pp)
{
    struct coffer_p11 *p;

    if (pp == NULL || *pp == NULL) {
        return;
    }
    p = *pp;
    *pp = NULL;
    if (p->pid != getpid()) {
        /* The token, the sessions and even the pool lock belong to the parent. */
        free_context(p);
        return;
    }
    for (unsigned i = 0; i < p->n_sessions; i++) {
        if (p->sessions[i].leased) {
            coffer_error("p11", "closing the PKCS#11 context with session %u still leased", i);
        }
    }
    if (p->module_held && p11_module_sole_user(p->fn)) {
        /* The last context of the process: the login ends with it. */
        for (unsigned i = 0; i < p->n_sessions; i++) {
            if (p->sessions[i].open) {
                CK_RV rv = p->fn->C_Logout(p->sessions[i].handle);

                if (rv != CKR_OK && rv != CKR_USER_NOT_LOGGED_IN) {
                    coffer_warn("p11", "C_Logout: %s (0x%lx)", p11_rv_name(rv), (unsigned long)rv);
                }
                break;
            }
        }
    }
    for (unsigned i = 0; i < p->n_sessions; i++) {
        close_session(&p->sessions[i]);
    }
    if (p->sync_ready) {
        pthread_cond_destroy(&p->freed);
        pthread_mutex_destroy(&p->lock);
    }
    if (p->module_held) {
        p11_module_release(p->fn);
    }
    free_context(p);
}

/* One attempt at opening: module, token, mechanisms, login, pool. */
static enum coffer_err open_once(const struct coffer_p11_config *cfg, unsigned pool_size,
                                 struct coffer_p11 **out)
{
    struct coffer_p11 *p = coffer_calloc(1, sizeof(*p));
    enum coffer_err rc;

    *out = NULL;
    if (p == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "PKCS#11 context");
    }
    p->pid = getpid();
    if ((rc = p11_module_acquire(cfg->module, &p->fn)) != COFFER_OK) {
        goto out;
    }
    p->module_held = true;
    if ((rc = select_token(p, cfg->token_uri)) != COFFER_OK ||
        (rc = check_mechanisms(p)) != COFFER_OK || (rc = init_sync(p)) != COFFER_OK ||
        (rc = open_pool(p, cfg, pool_size)) != COFFER_OK) {
        goto out;
    }
    *out = p;
    p = NULL;
out:
    coffer_p11_close(&p);
    return rc;
}

enum coffer_err coffer_p11_open(const struct coffer_p11_config *cfg, struct coffer_p11 **out)
{
    unsigned pool_size;
    enum coffer_err rc;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_open: no output");
    }
    *out = NULL;
    if (cfg == NULL) {
        return coffer_err_set(COFFER_E_CONFIG, "no PKCS#11 configuration");
    }
    pool_size = cfg->pool_size == 0 ? P11_POOL_DEFAULT : cfg->pool_size;
    if (pool_size > P11_POOL_MAX) {
        return coffer_err_set(COFFER_E_CONFIG, "PKCS#11 pool size %u is above the limit of %u",
                              pool_size, P11_POOL_MAX);
    }
    for (unsigned attempt = 1;; attempt++) {
        struct timespec pause = {0, (long)attempt * 20 * 1000 * 1000};

        rc = open_once(cfg, pool_size, out);
        /*
         * SoftHSMv2 keeps each token in one file that a login rewrites, and
         * a process that reads the file at that moment sees no token (at
         * C_Initialize) or fails with CKR_GENERAL_ERROR (C_GetTokenInfo,
         * C_Login) or CKR_USER_PIN_NOT_INITIALIZED (C_Login, turned into a
         * token error): several processes starting together trip over each
         * other. Those two answers are tried again, with the module started
         * afresh, a few times; a wrong PIN never is, so that retries cannot
         * lock the token, and a token that is really absent still fails.
         */
        if ((rc != COFFER_E_TOKEN_NOT_FOUND && rc != COFFER_E_TOKEN) || attempt == TOKEN_ATTEMPTS) {
            return rc;
        }
        coffer_debug("p11", "opening the token failed on attempt %u (%s); trying again", attempt,
                     coffer_err_str(rc));
        (void)nanosleep(&pause, NULL);
    }
}

uint64_t coffer_p11_objects_made(struct coffer_p11 *p)
{
    return p == NULL ? 0 : atomic_load_explicit(&p->objects_made, memory_order_relaxed);
}

void coffer_p11_token_info(const struct coffer_p11 *p, struct coffer_p11_token_info *out)
{
    if (out == NULL) {
        return;
    }
    if (p == NULL) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = p->info;
}

/* ---- The pool ------------------------------------------------------------------- */

static struct coffer_p11_session *idle_session_locked(struct coffer_p11 *p)
{
    for (unsigned i = 0; i < p->n_sessions; i++) {
        if (!p->sessions[i].leased) {
            return &p->sessions[i];
        }
    }
    return NULL;
}

enum coffer_err coffer_p11_session_get(struct coffer_p11 *p, struct coffer_p11_session **out)
{
    struct coffer_p11_session *s;
    enum coffer_err rc;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_session_get: no output");
    }
    *out = NULL;
    if (p == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_session_get: no context");
    }
    if ((rc = p11_check_fork(p)) != COFFER_OK) {
        return rc;
    }
    pthread_mutex_lock(&p->lock);
    while ((s = idle_session_locked(p)) == NULL) {
        pthread_cond_wait(&p->freed, &p->lock);
    }
    s->leased = true;
    pthread_mutex_unlock(&p->lock);
    /* A session lost to an operation that could not be ended is reopened here. */
    if (!s->open && (rc = open_session(p, s)) != COFFER_OK) {
        coffer_p11_session_put(p, &s);
        return rc;
    }
    *out = s;
    return COFFER_OK;
}

void coffer_p11_session_put(struct coffer_p11 *p, struct coffer_p11_session **sp)
{
    struct coffer_p11_session *s;

    if (sp == NULL || *sp == NULL) {
        return;
    }
    s = *sp;
    *sp = NULL;
    if (p == NULL || s->owner != p) {
        coffer_error("p11", "a session was returned to a pool it does not belong to");
        return;
    }
    if (p->pid != getpid()) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    p11_cache_purge_pending_locked(s);
    s->leased = false;
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->lock);
}
