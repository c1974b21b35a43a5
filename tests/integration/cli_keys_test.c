/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The coffer command as an operator runs it, against this test's token and
 * database: creating the first master key, an org and a project, reading the
 * key status, rotating, sweeping and retiring, and the refusals an operator
 * must be able to read (a missing variable, a bad version, retiring the
 * current key). Every output is checked never to contain the token PIN.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#include "coffer/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct harness h;
static char pin[128];

/* Runs the coffer binary with argv and the test's environment (without the keys in skip). */
static void run(const char *const *args, const char *skip, struct harness_run *res)
{
    const char *argv[16];
    char vars[7][PATH_MAX + 160];
    const char *envp[9];
    size_t n = 0;
    size_t e = 0;

    argv[n++] = COFFER_BIN;
    while (*args != NULL && n < 15) {
        argv[n++] = *args++;
    }
    argv[n] = NULL;
    snprintf(vars[0], sizeof(vars[0]), "COFFER_PKCS11_MODULE=%s", h.p11.module);
    snprintf(vars[1], sizeof(vars[1]), "COFFER_TOKEN_URI=%s", h.p11.token_uri);
    snprintf(vars[2], sizeof(vars[2]), "COFFER_PIN_SOURCE=%s", h.p11.pin_source);
    snprintf(vars[3], sizeof(vars[3]), "COFFER_DATABASE=%s", h.db_app);
    snprintf(vars[4], sizeof(vars[4]), "COFFER_DATABASE_OWNER=%s", h.db_owner);
    snprintf(vars[5], sizeof(vars[5]), "SOFTHSM2_CONF=%s", h.env.softhsm_conf);
    snprintf(vars[6], sizeof(vars[6]), "COFFER_LOG=warn");
    for (size_t i = 0; i < 7; i++) {
        if (skip == NULL || strncmp(vars[i], skip, strlen(skip)) != 0) {
            envp[e++] = vars[i];
        }
    }
    envp[e++] = "PATH=/usr/bin:/bin";
    envp[e] = NULL;
    harness_run(argv, envp, res);
    /* Nothing the command prints may contain the PIN. */
    assert_null(strstr(res->out, pin));
}

static void expect(const char *const *args, int status, const char *needle)
{
    struct harness_run r;

    run(args, NULL, &r);
    if (r.status != status || strstr(r.out, needle) == NULL) {
        fprintf(stderr, "coffer %s: status %d (want %d), output:\n%s\n(want '%s')\n", args[0],
                r.status, status, r.out, needle);
    }
    assert_int_equal(r.status, status);
    assert_non_null(strstr(r.out, needle));
}

static void test_first_master_key_and_org(void **state)
{
    const char *mk[] = {"keys", "rotate-mk", NULL};
    const char *org[] = {"org", "create", "acme", NULL};
    const char *dup[] = {"org", "create", "acme", NULL};
    const char *proj[] = {"org", "add-project", "acme", "web", NULL};
    const char *bad[] = {"org", "create", "Not A Name", NULL};

    struct harness_run r;

    (void)state;
    run(mk, NULL, &r);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "master key v1 is current"));
    assert_non_null(strstr(r.out, "CKA_SENSITIVE=TRUE CKA_EXTRACTABLE=FALSE"));
    expect(org, 0, "org acme created with org key v1");
    expect(dup, 1, "already_exists");
    expect(proj, 0, "project acme/web created");
    expect(bad, 1, "invalid_input");
}

static void test_status_rotate_sweep_retire(void **state)
{
    const char *status[] = {"keys", "status", "acme", NULL};
    const char *rotate[] = {"keys", "rotate-org", "acme", NULL};
    const char *sweep[] = {"keys", "sweep", "--batch", "10", NULL};
    const char *retire1[] = {"keys", "retire-org", "acme", "1", NULL};
    const char *retire3[] = {"keys", "retire-org", "acme", "3", NULL};
    const char *retire_mk_current[] = {"keys", "retire-mk", "2", NULL};
    const char *retire_mk1[] = {"keys", "retire-mk", "1", NULL};
    const char *mk[] = {"keys", "rotate-mk", NULL};
    struct harness_run r;

    (void)state;
    run(status, NULL, &r);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "coffer-mk-v1"));
    assert_non_null(strstr(r.out, "current"));
    assert_non_null(strstr(r.out, "not under their org's current key: 0"));
    expect(rotate, 0, "org key v2 is current");
    expect(rotate, 0, "org key v3 is current");
    expect(sweep, 0, "remaining 0");
    expect(retire1, 0, "org key v1 retired");
    expect(retire1, 1, "invalid_state");
    expect(retire3, 1, "invalid_state"); /* the current version */
    /* A second master key: v1 still wraps org keys until a sweep moves them. */
    expect(mk, 0, "master key v2 is current");
    expect(retire_mk_current, 1, "invalid_state");
    expect(retire_mk1, 1, "still_referenced");
    expect(sweep, 0, "remaining 0");
    expect(retire_mk1, 0, "master key v1 retired");
}

static void test_operator_errors(void **state)
{
    const char *status[] = {"keys", "status", NULL};
    const char *badver[] = {"keys", "retire-org", "acme", "zero", NULL};
    const char *badorg[] = {"keys", "rotate-org", "nosuch", NULL};
    const char *unknown[] = {"frobnicate", NULL};
    const char *badbatch[] = {"keys", "sweep", "--batch", "0", NULL};
    struct harness_run r;

    (void)state;
    run(status, "COFFER_TOKEN_URI=", &r);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "COFFER_TOKEN_URI is not set"));
    expect(badver, 1, "'zero' is not a version");
    expect(badorg, 1, "not_found");
    expect(unknown, 2, "unknown command 'frobnicate'");
    expect(badbatch, 2, "--batch wants a number");
}

static void test_migrate_is_idempotent(void **state)
{
    const char *migrate[] = {"db", "migrate", NULL};

    (void)state;
    expect(migrate, 0, "applied 0 migration(s)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_master_key_and_org),
        cmocka_unit_test(test_status_rotate_sweep_retire),
        cmocka_unit_test(test_operator_errors),
        cmocka_unit_test(test_migrate_is_idempotent),
    };
    FILE *f;
    size_t len;

    harness_setup("cli_keys", &h);
    f = fopen(h.p11.pin_source + strlen("file:"), "r");
    if (f == NULL || fgets(pin, sizeof(pin), f) == NULL) {
        fprintf(stderr, "cli_keys_test: cannot read the token PIN file\n");
        return 1;
    }
    fclose(f);
    len = strlen(pin);
    while (len > 0 && (pin[len - 1] == '\n' || pin[len - 1] == '\r')) {
        pin[--len] = '\0';
    }
    if (len < 8) {
        fprintf(stderr, "cli_keys_test: the PIN is too short to search for\n");
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
