/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The integration-test harness (see harness.h): gives one test program its
 * own database in the fixture's cluster and its own token in the fixture's
 * SoftHSMv2 directory. Every failure prints the step and exits 1: a broken
 * environment is a failed test, never a skipped one. PINs are read from the
 * fixture's files and handed to the token; they are never printed.
 *
 * Teardown leaves the database in place: the fixture removes the whole
 * cluster when the run ends, and only store may speak to PostgreSQL.
 */
#include "harness.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coffer/err.h"
#include "coffer/p11.h"
#include "coffer/secret.h"
#include "coffer/store.h"
#include "server/proc.h"

#define NAME_MAX_LEN 40

static void die(const char *step, enum coffer_err e)
{
    fprintf(stderr, "harness: %s: %s: %s\n", step, coffer_err_str(e), coffer_err_detail());
    exit(1);
}

static void die_msg(const char *step, const char *msg)
{
    fprintf(stderr, "harness: %s: %s\n", step, msg);
    exit(1);
}

static void check_name(const char *name)
{
    size_t len = name != NULL ? strlen(name) : 0;

    if (len == 0 || len > NAME_MAX_LEN) {
        die_msg("test name", "must be 1 to 40 characters of [a-z0-9_]");
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            die_msg("test name", "must be 1 to 40 characters of [a-z0-9_]");
        }
    }
}

/* The fixture's directory, from the file named by COFFER_TESTENV_FILE. */
static void read_fixture_dir(char *out, size_t outlen)
{
    const char *file = getenv("COFFER_TESTENV_FILE");
    size_t len;
    FILE *f;

    if (file == NULL || file[0] == '\0') {
        die_msg("fixture", "COFFER_TESTENV_FILE is not set; run the test through ctest, which "
                           "starts the testenv fixture");
    }
    f = fopen(file, "re");
    if (f == NULL) {
        fprintf(stderr, "harness: fixture: cannot open %s: %s (did testenv_up run?)\n", file,
                strerror(errno));
        exit(1);
    }
    if (fgets(out, (int)outlen, f) == NULL) {
        fclose(f);
        die_msg("fixture", "the testenv file is empty");
    }
    fclose(f);
    len = strcspn(out, "\n");
    out[len] = '\0';
    if (len == 0 || out[0] != '/') {
        die_msg("fixture", "the testenv file does not hold an absolute directory");
    }
}

static void read_pin(const char *source, struct coffer_secret **out)
{
    enum coffer_err r = coffer_p11_read_pin(source, out);

    if (r != COFFER_OK) {
        die("reading a fixture PIN", r);
    }
}

static void fmt_or_die(size_t outlen, const char *what, int n)
{
    if (n < 0 || (size_t)n >= outlen) {
        die_msg(what, "does not fit");
    }
}

void harness_setup(const char *name, struct harness *h)
{
    struct coffer_secret *so_pin = NULL;
    struct coffer_secret *user_pin = NULL;
    char fixture[PATH_MAX];
    char so_source[PATH_MAX + 8];
    enum coffer_err r;
    long pid = (long)getpid();
    int n;

    check_name(name);
    *h = (struct harness){0};
    read_fixture_dir(fixture, sizeof(fixture));
    if ((r = coffer_dev_env_init(fixture, &h->env)) != COFFER_OK) {
        die("reading the fixture directory", r);
    }
    if (setenv("SOFTHSM2_CONF", h->env.softhsm_conf, 1) != 0) {
        die_msg("setenv SOFTHSM2_CONF", strerror(errno));
    }

    n = snprintf(h->dbname, sizeof(h->dbname), "t_%s_%ld", name, pid);
    fmt_or_die(sizeof(h->dbname), "database name", n);
    /* The label keeps its PID: a long name is cut, never the part that makes it unique. */
    char suffix[24];
    snprintf(suffix, sizeof(suffix), "-%ld", pid);
    int keep = (int)(sizeof(h->token_label) - 1 - strlen("t-") - strlen(suffix));
    n = snprintf(h->token_label, sizeof(h->token_label), "t-%.*s%s", keep, name, suffix);
    fmt_or_die(sizeof(h->token_label), "token label", n);
    n = snprintf(h->token_uri, sizeof(h->token_uri), "pkcs11:token=%s", h->token_label);
    fmt_or_die(sizeof(h->token_uri), "token URI", n);
    n = snprintf(h->db_owner, sizeof(h->db_owner), "host=%s dbname=%s user=coffer_owner",
                 h->env.pg_socket_dir, h->dbname);
    fmt_or_die(sizeof(h->db_owner), "owner conninfo", n);
    n = snprintf(h->db_app, sizeof(h->db_app), "host=%s dbname=%s user=coffer_app",
                 h->env.pg_socket_dir, h->dbname);
    fmt_or_die(sizeof(h->db_app), "app conninfo", n);

    if ((r = coffer_store_bootstrap(h->env.db_super, h->dbname)) != COFFER_OK) {
        die("creating the test database", r);
    }
    if ((r = coffer_store_migrate(h->db_owner, NULL)) != COFFER_OK) {
        die("migrating the test database", r);
    }

    n = snprintf(so_source, sizeof(so_source), "file:%s", h->env.so_pin_file);
    fmt_or_die(sizeof(so_source), "SO PIN source", n);
    read_pin(so_source, &so_pin);
    read_pin(h->env.pin_source, &user_pin);
    r = coffer_p11_init_token(h->env.module, h->token_label, so_pin, user_pin);
    coffer_secret_free(&so_pin);
    coffer_secret_free(&user_pin);
    if (r != COFFER_OK) {
        die("initialising the test token", r);
    }

    h->p11 = (struct coffer_p11_config){
        .module = h->env.module,
        .token_uri = h->token_uri,
        .pin_source = h->env.pin_source,
        .pool_size = 4,
    };
}

void harness_teardown(struct harness *h)
{
    /*
     * The database and token stay until the fixture removes the cluster and
     * the token directory; nothing here holds memory. Clearing the struct
     * makes any use after teardown fail loudly rather than quietly work.
     */
    if (h != NULL) {
        *h = (struct harness){0};
    }
}

void harness_run(const char *const *argv, const char *const *envp, struct harness_run *res)
{
    char path[] = "/tmp/coffer-run-out.XXXXXX";
    struct coffer_proc_spec spec;
    enum coffer_err r;
    ssize_t got;
    int status = 0;
    int fd = mkstemp(path);

    if (fd < 0) {
        die_msg("harness_run", strerror(errno));
    }
    unlink(path);
    memset(&spec, 0, sizeof(spec));
    spec.argv = argv;
    spec.envp = envp;
    spec.out_fd = fd;
    spec.err_fd = fd;
    if ((r = coffer_proc_run(&spec, 60000, &status)) != COFFER_OK) {
        die(argv[0], r);
    }
    res->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (lseek(fd, 0, SEEK_SET) != 0) {
        die_msg("harness_run", strerror(errno));
    }
    got = read(fd, res->out, sizeof(res->out) - 1);
    res->out[got > 0 ? got : 0] = '\0';
    close(fd);
}

void harness_run_local(const struct harness *h, const char *bin, const char *const *args,
                       struct harness_run *res)
{
    const char *argv[16];
    char vars[5][PATH_MAX + 160];
    const char *envp[7];
    size_t n = 0;

    argv[n++] = bin;
    while (*args != NULL && n < 15) {
        argv[n++] = *args++;
    }
    argv[n] = NULL;
    snprintf(vars[0], sizeof(vars[0]), "COFFER_PKCS11_MODULE=%s", h->p11.module);
    snprintf(vars[1], sizeof(vars[1]), "COFFER_TOKEN_URI=%s", h->p11.token_uri);
    snprintf(vars[2], sizeof(vars[2]), "COFFER_PIN_SOURCE=%s", h->p11.pin_source);
    snprintf(vars[3], sizeof(vars[3]), "COFFER_DATABASE=%s", h->db_app);
    snprintf(vars[4], sizeof(vars[4]), "SOFTHSM2_CONF=%s", h->env.softhsm_conf);
    for (size_t i = 0; i < 5; i++) {
        envp[i] = vars[i];
    }
    envp[5] = "PATH=/usr/bin:/bin";
    envp[6] = NULL;
    harness_run(argv, envp, res);
}
