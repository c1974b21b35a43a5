/* SPDX-License-Identifier: Apache-2.0 */
/*
 * coffer exec against a real cofferd with this test's token and database:
 * the command sees exactly the values in its environment and nothing of
 * Coffer's own settings (the bearer token above all), while coffer's own
 * output never holds a value; a refused access, a missing key, a bad or
 * duplicate variable name, a missing -- or command, and a command that
 * cannot be found run nothing; a command whose execve fails after the
 * accesses exits 127 without printing a value; each credential is accessed
 * once, with the purpose, as the audit log shows.
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
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET "sk_live_exec_5e4f3a2b1c0d"
#define ACCOUNT "acct_exec_77aa19"
#define DB_PASSWORD "pw-exec-0f1e2d3c"
#define BOOKS_PASSWORD "pw-books-8a7b6c"
#define TOKEN_CANARY "cft_canary_exec_31337"
#define PIN_CANARY "pin-canary-exec-2468"

static struct world w;
static struct coffer_dev_tls tls;
static char dir[] = "/tmp/coffer-cli-exec.XXXXXX";
static char config[PATH_MAX];
static char log_path[PATH_MAX];
static char addr[64];
static pid_t server;

static const char policy[] = "version: 1\n"
                             "org: dev\n"
                             "agent_types: {deployer: , analyst: }\n"
                             "projects:\n"
                             "  demo:\n"
                             "    phases: [build]\n"
                             "    members: [deployer, analyst]\n";

/* ---- Running the command ------------------------------------------------------ */

/* coffer with args, as who ("admin", "agent", "agent2" or NULL), with extra variables. */
struct call {
    const char *who;
    const char *extra[6]; /* "NAME=value" each, NULL-terminated */
};

struct cmdline {
    const char *argv[40];
    char vars[5][PATH_MAX + 32];
    const char *envp[16];
};

static void build(const struct call *c, const char *const *args, struct cmdline *cl)
{
    size_t n = 0;
    size_t e = 0;
    size_t v = 0;

    cl->argv[n++] = COFFER_BIN;
    while (*args != NULL && n < 39) {
        cl->argv[n++] = *args++;
    }
    cl->argv[n] = NULL;
    snprintf(cl->vars[v], sizeof(cl->vars[v]), "COFFER_ADDR=%s", addr);
    cl->envp[e++] = cl->vars[v++];
    snprintf(cl->vars[v], sizeof(cl->vars[v]), "COFFER_CACERT=%s", tls.ca);
    cl->envp[e++] = cl->vars[v++];
    if (c->who != NULL) {
        bool admin = strcmp(c->who, "admin") == 0;
        bool agent = strcmp(c->who, "agent") == 0;

        snprintf(cl->vars[v], sizeof(cl->vars[v]), "COFFER_CLIENT_CERT=%s",
                 admin   ? tls.admin_cert
                 : agent ? tls.agent_cert
                         : tls.agent2_cert);
        cl->envp[e++] = cl->vars[v++];
        snprintf(cl->vars[v], sizeof(cl->vars[v]), "COFFER_CLIENT_KEY=%s",
                 admin   ? tls.admin_key
                 : agent ? tls.agent_key
                         : tls.agent2_key);
        cl->envp[e++] = cl->vars[v++];
    }
    for (size_t i = 0; i < 6 && c->extra[i] != NULL; i++) {
        cl->envp[e++] = c->extra[i];
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
static void check(const struct harness_run *r, int status, const char *needle)
{
    if (r->status != status || (needle != NULL && strstr(r->out, needle) == NULL)) {
        fprintf(stderr, "status %d (want %d), output:\n%s\n(want '%s')\n", r->status, status,
                r->out, needle != NULL ? needle : "");
    }
    assert_int_equal(r->status, status);
    if (needle != NULL) {
        assert_non_null(strstr(r->out, needle));
    }
}

/* No value of any credential in text. */
static void assert_no_values(const char *text)
{
    assert_null(strstr(text, SECRET));
    assert_null(strstr(text, ACCOUNT));
    assert_null(strstr(text, DB_PASSWORD));
    assert_null(strstr(text, BOOKS_PASSWORD));
}

/* dir/name, in one of a few static slots. */
static const char *path_in_dir(const char *name)
{
    static char paths[8][PATH_MAX];
    static int next;
    char *p = paths[next++ % 8];

    snprintf(p, PATH_MAX, "%s/%s", dir, name);
    return p;
}

/* Writes text to dir/name with mode and returns the path. */
static const char *file(const char *name, const char *text, mode_t mode)
{
    const char *p = path_in_dir(name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);
    assert_int_equal(chmod(p, mode), 0);
    return p;
}

/* Reads a whole small file into out; false if it does not exist. */
static bool slurp(const char *path, char *out, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0) {
        return false;
    }
    n = read(fd, out, cap - 1);
    close(fd);
    assert_true(n >= 0);
    out[n] = '\0';
    return true;
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* The number of access events with purpose (and allowed or not), as text. */
static bool access_events(const char *purpose, const char *credential, const char *allowed,
                          const char *expected)
{
    char sql[1024];

    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM coffer.audit_events WHERE action = 'access' AND purpose = '%s'"
             " AND ('%s' = '' OR credential = '%s') AND ('%s' = '' OR allowed = %s)",
             purpose, credential, credential, allowed, allowed[0] != '\0' ? allowed : "true");
    return world_sql_is(&w, sql, expected);
}

/* ---- Tests ---------------------------------------------------------------------------- */

/* Every malformed command line is exit 2 before anything is accessed or run. */
static void test_usage_errors(void **state)
{
    const char *marker = path_in_dir("usage-ran");
    static const struct {
        const char *args[6]; /* between --purpose P and the command, NULL-terminated */
        bool no_purpose;
        bool no_dashes;
        bool no_command;
        const char *needle;
    } cases[] = {
        {{"--env", "1API=dev/demo/stripe:api_key", NULL}, false, false, false, "variable name"},
        {{"--env", "API-KEY=dev/demo/stripe:api_key", NULL}, false, false, false, "variable name"},
        {{"--env", "=dev/demo/stripe:api_key", NULL}, false, false, false, "variable name"},
        {{"--env", "API=dev/demo/stripe:api_key", "--env", "API=dev/demo/db:password", NULL},
         false,
         false,
         false,
         "--env API is given twice"},
        {{"--env", "API=demo/stripe:api_key", NULL},
         false,
         false,
         false,
         "not ORG/PROJECT/CREDENTIAL:KEY"},
        {{"--env", "API=dev/demo/stripe", NULL}, false, false, false, "ORG/PROJECT/CREDENTIAL:KEY"},
        {{"--env", "API=dev/demo/stripe:", NULL},
         false,
         false,
         false,
         "ORG/PROJECT/CREDENTIAL:KEY"},
        {{"--env", "API=dev/demo/../stripe:api_key", NULL},
         false,
         false,
         false,
         "ORG/PROJECT/CREDENTIAL:KEY"},
        {{"--env", "API=dev/demo/stripe:api_key", NULL},
         true,
         false,
         false,
         "--purpose is required"},
        {{"--env", "API=dev/demo/stripe:api_key", NULL}, false, true, false, "no -- before"},
        {{"--env", "API=dev/demo/stripe:api_key", NULL}, false, false, true, "no command after --"},
        {{NULL}, false, false, false, "give at least one --env"},
        {{"--bogus", NULL}, false, false, false, "unknown option '--bogus'"},
        {{"--env", "API=dev/demo/stripe:api_key", "--json", NULL},
         false,
         false,
         false,
         "unknown option '--json'"},
    };
    struct harness_run r;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[24];
        size_t n = 0;

        args[n++] = "exec";
        if (!cases[i].no_purpose) {
            args[n++] = "--purpose";
            args[n++] = "usage check";
        }
        for (size_t k = 0; cases[i].args[k] != NULL; k++) {
            args[n++] = cases[i].args[k];
        }
        if (!cases[i].no_dashes) {
            args[n++] = "--";
        }
        if (!cases[i].no_command) {
            args[n++] = "/bin/sh";
            args[n++] = "-c";
            args[n++] = "echo ran > \"$0\"";
            args[n++] = marker;
        }
        args[n] = NULL;
        run("agent", args, &r);
        if (r.status != 2 || strstr(r.out, cases[i].needle) == NULL) {
            fprintf(stderr, "case %zu:\n", i);
        }
        check(&r, 2, cases[i].needle);
        assert_false(exists(marker));
    }
    {
        /* A value typed where a reference belongs is not echoed back. */
        const char *args[] = {
            "exec", "--purpose", "usage check", "--env", "sk_live_typed_by_mistake",
            "--",   "/bin/true", NULL};
        const char *args2[] = {
            "exec", "--purpose", "usage check", "--env", "API=sk_live_typed_by_mistake",
            "--",   "/bin/true", NULL};

        run("agent", args, &r);
        check(&r, 2, "--env #1 is not NAME=");
        assert_null(strstr(r.out, "sk_live_typed"));
        run("agent", args2, &r);
        check(&r, 2, "--env API: the part after '='");
        assert_null(strstr(r.out, "sk_live_typed"));
    }
    assert_true(access_events("usage check", "", "", "0"));
}

/* The command sees exactly the values; coffer itself prints none of them. */
static void test_child_sees_values(void **state)
{
    const char *marker = path_in_dir("values");
    const char *args[] = {"exec",
                          "--purpose",
                          "deploy payments exec-1",
                          "--env",
                          "API_KEY=dev/demo/stripe:api_key",
                          "--env",
                          "DB_PASSWORD=dev/demo/db:password",
                          "--env",
                          "STRIPE_ACCOUNT=dev/demo/stripe:account",
                          "--",
                          "/bin/sh",
                          "-c",
                          "printf '%s|%s|%s' \"$API_KEY\" \"$STRIPE_ACCOUNT\" \"$DB_PASSWORD\" "
                          "> \"$0\"",
                          marker,
                          NULL};
    struct harness_run r;
    char got[256];

    (void)state;
    run("agent", args, &r);
    check(&r, 0, NULL);
    /* The command wrote only to its file: all there is on the output is coffer's own. */
    assert_string_equal(r.out, "");
    assert_true(slurp(marker, got, sizeof(got)));
    assert_string_equal(got, SECRET "|" ACCOUNT "|" DB_PASSWORD);
    /* Two credentials, one access each, however many keys were taken from one. */
    assert_true(access_events("deploy payments exec-1", "stripe", "true", "1"));
    assert_true(access_events("deploy payments exec-1", "db", "true", "1"));
    assert_true(access_events("deploy payments exec-1", "", "", "2"));
}

/* Whether the environment listing env holds the line exactly. */
static bool has_line(const char *env, const char *line)
{
    size_t len = strlen(line);

    for (const char *p = env; p != NULL && *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);

        if (n == len && strncmp(p, line, len) == 0) {
            return true;
        }
        p = nl != NULL ? nl + 1 : NULL;
    }
    return false;
}

/* Whether a line of the listing starts with prefix. */
static bool has_prefix(const char *env, const char *prefix)
{
    size_t len = strlen(prefix);

    for (const char *p = env; p != NULL && *p != '\0';) {
        const char *nl = strchr(p, '\n');

        if (strncmp(p, prefix, len) == 0) {
            return true;
        }
        p = nl != NULL ? nl + 1 : NULL;
    }
    return false;
}

/*
 * /usr/bin/env as the command: its listing is the whole output, since
 * coffer prints nothing when it succeeds. The variable --env fills replaces
 * the parent's; every COFFER_* variable and the PIN variable are gone;
 * other variables pass.
 */
static void test_environment(void **state)
{
    struct call c = {.who = NULL,
                     .extra = {"COFFER_TOKEN=" TOKEN_CANARY, "COFFER_PIN_SOURCE=env:HSM_PIN",
                               "HSM_PIN=" PIN_CANARY, "KEEP_ME=kept", "API_KEY=stale-parent-value",
                               NULL}};
    const char *args[] = {"exec",        "--purpose",    "deploy payments exec-env",
                          "--cert",      tls.agent_cert, "--client-key",
                          tls.agent_key, "--env",        "API_KEY=dev/demo/stripe:api_key",
                          "--",          "/usr/bin/env", NULL};
    struct harness_run r;

    (void)state;
    run_as(&c, args, &r);
    check(&r, 0, NULL);
    assert_true(has_line(r.out, "API_KEY=" SECRET));
    assert_true(has_line(r.out, "KEEP_ME=kept"));
    assert_true(has_line(r.out, "PATH=/usr/bin:/bin"));
    assert_false(has_prefix(r.out, "COFFER_"));
    assert_false(has_prefix(r.out, "HSM_PIN="));
    assert_null(strstr(r.out, TOKEN_CANARY));
    assert_null(strstr(r.out, PIN_CANARY));
    assert_null(strstr(r.out, "stale-parent-value"));
    assert_null(strstr(r.out, tls.agent_key));
    assert_true(access_events("deploy payments exec-env", "stripe", "true", "1"));
}

/* An agent that authenticates with a bearer token: the access works, the token stays behind. */
static void test_bearer_token_stays(void **state)
{
    const char *mac[] = {"keys", "create-token-mac", NULL};
    const char *create[] = {"token", "create", "dev", "--principal", "agent/deployer/deployer-1",
                            "--ttl", "1h",     NULL};
    const char *args[] = {"exec",
                          "--purpose",
                          "deploy payments exec-token",
                          "--env",
                          "API_KEY=dev/demo/stripe:api_key",
                          "--",
                          "/usr/bin/env",
                          NULL};
    char token[512] = "";
    char var[600];
    struct call c = {.who = NULL, .extra = {var, NULL}};
    struct harness_run r;
    const char *last;

    (void)state;
    harness_run_local(&w.h, COFFER_BIN, mac, &r);
    run("admin", create, &r);
    if (r.status == 1 && strstr(r.out, "no such route") != NULL) {
        skip();
    }
    check(&r, 0, "COFFER_TOKEN):\n");
    last = strstr(r.out, "COFFER_TOKEN):\n");
    assert_int_equal(sscanf(last + strlen("COFFER_TOKEN):\n"), "%511s", token), 1);
    snprintf(var, sizeof(var), "COFFER_TOKEN=%s", token);
    run_as(&c, args, &r);
    check(&r, 0, NULL);
    assert_true(has_line(r.out, "API_KEY=" SECRET));
    assert_null(strstr(r.out, token));
    assert_false(has_prefix(r.out, "COFFER_"));
    assert_true(access_events("deploy payments exec-token", "stripe", "true", "1"));
}

/* A refused access or a missing key: exit 1, the --env named, nothing run, no value shown. */
static void test_refusals(void **state)
{
    const char *marker = path_in_dir("refused-ran");
    static const struct {
        const char *env[4]; /* NULL-terminated --env values */
        const char *needle;
    } cases[] = {
        {{"BOOKS=dev/demo/books:password", NULL},
         "--env BOOKS=dev/demo/books:password: permission_denied"},
        /* The first is granted and accessed, the second refused: still nothing runs. */
        {{"API_KEY=dev/demo/stripe:api_key", "BOOKS=dev/demo/books:password", NULL},
         "--env BOOKS=dev/demo/books:password: permission_denied"},
        {{"GONE=dev/demo/nosuch:password", NULL},
         "--env GONE=dev/demo/nosuch:password: permission_denied"},
        {{"X=dev/demo/stripe:nosuch", NULL},
         "--env X=dev/demo/stripe:nosuch: the credential has "
         "no such key"},
        /* A missing key on the second binding of one credential. */
        {{"API_KEY=dev/demo/stripe:api_key", "Y=dev/demo/stripe:password", NULL},
         "--env Y=dev/demo/stripe:password: the credential has no such key"},
    };
    struct harness_run r;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[24];
        size_t n = 0;

        args[n++] = "exec";
        args[n++] = "--purpose";
        args[n++] = "deploy payments exec-refused";
        for (size_t k = 0; cases[i].env[k] != NULL; k++) {
            args[n++] = "--env";
            args[n++] = cases[i].env[k];
        }
        args[n++] = "--";
        args[n++] = "/bin/sh";
        args[n++] = "-c";
        args[n++] = "echo ran > \"$0\"";
        args[n++] = marker;
        args[n] = NULL;
        run("agent", args, &r);
        if (r.status != 1 || strstr(r.out, cases[i].needle) == NULL) {
            fprintf(stderr, "case %zu:\n", i);
        }
        check(&r, 1, cases[i].needle);
        assert_no_values(r.out);
        assert_false(exists(marker));
    }
    /* The refusals are in the log with the purpose, as refusals. */
    assert_true(access_events("deploy payments exec-refused", "books", "false", "2"));
    assert_true(access_events("deploy payments exec-refused", "nosuch", "false", "1"));
    /* The other agent has the grant the first lacks. */
    {
        const char *args[] = {"exec",
                              "--purpose",
                              "read the books exec",
                              "--env",
                              "BOOKS=dev/demo/books:password",
                              "--",
                              "/bin/sh",
                              "-c",
                              "printf %s \"$BOOKS\" > \"$0\"",
                              marker,
                              NULL};
        char got[128];

        run("agent2", args, &r);
        check(&r, 0, NULL);
        assert_no_values(r.out);
        assert_true(slurp(marker, got, sizeof(got)));
        assert_string_equal(got, BOOKS_PASSWORD);
        assert_int_equal(unlink(marker), 0);
    }
}

/* A command that cannot run: found before any access when possible, and never a value shown. */
static void test_command_failures(void **state)
{
    struct harness_run r;

    (void)state;
    {
        const char *args[] = {"exec",
                              "--purpose",
                              "deploy payments exec-missing",
                              "--env",
                              "API_KEY=dev/demo/stripe:api_key",
                              "--",
                              "no-such-tool-exec",
                              NULL};

        run("agent", args, &r);
        check(&r, 127, "no-such-tool-exec: command not found");
        assert_true(access_events("deploy payments exec-missing", "", "", "0"));
    }
    {
        const char *plain = file("plain.txt", "not a program\n", 0600);
        const char *args[] = {"exec",
                              "--purpose",
                              "deploy payments exec-missing",
                              "--env",
                              "API_KEY=dev/demo/stripe:api_key",
                              "--",
                              plain,
                              NULL};

        run("agent", args, &r);
        check(&r, 126, "not an executable file");
        assert_true(access_events("deploy payments exec-missing", "", "", "0"));
    }
    {
        /* An executable whose interpreter is missing: execve itself fails, after the access. */
        const char *script = file("broken.sh", "#!/nonexistent/interpreter\necho ran\n", 0700);
        const char *args[] = {"exec",
                              "--purpose",
                              "deploy payments exec-broken",
                              "--env",
                              "API_KEY=dev/demo/stripe:api_key",
                              "--",
                              script,
                              NULL};

        run("agent", args, &r);
        check(&r, 127, "broken.sh: No such file or directory");
        assert_no_values(r.out);
        assert_true(access_events("deploy payments exec-broken", "stripe", "true", "1"));
    }
}

/* Nothing of a value in the server's output or in any audit row. */
static void test_no_leak(void **state)
{
    char buf[65536];
    ssize_t n;
    int fd;

    (void)state;
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.audit_events WHERE "
                             "concat_ws('|', purpose, detail, reason, request_id) LIKE '%" SECRET
                             "%' OR concat_ws('|', purpose, detail) LIKE '%" DB_PASSWORD "%' "
                             "OR concat_ws('|', purpose, detail) LIKE '%" ACCOUNT "%'",
                             "0"));
    fd = open(log_path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_no_values(buf);
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

/* Stores a credential as the admin, the values through stdin (sh's redirection); 0 on success. */
static int put(const char *name, const char *json, const char *grant)
{
    char stdin_var[PATH_MAX + 32];
    struct call c = {.who = "admin", .extra = {stdin_var, NULL}};
    const char *args[] = {"put",    name,      "--type", "custom",  "--tier",
                          "medium", "--grant", grant,    "--stdin", NULL};
    const char *argv[24] = {"/bin/sh", "-c", "exec \"$0\" \"$@\" < \"$CLI_TEST_STDIN\""};
    struct cmdline cl;
    struct harness_run r;
    char fname[64];
    size_t n = 3;

    snprintf(fname, sizeof(fname), "%s.json", strrchr(name, '/') + 1);
    snprintf(stdin_var, sizeof(stdin_var), "CLI_TEST_STDIN=%s", file(fname, json, 0600));
    build(&c, args, &cl);
    for (size_t i = 0; cl.argv[i] != NULL && n < 23; i++) {
        argv[n++] = cl.argv[i];
    }
    argv[n] = NULL;
    harness_run(argv, cl.envp, &r);
    if (r.status != 0) {
        fprintf(stderr, "put %s: %s\n", name, r.out);
        return -1;
    }
    return 0;
}

static int setup(void **state)
{
    unsigned short port;

    (void)state;
    if (mkdtemp(dir) == NULL || coffer_dev_tls_provision(dir, &tls) != COFFER_OK) {
        return -1;
    }
    if (world_apply_policy(&w, policy) != 0) {
        return -1;
    }
    snprintf(config, sizeof(config), "%s/coffer.yaml", dir);
    snprintf(log_path, sizeof(log_path), "%s/cofferd.log", dir);
    port = https_free_port();
    snprintf(addr, sizeof(addr), "https://127.0.0.1:%u", (unsigned)port);
    if (write_config(port) != 0 || start_server(port) != 0) {
        return -1;
    }
    if (put("dev/demo/stripe", "{\"api_key\": \"" SECRET "\", \"account\": \"" ACCOUNT "\"}",
            "deployer") != 0 ||
        put("dev/demo/db", "{\"username\": \"app\", \"password\": \"" DB_PASSWORD "\"}",
            "deployer") != 0 ||
        put("dev/demo/books", "{\"password\": \"" BOOKS_PASSWORD "\"}", "analyst") != 0) {
        return -1;
    }
    return 0;
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
        cmocka_unit_test(test_usage_errors), cmocka_unit_test(test_child_sees_values),
        cmocka_unit_test(test_environment),  cmocka_unit_test(test_bearer_token_stays),
        cmocka_unit_test(test_refusals),     cmocka_unit_test(test_command_failures),
        cmocka_unit_test(test_no_leak),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    world_open("cli_exec", "dev", &w);
    world_add_project(&w, "demo", NULL);
    rc = cmocka_run_group_tests(tests, setup, teardown);
    world_close(&w);
    curl_global_cleanup();
    return rc;
}
