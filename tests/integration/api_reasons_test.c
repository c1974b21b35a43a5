/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every reason code of the access decision (include/coffer/authz.h), reached
 * end to end over HTTPS against a real cofferd with this test's token and
 * database. Each access is answered to the agent as 200 (granted) or as the
 * same 403 permission_denied, and each leaves exactly one audit event whose
 * reason is the true one: granted, no_grant, wrong_phase, expired, revoked,
 * not_found, not_project_member, purpose_missing, approval_required and
 * integrity_error. The exceptions are for an agent holding a grant: an
 * access of a credential whose rule says reveal: false is 403
 * secretless_only, telling it to use the credential through Coffer, and one
 * the token cannot open is 503 token_unavailable, a fault worth retrying.
 *
 * Beside the certificates of the test CA, this test issues one for an agent
 * type that is declared but not a member of the project (openssl command),
 * and two built with OpenSSL's API: one valid now, which must be accepted,
 * and one whose validity ended yesterday, which must be refused. The token
 * is taken away from a freshly started one-worker server to reach
 * token_unavailable. No stored value may appear in the server's output or
 * in any audit row.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "expect.h"
#include "world.h"

#include "coffer/dev.h"
#include "coffer/mem.h"
#include "server/proc.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The stored values: none of them may be seen anywhere but in a granted answer. */
#define SECRET_STRIPE "sk_live_reasons_7d1e2f3a4b"
#define SECRET_DEPLOY "deploy-key-reasons-91c0ffee"
#define SECRET_SHORT "short-lived-reasons-55aa"
#define SECRET_REVOKE "revoke-me-reasons-0b0e"
#define SECRET_CRITICAL "vault-root-reasons-c417"
#define SECRET_TAMPER "tamper-me-reasons-d00d"
#define SECRET_HIDDEN "never-revealed-reasons-5ec1"
#define CREDS "/v1/orgs/dev/projects/demo/credentials"

static struct world w;
static struct coffer_dev_tls tls;
static char dir[] = "/tmp/coffer-reasons-test.XXXXXX";
static char config[PATH_MAX];
static char log_path[PATH_MAX];
static struct https_target target;
static pid_t server;

/* Certificates issued by this test, beside those of coffer_dev_tls_provision. */
static struct https_cert outsider = {
    "outsider", "spiffe://coffer.dev/org/dev/agent/outsider/outsider-1", "", ""};
static struct https_cert fresh = {"fresh", "spiffe://coffer.dev/org/dev/agent/deployer/deployer-1",
                                  "", ""};
static struct https_cert stale = {"stale", "spiffe://coffer.dev/org/dev/agent/deployer/deployer-1",
                                  "", ""};

static const char policy[] = "version: 1\n"
                             "org: dev\n"
                             "agent_types: {deployer: , analyst: , outsider: }\n"
                             "projects:\n"
                             "  demo:\n"
                             "    phases: [build, production]\n"
                             "    members: [deployer, analyst]\n"
                             "    credentials:\n"
                             "      stripe:\n"
                             "        grants: [{agent_type: deployer}]\n"
                             "      deploy-key:\n"
                             "        grants: [{agent_type: deployer, phases: [production]}]\n"
                             "      short-lived:\n"
                             "        grants: [{agent_type: deployer}]\n"
                             "      revokable:\n"
                             "        grants: [{agent_type: deployer}]\n"
                             "      vault-root:\n"
                             "        grants: [{agent_type: deployer}]\n"
                             "      tampered:\n"
                             "        grants: [{agent_type: deployer}]\n"
                             "      hidden:\n"
                             "        grants: [{agent_type: deployer}]\n"
                             "        usage:\n"
                             "          destinations: [\"https://api.example.com/v1\"]\n"
                             "          methods: [GET, POST]\n"
                             "          inject: [{header: Authorization, value: \"Bearer "
                             "{{api_key}}\"}]\n"
                             "        reveal: false\n";

static void request(const char *method, const char *path, const char *body, const char *who,
                    struct https_reply *out)
{
    expect_request(&target, method, path, body, who, NULL, out);
}

static void expect(const char *method, const char *path, const char *body, const char *who,
                   long status, const char *needle)
{
    expect_answer(&target, method, path, body, who, NULL, status, needle, NULL);
}

/* The highest audit event id so far: events after it belong to what follows. */
static long mark(void)
{
    return world_audit_mark(&w);
}

/* Asserts the events written after m, as "action/allowed/reason" joined by ",". */
static void expect_events(long m, const char *expected)
{
    assert_true(world_reasons_are(&w, m, expected));
}

/*
 * One access of name as who with the JSON body: a denial must be the plain
 * 403 permission_denied and a grant must carry value; either way exactly
 * one event, an access with reason, is written.
 */
static void access_is(const char *who, const char *name, const char *body, const char *reason,
                      const char *value)
{
    static struct https_reply r;
    char path[256];
    char want[128];
    long m = mark();
    bool granted = strcmp(reason, "granted") == 0;

    snprintf(path, sizeof(path), CREDS "/%s/access", name);
    request("POST", path, body, who, &r);
    if (granted) {
        if (r.status != 200 || strstr(r.body, value) == NULL) {
            fail_msg("access to %s as %s: %ld (want 200 with the value)", name, who, r.status);
        }
    } else {
        /* The agent learns nothing but the denial: not the reason, not the value. */
        if (r.status != 403 || strstr(r.body, "\"error\":\"permission_denied\"") == NULL ||
            strstr(r.body, reason) != NULL) {
            fail_msg("access to %s as %s: %ld %s (want the plain 403 permission_denied)", name, who,
                     r.status, r.body);
        }
    }
    snprintf(want, sizeof(want), "access/%s/%s", granted ? "true" : "false", reason);
    expect_events(m, want);
}

static void purpose_body(const char *purpose, char *out, size_t cap)
{
    assert_true((size_t)snprintf(out, cap, "{\"purpose\":\"%s\"}", purpose) < cap);
}

/* Stores name with one api_key value (and extra JSON fields, "" for none) as the admin. */
static void put(const char *name, const char *tier, const char *value, const char *extra_fields)
{
    char path[256];
    char body[1024];

    snprintf(path, sizeof(path), CREDS "/%s", name);
    snprintf(body, sizeof(body),
             "{\"type\":\"api_key\",\"tier\":\"%s\",\"keys\":{\"api_key\":\"%s\"}%s}", tier, value,
             extra_fields);
    expect("PUT", path, body, "admin", 201, "\"version\":1");
}

/* ---- The reasons, one by one -------------------------------------------------------- */

static void test_store(void **state)
{
    (void)state;
    put("stripe", "medium", SECRET_STRIPE, "");
    put("deploy-key", "medium", SECRET_DEPLOY, "");
    put("short-lived", "medium", SECRET_SHORT, ",\"ttl\":\"1s\"");
    put("revokable", "medium", SECRET_REVOKE, "");
    put("vault-root", "critical", SECRET_CRITICAL, "");
    put("tampered", "medium", SECRET_TAMPER, "");
    put("hidden", "medium", SECRET_HIDDEN, "");
}

static void test_granted_and_no_grant(void **state)
{
    (void)state;
    access_is("agent", "stripe", "{\"purpose\":\"deploy payments\"}", "granted", SECRET_STRIPE);
    /* analyst is a member of the project but has no grant of stripe. */
    access_is("agent2", "stripe", "{\"purpose\":\"deploy payments\"}", "no_grant", NULL);
}

static void test_not_found(void **state)
{
    long m;

    (void)state;
    access_is("agent", "nosuch", "{\"purpose\":\"deploy payments\"}", "not_found", NULL);
    /* Another org in the path: the lookup is by the agent's own org, and it fails the same way. */
    m = mark();
    expect("POST", "/v1/orgs/other/projects/demo/credentials/stripe/access",
           "{\"purpose\":\"deploy payments\"}", "agent", 403, "\"error\":\"permission_denied\"");
    expect_events(m, "access/false/not_found");
    /* A project that does not exist in the agent's org. */
    m = mark();
    expect("POST", "/v1/orgs/dev/projects/nosuch/credentials/stripe/access",
           "{\"purpose\":\"deploy payments\"}", "agent", 403, "\"error\":\"permission_denied\"");
    expect_events(m, "access/false/not_found");
}

static void test_not_project_member(void **state)
{
    (void)state;
    /* outsider is a declared agent type, but not a member of demo. */
    access_is("outsider", "stripe", "{\"purpose\":\"deploy payments\"}", "not_project_member",
              NULL);
}

static void test_purpose_missing(void **state)
{
    char purpose[600];
    char body[700];

    (void)state;
    access_is("agent", "stripe", "{}", "purpose_missing", NULL);
    access_is("agent", "stripe", "{\"purpose\":\"\"}", "purpose_missing", NULL);
    access_is("agent", "stripe", "{\"purpose\":\"deploy\\u0001now\"}", "purpose_missing", NULL);
    access_is("agent", "stripe", "{\"purpose\":\"deploy\\nnow\"}", "purpose_missing", NULL);
    memset(purpose, 'a', 513);
    purpose[513] = '\0';
    purpose_body(purpose, body, sizeof(body));
    access_is("agent", "stripe", body, "purpose_missing", NULL);
    /* 512 bytes is the limit, not beyond it. */
    purpose[512] = '\0';
    purpose_body(purpose, body, sizeof(body));
    access_is("agent", "stripe", body, "granted", SECRET_STRIPE);
    /* A refused purpose is not written into the log. */
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.audit_events WHERE reason = "
                             "'purpose_missing' AND purpose IS NOT NULL AND purpose <> ''",
                             "0"));
}

static void test_wrong_phase(void **state)
{
    (void)state;
    assert_true(world_sql_is(&w, "SELECT phase FROM coffer.projects WHERE name = 'demo'", "build"));
    access_is("agent", "deploy-key", "{\"purpose\":\"deploy payments\"}", "wrong_phase", NULL);
    expect("PUT", "/v1/orgs/dev/projects/demo/phase", "{\"phase\":\"production\"}", "admin", 200,
           "\"phase\":\"production\"");
    access_is("agent", "deploy-key", "{\"purpose\":\"deploy payments\"}", "granted", SECRET_DEPLOY);
}

static void test_expired(void **state)
{
    (void)state;
    /* The ttl of 1s has passed once the clock has moved on by more than a second. */
    sleep(2);
    access_is("agent", "short-lived", "{\"purpose\":\"deploy payments\"}", "expired", NULL);
}

static void test_revoked(void **state)
{
    (void)state;
    access_is("agent", "revokable", "{\"purpose\":\"deploy payments\"}", "granted", SECRET_REVOKE);
    expect("POST", CREDS "/revokable/revoke", "{\"reason\":\"leaked in a build log\"}", "admin",
           200, "\"revoked\":true");
    access_is("agent", "revokable", "{\"purpose\":\"deploy payments\"}", "revoked", NULL);
}

static void test_approval_required(void **state)
{
    (void)state;
    /* Granted to deployer, but critical: no standing approval, no value. */
    access_is("agent", "vault-root", "{\"purpose\":\"deploy payments\"}", "approval_required",
              NULL);
    assert_true(world_sql_is(&w, "SELECT count(*) FROM coffer.approvals", "0"));
}

static void test_integrity_error(void **state)
{
    (void)state;
    access_is("agent", "tampered", "{\"purpose\":\"deploy payments\"}", "granted", SECRET_TAMPER);
    assert_int_equal(world_sql(&w, "UPDATE coffer.credential_versions cv SET ciphertext = "
                                   "set_byte(cv.ciphertext, 3, get_byte(cv.ciphertext, 3) # 1) "
                                   "FROM coffer.credentials c WHERE c.id = cv.credential_id AND "
                                   "c.name = 'tampered'"),
                     1);
    access_is("agent", "tampered", "{\"purpose\":\"deploy payments\"}", "integrity_error", NULL);
    /* The other credentials are untouched. */
    access_is("agent", "stripe", "{\"purpose\":\"deploy payments\"}", "granted", SECRET_STRIPE);
}

static void test_secretless_only(void **state)
{
    static struct https_reply r;
    long m;

    (void)state;
    /* The grant holder learns that the values are never revealed, and how to use them instead. */
    m = mark();
    request("POST", CREDS "/hidden/access", "{\"purpose\":\"charge a card\"}", "agent", &r);
    if (r.status != 403 || strstr(r.body, "\"error\":\"secretless_only\"") == NULL ||
        strstr(r.body, "through Coffer") == NULL || strstr(r.body, "\"request_id\"") == NULL) {
        fail_msg("access to hidden: %ld %s (want 403 secretless_only)", r.status, r.body);
    }
    assert_null(strstr(r.body, SECRET_HIDDEN));
    expect_events(m, "access/false/secretless_only");
    assert_true(world_sql_is(&w,
                             "SELECT purpose || '|' || credential || '|' || version FROM "
                             "coffer.audit_events ORDER BY id DESC LIMIT 1",
                             "charge a card|hidden|1"));
    /* A member without a grant is told nothing more than for any other credential. */
    access_is("agent2", "hidden", "{\"purpose\":\"charge a card\"}", "no_grant", NULL);
    /* Whatever the purpose, the values stay hidden; a missing purpose is refused first. */
    access_is("agent", "hidden", "{}", "purpose_missing", NULL);
    m = mark();
    expect("POST", CREDS "/hidden/access", "{\"purpose\":\"debug\"}", "agent", 403,
           "\"error\":\"secretless_only\"");
    expect_events(m, "access/false/secretless_only");
    /* Its metadata stays readable to the grant holder: it may know the credential exists. */
    expect("GET", CREDS "/hidden", NULL, "agent", 200, "\"hidden\"");
}

/* ---- Certificates --------------------------------------------------------------------- */

static int add_ext(X509 *x, X509 *ca, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *e;
    int ok;

    X509V3_set_ctx(&ctx, ca, x, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (e == NULL) {
        return -1;
    }
    ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok == 1 ? 0 : -1;
}

/*
 * Issues a client certificate for c->spiffe under the test CA with
 * OpenSSL's API, valid from now + from_s to now + until_s (both may be in
 * the past, which the openssl command cannot do).
 */
static int issue_cert_api(struct https_cert *c, long serial, long from_s, long until_s)
{
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    FILE *f = NULL;
    char path[PATH_MAX + 16];
    char san[256];
    int rc = -1;

    snprintf(c->cert, sizeof(c->cert), "%s/%s.pem", dir, c->who);
    snprintf(c->key, sizeof(c->key), "%s/%s.key", dir, c->who);
    snprintf(san, sizeof(san), "URI:%s", c->spiffe);
    if ((f = fopen(tls.ca, "r")) == NULL || (ca = PEM_read_X509(f, NULL, NULL, NULL)) == NULL) {
        goto out;
    }
    fclose(f);
    snprintf(path, sizeof(path), "%s/ca.key", tls.dir);
    if ((f = fopen(path, "r")) == NULL ||
        (ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL) {
        goto out;
    }
    fclose(f);
    f = NULL;
    if ((key = EVP_EC_gen("P-256")) == NULL || (x = X509_new()) == NULL ||
        X509_set_version(x, 2) != 1 || ASN1_INTEGER_set(X509_get_serialNumber(x), serial) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(ca)) != 1 ||
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                   (const unsigned char *)"coffer-reasons-test", -1, -1, 0) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(x), from_s) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), until_s) == NULL || X509_set_pubkey(x, key) != 1 ||
        add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        add_ext(x, ca, NID_key_usage, "critical,digitalSignature") != 0 ||
        add_ext(x, ca, NID_ext_key_usage, "clientAuth") != 0 ||
        add_ext(x, ca, NID_subject_alt_name, san) != 0 || X509_sign(x, ca_key, EVP_sha256()) <= 0) {
        goto out;
    }
    if ((f = fopen(c->key, "w")) == NULL ||
        PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1 || fclose(f) != 0) {
        goto out;
    }
    if ((f = fopen(c->cert, "w")) == NULL || PEM_write_X509(f, x) != 1 || fclose(f) != 0) {
        f = NULL;
        goto out;
    }
    f = NULL;
    rc = 0;
out:
    if (f != NULL) {
        fclose(f);
    }
    X509_free(x);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
    X509_free(ca);
    return rc;
}

/* A certificate whose validity ended is refused; the same one made valid now is accepted. */
static void test_expired_certificate(void **state)
{
    static struct https_reply r;
    const char *cert;
    const char *key;
    CURLcode rc;
    long m;

    (void)state;
    /* The helper's certificates work when their dates are right. */
    access_is("fresh", "stripe", "{\"purpose\":\"deploy payments\"}", "granted", SECRET_STRIPE);
    m = mark();
    expect_identity(&target, "stale", &cert, &key);
    rc = https_request(&target, "POST", CREDS "/stripe/access", "{\"purpose\":\"deploy payments\"}",
                       cert, key, NULL, &r);
    /* Either the handshake fails or the request is refused as unauthenticated. */
    if (rc == CURLE_OK && r.status != 401) {
        fail_msg("an expired certificate got %ld %s", r.status, r.body);
    }
    if (rc == CURLE_OK) {
        assert_non_null(strstr(r.body, "\"error\":\"unauthenticated\""));
    }
    assert_null(strstr(r.body, SECRET_STRIPE));
    /* No access was decided for it. */
    expect_events(m, "");
    expect("GET", "/v1/health", NULL, NULL, 200, "ok");
}

/* ---- The server ------------------------------------------------------------------------ */

/* Starts cofferd with workers workers on a fresh port and waits until it is healthy. */
static int start_server(int workers)
{
    static const struct https_cert *const certs[] = {&outsider, &fresh, &stale};
    unsigned short port = https_free_port();

    https_target_dev(&target, port, &tls);
    target.certs = certs;
    target.n_certs = sizeof(certs) / sizeof(certs[0]);
    if (https_write_config(config, port, &tls, &w.h,
                           "workers: %d\n"
                           "log: info\n",
                           workers) != 0) {
        return -1;
    }
    return https_server_start(COFFERD_BIN, config, w.h.env.softhsm_conf, log_path, &target,
                              &server);
}

static int stop_server(void)
{
    return https_server_stop(&server, SIGTERM, 30000);
}

/* ---- token_unavailable ---------------------------------------------------------------- */

/* Whether the file at path contains needle. */
static bool file_contains(const char *path, const char *needle)
{
    static char buf[1 << 16];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        return false;
    }
    n = read(fd, buf, sizeof(buf));
    close(fd);
    return n > 0 && memmem(buf, (size_t)n, needle, strlen(needle)) != NULL;
}

/* The directory of this test's token: the one under tokendir whose token.object names it. */
static void find_token_dir(char *out, size_t cap)
{
    char line[PATH_MAX + 64];
    char tokendir[PATH_MAX] = "";
    char path[PATH_MAX * 2 + 32];
    FILE *f = fopen(w.h.env.softhsm_conf, "r");
    DIR *d;
    struct dirent *e;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, " directories.tokendir = %4095s", tokendir) == 1) {
            break;
        }
    }
    fclose(f);
    assert_true(tokendir[0] != '\0');
    d = opendir(tokendir);
    assert_non_null(d);
    out[0] = '\0';
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s/token.object", tokendir, e->d_name);
        if (file_contains(path, w.h.token_label)) {
            assert_true(out[0] == '\0');
            assert_true((size_t)snprintf(out, cap, "%s/%s", tokendir, e->d_name) < cap);
        }
    }
    closedir(d);
    assert_true(out[0] != '\0');
}

static uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

/* Adds one to the 64-bit big-endian generation counter at the start of path. */
static void bump_generation(const char *path)
{
    unsigned char g[8];
    int fd = open(path, O_RDWR | O_CLOEXEC);

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, g, sizeof(g), 0), (ssize_t)sizeof(g));
    put_be64(g, be64(g) + 1);
    assert_int_equal(pwrite(fd, g, sizeof(g), 0), (ssize_t)sizeof(g));
    close(fd);
}

/*
 * Flips the last byte of the IV of the encrypted CKA_CHECK_VALUE in every
 * object file of the token directory (SoftHSMv2's file format: a 64-bit
 * generation, then attributes as type, kind and value, byte strings with a
 * 64-bit length; a private object's byte strings are IV then AES-CBC
 * ciphertext). The 3-byte check value then decrypts with a padding byte
 * that cannot be valid, so the token fails every read of it, and the
 * generations are bumped so that a running process re-reads the files.
 * Calling it again undoes it. Returns the number of objects changed.
 */
static int flip_check_values(const char *token_dir)
{
    static unsigned char buf[1 << 16];
    char path[PATH_MAX * 2];
    DIR *d = opendir(token_dir);
    struct dirent *e;
    int changed = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        size_t off = 8;
        ssize_t n;
        int fd;

        if (len < 8 || strcmp(e->d_name + len - 7, ".object") != 0 ||
            strcmp(e->d_name, "token.object") == 0) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", token_dir, e->d_name);
        fd = open(path, O_RDWR | O_CLOEXEC);
        assert_true(fd >= 0);
        n = pread(fd, buf, sizeof(buf), 0);
        assert_true(n > 8 && (size_t)n < sizeof(buf));
        while (off + 16 <= (size_t)n) {
            uint64_t type = be64(buf + off);
            uint64_t kind = be64(buf + off + 8);
            uint64_t vlen;

            off += 16;
            if (kind == 1) { /* bool */
                off += 1;
            } else if (kind == 2) { /* unsigned long */
                off += 8;
            } else if (kind == 3) { /* byte string */
                assert_true(off + 8 <= (size_t)n);
                vlen = be64(buf + off);
                off += 8;
                assert_true(vlen <= (size_t)n - off);
                if (type == 0x90 && vlen >= 32) { /* CKA_CHECK_VALUE: IV + one block at least */
                    buf[off + 15] ^= 0x01;
                    assert_int_equal(pwrite(fd, buf + off + 15, 1, (off_t)(off + 15)), 1);
                    changed++;
                }
                off += vlen;
            } else {
                /* Attribute maps and mechanism sets: none on a secret key; stop reading. */
                break;
            }
        }
        close(fd);
        bump_generation(path);
    }
    closedir(d);
    snprintf(path, sizeof(path), "%s/generation", token_dir);
    bump_generation(path);
    return changed;
}

/*
 * The token failing under a one-worker server that has not yet used a key:
 * an allowed access cannot be unsealed, and the agent gets 503
 * token_unavailable, with the same reason in the audit log, never the value.
 *
 * Making the directory unreadable does not do it here: the tests run as
 * root, which reads a directory of mode 000 all the same. Moving the whole
 * directory away makes the master key vanish instead of failing (answered
 * 404 not_found, with no event), which is not what this test is about; so
 * the token's stored check values are made undecryptable instead.
 */
static void test_token_unavailable(void **state)
{
    static struct https_reply r;
    char token_dir[PATH_MAX];
    long m;

    (void)state;
    find_token_dir(token_dir, sizeof(token_dir));
    assert_int_equal(stop_server(), 0);
    assert_int_equal(start_server(1), 0);
    m = mark();
    assert_true(flip_check_values(token_dir) >= 1);
    request("POST", CREDS "/stripe/access", "{\"purpose\":\"deploy payments\"}", "agent", &r);
    assert_true(flip_check_values(token_dir) >= 1);
    assert_null(strstr(r.body, SECRET_STRIPE));
    if (r.status != 503 || strstr(r.body, "\"error\":\"token_unavailable\"") == NULL) {
        fail_msg("token failing: %ld %s (want 503 token_unavailable)", r.status, r.body);
    }
    expect_events(m, "access/false/token_unavailable");
    /* With the token whole again, the same worker serves the value. */
    access_is("agent", "stripe", "{\"purpose\":\"deploy payments\"}", "granted", SECRET_STRIPE);
}

/* ---- No value anywhere ------------------------------------------------------------------ */

static void test_no_secret_leaked(void **state)
{
    static const char *const secrets[] = {SECRET_STRIPE, SECRET_DEPLOY,   SECRET_SHORT,
                                          SECRET_REVOKE, SECRET_CRITICAL, SECRET_TAMPER,
                                          SECRET_HIDDEN};
    static char buf[1 << 20];
    char sql[256];
    ssize_t n;
    int fd;

    (void)state;
    /* Every reason was reached and audited. */
    assert_true(world_sql_is(&w,
                             "SELECT string_agg(DISTINCT reason, ',' ORDER BY reason) FROM "
                             "coffer.audit_events WHERE action = 'access'",
                             "approval_required,expired,granted,integrity_error,no_grant,"
                             "not_found,not_project_member,purpose_missing,revoked,"
                             "secretless_only,token_unavailable,wrong_phase"));
    fd = open(log_path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = '\0';
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        assert_null(strstr(buf, secrets[i]));
        /* The whole row as text: every column of every event. */
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM coffer.audit_events e WHERE e::text LIKE '%%%s%%'",
                 secrets[i]);
        assert_true(world_sql_is(&w, sql, "0"));
    }
}

static void test_sigterm_stops_cleanly(void **state)
{
    (void)state;
    assert_int_equal(stop_server(), 0);
}

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL || coffer_dev_tls_provision(dir, &tls) != COFFER_OK) {
        return -1;
    }
    if (https_issue_cert(&tls, dir, &outsider, 2001) != 0 ||
        issue_cert_api(&fresh, 2002, -60, 86400) != 0 ||
        issue_cert_api(&stale, 2003, -2 * 86400, -86400) != 0) {
        fprintf(stderr, "could not issue the test's certificates\n");
        return -1;
    }
    if (world_apply_policy(&w, policy) != 0) {
        return -1;
    }
    snprintf(config, sizeof(config), "%s/coffer.yaml", dir);
    snprintf(log_path, sizeof(log_path), "%s/cofferd.log", dir);
    return start_server(2);
}

static int teardown(void **state)
{
    (void)state;
    (void)https_server_stop(&server, SIGKILL, 10000);
    https_remove_dir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_granted_and_no_grant),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_not_project_member),
        cmocka_unit_test(test_purpose_missing),
        cmocka_unit_test(test_wrong_phase),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_revoked),
        cmocka_unit_test(test_approval_required),
        cmocka_unit_test(test_integrity_error),
        cmocka_unit_test(test_secretless_only),
        cmocka_unit_test(test_expired_certificate),
        cmocka_unit_test(test_token_unavailable),
        cmocka_unit_test(test_no_secret_leaked),
        cmocka_unit_test(test_sigterm_stops_cleanly),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    world_open("api_reasons", "dev", &w);
    world_add_project(&w, "demo", NULL);
    rc = cmocka_run_group_tests(tests, setup, teardown);
    world_close(&w);
    curl_global_cleanup();
    return rc;
}
