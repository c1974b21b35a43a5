/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The export reader: reads a JSONL or CSV export (docs/auditors.md) record
 * by record, validates each one completely (its keys, types, lengths, hex,
 * base64, sizes and its place in the order of the format) and feeds a
 * verifier with what it read. A file that is not a well-formed export is
 * refused with "file:line: what"; a well-formed one that fails verification
 * is a report, not an error.
 *
 * It never trusts a size or a count written in the file: lines are read
 * under a fixed cap, every decoded length is checked before use, and the end
 * record's counts are compared with what was read.
 */
#include "audit/audit_int.h"

#include "coffer/buf.h"
#include "coffer/mem.h"
#include "coffer/text.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#define LINE_MAX_CHECKPOINT (1024u * 1024u) /* a checkpoint line holds its sealed list */
#define LINE_MAX_OTHER (64u * 1024u)
#define CSV_COLUMNS (COFFER_AUDIT_FIELDS + 3) /* record, the fields, row_hash, proof */
#define CSV_ROW_HASH (COFFER_AUDIT_FIELDS + 1)
#define CSV_PROOF (COFFER_AUDIT_FIELDS + 2)
#define HEADER_TEXT_MAX 256
#define SEALED_MAX ((size_t)COFFER_AUDIT_SEALED_ENTRY * COFFER_AUDIT_CHECKPOINT_MAX)

enum record {
    REC_HEADER,
    REC_KEY,
    REC_ANCHOR,
    REC_CHECKPOINT,
    REC_EVENT,
    REC_END,
    REC_COUNT,
};

static const char *const record_names[REC_COUNT] = {
    [REC_HEADER] = "header",         [REC_KEY] = "signing_key", [REC_ANCHOR] = "anchor",
    [REC_CHECKPOINT] = "checkpoint", [REC_EVENT] = "event",     [REC_END] = "end",
};

/* Where the file is in the order of the format. */
enum stage {
    STAGE_START, /* before the header */
    STAGE_KEYS,  /* after the header or a key */
    STAGE_ANCHOR,
    STAGE_BODY, /* checkpoints and events */
    STAGE_END,
};

struct import {
    FILE *in;
    const char *name;
    enum coffer_audit_format format;
    int64_t line;          /* the line the current record starts on */
    int64_t next_line;     /* the line the next record starts on */
    struct coffer_buf rec; /* the current record, without its line end */
    enum stage stage;
    const unsigned char *pin;
    struct coffer_audit_verifier *v;
    bool complete;
    int64_t first_checkpoint;
    int64_t last_checkpoint;
    int64_t checkpoints; /* checkpoint records read (not the anchor) */
    int64_t last_seq;    /* seq of the last checkpoint record read */
    int64_t events;
};

/* "name:line: what" as the detail of COFFER_E_INVALID. */
static enum coffer_err fail(const struct import *im, const char *fmt, ...) COFFER_PRINTF(2, 3);

static enum coffer_err fail(const struct import *im, const char *fmt, ...)
{
    char what[384];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return coffer_err_set(COFFER_E_INVALID, "%s:%" PRId64 ": %s", im->name, im->line, what);
}

/* Adds the place in the file to an error from the verifier or a check. */
static enum coffer_err fail_wrap(const struct import *im, enum coffer_err r)
{
    if (r == COFFER_E_EXISTS || r == COFFER_E_STATE) {
        r = COFFER_E_INVALID;
    }
    return coffer_err_wrap(r, "%s:%" PRId64, im->name, im->line);
}

/* ---- Reading records ---------------------------------------------------------- */

static enum coffer_err put_byte(struct import *im, int c)
{
    if (c == '\0') {
        return fail(im, "a NUL byte");
    }
    if (im->rec.len >= LINE_MAX_CHECKPOINT) {
        return fail(im, "line longer than %u bytes", LINE_MAX_CHECKPOINT);
    }
    return coffer_buf_put_u8(&im->rec, (uint8_t)c);
}

/* Reads the next JSONL line into im->rec. *eof is set at the end of the file. */
static enum coffer_err read_jsonl(struct import *im, bool *eof)
{
    enum coffer_err r;
    int c;

    im->rec.len = 0;
    im->line = im->next_line;
    *eof = false;
    while ((c = getc(im->in)) != EOF && c != '\n') {
        if ((r = put_byte(im, c)) != COFFER_OK) {
            return r;
        }
    }
    if (ferror(im->in)) {
        return coffer_err_set(COFFER_E_IO, "%s:%" PRId64 ": read failed", im->name, im->line);
    }
    if (c == EOF) {
        if (im->rec.len > 0) {
            return fail(im, "the last line has no final newline");
        }
        *eof = true;
        return COFFER_OK;
    }
    im->next_line++;
    return COFFER_OK;
}

/*
 * Reads the next CSV record into im->rec: up to CRLF outside quotes. A
 * quoted cell may hold CR and LF, so a record may span several lines. A
 * quote opens a quoted cell only at the start of a cell; "" inside one is a
 * quote.
 */
static enum coffer_err read_csv(struct import *im, bool *eof)
{
    bool quoted = false;
    bool cell_start = true;
    enum coffer_err r;
    int c;

    im->rec.len = 0;
    im->line = im->next_line;
    *eof = false;
    while ((c = getc(im->in)) != EOF) {
        if (c == '"' && quoted) {
            int next = getc(im->in);

            if (next == '"') {
                if ((r = put_byte(im, c)) != COFFER_OK) {
                    return r;
                }
            } else {
                quoted = false;
                if (next != EOF && ungetc(next, im->in) == EOF) {
                    return coffer_err_set(COFFER_E_IO, "%s: read failed", im->name);
                }
            }
        } else if (c == '"') {
            if (!cell_start) {
                return fail(im, "a quote inside an unquoted cell");
            }
            quoted = true;
        } else if (c == '\n' && !quoted) {
            return fail(im, "line ends with LF, not CRLF");
        } else if (c == '\r' && !quoted) {
            if ((c = getc(im->in)) != '\n') {
                return fail(im, "CR not followed by LF");
            }
            im->next_line++;
            return COFFER_OK;
        }
        if (c == '\n') {
            im->next_line++;
        }
        cell_start = c == ',' && !quoted;
        if ((r = put_byte(im, c)) != COFFER_OK) {
            return r;
        }
    }
    if (ferror(im->in)) {
        return coffer_err_set(COFFER_E_IO, "%s:%" PRId64 ": read failed", im->name, im->line);
    }
    if (im->rec.len > 0 || quoted) {
        return fail(im, quoted ? "a quoted cell is not closed" : "the last line has no final CRLF");
    }
    *eof = true;
    return COFFER_OK;
}

static enum coffer_err read_record(struct import *im, bool *eof)
{
    return im->format == COFFER_AUDIT_JSONL ? read_jsonl(im, eof) : read_csv(im, eof);
}

/*
 * Splits the CSV record in im->rec into exactly CSV_COLUMNS cells, unquoted,
 * each NUL-terminated in buf (im->rec.len + CSV_COLUMNS bytes: a cell is never
 * longer unquoted than quoted).
 */
static enum coffer_err csv_split(struct import *im, char *buf, const char *cells[CSV_COLUMNS])
{
    const unsigned char *s = im->rec.data;
    size_t len = im->rec.len;
    size_t i = 0;
    size_t o = 0;
    size_t n = 0;

    for (;;) {
        if (n == CSV_COLUMNS) {
            return fail(im, "more than %d cells", CSV_COLUMNS);
        }
        cells[n++] = buf + o;
        if (i < len && s[i] == '"') {
            for (i++;; i++) {
                if (i == len) {
                    return fail(im, "cell %zu: a quoted cell is not closed", n);
                }
                if (s[i] == '"') {
                    if (i + 1 == len || s[i + 1] != '"') {
                        break;
                    }
                    i++;
                }
                buf[o++] = (char)s[i];
            }
            i++;
            if (i < len && s[i] != ',') {
                return fail(im, "cell %zu: text after its closing quote", n);
            }
        } else {
            for (; i < len && s[i] != ','; i++) {
                if (s[i] == '"') {
                    return fail(im, "cell %zu: a quote inside an unquoted cell", n);
                }
                buf[o++] = (char)s[i];
            }
        }
        buf[o++] = '\0';
        if (i == len) {
            break;
        }
        i++;
    }
    if (n != CSV_COLUMNS) {
        return fail(im, "%zu cells, want %d", n, CSV_COLUMNS);
    }
    return COFFER_OK;
}

/* ---- JSON fields ----------------------------------------------------------------- */

/* Whether obj has exactly the n keys of names, no other. */
static enum coffer_err exact_keys(const struct import *im, json_t *obj, const char *const *names,
                                  size_t n, const char *record)
{
    const char *key;
    json_t *val;
    size_t i;

    json_object_foreach(obj, key, val)
    {
        for (i = 0; i < n && strcmp(key, names[i]) != 0; i++) {
        }
        if (i == n) {
            return fail(im, "%s record has an unknown key \"%.40s\"", record, key);
        }
    }
    for (i = 0; i < n; i++) {
        if (json_object_get(obj, names[i]) == NULL) {
            return fail(im, "%s record has no %s", record, names[i]);
        }
    }
    return COFFER_OK;
}

static enum coffer_err get_int(const struct import *im, json_t *obj, const char *key, int64_t min,
                               int64_t max, int64_t *out)
{
    json_t *v = json_object_get(obj, key);
    json_int_t n;

    if (!json_is_integer(v)) {
        return fail(im, "%s is not an integer", key);
    }
    n = json_integer_value(v);
    if (n < min || n > max) {
        return fail(im, "%s %lld is out of range", key, (long long)n);
    }
    *out = (int64_t)n;
    return COFFER_OK;
}

/* An integer at least 1, or null (0). */
static enum coffer_err get_seq_or_null(const struct import *im, json_t *obj, const char *key,
                                       int64_t *out)
{
    *out = 0;
    if (json_is_null(json_object_get(obj, key))) {
        return COFFER_OK;
    }
    return get_int(im, obj, key, 1, INT64_MAX, out);
}

/* A string of valid text, at most max bytes, or null (NULL) when nullable. */
static enum coffer_err get_text(const struct import *im, json_t *obj, const char *key,
                                bool nullable, size_t max, const char **out)
{
    json_t *v = json_object_get(obj, key);

    *out = NULL;
    if (nullable && json_is_null(v)) {
        return COFFER_OK;
    }
    if (!json_is_string(v) || !coffer_text_ok(json_string_value(v), json_string_length(v), max)) {
        return fail(im, "%s is not a string of 1 to %zu printable characters", key, max);
    }
    *out = json_string_value(v);
    return COFFER_OK;
}

static enum coffer_err get_hash(const struct import *im, json_t *obj, const char *key,
                                unsigned char out[COFFER_AUDIT_HASH_LEN])
{
    json_t *v = json_object_get(obj, key);

    if (!json_is_string(v) ||
        !audit_hex_parse(json_string_value(v), json_string_length(v), out, COFFER_AUDIT_HASH_LEN)) {
        return fail(im, "%s is not 64 lower-case hex digits", key);
    }
    return COFFER_OK;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

/*
 * Decodes standard base64 with padding, strictly: no whitespace, padding only
 * at the end, unused bits zero (one spelling per byte string). out holds at
 * least 3 * (n / 4) bytes.
 */
static bool b64_decode(const char *s, size_t n, unsigned char *out, size_t *len)
{
    size_t i;
    size_t o = 0;

    if (n % 4 != 0) {
        return false;
    }
    for (i = 0; i < n; i += 4) {
        bool last = i + 4 == n;
        int v[4];
        int pad = 0;
        int k;

        for (k = 0; k < 4; k++) {
            if (last && s[i + k] == '=' && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad > 0 || (v[k] = b64_value(s[i + k])) < 0) {
                return false;
            }
        }
        if ((pad >= 1 && (v[2] & 0x03) != 0) || (pad == 2 && (v[1] & 0x0f) != 0)) {
            return false;
        }
        out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
        if (pad < 2) {
            out[o++] = (unsigned char)((v[1] & 0x0f) << 4 | v[2] >> 2);
        }
        if (pad < 1) {
            out[o++] = (unsigned char)((v[2] & 0x03) << 6 | v[3]);
        }
    }
    *len = o;
    return true;
}

/*
 * Decodes the base64 string at key into a new buffer *out (coffer_free) of
 * min to max bytes. The string's length is checked before anything is
 * allocated.
 */
static enum coffer_err get_base64(const struct import *im, json_t *obj, const char *key, size_t min,
                                  size_t max, unsigned char **out, size_t *len)
{
    json_t *v = json_object_get(obj, key);
    size_t n;

    *out = NULL;
    *len = 0;
    if (!json_is_string(v)) {
        return fail(im, "%s is not a string", key);
    }
    n = json_string_length(v);
    if (n > 4 * ((max + 2) / 3)) {
        return fail(im, "%s is longer than %zu bytes in base64", key, max);
    }
    if ((*out = coffer_calloc(n / 4 * 3 + 1, 1)) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "%s:%" PRId64 ": decoding %s", im->name, im->line,
                              key);
    }
    if (!b64_decode(json_string_value(v), n, *out, len)) {
        coffer_free(*out);
        *out = NULL;
        return fail(im, "%s is not canonical base64", key);
    }
    if (*len < min || *len > max) {
        coffer_free(*out);
        *out = NULL;
        return fail(im, "%s is %zu bytes, want %zu to %zu", key, *len, min, max);
    }
    return COFFER_OK;
}

/* ---- Records ------------------------------------------------------------------------ */

static enum coffer_err on_header(struct import *im, json_t *obj)
{
    static const char *const keys[] = {
        "type",  "format", "version",  "exported_at",      "since",
        "until", "org",    "complete", "first_checkpoint", "last_checkpoint"};
    json_t *format = json_object_get(obj, "format");
    const char *text = NULL;
    int64_t version = 0;
    enum coffer_err r;

    if ((r = exact_keys(im, obj, keys, sizeof(keys) / sizeof(keys[0]), "header")) != COFFER_OK) {
        return r;
    }
    if (!json_is_string(format) || strcmp(json_string_value(format), "coffer-audit-export") != 0) {
        return fail(im, "format is not coffer-audit-export");
    }
    if ((r = get_int(im, obj, "version", 1, 1, &version)) != COFFER_OK ||
        (r = get_text(im, obj, "exported_at", false, HEADER_TEXT_MAX, &text)) != COFFER_OK ||
        (r = get_text(im, obj, "since", true, HEADER_TEXT_MAX, &text)) != COFFER_OK ||
        (r = get_text(im, obj, "until", true, HEADER_TEXT_MAX, &text)) != COFFER_OK ||
        (r = get_text(im, obj, "org", true, HEADER_TEXT_MAX, &text)) != COFFER_OK ||
        (r = get_seq_or_null(im, obj, "first_checkpoint", &im->first_checkpoint)) != COFFER_OK ||
        (r = get_seq_or_null(im, obj, "last_checkpoint", &im->last_checkpoint)) != COFFER_OK) {
        return r;
    }
    if (!json_is_boolean(json_object_get(obj, "complete"))) {
        return fail(im, "complete is not a boolean");
    }
    im->complete = json_is_true(json_object_get(obj, "complete"));
    if ((im->first_checkpoint == 0) != (im->last_checkpoint == 0) ||
        im->last_checkpoint < im->first_checkpoint) {
        return fail(im, "checkpoints %" PRId64 " to %" PRId64 " are not a range",
                    im->first_checkpoint, im->last_checkpoint);
    }
    if ((r = coffer_audit_verifier_new(im->complete ? COFFER_AUDIT_FROM_COMPLETE_EXPORT
                                                    : COFFER_AUDIT_FROM_EXPORT,
                                       &im->v)) != COFFER_OK) {
        return r;
    }
    if (im->pin != NULL) {
        coffer_audit_verifier_pin(im->v, im->pin);
    }
    return COFFER_OK;
}

static enum coffer_err on_key(struct import *im, json_t *obj)
{
    static const char *const keys[] = {"type", "version", "label", "public_key", "fingerprint"};
    unsigned char fp[COFFER_AUDIT_HASH_LEN];
    unsigned char want_fp[COFFER_AUDIT_HASH_LEN];
    unsigned char *spki = NULL;
    size_t len = 0;
    char want[32];
    const char *label = NULL;
    int64_t version = 0;
    enum coffer_err r;

    if ((r = exact_keys(im, obj, keys, sizeof(keys) / sizeof(keys[0]), "signing_key")) !=
            COFFER_OK ||
        (r = get_int(im, obj, "version", 1, INT32_MAX, &version)) != COFFER_OK ||
        (r = get_text(im, obj, "label", false, 64, &label)) != COFFER_OK ||
        (r = get_hash(im, obj, "fingerprint", fp)) != COFFER_OK) {
        return r;
    }
    (void)snprintf(want, sizeof(want), "coffer-audit-v%d", (int)version);
    if (strcmp(label, want) != 0) {
        return fail(im, "signing key %" PRId64 " is not labelled %s", version, want);
    }
    if ((r = get_base64(im, obj, "public_key", 1, COFFER_AUDIT_SPKI_MAX, &spki, &len)) !=
        COFFER_OK) {
        return r;
    }
    if ((r = audit_sha256(spki, len, want_fp)) != COFFER_OK) {
        goto out;
    }
    if (!coffer_mem_equal(fp, want_fp, sizeof(fp))) {
        r = fail(im, "fingerprint of signing key %" PRId64 " is not that of its public key",
                 version);
        goto out;
    }
    if ((r = coffer_audit_verifier_add_key(im->v, (int32_t)version, spki, len)) != COFFER_OK) {
        r = fail_wrap(im, r);
        goto out;
    }
out:
    coffer_free(spki);
    return r;
}

static enum coffer_err on_checkpoint(struct import *im, json_t *obj, bool anchor)
{
    static const char *const keys[] = {"type", "seq", "message", "signature", "sealed"};
    struct coffer_audit_checkpoint cp;
    unsigned char *message = NULL;
    unsigned char *signature = NULL;
    unsigned char *sealed = NULL;
    const char *record = anchor ? "anchor" : "checkpoint";
    enum coffer_err r;

    memset(&cp, 0, sizeof(cp));
    cp.anchor = anchor;
    if ((r = exact_keys(im, obj, keys, anchor ? 4 : 5, record)) != COFFER_OK ||
        (r = get_int(im, obj, "seq", 1, INT64_MAX, &cp.seq)) != COFFER_OK ||
        (r = get_base64(im, obj, "message", 1, COFFER_AUDIT_MESSAGE_MAX, &message,
                        &cp.message_len)) != COFFER_OK ||
        (r = get_base64(im, obj, "signature", 1, COFFER_AUDIT_SIG_MAX, &signature,
                        &cp.signature_len)) != COFFER_OK) {
        goto out;
    }
    cp.message = message;
    cp.signature = signature;
    if (!anchor) {
        if ((r = get_base64(im, obj, "sealed", 0, SEALED_MAX, &sealed, &cp.sealed_len)) !=
            COFFER_OK) {
            goto out;
        }
        if (cp.sealed_len % COFFER_AUDIT_SEALED_ENTRY != 0) {
            r = fail(im, "sealed is %zu bytes, not a multiple of %d", cp.sealed_len,
                     COFFER_AUDIT_SEALED_ENTRY);
            goto out;
        }
        cp.sealed = sealed;
        if (im->checkpoints == 0 && cp.seq != im->first_checkpoint) {
            r = fail(im, "first checkpoint is %" PRId64 ", the header says %" PRId64, cp.seq,
                     im->first_checkpoint);
            goto out;
        }
        im->checkpoints++;
        im->last_seq = cp.seq;
    }
    if ((r = coffer_audit_verifier_checkpoint(im->v, &cp)) != COFFER_OK) {
        r = fail_wrap(im, r);
        goto out;
    }
out:
    coffer_free(message);
    coffer_free(signature);
    coffer_free(sealed);
    return r;
}

/* An event's fields as read, with room for the decimals made from JSON integers. */
struct event {
    struct coffer_audit_row row;
    char num[COFFER_AUDIT_FIELDS][24];
};

static enum coffer_err feed_event(struct import *im, struct event *ev)
{
    enum coffer_err r;

    if ((r = audit_row_check(&ev->row)) != COFFER_OK ||
        (r = coffer_audit_verifier_event(im->v, &ev->row)) != COFFER_OK) {
        return fail_wrap(im, r);
    }
    im->events++;
    return COFFER_OK;
}

/* Field i of a JSON event into ev: type checked here, text form by audit_row_check. */
static enum coffer_err event_field(struct import *im, json_t *obj, int i, struct event *ev)
{
    const char *name = coffer_audit_field_names[i];
    json_t *v = json_object_get(obj, name);

    ev->row.f[i] = NULL;
    if (json_is_null(v) && i != COFFER_AF_ID) {
        return COFFER_OK;
    }
    switch (audit_field_kind(i)) {
    case AUDIT_FK_INT:
        if (!json_is_integer(v)) {
            return fail(im, "%s is not an integer%s", name, i == COFFER_AF_ID ? "" : " or null");
        }
        (void)snprintf(ev->num[i], sizeof(ev->num[i]), "%lld", (long long)json_integer_value(v));
        ev->row.f[i] = ev->num[i];
        return COFFER_OK;
    case AUDIT_FK_BOOL:
        if (!json_is_boolean(v)) {
            return fail(im, "%s is not a boolean or null", name);
        }
        ev->row.f[i] = json_is_true(v) ? "true" : "false";
        return COFFER_OK;
    case AUDIT_FK_TIME:
    case AUDIT_FK_TEXT:
        if (!json_is_string(v)) {
            return fail(im, "%s is not a string or null", name);
        }
        ev->row.f[i] = json_string_value(v);
        return COFFER_OK;
    default:
        return fail(im, "%s has no kind", name);
    }
}

static enum coffer_err on_event_json(struct import *im, json_t *obj)
{
    const char *keys[COFFER_AUDIT_FIELDS + 2];
    struct event ev;
    int64_t id = 0;
    enum coffer_err r;
    int i;

    memset(&ev, 0, sizeof(ev));
    keys[0] = "type";
    for (i = 0; i < COFFER_AUDIT_FIELDS; i++) {
        keys[i + 1] = coffer_audit_field_names[i];
    }
    keys[COFFER_AUDIT_FIELDS + 1] = "row_hash";
    if ((r = exact_keys(im, obj, keys, COFFER_AUDIT_FIELDS + 2, "event")) != COFFER_OK ||
        (r = get_int(im, obj, "id", 1, INT64_MAX, &id)) != COFFER_OK ||
        (r = get_hash(im, obj, "row_hash", ev.row.row_hash)) != COFFER_OK) {
        return r;
    }
    ev.row.id = id;
    for (i = 0; i < COFFER_AUDIT_FIELDS; i++) {
        if ((r = event_field(im, obj, i, &ev)) != COFFER_OK) {
            return r;
        }
    }
    return feed_event(im, &ev);
}

static enum coffer_err on_end(struct import *im, json_t *obj)
{
    static const char *const keys[] = {"type", "checkpoints", "events"};
    int64_t checkpoints = 0;
    int64_t events = 0;
    enum coffer_err r;

    if ((r = exact_keys(im, obj, keys, 3, "end")) != COFFER_OK ||
        (r = get_int(im, obj, "checkpoints", 0, INT64_MAX, &checkpoints)) != COFFER_OK ||
        (r = get_int(im, obj, "events", 0, INT64_MAX, &events)) != COFFER_OK) {
        return r;
    }
    if (checkpoints != im->checkpoints || events != im->events) {
        return fail(im,
                    "end record counts %" PRId64 " checkpoints and %" PRId64
                    " events, the file holds %" PRId64 " and %" PRId64,
                    checkpoints, events, im->checkpoints, im->events);
    }
    if (im->last_seq != im->last_checkpoint) {
        return fail(im, "last checkpoint is %" PRId64 ", the header says %" PRId64, im->last_seq,
                    im->last_checkpoint);
    }
    return COFFER_OK;
}

/* Whether a record of kind k may come at the current stage; moves the stage on. */
static enum coffer_err order(struct import *im, enum record k)
{
    enum stage next;
    bool ok;

    switch (k) {
    case REC_HEADER:
        ok = im->stage == STAGE_START;
        next = STAGE_KEYS;
        break;
    case REC_KEY:
        ok = im->stage == STAGE_KEYS;
        next = STAGE_KEYS;
        break;
    case REC_ANCHOR:
        ok = im->stage == STAGE_KEYS;
        next = STAGE_ANCHOR;
        break;
    case REC_CHECKPOINT:
    case REC_EVENT:
        ok = im->stage >= STAGE_KEYS && im->stage <= STAGE_BODY;
        next = STAGE_BODY;
        break;
    case REC_END:
        ok = im->stage >= STAGE_KEYS && im->stage <= STAGE_BODY;
        next = STAGE_END;
        break;
    default:
        ok = false;
        next = im->stage;
        break;
    }
    if (im->stage == STAGE_START && k != REC_HEADER) {
        return fail(im, "the first record is not the header");
    }
    if (im->stage == STAGE_END) {
        return fail(im, "a record after the end record");
    }
    if (!ok) {
        return fail(im, "a %s record out of order", record_names[k]);
    }
    im->stage = next;
    return COFFER_OK;
}

static enum coffer_err record_kind(const struct import *im, const char *s, enum record *k)
{
    int i;

    for (i = 0; i < REC_COUNT; i++) {
        if (s != NULL && strcmp(s, record_names[i]) == 0) {
            *k = (enum record)i;
            return COFFER_OK;
        }
    }
    return fail(im, "unknown record type");
}

/* Size cap of a record: a checkpoint carries its sealed list, nothing else is large. */
static enum coffer_err record_size(const struct import *im, enum record k)
{
    if (k != REC_CHECKPOINT && im->rec.len > LINE_MAX_OTHER) {
        return fail(im, "%s record longer than %u bytes", record_names[k], LINE_MAX_OTHER);
    }
    return COFFER_OK;
}

/* A record given as a JSON object (a JSONL line, or a CSV proof cell of kind want). */
static enum coffer_err on_object(struct import *im, const char *text, size_t len, bool csv,
                                 enum record want)
{
    json_error_t jerr;
    json_t *obj = NULL;
    enum record k = REC_HEADER;
    enum coffer_err r;
    size_t i;

    if (len < 2 || text[0] != '{' || text[len - 1] != '}') {
        return fail(im, "not a JSON object on one line");
    }
    /* Raw control bytes can only be whitespace between tokens: the writer never puts any. */
    for (i = 0; i < len; i++) {
        if ((unsigned char)text[i] < 0x20) {
            return fail(im, "a control character in a JSON record");
        }
    }
    obj = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (obj == NULL || !json_is_object(obj)) {
        r = fail(im, "not a JSON object (%s)", obj == NULL ? jerr.text : "another JSON value");
        goto out;
    }
    if ((r = record_kind(im, json_string_value(json_object_get(obj, "type")), &k)) != COFFER_OK) {
        goto out;
    }
    if (csv && k != want) {
        r = fail(im, "the proof is a %s record, the row says %s", record_names[k],
                 record_names[want]);
        goto out;
    }
    if ((r = record_size(im, k)) != COFFER_OK || (r = order(im, k)) != COFFER_OK) {
        goto out;
    }
    switch (k) {
    case REC_HEADER:
        r = on_header(im, obj);
        break;
    case REC_KEY:
        r = on_key(im, obj);
        break;
    case REC_ANCHOR:
        r = on_checkpoint(im, obj, true);
        break;
    case REC_CHECKPOINT:
        r = on_checkpoint(im, obj, false);
        break;
    case REC_EVENT:
        r = csv ? fail(im, "an event row carries its fields in cells, not as proof")
                : on_event_json(im, obj);
        break;
    case REC_END:
        r = on_end(im, obj);
        break;
    default:
        r = fail(im, "unknown record type");
        break;
    }
out:
    json_decref(obj);
    return r;
}

/* An event row of a CSV export: the fields in their cells, empty for NULL. */
static enum coffer_err on_event_csv(struct import *im, const char *const cells[CSV_COLUMNS])
{
    struct event ev;
    enum coffer_err r;
    int i;

    memset(&ev, 0, sizeof(ev));
    if (cells[CSV_PROOF][0] != '\0') {
        return fail(im, "an event row with a proof");
    }
    if (!audit_dec_ok(cells[1 + COFFER_AF_ID], false, &ev.row.id) || ev.row.id < 1) {
        return fail(im, "id is not an event id");
    }
    if (!audit_hex_parse(cells[CSV_ROW_HASH], strlen(cells[CSV_ROW_HASH]), ev.row.row_hash,
                         COFFER_AUDIT_HASH_LEN)) {
        return fail(im, "row_hash is not 64 lower-case hex digits");
    }
    for (i = 0; i < COFFER_AUDIT_FIELDS; i++) {
        ev.row.f[i] = cells[1 + i][0] != '\0' ? cells[1 + i] : NULL;
    }
    if ((r = record_size(im, REC_EVENT)) != COFFER_OK || (r = order(im, REC_EVENT)) != COFFER_OK) {
        return r;
    }
    return feed_event(im, &ev);
}

static enum coffer_err on_csv_header_row(struct import *im, const char *const cells[CSV_COLUMNS])
{
    int i;

    if (strcmp(cells[0], "record") != 0 || strcmp(cells[CSV_ROW_HASH], "row_hash") != 0 ||
        strcmp(cells[CSV_PROOF], "proof") != 0) {
        return fail(im, "the header row is not record,<fields>,row_hash,proof");
    }
    for (i = 0; i < COFFER_AUDIT_FIELDS; i++) {
        if (strcmp(cells[1 + i], coffer_audit_field_names[i]) != 0) {
            return fail(im, "column %d is \"%.40s\", want %s", i + 2, cells[1 + i],
                        coffer_audit_field_names[i]);
        }
    }
    return COFFER_OK;
}

static enum coffer_err on_csv(struct import *im, bool header_row)
{
    const char *cells[CSV_COLUMNS];
    char *buf = NULL;
    enum record k = REC_HEADER;
    enum coffer_err r;
    int i;

    if ((buf = coffer_calloc(im->rec.len + CSV_COLUMNS, 1)) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "%s:%" PRId64 ": CSV record", im->name, im->line);
    }
    if ((r = csv_split(im, buf, cells)) != COFFER_OK) {
        goto out;
    }
    if (header_row) {
        r = on_csv_header_row(im, cells);
        goto out;
    }
    if ((r = record_kind(im, cells[0], &k)) != COFFER_OK) {
        goto out;
    }
    if (k == REC_EVENT) {
        r = on_event_csv(im, cells);
        goto out;
    }
    for (i = 1; i < CSV_PROOF; i++) {
        if (cells[i][0] != '\0') {
            r = fail(im, "a %s row with a value in column %d", record_names[k], i + 1);
            goto out;
        }
    }
    r = on_object(im, cells[CSV_PROOF], strlen(cells[CSV_PROOF]), true, k);
out:
    coffer_free(buf);
    return r;
}

/* Recognises the format from the first byte: '{' for JSONL, 'r' (record,...) for CSV. */
static enum coffer_err detect(struct import *im)
{
    int c = getc(im->in);

    im->line = 1;
    if (c == EOF) {
        return ferror(im->in) ? coffer_err_set(COFFER_E_IO, "%s: read failed", im->name)
                              : fail(im, "empty file");
    }
    if (ungetc(c, im->in) == EOF) {
        return coffer_err_set(COFFER_E_IO, "%s: read failed", im->name);
    }
    if (c == '{') {
        im->format = COFFER_AUDIT_JSONL;
    } else if (c == 'r') {
        im->format = COFFER_AUDIT_CSV;
    } else {
        return fail(im, "not an audit export (neither JSONL nor CSV)");
    }
    return COFFER_OK;
}

static enum coffer_err read_all(struct import *im)
{
    bool eof = false;
    enum coffer_err r;

    if ((r = detect(im)) != COFFER_OK) {
        return r;
    }
    if (im->format == COFFER_AUDIT_CSV) {
        if ((r = read_record(im, &eof)) != COFFER_OK) {
            return r;
        }
        if (eof || (r = on_csv(im, true)) != COFFER_OK) {
            return eof ? fail(im, "empty file") : r;
        }
    }
    for (;;) {
        if ((r = read_record(im, &eof)) != COFFER_OK) {
            return r;
        }
        if (eof) {
            break;
        }
        if (im->format == COFFER_AUDIT_JSONL) {
            r = on_object(im, (const char *)im->rec.data, im->rec.len, false, REC_HEADER);
        } else {
            r = on_csv(im, false);
        }
        if (r != COFFER_OK) {
            return r;
        }
    }
    if (im->stage != STAGE_END) {
        return fail(im, "the file ends without its end record");
    }
    return COFFER_OK;
}

enum coffer_err coffer_audit_verify_file(FILE *in, const char *name, const unsigned char *pin,
                                         bool *complete, int64_t *first_checkpoint,
                                         int64_t *last_checkpoint, struct coffer_audit_report *out)
{
    struct import im;
    enum coffer_err r;

    if (in == NULL || out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "audit verify: missing argument");
    }
    memset(out, 0, sizeof(*out));
    memset(&im, 0, sizeof(im));
    im.in = in;
    im.name = name != NULL ? name : "<input>";
    im.next_line = 1;
    im.pin = pin;
    im.rec.max = LINE_MAX_CHECKPOINT;
    if ((r = read_all(&im)) != COFFER_OK) {
        goto out;
    }
    if ((r = coffer_audit_verifier_finish(im.v, out)) != COFFER_OK) {
        goto out;
    }
    if (complete != NULL) {
        *complete = im.complete;
    }
    if (first_checkpoint != NULL) {
        *first_checkpoint = im.first_checkpoint;
    }
    if (last_checkpoint != NULL) {
        *last_checkpoint = im.last_checkpoint;
    }
out:
    coffer_audit_verifier_free(&im.v);
    coffer_buf_cleanup(&im.rec);
    return r;
}
