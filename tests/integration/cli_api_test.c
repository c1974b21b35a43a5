/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The coffer command as a client of the API, against a real cofferd with
 * this test's token and database and the test CA's certificates: put with
 * --stdin and --from-file, get, list (the admin sees everything, each
 * agent only what it holds a grant for), access (the value on stdout, a
 * denial exiting 1 with permission_denied), revoke, phase, --json output
 * that parses, and the exit statuses of every kind of trouble: no
 * COFFER_ADDR, a CA that did not sign the server, http://, a value given on
 * the command line, no terminal for --key, malformed names and ids. The
 * request, approval and token commands are checked for their usage errors,
 * and end to end when the server offers their routes. Every metadata read
 * is audited, and no value reaches an audit row or the server's output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "https.h"
#include "world.h"

#include "coffer/dev.h"
#include "server/proc.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SECRET "sk_live_cli_9a8b7c6d5e4f"
#define DB_PASSWORD "pw-cli-0f1e2d3c"
#define TTY_USER "alice-at-the-terminal"
#define TTY_PASS "hunter2-typed-9c8d"

static struct world w;
static struct coffer_dev_tls tls;
static struct coffer_dev_tls other_tls; /* a second CA that signed nothing of the server's */
static char dir[] = "/tmp/coffer-cli-api.XXXXXX";
static char other_dir[PATH_MAX];
static char config[PATH_MAX];
static char log_path[PATH_MAX];
static char addr[64];
static pid_t server;

static const char policy[] = "version: 1\n"
                             "org: dev\n"
                             "agent_types: {deployer: , analyst: }\n"
                             "projects:\n"
                             "  demo:\n"
                             "    phases: [build, production]\n"
                             "    members: [deployer, analyst]\n"
                             "    credentials:\n"
                             "      stripe:\n"
                             "        grants: [{agent_type: deployer}]\n"
                             "        purposes: [\"deploy *\"]\n"
                             "  ops:\n"
                             "    phases: [run]\n"
                             "    members: [analyst]\n";

/* ---- Running the command ------------------------------------------------------ */

struct call {
    const char *who;        /* "admin", "agent", "agent2", or NULL for no certificate */
    const char *cacert;     /* NULL: the test CA */
    const char *stdin_path; /* NULL: /dev/null */
    const char *token;      /* COFFER_TOKEN, or NULL */
    bool no_addr;           /* leave COFFER_ADDR unset */
};

/* A command line and its environment, built in place. */
struct cmdline {
    const char *argv[32];
    char vars[6][PATH_MAX + 32];
    const char *envp[8];
};

/* coffer with args as c says; stdin comes through sh's redirection, never through argv. */
static void build(const struct call *c, const char *const *args, struct cmdline *cl)
{
    size_t n = 0;
    size_t e = 0;

    if (c->stdin_path != NULL) {
        cl->argv[n++] = "/bin/sh";
        cl->argv[n++] = "-c";
        cl->argv[n++] = "exec \"$0\" \"$@\" < \"$CLI_TEST_STDIN\"";
    }
    cl->argv[n++] = COFFER_BIN;
    while (*args != NULL && n < 31) {
        cl->argv[n++] = *args++;
    }
    cl->argv[n] = NULL;
    if (!c->no_addr) {
        snprintf(cl->vars[e], sizeof(cl->vars[e]), "COFFER_ADDR=%s", addr);
        cl->envp[e] = cl->vars[e];
        e++;
    }
    snprintf(cl->vars[e], sizeof(cl->vars[e]), "COFFER_CACERT=%s",
             c->cacert != NULL ? c->cacert : tls.ca);
    cl->envp[e] = cl->vars[e];
    e++;
    if (c->who != NULL) {
        bool admin = strcmp(c->who, "admin") == 0;
        bool agent = strcmp(c->who, "agent") == 0;

        snprintf(cl->vars[e], sizeof(cl->vars[e]), "COFFER_CLIENT_CERT=%s",
                 admin   ? tls.admin_cert
                 : agent ? tls.agent_cert
                         : tls.agent2_cert);
        cl->envp[e] = cl->vars[e];
        e++;
        snprintf(cl->vars[e], sizeof(cl->vars[e]), "COFFER_CLIENT_KEY=%s",
                 admin   ? tls.admin_key
                 : agent ? tls.agent_key
                         : tls.agent2_key);
        cl->envp[e] = cl->vars[e];
        e++;
    }
    if (c->token != NULL) {
        snprintf(cl->vars[e], sizeof(cl->vars[e]), "COFFER_TOKEN=%s", c->token);
        cl->envp[e] = cl->vars[e];
        e++;
    }
    if (c->stdin_path != NULL) {
        snprintf(cl->vars[e], sizeof(cl->vars[e]), "CLI_TEST_STDIN=%s", c->stdin_path);
        cl->envp[e] = cl->vars[e];
        e++;
    }
    cl->envp[e++] = "PATH=/usr/bin:/bin";
    cl->envp[e] = NULL;
}

static void run_as(const struct call *c, const char *const *args, struct harness_run *r)
{
    struct cmdline cl;

    build(c, args, &cl);
    harness_run(cl.argv, cl.envp, r);
}

static void run(const char *who, const char *const *args, struct harness_run *r)
{
    struct call c = {.who = who};

    run_as(&c, args, r);
}

/* Asserts the exit status and that the output holds needle (NULL: anything). */
static void check(const struct harness_run *r, const char *const *args, int status,
                  const char *needle)
{
    if (r->status != status || (needle != NULL && strstr(r->out, needle) == NULL)) {
        fprintf(stderr, "coffer %s %s: status %d (want %d), output:\n%s\n(want '%s')\n", args[0],
                args[1] != NULL ? args[1] : "", r->status, status, r->out,
                needle != NULL ? needle : "");
    }
    assert_int_equal(r->status, status);
    if (needle != NULL) {
        assert_non_null(strstr(r->out, needle));
    }
}

static void expect(const char *who, const char *const *args, int status, const char *needle)
{
    struct harness_run r;

    run(who, args, &r);
    check(&r, args, status, needle);
}

/* Writes text to dir/name with mode 0600 and returns the path (static slots). */
static const char *file(const char *name, const char *text)
{
    static char paths[8][PATH_MAX];
    static int next;
    char *p = paths[next++ % 8];
    int fd;

    snprintf(p, PATH_MAX, "%s/%s", dir, name);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);
    return p;
}

/* ---- Tests ---------------------------------------------------------------------------- */

static void test_usage_errors(void **state)
{
    struct call no_addr = {.who = "admin", .no_addr = true};
    struct harness_run r;

    (void)state;
    {
        const char *args[] = {"list", "dev/demo", NULL};

        run_as(&no_addr, args, &r);
        check(&r, args, 2, "COFFER_ADDR");
    }
    {
        /* A value on the command line is refused before anything is sent. */
        const char *args[] = {"put", "dev/demo/leak", "--type",          "api_key", "--tier",
                              "low", "--key",         "api_key=" SECRET, NULL};

        expect("admin", args, 2, "never from the command line");
    }
    {
        const char *args[] = {"put", "dev/demo/x", "--tier", "low", "--stdin", NULL};

        expect("admin", args, 2, "--type and --tier are required");
    }
    {
        const char *args[] = {"put", "dev/demo/x", "--type", "api_key", "--tier", "low", NULL};

        expect("admin", args, 2, "give the values");
    }
    {
        /* No terminal under the test: --key cannot read a value, and says what to use. */
        const char *args[] = {"put", "dev/demo/x", "--type",  "api_key", "--tier",
                              "low", "--key",      "api_key", NULL};

        expect("admin", args, 2, "no terminal");
    }
    {
        const char *args[] = {"get", "dev/demo", NULL};

        expect("admin", args, 2, "is not ORG/PROJECT/NAME");
    }
    {
        const char *args[] = {"get", "dev/demo/../x", NULL};

        expect("admin", args, 2, "is not ORG/PROJECT/NAME");
    }
    {
        const char *args[] = {"list", "dev/demo", "--bogus", NULL};

        expect("admin", args, 2, "unknown option '--bogus'");
    }
    {
        const char *args[] = {"list", "dev/demo", "--addr", "http://127.0.0.1:1", NULL};

        expect("admin", args, 2, "only TLS");
    }
    {
        const char *args[] = {"access", "dev/demo/stripe", NULL};

        expect("agent", args, 2, "--purpose is required");
    }
    {
        const char *args[] = {"revoke", "dev/demo/stripe", NULL};

        expect("admin", args, 2, "--reason is required");
    }
    {
        const char *args[] = {"list", "dev/demo", "--token", "t", "--cert", tls.admin_cert, NULL};

        expect("admin", args, 2, "not both");
    }
}

static void test_request_approve_token_usage(void **state)
{
    (void)state;
    {
        const char *args[] = {"request", "create", "dev/demo", "--type", "api_key", NULL};

        expect("agent", args, 2, "are required");
    }
    {
        const char *args[] = {"request", "show", "dev/demo", "not-an-id", NULL};

        expect("admin", args, 2, "is not an id");
    }
    {
        const char *args[] = {"request", "deny", "dev/demo", "0b5f6c1e-8d4a-4e7b-9f2a-3c1d5e6f7a8b",
                              NULL};

        expect("admin", args, 2, "--reason is required");
    }
    {
        const char *args[] = {
            "request", "fulfil",        "dev/demo", "0b5f6c1e-8d4a-4e7b-9f2a-3c1d5e6f7a8b",
            "--key",   "token=" SECRET, NULL};

        expect("admin", args, 2, "never from the command line");
    }
    {
        const char *args[] = {"request", "frobnicate", "dev/demo", NULL};

        expect("admin", args, 2, "usage: coffer request");
    }
    {
        const char *args[] = {"approve", "dev/demo/stripe",      "--agent", "deployer",
                              "--until", "2030-01-01T00:00:00Z", NULL};

        expect("admin", args, 2, "is not TYPE/INSTANCE");
    }
    {
        const char *args[] = {"approve", "dev/demo/stripe", "--agent", "deployer/deployer-1", NULL};

        expect("admin", args, 2, "--agent and --until are required");
    }
    {
        const char *args[] = {"token", "create", "dev", "--principal", "root", NULL};

        expect("admin", args, 2, "--principal agent/TYPE/INSTANCE or admin/NAME");
    }
    {
        const char *args[] = {"token", "revoke", "dev", "1234", "--reason", "lost", NULL};

        expect("admin", args, 2, "is not an id");
    }
}

static void test_wrong_ca(void **state)
{
    struct call c = {.who = "admin", .cacert = other_tls.ca};
    const char *args[] = {"list", "dev/demo", NULL};
    struct harness_run r;

    (void)state;
    run_as(&c, args, &r);
    check(&r, args, 2, "TLS");
}

static void test_put_stdin_and_from_file(void **state)
{
    struct call c = {.who = "admin"};
    struct harness_run r;

    (void)state;
    c.stdin_path = file("stripe.json", "{\"api_key\": \"" SECRET "\", \"account\": \"acct_1\"}");
    {
        const char *args[] = {"put",    "dev/demo/stripe", "--type",  "api_key",
                              "--tier", "medium",          "--stdin", NULL};

        run_as(&c, args, &r);
        check(&r, args, 0, "stored dev/demo/stripe version 1, expires ");
    }
    {
        const char *user = file("user", "app");
        const char *pass = file("pass", DB_PASSWORD);
        char u[PATH_MAX + 16];
        char p[PATH_MAX + 16];
        const char *args[] = {"put",
                              "dev/demo/db",
                              "--type",
                              "basic_auth",
                              "--tier",
                              "low",
                              "--ttl",
                              "30d",
                              "--from-file",
                              u,
                              "--from-file",
                              p,
                              "--grant",
                              "analyst",
                              "--description",
                              "reporting database",
                              NULL};

        snprintf(u, sizeof(u), "username=%s", user);
        snprintf(p, sizeof(p), "password=%s", pass);
        expect("admin", args, 0, "stored dev/demo/db version 1, expires ");
    }
    {
        /* The server's own checks come back as a refusal. */
        const char *args[] = {"put", "dev/demo/half", "--type", "basic_auth", "--tier",
                              "low", "--from-file",   NULL,     NULL};
        char u[PATH_MAX + 16];

        snprintf(u, sizeof(u), "username=%s", file("user2", "app"));
        args[7] = u;
        expect("admin", args, 1, "invalid_request");
    }
    {
        /* Malformed JSON on stdin is refused without echoing it. */
        const char *args[] = {"put",    "dev/demo/bad", "--type",  "api_key",
                              "--tier", "medium",       "--stdin", NULL};

        c.stdin_path = file("bad.json", "{\"api_key\": \"" SECRET "\"");
        run_as(&c, args, &r);
        check(&r, args, 2, "not JSON");
        assert_null(strstr(r.out, SECRET));
    }
}

/* Reads the terminal's master side into out until needle appears; false on timeout or EOF. */
static bool read_until(int fd, char *out, size_t cap, size_t *len, const char *needle)
{
    while (strstr(out, needle) == NULL) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&p, 1, 30000) <= 0 || (n = read(fd, out + *len, cap - 1 - *len)) <= 0) {
            fprintf(stderr, "terminal output so far:\n%s\n(waiting for '%s')\n", out, needle);
            return false;
        }
        *len += (size_t)n;
        out[*len] = '\0';
    }
    return true;
}

/* --key reads each value from the terminal, echo off: typed values never appear on it. */
static void test_put_from_terminal(void **state)
{
    struct call c = {.who = "admin"};
    const char *args[] = {"put",     "dev/ops/tty", "--type",   "basic_auth", "--tier",
                          "low",     "--key",       "username", "--key",      "password",
                          "--grant", "analyst",     NULL};
    struct cmdline cl;
    struct harness_run r;
    char out[8192] = "";
    size_t len = 0;
    int fd = -1;
    int status = 0;
    pid_t pid;

    (void)state;
    build(&c, args, &cl);
    pid = forkpty(&fd, NULL, NULL, NULL);
    assert_true(pid >= 0);
    if (pid == 0) {
        execve(cl.argv[0], (char *const *)cl.argv, (char *const *)cl.envp);
        _exit(127);
    }
    assert_true(read_until(fd, out, sizeof(out), &len, "value of username (not shown): "));
    assert_int_equal(write(fd, TTY_USER "\n", strlen(TTY_USER) + 1), strlen(TTY_USER) + 1);
    assert_true(read_until(fd, out, sizeof(out), &len, "value of password (not shown): "));
    assert_int_equal(write(fd, TTY_PASS "\n", strlen(TTY_PASS) + 1), strlen(TTY_PASS) + 1);
    assert_true(read_until(fd, out, sizeof(out), &len, "stored dev/ops/tty version 1"));
    /* Closing the master would hang the terminal up on the child: let it exit first. */
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(fd);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_null(strstr(out, TTY_USER));
    assert_null(strstr(out, TTY_PASS));
    {
        /* What was typed is what was stored. */
        const char *access[] = {"access", "dev/ops/tty", "--purpose", "read the books",
                                "--key",  "password",    NULL};

        run("agent2", access, &r);
        check(&r, access, 0, NULL);
        assert_string_equal(r.out, TTY_PASS);
    }
}

static void test_get_and_list(void **state)
{
    struct harness_run r;

    (void)state;
    {
        const char *args[] = {"get", "dev/demo/stripe", NULL};

        run("admin", args, &r);
        check(&r, args, 0, "api_key, account");
        assert_non_null(strstr(r.out, "medium"));
        assert_null(strstr(r.out, SECRET));
    }
    {
        const char *args[] = {"get", "dev/demo/db", NULL};

        expect("admin", args, 0, "reporting database");
    }
    {
        const char *args[] = {"list", "dev/demo", NULL};

        run("admin", args, &r);
        check(&r, args, 0, "stripe");
        assert_non_null(strstr(r.out, "db "));
    }
    {
        /* Each agent sees what it holds a grant for. */
        const char *args[] = {"list", "dev/demo", NULL};

        run("agent", args, &r);
        check(&r, args, 0, "stripe");
        assert_null(strstr(r.out, "db "));
        run("agent2", args, &r);
        check(&r, args, 0, "db ");
        assert_null(strstr(r.out, "stripe"));
    }
    {
        const char *args[] = {"get", "dev/demo/db", NULL};

        expect("agent", args, 1, "permission_denied");
        expect("agent2", args, 0, "basic_auth");
    }
    {
        const char *args[] = {"get", "dev/demo/nosuch", NULL};

        expect("agent", args, 1, "permission_denied");
        expect("admin", args, 1, "not_found");
    }
    {
        const char *args[] = {"get", "other/demo/stripe", NULL};

        expect("agent", args, 1, "permission_denied");
        expect("admin", args, 1, "not_found");
    }
    {
        /* deployer is no member of ops: the list is refused like everything else. */
        const char *args[] = {"list", "dev/ops", NULL};

        expect("agent", args, 1, "permission_denied");
        expect("agent2", args, 0, "tty ");
    }
    {
        const char *args[] = {"list", "dev/demo", NULL};

        expect(NULL, args, 1, "unauthenticated");
    }
}

static void test_json_output_parses(void **state)
{
    const char *args[] = {"list", "dev/demo", "--json", NULL};
    struct harness_run r;
    json_error_t err;
    json_t *j;
    json_t *creds;

    (void)state;
    run("admin", args, &r);
    check(&r, args, 0, NULL);
    j = json_loads(r.out, 0, &err);
    assert_non_null(j);
    creds = json_object_get(j, "credentials");
    assert_int_equal(json_array_size(creds), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(creds, 0), "name")), "db");
    assert_string_equal(json_string_value(json_object_get(json_array_get(creds, 1), "name")),
                        "stripe");
    assert_int_equal(json_array_size(json_object_get(json_array_get(creds, 0), "keys")), 2);
    assert_true(json_is_false(json_object_get(json_array_get(creds, 1), "revoked")));
    json_decref(j);
    {
        const char *get[] = {"get", "dev/demo/nosuch", "--json", NULL};

        run("admin", get, &r);
        check(&r, get, 1, NULL);
        j = json_loads(strchr(r.out, '{'), JSON_DISABLE_EOF_CHECK, &err);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "error")), "not_found");
        json_decref(j);
    }
}

static void test_access(void **state)
{
    struct harness_run r;

    (void)state;
    {
        const char *args[] = {"access", "dev/demo/stripe", "--purpose", "deploy payments", NULL};

        expect("agent", args, 0, "api_key=" SECRET "\n");
    }
    {
        /* One key raw: exactly the value, nothing around it. */
        const char *args[] = {"access", "dev/demo/stripe", "--purpose", "deploy payments",
                              "--key",  "api_key",         NULL};

        run("agent", args, &r);
        check(&r, args, 0, NULL);
        assert_string_equal(r.out, SECRET);
    }
    {
        const char *args[] = {"access", "dev/demo/stripe", "--purpose", "deploy payments",
                              "--key",  "nosuch",          NULL};

        expect("agent", args, 1, "no key nosuch");
    }
    {
        const char *args[] = {"access", "dev/demo/stripe", "--purpose", "read the books", NULL};

        run("agent2", args, &r);
        check(&r, args, 1, "permission_denied");
        assert_null(strstr(r.out, SECRET));
    }
}

static void test_revoke_and_phase(void **state)
{
    (void)state;
    {
        const char *args[] = {"revoke", "dev/demo/stripe", "--reason", "rotated after a leak",
                              NULL};

        expect("admin", args, 0, "revoked dev/demo/stripe");
        expect("admin", args, 1, "conflict");
    }
    {
        const char *args[] = {"access", "dev/demo/stripe", "--purpose", "deploy payments", NULL};

        expect("agent", args, 1, "permission_denied");
    }
    {
        const char *args[] = {"get", "dev/demo/stripe", NULL};

        expect("admin", args, 0, "revoked      yes");
    }
    {
        const char *args[] = {"phase", "dev/demo", "production", NULL};

        expect("admin", args, 0, "dev/demo: build -> production");
        expect("admin", args, 0, "already in phase production");
        expect("agent", args, 1, "permission_denied");
    }
    {
        const char *args[] = {"phase", "dev/demo", "qa", NULL};

        expect("admin", args, 1, "invalid_request");
    }
}

/* The request flow end to end if the server has its routes; a clean refusal if not. */
static void test_request_flow(void **state)
{
    struct call c = {.who = "admin"};
    struct harness_run r;
    char id[64] = "";

    (void)state;
    {
        const char *args[] = {"request",  "create",    "dev/demo",           "--name",
                              "github",   "--type",    "bearer_token",       "--tier",
                              "low",      "--purpose", "open pull requests", "--grant",
                              "deployer", NULL};

        run("agent", args, &r);
        if (r.status == 1 && strstr(r.out, "no such route") != NULL) {
            return;
        }
        check(&r, args, 0, "request ");
        assert_int_equal(sscanf(r.out, "request %36s", id), 1);
    }
    {
        const char *args[] = {"request", "list", "dev/demo", NULL};

        expect("admin", args, 0, id);
    }
    {
        const char *args[] = {"request", "show", "dev/demo", id, NULL};

        expect("admin", args, 0, "github");
    }
    {
        const char *args[] = {"request", "fulfil", "dev/demo", id, "--stdin", NULL};

        c.stdin_path = file("github.json", "{\"token\": \"ghp_" SECRET "\"}");
        run_as(&c, args, &r);
        check(&r, args, 0, NULL);
        assert_null(strstr(r.out, SECRET));
    }
    {
        const char *args[] = {"get", "dev/demo/github", NULL};

        expect("admin", args, 0, "bearer_token");
    }
    {
        const char *args[] = {"request", "deny", "dev/demo", id, "--reason", "already done", NULL};

        expect("admin", args, 1, NULL);
    }
}

/* Bearer tokens end to end if the server has their routes; a clean refusal if not. */
static void test_tokens(void **state)
{
    const char *mac[] = {"keys", "create-token-mac", NULL};
    struct harness_run r;
    char id[64] = "";
    char token[512] = "";
    const char *last;

    (void)state;
    /* Tokens are digested with a key an operator makes first, where the build offers it. */
    harness_run_local(&w.h, COFFER_BIN, mac, &r);
    {
        const char *args[] = {"token", "create", "dev", "--principal", "agent/analyst/analyst-1",
                              "--ttl", "1h",     NULL};

        run("admin", args, &r);
        if (r.status == 1 && strstr(r.out, "no such route") != NULL) {
            return;
        }
        check(&r, args, 0, "token id ");
        assert_int_equal(sscanf(r.out, "token id %36[0-9a-f-]", id), 1);
        last = strstr(r.out, "COFFER_TOKEN):\n");
        assert_non_null(last);
        assert_int_equal(sscanf(last + strlen("COFFER_TOKEN):\n"), "%511s", token), 1);
    }
    {
        struct call c = {.token = token};
        const char *args[] = {"list", "dev/demo", NULL};

        run_as(&c, args, &r);
        check(&r, args, 0, "db ");
        {
            const char *revoke[] = {"token", "revoke", "dev", id, "--reason", "rotated", NULL};

            expect("admin", revoke, 0, "revoked token");
        }
        run_as(&c, args, &r);
        check(&r, args, 1, "unauthenticated");
    }
}

/* A critical credential needs a standing approval: given through the CLI when the route exists. */
static void test_approve(void **state)
{
    struct call c = {.who = "admin"};
    const char *put[] = {"put",      "dev/demo/root-key", "--type",   "api_key", "--tier",
                         "critical", "--grant",           "deployer", "--stdin", NULL};
    const char *access[] = {"access", "dev/demo/root-key", "--purpose", "deploy the root",
                            "--key",  "api_key",           NULL};
    char until[32];
    time_t t = time(NULL) + 3600;
    struct tm tm;
    struct harness_run r;

    (void)state;
    c.stdin_path = file("root.json", "{\"api_key\": \"root-" SECRET "\"}");
    run_as(&c, put, &r);
    check(&r, put, 0, "stored dev/demo/root-key version 1");
    expect("agent", access, 1, "permission_denied");
    assert_non_null(gmtime_r(&t, &tm));
    assert_int_not_equal(strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &tm), 0);
    {
        const char *args[] = {
            "approve", "dev/demo/root-key", "--agent", "deployer/deployer-1", "--until", until,
            NULL};
        const char *low[] = {"approve", "dev/demo/db", "--agent", "analyst/analyst-1",
                             "--until", until,         NULL};

        run("admin", args, &r);
        if (r.status == 1 && strstr(r.out, "no such route") != NULL) {
            return;
        }
        check(&r, args, 0, "approved deployer/deployer-1 for dev/demo/root-key until");
        /* Approvals are for critical credentials only: a refusal, not trouble. */
        expect("admin", low, 1, "conflict");
        expect("agent", args, 1, "permission_denied");
    }
    run("agent", access, &r);
    check(&r, access, 0, NULL);
    assert_string_equal(r.out, "root-" SECRET);
}

static void test_audit_and_no_leak(void **state)
{
    char buf[65536];
    ssize_t n;
    int fd;

    (void)state;
    /* Every metadata read is an event; refusals keep their true reason. */
    assert_true(world_sql_is(&w,
                             "SELECT count(*) > 8 FROM coffer.audit_events "
                             "WHERE action = 'metadata' AND allowed",
                             "t"));
    assert_true(world_sql_is(&w,
                             "SELECT string_agg(DISTINCT reason, ',' ORDER BY reason) FROM "
                             "coffer.audit_events WHERE action = 'metadata' AND NOT allowed",
                             "no_grant,not_found,not_project_member"));
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.audit_events WHERE action = 'metadata' "
                             "AND detail = 'listed 1 of 2 credentials' AND agent_type = 'deployer'",
                             "1"));
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.audit_events WHERE "
                             "concat_ws('|', purpose, detail, reason, request_id) LIKE '%" SECRET
                             "%' OR concat_ws('|', purpose, detail) LIKE '%" DB_PASSWORD "%' "
                             "OR concat_ws('|', purpose, detail) LIKE '%" TTY_PASS "%'",
                             "0"));
    fd = open(log_path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_null(strstr(buf, SECRET));
    assert_null(strstr(buf, DB_PASSWORD));
    assert_null(strstr(buf, TTY_PASS));
}

/* ---- Set-up ---------------------------------------------------------------------------- */

static int write_config(unsigned short port)
{
    return https_write_config(config, port, &tls, &w.h, "workers: 2\nlog: info\n");
}

/* Starts cofferd on port and waits until it is healthy. */
static int start_server(unsigned short port)
{
    struct https_target t;

    https_target_dev(&t, port, &tls);
    return https_server_start(COFFERD_BIN, config, w.h.env.softhsm_conf, log_path, &t, &server);
}

static int setup(void **state)
{
    unsigned short port;

    (void)state;
    if (mkdtemp(dir) == NULL || coffer_dev_tls_provision(dir, &tls) != COFFER_OK) {
        return -1;
    }
    snprintf(other_dir, sizeof(other_dir), "%s/other", dir);
    if (mkdir(other_dir, 0700) != 0 ||
        coffer_dev_tls_provision(other_dir, &other_tls) != COFFER_OK) {
        return -1;
    }
    if (world_apply_policy(&w, policy) != 0) {
        return -1;
    }
    snprintf(config, sizeof(config), "%s/coffer.yaml", dir);
    snprintf(log_path, sizeof(log_path), "%s/cofferd.log", dir);
    port = https_free_port();
    snprintf(addr, sizeof(addr), "https://127.0.0.1:%u", (unsigned)port);
    if (write_config(port) != 0) {
        return -1;
    }
    return start_server(port);
}

static int teardown(void **state)
{
    (void)state;
    https_process_stop(&server);
    https_remove_dir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_request_approve_token_usage),
        cmocka_unit_test(test_wrong_ca),
        cmocka_unit_test(test_put_stdin_and_from_file),
        cmocka_unit_test(test_put_from_terminal),
        cmocka_unit_test(test_get_and_list),
        cmocka_unit_test(test_json_output_parses),
        cmocka_unit_test(test_access),
        cmocka_unit_test(test_revoke_and_phase),
        cmocka_unit_test(test_request_flow),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_approve),
        cmocka_unit_test(test_audit_and_no_leak),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    world_open("cli_api", "dev", &w);
    world_add_project(&w, "demo", NULL);
    world_add_project(&w, "ops", NULL);
    rc = cmocka_run_group_tests(tests, setup, teardown);
    world_close(&w);
    curl_global_cleanup();
    return rc;
}
