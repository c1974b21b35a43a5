/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Officers' passphrases: reading one (terminal with echo off, or a line of
 * standard input for scripted use, both through src/common/tty.c), and the
 * scrypt hash that is all the database ever holds of it. It lives in
 * src/common because it is plain local cryptography, shared by the ceremony
 * commands and the tests; it belongs to neither the token (p11) nor the key
 * hierarchy (keys), which never see a passphrase.
 *
 * A passphrase only ever sits in a struct coffer_secret; the derived hash is
 * wiped after comparison. Nothing here writes a passphrase, or any part of
 * one, to an error detail, a log line or the terminal.
 */
#include "coffer/passphrase.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "coffer/mem.h"
#include "coffer/text.h"
#include "coffer/tty.h"

#define SCRYPT_N_LOG2 15u
#define SCRYPT_R 8u
#define SCRYPT_P 1u
#define SALT_LEN 16u
#define DK_LEN 32u
#define SCRYPT_MAXMEM (256u * 1024u * 1024u)

enum coffer_err coffer_passphrase_read(const char *prompt, struct coffer_secret **out)
{
    /* A script's passphrases come one a line on standard input, each read to its newline only. */
    const struct coffer_tty_request req = {
        .prompt = prompt,
        .what = "passphrase",
        .max = COFFER_PASSPHRASE_MAX,
        .stdin_unless_tty = true,
        .fail = COFFER_E_IO,
        .refuse = COFFER_E_INVALID,
    };

    return coffer_tty_read_secret(&req, out);
}

enum coffer_err coffer_passphrase_check(const struct coffer_secret *pass)
{
    struct coffer_secret_view v = coffer_secret_view(pass);

    if (v.len < COFFER_PASSPHRASE_MIN) {
        return coffer_err_set(COFFER_E_INVALID, "a passphrase has at least %u characters",
                              COFFER_PASSPHRASE_MIN);
    }
    if (!coffer_text_ok((const char *)v.data, v.len, COFFER_PASSPHRASE_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "a passphrase is UTF-8 text without control characters");
    }
    return COFFER_OK;
}

static enum coffer_err derive(const struct coffer_secret *pass, const unsigned char *salt,
                              size_t salt_len, uint64_t n, uint64_t r, uint64_t p,
                              unsigned char dk[DK_LEN])
{
    struct coffer_secret_view v = coffer_secret_view(pass);

    if (EVP_PBE_scrypt((const char *)v.data, v.len, salt, salt_len, n, r, p, SCRYPT_MAXMEM, dk,
                       DK_LEN) != 1) {
        coffer_wipe(dk, DK_LEN);
        return coffer_err_set(COFFER_E_CRYPTO, "scrypt failed");
    }
    return COFFER_OK;
}

enum coffer_err coffer_passphrase_hash(const struct coffer_secret *pass,
                                       char out[COFFER_PASSPHRASE_HASH_LEN])
{
    unsigned char salt[SALT_LEN];
    unsigned char dk[DK_LEN];
    unsigned char salt64[4 * ((SALT_LEN + 2) / 3) + 1];
    unsigned char dk64[4 * ((DK_LEN + 2) / 3) + 1];
    enum coffer_err r;
    int n;

    out[0] = '\0';
    if ((r = coffer_passphrase_check(pass)) != COFFER_OK) {
        return r;
    }
    if (RAND_bytes(salt, sizeof(salt)) != 1) {
        return coffer_err_set(COFFER_E_CRYPTO, "no random salt");
    }
    if ((r = derive(pass, salt, sizeof(salt), (uint64_t)1 << SCRYPT_N_LOG2, SCRYPT_R, SCRYPT_P,
                    dk)) != COFFER_OK) {
        return r;
    }
    (void)EVP_EncodeBlock(salt64, salt, sizeof(salt));
    (void)EVP_EncodeBlock(dk64, dk, sizeof(dk));
    coffer_wipe(dk, sizeof(dk));
    n = snprintf(out, COFFER_PASSPHRASE_HASH_LEN, "scrypt$%lu$%u$%u$%s$%s", 1ul << SCRYPT_N_LOG2,
                 SCRYPT_R, SCRYPT_P, (const char *)salt64, (const char *)dk64);
    if (n < 0 || n >= COFFER_PASSPHRASE_HASH_LEN) {
        out[0] = '\0';
        return coffer_err_set(COFFER_E_CRYPTO, "passphrase hash does not fit");
    }
    return COFFER_OK;
}

/* A decimal field of the stored form, ending at '$'. */
static bool parse_num(const char **p, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    const char *s = *p;

    if (*s < '0' || *s > '9') {
        return false;
    }
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > max) {
            return false;
        }
        s++;
    }
    if (*s != '$') {
        return false;
    }
    *p = s + 1;
    *out = v;
    return true;
}

/* Decodes a base64 field of exactly want bytes (with its padding). */
static bool decode_b64(const char *s, size_t len, unsigned char *out, size_t want)
{
    unsigned char buf[64];
    size_t pad = 0;
    int n;

    if (len == 0 || len % 4 != 0 || len / 4 * 3 > sizeof(buf)) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/' || (c == '=' && i >= len - 2);

        if (!ok) {
            return false;
        }
        pad += c == '=' ? 1 : 0;
    }
    n = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
    if (n < 0 || (size_t)n < pad || (size_t)n - pad != want) {
        return false;
    }
    coffer_memcpy(out, buf, want);
    return true;
}

enum coffer_err coffer_passphrase_verify(const struct coffer_secret *pass, const char *stored,
                                         bool *match)
{
    unsigned char salt[SALT_LEN];
    unsigned char want[DK_LEN];
    unsigned char got[DK_LEN];
    const char *p = stored;
    const char *dollar;
    uint64_t n = 0;
    uint64_t r = 0;
    uint64_t par = 0;
    enum coffer_err e;

    *match = false;
    if (strncmp(p, "scrypt$", 7) != 0) {
        return coffer_err_set(COFFER_E_INTEGRITY, "stored passphrase hash is not scrypt");
    }
    p += 7;
    if (!parse_num(&p, (uint64_t)1 << 17, &n) || n < ((uint64_t)1 << 14) || (n & (n - 1)) != 0 ||
        !parse_num(&p, SCRYPT_R, &r) || r != SCRYPT_R || !parse_num(&p, 4, &par) || par < 1) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "stored passphrase hash has parameters out of range");
    }
    dollar = strchr(p, '$');
    if (dollar == NULL || !decode_b64(p, (size_t)(dollar - p), salt, sizeof(salt)) ||
        !decode_b64(dollar + 1, strlen(dollar + 1), want, sizeof(want))) {
        return coffer_err_set(COFFER_E_INTEGRITY, "stored passphrase hash is malformed");
    }
    if ((e = derive(pass, salt, sizeof(salt), n, r, par, got)) != COFFER_OK) {
        return e;
    }
    *match = CRYPTO_memcmp(got, want, sizeof(got)) == 0;
    coffer_wipe(got, sizeof(got));
    return COFFER_OK;
}
