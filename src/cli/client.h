/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to the coffer command: the HTTPS client its API commands share
 * (client.c), and their entry point (api_cmd.c).
 *
 * A client talks to one cofferd over TLS with verification always on, as
 * the identity of a client certificate or of a bearer token. Request and
 * response bodies may carry credential values: they live in jansson memory
 * that coffer_api_json_init made wiping, and in buffers wiped on cleanup.
 */
#ifndef COFFER_CLI_CLIENT_H
#define COFFER_CLI_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "coffer/buf.h"
#include "coffer/err.h"

/* Exit statuses of the API commands. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_REFUSED 1 /* the server refused (4xx) */
#define CLI_EXIT_TROUBLE 2 /* usage, unreachable server, TLS, 5xx, malformed answer */

/* What the flags say; NULL fields fall back to the environment. Strings are borrowed. */
struct cli_target {
    const char *addr;   /* --addr, else COFFER_ADDR */
    const char *cacert; /* --cacert, else COFFER_CACERT, else the system's CAs */
    const char *cert;   /* --cert, else COFFER_CLIENT_CERT */
    const char *key;    /* --client-key, else COFFER_CLIENT_KEY */
    const char *token;  /* --token, else COFFER_TOKEN */
};

struct cli_client;

/* One answer: its status and body as received, and the body parsed when it is JSON. */
struct cli_reply {
    long status;
    struct coffer_buf body; /* wiped by cli_reply_cleanup */
    json_t *json;           /* NULL if the body is empty or not JSON */
};

/*
 * Resolves the target from t and the environment and prepares libcurl.
 * COFFER_E_CONFIG (the detail names the flag or variable) when the address
 * is missing or not https, a certificate comes without its key, or a token
 * holds characters a header cannot carry. A bearer token, when given, is
 * used instead of the client certificate.
 */
enum coffer_err cli_client_new(const struct cli_target *t, struct cli_client **out) COFFER_MUST_USE;

/* Wipes the token and frees *c, setting it to NULL. Safe on NULL. */
void cli_client_free(struct cli_client **c);

/*
 * Sends method path (path starts with "/v1/") with body (borrowed, may be
 * NULL) as JSON, serialised into wiping memory that libcurl reads in place,
 * and fills *out. COFFER_E_IO when the server cannot be reached or TLS
 * fails (the detail says which), COFFER_E_LIMIT for an answer over 1 MiB.
 * Any HTTP status is COFFER_OK: the caller judges it.
 */
enum coffer_err cli_client_call(struct cli_client *c, const char *method, const char *path,
                                const json_t *body, struct cli_reply *out) COFFER_MUST_USE;

/* Frees the parsed body and wipes the received one. */
void cli_reply_cleanup(struct cli_reply *r);

/*
 * The exit status of a reply that is not a success: prints "coffer: what:
 * error: message (request id)" to stderr, with control characters of the
 * server's text replaced, and returns CLI_EXIT_REFUSED for 4xx and
 * CLI_EXIT_TROUBLE otherwise.
 */
int cli_reply_fail(const char *what, const struct cli_reply *r);

/* Writes n bytes to fd, retrying short writes; false on failure. */
bool cli_write_all(int fd, const void *p, size_t n);

/* Prints s to stdout with control characters replaced by '?': for text the server sent. */
void cli_print_text(const char *s);

/* The API commands: put, get, list, access, revoke, phase, request, approve, token. */
int cli_api(int argc, char **argv);

#endif
