/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Secret hygiene, proved by canaries. Known secret values are stored and
 * used through every way Coffer offers — the API's put, access, brokered
 * use, OAuth2 refresh, the request flow, bearer tokens, and the coffer
 * command's put, access and exec — and errors are forced with secrets in
 * the refused requests (a bad put, malformed JSON, a body over the limit,
 * a destination outside the spec). Then everything Coffer wrote is
 * scanned for each canary, raw, hex-encoded and base64-encoded:
 *
 *   - cofferd's log, and the output of every coffer command but the value
 *     that `coffer access` prints by design;
 *   - a full pg_dump of the database: values may be there only as
 *     ciphertext;
 *   - every file of the token directory;
 *   - the memory of the worker process, read through /proc/PID/mem after
 *     the requests are done and their connections closed (needs
 *     CAP_SYS_PTRACE, and a build without AddressSanitizer, whose reserved
 *     regions are terabytes; otherwise that test is reported skipped, never
 *     passed).
 *
 * The worker reopens its token context every 5 session objects
 * (pkcs11.renew_objects), so the scenario also runs across those renewals.
 *
 * Last, a worker killed by SIGABRT leaves no core file: the kernel reports
 * no core (the supervisor's log says so) and none appears on disk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "https.h"
#include "world.h"

#include "coffer/dev.h"
#include "coffer/mem.h"
#include "coffer/ops.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define C_API "CANARY-api-7f3a9c2e81d4b6"
#define C_DB "CANARY-db-5b1e7d90a3c6f2"
#define C_CS "CANARY-cs-9d3b5a7e2f14c8"
#define C_RT "CANARY-rt-2c8e4f61b7a05d"
#define C_AT "CANARY-at-6e0a2c4b8d1f3a"
#define C_REQ "CANARY-req-1a3c5e7b9d2f40"
#define C_BAD "CANARY-bad-8f6d4b2a0c1e97"
#define C_JSON "CANARY-json-3b7d1f5a9c2e60"
#define C_BIG "CANARY-big-4d8b2f6a0e3c71"
#define C_DEST "CANARY-dest-0c2e4a6b8d1f35"
#define CREDS "/v1/orgs/dev/projects/demo/credentials"
#define PURPOSE "{\"purpose\":\"run the nightly deploy\"}"
#define CANARIES_MAX 16

/* Whether this build (and so its cofferd) runs under AddressSanitizer. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static struct world w;
static struct coffer_dev_tls tls;
static struct coffer_dev_tls up_tls;
static struct https_target srv;
static char dir[] = "/tmp/coffer-canary-test.XXXXXX";
static char log_path[PATH_MAX];
static char up_log[PATH_MAX];
static char cli_out[1 << 16];
static unsigned short up_port;
static pid_t server;
static pid_t upstream;
/* Every canary, the bearer token issued here among them. */
static char canaries[CANARIES_MAX][128];
static size_t n_canaries;

static void add_canary(const char *s)
{
    assert_true(n_canaries < CANARIES_MAX);
    snprintf(canaries[n_canaries++], sizeof(canaries[0]), "%s", s);
}

/* ---- Requests ---------------------------------------------------------------------------- */

static void request(const char *method, const char *path, const char *body, const char *who,
                    const char *bearer, struct https_reply *out)
{
    char line[128];
    const char *headers[] = {line, NULL};
    const char *cert = NULL;
    const char *key = NULL;
    CURLcode rc;

    (void)https_dev_identity(&tls, who, &cert, &key);
    snprintf(line, sizeof(line), "Authorization: Bearer %s", bearer != NULL ? bearer : "");
    rc = https_request(&srv, method, path, body, cert, key, bearer != NULL ? headers : NULL, out);
    if (rc != CURLE_OK) {
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
    }
}

/* A request answered with status; its body is not printed (it may hold a value). */
static void expect_status(const char *method, const char *path, const char *body, const char *who,
                          long status)
{
    static struct https_reply r;

    request(method, path, body, who, NULL, &r);
    if (r.status != status) {
        fail_msg("%s %s as %s: %ld, want %ld", method, path, who, r.status, status);
    }
}

/* Runs the coffer command as who ("admin" or "agent") with stdin from file (or none). */
static int coffer_cli(const char *who, const char *const *args, const char *stdin_file)
{
    char addr[96];
    char cacert[PATH_MAX + 16];
    char cert[PATH_MAX + 32];
    char key[PATH_MAX + 32];
    char cmd[4096];
    const char *c = NULL;
    const char *k = NULL;
    size_t at = 0;
    FILE *p;
    size_t n;
    int status;

    (void)https_dev_identity(&tls, who, &c, &k);
    snprintf(addr, sizeof(addr), "COFFER_ADDR=%s", srv.base_url);
    snprintf(cacert, sizeof(cacert), "COFFER_CACERT=%s", tls.ca);
    snprintf(cert, sizeof(cert), "COFFER_CLIENT_CERT=%s", c);
    snprintf(key, sizeof(key), "COFFER_CLIENT_KEY=%s", k);
    at += (size_t)snprintf(cmd + at, sizeof(cmd) - at, "env -i PATH=/usr/bin:/bin %s %s %s %s %s",
                           addr, cacert, cert, key, COFFER_BIN);
    for (size_t i = 0; args[i] != NULL; i++) {
        at += (size_t)snprintf(cmd + at, sizeof(cmd) - at, " '%s'", args[i]);
    }
    snprintf(cmd + at, sizeof(cmd) - at, " <%s 2>&1",
             stdin_file != NULL ? stdin_file : "/dev/null");
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(cli_out, 1, sizeof(cli_out) - 1, p);
    cli_out[n] = '\0';
    status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- Scanning ---------------------------------------------------------------------------- */

/* The three spellings of s a scan looks for: raw, lower-case hex, base64. */
struct spellings {
    char raw[128];
    char hex[256];
    char b64[192];
};

static void spell(const char *s, struct spellings *out)
{
    size_t n = strlen(s);

    snprintf(out->raw, sizeof(out->raw), "%s", s);
    for (size_t i = 0; i < n; i++) {
        snprintf(out->hex + 2 * i, 3, "%02x", (unsigned char)s[i]);
    }
    EVP_EncodeBlock((unsigned char *)out->b64, (const unsigned char *)s, (int)n);
    /* The last block's padding depends on what follows; match the full groups only. */
    out->b64[(n / 3) * 4] = '\0';
}

static bool contains(const unsigned char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);

    if (n == 0 || len < n) {
        return false;
    }
    for (size_t i = 0; i + n <= len; i++) {
        if (hay[i] == (unsigned char)needle[0] && memcmp(hay + i, needle, n) == 0) {
            return true;
        }
    }
    return false;
}

/* Which canary (index), if any, is in buf in any spelling; -1 if none. */
static int find_canary(const unsigned char *buf, size_t len, const char **how)
{
    for (size_t i = 0; i < n_canaries; i++) {
        struct spellings s;

        spell(canaries[i], &s);
        if (contains(buf, len, s.raw)) {
            *how = "raw";
            return (int)i;
        }
        if (contains(buf, len, s.hex)) {
            *how = "hex";
            return (int)i;
        }
        if (contains(buf, len, s.b64)) {
            *how = "base64";
            return (int)i;
        }
    }
    return -1;
}

/* The whole file at path into a new buffer (*len bytes); NULL if unreadable. */
static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t cap = 0;
    size_t n = 0;

    *len = 0;
    if (f == NULL) {
        return NULL;
    }
    for (;;) {
        size_t got;

        if (n == cap) {
            unsigned char *bigger = coffer_reallocarray(buf, cap + 65536, 1);

            assert_non_null(bigger);
            buf = bigger;
            cap += 65536;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            break;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

/* Fails naming the place and the canary's index, never its text. */
static void assert_clean(const char *where, const unsigned char *buf, size_t len)
{
    const char *how = "";
    int i = find_canary(buf, len, &how);

    if (i >= 0) {
        fail_msg("canary %d found (%s) in %s", i, how, where);
    }
}

static void scan_file(const char *path)
{
    size_t len;
    unsigned char *buf = slurp(path, &len);

    assert_non_null(buf);
    assert_clean(path, buf, len);
    coffer_free(buf);
}

static size_t scan_tree(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    size_t files = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char sub[PATH_MAX];
        struct stat st;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        if (lstat(sub, &st) != 0) {
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            files += scan_tree(sub);
        } else if (S_ISREG(st.st_mode)) {
            scan_file(sub);
            files++;
        }
    }
    closedir(d);
    return files;
}

/* The PIDs of the server's children named comm. */
static size_t children(const char *comm, pid_t *out, size_t cap)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL && n < cap) {
        char path[300];
        char stat[512];
        char name[64];
        long ppid = 0;
        FILE *f;

        if (e->d_name[0] < '0' || e->d_name[0] > '9') {
            continue;
        }
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        if ((f = fopen(path, "r")) == NULL) {
            continue;
        }
        if (fgets(stat, sizeof(stat), f) != NULL &&
            sscanf(stat, "%*d (%63[^)]) %*c %ld", name, &ppid) == 2 && ppid == (long)server &&
            strcmp(name, comm) == 0) {
            out[n++] = (pid_t)atol(e->d_name);
        }
        fclose(f);
    }
    closedir(d);
    return n;
}

/* ---- The scenario ------------------------------------------------------------------------- */

static void test_exercise(void **state)
{
    static struct https_reply r;
    static char body[4096];
    static char big[80 * 1024];
    char when[32];
    char url[256];
    char path[256];
    char token[128] = "";
    char id[64] = "";
    time_t t = time(NULL) + 30;
    struct tm tm;
    json_error_t err;
    json_t *o;

    (void)state;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);

    /* The API: put, metadata, access, use (the upstream echoes the secret back). */
    expect_status("PUT", CREDS "/api",
                  "{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":{\"api_key\":\"" C_API "\"}}",
                  "admin", 201);
    expect_status("GET", CREDS "/api", NULL, "agent", 200);
    expect_status("GET", CREDS, NULL, "admin", 200);
    expect_status("POST", CREDS "/api/access", PURPOSE, "agent", 200);
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/allowed/echo", (unsigned)up_port);
    snprintf(body, sizeof(body),
             "{\"purpose\":\"check the balance\",\"request\":{\"method\":\"GET\",\"url\":\"%s\"}}",
             url);
    request("POST", CREDS "/api/use", body, "agent", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, C_API));

    /* OAuth2: the client secret, then a credential whose access token is due. */
    expect_status("PUT", CREDS "/gh-client",
                  "{\"type\":\"custom\",\"tier\":\"high\",\"keys\":{\"client_secret\":\"" C_CS
                  "\"}}",
                  "admin", 201);
    snprintf(body, sizeof(body),
             "{\"type\":\"oauth2\",\"tier\":\"medium\",\"keys\":{\"access_token\":\"" C_AT
             "\",\"refresh_token\":\"" C_RT "\"},\"key_expires_at\":{\"access_token\":\"%s\"},"
             "\"oauth2\":{\"token_url\":\"https://127.0.0.1:%u/oauth/token\",\"client_id\":"
             "\"coffer-test-client\",\"client_secret\":{\"credential\":\"gh-client\",\"key\":"
             "\"client_secret\"}}}",
             when, (unsigned)up_port);
    expect_status("PUT", CREDS "/gh", body, "admin", 201);
    request("POST", CREDS "/gh/access", PURPOSE, "agent", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "fresh-access-token-"));

    /* The request flow, fulfilled with a value. */
    request("POST", "/v1/orgs/dev/projects/demo/requests",
            "{\"name\":\"warehouse\",\"type\":\"api_key\",\"tier\":\"medium\",\"purpose\":"
            "\"load the nightly batch\"}",
            "agent", NULL, &r);
    assert_int_equal(r.status, 201);
    o = json_loads(r.body, 0, &err);
    assert_non_null(o);
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(o, "id")));
    json_decref(o);
    snprintf(path, sizeof(path), "/v1/orgs/dev/projects/demo/requests/%s/fulfill", id);
    expect_status("POST", path, "{\"keys\":{\"api_key\":\"" C_REQ "\"}}", "admin", 200);
    expect_status("POST", CREDS "/warehouse/access", PURPOSE, "agent", 200);

    /* A bearer token: issued, used, and itself a secret. */
    request("POST", "/v1/orgs/dev/tokens", "{\"principal\":\"agent/deployer/deployer-1\"}", "admin",
            NULL, &r);
    assert_int_equal(r.status, 201);
    o = json_loads(r.body, 0, &err);
    assert_non_null(o);
    snprintf(token, sizeof(token), "%s", json_string_value(json_object_get(o, "token")));
    json_decref(o);
    assert_true(strncmp(token, "cft_", 4) == 0);
    add_canary(token);
    request("POST", CREDS "/api/access", PURPOSE, NULL, token, &r);
    assert_int_equal(r.status, 200);

    /* Refused requests that carry secrets. */
    expect_status("PUT", CREDS "/bad",
                  "{\"type\":\"api_key\",\"tier\":\"urgent\",\"keys\":{\"api_key\":\"" C_BAD "\"}}",
                  "admin", 400);
    expect_status("PUT", CREDS "/bad", "{\"type\":\"api_key\",\"keys\":{\"api_key\":\"" C_JSON,
                  "admin", 400);
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    coffer_memcpy(big + 1000, C_BIG, strlen(C_BIG));
    request("PUT", CREDS "/big", big, "admin", NULL, &r);
    assert_true(r.status == 413 || r.status == 400);
    snprintf(body, sizeof(body),
             "{\"purpose\":\"check\",\"request\":{\"method\":\"GET\",\"url\":"
             "\"https://elsewhere.example/%s\",\"headers\":{\"X-Token\":\"%s\"}}}",
             C_DEST, C_DEST);
    request("POST", CREDS "/api/use", body, "agent", NULL, &r);
    assert_int_equal(r.status, 403);
    expect_status("POST", CREDS "/api/access", "{}", "agent", 403);

    /* The coffer command: put from stdin, access (prints the value by design), exec. */
    {
        char in[PATH_MAX];
        FILE *f;
        const char *put[] = {"put",    "dev/demo/db", "--type",  "basic_auth",
                             "--tier", "medium",      "--stdin", NULL};
        const char *access[] = {"access", "dev/demo/db", "--purpose", "rotate the replica", NULL};
        const char *exec[] = {"exec",
                              "--purpose",
                              "run the migration",
                              "--env",
                              "DBPASS=dev/demo/db:password",
                              "--",
                              "/bin/sh",
                              "-c",
                              "test \"$DBPASS\" = \"" C_DB "\"",
                              NULL};

        snprintf(in, sizeof(in), "%s/db.json", dir);
        f = fopen(in, "w");
        assert_non_null(f);
        fputs("{\"username\":\"loader\",\"password\":\"" C_DB "\"}", f);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(coffer_cli("admin", put, in), 0);
        assert_clean("coffer put's output", (const unsigned char *)cli_out, strlen(cli_out));
        assert_int_equal(unlink(in), 0);
        assert_int_equal(coffer_cli("agent", access, NULL), 0);
        assert_non_null(strstr(cli_out, C_DB)); /* what access is for */
        assert_int_equal(coffer_cli("agent", exec, NULL), 0);
        assert_clean("coffer exec's output", (const unsigned char *)cli_out, strlen(cli_out));
    }

    /* A revocation, and an access refused after it. */
    expect_status("POST", CREDS "/api/revoke", "{\"reason\":\"rotated by the canary test\"}",
                  "admin", 200);
    expect_status("POST", CREDS "/api/access", PURPOSE, "agent", 403);
}

static void test_log_clean(void **state)
{
    static char log[1 << 20];

    (void)state;
    /* With renew_objects 5 the worker reopens its token context at its next check (1 s). */
    for (int i = 0; i < 50; i++) {
        https_read_log(log_path, log, sizeof(log));
        if (strstr(log, "token context renewed") != NULL) {
            break;
        }
        usleep(100 * 1000);
    }
    assert_non_null(strstr(log, "token context renewed"));
    /* The renewed context serves: the token opens a credential again. */
    expect_status("POST", CREDS "/gh/access", PURPOSE, "agent", 200);
    scan_file(log_path);
}

static void test_database_only_ciphertext(void **state)
{
    char out[PATH_MAX];
    char cmd[2 * PATH_MAX + 256];
    size_t len;
    unsigned char *dump;

    (void)state;
    snprintf(out, sizeof(out), "%s/dump.sql", dir);
    snprintf(cmd, sizeof(cmd), "/usr/lib/postgresql/15/bin/pg_dump --no-password -d \"%s\" -f '%s'",
             w.h.db_owner, out);
    assert_int_equal(system(cmd), 0);
    dump = slurp(out, &len);
    assert_non_null(dump);
    /* The dump holds the credentials' rows (ciphertext), or this test proves nothing. */
    assert_true(contains(dump, len, "COPY coffer.credential_versions"));
    assert_true(contains(dump, len, "gh-client"));
    assert_clean("the database dump", dump, len);
    coffer_free(dump);
}

static void test_token_directory_clean(void **state)
{
    char tokens[PATH_MAX + 16];

    (void)state;
    snprintf(tokens, sizeof(tokens), "%s/token", w.h.env.dir);
    assert_true(scan_tree(tokens) > 0);
}

static void test_worker_memory_clean(void **state)
{
    pid_t pids[4];
    size_t n = children("cofferd-worker", pids, 4);
    char path[64];
    FILE *maps;
    char line[512];
    int mem;
    size_t scanned = 0;
    static unsigned char chunk[1 << 20];

    (void)state;
    if (UNDER_ASAN) {
        /* AddressSanitizer reserves terabytes of shadow and heap: too much to read. */
        skip();
    }
    assert_int_equal(n, 1);
    snprintf(path, sizeof(path), "/proc/%ld/mem", (long)pids[0]);
    mem = open(path, O_RDONLY | O_CLOEXEC);
    if (mem < 0 && (errno == EACCES || errno == EPERM)) {
        /* Reading another process's memory needs CAP_SYS_PTRACE: reported, never passed. */
        skip();
    }
    assert_true(mem >= 0);
    snprintf(path, sizeof(path), "/proc/%ld/maps", (long)pids[0]);
    maps = fopen(path, "r");
    assert_non_null(maps);
    while (fgets(line, sizeof(line), maps) != NULL) {
        unsigned long lo;
        unsigned long hi;
        char perms[8];

        /* Writable private memory: heaps, anonymous mappings, stacks, data. */
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r' ||
            perms[1] != 'w') {
            continue;
        }
        for (unsigned long at = lo; at < hi; at += sizeof(chunk) - 256) {
            size_t want = hi - at < sizeof(chunk) ? hi - at : sizeof(chunk);
            ssize_t got = pread(mem, chunk, want, (off_t)at);

            if (got <= 0) {
                break;
            }
            {
                char where[96];

                snprintf(where, sizeof(where), "the worker's memory at %#lx", at);
                assert_clean(where, chunk, (size_t)got);
            }
            scanned += (size_t)got;
            if ((size_t)got < want) {
                break;
            }
        }
    }
    fclose(maps);
    close(mem);
    /* Something was read: heaps and stacks are megabytes. */
    assert_true(scanned > 1024 * 1024);
}

static void test_crash_leaves_no_core(void **state)
{
    pid_t before[4];
    pid_t after[4];
    char log[1 << 16];
    char want[96];
    size_t n;

    (void)state;
    n = children("cofferd-worker", before, 4);
    assert_int_equal(n, 1);
    /* SIGABRT dumps core by default; AddressSanitizer would catch a SIGSEGV itself. */
    assert_int_equal(kill(before[0], SIGABRT), 0);
    snprintf(want, sizeof(want), "(PID %ld) killed by signal 6 (SIGABRT), no core",
             (long)before[0]);
    for (int i = 0; i < 100; i++) {
        https_read_log(log_path, log, sizeof(log));
        if (strstr(log, want) != NULL) {
            break;
        }
        usleep(100 * 1000);
    }
    if (strstr(log, want) == NULL) {
        fail_msg("the supervisor did not report the worker's end as '%s'", want);
    }
    /* No core file in the directory it ran in (core_pattern "core" writes there) nor here. */
    assert_int_equal(access("core", F_OK), -1);
    {
        char core[PATH_MAX + 32];

        snprintf(core, sizeof(core), "core.%ld", (long)before[0]);
        assert_int_equal(access(core, F_OK), -1);
    }
    /* And the replacement serves. */
    for (int i = 0; i < 100 && children("cofferd-worker", after, 4) == 0; i++) {
        usleep(100 * 1000);
    }
    assert_int_equal(children("cofferd-worker", after, 4), 1);
    assert_true(after[0] != before[0]);
    expect_status("GET", CREDS "/gh", NULL, "agent", 200);
}

/* ---- Setup ------------------------------------------------------------------------------ */

static int apply_policy(void)
{
    static char policy[2048];

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
             "          methods: [GET]\n"
             "          inject: [{header: Authorization, value: \"Bearer {{api_key}}\"}]\n"
             "      gh: {grants: [{agent_type: deployer}]}\n"
             "      gh-client: {}\n"
             "      db: {grants: [{agent_type: deployer}]}\n"
             "      warehouse: {grants: [{agent_type: deployer}]}\n"
             "      bad: {}\n"
             "      big: {}\n",
             (unsigned)up_port);
    return world_apply_policy(&w, policy);
}

static int start_server(void)
{
    char config[PATH_MAX];
    unsigned short port = https_free_port();
    FILE *f;

    snprintf(config, sizeof(config), "%s/coffer.yaml", dir);
    https_target_init(&srv, port, tls.ca);
    if ((f = fopen(config, "w")) == NULL) {
        return -1;
    }
    fprintf(f,
            "listen: 127.0.0.1:%u\n"
            "tls:\n  cert: %s\n  key: %s\n  client_ca: %s\n  trust_domain: %s\n"
            "pkcs11:\n  module: %s\n  token_uri: \"%s\"\n  pin_source: \"%s\"\n"
            "  renew_objects: 5\n"
            "database: \"%s\"\n"
            "workers: 1\n"
            "log: debug\n"
            "broker:\n  ca_file: %s\n  connect_timeout_ms: 2000\n  timeout_ms: 10000\n",
            (unsigned)port, tls.server_cert, tls.server_key, tls.ca, COFFER_DEV_TRUST_DOMAIN,
            w.h.p11.module, w.h.p11.token_uri, w.h.p11.pin_source, w.h.db_app, up_tls.ca);
    if (fclose(f) != 0) {
        return -1;
    }
    return https_server_start(COFFERD_BIN, config, w.h.env.softhsm_conf, log_path, &srv, &server);
}

static int setup(void **state)
{
    char up_dir[PATH_MAX];
    const char *extra[] = {C_RT, C_CS, NULL};
    const char *const list[] = {C_API, C_DB,   C_CS,  C_RT,   C_AT, C_REQ,
                                C_BAD, C_JSON, C_BIG, C_DEST, NULL};

    (void)state;
    for (size_t i = 0; list[i] != NULL; i++) {
        add_canary(list[i]);
    }
    if (mkdtemp(dir) == NULL || coffer_dev_tls_provision(dir, &tls) != COFFER_OK) {
        return -1;
    }
    snprintf(up_dir, sizeof(up_dir), "%s/upstream", dir);
    if (mkdir(up_dir, 0700) != 0 || coffer_dev_tls_provision(up_dir, &up_tls) != COFFER_OK) {
        return -1;
    }
    snprintf(log_path, sizeof(log_path), "%s/cofferd.log", dir);
    snprintf(up_log, sizeof(up_log), "%s/upstream.log", dir);
    if (coffer_keys_token_mac_create(w.k, NULL) != COFFER_OK ||
        https_upstream_start(UPSTREAM_PY, &up_tls, up_log, log_path, extra, &up_port, &upstream) !=
            0 ||
        apply_policy() != 0) {
        return -1;
    }
    return start_server();
}

static int teardown(void **state)
{
    (void)state;
    (void)https_server_stop(&server, SIGTERM, 20000);
    (void)https_server_stop(&upstream, SIGKILL, 10000);
    https_remove_dir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exercise),
        cmocka_unit_test(test_log_clean),
        cmocka_unit_test(test_database_only_ciphertext),
        cmocka_unit_test(test_token_directory_clean),
        cmocka_unit_test(test_worker_memory_clean),
        cmocka_unit_test(test_crash_leaves_no_core),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    world_open("canary", "dev", &w);
    {
        struct coffer_project demo;

        world_add_project(&w, "demo", &demo);
    }
    rc = cmocka_run_group_tests(tests, setup, teardown);
    world_close(&w);
    curl_global_cleanup();
    return rc;
}
