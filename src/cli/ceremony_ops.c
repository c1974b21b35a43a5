/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Running ceremonies: counting the approvals of a plan against the quorum,
 * doing the operation through the keys module, reading every new key back
 * from the token, and writing the transcript that the audit signing key
 * signs and coffer.ceremonies keeps.
 *
 * What it prints and records are identifiers, key check values, attributes
 * and public fingerprints; never a passphrase, a PIN or key material. A key
 * that does not read back sensitive and never extractable aborts the
 * ceremony, and the aborted transcript is recorded all the same.
 */
#include "cli/ceremony.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "coffer/mem.h"
#include "coffer/text.h"

void cer_printf(struct cer *x, struct coffer_buf *b, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line) || coffer_buf_put(b, line, (size_t)n) != COFFER_OK) {
        (void)cer_abort(x, "the transcript could not be written");
    }
}

int cer_abort(struct cer *x, const char *fmt, ...)
{
    va_list ap;

    if (!x->aborted) {
        x->aborted = true;
        va_start(ap, fmt);
        (void)vsnprintf(x->reason, sizeof(x->reason), fmt, ap);
        va_end(ap);
        for (char *p = x->reason; *p != '\0'; p++) {
            if ((unsigned char)*p < 0x20) {
                *p = ' ';
            }
        }
    }
    return 1;
}

void cer_time(int64_t us, char out[32])
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(out, 32, "(time %" PRId64 ")", us);
    }
}

enum coffer_err cer_begin(struct cer *x, const char *kind)
{
    enum coffer_err r;

    memset(x, 0, sizeof(*x));
    snprintf(x->kind, sizeof(x->kind), "%s", kind);
    if ((r = cli_open(&x->c)) != COFFER_OK) {
        return r;
    }
    coffer_p11_token_info(x->c.p11, &x->tok);
    return coffer_store_ceremony_new_id(x->c.st, &x->id, &x->started_us);
}

void cer_end(struct cer *x)
{
    coffer_buf_cleanup(&x->head);
    coffer_buf_cleanup(&x->body);
    for (size_t i = 0; i < x->n_add; i++) {
        coffer_wipe(x->add_hashes[i], sizeof(x->add_hashes[i]));
    }
    cli_close(&x->c);
}

static const char *tf(bool v)
{
    return v ? "TRUE" : "FALSE";
}

void cer_key(struct cer *x, const char *what, const char *label, uint32_t version,
             const unsigned char *kcv, const struct coffer_p11_attrs *a, bool wrapped)
{
    char hex[2 * COFFER_KCV_LEN + 1] = "-";

    if (kcv != NULL) {
        coffer_hex(kcv, COFFER_KCV_LEN, hex);
    }
    cer_printf(x, &x->body, "  %s v%u  label %s  KCV %s\n", what, version, label, hex);
    cer_printf(x, &x->body,
               "    read back: CKA_TOKEN=%s CKA_PRIVATE=%s CKA_SENSITIVE=%s "
               "CKA_ALWAYS_SENSITIVE=%s CKA_EXTRACTABLE=%s CKA_NEVER_EXTRACTABLE=%s\n"
               "               CKA_WRAP=%s CKA_UNWRAP=%s CKA_ENCRYPT=%s CKA_DECRYPT=%s "
               "value readable=%s\n",
               tf(a->token), tf(a->private_), tf(a->sensitive), tf(a->always_sensitive),
               tf(a->extractable), tf(a->never_extractable), tf(a->wrap), tf(a->unwrap),
               tf(a->encrypt), tf(a->decrypt), tf(a->value_readable));
    /*
     * An org key leaves the token only wrapped under a master key, which needs
     * CKA_EXTRACTABLE; it must still be sensitive, and its value unreadable.
     */
    if (wrapped && (!a->sensitive || a->value_readable)) {
        (void)cer_abort(x, "%s %s does not read back sensitive", what, label);
    } else if (!wrapped &&
               (!a->sensitive || a->extractable || !a->never_extractable || a->value_readable)) {
        (void)cer_abort(x, "%s %s does not read back sensitive and never extractable", what, label);
    }
}

enum coffer_err cer_read_key(struct cer *x, const char *label, struct coffer_p11_attrs *a,
                             unsigned char kcv[COFFER_KCV_LEN])
{
    struct coffer_p11_session *s = NULL;
    coffer_p11_obj obj = 0;
    enum coffer_err r;

    memset(a, 0, sizeof(*a));
    if ((r = coffer_p11_session_get(x->c.p11, &s)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_p11_find_key(s, label, &obj)) == COFFER_OK &&
        (r = coffer_p11_attrs(s, obj, a)) == COFFER_OK && kcv != NULL) {
        r = coffer_p11_kcv(s, obj, kcv);
    }
    coffer_p11_session_put(x->c.p11, &s);
    return r;
}

enum coffer_err cer_enrol_passphrase(const char *officer, char hash[COFFER_PASSPHRASE_HASH_LEN])
{
    struct coffer_secret *a = NULL;
    struct coffer_secret *b = NULL;
    char prompt[160];
    enum coffer_err r;

    snprintf(prompt, sizeof(prompt),
             "Officer %s, choose a passphrase (at least %u characters): ", officer,
             COFFER_PASSPHRASE_MIN);
    if ((r = coffer_passphrase_read(prompt, &a)) != COFFER_OK) {
        goto out;
    }
    snprintf(prompt, sizeof(prompt), "Officer %s, type it again: ", officer);
    if ((r = coffer_passphrase_read(prompt, &b)) != COFFER_OK) {
        goto out;
    }
    if (!coffer_secret_equal(a, b)) {
        r = coffer_err_set(COFFER_E_INVALID, "officer %s: the two passphrases differ", officer);
        goto out;
    }
    if ((r = coffer_passphrase_check(a)) != COFFER_OK) {
        r = coffer_err_wrap(r, "officer %s", officer);
        goto out;
    }
    r = coffer_passphrase_hash(a, hash);
out:
    coffer_secret_free(&a);
    coffer_secret_free(&b);
    return r;
}

/* ---- Recording ----------------------------------------------------------------- */

/* Builds the whole transcript, NUL-terminated, in t. */
static void compose(struct cer *x, struct coffer_buf *t, uint32_t key_version,
                    const unsigned char fp[32])
{
    char id[COFFER_UUID_STR_LEN];
    char plan[COFFER_UUID_STR_LEN];
    char started[32];
    char finished[32];
    char fphex[65];
    char sha[65];
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    coffer_uuid_format(&x->id, id);
    cer_time(x->started_us, started);
    cer_time((int64_t)now.tv_sec * 1000000, finished);
    coffer_hex(fp, 32, fphex);
    cer_printf(x, t, "COFFER KEY CEREMONY TRANSCRIPT v1\n");
    cer_printf(x, t, "ceremony: %s\n", id);
    cer_printf(x, t, "kind: %s\n", x->kind);
    if (x->plan != NULL) {
        coffer_uuid_format(&x->plan->id, plan);
        coffer_hex(x->plan->sha256, sizeof(x->plan->sha256), sha);
        cer_printf(x, t, "plan: %s\nplan description sha256: %s\n", plan, sha);
    } else {
        cer_printf(x, t, "plan: none\n");
    }
    cer_printf(x, t, "token: label \"%s\", manufacturer \"%s\", model \"%s\", serial \"%s\"\n",
               x->tok.label, x->tok.manufacturer, x->tok.model, x->tok.serial);
    cer_printf(x, t, "started: %s\n", started);
    if (x->head.len > 0 && coffer_buf_put(t, x->head.data, x->head.len) != COFFER_OK) {
        (void)cer_abort(x, "the transcript could not be written");
    }
    cer_printf(x, t, "what was done:\n");
    if (x->body.len > 0 && coffer_buf_put(t, x->body.data, x->body.len) != COFFER_OK) {
        (void)cer_abort(x, "the transcript could not be written");
    }
    cer_printf(x, t, "finished: %s\n", finished);
    if (x->aborted) {
        cer_printf(x, t, "outcome: ABORTED: %s\n", x->reason);
    } else {
        cer_printf(x, t, "outcome: completed\n");
    }
    cer_printf(x, t, "signed by: audit signing key v%u, fingerprint %s\n", key_version, fphex);
    if (coffer_buf_put_u8(t, 0) != COFFER_OK) {
        (void)cer_abort(x, "the transcript could not be written");
    }
}

static enum coffer_err apply_changes(struct cer *x)
{
    struct coffer_store *st = x->c.st;
    enum coffer_err r = COFFER_OK;

    for (size_t i = 0; i < x->n_add && r == COFFER_OK; i++) {
        r = coffer_store_officer_add(st, x->add_officers[i], x->add_hashes[i], &x->id);
    }
    if (r == COFFER_OK && x->remove_officer != NULL) {
        r = coffer_store_officer_remove(st, x->remove_officer, &x->id);
    }
    if (r == COFFER_OK && x->set_quorum > 0) {
        r = coffer_store_quorum_set(st, x->set_quorum, &x->id);
    }
    for (size_t i = 0; i < x->n_links && r == COFFER_OK; i++) {
        const struct cer_link *l = &x->links[i];

        switch (l->what) {
        case CER_LINK_MK:
            r = coffer_store_ceremony_link_mk(st, l->version, &x->id);
            break;
        case CER_LINK_ORG:
            r = coffer_store_ceremony_link_org_key(st, &l->org_id, l->version, &x->id);
            break;
        case CER_LINK_AUDIT:
            r = coffer_store_ceremony_link_audit_key(st, l->version, &x->id);
            break;
        default:
            r = coffer_err_set(COFFER_E_INVALID, "unknown key link");
            break;
        }
    }
    return r;
}

/* Signs and stores the transcript (and, when completed, the changes) in one transaction. */
static enum coffer_err store_once(struct cer *x, struct coffer_buf *t)
{
    struct coffer_store_ceremony rec;
    unsigned char sig[COFFER_KEYS_AUDIT_SIG_MAX];
    unsigned char spki[COFFER_KEYS_SPKI_LEN];
    unsigned char fp[32];
    unsigned int fp_len = 0;
    size_t spki_len = 0;
    size_t sig_len = 0;
    uint32_t kv = 0;
    enum coffer_err r;

    if ((r = coffer_store_audit_key_current(x->c.st, &kv)) != COFFER_OK ||
        (r = coffer_keys_audit_public(x->c.k, kv, spki, &spki_len)) != COFFER_OK) {
        return coffer_err_wrap(r, "finding the audit signing key");
    }
    if (EVP_Digest(spki, spki_len, fp, &fp_len, EVP_sha256(), NULL) != 1 || fp_len != 32) {
        return coffer_err_set(COFFER_E_CRYPTO, "fingerprinting the audit signing key");
    }
    coffer_buf_cleanup(t);
    compose(x, t, kv, fp);
    if (t->len == 0) {
        return coffer_err_set(COFFER_E_NOMEM, "writing the transcript");
    }
    if ((r = coffer_keys_audit_sign(x->c.k, kv, t->data, t->len - 1, sig, &sig_len)) != COFFER_OK) {
        return coffer_err_wrap(r, "signing the transcript");
    }
    memset(&rec, 0, sizeof(rec));
    rec.id = x->id;
    snprintf(rec.kind, sizeof(rec.kind), "%s", x->kind);
    rec.completed = !x->aborted;
    rec.started_us = x->started_us;
    rec.officers = x->officers;
    rec.n_officers = x->n_officers;
    rec.token_serial = x->tok.serial[0] != '\0' ? x->tok.serial : NULL;
    rec.token_model = x->tok.model[0] != '\0' ? x->tok.model : NULL;
    rec.transcript = (const char *)t->data;
    rec.signature = sig;
    rec.signature_len = sig_len;
    rec.key_version = kv;
    if (x->plan != NULL) {
        rec.has_plan = true;
        rec.plan_id = x->plan->id;
    }
    if ((r = coffer_store_begin(x->c.st)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_store_ceremony_insert(x->c.st, &rec)) != COFFER_OK ||
        (!x->aborted && (r = apply_changes(x)) != COFFER_OK) ||
        (x->plan != NULL &&
         (r = coffer_store_plan_close(x->c.st, &x->plan->id,
                                      x->aborted ? COFFER_PLAN_ABORTED : COFFER_PLAN_COMPLETED,
                                      &x->id)) != COFFER_OK) ||
        (r = coffer_store_commit(x->c.st)) != COFFER_OK) {
        coffer_store_rollback(x->c.st);
        return r;
    }
    return COFFER_OK;
}

int cer_record(struct cer *x)
{
    struct coffer_buf t = {0};
    char id[COFFER_UUID_STR_LEN];
    enum coffer_err r;
    int rc = 1;

    r = store_once(x, &t);
    if (r != COFFER_OK && !x->aborted) {
        /* The changes could not be made: record that the ceremony aborted, and why. */
        (void)cer_abort(x, "recording failed: %s: %s", coffer_err_str(r), coffer_err_detail());
        r = store_once(x, &t);
    }
    if (r != COFFER_OK) {
        rc = cli_fail("recording the ceremony", r);
        goto out;
    }
    coffer_uuid_format(&x->id, id);
    fwrite(t.data, 1, t.len - 1, stdout);
    printf("\nceremony %s recorded (%s); verify with `coffer ceremony show %s`\n", id,
           x->aborted ? "aborted" : "completed", id);
    if (x->aborted) {
        fprintf(stderr, "coffer: ceremony aborted: %s\n", x->reason);
    }
    rc = x->aborted ? 1 : 0;
out:
    coffer_buf_cleanup(&t);
    return rc;
}

/* ---- The quorum ---------------------------------------------------------------- */

/* Counts the approvals that count, writes them into the head, and says why others do not. */
static int count_approvals(struct cer *x, const struct coffer_store_plan *pl,
                           const unsigned char sha[32], uint32_t m)
{
    struct coffer_store_plan_approval *ap = NULL;
    size_t n = 0;
    size_t valid = 0;
    char at[32];
    enum coffer_err r;

    if ((r = coffer_store_plan_approvals(x->c.st, &pl->id, &ap, &n)) != COFFER_OK) {
        return cli_fail("loading approvals", r);
    }
    cer_printf(x, &x->head, "quorum: %u approvals needed\napproved by:\n", m);
    for (size_t i = 0; i < n; i++) {
        const char *why = NULL;

        if (!coffer_mem_equal(ap[i].sha256, sha, 32)) {
            why = "approved another description (its sha256 differs)";
        } else if (!ap[i].officer_serving) {
            why = "the officer has been removed";
        } else if (ap[i].approved_us >= pl->expires_us) {
            why = "given after the plan expired";
        }
        cer_time(ap[i].approved_us, at);
        if (why != NULL) {
            fprintf(stderr, "coffer: approval by %s at %s does not count: %s\n", ap[i].officer, at,
                    why);
            continue;
        }
        cer_printf(x, &x->head, "  %s at %s, sha256 matched\n", ap[i].officer, at);
        valid++;
    }
    /* The officer names live in the approvals array; copy them for the record. */
    x->n_officers = 0;
    for (size_t i = 0; i < n; i++) {
        if (coffer_mem_equal(ap[i].sha256, sha, 32) && ap[i].officer_serving &&
            ap[i].approved_us < pl->expires_us) {
            x->officers[x->n_officers++] = coffer_strdup(ap[i].officer);
        }
    }
    coffer_free(ap);
    for (size_t i = 0; i < x->n_officers; i++) {
        if (x->officers[i] == NULL) {
            return cli_fail("counting approvals", coffer_err_set(COFFER_E_NOMEM, "out of memory"));
        }
    }
    if (valid < m) {
        fprintf(stderr,
                "coffer: refused: %zu valid approval(s) of %zu recorded; the quorum is %u\n", valid,
                n, m);
        return 1;
    }
    printf("%zu valid approval(s); the quorum of %u is met\n", valid, m);
    return 0;
}

static void free_officers(struct cer *x)
{
    for (size_t i = 0; i < x->n_officers; i++) {
        coffer_free((void *)x->officers[i]);
        x->officers[i] = NULL;
    }
    x->n_officers = 0;
}

/* ---- The operations ------------------------------------------------------------- */

static void mk_label(uint32_t v, char out[65])
{
    snprintf(out, 65, "coffer-mk-v%" PRIu32, v);
}

static void op_rotate_mk(struct cer *x)
{
    struct coffer_keys_created created;
    enum coffer_err r;

    if ((r = coffer_keys_mk_create(x->c.k, x->c.st, &created)) != COFFER_OK) {
        (void)cer_abort(x, "creating the master key: %s: %s", coffer_err_str(r),
                        coffer_err_detail());
        return;
    }
    cer_printf(x, &x->body, "  created master key v%u and made it current\n", created.version);
    cer_key(x, "master key", created.label, created.version, created.kcv, &created.attrs, false);
    x->links[x->n_links++] = (struct cer_link){.what = CER_LINK_MK, .version = created.version};
}

static void op_retire_mk(struct cer *x, uint32_t v)
{
    int64_t refs = 0;
    enum coffer_err r = coffer_keys_mk_retire(x->c.k, x->c.st, v, &refs);

    if (r == COFFER_E_REFERENCED) {
        (void)cer_abort(x, "master key v%u still wraps %lld org key version(s); sweep first", v,
                        (long long)refs);
    } else if (r != COFFER_OK) {
        (void)cer_abort(x, "retiring master key v%u: %s: %s", v, coffer_err_str(r),
                        coffer_err_detail());
    } else {
        cer_printf(x, &x->body, "  retired master key v%u (wraps nothing)\n", v);
    }
}

static void op_retire_org(struct cer *x, const char *org_name, uint32_t v)
{
    struct coffer_org org;
    int64_t refs = 0;
    enum coffer_err r;

    if ((r = coffer_store_org_by_name(x->c.st, org_name, &org)) != COFFER_OK) {
        (void)cer_abort(x, "org %s: %s", org_name, coffer_err_str(r));
        return;
    }
    r = coffer_keys_org_key_retire(x->c.k, x->c.st, &org.id, v, &refs);
    if (r == COFFER_E_REFERENCED) {
        (void)cer_abort(x, "org %s key v%u still wraps %lld credential version(s); sweep first",
                        org_name, v, (long long)refs);
    } else if (r != COFFER_OK) {
        (void)cer_abort(x, "retiring org %s key v%u: %s: %s", org_name, v, coffer_err_str(r),
                        coffer_err_detail());
    } else {
        cer_printf(x, &x->body, "  retired org %s key v%u (wraps nothing)\n", org_name, v);
    }
}

static void op_destroy_mk(struct cer *x, uint32_t v)
{
    struct coffer_keys_created gone;
    struct coffer_p11_attrs a;
    char label[65];
    char kcv[2 * COFFER_KCV_LEN + 1];
    int64_t refs = 0;
    enum coffer_err r;

    memset(&gone, 0, sizeof(gone));
    r = coffer_keys_mk_destroy(x->c.k, x->c.st, v, &refs, &gone);
    if (r == COFFER_E_REFERENCED) {
        (void)cer_abort(x, "master key v%u is still referenced %lld time(s)", v, (long long)refs);
        return;
    }
    if (r != COFFER_OK) {
        (void)cer_abort(x, "destroying master key v%u: %s: %s", v, coffer_err_str(r),
                        coffer_err_detail());
        return;
    }
    mk_label(v, label);
    coffer_hex(gone.kcv, COFFER_KCV_LEN, kcv);
    cer_printf(x, &x->body, "  destroyed master key v%u  label %s  KCV %s\n", v, label, kcv);
    r = cer_read_key(x, label, &a, NULL);
    if (r == COFFER_E_NOT_FOUND) {
        cer_printf(x, &x->body, "    the token holds no object labelled %s any more\n", label);
    } else {
        (void)cer_abort(x, "the token still answers for %s after destruction (%s)", label,
                        coffer_err_str(r));
    }
}

static void op_destroy_org(struct cer *x, const char *org_name, uint32_t v)
{
    struct coffer_keys_created gone;
    struct coffer_store_org_key before;
    struct coffer_store_org_key row;
    struct coffer_org org;
    char kcv[2 * COFFER_KCV_LEN + 1];
    int64_t refs = 0;
    enum coffer_err r;

    if ((r = coffer_store_org_by_name(x->c.st, org_name, &org)) != COFFER_OK) {
        (void)cer_abort(x, "org %s: %s", org_name, coffer_err_str(r));
        return;
    }
    if ((r = coffer_store_org_key_get(x->c.st, &org.id, v, &before)) != COFFER_OK) {
        (void)cer_abort(x, "org %s key v%u: %s", org_name, v, coffer_err_str(r));
        return;
    }
    memset(&gone, 0, sizeof(gone));
    r = coffer_keys_org_key_destroy(x->c.k, x->c.st, &org.id, v, &refs, &gone);
    if (r == COFFER_E_REFERENCED) {
        (void)cer_abort(x, "org %s key v%u still wraps %lld credential version(s)", org_name, v,
                        (long long)refs);
        return;
    }
    if (r != COFFER_OK) {
        (void)cer_abort(x, "destroying org %s key v%u: %s: %s", org_name, v, coffer_err_str(r),
                        coffer_err_detail());
        return;
    }
    coffer_hex(gone.kcv, COFFER_KCV_LEN, kcv);
    cer_printf(x, &x->body, "  destroyed org %s key v%u  KCV %s\n", org_name, v, kcv);
    /* Read the row back: the transcript says what the database holds now, not what was asked. */
    if ((r = coffer_store_org_key_get(x->c.st, &org.id, v, &row)) != COFFER_OK) {
        (void)cer_abort(x, "reading back org %s key v%u: %s", org_name, v, coffer_err_str(r));
        return;
    }
    if (row.state != COFFER_KEY_DESTROYED) {
        (void)cer_abort(x, "org %s key v%u reads back %s after destruction", org_name, v,
                        coffer_key_state_str(row.state));
        return;
    }
    if (row.wrapped_len != before.wrapped_len ||
        coffer_mem_equal(row.wrapped, before.wrapped, row.wrapped_len)) {
        (void)cer_abort(x, "org %s key v%u: the stored wrapped key was not overwritten", org_name,
                        v);
        return;
    }
    cer_printf(x, &x->body,
               "    its wrapped key (%zu bytes) reads back overwritten in the database; a backup "
               "taken before holds it under master key v%u until that version is destroyed\n",
               row.wrapped_len, row.mk_version);
}

static int confirm_org(const char *org_name)
{
    struct coffer_secret *typed = NULL;
    struct coffer_secret_view v;
    enum coffer_err r;
    int ok;

    printf("Shredding org %s makes every credential it holds unrecoverable.\n", org_name);
    fflush(stdout);
    if ((r = coffer_passphrase_read("Type the org name to confirm: ", &typed)) != COFFER_OK) {
        return cli_fail("reading the confirmation", r);
    }
    v = coffer_secret_view(typed);
    ok = v.len == strlen(org_name) && coffer_mem_equal(v.data, org_name, v.len);
    coffer_secret_free(&typed);
    if (!ok) {
        fprintf(stderr, "coffer: refused: the name typed is not %s\n", org_name);
        return 1;
    }
    return 0;
}

static void op_shred_org(struct cer *x, const char *org_name)
{
    struct coffer_keys_shred_report rep;
    struct coffer_p11_attrs a;
    struct coffer_org org;
    unsigned char kcv[COFFER_KCV_LEN];
    char old_kcv[2 * COFFER_KCV_LEN + 1];
    char label[65];
    enum coffer_err r;

    if ((r = coffer_store_org_by_name(x->c.st, org_name, &org)) != COFFER_OK) {
        (void)cer_abort(x, "org %s: %s", org_name, coffer_err_str(r));
        return;
    }
    memset(&rep, 0, sizeof(rep));
    if ((r = coffer_keys_org_shred(x->c.k, x->c.st, &org.id, &rep)) != COFFER_OK) {
        (void)cer_abort(x, "shredding org %s: %s: %s", org_name, coffer_err_str(r),
                        coffer_err_detail());
        return;
    }
    cer_printf(x, &x->body,
               "  shredded org %s: %u org key version(s) destroyed, %lld credential version(s) "
               "unrecoverable\n",
               org_name, rep.org_key_versions, (long long)rep.credential_versions);
    cer_printf(x, &x->body, "  other orgs' key versions rewrapped under the new master key: %lld\n",
               (long long)rep.org_keys_rewrapped);
    if (rep.old_mk_version > 0) {
        coffer_hex(rep.old_mk_kcv, COFFER_KCV_LEN, old_kcv);
        cer_printf(x, &x->body, "  destroyed master key v%u (KCV %s) and every older version\n",
                   rep.old_mk_version, old_kcv);
    }
    if (rep.new_mk_version == 0) {
        return;
    }
    mk_label(rep.new_mk_version, label);
    if ((r = cer_read_key(x, label, &a, kcv)) != COFFER_OK) {
        (void)cer_abort(x, "reading back %s: %s", label, coffer_err_str(r));
        return;
    }
    if (!coffer_mem_equal(kcv, rep.new_mk_kcv, COFFER_KCV_LEN)) {
        (void)cer_abort(x, "%s reads back with another KCV than recorded", label);
    }
    cer_key(x, "master key", label, rep.new_mk_version, kcv, &a, false);
    x->links[x->n_links++] = (struct cer_link){.what = CER_LINK_MK, .version = rep.new_mk_version};
}

/* What the operation acts on, for the membership kinds, checked again at run time. */
static void op_officers(struct cer *x, const char *kind, const char *arg, uint32_t m)
{
    struct coffer_store_officer *all = NULL;
    size_t n = 0;
    size_t serving = 0;
    bool found = false;
    enum coffer_err r;

    if ((r = coffer_store_officer_list(x->c.st, &all, &n)) != COFFER_OK) {
        (void)cer_abort(x, "listing officers: %s", coffer_err_str(r));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        serving += all[i].removed ? 0 : 1;
        if (strcmp(all[i].name, arg) == 0) {
            found = !all[i].removed;
        }
    }
    coffer_free(all);
    if (strcmp(kind, "officer-add") == 0) {
        if ((r = cer_enrol_passphrase(arg, x->add_hashes[0])) != COFFER_OK) {
            (void)cer_abort(x, "enrolling %s: %s: %s", arg, coffer_err_str(r), coffer_err_detail());
            return;
        }
        x->add_officers[0] = arg;
        x->n_add = 1;
        cer_printf(x, &x->body, "  enrolled officer %s (%zu officers now)\n", arg, serving + 1);
    } else if (strcmp(kind, "officer-remove") == 0) {
        if (!found) {
            (void)cer_abort(x, "%s is not a serving officer", arg);
        } else if (serving - 1 < m) {
            (void)cer_abort(x, "removing %s would leave %zu officer(s), fewer than the quorum %u",
                            arg, serving - 1, m);
        } else {
            x->remove_officer = arg;
            cer_printf(x, &x->body, "  removed officer %s (%zu officers now)\n", arg, serving - 1);
        }
    } else {
        uint32_t want = 0;

        if (cli_parse_version(arg, &want) != COFFER_OK || want > serving) {
            (void)cer_abort(x, "quorum %s is not between 1 and the %zu officers", arg, serving);
        } else {
            x->set_quorum = want;
            cer_printf(x, &x->body, "  quorum set to %u of %zu officers (was %u)\n", want, serving,
                       m);
        }
    }
}

static void sha256_of(const char *s, size_t len, unsigned char out[32])
{
    unsigned int n = 0;

    if (EVP_Digest(s, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32) {
        memset(out, 0, 32);
    }
}

/* Splits the plan's arguments into at most two words (in place, in buf). */
static size_t split_args(char *buf, char *words[2])
{
    size_t n = 0;
    char *save = NULL;

    for (char *w = strtok_r(buf, " ", &save); w != NULL && n < 2; w = strtok_r(NULL, " ", &save)) {
        words[n++] = w;
    }
    return n;
}

static void do_plan(struct cer *x, const struct coffer_store_plan *pl, uint32_t m)
{
    char args[COFFER_CEREMONY_ARGS_MAX + 1];
    char *w[2] = {NULL, NULL};
    uint32_t v = 0;
    size_t n;

    snprintf(args, sizeof(args), "%s", pl->args);
    n = split_args(args, w);
    cer_printf(x, &x->body, "  operation: %s %s\n", pl->kind, pl->args);
    if (strcmp(pl->kind, "rotate-mk") == 0 && n == 0) {
        op_rotate_mk(x);
    } else if (strcmp(pl->kind, "retire-mk") == 0 && n == 1 &&
               cli_parse_version(w[0], &v) == COFFER_OK) {
        op_retire_mk(x, v);
    } else if (strcmp(pl->kind, "destroy-mk") == 0 && n == 1 &&
               cli_parse_version(w[0], &v) == COFFER_OK) {
        op_destroy_mk(x, v);
    } else if (strcmp(pl->kind, "destroy-org") == 0 && n == 2 &&
               cli_parse_version(w[1], &v) == COFFER_OK) {
        op_destroy_org(x, w[0], v);
    } else if (strcmp(pl->kind, "retire-org") == 0 && n == 2 &&
               cli_parse_version(w[1], &v) == COFFER_OK) {
        op_retire_org(x, w[0], v);
    } else if (strcmp(pl->kind, "shred-org") == 0 && n == 1) {
        op_shred_org(x, w[0]);
    } else if ((strcmp(pl->kind, "officer-add") == 0 || strcmp(pl->kind, "officer-remove") == 0 ||
                strcmp(pl->kind, "set-quorum") == 0) &&
               n == 1) {
        /* The names outlive this call: keep them in the plan's arguments. */
        const char *arg = pl->args;

        op_officers(x, pl->kind, arg, m);
    } else {
        (void)cer_abort(x, "the plan's operation '%s %s' is not understood", pl->kind, pl->args);
    }
}

int cer_run(int argc, char **argv)
{
    struct coffer_store_plan pl;
    struct coffer_uuid id;
    struct cer x;
    unsigned char sha[32];
    char exp[32];
    bool locked = false;
    uint32_t m = 0;
    enum coffer_err r;
    int rc = 2;

    memset(&pl, 0, sizeof(pl));
    if (argc != 2 || coffer_uuid_parse(argv[1], &id) != COFFER_OK) {
        fprintf(stderr, "usage: coffer ceremony run PLAN-ID\n");
        return 2;
    }
    if ((r = cer_begin(&x, "run")) != COFFER_OK) {
        rc = cli_fail("opening the token and database", r);
        cer_end(&x);
        return rc == 1 ? 2 : rc;
    }
    if ((r = coffer_store_plan_run_lock(x.c.st, &id, true, &locked)) != COFFER_OK) {
        rc = cli_fail("locking the plan", r);
        goto out;
    }
    if (!locked) {
        fprintf(stderr, "coffer: refused: another run of this plan is in progress\n");
        rc = 1;
        goto out;
    }
    if ((r = coffer_store_plan_get(x.c.st, &id, &pl)) != COFFER_OK) {
        rc = cli_fail("loading the plan", r);
        goto out;
    }
    snprintf(x.kind, sizeof(x.kind), "%s", pl.kind);
    x.plan = &pl;
    sha256_of(pl.description, pl.description_len, sha);
    rc = 1;
    if (!coffer_mem_equal(sha, pl.sha256, sizeof(sha))) {
        fprintf(stderr, "coffer: refused: the stored description no longer hashes to the "
                        "SHA-256 recorded with it (altered)\n");
        goto out;
    }
    if (pl.state != COFFER_PLAN_OPEN) {
        fprintf(stderr, "coffer: refused: the plan is %s already\n",
                coffer_plan_state_str(pl.state));
        goto out;
    }
    if (pl.now_us >= pl.expires_us) {
        cer_time(pl.expires_us, exp);
        fprintf(stderr, "coffer: refused: the plan expired at %s; prepare it again\n", exp);
        goto out;
    }
    if ((r = coffer_store_quorum_get(x.c.st, &m)) != COFFER_OK) {
        rc = cli_fail("reading the quorum", r);
        goto out;
    }
    if (count_approvals(&x, &pl, sha, m) != 0) {
        goto out;
    }
    if (strcmp(pl.kind, "shred-org") == 0) {
        char args[COFFER_CEREMONY_ARGS_MAX + 1];
        char *w[2] = {NULL, NULL};

        snprintf(args, sizeof(args), "%s", pl.args);
        if (split_args(args, w) != 1 || confirm_org(w[0]) != 0) {
            goto out;
        }
    }
    do_plan(&x, &pl, m);
    rc = cer_record(&x);
out:
    if (locked && coffer_store_plan_run_lock(x.c.st, &id, false, &locked) != COFFER_OK) {
        /* Ending the connection below releases it all the same. */
        coffer_err_clear();
    }
    free_officers(&x);
    cer_end(&x);
    coffer_store_plan_cleanup(&pl);
    return rc;
}

int cer_rotate_org_key(int argc, char **argv)
{
    struct coffer_keys_created created;
    struct coffer_org org;
    struct cer x;
    const char *who = getenv("USER");
    enum coffer_err r;
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: coffer ceremony rotate-org-key ORG\n");
        return 2;
    }
    if ((r = cer_begin(&x, "rotate-org-key")) != COFFER_OK) {
        cli_fail("opening the token and database", r);
        cer_end(&x);
        return 2;
    }
    if ((r = coffer_store_org_by_name(x.c.st, argv[1], &org)) != COFFER_OK) {
        rc = cli_fail(argv[1], r);
        cer_end(&x);
        return rc;
    }
    cer_printf(&x, &x.head, "quorum: none needed (an admin's rotation)\nrun by: %s\n",
               who != NULL && coffer_text_ok(who, strlen(who), 64) ? who : "(unknown user)");
    if ((r = coffer_keys_org_rotate(x.c.k, x.c.st, &org.id, &created)) != COFFER_OK) {
        (void)cer_abort(&x, "rotating org %s: %s: %s", argv[1], coffer_err_str(r),
                        coffer_err_detail());
    } else {
        char what[96];

        snprintf(what, sizeof(what), "org %s key", argv[1]);
        cer_printf(&x, &x.body, "  created org %s key v%u and made it current\n", argv[1],
                   created.version);
        cer_key(&x, what, "(session object; stored wrapped)", created.version, created.kcv,
                &created.attrs, true);
        x.links[x.n_links++] =
            (struct cer_link){.what = CER_LINK_ORG, .version = created.version, .org_id = org.id};
    }
    rc = cer_record(&x);
    cer_end(&x);
    return rc;
}
