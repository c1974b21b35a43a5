/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `coffer demo DIR`: provisions (or reuses) the embedded default in DIR and
 * walks through the core, printing each step: store a credential, read it
 * back, let the policy decide who may access one, move the project to
 * another phase, rotate the org key, read again (lazily rewrapped), tamper
 * with the ciphertext as a database user would, and show the integrity
 * error.
 *
 * Values are never printed: the demo shows lengths and SHA-256 fingerprints,
 * which is enough to see that what comes back is what went in. The tamper
 * step runs psql as coffer_owner, the way an attacker with database access
 * would, because only the store module may speak to PostgreSQL from Coffer.
 */
#include "cli/cli.h"

#include "coffer/arena.h"
#include "coffer/authz.h"
#include "coffer/buf.h"
#include "coffer/dev.h"
#include "coffer/log.h"
#include "coffer/mem.h"
#include "server/proc.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_DIR "/var/tmp/coffer-demo"

static void step(int n, const char *title)
{
    printf("\n== %d. %s\n", n, title);
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* First 8 bytes of SHA-256, in hex: identifies a value without showing it. */
static void fingerprint(const struct coffer_secret *s, char out[17])
{
    struct coffer_secret_view v = coffer_secret_view(s);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    if (EVP_Digest(v.data, v.len, md, &len, EVP_sha256(), NULL) != 1) {
        snprintf(out, 17, "(unavailable)");
        return;
    }
    coffer_hex(md, 8, out);
}

static void show_keys(const struct coffer_keyset *ks, const struct coffer_keyset *expect)
{
    size_t i;

    for (i = 0; i < coffer_keyset_count(ks); i++) {
        const struct coffer_secret *v = coffer_keyset_value(ks, i);
        const struct coffer_secret *e =
            expect != NULL ? coffer_keyset_get(expect, coffer_keyset_name(ks, i)) : NULL;
        char fp[17];

        fingerprint(v, fp);
        printf("     %-10s %3zu bytes  sha256 %s…%s\n", coffer_keyset_name(ks, i),
               coffer_secret_len(v), fp,
               e == NULL ? ""
                         : (coffer_secret_equal(v, e) ? "  identical to what was stored"
                                                      : "  DIFFERENT"));
    }
}

static int show_row(struct cli_ctx *c, const struct coffer_org *org,
                    const struct coffer_project *proj, const char *name)
{
    struct coffer_store_cred_version v;
    char wrapped[2 * COFFER_WRAPPED_MAX + 1];
    enum coffer_err r;

    if ((r = coffer_store_cred_version_get(c->st, &org->id, &proj->id, name, 0, &v)) != COFFER_OK) {
        return cli_fail("reading the stored row", r);
    }
    coffer_hex(v.wrapped_cek, 8, wrapped);
    printf("   stored row: version %u, %s ciphertext %zu bytes + 12-byte nonce + 16-byte tag,\n"
           "               CEK wrapped (%s) under org key v%u: %s… (%zu bytes)\n",
           v.version, v.aead, v.ciphertext_len, v.wrap_mech, v.org_key_version, wrapped,
           v.wrapped_cek_len);
    coffer_store_cred_version_cleanup(&v);
    return 0;
}

/* Reads the current version back and shows it against what was stored. */
static int read_and_show(struct cli_ctx *c, const struct coffer_org *org,
                         const struct coffer_project *proj, const char *name,
                         const struct coffer_keyset *stored, struct coffer_keys_read_info *info)
{
    struct coffer_keyset *back = NULL;
    enum coffer_err r;

    if ((r = coffer_keys_cred_read(c->k, c->st, &org->id, &proj->id, name, 0, &back, info)) !=
        COFFER_OK) {
        return cli_fail("reading", r);
    }
    show_keys(back, stored);
    coffer_keyset_free(&back);
    return 0;
}

static enum coffer_err demo_keyset(struct coffer_keyset **out)
{
    unsigned char pw[24];
    char pw_text[2 * sizeof(pw) + 1];
    enum coffer_err r;

    if (RAND_bytes(pw, sizeof(pw)) != 1) {
        return coffer_err_set(COFFER_E_CRYPTO, "RAND_bytes");
    }
    coffer_hex(pw, sizeof(pw), pw_text);
    coffer_wipe(pw, sizeof(pw));
    if ((r = coffer_keyset_new(out)) != COFFER_OK ||
        (r = coffer_keyset_add(*out, "username", "warehouse_loader", 16)) != COFFER_OK ||
        (r = coffer_keyset_add(*out, "password", pw_text, strlen(pw_text))) != COFFER_OK ||
        (r = coffer_keyset_add(*out, "host", "db.internal.example:5432", 24)) != COFFER_OK) {
        coffer_wipe(pw_text, sizeof(pw_text));
        coffer_keyset_free(out);
        return r;
    }
    coffer_wipe(pw_text, sizeof(pw_text));
    return COFFER_OK;
}

static const char *find_psql(void)
{
    static const char *const paths[] = {"/usr/bin/psql", "/usr/lib/postgresql/15/bin/psql"};
    size_t i;

    for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        if (access(paths[i], X_OK) == 0) {
            return paths[i];
        }
    }
    return NULL;
}

/* Flips one bit of the ciphertext of (org, cred) as coffer_owner, through psql. */
static int tamper(const struct coffer_dev_env *env, const struct coffer_org *org, const char *cred)
{
    const char *psql = find_psql();
    char id[COFFER_UUID_STR_LEN];
    char sql[768];
    char status[64];
    int st = 0;
    enum coffer_err r;

    if (psql == NULL) {
        fprintf(stderr, "coffer demo: psql not found (install postgresql-client)\n");
        return 1;
    }
    coffer_uuid_format(&org->id, id);
    /* Both values are ours (a UUID and a fixed name), not input. */
    snprintf(sql, sizeof(sql),
             "UPDATE coffer.credential_versions cv SET ciphertext = set_byte(cv.ciphertext, 5, "
             "get_byte(cv.ciphertext, 5) # 1) FROM coffer.credentials c WHERE c.id = "
             "cv.credential_id AND c.org_id = '%s' AND c.name = '%s' AND cv.version = "
             "c.current_version",
             id, cred);
    {
        const char *argv[] = {psql, "-X",          "-q", "-v", "ON_ERROR_STOP=1",
                              "-d", env->db_owner, "-c", sql,  NULL};
        const char *envp[] = {"PATH=/usr/bin:/bin", "LC_ALL=C", NULL};
        struct coffer_proc_spec spec = {argv,  envp, NULL, STDOUT_FILENO, STDERR_FILENO,
                                        false, 0,    0,    false};

        printf("   $ psql -d '%s' -c \"%s\"\n", env->db_owner, sql);
        fflush(stdout);
        if ((r = coffer_proc_run(&spec, 30000, &st)) != COFFER_OK) {
            return cli_fail("running psql", r);
        }
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        coffer_proc_status_str(st, status, sizeof(status));
        fprintf(stderr, "coffer demo: psql %s\n", status);
        return 1;
    }
    return 0;
}

/* Decides one access to dev/demo/<cred> as the server will, and prints the outcome. */
static int decide(struct cli_ctx *c, const char *org, const char *cred, const char *type,
                  const char *instance, const char *purpose)
{
    struct coffer_arena *a = NULL;
    struct coffer_authz_input in = {0};
    struct coffer_store_access acc;
    struct coffer_authz_decision d;
    enum coffer_err r;

    if ((r = coffer_arena_new(0, &a)) != COFFER_OK ||
        (r = coffer_store_access_load(c->st, org, COFFER_DEV_PROJECT, cred, a, &in, &acc)) !=
            COFFER_OK) {
        coffer_arena_free(&a);
        return cli_fail("loading the access", r);
    }
    in.principal.org = COFFER_DEV_ORG;
    in.principal.agent_type = type;
    in.principal.instance = instance;
    in.purpose = purpose;
    in.purpose_len = strlen(purpose);
    coffer_authz_decide(&in, &d);
    printf("   %-9s %-8s/%-4s %-26s -> %s%s\n", org, type, instance, purpose,
           coffer_authz_reason_str(d.reason), d.purpose_unexpected ? " (purpose_unexpected)" : "");
    coffer_arena_free(&a);
    return 0;
}

/* Steps 4 and 5: the policy of policy/dev.yaml deciding accesses, and a phase change. */
static int policy_steps(struct cli_ctx *c, const struct coffer_org *org,
                        const struct coffer_project *proj)
{
    static const char *const names[] = {"api_key"};
    struct coffer_keyset *ks = NULL;
    struct coffer_keys_write w;
    struct coffer_store_phase_result moved;
    struct coffer_arena *a = NULL;
    unsigned char value[24];
    uint32_t version = 0;
    enum coffer_err r;
    int rc = 1;

    step(4, "Let the policy decide who may access a credential");
    if (RAND_bytes(value, sizeof(value)) != 1 || (r = coffer_keyset_new(&ks)) != COFFER_OK ||
        (r = coffer_keyset_add(ks, names[0], value, sizeof(value))) != COFFER_OK) {
        OPENSSL_cleanse(value, sizeof(value));
        coffer_keyset_free(&ks);
        return cli_fail("building the credential", COFFER_E_CRYPTO);
    }
    OPENSSL_cleanse(value, sizeof(value));
    w.org_id = &org->id;
    w.project_id = &proj->id;
    w.name = "demo-api-key";
    w.type = "api_key";
    w.tier = "medium";
    w.keys = ks;
    r = coffer_keys_cred_write(c->k, c->st, &w, &version);
    coffer_keyset_free(&ks);
    if (r != COFFER_OK) {
        return cli_fail("storing demo-api-key", r);
    }
    printf("   policy/dev.yaml grants dev/demo/demo-api-key to agent type deployer, for\n"
           "   purposes \"deploy demo*\"; analyst is a member of the project without a grant.\n"
           "   stored version %u; each line is one decision (the agent would only ever see\n"
           "   permission_denied; the reason is for the audit log):\n",
           version);
    if (decide(c, COFFER_DEV_ORG, "demo-api-key", "deployer", "d-1", "deploy demo v1.4") != 0 ||
        decide(c, COFFER_DEV_ORG, "demo-api-key", "deployer", "d-1", "print it in the chat") != 0 ||
        decide(c, COFFER_DEV_ORG, "demo-api-key", "analyst", "a-1", "read demo metrics") != 0 ||
        decide(c, COFFER_DEV_ORG, "demo-api-key", "deployer", "d-1", "") != 0 ||
        decide(c, "other-org", "demo-api-key", "deployer", "d-1", "deploy demo v1.4") != 0) {
        return 1;
    }

    step(5, "Move the project to another phase");
    if ((r = coffer_arena_new(0, &a)) != COFFER_OK) {
        return cli_fail("moving the project", r);
    }
    r = coffer_store_project_phase(c->st, COFFER_DEV_ORG, COFFER_DEV_PROJECT, "production",
                                   "coffer demo", a, &moved);
    if (r == COFFER_OK && !moved.changed) {
        r = coffer_store_project_phase(c->st, COFFER_DEV_ORG, COFFER_DEV_PROJECT, "build",
                                       "coffer demo", a, &moved);
    }
    if (r != COFFER_OK) {
        rc = cli_fail("moving the project", r);
        goto out;
    }
    printf("   dev/demo: %s -> %s in one transaction (recorded in audit.phase_changes);\n"
           "   the grant names no phases, so the deployer is still granted:\n",
           moved.from, moved.to);
    rc = decide(c, COFFER_DEV_ORG, "demo-api-key", "deployer", "d-1", "deploy demo v1.5");
out:
    coffer_arena_free(&a);
    return rc;
}

static int run(struct coffer_dev_env *env, struct cli_ctx *c)
{
    struct coffer_keyset *stored = NULL;
    struct coffer_keyset *back = NULL;
    struct coffer_keys_read_info info;
    struct coffer_keys_created rot;
    struct coffer_org org;
    struct coffer_project proj;
    struct coffer_keys_write w;
    char name[64];
    uint32_t version = 0;
    enum coffer_err r;
    double t0;
    int rc = 1;

    if ((r = coffer_store_org_by_name(c->st, COFFER_DEV_ORG, &org)) != COFFER_OK ||
        (r = coffer_store_project_by_name(c->st, &org.id, COFFER_DEV_PROJECT, &proj)) !=
            COFFER_OK) {
        return cli_fail("finding dev/demo", r);
    }
    snprintf(name, sizeof(name), "warehouse-db-%ld", (long)time(NULL));

    step(2, "Store a credential");
    if ((r = demo_keyset(&stored)) != COFFER_OK) {
        return cli_fail("building the credential", r);
    }
    w.org_id = &org.id;
    w.project_id = &proj.id;
    w.name = name;
    w.type = "basic_auth";
    w.tier = "high";
    w.keys = stored;
    if ((r = coffer_keys_cred_write(c->k, c->st, &w, &version)) != COFFER_OK) {
        rc = cli_fail("storing", r);
        goto out;
    }
    printf("   dev/demo/%s version %u: a fresh CEK made in the token encrypted the values\n"
           "   with AES-256-GCM inside the token, bound to this row by its additional data\n",
           name, version);
    show_keys(stored, NULL);
    if (show_row(c, &org, &proj, name) != 0) {
        goto out;
    }

    step(3, "Read it back");
    if (read_and_show(c, &org, &proj, name, stored, &info) != 0) {
        goto out;
    }

    if (policy_steps(c, &org, &proj) != 0) {
        goto out;
    }

    step(6, "Rotate the org key");
    t0 = now_ms();
    if ((r = coffer_keys_org_rotate(c->k, c->st, &org.id, &rot)) != COFFER_OK) {
        rc = cli_fail("rotating", r);
        goto out;
    }
    printf("   org key v%u is current after %.1f ms; no credential row was touched:\n", rot.version,
           now_ms() - t0);
    if (show_row(c, &org, &proj, name) != 0) {
        goto out;
    }

    step(7, "Read again: the stale row is rewrapped on the way");
    if (read_and_show(c, &org, &proj, name, stored, &info) != 0) {
        goto out;
    }
    printf("   this read %s the CEK under org key v%u (compare-and-swap on the version)\n",
           info.rewrapped ? "rewrapped" : "found someone had already rewrapped",
           info.org_key_version);
    if (show_row(c, &org, &proj, name) != 0) {
        goto out;
    }

    step(8, "Tamper with the ciphertext in PostgreSQL");
    if (tamper(env, &org, name) != 0) {
        goto out;
    }
    r = coffer_keys_cred_read(c->k, c->st, &org.id, &proj.id, name, 0, &back, &info);
    if (r == COFFER_OK) {
        coffer_keyset_free(&back);
        fprintf(stderr, "coffer demo: the tampered row was accepted\n");
        goto out;
    }
    printf("   read refused: %s: %s\n   nothing was returned (%s)\n", coffer_err_str(r),
           coffer_err_detail(), back == NULL ? "no partial plaintext" : "BUG");
    if (r != COFFER_E_INTEGRITY) {
        goto out;
    }
    rc = 0;
out:
    coffer_keyset_free(&stored);
    return rc;
}

int cli_demo(int argc, char **argv)
{
    const char *dir = argc >= 2 ? argv[1] : DEFAULT_DIR;
    struct coffer_dev_env env;
    struct cli_ctx c;
    char kcv[2 * COFFER_KCV_LEN + 1];
    struct coffer_store_mk mk;
    enum coffer_err r;
    int rc;

    if (argc > 2) {
        fprintf(stderr, "usage: coffer demo [DIR]\n");
        return 2;
    }
    /* The steps are the output: keep them in order with any log line, and quiet routine logs. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (getenv("COFFER_LOG") == NULL) {
        coffer_log_set_level(COFFER_LOG_WARN);
    }
    step(1, "Provision the embedded default");
    if ((r = coffer_dev_up(dir, &env)) != COFFER_OK) {
        return cli_fail("provisioning", r);
    }
    memset(&c, 0, sizeof(c));
    c.p11cfg.module = env.module;
    c.p11cfg.token_uri = env.token_uri;
    c.p11cfg.pin_source = env.pin_source;
    c.p11cfg.pool_size = 2;
    if ((r = coffer_p11_open(&c.p11cfg, &c.p11)) != COFFER_OK ||
        (r = coffer_store_open(env.db_app, &c.st)) != COFFER_OK ||
        (r = coffer_keys_new(c.p11, &c.k)) != COFFER_OK ||
        (r = coffer_store_mk_current(c.st, &mk)) != COFFER_OK) {
        rc = cli_fail("opening the embedded default", r);
        goto out;
    }
    {
        struct coffer_p11_token_info ti;

        coffer_p11_token_info(c.p11, &ti);
        coffer_hex(mk.kcv, COFFER_KCV_LEN, kcv);
        printf("   %s: SoftHSMv2 token '%s' (serial %s), PostgreSQL on %s\n"
               "   master key %s (KCV %s), org '%s', project '%s'\n",
               env.dir, ti.label, ti.serial, env.pg_socket_dir, mk.label, kcv, COFFER_DEV_ORG,
               COFFER_DEV_PROJECT);
    }
    rc = run(&env, &c);
out:
    cli_close(&c);
    if (env.pg_pid != 0 && (r = coffer_dev_pg_stop(&env)) != COFFER_OK) {
        rc = cli_fail("stopping PostgreSQL", r);
    }
    printf(rc == 0 ? "\nDemo complete. `cofferd --dev %s` serves the same environment.\n"
                   : "\nDemo failed (see above). Environment kept in %s.\n",
           env.dir);
    return rc;
}
