/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The export writer: the header, the signing keys, an optional anchor, the
 * checkpoints each followed by their events, the unsealed events and the end
 * record, as JSONL or CSV (docs/auditors.md). Records are written in the
 * order of the format only, and an event is written only if its reader can
 * give it back byte for byte, since the verifier recomputes every hash from
 * what it reads.
 *
 * It writes what it is given: it never checks or repairs a signature or a
 * hash, so that an export of a tampered log shows the tampering.
 */
#include "audit/audit_int.h"

#include "coffer/buf.h"
#include "coffer/mem.h"
#include "coffer/text.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#define EXPORT_TEXT_MAX 256 /* header strings: times and an org name */

/* The order of the records; each call moves forward only. */
enum stage {
    STAGE_START,
    STAGE_HEADER,
    STAGE_KEYS,
    STAGE_ANCHOR,
    STAGE_BODY,
    STAGE_END,
    STAGE_FAILED,
};

struct coffer_audit_writer {
    FILE *out;
    enum coffer_audit_format format;
    enum stage stage;
    int64_t checkpoints;
    int64_t events;
};

static const char *const record_names[] = {"header",     "signing_key", "anchor",
                                           "checkpoint", "event",       "end"};

enum coffer_err coffer_audit_writer_new(FILE *out, enum coffer_audit_format format,
                                        struct coffer_audit_writer **w)
{
    if (w == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "audit export: no output");
    }
    *w = NULL;
    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "audit export: no stream");
    }
    switch (format) {
    case COFFER_AUDIT_JSONL:
    case COFFER_AUDIT_CSV:
        break;
    default:
        return coffer_err_set(COFFER_E_INVALID, "audit export: unknown format %d", (int)format);
    }
    if ((*w = coffer_calloc(1, sizeof(**w))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "audit export writer");
    }
    (*w)->out = out;
    (*w)->format = format;
    return COFFER_OK;
}

void coffer_audit_writer_free(struct coffer_audit_writer **w)
{
    if (w != NULL) {
        coffer_free(*w);
        *w = NULL;
    }
}

/* Moves to stage `to` if the writer is at one of the stages from..upto. */
static enum coffer_err advance(struct coffer_audit_writer *w, enum stage from, enum stage upto,
                               enum stage to, const char *what)
{
    if (w == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "audit export: no writer");
    }
    if (w->stage < from || w->stage > upto) {
        return coffer_err_set(COFFER_E_STATE, "audit export: %s out of order", what);
    }
    w->stage = to;
    return COFFER_OK;
}

static int dump_to_buf(const char *p, size_t n, void *data)
{
    return coffer_buf_put(data, p, n) == COFFER_OK ? 0 : -1;
}

/* Appends one CSV cell: quoted when it holds a comma, a quote, CR or LF. */
static enum coffer_err csv_cell(struct coffer_buf *b, const char *s, size_t n)
{
    enum coffer_err r = COFFER_OK;
    size_t i;

    if (memchr(s, ',', n) == NULL && memchr(s, '"', n) == NULL && memchr(s, '\r', n) == NULL &&
        memchr(s, '\n', n) == NULL) {
        return coffer_buf_put(b, s, n);
    }
    if ((r = coffer_buf_put_u8(b, '"')) != COFFER_OK) {
        return r;
    }
    for (i = 0; i < n && r == COFFER_OK; i++) {
        if (s[i] == '"') {
            r = coffer_buf_put_u8(b, '"');
        }
        if (r == COFFER_OK) {
            r = coffer_buf_put_u8(b, (uint8_t)s[i]);
        }
    }
    return r != COFFER_OK ? r : coffer_buf_put_u8(b, '"');
}

/* Writes the whole line in b to the stream. */
static enum coffer_err emit(struct coffer_audit_writer *w, const struct coffer_buf *b)
{
    if (fwrite(b->data, 1, b->len, w->out) != b->len || ferror(w->out)) {
        w->stage = STAGE_FAILED;
        return coffer_err_set(COFFER_E_IO, "writing the audit export failed");
    }
    return COFFER_OK;
}

/*
 * Writes a record that is a JSON object (all but events in CSV): its JSONL
 * line, or a CSV row with only the record name and the object as proof.
 * Takes obj.
 */
static enum coffer_err emit_object(struct coffer_audit_writer *w, const char *record, json_t *obj)
{
    struct coffer_buf json = {0};
    struct coffer_buf line = {0};
    enum coffer_err r = COFFER_OK;
    int i;

    if (obj == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "audit export: %s record", record);
        goto out;
    }
    if (json_dump_callback(obj, dump_to_buf, &json, JSON_COMPACT) != 0) {
        r = coffer_err_set(COFFER_E_NOMEM, "audit export: encoding the %s record", record);
        goto out;
    }
    if (w->format == COFFER_AUDIT_JSONL) {
        if ((r = coffer_buf_put(&json, "\n", 1)) == COFFER_OK) {
            r = emit(w, &json);
        }
        goto out;
    }
    if ((r = coffer_buf_put(&line, record, strlen(record))) != COFFER_OK) {
        goto out;
    }
    /* Every column but the record name and the proof is empty. */
    for (i = 0; i < COFFER_AUDIT_FIELDS + 2 && r == COFFER_OK; i++) {
        r = coffer_buf_put_u8(&line, ',');
    }
    if (r != COFFER_OK || (r = csv_cell(&line, (const char *)json.data, json.len)) != COFFER_OK ||
        (r = coffer_buf_put(&line, "\r\n", 2)) != COFFER_OK) {
        goto out;
    }
    r = emit(w, &line);
out:
    json_decref(obj);
    coffer_buf_cleanup(&json);
    coffer_buf_cleanup(&line);
    return r;
}

/* Sets key to the string s, or to null when s is NULL. False on failure. */
static bool set_string_or_null(json_t *obj, const char *key, const char *s)
{
    json_t *v = s != NULL ? json_string(s) : json_null();

    return v != NULL && json_object_set_new(obj, key, v) == 0;
}

/* Sets key to n, or to null when n is 0. */
static bool set_int_or_null(json_t *obj, const char *key, int64_t n)
{
    json_t *v = n != 0 ? json_integer((json_int_t)n) : json_null();

    return v != NULL && json_object_set_new(obj, key, v) == 0;
}

static bool set_base64(json_t *obj, const char *key, const unsigned char *p, size_t n)
{
    char *text;
    bool ok;

    /* Callers bound n far below INT_MAX (at most the largest sealed list). */
    if ((text = coffer_calloc(4 * ((n + 2) / 3) + 1, 1)) == NULL) {
        return false;
    }
    if (n > 0) {
        (void)EVP_EncodeBlock((unsigned char *)text, p, (int)n);
    }
    ok = json_object_set_new(obj, key, json_string(text)) == 0;
    coffer_free(text);
    return ok;
}

static bool set_hex(json_t *obj, const char *key, const unsigned char *p, size_t n)
{
    char text[2 * COFFER_AUDIT_HASH_LEN + 1];

    if (n > COFFER_AUDIT_HASH_LEN) {
        return false;
    }
    coffer_hex(p, n, text);
    return json_object_set_new(obj, key, json_string(text)) == 0;
}

static bool header_text_ok(const char *s, bool nullable)
{
    if (s == NULL) {
        return nullable;
    }
    return coffer_text_ok(s, strlen(s), EXPORT_TEXT_MAX);
}

enum coffer_err coffer_audit_write_header(struct coffer_audit_writer *w,
                                          const struct coffer_audit_export_header *h)
{
    json_t *obj;
    enum coffer_err r;

    if (h == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "audit export: no header");
    }
    if (!header_text_ok(h->exported_at, false) || !header_text_ok(h->since, true) ||
        !header_text_ok(h->until, true) || !header_text_ok(h->org, true)) {
        return coffer_err_set(COFFER_E_INVALID, "audit export header: a text field is malformed");
    }
    if (h->first_checkpoint < 0 || h->last_checkpoint < h->first_checkpoint ||
        (h->first_checkpoint == 0) != (h->last_checkpoint == 0)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "audit export header: checkpoints %" PRId64 " to %" PRId64,
                              h->first_checkpoint, h->last_checkpoint);
    }
    if ((r = advance(w, STAGE_START, STAGE_START, STAGE_HEADER, "header")) != COFFER_OK) {
        return r;
    }
    obj = json_object();
    if (obj == NULL || json_object_set_new(obj, "type", json_string("header")) != 0 ||
        json_object_set_new(obj, "format", json_string("coffer-audit-export")) != 0 ||
        json_object_set_new(obj, "version", json_integer(1)) != 0 ||
        !set_string_or_null(obj, "exported_at", h->exported_at) ||
        !set_string_or_null(obj, "since", h->since) ||
        !set_string_or_null(obj, "until", h->until) || !set_string_or_null(obj, "org", h->org) ||
        json_object_set_new(obj, "complete", json_boolean(h->complete)) != 0 ||
        !set_int_or_null(obj, "first_checkpoint", h->first_checkpoint) ||
        !set_int_or_null(obj, "last_checkpoint", h->last_checkpoint)) {
        json_decref(obj);
        return coffer_err_set(COFFER_E_NOMEM, "audit export: header record");
    }
    if (w->format == COFFER_AUDIT_CSV) {
        struct coffer_buf line = {0};
        int i;

        r = coffer_buf_put(&line, "record", 6);
        for (i = 0; i < COFFER_AUDIT_FIELDS && r == COFFER_OK; i++) {
            if ((r = coffer_buf_put_u8(&line, ',')) == COFFER_OK) {
                r = coffer_buf_put(&line, coffer_audit_field_names[i],
                                   strlen(coffer_audit_field_names[i]));
            }
        }
        if (r == COFFER_OK) {
            r = coffer_buf_put(&line, ",row_hash,proof\r\n", 17);
        }
        if (r == COFFER_OK) {
            r = emit(w, &line);
        }
        coffer_buf_cleanup(&line);
        if (r != COFFER_OK) {
            json_decref(obj);
            return r;
        }
    }
    return emit_object(w, record_names[0], obj);
}

enum coffer_err coffer_audit_write_key(struct coffer_audit_writer *w, int32_t version,
                                       const char *label, const unsigned char *spki, size_t len)
{
    char want[32];
    unsigned char fp[COFFER_AUDIT_HASH_LEN];
    json_t *obj;
    enum coffer_err r;

    if (label == NULL || spki == NULL || len == 0 || len > COFFER_AUDIT_SPKI_MAX || version < 1) {
        return coffer_err_set(COFFER_E_INVALID, "audit export: signing key v%d is malformed",
                              (int)version);
    }
    (void)snprintf(want, sizeof(want), "coffer-audit-v%d", (int)version);
    if (strcmp(label, want) != 0) {
        return coffer_err_set(COFFER_E_INVALID, "audit export: signing key v%d is not labelled %s",
                              (int)version, want);
    }
    if ((r = audit_sha256(spki, len, fp)) != COFFER_OK ||
        (r = advance(w, STAGE_HEADER, STAGE_KEYS, STAGE_KEYS, "signing key")) != COFFER_OK) {
        return r;
    }
    obj = json_object();
    if (obj == NULL || json_object_set_new(obj, "type", json_string("signing_key")) != 0 ||
        json_object_set_new(obj, "version", json_integer(version)) != 0 ||
        json_object_set_new(obj, "label", json_string(label)) != 0 ||
        !set_base64(obj, "public_key", spki, len) || !set_hex(obj, "fingerprint", fp, sizeof(fp))) {
        json_decref(obj);
        return coffer_err_set(COFFER_E_NOMEM, "audit export: signing key record");
    }
    return emit_object(w, record_names[1], obj);
}

enum coffer_err coffer_audit_write_checkpoint(struct coffer_audit_writer *w,
                                              const struct coffer_audit_checkpoint *cp)
{
    const char *record;
    json_t *obj;
    enum coffer_err r;

    if (cp == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "audit export: no checkpoint");
    }
    record = cp->anchor ? record_names[2] : record_names[3];
    if (cp->seq < 1 || cp->message == NULL || cp->message_len == 0 ||
        cp->message_len > COFFER_AUDIT_MESSAGE_MAX || cp->signature == NULL ||
        cp->signature_len == 0 || cp->signature_len > COFFER_AUDIT_SIG_MAX) {
        return coffer_err_set(COFFER_E_INVALID,
                              "audit export: %s %" PRId64 " has no message or signature of a "
                              "valid size",
                              record, cp->seq);
    }
    if (!cp->anchor &&
        ((cp->sealed == NULL && cp->sealed_len > 0) ||
         cp->sealed_len % COFFER_AUDIT_SEALED_ENTRY != 0 ||
         cp->sealed_len > (size_t)COFFER_AUDIT_SEALED_ENTRY * COFFER_AUDIT_CHECKPOINT_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "audit export: checkpoint %" PRId64 " sealed list of %zu bytes",
                              cp->seq, cp->sealed_len);
    }
    r = cp->anchor ? advance(w, STAGE_HEADER, STAGE_KEYS, STAGE_ANCHOR, record)
                   : advance(w, STAGE_HEADER, STAGE_BODY, STAGE_BODY, record);
    if (r != COFFER_OK) {
        return r;
    }
    obj = json_object();
    if (obj == NULL || json_object_set_new(obj, "type", json_string(record)) != 0 ||
        json_object_set_new(obj, "seq", json_integer((json_int_t)cp->seq)) != 0 ||
        !set_base64(obj, "message", cp->message, cp->message_len) ||
        !set_base64(obj, "signature", cp->signature, cp->signature_len) ||
        (!cp->anchor && !set_base64(obj, "sealed", cp->sealed, cp->sealed_len))) {
        json_decref(obj);
        return coffer_err_set(COFFER_E_NOMEM, "audit export: %s record", record);
    }
    if (!cp->anchor) {
        w->checkpoints++;
    }
    return emit_object(w, record, obj);
}

/* The JSON value of field i of a checked row. */
static json_t *field_json(const struct coffer_audit_row *row, int i)
{
    int64_t n = 0;

    if (row->f[i] == NULL) {
        return json_null();
    }
    switch (audit_field_kind(i)) {
    case AUDIT_FK_INT:
        (void)audit_dec_ok(row->f[i], true, &n);
        return json_integer((json_int_t)n);
    case AUDIT_FK_BOOL:
        return json_boolean(strcmp(row->f[i], "true") == 0);
    case AUDIT_FK_TIME:
    case AUDIT_FK_TEXT:
        return json_string(row->f[i]);
    default:
        return NULL;
    }
}

static enum coffer_err event_jsonl(struct coffer_audit_writer *w,
                                   const struct coffer_audit_row *row)
{
    json_t *obj = json_object();
    int i;

    if (obj == NULL || json_object_set_new(obj, "type", json_string("event")) != 0) {
        json_decref(obj);
        return coffer_err_set(COFFER_E_NOMEM, "audit export: event record");
    }
    for (i = 0; i < COFFER_AUDIT_FIELDS; i++) {
        if (json_object_set_new(obj, coffer_audit_field_names[i], field_json(row, i)) != 0) {
            json_decref(obj);
            return coffer_err_set(COFFER_E_NOMEM, "audit export: event record");
        }
    }
    if (!set_hex(obj, "row_hash", row->row_hash, COFFER_AUDIT_HASH_LEN)) {
        json_decref(obj);
        return coffer_err_set(COFFER_E_NOMEM, "audit export: event record");
    }
    return emit_object(w, record_names[4], obj);
}

static enum coffer_err event_csv(struct coffer_audit_writer *w, const struct coffer_audit_row *row)
{
    struct coffer_buf line = {0};
    char hash[2 * COFFER_AUDIT_HASH_LEN + 1];
    enum coffer_err r;
    int i;

    r = coffer_buf_put(&line, "event", 5);
    for (i = 0; i < COFFER_AUDIT_FIELDS && r == COFFER_OK; i++) {
        r = coffer_buf_put_u8(&line, ',');
        if (r == COFFER_OK && row->f[i] != NULL) {
            r = csv_cell(&line, row->f[i], strlen(row->f[i]));
        }
    }
    coffer_hex(row->row_hash, COFFER_AUDIT_HASH_LEN, hash);
    if (r == COFFER_OK && (r = coffer_buf_put_u8(&line, ',')) == COFFER_OK &&
        (r = coffer_buf_put(&line, hash, strlen(hash))) == COFFER_OK &&
        (r = coffer_buf_put(&line, ",\r\n", 3)) == COFFER_OK) {
        r = emit(w, &line);
    }
    coffer_buf_cleanup(&line);
    return r;
}

enum coffer_err coffer_audit_write_event(struct coffer_audit_writer *w,
                                         const struct coffer_audit_row *row)
{
    enum coffer_err r;

    if (row == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "audit export: no event");
    }
    if ((r = audit_row_check(row)) != COFFER_OK) {
        return coffer_err_wrap(r, "audit export");
    }
    if ((r = advance(w, STAGE_HEADER, STAGE_BODY, STAGE_BODY, "event")) != COFFER_OK) {
        return r;
    }
    w->events++;
    return w->format == COFFER_AUDIT_JSONL ? event_jsonl(w, row) : event_csv(w, row);
}

enum coffer_err coffer_audit_write_end(struct coffer_audit_writer *w)
{
    json_t *obj;
    enum coffer_err r;

    if ((r = advance(w, STAGE_HEADER, STAGE_BODY, STAGE_END, "end")) != COFFER_OK) {
        return r;
    }
    obj = json_object();
    if (obj == NULL || json_object_set_new(obj, "type", json_string("end")) != 0 ||
        json_object_set_new(obj, "checkpoints", json_integer((json_int_t)w->checkpoints)) != 0 ||
        json_object_set_new(obj, "events", json_integer((json_int_t)w->events)) != 0) {
        json_decref(obj);
        return coffer_err_set(COFFER_E_NOMEM, "audit export: end record");
    }
    if ((r = emit_object(w, record_names[5], obj)) != COFFER_OK) {
        return r;
    }
    if (fflush(w->out) != 0) {
        w->stage = STAGE_FAILED;
        return coffer_err_set(COFFER_E_IO, "flushing the audit export failed");
    }
    return COFFER_OK;
}
