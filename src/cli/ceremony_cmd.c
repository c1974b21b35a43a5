/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `coffer ceremony`: the first ceremony (init), officers, preparing a plan
 * with its canonical description, an officer's approval of it, and showing
 * and verifying a recorded transcript. Running a plan is ceremony_ops.c.
 *
 * Passphrases are read from the terminal with echo off (or one line each
 * from standard input when it is not a terminal), kept in struct
 * coffer_secret and compared with their scrypt hash; none is ever printed,
 * passed in argv, logged or put in an error detail. Exit 0 done, 1 refused,
 * 2 usage or trouble.
 */
#include "cli/ceremony.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "coffer/mem.h"

#define EXPIRES_DEFAULT_S (30 * 60)
#define EXPIRES_MAX_S (24 * 3600)

static const char ceremony_usage[] =
    "usage: coffer ceremony init --quorum M --officer NAME [--officer NAME]...\n"
    "       coffer ceremony officer list\n"
    "       coffer ceremony prepare KIND [ARGS] [--expires-in DURATION]\n"
    "           KIND: officer-add NAME | officer-remove NAME | set-quorum M | rotate-mk |\n"
    "                 retire-mk V | retire-org ORG V | destroy-mk V | destroy-org ORG V |\n"
    "                 shred-org ORG\n"
    "       coffer ceremony approve PLAN --officer NAME --sha256 HEX\n"
    "       coffer ceremony run PLAN\n"
    "       coffer ceremony rotate-org-key ORG\n"
    "       coffer ceremony show ID [--fingerprint HEX]\n";

static void sha256_hex(const char *s, size_t len, unsigned char sha[32], char hex[65])
{
    unsigned int n = 0;

    if (EVP_Digest(s, len, sha, &n, EVP_sha256(), NULL) != 1 || n != 32) {
        memset(sha, 0, 32);
    }
    coffer_hex(sha, 32, hex);
}

/* Whether name is an officer name: ^[a-z0-9][a-z0-9_-]{0,62}$, as org names. */
static bool name_ok(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > COFFER_NAME_MAX ||
        !((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9'))) {
        return false;
    }
    for (size_t i = 1; i < n; i++) {
        char ch = name[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-')) {
            return false;
        }
    }
    return true;
}

/* ---- init -------------------------------------------------------------------------- */

struct init_args {
    uint32_t m;
    const char *names[COFFER_OFFICERS_MAX];
    size_t n;
};

static int parse_init(int argc, char **argv, struct init_args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quorum") == 0 && i + 1 < argc) {
            if (cli_parse_version(argv[++i], &a->m) != COFFER_OK || a->m > COFFER_OFFICERS_MAX) {
                fprintf(stderr, "coffer: --quorum wants a number from 1 to %d\n",
                        COFFER_OFFICERS_MAX);
                return 2;
            }
        } else if (strcmp(argv[i], "--officer") == 0 && i + 1 < argc) {
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
                if (a->n == COFFER_OFFICERS_MAX) {
                    fprintf(stderr, "coffer: at most %d officers\n", COFFER_OFFICERS_MAX);
                    return 2;
                }
                a->names[a->n++] = argv[++i];
            }
        } else {
            fprintf(stderr, "%s", ceremony_usage);
            return 2;
        }
    }
    if (a->m == 0 || a->n == 0) {
        fprintf(stderr, "coffer: ceremony init needs --quorum M and at least one --officer\n");
        return 2;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (!name_ok(a->names[i])) {
            fprintf(stderr, "coffer: '%s' is not an officer name ([a-z0-9][a-z0-9_-]{0,62})\n",
                    a->names[i]);
            return 2;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(a->names[i], a->names[j]) == 0) {
                fprintf(stderr, "coffer: officer %s is named twice\n", a->names[i]);
                return 2;
            }
        }
    }
    if (a->m > a->n) {
        fprintf(stderr, "coffer: a quorum of %u needs at least %u officers, not %zu\n", a->m, a->m,
                a->n);
        return 2;
    }
    return 0;
}

/* The first master key: made now, or recorded as the token holds it. */
static void init_mk(struct cer *x)
{
    struct coffer_keys_created created;
    struct coffer_store_mk mk;
    struct coffer_p11_attrs a;
    unsigned char kcv[COFFER_KCV_LEN];
    enum coffer_err r = coffer_store_mk_current(x->c.st, &mk);

    if (r == COFFER_E_NOT_FOUND) {
        if ((r = coffer_keys_mk_create(x->c.k, x->c.st, &created)) != COFFER_OK) {
            (void)cer_abort(x, "creating master key v1: %s: %s", coffer_err_str(r),
                            coffer_err_detail());
            return;
        }
        cer_printf(x, &x->body, "  created master key v%u and made it current\n", created.version);
        cer_key(x, "master key", created.label, created.version, created.kcv, &created.attrs,
                false);
        x->links[x->n_links++] = (struct cer_link){.what = CER_LINK_MK, .version = created.version};
        return;
    }
    if (r != COFFER_OK) {
        (void)cer_abort(x, "reading the current master key: %s", coffer_err_str(r));
        return;
    }
    if ((r = cer_read_key(x, mk.label, &a, kcv)) != COFFER_OK) {
        (void)cer_abort(x, "reading back %s: %s: %s", mk.label, coffer_err_str(r),
                        coffer_err_detail());
        return;
    }
    if (!coffer_mem_equal(kcv, mk.kcv, COFFER_KCV_LEN)) {
        (void)cer_abort(x, "%s reads back with another KCV than recorded", mk.label);
    }
    cer_printf(x, &x->body, "  recorded the existing current master key v%u\n", mk.version);
    cer_key(x, "master key", mk.label, mk.version, kcv, &a, false);
    x->links[x->n_links++] = (struct cer_link){.what = CER_LINK_MK, .version = mk.version};
}

static void ec_line(struct cer *x, const struct coffer_keys_audit_key *key)
{
    unsigned char fp[32];
    unsigned int n = 0;
    char hex[65];
    const struct coffer_p11_ec_attrs *e = &key->attrs;

    if (EVP_Digest(key->spki, key->spki_len, fp, &n, EVP_sha256(), NULL) != 1 || n != 32) {
        (void)cer_abort(x, "fingerprinting %s failed", key->label);
        return;
    }
    coffer_hex(fp, sizeof(fp), hex);
    cer_printf(
        x, &x->body,
        "  audit signing key v%u  label %s  ECDSA P-256\n"
        "    public key fingerprint (SHA-256 of the SubjectPublicKeyInfo): %s\n"
        "    read back: CKA_TOKEN=%s CKA_PRIVATE=%s CKA_SENSITIVE=%s CKA_ALWAYS_SENSITIVE=%s "
        "CKA_EXTRACTABLE=%s CKA_NEVER_EXTRACTABLE=%s\n"
        "               CKA_SIGN=%s CKA_DERIVE=%s CKA_DECRYPT=%s CKA_UNWRAP=%s\n",
        key->version, key->label, hex, e->common.token ? "TRUE" : "FALSE",
        e->common.private_ ? "TRUE" : "FALSE", e->common.sensitive ? "TRUE" : "FALSE",
        e->common.always_sensitive ? "TRUE" : "FALSE", e->common.extractable ? "TRUE" : "FALSE",
        e->common.never_extractable ? "TRUE" : "FALSE", e->sign ? "TRUE" : "FALSE",
        e->derive ? "TRUE" : "FALSE", e->common.decrypt ? "TRUE" : "FALSE",
        e->common.unwrap ? "TRUE" : "FALSE");
    if (!e->common.sensitive || e->common.extractable || !e->common.never_extractable) {
        (void)cer_abort(x, "%s does not read back sensitive and never extractable", key->label);
    }
}

static void init_audit_key(struct cer *x)
{
    struct coffer_keys_audit_key key;
    uint32_t v = 0;
    enum coffer_err r = coffer_store_audit_key_current(x->c.st, &v);

    if (r == COFFER_E_NOT_FOUND) {
        if ((r = coffer_keys_audit_key_create(x->c.k, x->c.st, &key)) != COFFER_OK) {
            (void)cer_abort(x, "creating the audit signing key: %s: %s", coffer_err_str(r),
                            coffer_err_detail());
            return;
        }
        cer_printf(x, &x->body, "  created audit signing key v%u and recorded it as current\n",
                   key.version);
        x->links[x->n_links++] = (struct cer_link){.what = CER_LINK_AUDIT, .version = key.version};
    } else if (r == COFFER_OK) {
        if ((r = coffer_keys_audit_key_load(x->c.k, v, &key)) != COFFER_OK) {
            (void)cer_abort(x, "reading back audit signing key v%u: %s: %s", v, coffer_err_str(r),
                            coffer_err_detail());
            return;
        }
        cer_printf(x, &x->body, "  recorded the existing audit signing key v%u\n", v);
        x->links[x->n_links++] = (struct cer_link){.what = CER_LINK_AUDIT, .version = v};
    } else {
        (void)cer_abort(x, "reading the audit signing key: %s", coffer_err_str(r));
        return;
    }
    ec_line(x, &key);
}

static void init_token_mac(struct cer *x)
{
    struct coffer_keys_created created;
    struct coffer_p11_attrs a;
    enum coffer_err r = cer_read_key(x, COFFER_TOKEN_MAC_LABEL, &a, NULL);

    if (r == COFFER_E_NOT_FOUND) {
        if ((r = coffer_keys_token_mac_create(x->c.k, &created)) != COFFER_OK) {
            (void)cer_abort(x, "creating the token MAC key: %s: %s", coffer_err_str(r),
                            coffer_err_detail());
            return;
        }
        cer_printf(x, &x->body, "  created the token MAC key (HMAC-SHA256, %lu bytes)\n",
                   created.attrs.value_len);
        a = created.attrs;
    } else if (r == COFFER_OK) {
        cer_printf(x, &x->body, "  recorded the existing token MAC key\n");
    } else {
        (void)cer_abort(x, "reading back the token MAC key: %s: %s", coffer_err_str(r),
                        coffer_err_detail());
        return;
    }
    /* An HMAC key has no KCV: CKA_CHECK_VALUE is defined for block cipher keys. */
    cer_key(x, "token MAC key", COFFER_TOKEN_MAC_LABEL, 1, NULL, &a, false);
}

static int cmd_init(int argc, char **argv)
{
    struct coffer_store_officer *existing = NULL;
    struct init_args a;
    struct cer x;
    size_t n_existing = 0;
    enum coffer_err r;
    int rc;

    if ((rc = parse_init(argc, argv, &a)) != 0) {
        return rc;
    }
    if ((r = cer_begin(&x, "init")) != COFFER_OK) {
        cli_fail("opening the token and database", r);
        cer_end(&x);
        return 2;
    }
    if ((r = coffer_store_officer_list(x.c.st, &existing, &n_existing)) != COFFER_OK) {
        rc = cli_fail("listing officers", r);
        goto out;
    }
    coffer_free(existing);
    if (n_existing > 0) {
        fprintf(stderr, "coffer: refused: officers exist already; the first ceremony is over "
                        "(change officers with `coffer ceremony prepare officer-add`)\n");
        rc = 1;
        goto out;
    }
    /* Every passphrase before any key is made, so a typing mistake costs nothing. */
    for (size_t i = 0; i < a.n; i++) {
        if ((r = cer_enrol_passphrase(a.names[i], x.add_hashes[i])) != COFFER_OK) {
            rc = cli_fail("enrolling officers", r);
            goto out;
        }
        x.add_officers[i] = a.names[i];
        x.officers[i] = a.names[i];
        x.n_add = i + 1;
    }
    x.n_officers = a.n;
    x.set_quorum = a.m;
    cer_printf(&x, &x.head, "officers enrolled (each typed a passphrase twice):");
    for (size_t i = 0; i < a.n; i++) {
        cer_printf(&x, &x.head, " %s", a.names[i]);
    }
    cer_printf(&x, &x.head, "\nquorum set: %u of %zu\n", a.m, a.n);
    init_mk(&x);
    init_audit_key(&x);
    init_token_mac(&x);
    rc = cer_record(&x);
    x.n_officers = 0;
out:
    cer_end(&x);
    return rc;
}

/* ---- officer list -------------------------------------------------------------------- */

static int cmd_officer(int argc, char **argv)
{
    struct coffer_store_officer *all = NULL;
    struct cli_ctx c;
    size_t n = 0;
    uint32_t m = 0;
    char added[32];
    char removed[32];
    enum coffer_err r;
    int rc = 0;

    if (argc != 2 || strcmp(argv[1], "list") != 0) {
        fprintf(stderr, "usage: coffer ceremony officer list (officers are added and removed "
                        "by a ceremony: prepare officer-add NAME | officer-remove NAME)\n");
        return 2;
    }
    if ((r = cli_open_db(&c)) != COFFER_OK) {
        cli_fail("opening the database", r);
        cli_close(&c);
        return 2;
    }
    if ((r = coffer_store_officer_list(c.st, &all, &n)) != COFFER_OK) {
        rc = cli_fail("listing officers", r);
        goto out;
    }
    r = coffer_store_quorum_get(c.st, &m);
    if (r != COFFER_OK && r != COFFER_E_NOT_FOUND) {
        rc = cli_fail("reading the quorum", r);
        goto out;
    }
    printf("%-24s %-20s %s\n", "officer", "added", "removed");
    for (size_t i = 0; i < n; i++) {
        cer_time(all[i].added_us, added);
        if (all[i].removed) {
            cer_time(all[i].removed_us, removed);
        } else {
            snprintf(removed, sizeof(removed), "-");
        }
        printf("%-24s %-20s %s\n", all[i].name, added, removed);
    }
    if (m == 0) {
        printf("no quorum is set: run `coffer ceremony init`\n");
    } else {
        size_t serving = 0;

        for (size_t i = 0; i < n; i++) {
            serving += all[i].removed ? 0 : 1;
        }
        printf("quorum: %u of %zu serving officers\n", m, serving);
    }
out:
    coffer_free(all);
    cli_close(&c);
    return rc;
}

/* ---- prepare ------------------------------------------------------------------------- */

static int parse_duration(const char *s, int64_t *secs)
{
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    int64_t mul = 1;

    if (end == s || s[0] < '0' || s[0] > '9') {
        return -1;
    }
    if (strcmp(end, "h") == 0) {
        mul = 3600;
    } else if (strcmp(end, "m") == 0) {
        mul = 60;
    } else if (strcmp(end, "s") != 0 && end[0] != '\0') {
        return -1;
    }
    if (v == 0 || v > (unsigned long)EXPIRES_MAX_S || (int64_t)v * mul > EXPIRES_MAX_S) {
        return -1;
    }
    *secs = (int64_t)v * mul;
    return 0;
}

static void desc_printf(struct coffer_buf *b, bool *ok, const char *fmt, ...) COFFER_PRINTF(3, 4);

static void desc_printf(struct coffer_buf *b, bool *ok, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line) || coffer_buf_put(b, line, (size_t)n) != COFFER_OK) {
        *ok = false;
    }
}

/* The officers and the quorum, for the description; fills the serving count. */
static enum coffer_err describe_officers(struct cli_ctx *c, struct coffer_buf *d, bool *ok,
                                         const char *name, bool *name_serving, bool *name_known,
                                         size_t *serving, uint32_t *m)
{
    struct coffer_store_officer *all = NULL;
    size_t n = 0;
    enum coffer_err r;

    *serving = 0;
    *name_serving = false;
    *name_known = false;
    if ((r = coffer_store_quorum_get(c->st, m)) != COFFER_OK ||
        (r = coffer_store_officer_list(c->st, &all, &n)) != COFFER_OK) {
        return r;
    }
    desc_printf(d, ok, "officers serving:");
    for (size_t i = 0; i < n; i++) {
        if (name != NULL && strcmp(all[i].name, name) == 0) {
            *name_known = true;
            *name_serving = !all[i].removed;
        }
        if (!all[i].removed) {
            desc_printf(d, ok, " %s", all[i].name);
            (*serving)++;
        }
    }
    desc_printf(d, ok, "\nquorum: %u of %zu\n", *m, *serving);
    coffer_free(all);
    return COFFER_OK;
}

static enum coffer_err describe_mk(struct cli_ctx *c, struct coffer_buf *d, bool *ok, uint32_t v,
                                   struct coffer_store_mk *mk)
{
    char kcv[2 * COFFER_KCV_LEN + 1];
    int64_t refs = 0;
    enum coffer_err r;

    if ((r = coffer_store_mk_get(c->st, v, mk)) != COFFER_OK ||
        (r = coffer_store_mk_count_refs(c->st, v, &refs)) != COFFER_OK) {
        return r;
    }
    coffer_hex(mk->kcv, COFFER_KCV_LEN, kcv);
    desc_printf(d, ok,
                "master key v%u: label %s, KCV %s, state %s, wraps %lld org key version(s)\n", v,
                mk->label, kcv, coffer_key_state_str(mk->state), (long long)refs);
    return COFFER_OK;
}

static enum coffer_err describe_org(struct cli_ctx *c, struct coffer_buf *d, bool *ok,
                                    const char *name, int64_t *total)
{
    struct coffer_store_org_key *keys = NULL;
    struct coffer_org org;
    char id[COFFER_UUID_STR_LEN];
    char kcv[2 * COFFER_KCV_LEN + 1];
    size_t n = 0;
    enum coffer_err r;

    *total = 0;
    if ((r = coffer_store_org_by_name(c->st, name, &org)) != COFFER_OK ||
        (r = coffer_store_org_key_list(c->st, &org.id, &keys, &n)) != COFFER_OK) {
        return r;
    }
    coffer_uuid_format(&org.id, id);
    desc_printf(d, ok, "org %s (%s) key versions:\n", name, id);
    for (size_t i = 0; i < n; i++) {
        int64_t refs = 0;

        if ((r = coffer_store_org_key_count_refs(c->st, &org.id, keys[i].version, &refs)) !=
            COFFER_OK) {
            break;
        }
        coffer_hex(keys[i].kcv, COFFER_KCV_LEN, kcv);
        desc_printf(d, ok,
                    "  v%u: KCV %s, state %s, under master key v%u, wraps %lld credential "
                    "version(s)\n",
                    keys[i].version, kcv, coffer_key_state_str(keys[i].state), keys[i].mk_version,
                    (long long)refs);
        *total += refs;
    }
    coffer_free(keys);
    return r;
}

/* One org key version: its KCV, state, master key and what it still wraps. */
static enum coffer_err describe_org_key(struct cli_ctx *c, struct coffer_buf *d, bool *ok,
                                        const char *name, uint32_t v,
                                        struct coffer_store_org_key *key)
{
    struct coffer_org org;
    char id[COFFER_UUID_STR_LEN];
    char kcv[2 * COFFER_KCV_LEN + 1];
    int64_t refs = 0;
    enum coffer_err r;

    if ((r = coffer_store_org_by_name(c->st, name, &org)) != COFFER_OK ||
        (r = coffer_store_org_key_get(c->st, &org.id, v, key)) != COFFER_OK ||
        (r = coffer_store_org_key_count_refs(c->st, &org.id, v, &refs)) != COFFER_OK) {
        return r;
    }
    coffer_uuid_format(&org.id, id);
    coffer_hex(key->kcv, COFFER_KCV_LEN, kcv);
    desc_printf(d, ok,
                "org %s (%s) key v%u: KCV %s, state %s, under master key v%u, wraps %lld "
                "credential version(s)\n",
                name, id, v, kcv, coffer_key_state_str(key->state), key->mk_version,
                (long long)refs);
    return COFFER_OK;
}

/* Checks the operation against the state now and describes both; 1 refused, 2 usage. */
static int describe_op(struct cli_ctx *c, const char *kind, char **args, size_t nargs,
                       struct coffer_buf *d, bool *ok, char *argtext, size_t argcap)
{
    struct coffer_store_org_key org_key;
    struct coffer_store_mk mk;
    bool serving = false;
    bool known = false;
    size_t n_serving = 0;
    uint32_t m = 0;
    uint32_t v = 0;
    int64_t total = 0;
    enum coffer_err r;

    if ((r = describe_officers(c, d, ok, nargs > 0 ? args[0] : NULL, &serving, &known, &n_serving,
                               &m)) != COFFER_OK) {
        return cli_fail("reading officers and quorum", r);
    }
    argtext[0] = '\0';
    if (nargs == 1) {
        snprintf(argtext, argcap, "%s", args[0]);
    } else if (nargs == 2) {
        snprintf(argtext, argcap, "%s %s", args[0], args[1]);
    }
    if (strcmp(kind, "rotate-mk") == 0 && nargs == 0) {
        if ((r = coffer_store_mk_current(c->st, &mk)) != COFFER_OK ||
            (r = describe_mk(c, d, ok, mk.version, &mk)) != COFFER_OK ||
            (r = coffer_store_mk_max_version(c->st, &v)) != COFFER_OK) {
            return cli_fail("reading the current master key", r);
        }
        desc_printf(d, ok,
                    "will: create master key v%u (coffer-mk-v%u) in the token and make it "
                    "current; v%u stays active until swept and retired\n",
                    v + 1, v + 1, mk.version);
    } else if ((strcmp(kind, "retire-mk") == 0 || strcmp(kind, "destroy-mk") == 0) && nargs == 1) {
        if ((r = cli_parse_version(args[0], &v)) != COFFER_OK) {
            cli_fail(kind, r);
            return 2;
        }
        if ((r = describe_mk(c, d, ok, v, &mk)) != COFFER_OK) {
            return cli_fail("reading the master key", r);
        }
        if (strcmp(kind, "destroy-mk") == 0 && mk.state != COFFER_KEY_RETIRED) {
            fprintf(stderr,
                    "coffer: refused: master key v%u is %s; only a retired version is "
                    "destroyed\n",
                    v, coffer_key_state_str(mk.state));
            return 1;
        }
        desc_printf(d, ok, "will: %s master key v%u%s\n",
                    strcmp(kind, "retire-mk") == 0 ? "retire" : "destroy", v,
                    strcmp(kind, "retire-mk") == 0
                        ? " (refused at run time while it still wraps anything)"
                        : ", removing its object from the token for good");
    } else if (strcmp(kind, "retire-org") == 0 && nargs == 2) {
        if ((r = cli_parse_version(args[1], &v)) != COFFER_OK) {
            cli_fail(kind, r);
            return 2;
        }
        if ((r = describe_org(c, d, ok, args[0], &total)) != COFFER_OK) {
            return cli_fail("reading the org's keys", r);
        }
        desc_printf(d, ok,
                    "will: retire org %s key v%u (refused at run time while it still wraps "
                    "anything)\n",
                    args[0], v);
    } else if (strcmp(kind, "destroy-org") == 0 && nargs == 2) {
        if ((r = cli_parse_version(args[1], &v)) != COFFER_OK) {
            cli_fail(kind, r);
            return 2;
        }
        if ((r = describe_org_key(c, d, ok, args[0], v, &org_key)) != COFFER_OK) {
            return cli_fail("reading the org key", r);
        }
        if (org_key.state != COFFER_KEY_RETIRED) {
            fprintf(stderr,
                    "coffer: refused: org %s key v%u is %s; only a retired version is "
                    "destroyed\n",
                    args[0], v, coffer_key_state_str(org_key.state));
            return 1;
        }
        desc_printf(d, ok,
                    "will: destroy org %s key v%u, overwriting its wrapped key in the database "
                    "(refused at run time while it still wraps anything); a database backup "
                    "still holds it wrapped under master key v%u until that master key version "
                    "is destroyed\n",
                    args[0], v, org_key.mk_version);
    } else if (strcmp(kind, "shred-org") == 0 && nargs == 1) {
        if ((r = describe_org(c, d, ok, args[0], &total)) != COFFER_OK) {
            return cli_fail("reading the org's keys", r);
        }
        if ((r = coffer_store_mk_current(c->st, &mk)) != COFFER_OK ||
            (r = describe_mk(c, d, ok, mk.version, &mk)) != COFFER_OK) {
            return cli_fail("reading the current master key", r);
        }
        desc_printf(d, ok,
                    "will: destroy every key version of org %s, making its %lld credential "
                    "version(s) unrecoverable; create a new master key, rewrap every other org's "
                    "keys under it, and destroy every older master key; the operator types the "
                    "org name to confirm\n",
                    args[0], (long long)total);
    } else if (strcmp(kind, "officer-add") == 0 && nargs == 1) {
        if (!name_ok(args[0])) {
            fprintf(stderr, "coffer: '%s' is not an officer name ([a-z0-9][a-z0-9_-]{0,62})\n",
                    args[0]);
            return 2;
        }
        if (known) {
            fprintf(stderr, "coffer: refused: an officer named %s exists or existed\n", args[0]);
            return 1;
        }
        if (n_serving >= COFFER_OFFICERS_MAX) {
            fprintf(stderr, "coffer: refused: there are %d officers already\n",
                    COFFER_OFFICERS_MAX);
            return 1;
        }
        desc_printf(d, ok,
                    "will: enrol officer %s, who types a passphrase twice at the run (%zu "
                    "officers after)\n",
                    args[0], n_serving + 1);
    } else if (strcmp(kind, "officer-remove") == 0 && nargs == 1) {
        if (!serving) {
            fprintf(stderr, "coffer: refused: %s is not a serving officer\n", args[0]);
            return 1;
        }
        if (n_serving - 1 < m) {
            fprintf(stderr,
                    "coffer: refused: removing %s would leave %zu officer(s), fewer than the "
                    "quorum %u (lower it first with set-quorum)\n",
                    args[0], n_serving - 1, m);
            return 1;
        }
        desc_printf(d, ok, "will: remove officer %s (%zu officers after)\n", args[0],
                    n_serving - 1);
    } else if (strcmp(kind, "set-quorum") == 0 && nargs == 1) {
        if (cli_parse_version(args[0], &v) != COFFER_OK || v > n_serving) {
            fprintf(stderr, "coffer: refused: the quorum must be from 1 to the %zu officers\n",
                    n_serving);
            return 1;
        }
        desc_printf(d, ok, "will: set the quorum to %u of %zu (from %u)\n", v, n_serving, m);
    } else {
        fprintf(stderr, "%s", ceremony_usage);
        return 2;
    }
    return 0;
}

static int cmd_prepare(int argc, char **argv)
{
    struct coffer_store_plan pl;
    struct coffer_p11_token_info tok;
    struct coffer_buf d = {0};
    struct cli_ctx c;
    char *args[2] = {NULL, NULL};
    char id[COFFER_UUID_STR_LEN];
    char created[32];
    char expires[32];
    char hex[65];
    size_t nargs = 0;
    int64_t secs = EXPIRES_DEFAULT_S;
    bool ok = true;
    enum coffer_err r;
    int rc;

    memset(&pl, 0, sizeof(pl));
    if (argc < 2) {
        fprintf(stderr, "%s", ceremony_usage);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--expires-in") == 0 && i + 1 < argc) {
            if (parse_duration(argv[++i], &secs) != 0) {
                fprintf(stderr, "coffer: --expires-in wants 1s to 24h (e.g. 30m, 2h, 90s)\n");
                return 2;
            }
        } else if (nargs < 2 && strncmp(argv[i], "--", 2) != 0) {
            args[nargs++] = argv[i];
        } else {
            fprintf(stderr, "%s", ceremony_usage);
            return 2;
        }
    }
    if (strlen(argv[1]) > COFFER_CEREMONY_KIND_MAX) {
        fprintf(stderr, "%s", ceremony_usage);
        return 2;
    }
    if ((r = cli_open(&c)) != COFFER_OK) {
        cli_fail("opening the token and database", r);
        cli_close(&c);
        return 2;
    }
    coffer_p11_token_info(c.p11, &tok);
    if ((r = coffer_store_ceremony_new_id(c.st, &pl.id, &pl.created_us)) != COFFER_OK) {
        rc = cli_fail("making the plan", r);
        goto out;
    }
    pl.expires_us = pl.created_us + secs * 1000000;
    coffer_uuid_format(&pl.id, id);
    cer_time(pl.created_us, created);
    cer_time(pl.expires_us, expires);
    desc_printf(&d, &ok, "COFFER KEY CEREMONY PLAN v1\nplan: %s\noperation: %s\n", id, argv[1]);
    desc_printf(&d, &ok, "arguments:%s%s%s%s\n", nargs > 0 ? " " : " (none)",
                nargs > 0 ? args[0] : "", nargs > 1 ? " " : "", nargs > 1 ? args[1] : "");
    desc_printf(&d, &ok, "token: label \"%s\", model \"%s\", serial \"%s\"\n", tok.label, tok.model,
                tok.serial);
    if ((rc = describe_op(&c, argv[1], args, nargs, &d, &ok, pl.args, sizeof(pl.args))) != 0) {
        goto out;
    }
    desc_printf(&d, &ok, "created: %s\nexpires: %s\n", created, expires);
    if (!ok || coffer_buf_put_u8(&d, 0) != COFFER_OK) {
        rc = cli_fail("writing the description",
                      coffer_err_set(COFFER_E_LIMIT, "the description is too long"));
        goto out;
    }
    snprintf(pl.kind, sizeof(pl.kind), "%s", argv[1]);
    pl.description = (char *)d.data;
    pl.description_len = d.len - 1;
    sha256_hex(pl.description, pl.description_len, pl.sha256, hex);
    if ((r = coffer_store_plan_insert(c.st, &pl)) != COFFER_OK) {
        pl.description = NULL;
        rc = cli_fail("recording the plan", r);
        goto out;
    }
    pl.description = NULL;
    fwrite(d.data, 1, d.len - 1, stdout);
    printf("\nsha256: %s\nplan: %s\n", hex, id);
    printf("Each officer: coffer ceremony approve %s --officer NAME --sha256 %s\n", id, hex);
    rc = 0;
out:
    coffer_buf_cleanup(&d);
    cli_close(&c);
    return rc;
}

/* ---- approve ---------------------------------------------------------------------------- */

static bool hex_equal(const char *given, const char *hex)
{
    size_t n = strlen(hex);

    if (strlen(given) != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char g = given[i];

        if (g >= 'A' && g <= 'F') {
            g = (char)(g - 'A' + 'a');
        }
        if (g != hex[i]) {
            return false;
        }
    }
    return true;
}

static int cmd_approve(int argc, char **argv)
{
    struct coffer_store_plan_approval *ap = NULL;
    struct coffer_store_officer off;
    struct coffer_store_plan pl;
    struct coffer_secret *pass = NULL;
    struct coffer_uuid id;
    struct cli_ctx c;
    const char *officer = NULL;
    const char *given = NULL;
    unsigned char sha[32];
    char hex[65];
    char prompt[128];
    size_t n = 0;
    bool match = false;
    enum coffer_err r;
    int rc = 1;

    memset(&pl, 0, sizeof(pl));
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--officer") == 0 && i + 1 < argc) {
            officer = argv[++i];
        } else if (strcmp(argv[i], "--sha256") == 0 && i + 1 < argc) {
            given = argv[++i];
        } else {
            officer = NULL;
            break;
        }
    }
    if (argc < 2 || officer == NULL || given == NULL ||
        coffer_uuid_parse(argv[1], &id) != COFFER_OK) {
        fprintf(stderr, "usage: coffer ceremony approve PLAN --officer NAME --sha256 HEX\n");
        return 2;
    }
    if ((r = cli_open_db(&c)) != COFFER_OK) {
        cli_fail("opening the database", r);
        cli_close(&c);
        return 2;
    }
    if ((r = coffer_store_plan_get(c.st, &id, &pl)) != COFFER_OK) {
        rc = cli_fail("loading the plan", r);
        goto out;
    }
    sha256_hex(pl.description, pl.description_len, sha, hex);
    fwrite(pl.description, 1, pl.description_len, stdout);
    printf("\nsha256: %s\n", hex);
    fflush(stdout);
    if (!coffer_mem_equal(sha, pl.sha256, sizeof(sha))) {
        fprintf(stderr, "coffer: refused: the stored description no longer hashes to the "
                        "SHA-256 recorded with it (altered)\n");
        goto out;
    }
    if (!hex_equal(given, hex)) {
        fprintf(stderr,
                "coffer: refused: the SHA-256 you gave is not this plan's description's "
                "(%s); read it again from the record\n",
                hex);
        goto out;
    }
    if (pl.state != COFFER_PLAN_OPEN) {
        fprintf(stderr, "coffer: refused: the plan is %s\n", coffer_plan_state_str(pl.state));
        goto out;
    }
    if (pl.now_us >= pl.expires_us) {
        fprintf(stderr, "coffer: refused: the plan has expired; prepare it again\n");
        goto out;
    }
    if ((r = coffer_store_officer_get(c.st, officer, &off)) != COFFER_OK) {
        rc = cli_fail("refused", r);
        goto out;
    }
    if (off.removed) {
        fprintf(stderr, "coffer: refused: officer %s has been removed\n", officer);
        goto out;
    }
    if ((r = coffer_store_plan_approvals(c.st, &id, &ap, &n)) != COFFER_OK) {
        rc = cli_fail("loading approvals", r);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ap[i].officer, officer) == 0) {
            fprintf(stderr, "coffer: refused: officer %s has approved this plan already\n",
                    officer);
            goto out;
        }
    }
    snprintf(prompt, sizeof(prompt), "Officer %s, passphrase: ", officer);
    if ((r = coffer_passphrase_read(prompt, &pass)) != COFFER_OK) {
        rc = cli_fail("reading the passphrase", r);
        goto out;
    }
    if ((r = coffer_passphrase_verify(pass, off.passphrase_hash, &match)) != COFFER_OK) {
        rc = cli_fail("checking the passphrase", r);
        goto out;
    }
    if (!match) {
        fprintf(stderr, "coffer: refused: wrong passphrase for officer %s; nothing recorded\n",
                officer);
        goto out;
    }
    if ((r = coffer_store_plan_approve(c.st, &id, officer, sha)) != COFFER_OK) {
        rc = cli_fail("refused", r);
        goto out;
    }
    printf("approval recorded: officer %s approved plan %s (sha256 %s)\n", officer, argv[1], hex);
    rc = 0;
out:
    coffer_secret_free(&pass);
    coffer_wipe(&off, sizeof(off));
    coffer_free(ap);
    coffer_store_plan_cleanup(&pl);
    cli_close(&c);
    return rc;
}

/* ---- show ----------------------------------------------------------------------------- */

/* Verifies sig over msg with the SubjectPublicKeyInfo spki: 1 valid, 0 not. */
static int verify_sig(const unsigned char *spki, size_t spki_len, const char *msg, size_t len,
                      const unsigned char *sig, size_t sig_len)
{
    const unsigned char *p = spki;
    EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long)spki_len);
    EVP_MD_CTX *ctx = NULL;
    int ok = 0;

    if (pkey == NULL || p != spki + spki_len || (ctx = EVP_MD_CTX_new()) == NULL) {
        goto out;
    }
    ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
         EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)msg, len) == 1;
out:
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    return ok;
}

static int cmd_show(int argc, char **argv)
{
    struct coffer_store_ceremony_row row;
    struct coffer_store_audit_key *keys = NULL;
    const struct coffer_store_audit_key *key = NULL;
    struct coffer_uuid id;
    struct cli_ctx c;
    const char *pin = NULL;
    char idtext[COFFER_UUID_STR_LEN];
    char want_line[COFFER_UUID_STR_LEN + 16];
    char fphex[65];
    unsigned char fp[32];
    unsigned int fp_len = 0;
    size_t n = 0;
    enum coffer_err r;
    int rc = 1;

    memset(&row, 0, sizeof(row));
    if (argc == 4 && strcmp(argv[2], "--fingerprint") == 0) {
        pin = argv[3];
    } else if (argc != 2) {
        fprintf(stderr, "usage: coffer ceremony show ID [--fingerprint HEX]\n");
        return 2;
    }
    if (coffer_uuid_parse(argv[1], &id) != COFFER_OK) {
        fprintf(stderr, "coffer: '%s' is not a ceremony id\n", argv[1]);
        return 2;
    }
    if ((r = cli_open_db(&c)) != COFFER_OK) {
        cli_fail("opening the database", r);
        cli_close(&c);
        return 2;
    }
    if ((r = coffer_store_ceremony_get(c.st, &id, &row)) != COFFER_OK) {
        rc = cli_fail("loading the ceremony", r);
        goto out;
    }
    fwrite(row.transcript, 1, row.transcript_len, stdout);
    printf("\n");
    if (row.signature_len == 0) {
        fprintf(stderr, "coffer: the transcript is not signed\n");
        goto out;
    }
    if ((r = coffer_store_audit_key_list(c.st, &keys, &n)) != COFFER_OK) {
        rc = cli_fail("reading audit signing keys", r);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (keys[i].version == row.key_version) {
            key = &keys[i];
        }
    }
    if (key == NULL) {
        fprintf(stderr, "coffer: signature INVALID: audit signing key v%u is not recorded\n",
                row.key_version);
        goto out;
    }
    if (EVP_Digest(key->public_key, key->public_key_len, fp, &fp_len, EVP_sha256(), NULL) != 1 ||
        fp_len != 32) {
        rc = cli_fail("fingerprinting", coffer_err_set(COFFER_E_CRYPTO, "SHA-256 failed"));
        goto out;
    }
    coffer_hex(fp, sizeof(fp), fphex);
    if (pin != NULL && !hex_equal(pin, fphex)) {
        fprintf(stderr,
                "coffer: signature INVALID: audit signing key v%u has fingerprint %s, not the "
                "pinned %s\n",
                row.key_version, fphex, pin);
        goto out;
    }
    coffer_uuid_format(&row.id, idtext);
    snprintf(want_line, sizeof(want_line), "\nceremony: %s\n", idtext);
    if (strstr(row.transcript, want_line) == NULL) {
        fprintf(stderr, "coffer: signature INVALID: the transcript names another ceremony\n");
        goto out;
    }
    if (!verify_sig(key->public_key, key->public_key_len, row.transcript, row.transcript_len,
                    row.signature, row.signature_len)) {
        fprintf(stderr,
                "coffer: signature INVALID: the transcript does not verify with audit "
                "signing key v%u (fingerprint %s)\n",
                row.key_version, fphex);
        goto out;
    }
    printf("signature: valid, audit signing key v%u, fingerprint %s%s\n", row.key_version, fphex,
           pin != NULL ? " (pinned)" : "");
    rc = 0;
out:
    coffer_free(keys);
    coffer_store_ceremony_row_cleanup(&row);
    cli_close(&c);
    return rc;
}

int cli_ceremony(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "%s", ceremony_usage);
        return 2;
    }
    if (strcmp(argv[1], "init") == 0) {
        return cmd_init(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "officer") == 0) {
        return cmd_officer(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "prepare") == 0) {
        return cmd_prepare(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "approve") == 0) {
        return cmd_approve(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "run") == 0) {
        return cer_run(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "rotate-org-key") == 0) {
        return cer_rotate_org_key(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "show") == 0) {
        return cmd_show(argc - 1, argv + 1);
    }
    fprintf(stderr, "%s", ceremony_usage);
    return 2;
}
