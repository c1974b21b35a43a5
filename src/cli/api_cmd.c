/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The coffer command's API commands: put, get, list, access, revoke,
 * phase, request, approve and token, each one request to cofferd through
 * client.c. Arguments are checked before anything is sent (names, ids,
 * grants), so a typing mistake is a usage error, not a request.
 *
 * Values never come from the command line, where other users of the host
 * can read them: they are read from the terminal with echo off, from a
 * file, or as JSON on standard input, into secret buffers, and travel
 * onwards only in wiping JSON memory. Values are printed only by access,
 * to standard output, with write(2) so that no stdio buffer keeps a copy.
 *
 * Exit status: 0 done; 1 the server refused (4xx); 2 usage, unreachable
 * server, TLS failure, 5xx or a malformed answer.
 */
#include "cli/client.h"

#include "coffer/api.h"
#include "coffer/keys.h"
#include "coffer/mem.h"
#include "coffer/policy.h"
#include "coffer/secret.h"
#include "coffer/tty.h"
#include "coffer/uuid.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MANY_MAX 64              /* --key, --from-file and --grant, each */
#define POS_MAX 3                /* positional arguments of any command */
#define STDIN_MAX (320u * 1024u) /* a whole credential as JSON, as the server takes it */
#define PATH_TEXT_MAX 512        /* an API path */
#define TTY_PROMPT_MAX (COFFER_KEY_NAME_MAX + 48)

/* ---- Options ------------------------------------------------------------------ */

enum opt {
    O_ADDR,
    O_CACERT,
    O_CERT,
    O_CLIENT_KEY,
    O_TOKEN,
    O_JSON,
    O_TYPE,
    O_TIER,
    O_TTL,
    O_EXPIRES_AT,
    O_DESCRIPTION,
    O_GRANT,
    O_EXPIRE_ON_PHASE_END,
    O_KEY,
    O_FROM_FILE,
    O_STDIN,
    O_PURPOSE,
    O_REASON,
    O_NAME,
    O_URGENCY,
    O_AGENT,
    O_UNTIL,
    O_FROM,
    O_PRINCIPAL,
    O_KEY_EXPIRES,
    O_OAUTH2_TOKEN_URL,
    O_OAUTH2_CLIENT_ID,
    O_OAUTH2_CLIENT_SECRET,
    O_OAUTH2_CLIENT_AUTH,
    O_COUNT,
};
_Static_assert(O_COUNT <= 32, "options are bits of an unsigned");

#define BIT(o) (1u << (o))
#define COMMON                                                                                     \
    (BIT(O_ADDR) | BIT(O_CACERT) | BIT(O_CERT) | BIT(O_CLIENT_KEY) | BIT(O_TOKEN) | BIT(O_JSON))
#define VALUES (BIT(O_KEY) | BIT(O_FROM_FILE) | BIT(O_STDIN))
#define LIFETIME                                                                                   \
    (BIT(O_TTL) | BIT(O_EXPIRES_AT) | BIT(O_DESCRIPTION) | BIT(O_GRANT) | BIT(O_KEY_EXPIRES))

static const struct {
    const char *flag;
    bool value;  /* takes an argument */
    bool repeat; /* may be given several times */
} opts[O_COUNT] = {
    [O_ADDR] = {"--addr", true, false},
    [O_CACERT] = {"--cacert", true, false},
    [O_CERT] = {"--cert", true, false},
    [O_CLIENT_KEY] = {"--client-key", true, false},
    [O_TOKEN] = {"--token", true, false},
    [O_JSON] = {"--json", false, false},
    [O_TYPE] = {"--type", true, false},
    [O_TIER] = {"--tier", true, false},
    [O_TTL] = {"--ttl", true, false},
    [O_EXPIRES_AT] = {"--expires-at", true, false},
    [O_DESCRIPTION] = {"--description", true, false},
    [O_GRANT] = {"--grant", true, true},
    [O_EXPIRE_ON_PHASE_END] = {"--expire-on-phase-end", true, false},
    [O_KEY] = {"--key", true, true},
    [O_FROM_FILE] = {"--from-file", true, true},
    [O_STDIN] = {"--stdin", false, false},
    [O_PURPOSE] = {"--purpose", true, false},
    [O_REASON] = {"--reason", true, false},
    [O_NAME] = {"--name", true, false},
    [O_URGENCY] = {"--urgency", true, false},
    [O_AGENT] = {"--agent", true, false},
    [O_UNTIL] = {"--until", true, false},
    [O_FROM] = {"--from", true, false},
    [O_PRINCIPAL] = {"--principal", true, false},
    [O_KEY_EXPIRES] = {"--key-expires", true, true},
    [O_OAUTH2_TOKEN_URL] = {"--oauth2-token-url", true, false},
    [O_OAUTH2_CLIENT_ID] = {"--oauth2-client-id", true, false},
    [O_OAUTH2_CLIENT_SECRET] = {"--oauth2-client-secret", true, false},
    [O_OAUTH2_CLIENT_AUTH] = {"--oauth2-client-auth", true, false},
};

/* A command's arguments after parsing. */
struct args {
    const char *pos[POS_MAX];
    int n_pos;
    bool set[O_COUNT];
    const char *one[O_COUNT];      /* the value of a single option */
    const char *many[4][MANY_MAX]; /* --key, --from-file, --grant, --key-expires */
    size_t n_many[4];
};

static int many_slot(enum opt o)
{
    switch (o) {
    case O_KEY:
        return 0;
    case O_FROM_FILE:
        return 1;
    case O_KEY_EXPIRES:
        return 3;
    default:
        return 2;
    }
}

static int usage_error(const char *usage, const char *fmt, ...) COFFER_PRINTF(2, 3);

/* Prints "coffer: <what is wrong>" and the usage; returns the exit status of a usage error. */
static int usage_error(const char *usage, const char *fmt, ...)
{
    va_list ap;

    fputs("coffer: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", usage);
    return CLI_EXIT_TROUBLE;
}

/*
 * Parses argv (the words after the command) against the options allowed
 * (a mask of BIT(opt)) and exactly n_pos positional arguments. 0, or the
 * exit status after printing what is wrong and the usage.
 */
static int parse(int argc, char **argv, unsigned allowed, int n_pos, const char *usage,
                 struct args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < argc; i++) {
        const char *w = argv[i];
        int o;

        if (strncmp(w, "--", 2) != 0) {
            if (a->n_pos >= n_pos || a->n_pos >= POS_MAX) {
                return usage_error(usage, "unexpected argument '%s'", w);
            }
            a->pos[a->n_pos++] = w;
            continue;
        }
        for (o = 0; o < O_COUNT && strcmp(opts[o].flag, w) != 0; o++) {
        }
        if (o == O_COUNT || (allowed & BIT(o)) == 0) {
            return usage_error(usage, "unknown option '%s' for this command", w);
        }
        if (a->set[o] && !opts[o].repeat) {
            return usage_error(usage, "%s is given twice", w);
        }
        if (opts[o].value && (i + 1 >= argc || argv[i + 1][0] == '\0')) {
            return usage_error(usage, "%s needs a value", w);
        }
        a->set[o] = true;
        if (!opts[o].value) {
            continue;
        }
        if (opts[o].repeat) {
            int s = many_slot((enum opt)o);

            if (a->n_many[s] >= MANY_MAX) {
                return usage_error(usage, "%s is given more than 64 times", w);
            }
            a->many[s][a->n_many[s]++] = argv[++i];
        } else {
            a->one[o] = argv[++i];
        }
    }
    if (a->n_pos != n_pos) {
        return usage_error(usage, "%s", "wrong number of arguments");
    }
    return 0;
}

/* ---- Names, paths and grants ----------------------------------------------------------- */

static bool name_ok(const char *s, size_t len)
{
    return coffer_policy_name_ok(s, len);
}

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

/* Splits "A/B[/C]" into exactly n names (each at most 63 bytes). */
static bool split_names(const char *s, size_t n, char out[][COFFER_NAME_MAX + 1])
{
    const char *p = s;

    for (size_t i = 0; i < n; i++) {
        const char *end = strchr(p, '/');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

        if ((i + 1 < n) != (end != NULL) || !name_ok(p, len)) {
            return false;
        }
        coffer_memcpy(out[i], p, len);
        out[i][len] = '\0';
        p = end != NULL ? end + 1 : p + len;
    }
    return true;
}

/* ORG/PROJECT/NAME (n 3) or ORG/PROJECT (n 2) into names; false after printing why. */
static bool target(const char *s, size_t n, char out[][COFFER_NAME_MAX + 1])
{
    if (split_names(s, n, out)) {
        return true;
    }
    fprintf(stderr,
            "coffer: '%s' is not %s (names of 1 to 63 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit)\n",
            s, n == 3 ? "ORG/PROJECT/NAME" : "ORG/PROJECT");
    return false;
}

/* An id of a request or token: a UUID. */
static bool id_ok(const char *s)
{
    struct coffer_uuid u;

    if (strlen(s) == COFFER_UUID_STR_LEN - 1 && coffer_uuid_parse(s, &u) == COFFER_OK) {
        return true;
    }
    fprintf(stderr,
            "coffer: '%s' is not an id (a UUID such as "
            "0b5f6c1e-8d4a-4e7b-9f2a-3c1d5e6f7a8b)\n",
            s);
    return false;
}

/* One grant "TYPE[/INSTANCE][@PHASE,PHASE]" as {"agent_type", "instance"?, "phases"?}. */
static json_t *grant_json(const char *g)
{
    const char *at = strchr(g, '@');
    size_t head = at != NULL ? (size_t)(at - g) : strlen(g);
    const char *slash = memchr(g, '/', head);
    size_t tlen = slash != NULL ? (size_t)(slash - g) : head;
    json_t *o;
    json_t *phases;

    if (!name_ok(g, tlen) || (slash != NULL && !name_ok(slash + 1, head - tlen - 1))) {
        return NULL;
    }
    o = json_object();
    if (o == NULL || json_object_set_new(o, "agent_type", json_stringn(g, tlen)) != 0 ||
        (slash != NULL &&
         json_object_set_new(o, "instance", json_stringn(slash + 1, head - tlen - 1)) != 0)) {
        json_decref(o);
        return NULL;
    }
    if (at == NULL) {
        return o;
    }
    phases = json_array();
    for (const char *p = at + 1; phases != NULL;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);

        if (!name_ok(p, len) || json_array_append_new(phases, json_stringn(p, len)) != 0) {
            json_decref(phases);
            phases = NULL;
            break;
        }
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    if (phases == NULL || json_object_set_new(o, "phases", phases) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The --grant options as an array under field of body; false after printing why. */
static bool add_grants(const struct args *a, json_t *body, const char *field)
{
    size_t n = a->n_many[many_slot(O_GRANT)];
    json_t *arr;

    if (n == 0) {
        return true;
    }
    if ((arr = json_array()) == NULL || json_object_set_new(body, field, arr) != 0) {
        fprintf(stderr, "coffer: out of memory\n");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const char *g = a->many[many_slot(O_GRANT)][i];

        if (json_array_append_new(arr, grant_json(g)) != 0) {
            fprintf(stderr,
                    "coffer: --grant '%s' is not TYPE[/INSTANCE][@PHASE,PHASE...] of names\n", g);
            return false;
        }
    }
    return true;
}

/*
 * body["key_expires_at"] from every --key-expires NAME=TIME: a key name and a
 * time the server checks (YYYY-MM-DDTHH:MM:SSZ). false after saying what is
 * wrong.
 */
static bool add_key_expiry(const struct args *a, json_t *body)
{
    size_t n = a->n_many[many_slot(O_KEY_EXPIRES)];
    json_t *obj;

    if (n == 0) {
        return true;
    }
    if ((obj = json_object()) == NULL || json_object_set_new(body, "key_expires_at", obj) != 0) {
        fprintf(stderr, "coffer: out of memory\n");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const char *arg = a->many[many_slot(O_KEY_EXPIRES)][i];
        const char *eq = strchr(arg, '=');
        char name[COFFER_KEY_NAME_MAX + 1];
        size_t len = eq != NULL ? (size_t)(eq - arg) : 0;

        if (eq == NULL || len == 0 || len > COFFER_KEY_NAME_MAX || eq[1] == '\0') {
            fprintf(stderr, "coffer: --key-expires wants NAME=YYYY-MM-DDTHH:MM:SSZ\n");
            return false;
        }
        coffer_memcpy(name, arg, len);
        name[len] = '\0';
        if (!key_name_ok(name)) {
            fprintf(stderr, "coffer: --key-expires: '%s' is not a key name\n", name);
            return false;
        }
        if (json_object_get(obj, name) != NULL) {
            fprintf(stderr, "coffer: --key-expires: key %s is given twice\n", name);
            return false;
        }
        if (json_object_set_new(obj, name, json_string(eq + 1)) != 0) {
            fprintf(stderr, "coffer: --key-expires: the time of %s is not UTF-8 text\n", name);
            return false;
        }
    }
    return true;
}

/* Sets body[field] to the option's value when it was given; false when out of memory. */
static bool set_opt(json_t *body, const struct args *a, enum opt o, const char *field)
{
    if (a->one[o] == NULL) {
        return true;
    }
    if (json_object_set_new(body, field, json_string(a->one[o])) != 0) {
        fprintf(stderr, "coffer: %s is not UTF-8 text\n", opts[o].flag);
        return false;
    }
    return true;
}

/* ---- Values: terminal, files, standard input ------------------------------------------- */

/* Prompts on /dev/tty and reads the value of name with echo off. */
static enum coffer_err read_tty(const char *name, struct coffer_secret **out)
{
    char prompt[TTY_PROMPT_MAX];
    char what[TTY_PROMPT_MAX];
    struct coffer_tty_request req = {.prompt = prompt,
                                     .what = what,
                                     .max = COFFER_VALUE_MAX,
                                     .stdin_unless_tty = false,
                                     .fail = COFFER_E_IO,
                                     .refuse = COFFER_E_INVALID};
    enum coffer_err r;

    (void)snprintf(prompt, sizeof(prompt), "value of %s (not shown): ", name);
    (void)snprintf(what, sizeof(what), "the value of %s", name);
    r = coffer_tty_read_secret(&req, out);
    if (r == COFFER_E_IO) {
        return coffer_err_wrap(r, "use --from-file %s=PATH or --stdin if there is no terminal",
                               name);
    }
    return r;
}

/* Reads all of fd (at most max bytes) into a new secret; what names it in errors. */
static enum coffer_err read_all(int fd, size_t max, const char *what, struct coffer_secret **out)
{
    struct coffer_secret_view v;
    size_t len = 0;
    enum coffer_err r;

    if ((r = coffer_secret_new(max + 1, out)) != COFFER_OK) {
        return r;
    }
    v = coffer_secret_view(*out);
    for (;;) {
        ssize_t n = read(fd, v.data + len, v.len - len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            r = coffer_err_set(COFFER_E_IO, "reading %s: %s", what, strerror(errno));
            break;
        }
        if (n == 0) {
            r = coffer_secret_truncate(*out, len);
            break;
        }
        len += (size_t)n;
        if (len > max) {
            r = coffer_err_set(COFFER_E_LIMIT, "%s is over %zu bytes", what, max);
            break;
        }
    }
    if (r != COFFER_OK) {
        coffer_secret_free(out);
    }
    return r;
}

/* The bytes of a regular file or a pipe, exactly as they are. */
static enum coffer_err read_file(const char *name, const char *path, struct coffer_secret **out)
{
    struct stat st;
    char what[COFFER_KEY_NAME_MAX + 32];
    enum coffer_err r;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    *out = NULL;
    (void)snprintf(what, sizeof(what), "the file for %s", name);
    if (fd < 0) {
        return coffer_err_set(COFFER_E_IO, "%s: cannot open %s: %s", what, path, strerror(errno));
    }
    if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode))) {
        close(fd);
        return coffer_err_set(COFFER_E_IO, "%s: %s is not a regular file or a pipe", what, path);
    }
    r = read_all(fd, COFFER_VALUE_MAX, what, out);
    close(fd);
    return r;
}

/* Moves a secret's bytes into keys[name] (wiping JSON memory) and frees the secret. */
static enum coffer_err put_value(json_t *keys, const char *name, struct coffer_secret **s)
{
    struct coffer_secret_view v = coffer_secret_view(*s);
    json_t *j = json_stringn((const char *)v.data, v.len);

    coffer_secret_free(s);
    if (j == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "the value of %s is not UTF-8 text", name);
    }
    if (json_object_set_new(keys, name, j) != 0) {
        return coffer_err_set(COFFER_E_NOMEM, "adding the value of %s", name);
    }
    return COFFER_OK;
}

static enum coffer_err check_new_key(const json_t *keys, const char *name)
{
    if (strchr(name, '=') != NULL) {
        return coffer_err_set(COFFER_E_INVALID,
                              "--key takes a key name only: values are read from the terminal, "
                              "--from-file NAME=PATH or --stdin, never from the command line");
    }
    if (!key_name_ok(name)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "'%s' is not a key name ([A-Za-z0-9_][A-Za-z0-9_.-]{0,63})", name);
    }
    if (json_object_get(keys, name) != NULL) {
        return coffer_err_set(COFFER_E_INVALID, "key %s is given twice", name);
    }
    return COFFER_OK;
}

/* Standard input as a JSON object of key names to string values. */
static enum coffer_err read_stdin_keys(json_t **out)
{
    struct coffer_secret *in = NULL;
    struct coffer_secret_view v;
    json_error_t jerr;
    const char *name;
    json_t *value;
    enum coffer_err r;

    *out = NULL;
    if ((r = read_all(STDIN_FILENO, STDIN_MAX, "standard input", &in)) != COFFER_OK) {
        return r;
    }
    v = coffer_secret_view(in);
    *out = json_loadb((const char *)v.data, v.len, JSON_REJECT_DUPLICATES, &jerr);
    coffer_secret_free(&in);
    if (*out == NULL) {
        /* jansson's text may quote the input, which holds values: line and column only. */
        r = coffer_err_set(COFFER_E_INVALID,
                           "standard input is not JSON (line %d, column %d); want an object of "
                           "key names to values",
                           jerr.line, jerr.column);
        coffer_wipe(&jerr, sizeof(jerr));
        return r;
    }
    coffer_wipe(&jerr, sizeof(jerr));
    if (!json_is_object(*out) || json_object_size(*out) == 0 ||
        json_object_size(*out) > COFFER_KEYS_MAX) {
        r = coffer_err_set(COFFER_E_INVALID,
                           "standard input must be a JSON object of 1 to %d key names to values",
                           COFFER_KEYS_MAX);
    }
    json_object_foreach(*out, name, value)
    {
        if (r != COFFER_OK) {
            break;
        }
        if (!key_name_ok(name)) {
            r = coffer_err_set(COFFER_E_INVALID, "standard input: a key name is not "
                                                 "[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}");
        } else if (!json_is_string(value)) {
            r = coffer_err_set(COFFER_E_INVALID, "standard input: the value of %s is not a string",
                               name);
        }
    }
    if (r != COFFER_OK) {
        json_decref(*out);
        *out = NULL;
    }
    return r;
}

/*
 * The values of --key, --from-file or --stdin as body["keys"]. Returns 0,
 * or the exit status after printing why.
 */
static int add_values(const struct args *a, json_t *body, const char *usage)
{
    size_t n_key = a->n_many[many_slot(O_KEY)];
    size_t n_file = a->n_many[many_slot(O_FROM_FILE)];
    struct coffer_secret *s = NULL;
    json_t *keys = NULL;
    enum coffer_err r = COFFER_OK;

    if (a->set[O_STDIN] ? n_key + n_file > 0 : n_key + n_file == 0) {
        return usage_error(usage, "%s",
                           "give the values with --key NAME, --from-file NAME=PATH, or --stdin "
                           "alone");
    }
    if (a->set[O_STDIN]) {
        r = read_stdin_keys(&keys);
    } else if ((keys = json_object()) == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "building the keys");
    }
    for (size_t i = 0; r == COFFER_OK && !a->set[O_STDIN] && i < n_key + n_file; i++) {
        const char *arg =
            i < n_key ? a->many[many_slot(O_KEY)][i] : a->many[many_slot(O_FROM_FILE)][i - n_key];
        char name[COFFER_KEY_NAME_MAX + 2];
        const char *eq = i < n_key ? NULL : strchr(arg, '=');

        if (i >= n_key && (eq == NULL || (size_t)(eq - arg) > COFFER_KEY_NAME_MAX)) {
            r = coffer_err_set(COFFER_E_INVALID, "--from-file wants NAME=PATH, not '%s'", arg);
            break;
        }
        (void)snprintf(name, sizeof(name), "%.*s", (int)(eq != NULL ? eq - arg : (long)strlen(arg)),
                       arg);
        if ((r = check_new_key(keys, name)) != COFFER_OK ||
            (r = i < n_key ? read_tty(name, &s) : read_file(name, eq + 1, &s)) != COFFER_OK) {
            break;
        }
        r = put_value(keys, name, &s);
    }
    if (r == COFFER_OK && json_object_set_new(body, "keys", keys) != 0) {
        keys = NULL;
        r = coffer_err_set(COFFER_E_NOMEM, "building the request");
    } else if (r == COFFER_OK) {
        keys = NULL;
    }
    coffer_secret_free(&s);
    json_decref(keys);
    if (r != COFFER_OK) {
        fprintf(stderr, "coffer: %s\n", coffer_err_detail());
        return CLI_EXIT_TROUBLE;
    }
    return 0;
}

/* ---- Calling the server ------------------------------------------------------------------- */

/* One call with the target of a; the status to exit with unless it is 0 and r->json is set. */
static int call(const struct args *a, const char *what, const char *method, const char *path,
                const json_t *body, struct cli_reply *r)
{
    struct cli_target t = {a->one[O_ADDR], a->one[O_CACERT], a->one[O_CERT], a->one[O_CLIENT_KEY],
                           a->one[O_TOKEN]};
    struct cli_client *c = NULL;
    enum coffer_err e;

    memset(r, 0, sizeof(*r));
    if ((e = cli_client_new(&t, &c)) != COFFER_OK ||
        (e = cli_client_call(c, method, path, body, r)) != COFFER_OK) {
        fprintf(stderr, "coffer: %s: %s\n", what, coffer_err_detail());
        cli_client_free(&c);
        return CLI_EXIT_TROUBLE;
    }
    cli_client_free(&c);
    if (a->set[O_JSON] && r->body.len > 0) {
        bool nl = r->body.data[r->body.len - 1] == '\n';

        if (!cli_write_all(STDOUT_FILENO, r->body.data, r->body.len) ||
            (!nl && !cli_write_all(STDOUT_FILENO, "\n", 1))) {
            fprintf(stderr, "coffer: %s: cannot write to standard output\n", what);
            return CLI_EXIT_TROUBLE;
        }
    }
    if (r->status < 200 || r->status > 299) {
        return cli_reply_fail(what, r);
    }
    if (!json_is_object(r->json)) {
        fprintf(stderr, "coffer: %s: the server's answer (HTTP %ld) is not a JSON object\n", what,
                r->status);
        return CLI_EXIT_TROUBLE;
    }
    return CLI_EXIT_OK;
}

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));

    return s != NULL ? s : "-";
}

/* Server text in a column of width characters and a space. */
static void print_col(const char *s, int width)
{
    int len = (int)strnlen(s, (size_t)width);

    cli_print_text(s);
    printf("%*s ", len < width ? width - len : 0, "");
}

/* "-", a string, a number or a boolean, for a field of the server's answer. */
static void print_scalar(const json_t *v)
{
    if (json_is_string(v)) {
        cli_print_text(json_string_value(v));
    } else if (json_is_integer(v)) {
        printf("%lld", (long long)json_integer_value(v));
    } else if (json_is_true(v) || json_is_false(v)) {
        fputs(json_is_true(v) ? "yes" : "no", stdout);
    } else if (json_is_real(v)) {
        printf("%g", json_real_value(v));
    } else {
        fputs("-", stdout);
    }
}

/* An object on one line: "key=value key=value", arrays joined by ",". */
static void print_inline(const json_t *o)
{
    const char *k;
    json_t *v;
    bool first = true;

    json_object_foreach((json_t *)o, k, v)
    {
        size_t i;
        json_t *e;

        fputs(first ? "" : " ", stdout);
        first = false;
        cli_print_text(k);
        fputs("=", stdout);
        if (!json_is_array(v)) {
            print_scalar(v);
            continue;
        }
        json_array_foreach(v, i, e)
        {
            fputs(i > 0 ? "," : "", stdout);
            print_scalar(e);
        }
    }
}

/* Every field of o, one "  key: value" line each; arrays joined by ", ", objects indented. */
static void print_fields(const json_t *o, int indent)
{
    const char *k;
    json_t *v;

    json_object_foreach((json_t *)o, k, v)
    {
        printf("%*s", indent, "");
        cli_print_text(k);
        fputs(":", stdout);
        if (json_is_object(v)) {
            fputs("\n", stdout);
            print_fields(v, indent + 2);
            continue;
        }
        fputs(" ", stdout);
        if (json_is_array(v)) {
            size_t i;
            json_t *e;

            json_array_foreach(v, i, e)
            {
                fputs(i > 0 ? ", " : "", stdout);
                if (json_is_object(e)) {
                    print_inline(e);
                } else {
                    print_scalar(e);
                }
            }
            if (json_array_size(v) == 0) {
                fputs("(none)", stdout);
            }
        } else {
            print_scalar(v);
        }
        fputs("\n", stdout);
    }
}

static const char connection_usage[] =
    "connection options (each overrides its variable):\n"
    "  --addr https://HOST:PORT      COFFER_ADDR, the server (https only)\n"
    "  --cacert FILE                 COFFER_CACERT, the CA that signed the server\n"
    "  --cert FILE --client-key FILE COFFER_CLIENT_CERT, COFFER_CLIENT_KEY: a client certificate\n"
    "  --token TOKEN                 COFFER_TOKEN: a bearer token instead (prefer the variable:\n"
    "                                a command line is visible to other users of the host)\n"
    "  --json                        print the server's JSON answer as it is\n";

/* ---- put, get, list, access, revoke, phase ----------------------------------------------- */

static const char put_usage[] =
    "usage: coffer put ORG/PROJECT/NAME --type TYPE --tier TIER [--ttl D | --expires-at T]\n"
    "         [--description TEXT] [--grant TYPE[/INSTANCE][@PHASE,...]]...\n"
    "         [--expire-on-phase-end PHASE] [--key-expires NAME=T]...\n"
    "         [--oauth2-token-url URL --oauth2-client-id ID\n"
    "          [--oauth2-client-secret CREDENTIAL:KEY [--oauth2-client-auth basic|post]]]\n"
    "         (--key NAME... | --from-file NAME=PATH... | --stdin) [connection options]\n";

#define OAUTH2                                                                                     \
    (BIT(O_OAUTH2_TOKEN_URL) | BIT(O_OAUTH2_CLIENT_ID) | BIT(O_OAUTH2_CLIENT_SECRET) |             \
     BIT(O_OAUTH2_CLIENT_AUTH))

/*
 * The "oauth2" object of a put from the --oauth2-* options: the provider
 * that refreshes the credential. The server checks every field.
 */
static bool add_oauth2(const struct args *a, json_t *body)
{
    json_t *o;
    const char *ref = a->one[O_OAUTH2_CLIENT_SECRET];
    const char *colon = ref != NULL ? strchr(ref, ':') : NULL;

    if (!a->set[O_OAUTH2_TOKEN_URL] && !a->set[O_OAUTH2_CLIENT_ID] &&
        !a->set[O_OAUTH2_CLIENT_SECRET] && !a->set[O_OAUTH2_CLIENT_AUTH]) {
        return true;
    }
    if (!a->set[O_OAUTH2_TOKEN_URL] || !a->set[O_OAUTH2_CLIENT_ID]) {
        (void)usage_error(put_usage, "%s", "--oauth2-token-url and --oauth2-client-id go together");
        return false;
    }
    if (ref != NULL && (colon == NULL || colon == ref || colon[1] == '\0')) {
        (void)usage_error(put_usage, "%s", "--oauth2-client-secret wants CREDENTIAL:KEY");
        return false;
    }
    if ((o = json_object()) == NULL || json_object_set_new(body, "oauth2", o) != 0 ||
        json_object_set_new(o, "token_url", json_string(a->one[O_OAUTH2_TOKEN_URL])) != 0 ||
        json_object_set_new(o, "client_id", json_string(a->one[O_OAUTH2_CLIENT_ID])) != 0) {
        return false;
    }
    if (ref != NULL) {
        json_t *s = json_object();

        if (s == NULL || json_object_set_new(o, "client_secret", s) != 0 ||
            json_object_set_new(s, "credential", json_stringn(ref, (size_t)(colon - ref))) != 0 ||
            json_object_set_new(s, "key", json_string(colon + 1)) != 0) {
            return false;
        }
    }
    return !a->set[O_OAUTH2_CLIENT_AUTH] ||
           json_object_set_new(o, "client_auth", json_string(a->one[O_OAUTH2_CLIENT_AUTH])) == 0;
}

static int cmd_put(int argc, char **argv)
{
    char n[3][COFFER_NAME_MAX + 1];
    char path[PATH_TEXT_MAX];
    struct cli_reply r = {0};
    struct args a;
    json_t *body = NULL;
    int rc;

    if ((rc = parse(argc, argv,
                    COMMON | VALUES | LIFETIME | OAUTH2 | BIT(O_TYPE) | BIT(O_TIER) |
                        BIT(O_EXPIRE_ON_PHASE_END),
                    1, put_usage, &a)) != 0) {
        return rc;
    }
    if (!target(a.pos[0], 3, n)) {
        return CLI_EXIT_TROUBLE;
    }
    if (!a.set[O_TYPE] || !a.set[O_TIER]) {
        return usage_error(put_usage, "%s", "--type and --tier are required");
    }
    if (a.set[O_TTL] && a.set[O_EXPIRES_AT]) {
        return usage_error(put_usage, "%s", "give --ttl or --expires-at, not both");
    }
    if ((body = json_object()) == NULL || !set_opt(body, &a, O_TYPE, "type") ||
        !set_opt(body, &a, O_TIER, "tier") || !set_opt(body, &a, O_TTL, "ttl") ||
        !set_opt(body, &a, O_EXPIRES_AT, "expires_at") ||
        !set_opt(body, &a, O_DESCRIPTION, "description") ||
        !set_opt(body, &a, O_EXPIRE_ON_PHASE_END, "expire_on_phase_end") ||
        !add_grants(&a, body, "grants") || !add_key_expiry(&a, body) || !add_oauth2(&a, body)) {
        json_decref(body);
        return CLI_EXIT_TROUBLE;
    }
    if ((rc = add_values(&a, body, put_usage)) != 0) {
        json_decref(body);
        return rc;
    }
    (void)snprintf(path, sizeof(path), "/v1/orgs/%s/projects/%s/credentials/%s", n[0], n[1], n[2]);
    rc = call(&a, "put", "PUT", path, body, &r);
    json_decref(body);
    if (rc == CLI_EXIT_OK && !a.set[O_JSON]) {
        json_t *exp = json_object_get(r.json, "expires_at");

        printf("stored %s/%s/%s version %lld, ", n[0], n[1], n[2],
               (long long)json_integer_value(json_object_get(r.json, "version")));
        if (json_is_string(exp)) {
            fputs("expires ", stdout);
            cli_print_text(json_string_value(exp));
            fputs("\n", stdout);
        } else {
            fputs("never expires\n", stdout);
        }
    }
    cli_reply_cleanup(&r);
    return rc;
}

static void print_line(const char *label, const json_t *v)
{
    printf("  %-12s ", label);
    print_scalar(v);
    fputs("\n", stdout);
}

/* A credential's metadata, one field a line, as get shows it. */
static void print_cred(const json_t *c)
{
    const json_t *exp = json_object_get(c, "expires_at");
    size_t i;
    json_t *k;

    print_line("type", json_object_get(c, "type"));
    print_line("tier", json_object_get(c, "tier"));
    print_line("version", json_object_get(c, "version"));
    print_line("created", json_object_get(c, "created_at"));
    print_line("updated", json_object_get(c, "updated_at"));
    if (json_is_null(exp)) {
        printf("  %-12s never\n", "expires");
    } else {
        print_line("expires", exp);
    }
    print_line("revoked", json_object_get(c, "revoked"));
    print_line("description", json_object_get(c, "description"));
    printf("  %-12s ", "keys");
    json_array_foreach(json_object_get(c, "keys"), i, k)
    {
        fputs(i > 0 ? ", " : "", stdout);
        print_scalar(k);
    }
    fputs("\n", stdout);
}

static const char get_usage[] = "usage: coffer get ORG/PROJECT/NAME [connection options]\n";

static int cmd_get(int argc, char **argv)
{
    char n[3][COFFER_NAME_MAX + 1];
    char path[PATH_TEXT_MAX];
    struct cli_reply r = {0};
    struct args a;
    int rc;

    if ((rc = parse(argc, argv, COMMON, 1, get_usage, &a)) != 0) {
        return rc;
    }
    if (!target(a.pos[0], 3, n)) {
        return CLI_EXIT_TROUBLE;
    }
    (void)snprintf(path, sizeof(path), "/v1/orgs/%s/projects/%s/credentials/%s", n[0], n[1], n[2]);
    if ((rc = call(&a, "get", "GET", path, NULL, &r)) == CLI_EXIT_OK && !a.set[O_JSON]) {
        printf("%s/%s/", n[0], n[1]);
        cli_print_text(str(r.json, "name"));
        fputs("\n", stdout);
        print_cred(r.json);
    }
    cli_reply_cleanup(&r);
    return rc;
}

/* The time now as the API writes times ("YYYY-MM-DDTHH:MM:SSZ"), which sort as text. */
static void now_text(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        out[0] = '\0';
    }
}

static const char list_usage[] = "usage: coffer list ORG/PROJECT [connection options]\n";

static int cmd_list(int argc, char **argv)
{
    char n[2][COFFER_NAME_MAX + 1];
    char path[PATH_TEXT_MAX];
    struct cli_reply r = {0};
    struct args a;
    const json_t *creds;
    char now[32];
    size_t i;
    json_t *c;
    int rc;

    if ((rc = parse(argc, argv, COMMON, 1, list_usage, &a)) != 0) {
        return rc;
    }
    if (!target(a.pos[0], 2, n)) {
        return CLI_EXIT_TROUBLE;
    }
    (void)snprintf(path, sizeof(path), "/v1/orgs/%s/projects/%s/credentials", n[0], n[1]);
    if ((rc = call(&a, "list", "GET", path, NULL, &r)) != CLI_EXIT_OK || a.set[O_JSON]) {
        cli_reply_cleanup(&r);
        return rc;
    }
    creds = json_object_get(r.json, "credentials");
    if (!json_is_array(creds)) {
        fprintf(stderr, "coffer: list: the answer has no list of credentials\n");
        cli_reply_cleanup(&r);
        return CLI_EXIT_TROUBLE;
    }
    now_text(now);
    if (json_array_size(creds) == 0) {
        printf("%s/%s: no credentials you may see\n", n[0], n[1]);
    } else {
        printf("%-24s %-18s %-8s %-7s %-20s %s\n", "NAME", "TYPE", "TIER", "VERSION", "EXPIRES",
               "STATE");
    }
    json_array_foreach(creds, i, c)
    {
        const json_t *exp = json_object_get(c, "expires_at");

        print_col(str(c, "name"), 24);
        print_col(str(c, "type"), 18);
        print_col(str(c, "tier"), 8);
        printf("%-7lld ", (long long)json_integer_value(json_object_get(c, "version")));
        print_col(json_is_string(exp) ? json_string_value(exp) : "never", 20);
        printf("%s\n", json_is_true(json_object_get(c, "revoked")) ? "revoked"
                       : json_is_string(exp) && strcmp(json_string_value(exp), now) <= 0
                           ? "expired"
                           : "active");
    }
    cli_reply_cleanup(&r);
    return CLI_EXIT_OK;
}

/* Writes the values of an access: one key raw, or "NAME=VALUE" lines. */
static int print_values(const json_t *keys, const char *only)
{
    const char *k;
    json_t *v;

    if (only != NULL) {
        v = json_object_get(keys, only);
        if (!json_is_string(v)) {
            fprintf(stderr, "coffer: access: the credential has no key %s\n", only);
            return CLI_EXIT_REFUSED;
        }
        return cli_write_all(STDOUT_FILENO, json_string_value(v), json_string_length(v))
                   ? CLI_EXIT_OK
                   : CLI_EXIT_TROUBLE;
    }
    json_object_foreach((json_t *)keys, k, v)
    {
        if (!json_is_string(v) || !cli_write_all(STDOUT_FILENO, k, strlen(k)) ||
            !cli_write_all(STDOUT_FILENO, "=", 1) ||
            !cli_write_all(STDOUT_FILENO, json_string_value(v), json_string_length(v)) ||
            !cli_write_all(STDOUT_FILENO, "\n", 1)) {
            return CLI_EXIT_TROUBLE;
        }
    }
    return CLI_EXIT_OK;
}

/* Names the keys the server left out because their own expiry has passed, on stderr. */
static void print_expired(const json_t *expired)
{
    size_t i;
    json_t *e;

    if (!json_is_array(expired) || json_array_size(expired) == 0) {
        return;
    }
    fflush(stdout);
    fputs("coffer: access: expired keys left out:", stderr);
    json_array_foreach((json_t *)expired, i, e)
    {
        const char *name = json_string_value(e);

        fprintf(stderr, "%s%s", i > 0 ? ", " : " ",
                name != NULL && key_name_ok(name) ? name : "(unnamed)");
    }
    fputs("\n", stderr);
}

static const char access_usage[] =
    "usage: coffer access ORG/PROJECT/NAME --purpose TEXT [--key NAME]"
    " [connection options]\n";

static int cmd_access(int argc, char **argv)
{
    char n[3][COFFER_NAME_MAX + 1];
    char path[PATH_TEXT_MAX];
    struct cli_reply r = {0};
    struct args a;
    const char *only;
    json_t *body;
    int rc;

    if ((rc = parse(argc, argv, COMMON | BIT(O_PURPOSE) | BIT(O_KEY), 1, access_usage, &a)) != 0) {
        return rc;
    }
    if (!target(a.pos[0], 3, n)) {
        return CLI_EXIT_TROUBLE;
    }
    if (!a.set[O_PURPOSE] || a.n_many[many_slot(O_KEY)] > 1) {
        return usage_error(access_usage, "%s", "--purpose is required, --key at most once");
    }
    only = a.n_many[many_slot(O_KEY)] == 1 ? a.many[many_slot(O_KEY)][0] : NULL;
    if (only != NULL && !key_name_ok(only)) {
        return usage_error(access_usage, "'%s' is not a key name", only);
    }
    if ((body = json_object()) == NULL || !set_opt(body, &a, O_PURPOSE, "purpose")) {
        json_decref(body);
        return CLI_EXIT_TROUBLE;
    }
    (void)snprintf(path, sizeof(path), "/v1/orgs/%s/projects/%s/credentials/%s/access", n[0], n[1],
                   n[2]);
    rc = call(&a, "access", "POST", path, body, &r);
    json_decref(body);
    if (rc == CLI_EXIT_OK && !a.set[O_JSON]) {
        const json_t *keys = json_object_get(r.json, "keys");

        fflush(stdout);
        rc = json_is_object(keys) ? print_values(keys, only) : CLI_EXIT_TROUBLE;
        if (json_is_true(json_object_get(r.json, "purpose_unexpected"))) {
            fprintf(stderr, "coffer: access: the purpose matches none of the credential's "
                            "allowed purposes; the access is flagged for review\n");
        }
        print_expired(json_object_get(r.json, "expired_keys"));
    }
    cli_reply_cleanup(&r);
    return rc;
}

static const char revoke_usage[] = "usage: coffer revoke ORG/PROJECT/NAME --reason TEXT"
                                   " [connection options]\n";

static int cmd_revoke(int argc, char **argv)
{
    char n[3][COFFER_NAME_MAX + 1];
    char path[PATH_TEXT_MAX];
    struct cli_reply r = {0};
    struct args a;
    json_t *body;
    int rc;

    if ((rc = parse(argc, argv, COMMON | BIT(O_REASON), 1, revoke_usage, &a)) != 0) {
        return rc;
    }
    if (!target(a.pos[0], 3, n)) {
        return CLI_EXIT_TROUBLE;
    }
    if (!a.set[O_REASON]) {
        return usage_error(revoke_usage, "%s", "--reason is required");
    }
    if ((body = json_object()) == NULL || !set_opt(body, &a, O_REASON, "reason")) {
        json_decref(body);
        return CLI_EXIT_TROUBLE;
    }
    (void)snprintf(path, sizeof(path), "/v1/orgs/%s/projects/%s/credentials/%s/revoke", n[0], n[1],
                   n[2]);
    rc = call(&a, "revoke", "POST", path, body, &r);
    json_decref(body);
    if (rc == CLI_EXIT_OK && !a.set[O_JSON]) {
        printf("revoked %s/%s/%s\n", n[0], n[1], n[2]);
    }
    cli_reply_cleanup(&r);
    return rc;
}

static const char phase_usage[] = "usage: coffer phase ORG/PROJECT PHASE [connection options]\n";

static int cmd_phase(int argc, char **argv)
{
    char n[2][COFFER_NAME_MAX + 1];
    char path[PATH_TEXT_MAX];
    struct cli_reply r = {0};
    struct args a;
    json_t *body;
    size_t i;
    json_t *e;
    int rc;

    if ((rc = parse(argc, argv, COMMON, 2, phase_usage, &a)) != 0) {
        return rc;
    }
    if (!target(a.pos[0], 2, n)) {
        return CLI_EXIT_TROUBLE;
    }
    if (!name_ok(a.pos[1], strlen(a.pos[1]))) {
        return usage_error(phase_usage, "'%s' is not a phase name", a.pos[1]);
    }
    if ((body = json_pack("{s:s}", "phase", a.pos[1])) == NULL) {
        return CLI_EXIT_TROUBLE;
    }
    (void)snprintf(path, sizeof(path), "/v1/orgs/%s/projects/%s/phase", n[0], n[1]);
    rc = call(&a, "phase", "PUT", path, body, &r);
    json_decref(body);
    if (rc == CLI_EXIT_OK && !a.set[O_JSON]) {
        if (!json_is_true(json_object_get(r.json, "changed"))) {
            printf("%s/%s: already in phase %s\n", n[0], n[1], a.pos[1]);
        } else {
            printf("%s/%s: ", n[0], n[1]);
            cli_print_text(json_is_string(json_object_get(r.json, "previous_phase"))
                               ? str(r.json, "previous_phase")
                               : "(none)");
            printf(" -> %s\n", a.pos[1]);
        }
        json_array_foreach(json_object_get(r.json, "expired"), i, e)
        {
            fputs("  expired ", stdout);
            print_scalar(e);
            fputs("\n", stdout);
        }
    }
    cli_reply_cleanup(&r);
    return rc;
}

/* ---- request: the credential request flow ------------------------------------------------ */

static const char request_usage[] =
    "usage: coffer request create ORG/PROJECT --name NAME --type TYPE --tier TIER --purpose TEXT\n"
    "         [--urgency U] [--description TEXT] [--grant TYPE[/INSTANCE][@PHASE,...]]...\n"
    "       coffer request list ORG/PROJECT\n"
    "       coffer request show ORG/PROJECT ID\n"
    "       coffer request fulfil ORG/PROJECT ID (--key NAME... | --from-file NAME=PATH... |\n"
    "         --stdin) [--ttl D | --expires-at T] [--description TEXT] [--grant ...]...\n"
    "         [--key-expires NAME=T]...\n"
    "       coffer request deny ORG/PROJECT ID --reason TEXT\n"
    "       (each with [connection options])\n";

static int request_create(char n[][COFFER_NAME_MAX + 1], const struct args *a)
{
    char path[PATH_TEXT_MAX];
    struct cli_reply r = {0};
    json_t *body;
    int rc;

    if (!a->set[O_NAME] || !a->set[O_TYPE] || !a->set[O_TIER] || !a->set[O_PURPOSE]) {
        return usage_error(request_usage, "%s",
                           "--name, --type, --tier and --purpose are required");
    }
    if (!name_ok(a->one[O_NAME], strlen(a->one[O_NAME]))) {
        return usage_error(request_usage, "'%s' is not a credential name", a->one[O_NAME]);
    }
    if ((body = json_object()) == NULL || !set_opt(body, a, O_NAME, "name") ||
        !set_opt(body, a, O_TYPE, "type") || !set_opt(body, a, O_TIER, "tier") ||
        !set_opt(body, a, O_PURPOSE, "purpose") || !set_opt(body, a, O_URGENCY, "urgency") ||
        !set_opt(body, a, O_DESCRIPTION, "description") ||
        !add_grants(a, body, "suggested_grants")) {
        json_decref(body);
        return CLI_EXIT_TROUBLE;
    }
    (void)snprintf(path, sizeof(path), "/v1/orgs/%s/projects/%s/requests", n[0], n[1]);
    rc = call(a, "request create", "POST", path, body, &r);
    json_decref(body);
    if (rc == CLI_EXIT_OK && !a->set[O_JSON]) {
        fputs("request ", stdout);
        cli_print_text(str(r.json, "id"));
        fputs(" is ", stdout);
        cli_print_text(str(r.json, "state"));
        fputs("\n", stdout);
    }
    cli_reply_cleanup(&r);
    return rc;
}

static int request_list(char n[][COFFER_NAME_MAX + 1], const struct args *a)
{
    char path[PATH_TEXT_MAX];
    struct cli_reply r = {0};
    const json_t *list;
    size_t i;
    json_t *q;
    int rc;

    (void)snprintf(path, sizeof(path), "/v1/orgs/%s/projects/%s/requests", n[0], n[1]);
    if ((rc = call(a, "request list", "GET", path, NULL, &r)) != CLI_EXIT_OK || a->set[O_JSON]) {
        cli_reply_cleanup(&r);
        return rc;
    }
    list = json_object_get(r.json, "requests");
    if (json_array_size(list) == 0) {
        printf("%s/%s: no requests\n", n[0], n[1]);
    } else {
        printf("%-36s %-10s %-24s %-18s %s\n", "ID", "STATE", "NAME", "TYPE", "TIER");
    }
    json_array_foreach(list, i, q)
    {
        print_col(str(q, "id"), 36);
        print_col(str(q, "state"), 10);
        print_col(str(q, "name"), 24);
        print_col(str(q, "type"), 18);
        cli_print_text(str(q, "tier"));
        fputs("\n", stdout);
    }
    cli_reply_cleanup(&r);
    return CLI_EXIT_OK;
}

/* show, fulfil and deny: one request by id. */
static int request_one(const char *sub, char n[][COFFER_NAME_MAX + 1], const char *id,
                       const struct args *a)
{
    char path[PATH_TEXT_MAX];
    char what[32];
    struct cli_reply r = {0};
    json_t *body = NULL;
    const char *method = "POST";
    int rc;

    (void)snprintf(what, sizeof(what), "request %s", sub);
    (void)snprintf(path, sizeof(path), "/v1/orgs/%s/projects/%s/requests/%s", n[0], n[1], id);
    if (strcmp(sub, "show") == 0) {
        method = "GET";
    } else if (strcmp(sub, "deny") == 0) {
        if (!a->set[O_REASON]) {
            return usage_error(request_usage, "%s", "--reason is required");
        }
        if ((body = json_object()) == NULL || !set_opt(body, a, O_REASON, "reason")) {
            json_decref(body);
            return CLI_EXIT_TROUBLE;
        }
        (void)strncat(path, "/deny", sizeof(path) - strlen(path) - 1);
    } else {
        if (a->set[O_TTL] && a->set[O_EXPIRES_AT]) {
            return usage_error(request_usage, "%s", "give --ttl or --expires-at, not both");
        }
        if ((body = json_object()) == NULL || !set_opt(body, a, O_TTL, "ttl") ||
            !set_opt(body, a, O_EXPIRES_AT, "expires_at") ||
            !set_opt(body, a, O_DESCRIPTION, "description") || !add_grants(a, body, "grants") ||
            !add_key_expiry(a, body)) {
            json_decref(body);
            return CLI_EXIT_TROUBLE;
        }
        if ((rc = add_values(a, body, request_usage)) != 0) {
            json_decref(body);
            return rc;
        }
        (void)strncat(path, "/fulfill", sizeof(path) - strlen(path) - 1);
    }
    rc = call(a, what, method, path, body, &r);
    json_decref(body);
    if (rc == CLI_EXIT_OK && !a->set[O_JSON]) {
        print_fields(r.json, 0);
    }
    cli_reply_cleanup(&r);
    return rc;
}

static int cmd_request(int argc, char **argv)
{
    char n[2][COFFER_NAME_MAX + 1];
    const char *sub = argc >= 2 ? argv[1] : "";
    struct args a;
    unsigned allowed = COMMON;
    int n_pos = 2;
    int rc;

    if (strcmp(sub, "create") == 0) {
        allowed |= BIT(O_NAME) | BIT(O_TYPE) | BIT(O_TIER) | BIT(O_PURPOSE) | BIT(O_URGENCY) |
                   BIT(O_GRANT) | BIT(O_DESCRIPTION);
        n_pos = 1;
    } else if (strcmp(sub, "list") == 0) {
        n_pos = 1;
    } else if (strcmp(sub, "fulfil") == 0 || strcmp(sub, "fulfill") == 0) {
        allowed |= VALUES | LIFETIME;
        sub = "fulfil";
    } else if (strcmp(sub, "deny") == 0) {
        allowed |= BIT(O_REASON);
    } else if (strcmp(sub, "show") != 0) {
        fputs(request_usage, stderr);
        return CLI_EXIT_TROUBLE;
    }
    if ((rc = parse(argc - 2, argv + 2, allowed, n_pos, request_usage, &a)) != 0) {
        return rc;
    }
    if (!target(a.pos[0], 2, n) || (n_pos == 2 && !id_ok(a.pos[1]))) {
        return CLI_EXIT_TROUBLE;
    }
    if (strcmp(sub, "create") == 0) {
        return request_create(n, &a);
    }
    if (strcmp(sub, "list") == 0) {
        return request_list(n, &a);
    }
    return request_one(sub, n, a.pos[1], &a);
}

/* ---- approve, token -------------------------------------------------------------------- */

static const char approve_usage[] =
    "usage: coffer approve ORG/PROJECT/NAME --agent TYPE/INSTANCE --until T [--from T]\n"
    "         [connection options]\n"
    "       (times as YYYY-MM-DDTHH:MM:SSZ)\n";

static int cmd_approve(int argc, char **argv)
{
    char n[3][COFFER_NAME_MAX + 1];
    char agent[2][COFFER_NAME_MAX + 1];
    char path[PATH_TEXT_MAX];
    struct cli_reply r = {0};
    struct args a;
    json_t *body;
    int rc;

    if ((rc = parse(argc, argv, COMMON | BIT(O_AGENT) | BIT(O_UNTIL) | BIT(O_FROM), 1,
                    approve_usage, &a)) != 0) {
        return rc;
    }
    if (!target(a.pos[0], 3, n)) {
        return CLI_EXIT_TROUBLE;
    }
    if (!a.set[O_AGENT] || !a.set[O_UNTIL]) {
        return usage_error(approve_usage, "%s", "--agent and --until are required");
    }
    if (!split_names(a.one[O_AGENT], 2, agent)) {
        return usage_error(approve_usage, "--agent '%s' is not TYPE/INSTANCE", a.one[O_AGENT]);
    }
    body = json_pack("{s:s, s:s}", "agent_type", agent[0], "instance", agent[1]);
    if (body == NULL || !set_opt(body, &a, O_UNTIL, "until") ||
        !set_opt(body, &a, O_FROM, "from")) {
        json_decref(body);
        return CLI_EXIT_TROUBLE;
    }
    (void)snprintf(path, sizeof(path), "/v1/orgs/%s/projects/%s/credentials/%s/approvals", n[0],
                   n[1], n[2]);
    rc = call(&a, "approve", "POST", path, body, &r);
    json_decref(body);
    if (rc == CLI_EXIT_OK && !a.set[O_JSON]) {
        printf("approved %s/%s for %s/%s/%s until ", agent[0], agent[1], n[0], n[1], n[2]);
        cli_print_text(a.one[O_UNTIL]);
        fputs("\n", stdout);
        print_fields(r.json, 2);
    }
    cli_reply_cleanup(&r);
    return rc;
}

static const char token_usage[] =
    "usage: coffer token create ORG --principal agent/TYPE/INSTANCE|admin/NAME [--ttl D]\n"
    "         [--description TEXT]\n"
    "       coffer token revoke ORG ID --reason TEXT\n"
    "       (each with [connection options])\n";

/* agent/TYPE/INSTANCE or admin/NAME. */
static bool principal_ok(const char *p)
{
    char parts[2][COFFER_NAME_MAX + 1];

    if (strncmp(p, "agent/", 6) == 0) {
        return split_names(p + 6, 2, parts);
    }
    return strncmp(p, "admin/", 6) == 0 && split_names(p + 6, 1, parts);
}

static int cmd_token(int argc, char **argv)
{
    char org[1][COFFER_NAME_MAX + 1];
    char path[PATH_TEXT_MAX];
    const char *sub = argc >= 2 ? argv[1] : "";
    bool create = strcmp(sub, "create") == 0;
    struct cli_reply r = {0};
    struct args a;
    json_t *body;
    int rc;

    if (!create && strcmp(sub, "revoke") != 0) {
        fputs(token_usage, stderr);
        return CLI_EXIT_TROUBLE;
    }
    if ((rc = parse(
             argc - 2, argv + 2,
             COMMON | (create ? BIT(O_PRINCIPAL) | BIT(O_TTL) | BIT(O_DESCRIPTION) : BIT(O_REASON)),
             create ? 1 : 2, token_usage, &a)) != 0) {
        return rc;
    }
    if (!split_names(a.pos[0], 1, org)) {
        return usage_error(token_usage, "'%s' is not an org name", a.pos[0]);
    }
    if (!create && !id_ok(a.pos[1])) {
        return CLI_EXIT_TROUBLE;
    }
    if (create && (!a.set[O_PRINCIPAL] || !principal_ok(a.one[O_PRINCIPAL]))) {
        return usage_error(token_usage, "%s",
                           "--principal agent/TYPE/INSTANCE or admin/NAME is required");
    }
    if (!create && !a.set[O_REASON]) {
        return usage_error(token_usage, "%s", "--reason is required");
    }
    if ((body = json_object()) == NULL || !set_opt(body, &a, O_PRINCIPAL, "principal") ||
        !set_opt(body, &a, O_TTL, "ttl") || !set_opt(body, &a, O_DESCRIPTION, "description") ||
        !set_opt(body, &a, O_REASON, "reason")) {
        json_decref(body);
        return CLI_EXIT_TROUBLE;
    }
    if (create) {
        (void)snprintf(path, sizeof(path), "/v1/orgs/%s/tokens", org[0]);
    } else {
        (void)snprintf(path, sizeof(path), "/v1/orgs/%s/tokens/%s/revoke", org[0], a.pos[1]);
    }
    rc = call(&a, create ? "token create" : "token revoke", "POST", path, body, &r);
    json_decref(body);
    if (rc == CLI_EXIT_OK && !a.set[O_JSON] && create) {
        const char *token = json_string_value(json_object_get(r.json, "token"));

        fputs("token id ", stdout);
        cli_print_text(str(r.json, "id"));
        fputs(", expires ", stdout);
        cli_print_text(str(r.json, "expires_at"));
        fputs("; the token (shown once; give it to the client as COFFER_TOKEN):\n", stdout);
        fflush(stdout);
        if (token == NULL || !cli_write_all(STDOUT_FILENO, token, strlen(token)) ||
            !cli_write_all(STDOUT_FILENO, "\n", 1)) {
            rc = CLI_EXIT_TROUBLE;
        }
    } else if (rc == CLI_EXIT_OK && !a.set[O_JSON]) {
        printf("revoked token %s\n", a.pos[1]);
    }
    cli_reply_cleanup(&r);
    return rc;
}

/* ---- Dispatch ------------------------------------------------------------------------------ */

int cli_api(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
        bool sub; /* takes a subcommand word */
        const char *usage;
    } cmds[] = {
        {"put", cmd_put, false, put_usage},
        {"get", cmd_get, false, get_usage},
        {"list", cmd_list, false, list_usage},
        {"access", cmd_access, false, access_usage},
        {"revoke", cmd_revoke, false, revoke_usage},
        {"phase", cmd_phase, false, phase_usage},
        {"request", cmd_request, true, request_usage},
        {"approve", cmd_approve, false, approve_usage},
        {"token", cmd_token, true, token_usage},
    };

    /* Values pass through JSON: every allocation jansson makes from here on is wiped on free. */
    coffer_api_json_init();
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(argv[0], cmds[i].name) != 0) {
            continue;
        }
        for (int k = 1; k < argc; k++) {
            if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0) {
                printf("%s%s", cmds[i].usage, connection_usage);
                return CLI_EXIT_OK;
            }
        }
        return cmds[i].sub ? cmds[i].fn(argc, argv) : cmds[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "coffer: unknown command '%s'\n", argv[0]);
    return CLI_EXIT_TROUBLE;
}
