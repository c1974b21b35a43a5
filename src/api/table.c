/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The route table: the only way a request reaches a handler. Each row says
 * the method, the path pattern ({} is one name segment, handed to the
 * handler in order), who may call it and how large its body may be. A path
 * that matches no row is 404; a path that matches with another method is 405
 * with an Allow header. Paths with a query string, a fragment, an empty
 * segment or characters outside [A-Za-z0-9_.-] are refused as malformed.
 */
#include "api/api_int.h"
#include "api/use_int.h"

#include <stdio.h>
#include <string.h>

#define BODY_SMALL (8u * 1024u)        /* purpose, reason, phase */
#define BODY_CREDENTIAL (320u * 1024u) /* a credential's values and metadata */
#define BODY_USE (320u * 1024u)        /* a brokered request: purpose, headers, body */
#define CRED "/v1/orgs/{}/projects/{}/credentials/{}"

/* method, pattern, who may call, body limit, handler, how it is committed */
static const struct api_route routes[] = {
    {EVHTTP_REQ_GET, "/v1/health", API_ROLE_NONE, 0, api_health, API_ALONE},
    {EVHTTP_REQ_GET, "/metrics", API_ROLE_NONE, 0, api_metrics, API_ALONE},
    {EVHTTP_REQ_POST, CRED "/access", API_ROLE_AGENT, BODY_SMALL, api_access, API_BATCH_ACCESS},
    /* Brokered use (routes_use.c): one blocking upstream call, bounded by the broker timeouts. */
    {EVHTTP_REQ_POST, CRED "/use", API_ROLE_AGENT, BODY_USE, api_use, API_ALONE},
    {EVHTTP_REQ_PUT, CRED, API_ROLE_ADMIN, BODY_CREDENTIAL, api_put, API_BATCH_PUT},
    {EVHTTP_REQ_POST, CRED "/revoke", API_ROLE_ADMIN, BODY_SMALL, api_revoke, API_ALONE},
    {EVHTTP_REQ_PUT, "/v1/orgs/{}/projects/{}/phase", API_ROLE_ADMIN, BODY_SMALL, api_phase,
     API_ALONE},
    /* Credential metadata (routes_meta.c): what a credential is, never what it holds. */
    {EVHTTP_REQ_GET, "/v1/orgs/{}/projects/{}/credentials", API_ROLE_ANY, 0, api_meta_list,
     API_ALONE},
    {EVHTTP_REQ_GET, CRED, API_ROLE_ANY, 0, api_meta_get, API_ALONE},
    /* Bearer tokens (routes_tokens.c): shown once when issued, revoked at once. */
    {EVHTTP_REQ_POST, "/v1/orgs/{}/tokens", API_ROLE_ADMIN, BODY_SMALL, api_token_create,
     API_ALONE},
    {EVHTTP_REQ_POST, "/v1/orgs/{}/tokens/{}/revoke", API_ROLE_ADMIN, BODY_SMALL, api_token_revoke,
     API_ALONE},
    /* Credential requests and standing approvals (routes_requests.c): agents ask, admins answer. */
    {EVHTTP_REQ_POST, "/v1/orgs/{}/projects/{}/requests", API_ROLE_AGENT, BODY_CREDENTIAL,
     api_request_file, API_ALONE},
    {EVHTTP_REQ_GET, "/v1/orgs/{}/projects/{}/requests", API_ROLE_ADMIN, 0, api_request_list,
     API_ALONE},
    {EVHTTP_REQ_GET, "/v1/orgs/{}/projects/{}/requests/{}", API_ROLE_ANY, 0, api_request_get,
     API_ALONE},
    {EVHTTP_REQ_POST, "/v1/orgs/{}/projects/{}/requests/{}/fulfill", API_ROLE_ADMIN,
     BODY_CREDENTIAL, api_request_fulfill, API_ALONE},
    {EVHTTP_REQ_POST, "/v1/orgs/{}/projects/{}/requests/{}/deny", API_ROLE_ADMIN, BODY_SMALL,
     api_request_deny, API_ALONE},
    {EVHTTP_REQ_POST, CRED "/approvals", API_ROLE_ADMIN, BODY_SMALL, api_approval_create,
     API_ALONE},
    {EVHTTP_REQ_POST, CRED "/approvals/{}/revoke", API_ROLE_ADMIN, BODY_SMALL, api_approval_revoke,
     API_ALONE},
};

/* Whether a path segment is acceptable: 1..63 bytes of [A-Za-z0-9_.-]. */
static bool segment_ok(const char *s, size_t len)
{
    if (len == 0 || len > 63) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.')) {
            return false;
        }
    }
    return true;
}

/* Matches path against pattern, collecting {} segments; -1 malformed path, 0 no, 1 yes. */
static int match_one(const char *path, const char *pattern, struct api_req *r)
{
    const char *p = path;
    const char *q = pattern;
    size_t n = 0;

    while (*p != '\0' && *q != '\0') {
        const char *pe;
        const char *qe;

        if (*p != '/' || *q != '/') {
            return *p != '/' ? -1 : 0;
        }
        p++;
        q++;
        pe = strchr(p, '/');
        qe = strchr(q, '/');
        pe = pe != NULL ? pe : p + strlen(p);
        qe = qe != NULL ? qe : q + strlen(q);
        if (!segment_ok(p, (size_t)(pe - p))) {
            return -1;
        }
        if (qe - q == 2 && q[0] == '{' && q[1] == '}') {
            if (n >= API_MAX_SEGMENTS) {
                return 0;
            }
            (void)snprintf(r->params[n++], sizeof(r->params[0]), "%.*s", (int)(pe - p), p);
        } else if (pe - p != qe - q || strncmp(p, q, (size_t)(pe - p)) != 0) {
            return 0;
        }
        p = pe;
        q = qe;
    }
    if (*p != '\0' || *q != '\0') {
        return 0;
    }
    r->n_params = n;
    return 1;
}

enum api_match api_route_match(const char *uri, enum evhttp_cmd_type method, struct api_req *r)
{
    char path[1024];
    size_t len;
    bool path_known = false;

    if (uri == NULL || uri[0] != '/' || strchr(uri, '?') != NULL || strchr(uri, '#') != NULL) {
        return uri != NULL && uri[0] == '/' ? API_BAD_PATH : API_NO_PATH;
    }
    len = strlen(uri);
    if (len >= sizeof(path)) {
        return API_BAD_PATH;
    }
    (void)snprintf(path, sizeof(path), "%s", uri);
    r->allow[0] = '\0';
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        int m = match_one(path, routes[i].pattern, r);

        if (m < 0) {
            return API_BAD_PATH;
        }
        if (m == 0) {
            continue;
        }
        if (routes[i].method == method) {
            r->route = &routes[i];
            return API_MATCHED;
        }
        path_known = true;
        (void)snprintf(r->allow + strlen(r->allow), sizeof(r->allow) - strlen(r->allow), "%s%s",
                       r->allow[0] != '\0' ? ", " : "",
                       routes[i].method == EVHTTP_REQ_GET    ? "GET"
                       : routes[i].method == EVHTTP_REQ_POST ? "POST"
                                                             : "PUT");
    }
    return path_known ? API_NO_METHOD : API_NO_PATH;
}
