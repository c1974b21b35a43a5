/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The JSON-RPC framing of `coffer mcp` (src/cli/mcp_rpc.c) with a fake
 * tool: malformed lines, batches, ids of each kind, notifications and
 * responses (never answered), the lifecycle (nothing but ping before
 * initialize, one initialize, protocol versions), tools/list schemas, the
 * checks of tool arguments (each kind, unknown and missing arguments, none
 * reaching the tool), tool failures, the guard that withholds an answer,
 * and the line reader (an overlong line skipped with an answer and the next
 * line still served, a line of exactly the limit, CRLF, a last line without
 * a newline, a failed write).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli/mcp.h"

#include "coffer/mem.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PING "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"ping\"}"
#define OWN_TOKEN "cft_own_token_canary_4711"

static const char *const colours[] = {"red", "green", NULL};

static const struct mcp_arg fake_args[] = {
    {"project", MCP_ARG_NAME, false, 0, NULL, "a project"},
    {"name", MCP_ARG_NAME, true, 0, NULL, "a name"},
    {"purpose", MCP_ARG_TEXT, true, 16, NULL, "a purpose"},
    {"colour", MCP_ARG_CHOICE, false, 0, colours, "a colour"},
    {"headers", MCP_ARG_MAP, false, 2, NULL, "headers"},
    {"body", MCP_ARG_BODY, false, 8, NULL, "a body"},
    {"id", MCP_ARG_ID, false, 0, NULL, "an id"},
    {NULL, MCP_ARG_TEXT, false, 0, NULL, NULL}};

static const struct mcp_arg empty_args[] = {{NULL, MCP_ARG_TEXT, false, 0, NULL, NULL}};

static const struct mcp_tool fake_tools[] = {
    {"fake", "a fake tool", fake_args},
    {"nothing", "takes nothing", empty_args},
};

static int calls;

/* Echoes its arguments; the name "boom" fails, "bad" is refused, "leak" answers the token. */
static enum coffer_err fake_call(void *ctx, size_t index, const json_t *args, json_t **result)
{
    const char *name = json_string_value(json_object_get(args, "name"));

    (void)ctx;
    calls++;
    if (index == 1) {
        *result = mcp_tool_result(json_object(), "nothing", false);
        return COFFER_OK;
    }
    if (strcmp(name, "boom") == 0) {
        return coffer_err_set(COFFER_E_IO, "the fake upstream is down");
    }
    if (strcmp(name, "bad") == 0) {
        return coffer_err_set(COFFER_E_INVALID, "arguments.name is bad here");
    }
    if (strcmp(name, "leak") == 0) {
        *result = mcp_tool_result(json_pack("{s:s}", "token", OWN_TOKEN), NULL, false);
        return COFFER_OK;
    }
    *result = mcp_tool_result(json_deep_copy(args), NULL, false);
    return COFFER_OK;
}

static bool fake_guard(void *ctx, const char *line, size_t len)
{
    (void)ctx;
    return memmem(line, len, OWN_TOKEN, strlen(OWN_TOKEN)) == NULL;
}

static const struct mcp_server server = {
    .name = "coffer",
    .version = "9.9.9",
    .instructions = "never returns a value",
    .tools = fake_tools,
    .n_tools = 2,
    .call = fake_call,
    .guard = fake_guard,
    .ctx = NULL,
};

/* The answer to line, parsed; NULL when there is none. */
static json_t *rpc(struct mcp_conn *s, const char *line)
{
    char *reply = NULL;
    json_error_t e;
    json_t *o;

    assert_int_equal(mcp_handle_line(s, line, strlen(line), &reply), COFFER_OK);
    if (reply == NULL) {
        return NULL;
    }
    assert_null(strchr(reply, '\n'));
    o = json_loads(reply, 0, &e);
    if (o == NULL) {
        fail_msg("not JSON: %s", reply);
    }
    mcp_reply_free(reply);
    assert_string_equal(json_string_value(json_object_get(o, "jsonrpc")), "2.0");
    return o;
}

/* Asserts o (released here) is an error with code, and id as given (NULL: null). */
static void expect_error(json_t *o, int code, const char *id_json, const char *needle)
{
    json_t *err;
    char *id;

    assert_non_null(o);
    err = json_object_get(o, "error");
    if (!json_is_object(err) || json_integer_value(json_object_get(err, "code")) != code) {
        char *dump = json_dumps(o, 0);

        fail_msg("want error %d, got %s", code, dump);
    }
    assert_null(json_object_get(o, "result"));
    id = json_dumps(json_object_get(o, "id"), JSON_ENCODE_ANY);
    assert_string_equal(id, id_json != NULL ? id_json : "null");
    free(id);
    if (needle != NULL) {
        const char *m = json_string_value(json_object_get(err, "message"));

        assert_non_null(m);
        if (strstr(m, needle) == NULL) {
            fail_msg("message '%s' lacks '%s'", m, needle);
        }
    }
    json_decref(o);
}

/* The result of o (kept alive in o, which the caller releases). */
static json_t *result_of(json_t *o)
{
    json_t *r;

    assert_non_null(o);
    assert_null(json_object_get(o, "error"));
    r = json_object_get(o, "result");
    assert_non_null(r);
    return r;
}

static void initialize(struct mcp_conn *s)
{
    json_t *o;

    mcp_conn_init(s, &server);
    o = rpc(s, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":"
               "{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},"
               "\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}");
    (void)result_of(o);
    json_decref(o);
}

/* ---- Framing ---------------------------------------------------------------------------- */

static void test_malformed(void **state)
{
    struct mcp_conn s;

    (void)state;
    initialize(&s);
    expect_error(rpc(&s, "{not json"), MCP_PARSE_ERROR, NULL, "parse error");
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\""), MCP_PARSE_ERROR,
                 NULL, NULL);
    /* Duplicate keys are refused rather than guessed at. */
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\"}"),
                 MCP_PARSE_ERROR, NULL, NULL);
    /* A string with a NUL inside is not taken. */
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"pi\\u0000ng\"}"),
                 MCP_PARSE_ERROR, NULL, NULL);
    /* Not an object. */
    expect_error(rpc(&s, "3"), MCP_INVALID_REQUEST, NULL, "object");
    expect_error(rpc(&s, "\"ping\""), MCP_INVALID_REQUEST, NULL, "object");
    expect_error(rpc(&s, "null"), MCP_INVALID_REQUEST, NULL, "object");
    /* Batches. */
    expect_error(rpc(&s, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]"),
                 MCP_INVALID_REQUEST, NULL, "batch");
    expect_error(rpc(&s, "[]"), MCP_INVALID_REQUEST, NULL, "batch");
    /* The envelope. */
    expect_error(rpc(&s, "{\"id\":5,\"method\":\"ping\"}"), MCP_INVALID_REQUEST, "5", "jsonrpc");
    expect_error(rpc(&s, "{\"jsonrpc\":\"1.0\",\"id\":5,\"method\":\"ping\"}"), MCP_INVALID_REQUEST,
                 "5", "jsonrpc");
    expect_error(rpc(&s, "{\"jsonrpc\":2.0,\"id\":5,\"method\":\"ping\"}"), MCP_INVALID_REQUEST,
                 "5", "jsonrpc");
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":5}"), MCP_INVALID_REQUEST, "5", "method");
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":7}"), MCP_INVALID_REQUEST, "5",
                 "method");
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\",\"params\":[]}"),
                 MCP_INVALID_REQUEST, "5", "params");
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\",\"params\":\"x\"}"),
                 MCP_INVALID_REQUEST, "5", "params");
    /* An invalid message without an id is still answered, with id null. */
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"method\":3}"), MCP_INVALID_REQUEST, NULL,
                 "method");
    /* Blank lines are no messages. */
    assert_null(rpc(&s, ""));
    assert_null(rpc(&s, "  \t\r"));
}

static void test_ids(void **state)
{
    struct mcp_conn s;
    json_t *o;

    (void)state;
    initialize(&s);
    o = rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":\"abc-1\",\"method\":\"ping\"}");
    assert_string_equal(json_string_value(json_object_get(o, "id")), "abc-1");
    assert_int_equal(json_object_size(result_of(o)), 0);
    json_decref(o);
    o = rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":\"\",\"method\":\"ping\"}");
    assert_string_equal(json_string_value(json_object_get(o, "id")), "");
    json_decref(o);
    o = rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":-42,\"method\":\"ping\"}");
    assert_int_equal(json_integer_value(json_object_get(o, "id")), -42);
    (void)result_of(o);
    json_decref(o);
    o = rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":9007199254740993,\"method\":\"ping\"}");
    assert_true(json_integer_value(json_object_get(o, "id")) == 9007199254740993LL);
    json_decref(o);
    /* Neither a string nor an integer: answered with id null. */
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}"),
                 MCP_INVALID_REQUEST, NULL, "id");
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}"),
                 MCP_INVALID_REQUEST, NULL, "id");
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"ping\"}"),
                 MCP_INVALID_REQUEST, NULL, "id");
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}"),
                 MCP_INVALID_REQUEST, NULL, "id");
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"ping\"}"),
                 MCP_INVALID_REQUEST, NULL, "id");
}

static void test_notifications_and_responses(void **state)
{
    struct mcp_conn s;

    (void)state;
    calls = 0;
    mcp_conn_init(&s, &server);
    /* Before initialize as after: never answered, known or not. */
    assert_null(rpc(&s, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"));
    initialize(&s);
    assert_null(rpc(&s, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"));
    assert_null(rpc(&s, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\","
                        "\"params\":{\"requestId\":3,\"reason\":\"x\"}}"));
    assert_null(rpc(&s, "{\"jsonrpc\":\"2.0\",\"method\":\"no/such/notification\"}"));
    assert_null(rpc(&s, "{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{}}"));
    /* A response (this server sends no requests): nothing to answer. */
    assert_null(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}"));
    assert_null(
        rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":8,\"error\":{\"code\":-1,\"message\":\"m\"}}"));
    assert_int_equal(calls, 0);
}

static void test_methods(void **state)
{
    struct mcp_conn s;
    static char long_method[200];

    (void)state;
    initialize(&s);
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/list\"}"),
                 MCP_METHOD_NOT_FOUND, "1", "resources/list");
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\"}"), MCP_METHOD_NOT_FOUND,
                 "1", "method not found");
    /* A long or unprintable method name is not quoted back. */
    memset(long_method, 'x', sizeof(long_method) - 1);
    {
        char line[400];
        json_t *o;

        snprintf(line, sizeof(line), "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"%s\"}",
                 long_method);
        o = rpc(&s, line);
        assert_null(strstr(
            json_string_value(json_object_get(json_object_get(o, "error"), "message")), "xxxx"));
        expect_error(o, MCP_METHOD_NOT_FOUND, "1", NULL);
        o = rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\\u001b[2Jb\"}");
        assert_null(strstr(
            json_string_value(json_object_get(json_object_get(o, "error"), "message")), "\x1b"));
        expect_error(o, MCP_METHOD_NOT_FOUND, "1", NULL);
    }
}

/* ---- Lifecycle ----------------------------------------------------------------------------- */

static void test_before_initialize(void **state)
{
    struct mcp_conn s;
    json_t *o;

    (void)state;
    mcp_conn_init(&s, &server);
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}"),
                 MCP_NOT_INITIALIZED, "1", "initialize");
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\","
                         "\"params\":{\"name\":\"nothing\"}}"),
                 MCP_NOT_INITIALIZED, "2", NULL);
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"resources/list\"}"),
                 MCP_NOT_INITIALIZED, "3", NULL);
    assert_int_equal(calls, 0);
    o = rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}");
    assert_int_equal(json_object_size(result_of(o)), 0);
    json_decref(o);
    /* initialize needs a protocol version. */
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"initialize\"}"),
                 MCP_INVALID_PARAMS, "5", "protocolVersion");
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"initialize\","
                         "\"params\":{\"protocolVersion\":20250618}}"),
                 MCP_INVALID_PARAMS, "5", "protocolVersion");
    assert_false(s.initialized);
}

/* The version answered to an initialize that asks for asked. */
static void expect_version(const char *asked, const char *want)
{
    struct mcp_conn s;
    char line[256];
    json_t *o;
    json_t *r;

    mcp_conn_init(&s, &server);
    snprintf(line, sizeof(line),
             "{\"jsonrpc\":\"2.0\",\"id\":\"init\",\"method\":\"initialize\","
             "\"params\":{\"protocolVersion\":\"%s\",\"capabilities\":{}}}",
             asked);
    o = rpc(&s, line);
    r = result_of(o);
    assert_string_equal(json_string_value(json_object_get(r, "protocolVersion")), want);
    assert_true(json_is_false(json_object_get(
        json_object_get(json_object_get(r, "capabilities"), "tools"), "listChanged")));
    assert_int_equal(json_object_size(json_object_get(r, "capabilities")), 1);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r, "serverInfo"), "name")), "coffer");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r, "serverInfo"), "version")), "9.9.9");
    assert_string_equal(json_string_value(json_object_get(r, "instructions")),
                        "never returns a value");
    json_decref(o);
    assert_true(s.initialized);
    /* Once only. */
    expect_error(rpc(&s, line), MCP_INVALID_REQUEST, "\"init\"", "already initialized");
}

static void test_initialize_versions(void **state)
{
    (void)state;
    expect_version("2024-11-05", "2024-11-05");
    expect_version("2025-03-26", "2025-03-26");
    expect_version("2025-06-18", "2025-06-18");
    expect_version("1999-01-01", MCP_PROTOCOL_LATEST);
    expect_version("", MCP_PROTOCOL_LATEST);
}

/* ---- Tools --------------------------------------------------------------------------------- */

static void test_tools_list(void **state)
{
    struct mcp_conn s;
    json_t *o;
    json_t *tools;
    json_t *schema;
    json_t *props;

    (void)state;
    initialize(&s);
    o = rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{}}");
    tools = json_object_get(result_of(o), "tools");
    assert_int_equal(json_array_size(tools), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(tools, 0), "name")),
                        "fake");
    assert_string_equal(json_string_value(json_object_get(json_array_get(tools, 0), "description")),
                        "a fake tool");
    schema = json_object_get(json_array_get(tools, 0), "inputSchema");
    assert_string_equal(json_string_value(json_object_get(schema, "type")), "object");
    assert_true(json_is_false(json_object_get(schema, "additionalProperties")));
    assert_int_equal(json_array_size(json_object_get(schema, "required")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(schema, "required"), 0)),
                        "name");
    assert_string_equal(json_string_value(json_array_get(json_object_get(schema, "required"), 1)),
                        "purpose");
    props = json_object_get(schema, "properties");
    assert_int_equal(json_object_size(props), 7);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(props, "name"), "pattern")),
        "^[a-z0-9][a-z0-9_-]{0,62}$");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(props, "purpose"), "maxLength")), 16);
    assert_int_equal(json_array_size(json_object_get(json_object_get(props, "colour"), "enum")), 2);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(props, "headers"), "type")), "object");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(props, "headers"), "maxProperties")), 2);
    assert_string_equal(json_string_value(json_object_get(json_object_get(props, "id"), "format")),
                        "uuid");
    /* A tool without arguments still has an object schema, with nothing required. */
    schema = json_object_get(json_array_get(tools, 1), "inputSchema");
    assert_int_equal(json_object_size(json_object_get(schema, "properties")), 0);
    assert_int_equal(json_array_size(json_object_get(schema, "required")), 0);
    json_decref(o);
}

/* tools/call of fake with the arguments object args_json. */
static json_t *call_fake(struct mcp_conn *s, const char *args_json)
{
    char line[4096];

    snprintf(line, sizeof(line),
             "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\","
             "\"params\":{\"name\":\"fake\",\"arguments\":%s}}",
             args_json);
    return rpc(s, line);
}

static void test_tool_call(void **state)
{
    struct mcp_conn s;
    json_t *o;
    json_t *r;
    json_t *sc;
    json_t *text;

    (void)state;
    initialize(&s);
    calls = 0;
    o = call_fake(&s, "{\"name\":\"x1\",\"purpose\":\"why\",\"colour\":\"red\","
                      "\"headers\":{\"A\":\"b\"},\"body\":\"a\\nb\",\"project\":null,"
                      "\"id\":\"0b6f1c2e-8d4a-4c1e-9f3b-5a7d2e9c1b40\"}");
    r = result_of(o);
    assert_int_equal(calls, 1);
    assert_true(json_is_false(json_object_get(r, "isError")));
    sc = json_object_get(r, "structuredContent");
    assert_string_equal(json_string_value(json_object_get(sc, "name")), "x1");
    text = json_array_get(json_object_get(r, "content"), 0);
    assert_string_equal(json_string_value(json_object_get(text, "type")), "text");
    {
        /* The text is the JSON of the structured content. */
        json_t *again = json_loads(json_string_value(json_object_get(text, "text")), 0, NULL);

        assert_non_null(again);
        assert_true(json_equal(again, sc));
        json_decref(again);
    }
    json_decref(o);
    /* No arguments at all for a tool that takes none. */
    o = rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\","
                "\"params\":{\"name\":\"nothing\"}}");
    (void)result_of(o);
    json_decref(o);
    assert_int_equal(calls, 2);
}

static void test_tool_bad_arguments(void **state)
{
    static const struct {
        const char *args;
        const char *needle;
    } cases[] = {
        {"{\"purpose\":\"why\"}", "arguments.name is required"},
        {"{\"name\":null,\"purpose\":\"why\"}", "arguments.name is required"},
        {"{\"name\":\"x\"}", "arguments.purpose is required"},
        {"{\"name\":\"x\",\"purpose\":\"why\",\"org\":\"other\"}", "arguments.org"},
        {"{\"name\":\"x\",\"purpose\":\"why\",\"\\u001bx\":\"1\"}", "no such argument"},
        {"{\"name\":\"X\",\"purpose\":\"why\"}", "arguments.name must be a name"},
        {"{\"name\":\"../etc\",\"purpose\":\"why\"}", "arguments.name must be a name"},
        {"{\"name\":7,\"purpose\":\"why\"}", "arguments.name must be a string"},
        {"{\"name\":\"x\",\"purpose\":\"\"}", "arguments.purpose must be 1 to 16"},
        {"{\"name\":\"x\",\"purpose\":\"seventeen bytes!!\"}", "arguments.purpose must be 1 to 16"},
        {"{\"name\":\"x\",\"purpose\":\"a\\nb\"}", "arguments.purpose"},
        {"{\"name\":\"x\",\"purpose\":\"why\",\"colour\":\"blue\"}", "arguments.colour"},
        {"{\"name\":\"x\",\"purpose\":\"why\",\"colour\":\"RED\"}", "arguments.colour"},
        {"{\"name\":\"x\",\"purpose\":\"why\",\"headers\":[]}", "arguments.headers"},
        {"{\"name\":\"x\",\"purpose\":\"why\",\"headers\":{\"a\":1}}", "arguments.headers"},
        {"{\"name\":\"x\",\"purpose\":\"why\",\"headers\":{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\"}}",
         "at most 2"},
        {"{\"name\":\"x\",\"purpose\":\"why\",\"body\":\"123456789\"}", "arguments.body"},
        {"{\"name\":\"x\",\"purpose\":\"why\",\"body\":\"a\\u0000b\"}", NULL},
        {"{\"name\":\"x\",\"purpose\":\"why\",\"id\":\"not-a-uuid\"}", "arguments.id"},
        {"{\"name\":\"x\",\"purpose\":\"why\",\"id\":\"0b6f1c2e-8d4a-4c1e-9f3b-5a7d2e9c1b4\"}",
         "arguments.id"},
        {"[]", "params.arguments must be an object"},
        {"\"x\"", "params.arguments must be an object"},
    };
    struct mcp_conn s;

    (void)state;
    initialize(&s);
    calls = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *o = call_fake(&s, cases[i].args);

        if (cases[i].needle == NULL) {
            /* A NUL in a string: the line itself is refused by the parser. */
            expect_error(o, MCP_PARSE_ERROR, NULL, NULL);
            continue;
        }
        expect_error(o, MCP_INVALID_PARAMS, "7", cases[i].needle);
    }
    /* No tool ran for any of them. */
    assert_int_equal(calls, 0);
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\","
                         "\"params\":{\"name\":\"nosuch\",\"arguments\":{}}}"),
                 MCP_INVALID_PARAMS, "7", "no such tool");
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\","
                         "\"params\":{\"arguments\":{}}}"),
                 MCP_INVALID_PARAMS, "7", "params.name");
    expect_error(rpc(&s, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\"}"),
                 MCP_INVALID_PARAMS, "7", "params");
    assert_int_equal(calls, 0);
}

static void test_tool_failures_and_guard(void **state)
{
    struct mcp_conn s;
    char *reply = NULL;
    const char *line = "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\","
                       "\"params\":{\"name\":\"fake\",\"arguments\":{\"name\":\"leak\","
                       "\"purpose\":\"why\"}}}";

    (void)state;
    initialize(&s);
    expect_error(call_fake(&s, "{\"name\":\"boom\",\"purpose\":\"why\"}"), MCP_INTERNAL_ERROR, "7",
                 "fake upstream is down");
    expect_error(call_fake(&s, "{\"name\":\"bad\",\"purpose\":\"why\"}"), MCP_INVALID_PARAMS, "7",
                 "bad here");
    /* The guard withholds an answer holding the client's token: not a byte of it goes out. */
    assert_int_equal(mcp_handle_line(&s, line, strlen(line), &reply), COFFER_OK);
    assert_non_null(reply);
    assert_null(strstr(reply, OWN_TOKEN));
    assert_non_null(strstr(reply, "withheld"));
    assert_non_null(strstr(reply, "-32603"));
    assert_non_null(strstr(reply, "\"id\":7"));
    mcp_reply_free(reply);
}

/* ---- The line reader ------------------------------------------------------------------------ */

/* A temporary file holding len bytes of data, positioned at its start. */
static int file_with(const char *data, size_t len)
{
    char path[] = "/tmp/cli-mcp-rpc-test.XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(unlink(path), 0);
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, data + off, len - off);

        assert_true(w > 0);
        off += (size_t)w;
    }
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

/* Everything in fd from its start, NUL-terminated (caller frees). */
static char *read_all(int fd, size_t *len)
{
    off_t size = lseek(fd, 0, SEEK_END);
    char *buf = coffer_calloc((size_t)size + 1, 1);
    size_t got = 0;

    assert_non_null(buf);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    while (got < (size_t)size) {
        ssize_t n = read(fd, buf + got, (size_t)size - got);

        assert_true(n > 0);
        got += (size_t)n;
    }
    *len = got;
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++) {
        n += *s == '\n';
    }
    return n;
}

static void test_serve(void **state)
{
    size_t cap = 3 * MCP_LINE_MAX;
    char *in = coffer_calloc(cap, 1);
    struct mcp_conn s;
    size_t len = 0;
    size_t out_len;
    char *out;
    int in_fd;
    int out_fd;
    char *p;

    (void)state;
    assert_non_null(in);
    mcp_conn_init(&s, &server);
    len += (size_t)sprintf(in + len, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\","
                                     "\"params\":{\"protocolVersion\":\"2025-03-26\"}}\n");
    len += (size_t)sprintf(in + len, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/"
                                     "initialized\"}\n");
    /* One byte over the limit: answered once, skipped, and the next line still served. */
    in[len++] = '"';
    memset(in + len, 'a', MCP_LINE_MAX - 1);
    len += MCP_LINE_MAX - 1;
    in[len++] = '"';
    in[len++] = '\n';
    len += (size_t)sprintf(in + len, PING, 2);
    in[len++] = '\n';
    /* Exactly the limit: a message padded with spaces is served. */
    {
        size_t start = len;

        len += (size_t)sprintf(in + len, PING, 3);
        memset(in + len, ' ', MCP_LINE_MAX - (len - start));
        len = start + MCP_LINE_MAX;
        in[len++] = '\n';
    }
    len += (size_t)sprintf(in + len, "{\"bad json\n");
    len += (size_t)sprintf(in + len, PING, 4);
    in[len++] = '\r';
    in[len++] = '\n';
    /* The last line has no newline. */
    len += (size_t)sprintf(in + len, PING, 5);
    in_fd = file_with(in, len);
    out_fd = file_with("", 0);
    assert_int_equal(mcp_serve(&s, in_fd, out_fd), COFFER_OK);
    out = read_all(out_fd, &out_len);
    /* initialize, oversize, 2, 3, parse error, 4, 5: seven answers, each one line. */
    assert_int_equal(count_lines(out), 7);
    assert_int_equal(out[out_len - 1], '\n');
    p = out;
    assert_non_null(strstr(p, "\"protocolVersion\":\"2025-03-26\""));
    p = strchr(p, '\n') + 1;
    assert_non_null(strstr(p, "-32600"));
    assert_true(strstr(p, "-32600") < strchr(p, '\n'));
    assert_true(strstr(p, "\"id\":null") < strchr(p, '\n'));
    p = strchr(p, '\n') + 1;
    assert_true(strncmp(p, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n", 36) == 0);
    p = strchr(p, '\n') + 1;
    assert_true(strncmp(p, "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n", 36) == 0);
    p = strchr(p, '\n') + 1;
    assert_true(strstr(p, "-32700") < strchr(p, '\n'));
    p = strchr(p, '\n') + 1;
    assert_true(strncmp(p, "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{}}\n", 36) == 0);
    p = strchr(p, '\n') + 1;
    assert_true(strncmp(p, "{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}\n", 36) == 0);
    coffer_free(out);
    close(in_fd);
    close(out_fd);
    coffer_freezero(in, cap);
}

static void test_serve_write_fails(void **state)
{
    const char *line = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n";
    struct mcp_conn s;
    int in_fd = file_with(line, strlen(line));
    int out_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    (void)state;
    assert_true(out_fd >= 0);
    mcp_conn_init(&s, &server);
    assert_int_equal(mcp_serve(&s, in_fd, out_fd), COFFER_E_IO);
    assert_non_null(strstr(coffer_err_detail(), "writing an answer"));
    close(in_fd);
    close(out_fd);
    /* An empty input is a clean end. */
    in_fd = file_with("", 0);
    out_fd = file_with("", 0);
    assert_int_equal(mcp_serve(&s, in_fd, out_fd), COFFER_OK);
    assert_int_equal(lseek(out_fd, 0, SEEK_END), 0);
    close(in_fd);
    close(out_fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_notifications_and_responses),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_before_initialize),
        cmocka_unit_test(test_initialize_versions),
        cmocka_unit_test(test_tools_list),
        cmocka_unit_test(test_tool_call),
        cmocka_unit_test(test_tool_bad_arguments),
        cmocka_unit_test(test_tool_failures_and_guard),
        cmocka_unit_test(test_serve),
        cmocka_unit_test(test_serve_write_fails),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
