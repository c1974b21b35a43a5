/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Integration-test harness. The CTest fixture `testenv` starts one private
 * PostgreSQL cluster and one SoftHSMv2 token directory in a temporary
 * directory (tests/harness/testenv.c) and stops them at the end. Each test
 * program then gets its own database (bootstrapped and migrated) and its own
 * freshly initialised token, so programs can run in parallel and never see
 * each other's keys.
 *
 * The fixture's directory is named in the file given by the environment
 * variable COFFER_TESTENV_FILE, which CMake sets for every integration test.
 * If it is missing the test fails; it is never skipped.
 */
#ifndef COFFER_TEST_HARNESS_H
#define COFFER_TEST_HARNESS_H

#include "coffer/dev.h"
#include "coffer/p11.h"

struct harness {
    struct coffer_dev_env env;   /* the fixture's cluster and token directory */
    char dbname[64];             /* t_<name>_<pid> */
    char db_app[PATH_MAX + 128]; /* conninfo of the test database as coffer_app */
    char db_owner[PATH_MAX + 128];
    char token_label[33];         /* t-<name>-<pid>, at most 32 characters */
    char token_uri[96];           /* pkcs11:token=<token_label> */
    struct coffer_p11_config p11; /* module, token_uri, pin_source of this test's token */
};

/*
 * Creates this program's database and token. name is a short [a-z0-9_]
 * identifier of the test program. Prints the reason and exits with status 1
 * if anything fails, so a broken environment is a failed test.
 */
void harness_setup(const char *name, struct harness *h);

/* Releases the harness; the database stays until the fixture removes the whole cluster. */
void harness_teardown(struct harness *h);

/* What a command printed and how it ended. */
struct harness_run {
    int status;      /* exit status, or -1 if it did not exit */
    char out[16384]; /* standard output and error together, NUL-terminated, truncated to fit */
};

/*
 * Runs argv (argv[0] a path) with exactly the environment envp, waiting at
 * most 60 seconds, and captures its output. Prints the reason and exits 1 if
 * the command cannot be run at all.
 */
void harness_run(const char *const *argv, const char *const *envp, struct harness_run *res);

/*
 * Runs the coffer command at bin (absolute) with up to 14 args (NULL
 * terminated) as a local operator would: against h's token and database,
 * with nothing else in its environment but a plain PATH.
 */
void harness_run_local(const struct harness *h, const char *bin, const char *const *args,
                       struct harness_run *res);

#endif
