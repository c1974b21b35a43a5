/* SPDX-License-Identifier: Apache-2.0 */
/*
 * p11 against a real SoftHSMv2 token (this program's own, from the harness):
 * opening and closing, every way opening can fail (PIN, PIN source, URI,
 * module, mechanisms), the attributes of the keys it makes, wrap and unwrap,
 * AES-GCM with every kind of tampering, fork, threads sharing a small pool,
 * and the per-session handle cache.
 *
 * The PINs involved are the harness's or obviously wrong ones written here;
 * no test prints a PIN or key bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>

#include "coffer/mem.h"
#include "coffer/p11.h"
#include "coffer/secret.h"
#include "harness.h"
#include "p11/p11_int.h"

static struct harness h;
static char tmpdir[] = "/tmp/p11-token-test.XXXXXX";

/* ---- Test utilities ------------------------------------------------------------- */

static void check_ok(enum coffer_err r, const char *what)
{
    if (r != COFFER_OK) {
        fail_msg("%s: %s: %s", what, coffer_err_str(r), coffer_err_detail());
    }
}

static void assert_detail_has(const char *needle)
{
    if (strstr(coffer_err_detail(), needle) == NULL) {
        fail_msg("detail \"%s\" does not mention \"%s\"", coffer_err_detail(), needle);
    }
}

static struct coffer_p11 *open_ok(const struct coffer_p11_config *cfg)
{
    struct coffer_p11 *p = NULL;

    check_ok(coffer_p11_open(cfg, &p), "coffer_p11_open");
    assert_non_null(p);
    return p;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

static void tmp_path(char *out, size_t outlen, const char *name)
{
    int n = snprintf(out, outlen, "%s/%s", tmpdir, name);

    assert_true(n > 0 && (size_t)n < outlen);
}

static coffer_p11_obj gen_key(struct coffer_p11_session *s, bool persistent, bool extractable,
                              unsigned usage, const char *label)
{
    struct coffer_p11_keyspec spec = {
        .persistent = persistent, .extractable = extractable, .usage = usage, .label = label};
    coffer_p11_obj k = 0;

    check_ok(coffer_p11_generate_aes(s, &spec, &k), "coffer_p11_generate_aes");
    assert_true(k != 0);
    return k;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (unsigned char)((i * 31u + seed * 7u) & 0xff);
    }
}

/* Encrypts pt under enc_key, decrypts under dec_key, and checks the round trip. */
static void gcm_round_trip(struct coffer_p11_session *s, coffer_p11_obj enc_key,
                           coffer_p11_obj dec_key, size_t len)
{
    unsigned char iv[COFFER_GCM_IV_LEN], tag[COFFER_GCM_TAG_LEN];
    static const unsigned char aad[] = "org=o1;cred=c1;v=1";
    unsigned char *pt = coffer_calloc(len + 1, 1);
    unsigned char *ct = coffer_calloc(len + 1, 1);
    struct coffer_secret *out = NULL;

    assert_non_null(pt);
    assert_non_null(ct);
    fill(pt, len, (unsigned)len);
    fill(iv, sizeof(iv), 3);
    check_ok(coffer_p11_gcm_encrypt(s, enc_key, iv, aad, sizeof(aad), pt, len, ct, tag),
             "gcm encrypt");
    if (len >= 16) {
        assert_false(coffer_mem_equal(pt, ct, len));
    }
    check_ok(coffer_p11_gcm_decrypt(s, dec_key, iv, aad, sizeof(aad), ct, len, tag, &out),
             "gcm decrypt");
    assert_non_null(out);
    assert_int_equal(coffer_secret_len(out), len);
    assert_true(coffer_mem_equal(coffer_secret_view(out).data, pt, len));
    coffer_secret_free(&out);
    coffer_free(pt);
    coffer_free(ct);
}

/* The object behind handle k is gone: the token no longer knows the handle. */
static void assert_destroyed(struct coffer_p11_session *s, coffer_p11_obj k)
{
    struct coffer_p11_attrs a;

    assert_int_equal(coffer_p11_attrs(s, k, &a), COFFER_E_TOKEN);
    assert_detail_has("CKR_OBJECT_HANDLE_INVALID");
}

static void assert_alive(struct coffer_p11_session *s, coffer_p11_obj k)
{
    struct coffer_p11_attrs a;

    check_ok(coffer_p11_attrs(s, k, &a), "attrs of a live object");
    assert_int_equal(a.value_len, 32);
}

/* ---- Opening and closing ---------------------------------------------------------- */

static void test_open_close(void **state)
{
    struct coffer_p11_token_info info;
    struct coffer_p11 *p;

    (void)state;
    p = open_ok(&h.p11);
    coffer_p11_token_info(p, &info);
    assert_string_equal(info.label, h.token_label);
    assert_string_equal(info.manufacturer, "SoftHSM project");
    assert_string_equal(info.model, "SoftHSM v2");
    assert_true(strlen(info.serial) > 0);
    /* The padding is gone. */
    assert_true(info.serial[strlen(info.serial) - 1] != ' ');
    coffer_p11_close(&p);
    assert_null(p);
    /* Closing NULL is harmless. */
    coffer_p11_close(&p);
    coffer_p11_close(NULL);
}

static void test_open_twice_in_one_process(void **state)
{
    struct coffer_p11_config by_name = h.p11;
    struct coffer_p11 *a, *b;
    struct coffer_p11_session *s = NULL;
    coffer_p11_obj k;

    (void)state;
    /*
     * One module instance, two contexts, one loaded by p11-kit name and one by
     * path: closing the first must not end the second.
     */
    by_name.module = "softhsm2";
    a = open_ok(&by_name);
    b = open_ok(&h.p11);
    coffer_p11_close(&a);
    check_ok(coffer_p11_session_get(b, &s), "session of the second context");
    k = gen_key(s, false, false, COFFER_P11_ENCRYPT | COFFER_P11_DECRYPT, NULL);
    gcm_round_trip(s, k, k, 100);
    coffer_p11_destroy(s, &k);
    coffer_p11_session_put(b, &s);
    coffer_p11_close(&b);
}

static void test_module_by_registered_name(void **state)
{
    struct coffer_p11_config cfg = h.p11;
    struct coffer_p11_token_info info;
    struct coffer_p11 *p;

    (void)state;
    cfg.module = "softhsm2";
    p = open_ok(&cfg);
    coffer_p11_token_info(p, &info);
    assert_string_equal(info.label, h.token_label);
    coffer_p11_close(&p);
}

static void test_module_missing(void **state)
{
    struct coffer_p11_config cfg = h.p11;
    struct coffer_p11 *p = NULL;

    (void)state;
    cfg.module = "/nonexistent/libnothing-pkcs11.so";
    assert_int_equal(coffer_p11_open(&cfg, &p), COFFER_E_CONFIG);
    assert_null(p);
    assert_detail_has("/nonexistent/libnothing-pkcs11.so");

    cfg.module = "no-such-registered-module";
    assert_int_equal(coffer_p11_open(&cfg, &p), COFFER_E_CONFIG);
    assert_null(p);
    assert_detail_has("no-such-registered-module");

    cfg.module = NULL;
    assert_int_equal(coffer_p11_open(&cfg, &p), COFFER_E_CONFIG);
    assert_int_equal(coffer_p11_open(NULL, &p), COFFER_E_CONFIG);
    assert_null(p);
}

static void test_uri_matches_nothing(void **state)
{
    struct coffer_p11_config cfg = h.p11;
    struct coffer_p11 *p = NULL;

    (void)state;
    cfg.token_uri = "pkcs11:token=no-such-token-here";
    assert_int_equal(coffer_p11_open(&cfg, &p), COFFER_E_TOKEN_NOT_FOUND);
    assert_null(p);
    assert_detail_has("no token matches pkcs11:token=no-such-token-here");
}

static void test_uri_matches_several(void **state)
{
    struct coffer_p11_config cfg = h.p11;
    struct coffer_p11 *p = NULL;

    (void)state;
    /* The fixture's own token and this program's both match. */
    cfg.token_uri = "pkcs11:model=SoftHSM%20v2";
    assert_int_equal(coffer_p11_open(&cfg, &p), COFFER_E_TOKEN_NOT_FOUND);
    assert_null(p);
    assert_detail_has("tokens match pkcs11:model=SoftHSM%20v2; make the URI more specific");
}

static void test_uri_malformed(void **state)
{
    struct coffer_p11_config cfg = h.p11;
    struct coffer_p11 *p = NULL;

    (void)state;
    cfg.token_uri = "notpkcs11:token=x";
    assert_int_equal(coffer_p11_open(&cfg, &p), COFFER_E_CONFIG);
    assert_null(p);
    assert_detail_has("notpkcs11:token=x");

    cfg.token_uri = "pkcs11:token=%zz";
    assert_int_equal(coffer_p11_open(&cfg, &p), COFFER_E_CONFIG);
    assert_null(p);

    cfg.token_uri = "";
    assert_int_equal(coffer_p11_open(&cfg, &p), COFFER_E_CONFIG);

    /* A URI carrying a PIN is refused and not repeated. */
    cfg.token_uri = "pkcs11:token=x?pin-value=987654";
    assert_int_equal(coffer_p11_open(&cfg, &p), COFFER_E_CONFIG);
    assert_null(strstr(coffer_err_detail(), "987654"));
}

/* Reads the tokendir line out of the harness's softhsm2.conf. */
static void harness_tokendir(char *out, size_t outlen)
{
    char line[PATH_MAX + 64];
    FILE *f = fopen(h.env.softhsm_conf, "re");

    assert_non_null(f);
    out[0] = '\0';
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *key = "directories.tokendir";
        char *v;

        if (strncmp(line, key, strlen(key)) != 0 || (v = strchr(line, '=')) == NULL) {
            continue;
        }
        v++;
        while (*v == ' ') {
            v++;
        }
        v[strcspn(v, "\r\n")] = '\0';
        assert_true(strlen(v) < outlen);
        snprintf(out, outlen, "%s", v);
    }
    fclose(f);
    assert_true(out[0] == '/');
}

/*
 * Opens this program's token through a softhsm2.conf that withholds some
 * mechanisms. mechanisms is a list without a leading minus; the value is
 * written as "-CKM_MD5,<list>" because SoftHSMv2 2.6 drops the first entry
 * of a negative list (it reads it with the minus attached), and Coffer never
 * uses CKM_MD5, whichever version runs.
 */
static enum coffer_err open_restricted(const char *mechanisms, struct coffer_p11 **p)
{
    char tokendir[PATH_MAX], conf_path[PATH_MAX], saved[PATH_MAX], text[2 * PATH_MAX];
    const char *old = getenv("SOFTHSM2_CONF");
    enum coffer_err r;
    int n;

    assert_non_null(old);
    assert_true(strlen(old) < sizeof(saved));
    snprintf(saved, sizeof(saved), "%s", old);
    harness_tokendir(tokendir, sizeof(tokendir));
    tmp_path(conf_path, sizeof(conf_path), "restricted-softhsm2.conf");
    n = snprintf(text, sizeof(text),
                 "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
                 "slots.removable = false\nslots.mechanisms = -CKM_MD5,%s\n"
                 "library.reset_on_fork = true\n",
                 tokendir, mechanisms);
    assert_true(n > 0 && (size_t)n < sizeof(text));
    write_file(conf_path, text, (size_t)n, 0600);

    /* SoftHSMv2 reads its configuration at C_Initialize; no other context is open now. */
    assert_int_equal(setenv("SOFTHSM2_CONF", conf_path, 1), 0);
    r = coffer_p11_open(&h.p11, p);
    assert_int_equal(setenv("SOFTHSM2_CONF", saved, 1), 0);
    return r;
}

static void test_missing_mechanisms(void **state)
{
    struct coffer_p11 *p = NULL;
    char expect[128];

    (void)state;
    assert_int_equal(open_restricted("CKM_AES_GCM", &p), COFFER_E_MECHANISM);
    assert_null(p);
    snprintf(expect, sizeof(expect), "token '%s' lacks required mechanisms: ", h.token_label);
    assert_detail_has(expect);
    assert_detail_has("CKM_AES_GCM (encrypt, decrypt)");
    assert_null(strstr(coffer_err_detail(), "CKM_ECDSA"));

    /* Every missing one is named, not just the first. */
    assert_int_equal(open_restricted("CKM_AES_GCM,CKM_ECDSA,CKM_AES_KEY_WRAP_PAD", &p),
                     COFFER_E_MECHANISM);
    assert_null(p);
    assert_detail_has("CKM_AES_KEY_WRAP_PAD (wrap, unwrap)");
    assert_detail_has("CKM_AES_GCM (encrypt, decrypt)");
    assert_detail_has("CKM_ECDSA (sign)");

    /* With the usual configuration back, the same token opens. */
    p = open_ok(&h.p11);
    coffer_p11_close(&p);
}

/* ---- PIN sources ------------------------------------------------------------------ */

static void test_wrong_pin(void **state)
{
    static const char wrong[] = "wrong-pin-4711\n";
    struct coffer_p11_config cfg = h.p11;
    struct coffer_p11 *p = NULL;
    char path[PATH_MAX], source[PATH_MAX + 8];

    (void)state;
    tmp_path(path, sizeof(path), "wrong.pin");
    write_file(path, wrong, strlen(wrong), 0600);
    snprintf(source, sizeof(source), "file:%s", path);
    cfg.pin_source = source;
    assert_int_equal(coffer_p11_open(&cfg, &p), COFFER_E_PIN);
    assert_null(p);
    assert_detail_has("C_Login: CKR_PIN_INCORRECT");
    assert_null(strstr(coffer_err_detail(), "wrong-pin-4711"));

    /* A failed login leaves nothing behind: the right PIN still opens. */
    p = open_ok(&h.p11);
    coffer_p11_close(&p);
}

static void test_pin_file_mode_refused(void **state)
{
    struct coffer_p11_config cfg = h.p11;
    struct coffer_p11 *p = NULL;
    struct coffer_secret *pin = NULL;
    char path[PATH_MAX], source[PATH_MAX + 8];

    (void)state;
    tmp_path(path, sizeof(path), "open.pin");
    write_file(path, "123456\n", 7, 0644);
    snprintf(source, sizeof(source), "file:%s", path);
    cfg.pin_source = source;
    assert_int_equal(coffer_p11_open(&cfg, &p), COFFER_E_PIN);
    assert_null(p);
    assert_detail_has(path);
    assert_detail_has("0644");

    /* Group-writable alone is refused too; owner-only is accepted. */
    assert_int_equal(chmod(path, 0620), 0);
    assert_int_equal(coffer_p11_read_pin(source, &pin), COFFER_E_PIN);
    assert_null(pin);
    assert_int_equal(chmod(path, 0600), 0);
    check_ok(coffer_p11_read_pin(source, &pin), "read_pin 0600");
    assert_int_equal(coffer_secret_len(pin), 6);
    coffer_secret_free(&pin);
}

static void test_pin_file_contents(void **state)
{
    struct coffer_secret *pin = NULL;
    char path[PATH_MAX], source[PATH_MAX + 8];
    unsigned char big[300];

    (void)state;
    tmp_path(path, sizeof(path), "contents.pin");
    snprintf(source, sizeof(source), "file:%s", path);

    /* One "\r\n" is removed. */
    write_file(path, "abc\r\n", 5, 0600);
    check_ok(coffer_p11_read_pin(source, &pin), "crlf");
    assert_int_equal(coffer_secret_len(pin), 3);
    assert_true(coffer_mem_equal(coffer_secret_view(pin).data, "abc", 3));
    coffer_secret_free(&pin);

    /* Only one newline is removed. */
    write_file(path, "abc\n\n", 5, 0600);
    check_ok(coffer_p11_read_pin(source, &pin), "two newlines");
    assert_int_equal(coffer_secret_len(pin), 4);
    coffer_secret_free(&pin);

    /* No newline at all is fine. */
    write_file(path, "abcd", 4, 0600);
    check_ok(coffer_p11_read_pin(source, &pin), "no newline");
    assert_int_equal(coffer_secret_len(pin), 4);
    coffer_secret_free(&pin);

    write_file(path, "\n", 1, 0600);
    assert_int_equal(coffer_p11_read_pin(source, &pin), COFFER_E_PIN);
    assert_detail_has("empty");
    assert_null(pin);

    memset(big, 'x', sizeof(big));
    write_file(path, big, sizeof(big), 0600);
    assert_int_equal(coffer_p11_read_pin(source, &pin), COFFER_E_PIN);
    assert_detail_has("256");
    assert_null(pin);

    /* Exactly 256 bytes is the limit, not past it. */
    write_file(path, big, 256, 0600);
    check_ok(coffer_p11_read_pin(source, &pin), "256-byte PIN");
    assert_int_equal(coffer_secret_len(pin), 256);
    coffer_secret_free(&pin);

    /* A directory is not a PIN file. */
    snprintf(source, sizeof(source), "file:%s", tmpdir);
    assert_int_equal(coffer_p11_read_pin(source, &pin), COFFER_E_PIN);
    assert_detail_has("not a regular file");

    tmp_path(path, sizeof(path), "absent.pin");
    snprintf(source, sizeof(source), "file:%s", path);
    assert_int_equal(coffer_p11_read_pin(source, &pin), COFFER_E_PIN);
    assert_detail_has(path);

    assert_int_equal(coffer_p11_read_pin("file:", &pin), COFFER_E_PIN);
    assert_null(pin);
}

static void test_pin_env(void **state)
{
    struct coffer_p11_config cfg = h.p11;
    struct coffer_p11 *p = NULL;
    struct coffer_secret *pin = NULL;
    struct coffer_secret *real = NULL;
    char value[300];
    struct coffer_secret_view v;

    (void)state;
    assert_int_equal(unsetenv("P11_TEST_NO_SUCH_PIN"), 0);
    cfg.pin_source = "env:P11_TEST_NO_SUCH_PIN";
    assert_int_equal(coffer_p11_open(&cfg, &p), COFFER_E_PIN);
    assert_null(p);
    assert_detail_has("P11_TEST_NO_SUCH_PIN");

    assert_int_equal(setenv("P11_TEST_EMPTY_PIN", "", 1), 0);
    assert_int_equal(coffer_p11_read_pin("env:P11_TEST_EMPTY_PIN", &pin), COFFER_E_PIN);
    assert_detail_has("P11_TEST_EMPTY_PIN");
    assert_null(pin);
    assert_int_equal(coffer_p11_read_pin("env:", &pin), COFFER_E_PIN);

    /* The right PIN through the environment opens the token. */
    check_ok(coffer_p11_read_pin(h.p11.pin_source, &real), "harness PIN");
    v = coffer_secret_view(real);
    assert_true(v.len < sizeof(value));
    coffer_memcpy(value, v.data, v.len);
    value[v.len] = '\0';
    assert_int_equal(setenv("P11_TEST_PIN", value, 1), 0);
    coffer_wipe(value, sizeof(value));
    coffer_secret_free(&real);
    cfg.pin_source = "env:P11_TEST_PIN";
    p = open_ok(&cfg);
    coffer_p11_close(&p);
    assert_int_equal(unsetenv("P11_TEST_PIN"), 0);
}

static void test_pin_source_refused(void **state)
{
    struct coffer_p11_config cfg = h.p11;
    struct coffer_p11 *p = NULL;
    struct coffer_secret *pin = NULL;

    (void)state;
    /* A PIN written where the source belongs is refused and not echoed. */
    cfg.pin_source = "246813";
    assert_int_equal(coffer_p11_open(&cfg, &p), COFFER_E_PIN);
    assert_null(p);
    assert_null(strstr(coffer_err_detail(), "246813"));
    assert_detail_has("file:PATH, env:NAME or prompt");

    assert_int_equal(coffer_p11_read_pin("pin:246813", &pin), COFFER_E_PIN);
    assert_null(strstr(coffer_err_detail(), "246813"));
    assert_int_equal(coffer_p11_read_pin(NULL, &pin), COFFER_E_PIN);
    assert_int_equal(coffer_p11_read_pin("", &pin), COFFER_E_PIN);
    assert_int_equal(coffer_p11_read_pin("Prompt", &pin), COFFER_E_PIN);
    assert_null(pin);
}

static void test_pin_prompt_without_terminal(void **state)
{
    int status = 0;
    pid_t pid;

    (void)state;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct coffer_secret *pin = NULL;
        enum coffer_err r;

        /* A new session has no controlling terminal, so /dev/tty cannot be opened. */
        if (setsid() < 0) {
            _exit(2);
        }
        r = coffer_p11_read_pin("prompt", &pin);
        _exit(r == COFFER_E_PIN && pin == NULL && strstr(coffer_err_detail(), "/dev/tty") != NULL
                  ? 0
                  : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A pseudo-terminal standing in for the operator's terminal. */
struct pty {
    int master;
    int slave; /* kept open by the parent to read the terminal's modes */
    char slave_name[64];
};

static void pty_open(struct pty *t)
{
    const char *name;

    t->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(t->master >= 0);
    assert_int_equal(grantpt(t->master), 0);
    assert_int_equal(unlockpt(t->master), 0);
    name = ptsname(t->master);
    assert_non_null(name);
    assert_true(strlen(name) < sizeof(t->slave_name));
    snprintf(t->slave_name, sizeof(t->slave_name), "%s", name);
    t->slave = open(t->slave_name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(t->slave >= 0);
}

static void pty_close(struct pty *t)
{
    close(t->master);
    close(t->slave);
}

/* Appends what the terminal shows to buf until it holds want, or 10 s pass. */
static bool pty_wait_for(struct pty *t, char *buf, size_t size, const char *want)
{
    size_t len = strlen(buf);

    for (int i = 0; i < 1000 && strstr(buf, want) == NULL; i++) {
        struct pollfd pfd = {.fd = t->master, .events = POLLIN};
        ssize_t n;

        if (poll(&pfd, 1, 10) <= 0) {
            continue;
        }
        n = read(t->master, buf + len, size - 1 - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
    }
    return strstr(buf, want) != NULL;
}

/* In the child: make the pty the controlling terminal, then read the PIN from it. */
static void prompt_child(const struct pty *t)
{
    struct coffer_secret *pin = NULL;
    struct termios after;
    enum coffer_err r;
    int fd;

    /* A prompt that never ends must not hang the test: the alarm ends the child. */
    alarm(30);
    if (setsid() < 0) {
        _exit(2);
    }
    fd = open(t->slave_name, O_RDWR);
    if (fd < 0 || ioctl(fd, TIOCSCTTY, 0) != 0) {
        _exit(3);
    }
    r = coffer_p11_read_pin("prompt", &pin);
    if (r != COFFER_OK) {
        _exit(4);
    }
    if (coffer_secret_len(pin) != 6 ||
        !coffer_mem_equal(coffer_secret_view(pin).data, "417263", 6)) {
        _exit(5);
    }
    coffer_secret_free(&pin);
    if (tcgetattr(fd, &after) != 0 || (after.c_lflag & ECHO) == 0) {
        _exit(6);
    }
    _exit(0);
}

static void test_pin_prompt_on_terminal(void **state)
{
    char shown[512] = "";
    struct termios before, after;
    struct pty t;
    int status = 0;
    pid_t pid;

    (void)state;
    pty_open(&t);
    assert_int_equal(tcgetattr(t.slave, &before), 0);
    assert_true((before.c_lflag & ECHO) != 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prompt_child(&t);
    }
    /* Typed only once the prompt shows: echo is off by then, and nothing typed is flushed. */
    assert_true(pty_wait_for(&t, shown, sizeof(shown), "PIN: "));
    assert_int_equal(write(t.master, "417263\n", 7), 7);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    (void)pty_wait_for(&t, shown, sizeof(shown), "\n");
    /* The PIN was not echoed, and the terminal has its echo back. */
    assert_null(strstr(shown, "417263"));
    assert_int_equal(tcgetattr(t.slave, &after), 0);
    assert_true((after.c_lflag & ECHO) != 0);
    pty_close(&t);
}

static void test_pin_prompt_interrupted(void **state)
{
    char shown[512] = "";
    struct termios after;
    struct pty t;
    int status = 0;
    pid_t pid;

    (void)state;
    pty_open(&t);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prompt_child(&t);
    }
    assert_true(pty_wait_for(&t, shown, sizeof(shown), "PIN: "));
    /* Killed at the prompt: the terminal is restored, then the signal takes effect. */
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGTERM);
    assert_int_equal(tcgetattr(t.slave, &after), 0);
    assert_true((after.c_lflag & ECHO) != 0);
    pty_close(&t);
}

/* ---- Keys ------------------------------------------------------------------------ */

static void test_persistent_wrap_key(void **state)
{
    struct coffer_p11 *p = open_ok(&h.p11);
    struct coffer_p11_session *s = NULL;
    struct coffer_p11_attrs a;
    unsigned char kcv[COFFER_KCV_LEN] = {0}, kcv2[COFFER_KCV_LEN] = {0};
    coffer_p11_obj mk, found = 0, copy = 0, dup1, dup2;

    (void)state;
    check_ok(coffer_p11_session_get(p, &s), "session_get");
    mk = gen_key(s, true, false, COFFER_P11_WRAP | COFFER_P11_UNWRAP, "p11-test-mk");

    check_ok(coffer_p11_attrs(s, mk, &a), "attrs");
    assert_true(a.token);
    assert_true(a.private_);
    assert_true(a.sensitive);
    assert_true(a.always_sensitive);
    assert_false(a.extractable);
    assert_true(a.never_extractable);
    assert_true(a.wrap);
    assert_true(a.unwrap);
    assert_false(a.encrypt);
    assert_false(a.decrypt);
    assert_false(a.value_readable);
    assert_int_equal(a.value_len, 32);
    assert_string_equal(a.label, "p11-test-mk");

    check_ok(coffer_p11_kcv(s, mk, kcv), "kcv");
    check_ok(coffer_p11_kcv(s, mk, kcv2), "kcv again");
    assert_true(coffer_mem_equal(kcv, kcv2, sizeof(kcv)));

    check_ok(coffer_p11_find_key(s, "p11-test-mk", &found), "find_key");
    assert_true(found == mk);
    assert_int_equal(coffer_p11_find_key(s, "p11-test-absent", &found), COFFER_E_NOT_FOUND);
    assert_true(found == 0);
    assert_int_equal(coffer_p11_find_key(s, NULL, &found), COFFER_E_INVALID);

    /* A session copy: still sensitive and non-extractable, same key (same KCV), not a token object.
     */
    check_ok(coffer_p11_copy_to_session(s, mk, &copy), "copy_to_session");
    assert_true(copy != mk);
    check_ok(coffer_p11_attrs(s, copy, &a), "attrs of copy");
    assert_false(a.token);
    assert_true(a.sensitive);
    assert_false(a.extractable);
    assert_false(a.value_readable);
    check_ok(coffer_p11_kcv(s, copy, kcv2), "kcv of copy");
    assert_true(coffer_mem_equal(kcv, kcv2, sizeof(kcv)));
    coffer_p11_destroy(s, &copy);
    assert_true(copy == 0);

    /* Two keys under one label is an inconsistency, not a choice. */
    dup1 = gen_key(s, true, false, COFFER_P11_WRAP, "p11-test-dup");
    dup2 = gen_key(s, true, false, COFFER_P11_WRAP, "p11-test-dup");
    assert_int_equal(coffer_p11_find_key(s, "p11-test-dup", &found), COFFER_E_INTEGRITY);
    assert_detail_has("p11-test-dup");
    coffer_p11_destroy(s, &dup1);
    coffer_p11_destroy(s, &dup2);
    coffer_p11_destroy(s, &mk);
    assert_int_equal(coffer_p11_find_key(s, "p11-test-mk", &found), COFFER_E_NOT_FOUND);

    coffer_p11_session_put(p, &s);
    assert_null(s);
    coffer_p11_close(&p);
}

static void test_extractable_attrs(void **state)
{
    struct coffer_p11 *p = open_ok(&h.p11);
    struct coffer_p11_session *s = NULL;
    struct coffer_p11_keyspec bad = {.usage = 1u << 7};
    struct coffer_p11_attrs a;
    coffer_p11_obj k, none = 0;

    (void)state;
    check_ok(coffer_p11_session_get(p, &s), "session_get");
    k = gen_key(s, false, true, COFFER_P11_ENCRYPT, NULL);
    check_ok(coffer_p11_attrs(s, k, &a), "attrs");
    assert_false(a.token);
    assert_true(a.extractable);
    assert_false(a.never_extractable);
    assert_true(a.sensitive);
    assert_true(a.encrypt);
    assert_false(a.decrypt);
    assert_false(a.wrap);
    /* Sensitive keeps CKA_VALUE unreadable even for an extractable key. */
    assert_false(a.value_readable);
    assert_string_equal(a.label, "");
    coffer_p11_destroy(s, &k);

    assert_int_equal(coffer_p11_generate_aes(s, &bad, &none), COFFER_E_INVALID);
    assert_int_equal(coffer_p11_generate_aes(s, NULL, &none), COFFER_E_INVALID);
    assert_true(none == 0);
    coffer_p11_session_put(p, &s);
    coffer_p11_close(&p);
}

static void test_wrap_unwrap(void **state)
{
    struct coffer_p11 *p = open_ok(&h.p11);
    struct coffer_p11_session *s = NULL;
    struct coffer_p11_keyspec session_spec = {.persistent = false,
                                              .extractable = false,
                                              .usage = COFFER_P11_ENCRYPT | COFFER_P11_DECRYPT};
    struct coffer_p11_keyspec persistent_spec = session_spec;
    unsigned char wrapped[COFFER_WRAPPED_MAX], bad[COFFER_WRAPPED_MAX];
    unsigned char kcv[COFFER_KCV_LEN];
    struct coffer_p11_attrs a;
    size_t wrapped_len = 0, junk_len = 0;
    coffer_p11_obj mk, other_mk, cek, unwrapped = 0, fixed;

    (void)state;
    check_ok(coffer_p11_session_get(p, &s), "session_get");
    mk = gen_key(s, true, false, COFFER_P11_WRAP | COFFER_P11_UNWRAP, "p11-test-wrap-mk");
    other_mk = gen_key(s, false, false, COFFER_P11_WRAP | COFFER_P11_UNWRAP, NULL);
    cek = gen_key(s, false, true, COFFER_P11_ENCRYPT | COFFER_P11_DECRYPT, NULL);

    check_ok(coffer_p11_wrap(s, mk, cek, wrapped, &wrapped_len), "wrap");
    assert_int_equal(wrapped_len, 40);

    check_ok(coffer_p11_unwrap(s, mk, wrapped, wrapped_len, &session_spec, &unwrapped), "unwrap");
    assert_true(unwrapped != 0 && unwrapped != cek);
    check_ok(coffer_p11_attrs(s, unwrapped, &a), "attrs of unwrapped");
    assert_false(a.token);
    assert_true(a.sensitive);
    assert_false(a.extractable);
    assert_false(a.value_readable);
    assert_true(a.encrypt);
    assert_true(a.decrypt);
    assert_false(a.wrap);
    /* SoftHSMv2 records neither CKA_VALUE_LEN nor CKA_CHECK_VALUE on unwrapped keys. */
    assert_int_equal(a.value_len, 0);
    /* SoftHSMv2 keeps no check value on unwrapped keys: that is a state, not a KCV. */
    assert_int_equal(coffer_p11_kcv(s, unwrapped, kcv), COFFER_E_STATE);

    /* The unwrapped key is the same key: what one encrypts, the other decrypts. */
    gcm_round_trip(s, cek, unwrapped, 1000);
    gcm_round_trip(s, unwrapped, cek, 1);

    /* A non-extractable key cannot be wrapped. */
    assert_int_equal(coffer_p11_wrap(s, mk, unwrapped, bad, &junk_len), COFFER_E_TOKEN);
    assert_detail_has("C_WrapKey: CKR_KEY_UNEXTRACTABLE");
    assert_int_equal(junk_len, 0);

    /* Unwrapped keys are session objects only. */
    persistent_spec.persistent = true;
    fixed = 0;
    assert_int_equal(coffer_p11_unwrap(s, mk, wrapped, wrapped_len, &persistent_spec, &fixed),
                     COFFER_E_INVALID);
    assert_true(fixed == 0);

    /* Every corrupted byte position fails authentication. */
    for (size_t i = 0; i < wrapped_len; i += 7) {
        coffer_memcpy(bad, wrapped, wrapped_len);
        bad[i] ^= 0x01;
        fixed = 0;
        assert_int_equal(coffer_p11_unwrap(s, mk, bad, wrapped_len, &session_spec, &fixed),
                         COFFER_E_INTEGRITY);
        assert_true(fixed == 0);
        assert_detail_has("C_UnwrapKey: ");
    }
    /* A truncated or extended blob and the wrong wrapping key fail the same way. */
    assert_int_equal(coffer_p11_unwrap(s, mk, wrapped, wrapped_len - 8, &session_spec, &fixed),
                     COFFER_E_INTEGRITY);
    assert_int_equal(coffer_p11_unwrap(s, mk, wrapped, wrapped_len + 8, &session_spec, &fixed),
                     COFFER_E_INTEGRITY);
    assert_int_equal(coffer_p11_unwrap(s, other_mk, wrapped, wrapped_len, &session_spec, &fixed),
                     COFFER_E_INTEGRITY);
    assert_true(fixed == 0);
    assert_int_equal(coffer_p11_unwrap(s, mk, wrapped, 0, &session_spec, &fixed), COFFER_E_INVALID);

    coffer_p11_destroy(s, &unwrapped);
    coffer_p11_destroy(s, &cek);
    coffer_p11_destroy(s, &other_mk);
    coffer_p11_destroy(s, &mk);
    coffer_p11_session_put(p, &s);
    coffer_p11_close(&p);
}

/* ---- AES-GCM ---------------------------------------------------------------------- */

static void test_gcm_tamper(void **state)
{
    static const unsigned char aad[] = "org=o1;project=p1;cred=c1;v=3";
    static const unsigned char other_aad[] = "org=o1;project=p1;cred=c2;v=3";
    struct coffer_p11 *p = open_ok(&h.p11);
    struct coffer_p11_session *s = NULL;
    unsigned char iv[COFFER_GCM_IV_LEN], tag[COFFER_GCM_TAG_LEN];
    unsigned char pt[200], ct[200], bad_ct[200], bad_iv[COFFER_GCM_IV_LEN];
    unsigned char bad_tag[COFFER_GCM_TAG_LEN];
    struct coffer_secret *out = NULL;
    coffer_p11_obj k, other;

    (void)state;
    check_ok(coffer_p11_session_get(p, &s), "session_get");
    k = gen_key(s, false, false, COFFER_P11_ENCRYPT | COFFER_P11_DECRYPT, NULL);
    other = gen_key(s, false, false, COFFER_P11_ENCRYPT | COFFER_P11_DECRYPT, NULL);
    fill(pt, sizeof(pt), 9);
    fill(iv, sizeof(iv), 1);
    check_ok(coffer_p11_gcm_encrypt(s, k, iv, aad, sizeof(aad), pt, sizeof(pt), ct, tag),
             "encrypt");

    coffer_memcpy(bad_tag, tag, sizeof(tag));
    bad_tag[5] ^= 0x80;
    assert_int_equal(
        coffer_p11_gcm_decrypt(s, k, iv, aad, sizeof(aad), ct, sizeof(ct), bad_tag, &out),
        COFFER_E_INTEGRITY);
    assert_null(out);
    assert_detail_has("C_Decrypt: CKR_GENERAL_ERROR");

    coffer_memcpy(bad_ct, ct, sizeof(ct));
    bad_ct[100] ^= 0x01;
    assert_int_equal(
        coffer_p11_gcm_decrypt(s, k, iv, aad, sizeof(aad), bad_ct, sizeof(ct), tag, &out),
        COFFER_E_INTEGRITY);
    assert_null(out);

    coffer_memcpy(bad_iv, iv, sizeof(iv));
    bad_iv[11] ^= 0x01;
    assert_int_equal(
        coffer_p11_gcm_decrypt(s, k, bad_iv, aad, sizeof(aad), ct, sizeof(ct), tag, &out),
        COFFER_E_INTEGRITY);
    assert_null(out);

    assert_int_equal(
        coffer_p11_gcm_decrypt(s, k, iv, other_aad, sizeof(other_aad), ct, sizeof(ct), tag, &out),
        COFFER_E_INTEGRITY);
    assert_null(out);

    /* No AAD at all is different AAD too. */
    assert_int_equal(coffer_p11_gcm_decrypt(s, k, iv, NULL, 0, ct, sizeof(ct), tag, &out),
                     COFFER_E_INTEGRITY);
    assert_null(out);

    /* The wrong key, and a truncated ciphertext. */
    assert_int_equal(
        coffer_p11_gcm_decrypt(s, other, iv, aad, sizeof(aad), ct, sizeof(ct), tag, &out),
        COFFER_E_INTEGRITY);
    assert_int_equal(
        coffer_p11_gcm_decrypt(s, k, iv, aad, sizeof(aad), ct, sizeof(ct) - 1, tag, &out),
        COFFER_E_INTEGRITY);
    assert_null(out);

    /* After all those failures the session has no operation left over: this works. */
    check_ok(coffer_p11_gcm_decrypt(s, k, iv, aad, sizeof(aad), ct, sizeof(ct), tag, &out),
             "decrypt after failures");
    assert_int_equal(coffer_secret_len(out), sizeof(pt));
    assert_true(coffer_mem_equal(coffer_secret_view(out).data, pt, sizeof(pt)));
    coffer_secret_free(&out);

    /* Arguments are checked before the token is asked. */
    assert_int_equal(
        coffer_p11_gcm_decrypt(s, k, NULL, aad, sizeof(aad), ct, sizeof(ct), tag, &out),
        COFFER_E_INVALID);
    assert_int_equal(coffer_p11_gcm_encrypt(s, k, iv, NULL, 4, pt, sizeof(pt), ct, tag),
                     COFFER_E_INVALID);
    assert_int_equal(coffer_p11_gcm_encrypt(s, 0, iv, aad, sizeof(aad), pt, sizeof(pt), ct, tag),
                     COFFER_E_INVALID);

    coffer_p11_destroy(s, &k);
    coffer_p11_destroy(s, &other);
    coffer_p11_session_put(p, &s);
    coffer_p11_close(&p);
}

static void test_gcm_sizes(void **state)
{
    struct coffer_p11 *p = open_ok(&h.p11);
    struct coffer_p11_session *s = NULL;
    unsigned char iv[COFFER_GCM_IV_LEN], tag[COFFER_GCM_TAG_LEN], tag2[COFFER_GCM_TAG_LEN];
    struct coffer_secret *out = NULL;
    unsigned char dummy = 0;
    coffer_p11_obj k, wrap_only;

    (void)state;
    check_ok(coffer_p11_session_get(p, &s), "session_get");
    k = gen_key(s, false, false, COFFER_P11_ENCRYPT | COFFER_P11_DECRYPT, NULL);

    /* Empty plaintext: only the tag, which still authenticates the AAD. */
    fill(iv, sizeof(iv), 5);
    check_ok(coffer_p11_gcm_encrypt(s, k, iv, (const unsigned char *)"a", 1, NULL, 0, NULL, tag),
             "encrypt empty");
    check_ok(coffer_p11_gcm_decrypt(s, k, iv, (const unsigned char *)"a", 1, NULL, 0, tag, &out),
             "decrypt empty");
    assert_non_null(out);
    assert_int_equal(coffer_secret_len(out), 0);
    coffer_secret_free(&out);
    assert_int_equal(
        coffer_p11_gcm_decrypt(s, k, iv, (const unsigned char *)"b", 1, &dummy, 0, tag, &out),
        COFFER_E_INTEGRITY);
    assert_null(out);

    /* A different IV gives a different tag for the same input. */
    iv[0] ^= 1;
    check_ok(coffer_p11_gcm_encrypt(s, k, iv, (const unsigned char *)"a", 1, NULL, 0, NULL, tag2),
             "encrypt empty, other IV");
    assert_false(coffer_mem_equal(tag, tag2, sizeof(tag)));

    gcm_round_trip(s, k, k, 1);
    gcm_round_trip(s, k, k, 15);
    gcm_round_trip(s, k, k, 17);
    gcm_round_trip(s, k, k, 64 * 1024);

    /* A wrap-only key may not encrypt. */
    wrap_only = gen_key(s, false, false, COFFER_P11_WRAP, NULL);
    assert_int_equal(coffer_p11_gcm_encrypt(s, wrap_only, iv, NULL, 0, &dummy, 1, &dummy, tag),
                     COFFER_E_TOKEN);
    assert_detail_has("C_EncryptInit: CKR_KEY_FUNCTION_NOT_PERMITTED");
    gcm_round_trip(s, k, k, 33);

    coffer_p11_destroy(s, &wrap_only);
    coffer_p11_destroy(s, &k);
    coffer_p11_session_put(p, &s);
    coffer_p11_close(&p);
}

/* ---- Fork and threads ------------------------------------------------------------- */

/* In a forked child: a context of its own works. Returns an exit code, 0 for success. */
static int child_opens_its_own(void)
{
    unsigned char iv[COFFER_GCM_IV_LEN] = {0}, tag[COFFER_GCM_TAG_LEN], pt[64], ct[64];
    struct coffer_p11_keyspec spec = {.usage = COFFER_P11_ENCRYPT | COFFER_P11_DECRYPT};
    struct coffer_p11_session *s = NULL;
    struct coffer_secret *out = NULL;
    struct coffer_p11 *p = NULL;
    coffer_p11_obj k = 0;
    int code = 0;

    fill(pt, sizeof(pt), 77);
    if (coffer_p11_open(&h.p11, &p) != COFFER_OK) {
        return 20;
    }
    if (coffer_p11_session_get(p, &s) != COFFER_OK) {
        code = 21;
    } else if (coffer_p11_generate_aes(s, &spec, &k) != COFFER_OK) {
        code = 22;
    } else if (coffer_p11_gcm_encrypt(s, k, iv, NULL, 0, pt, sizeof(pt), ct, tag) != COFFER_OK ||
               coffer_p11_gcm_decrypt(s, k, iv, NULL, 0, ct, sizeof(ct), tag, &out) != COFFER_OK ||
               !coffer_mem_equal(coffer_secret_view(out).data, pt, sizeof(pt))) {
        code = 23;
    }
    coffer_secret_free(&out);
    coffer_p11_destroy(s, &k);
    coffer_p11_session_put(p, &s);
    coffer_p11_close(&p);
    return code;
}

static void test_fork(void **state)
{
    struct coffer_p11 *p = open_ok(&h.p11);
    struct coffer_p11_session *s = NULL;
    coffer_p11_obj k;
    int status = 0;
    pid_t pid;

    static const char wrong[] = "wrong-pin-0815\n";
    struct coffer_p11_config wrong_cfg = h.p11;
    char wrong_path[PATH_MAX], wrong_source[PATH_MAX + 8];

    (void)state;
    check_ok(coffer_p11_session_get(p, &s), "session_get");
    k = gen_key(s, false, false, COFFER_P11_ENCRYPT | COFFER_P11_DECRYPT, NULL);
    tmp_path(wrong_path, sizeof(wrong_path), "fork-wrong.pin");
    write_file(wrong_path, wrong, strlen(wrong), 0600);
    snprintf(wrong_source, sizeof(wrong_source), "file:%s", wrong_path);
    wrong_cfg.pin_source = wrong_source;

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct coffer_p11_session *cs = NULL;
        unsigned char iv[COFFER_GCM_IV_LEN] = {0}, tag[COFFER_GCM_TAG_LEN], b = 0;
        int code = 0;

        /* Exit codes say which check failed; the parent only sees the status. */
        if (coffer_p11_session_get(p, &cs) != COFFER_E_FORKED || cs != NULL) {
            code = 10;
        } else if (strstr(coffer_err_detail(), "open a new one after fork") == NULL) {
            code = 11;
        } else if (coffer_p11_gcm_encrypt(s, k, iv, NULL, 0, &b, 1, &b, tag) != COFFER_E_FORKED) {
            code = 12;
        }
        /* Frees memory only: the parent's sessions and login are not touched. */
        coffer_p11_close(&p);
        /* The parent's login is not inherited: the child must log in, and a wrong PIN fails. */
        if (code == 0) {
            struct coffer_p11 *wp = NULL;

            if (coffer_p11_open(&wrong_cfg, &wp) != COFFER_E_PIN || wp != NULL) {
                code = 13;
            }
            coffer_p11_close(&wp);
        }
        if (code == 0) {
            code = child_opens_its_own();
        }
        _exit(code);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* The parent's session, key and login survived the child. */
    gcm_round_trip(s, k, k, 500);
    coffer_p11_destroy(s, &k);
    coffer_p11_session_put(p, &s);
    check_ok(coffer_p11_session_get(p, &s), "session_get after fork");
    coffer_p11_session_put(p, &s);
    coffer_p11_close(&p);
}

#define N_THREADS 6
#define N_ROUNDS 25

struct worker {
    struct coffer_p11 *p;
    coffer_p11_obj key;
    unsigned id;
    int failures;
    char first_failure[256];
};

static void worker_fail(struct worker *w, const char *what, enum coffer_err r)
{
    if (w->failures++ == 0) {
        snprintf(w->first_failure, sizeof(w->first_failure), "%s: %s: %s", what, coffer_err_str(r),
                 coffer_err_detail());
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    for (unsigned round = 0; round < N_ROUNDS; round++) {
        unsigned char iv[COFFER_GCM_IV_LEN], tag[COFFER_GCM_TAG_LEN], pt[333], ct[333];
        struct coffer_p11_session *s = NULL;
        struct coffer_secret *out = NULL;
        enum coffer_err r;

        fill(pt, sizeof(pt), w->id * 1000 + round);
        fill(iv, sizeof(iv), w->id * 1000 + round);
        if ((r = coffer_p11_session_get(w->p, &s)) != COFFER_OK) {
            worker_fail(w, "session_get", r);
            continue;
        }
        r = coffer_p11_gcm_encrypt(s, w->key, iv, NULL, 0, pt, sizeof(pt), ct, tag);
        if (r != COFFER_OK) {
            worker_fail(w, "encrypt", r);
        } else if ((r = coffer_p11_gcm_decrypt(s, w->key, iv, NULL, 0, ct, sizeof(ct), tag,
                                               &out)) != COFFER_OK) {
            worker_fail(w, "decrypt", r);
        } else if (coffer_secret_len(out) != sizeof(pt) ||
                   !coffer_mem_equal(coffer_secret_view(out).data, pt, sizeof(pt))) {
            worker_fail(w, "round trip mismatch", COFFER_E_INTEGRITY);
        }
        coffer_secret_free(&out);
        coffer_p11_session_put(w->p, &s);
    }
    return NULL;
}

static void test_threads_share_small_pool(void **state)
{
    struct coffer_p11_config cfg = h.p11;
    struct worker workers[N_THREADS];
    pthread_t threads[N_THREADS];
    struct coffer_p11_session *s = NULL;
    struct coffer_p11 *p;
    coffer_p11_obj k;

    (void)state;
    cfg.pool_size = 2;
    p = open_ok(&cfg);
    check_ok(coffer_p11_session_get(p, &s), "session_get");
    k = gen_key(s, false, false, COFFER_P11_ENCRYPT | COFFER_P11_DECRYPT, NULL);
    coffer_p11_session_put(p, &s);

    for (unsigned i = 0; i < N_THREADS; i++) {
        workers[i] = (struct worker){.p = p, .key = k, .id = i};
        assert_int_equal(pthread_create(&threads[i], NULL, worker_main, &workers[i]), 0);
    }
    for (unsigned i = 0; i < N_THREADS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    }
    for (unsigned i = 0; i < N_THREADS; i++) {
        if (workers[i].failures != 0) {
            fail_msg("thread %u: %d failures, first: %s", i, workers[i].failures,
                     workers[i].first_failure);
        }
    }
    check_ok(coffer_p11_session_get(p, &s), "session_get");
    coffer_p11_destroy(s, &k);
    coffer_p11_session_put(p, &s);
    coffer_p11_close(&p);

    /* A pool larger than the limit is refused. */
    cfg.pool_size = 100000;
    assert_int_equal(coffer_p11_open(&cfg, &p), COFFER_E_CONFIG);
}

/* ---- Cache ------------------------------------------------------------------------ */

static void test_cache_put_get_drop(void **state)
{
    struct coffer_p11_config cfg = h.p11;
    struct coffer_p11_session *s1 = NULL, *s2 = NULL;
    struct coffer_p11 *p;
    coffer_p11_obj a1, a2, b1, got = 0, replaced;
    char long_name[97];

    (void)state;
    cfg.pool_size = 2;
    p = open_ok(&cfg);
    check_ok(coffer_p11_session_get(p, &s1), "session 1");
    check_ok(coffer_p11_session_get(p, &s2), "session 2");
    assert_true(s1 != s2);

    a1 = gen_key(s1, false, false, COFFER_P11_ENCRYPT | COFFER_P11_DECRYPT, NULL);
    a2 = gen_key(s2, false, false, COFFER_P11_ENCRYPT | COFFER_P11_DECRYPT, NULL);
    b1 = gen_key(s1, false, false, COFFER_P11_ENCRYPT | COFFER_P11_DECRYPT, NULL);
    check_ok(coffer_p11_cache_put(s1, "org:o1:v1", a1), "put a1");
    check_ok(coffer_p11_cache_put(s2, "org:o1:v1", a2), "put a2");
    check_ok(coffer_p11_cache_put(s1, "org:o2:v1", b1), "put b1");

    /* Per session: each sees its own entry. */
    check_ok(coffer_p11_cache_get(s1, "org:o1:v1", &got), "get s1");
    assert_true(got == a1);
    check_ok(coffer_p11_cache_get(s2, "org:o1:v1", &got), "get s2");
    assert_true(got == a2);
    assert_int_equal(coffer_p11_cache_get(s2, "org:o2:v1", &got), COFFER_E_NOT_FOUND);
    assert_true(got == 0);

    /* Putting the same object again is a no-op; one object under two names is refused. */
    check_ok(coffer_p11_cache_put(s1, "org:o1:v1", a1), "put a1 again");
    assert_alive(s1, a1);
    assert_int_equal(coffer_p11_cache_put(s1, "org:o1:alias", a1), COFFER_E_INVALID);

    /* Both sessions are leased: the drop reaches them at their next cache call. */
    coffer_p11_cache_drop(p, "org:o1:v1");
    assert_int_equal(coffer_p11_cache_get(s1, "org:o1:v1", &got), COFFER_E_NOT_FOUND);
    assert_destroyed(s1, a1);
    assert_int_equal(coffer_p11_cache_get(s2, "org:o1:v1", &got), COFFER_E_NOT_FOUND);
    assert_destroyed(s2, a2);
    /* Other names are untouched. */
    check_ok(coffer_p11_cache_get(s1, "org:o2:v1", &got), "get b1 after drop");
    assert_true(got == b1);

    /* A replaced entry's old object is destroyed. */
    replaced = gen_key(s1, false, false, COFFER_P11_ENCRYPT | COFFER_P11_DECRYPT, NULL);
    check_ok(coffer_p11_cache_put(s1, "org:o2:v1", replaced), "replace b1");
    assert_destroyed(s1, b1);
    check_ok(coffer_p11_cache_get(s1, "org:o2:v1", &got), "get replaced");
    assert_true(got == replaced);

    /* Idle sessions are purged at once by the drop. */
    coffer_p11_session_put(p, &s2);
    coffer_p11_session_put(p, &s1);
    coffer_p11_cache_drop(p, "org:o2:v1");
    check_ok(coffer_p11_session_get(p, &s1), "session again");
    assert_destroyed(s1, replaced);
    assert_int_equal(coffer_p11_cache_get(s1, "org:o2:v1", &got), COFFER_E_NOT_FOUND);

    /* Names are 1 to 95 bytes. */
    memset(long_name, 'n', 96);
    long_name[96] = '\0';
    assert_int_equal(coffer_p11_cache_put(s1, long_name, 12345), COFFER_E_INVALID);
    assert_int_equal(coffer_p11_cache_get(s1, long_name, &got), COFFER_E_INVALID);
    long_name[95] = '\0';
    assert_int_equal(coffer_p11_cache_get(s1, long_name, &got), COFFER_E_NOT_FOUND);
    assert_int_equal(coffer_p11_cache_put(s1, "", 12345), COFFER_E_INVALID);
    assert_int_equal(coffer_p11_cache_put(s1, "zero", 0), COFFER_E_INVALID);

    coffer_p11_session_put(p, &s1);
    coffer_p11_close(&p);
}

static void test_cache_eviction(void **state)
{
    enum { CAP = P11_CACHE_CAP };
    struct coffer_p11_config cfg = h.p11;
    struct coffer_p11_session *s = NULL;
    static coffer_p11_obj keys[CAP + 2];
    coffer_p11_obj got = 0, extra;
    struct coffer_p11 *p;
    char name[32];

    (void)state;
    cfg.pool_size = 1;
    p = open_ok(&cfg);
    check_ok(coffer_p11_session_get(p, &s), "session_get");
    for (unsigned i = 0; i < CAP; i++) {
        keys[i] = gen_key(s, false, false, COFFER_P11_ENCRYPT, NULL);
        snprintf(name, sizeof(name), "k%u", i);
        check_ok(coffer_p11_cache_put(s, name, keys[i]), "put");
    }
    /* Touch k0: k1 becomes the least recently used. */
    check_ok(coffer_p11_cache_get(s, "k0", &got), "get k0");
    assert_true(got == keys[0]);

    keys[CAP] = gen_key(s, false, false, COFFER_P11_ENCRYPT, NULL);
    snprintf(name, sizeof(name), "k%u", CAP);
    check_ok(coffer_p11_cache_put(s, name, keys[CAP]), "put one more than fits");
    assert_int_equal(coffer_p11_cache_get(s, "k1", &got), COFFER_E_NOT_FOUND);
    assert_destroyed(s, keys[1]);
    check_ok(coffer_p11_cache_get(s, "k0", &got), "k0 kept");
    assert_true(got == keys[0]);
    check_ok(coffer_p11_cache_get(s, name, &got), "the new one stored");
    assert_true(got == keys[CAP]);

    /* Next out is k2. */
    keys[CAP + 1] = gen_key(s, false, false, COFFER_P11_ENCRYPT, NULL);
    snprintf(name, sizeof(name), "k%u", CAP + 1);
    check_ok(coffer_p11_cache_put(s, name, keys[CAP + 1]), "put two more than fit");
    assert_int_equal(coffer_p11_cache_get(s, "k2", &got), COFFER_E_NOT_FOUND);
    assert_destroyed(s, keys[2]);
    assert_alive(s, keys[3]);

    /* The cache still holds CAP entries, all alive, each found by its name. */
    for (unsigned i = 0; i < CAP + 2; i++) {
        if (i == 1 || i == 2) {
            continue;
        }
        snprintf(name, sizeof(name), "k%u", i);
        check_ok(coffer_p11_cache_get(s, name, &got), "get after eviction");
        assert_true(got == keys[i]);
    }

    /* Returning the session keeps the entries; closing the context destroys them. */
    coffer_p11_session_put(p, &s);
    check_ok(coffer_p11_session_get(p, &s), "session again");
    snprintf(name, sizeof(name), "k%u", CAP + 1);
    check_ok(coffer_p11_cache_get(s, name, &got), "entry survives a lease");
    extra = gen_key(s, false, false, COFFER_P11_ENCRYPT, NULL);
    assert_alive(s, extra);
    coffer_p11_destroy(s, &extra);
    coffer_p11_session_put(p, &s);
    coffer_p11_close(&p);
}

/* ---- Provisioning ---------------------------------------------------------------- */

static void test_init_token_refuses_existing_label(void **state)
{
    struct coffer_secret *so = NULL, *user = NULL;
    char so_source[PATH_MAX + 8];

    (void)state;
    snprintf(so_source, sizeof(so_source), "file:%s", h.env.so_pin_file);
    check_ok(coffer_p11_read_pin(so_source, &so), "SO PIN");
    check_ok(coffer_p11_read_pin(h.p11.pin_source, &user), "user PIN");
    assert_int_equal(coffer_p11_init_token(h.env.module, h.token_label, so, user), COFFER_E_EXISTS);
    assert_detail_has(h.token_label);
    assert_int_equal(coffer_p11_init_token(h.env.module, "", so, user), COFFER_E_INVALID);
    assert_int_equal(
        coffer_p11_init_token(h.env.module, "a-label-that-is-longer-than-32-bytes", so, user),
        COFFER_E_INVALID);
    assert_int_equal(coffer_p11_init_token("/nonexistent/lib.so", "x", so, user), COFFER_E_CONFIG);
    coffer_secret_free(&so);
    coffer_secret_free(&user);
}

static void test_session_get_arguments(void **state)
{
    struct coffer_p11_session *s = NULL;
    struct coffer_p11 *p = NULL;

    (void)state;
    assert_int_equal(coffer_p11_session_get(NULL, &s), COFFER_E_INVALID);
    assert_null(s);
    assert_int_equal(coffer_p11_open(&h.p11, NULL), COFFER_E_INVALID);
    /* Returning NULL is harmless. */
    coffer_p11_session_put(p, &s);
    coffer_p11_session_put(p, NULL);
}

static int remove_tmpdir(void)
{
    static const char *const names[] = {"wrong.pin", "open.pin", "contents.pin",
                                        "restricted-softhsm2.conf"};
    char path[PATH_MAX];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
        (void)unlink(path);
    }
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_close),
        cmocka_unit_test(test_open_twice_in_one_process),
        cmocka_unit_test(test_module_by_registered_name),
        cmocka_unit_test(test_module_missing),
        cmocka_unit_test(test_uri_matches_nothing),
        cmocka_unit_test(test_uri_matches_several),
        cmocka_unit_test(test_uri_malformed),
        cmocka_unit_test(test_missing_mechanisms),
        cmocka_unit_test(test_wrong_pin),
        cmocka_unit_test(test_pin_file_mode_refused),
        cmocka_unit_test(test_pin_file_contents),
        cmocka_unit_test(test_pin_env),
        cmocka_unit_test(test_pin_source_refused),
        cmocka_unit_test(test_pin_prompt_without_terminal),
        cmocka_unit_test(test_pin_prompt_on_terminal),
        cmocka_unit_test(test_pin_prompt_interrupted),
        cmocka_unit_test(test_persistent_wrap_key),
        cmocka_unit_test(test_extractable_attrs),
        cmocka_unit_test(test_wrap_unwrap),
        cmocka_unit_test(test_gcm_tamper),
        cmocka_unit_test(test_gcm_sizes),
        cmocka_unit_test(test_fork),
        cmocka_unit_test(test_threads_share_small_pool),
        cmocka_unit_test(test_cache_put_get_drop),
        cmocka_unit_test(test_cache_eviction),
        cmocka_unit_test(test_init_token_refuses_existing_label),
        cmocka_unit_test(test_session_get_arguments),
    };
    int failed;

    harness_setup("p11_token", &h);
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "mkdtemp %s: %s\n", tmpdir, strerror(errno));
        return 1;
    }
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (remove_tmpdir() != 0) {
        fprintf(stderr, "removing %s: %s\n", tmpdir, strerror(errno));
    }
    harness_teardown(&h);
    return failed;
}
