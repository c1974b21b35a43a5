/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A ready Coffer for integration tests: the harness's database and token,
 * an open token context, a store connection as coffer_app, a keys context,
 * MK v1, an org and a project. Also a direct connection as coffer_owner, the
 * way an attacker with database access would tamper with rows.
 */
#ifndef COFFER_TEST_WORLD_H
#define COFFER_TEST_WORLD_H

#include "harness.h"

#include <stdbool.h>

#include "coffer/keys.h"
#include "coffer/store.h"

#include <libpq-fe.h>

struct world {
    struct harness h;
    struct coffer_p11 *p11;
    struct coffer_store *st;
    struct coffer_keys *k;
    struct coffer_keys_created mk1;
    struct coffer_org org;
    struct coffer_project proj;
    PGconn *owner;
};

/* Sets everything up (exits 1 with a reason on failure) with org org_name. */
void world_open(const char *name, const char *org_name, struct world *w);

/* Closes and reopens the token context and keys context: empties every handle cache. */
void world_reopen_token(struct world *w);

/* Closes everything. */
void world_close(struct world *w);

/* Runs SQL as coffer_owner; exits 1 if it fails. Returns the number of rows affected. */
long world_sql(struct world *w, const char *sql);

/* Runs a query as coffer_owner returning one value as text (caller frees with PQfreemem-free:
 * free()). */
char *world_sql_value(struct world *w, const char *sql);

/* True if the one-value query returns expected (printing both otherwise). */
bool world_sql_is(struct world *w, const char *sql, const char *expected);

/* Opens another app connection (for a second thread). */
struct coffer_store *world_store(struct world *w);

/* Writes a credential with the given (name, value) pairs; asserts success; returns the version. */
uint32_t world_put(struct world *w, const struct coffer_org *org, const struct coffer_project *proj,
                   const char *cred, size_t n, const char *const *names, const char *const *values,
                   const size_t *lens);

/* Adds project name to w's org (its row in *out unless NULL); exits 1 with a reason on failure. */
void world_add_project(struct world *w, const char *name, struct coffer_project *out);

/*
 * Parses the policy text yaml (one org, which must exist) and applies it
 * through w's store as "test". 0, or -1 with the first diagnostic on stderr.
 */
int world_apply_policy(struct world *w, const char *yaml);

/* The highest audit event id so far: the events after it belong to what follows. */
long world_audit_mark(struct world *w);

/*
 * True if the audit events after mark, each as "action/allowed/reason/detail"
 * (detail "-" when NULL) joined by ",", are exactly expected; otherwise
 * prints both to stderr. Audit details never hold a secret.
 */
bool world_events_are(struct world *w, long mark, const char *expected);

/* The same with each event as "action/allowed/reason". */
bool world_reasons_are(struct world *w, long mark, const char *expected);

#endif
