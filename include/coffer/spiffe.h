/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Principals: who a request comes from, read from the SPIFFE ID in the URI
 * SAN of a verified client certificate (or, later, from a bearer token).
 *
 *   spiffe://<trust-domain>/org/<org>/agent/<type>/<instance>
 *   spiffe://<trust-domain>/org/<org>/admin/<name>
 *
 * Parsing is strict: lower-case scheme and trust domain, names matching
 * ^[a-z0-9][a-z0-9_-]{0,62}$, no percent-encoding, query, fragment, port,
 * user info, empty or dot segments, or trailing slash. Anything else is
 * refused, because a lenient parser is how one identity passes for another.
 */
#ifndef COFFER_SPIFFE_H
#define COFFER_SPIFFE_H

#include <stddef.h>

#include <openssl/x509.h>

#include "coffer/err.h"

#define COFFER_SPIFFE_MAX 2048      /* bytes of a SPIFFE ID */
#define COFFER_TRUST_DOMAIN_MAX 255 /* bytes of a trust domain */

enum coffer_principal_kind {
    COFFER_PRINCIPAL_AGENT = 1,
    COFFER_PRINCIPAL_ADMIN = 2,
};

struct coffer_principal {
    enum coffer_principal_kind kind;
    char trust_domain[COFFER_TRUST_DOMAIN_MAX + 1];
    char org[64];
    char agent_type[64]; /* agents; "" for admins */
    char instance[64];   /* agents; "" for admins */
    char admin[64];      /* admins; "" for agents */
};

/*
 * Parses len bytes of uri as a SPIFFE ID of an agent or an admin.
 * COFFER_E_INVALID with a detail saying what is wrong (never echoing more
 * than a short, sanitised prefix of the input).
 */
enum coffer_err coffer_spiffe_parse(const char *uri, size_t len,
                                    struct coffer_principal *out) COFFER_MUST_USE;

/* Writes p's SPIFFE ID into out (cap bytes). COFFER_E_LIMIT if it does not fit. */
enum coffer_err coffer_spiffe_format(const struct coffer_principal *p, char *out,
                                     size_t cap) COFFER_MUST_USE;

/*
 * The principal of a client certificate that TLS has already verified: it
 * must carry exactly one URI SAN, a SPIFFE ID whose trust domain is
 * trust_domain. COFFER_E_INVALID otherwise (no SAN, several URI SANs, another
 * trust domain, a malformed ID).
 */
enum coffer_err coffer_spiffe_from_cert(X509 *cert, const char *trust_domain,
                                        struct coffer_principal *out) COFFER_MUST_USE;

#endif
