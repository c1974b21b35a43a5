/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to `coffer ceremony`: what the command parser (ceremony_cmd.c) and
 * the runner of ceremonies (ceremony_ops.c) share. A ceremony collects what
 * it did in a transcript body, records the database changes it must make in
 * the same transaction as its signed transcript, and the keys to link to it.
 */
#ifndef COFFER_CLI_CEREMONY_H
#define COFFER_CLI_CEREMONY_H

#include <stdbool.h>
#include <stdint.h>

#include "cli/cli.h"
#include "coffer/buf.h"
#include "coffer/passphrase.h"
#include "coffer/store_ceremony.h"

#define CER_MAX_LINKS 8

struct cer_link {
    enum { CER_LINK_MK, CER_LINK_ORG, CER_LINK_AUDIT } what;
    uint32_t version;
    struct coffer_uuid org_id;
};

/* One ceremony in progress. */
struct cer {
    struct cli_ctx c;
    struct coffer_p11_token_info tok;
    struct coffer_uuid id;
    int64_t started_us;
    char kind[COFFER_CEREMONY_KIND_MAX + 1];
    struct coffer_buf head; /* approvals and quorum: who allowed it */
    struct coffer_buf body; /* what was done, keys and attributes read back */
    const char *officers[COFFER_OFFICERS_MAX];
    size_t n_officers;
    bool aborted;
    char reason[384];
    struct cer_link links[CER_MAX_LINKS];
    size_t n_links;
    /* Database changes made with the transcript. */
    const char *add_officers[COFFER_OFFICERS_MAX];
    char add_hashes[COFFER_OFFICERS_MAX][COFFER_PASSPHRASE_HASH_LEN];
    size_t n_add;
    const char *remove_officer;
    uint32_t set_quorum;
    const struct coffer_store_plan *plan; /* NULL for init and rotate-org-key */
};

/* Appends printf-formatted text; on failure sets the ceremony aborted. */
void cer_printf(struct cer *x, struct coffer_buf *b, const char *fmt, ...) COFFER_PRINTF(3, 4);

/* Marks the ceremony aborted with a reason (the first one wins) and returns 1. */
int cer_abort(struct cer *x, const char *fmt, ...) COFFER_PRINTF(2, 3);

/* Opens the token and database, reads the token's description, takes an id. */
enum coffer_err cer_begin(struct cer *x, const char *kind) COFFER_MUST_USE;
void cer_end(struct cer *x);

/* "YYYY-MM-DDTHH:MM:SSZ" of microseconds since the epoch. */
void cer_time(int64_t us, char out[32]);

/*
 * Appends a key line and its attributes read back, and aborts the ceremony
 * unless the key is sensitive and never extractable (wrapped: an org key,
 * which must be extractable to be stored wrapped, only sensitive).
 */
void cer_key(struct cer *x, const char *what, const char *label, uint32_t version,
             const unsigned char *kcv, const struct coffer_p11_attrs *a, bool wrapped);

/* Reads back the attributes and KCV of the secret key labelled label from the token. */
enum coffer_err cer_read_key(struct cer *x, const char *label, struct coffer_p11_attrs *a,
                             unsigned char kcv[COFFER_KCV_LEN]) COFFER_MUST_USE;

/*
 * Writes the transcript, signs it with the current audit signing key, and in
 * one transaction records it, makes the database changes, links the keys and
 * closes the plan; then prints it. Returns the exit status: 0 completed,
 * 1 aborted (recorded) or not recorded.
 */
int cer_record(struct cer *x);

/* Reads a passphrase twice, checks both agree and are acceptable, and hashes it. */
enum coffer_err cer_enrol_passphrase(const char *officer,
                                     char hash[COFFER_PASSPHRASE_HASH_LEN]) COFFER_MUST_USE;

/* The plan runner: `coffer ceremony run PLAN`. */
int cer_run(int argc, char **argv);

/* `coffer ceremony rotate-org-key ORG`. */
int cer_rotate_org_key(int argc, char **argv);

#endif
