/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Officers' passphrases: read from the terminal with echo off, or one line
 * from standard input when it is not a terminal (scripted ceremonies and the
 * tests), and kept only in struct coffer_secret; stored only as an scrypt
 * hash "scrypt$N$r$p$<salt base64>$<hash base64>" (N = 2^15, r = 8, p = 1,
 * a 16-byte random salt, 32 bytes of output), compared in constant time.
 */
#ifndef COFFER_PASSPHRASE_H
#define COFFER_PASSPHRASE_H

#include <stdbool.h>
#include <stddef.h>

#include "coffer/err.h"
#include "coffer/secret.h"

#define COFFER_PASSPHRASE_MIN 12   /* characters (bytes) at least */
#define COFFER_PASSPHRASE_MAX 1024 /* bytes at most */
#define COFFER_PASSPHRASE_HASH_LEN 192

/*
 * Shows prompt (on the terminal, or on standard error when standard input is
 * not a terminal) and reads one line without its newline into *out. From a
 * terminal, echo is off while it is typed. COFFER_E_INVALID for an empty line
 * or one longer than COFFER_PASSPHRASE_MAX, COFFER_E_IO if nothing can be
 * read (end of input). The line is never echoed, logged or put in a detail.
 */
enum coffer_err coffer_passphrase_read(const char *prompt,
                                       struct coffer_secret **out) COFFER_MUST_USE;

/* COFFER_E_INVALID unless pass is COFFER_PASSPHRASE_MIN..MAX bytes of UTF-8 without controls. */
enum coffer_err coffer_passphrase_check(const struct coffer_secret *pass) COFFER_MUST_USE;

/*
 * Hashes pass with a fresh random salt into out (NUL-terminated, at most
 * COFFER_PASSPHRASE_HASH_LEN - 1 characters). COFFER_E_CRYPTO if OpenSSL fails.
 */
enum coffer_err coffer_passphrase_hash(const struct coffer_secret *pass,
                                       char out[COFFER_PASSPHRASE_HASH_LEN]) COFFER_MUST_USE;

/*
 * Whether pass matches stored (a hash made by coffer_passphrase_hash).
 * COFFER_E_INTEGRITY if stored is not such a hash or names parameters out of
 * the accepted range (N 2^14..2^17, r 8, p 1..4); *match is false then.
 */
enum coffer_err coffer_passphrase_verify(const struct coffer_secret *pass, const char *stored,
                                         bool *match) COFFER_MUST_USE;

#endif
