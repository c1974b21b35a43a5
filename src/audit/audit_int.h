/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to the audit log library: hashing that reports its failures, and
 * the strict text forms (canonical decimals, lower-case hex, timestamps) that
 * the signed message and the export files share, so that what one file writes
 * another reads back byte for byte.
 */
#ifndef COFFER_AUDIT_INT_H
#define COFFER_AUDIT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/auditlog.h"
#include "coffer/err.h"

/* Length of YYYY-MM-DDTHH:MM:SS.uuuuuuZ. */
#define AUDIT_TIMESTAMP_LEN 27

/* SHA-256 of n bytes at p. COFFER_E_CRYPTO if OpenSSL fails. */
enum coffer_err audit_sha256(const void *p, size_t n,
                             unsigned char out[COFFER_AUDIT_HASH_LEN]) COFFER_MUST_USE;

/* coffer_audit_chain_step that reports an OpenSSL failure (COFFER_E_CRYPTO). */
enum coffer_err
audit_chain_step(unsigned char chain[COFFER_AUDIT_HASH_LEN], int64_t id,
                 const unsigned char row_hash[COFFER_AUDIT_HASH_LEN]) COFFER_MUST_USE;

/*
 * Whether the n bytes at s are a canonical decimal: "0" or a non-zero digit
 * followed by digits, with a leading '-' only if allow_negative (and never
 * "-0"), no '+', no spaces, within int64_t. *out receives the value.
 */
bool audit_dec_parse(const char *s, size_t n, bool allow_negative, int64_t *out);

/* Whether s (NUL-terminated) is a canonical decimal as audit_dec_parse reads it. */
bool audit_dec_ok(const char *s, bool allow_negative, int64_t *out);

/* Whether the n bytes at s are exactly 2 * len lower-case hex digits; decodes them into out. */
bool audit_hex_parse(const char *s, size_t n, unsigned char *out, size_t len);

/* Whether the n bytes at s are a valid UTC time YYYY-MM-DDTHH:MM:SS.uuuuuuZ. */
bool audit_timestamp_ok(const char *s, size_t n);

/* How a field's text form is carried in an export file. */
enum audit_field_kind {
    AUDIT_FK_TEXT, /* a non-empty UTF-8 string */
    AUDIT_FK_INT,  /* a canonical decimal, a JSON integer */
    AUDIT_FK_BOOL, /* "true" or "false", a JSON boolean */
    AUDIT_FK_TIME, /* YYYY-MM-DDTHH:MM:SS.uuuuuuZ */
};

/* The kind of field i (enum coffer_audit_field). */
enum audit_field_kind audit_field_kind(int i);

/*
 * Whether row can be carried by an export and read back unchanged: id at
 * least 1 and spelled in f[COFFER_AF_ID], every other non-NULL field of its
 * kind (no empty strings, since CSV reads an empty cell as NULL).
 * COFFER_E_INVALID naming the event and the field.
 */
enum coffer_err audit_row_check(const struct coffer_audit_row *row) COFFER_MUST_USE;

/* Big-endian encoding of id, as the sealed list and the chain take it. */
void audit_be64(int64_t id, unsigned char out[8]);

/* Reads a big-endian id from 8 bytes. */
int64_t audit_read_be64(const unsigned char in[8]);

#endif
