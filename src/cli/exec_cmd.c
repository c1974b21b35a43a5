/* SPDX-License-Identifier: Apache-2.0 */
/*
 * coffer exec: runs a tool with credentials in its environment and nowhere
 * else. Each --env NAME=ORG/PROJECT/CREDENTIAL:KEY names a variable and the
 * key of a credential to fill it with; every credential named is accessed
 * once, with the stated purpose, and then coffer replaces itself with the
 * tool (execve, no shell), so the values end in the tool's environment and
 * the coffer process that held them is gone.
 *
 * This file never prints a value, never puts one into an error detail or
 * argv, and never sets a variable in its own environment: the tool's
 * environment is an array built beside it, whose "NAME=value" strings live
 * in secret buffers that are wiped if execve fails. Before anything is
 * accessed, the arguments are checked and the command is looked up, so a
 * typing mistake costs no audited access. Coffer's own settings (every
 * COFFER_* variable, among them the bearer token, the client key's path and
 * database conninfo, and the variable a COFFER_PIN_SOURCE of env:NAME names)
 * are left out of the tool's environment.
 *
 * Exit status: the tool's once it runs; 1 an access was refused or a key
 * cannot be used; 2 usage, unreachable server, TLS failure, 5xx or a
 * malformed answer; 126 the command was found but could not be run; 127 the
 * command was not found.
 */
#include "cli/cli.h"
#include "cli/client.h"

#include "coffer/api.h"
#include "coffer/authz.h"
#include "coffer/mem.h"
#include "coffer/policy.h"
#include "coffer/secret.h"
#include "coffer/store.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENV_MAX 64       /* --env options */
#define ENV_NAME_MAX 128 /* an environment variable's name */
#define PATH_TEXT_MAX 512
#define EXIT_CANNOT_RUN 126
#define EXIT_NOT_FOUND 127

extern char **environ;

static const char exec_usage[] =
    "usage: coffer exec --purpose TEXT --env NAME=ORG/PROJECT/CREDENTIAL:KEY [--env ...]\n"
    "         [connection options] -- COMMAND [ARGUMENT...]\n"
    "\n"
    "Accesses each credential named once, with the purpose, and runs COMMAND (looked up\n"
    "in PATH, no shell) with each NAME set to the value of KEY. The values go only into\n"
    "COMMAND's environment; every COFFER_* variable is left out of it. Nothing runs if\n"
    "an access is refused or a key is missing.\n"
    "\n"
    "connection options (each overrides its variable):\n"
    "  --addr https://HOST:PORT      COFFER_ADDR, the server (https only)\n"
    "  --cacert FILE                 COFFER_CACERT, the CA that signed the server\n"
    "  --cert FILE --client-key FILE COFFER_CLIENT_CERT, COFFER_CLIENT_KEY: a client certificate\n"
    "  --token TOKEN                 COFFER_TOKEN: a bearer token instead (prefer the variable)\n"
    "\n"
    "Exit status: COMMAND's; 1 refused or a key missing; 2 usage or trouble; 126 COMMAND\n"
    "could not be run; 127 COMMAND was not found.\n";

/* One --env: the variable, the credential and key that fill it, and then its entry. */
struct binding {
    char name[ENV_NAME_MAX + 1];
    char ref[3][COFFER_NAME_MAX + 1]; /* org, project, credential */
    char key[COFFER_KEY_NAME_MAX + 1];
    size_t first;                /* the first binding naming the same credential */
    struct coffer_secret *entry; /* "NAME=value" and its NUL, once accessed */
};

struct exec_args {
    struct cli_target target;
    const char *purpose;
    struct binding env[ENV_MAX];
    size_t n_env;
    char **cmd; /* the words after "--" */
};

static int usage_error(const char *fmt, ...) COFFER_PRINTF(1, 2);

/* Prints "coffer: exec: <what is wrong>" and the usage; returns the exit status of a usage error.
 */
static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("coffer: exec: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", exec_usage);
    return CLI_EXIT_TROUBLE;
}

/* ---- Arguments ------------------------------------------------------------------------- */

/* A portable variable name: [A-Za-z_][A-Za-z0-9_]*, which every shell and tool can read. */
static bool env_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > ENV_NAME_MAX || (s[0] >= '0' && s[0] <= '9')) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_')) {
            return false;
        }
    }
    return true;
}

/* A key name inside a credential: [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}. */
static bool key_name_ok(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > COFFER_KEY_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool word =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';

        if (!word && (i == 0 || (c != '.' && c != '-'))) {
            return false;
        }
    }
    return true;
}

/* "ORG/PROJECT/CREDENTIAL" (len bytes at s) into three names. */
static bool split_ref(const char *s, size_t len, char out[3][COFFER_NAME_MAX + 1])
{
    const char *p = s;
    const char *end = s + len;

    for (size_t i = 0; i < 3; i++) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        size_t n = slash != NULL ? (size_t)(slash - p) : (size_t)(end - p);

        if ((i < 2) != (slash != NULL) || !coffer_policy_name_ok(p, n)) {
            return false;
        }
        coffer_memcpy(out[i], p, n);
        out[i][n] = '\0';
        p = slash != NULL ? slash + 1 : end;
    }
    return true;
}

/*
 * The nth --env (from 1) into b. A malformed argument may hold what was
 * meant to be a value, so only a part already known to be a name or a
 * reference is quoted back; otherwise the option is named by its position.
 */
static int parse_binding(const char *arg, size_t nth, struct binding *b)
{
    const char *eq = strchr(arg, '=');
    const char *colon;
    size_t len;

    if (eq == NULL) {
        return usage_error("--env #%zu is not NAME=ORG/PROJECT/CREDENTIAL:KEY", nth);
    }
    len = (size_t)(eq - arg);
    if (!env_name_ok(arg, len)) {
        return usage_error("--env #%zu: the part before '=' is not a variable name "
                           "([A-Za-z_][A-Za-z0-9_]*, at most %d characters)",
                           nth, ENV_NAME_MAX);
    }
    coffer_memcpy(b->name, arg, len);
    b->name[len] = '\0';
    colon = strchr(eq + 1, ':');
    if (colon == NULL || !split_ref(eq + 1, (size_t)(colon - eq - 1), b->ref) ||
        !key_name_ok(colon + 1)) {
        return usage_error("--env %s: the part after '=' is not ORG/PROJECT/CREDENTIAL:KEY "
                           "(names of a-z, 0-9, '_' and '-'; a key name of A-Z, a-z, 0-9, "
                           "'_', '.' and '-')",
                           b->name);
    }
    (void)snprintf(b->key, sizeof(b->key), "%s", colon + 1);
    return 0;
}

/* Where a single-valued option's value goes, or NULL for an option exec does not take. */
static const char **single_option(struct exec_args *a, const char *w)
{
    static const char *const names[] = {"--purpose", "--addr",       "--cacert",
                                        "--cert",    "--client-key", "--token"};
    const char **slots[] = {&a->purpose,     &a->target.addr, &a->target.cacert,
                            &a->target.cert, &a->target.key,  &a->target.token};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(w, names[i]) == 0) {
            return slots[i];
        }
    }
    return NULL;
}

/* The options before "--", then the command after it. 0, or the exit status after saying why. */
static int parse(int argc, char **argv, struct exec_args *a)
{
    int i;
    int rc;

    for (i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *w = argv[i];
        const char **slot = single_option(a, w);
        bool env = strcmp(w, "--env") == 0;

        if (slot == NULL && !env) {
            if (strncmp(w, "--", 2) == 0) {
                return usage_error("unknown option '%s'", w);
            }
            return usage_error("no -- before the command to run ('%s')", w);
        }
        if (i + 1 >= argc || argv[i + 1][0] == '\0' || strcmp(argv[i + 1], "--") == 0) {
            return usage_error("%s needs a value", w);
        }
        if (env) {
            if (a->n_env >= ENV_MAX) {
                return usage_error("--env is given more than %d times", ENV_MAX);
            }
            if ((rc = parse_binding(argv[++i], a->n_env + 1, &a->env[a->n_env])) != 0) {
                return rc;
            }
            a->n_env++;
            continue;
        }
        if (*slot != NULL) {
            return usage_error("%s is given twice", w);
        }
        *slot = argv[++i];
    }
    if (i >= argc) {
        return usage_error("%s", "no -- before the command to run");
    }
    a->cmd = argv + i + 1;
    if (a->cmd[0] == NULL || a->cmd[0][0] == '\0') {
        return usage_error("%s", "no command after --");
    }
    if (a->purpose == NULL) {
        return usage_error("%s", "--purpose is required");
    }
    if (!coffer_authz_purpose_ok(a->purpose, strlen(a->purpose))) {
        return usage_error("%s", "--purpose must be 1 to 512 bytes of UTF-8 without control "
                                 "characters");
    }
    if (a->n_env == 0) {
        return usage_error("%s", "give at least one --env NAME=ORG/PROJECT/CREDENTIAL:KEY");
    }
    return 0;
}

/* Refuses a NAME given twice, and notes which bindings share a credential. */
static int check_bindings(struct exec_args *a)
{
    for (size_t i = 0; i < a->n_env; i++) {
        struct binding *b = &a->env[i];

        b->first = i;
        for (size_t j = 0; j < i; j++) {
            const struct binding *o = &a->env[j];

            if (strcmp(o->name, b->name) == 0) {
                return usage_error("--env %s is given twice", b->name);
            }
            if (b->first == i && strcmp(o->ref[0], b->ref[0]) == 0 &&
                strcmp(o->ref[1], b->ref[1]) == 0 && strcmp(o->ref[2], b->ref[2]) == 0) {
                b->first = j;
            }
        }
    }
    return 0;
}

/* ---- The command ----------------------------------------------------------------------- */

/* Whether path is a regular file this process may execute. */
static bool runnable(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/*
 * Whether cmd names something execvp could run: 0, or the exit status of a
 * shell after saying why not. A name with a slash is a path; any other is
 * looked up in PATH's directories (an empty one meaning the current
 * directory, and the C library's default search path when PATH is unset).
 */
static int find_command(const char *cmd)
{
    char dflt[PATH_TEXT_MAX] = "/bin:/usr/bin";
    const char *path = getenv("PATH");

    if (strchr(cmd, '/') != NULL) {
        if (runnable(cmd)) {
            return 0;
        }
        if (access(cmd, F_OK) == 0) {
            fprintf(stderr, "coffer: exec: %s: not an executable file (nothing was accessed)\n",
                    cmd);
            return EXIT_CANNOT_RUN;
        }
        fprintf(stderr, "coffer: exec: %s: no such file (nothing was accessed)\n", cmd);
        return EXIT_NOT_FOUND;
    }
    if (path == NULL) {
        size_t n = confstr(_CS_PATH, dflt, sizeof(dflt));

        if (n == 0 || n > sizeof(dflt)) {
            (void)snprintf(dflt, sizeof(dflt), "%s", "/bin:/usr/bin");
        }
        path = dflt;
    }
    for (const char *p = path;; p++) {
        const char *end = strchr(p, ':');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        char full[PATH_MAX];
        int n = len == 0 ? snprintf(full, sizeof(full), "%s", cmd)
                         : snprintf(full, sizeof(full), "%.*s/%s", (int)len, p, cmd);

        if (n > 0 && (size_t)n < sizeof(full) && runnable(full)) {
            return 0;
        }
        if (end == NULL) {
            break;
        }
        p = end;
    }
    fprintf(stderr, "coffer: exec: %s: command not found in PATH (nothing was accessed)\n", cmd);
    return EXIT_NOT_FOUND;
}

/* ---- Accessing the credentials ------------------------------------------------------- */

/* Whether the answer's expired_keys names key. */
static bool key_expired(const json_t *reply, const char *key)
{
    size_t i;
    json_t *e;

    json_array_foreach(json_object_get(reply, "expired_keys"), i, e)
    {
        if (json_is_string(e) && strcmp(json_string_value(e), key) == 0) {
            return true;
        }
    }
    return false;
}

/* b's entry "NAME=value" from the answer's keys; 0, or the exit status after saying why. */
static int take_value(const json_t *reply, struct binding *b)
{
    const json_t *v = json_object_get(json_object_get(reply, "keys"), b->key);
    struct coffer_secret_view view;
    size_t name_len = strlen(b->name);
    size_t len;

    if (!json_is_string(v)) {
        fprintf(stderr, "coffer: exec: --env %s=%s/%s/%s:%s: %s\n", b->name, b->ref[0], b->ref[1],
                b->ref[2], b->key,
                key_expired(reply, b->key) ? "the key has expired"
                                           : "the credential has no "
                                             "such key");
        return CLI_EXIT_REFUSED;
    }
    len = json_string_length(v);
    /* An environment string ends at its first NUL: such a value would arrive cut short. */
    if (memchr(json_string_value(v), '\0', len) != NULL) {
        fprintf(stderr,
                "coffer: exec: --env %s=%s/%s/%s:%s: the value holds a NUL byte, which an "
                "environment variable cannot carry\n",
                b->name, b->ref[0], b->ref[1], b->ref[2], b->key);
        return CLI_EXIT_REFUSED;
    }
    if (coffer_secret_new(name_len + 1 + len + 1, &b->entry) != COFFER_OK) {
        fprintf(stderr, "coffer: exec: --env %s: %s\n", b->name, coffer_err_detail());
        return CLI_EXIT_TROUBLE;
    }
    view = coffer_secret_view(b->entry);
    coffer_memcpy(view.data, b->name, name_len);
    view.data[name_len] = '=';
    coffer_memcpy(view.data + name_len + 1, json_string_value(v), len);
    view.data[name_len + 1 + len] = '\0';
    return 0;
}

/*
 * One access of the credential of a->env[i] with the purpose, filling the
 * entry of every binding that names it. 0, or the exit status after saying
 * why. The answer lives in wiping memory and is released before returning.
 */
static int access_one(struct cli_client *c, struct exec_args *a, size_t i)
{
    const struct binding *b = &a->env[i];
    char path[PATH_TEXT_MAX];
    char what[PATH_TEXT_MAX];
    struct cli_reply r = {0};
    json_t *body;
    int rc = 0;

    (void)snprintf(path, sizeof(path), "/v1/orgs/%s/projects/%s/credentials/%s/access", b->ref[0],
                   b->ref[1], b->ref[2]);
    (void)snprintf(what, sizeof(what), "exec: --env %s=%s/%s/%s:%s", b->name, b->ref[0], b->ref[1],
                   b->ref[2], b->key);
    if ((body = json_pack("{s:s}", "purpose", a->purpose)) == NULL) {
        fprintf(stderr, "coffer: %s: building the request failed\n", what);
        return CLI_EXIT_TROUBLE;
    }
    if (cli_client_call(c, "POST", path, body, &r) != COFFER_OK) {
        fprintf(stderr, "coffer: %s: %s\n", what, coffer_err_detail());
        json_decref(body);
        return CLI_EXIT_TROUBLE;
    }
    json_decref(body);
    if (r.status < 200 || r.status > 299) {
        rc = cli_reply_fail(what, &r);
        goto out;
    }
    if (!json_is_object(r.json) || !json_is_object(json_object_get(r.json, "keys"))) {
        fprintf(stderr, "coffer: %s: the server's answer (HTTP %ld) holds no keys\n", what,
                r.status);
        rc = CLI_EXIT_TROUBLE;
        goto out;
    }
    if (json_is_true(json_object_get(r.json, "purpose_unexpected"))) {
        fprintf(stderr,
                "coffer: exec: the purpose matches none of the allowed purposes of %s/%s/%s; "
                "the access is flagged for review\n",
                b->ref[0], b->ref[1], b->ref[2]);
    }
    for (size_t j = i; j < a->n_env && rc == 0; j++) {
        if (a->env[j].first == i) {
            rc = take_value(r.json, &a->env[j]);
        }
    }
out:
    cli_reply_cleanup(&r);
    return rc;
}

/* Every credential named, once each, in the order of the --env options. */
static int access_all(struct exec_args *a)
{
    struct cli_client *c = NULL;
    int rc = 0;

    if (cli_client_new(&a->target, &c) != COFFER_OK) {
        fprintf(stderr, "coffer: exec: %s\n", coffer_err_detail());
        return CLI_EXIT_TROUBLE;
    }
    for (size_t i = 0; i < a->n_env && rc == 0; i++) {
        if (a->env[i].first == i) {
            rc = access_one(c, a, i);
        }
    }
    cli_client_free(&c);
    return rc;
}

/* ---- The tool's environment ------------------------------------------------------------- */

/* Whether the environment string e is a variable named by the len bytes at name. */
static bool is_var(const char *e, const char *name, size_t len)
{
    return strncmp(e, name, len) == 0 && (e[len] == '=' || e[len] == '\0');
}

/* Whether the tool must not see e: a setting of Coffer's, or a variable an --env replaces. */
static bool left_out(const char *e, const struct exec_args *a, const char *pin_var)
{
    if (strncmp(e, "COFFER_", strlen("COFFER_")) == 0) {
        return true;
    }
    if (pin_var != NULL && pin_var[0] != '\0' && is_var(e, pin_var, strlen(pin_var))) {
        return true;
    }
    for (size_t i = 0; i < a->n_env; i++) {
        if (is_var(e, a->env[i].name, strlen(a->env[i].name))) {
            return true;
        }
    }
    return false;
}

/*
 * The tool's environment: this process's, less what left_out names, plus
 * every binding's entry. The array holds pointers only; the values stay in
 * the bindings' secrets. *out is freed with coffer_free.
 */
static enum coffer_err build_envp(const struct exec_args *a, char ***out)
{
    const char *pin = getenv("COFFER_PIN_SOURCE");
    const char *pin_var = pin != NULL && strncmp(pin, "env:", 4) == 0 ? pin + 4 : NULL;
    size_t n = 0;
    size_t k = 0;
    char **envp;

    while (environ != NULL && environ[n] != NULL) {
        n++;
    }
    if ((envp = coffer_calloc(n + a->n_env + 1, sizeof(*envp))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "allocating the command's environment");
    }
    for (size_t i = 0; i < n; i++) {
        if (!left_out(environ[i], a, pin_var)) {
            envp[k++] = environ[i];
        }
    }
    for (size_t i = 0; i < a->n_env; i++) {
        envp[k++] = (char *)coffer_secret_view(a->env[i].entry).data;
    }
    envp[k] = NULL;
    *out = envp;
    return COFFER_OK;
}

/* Wipes and releases every entry. */
static void wipe_entries(struct exec_args *a)
{
    for (size_t i = 0; i < a->n_env; i++) {
        coffer_secret_free(&a->env[i].entry);
    }
}

/*
 * Replaces this process with the command. Returns only if execve failed,
 * with the exit status of a shell for that case, after wiping the entries.
 */
static int run(struct exec_args *a, const struct sigaction *pipe_action, const sigset_t *mask)
{
    char **envp = NULL;
    int err;

    if (build_envp(a, &envp) != COFFER_OK) {
        fprintf(stderr, "coffer: exec: %s\n", coffer_err_detail());
        wipe_entries(a);
        return CLI_EXIT_TROUBLE;
    }
    (void)fflush(stdout);
    (void)fflush(stderr);
    /* The command starts with the signal state coffer started with, whatever libraries did. */
    (void)sigaction(SIGPIPE, pipe_action, NULL);
    (void)sigprocmask(SIG_SETMASK, mask, NULL);
    (void)execvpe(a->cmd[0], a->cmd, envp);
    err = errno;
    wipe_entries(a);
    coffer_free(envp);
    fprintf(stderr, "coffer: exec: %s: %s\n", a->cmd[0], strerror(err));
    return err == ENOENT || err == ENOTDIR ? EXIT_NOT_FOUND : EXIT_CANNOT_RUN;
}

int cli_exec(int argc, char **argv)
{
    struct sigaction pipe_action;
    struct exec_args *a;
    sigset_t mask;
    int rc;

    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(exec_usage, stdout);
            return CLI_EXIT_OK;
        }
    }
    if (sigaction(SIGPIPE, NULL, &pipe_action) != 0 || sigprocmask(SIG_SETMASK, NULL, &mask) != 0) {
        fprintf(stderr, "coffer: exec: reading the signal state: %s\n", strerror(errno));
        return CLI_EXIT_TROUBLE;
    }
    if ((a = coffer_calloc(1, sizeof(*a))) == NULL) {
        fprintf(stderr, "coffer: exec: out of memory\n");
        return CLI_EXIT_TROUBLE;
    }
    if ((rc = parse(argc - 1, argv + 1, a)) != 0 || (rc = check_bindings(a)) != 0) {
        goto out;
    }
    if ((rc = find_command(a->cmd[0])) != 0) {
        goto out;
    }
    /* Values pass through JSON: every allocation jansson makes from here on is wiped on free. */
    coffer_api_json_init();
    if ((rc = access_all(a)) != 0) {
        goto out;
    }
    rc = run(a, &pipe_action, &mask);
out:
    wipe_entries(a);
    coffer_free(a);
    return rc;
}
