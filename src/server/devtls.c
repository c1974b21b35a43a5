/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded default's test CA (see coffer/dev.h): DIR/tls with a
 * self-signed CA and the server, admin and agent certificates it issues.
 *
 * This file owns DIR/tls and nothing else. Its keys lie unencrypted on disk
 * because the embedded default is for development only; it never logs or
 * formats key material, never writes outside DIR/tls, never follows a link
 * there, and never leaves files of two different CAs side by side: a set
 * that is incomplete, inconsistent or about to expire is replaced as a whole.
 */
#include "coffer/dev.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "coffer/log.h"
#include "coffer/spiffe.h"
#include "server/dev_int.h"

#define CA_NAME "Coffer dev CA"
#define ORG_NAME "Coffer development"
#define CURVE "P-256"
#define CA_DAYS 3650
#define LEAF_DAYS 365
#define BACKDATE_SECONDS 3600  /* tolerates a client clock somewhat behind */
#define MIN_LEFT_SECONDS 86400 /* a set that expires sooner is made anew */
#define SERIAL_BITS 128
#define PEM_MAX 16384 /* a file of the set is far smaller; a larger one is not ours */
#define KEY_MODE 0600
#define CERT_MODE 0644

#define DEV_ID(path) "spiffe://" COFFER_DEV_TRUST_DOMAIN "/org/" COFFER_DEV_ORG path
#define ADMIN_ID DEV_ID("/admin/admin")
#define AGENT_ID DEV_ID("/agent/deployer/deployer-1")
#define AGENT2_ID DEV_ID("/agent/analyst/analyst-1")

enum leaf { LEAF_SERVER, LEAF_ADMIN, LEAF_AGENT, LEAF_AGENT2, LEAF_COUNT };

struct leaf_spec {
    const char *stem;   /* file names: <stem>.pem and <stem>.key */
    const char *cn;     /* subject common name, for people reading the certificate */
    const char *san;    /* subjectAltName, in OpenSSL's configuration syntax */
    const char *eku;    /* extendedKeyUsage */
    const char *spiffe; /* the principal a client certificate names; NULL for the server */
};

static const struct leaf_spec leaves[LEAF_COUNT] = {
    [LEAF_SERVER] = {"server", "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1", "serverAuth",
                     NULL},
    [LEAF_ADMIN] = {"admin", "admin", "URI:" ADMIN_ID, "clientAuth", ADMIN_ID},
    [LEAF_AGENT] = {"agent", "deployer-1", "URI:" AGENT_ID, "clientAuth", AGENT_ID},
    [LEAF_AGENT2] = {"agent2", "analyst-1", "URI:" AGENT2_ID, "clientAuth", AGENT2_ID},
};

struct ext {
    int nid;
    const char *value;
};

/* The set in memory, loaded from DIR/tls or newly made. */
struct tls_set {
    EVP_PKEY *ca_key;
    X509 *ca;
    EVP_PKEY *key[LEAF_COUNT];
    X509 *cert[LEAF_COUNT];
};

/* Why the set on disk cannot be reused: the first reason found, for the log. */
struct verdict {
    bool stale;
    char why[PATH_MAX + 128];
};

COFFER_PRINTF(2, 3)
static void mark_stale(struct verdict *v, const char *fmt, ...)
{
    va_list ap;

    if (v->stale) {
        return;
    }
    v->stale = true;
    va_start(ap, fmt);
    vsnprintf(v->why, sizeof(v->why), fmt, ap);
    va_end(ap);
}

/* Records an OpenSSL failure with OpenSSL's own reason (never key material) and clears its queue.
 */
static enum coffer_err crypto_fail(const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char msg[160] = "no reason given";

    if (e != 0) {
        ERR_error_string_n(e, msg, sizeof(msg));
    }
    ERR_clear_error();
    return coffer_err_set(COFFER_E_CRYPTO, "%s failed: %s", what, msg);
}

/* Keys of the set are never encrypted: a password prompt must never appear. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static char *leaf_path(struct coffer_dev_tls *t, enum leaf l, bool key)
{
    switch (l) {
    case LEAF_SERVER:
        return key ? t->server_key : t->server_cert;
    case LEAF_ADMIN:
        return key ? t->admin_key : t->admin_cert;
    case LEAF_AGENT:
        return key ? t->agent_key : t->agent_cert;
    case LEAF_AGENT2:
        return key ? t->agent2_key : t->agent2_cert;
    case LEAF_COUNT:
    default:
        return NULL;
    }
}

static void set_free(struct tls_set *s)
{
    EVP_PKEY_free(s->ca_key);
    X509_free(s->ca);
    for (int i = 0; i < LEAF_COUNT; i++) {
        EVP_PKEY_free(s->key[i]);
        X509_free(s->cert[i]);
    }
    *s = (struct tls_set){0};
}

static enum coffer_err fill_paths(const char *dir, struct coffer_dev_tls *t, char *ca_key,
                                  size_t ca_key_len)
{
    enum coffer_err r;

    if ((r = dev_fmt(t->dir, sizeof(t->dir), "the tls directory", "%s/tls", dir)) != COFFER_OK ||
        (r = dev_fmt(t->ca, sizeof(t->ca), "the CA certificate path", "%s/ca.pem", t->dir)) !=
            COFFER_OK ||
        (r = dev_fmt(ca_key, ca_key_len, "the CA key path", "%s/ca.key", t->dir)) != COFFER_OK) {
        return r;
    }
    for (int i = 0; i < LEAF_COUNT; i++) {
        if ((r = dev_fmt(leaf_path(t, i, false), PATH_MAX, "a certificate path", "%s/%s.pem",
                         t->dir, leaves[i].stem)) != COFFER_OK ||
            (r = dev_fmt(leaf_path(t, i, true), PATH_MAX, "a key path", "%s/%s.key", t->dir,
                         leaves[i].stem)) != COFFER_OK) {
            return r;
        }
    }
    return COFFER_OK;
}

/* ---- Files ----------------------------------------------------------------- */

/* Creates DIR/tls with mode 0700 if missing; an existing one must be ours and closed to others. */
static enum coffer_err ensure_tls_dir(const char *path)
{
    struct stat st;

    if (mkdir(path, 0700) == 0) {
        /* The umask may have taken the owner's bits too; the set needs all three. */
        if (chmod(path, 0700) != 0) {
            return coffer_err_set(COFFER_E_IO, "chmod 0700 %s: %s", path, strerror(errno));
        }
    } else if (errno != EEXIST) {
        return coffer_err_set(COFFER_E_IO, "creating directory %s: %s", path, strerror(errno));
    }
    if (lstat(path, &st) != 0) {
        return coffer_err_set(COFFER_E_IO, "inspecting %s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) {
        return coffer_err_set(COFFER_E_INVALID, "%s exists and is not a directory", path);
    }
    if (st.st_uid != geteuid()) {
        return coffer_err_set(COFFER_E_INVALID, "%s is owned by uid %ld, expected uid %ld", path,
                              (long)st.st_uid, (long)geteuid());
    }
    if ((st.st_mode & 077) != 0) {
        return coffer_err_set(COFFER_E_INVALID,
                              "%s has mode %04o; it holds private keys and must be 0700", path,
                              (unsigned)(st.st_mode & 07777));
    }
    return COFFER_OK;
}

/*
 * Checks one file of the set: *present false if it does not exist. A link,
 * another kind of file, another owner or a mode that lets others read a key
 * (or write a certificate) is refused rather than replaced: something that
 * is not this file's doing is there, and a person should look.
 */
static enum coffer_err check_file(const char *path, bool key, bool *present)
{
    mode_t forbidden = key ? 077 : 022;
    struct stat st;

    *present = false;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) {
            return COFFER_OK;
        }
        return coffer_err_set(COFFER_E_IO, "inspecting %s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        return coffer_err_set(COFFER_E_INVALID, "%s is not a regular file (a link or another kind)",
                              path);
    }
    if (st.st_uid != geteuid()) {
        return coffer_err_set(COFFER_E_INVALID, "%s is owned by uid %ld, expected uid %ld", path,
                              (long)st.st_uid, (long)geteuid());
    }
    if ((st.st_mode & forbidden) != 0) {
        return coffer_err_set(COFFER_E_INVALID, "%s has mode %04o; a %s must be %04o or stricter",
                              path, (unsigned)(st.st_mode & 07777), key ? "key" : "certificate",
                              key ? KEY_MODE : CERT_MODE);
    }
    *present = true;
    return COFFER_OK;
}

/* Checks every file of the set; *missing counts those that do not exist, v says which first. */
static enum coffer_err check_files(struct coffer_dev_tls *t, const char *ca_key, int *missing,
                                   struct verdict *v)
{
    enum coffer_err r;
    bool present;

    *missing = 0;
    for (int i = -1; i < LEAF_COUNT; i++) {
        for (int k = 0; k < 2; k++) {
            const char *path = i < 0 ? (k ? ca_key : t->ca) : leaf_path(t, i, k != 0);

            if ((r = check_file(path, k != 0, &present)) != COFFER_OK) {
                return r;
            }
            if (!present) {
                (*missing)++;
                mark_stale(v, "%s is missing", path);
            }
        }
    }
    return COFFER_OK;
}

static enum coffer_err write_all(int fd, const void *p, size_t n, const char *path)
{
    const unsigned char *c = p;

    while (n > 0) {
        ssize_t w = write(fd, c, n);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return coffer_err_set(COFFER_E_IO, "writing %s: %s", path, strerror(errno));
        }
        c += w;
        n -= (size_t)w;
    }
    return COFFER_OK;
}

/* Writes path through path.tmp and rename, so a reader sees the old file or the new, never half. */
static enum coffer_err write_atomic(const char *path, const void *p, size_t n, mode_t mode)
{
    char tmp[PATH_MAX];
    enum coffer_err r;
    int fd;

    if ((r = dev_fmt(tmp, sizeof(tmp), "a temporary file name", "%s.tmp", path)) != COFFER_OK) {
        return r;
    }
    if (unlink(tmp) != 0 && errno != ENOENT) {
        return coffer_err_set(COFFER_E_IO, "removing stale %s: %s", tmp, strerror(errno));
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        return coffer_err_set(COFFER_E_IO, "creating %s: %s", tmp, strerror(errno));
    }
    /* The mode is exact whatever the umask. */
    if (fchmod(fd, mode) != 0) {
        r = coffer_err_set(COFFER_E_IO, "chmod %04o %s: %s", (unsigned)mode, tmp, strerror(errno));
    }
    if (r == COFFER_OK) {
        r = write_all(fd, p, n, tmp);
    }
    if (r == COFFER_OK && fsync(fd) != 0) {
        r = coffer_err_set(COFFER_E_IO, "syncing %s: %s", tmp, strerror(errno));
    }
    if (close(fd) != 0 && r == COFFER_OK) {
        r = coffer_err_set(COFFER_E_IO, "closing %s: %s", tmp, strerror(errno));
    }
    if (r == COFFER_OK && rename(tmp, path) != 0) {
        r = coffer_err_set(COFFER_E_IO, "renaming %s to %s: %s", tmp, path, strerror(errno));
    }
    if (r != COFFER_OK) {
        (void)unlink(tmp);
    }
    return r;
}

/* Writes a certificate, or (cert NULL) a key as unencrypted PKCS#8, to path as PEM. */
static enum coffer_err write_pem(const char *path, X509 *cert, EVP_PKEY *key)
{
    /* A key's PEM passes through memory that is wiped when the BIO is freed. */
    BIO *bio = BIO_new(cert != NULL ? BIO_s_mem() : BIO_s_secmem());
    enum coffer_err r;
    char *data = NULL;
    long n;
    int ok;

    if (bio == NULL) {
        return crypto_fail("BIO_new");
    }
    if (cert != NULL) {
        ok = PEM_write_bio_X509(bio, cert);
    } else {
        ok = PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
    }
    n = BIO_get_mem_data(bio, &data);
    if (ok != 1 || n <= 0 || data == NULL) {
        r = crypto_fail(cert != NULL ? "encoding a certificate" : "encoding a private key");
        goto out;
    }
    r = write_atomic(path, data, (size_t)n, cert != NULL ? CERT_MODE : KEY_MODE);
out:
    BIO_free(bio);
    return r;
}

/* Makes the renames of the set durable. */
static enum coffer_err sync_dir(const char *path)
{
    enum coffer_err r = COFFER_OK;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0) {
        return coffer_err_set(COFFER_E_IO, "opening %s: %s", path, strerror(errno));
    }
    if (fsync(fd) != 0) {
        r = coffer_err_set(COFFER_E_IO, "syncing %s: %s", path, strerror(errno));
    }
    close(fd);
    return r;
}

/*
 * Parses the PEM file at path as a certificate (cert not NULL) or a private
 * key. A file that does not parse marks the set stale; only a read failure
 * is an error.
 */
static enum coffer_err load_pem(const char *path, X509 **cert, EVP_PKEY **key, struct verdict *v)
{
    char buf[PEM_MAX];
    enum coffer_err r;
    BIO *bio = NULL;
    size_t len = 0;

    r = dev_read_small(path, buf, sizeof(buf), &len);
    if (r == COFFER_E_NOT_FOUND) {
        coffer_err_clear();
        mark_stale(v, "%s is missing", path);
        return COFFER_OK;
    }
    if (r != COFFER_OK) {
        return r;
    }
    if (len == sizeof(buf) - 1) {
        mark_stale(v, "%s is larger than %d bytes", path, PEM_MAX - 2);
        goto out;
    }
    if ((bio = BIO_new_mem_buf(buf, (int)len)) == NULL) {
        r = crypto_fail("BIO_new_mem_buf");
        goto out;
    }
    if (cert != NULL) {
        *cert = PEM_read_bio_X509(bio, NULL, no_password, NULL);
    } else {
        *key = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
    }
    if (cert != NULL ? *cert == NULL : *key == NULL) {
        ERR_clear_error();
        mark_stale(v, "%s does not hold a PEM %s", path,
                   cert != NULL ? "certificate" : "unencrypted private key");
    }
out:
    BIO_free(bio);
    OPENSSL_cleanse(buf, sizeof(buf));
    return r;
}

/* ---- Checking a set -------------------------------------------------------- */

/* Marks v stale unless x is valid now and for at least MIN_LEFT_SECONDS more. */
static void check_times(const X509 *x, const char *path, struct verdict *v)
{
    time_t soon = time(NULL) + MIN_LEFT_SECONDS;

    if (X509_cmp_current_time(X509_get0_notBefore(x)) != -1) {
        mark_stale(v, "%s is not valid yet", path);
    } else if (X509_cmp_time(X509_get0_notAfter(x), &soon) != 1) {
        mark_stale(v, "%s expires within a day", path);
    }
}

/* Marks v stale unless the client certificate names exactly spec's principal. */
static void check_principal(X509 *cert, const struct leaf_spec *spec, const char *path,
                            struct verdict *v)
{
    struct coffer_principal p;
    char id[COFFER_SPIFFE_MAX + 1];

    if (coffer_spiffe_from_cert(cert, COFFER_DEV_TRUST_DOMAIN, &p) != COFFER_OK ||
        coffer_spiffe_format(&p, id, sizeof(id)) != COFFER_OK || strcmp(id, spec->spiffe) != 0) {
        coffer_err_clear();
        mark_stale(v, "%s does not name %s", path, spec->spiffe);
    }
}

static void check_leaf(const struct tls_set *s, enum leaf l, const char *path, struct verdict *v)
{
    X509 *cert = s->cert[l];

    if (X509_check_private_key(cert, s->key[l]) != 1) {
        mark_stale(v, "%s does not match its key", path);
    } else if (X509_check_issued(s->ca, cert) != X509_V_OK ||
               X509_verify(cert, X509_get0_pubkey(s->ca)) != 1) {
        mark_stale(v, "%s is not issued by the CA of ca.pem", path);
    } else if (leaves[l].spiffe != NULL) {
        check_principal(cert, &leaves[l], path, v);
    } else if (X509_check_host(cert, "localhost", 0, 0, NULL) != 1 ||
               X509_check_ip_asc(cert, "127.0.0.1", 0) != 1 ||
               X509_check_ip_asc(cert, "::1", 0) != 1) {
        mark_stale(v, "%s does not name localhost, 127.0.0.1 and ::1", path);
    }
    check_times(cert, path, v);
    ERR_clear_error();
}

/* Loads the set from disk into s and marks v stale if any part of it cannot be reused. */
static enum coffer_err inspect_set(struct coffer_dev_tls *t, const char *ca_key, struct tls_set *s,
                                   struct verdict *v)
{
    enum coffer_err r;

    if ((r = load_pem(t->ca, &s->ca, NULL, v)) != COFFER_OK ||
        (r = load_pem(ca_key, NULL, &s->ca_key, v)) != COFFER_OK) {
        return r;
    }
    for (int i = 0; i < LEAF_COUNT; i++) {
        if ((r = load_pem(leaf_path(t, i, false), &s->cert[i], NULL, v)) != COFFER_OK ||
            (r = load_pem(leaf_path(t, i, true), NULL, &s->key[i], v)) != COFFER_OK) {
            return r;
        }
    }
    if (v->stale) {
        return COFFER_OK;
    }
    if (X509_check_private_key(s->ca, s->ca_key) != 1 || X509_check_ca(s->ca) != 1 ||
        X509_check_issued(s->ca, s->ca) != X509_V_OK ||
        X509_verify(s->ca, X509_get0_pubkey(s->ca)) != 1) {
        mark_stale(v, "%s is not a self-signed CA matching ca.key", t->ca);
    }
    check_times(s->ca, t->ca, v);
    for (int i = 0; i < LEAF_COUNT && !v->stale; i++) {
        check_leaf(s, i, leaf_path(t, i, false), v);
    }
    ERR_clear_error();
    return COFFER_OK;
}

/* ---- Making a set ---------------------------------------------------------- */

static enum coffer_err make_key(EVP_PKEY **out)
{
    *out = EVP_EC_gen(CURVE);
    if (*out == NULL) {
        return crypto_fail("generating an EC " CURVE " key");
    }
    return COFFER_OK;
}

/* A random positive serial of exactly SERIAL_BITS bits (the top one set, so never zero). */
static enum coffer_err set_serial(X509 *x)
{
    enum coffer_err r = COFFER_OK;
    BIGNUM *bn = BN_new();

    if (bn == NULL || BN_rand(bn, SERIAL_BITS, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) != 1 ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL) {
        r = crypto_fail("making a serial number");
    }
    BN_free(bn);
    return r;
}

static enum coffer_err set_names(X509 *x, const char *cn, X509 *issuer)
{
    X509_NAME *name = X509_get_subject_name(x);

    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)ORG_NAME, -1, -1,
                                   0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                   0) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(issuer != NULL ? issuer : x)) != 1) {
        return crypto_fail("setting a certificate's names");
    }
    return COFFER_OK;
}

/* Adds the extensions exts (ending with nid 0) in the context of subject x and its issuer. */
static enum coffer_err add_exts(X509 *x, X509 *issuer, const struct ext *exts)
{
    X509V3_CTX ctx;

    X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    for (size_t i = 0; exts[i].nid != 0; i++) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, exts[i].nid, exts[i].value);
        int ok = e != NULL && X509_add_ext(x, e, -1) == 1;

        X509_EXTENSION_free(e);
        if (!ok) {
            return crypto_fail(OBJ_nid2sn(exts[i].nid));
        }
    }
    return COFFER_OK;
}

/*
 * Issues a certificate for key, valid from an hour ago for days days,
 * signed with SHA-256 by issuer_key (issuer NULL: self-signed).
 */
static enum coffer_err issue(EVP_PKEY *key, const char *cn, long days, const struct ext *exts,
                             X509 *issuer, EVP_PKEY *issuer_key, X509 **out)
{
    enum coffer_err r;
    X509 *x = X509_new();

    *out = NULL;
    if (x == NULL) {
        return crypto_fail("X509_new");
    }
    if (X509_set_version(x, X509_VERSION_3) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(x), -BACKDATE_SECONDS) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) == NULL ||
        X509_set_pubkey(x, key) != 1) {
        r = crypto_fail("filling a certificate");
        goto out;
    }
    if ((r = set_serial(x)) != COFFER_OK || (r = set_names(x, cn, issuer)) != COFFER_OK ||
        (r = add_exts(x, issuer, exts)) != COFFER_OK) {
        goto out;
    }
    if (X509_sign(x, issuer_key, EVP_sha256()) <= 0) {
        r = crypto_fail("signing a certificate");
        goto out;
    }
    *out = x;
    x = NULL;
out:
    X509_free(x);
    return r;
}

static enum coffer_err make_set(struct tls_set *s)
{
    static const struct ext ca_exts[] = {
        {NID_basic_constraints, "critical,CA:TRUE"},
        {NID_key_usage, "critical,keyCertSign,cRLSign"},
        {NID_subject_key_identifier, "hash"},
        {0, NULL},
    };
    enum coffer_err r;

    if ((r = make_key(&s->ca_key)) != COFFER_OK ||
        (r = issue(s->ca_key, CA_NAME, CA_DAYS, ca_exts, NULL, s->ca_key, &s->ca)) != COFFER_OK) {
        return r;
    }
    for (int i = 0; i < LEAF_COUNT; i++) {
        const struct ext exts[] = {
            {NID_basic_constraints, "critical,CA:FALSE"},
            {NID_key_usage, "critical,digitalSignature"},
            {NID_ext_key_usage, leaves[i].eku},
            {NID_subject_alt_name, leaves[i].san},
            {NID_subject_key_identifier, "hash"},
            {NID_authority_key_identifier, "keyid:always"},
            {0, NULL},
        };

        if ((r = make_key(&s->key[i])) != COFFER_OK ||
            (r = issue(s->key[i], leaves[i].cn, LEAF_DAYS, exts, s->ca, s->ca_key, &s->cert[i])) !=
                COFFER_OK) {
            return r;
        }
    }
    return COFFER_OK;
}

/*
 * Writes the set. The CA goes first: should this stop half way, the leaves
 * left from an older set no longer verify against ca.pem and the next run
 * makes everything anew.
 */
static enum coffer_err write_set(struct coffer_dev_tls *t, const char *ca_key,
                                 const struct tls_set *s)
{
    enum coffer_err r;

    if ((r = write_pem(ca_key, NULL, s->ca_key)) != COFFER_OK ||
        (r = write_pem(t->ca, s->ca, NULL)) != COFFER_OK) {
        return r;
    }
    for (int i = 0; i < LEAF_COUNT; i++) {
        if ((r = write_pem(leaf_path(t, i, true), NULL, s->key[i])) != COFFER_OK ||
            (r = write_pem(leaf_path(t, i, false), s->cert[i], NULL)) != COFFER_OK) {
            return r;
        }
    }
    return sync_dir(t->dir);
}

enum coffer_err coffer_dev_tls_provision(const char *dir, struct coffer_dev_tls *out)
{
    struct tls_set set = {0};
    struct verdict v = {0};
    char ca_key[PATH_MAX];
    enum coffer_err r;
    int missing = 0;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_dev_tls_provision: out is NULL");
    }
    *out = (struct coffer_dev_tls){0};
    if (dir == NULL || dir[0] == '\0') {
        return coffer_err_set(COFFER_E_INVALID, "coffer_dev_tls_provision: no directory given");
    }
    if ((r = fill_paths(dir, out, ca_key, sizeof(ca_key))) != COFFER_OK ||
        (r = ensure_tls_dir(out->dir)) != COFFER_OK ||
        (r = check_files(out, ca_key, &missing, &v)) != COFFER_OK) {
        return r;
    }
    if (!v.stale && (r = inspect_set(out, ca_key, &set, &v)) != COFFER_OK) {
        goto out;
    }
    if (!v.stale) {
        coffer_info(LOG_MOD, "test CA and certificates in %s are valid; reusing them", out->dir);
        goto out;
    }
    if (missing == 2 * (LEAF_COUNT + 1)) {
        coffer_info(LOG_MOD, "creating the test CA and certificates in %s", out->dir);
    } else {
        coffer_info(LOG_MOD, "%s; making a new test CA and certificates", v.why);
    }
    set_free(&set);
    if ((r = make_set(&set)) != COFFER_OK || (r = write_set(out, ca_key, &set)) != COFFER_OK) {
        r = coffer_err_wrap(r, "provisioning the test CA in %s", out->dir);
    }
out:
    set_free(&set);
    return r;
}
