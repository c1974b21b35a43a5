/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzzes the message handling of `coffer mcp` (src/cli/mcp_rpc.c): the
 * bytes are split at newlines into messages handed in turn to
 * mcp_handle_line on one connection, so that the lifecycle (initialize
 * first, once) is reached too. The tools are a table with an argument of
 * every kind, whose call answers a fixed result without reaching cofferd.
 * Every answer must be one line of JSON; anything else is a finding.
 */
#include "fuzz.h"

#include "cli/mcp.h"

#include <stdlib.h>
#include <string.h>

static const char *const colours[] = {"red", "green", NULL};

static const struct mcp_arg all_args[] = {{"project", MCP_ARG_NAME, false, 0, NULL, "a project"},
                                          {"name", MCP_ARG_NAME, true, 0, NULL, "a name"},
                                          {"purpose", MCP_ARG_TEXT, true, 64, NULL, "a purpose"},
                                          {"colour", MCP_ARG_CHOICE, false, 0, colours, "a colour"},
                                          {"headers", MCP_ARG_MAP, false, 4, NULL, "headers"},
                                          {"body", MCP_ARG_BODY, false, 64, NULL, "a body"},
                                          {"id", MCP_ARG_ID, false, 0, NULL, "an id"},
                                          {NULL, MCP_ARG_TEXT, false, 0, NULL, NULL}};

static const struct mcp_arg no_args[] = {{NULL, MCP_ARG_TEXT, false, 0, NULL, NULL}};

static const struct mcp_tool tools[] = {
    {"all_kinds", "takes an argument of every kind", all_args},
    {"nothing", "takes nothing", no_args},
};

static enum coffer_err fixed_call(void *ctx, size_t index, const json_t *args, json_t **result)
{
    (void)ctx;
    (void)index;
    (void)args;
    *result = mcp_tool_result(json_pack("{s:b}", "ok", 1), NULL, false);
    return *result != NULL ? COFFER_OK : COFFER_E_NOMEM;
}

static const struct mcp_server server = {
    .name = "coffer",
    .version = "0.0.0",
    .instructions = "fuzzing",
    .tools = tools,
    .n_tools = sizeof(tools) / sizeof(tools[0]),
    .call = fixed_call,
    .guard = NULL,
    .ctx = NULL,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *at = (const char *)data;
    const char *end = at + size;
    struct mcp_conn conn;

    mcp_conn_init(&conn, &server);
    while (at <= end) {
        const char *nl = memchr(at, '\n', (size_t)(end - at));
        size_t len = nl != NULL ? (size_t)(nl - at) : (size_t)(end - at);
        char *reply = NULL;

        if (mcp_handle_line(&conn, at, len, &reply) == COFFER_OK && reply != NULL) {
            json_error_t e;
            json_t *o;

            if (strchr(reply, '\n') != NULL || (o = json_loads(reply, 0, &e)) == NULL) {
                abort();
            }
            json_decref(o);
        }
        mcp_reply_free(reply);
        if (nl == NULL) {
            break;
        }
        at = nl + 1;
    }
    return 0;
}
