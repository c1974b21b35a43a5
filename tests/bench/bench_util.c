/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared part of the HTTPS benchmarks: provisioning, cofferd's start and
 * stop, admin requests, bearer tokens, wrk's script, output and fields, and
 * the audit count (see bench_util.h).
 *
 * Everything started here is stopped by its PID, and only by the process
 * that started it: a forked child that fails exits without touching the
 * server or the cluster. A bearer token never reaches stdout, stderr or an
 * error detail; only the wrk script in the private temporary directory
 * holds it.
 */
#include "bench_util.h"

#include "coffer/err.h"
#include "coffer/secret.h"
#include "server/proc.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct coffer_dev_env bench_env;
char bench_dir[BENCH_DIR_MAX];
pid_t bench_server;

static const char *bench_name = "bench";
static char base_url[96]; /* https://<listen> */
static pid_t owner;       /* the process that provisioned, the only one that stops anything */

void bench_stop_all(void)
{
    int status;

    if (getpid() != owner) {
        return;
    }
    if (bench_server > 0) {
        (void)kill(bench_server, SIGTERM);
        if (coffer_proc_wait(bench_server, 30000, &status) != COFFER_OK) {
            fprintf(stderr, "%s: cofferd (PID %ld) did not stop\n", bench_name, (long)bench_server);
        }
        bench_server = 0;
    }
    if (bench_env.dir[0] != '\0' && coffer_dev_pg_stop(&bench_env) != COFFER_OK) {
        fprintf(stderr, "%s: PostgreSQL did not stop: %s\n", bench_name, coffer_err_detail());
    }
}

void bench_die(const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", bench_name, what, coffer_err_detail());
    if (getpid() != owner) {
        _exit(1);
    }
    bench_stop_all();
    exit(1);
}

void bench_setup(const char *name, const char *dir_template, const char *listen)
{
    bench_name = name;
    owner = getpid();
    snprintf(base_url, sizeof(base_url), "https://%s", listen);
    if ((size_t)snprintf(bench_dir, sizeof(bench_dir), "%s", dir_template) >= sizeof(bench_dir) ||
        coffer_harden_process() != COFFER_OK || mkdtemp(bench_dir) == NULL ||
        chmod(bench_dir, 0755) != 0) {
        bench_die("set-up");
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    setenv("COFFER_DEV_LISTEN", listen, 1);
    if (coffer_dev_up(bench_dir, &bench_env) != COFFER_OK) {
        bench_die("provisioning");
    }
}

void bench_finish(bool remove_dir)
{
    bench_stop_server();
    if (coffer_dev_pg_stop(&bench_env) != COFFER_OK ||
        (remove_dir && coffer_dev_remove_tree(bench_dir) != COFFER_OK)) {
        bench_die("cleaning up");
    }
}

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    struct bench_reply *r = arg;
    size_t len = size * n;

    if (len > sizeof(r->body) - 1 - r->len) {
        len = sizeof(r->body) - 1 - r->len;
    }
    memcpy(r->body + r->len, p, len);
    r->len += len;
    r->body[r->len] = '\0';
    return size * n;
}

void bench_admin(const char *method, const char *path, const char *body, struct bench_reply *out)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char url[256];

    memset(out, 0, sizeof(*out));
    snprintf(url, sizeof(url), "%s%s", base_url, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, bench_env.tls.ca);
    curl_easy_setopt(c, CURLOPT_SSLCERT, bench_env.tls.admin_cert);
    curl_easy_setopt(c, CURLOPT_SSLKEY, bench_env.tls.admin_key);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    if (curl_easy_perform(c) != CURLE_OK) {
        fprintf(stderr, "%s: %s %s failed\n", bench_name, method, path);
        exit(1);
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

void bench_wait_healthy(void)
{
    char url[128];

    snprintf(url, sizeof(url), "%s/v1/health", base_url);
    for (int i = 0; i < 300; i++) {
        struct bench_reply r;
        CURL *c = curl_easy_init();

        memset(&r, 0, sizeof(r));
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CAINFO, bench_env.tls.ca);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
        if (curl_easy_perform(c) == CURLE_OK) {
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        }
        curl_easy_cleanup(c);
        if (r.status == 200) {
            return;
        }
        usleep(100 * 1000);
    }
    fprintf(stderr, "%s: cofferd did not become healthy (see %s/cofferd.log)\n", bench_name,
            bench_dir);
    bench_die("waiting for cofferd");
}

pid_t bench_spawn(const char *const *argv, const char *const *envp, const char *out, int flags)
{
    struct coffer_proc_spec spec;
    pid_t pid = 0;
    int fd = open(out, O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0600);

    memset(&spec, 0, sizeof(spec));
    spec.argv = argv;
    spec.envp = envp;
    spec.out_fd = fd;
    spec.err_fd = fd;
    if (fd < 0 || coffer_proc_spawn(&spec, &pid) != COFFER_OK) {
        bench_die(argv[0]);
    }
    close(fd);
    return pid;
}

void bench_start_server(const char *log)
{
    const char *sargv[] = {BIN_DIR "/cofferd", "-c", bench_env.config, NULL};
    char conf[PATH_MAX + 16];
    const char *senv[] = {conf, "PATH=/usr/bin:/bin", "COFFER_LOG=warn", NULL};

    snprintf(conf, sizeof(conf), "SOFTHSM2_CONF=%s", bench_env.softhsm_conf);
    bench_server = bench_spawn(sargv, senv, log, O_APPEND);
    bench_wait_healthy();
}

void bench_stop_server(void)
{
    int status;

    (void)kill(bench_server, SIGTERM);
    if (coffer_proc_wait(bench_server, 30000, &status) != COFFER_OK) {
        fprintf(stderr, "%s: cofferd did not stop\n", bench_name);
    }
    bench_server = 0;
}

bool bench_owner_text(const char *sql, char *out, size_t cap)
{
    PGconn *c = PQconnectdb(bench_env.db_owner);
    PGresult *r;
    bool ok = false;

    out[0] = '\0';
    if (PQstatus(c) == CONNECTION_OK) {
        r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
            snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
            ok = true;
        }
        PQclear(r);
    }
    PQfinish(c);
    return ok;
}

double bench_owner_number(const char *sql)
{
    char v[64];

    return bench_owner_text(sql, v, sizeof(v)) ? atof(v) : -1;
}

long long bench_granted_events(void)
{
    char v[64];

    return bench_owner_text("SELECT count(*) FROM coffer.audit_events WHERE action = 'access' AND "
                            "reason = 'granted'",
                            v, sizeof(v))
               ? atoll(v)
               : -1;
}

int bench_capture(const char *const *argv, char *out, size_t cap)
{
    char path[] = "/tmp/coffer-bench-out.XXXXXX";
    const char *envp[] = {"PATH=/usr/bin:/bin", NULL};
    struct coffer_proc_spec spec;
    int fd = mkstemp(path);
    int status = 0;
    ssize_t n;

    if (fd < 0) {
        bench_die("mkstemp");
    }
    unlink(path);
    memset(&spec, 0, sizeof(spec));
    spec.argv = argv;
    spec.envp = envp;
    spec.out_fd = fd;
    spec.err_fd = fd;
    if (coffer_proc_run(&spec, 600000, &status) != COFFER_OK) {
        bench_die(argv[0]);
    }
    (void)lseek(fd, 0, SEEK_SET);
    n = read(fd, out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const char *bench_field(const char *out, const char *label, char *buf, size_t cap)
{
    const char *dist = strstr(out, "Latency Distribution");
    const char *p = strstr(label[0] >= '0' && label[0] <= '9' && dist != NULL ? dist : out, label);

    buf[0] = '\0';
    if (p != NULL) {
        p += strlen(label);
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        snprintf(buf, cap, "%.*s", (int)strcspn(p, " \t\n"), p);
    }
    return buf;
}

bool bench_token(const char *principal, char *out, size_t cap, struct bench_reply *r)
{
    char body[256];
    const char *tok;

    out[0] = '\0';
    snprintf(body, sizeof(body), "{\"principal\":\"%s\",\"ttl\":\"1d\"}", principal);
    bench_admin("POST", "/v1/orgs/dev/tokens", body, r);
    tok = strstr(r->body, "\"token\":\"");
    if (r->status != 201 || tok == NULL) {
        return false;
    }
    tok += strlen("\"token\":\"");
    snprintf(out, cap, "%.*s", (int)strcspn(tok, "\""), tok);
    OPENSSL_cleanse(r->body, sizeof(r->body));
    r->len = 0;
    return true;
}

void bench_write_access_lua(const char *path, const char *token)
{
    FILE *f = fopen(path, "w");
    int n;

    if (f == NULL) {
        bench_die("writing the wrk script");
    }
    n = fprintf(f,
                "wrk.method = \"POST\"\n"
                "wrk.body = '{\"purpose\":\"deploy demo benchmark\"}'\n"
                "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
                "wrk.headers[\"Authorization\"] = \"Bearer %s\"\n",
                token);
    if (fclose(f) != 0 || n < 0) {
        bench_die("writing the wrk script");
    }
}
