/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Key ceremonies as security officers run them: the real coffer binary
 * against this test's token and database, passphrases on standard input.
 * The first ceremony with three officers and a quorum of two; the quorum's
 * refusals (too few approvals, a wrong passphrase, approving twice, an
 * approval for another description, approvals of one plan offered for
 * another, an expired plan); every ceremony end to end (destroy-org among
 * them, its transcript checked with `ceremony show`); every transcript
 * verifying, and one edited in the database failing to; the keys made
 * naming their ceremony in audit.key_inventory. No output may contain a
 * passphrase or the token PIN.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct harness h;

#define OUT_MAX (256 * 1024)

static const char *const pass_alice = "alice correct horse 1";
static const char *const pass_bob = "bob battery staple 22";
static const char *const pass_carol = "carol long passphrase 3";
static const char *const pass_dave = "dave enrols later 4444";

struct run_out {
    int status;
    char out[OUT_MAX];
};

static struct run_out res;
static char ceremonies[32][40];
static size_t n_ceremonies;

/* Runs coffer with args, feeding input on standard input; stdout and stderr into res. */
static void run_in(const char *input, const char *const *args)
{
    const char *argv[16];
    char vars[7][PATH_MAX + 160];
    char *envp[9];
    int in[2];
    int out[2];
    size_t n = 0;
    size_t got = 0;
    pid_t pid;
    int st = 0;

    argv[n++] = COFFER_BIN;
    while (*args != NULL && n < 15) {
        argv[n++] = *args++;
    }
    argv[n] = NULL;
    snprintf(vars[0], sizeof(vars[0]), "COFFER_PKCS11_MODULE=%s", h.p11.module);
    snprintf(vars[1], sizeof(vars[1]), "COFFER_TOKEN_URI=%s", h.p11.token_uri);
    snprintf(vars[2], sizeof(vars[2]), "COFFER_PIN_SOURCE=%s", h.p11.pin_source);
    snprintf(vars[3], sizeof(vars[3]), "COFFER_DATABASE=%s", h.db_app);
    snprintf(vars[4], sizeof(vars[4]), "SOFTHSM2_CONF=%s", h.env.softhsm_conf);
    snprintf(vars[5], sizeof(vars[5]), "COFFER_LOG=warn");
    snprintf(vars[6], sizeof(vars[6]), "USER=test-admin");
    for (size_t i = 0; i < 7; i++) {
        envp[i] = vars[i];
    }
    envp[7] = (char *)"PATH=/usr/bin:/bin";
    envp[8] = NULL;
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(out[1], 2);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execve(argv[0], (char *const *)argv, envp);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    if (input != NULL) {
        size_t len = strlen(input);

        assert_int_equal(write(in[1], input, len), (ssize_t)len);
    }
    close(in[1]);
    for (;;) {
        ssize_t r = read(out[0], res.out + got, sizeof(res.out) - 1 - got);

        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        got += (size_t)r;
        assert_true(got < sizeof(res.out) - 1);
    }
    res.out[got] = '\0';
    close(out[0]);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    res.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    /* No passphrase ever appears in what the command prints. */
    assert_null(strstr(res.out, pass_alice));
    assert_null(strstr(res.out, pass_bob));
    assert_null(strstr(res.out, pass_carol));
    assert_null(strstr(res.out, pass_dave));
}

static void expect_in(const char *input, const char *const *args, int status, const char *needle)
{
    run_in(input, args);
    if (res.status != status || strstr(res.out, needle) == NULL) {
        fprintf(stderr, "coffer %s %s: status %d (want %d), output:\n%s\n(want '%s')\n", args[0],
                args[1] != NULL ? args[1] : "", res.status, status, res.out, needle);
    }
    assert_int_equal(res.status, status);
    assert_non_null(strstr(res.out, needle));
}

/* Copies the 36-character id that follows the last occurrence of key in the output. */
static void id_after(const char *key, char out[40])
{
    const char *p = NULL;
    const char *q = res.out;

    while ((q = strstr(q, key)) != NULL) {
        p = q;
        q++;
    }
    assert_non_null(p);
    p += strlen(key);
    assert_true(strlen(p) >= 36);
    memcpy(out, p, 36);
    out[36] = '\0';
}

/* Remembers the ceremony recorded by the last run. */
static void remember_ceremony(void)
{
    const char *p = strstr(res.out, "\nceremony ");

    assert_non_null(p);
    assert_true(n_ceremonies < 32);
    id_after("\nceremony ", ceremonies[n_ceremonies]);
    n_ceremonies++;
}

struct plan {
    char id[40];
    char sha[72];
};

static void prepare(const char *const *args, struct plan *pl)
{
    const char *p;

    expect_in(NULL, args, 0, "COFFER KEY CEREMONY PLAN v1");
    id_after("\nplan: ", pl->id);
    p = strstr(res.out, "\nsha256: ");
    assert_non_null(p);
    memcpy(pl->sha, p + 9, 64);
    pl->sha[64] = '\0';
}

static void approve_as(const struct plan *pl, const char *sha, const char *officer,
                       const char *pass, int status, const char *needle)
{
    const char *args[] = {"ceremony", "approve",  pl->id, "--officer",
                          officer,    "--sha256", sha,    NULL};
    char line[128];

    snprintf(line, sizeof(line), "%s\n", pass);
    expect_in(line, args, status, needle);
}

static void approve2(const struct plan *pl, const char *o1, const char *p1, const char *o2,
                     const char *p2)
{
    approve_as(pl, pl->sha, o1, p1, 0, "approval recorded");
    approve_as(pl, pl->sha, o2, p2, 0, "approval recorded");
}

static void run_plan(const struct plan *pl, const char *input, int status, const char *needle)
{
    const char *args[] = {"ceremony", "run", pl->id, NULL};

    expect_in(input, args, status, needle);
    if (status == 0) {
        remember_ceremony();
    }
}

/* One value of a query as the cluster superuser on the test's database. */
static void super_query(const char *sql, char *out, size_t cap)
{
    char ci[PATH_MAX + 256];
    PGconn *c;
    PGresult *r;

    snprintf(ci, sizeof(ci), "%s dbname=%s", h.env.db_super, h.dbname);
    c = PQconnectdb(ci);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "%s: %s\n", sql, PQerrorMessage(c));
    }
    assert_true(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK);
    out[0] = '\0';
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && out != NULL) {
        snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    PQfinish(c);
}

static void test_init(void **state)
{
    const char *init[] = {"ceremony", "init", "--quorum", "2", "--officer",
                          "alice",    "bob",  "carol",    NULL};
    const char *bad_quorum[] = {"ceremony", "init", "--quorum", "3", "--officer", "alice", NULL};
    const char *list[] = {"ceremony", "officer", "list", NULL};
    const char *org1[] = {"org", "create", "acme", NULL};
    const char *org2[] = {"org", "create", "other", NULL};
    const char *prep_before[] = {"ceremony", "prepare", "rotate-mk", NULL};
    char input[512];

    (void)state;
    /* Nothing can be prepared before the first ceremony sets a quorum. */
    expect_in(NULL, prep_before, 1, "no quorum is set");
    expect_in(NULL, bad_quorum, 2, "a quorum of 3 needs at least 3 officers");
    /* Mistyped and too short passphrases enrol nobody. */
    snprintf(input, sizeof(input), "%s\n%s\n", pass_alice, pass_bob);
    expect_in(input, init, 1, "the two passphrases differ");
    expect_in("short\nshort\n", init, 1, "at least 12 characters");
    expect_in(NULL, list, 0, "no quorum is set");
    snprintf(input, sizeof(input), "%s\n%s\n%s\n%s\n%s\n%s\n", pass_alice, pass_alice, pass_bob,
             pass_bob, pass_carol, pass_carol);
    expect_in(input, init, 0, "outcome: completed");
    assert_non_null(strstr(res.out, "created master key v1"));
    assert_non_null(strstr(res.out, "created audit signing key v1"));
    assert_non_null(strstr(res.out, "created the token MAC key"));
    assert_non_null(strstr(res.out, "CKA_SENSITIVE=TRUE CKA_ALWAYS_SENSITIVE=TRUE "
                                    "CKA_EXTRACTABLE=FALSE CKA_NEVER_EXTRACTABLE=TRUE"));
    assert_non_null(strstr(res.out, "quorum set: 2 of 3"));
    remember_ceremony();
    /* The first ceremony happens once. */
    expect_in(input, init, 1, "officers exist already");
    expect_in(NULL, list, 0, "quorum: 2 of 3 serving officers");
    assert_non_null(strstr(res.out, "carol"));
    expect_in(NULL, org1, 0, "org acme created");
    expect_in(NULL, org2, 0, "org other created");
}

static void test_quorum(void **state)
{
    const char *prep[] = {"ceremony", "prepare", "rotate-mk", NULL};
    const char *prep_q[] = {"ceremony", "prepare", "set-quorum", "3", "--expires-in", "5s", NULL};
    struct plan a;
    struct plan b;
    struct plan e;
    char v[64];

    (void)state;
    prepare(prep, &a);
    assert_non_null(strstr(res.out, "master key v1: label coffer-mk-v1"));
    prepare(prep, &b);
    assert_string_not_equal(a.sha, b.sha);
    /* M-1 approvals are refused. */
    approve_as(&a, a.sha, "alice", pass_alice, 0, "approval recorded");
    run_plan(&a, NULL, 1, "1 valid approval(s) of 1 recorded; the quorum is 2");
    /* One officer approving twice. */
    approve_as(&a, a.sha, "alice", pass_alice, 1, "has approved this plan already");
    /* A wrong passphrase records nothing. */
    approve_as(&a, a.sha, "bob", pass_carol, 1, "wrong passphrase");
    /* An approval for another description. */
    approve_as(&a, b.sha, "bob", pass_bob, 1, "not this plan's description");
    /* An unknown officer. */
    approve_as(&a, a.sha, "mallory", pass_bob, 1, "no officer is named mallory");
    /* Approvals of plan B do not count for plan A. */
    approve2(&b, "bob", pass_bob, "carol", pass_carol);
    run_plan(&a, NULL, 1, "1 valid approval(s) of 1 recorded");
    /* While another process runs plan B (it holds the plan's run lock), B cannot run again. */
    {
        char ci[PATH_MAX + 256];
        char sql[256];
        PGconn *c;
        PGresult *r;

        snprintf(ci, sizeof(ci), "%s dbname=%s", h.env.db_super, h.dbname);
        c = PQconnectdb(ci);
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        snprintf(sql, sizeof(sql),
                 "SELECT pg_advisory_lock(7165064482445047157::bigint # "
                 "hashtextextended('%s', 0))",
                 b.id);
        r = PQexec(c, sql);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        PQclear(r);
        run_plan(&b, NULL, 1, "another run of this plan is in progress");
        PQfinish(c);
        super_query("SELECT count(*) FROM coffer.master_keys", v, sizeof(v));
        assert_string_equal(v, "1");
    }
    approve_as(&a, a.sha, "bob", pass_bob, 0, "approval recorded");
    run_plan(&a, NULL, 0, "outcome: completed");
    assert_non_null(strstr(res.out, "created master key v2"));
    assert_non_null(strstr(res.out, "CKA_EXTRACTABLE=FALSE CKA_NEVER_EXTRACTABLE=TRUE"));
    assert_non_null(strstr(res.out, "alice at "));
    assert_non_null(strstr(res.out, "bob at "));
    /* A plan runs once. */
    run_plan(&a, NULL, 1, "completed already");
    approve_as(&a, a.sha, "carol", pass_carol, 1, "the plan is completed");
    /* An expired plan: neither approved nor run after its expiry. */
    prepare(prep_q, &e);
    approve2(&e, "alice", pass_alice, "bob", pass_bob);
    sleep(6);
    approve_as(&e, e.sha, "carol", pass_carol, 1, "expired");
    run_plan(&e, NULL, 1, "expired");
    super_query("SELECT m FROM coffer.quorum", v, sizeof(v));
    assert_string_equal(v, "2");
    /* The new master key names its ceremony. */
    super_query("SELECT ceremony_kind FROM audit.key_inventory WHERE kind = 'master' AND "
                "version = 2",
                v, sizeof(v));
    assert_string_equal(v, "rotate-mk");
    super_query("SELECT ceremony_kind FROM audit.key_inventory WHERE kind = 'audit-signing' AND "
                "version = 1",
                v, sizeof(v));
    assert_string_equal(v, "init");
}

static void test_key_ceremonies(void **state)
{
    const char *sweep[] = {"keys", "sweep", NULL};
    const char *rot_org[] = {"ceremony", "rotate-org-key", "acme", NULL};
    const char *prep_retire[] = {"ceremony", "prepare", "retire-mk", "1", NULL};
    const char *prep_destroy_early[] = {"ceremony", "prepare", "destroy-mk", "2", NULL};
    const char *prep_destroy[] = {"ceremony", "prepare", "destroy-mk", "1", NULL};
    const char *prep_retire_org[] = {"ceremony", "prepare", "retire-org", "acme", "1", NULL};
    const char *prep_shred[] = {"ceremony", "prepare", "shred-org", "other", NULL};
    const char *prep_dorg_early[] = {"ceremony", "prepare", "destroy-org", "acme", "2", NULL};
    const char *prep_dorg[] = {"ceremony", "prepare", "destroy-org", "acme", "1", NULL};
    struct plan p;
    char v[64];
    char kcv[16];
    char want[128];

    (void)state;
    /* An admin's org key rotation needs no quorum and still leaves a transcript. */
    expect_in(NULL, rot_org, 0, "created org acme key v2");
    assert_non_null(strstr(res.out, "quorum: none needed"));
    remember_ceremony();
    super_query("SELECT ceremony_kind FROM audit.key_inventory WHERE kind = 'org' AND "
                "org = 'acme' AND version = 2",
                v, sizeof(v));
    assert_string_equal(v, "rotate-org-key");
    /* Retiring a version that still wraps org keys aborts, with the count, and is recorded. */
    prepare(prep_retire, &p);
    approve2(&p, "alice", pass_alice, "carol", pass_carol);
    run_plan(&p, NULL, 1, "still wraps");
    assert_non_null(strstr(res.out, "outcome: ABORTED"));
    remember_ceremony();
    expect_in(NULL, sweep, 0, "remaining 0");
    prepare(prep_retire, &p);
    approve2(&p, "alice", pass_alice, "carol", pass_carol);
    run_plan(&p, NULL, 0, "retired master key v1");
    /* Only a retired version is destroyed. */
    expect_in(NULL, prep_destroy_early, 1, "only a retired version is destroyed");
    prepare(prep_destroy, &p);
    approve2(&p, "bob", pass_bob, "carol", pass_carol);
    run_plan(&p, NULL, 0, "destroyed master key v1");
    assert_non_null(strstr(res.out, "the token holds no object labelled coffer-mk-v1"));
    super_query("SELECT state FROM coffer.master_keys WHERE version = 1", v, sizeof(v));
    assert_string_equal(v, "destroyed");
    /* Retiring an org key version once nothing is under it. */
    prepare(prep_retire_org, &p);
    approve2(&p, "alice", pass_alice, "bob", pass_bob);
    run_plan(&p, NULL, 0, "retired org acme key v1");
    super_query("SELECT state FROM coffer.org_keys k JOIN coffer.orgs o ON o.id = k.org_id "
                "WHERE o.name = 'acme' AND k.version = 1",
                v, sizeof(v));
    assert_string_equal(v, "retired");
    /* Destroying that retired org key version; the current one is refused at prepare. */
    expect_in(NULL, prep_dorg_early, 1, "only a retired version is destroyed");
    super_query("SELECT encode(k.kcv, 'hex') FROM coffer.org_keys k JOIN coffer.orgs o ON "
                "o.id = k.org_id WHERE o.name = 'acme' AND k.version = 1",
                kcv, sizeof(kcv));
    assert_int_equal(strlen(kcv), 6);
    prepare(prep_dorg, &p);
    snprintf(want, sizeof(want), "key v1: KCV %s, state retired, under master key v2, wraps 0",
             kcv);
    assert_non_null(strstr(res.out, want));
    assert_non_null(strstr(res.out, "will: destroy org acme key v1"));
    approve2(&p, "bob", pass_bob, "carol", pass_carol);
    snprintf(want, sizeof(want), "destroyed org acme key v1  KCV %s", kcv);
    run_plan(&p, NULL, 0, want);
    assert_non_null(strstr(res.out, "kind: destroy-org"));
    assert_non_null(strstr(res.out, "reads back overwritten in the database"));
    assert_non_null(strstr(res.out, "outcome: completed"));
    super_query("SELECT state FROM coffer.org_keys k JOIN coffer.orgs o ON o.id = k.org_id "
                "WHERE o.name = 'acme' AND k.version = 1",
                v, sizeof(v));
    assert_string_equal(v, "destroyed");
    {
        const char *show[] = {"ceremony", "show", ceremonies[n_ceremonies - 1], NULL};

        expect_in(NULL, show, 0, "signature: valid");
        assert_non_null(strstr(res.out, "kind: destroy-org"));
        assert_non_null(strstr(res.out, want));
    }
    /* Shredding an org: a wrong typed name refuses (the plan stays open); the right one runs. */
    prepare(prep_shred, &p);
    approve2(&p, "alice", pass_alice, "bob", pass_bob);
    run_plan(&p, "acme\n", 1, "the name typed is not other");
    run_plan(&p, "other\n", 0, "shredded org other");
    assert_non_null(strstr(res.out, "outcome: completed"));
    super_query("SELECT count(*) FROM coffer.org_keys k JOIN coffer.orgs o ON o.id = k.org_id "
                "WHERE o.name = 'other' AND k.state <> 'destroyed'",
                v, sizeof(v));
    assert_string_equal(v, "0");
    super_query("SELECT ceremony_kind FROM audit.key_inventory WHERE kind = 'master' AND "
                "state = 'current'",
                v, sizeof(v));
    assert_string_equal(v, "shred-org");
}

static void test_officers(void **state)
{
    const char *prep_add[] = {"ceremony", "prepare", "officer-add", "dave", NULL};
    const char *prep_add_again[] = {"ceremony", "prepare", "officer-add", "carol", NULL};
    const char *prep_q3[] = {"ceremony", "prepare", "set-quorum", "3", NULL};
    const char *prep_q9[] = {"ceremony", "prepare", "set-quorum", "9", NULL};
    const char *prep_rm[] = {"ceremony", "prepare", "officer-remove", "carol", NULL};
    const char *prep_rm_alice[] = {"ceremony", "prepare", "officer-remove", "alice", NULL};
    const char *list[] = {"ceremony", "officer", "list", NULL};
    struct plan p;
    char input[256];
    char v[64];

    (void)state;
    expect_in(NULL, prep_add_again, 1, "exists or existed");
    prepare(prep_add, &p);
    approve2(&p, "alice", pass_alice, "bob", pass_bob);
    snprintf(input, sizeof(input), "%s\n%s\n", pass_dave, pass_dave);
    run_plan(&p, input, 0, "enrolled officer dave (4 officers now)");
    expect_in(NULL, list, 0, "quorum: 2 of 4 serving officers");
    expect_in(NULL, prep_q9, 1, "the quorum must be from 1 to the 4 officers");
    prepare(prep_q3, &p);
    approve2(&p, "dave", pass_dave, "carol", pass_carol);
    run_plan(&p, NULL, 0, "quorum set to 3 of 4 officers");
    prepare(prep_rm, &p);
    approve2(&p, "alice", pass_alice, "dave", pass_dave);
    run_plan(&p, NULL, 1, "2 valid approval(s) of 2 recorded; the quorum is 3");
    approve_as(&p, p.sha, "bob", pass_bob, 0, "approval recorded");
    run_plan(&p, NULL, 0, "removed officer carol (3 officers now)");
    expect_in(NULL, list, 0, "quorum: 3 of 3 serving officers");
    /* A removed officer approves nothing; the quorum cannot exceed the officers left. */
    prepare(prep_q3, &p);
    approve_as(&p, p.sha, "carol", pass_carol, 1, "has been removed");
    expect_in(NULL, prep_rm_alice, 1, "fewer than the quorum 3");
    super_query("SELECT removed_in IS NOT NULL FROM audit.officers WHERE name = 'carol'", v,
                sizeof(v));
    assert_string_equal(v, "t");
}

static void test_transcripts(void **state)
{
    const char *wrong_pin[] = {"ceremony",
                               "show",
                               ceremonies[0],
                               "--fingerprint",
                               "00000000000000000000000000000000"
                               "00000000000000000000000000000000",
                               NULL};
    char sql[512];
    char fp[80];

    (void)state;
    assert_true(n_ceremonies >= 10);
    super_query("SELECT fingerprint_hex FROM audit.signing_keys WHERE version = 1", fp, sizeof(fp));
    for (size_t i = 0; i < n_ceremonies; i++) {
        const char *show[] = {"ceremony", "show", ceremonies[i], "--fingerprint", fp, NULL};

        expect_in(NULL, show, 0, "signature: valid, audit signing key v1");
        assert_non_null(strstr(res.out, "COFFER KEY CEREMONY TRANSCRIPT v1"));
    }
    expect_in(NULL, wrong_pin, 1, "not the pinned");
    /* The table refuses edits, even from the owner's triggers' point of view. */
    snprintf(sql, sizeof(sql),
             "DO $$ BEGIN UPDATE coffer.ceremonies SET transcript = transcript || ' ' WHERE "
             "id = '%s'; RAISE EXCEPTION 'edited'; EXCEPTION WHEN insufficient_privilege THEN "
             "NULL; END $$",
             ceremonies[1]);
    super_query(sql, fp, sizeof(fp));
    /* A superuser who disables the triggers and edits a transcript is found out. */
    snprintf(sql, sizeof(sql),
             "BEGIN; SET LOCAL session_replication_role = replica; UPDATE coffer.ceremonies "
             "SET transcript = replace(transcript, 'alice', 'mallory') WHERE id = '%s'; COMMIT",
             ceremonies[1]);
    super_query(sql, fp, sizeof(fp));
    {
        const char *show[] = {"ceremony", "show", ceremonies[1], NULL};

        expect_in(NULL, show, 1, "signature INVALID");
        assert_non_null(strstr(res.out, "mallory"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init),           cmocka_unit_test(test_quorum),
        cmocka_unit_test(test_key_ceremonies), cmocka_unit_test(test_officers),
        cmocka_unit_test(test_transcripts),
    };
    int rc;

    signal(SIGPIPE, SIG_IGN);
    harness_setup("ceremony", &h);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    harness_teardown(&h);
    return rc;
}
