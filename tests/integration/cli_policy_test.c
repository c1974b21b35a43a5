/* SPDX-License-Identifier: Apache-2.0 */
/*
 * coffer policy validate|apply|show and coffer project phase as an admin
 * runs them: the exit statuses 0, 1 and 2, problems printed as
 * file:line:column, the change list of apply, "unchanged" on a second
 * apply, show's output applying as unchanged (round trip), nothing written
 * by a refused apply, and the phase command's report of what expired.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct harness h;
static char dir[] = "/tmp/coffer-cli-policy.XXXXXX";

/* Runs the coffer binary with args and this test's token and database. */
static void run(const char *const *args, struct harness_run *res)
{
    harness_run_local(&h, COFFER_BIN, args, res);
}

static void expect(const char *const *args, int status, const char *needle)
{
    struct harness_run r;

    run(args, &r);
    if (r.status != status || strstr(r.out, needle) == NULL) {
        fprintf(stderr, "coffer %s %s: status %d (want %d), output:\n%s\n(want '%s')\n", args[0],
                args[1] != NULL ? args[1] : "", r.status, status, r.out, needle);
    }
    assert_int_equal(r.status, status);
    assert_non_null(strstr(r.out, needle));
}

/* Writes text to dir/name and returns the path in a static buffer slot. */
static const char *file(const char *name, const char *text)
{
    static char paths[8][PATH_MAX];
    static int next;
    char *p = paths[next++ % 8];
    FILE *f;

    snprintf(p, PATH_MAX, "%s/%s", dir, name);
    assert_non_null(f = fopen(p, "w"));
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return p;
}

static const char *acme_path(void)
{
    static char p[PATH_MAX];

    snprintf(p, sizeof(p), "%s/policy/acme.yaml", COFFER_SOURCE_DIR);
    return p;
}

static void test_validate(void **state)
{
    const char *bad = file("bad.yaml", "version: 1\norg: acme\nagent_types:\n  Deployer:\n");
    const char *syntax = file("syntax.yaml", "version: 1\norg: [acme\n");
    const char *ok[] = {"policy", "validate", acme_path(), NULL};
    const char *bad_args[] = {"policy", "validate", bad, NULL};
    const char *both[] = {"policy", "validate", acme_path(), bad, syntax, NULL};
    const char *missing[] = {"policy", "validate", "/nonexistent/policy.yaml", NULL};
    const char *none[] = {"policy", "validate", NULL};
    struct harness_run r;

    (void)state;
    expect(ok, 0, "acme: valid (3 agent types, 1 project, 3 credential rules, 4 grants)");
    expect(bad_args, 1, "bad.yaml:4:3: ");
    run(both, &r);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "bad.yaml:4:3: "));
    assert_non_null(strstr(r.out, "syntax.yaml:"));
    assert_non_null(strstr(r.out, "nothing was written"));
    expect(missing, 2, "/nonexistent/policy.yaml");
    expect(none, 2, "usage: coffer policy");
}

static void test_apply_show_round_trip(void **state)
{
    const char *mk[] = {"keys", "rotate-mk", NULL};
    const char *org[] = {"org", "create", "acme", NULL};
    const char *apply[] = {"policy", "apply", acme_path(), NULL};
    const char *show[] = {"policy", "show", "acme", NULL};
    const char *show_none[] = {"policy", "show", "nosuch", NULL};
    const char *unknown_org[] = {"policy", "apply",
                                 file("nosuch.yaml", "version: 1\norg: nosuch\n"), NULL};
    struct harness_run r;
    const char *shown;

    (void)state;
    expect(mk, 0, "master key v1 is current");
    expect(org, 0, "org acme created");
    expect(unknown_org, 1, "coffer org create nosuch");
    expect(apply, 0, "acme: policy version 1 (");
    expect(apply, 0, "acme: unchanged (policy version 1)");

    run(show, &r);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "org: acme"));
    assert_non_null(strstr(r.out, "stripe-live"));
    shown = file("shown.yaml", r.out);
    {
        const char *again[] = {"policy", "apply", shown, NULL};

        expect(again, 0, "acme: unchanged (policy version 1)");
    }
    expect(show_none, 1, "nosuch");
}

static void test_apply_changes_and_refusals(void **state)
{
    static const char narrowed[] =
        "version: 1\norg: acme\n"
        "agent_types: {builder: , deployer: , analyst: }\n"
        "projects:\n"
        "  payments:\n"
        "    phases: [design, build, staging, production]\n"
        "    members: [builder, deployer, analyst]\n"
        "    credentials:\n"
        "      ci-registry:\n"
        "        grants: [{agent_type: builder, phases: [build, staging]}]\n"
        "        expire_on_phase_end: staging\n";
    const char *apply[] = {"policy", "apply", file("narrowed.yaml", narrowed), NULL};
    const char *bad_ref[] = {"policy", "apply",
                             file("badref.yaml", "version: 1\norg: acme\nprojects:\n  payments:\n"
                                                 "    phases: [a]\n    members: [ghost]\n"),
                             NULL};
    struct harness_run r;

    (void)state;
    run(apply, &r);
    if (r.status != 0) {
        fprintf(stderr, "%s\n", r.out);
    }
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "acme: policy version 2 ("));
    assert_non_null(strstr(r.out, "- credential rule payments/stripe-live"));
    assert_non_null(strstr(r.out, "- credential rule payments/grafana"));
    /* A problem in the files: exit 1, position given, nothing written. */
    expect(bad_ref, 1, "badref.yaml:6:");
    expect(apply, 0, "acme: unchanged (policy version 2)");
}

/* Every class of malformed file is refused with its position, and nothing is written. */
static void test_malformed_files_write_nothing(void **state)
{
    static const struct {
        const char *text;
        const char *where; /* "line:column: " of the first problem */
        const char *what;
    } cases[] = {
        {"version: 1\norg: [acme\n", "3:1: ", "YAML syntax error"},
        {"version: 1\norg: acme\nagent_types: &a {x: }\n", "3:14: ", "anchor"},
        {"version: 1\norg: acme\nagent_types: *a\n", "3:14: ", "alias"},
        {"version: 1\norg: !!str acme\n", "2:6: ", "tag"},
        {"version: 1\norg: acme\nowner: me\n", "3:1: ", "unknown key 'owner'"},
        {"version: 1\norg: acme\norg: acme\n", "3:1: ", "duplicate key 'org'"},
        {"version: 1\norg: acme\nagent_types: [a, b]\n", "3:14: ", "mapping"},
        {"version: 2\norg: acme\n", "1:10: ", "version"},
        {"version: 1\norg: Acme\n", "2:6: ", "not valid"},
        {"version: 1\norg: acme\ntiers:\n  high: {default_ttl: 1d, max_ttl: 8d}\n",
         "4:", "hard maximum"},
        {"version: 1\norg: acme\ntiers:\n  low: {default_ttl: 30, max_ttl: never}\n", "4:", "unit"},
        {"version: 1\norg: acme\nagent_types: {d: }\nprojects:\n  p:\n    phases: [a]\n"
         "    members: [d]\n    credentials:\n      c:\n        grants:\n"
         "          - {agent_type: d, phases: [b]}\n",
         "11:", "not a phase"},
        {"version: 1\norg: acme\nagent_types: {d: }\nprojects:\n  p:\n    phases: [a]\n"
         "    credentials:\n      c:\n        grants:\n          - {agent_type: d}\n",
         "10:", "not a member"},
    };
    const char *show[] = {"policy", "show", "acme", NULL};
    struct harness_run before;
    struct harness_run after;

    (void)state;
    run(show, &before);
    assert_int_equal(before.status, 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char name[32];
        char want[64];
        const char *args[] = {"policy", "apply", NULL, NULL};

        snprintf(name, sizeof(name), "bad-%zu.yaml", i);
        args[2] = file(name, cases[i].text);
        snprintf(want, sizeof(want), "%s:%s", name, cases[i].where);
        expect(args, 1, want);
        expect(args, 1, cases[i].what);
    }
    run(show, &after);
    assert_int_equal(after.status, 0);
    assert_string_equal(before.out, after.out);
}

static void test_project_phase(void **state)
{
    const char *to_build[] = {"project", "phase", "acme/payments", "build", NULL};
    const char *to_staging[] = {"project", "phase", "acme/payments", "staging", NULL};
    const char *to_prod[] = {"project", "phase", "acme/payments", "production", NULL};
    const char *unknown[] = {"project", "phase", "acme/payments", "qa", NULL};
    const char *no_project[] = {"project", "phase", "acme/nosuch", "build", NULL};
    const char *malformed[] = {"project", "phase", "acme", "build", NULL};

    (void)state;
    expect(to_build, 0, "acme/payments: design -> build");
    expect(to_build, 0, "acme/payments: already in phase build");
    expect(to_staging, 0, "acme/payments: build -> staging");
    expect(to_prod, 0, "acme/payments: staging -> production");
    expect(unknown, 1, "has no phase 'qa' (phases: design,build,staging,production)");
    expect(no_project, 1, "project acme/nosuch not found");
    expect(malformed, 2, "usage: coffer project phase");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_apply_show_round_trip),
        cmocka_unit_test(test_apply_changes_and_refusals),
        cmocka_unit_test(test_malformed_files_write_nothing),
        cmocka_unit_test(test_project_phase),
    };
    char cmd[PATH_MAX + 16];
    int rc;

    harness_setup("cli_policy", &h);
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "cli_policy_test: cannot create a temporary directory\n");
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cli_policy_test: could not remove %s\n", dir);
    }
    harness_teardown(&h);
    return rc;
}
