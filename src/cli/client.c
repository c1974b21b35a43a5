/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTPS client of the coffer command's API commands: where the server
 * is, who the client is (a client certificate or a bearer token), one
 * request at a time through libcurl, and the answer as received.
 *
 * TLS verification is always on: the peer's chain and name are checked
 * against COFFER_CACERT (or the system's CAs), and only https is spoken, so
 * no flag can turn a value's journey into plaintext. Request bodies are
 * serialised into wiping memory that libcurl reads in place; answers are
 * collected into a buffer that is wiped on cleanup; the Authorization
 * header, once handed to libcurl, is wiped in its list before the list is
 * freed. Copies libcurl and OpenSSL make internally while sending are
 * beyond this file's reach. This file never prints a body, a value or a
 * token: only statuses, error codes and the server's messages.
 */
#include "cli/client.h"

#include "coffer/mem.h"
#include "coffer/secret.h"
#include "coffer/text.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ADDR_MAX 512
#define TOKEN_MAX 4096
#define REPLY_MAX (1024u * 1024u)
#define BEARER "Authorization: Bearer "

struct cli_client {
    CURL *curl;
    char base[ADDR_MAX];          /* "https://host:port", no trailing slash */
    const char *cacert;           /* NULL: the system's CAs */
    const char *cert;             /* with key: the client certificate, NULL with a token */
    const char *key;              /* the certificate's private key (PEM) */
    struct coffer_secret *auth;   /* "Authorization: Bearer <token>" with its NUL, or NULL */
    char errbuf[CURL_ERROR_SIZE]; /* libcurl's reason for a failed transfer */
};

/* The flag's value, else the variable's (unset and empty are the same). */
static const char *setting(const char *flag, const char *var)
{
    const char *v = flag != NULL ? flag : getenv(var);

    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* "https://host:port" from an address with or without its scheme; nothing but https. */
static enum coffer_err resolve_addr(const char *addr, char out[ADDR_MAX])
{
    const char *scheme = strstr(addr, "://");
    size_t len;

    for (const char *p = addr; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            return coffer_err_set(COFFER_E_CONFIG,
                                  "the address (--addr or COFFER_ADDR) holds a space or a "
                                  "character outside printable ASCII");
        }
    }
    if (scheme != NULL && (scheme - addr != 5 || strncmp(addr, "https", 5) != 0)) {
        return coffer_err_set(COFFER_E_CONFIG,
                              "the address (--addr or COFFER_ADDR) must be https://HOST:PORT: "
                              "Coffer speaks only TLS");
    }
    len = (size_t)snprintf(out, ADDR_MAX, "%s%s", scheme == NULL ? "https://" : "", addr);
    if (len >= ADDR_MAX) {
        return coffer_err_set(COFFER_E_CONFIG, "the address is over %d bytes", ADDR_MAX - 1);
    }
    while (len > strlen("https://") && out[len - 1] == '/') {
        out[--len] = '\0';
    }
    if (len == strlen("https://")) {
        return coffer_err_set(COFFER_E_CONFIG, "the address names no host");
    }
    return COFFER_OK;
}

/* A PEM file named by a flag or variable must be readable now, for a clearer error than TLS's. */
static enum coffer_err readable(const char *path, const char *what)
{
    if (path != NULL && access(path, R_OK) != 0) {
        return coffer_err_set(COFFER_E_CONFIG, "%s: cannot read %s: %s", what, path,
                              strerror(errno));
    }
    return COFFER_OK;
}

/* The Authorization line of token, in locked memory; the token must be header-safe. */
static enum coffer_err make_auth(const char *token, struct coffer_secret **out)
{
    size_t len = strnlen(token, TOKEN_MAX + 1);
    size_t pre = strlen(BEARER);
    struct coffer_secret_view v;
    enum coffer_err r;

    if (len > TOKEN_MAX) {
        return coffer_err_set(COFFER_E_CONFIG, "the bearer token is over %d bytes", TOKEN_MAX);
    }
    for (size_t i = 0; i < len; i++) {
        /* Anything else could end the header line and start another. */
        if ((unsigned char)token[i] <= 0x20 || (unsigned char)token[i] >= 0x7f) {
            return coffer_err_set(COFFER_E_CONFIG,
                                  "the bearer token (--token or COFFER_TOKEN) holds a character "
                                  "outside printable ASCII");
        }
    }
    if ((r = coffer_secret_new(pre + len + 1, out)) != COFFER_OK) {
        return r;
    }
    v = coffer_secret_view(*out);
    coffer_memcpy(v.data, BEARER, pre);
    coffer_memcpy(v.data + pre, token, len);
    v.data[pre + len] = '\0';
    return COFFER_OK;
}

/*
 * Who the client is. A flag beats a variable; a token beats a certificate
 * given the same way, and giving both as flags is a mistake worth saying.
 */
static enum coffer_err resolve_identity(const struct cli_target *t, struct cli_client *c)
{
    const char *token = NULL;
    enum coffer_err r;

    if (t->token != NULL && (t->cert != NULL || t->key != NULL)) {
        return coffer_err_set(COFFER_E_CONFIG,
                              "give --token or --cert with --client-key, not both");
    }
    if (t->token != NULL) {
        token = t->token;
    } else if (t->cert == NULL && t->key == NULL) {
        token = setting(NULL, "COFFER_TOKEN");
    }
    if (token != NULL) {
        return make_auth(token, &c->auth);
    }
    c->cert = setting(t->cert, "COFFER_CLIENT_CERT");
    c->key = setting(t->key, "COFFER_CLIENT_KEY");
    if ((c->cert == NULL) != (c->key == NULL)) {
        return coffer_err_set(COFFER_E_CONFIG,
                              "a client certificate needs its key: give both --cert and "
                              "--client-key (or COFFER_CLIENT_CERT and COFFER_CLIENT_KEY)");
    }
    if ((r = readable(c->cert, "client certificate")) != COFFER_OK) {
        return r;
    }
    return readable(c->key, "client key");
}

enum coffer_err cli_client_new(const struct cli_target *t, struct cli_client **out)
{
    struct cli_client *c;
    const char *addr;
    enum coffer_err r;

    *out = NULL;
    if ((c = coffer_calloc(1, sizeof(*c))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "allocating the client");
    }
    if ((addr = setting(t->addr, "COFFER_ADDR")) == NULL) {
        r = coffer_err_set(COFFER_E_CONFIG,
                           "COFFER_ADDR is not set and no --addr was given (source DIR/env.sh of "
                           "the embedded default, or see docs/admin.md)");
        goto fail;
    }
    c->cacert = setting(t->cacert, "COFFER_CACERT");
    if ((r = resolve_addr(addr, c->base)) != COFFER_OK ||
        (r = readable(c->cacert, "CA certificate")) != COFFER_OK ||
        (r = resolve_identity(t, c)) != COFFER_OK) {
        goto fail;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (c->curl = curl_easy_init()) == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "initialising libcurl");
        goto fail;
    }
    *out = c;
    return COFFER_OK;
fail:
    cli_client_free(&c);
    return r;
}

void cli_client_free(struct cli_client **c)
{
    if (c == NULL || *c == NULL) {
        return;
    }
    if ((*c)->curl != NULL) {
        curl_easy_cleanup((*c)->curl);
        curl_global_cleanup();
    }
    coffer_secret_free(&(*c)->auth);
    coffer_free(*c);
    *c = NULL;
}

/* Where an answer is collected, and whether it outgrew its limit. */
struct sink {
    struct coffer_buf *buf;
    bool over;
};

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;

    if (coffer_buf_put(s->buf, p, size * n) != COFFER_OK) {
        s->over = true;
        return 0;
    }
    return size * n;
}

/* Wipes every header line (one holds the token) before libcurl frees the list. */
static void free_headers(struct curl_slist *h)
{
    for (struct curl_slist *l = h; l != NULL; l = l->next) {
        if (l->data != NULL) {
            coffer_wipe(l->data, strlen(l->data));
        }
    }
    curl_slist_free_all(h);
}

static bool tls_failure(CURLcode rc)
{
    switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
        return true;
    default:
        return false;
    }
}

/* The options of one request; false if libcurl refused one (it cannot do https, say). */
static bool set_options(struct cli_client *c, const char *method, const char *url,
                        struct curl_slist *h, struct sink *s)
{
    CURL *k = c->curl;
    bool ok = true;

    ok = ok && curl_easy_setopt(k, CURLOPT_URL, url) == CURLE_OK;
    ok = ok && curl_easy_setopt(k, CURLOPT_PROTOCOLS_STR, "https") == CURLE_OK;
    ok = ok && curl_easy_setopt(k, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
    ok = ok && curl_easy_setopt(k, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK;
    ok = ok && curl_easy_setopt(k, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK;
    ok = ok && curl_easy_setopt(k, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) == CURLE_OK;
    ok = ok && (c->cacert == NULL || curl_easy_setopt(k, CURLOPT_CAINFO, c->cacert) == CURLE_OK);
    ok = ok && (c->cert == NULL || (curl_easy_setopt(k, CURLOPT_SSLCERT, c->cert) == CURLE_OK &&
                                    curl_easy_setopt(k, CURLOPT_SSLKEY, c->key) == CURLE_OK));
    ok = ok && curl_easy_setopt(k, CURLOPT_CUSTOMREQUEST, method) == CURLE_OK;
    ok = ok && curl_easy_setopt(k, CURLOPT_HTTPHEADER, h) == CURLE_OK;
    ok = ok && curl_easy_setopt(k, CURLOPT_WRITEFUNCTION, collect) == CURLE_OK;
    ok = ok && curl_easy_setopt(k, CURLOPT_WRITEDATA, s) == CURLE_OK;
    ok = ok && curl_easy_setopt(k, CURLOPT_ERRORBUFFER, c->errbuf) == CURLE_OK;
    ok = ok && curl_easy_setopt(k, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
    ok = ok && curl_easy_setopt(k, CURLOPT_CONNECTTIMEOUT, 10L) == CURLE_OK;
    ok = ok && curl_easy_setopt(k, CURLOPT_TIMEOUT, 60L) == CURLE_OK;
    return ok;
}

static struct curl_slist *headers(const struct cli_client *c, bool body)
{
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
    struct curl_slist *n;

    if (h != NULL && body) {
        if ((n = curl_slist_append(h, "Content-Type: application/json")) == NULL) {
            free_headers(h);
            return NULL;
        }
        h = n;
    }
    if (h != NULL && c->auth != NULL) {
        if ((n = curl_slist_append(h, (const char *)coffer_secret_view(c->auth).data)) == NULL) {
            free_headers(h);
            return NULL;
        }
        h = n;
    }
    return h;
}

/* What a failed transfer means for the user. */
static enum coffer_err transfer_error(const struct cli_client *c, CURLcode rc, const struct sink *s)
{
    const char *why = c->errbuf[0] != '\0' ? c->errbuf : curl_easy_strerror(rc);

    if (rc == CURLE_WRITE_ERROR && s->over) {
        return coffer_err_set(COFFER_E_LIMIT, "the answer of %s is over %u bytes", c->base,
                              REPLY_MAX);
    }
    if (tls_failure(rc)) {
        return coffer_err_set(COFFER_E_IO, "TLS with %s failed: %s", c->base, why);
    }
    return coffer_err_set(COFFER_E_IO, "cannot reach %s: %s", c->base, why);
}

enum coffer_err cli_client_call(struct cli_client *c, const char *method, const char *path,
                                const json_t *body, struct cli_reply *out)
{
    struct sink s = {.buf = &out->body, .over = false};
    struct curl_slist *h = NULL;
    char url[ADDR_MAX + 512];
    char *text = NULL;
    json_error_t jerr;
    CURLcode rc;
    enum coffer_err r = COFFER_OK;

    memset(out, 0, sizeof(*out));
    out->body.max = REPLY_MAX;
    if ((size_t)snprintf(url, sizeof(url), "%s%s", c->base, path) >= sizeof(url)) {
        return coffer_err_set(COFFER_E_LIMIT, "the request path is too long");
    }
    if (body != NULL && (text = json_dumps(body, JSON_COMPACT)) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "encoding the request body");
    }
    c->errbuf[0] = '\0';
    curl_easy_reset(c->curl);
    if ((h = headers(c, text != NULL)) == NULL || !set_options(c, method, url, h, &s) ||
        (text != NULL &&
         (curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, text) != CURLE_OK ||
          curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(text)) != CURLE_OK))) {
        r = coffer_err_set(COFFER_E_CONFIG, "libcurl refused the request's options (no https?)");
        goto out;
    }
    if ((rc = curl_easy_perform(c->curl)) != CURLE_OK) {
        r = transfer_error(c, rc, &s);
        goto out;
    }
    (void)curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &out->status);
    if (out->body.len > 0) {
        /* The parser's message may quote the body, so only its success matters here. */
        out->json =
            json_loadb((const char *)out->body.data, out->body.len, JSON_REJECT_DUPLICATES, &jerr);
        coffer_wipe(&jerr, sizeof(jerr));
    }
out:
    /* libcurl keeps pointers to these until the next reset: drop them before freeing. */
    curl_easy_reset(c->curl);
    free_headers(h);
    coffer_wipe_free(text);
    if (r != COFFER_OK) {
        cli_reply_cleanup(out);
    }
    return r;
}

void cli_reply_cleanup(struct cli_reply *r)
{
    if (r == NULL) {
        return;
    }
    json_decref(r->json);
    r->json = NULL;
    coffer_buf_cleanup(&r->body);
}

bool cli_write_all(int fd, const void *p, size_t n)
{
    const unsigned char *b = p;

    while (n > 0) {
        ssize_t w = write(fd, b, n);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return false;
        }
        b += w;
        n -= (size_t)w;
    }
    return true;
}

/* Writes s to f, replacing what a terminal could take for a command. */
static void put_text(FILE *f, const char *s)
{
    if (coffer_text_ok(s, strlen(s), SIZE_MAX)) {
        fputs(s, f);
        return;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        fputc(*p >= 0x20 && *p < 0x7f ? *p : '?', f);
    }
}

void cli_print_text(const char *s)
{
    put_text(stdout, s != NULL ? s : "");
}

int cli_reply_fail(const char *what, const struct cli_reply *r)
{
    const char *code = json_string_value(json_object_get(r->json, "error"));
    const char *message = json_string_value(json_object_get(r->json, "message"));
    const char *id = json_string_value(json_object_get(r->json, "request_id"));

    fprintf(stderr, "coffer: %s: ", what);
    if (code != NULL) {
        put_text(stderr, code);
    } else {
        fprintf(stderr, "HTTP %ld", r->status);
    }
    if (message != NULL) {
        fputs(": ", stderr);
        put_text(stderr, message);
    }
    if (id != NULL) {
        fputs(" (request ", stderr);
        put_text(stderr, id);
        fputc(')', stderr);
    }
    fputc('\n', stderr);
    return r->status >= 400 && r->status < 500 ? CLI_EXIT_REFUSED : CLI_EXIT_TROUBLE;
}
