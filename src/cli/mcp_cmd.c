/* SPDX-License-Identifier: Apache-2.0 */
/*
 * coffer mcp: a Model Context Protocol server on stdin and stdout for agent
 * runtimes (the transport and protocol are mcp_rpc.c's). Its four tools are
 * calls of cofferd's API as the agent whose certificate or bearer token is
 * in the environment: list the credentials it may use (the metadata route),
 * file a credential request and follow it (the request routes), and make a
 * brokered call (the use route). The agent's org is fixed when the server
 * starts; a tool call may name another project of it, never another org.
 *
 * No tool ever returns a secret: this file never calls the access route,
 * and a tool's result is built only from the answer of the route it called
 * (metadata, requests, use). A success answer shaped like an access (an
 * object of "keys") is refused. Every answer is checked before it is
 * written for this client's own bearer token and private key path, and
 * withheld if it holds either. Nothing but answers reaches stdout: the
 * process's own stdout is pointed at stderr before anything else runs, and
 * answers go to a private copy of the original descriptor.
 */
#include "cli/client.h"
#include "cli/mcp.h"

#include "coffer/api.h"
#include "coffer/authz.h"
#include "coffer/mem.h"
#include "coffer/policy.h"
#include "coffer/store.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PATH_TEXT_MAX 512
#define URL_MAX 4096
#define HEADERS_MAX 32          /* as the use route takes */
#define BODY_MAX (256u * 1024u) /* as the use route takes */
#define PURPOSE_MAX 512         /* COFFER_REQUEST_PURPOSE_MAX, and an access's */

static const char mcp_usage[] =
    "usage: coffer mcp [--org ORG] [--project PROJECT] [connection options]\n"
    "\n"
    "Serves the Model Context Protocol on stdin and stdout (one JSON-RPC message per\n"
    "line) for an agent runtime, with four tools: list_credentials, request_credential,\n"
    "request_status and use_credential. No tool ever returns a secret value.\n"
    "\n"
    "  --org ORG                     COFFER_ORG: the agent's org (required)\n"
    "  --project PROJECT             COFFER_PROJECT: the project a tool call without\n"
    "                                one means\n"
    "connection options (each overrides its variable):\n"
    "  --addr https://HOST:PORT      COFFER_ADDR, the server (https only)\n"
    "  --cacert FILE                 COFFER_CACERT, the CA that signed the server\n"
    "  --cert FILE --client-key FILE COFFER_CLIENT_CERT, COFFER_CLIENT_KEY: a client certificate\n"
    "  (a bearer token only as COFFER_TOKEN)\n"
    "\n"
    "Exit status: 0 at the end of stdin; 2 usage, configuration or a broken stdin/stdout.\n";

static const char instructions[] =
    "Coffer keeps the credentials this agent may use. No tool of this server ever returns a "
    "secret value, and you never need one: to call an HTTPS API with a credential, use "
    "use_credential, which makes the call for you with the secret put in where the "
    "credential's policy says, and answers with the secret replaced by [REDACTED]. "
    "list_credentials shows what you may use; request_credential asks a person for a "
    "credential you lack, and request_status tells whether it was fulfilled or denied.";

/* What the tools share: the client and the org and default project it acts in. */
struct mcp_ctx {
    struct cli_client *client;
    const char *org;
    const char *project;  /* NULL: every tool call must name one */
    const char *token;    /* COFFER_TOKEN, which no answer may hold; NULL without one */
    const char *key_path; /* the client key's path, which no answer may hold; NULL without */
};

/* ---- The tools' declarations ------------------------------------------------------------ */

static const char *const types[] = {"api_key",      "oauth2",      "basic_auth",
                                    "bearer_token", "certificate", "connection_string",
                                    "custom",       NULL};
static const char *const tiers[] = {"low", "medium", "high", "critical", NULL};
static const char *const urgencies[] = {"low", "normal", "high", NULL};
static const char *const methods[] = {"GET",   "HEAD",   "POST",    "PUT",
                                      "PATCH", "DELETE", "OPTIONS", NULL};

#define ARG_PROJECT                                                                                \
    {                                                                                              \
        "project", MCP_ARG_NAME, false, 0, NULL,                                                   \
            "The project of the agent's org; leave it out for the project this server was "        \
            "started "                                                                             \
            "for."                                                                                 \
    }

static const struct mcp_arg list_args[] = {ARG_PROJECT, {NULL, MCP_ARG_TEXT, false, 0, NULL, NULL}};

static const struct mcp_arg request_args[] = {
    ARG_PROJECT,
    {"name", MCP_ARG_NAME, true, 0, NULL, "The name the credential should have."},
    {"type", MCP_ARG_CHOICE, true, 0, types, "The kind of credential."},
    {"tier", MCP_ARG_CHOICE, true, 0, tiers,
     "How sensitive it is: high and critical credentials always expire."},
    {"purpose", MCP_ARG_TEXT, true, PURPOSE_MAX, NULL,
     "Why the agent needs it, for the person who decides (recorded)."},
    {"urgency", MCP_ARG_CHOICE, false, 0, urgencies, "How soon it is needed (default normal)."},
    {"description", MCP_ARG_TEXT, false, COFFER_REQUEST_TEXT_MAX, NULL,
     "What the credential is for, stored with it."},
    {NULL, MCP_ARG_TEXT, false, 0, NULL, NULL}};

static const struct mcp_arg status_args[] = {
    ARG_PROJECT,
    {"id", MCP_ARG_ID, true, 0, NULL, "The id request_credential answered."},
    {NULL, MCP_ARG_TEXT, false, 0, NULL, NULL}};

static const struct mcp_arg use_args[] = {
    ARG_PROJECT,
    {"name", MCP_ARG_NAME, true, 0, NULL, "The credential to use."},
    {"purpose", MCP_ARG_TEXT, true, PURPOSE_MAX, NULL, "Why this call is made (recorded)."},
    {"method", MCP_ARG_CHOICE, true, 0, methods,
     "The HTTP method; the credential's policy lists those allowed."},
    {"url", MCP_ARG_TEXT, true, URL_MAX, NULL,
     "The https:// URL to call; it must lie inside the credential's allowed destinations."},
    {"headers", MCP_ARG_MAP, false, HEADERS_MAX, NULL,
     "Request headers, name to value. Never a header Coffer injects, and no {{...}} "
     "placeholders: Coffer puts the secret in itself."},
    {"body", MCP_ARG_BODY, false, BODY_MAX, NULL, "The request body, as text."},
    {NULL, MCP_ARG_TEXT, false, 0, NULL, NULL}};

static const struct mcp_tool tools[] = {
    {"list_credentials",
     "List the credentials of a project that this agent may use: name, type, tier, version, "
     "expiry, revocation, description and key names. Never their values.",
     list_args},
    {"request_credential",
     "Ask a person for a credential this agent lacks. Answers the request's id and state "
     "(pending); follow it with request_status. The values are supplied by a person through "
     "Coffer, never through this conversation.",
     request_args},
    {"request_status",
     "The state of a credential request: pending, fulfilled (then use the credential) or "
     "denied (with the reason).",
     status_args},
    {"use_credential",
     "Make an HTTPS call with a credential without seeing it: Coffer checks the call against "
     "the credential's usage policy, puts the secret in, makes the call and answers the "
     "upstream's status, headers and body with every occurrence of the secret replaced by "
     "[REDACTED].",
     use_args},
};

#define N_TOOLS (sizeof(tools) / sizeof(tools[0]))

/* ---- Answers ------------------------------------------------------------------------------ */

/* Whether the len bytes at p hold this client's token or key path. */
static bool leaks(const struct mcp_ctx *c, const char *p, size_t len)
{
    const char *const own[] = {c->token, c->key_path};

    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
        if (own[i] != NULL && own[i][0] != '\0' && memmem(p, len, own[i], strlen(own[i])) != NULL) {
            return true;
        }
    }
    return false;
}

/*
 * Prints "coffer: mcp: detail" to stderr with this client's token and key
 * path, wherever they occur, replaced by what they are.
 */
static void diagnose(const struct mcp_ctx *c, const char *detail)
{
    const char *const own[] = {c->token, c->key_path};
    const char *const names[] = {"<the bearer token>", "<the client key>"};

    fputs("coffer: mcp: ", stderr);
    while (*detail != '\0') {
        size_t skip = 0;

        for (size_t i = 0; i < sizeof(own) / sizeof(own[0]) && skip == 0; i++) {
            if (own[i] != NULL && own[i][0] != '\0' &&
                strncmp(detail, own[i], strlen(own[i])) == 0) {
                fputs(names[i], stderr);
                skip = strlen(own[i]);
            }
        }
        if (skip == 0) {
            fputc(*detail, stderr);
            skip = 1;
        }
        detail += skip;
    }
    fputc('\n', stderr);
}

static bool guard(void *ctx, const char *line, size_t len)
{
    if (leaks(ctx, line, len)) {
        fputs("coffer: mcp: an answer held this client's own credentials and was withheld\n",
              stderr);
        return false;
    }
    return true;
}

/* A refusal by cofferd as a tool result: isError, "code: message (request id)". */
static json_t *refusal(const struct cli_reply *r)
{
    const char *code = json_string_value(json_object_get(r->json, "error"));
    const char *message = json_string_value(json_object_get(r->json, "message"));
    const char *id = json_string_value(json_object_get(r->json, "request_id"));
    char fallback[32];
    char text[1024];
    json_t *s;

    if (code == NULL) {
        (void)snprintf(fallback, sizeof(fallback), "http_%ld", r->status);
        code = fallback;
    }
    (void)snprintf(text, sizeof(text), "%s: %s%s%s%s", code,
                   message != NULL ? message : "cofferd refused the call",
                   id != NULL ? " (request " : "", id != NULL ? id : "", id != NULL ? ")" : "");
    s = json_pack("{s:s, s:I}", "error", code, "http_status", (json_int_t)r->status);
    if (s != NULL && message != NULL &&
        json_object_set_new(s, "message", json_string(message)) != 0) {
        json_decref(s);
        return NULL;
    }
    if (s != NULL && id != NULL && json_object_set_new(s, "request_id", json_string(id)) != 0) {
        json_decref(s);
        return NULL;
    }
    return s != NULL ? mcp_tool_result(s, text, true) : NULL;
}

/* cofferd could not be reached (or TLS failed): a tool result, so the model can say so. */
static json_t *unavailable(const struct mcp_ctx *c)
{
    char detail[512];
    char text[600];

    (void)snprintf(detail, sizeof(detail), "%s", coffer_err_detail());
    if (leaks(c, detail, strlen(detail))) {
        (void)snprintf(detail, sizeof(detail), "%s",
                       "cofferd cannot be reached or TLS failed with this client's identity");
    }
    diagnose(c, detail);
    (void)snprintf(text, sizeof(text), "unavailable: %s", detail);
    return mcp_tool_result(json_pack("{s:s, s:s}", "error", "unavailable", "message", detail), text,
                           true);
}

/*
 * One call of cofferd's API; *result is the tool result: the answer itself
 * on a 2xx, a refusal otherwise. COFFER_E_IO for a 2xx that is not the
 * object the route answers; COFFER_E_NOMEM when the result cannot be built.
 */
static enum coffer_err call_api(struct mcp_ctx *c, const char *method, const char *path,
                                const json_t *body, json_t **result)
{
    struct cli_reply r = {0};
    enum coffer_err e = COFFER_OK;

    *result = NULL;
    if (cli_client_call(c->client, method, path, body, &r) != COFFER_OK) {
        *result = unavailable(c);
    } else if (r.status < 200 || r.status > 299) {
        *result = refusal(&r);
    } else if (!json_is_object(r.json) || json_is_object(json_object_get(r.json, "keys"))) {
        /* Not an answer of the routes these tools call: it is passed on to no one. */
        e = coffer_err_set(COFFER_E_IO,
                           "cofferd's answer (HTTP %ld) to %s %s is not the object "
                           "that route answers",
                           r.status, method, path);
    } else {
        *result = mcp_tool_result(json_incref(r.json), NULL, false);
    }
    cli_reply_cleanup(&r);
    if (e == COFFER_OK && *result == NULL) {
        e = coffer_err_set(COFFER_E_NOMEM, "building the tool's result");
    }
    return e;
}

/* ---- The tools ---------------------------------------------------------------------------- */

/* The project the call names, else the default; COFFER_E_INVALID when there is neither. */
static enum coffer_err project_of(const struct mcp_ctx *c, const json_t *args, const char **out)
{
    const char *p = json_string_value(json_object_get(args, "project"));

    *out = p != NULL ? p : c->project;
    if (*out == NULL) {
        return coffer_err_set(COFFER_E_INVALID,
                              "arguments.project is required: this server was started without "
                              "a default project (--project or COFFER_PROJECT)");
    }
    return COFFER_OK;
}

/* "/v1/orgs/ORG/projects/PROJECT" followed by the formatted rest, into out. */
static enum coffer_err api_path(const struct mcp_ctx *c, const char *project, char *out, size_t cap,
                                const char *fmt, ...) COFFER_PRINTF(5, 6);

static enum coffer_err api_path(const struct mcp_ctx *c, const char *project, char *out, size_t cap,
                                const char *fmt, ...)
{
    int n = snprintf(out, cap, "/v1/orgs/%s/projects/%s", c->org, project);
    va_list ap;

    if (n < 0 || (size_t)n >= cap) {
        return coffer_err_set(COFFER_E_LIMIT, "the request path is too long");
    }
    va_start(ap, fmt);
    n += vsnprintf(out + n, cap - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        return coffer_err_set(COFFER_E_LIMIT, "the request path is too long");
    }
    return COFFER_OK;
}

static enum coffer_err tool_list(struct mcp_ctx *c, const json_t *args, json_t **result)
{
    char path[PATH_TEXT_MAX];
    const char *project;
    enum coffer_err e;

    if ((e = project_of(c, args, &project)) != COFFER_OK ||
        (e = api_path(c, project, path, sizeof(path), "/credentials")) != COFFER_OK) {
        return e;
    }
    return call_api(c, "GET", path, NULL, result);
}

/* Copies each named argument that is present (and not null) into body. */
static enum coffer_err copy_args(const json_t *args, const char *const *names, json_t *body)
{
    for (const char *const *n = names; *n != NULL; n++) {
        json_t *v = json_object_get(args, *n);

        if (v != NULL && !json_is_null(v) && json_object_set(body, *n, v) != 0) {
            return coffer_err_set(COFFER_E_NOMEM, "building the request");
        }
    }
    return COFFER_OK;
}

static enum coffer_err tool_request(struct mcp_ctx *c, const json_t *args, json_t **result)
{
    static const char *const fields[] = {"name",    "type",        "tier", "purpose",
                                         "urgency", "description", NULL};
    char path[PATH_TEXT_MAX];
    const char *project;
    json_t *body = NULL;
    enum coffer_err e;

    if ((e = project_of(c, args, &project)) != COFFER_OK ||
        (e = api_path(c, project, path, sizeof(path), "/requests")) != COFFER_OK) {
        return e;
    }
    if ((body = json_object()) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "building the request");
    }
    if ((e = copy_args(args, fields, body)) == COFFER_OK) {
        e = call_api(c, "POST", path, body, result);
    }
    json_decref(body);
    return e;
}

static enum coffer_err tool_status(struct mcp_ctx *c, const json_t *args, json_t **result)
{
    char path[PATH_TEXT_MAX];
    const char *project;
    enum coffer_err e;

    if ((e = project_of(c, args, &project)) != COFFER_OK ||
        (e = api_path(c, project, path, sizeof(path), "/requests/%s",
                      json_string_value(json_object_get(args, "id")))) != COFFER_OK) {
        return e;
    }
    return call_api(c, "GET", path, NULL, result);
}

static enum coffer_err tool_use(struct mcp_ctx *c, const json_t *args, json_t **result)
{
    static const char *const fields[] = {"method", "url", "headers", "body", NULL};
    char path[PATH_TEXT_MAX];
    const char *project;
    json_t *body = NULL;
    json_t *req = NULL;
    enum coffer_err e;

    if ((e = project_of(c, args, &project)) != COFFER_OK ||
        (e = api_path(c, project, path, sizeof(path), "/credentials/%s/use",
                      json_string_value(json_object_get(args, "name")))) != COFFER_OK) {
        return e;
    }
    if ((req = json_object()) == NULL ||
        (body = json_pack("{s:O, s:O}", "purpose", json_object_get(args, "purpose"), "request",
                          req)) == NULL) {
        json_decref(req);
        return coffer_err_set(COFFER_E_NOMEM, "building the request");
    }
    if ((e = copy_args(args, fields, req)) == COFFER_OK) {
        e = call_api(c, "POST", path, body, result);
    }
    json_decref(req);
    json_decref(body);
    return e;
}

typedef enum coffer_err (*tool_fn)(struct mcp_ctx *c, const json_t *args, json_t **result);

/* In the order of tools[]. */
static const tool_fn handlers[N_TOOLS] = {tool_list, tool_request, tool_status, tool_use};

static enum coffer_err call(void *ctx, size_t index, const json_t *args, json_t **result)
{
    if (index >= N_TOOLS) {
        return coffer_err_set(COFFER_E_INVALID, "params.name: no such tool");
    }
    return handlers[index](ctx, args, result);
}

/* ---- The command -------------------------------------------------------------------------- */

struct mcp_args {
    struct cli_target target;
    const char *org;
    const char *project;
};

static int usage_error(const char *fmt, ...) COFFER_PRINTF(1, 2);

static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("coffer: mcp: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", mcp_usage);
    return CLI_EXIT_TROUBLE;
}

/* The flag's value, else the variable's (unset and empty are the same). */
static const char *setting(const char *flag, const char *var)
{
    const char *v = flag != NULL ? flag : getenv(var);

    return v != NULL && v[0] != '\0' ? v : NULL;
}

static int parse(int argc, char **argv, struct mcp_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *w = argv[i];
        const char **slot = strcmp(w, "--org") == 0          ? &a->org
                            : strcmp(w, "--project") == 0    ? &a->project
                            : strcmp(w, "--addr") == 0       ? &a->target.addr
                            : strcmp(w, "--cacert") == 0     ? &a->target.cacert
                            : strcmp(w, "--cert") == 0       ? &a->target.cert
                            : strcmp(w, "--client-key") == 0 ? &a->target.key
                                                             : NULL;

        if (slot == NULL) {
            if (strcmp(w, "--token") == 0) {
                return usage_error("%s", "give a bearer token as COFFER_TOKEN, never on the "
                                         "command line");
            }
            return usage_error("unknown argument '%s'", w);
        }
        if (i + 1 >= argc || argv[i + 1][0] == '\0') {
            return usage_error("%s needs a value", w);
        }
        if (*slot != NULL) {
            return usage_error("%s is given twice", w);
        }
        *slot = argv[++i];
    }
    a->org = setting(a->org, "COFFER_ORG");
    a->project = setting(a->project, "COFFER_PROJECT");
    if (a->org == NULL) {
        return usage_error("%s", "the agent's org is needed: --org ORG or COFFER_ORG");
    }
    if (!coffer_policy_name_ok(a->org, strlen(a->org))) {
        return usage_error("%s",
                           "--org (or COFFER_ORG) must be a name: ^[a-z0-9][a-z0-9_-]{0,62}$");
    }
    if (a->project != NULL && !coffer_policy_name_ok(a->project, strlen(a->project))) {
        return usage_error("%s", "--project (or COFFER_PROJECT) must be a name: "
                                 "^[a-z0-9][a-z0-9_-]{0,62}$");
    }
    return 0;
}

/*
 * Keeps stdout for answers only: returns a private descriptor of the
 * original stdout and points descriptor 1 at stderr, so that a stray write
 * by any library lands among the diagnostics. -1 on failure.
 */
static int take_stdout(void)
{
    int fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);

    if (fd < 0) {
        return -1;
    }
    if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int cli_mcp(int argc, char **argv)
{
    struct mcp_args a = {0};
    struct mcp_ctx c = {0};
    struct mcp_server srv = {0};
    struct mcp_conn s;
    int out_fd = -1;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(mcp_usage, stdout);
            return CLI_EXIT_OK;
        }
    }
    if ((rc = parse(argc, argv, &a)) != 0) {
        return rc;
    }
    /* A client that goes away is a failed write, not a signal that kills without a word. */
    (void)signal(SIGPIPE, SIG_IGN);
    if ((out_fd = take_stdout()) < 0) {
        fprintf(stderr, "coffer: mcp: setting up stdout: %s\n", strerror(errno));
        return CLI_EXIT_TROUBLE;
    }
    /* Answers of the use route may echo what upstreams send: every JSON allocation is wiped. */
    coffer_api_json_init();
    c.org = a.org;
    c.project = a.project;
    c.token = setting(NULL, "COFFER_TOKEN");
    c.key_path = setting(a.target.key, "COFFER_CLIENT_KEY");
    if (cli_client_new(&a.target, &c.client) != COFFER_OK) {
        diagnose(&c, coffer_err_detail());
        close(out_fd);
        return CLI_EXIT_TROUBLE;
    }
    srv.name = "coffer";
    srv.version = COFFER_VERSION;
    srv.instructions = instructions;
    srv.tools = tools;
    srv.n_tools = N_TOOLS;
    srv.call = call;
    srv.guard = guard;
    srv.ctx = &c;
    mcp_conn_init(&s, &srv);
    rc = CLI_EXIT_OK;
    if (mcp_serve(&s, STDIN_FILENO, out_fd) != COFFER_OK) {
        diagnose(&c, coffer_err_detail());
        rc = CLI_EXIT_TROUBLE;
    }
    cli_client_free(&c.client);
    close(out_fd);
    return rc;
}
