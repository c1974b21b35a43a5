/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cofferd: the Coffer server. `cofferd -c FILE` serves the HTTPS API with the
 * configuration of FILE (docs/config.md): a supervisor and its workers
 * (server/serve.c). `cofferd --dev DIR` provisions or reuses the embedded
 * default in DIR (see coffer/dev.h), says what it has, and stays in the
 * foreground until SIGINT or SIGTERM, then stops the cluster it started.
 *
 * Signals are blocked from the start and taken with sigwait, so no work ever
 * runs in a signal handler, and a signal that arrives while provisioning is
 * simply handled once provisioning is done. If the cluster it started dies,
 * cofferd says so and exits 1. This program prints paths, labels
 * and key check values; it never prints or logs a PIN.
 */
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "coffer/buf.h"
#include "coffer/config.h"
#include "coffer/dev.h"
#include "coffer/log.h"
#include "coffer/err.h"
#include "coffer/p11.h"
#include "coffer/secret.h"
#include "coffer/store.h"
#include "coffer/uuid.h"
#include "server/serve.h"

#define COFFERD_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cofferd -c FILE      serve the HTTPS API configured in FILE (docs/config.md)\n"
            "       cofferd --dev DIR   provision or reuse DIR and serve until SIGINT/SIGTERM\n"
            "       cofferd --help\n"
            "       cofferd --version\n");
}

static int fail(enum coffer_err e)
{
    fprintf(stderr, "cofferd: %s: %s\n", coffer_err_str(e), coffer_err_detail());
    return 1;
}

/* Writes s as one shell word in single quotes, for the "source" line. */
static void print_shell_word(const char *s)
{
    putchar('\'');
    for (; *s != '\0'; s++) {
        if (*s == '\'') {
            fputs("'\\''", stdout);
        } else {
            putchar(*s);
        }
    }
    putchar('\'');
}

/* Reads back what DIR holds and prints it. */
static enum coffer_err report(const struct coffer_dev_env *env)
{
    struct coffer_p11_config cfg = {
        .module = env->module, .token_uri = env->token_uri, .pin_source = env->pin_source};
    struct coffer_p11_token_info info;
    struct coffer_store_mk mk;
    struct coffer_org org;
    struct coffer_project project;
    struct coffer_p11 *p11 = NULL;
    struct coffer_store *st = NULL;
    char kcv[2 * COFFER_KCV_LEN + 1];
    char org_id[COFFER_UUID_STR_LEN];
    char project_id[COFFER_UUID_STR_LEN];
    char env_sh[PATH_MAX + 8];
    enum coffer_err r;

    if ((r = coffer_p11_open(&cfg, &p11)) != COFFER_OK) {
        goto out;
    }
    coffer_p11_token_info(p11, &info);
    if ((r = coffer_store_open(env->db_app, &st)) != COFFER_OK ||
        (r = coffer_store_mk_current(st, &mk)) != COFFER_OK ||
        (r = coffer_store_org_by_name(st, COFFER_DEV_ORG, &org)) != COFFER_OK ||
        (r = coffer_store_project_by_name(st, &org.id, COFFER_DEV_PROJECT, &project)) !=
            COFFER_OK) {
        goto out;
    }
    coffer_hex(mk.kcv, sizeof(mk.kcv), kcv);
    coffer_uuid_format(&org.id, org_id);
    coffer_uuid_format(&project.id, project_id);

    printf("cofferd: development environment in %s\n", env->dir);
    printf("  softhsm2.conf   %s\n", env->softhsm_conf);
    printf("  module          %s\n", env->module);
    printf("  token           label \"%s\", serial %s, slot %lu (%s)\n", info.label, info.serial,
           info.slot, env->token_uri);
    printf("  user PIN        %s (file, mode 0600)\n", env->pin_source);
    printf("  master key      %s, version %u, KCV %s\n", mk.label, (unsigned)mk.version, kcv);
    printf("  org             %s (%s)\n", org.name, org_id);
    printf("  project         %s (%s)\n", project.name, project_id);
    printf("  database        %s\n", env->db_app);
    if (env->pg_pid > 0) {
        printf("  PostgreSQL      started, PID %ld, socket in %s\n", (long)env->pg_pid,
               env->pg_socket_dir);
    } else {
        printf("  PostgreSQL      reused the running cluster, socket in %s\n", env->pg_socket_dir);
    }
    printf("For a client shell: source ");
    snprintf(env_sh, sizeof(env_sh), "%s/env.sh", env->dir);
    print_shell_word(env_sh);
    printf("\n  API             https://%s (configuration %s)\n", env->listen, env->config);
    printf("cofferd: serving in the foreground; SIGINT or SIGTERM stops it\n");
    fflush(stdout);
out:
    coffer_store_close(&st);
    coffer_p11_close(&p11);
    return r;
}

/*
 * Serves the API with DIR/coffer.yaml until SIGINT or SIGTERM. The
 * supervisor also watches the cluster this process started: serving without
 * a database would only fail later, and less clearly.
 */
static enum coffer_err serve_dev(struct coffer_dev_env *env, const sigset_t *set)
{
    struct coffer_policy_diags d = {0};
    struct serve_opts o = {.config_path = env->config, .watch_pid = env->pg_pid};
    enum coffer_err r = coffer_config_load(env->config, &o.cfg, &d);

    if (r != COFFER_OK) {
        for (size_t i = 0; i < d.n; i++) {
            fprintf(stderr, "%s\n", d.lines[i]);
        }
        coffer_policy_diags_cleanup(&d);
        return r;
    }
    coffer_policy_diags_cleanup(&d);
    r = serve_run(&o, set);
    if (r == COFFER_E_DB_UNAVAILABLE) {
        /* The supervisor reaped the cluster: its PID is no longer ours to signal. */
        env->pg_pid = 0;
    }
    return r;
}

static int run_dev(const char *dir, const char *listen)
{
    struct coffer_dev_env env;
    sigset_t set;
    enum coffer_err r;

    /* Blocked before any child exists; children get a clean mask from proc.c. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
        return fail(coffer_err_set(COFFER_E_IO, "blocking signals failed"));
    }
    if (listen != NULL && setenv("COFFER_DEV_LISTEN", listen, 1) != 0) {
        return fail(coffer_err_set(COFFER_E_IO, "setting COFFER_DEV_LISTEN failed"));
    }
    if ((r = coffer_dev_up(dir, &env)) != COFFER_OK) {
        return fail(r);
    }
    if ((r = report(&env)) != COFFER_OK || (r = serve_dev(&env, &set)) != COFFER_OK) {
        char saved[512];

        snprintf(saved, sizeof(saved), "%s", coffer_err_detail());
        if (coffer_dev_pg_stop(&env) != COFFER_OK) {
            fprintf(stderr, "cofferd: %s\n", coffer_err_detail());
        }
        return fail(coffer_err_set(r, "%s", saved));
    }
    if ((r = coffer_dev_pg_stop(&env)) != COFFER_OK) {
        return fail(r);
    }
    return 0;
}

/* Serves with the configuration file path until SIGINT or SIGTERM. */
static int run_config(const char *path)
{
    struct coffer_policy_diags d = {0};
    struct serve_opts o = {.config_path = path};
    sigset_t set;
    enum coffer_err r;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
        return fail(coffer_err_set(COFFER_E_IO, "blocking signals failed"));
    }
    r = coffer_config_load(path, &o.cfg, &d);
    if (r != COFFER_OK) {
        for (size_t i = 0; i < d.n; i++) {
            fprintf(stderr, "%s\n", d.lines[i]);
        }
        coffer_policy_diags_cleanup(&d);
        return fail(r);
    }
    coffer_policy_diags_cleanup(&d);
    coffer_log_set_level(o.cfg.log_level);
    if ((r = serve_run(&o, &set)) != COFFER_OK) {
        return fail(r);
    }
    return 0;
}

int main(int argc, char **argv)
{
    enum coffer_err r;

    /*
     * Before anything else: the libraries' allocators wipe what they free,
     * then no core dumps, no ptrace, locked secret memory.
     */
    if ((r = coffer_wipe_libraries()) != COFFER_OK || (r = coffer_harden_process()) != COFFER_OK) {
        return fail(r);
    }
    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("cofferd %s\n", COFFERD_VERSION);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "-c") == 0 && argv[2][0] != '\0') {
        return run_config(argv[2]);
    }
    if (argc == 3 && strcmp(argv[1], "--dev") == 0 && argv[2][0] != '\0') {
        return run_dev(argv[2], NULL);
    }
    if (argc == 5 && strcmp(argv[1], "--dev") == 0 && argv[2][0] != '\0' &&
        strcmp(argv[3], "--listen") == 0) {
        return run_dev(argv[2], argv[4]);
    }
    usage(stderr);
    return 2;
}
