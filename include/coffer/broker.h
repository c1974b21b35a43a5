/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Brokered calls: the pure checks that stand between an agent's request and
 * the upstream call Coffer makes for it with a credential the agent never
 * sees. Nothing here does I/O, resolves a name or opens a connection.
 *
 * Destinations. An agent's URL is parsed strictly into one canonical form,
 * and only that form is ever handed on (coffer_broker_url_format), so the
 * string that was checked is the string that is called. Refused outright:
 *
 *   - any scheme but https (http included); a missing "//" authority;
 *   - user info: an '@' anywhere in the authority;
 *   - fragments ('#' anywhere), backslashes, spaces, control characters,
 *     bytes outside ASCII (an internationalised host is given as punycode,
 *     "xn--..."); more than COFFER_BROKER_URL_MAX bytes;
 *   - a host that is not letters, digits, '-' and '.' in labels of 1 to 63
 *     bytes (no '_', no percent-encoding, no empty label); a trailing dot,
 *     because "example.com." and "example.com" would be two spellings of
 *     one name (write the host without it); a host whose last label starts
 *     with a digit unless it is a dotted-quad IPv4 address in canonical form
 *     ("127.1", "0x7f.0.0.1" and "2130706433" are refused);
 *   - an IPv6 literal that inet_pton refuses, or one with a zone ("%eth0");
 *   - a port outside 1 to 65535, an empty port, a port with leading zeros;
 *   - in the path: a segment of dots only (".", "..", "..."; raw,
 *     percent-encoded, mixed with spaces as in "..%20", or before a ';'
 *     parameter as in "..;"), never normalised into scope; an empty segment
 *     anywhere but last ("//"); a percent-escape that decodes to '/', '\'
 *     or a control character (NUL included); a malformed escape; any byte
 *     RFC 3986 does not allow in a path;
 *   - in the query: a malformed escape, or any byte RFC 3986 does not allow.
 *
 * The host is lower-cased; an IPv6 literal is kept in brackets in inet_ntop's
 * canonical spelling. Path and query keep their percent-encoding as given.
 *
 * Matching a parsed URL against an allowed destination: scheme https, host
 * equal (case-insensitive; IPv6 literals compared as addresses, and only
 * against a destination that lists the literal), port equal (0 in the
 * destination means 443), and the path equal to the prefix, or below it: the
 * path starts with prefix + "/", or the prefix itself ends in "/". So
 * "/allowed" admits "/allowed", "/allowed/" and "/allowed/x", never
 * "/allowedx" or "/allowed;x". The query is not part of the match. A
 * destination host "*.example.com" admits any name with one or more labels
 * before ".example.com" ("a.example.com", "a.b.example.com") but not
 * "example.com" itself: list that separately if it is meant. A wildcard
 * needs at least two labels after "*." ("*.com" is refused).
 *
 * Redaction. A redactor holds, in locked memory, the patterns derived from
 * the secret values of a call, and replaces every occurrence in a response
 * with "[REDACTED]". For each value (COFFER_BROKER_REDACT_MIN bytes or more;
 * shorter ones are refused, because three bytes or fewer occur by chance in
 * any body and redacting them would destroy the response without protecting
 * anything) it covers exactly:
 *
 *   - the value itself;
 *   - its standard base64 and base64url encodings, with and without '='
 *     padding;
 *   - if a username is given, the same four encodings of "username:value",
 *     as HTTP Basic authentication sends it;
 *   - each of the above spelled, byte by byte in any mix, as a
 *     percent-escape with upper- or lower-case hex digits, '+' for a space,
 *     or a JSON string escape ("\/", "\\", "\"", "\n" and the like, and
 *     "\u00XX" for ASCII), so URL-encoded and JSON-escaped echoes are caught;
 *   - an occurrence cut by the end of the buffer (a body truncated at its
 *     size limit) once at least COFFER_BROKER_REDACT_MIN bytes of it are
 *     present.
 *
 * Not covered, and cannot be in general: the value inside a longer base64
 * text other than the Basic form above (its encoding depends on the bytes
 * around it), base64 broken into lines, other encodings (hex, HTML entities,
 * double percent-encoding), hashes or any transformation of the value, and
 * an occurrence split between two calls: redact a whole body at once, never
 * chunk by chunk. Overlapping and adjacent occurrences (of one value or of
 * several) are merged into one "[REDACTED]", so no fragment of either is
 * left between them. The work grows with the body's length times the
 * length of the patterns at worst, so the caller bounds bodies (the
 * response size limit) before redacting them.
 *
 * Templates. A usage spec injects a credential through templates such as
 * "Bearer {{access_token}}": names in double braces, each a key of the
 * credential. An agent's request must never carry placeholders of its own
 * for a credential with an inject rule; coffer_broker_has_placeholder finds
 * them, raw or percent-encoded.
 */
#ifndef COFFER_BROKER_H
#define COFFER_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/buf.h"
#include "coffer/err.h"
#include "coffer/secret.h"

#define COFFER_BROKER_URL_MAX 8192      /* bytes of a URL, as given or resolved */
#define COFFER_BROKER_HOST_MAX 253      /* bytes of a host name (DNS limit) */
#define COFFER_BROKER_REDACT_MIN 4      /* shortest value a redactor accepts */
#define COFFER_BROKER_REDACT_VALUES 64  /* values one redactor holds */
#define COFFER_BROKER_TEMPLATE_MAX 4096 /* bytes of one template */
#define COFFER_BROKER_REDACTED "[REDACTED]"

struct coffer_keyset;

/* ---- Destinations ------------------------------------------------------------ */

/*
 * One allowed destination of a usage spec. The strings are borrowed.
 * port 0 means the scheme's default (443). path_prefix NULL or "" means "/".
 */
struct coffer_broker_dest {
    const char *scheme;
    const char *host;
    uint16_t port;
    const char *path_prefix;
};

/* A parsed URL in canonical form. Zero-initialise; release with coffer_broker_url_cleanup. */
struct coffer_broker_url {
    char scheme[8];                        /* always "https" */
    char host[COFFER_BROKER_HOST_MAX + 1]; /* lower case, dotted-quad, or "[v6]" */
    uint16_t port;                         /* 1-65535; 443 when the URL gives none */
    char *path;                            /* starts with '/'; percent-encoding as given */
    char *query;                           /* after '?', as given; NULL when there is none */
};

/*
 * Parses len bytes of url (see the top of this file for every rule). On
 * COFFER_OK *out owns path and query; on error *out is left empty.
 * COFFER_E_INVALID with a detail that names the rule broken and quotes at
 * most a short, sanitised prefix of the scheme and authority (never the path
 * or query, where a redirect may carry an echoed value); COFFER_E_LIMIT past
 * COFFER_BROKER_URL_MAX; COFFER_E_NOMEM.
 */
enum coffer_err coffer_broker_url_parse(const char *url, size_t len,
                                        struct coffer_broker_url *out) COFFER_MUST_USE;

/* Wipes and frees path and query and zeroes *u. Safe on NULL and on a zeroed struct. */
void coffer_broker_url_cleanup(struct coffer_broker_url *u);

/*
 * The canonical text "https://host[:port]/path[?query]" (the port only when
 * not 443) in a new NUL-terminated string; free with coffer_free.
 * COFFER_E_INVALID for an unparsed struct, COFFER_E_NOMEM.
 */
enum coffer_err coffer_broker_url_format(const struct coffer_broker_url *u,
                                         char **out) COFFER_MUST_USE;

/*
 * Resolves the reference ref (len bytes; absolute "https://...", network-path
 * "//host/...", absolute-path "/...", query-only "?..." or relative-path
 * "x/y") against base, as RFC 3986 section 5 does but without removing dot
 * segments: a reference holding "." or ".." segments is refused, as is an
 * empty one. The result passes every rule of coffer_broker_url_parse.
 * Returns as coffer_broker_url_parse.
 */
enum coffer_err coffer_broker_url_resolve(const struct coffer_broker_url *base, const char *ref,
                                          size_t len,
                                          struct coffer_broker_url *out) COFFER_MUST_USE;

/*
 * Checks an allowed destination as a policy loader reads it: scheme https,
 * a valid host (or "*." and a name of two labels or more, or a bracketed
 * IPv6 literal), and a path prefix that passes the path rules and holds no
 * '?' or '#'. COFFER_OK or COFFER_E_INVALID with a detail.
 */
enum coffer_err coffer_broker_dest_validate(const struct coffer_broker_dest *d) COFFER_MUST_USE;

/*
 * Whether u lies inside d. False for an invalid d or u (as if each were
 * checked again), so a hand-built struct cannot pass by skipping the parser.
 */
bool coffer_broker_dest_match(const struct coffer_broker_dest *d,
                              const struct coffer_broker_url *u);

/* Whether u lies inside one of the n destinations at d (false when n is 0). */
bool coffer_broker_dests_allow(const struct coffer_broker_dest *d, size_t n,
                               const struct coffer_broker_url *u);

/*
 * Decides a redirect: resolves the Location value (len bytes, absolute or
 * relative) against current and sets *allowed to whether the result lies
 * inside one of the n destinations at dests. On COFFER_OK *next holds the
 * resolved URL either way (for the audit record; call it only if *allowed)
 * and the caller cleans it up. Any error means the Location is not a URL
 * Coffer would call (another scheme, user info, dot segments, ...): never
 * follow it. Errors as coffer_broker_url_parse.
 */
enum coffer_err coffer_broker_redirect_check(const struct coffer_broker_url *current,
                                             const char *location, size_t len,
                                             const struct coffer_broker_dest *dests, size_t n,
                                             bool *allowed,
                                             struct coffer_broker_url *next) COFFER_MUST_USE;

/* ---- Redaction --------------------------------------------------------------- */

struct coffer_broker_redactor;

/* An empty redactor. Free it with coffer_broker_redactor_free. COFFER_E_NOMEM. */
enum coffer_err coffer_broker_redactor_new(struct coffer_broker_redactor **out) COFFER_MUST_USE;

/* Wipes every pattern and frees *r, setting it to NULL. Safe on NULL. */
void coffer_broker_redactor_free(struct coffer_broker_redactor **r);

/*
 * Adds the patterns of value (borrowed; its bytes are encoded straight into
 * locked memory and no other copy is made) and, when user is not NULL, of
 * the Basic form "user:value". COFFER_E_INVALID if value is shorter than
 * COFFER_BROKER_REDACT_MIN or user holds ':' or a control character;
 * COFFER_E_LIMIT past COFFER_BROKER_REDACT_VALUES values; COFFER_E_NOMEM.
 * On error the redactor is unchanged.
 */
enum coffer_err coffer_broker_redactor_add(struct coffer_broker_redactor *r,
                                           const struct coffer_secret *value,
                                           const char *user) COFFER_MUST_USE;

/*
 * Writes len bytes at in to out with every occurrence replaced by
 * COFFER_BROKER_REDACTED (see the top of this file). out must be empty
 * (zeroed or cleaned up), else COFFER_E_INVALID and out is left alone; its
 * max bounds the output. On any other error out is wiped and left empty, so
 * no part-written output can be passed on. COFFER_E_INVALID (NULL
 * arguments), COFFER_E_LIMIT, COFFER_E_NOMEM.
 */
enum coffer_err coffer_broker_redact(const struct coffer_broker_redactor *r, const void *in,
                                     size_t len, struct coffer_buf *out) COFFER_MUST_USE;

/*
 * For one response header: writes the redacted value to out as
 * coffer_broker_redact does. A header that cannot be passed on safely is
 * refused with COFFER_E_INVALID: a name or value holding CR, LF or NUL (the
 * caller split the header block wrongly), or a name holding an occurrence of
 * a value (drop such a header). Other errors as coffer_broker_redact.
 */
enum coffer_err coffer_broker_redact_header(const struct coffer_broker_redactor *r,
                                            const char *name, size_t name_len, const char *value,
                                            size_t value_len,
                                            struct coffer_buf *out) COFFER_MUST_USE;

/* ---- Templates --------------------------------------------------------------- */

/*
 * Where an expanded template goes, which decides how the values put into it
 * are encoded; the template's own text is kept as written.
 */
enum coffer_broker_enc {
    /* A header value: values are put in as they are, and one holding CR, LF or NUL is refused. */
    COFFER_BROKER_ENC_HEADER = 1,
    /* A query parameter value: every byte of a value but A-Z a-z 0-9 - . _ ~ is escaped. */
    COFFER_BROKER_ENC_QUERY = 2,
};

/*
 * Whether the len bytes at s hold the start of a placeholder: two opening
 * braces, each written as '{' or as the escape "%7B" / "%7b". For agent
 * input (header names and values, URL, body).
 */
bool coffer_broker_has_placeholder(const void *s, size_t len);

/*
 * Checks the syntax of a template as a policy loader reads it: at most
 * COFFER_BROKER_TEMPLATE_MAX bytes of printable ASCII, every "{{" closed by
 * "}}" around a key name ([A-Za-z0-9_][A-Za-z0-9_.-]{0,63}, no spaces), no
 * stray "}}". COFFER_OK or COFFER_E_INVALID (COFFER_E_LIMIT for the length).
 */
enum coffer_err coffer_broker_template_check(const char *tmpl, size_t len) COFFER_MUST_USE;

/*
 * Expands tmpl (len bytes) with the values of ks into a new secret *out
 * (locked memory, wiped when freed; no other copy of a value is made).
 * COFFER_E_NOT_FOUND naming the placeholder when ks has no such key;
 * COFFER_E_INVALID for bad syntax (as coffer_broker_template_check) or a
 * value that enc refuses (the detail names the placeholder, never a value);
 * COFFER_E_LIMIT past COFFER_SECRET_MAX; COFFER_E_NOMEM. *out is NULL on error.
 */
enum coffer_err coffer_broker_template_expand(const char *tmpl, size_t len,
                                              const struct coffer_keyset *ks,
                                              enum coffer_broker_enc enc,
                                              struct coffer_secret **out) COFFER_MUST_USE;

#endif
