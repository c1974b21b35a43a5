/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cofferd's configuration file: a file that sets every key loads into
 * exactly those values; a minimal file gets the documented defaults;
 * relative paths resolve against the file's directory (also when the file
 * itself is named relatively); and every class of problem is refused with
 * its exact "file:line:column: " and a message that says what is wrong,
 * all problems of a file at once, without quoting a PIN source or a
 * database password back, leaving the caller's struct zeroed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "coffer/config.h"
#include "coffer/mem.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The temporary directory of the running test, and the configuration file in it. */
static char tmpdir[64];
static char cfg_path[128];

static int setup(void **state)
{
    (void)state;
    (void)snprintf(tmpdir, sizeof(tmpdir), "/tmp/coffer-config-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        return -1;
    }
    (void)snprintf(cfg_path, sizeof(cfg_path), "%s/coffer.yaml", tmpdir);
    return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    (void)state;
    return nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_bytes(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_text(const char *path, const char *text)
{
    write_bytes(path, text, strlen(text));
}

static void dump(const struct coffer_policy_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        print_message("  diag: %s\n", d->lines[i]);
    }
}

/* The base file: every required key, each on a line of its own. */
static const char *const base[] = {
    "listen: 127.0.0.1:8443",                                           /* 1 */
    "tls:",                                                             /* 2 */
    "  cert: /etc/coffer/server.pem",                                   /* 3 */
    "  key: /etc/coffer/server.key",                                    /* 4 */
    "  client_ca: /etc/coffer/ca.pem",                                  /* 5 */
    "  trust_domain: example.org",                                      /* 6 */
    "pkcs11:",                                                          /* 7 */
    "  module: softhsm2",                                               /* 8 */
    "  token_uri: \"pkcs11:token=coffer-prod\"",                        /* 9 */
    "  pin_source: file:/etc/coffer/token.pin",                         /* 10 */
    "database: \"host=/run/postgresql dbname=coffer user=coffer_app\"", /* 11 */
};
#define BASE_LINES (sizeof(base) / sizeof(base[0]))

/*
 * The base file with lines from..to (1-based, inclusive; 0 for none)
 * replaced by repl (NULL removes them), then extra appended (may be NULL).
 */
static char *variant(size_t from, size_t to, const char *repl, const char *extra)
{
    size_t cap =
        64 * 1024 + (repl != NULL ? strlen(repl) : 0) + (extra != NULL ? strlen(extra) : 0);
    char *s = coffer_calloc(cap, 1);
    size_t used = 0;

    assert_non_null(s);
    for (size_t i = 1; i <= BASE_LINES; i++) {
        const char *line = base[i - 1];

        if (from != 0 && i >= from && i <= to) {
            if (i == from && repl != NULL) {
                used += (size_t)snprintf(s + used, cap - used, "%s\n", repl);
            }
            continue;
        }
        used += (size_t)snprintf(s + used, cap - used, "%s\n", line);
    }
    if (extra != NULL) {
        used += (size_t)snprintf(s + used, cap - used, "%s", extra);
    }
    assert_true(used < cap);
    return s;
}

/* Writes yaml as the configuration file and loads it. */
static enum coffer_err load_text(const char *yaml, struct coffer_config *c,
                                 struct coffer_policy_diags *d)
{
    write_text(cfg_path, yaml);
    return coffer_config_load(cfg_path, c, d);
}

static struct coffer_config *new_config(void)
{
    struct coffer_config *c = coffer_calloc(1, sizeof(*c));

    assert_non_null(c);
    return c;
}

static void assert_zeroed(const struct coffer_config *c)
{
    struct coffer_config *zero = new_config();

    assert_true(coffer_mem_equal(c, zero, sizeof(*c)));
    coffer_free(zero);
}

/* yaml must load without a diagnostic; the caller frees the result. */
static struct coffer_config *load_ok(const char *yaml)
{
    struct coffer_config *c = new_config();
    struct coffer_policy_diags d = {0};
    enum coffer_err r = load_text(yaml, c, &d);

    if (r != COFFER_OK) {
        print_message("detail: %s\n", coffer_err_detail());
        dump(&d);
    }
    assert_int_equal(r, COFFER_OK);
    assert_int_equal(d.n, 0);
    coffer_policy_diags_cleanup(&d);
    return c;
}

/*
 * yaml must be refused with COFFER_E_CONFIG and a diagnostic that starts
 * with "<file>:<at>" (at is "line:col: ") and contains part; the struct
 * must be left zeroed.
 */
static void expect_error(const char *yaml, const char *at, const char *part)
{
    struct coffer_config *c = new_config();
    struct coffer_policy_diags d = {0};
    char prefix[256];
    bool found = false;

    (void)snprintf(prefix, sizeof(prefix), "%s:%s", cfg_path, at);
    memset(c, 0x5A, sizeof(*c));
    assert_int_equal(load_text(yaml, c, &d), COFFER_E_CONFIG);
    for (size_t i = 0; i < d.n && !found; i++) {
        found = strncmp(d.lines[i], prefix, strlen(prefix)) == 0 && strstr(d.lines[i], part);
    }
    if (!found) {
        print_message("expected a diagnostic \"%s...%s...\"; got:\n", prefix, part);
        dump(&d);
        fail();
    }
    assert_zeroed(c);
    coffer_policy_diags_cleanup(&d);
    coffer_free(c);
}

static void expect_variant(size_t from, size_t to, const char *repl, const char *extra,
                           const char *at, const char *part)
{
    char *yaml = variant(from, to, repl, extra);

    expect_error(yaml, at, part);
    coffer_free(yaml);
}

/* No diagnostic of d contains s. */
static void assert_not_in_diags(const struct coffer_policy_diags *d, const char *s)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strstr(d->lines[i], s) != NULL) {
            print_message("diagnostic repeats '%s': %s\n", s, d->lines[i]);
            fail();
        }
    }
    assert_null(strstr(coffer_err_detail(), s));
}

static unsigned expected_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1u : (n > 64 ? 64u : (unsigned)n);
}

static char *joined(const char *dir, const char *name)
{
    char *s = coffer_calloc(PATH_MAX + 64, 1);

    assert_non_null(s);
    (void)snprintf(s, PATH_MAX + 64, "%s/%s", dir, name);
    return s;
}

/* ---- Valid files ---- */

static void test_full(void **state)
{
    const char *yaml = "# /etc/coffer/coffer.yaml\n"
                       "listen: 192.0.2.10:9443\n"
                       "tls:\n"
                       "  cert: /etc/coffer/server.pem\n"
                       "  key: /etc/coffer/server.key\n"
                       "  client_ca: /etc/coffer/ca.pem\n"
                       "  trust_domain: prod.example-org_1\n"
                       "pkcs11:\n"
                       "  module: /usr/lib/softhsm/libsofthsm2.so\n"
                       "  token_uri: \"pkcs11:token=coffer-prod;manufacturer=SoftHSM%20project\"\n"
                       "  pin_source: env:COFFER_TOKEN_PIN\n"
                       "database: \"host=db.internal dbname=password_vault user=coffer_app "
                       "application_name='password=no'\"\n"
                       "workers: 7\n"
                       "limits:\n"
                       "  max_header_bytes: 1024\n"
                       "  max_body_bytes: 67108864\n"
                       "  request_timeout_ms: 100\n"
                       "  idle_timeout_ms: 3600000\n"
                       "  max_connections: 100000\n"
                       "policy: [/etc/coffer/policy/acme.yaml, /etc/coffer/policy/beta.yaml]\n"
                       "log: debug\n"
                       "audit:\n"
                       "  seal: false\n"
                       "  seal_interval_ms: 10\n"
                       "  seal_wait_ms: 10000\n"
                       "keys:\n"
                       "  sweep: false\n"
                       "  sweep_batch: 10000\n"
                       "  sweep_interval_ms: 0\n"
                       "  sweep_idle_ms: 3600000\n"
                       "  sweep_share: 100\n";
    struct coffer_config *c;

    (void)state;
    c = load_ok(yaml);
    assert_string_equal(c->listen_host, "192.0.2.10");
    assert_int_equal(c->listen_port, 9443);
    assert_string_equal(c->tls_cert, "/etc/coffer/server.pem");
    assert_string_equal(c->tls_key, "/etc/coffer/server.key");
    assert_string_equal(c->tls_client_ca, "/etc/coffer/ca.pem");
    assert_string_equal(c->trust_domain, "prod.example-org_1");
    assert_string_equal(c->pkcs11_module, "/usr/lib/softhsm/libsofthsm2.so");
    assert_string_equal(c->token_uri, "pkcs11:token=coffer-prod;manufacturer=SoftHSM%20project");
    assert_string_equal(c->pin_source, "env:COFFER_TOKEN_PIN");
    assert_string_equal(c->database, "host=db.internal dbname=password_vault user=coffer_app "
                                     "application_name='password=no'");
    assert_int_equal(c->workers, 7);
    assert_int_equal(c->max_header_bytes, 1024);
    assert_int_equal(c->max_body_bytes, 67108864);
    assert_int_equal(c->request_timeout_ms, 100);
    assert_int_equal(c->idle_timeout_ms, 3600000);
    assert_int_equal(c->max_connections, 100000);
    assert_int_equal(c->n_policy_files, 2);
    assert_string_equal(c->policy_files[0], "/etc/coffer/policy/acme.yaml");
    assert_string_equal(c->policy_files[1], "/etc/coffer/policy/beta.yaml");
    assert_int_equal(c->log_level, COFFER_LOG_DEBUG);
    assert_false(c->audit_seal);
    assert_int_equal(c->audit_seal_interval_ms, 10);
    assert_int_equal(c->audit_seal_wait_ms, 10000);
    assert_false(c->keys_sweep);
    assert_int_equal(c->keys_sweep_batch, 10000);
    assert_int_equal(c->keys_sweep_interval_ms, 0);
    assert_int_equal(c->keys_sweep_idle_ms, 3600000);
    assert_int_equal(c->keys_sweep_share, 100);
    coffer_free(c);
}

static void test_minimal_defaults(void **state)
{
    char *yaml = variant(0, 0, NULL, NULL);
    struct coffer_config *c;

    (void)state;
    c = load_ok(yaml);
    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 8443);
    assert_string_equal(c->tls_cert, "/etc/coffer/server.pem");
    assert_string_equal(c->tls_key, "/etc/coffer/server.key");
    assert_string_equal(c->tls_client_ca, "/etc/coffer/ca.pem");
    assert_string_equal(c->trust_domain, "example.org");
    assert_string_equal(c->pkcs11_module, "softhsm2");
    assert_string_equal(c->token_uri, "pkcs11:token=coffer-prod");
    assert_string_equal(c->pin_source, "file:/etc/coffer/token.pin");
    assert_string_equal(c->database, "host=/run/postgresql dbname=coffer user=coffer_app");
    assert_int_equal(c->workers, expected_cores());
    assert_true(c->workers >= 1 && c->workers <= COFFER_CONFIG_WORKERS_MAX);
    assert_int_equal(c->max_header_bytes, 16384);
    assert_int_equal(c->max_body_bytes, 1048576);
    assert_int_equal(c->request_timeout_ms, 10000);
    assert_int_equal(c->idle_timeout_ms, 60000);
    assert_int_equal(c->max_connections, 1024);
    assert_int_equal(c->n_policy_files, 0);
    assert_int_equal(c->log_level, COFFER_LOG_INFO);
    assert_true(c->audit_seal);
    assert_int_equal(c->audit_seal_interval_ms, 200);
    assert_int_equal(c->audit_seal_wait_ms, 100);
    assert_true(c->keys_sweep);
    assert_int_equal(c->keys_sweep_batch, 500);
    assert_int_equal(c->keys_sweep_interval_ms, 50);
    assert_int_equal(c->keys_sweep_idle_ms, 5000);
    coffer_free(c);
    coffer_free(yaml);
}

/* Empty optional values mean the default; workers 0 means one per core. */
static void test_empty_optional_values(void **state)
{
    char *yaml = variant(0, 0, NULL, "workers: 0\nlimits:\n  max_body_bytes:\npolicy:\nlog: ~\n");
    struct coffer_config *c;

    (void)state;
    c = load_ok(yaml);
    assert_int_equal(c->workers, expected_cores());
    assert_int_equal(c->max_body_bytes, 1048576);
    assert_int_equal(c->max_header_bytes, 16384);
    assert_int_equal(c->n_policy_files, 0);
    assert_int_equal(c->log_level, COFFER_LOG_INFO);
    coffer_free(c);
    coffer_free(yaml);
}

/* keys: empty values keep the defaults; the other ends of each range are accepted. */
static void test_keys_section(void **state)
{
    char *yaml = variant(0, 0, NULL, "keys:\n  sweep:\n  sweep_batch: ~\n");
    struct coffer_config *c;

    (void)state;
    c = load_ok(yaml);
    assert_true(c->keys_sweep);
    assert_int_equal(c->keys_sweep_batch, 500);
    assert_int_equal(c->keys_sweep_interval_ms, 50);
    assert_int_equal(c->keys_sweep_idle_ms, 5000);
    coffer_free(c);
    coffer_free(yaml);

    yaml = variant(0, 0, NULL, "keys: ~\n");
    c = load_ok(yaml);
    assert_true(c->keys_sweep);
    assert_int_equal(c->keys_sweep_batch, 500);
    coffer_free(c);
    coffer_free(yaml);

    yaml = variant(0, 0, NULL,
                   "keys:\n  sweep: true\n  sweep_batch: 1\n  sweep_interval_ms: 60000\n"
                   "  sweep_idle_ms: 100\n  sweep_share: 1\n");
    c = load_ok(yaml);
    assert_true(c->keys_sweep);
    assert_int_equal(c->keys_sweep_batch, 1);
    assert_int_equal(c->keys_sweep_interval_ms, 60000);
    assert_int_equal(c->keys_sweep_idle_ms, 100);
    assert_int_equal(c->keys_sweep_share, 1);
    coffer_free(c);
    coffer_free(yaml);
}

/* broker: system CAs and 5 s / 30 s by default; a relative ca_file is resolved; bad values refused.
 */
static void test_broker_section(void **state)
{
    char *yaml = variant(0, 0, NULL, NULL);
    struct coffer_config *c;

    (void)state;
    c = load_ok(yaml);
    assert_string_equal(c->broker_ca_file, "");
    assert_int_equal(c->broker_connect_timeout_ms, 5000);
    assert_int_equal(c->broker_timeout_ms, 30000);
    assert_int_equal(c->oauth2_refresh_margin_s, 60);
    assert_int_equal(c->pkcs11_renew_objects, 100000);
    coffer_free(c);
    coffer_free(yaml);

    yaml = variant(0, 0, NULL,
                   "broker:\n  ca_file: /etc/coffer/upstream-ca.pem\n  connect_timeout_ms: 100\n"
                   "  timeout_ms: 300000\n  oauth2_refresh_margin_s: 0\n");
    c = load_ok(yaml);
    assert_string_equal(c->broker_ca_file, "/etc/coffer/upstream-ca.pem");
    assert_int_equal(c->broker_connect_timeout_ms, 100);
    assert_int_equal(c->broker_timeout_ms, 300000);
    assert_int_equal(c->oauth2_refresh_margin_s, 0);
    coffer_free(c);
    coffer_free(yaml);

    yaml = variant(0, 0, NULL, "broker: ~\n");
    c = load_ok(yaml);
    assert_string_equal(c->broker_ca_file, "");
    assert_int_equal(c->broker_timeout_ms, 30000);
    coffer_free(c);
    coffer_free(yaml);

    expect_variant(0, 0, NULL, "broker:\n  connect_timeout_ms: 99\n",
                   "13:23: ", "broker.connect_timeout_ms is 99; it must be 100 to 60000");
    expect_variant(0, 0, NULL, "broker:\n  timeout_ms: 300001\n",
                   "13:15: ", "broker.timeout_ms is 300001; it must be 100 to 300000");
    expect_variant(0, 0, NULL, "broker:\n  oauth2_refresh_margin_s: 86401\n",
                   "13:28: ", "broker.oauth2_refresh_margin_s is 86401; it must be 0 to 86400");
    expect_variant(0, 0, NULL, "broker:\n  ca_file: [a]\n", "13:12: ", "broker.ca_file");
}

/* pkcs11.renew_objects: 100000 by default, 1 to 100000000. */
static void test_renew_objects(void **state)
{
    char *yaml =
        variant(10, 10, "  pin_source: file:/etc/coffer/token.pin\n  renew_objects: 5", NULL);
    struct coffer_config *c;

    (void)state;
    c = load_ok(yaml);
    assert_int_equal(c->pkcs11_renew_objects, 5);
    coffer_free(c);
    coffer_free(yaml);
    expect_variant(10, 10, "  pin_source: file:/etc/coffer/token.pin\n  renew_objects: 0", NULL,
                   "11:18: ", "pkcs11.renew_objects is 0; it must be 1 to 100000000");
    expect_variant(0, 0, NULL, "broker:\n  cafile: x\n", "13:3: ", "cafile");
}

static void test_listen_forms(void **state)
{
    static const struct {
        const char *line;
        const char *host;
        unsigned port;
    } cases[] = {
        {"listen: \"[::1]:8443\"", "::1", 8443},
        {"listen: \"[::]:443\"", "::", 443},
        {"listen: '[2001:db8::7]:1'", "2001:db8::7", 1},
        {"listen: localhost:65535", "localhost", 65535},
        {"listen: 0.0.0.0:80", "0.0.0.0", 80},
        {"listen: coffer-1.internal.example:8443", "coffer-1.internal.example", 8443},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *yaml = variant(1, 1, cases[i].line, NULL);
        struct coffer_config *c = load_ok(yaml);

        assert_string_equal(c->listen_host, cases[i].host);
        assert_int_equal(c->listen_port, cases[i].port);
        coffer_free(c);
        coffer_free(yaml);
    }
}

static void test_workers_and_log_values(void **state)
{
    static const struct {
        const char *extra;
        unsigned workers;
        enum coffer_log_level level;
    } cases[] = {
        {"workers: 1\nlog: info\n", 1, COFFER_LOG_INFO},
        {"workers: 64\nlog: warn\n", 64, COFFER_LOG_WARN},
        {"workers: 2\nlog: 'error'\n", 2, COFFER_LOG_ERROR},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *yaml = variant(0, 0, NULL, cases[i].extra);
        struct coffer_config *c = load_ok(yaml);

        assert_int_equal(c->workers, cases[i].workers);
        assert_int_equal(c->log_level, cases[i].level);
        coffer_free(c);
        coffer_free(yaml);
    }
}

/* A file of exactly the 1 MiB limit loads; one byte more is refused. */
static void test_size_limit(void **state)
{
    const size_t limit = 1024 * 1024;
    char *yaml = variant(0, 0, NULL, NULL);
    size_t len = strlen(yaml);
    char *big = coffer_calloc(limit + 2, 1);
    struct coffer_config *c = new_config();
    struct coffer_policy_diags d = {0};
    char prefix[256];

    (void)state;
    assert_non_null(big);
    coffer_memcpy(big, yaml, len);
    big[len] = '#';
    memset(big + len + 1, 'x', limit - len - 2);
    big[limit - 1] = '\n';
    write_bytes(cfg_path, big, limit);
    assert_int_equal(coffer_config_load(cfg_path, c, &d), COFFER_OK);
    assert_int_equal(d.n, 0);
    assert_int_equal(c->listen_port, 8443);

    big[limit - 1] = 'x';
    big[limit] = '\n';
    write_bytes(cfg_path, big, limit + 1);
    assert_int_equal(coffer_config_load(cfg_path, c, &d), COFFER_E_CONFIG);
    assert_int_equal(d.n, 1);
    (void)snprintf(prefix, sizeof(prefix),
                   "%s:1:1: the file is larger than the limit of 1048576 bytes", cfg_path);
    assert_string_equal(d.lines[0], prefix);
    (void)snprintf(prefix, sizeof(prefix), "%s:1:1: ", cfg_path);
    assert_true(strncmp(d.lines[0], prefix, strlen(prefix)) == 0);
    assert_zeroed(c);
    coffer_policy_diags_cleanup(&d);
    coffer_free(c);
    coffer_free(big);
    coffer_free(yaml);
}

/* ---- Relative paths ---- */

static void test_relative_paths(void **state)
{
    char *yaml = variant(3, 10,
                         "  cert: server.pem\n"
                         "  key: keys/server.key\n"
                         "  client_ca: ../ca.pem\n"
                         "  trust_domain: example.org\n"
                         "pkcs11:\n"
                         "  module: softhsm2\n"
                         "  token_uri: \"pkcs11:token=coffer-prod\"\n"
                         "  pin_source: file:token.pin",
                         "policy: [policy/acme.yaml, /abs/beta.yaml]\n");
    struct coffer_config *c;
    char *want;

    (void)state;
    c = load_ok(yaml);
    want = joined(tmpdir, "server.pem");
    assert_string_equal(c->tls_cert, want);
    coffer_free(want);
    want = joined(tmpdir, "keys/server.key");
    assert_string_equal(c->tls_key, want);
    coffer_free(want);
    want = joined(tmpdir, "../ca.pem");
    assert_string_equal(c->tls_client_ca, want);
    coffer_free(want);
    want = joined(tmpdir, "token.pin");
    assert_true(strncmp(c->pin_source, "file:", 5) == 0);
    assert_string_equal(c->pin_source + 5, want);
    coffer_free(want);
    want = joined(tmpdir, "policy/acme.yaml");
    assert_int_equal(c->n_policy_files, 2);
    assert_string_equal(c->policy_files[0], want);
    assert_string_equal(c->policy_files[1], "/abs/beta.yaml");
    coffer_free(want);
    /* A module name is not a path: it stays as written. */
    assert_string_equal(c->pkcs11_module, "softhsm2");
    coffer_free(c);
    coffer_free(yaml);
}

/* A configuration named relatively resolves against the working directory. */
static void test_relative_config_name(void **state)
{
    char *yaml = variant(3, 3, "  cert: server.pem", NULL);
    struct coffer_config *c = new_config();
    struct coffer_policy_diags d = {0};
    char old[PATH_MAX];
    char cwd[PATH_MAX];
    char sub[128];
    char *want;

    (void)state;
    (void)snprintf(sub, sizeof(sub), "%s/etc", tmpdir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_non_null(getcwd(old, sizeof(old)));
    assert_int_equal(chdir(tmpdir), 0);
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    write_text("etc/coffer.yaml", yaml);
    write_text("coffer.yaml", yaml);

    assert_int_equal(coffer_config_load("etc/coffer.yaml", c, &d), COFFER_OK);
    want = joined(cwd, "etc/server.pem");
    assert_string_equal(c->tls_cert, want);
    coffer_free(want);

    assert_int_equal(coffer_config_load("coffer.yaml", c, &d), COFFER_OK);
    want = joined(cwd, "server.pem");
    assert_string_equal(c->tls_cert, want);
    assert_int_equal(coffer_config_load("./coffer.yaml", c, &d), COFFER_OK);
    assert_string_equal(c->tls_cert, want);
    coffer_free(want);
    assert_int_equal(coffer_config_load(".//./etc/coffer.yaml", c, &d), COFFER_OK);
    want = joined(cwd, "etc/server.pem");
    assert_string_equal(c->tls_cert, want);
    coffer_free(want);
    assert_int_equal(d.n, 0);

    /* Diagnostics name the file as it was given. */
    write_text("coffer.yaml", "listen: 1\n");
    assert_int_equal(coffer_config_load("coffer.yaml", c, &d), COFFER_E_CONFIG);
    assert_true(d.n > 0);
    assert_true(strncmp(d.lines[0], "coffer.yaml:1:9: ", strlen("coffer.yaml:1:9: ")) == 0);
    coffer_policy_diags_cleanup(&d);

    assert_int_equal(chdir(old), 0);
    coffer_free(c);
    coffer_free(yaml);
}

/* ---- Refusals ---- */

static void test_unknown_keys(void **state)
{
    (void)state;
    expect_variant(0, 0, NULL, "port: 1\n", "12:1: ",
                   "unknown key 'port' at the top level (known keys: listen, tls, pkcs11, "
                   "database, workers, limits, policy, log, audit, keys, broker)");
    expect_variant(0, 0, NULL, "audit:\n  seal_every: 5\n",
                   "13:3: ", "unknown key 'seal_every' in audit");
    expect_variant(0, 0, NULL, "keys:\n  sweep_rate: 5\n", "13:3: ",
                   "unknown key 'sweep_rate' in keys (known keys: sweep, sweep_batch, "
                   "sweep_interval_ms, sweep_idle_ms, sweep_share)");
    expect_variant(6, 6, "  trust_domain: example.org\n  ciphers: all", NULL, "7:3: ",
                   "unknown key 'ciphers' in tls (known keys: cert, key, client_ca, "
                   "trust_domain)");
    expect_variant(8, 8, "  module: softhsm2\n  slot: 0", NULL,
                   "9:3: ", "unknown key 'slot' in pkcs11");
    expect_variant(0, 0, NULL, "limits:\n  max_bodybytes: 2048\n",
                   "13:3: ", "unknown key 'max_bodybytes' in limits");
    /* Keys are case-sensitive. */
    expect_variant(0, 0, NULL, "Log: info\n", "12:1: ", "unknown key 'Log' at the top level");
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    expect_variant(0, 0, NULL, "listen: 127.0.0.1:9000\n",
                   "12:1: ", "duplicate key 'listen' (first at line 1, column 1)");
    expect_variant(4, 4, "  key: a.key\n  key: b.key", NULL,
                   "5:3: ", "duplicate key 'key' (first at line 4, column 3)");
}

static void test_wrong_kinds(void **state)
{
    (void)state;
    expect_variant(1, 1, "listen: {host: a}", NULL, "1:9: ", "listen must be host:port");
    expect_variant(1, 1, "listen: {host: a}", NULL, "1:9: ", "not a mapping");
    expect_variant(2, 6, "tls: none", NULL, "2:6: ", "tls must be a mapping of keys, not text");
    expect_variant(7, 10, "pkcs11: [softhsm2]", NULL,
                   "7:9: ", "pkcs11 must be a mapping of keys, not a sequence");
    expect_variant(11, 11, "database: [a, b]", NULL,
                   "11:11: ", "database must be a libpq connection string, not a sequence");
    expect_variant(3, 3, "  cert: [a.pem]", NULL,
                   "3:9: ", "tls.cert must be a file path, not a sequence");
    expect_variant(6, 6, "  trust_domain: {a: b}", NULL,
                   "6:17: ", "tls.trust_domain must be a SPIFFE trust domain, not a mapping");
    expect_variant(8, 8, "  module: [a]", NULL, "8:11: ",
                   "pkcs11.module must be a library path or a p11-kit module name, not a "
                   "sequence");
    expect_variant(9, 9, "  token_uri: [a]", NULL,
                   "9:14: ", "pkcs11.token_uri must be a PKCS#11 URI, not a sequence");
    expect_variant(10, 10, "  pin_source: {file: x}", NULL,
                   "10:15: ", "pkcs11.pin_source must be file:PATH or env:NAME, not a mapping");
    expect_variant(0, 0, NULL, "workers: {n: 1}\n",
                   "12:10: ", "workers must be a number, not a mapping");
    expect_variant(0, 0, NULL, "limits: [1]\n",
                   "12:9: ", "limits must be a mapping of keys, not a sequence");
    expect_variant(0, 0, NULL, "limits: 5\n",
                   "12:9: ", "limits must be a mapping of keys, not text");
    expect_variant(0, 0, NULL, "keys: [sweep]\n",
                   "12:7: ", "keys must be a mapping of keys, not a sequence");
    expect_variant(0, 0, NULL, "keys:\n  sweep_batch: \"500\"\n",
                   "13:16: ", "keys.sweep_batch must be a number without quotes");
    expect_variant(0, 0, NULL, "limits:\n  max_connections: [5]\n",
                   "13:20: ", "limits.max_connections must be a number, not a sequence");
    expect_variant(0, 0, NULL, "policy: a.yaml\n", "12:9: ",
                   "policy must be a sequence of file paths ([a.yaml, b.yaml]), not text");
    expect_variant(0, 0, NULL, "policy: [[a.yaml]]\n",
                   "12:10: ", "an entry of policy must be a file path, not a sequence");
    expect_variant(0, 0, NULL, "policy: [a.yaml, ~]\n",
                   "12:18: ", "an entry of policy must be a file path, not empty");
    expect_variant(0, 0, NULL, "log: [debug]\n",
                   "12:6: ", "log must be debug, info, warn or error, not a sequence");
    expect_error("- listen\n- tls\n", "1:1: ",
                 "a configuration file must be a mapping with the keys listen, tls, pkcs11, "
                 "database");
    expect_error("just text\n", "1:1: ", "not text");
    expect_error("~\n", "1:1: ", "must be a mapping with the keys listen");
}

/* A required key given without a value is reported where the value is missing. */
static void test_empty_required_values(void **state)
{
    (void)state;
    expect_variant(1, 1, "listen:", NULL, "1:8: ", "listen must be host:port");
    expect_variant(2, 6, "tls: ~", NULL, "2:6: ", "tls must be a mapping of keys, not empty");
    expect_variant(11, 11, "database: \"\"", NULL,
                   "11:11: ", "database is empty; it must be a libpq connection string");
    expect_variant(3, 3, "  cert: ''", NULL, "3:9: ", "tls.cert is empty; it must be a file path");
    expect_variant(6, 6, "  trust_domain: \"\"", NULL, "6:17: ", "tls.trust_domain is empty");
    expect_variant(10, 10, "  pin_source: null", NULL,
                   "10:15: ", "pkcs11.pin_source must be file:PATH or env:NAME, not empty");
}

static void test_missing_required(void **state)
{
    (void)state;
    expect_variant(1, 1, NULL, NULL, "1:1: ", "missing required key 'listen' at the top level");
    expect_variant(2, 6, NULL, NULL, "1:1: ", "missing required key 'tls' at the top level");
    expect_variant(7, 10, NULL, NULL, "1:1: ", "missing required key 'pkcs11' at the top level");
    expect_variant(11, 11, NULL, NULL, "1:1: ", "missing required key 'database' at the top level");
    /* Inside a section, at the section's first key. */
    expect_variant(3, 3, NULL, NULL, "3:3: ", "missing required key 'cert' in tls");
    expect_variant(4, 4, NULL, NULL, "3:3: ", "missing required key 'key' in tls");
    expect_variant(5, 5, NULL, NULL, "3:3: ", "missing required key 'client_ca' in tls");
    expect_variant(6, 6, NULL, NULL, "3:3: ", "missing required key 'trust_domain' in tls");
    expect_variant(8, 8, NULL, NULL, "8:3: ", "missing required key 'module' in pkcs11");
    expect_variant(9, 9, NULL, NULL, "8:3: ", "missing required key 'token_uri' in pkcs11");
    expect_variant(10, 10, NULL, NULL, "8:3: ", "missing required key 'pin_source' in pkcs11");
}

static void test_numbers_out_of_range(void **state)
{
    static const struct {
        const char *extra;
        const char *at;
        const char *part;
    } cases[] = {
        {"workers: 65\n", "12:10: ", "workers is 65; it must be 0 to 64"},
        {"audit:\n  seal_interval_ms: 9\n",
         "13:21: ", "audit.seal_interval_ms is 9; it must be 10 to 60000"},
        {"audit:\n  seal_wait_ms: 0\n",
         "13:17: ", "audit.seal_wait_ms is 0; it must be 1 to 10000"},
        {"audit:\n  seal: yes\n", "13:9: ", "audit.seal must be true or false"},
        {"keys:\n  sweep: 1\n", "13:10: ", "keys.sweep must be true or false"},
        {"keys:\n  sweep: [true]\n", "13:10: ", "keys.sweep must be true or false"},
        {"keys:\n  sweep_batch: 0\n", "13:16: ", "keys.sweep_batch is 0; it must be 1 to 10000"},
        {"keys:\n  sweep_batch: 10001\n",
         "13:16: ", "keys.sweep_batch is 10001; it must be 1 to 10000"},
        {"keys:\n  sweep_interval_ms: 60001\n",
         "13:22: ", "keys.sweep_interval_ms is 60001; it must be 0 to 60000"},
        {"keys:\n  sweep_interval_ms: -1\n",
         "13:22: ", "keys.sweep_interval_ms must be written in plain decimal digits, not '-1'"},
        {"keys:\n  sweep_idle_ms: 99\n",
         "13:18: ", "keys.sweep_idle_ms is 99; it must be 100 to 3600000"},
        {"keys:\n  sweep_idle_ms: 3600001\n",
         "13:18: ", "keys.sweep_idle_ms is 3600001; it must be 100 to 3600000"},
        {"keys:\n  sweep_share: 0\n", "13:16: ", "keys.sweep_share is 0; it must be 1 to 100"},
        {"keys:\n  sweep_share: 101\n", "13:16: ", "keys.sweep_share is 101; it must be 1 to 100"},
        {"limits:\n  max_header_bytes: 1023\n",
         "13:21: ", "limits.max_header_bytes is 1023; it must be 1024 to 1048576"},
        {"limits:\n  max_header_bytes: 1048577\n",
         "13:21: ", "limits.max_header_bytes is 1048577; it must be 1024 to 1048576"},
        {"limits:\n  max_body_bytes: 1023\n",
         "13:19: ", "limits.max_body_bytes is 1023; it must be 1024 to 67108864"},
        {"limits:\n  max_body_bytes: 67108865\n",
         "13:19: ", "limits.max_body_bytes is 67108865; it must be 1024 to 67108864"},
        {"limits:\n  request_timeout_ms: 99\n",
         "13:23: ", "limits.request_timeout_ms is 99; it must be 100 to 600000"},
        {"limits:\n  request_timeout_ms: 600001\n",
         "13:23: ", "limits.request_timeout_ms is 600001; it must be 100 to 600000"},
        {"limits:\n  idle_timeout_ms: 99\n",
         "13:20: ", "limits.idle_timeout_ms is 99; it must be 100 to 3600000"},
        {"limits:\n  idle_timeout_ms: 3600001\n",
         "13:20: ", "limits.idle_timeout_ms is 3600001; it must be 100 to 3600000"},
        {"limits:\n  max_connections: 0\n",
         "13:20: ", "limits.max_connections is 0; it must be 1 to 100000"},
        {"limits:\n  max_connections: 100001\n",
         "13:20: ", "limits.max_connections is 100001; it must be 1 to 100000"},
        {"workers: 99999999999999999999999\n",
         "12:10: ", "workers is 99999999999999999999999; it must be 0 to 64"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_variant(0, 0, NULL, cases[i].extra, cases[i].at, cases[i].part);
    }
}

static void test_numbers_not_plain_digits(void **state)
{
    static const struct {
        const char *extra;
        const char *at;
        const char *part;
    } cases[] = {
        {"workers: \"4\"\n", "12:10: ", "workers must be a number without quotes"},
        {"workers: '4'\n", "12:10: ", "workers must be a number without quotes"},
        {"workers: 4.0\n", "12:10: ", "workers must be written in plain decimal digits, not '4.0'"},
        {"workers: -1\n", "12:10: ", "plain decimal digits, not '-1'"},
        {"workers: +4\n", "12:10: ", "plain decimal digits, not '+4'"},
        {"workers: 0x10\n", "12:10: ", "plain decimal digits, not '0x10'"},
        {"workers: 010\n", "12:10: ", "plain decimal digits, not '010'"},
        {"workers: 1e1\n", "12:10: ", "plain decimal digits, not '1e1'"},
        {"workers: 1_0\n", "12:10: ", "plain decimal digits, not '1_0'"},
        {"workers: true\n", "12:10: ", "plain decimal digits, not 'true'"},
        {"limits:\n  max_body_bytes: 1MiB\n",
         "13:19: ", "limits.max_body_bytes must be written in plain decimal digits, not '1MiB'"},
        {"limits:\n  max_body_bytes: 2 048\n", "13:19: ", "plain decimal digits, not '2 048'"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_variant(0, 0, NULL, cases[i].extra, cases[i].at, cases[i].part);
    }
}

static void test_paths_too_long(void **state)
{
    char *line = coffer_calloc(8192, 1);
    char *yaml;
    size_t n;

    (void)state;
    assert_non_null(line);
    /* An absolute path of 4096 bytes does not fit PATH_MAX with its NUL. */
    n = (size_t)snprintf(line, 8192, "  cert: /");
    memset(line + n, 'a', 4095);
    expect_variant(3, 3, line, NULL, "3:9: ", "tls.cert is 4096 bytes; the limit is 4095");
    /* 4095 bytes fit. */
    line[n + 4094] = '\0';
    yaml = variant(3, 3, line, NULL);
    coffer_free(load_ok(yaml));
    coffer_free(yaml);

    /* A relative path that fits alone but not after the directory is put in front. */
    memset(line, 0, 8192);
    n = (size_t)snprintf(line, 8192, "  key: ");
    memset(line + n, 'b', 4090);
    expect_variant(4, 4, line, NULL, "4:8: ",
                   "bytes after resolving it against the file's directory; the limit is 4095");

    memset(line, 0, 8192);
    n = (size_t)snprintf(line, 8192, "  pin_source: file:");
    memset(line + n, 'c', 4091);
    expect_variant(10, 10, line, NULL, "10:15: ", "the path of pkcs11.pin_source is");
    expect_variant(10, 10, line, NULL,
                   "10:15: ", "after resolving it against the file's directory; the limit is 4095");

    memset(line, 0, 8192);
    n = (size_t)snprintf(line, 8192, "policy:\n  - /");
    memset(line + n, 'd', 4095);
    line[n + 4095] = '\n';
    expect_variant(0, 0, NULL, line,
                   "13:5: ", "an entry of policy is 4096 bytes; the limit is 4095");

    /* Longer than the YAML reader takes at all. */
    memset(line, 0, 8192);
    n = (size_t)snprintf(line, 8192, "  client_ca: /");
    memset(line + n, 'e', 4096);
    expect_variant(5, 5, line, NULL, "5:14: ", "a value is 4097 bytes; the limit is 4096");

    memset(line, 0, 8192);
    n = (size_t)snprintf(line, 8192, "  module: /");
    memset(line + n, 'f', 4095);
    expect_variant(8, 8, line, NULL, "8:11: ", "pkcs11.module is 4096 bytes; the limit is 4095");

    memset(line, 0, 8192);
    n = (size_t)snprintf(line, 8192, "  token_uri: pkcs11:token=");
    memset(line + n, 'g', 500);
    expect_variant(9, 9, line, NULL, "9:14: ", "pkcs11.token_uri is 513 bytes; the limit is 511");

    memset(line, 0, 8192);
    n = (size_t)snprintf(line, 8192, "database: host=");
    memset(line + n, 'h', 2048 - 5);
    expect_variant(11, 11, line, NULL, "11:11: ", "database is 2048 bytes; the limit is 2047");
    coffer_free(line);
}

static void test_listen_refused(void **state)
{
    static const struct {
        const char *line;
        const char *at;
        const char *part;
    } cases[] = {
        {"listen: 127.0.0.1", "1:9: ", "listen '127.0.0.1' has no port"},
        {"listen: 8443", "1:9: ", "listen '8443' has no port"},
        {"listen: 127.0.0.1:0", "1:9: ", "listen '127.0.0.1:0' has no valid port"},
        {"listen: 127.0.0.1:65536", "1:9: ", "has no valid port: it must be host:port"},
        {"listen: 127.0.0.1:08443", "1:9: ", "has no valid port"},
        {"listen: 127.0.0.1:-1", "1:9: ", "has no valid port"},
        {"listen: 127.0.0.1:https", "1:9: ", "has no valid port"},
        {"listen: \"127.0.0.1:\"", "1:9: ", "has no valid port"},
        {"listen: \":8443\"", "1:9: ", "listen ':8443' names no host"},
        {"listen: \"::1:8443\"", "1:9: ", "write an IPv6 address in brackets"},
        {"listen: \"[::g]:8443\"", "1:9: ", "the host in brackets is not an IPv6 address"},
        {"listen: \"[]:8443\"", "1:9: ", "the host in brackets is not an IPv6 address"},
        {"listen: \"[127.0.0.1]:8443\"", "1:9: ", "the host in brackets is not an IPv6 address"},
        {"listen: \"[::1:8443\"", "1:9: ", "the host in brackets is not an IPv6 address"},
        {"listen: \"::1]:8443\"", "1:9: ", "write an IPv6 address in brackets"},
        {"listen: bad_host:80", "1:9: ", "the host is not an IPv4 address or a host name"},
        {"listen: 1.2.3:80", "1:9: ", "the host is not an IPv4 address or a host name"},
        {"listen: 256.1.1.1:80", "1:9: ", "the host is not an IPv4 address or a host name"},
        {"listen: -a.example:80", "1:9: ", "the host is not an IPv4 address or a host name"},
        {"listen: a..example:80", "1:9: ", "the host is not an IPv4 address or a host name"},
        {"listen: \"a b:80\"", "1:9: ", "the host is not an IPv4 address or a host name"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_variant(1, 1, cases[i].line, NULL, cases[i].at, cases[i].part);
    }
}

static void test_pin_source_refused(void **state)
{
    struct coffer_config *c = new_config();
    struct coffer_policy_diags d = {0};
    char *yaml;

    (void)state;
    expect_variant(10, 10, "  pin_source: prompt", NULL,
                   "10:15: ", "pkcs11.pin_source prompt is not possible: a daemon has no terminal");
    expect_variant(10, 10, "  pin_source: \"file:\"", NULL,
                   "10:15: ", "pkcs11.pin_source file: names no path");
    expect_variant(10, 10, "  pin_source: env:1PIN", NULL,
                   "10:15: ", "pkcs11.pin_source env: must name an environment variable");
    expect_variant(10, 10, "  pin_source: 'env:'", NULL,
                   "10:15: ", "pkcs11.pin_source env: must name an environment variable");
    expect_variant(10, 10, "  pin_source: env:PIN-X", NULL,
                   "10:15: ", "pkcs11.pin_source env: must name an environment variable");
    expect_variant(10, 10, "  pin_source: \"file:a\\tb\"", NULL,
                   "10:15: ", "pkcs11.pin_source holds a control character");

    /* A PIN written where its source belongs is refused and never repeated. */
    yaml = variant(10, 10, "  pin_source: s3cr3t-pin-4711", NULL);
    assert_int_equal(load_text(yaml, c, &d), COFFER_E_CONFIG);
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.lines[0], "pkcs11.pin_source must be file:PATH or env:NAME"));
    assert_not_in_diags(&d, "s3cr3t");
    assert_zeroed(c);
    coffer_policy_diags_cleanup(&d);
    coffer_free(yaml);

    yaml = variant(10, 10, "  pin_source: FILE:/x", NULL);
    expect_error(yaml, "10:15: ", "must be file:PATH or env:NAME (the value is not shown)");
    coffer_free(yaml);
    coffer_free(c);
}

static void test_trust_domain_refused(void **state)
{
    char *long_td = coffer_calloc(512, 1);
    char *line = coffer_calloc(600, 1);

    (void)state;
    expect_variant(6, 6, "  trust_domain: Example.org", NULL, "6:17: ",
                   "tls.trust_domain 'Example.org' is not a SPIFFE trust domain: 1 to 255 "
                   "lower-case letters, digits, '.', '-' or '_'");
    expect_variant(6, 6, "  trust_domain: \"exa mple.org\"", NULL,
                   "6:17: ", "is not a SPIFFE trust domain");
    expect_variant(6, 6, "  trust_domain: example.org/x", NULL,
                   "6:17: ", "is not a SPIFFE trust domain");
    expect_variant(6, 6, "  trust_domain: spiffe://example.org", NULL,
                   "6:17: ", "is not a SPIFFE trust domain");
    expect_variant(6, 6, "  trust_domain: example.org:443", NULL,
                   "6:17: ", "is not a SPIFFE trust domain");
    assert_non_null(long_td);
    assert_non_null(line);
    memset(long_td, 'a', 256);
    (void)snprintf(line, 600, "  trust_domain: %s", long_td);
    expect_variant(6, 6, line, NULL, "6:17: ", "is not a SPIFFE trust domain");
    long_td[255] = '\0';
    (void)snprintf(line, 600, "  trust_domain: %s", long_td);
    {
        char *yaml = variant(6, 6, line, NULL);
        struct coffer_config *c = load_ok(yaml);

        assert_string_equal(c->trust_domain, long_td);
        coffer_free(c);
        coffer_free(yaml);
    }
    coffer_free(line);
    coffer_free(long_td);
}

static void test_database_refused(void **state)
{
    static const char *const with_password[] = {
        "database: \"host=db password=hunter2 user=coffer_app\"",
        "database: \"host=db password = 'hunter2' user=coffer_app\"",
        "database: \"password=hunter2\"",
        "database: \"postgresql://coffer_app:hunter2@db/coffer\"",
        "database: \"postgres://coffer_app:hunter2@db:5432/coffer\"",
        "database: \"postgresql://db/coffer?sslmode=require&password=hunter2\"",
    };
    struct coffer_config *c = new_config();

    (void)state;
    for (size_t i = 0; i < sizeof(with_password) / sizeof(with_password[0]); i++) {
        char *yaml = variant(11, 11, with_password[i], NULL);
        struct coffer_policy_diags d = {0};

        assert_int_equal(load_text(yaml, c, &d), COFFER_E_CONFIG);
        assert_int_equal(d.n, 1);
        expect_error(yaml, "11:11: ", "database holds a password (the value is not shown)");
        assert_not_in_diags(&d, "hunter2");
        assert_zeroed(c);
        coffer_policy_diags_cleanup(&d);
        coffer_free(yaml);
    }
    expect_variant(11, 11, "database: \"host=db\\nuser=x\"", NULL,
                   "11:11: ", "database holds a control character");
    coffer_free(c);
}

/* Connection strings that merely mention the word are not refused. */
static void test_database_accepted(void **state)
{
    static const char *const ok[] = {
        "database: \"host=db dbname=password user=coffer_app\"",
        "database: \"host=db application_name='a password=b'\"",
        "database: \"postgresql://coffer_app@db/password\"",
        "database: \"postgresql://coffer_app@db/coffer?application_name=password\"",
        "database: \"host=db passfile=/etc/coffer/pgpass\"",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char *yaml = variant(11, 11, ok[i], NULL);

        coffer_free(load_ok(yaml));
        coffer_free(yaml);
    }
}

static void test_other_values_refused(void **state)
{
    (void)state;
    expect_variant(0, 0, NULL, "log: verbose\n",
                   "12:6: ", "log must be debug, info, warn or error, not 'verbose'");
    expect_variant(0, 0, NULL, "log: INFO\n", "12:6: ", "not 'INFO'");
    expect_variant(9, 9, "  token_uri: token=coffer-prod", NULL,
                   "9:14: ", "pkcs11.token_uri 'token=coffer-prod' is not a PKCS#11 URI");
    expect_variant(8, 8, "  module: lib/libsofthsm2.so", NULL, "8:11: ",
                   "pkcs11.module 'lib/libsofthsm2.so' must be an absolute path or a p11-kit "
                   "module name");
    expect_variant(3, 3, "  cert: \"a\\x01.pem\"", NULL,
                   "3:9: ", "tls.cert holds a control character");
}

static void test_policy_list_refused(void **state)
{
    char *extra = coffer_calloc(64 * 16 + 64, 1);
    size_t used;
    char *yaml;
    char line[256];

    (void)state;
    assert_non_null(extra);
    used = (size_t)snprintf(extra, 64 * 16 + 64, "policy:\n");
    for (int i = 0; i < 65; i++) {
        used += (size_t)snprintf(extra + used, 64 * 16 + 64 - used, "  - p%d.yaml\n", i);
    }
    expect_variant(0, 0, NULL, extra, "13:3: ", "policy lists 65 files; the limit is 64");
    /* 64 are fine. */
    *strstr(extra, "  - p64.yaml\n") = '\0';
    yaml = variant(0, 0, NULL, extra);
    {
        struct coffer_config *c = load_ok(yaml);

        assert_int_equal(c->n_policy_files, 64);
        coffer_free(c);
    }
    coffer_free(yaml);
    coffer_free(extra);

    expect_variant(0, 0, NULL, "policy: [a.yaml, b.yaml, a.yaml]\n",
                   "12:26: ", "policy file 'a.yaml' is listed twice (first at line 12, column 10)");
    /* The same file written relatively and absolutely is the same file. */
    (void)snprintf(line, sizeof(line), "policy:\n  - a.yaml\n  - %s/a.yaml\n", tmpdir);
    expect_variant(0, 0, NULL, line, "14:5: ", "is listed twice (first at line 13, column 5)");
}

static void test_yaml_refused(void **state)
{
    (void)state;
    expect_variant(0, 0, NULL, "log: &l info\n", "12:6: ",
                   "anchor '&l' is not allowed: a configuration has no use for anchors and "
                   "aliases");
    expect_variant(0, 0, NULL, "workers: !!int 4\n", "12:10: ",
                   "tag '!!int' is not allowed: a configuration holds plain values without tags");
    expect_variant(4, 4, "  key: &k /etc/k.pem\n  client_ca: *k", NULL,
                   "4:8: ", "anchor '&k' is not allowed");
    expect_variant(0, 0, NULL, "---\nlog: info\n",
                   "12:1: ", "a second YAML document begins here; a configuration file holds one");
    expect_variant(0, 0, NULL, "log: [info\n", "13:1: ", "YAML syntax error");
    expect_variant(0, 0, NULL, "policy: [{a: 1}: b]\n",
                   "12:10: ", "a mapping key must be a name, not a mapping");
    expect_error("", "1:1: ", "the file is empty (no YAML document)");
    expect_error("# only a comment\n", "1:1: ", "the file is empty");
    expect_error("listen: \"a\\0b\"\n", "1:9: ", "a value holds a NUL byte");
}

static void test_all_problems_reported(void **state)
{
    char *yaml = variant(1, 1, "listen: 127.0.0.1", "workers: 65\nlog: loud\nextra: 1\n");
    struct coffer_config *c = new_config();
    struct coffer_policy_diags d = {0};
    char prefix[256];

    (void)state;
    assert_int_equal(load_text(yaml, c, &d), COFFER_E_CONFIG);
    if (d.n != 4) {
        dump(&d);
    }
    assert_int_equal(d.n, 4);
    assert_int_equal(d.dropped, 0);
    (void)snprintf(prefix, sizeof(prefix), "%s:14:1: unknown key 'extra'", cfg_path);
    assert_true(strncmp(d.lines[0], prefix, strlen(prefix)) == 0);
    (void)snprintf(prefix, sizeof(prefix), "%s:1:9: listen", cfg_path);
    assert_true(strncmp(d.lines[1], prefix, strlen(prefix)) == 0);
    (void)snprintf(prefix, sizeof(prefix), "%s:12:10: workers is 65", cfg_path);
    assert_true(strncmp(d.lines[2], prefix, strlen(prefix)) == 0);
    (void)snprintf(prefix, sizeof(prefix), "%s:13:6: log must be", cfg_path);
    assert_true(strncmp(d.lines[3], prefix, strlen(prefix)) == 0);
    assert_non_null(strstr(coffer_err_detail(), "has 4 problems"));
    coffer_policy_diags_cleanup(&d);
    assert_int_equal(d.n, 0);

    /* Without a list the file is still refused. */
    assert_int_equal(coffer_config_load(cfg_path, c, NULL), COFFER_E_CONFIG);
    assert_zeroed(c);
    coffer_free(c);
    coffer_free(yaml);
}

/* Past the list's capacity, diagnostics are counted, not kept. */
static void test_many_problems(void **state)
{
    char *extra = coffer_calloc(150 * 16, 1);
    char *yaml;
    struct coffer_config *c = new_config();
    struct coffer_policy_diags d = {0};
    size_t used = 0;

    (void)state;
    assert_non_null(extra);
    for (int i = 0; i < 150; i++) {
        used += (size_t)snprintf(extra + used, 150 * 16 - used, "k%d: 1\n", i);
    }
    yaml = variant(0, 0, NULL, extra);
    assert_int_equal(load_text(yaml, c, &d), COFFER_E_CONFIG);
    assert_int_equal(d.n, COFFER_POLICY_DIAGS_MAX);
    assert_int_equal(d.dropped, 150 - COFFER_POLICY_DIAGS_MAX);
    coffer_policy_diags_cleanup(&d);
    coffer_free(yaml);
    coffer_free(extra);
    coffer_free(c);
}

static void test_unreadable(void **state)
{
    struct coffer_config *c = new_config();
    struct coffer_policy_diags d = {0};
    char path[256];

    (void)state;
    (void)snprintf(path, sizeof(path), "%s/absent.yaml", tmpdir);
    memset(c, 0x5A, sizeof(*c));
    assert_int_equal(coffer_config_load(path, c, &d), COFFER_E_IO);
    assert_int_equal(d.n, 0);
    assert_non_null(strstr(coffer_err_detail(), "absent.yaml"));
    assert_non_null(strstr(coffer_err_detail(), strerror(ENOENT)));
    assert_zeroed(c);

    assert_int_equal(coffer_config_load(tmpdir, c, &d), COFFER_E_IO);
    assert_non_null(strstr(coffer_err_detail(), "is not a regular file"));
    assert_int_equal(d.n, 0);

    assert_int_equal(coffer_config_load(NULL, c, &d), COFFER_E_INVALID);
    assert_int_equal(coffer_config_load("", c, &d), COFFER_E_INVALID);
    assert_int_equal(coffer_config_load(cfg_path, NULL, &d), COFFER_E_INVALID);
    assert_int_equal(d.n, 0);
    coffer_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_minimal_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_optional_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_section, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_section, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renew_objects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workers_and_log_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relative_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relative_config_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_kinds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_required_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_numbers_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_numbers_not_plain_digits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paths_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pin_source_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_domain_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_database_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_database_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_values_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_list_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_yaml_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_problems_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_problems, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
