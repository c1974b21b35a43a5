/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTPS pieces of end-to-end tests (see https.h): ports, libcurl
 * requests, and starting and stopping cofferd. It reports what went wrong
 * and leaves judging the answers to the test; it never prints a request or
 * answer body, since those may carry a credential's value.
 */
#include "https.h"
#include "harness.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coffer/err.h"
#include "coffer/mem.h"
#include "server/proc.h"

#define HEALTH_TRIES 300
#define HEALTH_PAUSE_US (100 * 1000)
#define WRAPPER_WORDS_MAX 32

unsigned short https_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0 || ntohs(a.sin_port) == 0) {
        fprintf(stderr, "https: no free loopback port\n");
        exit(1);
    }
    close(fd);
    return ntohs(a.sin_port);
}

void https_target_init(struct https_target *t, unsigned short port, const char *ca)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->base_url, sizeof(t->base_url), "https://127.0.0.1:%u", (unsigned)port);
    t->ca = ca;
}

void https_target_dev(struct https_target *t, unsigned short port, const struct coffer_dev_tls *tls)
{
    https_target_init(t, port, tls->ca);
    t->ids = tls;
}

bool https_dev_identity(const struct coffer_dev_tls *tls, const char *who, const char **cert,
                        const char **key)
{
    if (who == NULL) {
        return false;
    }
    if (strcmp(who, "admin") == 0) {
        *cert = tls->admin_cert;
        *key = tls->admin_key;
        return true;
    }
    if (strcmp(who, "agent") == 0) {
        *cert = tls->agent_cert;
        *key = tls->agent_key;
        return true;
    }
    if (strcmp(who, "agent2") == 0) {
        *cert = tls->agent2_cert;
        *key = tls->agent2_key;
        return true;
    }
    return false;
}

size_t https_collect(char *p, size_t size, size_t n, void *arg)
{
    struct https_reply *r = arg;
    size_t len = size * n;
    size_t room = sizeof(r->body) - 1 - r->len;

    if (len > room) {
        len = room;
    }
    coffer_memcpy(r->body + r->len, p, len);
    r->len += len;
    r->body[r->len] = '\0';
    return size * n;
}

CURLcode https_request(const struct https_target *t, const char *method, const char *path,
                       const char *body, const char *cert, const char *key,
                       const char *const *headers, struct https_reply *out)
{
    return https_request_within(t, method, path, body, cert, key, headers, 30000L, out);
}

CURLcode https_request_within(const struct https_target *t, const char *method, const char *path,
                              const char *body, const char *cert, const char *key,
                              const char *const *headers, long timeout_ms, struct https_reply *out)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[1024];
    CURLcode rc;

    memset(out, 0, sizeof(*out));
    if (c == NULL) {
        return CURLE_FAILED_INIT;
    }
    snprintf(url, sizeof(url), "%s%s", t->base_url, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, t->ca);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, https_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (cert != NULL && key != NULL) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, key);
    }
    if (body != NULL) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        h = curl_slist_append(h, headers[i]);
    }
    if (h != NULL) {
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    }
    rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

void https_read_log(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, cap - 1) : -1;

    buf[n > 0 ? (size_t)n : 0] = '\0';
    if (fd >= 0) {
        close(fd);
    }
}

/*
 * Starts argv with exactly envp, its output appended to log_path, in a
 * session of its own if new_session. what names the program in a diagnostic.
 * 0 with the PID in *pid, or -1 after printing why (and *pid is 0).
 */
static int spawn_logged_in(const char *const *argv, const char *const *envp, const char *log_path,
                           const char *what, bool new_session, pid_t *pid)
{
    struct coffer_proc_spec spec;
    int fd;

    *pid = 0;
    fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "https: cannot open %s for the output of %s\n", log_path, what);
        return -1;
    }
    memset(&spec, 0, sizeof(spec));
    spec.argv = argv;
    spec.envp = envp;
    spec.out_fd = fd;
    spec.err_fd = fd;
    spec.new_session = new_session;
    if (coffer_proc_spawn(&spec, pid) != COFFER_OK) {
        fprintf(stderr, "https: cannot start %s: %s\n", what, coffer_err_detail());
        close(fd);
        *pid = 0;
        return -1;
    }
    close(fd);
    return 0;
}

/* spawn_logged_in, in the caller's session. */
static int spawn_logged(const char *const *argv, const char *const *envp, const char *log_path,
                        const char *what, pid_t *pid)
{
    return spawn_logged_in(argv, envp, log_path, what, false, pid);
}

int https_server_start(const char *cofferd, const char *config, const char *softhsm_conf,
                       const char *log_path, const struct https_target *t, pid_t *pid)
{
    return https_server_start_ex(cofferd, config, softhsm_conf, log_path, t, NULL, false, pid);
}

int https_server_start_ex(const char *cofferd, const char *config, const char *softhsm_conf,
                          const char *log_path, const struct https_target *t,
                          const char *const *extra_env, bool new_session, pid_t *pid)
{
    /* COFFER_TEST_WRAPPER (scripts/valgrind.sh): words put before cofferd's own argv. */
    static char wrapper[2048];
    const char *argv[WRAPPER_WORDS_MAX + 4];
    const char *w = getenv("COFFER_TEST_WRAPPER");
    size_t a = 0;
    char conf_env[PATH_MAX + 16];
    const char *envp[3 + HTTPS_EXTRA_ENV_MAX] = {conf_env, "PATH=/usr/bin:/bin"};
    size_t n = 2;
    static struct https_reply r;
    static char log[8192];
    int status;

    if (w != NULL && w[0] != '\0') {
        snprintf(wrapper, sizeof(wrapper), "%s", w);
        for (char *word = strtok(wrapper, " "); word != NULL && a < WRAPPER_WORDS_MAX;
             word = strtok(NULL, " ")) {
            argv[a++] = word;
        }
    }
    argv[a++] = cofferd;
    argv[a++] = "-c";
    argv[a++] = config;
    argv[a] = NULL;

    snprintf(conf_env, sizeof(conf_env), "SOFTHSM2_CONF=%s", softhsm_conf);
    for (size_t i = 0; extra_env != NULL && extra_env[i] != NULL; i++) {
        if (i == HTTPS_EXTRA_ENV_MAX) {
            fprintf(stderr, "https: more than %d extra environment entries for cofferd\n",
                    HTTPS_EXTRA_ENV_MAX);
            *pid = 0;
            return -1;
        }
        envp[n++] = extra_env[i];
    }
    envp[n] = NULL;
    if (spawn_logged_in(argv, envp, log_path, argv[0], new_session, pid) != 0) {
        return -1;
    }
    for (int i = 0; i < HEALTH_TRIES; i++) {
        if (https_request(t, "GET", "/v1/health", NULL, NULL, NULL, NULL, &r) == CURLE_OK &&
            r.status == 200) {
            return 0;
        }
        usleep(HEALTH_PAUSE_US);
    }
    if (coffer_proc_stop(*pid, SIGKILL, 10000, &status) != COFFER_OK) {
        fprintf(stderr, "https: cofferd (PID %ld) did not exit\n", (long)*pid);
    }
    *pid = 0;
    https_read_log(log_path, log, sizeof(log));
    fprintf(stderr, "https: cofferd did not become healthy; its output:\n%s\n", log);
    return -1;
}

int https_server_stop(pid_t *pid, int sig, int timeout_ms)
{
    int status = 0;

    if (*pid <= 0) {
        return 0;
    }
    if (kill(*pid, sig) != 0 || coffer_proc_wait(*pid, timeout_ms, &status) != COFFER_OK) {
        fprintf(stderr, "https: cofferd (PID %ld) did not exit\n", (long)*pid);
        return -1;
    }
    *pid = 0;
    if (sig == SIGKILL) {
        return 0;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "https: cofferd did not exit cleanly (status 0x%x)\n", (unsigned)status);
        return -1;
    }
    return 0;
}

int https_issue_cert(const struct coffer_dev_tls *tls, const char *dir, struct https_cert *c,
                     unsigned serial)
{
    char csr[PATH_MAX];
    char ext[PATH_MAX];
    char ca_key[PATH_MAX + 16];
    char serial_text[16];
    FILE *f;
    struct harness_run run;
    const char *envp[] = {"PATH=/usr/bin:/bin", NULL};

    snprintf(c->cert, sizeof(c->cert), "%s/%s.pem", dir, c->who);
    snprintf(c->key, sizeof(c->key), "%s/%s.key", dir, c->who);
    snprintf(csr, sizeof(csr), "%s/%s.csr", dir, c->who);
    snprintf(ext, sizeof(ext), "%s/%s.ext", dir, c->who);
    snprintf(ca_key, sizeof(ca_key), "%s/ca.key", tls->dir);
    snprintf(serial_text, sizeof(serial_text), "%u", serial);
    f = fopen(ext, "w");
    if (f == NULL) {
        return -1;
    }
    fprintf(f,
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature\n"
            "extendedKeyUsage = clientAuth\n"
            "subjectAltName = URI:%s\n",
            c->spiffe);
    if (fclose(f) != 0) {
        return -1;
    }
    {
        const char *argv[] = {"/usr/bin/openssl",
                              "req",
                              "-new",
                              "-newkey",
                              "ec",
                              "-pkeyopt",
                              "ec_paramgen_curve:P-256",
                              "-nodes",
                              "-subj",
                              "/CN=coffer-test-client",
                              "-keyout",
                              c->key,
                              "-out",
                              csr,
                              NULL};

        harness_run(argv, envp, &run);
        if (run.status != 0) {
            fprintf(stderr, "openssl req: %s\n", run.out);
            return -1;
        }
    }
    {
        const char *argv[] = {
            "/usr/bin/openssl", "x509", "-req",        "-in",       csr,     "-CA", tls->ca,
            "-CAkey",           ca_key, "-set_serial", serial_text, "-days", "2",   "-sha256",
            "-extfile",         ext,    "-out",        c->cert,     NULL};

        harness_run(argv, envp, &run);
        if (run.status != 0) {
            fprintf(stderr, "openssl x509: %s\n", run.out);
            return -1;
        }
    }
    return 0;
}

static bool port_open(unsigned short port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

int https_upstream_start(const char *script, const struct coffer_dev_tls *tls,
                         const char *request_log, const char *out_log, const char *const *extra,
                         unsigned short *port, pid_t *pid)
{
    const char *argv[16];
    const char *envp[] = {"PATH=/usr/bin:/bin", NULL};
    char port_text[16];
    size_t n = 0;
    int status;

    *pid = 0;
    *port = https_free_port();
    snprintf(port_text, sizeof(port_text), "%u", (unsigned)*port);
    argv[n++] = "/usr/bin/python3";
    argv[n++] = script;
    argv[n++] = port_text;
    argv[n++] = tls->server_cert;
    argv[n++] = tls->server_key;
    argv[n++] = request_log;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < sizeof(argv) / sizeof(argv[0]) - 1;
         i++) {
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    if (spawn_logged(argv, envp, out_log, script, pid) != 0) {
        return -1;
    }
    for (int i = 0; i < 100; i++) {
        if (port_open(*port)) {
            return 0;
        }
        usleep(HEALTH_PAUSE_US);
    }
    if (coffer_proc_stop(*pid, SIGKILL, 10000, &status) != COFFER_OK) {
        fprintf(stderr, "https: the upstream (PID %ld) did not exit\n", (long)*pid);
    }
    *pid = 0;
    fprintf(stderr, "https: the upstream did not start; see %s\n", out_log);
    return -1;
}

int https_write_config(const char *path, unsigned short port, const struct coffer_dev_tls *tls,
                       const struct harness *h, const char *extra_fmt, ...)
{
    FILE *f = fopen(path, "w");
    va_list ap;
    int rc = 0;

    if (f == NULL) {
        fprintf(stderr, "https: cannot write %s\n", path);
        return -1;
    }
    fprintf(f,
            "listen: 127.0.0.1:%u\n"
            "tls:\n  cert: %s\n  key: %s\n  client_ca: %s\n  trust_domain: %s\n"
            "pkcs11:\n  module: %s\n  token_uri: \"%s\"\n  pin_source: \"%s\"\n"
            "database: \"%s\"\n",
            (unsigned)port, tls->server_cert, tls->server_key, tls->ca, COFFER_DEV_TRUST_DOMAIN,
            h->p11.module, h->p11.token_uri, h->p11.pin_source, h->db_app);
    va_start(ap, extra_fmt);
    if (vfprintf(f, extra_fmt, ap) < 0) {
        rc = -1;
    }
    va_end(ap);
    if (fclose(f) != 0 || rc != 0) {
        fprintf(stderr, "https: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

void https_process_stop(pid_t *pid)
{
    int status;

    if (*pid <= 0) {
        return;
    }
    (void)kill(*pid, SIGTERM);
    if (coffer_proc_wait(*pid, 20000, &status) != COFFER_OK) {
        (void)kill(*pid, SIGKILL);
        if (coffer_proc_wait(*pid, 10000, &status) != COFFER_OK) {
            fprintf(stderr, "https: PID %ld did not exit\n", (long)*pid);
        }
    }
    *pid = 0;
}

void https_remove_dir(const char *dir)
{
    if (coffer_dev_remove_tree(dir) != COFFER_OK) {
        fprintf(stderr, "could not remove %s: %s\n", dir, coffer_err_detail());
    }
}
