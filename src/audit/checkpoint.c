/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The signed message of a checkpoint: building it from its fields and
 * parsing it back, strictly. The message is what the token signs and what an
 * auditor reads, so there is exactly one text for a given set of fields: the
 * parser refuses any other spelling (upper-case hex, leading zeros, signs,
 * extra or missing lines, a missing final newline) instead of normalising
 * it, since two texts for one meaning would give two hashes for one
 * checkpoint. Also the strict decimal, hex and timestamp forms that the
 * export files share with the message.
 *
 * Nothing here signs, verifies or does I/O.
 */
#include "audit/audit_int.h"

#include "coffer/buf.h"
#include "coffer/mem.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define MAGIC "coffer-audit-checkpoint"
#define MAGIC_VERSION "v1"
#define DEC_MAX_DIGITS 19 /* INT64_MAX has 19 digits */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

bool audit_dec_parse(const char *s, size_t n, bool allow_negative, int64_t *out)
{
    bool negative = false;
    uint64_t v = 0;
    uint64_t limit = (uint64_t)INT64_MAX;
    size_t i = 0;

    if (s == NULL || n == 0) {
        return false;
    }
    if (s[0] == '-') {
        if (!allow_negative) {
            return false;
        }
        negative = true;
        i = 1;
        limit = (uint64_t)INT64_MAX + 1;
    }
    if (n - i == 0 || n - i > DEC_MAX_DIGITS) {
        return false;
    }
    /* "0" alone is the only spelling of zero, and it has no sign. */
    if (s[i] == '0' && (n - i != 1 || negative)) {
        return false;
    }
    for (; i < n; i++) {
        unsigned d;

        if (!is_digit(s[i])) {
            return false;
        }
        d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    if (out != NULL) {
        if (negative) {
            *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
        } else {
            *out = (int64_t)v;
        }
    }
    return true;
}

bool audit_dec_ok(const char *s, bool allow_negative, int64_t *out)
{
    return s != NULL && audit_dec_parse(s, strlen(s), allow_negative, out);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

bool audit_hex_parse(const char *s, size_t n, unsigned char *out, size_t len)
{
    size_t i;

    if (s == NULL || len > SIZE_MAX / 2 || n != 2 * len) {
        return false;
    }
    for (i = 0; i < len; i++) {
        int hi = hex_value(s[2 * i]);
        int lo = hex_value(s[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            return false;
        }
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

/* The value of the n digits at s, or -1 if one is not a digit. */
static int digits(const char *s, size_t n)
{
    int v = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        if (!is_digit(s[i])) {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return month == 2 && leap ? 29 : days[month - 1];
}

bool audit_timestamp_ok(const char *s, size_t n)
{
    int year;
    int month;
    int day;

    if (s == NULL || n != AUDIT_TIMESTAMP_LEN || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
        s[13] != ':' || s[16] != ':' || s[19] != '.' || s[26] != 'Z') {
        return false;
    }
    year = digits(s, 4);
    month = digits(s + 5, 2);
    day = digits(s + 8, 2);
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month)) {
        return false;
    }
    /* PostgreSQL never prints a leap second, so 60 is not a valid second. */
    return digits(s + 11, 2) >= 0 && digits(s + 11, 2) <= 23 && digits(s + 14, 2) >= 0 &&
           digits(s + 14, 2) <= 59 && digits(s + 17, 2) >= 0 && digits(s + 17, 2) <= 59 &&
           digits(s + 20, 6) >= 0;
}

/* The relations between a message's fields that any checkpoint must satisfy. */
static enum coffer_err fields_check(const struct coffer_audit_cp_fields *f)
{
    if (f->seq < 1) {
        return coffer_err_set(COFFER_E_INVALID, "checkpoint seq %" PRId64 " is not positive",
                              f->seq);
    }
    if (!audit_timestamp_ok(f->at, strnlen(f->at, sizeof(f->at)))) {
        return coffer_err_set(COFFER_E_INVALID,
                              "checkpoint %" PRId64 ": time is not YYYY-MM-DDTHH:MM:SS.uuuuuuZ",
                              f->seq);
    }
    if (f->first_event < 1 || f->last_event < f->first_event - 1) {
        return coffer_err_set(COFFER_E_INVALID,
                              "checkpoint %" PRId64 ": range %" PRId64 "..%" PRId64
                              " is not a range of event ids",
                              f->seq, f->first_event, f->last_event);
    }
    if (f->events < 0 || f->events > COFFER_AUDIT_CHECKPOINT_MAX ||
        f->events > f->last_event - f->first_event + 1) {
        return coffer_err_set(COFFER_E_INVALID,
                              "checkpoint %" PRId64 ": %" PRId64 " events do not fit its range "
                              "(at most %d per checkpoint)",
                              f->seq, f->events, COFFER_AUDIT_CHECKPOINT_MAX);
    }
    if (f->key_version < 1) {
        return coffer_err_set(COFFER_E_INVALID, "checkpoint %" PRId64 ": key version %d", f->seq,
                              (int)f->key_version);
    }
    return COFFER_OK;
}

enum coffer_err coffer_audit_message_build(const struct coffer_audit_cp_fields *f, char *out,
                                           size_t cap, size_t *len)
{
    char chain[2 * COFFER_AUDIT_HASH_LEN + 1];
    char previous[2 * COFFER_AUDIT_HASH_LEN + 1];
    char schema[2 * COFFER_AUDIT_HASH_LEN + 1];
    char fingerprint[2 * COFFER_AUDIT_HASH_LEN + 1];
    enum coffer_err r;
    int n;

    if (f == NULL || out == NULL || len == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "checkpoint message: missing argument");
    }
    *len = 0;
    if ((r = fields_check(f)) != COFFER_OK) {
        return r;
    }
    coffer_hex(f->chain, COFFER_AUDIT_HASH_LEN, chain);
    coffer_hex(f->previous, COFFER_AUDIT_HASH_LEN, previous);
    coffer_hex(f->schema, COFFER_AUDIT_HASH_LEN, schema);
    coffer_hex(f->fingerprint, COFFER_AUDIT_HASH_LEN, fingerprint);
    n = snprintf(out, cap,
                 MAGIC " " MAGIC_VERSION "\n"
                       "seq %" PRId64 "\n"
                       "at %s\n"
                       "first-event %" PRId64 "\n"
                       "last-event %" PRId64 "\n"
                       "events %" PRId64 "\n"
                       "chain %s\n"
                       "previous %s\n"
                       "schema %s\n"
                       "key %d\n"
                       "fingerprint %s\n",
                 f->seq, f->at, f->first_event, f->last_event, f->events, chain, previous, schema,
                 (int)f->key_version, fingerprint);
    if (n < 0 || (size_t)n >= cap) {
        return coffer_err_set(COFFER_E_LIMIT, "checkpoint message does not fit %zu bytes", cap);
    }
    *len = (size_t)n;
    return COFFER_OK;
}

/*
 * Takes the next line "<key> <value>\n" from c: *val and *n receive the value
 * (borrowed). False if the line is not there exactly, with its final newline.
 */
static bool take_line(struct coffer_cursor *c, const char *key, const char **val, size_t *n)
{
    size_t klen = strlen(key);
    const unsigned char *line = NULL;
    size_t i;

    if (c->left < klen + 2 || !coffer_mem_equal(c->p, key, klen) || c->p[klen] != ' ') {
        return false;
    }
    for (i = klen + 1; i < c->left && c->p[i] != '\n'; i++) {
    }
    if (i == c->left) {
        return false;
    }
    if (coffer_cursor_bytes(c, i + 1, &line) != COFFER_OK) {
        return false;
    }
    *val = (const char *)line + klen + 1;
    *n = i - klen - 1;
    return true;
}

static enum coffer_err bad_line(int line, const char *key, const char *what)
{
    return coffer_err_set(COFFER_E_INVALID, "checkpoint message line %d (%s): %s", line, key, what);
}

static enum coffer_err take_dec(struct coffer_cursor *c, int line, const char *key, int64_t *out)
{
    const char *v = NULL;
    size_t n = 0;

    if (!take_line(c, key, &v, &n)) {
        return bad_line(line, key, "missing or not terminated by a newline");
    }
    if (!audit_dec_parse(v, n, false, out)) {
        return bad_line(line, key, "not a canonical decimal");
    }
    return COFFER_OK;
}

static enum coffer_err take_hash(struct coffer_cursor *c, int line, const char *key,
                                 unsigned char out[COFFER_AUDIT_HASH_LEN])
{
    const char *v = NULL;
    size_t n = 0;

    if (!take_line(c, key, &v, &n)) {
        return bad_line(line, key, "missing or not terminated by a newline");
    }
    if (!audit_hex_parse(v, n, out, COFFER_AUDIT_HASH_LEN)) {
        return bad_line(line, key, "not 64 lower-case hex digits");
    }
    return COFFER_OK;
}

enum coffer_err coffer_audit_message_parse(const unsigned char *msg, size_t len,
                                           struct coffer_audit_cp_fields *out)
{
    struct coffer_audit_cp_fields f;
    struct coffer_cursor c;
    const char *v = NULL;
    size_t n = 0;
    int64_t key = 0;
    enum coffer_err r;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "checkpoint message: no output");
    }
    memset(out, 0, sizeof(*out));
    memset(&f, 0, sizeof(f));
    if (msg == NULL || len == 0) {
        return coffer_err_set(COFFER_E_INVALID, "checkpoint message is empty");
    }
    if (len > COFFER_AUDIT_MESSAGE_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "checkpoint message is %zu bytes, more than %d",
                              len, COFFER_AUDIT_MESSAGE_MAX);
    }
    if (memchr(msg, '\0', len) != NULL) {
        return coffer_err_set(COFFER_E_INVALID, "checkpoint message holds a NUL byte");
    }
    c = coffer_cursor_init(msg, len);
    if (!take_line(&c, MAGIC, &v, &n) || n != strlen(MAGIC_VERSION) ||
        !coffer_mem_equal(v, MAGIC_VERSION, n)) {
        return bad_line(1, MAGIC, "not a coffer-audit-checkpoint v1 message");
    }
    if ((r = take_dec(&c, 2, "seq", &f.seq)) != COFFER_OK) {
        return r;
    }
    if (!take_line(&c, "at", &v, &n)) {
        return bad_line(3, "at", "missing or not terminated by a newline");
    }
    if (!audit_timestamp_ok(v, n)) {
        return bad_line(3, "at", "not YYYY-MM-DDTHH:MM:SS.uuuuuuZ");
    }
    coffer_memcpy(f.at, v, n);
    if ((r = take_dec(&c, 4, "first-event", &f.first_event)) != COFFER_OK ||
        (r = take_dec(&c, 5, "last-event", &f.last_event)) != COFFER_OK ||
        (r = take_dec(&c, 6, "events", &f.events)) != COFFER_OK ||
        (r = take_hash(&c, 7, "chain", f.chain)) != COFFER_OK ||
        (r = take_hash(&c, 8, "previous", f.previous)) != COFFER_OK ||
        (r = take_hash(&c, 9, "schema", f.schema)) != COFFER_OK ||
        (r = take_dec(&c, 10, "key", &key)) != COFFER_OK ||
        (r = take_hash(&c, 11, "fingerprint", f.fingerprint)) != COFFER_OK) {
        return r;
    }
    if (coffer_cursor_end(&c) != COFFER_OK) {
        return coffer_err_set(COFFER_E_INVALID, "checkpoint message has %zu bytes after line 11",
                              c.left);
    }
    if (key > INT32_MAX) {
        return bad_line(10, "key", "key version out of range");
    }
    f.key_version = (int32_t)key;
    if ((r = fields_check(&f)) != COFFER_OK) {
        return r;
    }
    *out = f;
    return COFFER_OK;
}
