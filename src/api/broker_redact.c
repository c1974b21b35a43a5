/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Secret values in brokered calls (see coffer/broker.h): the redactor that
 * removes every known spelling of a credential's values from what an
 * upstream sends back, and the templates that put those values into the
 * request, plus the check that an agent supplied no placeholders of its own.
 *
 * A value, and everything derived from it (its encodings, the Basic form,
 * the set of bytes a match may start with, an expanded template), lives only
 * in struct coffer_secret: encoders write straight into locked memory, and
 * no copy of a value is ever made into an ordinary buffer, a stack array or
 * an error detail. Details name placeholders and count bytes, nothing else.
 */
#include "coffer/broker.h"

#include <string.h>

#include "coffer/keys.h"
#include "coffer/mem.h"

/* Raw, base64 and base64url with and without padding, and the same four of the Basic form. */
#define FORMS_PER_VALUE 9
#define PATTERNS_MAX (COFFER_BROKER_REDACT_VALUES * FORMS_PER_VALUE)
#define USER_MAX 255
/* Longest escape the matcher reads ("\u00XX"): a shorter tail may be one cut by the end. */
#define ESCAPE_MAX 6
#define KEY_NAME_LEN 64

static const char B64_STD[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64_URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char HEX_UPPER[] = "0123456789ABCDEF";

struct coffer_broker_redactor {
    size_t n_values;
    size_t n; /* patterns in use */
    struct coffer_secret *patterns[PATTERNS_MAX];
    struct coffer_secret *starts; /* 256 flags: 1 where a byte may begin a match */
};

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* ---- Building patterns ---------------------------------------------------------- */

/* Length of the base64 text of n bytes, with or without '=' padding. */
static size_t b64_len(size_t n, bool pad)
{
    if (pad || n % 3 == 0) {
        return (n + 2) / 3 * 4;
    }
    return n / 3 * 4 + n % 3 + 1;
}

/* Encodes n bytes at in with alphabet into out (b64_len(n, pad) bytes). */
static void b64_encode(const unsigned char *in, size_t n, const char *alphabet, bool pad,
                       unsigned char *out)
{
    size_t o = 0;
    uint32_t v = 0;

    for (size_t i = 0; i < n; i += 3) {
        size_t left = n - i;

        v = (uint32_t)in[i] << 16;
        if (left > 1) {
            v |= (uint32_t)in[i + 1] << 8;
        }
        if (left > 2) {
            v |= in[i + 2];
        }
        out[o++] = (unsigned char)alphabet[(v >> 18) & 63];
        out[o++] = (unsigned char)alphabet[(v >> 12) & 63];
        if (left > 1) {
            out[o++] = (unsigned char)alphabet[(v >> 6) & 63];
        } else if (pad) {
            out[o++] = '=';
        }
        if (left > 2) {
            out[o++] = (unsigned char)alphabet[v & 63];
        } else if (pad) {
            out[o++] = '=';
        }
    }
    coffer_wipe(&v, sizeof(v));
}

/* A new secret holding the base64 text of src. */
static enum coffer_err b64_secret(const struct coffer_secret *src, const char *alphabet, bool pad,
                                  struct coffer_secret **out)
{
    struct coffer_secret_view in = coffer_secret_view(src);
    enum coffer_err r;

    if ((r = coffer_secret_new(b64_len(in.len, pad), out)) != COFFER_OK) {
        return r;
    }
    b64_encode(in.data, in.len, alphabet, pad, coffer_secret_view(*out).data);
    return COFFER_OK;
}

/* Appends the four base64 forms of src to forms at *n. */
static enum coffer_err add_b64_forms(const struct coffer_secret *src, struct coffer_secret **forms,
                                     size_t *n)
{
    static const struct {
        const char *alphabet;
        bool pad;
    } kinds[] = {{B64_STD, true}, {B64_STD, false}, {B64_URL, true}, {B64_URL, false}};
    enum coffer_err r;

    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if ((r = b64_secret(src, kinds[i].alphabet, kinds[i].pad, &forms[*n])) != COFFER_OK) {
            return r;
        }
        (*n)++;
    }
    return COFFER_OK;
}

/* A new secret holding "user:value". */
static enum coffer_err basic_secret(const char *user, const struct coffer_secret *value,
                                    struct coffer_secret **out)
{
    struct coffer_secret_view v = coffer_secret_view(value);
    size_t ul = strlen(user);
    enum coffer_err r;
    unsigned char *p;

    if ((r = coffer_secret_new(ul + 1 + v.len, out)) != COFFER_OK) {
        return r;
    }
    p = coffer_secret_view(*out).data;
    coffer_memcpy(p, user, ul);
    p[ul] = ':';
    coffer_memcpy(p + ul + 1, v.data, v.len);
    return COFFER_OK;
}

enum coffer_err coffer_broker_redactor_new(struct coffer_broker_redactor **out)
{
    enum coffer_err r;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "redactor: no place for the result");
    }
    *out = coffer_calloc(1, sizeof(**out));
    if (*out == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "redactor");
    }
    if ((r = coffer_secret_new(256, &(*out)->starts)) != COFFER_OK) {
        coffer_free(*out);
        *out = NULL;
        return r;
    }
    return COFFER_OK;
}

void coffer_broker_redactor_free(struct coffer_broker_redactor **r)
{
    if (r == NULL || *r == NULL) {
        return;
    }
    for (size_t i = 0; i < (*r)->n; i++) {
        coffer_secret_free(&(*r)->patterns[i]);
    }
    coffer_secret_free(&(*r)->starts);
    coffer_free(*r);
    *r = NULL;
}

/* Whether r already holds a pattern equal to p. */
static bool known(const struct coffer_broker_redactor *r, const struct coffer_secret *p)
{
    for (size_t i = 0; i < r->n; i++) {
        if (coffer_secret_equal(r->patterns[i], p)) {
            return true;
        }
    }
    return false;
}

/* Checks a Basic username: printable ASCII without ':' (which would end it). */
static enum coffer_err check_user(const char *user)
{
    size_t n = strlen(user);

    if (n > USER_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "redactor: username of %zu bytes, limit %d", n,
                              USER_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)user[i];

        if (c == ':' || c < 0x20 || c == 0x7f) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "redactor: username holds ':' or a control character");
        }
    }
    return COFFER_OK;
}

enum coffer_err coffer_broker_redactor_add(struct coffer_broker_redactor *r,
                                           const struct coffer_secret *value, const char *user)
{
    struct coffer_secret *forms[FORMS_PER_VALUE] = {NULL};
    struct coffer_secret *basic = NULL;
    unsigned char *starts;
    size_t n = 0;
    enum coffer_err e;

    if (r == NULL || value == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "redactor: missing argument");
    }
    if (coffer_secret_len(value) < COFFER_BROKER_REDACT_MIN) {
        /* A value this short occurs by chance in any body: redacting it would protect nothing. */
        return coffer_err_set(COFFER_E_INVALID,
                              "value of %zu bytes is too short to redact (at least %d)",
                              coffer_secret_len(value), COFFER_BROKER_REDACT_MIN);
    }
    if (user != NULL && (e = check_user(user)) != COFFER_OK) {
        return e;
    }
    if (r->n_values == COFFER_BROKER_REDACT_VALUES) {
        return coffer_err_set(COFFER_E_LIMIT, "a redactor holds at most %d values",
                              COFFER_BROKER_REDACT_VALUES);
    }
    if ((e = coffer_secret_from(coffer_secret_view(value).data, coffer_secret_len(value),
                                &forms[n])) != COFFER_OK) {
        goto out;
    }
    n++;
    if ((e = add_b64_forms(value, forms, &n)) != COFFER_OK) {
        goto out;
    }
    if (user != NULL) {
        if ((e = basic_secret(user, value, &basic)) != COFFER_OK ||
            (e = add_b64_forms(basic, forms, &n)) != COFFER_OK) {
            goto out;
        }
    }
    /* Commit: nothing below can fail. Equal forms (no padding needed, no '+' or '/') go once. */
    starts = coffer_secret_view(r->starts).data;
    for (size_t i = 0; i < n; i++) {
        if (known(r, forms[i])) {
            continue;
        }
        starts[coffer_secret_view(forms[i]).data[0]] = 1;
        r->patterns[r->n++] = forms[i];
        forms[i] = NULL;
    }
    /* Escapes may begin a match whatever the first byte; '+' stands for a space. */
    starts['%'] = 1;
    starts['\\'] = 1;
    if (starts[' ']) {
        starts['+'] = 1;
    }
    r->n_values++;
out:
    for (size_t i = 0; i < FORMS_PER_VALUE; i++) {
        coffer_secret_free(&forms[i]);
    }
    coffer_secret_free(&basic);
    return e;
}

/* ---- Matching ------------------------------------------------------------------- */

/* The byte a JSON string escape "\c" stands for, or -1 if c is not one with a single byte. */
static int json_escape(unsigned char c)
{
    switch (c) {
    case '"':
        return '"';
    case '\\':
        return '\\';
    case '/':
        return '/';
    case 'b':
        return 0x08;
    case 'f':
        return 0x0c;
    case 'n':
        return 0x0a;
    case 'r':
        return 0x0d;
    case 't':
        return 0x09;
    default:
        return -1;
    }
}

/*
 * Width of the unit at in[j] (n bytes in all) if it stands for the byte
 * want, or 0. Escapes are tried before the literal byte: a '%' or '\' that
 * is itself part of a value is found by the literal pass (exact_end).
 */
static size_t unit_width(const unsigned char *in, size_t n, size_t j, unsigned char want)
{
    unsigned char c = in[j];

    if (c == '%' && n - j >= 3) {
        int hi = hex_value(in[j + 1]);
        int lo = hex_value(in[j + 2]);

        if (hi >= 0 && lo >= 0 && hi * 16 + lo == want) {
            return 3;
        }
    }
    if (c == '\\' && n - j >= 2) {
        if (in[j + 1] == 'u' && n - j >= 6 && want < 0x80) {
            int v = 0;
            bool ok = true;

            for (size_t k = 2; k < 6; k++) {
                int h = hex_value(in[j + k]);

                ok = ok && h >= 0;
                v = v * 16 + (h < 0 ? 0 : h);
            }
            if (ok && v == want) {
                return 6;
            }
        } else if (json_escape(in[j + 1]) == want) {
            return 2;
        }
    }
    if (c == want || (c == '+' && want == ' ')) {
        return 1;
    }
    return 0;
}

/*
 * End of the occurrence of p starting at in[i], each byte of p spelled
 * literally or as an escape; n when the input ends inside an occurrence of
 * which at least COFFER_BROKER_REDACT_MIN bytes are present; 0 otherwise.
 */
static size_t decoded_end(const unsigned char *in, size_t n, size_t i,
                          const struct coffer_secret_view *p)
{
    size_t j = i;
    size_t k = 0;

    while (k < p->len && j < n) {
        size_t w = unit_width(in, n, j, p->data[k]);

        if (w == 0) {
            bool cut = n - j < ESCAPE_MAX && (in[j] == '%' || in[j] == '\\');

            return cut && k >= COFFER_BROKER_REDACT_MIN ? n : 0;
        }
        j += w;
        k++;
    }
    if (k == p->len) {
        return j;
    }
    return k >= COFFER_BROKER_REDACT_MIN ? n : 0;
}

/* As decoded_end, with every byte of p literal. */
static size_t exact_end(const unsigned char *in, size_t n, size_t i,
                        const struct coffer_secret_view *p)
{
    size_t k = 0;

    while (k < p->len && i + k < n && in[i + k] == p->data[k]) {
        k++;
    }
    if (k == p->len) {
        return i + k;
    }
    return i + k == n && k >= COFFER_BROKER_REDACT_MIN ? n : 0;
}

/* End of the longest occurrence of any pattern starting at in[i], or 0. */
static size_t longest_end(const struct coffer_broker_redactor *r, const unsigned char *in, size_t n,
                          size_t i)
{
    size_t best = 0;

    if (coffer_secret_view(r->starts).data[in[i]] == 0) {
        return 0;
    }
    for (size_t k = 0; k < r->n; k++) {
        struct coffer_secret_view p = coffer_secret_view(r->patterns[k]);
        size_t e = decoded_end(in, n, i, &p);
        size_t x = exact_end(in, n, i, &p);

        if (e > best) {
            best = e;
        }
        if (x > best) {
            best = x;
        }
    }
    return best;
}

/* Redacts in (n bytes) into out, which the caller checked is empty. */
static enum coffer_err redact_into(const struct coffer_broker_redactor *r, const unsigned char *in,
                                   size_t n, struct coffer_buf *out)
{
    static const char redacted[] = COFFER_BROKER_REDACTED;
    size_t run = 0; /* start of the bytes not yet written */
    size_t i = 0;
    enum coffer_err e;

    if (n == 0) {
        return COFFER_OK;
    }
    while (i < n) {
        size_t end = longest_end(r, in, n, i);

        if (end == 0) {
            i++;
            continue;
        }
        /* Take in every occurrence that overlaps or touches this one, so no fragment is left. */
        for (size_t j = i + 1; j <= end && j < n; j++) {
            size_t more = longest_end(r, in, n, j);

            if (more > end) {
                end = more;
            }
        }
        if ((e = coffer_buf_put(out, in + run, i - run)) != COFFER_OK ||
            (e = coffer_buf_put(out, redacted, sizeof(redacted) - 1)) != COFFER_OK) {
            return e;
        }
        i = end;
        run = end;
    }
    return coffer_buf_put(out, in + run, n - run);
}

enum coffer_err coffer_broker_redact(const struct coffer_broker_redactor *r, const void *in,
                                     size_t len, struct coffer_buf *out)
{
    enum coffer_err e;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "redact: no output buffer");
    }
    if (out->len != 0) {
        /* Left alone: it holds the caller's bytes, which are not ours to drop. */
        return coffer_err_set(COFFER_E_INVALID, "redact: output buffer is not empty");
    }
    if (r == NULL || (in == NULL && len > 0)) {
        return coffer_err_set(COFFER_E_INVALID, "redact: missing argument");
    }
    if ((e = redact_into(r, in, len, out)) != COFFER_OK) {
        coffer_buf_cleanup(out);
    }
    return e;
}

/* Whether the n bytes at s hold CR, LF or NUL. */
static bool has_line_break(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') {
            return true;
        }
    }
    return false;
}

enum coffer_err coffer_broker_redact_header(const struct coffer_broker_redactor *r,
                                            const char *name, size_t name_len, const char *value,
                                            size_t value_len, struct coffer_buf *out)
{
    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "redact header: no output buffer");
    }
    if (out->len != 0) {
        return coffer_err_set(COFFER_E_INVALID, "redact header: output buffer is not empty");
    }
    if (r == NULL || name == NULL || name_len == 0 || (value == NULL && value_len > 0)) {
        return coffer_err_set(COFFER_E_INVALID, "redact header: missing argument");
    }
    if (has_line_break(name, name_len) || has_line_break(value, value_len)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "header of %zu+%zu bytes holds CR, LF or NUL: one header at a time",
                              name_len, value_len);
    }
    for (size_t i = 0; i < name_len; i++) {
        if (longest_end(r, (const unsigned char *)name, name_len, i) != 0) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "header name carries a credential value: drop the header");
        }
    }
    return coffer_broker_redact(r, value, value_len, out);
}

/* ---- Templates ------------------------------------------------------------------ */

/* Width of an opening brace at s[i] ('{', "%7B" or "%7b"), or 0. */
static size_t brace_at(const unsigned char *s, size_t n, size_t i)
{
    if (s[i] == '{') {
        return 1;
    }
    if (s[i] == '%' && n - i >= 3 && s[i + 1] == '7' && (s[i + 2] == 'B' || s[i + 2] == 'b')) {
        return 3;
    }
    return 0;
}

bool coffer_broker_has_placeholder(const void *s, size_t len)
{
    const unsigned char *p = s;

    if (p == NULL) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        size_t w = brace_at(p, len, i);

        if (w > 0 && i + w < len && brace_at(p, len, i + w) > 0) {
            return true;
        }
    }
    return false;
}

/* Whether the n bytes at s are a key name, [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}. */
static bool key_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > KEY_NAME_LEN) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool word =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';

        if (!word && (i == 0 || (c != '.' && c != '-'))) {
            return false;
        }
    }
    return true;
}

/*
 * Where an expansion writes: with data NULL it only counts, so a first pass
 * sizes the secret and a second fills it, and no value is ever held anywhere
 * else on the way.
 */
struct writer {
    unsigned char *data;
    size_t len;
    bool over; /* the output would pass COFFER_SECRET_MAX */
};

static void put_byte(struct writer *w, unsigned char c)
{
    if (w->len == COFFER_SECRET_MAX) {
        w->over = true;
        return;
    }
    if (w->data != NULL) {
        w->data[w->len] = c;
    }
    w->len++;
}

/* Puts value v in as enc wants it; COFFER_E_INVALID naming the placeholder if enc refuses it. */
static enum coffer_err put_value(struct writer *w, const char *name,
                                 const struct coffer_secret_view *v, enum coffer_broker_enc enc)
{
    for (size_t i = 0; i < v->len; i++) {
        unsigned char b = v->data[i];
        bool plain = (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') ||
                     b == '-' || b == '.' || b == '_' || b == '~';

        if (enc == COFFER_BROKER_ENC_HEADER) {
            if (b == '\r' || b == '\n' || b == '\0') {
                return coffer_err_set(COFFER_E_INVALID,
                                      "value of {{%s}} holds CR, LF or NUL: it cannot go into a "
                                      "header",
                                      name);
            }
            put_byte(w, b);
        } else if (plain) {
            put_byte(w, b);
        } else {
            put_byte(w, '%');
            put_byte(w, (unsigned char)HEX_UPPER[b >> 4]);
            put_byte(w, (unsigned char)HEX_UPPER[b & 15]);
        }
    }
    return COFFER_OK;
}

/*
 * One pass over a template: checks its syntax and, with ks, writes or
 * counts its expansion into w. With ks NULL it checks the syntax only.
 */
static enum coffer_err expand_pass(const char *t, size_t len, const struct coffer_keyset *ks,
                                   enum coffer_broker_enc enc, struct writer *w)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = (unsigned char)t[i];

        if (c < 0x20 || c >= 0x7f) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "template holds a byte other than printable ASCII at offset %zu",
                                  i);
        }
        if (c == '}' && i + 1 < len && t[i + 1] == '}') {
            return coffer_err_set(COFFER_E_INVALID, "template has a stray \"}}\" at offset %zu", i);
        }
        if (c == '{' && i + 1 < len && t[i + 1] == '{') {
            const char *close = NULL;
            char name[KEY_NAME_LEN + 1];
            const struct coffer_secret *value;
            struct coffer_secret_view v;
            enum coffer_err r;
            size_t n;

            for (size_t j = i + 2; j + 1 < len && close == NULL; j++) {
                if (t[j] == '}' && t[j + 1] == '}') {
                    close = t + j;
                }
            }
            if (close == NULL) {
                return coffer_err_set(COFFER_E_INVALID,
                                      "template: \"{{\" at offset %zu is not "
                                      "closed",
                                      i);
            }
            n = (size_t)(close - (t + i + 2));
            if (!key_name_ok(t + i + 2, n)) {
                return coffer_err_set(COFFER_E_INVALID,
                                      "template: placeholder at offset %zu is not a key name "
                                      "([A-Za-z0-9_][A-Za-z0-9_.-]{0,63})",
                                      i);
            }
            coffer_memcpy(name, t + i + 2, n);
            name[n] = '\0';
            i += n + 4;
            if (ks == NULL) {
                continue;
            }
            value = coffer_keyset_get(ks, name);
            if (value == NULL) {
                return coffer_err_set(COFFER_E_NOT_FOUND,
                                      "template names {{%s}}, which the credential does not have",
                                      name);
            }
            v = coffer_secret_view(value);
            if ((r = put_value(w, name, &v, enc)) != COFFER_OK) {
                return r;
            }
            continue;
        }
        put_byte(w, c);
        i++;
    }
    if (w->over) {
        return coffer_err_set(COFFER_E_LIMIT, "expanded template exceeds %u bytes",
                              COFFER_SECRET_MAX);
    }
    return COFFER_OK;
}

/* The checks every template gets before it is read. */
static enum coffer_err check_length(const char *tmpl, size_t len)
{
    if (tmpl == NULL || len == 0) {
        return coffer_err_set(COFFER_E_INVALID, "template is empty");
    }
    if (len > COFFER_BROKER_TEMPLATE_MAX) {
        return coffer_err_set(COFFER_E_LIMIT, "template of %zu bytes, limit %d", len,
                              COFFER_BROKER_TEMPLATE_MAX);
    }
    return COFFER_OK;
}

enum coffer_err coffer_broker_template_check(const char *tmpl, size_t len)
{
    struct writer w = {0};
    enum coffer_err r;

    if ((r = check_length(tmpl, len)) != COFFER_OK) {
        return r;
    }
    return expand_pass(tmpl, len, NULL, COFFER_BROKER_ENC_HEADER, &w);
}

enum coffer_err coffer_broker_template_expand(const char *tmpl, size_t len,
                                              const struct coffer_keyset *ks,
                                              enum coffer_broker_enc enc,
                                              struct coffer_secret **out)
{
    struct writer count = {0};
    struct writer fill = {0};
    enum coffer_err r;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "template: no place for the result");
    }
    *out = NULL;
    if (ks == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "template: no key set");
    }
    if (enc != COFFER_BROKER_ENC_HEADER && enc != COFFER_BROKER_ENC_QUERY) {
        return coffer_err_set(COFFER_E_INVALID, "template: unknown encoding %d", (int)enc);
    }
    if ((r = check_length(tmpl, len)) != COFFER_OK ||
        (r = expand_pass(tmpl, len, ks, enc, &count)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_secret_new(count.len, out)) != COFFER_OK) {
        return r;
    }
    fill.data = coffer_secret_view(*out).data;
    if ((r = expand_pass(tmpl, len, ks, enc, &fill)) != COFFER_OK || fill.len != count.len) {
        coffer_secret_free(out);
        return r != COFFER_OK ? r
                              : coffer_err_set(COFFER_E_INVALID, "template expanded to two sizes");
    }
    return COFFER_OK;
}
