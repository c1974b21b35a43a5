/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to the coffer command: `coffer mcp`, a Model Context Protocol
 * server on stdin and stdout. mcp_rpc.c owns the transport (one JSON-RPC
 * 2.0 message per line), the checks every message passes, the protocol's
 * lifecycle (initialize, ping, tools/list) and the checks of a tool call's
 * arguments against the tool's declaration; mcp_cmd.c owns the tools
 * themselves, which are calls of cofferd's API.
 *
 * Error codes answered (JSON-RPC 2.0, and one of the protocol's own):
 *   -32700 the line is not JSON;
 *   -32600 not a request object (a batch, a wrong "jsonrpc", an id that is
 *          neither a string nor an integer, no method, params not an
 *          object), a line over MCP_LINE_MAX bytes, or a second initialize;
 *   -32601 a method this server does not offer;
 *   -32602 a tool call whose name or arguments are wrong (the message says
 *          which argument and what is wrong with it);
 *   -32603 a failure of this process (out of memory, an answer withheld);
 *   -32002 a request other than initialize and ping before initialize.
 */
#ifndef COFFER_CLI_MCP_H
#define COFFER_CLI_MCP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "coffer/err.h"

#define MCP_LINE_MAX (1024u * 1024u) /* bytes of one message, without its newline */

#define MCP_PARSE_ERROR (-32700)
#define MCP_INVALID_REQUEST (-32600)
#define MCP_METHOD_NOT_FOUND (-32601)
#define MCP_INVALID_PARAMS (-32602)
#define MCP_INTERNAL_ERROR (-32603)
#define MCP_NOT_INITIALIZED (-32002)

/* The protocol version answered when the client asks for one this server does not know. */
#define MCP_PROTOCOL_LATEST "2025-06-18"

/* What a tool argument may hold; each kind is checked before the tool runs. */
enum mcp_kind {
    MCP_ARG_TEXT,   /* UTF-8 without control characters, 1..max bytes */
    MCP_ARG_BODY,   /* UTF-8 without NUL (newlines allowed), 0..max bytes */
    MCP_ARG_NAME,   /* a Coffer name: ^[a-z0-9][a-z0-9_-]{0,62}$ */
    MCP_ARG_ID,     /* a UUID, as request ids are */
    MCP_ARG_CHOICE, /* one of choices */
    MCP_ARG_MAP,    /* an object of at most max entries, each value a string */
};

struct mcp_arg {
    const char *name;
    enum mcp_kind kind;
    bool required;
    size_t max;                 /* bytes of a string, entries of a map */
    const char *const *choices; /* MCP_ARG_CHOICE: NULL-terminated */
    const char *description;
};

struct mcp_tool {
    const char *name;
    const char *description;
    const struct mcp_arg *args; /* ends with an entry whose name is NULL */
};

/*
 * Runs tool number index of the server's table with args (an object that
 * passed every check of the tool's declaration, borrowed). On COFFER_OK
 * *result is a new CallToolResult object. COFFER_E_INVALID is answered
 * -32602 and any other code -32603, both with the error's detail.
 */
typedef enum coffer_err (*mcp_call_fn)(void *ctx, size_t index, const json_t *args,
                                       json_t **result);

/* Whether an answer may be written; false withholds it (answered -32603 instead). */
typedef bool (*mcp_guard_fn)(void *ctx, const char *line, size_t len);

struct mcp_server {
    const char *name;         /* serverInfo.name */
    const char *version;      /* serverInfo.version */
    const char *instructions; /* one paragraph for the model */
    const struct mcp_tool *tools;
    size_t n_tools;
    mcp_call_fn call;
    mcp_guard_fn guard; /* NULL: every answer may be written */
    void *ctx;
};

/* One client's connection: initialized once "initialize" has been answered. */
struct mcp_conn {
    const struct mcp_server *server; /* borrowed */
    bool initialized;
};

void mcp_conn_init(struct mcp_conn *s, const struct mcp_server *server);

/*
 * Handles one message: len bytes at line, without the newline. On COFFER_OK
 * *reply is NULL when nothing is to be answered (a notification, a blank
 * line, a response) or the answer as one line of JSON without a newline,
 * NUL-terminated, released with mcp_reply_free. COFFER_E_NOMEM only when
 * not even an error answer could be built.
 */
enum coffer_err mcp_handle_line(struct mcp_conn *s, const char *line, size_t len,
                                char **reply) COFFER_MUST_USE;

/* Wipes and releases an answer of mcp_handle_line (NULL is fine). */
void mcp_reply_free(char *reply);

/*
 * Reads messages from in_fd until end of file and writes each answer to
 * out_fd followed by a newline. A line over MCP_LINE_MAX bytes is answered
 * -32600 with id null and skipped up to its newline; a last line without
 * a newline is handled as if it had one. COFFER_OK at end of file,
 * COFFER_E_IO when reading or writing fails (the detail says which).
 */
enum coffer_err mcp_serve(struct mcp_conn *s, int in_fd, int out_fd) COFFER_MUST_USE;

/*
 * A CallToolResult: {"content": [{"type": "text", "text": text}],
 * "structuredContent": structured, "isError": is_error}. structured (may
 * be NULL, then left out) is stolen, also on failure. text NULL means the
 * compact JSON text of structured. NULL when out of memory.
 */
json_t *mcp_tool_result(json_t *structured, const char *text, bool is_error);

/* coffer mcp (mcp_cmd.c): serves until the end of stdin; the exit status. */
int cli_mcp(int argc, char **argv);

#endif
