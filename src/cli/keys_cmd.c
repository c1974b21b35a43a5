/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Local key-management, org and database subcommands of coffer. They run on a
 * host that reaches the token and the database, and print identifiers, key
 * check values, public keys and counts, never secret key material or
 * credential values.
 */
#include "cli/cli.h"

#include "coffer/buf.h"
#include "coffer/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void kcv_hex(const unsigned char kcv[COFFER_KCV_LEN], char out[2 * COFFER_KCV_LEN + 1])
{
    coffer_hex(kcv, COFFER_KCV_LEN, out);
}

static int org_by_name(struct cli_ctx *c, const char *name, struct coffer_org *org)
{
    enum coffer_err r = coffer_store_org_by_name(c->st, name, org);

    if (r != COFFER_OK) {
        return cli_fail(name, r);
    }
    return 0;
}

static int status(struct cli_ctx *c, const char *org_name)
{
    struct coffer_store_mk *mks = NULL;
    struct coffer_store_org_key *oks = NULL;
    struct coffer_org org;
    size_t n_mk = 0;
    size_t n_ok = 0;
    int64_t stale_cv = 0;
    int64_t stale_ok = 0;
    char kcv[2 * COFFER_KCV_LEN + 1];
    char id[COFFER_UUID_STR_LEN];
    enum coffer_err r;
    size_t i;
    int rc = 1;

    if (org_name != NULL && org_by_name(c, org_name, &org) != 0) {
        return 1;
    }
    if ((r = coffer_store_mk_list(c->st, &mks, &n_mk)) != COFFER_OK) {
        rc = cli_fail("listing master keys", r);
        goto out;
    }
    printf("master keys\n  %-8s %-16s %-10s %-7s %s\n", "version", "label", "state", "kcv",
           "org key versions wrapped");
    for (i = 0; i < n_mk; i++) {
        int64_t refs = 0;

        if ((r = coffer_store_mk_count_refs(c->st, mks[i].version, &refs)) != COFFER_OK) {
            rc = cli_fail("counting references", r);
            goto out;
        }
        kcv_hex(mks[i].kcv, kcv);
        printf("  %-8u %-16s %-10s %-7s %lld\n", mks[i].version, mks[i].label,
               coffer_key_state_str(mks[i].state), kcv, (long long)refs);
    }
    if ((r = coffer_store_org_key_list(c->st, org_name != NULL ? &org.id : NULL, &oks, &n_ok)) !=
        COFFER_OK) {
        rc = cli_fail("listing org keys", r);
        goto out;
    }
    printf("org keys\n  %-36s %-8s %-10s %-4s %-7s %s\n", "org", "version", "state", "mk", "kcv",
           "credential versions wrapped");
    for (i = 0; i < n_ok; i++) {
        int64_t refs = 0;

        if ((r = coffer_store_org_key_count_refs(c->st, &oks[i].org_id, oks[i].version, &refs)) !=
            COFFER_OK) {
            rc = cli_fail("counting references", r);
            goto out;
        }
        coffer_uuid_format(&oks[i].org_id, id);
        kcv_hex(oks[i].kcv, kcv);
        printf("  %-36s %-8u %-10s v%-3u %-7s %lld\n", id, oks[i].version,
               coffer_key_state_str(oks[i].state), oks[i].mk_version, kcv, (long long)refs);
    }
    if ((r = coffer_store_count_stale(c->st, &stale_cv, &stale_ok)) != COFFER_OK) {
        rc = cli_fail("counting stale rows", r);
        goto out;
    }
    printf("rotation\n  credential versions not under their org's current key: %lld\n"
           "  org key versions not under the current master key: %lld\n",
           (long long)stale_cv, (long long)stale_ok);
    if (stale_cv + stale_ok == 0) {
        printf("  nothing left to sweep: every row is under the current key versions\n");
    } else {
        /* The count falls as cofferd's background sweeper (or `coffer keys sweep`) works. */
        printf("  sweeping: %lld left (cofferd sweeps in the background; without a running "
               "cofferd, run `coffer keys sweep`)\n",
               (long long)(stale_cv + stale_ok));
    }
    rc = 0;
out:
    coffer_free(mks);
    coffer_free(oks);
    return rc;
}

static void print_created(const char *what, const struct coffer_keys_created *k, double ms)
{
    char kcv[2 * COFFER_KCV_LEN + 1];

    kcv_hex(k->kcv, kcv);
    printf("%s v%u is current (KCV %s), in %.1f ms; existing rows move when read and by "
           "cofferd's background sweeper (or `coffer keys sweep` where no cofferd runs)\n",
           what, k->version, kcv, ms);
}

static int rotate_org(struct cli_ctx *c, const char *org_name)
{
    struct coffer_keys_created created;
    struct coffer_org org;
    enum coffer_err r;
    double t0;

    if (org_by_name(c, org_name, &org) != 0) {
        return 1;
    }
    t0 = now_ms();
    if ((r = coffer_keys_org_rotate(c->k, c->st, &org.id, &created)) != COFFER_OK) {
        return cli_fail("rotating the org key", r);
    }
    print_created("org key", &created, now_ms() - t0);
    return 0;
}

static int rotate_mk(struct cli_ctx *c)
{
    struct coffer_keys_created created;
    enum coffer_err r;
    double t0 = now_ms();

    if ((r = coffer_keys_mk_create(c->k, c->st, &created)) != COFFER_OK) {
        return cli_fail("creating a master key", r);
    }
    print_created("master key", &created, now_ms() - t0);
    printf("token attributes read back: CKA_SENSITIVE=%s CKA_EXTRACTABLE=%s "
           "CKA_NEVER_EXTRACTABLE=%s\n",
           created.attrs.sensitive ? "TRUE" : "FALSE", created.attrs.extractable ? "TRUE" : "FALSE",
           created.attrs.never_extractable ? "TRUE" : "FALSE");
    return 0;
}

/*
 * Creates the token MAC key, which digests bearer tokens. Until key
 * ceremonies exist, an operator runs this once per token before issuing
 * tokens; it refuses when the key exists already.
 */
static int create_token_mac(struct cli_ctx *c)
{
    struct coffer_keys_created created;
    enum coffer_err r;

    if ((r = coffer_keys_token_mac_create(c->k, &created)) != COFFER_OK) {
        return cli_fail("creating the token MAC key", r);
    }
    printf("token MAC key %s created (HMAC-SHA256, %lu bytes)\n", created.label,
           created.attrs.value_len);
    printf("token attributes read back: CKA_SENSITIVE=%s CKA_EXTRACTABLE=%s "
           "CKA_NEVER_EXTRACTABLE=%s\n",
           created.attrs.sensitive ? "TRUE" : "FALSE", created.attrs.extractable ? "TRUE" : "FALSE",
           created.attrs.never_extractable ? "TRUE" : "FALSE");
    return 0;
}

/*
 * Prints the SHA-256 fingerprint of a SubjectPublicKeyInfo DER in hex and
 * the key in PEM, the two forms auditors pin and verify with.
 */
static int print_public_key(const unsigned char *spki, size_t len)
{
    unsigned char fp[32];
    char hex[2 * sizeof(fp) + 1];
    const unsigned char *p = spki;
    unsigned int fp_len = 0;
    EVP_PKEY *pkey = NULL;
    int rc = 1;

    if (EVP_Digest(spki, len, fp, &fp_len, EVP_sha256(), NULL) != 1 || fp_len != sizeof(fp) ||
        (pkey = d2i_PUBKEY(NULL, &p, (long)len)) == NULL || p != spki + len) {
        fprintf(stderr, "coffer: the new key's public key does not encode as expected\n");
        goto out;
    }
    coffer_hex(fp, sizeof(fp), hex);
    printf("fingerprint (SHA-256 of the SubjectPublicKeyInfo): %s\n", hex);
    if (PEM_write_PUBKEY(stdout, pkey) != 1) {
        fprintf(stderr, "coffer: writing the public key as PEM failed\n");
        goto out;
    }
    rc = 0;
out:
    EVP_PKEY_free(pkey);
    return rc;
}

/*
 * Creates the next audit signing key (ECDSA P-256 in the token), records its
 * public key as the current one, and prints what auditors need to trust it.
 * The private key never leaves the token; only public values are printed.
 */
static int create_audit_key(struct cli_ctx *c)
{
    struct coffer_keys_audit_key key;
    enum coffer_err r;

    if ((r = coffer_keys_audit_key_create(c->k, c->st, &key)) != COFFER_OK) {
        return cli_fail("creating the audit signing key", r);
    }
    printf("audit signing key %s created (ECDSA P-256), version %u, recorded as current\n",
           key.label, (unsigned)key.version);
    printf("token attributes read back: CKA_SENSITIVE=%s CKA_EXTRACTABLE=%s "
           "CKA_NEVER_EXTRACTABLE=%s CKA_SIGN=%s\n",
           key.attrs.common.sensitive ? "TRUE" : "FALSE",
           key.attrs.common.extractable ? "TRUE" : "FALSE",
           key.attrs.common.never_extractable ? "TRUE" : "FALSE",
           key.attrs.sign ? "TRUE" : "FALSE");
    return print_public_key(key.spki, key.spki_len);
}

static int sweep(struct cli_ctx *c, int argc, char **argv)
{
    struct coffer_keys_sweep sw;
    unsigned long batch = 256;
    enum coffer_err r;

    if (argc == 2 && strcmp(argv[0], "--batch") == 0) {
        char *end = NULL;

        batch = strtoul(argv[1], &end, 10);
        if (*end != '\0' || batch == 0 || batch > 100000) {
            fprintf(stderr, "coffer: --batch wants a number from 1 to 100000\n");
            return 2;
        }
    } else if (argc != 0) {
        fprintf(stderr, "usage: coffer keys sweep [--batch N]\n");
        return 2;
    }
    memset(&sw, 0, sizeof(sw));
    while (!sw.done) {
        if ((r = coffer_keys_sweep_step(c->k, c->st, batch, &sw)) != COFFER_OK) {
            return cli_fail("sweeping", r);
        }
        printf("org keys rewrapped %lld, credential versions rewrapped %lld, already moved %lld, "
               "failed %lld, remaining %lld\n",
               (long long)sw.org_keys_rewrapped, (long long)sw.rewrapped, (long long)sw.lost_races,
               (long long)sw.failed, (long long)sw.remaining);
    }
    return sw.failed > 0 ? 1 : 0;
}

static int retire(struct cli_ctx *c, bool mk, const char *org_name, const char *ver)
{
    struct coffer_org org;
    uint32_t version = 0;
    int64_t refs = 0;
    enum coffer_err r;

    if ((r = cli_parse_version(ver, &version)) != COFFER_OK) {
        return cli_fail("retire", r);
    }
    if (mk) {
        r = coffer_keys_mk_retire(c->k, c->st, version, &refs);
    } else {
        if (org_by_name(c, org_name, &org) != 0) {
            return 1;
        }
        r = coffer_keys_org_key_retire(c->k, c->st, &org.id, version, &refs);
    }
    if (r != COFFER_OK) {
        return cli_fail("retire", r);
    }
    printf("%s v%u retired\n", mk ? "master key" : "org key", version);
    return 0;
}

static int destroy_mk(struct cli_ctx *c, const char *ver)
{
    struct coffer_keys_created gone;
    uint32_t version = 0;
    int64_t refs = 0;
    char kcv[2 * COFFER_KCV_LEN + 1];
    enum coffer_err r;

    if ((r = cli_parse_version(ver, &version)) != COFFER_OK) {
        return cli_fail("destroy-mk", r);
    }
    if ((r = coffer_keys_mk_destroy(c->k, c->st, version, &refs, &gone)) != COFFER_OK) {
        return cli_fail("destroying the master key", r);
    }
    kcv_hex(gone.kcv, kcv);
    printf("master key %s (KCV %s) destroyed: no object labelled %s is left in the token\n",
           gone.label, kcv, gone.label);
    return 0;
}

/*
 * Destroys a retired org key version. No confirmation is asked: like
 * destroy-mk it refuses anything that is not retired and still wraps
 * nothing, so no readable credential can be lost by it.
 */
static int destroy_org(struct cli_ctx *c, const char *org_name, const char *ver)
{
    struct coffer_keys_created gone;
    struct coffer_store_org_key row;
    struct coffer_org org;
    uint32_t version = 0;
    int64_t refs = 0;
    char kcv[2 * COFFER_KCV_LEN + 1];
    enum coffer_err r;

    if ((r = cli_parse_version(ver, &version)) != COFFER_OK) {
        return cli_fail("destroy-org", r);
    }
    if (org_by_name(c, org_name, &org) != 0) {
        return 1;
    }
    if ((r = coffer_keys_org_key_destroy(c->k, c->st, &org.id, version, &refs, &gone)) !=
        COFFER_OK) {
        return cli_fail("destroying the org key", r);
    }
    kcv_hex(gone.kcv, kcv);
    printf("org %s key v%u (KCV %s) destroyed: its wrapped key is overwritten in the database\n",
           org.name, gone.version, kcv);
    /* The row keeps the master key version that wrapped it: name what a backup still needs. */
    if (coffer_store_org_key_get(c->st, &org.id, version, &row) == COFFER_OK) {
        printf("a database backup taken before still holds it wrapped under master key v%u "
               "until that master key version is destroyed\n",
               row.mk_version);
    }
    return 0;
}

/* Reads one line from stdin into buf without its newline; false at end of input. */
static bool read_confirmation(char *buf, size_t cap)
{
    size_t len;

    if (fgets(buf, (int)cap, stdin) == NULL) {
        return false;
    }
    len = strlen(buf);
    if (len > 0 && buf[len - 1] == '\n') {
        buf[--len] = '\0';
    }
    if (len > 0 && buf[len - 1] == '\r') {
        buf[--len] = '\0';
    }
    return true;
}

/*
 * Crypto-shreds an org after the operator types its name again. There is no
 * --yes: an irreversible step that cannot be scripted by accident.
 */
static int shred_org(struct cli_ctx *c, int argc, char **argv)
{
    struct coffer_keys_shred_report rep;
    struct coffer_org org;
    char typed[COFFER_NAME_MAX + 8];
    char old_kcv[2 * COFFER_KCV_LEN + 1];
    char new_kcv[2 * COFFER_KCV_LEN + 1];
    enum coffer_err r;

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--yes") == 0 || strcmp(argv[i], "-y") == 0) {
            fprintf(stderr, "coffer: shred-org takes no --yes; the org name must be typed\n");
            return 2;
        }
    }
    if (argc != 1) {
        fprintf(stderr, "usage: coffer keys shred-org ORG\n");
        return 2;
    }
    if (org_by_name(c, argv[0], &org) != 0) {
        return 1;
    }
    printf("Shredding org %s destroys every version of its org key and every older master key\n"
           "version. Its credentials become unreadable here and in every copy or backup of the\n"
           "database. This cannot be undone.\n",
           org.name);
    printf("type the org name to confirm: ");
    fflush(stdout);
    if (!read_confirmation(typed, sizeof(typed)) || strcmp(typed, org.name) != 0) {
        fprintf(stderr, "\ncoffer: the name typed does not match %s; nothing was done\n", org.name);
        return 1;
    }
    if ((r = coffer_keys_org_shred(c->k, c->st, &org.id, &rep)) != COFFER_OK) {
        return cli_fail("shredding the org", r);
    }
    kcv_hex(rep.old_mk_kcv, old_kcv);
    kcv_hex(rep.new_mk_kcv, new_kcv);
    printf("\norg %s shredded: %u org key version(s) destroyed, %lld credential version(s) "
           "unreadable\n",
           org.name, rep.org_key_versions, (long long)rep.credential_versions);
    if (rep.old_mk_version > 0) {
        printf("master key v%u (KCV %s) and every older version destroyed in the token\n",
               rep.old_mk_version, old_kcv);
    }
    printf("master key v%u (KCV %s) is current; %lld org key version(s) of other orgs moved to "
           "it\n",
           rep.new_mk_version, new_kcv, (long long)rep.org_keys_rewrapped);
    return 0;
}

int cli_keys(int argc, char **argv)
{
    struct cli_ctx c;
    enum coffer_err r;
    int rc = 2;

    if (argc < 2) {
        fprintf(stderr, "usage: coffer keys status|rotate-org|rotate-mk|sweep|retire-org|"
                        "retire-mk|destroy-mk|destroy-org|shred-org|create-token-mac|"
                        "create-audit-key ...\n");
        return 2;
    }
    if ((r = cli_open(&c)) != COFFER_OK) {
        return cli_fail("opening the token and database", r);
    }
    if (strcmp(argv[1], "status") == 0 && argc <= 3) {
        rc = status(&c, argc == 3 ? argv[2] : NULL);
    } else if (strcmp(argv[1], "rotate-org") == 0 && argc == 3) {
        rc = rotate_org(&c, argv[2]);
    } else if (strcmp(argv[1], "rotate-mk") == 0 && argc == 2) {
        rc = rotate_mk(&c);
    } else if (strcmp(argv[1], "sweep") == 0) {
        rc = sweep(&c, argc - 2, argv + 2);
    } else if (strcmp(argv[1], "retire-org") == 0 && argc == 4) {
        rc = retire(&c, false, argv[2], argv[3]);
    } else if (strcmp(argv[1], "retire-mk") == 0 && argc == 3) {
        rc = retire(&c, true, NULL, argv[2]);
    } else if (strcmp(argv[1], "destroy-mk") == 0 && argc == 3) {
        rc = destroy_mk(&c, argv[2]);
    } else if (strcmp(argv[1], "destroy-org") == 0 && argc == 4) {
        rc = destroy_org(&c, argv[2], argv[3]);
    } else if (strcmp(argv[1], "shred-org") == 0) {
        rc = shred_org(&c, argc - 2, argv + 2);
    } else if (strcmp(argv[1], "create-token-mac") == 0 && argc == 2) {
        rc = create_token_mac(&c);
    } else if (strcmp(argv[1], "create-audit-key") == 0 && argc == 2) {
        rc = create_audit_key(&c);
    } else {
        fprintf(stderr, "coffer keys: unknown subcommand or wrong arguments (see coffer help)\n");
    }
    cli_close(&c);
    return rc;
}

int cli_org(int argc, char **argv)
{
    struct coffer_keys_created key;
    struct coffer_project proj;
    struct coffer_org org;
    struct cli_ctx c;
    char kcv[2 * COFFER_KCV_LEN + 1];
    enum coffer_err r;
    int rc = 2;

    if (argc < 3) {
        fprintf(stderr, "usage: coffer org create NAME | coffer org add-project ORG NAME\n");
        return 2;
    }
    if ((r = cli_open(&c)) != COFFER_OK) {
        return cli_fail("opening the token and database", r);
    }
    if (strcmp(argv[1], "create") == 0 && argc == 3) {
        if ((r = coffer_keys_org_create(c.k, c.st, argv[2], &org, &key)) != COFFER_OK) {
            rc = cli_fail("creating the org", r);
        } else {
            kcv_hex(key.kcv, kcv);
            printf("org %s created with org key v1 (KCV %s)\n", argv[2], kcv);
            rc = 0;
        }
    } else if (strcmp(argv[1], "add-project") == 0 && argc == 4) {
        rc = org_by_name(&c, argv[2], &org);
        if (rc == 0 &&
            (r = coffer_store_project_insert(c.st, &org.id, argv[3], &proj)) != COFFER_OK) {
            rc = cli_fail("adding the project", r);
        } else if (rc == 0) {
            printf("project %s/%s created\n", argv[2], argv[3]);
        }
    } else {
        fprintf(stderr, "coffer org: unknown subcommand or wrong arguments\n");
    }
    cli_close(&c);
    return rc;
}

int cli_db(int argc, char **argv)
{
    enum coffer_err r;
    const char *conninfo;
    int applied = 0;

    if (argc == 3 && strcmp(argv[1], "bootstrap") == 0) {
        conninfo = getenv("COFFER_DATABASE_SUPERUSER");
        if (conninfo == NULL || conninfo[0] == '\0') {
            fprintf(stderr, "coffer: COFFER_DATABASE_SUPERUSER is not set\n");
            return 1;
        }
        if ((r = coffer_store_bootstrap(conninfo, argv[2])) != COFFER_OK) {
            return cli_fail("bootstrapping the database", r);
        }
        printf("roles coffer_owner, coffer_app, coffer_auditor and database %s are in place\n",
               argv[2]);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "migrate") == 0) {
        conninfo = getenv("COFFER_DATABASE_OWNER");
        if (conninfo == NULL || conninfo[0] == '\0') {
            fprintf(stderr, "coffer: COFFER_DATABASE_OWNER is not set\n");
            return 1;
        }
        if ((r = coffer_store_migrate(conninfo, &applied)) != COFFER_OK) {
            return cli_fail("migrating", r);
        }
        printf("applied %d migration(s); schema at version %d\n", applied,
               coffer_store_schema_latest());
        return 0;
    }
    fprintf(stderr, "usage: coffer db bootstrap DBNAME | coffer db migrate\n");
    return 2;
}
