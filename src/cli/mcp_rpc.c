/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transport and protocol half of `coffer mcp`: reads one JSON-RPC 2.0
 * message per line, checks it (jsonrpc "2.0", an id that is a string or an
 * integer or absent, a method that is a string, params that are an object),
 * answers initialize, ping and tools/list itself, checks a tool call's
 * arguments against the tool's declaration, and hands the call to the
 * server's call function. Every answer is one line of compact JSON.
 *
 * This file never writes anything but answers to its output, and never
 * echoes a client's text back except a method or argument name that is
 * short printable ASCII: an error says what was wrong and where, not what
 * was sent. Notifications and responses are never answered. Lines are read
 * into buffers that are wiped when released, since a tool call carries the
 * agent's request.
 */
#include "cli/mcp.h"

#include "coffer/mem.h"
#include "coffer/policy.h"
#include "coffer/secret.h"
#include "coffer/text.h"
#include "coffer/uuid.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (64u * 1024u)
#define ECHO_MAX 64 /* longest client-given name quoted back in an error */

static const char *const known_versions[] = {"2024-11-05", "2025-03-26", "2025-06-18", NULL};

void mcp_conn_init(struct mcp_conn *s, const struct mcp_server *server)
{
    s->server = server;
    s->initialized = false;
}

/* Whether s is short printable ASCII, safe to quote back in an error message. */
static bool quotable(const char *s)
{
    size_t n = strnlen(s, ECHO_MAX + 1);

    if (n == 0 || n > ECHO_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* ---- Answers ---------------------------------------------------------------------------- */

/* {"jsonrpc": "2.0", "id": id, "result": result}; result is stolen. */
static json_t *success(const json_t *id, json_t *result)
{
    json_t *o;

    if (result == NULL) {
        return NULL;
    }
    o = json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result", result);
    return o;
}

/* {"jsonrpc": "2.0", "id": id or null, "error": {"code": code, "message": message}}. */
static json_t *failure(const json_t *id, int code, const char *message)
{
    json_t *null = json_null();

    return json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id != NULL ? id : null,
                     "error", "code", code, "message", message);
}

/* failure() with a message built from a format. */
static json_t *failuref(const json_t *id, int code, const char *fmt, ...) COFFER_PRINTF(3, 4);

static json_t *failuref(const json_t *id, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return failure(id, code, msg);
}

json_t *mcp_tool_result(json_t *structured, const char *text, bool is_error)
{
    json_t *o = NULL;
    char *dumped = NULL;
    void *(*alloc)(size_t);
    void (*release)(void *);

    if (text == NULL) {
        if (structured == NULL ||
            (dumped = json_dumps(structured, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL) {
            json_decref(structured);
            return NULL;
        }
        text = dumped;
    }
    o = json_pack("{s:[{s:s, s:s}], s:b}", "content", "type", "text", "text", text, "isError",
                  is_error);
    if (o != NULL && structured != NULL &&
        json_object_set_new(o, "structuredContent", structured) != 0) {
        json_decref(o);
        o = NULL;
    } else if (o == NULL) {
        json_decref(structured);
    }
    json_get_alloc_funcs(&alloc, &release);
    release(dumped);
    return o;
}

/* ---- Tool declarations ----------------------------------------------------------------- */

/* The JSON Schema of one argument. */
static json_t *arg_schema(const struct mcp_arg *a)
{
    json_t *s = json_pack("{s:s, s:s}", "type", a->kind == MCP_ARG_MAP ? "object" : "string",
                          "description", a->description);
    json_t *choices;
    bool ok = s != NULL;

    switch (a->kind) {
    case MCP_ARG_TEXT:
        ok = ok && json_object_set_new(s, "minLength", json_integer(1)) == 0 &&
             json_object_set_new(s, "maxLength", json_integer((json_int_t)a->max)) == 0;
        break;
    case MCP_ARG_BODY:
        ok = ok && json_object_set_new(s, "maxLength", json_integer((json_int_t)a->max)) == 0;
        break;
    case MCP_ARG_NAME:
        ok =
            ok && json_object_set_new(s, "pattern", json_string("^[a-z0-9][a-z0-9_-]{0,62}$")) == 0;
        break;
    case MCP_ARG_ID:
        ok = ok && json_object_set_new(s, "format", json_string("uuid")) == 0;
        break;
    case MCP_ARG_CHOICE:
        choices = json_array();
        for (const char *const *c = a->choices; ok && choices != NULL && *c != NULL; c++) {
            ok = json_array_append_new(choices, json_string(*c)) == 0;
        }
        ok = ok && choices != NULL && json_object_set_new(s, "enum", choices) == 0;
        if (!ok) {
            json_decref(choices);
        }
        break;
    case MCP_ARG_MAP:
        ok = ok &&
             json_object_set_new(s, "additionalProperties", json_pack("{s:s}", "type", "string")) ==
                 0 &&
             json_object_set_new(s, "maxProperties", json_integer((json_int_t)a->max)) == 0;
        break;
    default:
        ok = false;
        break;
    }
    if (!ok) {
        json_decref(s);
        return NULL;
    }
    return s;
}

/* {"name", "description", "inputSchema"} of one tool. */
static json_t *tool_json(const struct mcp_tool *t)
{
    json_t *props = json_object();
    json_t *required = json_array();
    json_t *o;
    bool ok = props != NULL && required != NULL;

    for (const struct mcp_arg *a = t->args; ok && a->name != NULL; a++) {
        ok = json_object_set_new(props, a->name, arg_schema(a)) == 0 &&
             (!a->required || json_array_append_new(required, json_string(a->name)) == 0);
    }
    if (!ok) {
        json_decref(props);
        json_decref(required);
        return NULL;
    }
    o = json_pack("{s:s, s:s, s:{s:s, s:o, s:o, s:b}}", "name", t->name, "description",
                  t->description, "inputSchema", "type", "object", "properties", props, "required",
                  required, "additionalProperties", false);
    return o;
}

static json_t *tools_list(const struct mcp_server *srv)
{
    json_t *tools = json_array();

    for (size_t i = 0; tools != NULL && i < srv->n_tools; i++) {
        if (json_array_append_new(tools, tool_json(&srv->tools[i])) != 0) {
            json_decref(tools);
            tools = NULL;
        }
    }
    return tools != NULL ? json_pack("{s:o}", "tools", tools) : NULL;
}

/* Whether the string v (JSON) is exactly as long as its C string: no NUL inside. */
static bool no_nul(const json_t *v)
{
    return strlen(json_string_value(v)) == json_string_length(v);
}

/* Checks one present argument v against a; COFFER_E_INVALID names it and says what is wrong. */
static enum coffer_err check_arg(const struct mcp_arg *a, const json_t *v)
{
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    struct coffer_uuid id;
    const char *key;
    json_t *item;

    if (a->kind == MCP_ARG_MAP) {
        if (!json_is_object(v) || json_object_size(v) > a->max) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "arguments.%s must be an object of at most %zu entries", a->name,
                                  a->max);
        }
        json_object_foreach((json_t *)v, key, item)
        {
            if (!json_is_string(item)) {
                return coffer_err_set(COFFER_E_INVALID,
                                      "every value of arguments.%s must be a string", a->name);
            }
        }
        return COFFER_OK;
    }
    if (!json_is_string(v)) {
        return coffer_err_set(COFFER_E_INVALID, "arguments.%s must be a string", a->name);
    }
    switch (a->kind) {
    case MCP_ARG_TEXT:
        if (!coffer_text_ok(s, len, a->max)) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "arguments.%s must be 1 to %zu bytes of UTF-8 without control "
                                  "characters",
                                  a->name, a->max);
        }
        return COFFER_OK;
    case MCP_ARG_BODY:
        if (len > a->max || !no_nul(v)) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "arguments.%s must be text of at most %zu bytes without NUL",
                                  a->name, a->max);
        }
        return COFFER_OK;
    case MCP_ARG_NAME:
        if (!no_nul(v) || !coffer_policy_name_ok(s, len)) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "arguments.%s must be a name: ^[a-z0-9][a-z0-9_-]{0,62}$",
                                  a->name);
        }
        return COFFER_OK;
    case MCP_ARG_ID:
        if (!no_nul(v) || len != COFFER_UUID_STR_LEN - 1 ||
            coffer_uuid_parse(s, &id) != COFFER_OK) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "arguments.%s must be a request id (a UUID such as "
                                  "0b6f1c2e-8d4a-4c1e-9f3b-5a7d2e9c1b40)",
                                  a->name);
        }
        return COFFER_OK;
    case MCP_ARG_CHOICE:
        for (const char *const *c = a->choices; *c != NULL; c++) {
            if (no_nul(v) && strcmp(*c, s) == 0) {
                return COFFER_OK;
            }
        }
        return coffer_err_set(COFFER_E_INVALID,
                              "arguments.%s is not one of the values its schema lists", a->name);
    case MCP_ARG_MAP:
    default:
        return coffer_err_set(COFFER_E_INVALID, "arguments.%s has a kind this server cannot check",
                              a->name);
    }
}

/*
 * Checks args against t: no argument it does not declare, every required
 * one present (null counts as absent), each present one of its kind.
 */
static enum coffer_err check_args(const struct mcp_tool *t, const json_t *args)
{
    const char *key;
    json_t *v;
    enum coffer_err r;

    json_object_foreach((json_t *)args, key, v)
    {
        const struct mcp_arg *a = t->args;

        while (a->name != NULL && strcmp(a->name, key) != 0) {
            a++;
        }
        if (a->name == NULL) {
            if (quotable(key)) {
                return coffer_err_set(COFFER_E_INVALID, "arguments.%s: %s takes no such argument",
                                      key, t->name);
            }
            return coffer_err_set(COFFER_E_INVALID, "arguments: %s takes no such argument",
                                  t->name);
        }
    }
    for (const struct mcp_arg *a = t->args; a->name != NULL; a++) {
        v = json_object_get(args, a->name);
        if (v == NULL || json_is_null(v)) {
            if (a->required) {
                return coffer_err_set(COFFER_E_INVALID, "arguments.%s is required", a->name);
            }
            continue;
        }
        if ((r = check_arg(a, v)) != COFFER_OK) {
            return r;
        }
    }
    return COFFER_OK;
}

/* ---- Methods ---------------------------------------------------------------------------- */

static json_t *initialize(struct mcp_conn *s, const json_t *id, const json_t *params)
{
    const struct mcp_server *srv = s->server;
    const char *asked = json_string_value(json_object_get(params, "protocolVersion"));
    const char *version = MCP_PROTOCOL_LATEST;

    if (s->initialized) {
        return failure(id, MCP_INVALID_REQUEST, "the server is already initialized");
    }
    if (asked == NULL) {
        return failure(id, MCP_INVALID_PARAMS, "params.protocolVersion must be a string");
    }
    for (const char *const *v = known_versions; *v != NULL; v++) {
        if (strcmp(*v, asked) == 0) {
            version = *v;
        }
    }
    s->initialized = true;
    return success(id, json_pack("{s:s, s:{s:{s:b}}, s:{s:s, s:s}, s:s}", "protocolVersion",
                                 version, "capabilities", "tools", "listChanged", false,
                                 "serverInfo", "name", srv->name, "version", srv->version,
                                 "instructions", srv->instructions));
}

static json_t *tools_call(struct mcp_conn *s, const json_t *id, const json_t *params)
{
    const struct mcp_server *srv = s->server;
    const json_t *name = json_object_get(params, "name");
    const json_t *args = json_object_get(params, "arguments");
    json_t *empty = NULL;
    json_t *result = NULL;
    json_t *answer;
    size_t i = 0;
    enum coffer_err r;

    if (!json_is_string(name)) {
        return failure(id, MCP_INVALID_PARAMS, "params.name must be a string: the tool to call");
    }
    while (i < srv->n_tools && strcmp(srv->tools[i].name, json_string_value(name)) != 0) {
        i++;
    }
    if (i == srv->n_tools) {
        return failure(id, MCP_INVALID_PARAMS,
                       "params.name: no such tool (tools/list names the tools)");
    }
    if (args == NULL || json_is_null(args)) {
        if ((args = empty = json_object()) == NULL) {
            return NULL;
        }
    } else if (!json_is_object(args)) {
        return failure(id, MCP_INVALID_PARAMS, "params.arguments must be an object");
    }
    if ((r = check_args(&srv->tools[i], args)) == COFFER_OK) {
        r = srv->call(srv->ctx, i, args, &result);
    }
    json_decref(empty);
    if (r == COFFER_OK) {
        return success(id, result);
    }
    answer = failure(id, r == COFFER_E_INVALID ? MCP_INVALID_PARAMS : MCP_INTERNAL_ERROR,
                     coffer_err_detail());
    return answer;
}

/* The answer to one request (id is not NULL). */
static json_t *dispatch(struct mcp_conn *s, const json_t *id, const char *method,
                        const json_t *params)
{
    if (strcmp(method, "ping") == 0) {
        return success(id, json_object());
    }
    if (strcmp(method, "initialize") == 0) {
        return initialize(s, id, params);
    }
    if (!s->initialized) {
        return failure(id, MCP_NOT_INITIALIZED,
                       "the server is not initialized yet: send initialize first");
    }
    if (strcmp(method, "tools/list") == 0) {
        return success(id, tools_list(s->server));
    }
    if (strcmp(method, "tools/call") == 0) {
        if (params == NULL) {
            return failure(id, MCP_INVALID_PARAMS, "tools/call needs params with the tool's name");
        }
        return tools_call(s, id, params);
    }
    if (quotable(method)) {
        return failuref(id, MCP_METHOD_NOT_FOUND,
                        "method not found: %s (this server offers tools only)", method);
    }
    return failure(id, MCP_METHOD_NOT_FOUND, "method not found (this server offers tools only)");
}

/*
 * The answer to one parsed message, or NULL with *none set when nothing is
 * to be answered (a notification or a response).
 */
static json_t *answer(struct mcp_conn *s, const json_t *msg, bool *none)
{
    const json_t *id = json_object_get(msg, "id");
    const json_t *version = json_object_get(msg, "jsonrpc");
    const json_t *method = json_object_get(msg, "method");
    const json_t *params = json_object_get(msg, "params");

    *none = false;
    if (json_is_array(msg)) {
        return failure(NULL, MCP_INVALID_REQUEST,
                       "batches are not supported: send one message per line");
    }
    if (!json_is_object(msg)) {
        return failure(NULL, MCP_INVALID_REQUEST, "a message must be a JSON object");
    }
    if (id != NULL && !json_is_string(id) && !json_is_integer(id)) {
        return failure(NULL, MCP_INVALID_REQUEST, "id must be a string or an integer");
    }
    if (!json_is_string(version) || strcmp(json_string_value(version), "2.0") != 0) {
        return failure(id, MCP_INVALID_REQUEST, "jsonrpc must be \"2.0\"");
    }
    if (method == NULL && id != NULL &&
        (json_object_get(msg, "result") != NULL || json_object_get(msg, "error") != NULL)) {
        /* A response: this server sends no requests, so there is nothing it could answer. */
        *none = true;
        return NULL;
    }
    if (!json_is_string(method) || !no_nul(method)) {
        return failure(id, MCP_INVALID_REQUEST, "method must be a string");
    }
    if (params != NULL && !json_is_object(params)) {
        return failure(id, MCP_INVALID_REQUEST, "params must be an object");
    }
    if (id == NULL) {
        /* A notification (initialized, cancelled, ...): never answered. */
        *none = true;
        return NULL;
    }
    return dispatch(s, id, json_string_value(method), params);
}

/* Whether the len bytes at p are only JSON whitespace. */
static bool blank(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') {
            return false;
        }
    }
    return true;
}

/* Serialises o (stolen) into *reply, withholding it when the guard says so. */
static enum coffer_err finish(struct mcp_conn *s, json_t *o, char **reply)
{
    const struct mcp_server *srv = s->server;
    json_t *id;
    char *text;

    if (o == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "building an answer");
    }
    text = json_dumps(o, JSON_COMPACT);
    if (text != NULL && srv->guard != NULL && !srv->guard(srv->ctx, text, strlen(text))) {
        mcp_reply_free(text);
        id = json_object_get(o, "id");
        json_incref(id);
        json_decref(o);
        o = failure(id, MCP_INTERNAL_ERROR,
                    "the answer was withheld: it held this client's own credentials");
        json_decref(id);
        text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    }
    json_decref(o);
    if (text == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "encoding an answer");
    }
    *reply = text;
    return COFFER_OK;
}

enum coffer_err mcp_handle_line(struct mcp_conn *s, const char *line, size_t len, char **reply)
{
    json_error_t jerr;
    json_t *msg;
    json_t *o;
    bool none = false;

    *reply = NULL;
    if (blank(line, len)) {
        return COFFER_OK;
    }
    msg = json_loadb(line, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (msg == NULL) {
        /* The position only: jansson's text may quote what was sent. */
        o = failuref(NULL, MCP_PARSE_ERROR, "parse error: not JSON (at byte %d of the line)",
                     jerr.position);
        coffer_wipe(&jerr, sizeof(jerr));
        return finish(s, o, reply);
    }
    o = answer(s, msg, &none);
    json_decref(msg);
    if (none) {
        return COFFER_OK;
    }
    return finish(s, o, reply);
}

void mcp_reply_free(char *reply)
{
    void *(*alloc)(size_t);
    void (*release)(void *);

    if (reply == NULL) {
        return;
    }
    coffer_wipe(reply, strlen(reply));
    json_get_alloc_funcs(&alloc, &release);
    release(reply);
}

/* ---- The loop --------------------------------------------------------------------------- */

static enum coffer_err write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return coffer_err_set(COFFER_E_IO, "writing an answer: %s",
                                  w < 0 ? strerror(errno) : "nothing written");
        }
        p += w;
        n -= (size_t)w;
    }
    return COFFER_OK;
}

/* Handles one whole line and writes its answer, if any. */
static enum coffer_err one_line(struct mcp_conn *s, const char *line, size_t len, int out_fd)
{
    char *reply = NULL;
    enum coffer_err r;

    if ((r = mcp_handle_line(s, line, len, &reply)) != COFFER_OK || reply == NULL) {
        return r;
    }
    if ((r = write_all(out_fd, reply, strlen(reply))) == COFFER_OK) {
        r = write_all(out_fd, "\n", 1);
    }
    mcp_reply_free(reply);
    return r;
}

/* The answer to a line over the limit, which is never parsed. */
static enum coffer_err oversize(struct mcp_conn *s, int out_fd)
{
    char *reply = NULL;
    enum coffer_err r;

    r = finish(s,
               failuref(NULL, MCP_INVALID_REQUEST, "the message is over %u bytes: it was skipped",
                        MCP_LINE_MAX),
               &reply);
    if (r == COFFER_OK && (r = write_all(out_fd, reply, strlen(reply))) == COFFER_OK) {
        r = write_all(out_fd, "\n", 1);
    }
    mcp_reply_free(reply);
    return r;
}

/* The reader's state: the line so far, or the rest of an overlong one being skipped. */
struct reader {
    char *line; /* MCP_LINE_MAX bytes */
    size_t len;
    bool skipping;
};

/* Consumes n bytes just read; answers each line they complete. */
static enum coffer_err consume(struct mcp_conn *s, struct reader *rd, const char *p, size_t n,
                               int out_fd)
{
    enum coffer_err r = COFFER_OK;

    while (n > 0 && r == COFFER_OK) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl != NULL ? (size_t)(nl - p) : n;

        if (!rd->skipping && take > MCP_LINE_MAX - rd->len) {
            coffer_wipe(rd->line, rd->len);
            rd->len = 0;
            rd->skipping = true;
            r = oversize(s, out_fd);
        } else if (!rd->skipping) {
            coffer_memcpy(rd->line + rd->len, p, take);
            rd->len += take;
        }
        if (nl == NULL) {
            break;
        }
        if (r == COFFER_OK && !rd->skipping) {
            r = one_line(s, rd->line, rd->len, out_fd);
        }
        coffer_wipe(rd->line, rd->len);
        rd->len = 0;
        rd->skipping = false;
        p = nl + 1;
        n -= take + 1;
    }
    return r;
}

enum coffer_err mcp_serve(struct mcp_conn *s, int in_fd, int out_fd)
{
    struct reader rd = {0};
    char *chunk = NULL;
    enum coffer_err r = COFFER_OK;

    if ((rd.line = coffer_calloc(MCP_LINE_MAX, 1)) == NULL ||
        (chunk = coffer_calloc(CHUNK, 1)) == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "allocating the line buffer");
        goto out;
    }
    for (;;) {
        ssize_t n = read(in_fd, chunk, CHUNK);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            r = coffer_err_set(COFFER_E_IO, "reading a message: %s", strerror(errno));
            goto out;
        }
        if (n == 0) {
            break;
        }
        r = consume(s, &rd, chunk, (size_t)n, out_fd);
        coffer_wipe(chunk, (size_t)n);
        if (r != COFFER_OK) {
            goto out;
        }
    }
    /* A last line without its newline is still a message. */
    if (!rd.skipping && rd.len > 0) {
        r = one_line(s, rd.line, rd.len, out_fd);
    }
out:
    if (rd.line != NULL) {
        coffer_freezero(rd.line, MCP_LINE_MAX);
    }
    if (chunk != NULL) {
        coffer_freezero(chunk, CHUNK);
    }
    return r;
}
