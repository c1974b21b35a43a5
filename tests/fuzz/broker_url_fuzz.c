/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the URL rules of brokered calls (src/api/broker_url.c): the bytes
 * are up to three newline-separated parts. The first is an agent's URL
 * (coffer_broker_url_parse, then matched against fixed destinations); the
 * second a Location header answered by the upstream, decided by
 * coffer_broker_redirect_check against the first when it parsed, or
 * against a fixed URL; the third a policy's injection template
 * (coffer_broker_template_check). The whole input is also checked for a
 * placeholder, as agent input is.
 */
#include "fuzz.h"

#include "coffer/broker.h"

#include <stdlib.h>
#include <string.h>

static const struct coffer_broker_dest dests[] = {
    {"https", "api.example.com", 0, "/v1/"},
    {"https", "*.example.org", 8443, NULL},
    {"https", "[::1]", 443, "/"},
};

/* The next newline-separated part of [*at, end); *at moves past it. */
static const char *part(const char **at, const char *end, size_t *len)
{
    const char *p = *at;
    const char *nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;

    *len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
    *at = nl != NULL ? nl + 1 : end;
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *at = (const char *)data;
    const char *end = at + size;
    struct coffer_broker_url url = {0};
    struct coffer_broker_url fixed = {0};
    struct coffer_broker_url next = {0};
    const struct coffer_broker_url *base = &fixed;
    const char *p;
    size_t len;
    bool allowed = false;

    (void)coffer_broker_has_placeholder(data, size);
    p = part(&at, end, &len);
    if (coffer_broker_url_parse(p, len, &url) == COFFER_OK) {
        (void)coffer_broker_dests_allow(dests, sizeof(dests) / sizeof(dests[0]), &url);
        base = &url;
    } else if (coffer_broker_url_parse("https://api.example.com/v1/x?a=b",
                                       strlen("https://api.example.com/v1/x?a=b"),
                                       &fixed) != COFFER_OK) {
        abort();
    }
    p = part(&at, end, &len);
    if (coffer_broker_redirect_check(base, p, len, dests, sizeof(dests) / sizeof(dests[0]),
                                     &allowed, &next) == COFFER_OK) {
        coffer_broker_url_cleanup(&next);
    }
    p = part(&at, end, &len);
    (void)coffer_broker_template_check(p, len);
    coffer_broker_url_cleanup(&url);
    coffer_broker_url_cleanup(&fixed);
    return 0;
}
