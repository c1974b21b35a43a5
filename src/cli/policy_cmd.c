/* SPDX-License-Identifier: Apache-2.0 */
/*
 * coffer policy validate|apply|show and coffer project phase: policy as code
 * from the admin's checkout to the database (docs/policy.md).
 *
 * Exit status: 0 done; 1 refused (a problem in the files, or a change the
 * database state does not allow: unknown org, a project that still stores
 * credentials, an undeclared phase), with every problem on stderr and
 * nothing written; 2 trouble (unreadable file, database unreachable, bad
 * arguments).
 */
#include "cli/cli.h"

#include "coffer/arena.h"
#include "coffer/policy.h"

#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define EXIT_REFUSED 1
#define EXIT_TROUBLE 2

static const char policy_usage[] = "usage: coffer policy validate FILE...\n"
                                   "       coffer policy apply FILE...\n"
                                   "       coffer policy show ORG\n";

static const char project_usage[] = "usage: coffer project phase ORG/PROJECT PHASE\n";

/* "coffer: <what>: <code>: <detail>" and the exit status the error deserves. */
static int fail(const char *what, enum coffer_err r)
{
    (void)cli_fail(what, r);
    switch (r) {
    case COFFER_E_INVALID:
    case COFFER_E_NOT_FOUND:
    case COFFER_E_STATE:
        return EXIT_REFUSED;
    default:
        return EXIT_TROUBLE;
    }
}

static void print_diags(const struct coffer_policy_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        fprintf(stderr, "%s\n", d->lines[i]);
    }
    if (d->dropped > 0) {
        fprintf(stderr, "... and %zu more problem(s)\n", d->dropped);
    }
}

/*
 * Loads and checks files into *out. Returns 0, or the exit status after
 * printing every problem.
 */
static int load(char **files, int n, struct coffer_policy **out)
{
    struct coffer_policy_diags d = {0};
    struct coffer_policy *p = NULL;
    bool io = false;
    enum coffer_err r;

    *out = NULL;
    if (n > COFFER_POLICY_FILES_MAX) {
        fprintf(stderr, "coffer: %d files; at most %d per command\n", n, COFFER_POLICY_FILES_MAX);
        return EXIT_TROUBLE;
    }
    if ((r = coffer_policy_new(&p)) != COFFER_OK) {
        return fail("loading policy", r);
    }
    for (int i = 0; i < n; i++) {
        r = coffer_policy_add_file(p, files[i], &d);
        if (r == COFFER_E_IO || r == COFFER_E_NOMEM) {
            (void)cli_fail(files[i], r);
            io = true;
        }
    }
    /* Files with problems are still merged, so references into them are checked too. */
    if (!io) {
        r = coffer_policy_finish(p, &d);
        if (r != COFFER_OK && r != COFFER_E_INVALID) {
            (void)cli_fail("checking policy", r);
            io = true;
        }
    }
    if (io || d.n > 0 || d.dropped > 0) {
        print_diags(&d);
        if (d.n > 0) {
            fprintf(stderr, "coffer: %zu problem(s) found; nothing was written\n", d.n + d.dropped);
        }
        coffer_policy_diags_cleanup(&d);
        coffer_policy_free(&p);
        return io ? EXIT_TROUBLE : EXIT_REFUSED;
    }
    coffer_policy_diags_cleanup(&d);
    *out = p;
    return 0;
}

static size_t count_rules(const struct coffer_policy_org *o, size_t *grants)
{
    size_t rules = 0;

    *grants = 0;
    for (size_t i = 0; i < o->n_projects; i++) {
        rules += o->projects[i].n_creds;
        for (size_t c = 0; c < o->projects[i].n_creds; c++) {
            *grants += o->projects[i].creds[c].n_grants;
        }
    }
    return rules;
}

static int cmd_validate(int argc, char **argv)
{
    struct coffer_policy *p = NULL;
    int rc;

    if (argc < 1) {
        fputs(policy_usage, stderr);
        return EXIT_TROUBLE;
    }
    if ((rc = load(argv, argc, &p)) != 0) {
        return rc;
    }
    for (size_t i = 0; i < p->n_orgs; i++) {
        const struct coffer_policy_org *o = &p->orgs[i];
        size_t grants;
        size_t rules = count_rules(o, &grants);

        printf("%s: valid (%zu agent type%s, %zu project%s, %zu credential rule%s, %zu grant%s)\n",
               o->name, o->n_agent_types, o->n_agent_types == 1 ? "" : "s", o->n_projects,
               o->n_projects == 1 ? "" : "s", rules, rules == 1 ? "" : "s", grants,
               grants == 1 ? "" : "s");
    }
    coffer_policy_free(&p);
    return 0;
}

/* "user@host" of whoever runs the command, for the policy version and phase records. */
static void actor(char *out, size_t cap)
{
    const struct passwd *pw = getpwuid(geteuid());
    char host[128] = "";

    if (gethostname(host, sizeof(host) - 1) != 0) {
        (void)snprintf(host, sizeof(host), "unknown-host");
    }
    if (pw != NULL && pw->pw_name != NULL) {
        (void)snprintf(out, cap, "%s@%s", pw->pw_name, host);
    } else {
        (void)snprintf(out, cap, "uid %u@%s", (unsigned)geteuid(), host);
    }
}

static void print_result(const char *org, const struct coffer_store_policy_result *res)
{
    if (!res->changed) {
        printf("%s: unchanged (policy version %u)\n", org, res->version);
        return;
    }
    printf("%s: policy version %u (%zu change%s)\n", org, res->version, res->changes.n,
           res->changes.n == 1 ? "" : "s");
    for (size_t i = 0; i < res->changes.n; i++) {
        const struct coffer_policy_change *c = &res->changes.items[i];

        if (c->how != NULL) {
            printf("  %c %s: %s\n", (char)c->op, c->what, c->how);
        } else {
            printf("  %c %s\n", (char)c->op, c->what);
        }
    }
}

static int cmd_apply(int argc, char **argv)
{
    struct coffer_policy *p = NULL;
    struct coffer_arena *a = NULL;
    struct coffer_store_policy_result *results = NULL;
    struct cli_ctx c;
    char who[256];
    enum coffer_err r;
    int rc;

    if (argc < 1) {
        fputs(policy_usage, stderr);
        return EXIT_TROUBLE;
    }
    if ((rc = load(argv, argc, &p)) != 0) {
        return rc;
    }
    if ((r = cli_open_db(&c)) != COFFER_OK) {
        coffer_policy_free(&p);
        return fail("opening the database", r);
    }
    if ((r = coffer_arena_new(0, &a)) != COFFER_OK ||
        (results = coffer_arena_alloc(a, p->n_orgs, sizeof(*results))) == NULL) {
        rc = fail("applying policy", r != COFFER_OK ? r : COFFER_E_NOMEM);
        goto out;
    }
    actor(who, sizeof(who));
    /* Every org in one transaction: all of the files take effect, or none. */
    if ((r = coffer_store_begin(c.st)) != COFFER_OK) {
        rc = fail("applying policy", r);
        goto out;
    }
    for (size_t i = 0; i < p->n_orgs; i++) {
        if ((r = coffer_store_policy_apply(c.st, &p->orgs[i], who, a, &results[i])) != COFFER_OK) {
            coffer_store_rollback(c.st);
            rc = fail("applying policy; nothing was written", r);
            goto out;
        }
    }
    if ((r = coffer_store_commit(c.st)) != COFFER_OK) {
        rc = fail("committing policy", r);
        goto out;
    }
    for (size_t i = 0; i < p->n_orgs; i++) {
        print_result(p->orgs[i].name, &results[i]);
    }
    rc = 0;
out:
    coffer_arena_free(&a);
    cli_close(&c);
    coffer_policy_free(&p);
    return rc;
}

static int cmd_show(int argc, char **argv)
{
    struct coffer_arena *a = NULL;
    struct coffer_policy_org model;
    struct coffer_buf out = {0};
    struct coffer_org org;
    struct cli_ctx c;
    enum coffer_err r;
    int rc = 0;

    if (argc != 1) {
        fputs(policy_usage, stderr);
        return EXIT_TROUBLE;
    }
    if ((r = cli_open_db(&c)) != COFFER_OK) {
        return fail("opening the database", r);
    }
    if ((r = coffer_arena_new(0, &a)) != COFFER_OK ||
        (r = coffer_store_org_by_name(c.st, argv[0], &org)) != COFFER_OK ||
        (r = coffer_store_policy_load(c.st, &org, a, &model)) != COFFER_OK ||
        (r = coffer_policy_emit(&model, &out)) != COFFER_OK) {
        rc = fail("showing policy", r);
        goto out;
    }
    if (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout) != 0) {
        rc = fail("showing policy", coffer_err_set(COFFER_E_IO, "writing to standard output"));
    }
out:
    coffer_buf_cleanup(&out);
    coffer_arena_free(&a);
    cli_close(&c);
    return rc;
}

int cli_policy(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "validate") == 0) {
        return cmd_validate(argc - 2, argv + 2);
    }
    if (argc >= 2 && strcmp(argv[1], "apply") == 0) {
        return cmd_apply(argc - 2, argv + 2);
    }
    if (argc >= 2 && strcmp(argv[1], "show") == 0) {
        return cmd_show(argc - 2, argv + 2);
    }
    fputs(policy_usage, stderr);
    return EXIT_TROUBLE;
}

static int cmd_phase(int argc, char **argv)
{
    struct coffer_store_phase_result res;
    struct coffer_arena *a = NULL;
    char org[COFFER_NAME_MAX + 1];
    const char *slash;
    const char *project;
    struct cli_ctx c;
    char who[256];
    enum coffer_err r;
    int rc = 0;

    if (argc != 2 || (slash = strchr(argv[0], '/')) == NULL ||
        (size_t)(slash - argv[0]) > COFFER_NAME_MAX) {
        fputs(project_usage, stderr);
        return EXIT_TROUBLE;
    }
    (void)snprintf(org, sizeof(org), "%.*s", (int)(slash - argv[0]), argv[0]);
    project = slash + 1;
    if ((r = cli_open_db(&c)) != COFFER_OK) {
        return fail("opening the database", r);
    }
    actor(who, sizeof(who));
    if ((r = coffer_arena_new(0, &a)) != COFFER_OK ||
        (r = coffer_store_project_phase(c.st, org, project, argv[1], who, a, &res)) != COFFER_OK) {
        rc = fail("moving project", r);
        goto out;
    }
    if (!res.changed) {
        printf("%s/%s: already in phase %s\n", org, project, res.to);
        goto out;
    }
    printf("%s/%s: %s -> %s\n", org, project, res.from[0] != '\0' ? res.from : "(none)", res.to);
    for (size_t i = 0; i < res.n_expired; i++) {
        printf("  expired %s (left phase %s)\n", res.expired[i], res.from);
    }
out:
    coffer_arena_free(&a);
    cli_close(&c);
    return rc;
}

int cli_project(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "phase") == 0) {
        return cmd_phase(argc - 2, argv + 2);
    }
    fputs(project_usage, stderr);
    return EXIT_TROUBLE;
}
