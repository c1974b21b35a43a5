/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to the coffer command: its subcommands and the environment they
 * read (the variables DIR/env.sh of the embedded default exports).
 */
#ifndef COFFER_CLI_H
#define COFFER_CLI_H

#include "coffer/err.h"
#include "coffer/keys.h"
#include "coffer/p11.h"
#include "coffer/store.h"

/* What a local subcommand needs: the token, the database, a keys context. */
struct cli_ctx {
    struct coffer_p11_config p11cfg;
    const char *db_app;
    struct coffer_p11 *p11;
    struct coffer_store *st;
    struct coffer_keys *k;
};

/*
 * Reads COFFER_PKCS11_MODULE, COFFER_TOKEN_URI, COFFER_PIN_SOURCE and
 * COFFER_DATABASE, then opens the token, the database and a keys context.
 * COFFER_E_CONFIG names any variable that is missing.
 */
enum coffer_err cli_open(struct cli_ctx *c) COFFER_MUST_USE;
/* Reads COFFER_DATABASE and opens the database only (no token). */
enum coffer_err cli_open_db(struct cli_ctx *c) COFFER_MUST_USE;
void cli_close(struct cli_ctx *c);

/* Prints "coffer: <what>: <code>: <detail>" to stderr and returns 1. */
int cli_fail(const char *what, enum coffer_err r);

/* Parses a decimal version in 1..INT32_MAX. */
enum coffer_err cli_parse_version(const char *s, uint32_t *out) COFFER_MUST_USE;

int cli_keys(int argc, char **argv);
int cli_org(int argc, char **argv);
int cli_db(int argc, char **argv);
int cli_policy(int argc, char **argv);
int cli_project(int argc, char **argv);
int cli_demo(int argc, char **argv);
int cli_audit(int argc, char **argv);
int cli_ceremony(int argc, char **argv);

/* coffer exec: runs a command with credentials in its environment (exec_cmd.c). */
int cli_exec(int argc, char **argv);

#endif
