/* SPDX-License-Identifier: Apache-2.0 */
/*
 * coffer audit verify | export | prune: the auditor's commands.
 *
 * verify and export read the audit views only, so they run as
 * coffer_auditor (COFFER_AUDITOR_DSN) with no token and no key: the
 * checkpoints are checked with the public keys in audit.signing_keys, or
 * against a fingerprint the auditor pins. prune runs as coffer_owner after
 * an export of the events it removes has been verified against the chain in
 * the database.
 *
 * Exit status: 0 intact (or done), 1 tampering found (or refused), 2 usage
 * or trouble.
 */
#include "cli/cli.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coffer/auditlog.h"
#include "coffer/mem.h"
#include "coffer/store_audit.h"

static const char audit_usage[] =
    "usage: coffer audit verify [--dsn CONNINFO] [--fingerprint HEX] [--no-record]\n"
    "       coffer audit verify --file EXPORT [--fingerprint HEX]\n"
    "       coffer audit export [--since T] [--until T] [--org ORG] [--format jsonl|csv]\n"
    "                           [--output FILE] [--dsn CONNINFO]\n"
    "       coffer audit export --checkpoints FROM:TO [--format jsonl|csv] [--output FILE]\n"
    "       coffer audit prune --through-checkpoint N --export FILE [--yes] [--dsn CONNINFO]\n"
    "verify and export read the audit views as COFFER_AUDITOR_DSN (or --dsn); prune runs\n"
    "as COFFER_DATABASE_OWNER (or --dsn). See docs/auditors.md.\n";

struct opts {
    const char *dsn;
    const char *file;
    const char *fingerprint;
    bool no_record;
    const char *since;
    const char *until;
    const char *org;
    const char *format;
    const char *output;
    const char *checkpoints;
    const char *through;
    bool yes;
};

static int usage_error(const char *msg)
{
    fprintf(stderr, "coffer audit: %s\n%s", msg, audit_usage);
    return 2;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct {
        const char *name;
        size_t off;
    } valued[] = {
        {"--dsn", offsetof(struct opts, dsn)},
        {"--file", offsetof(struct opts, file)},
        {"--fingerprint", offsetof(struct opts, fingerprint)},
        {"--since", offsetof(struct opts, since)},
        {"--until", offsetof(struct opts, until)},
        {"--org", offsetof(struct opts, org)},
        {"--format", offsetof(struct opts, format)},
        {"--output", offsetof(struct opts, output)},
        {"--checkpoints", offsetof(struct opts, checkpoints)},
        {"--through-checkpoint", offsetof(struct opts, through)},
        {"--export", offsetof(struct opts, file)},
    };

    for (int i = 2; i < argc; i++) {
        bool found = false;

        if (strcmp(argv[i], "--no-record") == 0) {
            o->no_record = true;
            continue;
        }
        if (strcmp(argv[i], "--yes") == 0) {
            o->yes = true;
            continue;
        }
        for (size_t j = 0; j < sizeof(valued) / sizeof(valued[0]) && !found; j++) {
            if (strcmp(argv[i], valued[j].name) == 0) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "coffer audit: %s needs a value\n", argv[i]);
                    return 2;
                }
                *(const char **)((char *)o + valued[j].off) = argv[++i];
                found = true;
            }
        }
        if (!found) {
            fprintf(stderr, "coffer audit: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    return 0;
}

static const char *dsn_or_env(const struct opts *o, const char *var)
{
    const char *v = o->dsn != NULL ? o->dsn : getenv(var);

    return v != NULL && v[0] != '\0' ? v : NULL;
}

static bool parse_fingerprint(const char *hex, unsigned char out[COFFER_AUDIT_HASH_LEN])
{
    if (hex == NULL || strlen(hex) != 2 * COFFER_AUDIT_HASH_LEN) {
        return false;
    }
    for (size_t i = 0; i < COFFER_AUDIT_HASH_LEN; i++) {
        unsigned v = 0;

        for (int j = 0; j < 2; j++) {
            char c = hex[2 * i + (size_t)j];

            if (c >= '0' && c <= '9') {
                v = v << 4 | (unsigned)(c - '0');
            } else if (c >= 'a' && c <= 'f') {
                v = v << 4 | (unsigned)(c - 'a' + 10);
            } else if (c >= 'A' && c <= 'F') {
                v = v << 4 | (unsigned)(c - 'A' + 10);
            } else {
                return false;
            }
        }
        out[i] = (unsigned char)v;
    }
    return true;
}

static void print_report(const struct coffer_audit_report *rep, const char *source)
{
    printf("source: %s\n", source);
    printf("checkpoints verified: %" PRId64 " (through %" PRId64 ", sealing events through %" PRId64
           ")\n",
           rep->checkpoints, rep->last_seq, rep->last_event);
    printf("events verified against their checkpoint: %" PRId64 "\n", rep->events_verified);
    printf("events not yet sealed: %" PRId64 "\n", rep->events_unsealed);
    if (rep->events_pruned > 0) {
        printf("sealed events pruned after export: %" PRId64 "\n", rep->events_pruned);
    }
    if (rep->events_absent > 0) {
        printf("sealed events not in this export (other orgs or times): %" PRId64 "\n",
               rep->events_absent);
    }
    if (rep->schema_changes > 0) {
        printf("audit schema changes recorded: %" PRId64 " (first in checkpoint %" PRId64
               "; see audit.checkpoints.schema_text)\n",
               rep->schema_changes, rep->first_schema_change_seq);
    }
    if (rep->first == COFFER_AUDIT_OK) {
        printf("result: INTACT\n");
    } else {
        printf("result: BROKEN: %s [%s]\n", rep->first_message,
               coffer_audit_problem_str(rep->first));
        printf("problems found: %" PRId64 "\n", rep->problems);
    }
}

/* ---- Walking the database ---------------------------------------------------------------------
 */

struct walk {
    struct coffer_store *st;
    struct coffer_audit_verifier *v;                /* verify */
    struct coffer_audit_writer *w;                  /* export */
    const struct coffer_store_audit_filter *filter; /* export: the events wanted */
    int64_t next_event;                             /* first event id not yet fed */
    int64_t last_seq;
};

static enum coffer_err on_key(void *arg, int32_t version, const char *label,
                              const unsigned char *spki, size_t len)
{
    struct walk *w = arg;

    if (w->v != NULL) {
        return coffer_audit_verifier_add_key(w->v, version, spki, len);
    }
    return coffer_audit_write_key(w->w, version, label, spki, len);
}

static enum coffer_err on_row(void *arg, const struct coffer_audit_row *row)
{
    struct walk *w = arg;

    if (w->v != NULL) {
        return coffer_audit_verifier_event(w->v, row);
    }
    return coffer_audit_write_event(w->w, row);
}

/* The range a checkpoint claims, from its signed message (its columns if it does not parse). */
static void cp_range(const struct coffer_audit_checkpoint *cp, int64_t *first, int64_t *last)
{
    struct coffer_audit_cp_fields f;

    if (coffer_audit_message_parse(cp->message, cp->message_len, &f) == COFFER_OK) {
        *first = f.first_event;
        *last = f.last_event;
    } else {
        *first = cp->columns.first_event;
        *last = cp->columns.last_event;
    }
}

/* Feeds one checkpoint, then every event from the end of the last range to the end of this one. */
static enum coffer_err on_checkpoint(void *arg, const struct coffer_audit_checkpoint *cp)
{
    struct walk *w = arg;
    struct coffer_store_audit_filter f = {0};
    int64_t first = 0;
    int64_t last = 0;
    enum coffer_err r;

    cp_range(cp, &first, &last);
    r = w->v != NULL ? coffer_audit_verifier_checkpoint(w->v, cp)
                     : coffer_audit_write_checkpoint(w->w, cp);
    if (r != COFFER_OK || cp->anchor) {
        return r;
    }
    w->last_seq = cp->seq;
    if (w->filter != NULL) {
        f = *w->filter;
    }
    f.from_id = w->next_event;
    f.to_id = last;
    if (last >= f.from_id) {
        r = coffer_store_audit_read_events(w->st, &f, on_row, w);
        w->next_event = last + 1;
    }
    return r;
}

static int verify_db(const struct opts *o, const unsigned char *pin)
{
    const char *dsn = dsn_or_env(o, "COFFER_AUDITOR_DSN");
    struct walk w = {.next_event = 1};
    struct coffer_store_audit_filter tail = {.to_id = INT64_MAX};
    struct coffer_audit_report rep;
    int64_t pruned = 0;
    enum coffer_err r;
    int rc = 2;

    if (dsn == NULL) {
        return usage_error("no database: give --dsn or set COFFER_AUDITOR_DSN");
    }
    if ((r = coffer_store_open_reader(dsn, &w.st)) != COFFER_OK ||
        (r = coffer_audit_verifier_new(COFFER_AUDIT_FROM_DATABASE, &w.v)) != COFFER_OK) {
        cli_fail("opening the audit log", r);
        goto out;
    }
    if (pin != NULL) {
        coffer_audit_verifier_pin(w.v, pin);
    }
    if ((r = coffer_store_audit_read_keys(w.st, on_key, &w)) != COFFER_OK ||
        (r = coffer_store_audit_read_pruned(w.st, &pruned)) != COFFER_OK) {
        cli_fail("reading the audit log", r);
        goto out;
    }
    coffer_audit_verifier_pruned(w.v, pruned);
    if ((r = coffer_store_audit_read_checkpoints(w.st, 1, 0, on_checkpoint, &w)) != COFFER_OK) {
        cli_fail("reading the checkpoints", r);
        goto out;
    }
    tail.from_id = w.next_event;
    if ((r = coffer_store_audit_read_events(w.st, &tail, on_row, &w)) != COFFER_OK ||
        (r = coffer_audit_verifier_finish(w.v, &rep)) != COFFER_OK) {
        cli_fail("verifying the audit log", r);
        goto out;
    }
    print_report(&rep, "database");
    if (!o->no_record && (r = coffer_store_audit_record(w.st, &rep)) != COFFER_OK) {
        fprintf(stderr, "coffer audit: the outcome was not recorded in audit.verifications: %s\n",
                coffer_err_detail());
    }
    rc = rep.first == COFFER_AUDIT_OK ? 0 : 1;
out:
    coffer_audit_verifier_free(&w.v);
    coffer_store_close(&w.st);
    return rc;
}

static int verify_file(const struct opts *o, const unsigned char *pin)
{
    struct coffer_audit_report rep;
    bool complete = false;
    int64_t first = 0;
    int64_t last = 0;
    FILE *in = fopen(o->file, "r");
    enum coffer_err r;

    if (in == NULL) {
        fprintf(stderr, "coffer audit: cannot open %s: %s\n", o->file, strerror(errno));
        return 2;
    }
    r = coffer_audit_verify_file(in, o->file, pin, &complete, &first, &last, &rep);
    fclose(in);
    if (r != COFFER_OK) {
        cli_fail("reading the export", r);
        return 2;
    }
    print_report(&rep, complete ? "export (complete for its checkpoints)" : "export (a selection)");
    return rep.first == COFFER_AUDIT_OK ? 0 : 1;
}

static int cmd_verify(const struct opts *o)
{
    unsigned char pin[COFFER_AUDIT_HASH_LEN];

    if (o->fingerprint != NULL && !parse_fingerprint(o->fingerprint, pin)) {
        return usage_error("--fingerprint must be 64 hex digits (the SHA-256 of the public key)");
    }
    if (o->file != NULL) {
        return verify_file(o, o->fingerprint != NULL ? pin : NULL);
    }
    return verify_db(o, o->fingerprint != NULL ? pin : NULL);
}

/* ---- Export ---------------------------------------------------------------------------------- */

static bool parse_seq_range(const char *s, int64_t *from, int64_t *to)
{
    char *end = NULL;
    long long a;
    long long b;

    errno = 0;
    a = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != ':' || a < 1) {
        return false;
    }
    s = end + 1;
    b = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || b < a) {
        return false;
    }
    *from = a;
    *to = b;
    return true;
}

static void now_iso(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;

    (void)gmtime_r(&t, &tm);
    (void)strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A checkpoint's range (for choosing what to export), through the reader. */
struct one_cp {
    int64_t first;
    int64_t last;
    bool found;
};

static enum coffer_err on_one_cp(void *arg, const struct coffer_audit_checkpoint *cp)
{
    struct one_cp *c = arg;

    cp_range(cp, &c->first, &c->last);
    c->found = true;
    return COFFER_OK;
}

/* The checkpoint before the first exported one: it links, and starts the chain. */
static enum coffer_err on_anchor_cp(void *arg, const struct coffer_audit_checkpoint *cp)
{
    struct walk *w = arg;
    struct coffer_audit_checkpoint a = *cp;

    a.anchor = true;
    a.sealed = NULL;
    a.sealed_len = 0;
    return coffer_audit_write_checkpoint(w->w, &a);
}

/* Writes the checkpoint before seq as an anchor, then checkpoints seq..to with their events. */
static enum coffer_err export_walk(struct walk *w, int64_t from_seq, int64_t to_seq)
{
    enum coffer_err r;

    if (from_seq > 1) {
        struct walk anchor = *w;

        anchor.filter = NULL;
        if ((r = coffer_store_audit_read_checkpoints(w->st, from_seq - 1, from_seq - 1,
                                                     on_anchor_cp, &anchor)) != COFFER_OK) {
            return r;
        }
    }
    return coffer_store_audit_read_checkpoints(w->st, from_seq, to_seq, on_checkpoint, w);
}

static int cmd_export(const struct opts *o)
{
    const char *dsn = dsn_or_env(o, "COFFER_AUDITOR_DSN");
    enum coffer_audit_format fmt = COFFER_AUDIT_JSONL;
    struct coffer_store_audit_filter f = {.from_id = 1, .to_id = INT64_MAX};
    struct coffer_audit_export_header h = {0};
    struct walk w = {0};
    char exported_at[32];
    int64_t from_seq = 0;
    int64_t to_seq = 0;
    FILE *out = stdout;
    enum coffer_err r = COFFER_OK;
    int rc = 2;

    if (o->format != NULL && strcmp(o->format, "csv") == 0) {
        fmt = COFFER_AUDIT_CSV;
    } else if (o->format != NULL && strcmp(o->format, "jsonl") != 0) {
        return usage_error("--format must be jsonl or csv");
    }
    if (o->checkpoints != NULL && (o->org != NULL || o->since != NULL || o->until != NULL ||
                                   !parse_seq_range(o->checkpoints, &from_seq, &to_seq))) {
        return usage_error("--checkpoints FROM:TO (1 <= FROM <= TO) takes no --org, --since or "
                           "--until: it exports every event of those checkpoints");
    }
    if (dsn == NULL) {
        return usage_error("no database: give --dsn or set COFFER_AUDITOR_DSN");
    }
    f.org = o->org;
    f.since = o->since;
    f.until = o->until;
    if ((r = coffer_store_open_reader(dsn, &w.st)) != COFFER_OK) {
        cli_fail("opening the audit log", r);
        return 2;
    }
    if (o->checkpoints != NULL) {
        struct one_cp a = {0};
        struct one_cp b = {0};

        if ((r = coffer_store_audit_read_checkpoints(w.st, from_seq, from_seq, on_one_cp, &a)) !=
                COFFER_OK ||
            (r = coffer_store_audit_read_checkpoints(w.st, to_seq, to_seq, on_one_cp, &b)) !=
                COFFER_OK) {
            cli_fail("reading the checkpoints", r);
            goto out;
        }
        if (!a.found || !b.found) {
            fprintf(stderr, "coffer audit: there is no checkpoint %" PRId64 "\n",
                    a.found ? to_seq : from_seq);
            rc = 1;
            goto out;
        }
        h.complete = true;
    } else {
        int64_t lo = 0;
        int64_t hi = 0;

        if ((r = coffer_store_audit_read_span(w.st, &f, &lo, &hi)) != COFFER_OK ||
            (lo > 0 && ((r = coffer_store_audit_read_seq_of(w.st, lo, &from_seq)) != COFFER_OK ||
                        (r = coffer_store_audit_read_seq_of(w.st, hi, &to_seq)) != COFFER_OK))) {
            cli_fail("reading the audit log", r);
            goto out;
        }
        /* The newest selected events are unsealed: the walk goes to the last checkpoint. */
        if (from_seq > 0 && to_seq == 0 &&
            (r = coffer_store_audit_read_last_seq(w.st, &to_seq)) != COFFER_OK) {
            cli_fail("reading the checkpoints", r);
            goto out;
        }
        w.next_event = lo;
    }
    if (o->output != NULL && (out = fopen(o->output, "w")) == NULL) {
        fprintf(stderr, "coffer audit: cannot create %s: %s\n", o->output, strerror(errno));
        goto out;
    }
    now_iso(exported_at);
    h.exported_at = exported_at;
    h.since = o->since;
    h.until = o->until;
    h.org = o->org;
    h.first_checkpoint = from_seq;
    h.last_checkpoint = to_seq;
    if ((r = coffer_audit_writer_new(out, fmt, &w.w)) != COFFER_OK ||
        (r = coffer_audit_write_header(w.w, &h)) != COFFER_OK ||
        (r = coffer_store_audit_read_keys(w.st, on_key, &w)) != COFFER_OK) {
        cli_fail("exporting", r);
        goto out;
    }
    w.filter = h.complete ? NULL : &f;
    if (from_seq > 0) {
        struct one_cp a = {0};

        if ((r = coffer_store_audit_read_checkpoints(w.st, from_seq, from_seq, on_one_cp, &a)) !=
            COFFER_OK) {
            cli_fail("reading the checkpoints", r);
            goto out;
        }
        w.next_event = a.first;
        if ((r = export_walk(&w, from_seq, to_seq)) != COFFER_OK) {
            cli_fail("exporting", r);
            goto out;
        }
    }
    if (!h.complete && w.next_event > 0) {
        struct coffer_store_audit_filter tail = f;

        tail.from_id = w.next_event;
        if ((r = coffer_store_audit_read_events(w.st, &tail, on_row, &w)) != COFFER_OK) {
            cli_fail("exporting", r);
            goto out;
        }
    }
    if ((r = coffer_audit_write_end(w.w)) != COFFER_OK) {
        cli_fail("exporting", r);
        goto out;
    }
    rc = 0;
out:
    coffer_audit_writer_free(&w.w);
    if (out != stdout && out != NULL && fclose(out) != 0 && rc == 0) {
        fprintf(stderr, "coffer audit: writing %s: %s\n", o->output, strerror(errno));
        rc = 2;
    }
    coffer_store_close(&w.st);
    return rc;
}

/* ---- Prune --------------------------------------------------------------------------------- */

static enum coffer_err file_sha256(const char *path, unsigned char out[COFFER_AUDIT_HASH_LEN])
{
    unsigned char buf[65536];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    FILE *in = fopen(path, "rb");
    unsigned int len = 0;
    enum coffer_err r = COFFER_OK;
    size_t n;

    if (ctx == NULL || in == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        r = coffer_err_set(in == NULL ? COFFER_E_IO : COFFER_E_CRYPTO, "hashing %s: %s", path,
                           in == NULL ? strerror(errno) : "no SHA-256");
        goto out;
    }
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        if (EVP_DigestUpdate(ctx, buf, n) != 1) {
            r = coffer_err_set(COFFER_E_CRYPTO, "hashing %s", path);
            goto out;
        }
    }
    if (ferror(in) || EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != COFFER_AUDIT_HASH_LEN) {
        r = coffer_err_set(COFFER_E_IO, "hashing %s: read failed", path);
    }
out:
    if (in != NULL) {
        fclose(in);
    }
    EVP_MD_CTX_free(ctx);
    return r;
}

/* The hash of checkpoint seq in the database, to bind the export to this chain. */
struct cp_hash {
    unsigned char hash[COFFER_AUDIT_HASH_LEN];
    bool found;
};

static enum coffer_err on_cp_hash(void *arg, const struct coffer_audit_checkpoint *cp)
{
    struct cp_hash *c = arg;
    unsigned int len = 0;

    c->found = EVP_Digest(cp->message, cp->message_len, c->hash, &len, EVP_sha256(), NULL) == 1 &&
               len == COFFER_AUDIT_HASH_LEN;
    return COFFER_OK;
}

static int cmd_prune(const struct opts *o)
{
    const char *dsn = dsn_or_env(o, "COFFER_DATABASE_OWNER");
    struct coffer_audit_report rep;
    struct coffer_store *st = NULL;
    struct cp_hash db = {0};
    unsigned char sha[COFFER_AUDIT_HASH_LEN];
    char who[256];
    char host[128];
    bool complete = false;
    int64_t first = 0;
    int64_t last = 0;
    int64_t through = 0;
    int64_t pruned = 0;
    int64_t need_from = 1;
    int64_t deleted = 0;
    char *end = NULL;
    FILE *in = NULL;
    enum coffer_err r;
    int rc = 2;

    if (o->through == NULL || o->file == NULL) {
        return usage_error("prune needs --through-checkpoint N and --export FILE");
    }
    errno = 0;
    through = strtoll(o->through, &end, 10);
    if (errno != 0 || end == o->through || *end != '\0' || through < 1) {
        return usage_error("--through-checkpoint must be a checkpoint number");
    }
    if (dsn == NULL) {
        return usage_error("no database: give --dsn or set COFFER_DATABASE_OWNER");
    }
    if ((in = fopen(o->file, "r")) == NULL) {
        fprintf(stderr, "coffer audit: cannot open %s: %s\n", o->file, strerror(errno));
        return 2;
    }
    r = coffer_audit_verify_file(in, o->file, NULL, &complete, &first, &last, &rep);
    fclose(in);
    if (r != COFFER_OK) {
        cli_fail("reading the export", r);
        return 2;
    }
    if (rep.first != COFFER_AUDIT_OK) {
        fprintf(stderr, "coffer audit: refused: the export does not verify: %s\n",
                rep.first_message);
        return 1;
    }
    if ((r = coffer_store_open_reader(dsn, &st)) != COFFER_OK ||
        (r = coffer_store_audit_read_pruned(st, &pruned)) != COFFER_OK ||
        (pruned > 0 && (r = coffer_store_audit_read_seq_of(st, pruned, &need_from)) != COFFER_OK) ||
        (r = coffer_store_audit_read_checkpoints(st, through, through, on_cp_hash, &db)) !=
            COFFER_OK) {
        cli_fail("reading the audit log", r);
        goto out;
    }
    if (pruned > 0) {
        need_from += 1;
    }
    if (!complete || first > need_from || last < through) {
        fprintf(stderr,
                "coffer audit: refused: the export must hold every event of checkpoints %" PRId64
                " to %" PRId64 " (coffer audit export --checkpoints %" PRId64 ":%" PRId64
                "); it holds %s%" PRId64 " to %" PRId64 "\n",
                need_from, through, need_from, through, complete ? "" : "a selection of ", first,
                last);
        rc = 1;
        goto out;
    }
    if (!db.found) {
        fprintf(stderr, "coffer audit: refused: the database has no checkpoint %" PRId64 "\n",
                through);
        rc = 1;
        goto out;
    }
    /* The export must end with this database's checkpoint N, not one of another chain. */
    if (rep.last_seq != through || !coffer_mem_equal(rep.last_hash, db.hash, sizeof(db.hash))) {
        fprintf(stderr,
                "coffer audit: refused: the export must end at checkpoint %" PRId64
                " of this database (it ends at %" PRId64 "%s)\n",
                through, rep.last_seq, rep.last_seq == through ? ", of another chain" : "");
        rc = 1;
        goto out;
    }
    if ((r = file_sha256(o->file, sha)) != COFFER_OK) {
        cli_fail("hashing the export", r);
        goto out;
    }
    printf("export %s verifies: checkpoints %" PRId64 " to %" PRId64 ", %" PRId64 " events\n",
           o->file, first, last, rep.events_verified);
    printf("about to delete every event of checkpoints %" PRId64 " to %" PRId64
           "; the checkpoints stay\n",
           need_from, through);
    if (!o->yes) {
        char line[64];
        char want[40];

        (void)snprintf(want, sizeof(want), "prune %" PRId64, through);
        printf("type '%s' to confirm: ", want);
        fflush(stdout);
        if (fgets(line, sizeof(line), stdin) == NULL || strncmp(line, want, strlen(want)) != 0 ||
            (line[strlen(want)] != '\n' && line[strlen(want)] != '\0')) {
            fprintf(stderr, "coffer audit: not confirmed; nothing deleted\n");
            rc = 1;
            goto out;
        }
    }
    if (gethostname(host, sizeof(host)) != 0) {
        (void)snprintf(host, sizeof(host), "unknown-host");
    }
    host[sizeof(host) - 1] = '\0';
    (void)snprintf(who, sizeof(who), "%s@%s", getenv("USER") != NULL ? getenv("USER") : "unknown",
                   host);
    if ((r = coffer_store_audit_prune(st, through, sha, rep.events_verified, who, &deleted)) !=
        COFFER_OK) {
        cli_fail("pruning", r);
        goto out;
    }
    printf("pruned %" PRId64 " events through checkpoint %" PRId64 "; keep %s (SHA-256 ", deleted,
           through, o->file);
    for (size_t i = 0; i < sizeof(sha); i++) {
        printf("%02x", sha[i]);
    }
    printf(")\n");
    rc = 0;
out:
    coffer_store_close(&st);
    return rc;
}

int cli_audit(int argc, char **argv)
{
    struct opts o = {0};
    int rc;

    if (argc < 2) {
        return usage_error("which command?");
    }
    if ((rc = parse_opts(argc, argv, &o)) != 0) {
        return rc;
    }
    if (strcmp(argv[1], "verify") == 0) {
        return cmd_verify(&o);
    }
    if (strcmp(argv[1], "export") == 0) {
        return cmd_export(&o);
    }
    if (strcmp(argv[1], "prune") == 0) {
        return cmd_prune(&o);
    }
    return usage_error("unknown command");
}
