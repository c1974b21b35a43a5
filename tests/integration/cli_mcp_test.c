/* SPDX-License-Identifier: Apache-2.0 */
/*
 * coffer mcp driven from initialize to the end of its input by a scripted client, against
 * a real cofferd with this test's token and database and a local HTTPS
 * upstream (tests/upstream/echo_upstream.py) with its own CA. The agent's
 * certificate is in coffer mcp's environment, as an agent runtime would
 * put it there.
 *
 * Proved here: initialize answers the version and the tools capability; a
 * notification gets no answer; tools/list declares the four tools with
 * closed object schemas; list_credentials shows the credentials; a
 * use_credential call reaches the upstream with the secret injected while
 * the answer shows [REDACTED], also for a reveal: false credential; a
 * destination outside the spec is a tool error and reaches nothing;
 * request_credential files a pending request, request_status follows it
 * to fulfilled and to denied after an admin decides through the API; a
 * project the agent may not see is a tool error; bad arguments are
 * -32602, an unknown method -32601, malformed JSON -32700 with the next
 * line still served; the end of stdin ends the server with status 0. The
 * secrets never appear in anything coffer mcp wrote (stdout or stderr),
 * nor does the client key's path, and no access of a value happened.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "expect.h"
#include "world.h"

#include "coffer/dev.h"
#include "server/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CANARY "sk-mcp-canary+3f9e/71a2="
#define CANARY_HIDDEN "hidden-mcp-canary-5d04c3"
#define TOKEN_CANARY "cft_mcp_own_token_canary_6c1d"
#define FULFIL_VALUE "pw-mcp-fulfilled-9b8a7c"
#define CREDS "/v1/orgs/dev/projects/demo/credentials"
#define REQS "/v1/orgs/dev/projects/demo/requests"

static struct world w;
static struct coffer_dev_tls tls;
static struct coffer_dev_tls up_tls;
static struct https_target target;
static char dir[] = "/tmp/coffer-cli-mcp.XXXXXX";
static char up_dir[PATH_MAX];
static char config[PATH_MAX];
static char log_path[PATH_MAX];
static char up_log[PATH_MAX];
static char mcp_err[PATH_MAX];
static unsigned short up_port;
static pid_t server;
static pid_t upstream;

/* The running coffer mcp: its pipes and everything it wrote to stdout. */
static struct {
    pid_t pid;
    int in;  /* its stdin */
    int out; /* its stdout */
    char transcript[1 << 20];
    size_t len;  /* bytes in transcript */
    size_t read; /* bytes of transcript handed out as lines */
    int next_id;
} mcp;

/* ---- Processes ----------------------------------------------------------------------------- */

static int start_upstream(void)
{
    return https_upstream_start(UPSTREAM_PY, &up_tls, up_log, log_path, NULL, &up_port, &upstream);
}

static int start_server(void)
{
    unsigned short port = https_free_port();

    https_target_dev(&target, port, &tls);
    if (https_write_config(config, port, &tls, &w.h,
                           "workers: 2\n"
                           "log: info\n"
                           "broker:\n  ca_file: %s\n  connect_timeout_ms: 2000\n"
                           "  timeout_ms: 10000\n",
                           up_tls.ca) != 0) {
        return -1;
    }
    return https_server_start(COFFERD_BIN, config, w.h.env.softhsm_conf, log_path, &target,
                              &server);
}

static int apply_policy(void)
{
    static char policy[4096];

    snprintf(policy, sizeof(policy),
             "version: 1\n"
             "org: dev\n"
             "agent_types: {deployer: , analyst: }\n"
             "projects:\n"
             "  demo:\n"
             "    phases: [build]\n"
             "    members: [deployer, analyst]\n"
             "    credentials:\n"
             "      api:\n"
             "        grants: [{agent_type: deployer}]\n"
             "        usage:\n"
             "          destinations: [\"https://127.0.0.1:%u/allowed\"]\n"
             "          methods: [GET, POST]\n"
             "          inject: [{header: Authorization, value: \"Bearer {{api_key}}\"}]\n"
             "      hidden:\n"
             "        grants: [{agent_type: deployer}]\n"
             "        usage:\n"
             "          destinations: [\"https://127.0.0.1:%u/allowed\"]\n"
             "          methods: [GET]\n"
             "          inject: [{header: Authorization, value: \"Bearer {{api_key}}\"}]\n"
             "        reveal: false\n",
             (unsigned)up_port, (unsigned)up_port);
    return world_apply_policy(&w, policy);
}

/*
 * Starts coffer mcp as the deployer agent, with pipes for stdin and stdout.
 * With probe, the certificate is given by flags and COFFER_TOKEN holds a
 * canary that identifies no one but that no answer may hold.
 */
static int start_mcp(bool probe)
{
    char vars[8][PATH_MAX + 32];
    const char *envp[12];
    size_t e = 0;
    int in[2];
    int out[2];
    int err_fd;

    snprintf(vars[e], sizeof(vars[e]), "COFFER_ADDR=%s", target.base_url);
    envp[e] = vars[e];
    e++;
    snprintf(vars[e], sizeof(vars[e]), "COFFER_CACERT=%s", tls.ca);
    envp[e] = vars[e];
    e++;
    if (probe) {
        snprintf(vars[e], sizeof(vars[e]), "COFFER_TOKEN=%s", TOKEN_CANARY);
        envp[e] = vars[e];
        e++;
    } else {
        snprintf(vars[e], sizeof(vars[e]), "COFFER_CLIENT_CERT=%s", tls.agent_cert);
        envp[e] = vars[e];
        e++;
        snprintf(vars[e], sizeof(vars[e]), "COFFER_CLIENT_KEY=%s", tls.agent_key);
        envp[e] = vars[e];
        e++;
    }
    snprintf(vars[e], sizeof(vars[e]), "COFFER_ORG=dev");
    envp[e] = vars[e];
    e++;
    snprintf(vars[e], sizeof(vars[e]), "COFFER_PROJECT=demo");
    envp[e] = vars[e];
    e++;
    /* The sanitizer settings of the test run, so that its suppressions apply to the child too. */
    if (getenv("LSAN_OPTIONS") != NULL) {
        snprintf(vars[e], sizeof(vars[e]), "LSAN_OPTIONS=%s", getenv("LSAN_OPTIONS"));
        envp[e] = vars[e];
        e++;
    }
    envp[e++] = "PATH=/usr/bin:/bin";
    envp[e] = NULL;
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
        return -1;
    }
    err_fd = open(mcp_err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (err_fd < 0) {
        return -1;
    }
    mcp.pid = fork();
    if (mcp.pid < 0) {
        return -1;
    }
    if (mcp.pid == 0) {
        char *plain[] = {COFFER_BIN, "mcp", NULL};
        char *flags[] = {COFFER_BIN,
                         "mcp",
                         "--cert",
                         (char *)tls.agent_cert,
                         "--client-key",
                         (char *)tls.agent_key,
                         NULL};
        char **argv = probe ? flags : plain;

        if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0 ||
            dup2(err_fd, STDERR_FILENO) < 0) {
            _exit(126);
        }
        execve(COFFER_BIN, argv, (char *const *)envp);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err_fd);
    mcp.in = in[1];
    mcp.out = out[0];
    return 0;
}

/* ---- The scripted client ------------------------------------------------------------------ */

static void send_line(const char *line)
{
    size_t len = strlen(line);

    assert_int_equal(write(mcp.in, line, len), (ssize_t)len);
    assert_int_equal(write(mcp.in, "\n", 1), 1);
}

/*
 * The next line coffer mcp wrote, NUL-terminated in the transcript (its
 * newline replaced); fails after 60 seconds without one, or at its end.
 */
static const char *recv_line(void)
{
    for (;;) {
        char *start = mcp.transcript + mcp.read;
        char *nl = memchr(start, '\n', mcp.len - mcp.read);
        struct pollfd p = {.fd = mcp.out, .events = POLLIN};
        ssize_t n;

        if (nl != NULL) {
            *nl = '\0';
            mcp.read = (size_t)(nl - mcp.transcript) + 1;
            return start;
        }
        if (poll(&p, 1, 60000) != 1) {
            fail_msg("coffer mcp answered nothing within 60 seconds");
        }
        n = read(mcp.out, mcp.transcript + mcp.len, sizeof(mcp.transcript) - 1 - mcp.len);
        if (n <= 0) {
            fail_msg("coffer mcp closed its stdout (%s)", n < 0 ? strerror(errno) : "end of file");
        }
        mcp.len += (size_t)n;
        mcp.transcript[mcp.len] = '\0';
    }
}

/* Sends a request of method with params (JSON text, or NULL) and returns its parsed answer. */
static json_t *request(const char *method, const char *params)
{
    static char line[8192];
    const char *reply;
    json_t *o;
    int id = ++mcp.next_id;

    snprintf(line, sizeof(line), "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"%s\"%s%s}", id,
             method, params != NULL ? ",\"params\":" : "", params != NULL ? params : "");
    send_line(line);
    reply = recv_line();
    o = json_loads(reply, 0, NULL);
    if (o == NULL) {
        fail_msg("not one line of JSON: %s", reply);
    }
    /* Answers come in order: anything unasked (an answered notification) shows up here. */
    if (json_integer_value(json_object_get(o, "id")) != id) {
        fail_msg("answer to id %d expected, got %s", id, reply);
    }
    return o;
}

/* A tool call; returns the answer (the caller releases it). */
static json_t *call_tool(const char *tool, const char *args)
{
    char params[4096];

    snprintf(params, sizeof(params), "{\"name\":\"%s\",\"arguments\":%s}", tool, args);
    return request("tools/call", params);
}

/* The result of a successful tool call (borrowed from o), checking isError. */
static json_t *tool_result(json_t *o, bool is_error)
{
    json_t *r = json_object_get(o, "result");
    json_t *content;

    if (r == NULL) {
        char *dump = json_dumps(o, 0);

        fail_msg("not a result: %s", dump);
    }
    if (json_is_true(json_object_get(r, "isError")) != is_error) {
        char *dump = json_dumps(o, 0);

        fail_msg("isError is not %s: %s", is_error ? "true" : "false", dump);
    }
    content = json_array_get(json_object_get(r, "content"), 0);
    assert_string_equal(json_string_value(json_object_get(content, "type")), "text");
    assert_non_null(json_string_value(json_object_get(content, "text")));
    assert_true(json_is_object(json_object_get(r, "structuredContent")));
    return r;
}

static const char *result_text(json_t *r)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(r, "content"), 0), "text"));
}

/* Asserts o (released here) is an error answer with code whose message holds needle. */
static void expect_error(json_t *o, int code, const char *needle)
{
    json_t *err = json_object_get(o, "error");
    const char *m = json_string_value(json_object_get(err, "message"));

    if (json_integer_value(json_object_get(err, "code")) != code || m == NULL ||
        (needle != NULL && strstr(m, needle) == NULL)) {
        char *dump = json_dumps(o, 0);

        fail_msg("want error %d with '%s', got %s", code, needle != NULL ? needle : "", dump);
    }
    json_decref(o);
}

static size_t upstream_requests(void)
{
    static char buf[1 << 20];
    size_t n = 0;

    https_read_log(up_log, buf, sizeof(buf));
    for (const char *p = buf; *p != '\0'; p++) {
        n += *p == '\n';
    }
    return n;
}

static bool upstream_saw(const char *needle)
{
    static char buf[1 << 20];

    https_read_log(up_log, buf, sizeof(buf));
    return strstr(buf, needle) != NULL;
}

/* As the admin, through the API; asserts the status. */
static void admin(const char *method, const char *path, const char *body, long status)
{
    expect_answer(&target, method, path, body, "admin", NULL, status, "", NULL);
}

/* ---- The conversation -------------------------------------------------------------------------
 */

static void test_store(void **state)
{
    (void)state;
    admin("PUT", CREDS "/api",
          "{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":{\"api_key\":\"" CANARY "\"}}", 201);
    admin("PUT", CREDS "/hidden",
          "{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":{\"api_key\":\"" CANARY_HIDDEN "\"}}",
          201);
    assert_int_equal(start_mcp(false), 0);
}

static void test_initialize(void **state)
{
    json_t *o;
    json_t *r;

    (void)state;
    /* Nothing but ping before initialize. */
    expect_error(request("tools/list", NULL), -32002, "initialize");
    o = request("initialize", "{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},"
                              "\"clientInfo\":{\"name\":\"cli_mcp_test\",\"version\":\"1\"}}");
    r = json_object_get(o, "result");
    assert_string_equal(json_string_value(json_object_get(r, "protocolVersion")), "2025-06-18");
    assert_true(json_is_false(json_object_get(
        json_object_get(json_object_get(r, "capabilities"), "tools"), "listChanged")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r, "serverInfo"), "name")), "coffer");
    assert_non_null(
        strstr(json_string_value(json_object_get(r, "instructions")), "use_credential"));
    json_decref(o);
    /* A notification is never answered: the next answer is the ping's (request checks the id). */
    send_line("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    o = request("ping", NULL);
    assert_int_equal(json_object_size(json_object_get(o, "result")), 0);
    json_decref(o);
}

/* The schema of the tool named name in tools, checked for shape; its "required" as text. */
static void expect_tool(json_t *tools, const char *name, const char *required)
{
    json_t *t = NULL;
    json_t *schema;
    size_t i;
    char *req;

    json_array_foreach(tools, i, t)
    {
        if (strcmp(json_string_value(json_object_get(t, "name")), name) == 0) {
            break;
        }
    }
    assert_true(i < json_array_size(tools));
    assert_non_null(json_string_value(json_object_get(t, "description")));
    schema = json_object_get(t, "inputSchema");
    assert_string_equal(json_string_value(json_object_get(schema, "type")), "object");
    assert_true(json_is_false(json_object_get(schema, "additionalProperties")));
    assert_true(json_is_object(json_object_get(json_object_get(schema, "properties"), "project")));
    /* No tool takes an org: the agent's org is fixed. */
    assert_null(json_object_get(json_object_get(schema, "properties"), "org"));
    req = json_dumps(json_object_get(schema, "required"), JSON_COMPACT);
    assert_string_equal(req, required);
    free(req);
}

static void test_tools_list(void **state)
{
    json_t *o;
    json_t *tools;
    json_t *props;

    (void)state;
    o = request("tools/list", "{}");
    tools = json_object_get(json_object_get(o, "result"), "tools");
    assert_int_equal(json_array_size(tools), 4);
    expect_tool(tools, "list_credentials", "[]");
    expect_tool(tools, "request_credential", "[\"name\",\"type\",\"tier\",\"purpose\"]");
    expect_tool(tools, "request_status", "[\"id\"]");
    expect_tool(tools, "use_credential", "[\"name\",\"purpose\",\"method\",\"url\"]");
    props = json_object_get(json_object_get(json_array_get(tools, 3), "inputSchema"), "properties");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(props, "headers"), "type")), "object");
    assert_string_equal(json_string_value(json_object_get(json_object_get(props, "body"), "type")),
                        "string");
    json_decref(o);
}

static void test_list_credentials(void **state)
{
    json_t *o;
    json_t *r;
    json_t *list;
    json_t *c;
    size_t i;
    bool api = false;
    bool hidden = false;

    (void)state;
    o = call_tool("list_credentials", "{}");
    r = tool_result(o, false);
    list = json_object_get(json_object_get(r, "structuredContent"), "credentials");
    json_array_foreach(list, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));

        api = api || strcmp(name, "api") == 0;
        hidden = hidden || strcmp(name, "hidden") == 0;
        assert_string_equal(json_string_value(json_object_get(c, "type")), "api_key");
    }
    assert_true(api && hidden);
    assert_non_null(strstr(result_text(r), "\"name\":\"api\""));
    json_decref(o);
    /* The same, naming the project. */
    o = call_tool("list_credentials", "{\"project\":\"demo\"}");
    (void)tool_result(o, false);
    json_decref(o);
    /* A project the agent is not in is the server's refusal, as a tool error. */
    o = call_tool("list_credentials", "{\"project\":\"elsewhere\"}");
    r = tool_result(o, true);
    assert_true(strncmp(result_text(r), "permission_denied: ", 19) == 0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r, "structuredContent"), "error")),
        "permission_denied");
    json_decref(o);
}

static void test_use_credential(void **state)
{
    char args[1024];
    size_t before = upstream_requests();
    json_t *o;
    json_t *r;
    json_t *sc;

    (void)state;
    snprintf(args, sizeof(args),
             "{\"name\":\"api\",\"purpose\":\"check the balance\",\"method\":\"GET\","
             "\"url\":\"https://127.0.0.1:%u/allowed/echo\","
             "\"headers\":{\"Accept\":\"application/json\"}}",
             (unsigned)up_port);
    o = call_tool("use_credential", args);
    r = tool_result(o, false);
    sc = json_object_get(r, "structuredContent");
    assert_int_equal(json_integer_value(json_object_get(sc, "status")), 200);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(sc, "headers"), "X-Echo")), "[REDACTED]");
    assert_non_null(strstr(json_string_value(json_object_get(sc, "body")), "[REDACTED]"));
    assert_non_null(strstr(result_text(r), "[REDACTED]"));
    json_decref(o);
    /* The upstream got the secret where the spec puts it, and the agent's own header. */
    assert_int_equal(upstream_requests(), before + 1);
    assert_true(upstream_saw("\"Authorization\": \"Bearer " CANARY "\""));
    assert_true(upstream_saw("\"Accept\": \"application/json\""));

    /* A reveal: false credential is used the same way. */
    snprintf(args, sizeof(args),
             "{\"name\":\"hidden\",\"purpose\":\"check the balance\",\"method\":\"GET\","
             "\"url\":\"https://127.0.0.1:%u/allowed/echo\"}",
             (unsigned)up_port);
    o = call_tool("use_credential", args);
    r = tool_result(o, false);
    assert_non_null(strstr(result_text(r), "[REDACTED]"));
    json_decref(o);
    assert_true(upstream_saw("Bearer " CANARY_HIDDEN));
}

static void test_destination_refused(void **state)
{
    char args[1024];
    size_t before = upstream_requests();
    json_t *o;
    json_t *r;

    (void)state;
    snprintf(args, sizeof(args),
             "{\"name\":\"api\",\"purpose\":\"check the balance\",\"method\":\"GET\","
             "\"url\":\"https://127.0.0.1:%u/other\"}",
             (unsigned)up_port);
    o = call_tool("use_credential", args);
    r = tool_result(o, true);
    assert_true(strncmp(result_text(r), "destination_refused: ", 21) == 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r, "structuredContent"), "http_status")),
        403);
    json_decref(o);
    /* A method outside the spec, likewise. */
    snprintf(args, sizeof(args),
             "{\"name\":\"api\",\"purpose\":\"check the balance\",\"method\":\"DELETE\","
             "\"url\":\"https://127.0.0.1:%u/allowed/echo\"}",
             (unsigned)up_port);
    o = call_tool("use_credential", args);
    r = tool_result(o, true);
    assert_true(strncmp(result_text(r), "destination_refused: ", 21) == 0);
    json_decref(o);
    /* Nothing reached the upstream. */
    assert_int_equal(upstream_requests(), before);
}

/* Files a request for name and returns its id in id (37 bytes). */
static void file_request(const char *name, char *id)
{
    char args[512];
    json_t *o;
    json_t *sc;

    snprintf(args, sizeof(args),
             "{\"name\":\"%s\",\"type\":\"basic_auth\",\"tier\":\"high\","
             "\"purpose\":\"run the nightly reconciliation\",\"urgency\":\"normal\"}",
             name);
    o = call_tool("request_credential", args);
    sc = json_object_get(tool_result(o, false), "structuredContent");
    assert_string_equal(json_string_value(json_object_get(sc, "state")), "pending");
    assert_string_equal(json_string_value(json_object_get(sc, "name")), name);
    assert_int_equal(strlen(json_string_value(json_object_get(sc, "id"))), 36);
    snprintf(id, 37, "%s", json_string_value(json_object_get(sc, "id")));
    json_decref(o);
}

/* request_status of id: its structured state; reason, if any, copied into reason. */
static void expect_state(const char *id, const char *state, const char *reason)
{
    char args[128];
    json_t *o;
    json_t *sc;

    snprintf(args, sizeof(args), "{\"id\":\"%s\"}", id);
    o = call_tool("request_status", args);
    sc = json_object_get(tool_result(o, false), "structuredContent");
    assert_string_equal(json_string_value(json_object_get(sc, "state")), state);
    if (reason != NULL) {
        assert_string_equal(json_string_value(json_object_get(sc, "reason")), reason);
    }
    json_decref(o);
}

static void test_requests(void **state)
{
    char id[37];
    char id2[37];
    char path[256];

    (void)state;
    file_request("warehouse-db", id);
    expect_state(id, "pending", NULL);
    snprintf(path, sizeof(path), REQS "/%s/fulfill", id);
    admin("POST", path, "{\"keys\":{\"username\":\"recon\",\"password\":\"" FULFIL_VALUE "\"}}",
          200);
    expect_state(id, "fulfilled", NULL);

    file_request("crm-db", id2);
    expect_state(id2, "pending", NULL);
    snprintf(path, sizeof(path), REQS "/%s/deny", id2);
    admin("POST", path, "{\"reason\":\"use the read replica\"}", 200);
    expect_state(id2, "denied", "use the read replica");
}

static void test_bad_arguments(void **state)
{
    (void)state;
    expect_error(call_tool("use_credential", "{\"name\":\"api\",\"purpose\":\"p\","
                                             "\"method\":\"GET\"}"),
                 -32602, "arguments.url is required");
    expect_error(call_tool("use_credential", "{\"name\":\"api\",\"purpose\":\"p\","
                                             "\"method\":\"BREW\",\"url\":\"https://x/\"}"),
                 -32602, "arguments.method");
    expect_error(call_tool("list_credentials", "{\"project\":\"../admin\"}"), -32602,
                 "arguments.project must be a name");
    expect_error(call_tool("list_credentials", "{\"org\":\"other\"}"), -32602, "arguments.org");
    expect_error(call_tool("request_status", "{\"id\":\"nope\"}"), -32602, "arguments.id");
    expect_error(call_tool("request_credential", "{\"name\":\"x\",\"type\":\"password\","
                                                 "\"tier\":\"low\",\"purpose\":\"p\"}"),
                 -32602, "arguments.type");
    expect_error(call_tool("no_such_tool", "{}"), -32602, "no such tool");
}

static void test_protocol_errors(void **state)
{
    const char *reply;
    json_t *o;

    (void)state;
    expect_error(request("resources/list", NULL), -32601, "method not found");
    /* Malformed JSON: -32700 with id null, and the next line is still served. */
    send_line("{\"jsonrpc\":\"2.0\",\"id\":99,\"method\":");
    reply = recv_line();
    o = json_loads(reply, 0, NULL);
    assert_non_null(o);
    assert_true(json_is_null(json_object_get(o, "id")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "error"), "code")),
                     -32700);
    json_decref(o);
    /* A batch. */
    send_line("[{\"jsonrpc\":\"2.0\",\"id\":98,\"method\":\"ping\"}]");
    reply = recv_line();
    assert_non_null(strstr(reply, "-32600"));
    /* A cancellation (a notification) is not answered either: the ping's answer comes next. */
    send_line("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\","
              "\"params\":{\"requestId\":3}}");
    o = request("ping", NULL);
    assert_non_null(json_object_get(o, "result"));
    json_decref(o);
}

static void test_end_of_input(void **state)
{
    int status = -1;
    char extra[64];
    ssize_t n;

    (void)state;
    close(mcp.in);
    mcp.in = -1;
    assert_int_equal(coffer_proc_wait(mcp.pid, 30000, &status), COFFER_OK);
    mcp.pid = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* Nothing after the last answer. */
    n = read(mcp.out, extra, sizeof(extra));
    assert_int_equal(n, 0);
    assert_int_equal(mcp.read, mcp.len);
}

static void test_no_secret_written(void **state)
{
    static const char *const secrets[] = {CANARY, CANARY_HIDDEN, FULFIL_VALUE,
                                          "sk-mcp-canary%2B3f9e"};
    static char err[1 << 16];

    (void)state;
    https_read_log(mcp_err, err, sizeof(err));
    /* Every line of stdout was an answer; between them they hold no value. */
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        assert_null(memmem(mcp.transcript, mcp.len, secrets[i], strlen(secrets[i])));
        assert_null(strstr(err, secrets[i]));
    }
    assert_null(memmem(mcp.transcript, mcp.len, tls.agent_key, strlen(tls.agent_key)));
    assert_null(strstr(err, tls.agent_key));
    /* No value was ever read: the tools have no way to the access route. */
    assert_true(
        world_sql_is(&w, "SELECT count(*) FROM coffer.audit_events WHERE action = 'access'", "0"));
    /* The uses are on record with their purpose. */
    assert_true(world_sql_is(&w,
                             "SELECT count(*) > 0 FROM coffer.audit_events WHERE action = 'use' "
                             "AND allowed AND purpose = 'check the balance'",
                             "t"));
}

/*
 * A second run whose environment holds a bearer token (the identity is
 * the certificate given by flags): an answer that would carry the token,
 * here echoed by the upstream from a header the caller set, is withheld.
 */
static void test_own_token_withheld(void **state)
{
    static char err[1 << 16];
    char args[1024];
    int status = -1;
    json_t *o;

    (void)state;
    memset(&mcp, 0, sizeof(mcp));
    mcp.in = -1;
    mcp.out = -1;
    assert_int_equal(start_mcp(true), 0);
    o = request("initialize", "{\"protocolVersion\":\"2024-11-05\"}");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(o, "result"), "protocolVersion")),
        "2024-11-05");
    json_decref(o);
    snprintf(args, sizeof(args),
             "{\"name\":\"api\",\"purpose\":\"check the balance\",\"method\":\"GET\","
             "\"url\":\"https://127.0.0.1:%u/allowed/echo\","
             "\"headers\":{\"X-Probe\":\"" TOKEN_CANARY "\"}}",
             (unsigned)up_port);
    expect_error(call_tool("use_credential", args), -32603, "withheld");
    /* The call itself was made as the certificate's agent: the upstream got it. */
    assert_true(upstream_saw("\"X-Probe\": \"" TOKEN_CANARY "\""));
    close(mcp.in);
    mcp.in = -1;
    assert_int_equal(coffer_proc_wait(mcp.pid, 30000, &status), COFFER_OK);
    mcp.pid = 0;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    https_read_log(mcp_err, err, sizeof(err));
    assert_null(memmem(mcp.transcript, mcp.len, TOKEN_CANARY, strlen(TOKEN_CANARY)));
    assert_null(strstr(err, TOKEN_CANARY));
    assert_null(memmem(mcp.transcript, mcp.len, CANARY, strlen(CANARY)));
}

/* ---- Set-up --------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL || coffer_dev_tls_provision(dir, &tls) != COFFER_OK) {
        return -1;
    }
    snprintf(up_dir, sizeof(up_dir), "%s/upstream", dir);
    if (mkdir(up_dir, 0700) != 0 || coffer_dev_tls_provision(up_dir, &up_tls) != COFFER_OK) {
        return -1;
    }
    snprintf(config, sizeof(config), "%s/coffer.yaml", dir);
    snprintf(log_path, sizeof(log_path), "%s/cofferd.log", dir);
    snprintf(up_log, sizeof(up_log), "%s/upstream.log", dir);
    snprintf(mcp_err, sizeof(mcp_err), "%s/mcp.err", dir);
    mcp.in = -1;
    mcp.out = -1;
    if (start_upstream() != 0 || apply_policy() != 0) {
        return -1;
    }
    return start_server();
}

static int teardown(void **state)
{
    (void)state;
    if (mcp.in >= 0) {
        close(mcp.in);
    }
    https_process_stop(&mcp.pid);
    if (mcp.out >= 0) {
        close(mcp.out);
    }
    https_process_stop(&server);
    https_process_stop(&upstream);
    https_remove_dir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_initialize),
        cmocka_unit_test(test_tools_list),
        cmocka_unit_test(test_list_credentials),
        cmocka_unit_test(test_use_credential),
        cmocka_unit_test(test_destination_refused),
        cmocka_unit_test(test_requests),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_end_of_input),
        cmocka_unit_test(test_no_secret_written),
        cmocka_unit_test(test_own_token_withheld),
    };
    int rc;

    /* A write to a child that died must fail the test, not kill it. */
    (void)signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    world_open("cli_mcp", "dev", &w);
    world_add_project(&w, "demo", NULL);
    rc = cmocka_run_group_tests(tests, setup, teardown);
    world_close(&w);
    curl_global_cleanup();
    return rc;
}
