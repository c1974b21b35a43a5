/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded default end to end, in its own directory with its own
 * cluster (not the fixture's): coffer_dev_up provisions everything, a second
 * run reuses the running cluster, the token, the master key, the org and the
 * project, and a run after the cluster was stopped starts it again over the
 * same data. The files that hold or point to PINs have the right modes and
 * env.sh never holds a PIN. The audit signing key is made once and reused,
 * and env.sh's auditor login works as coffer_auditor, who can read the audit
 * views and nothing else. Bad directories are refused with a clear error,
 * and the child-process layer starts, drops privileges, times out and
 * reports failures as it claims.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coffer/dev.h"
#include "coffer/mem.h"
#include "coffer/p11.h"
#include "coffer/store.h"
#include "coffer/uuid.h"
#include "server/proc.h"

/* Everything a test started, so teardown can stop and remove it after a failed assertion. */
static char base[64];
static struct coffer_dev_env envs[3];

/* A fresh /tmp directory the cluster's unprivileged user can pass through. */
static int make_base(void **state)
{
    (void)state;
    snprintf(base, sizeof(base), "/tmp/coffer-devenv.XXXXXX");
    if (mkdtemp(base) == NULL || chmod(base, 0755) != 0) {
        fprintf(stderr, "mkdtemp/chmod %s: %s\n", base, strerror(errno));
        return -1;
    }
    return 0;
}

static int cleanup(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]); i++) {
        if (coffer_dev_pg_stop(&envs[i]) != COFFER_OK) {
            fprintf(stderr, "stopping cluster: %s\n", coffer_err_detail());
        }
        envs[i] = (struct coffer_dev_env){0};
    }
    if (base[0] != '\0') {
        if (coffer_dev_remove_tree(base) != COFFER_OK) {
            fprintf(stderr, "removing %s: %s\n", base, coffer_err_detail());
        }
        base[0] = '\0';
    }
    return 0;
}

static void join(char *out, size_t n, const char *a, const char *b)
{
    assert_true((size_t)snprintf(out, n, "%s/%s", a, b) < n);
}

static void up_ok(const char *dir, struct coffer_dev_env *env)
{
    enum coffer_err r = coffer_dev_up(dir, env);

    if (r != COFFER_OK) {
        fprintf(stderr, "coffer_dev_up: %s: %s\n", coffer_err_str(r), coffer_err_detail());
    }
    assert_int_equal(r, COFFER_OK);
}

/* What the directory's database says was provisioned. */
struct snapshot {
    struct coffer_store_mk mk;
    struct coffer_org org;
    struct coffer_project project;
    uint32_t policy_version;                 /* of org dev: the built-in policy/dev.yaml */
    struct coffer_store_audit_key audit_key; /* the only one: a later run makes no other */
};

static void take_snapshot(const struct coffer_dev_env *env, struct snapshot *s)
{
    struct coffer_store_audit_key *keys = NULL;
    struct coffer_store *st = NULL;
    size_t n = 0;

    assert_int_equal(coffer_store_open(env->db_app, &st), COFFER_OK);
    assert_int_equal(coffer_store_mk_current(st, &s->mk), COFFER_OK);
    assert_int_equal(coffer_store_org_by_name(st, COFFER_DEV_ORG, &s->org), COFFER_OK);
    assert_int_equal(coffer_store_project_by_name(st, &s->org.id, COFFER_DEV_PROJECT, &s->project),
                     COFFER_OK);
    assert_int_equal(coffer_store_policy_version(st, &s->org.id, &s->policy_version), COFFER_OK);
    assert_int_equal(coffer_store_audit_key_list(st, &keys, &n), COFFER_OK);
    assert_int_equal(n, 1);
    s->audit_key = keys[0];
    coffer_free(keys);
    coffer_store_close(&st);
}

static void assert_same(const struct snapshot *a, const struct snapshot *b)
{
    assert_int_equal(a->mk.version, b->mk.version);
    assert_memory_equal(a->mk.kcv, b->mk.kcv, COFFER_KCV_LEN);
    assert_true(coffer_uuid_equal(&a->org.id, &b->org.id));
    assert_true(coffer_uuid_equal(&a->project.id, &b->project.id));
    /* A later run applies the same built-in policy again, which changes nothing. */
    assert_int_equal(a->policy_version, b->policy_version);
    /* The audit signing key is reused, not made again. */
    assert_int_equal(a->audit_key.version, b->audit_key.version);
    assert_int_equal(a->audit_key.public_key_len, b->audit_key.public_key_len);
    assert_memory_equal(a->audit_key.public_key, b->audit_key.public_key,
                        a->audit_key.public_key_len);
}

static void read_text(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got;

    assert_true(fd >= 0);
    got = read(fd, buf, n - 1);
    close(fd);
    assert_true(got > 0);
    buf[got] = '\0';
}

static mode_t mode_of(const char *path)
{
    struct stat st;

    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode));
    return st.st_mode & 07777;
}

/* The PIN in path (trailing newline removed) must not appear in text. */
static void assert_pin_absent(const char *pin_path, const char *text)
{
    char pin[256];

    read_text(pin_path, pin, sizeof(pin));
    pin[strcspn(pin, "\n")] = '\0';
    assert_true(strlen(pin) >= 24);
    assert_null(strstr(text, pin));
}

static void check_files(const struct coffer_dev_env *env)
{
    char path[PATH_MAX];
    char text[8192];
    char want[PATH_MAX + 256];
    mode_t dir_mode = mode_of(env->dir);

    /* Nobody but the owner reads or writes DIR; as root its group may only search it. */
    assert_int_equal(dir_mode & 0067, 0);
    if (geteuid() != 0) {
        assert_int_equal(dir_mode, 0700);
    }
    assert_int_equal(mode_of(env->pin_source + strlen("file:")), 0600);
    assert_int_equal(mode_of(env->so_pin_file), 0600);

    join(path, sizeof(path), env->dir, "env.sh");
    assert_int_equal(mode_of(path), 0600);
    read_text(path, text, sizeof(text));
    assert_non_null(strstr(text, "export COFFER_DATABASE='host="));
    assert_non_null(strstr(text, "export COFFER_DATABASE_OWNER='"));
    assert_non_null(strstr(text, "export SOFTHSM2_CONF='"));
    assert_non_null(strstr(text, "export COFFER_PKCS11_MODULE='"));
    assert_non_null(strstr(text, "export COFFER_TOKEN_URI='pkcs11:token=" COFFER_DEV_TOKEN_LABEL));
    assert_non_null(strstr(text, env->pin_source));
    /* The auditor's login and, marked for development only, the superuser's. */
    snprintf(want, sizeof(want),
             "export COFFER_AUDITOR_DSN='host=%s dbname=" COFFER_DEV_DBNAME
             " user=coffer_auditor'\n",
             env->pg_socket_dir);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof(want),
             "# Development only: the cluster superuser on the Coffer database, which can\n"
             "# change anything, the audit log included. Never give this to production "
             "clients.\nexport COFFER_DB_ADMIN_DSN='host=%s dbname=" COFFER_DEV_DBNAME
             " user=postgres'\n",
             env->pg_socket_dir);
    assert_non_null(strstr(text, want));
    assert_pin_absent(env->pin_source + strlen("file:"), text);
    assert_pin_absent(env->so_pin_file, text);
}

/*
 * Runs psql with the DSN named var, taken from env.sh as a client sources it,
 * and returns its output (standard output and error) in out.
 */
static int psql_as(const struct coffer_dev_env *env, const char *var, const char *sql, char *out,
                   size_t n)
{
    static const char script[] = ". \"$1\" && eval \"dsn=\\$$2\" && "
                                 "exec psql -X -At -v ON_ERROR_STOP=1 -d \"$dsn\" -c \"$3\"";
    char env_sh[PATH_MAX];
    char path[PATH_MAX];
    const char *const argv[] = {"/bin/sh", "-c", script, "sh", env_sh, var, sql, NULL};
    const char *const envp[] = {"PATH=/usr/bin:/bin", "LC_ALL=C", NULL};
    struct coffer_proc_spec spec = {.argv = argv, .envp = envp};
    int status = -1;

    join(env_sh, sizeof(env_sh), env->dir, "env.sh");
    join(path, sizeof(path), base, "psql.out");
    (void)unlink(path);
    spec.out_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(spec.out_fd >= 0);
    spec.err_fd = spec.out_fd;
    assert_int_equal(coffer_proc_run(&spec, 30000, &status), COFFER_OK);
    close(spec.out_fd);
    read_text(path, out, n);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* COFFER_AUDITOR_DSN logs in as coffer_auditor, who reads the audit views and nothing else. */
static void check_auditor_login(const struct coffer_dev_env *env)
{
    char out[1024];

    assert_int_equal(psql_as(env, "COFFER_AUDITOR_DSN", "select 1, current_user", out, sizeof(out)),
                     0);
    assert_string_equal(out, "1|coffer_auditor\n");
    assert_int_equal(psql_as(env, "COFFER_AUDITOR_DSN",
                             "select version, state from audit.signing_keys", out, sizeof(out)),
                     0);
    assert_string_equal(out, "1|current\n");
    assert_int_not_equal(psql_as(env, "COFFER_AUDITOR_DSN",
                                 "select count(*) from coffer.master_keys", out, sizeof(out)),
                         0);
    assert_non_null(strstr(out, "permission denied"));
    /* The superuser's login is the other one, on the same database. */
    assert_int_equal(psql_as(env, "COFFER_DB_ADMIN_DSN",
                             "select current_user, current_database(), "
                             "(select rolsuper from pg_roles where rolname = current_user)",
                             out, sizeof(out)),
                     0);
    assert_string_equal(out, "postgres|" COFFER_DEV_DBNAME "|t\n");
}

static void test_up_twice_then_restart(void **state)
{
    struct snapshot first, second, third;
    char dir[PATH_MAX];
    pid_t first_pid;

    (void)state;
    join(dir, sizeof(dir), base, "dev");

    up_ok(dir, &envs[0]);
    first_pid = envs[0].pg_pid;
    assert_true(first_pid > 0);
    assert_true(coffer_proc_alive(first_pid));
    take_snapshot(&envs[0], &first);
    assert_int_equal(first.mk.version, 1);
    assert_string_equal(first.org.name, COFFER_DEV_ORG);
    assert_string_equal(first.project.name, COFFER_DEV_PROJECT);
    assert_int_equal(first.policy_version, 1);
    assert_int_equal(first.audit_key.version, 1);
    assert_int_equal(first.audit_key.state, COFFER_KEY_CURRENT);
    check_files(&envs[0]);
    check_auditor_login(&envs[0]);

    /* Second run: the running cluster and everything in it are reused. */
    up_ok(dir, &envs[1]);
    assert_int_equal(envs[1].pg_pid, 0);
    take_snapshot(&envs[1], &second);
    assert_same(&first, &second);
    check_files(&envs[1]);

    /* Stop, then run again: the cluster restarts over the same data. */
    assert_int_equal(coffer_dev_pg_stop(&envs[0]), COFFER_OK);
    assert_int_equal(envs[0].pg_pid, 0);
    assert_false(coffer_proc_alive(first_pid));
    up_ok(dir, &envs[2]);
    assert_true(envs[2].pg_pid > 0);
    take_snapshot(&envs[2], &third);
    assert_same(&first, &third);

    assert_int_equal(coffer_dev_pg_stop(&envs[2]), COFFER_OK);
    /* Stopping again is a no-op, never a signal to a stale PID. */
    assert_int_equal(coffer_dev_pg_stop(&envs[2]), COFFER_OK);
}

static void test_dir_is_a_file(void **state)
{
    char path[PATH_MAX];
    enum coffer_err r;
    int fd;

    (void)state;
    join(path, sizeof(path), base, "file");
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    r = coffer_dev_up(path, &envs[0]);
    assert_true(r == COFFER_E_INVALID || r == COFFER_E_IO);
    assert_non_null(strstr(coffer_err_detail(), "not a directory"));
    assert_int_equal(envs[0].pg_pid, 0);
}

static void test_dir_group_writable(void **state)
{
    char path[PATH_MAX];
    enum coffer_err r;

    (void)state;
    join(path, sizeof(path), base, "open");
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(chmod(path, 0775), 0);
    r = coffer_dev_up(path, &envs[0]);
    assert_int_equal(r, COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "writable by group or others"));
}

/* As root the cluster runs unprivileged and must reach DIR through its parents. */
static void test_unreachable_parent(void **state)
{
    char hidden[PATH_MAX];
    char dir[PATH_MAX];
    struct stat st;
    enum coffer_err r;

    (void)state;
    join(hidden, sizeof(hidden), base, "private");
    assert_int_equal(mkdir(hidden, 0700), 0);
    join(dir, sizeof(dir), hidden, "dev");
    r = coffer_dev_up(dir, &envs[0]);
    assert_int_equal(r, COFFER_E_CONFIG);
    assert_non_null(strstr(coffer_err_detail(), hidden));
    assert_non_null(strstr(coffer_err_detail(), "/var/tmp"));
    assert_int_equal(envs[0].pg_pid, 0);
    /* Refused before anything was made. */
    assert_int_equal(lstat(dir, &st), -1);
}

static void test_env_init(void **state)
{
    struct coffer_dev_env env;
    char cwd[PATH_MAX];
    char want[PATH_MAX + 16];
    char longdir[200];

    (void)state;
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(coffer_dev_env_init("relative-dev", &env), COFFER_OK);
    snprintf(want, sizeof(want), "%s/relative-dev", cwd);
    assert_string_equal(env.dir, want);

    assert_int_equal(coffer_dev_env_init("/var/tmp/coffer-x/", &env), COFFER_OK);
    assert_string_equal(env.dir, "/var/tmp/coffer-x");
    assert_string_equal(env.pg_socket_dir, "/var/tmp/coffer-x/pg/run");
    assert_string_equal(env.db_super,
                        "host=/var/tmp/coffer-x/pg/run dbname=postgres user=postgres");
    assert_string_equal(env.db_owner,
                        "host=/var/tmp/coffer-x/pg/run dbname=coffer user=coffer_owner");
    assert_string_equal(env.db_app, "host=/var/tmp/coffer-x/pg/run dbname=coffer user=coffer_app");
    assert_string_equal(env.pin_source, "file:/var/tmp/coffer-x/token.pin");
    assert_string_equal(env.token_uri, "pkcs11:token=" COFFER_DEV_TOKEN_LABEL);
    assert_int_equal(env.pg_pid, 0);
    assert_true(access(env.module, R_OK) == 0);

    assert_int_equal(coffer_dev_env_init("", &env), COFFER_E_INVALID);
    assert_int_equal(coffer_dev_env_init("/", &env), COFFER_E_INVALID);
    assert_int_equal(coffer_dev_env_init("/tmp/..", &env), COFFER_E_INVALID);
    assert_int_equal(coffer_dev_env_init("/tmp/a b", &env), COFFER_E_INVALID);
    assert_int_equal(coffer_dev_env_init("/tmp/a'b", &env), COFFER_E_INVALID);
    assert_int_equal(coffer_dev_env_init("/tmp/a,b", &env), COFFER_E_INVALID);
    memset(longdir, 'a', sizeof(longdir) - 1);
    longdir[0] = '/';
    longdir[sizeof(longdir) - 1] = '\0';
    assert_int_equal(coffer_dev_env_init(longdir, &env), COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "socket"));
}

static void test_token_label_checked(void **state)
{
    struct coffer_dev_env env;
    char dir[PATH_MAX];

    (void)state;
    join(dir, sizeof(dir), base, "tok");
    assert_int_equal(coffer_dev_env_init(dir, &env), COFFER_OK);
    assert_int_equal(coffer_dev_token_prepare(&env, ""), COFFER_E_INVALID);
    assert_int_equal(coffer_dev_token_prepare(&env, "has space"), COFFER_E_INVALID);
    assert_int_equal(coffer_dev_token_prepare(&env, "123456789012345678901234567890123"),
                     COFFER_E_INVALID);
    /* Nothing was created for a refused label. */
    assert_int_equal(access(dir, F_OK), -1);
}

/* ---- server/proc.c ---------------------------------------------------------- */

static void test_proc_exit_status(void **state)
{
    const char *const t[] = {"/bin/true", NULL};
    const char *const f[] = {"/bin/false", NULL};
    struct coffer_proc_spec spec = {.out_fd = -1, .err_fd = -1};
    char why[96];
    int status = -1;

    (void)state;
    spec.argv = t;
    assert_int_equal(coffer_proc_run(&spec, 10000, &status), COFFER_OK);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    spec.argv = f;
    assert_int_equal(coffer_proc_run(&spec, 10000, &status), COFFER_OK);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    coffer_proc_status_str(status, why, sizeof(why));
    assert_string_equal(why, "exited with status 1");
}

static void test_proc_refuses(void **state)
{
    const char *const rel[] = {"true", NULL};
    const char *const missing[] = {"/nonexistent/coffer-no-such-program", NULL};
    struct coffer_proc_spec spec = {.out_fd = -1, .err_fd = -1};
    pid_t pid = 1;

    (void)state;
    spec.argv = rel;
    assert_int_equal(coffer_proc_spawn(&spec, &pid), COFFER_E_INVALID);
    assert_int_equal(pid, 0);
    spec.argv = missing;
    assert_int_equal(coffer_proc_spawn(&spec, &pid), COFFER_E_IO);
    assert_non_null(strstr(coffer_err_detail(), "execve"));
    /* PID 1 is not our child: it is never signalled. */
    assert_int_equal(coffer_proc_stop(1, SIGTERM, 100, NULL), COFFER_E_IO);
    assert_int_equal(coffer_proc_wait(1, 100, NULL), COFFER_E_IO);
    spec.cwd = "/nonexistent/coffer-no-such-dir";
    spec.argv = (const char *const[]){"/bin/true", NULL};
    assert_int_equal(coffer_proc_spawn(&spec, &pid), COFFER_E_IO);
    assert_non_null(strstr(coffer_err_detail(), "chdir"));
}

static void test_proc_timeout_and_stop(void **state)
{
    const char *const argv[] = {"/bin/sleep", "30", NULL};
    struct coffer_proc_spec spec = {.argv = argv, .out_fd = -1, .err_fd = -1};
    int status = 0;
    pid_t pid;

    (void)state;
    assert_int_equal(coffer_proc_run(&spec, 200, &status), COFFER_E_STATE);
    assert_int_equal(coffer_proc_spawn(&spec, &pid), COFFER_OK);
    assert_int_equal(coffer_proc_wait(pid, 100, &status), COFFER_E_STATE);
    assert_true(coffer_proc_alive(pid));
    assert_int_equal(coffer_proc_stop(pid, SIGTERM, 10000, &status), COFFER_OK);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    assert_false(coffer_proc_alive(pid));
}

/* The child's environment and descriptors are exactly what the spec says. */
static void test_proc_clean_child(void **state)
{
    const char *const argv[] = {
        "/bin/sh", "-c",
        "echo \"$COFFER_PROC_TEST\"; echo \"${COFFER_PROC_LEAK:-absent}\"; ls /proc/self/fd", NULL};
    const char *const envp[] = {"COFFER_PROC_TEST=visible", NULL};
    struct coffer_proc_spec spec = {.argv = argv, .envp = envp, .err_fd = -1};
    char path[PATH_MAX];
    char out[512];
    int status = -1;
    int leak;

    (void)state;
    join(path, sizeof(path), base, "out");
    spec.out_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(spec.out_fd >= 0);
    /* A descriptor without close-on-exec must still not reach the child. */
    leak = open("/dev/null", O_RDONLY);
    assert_true(leak >= 0);
    assert_int_equal(setenv("COFFER_PROC_LEAK", "hidden", 1), 0);
    assert_int_equal(coffer_proc_run(&spec, 10000, &status), COFFER_OK);
    close(leak);
    close(spec.out_fd);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    read_text(path, out, sizeof(out));
    /* Only the given variable; fds 0, 1, 2 and the one ls opens to list the directory. */
    assert_string_equal(out, "visible\nabsent\n0\n1\n2\n3\n");
}

/* As root: the child runs as nobody with no way back to root. */
static void test_proc_drop(void **state)
{
    const char *const argv[] = {"/bin/sh", "-c", "id -u; id -g; id -G", NULL};
    const char *const envp[] = {"PATH=/usr/bin:/bin", NULL};
    struct coffer_proc_spec spec = {
        .argv = argv, .envp = envp, .err_fd = -1, .drop = true, .uid = 65534, .gid = 65534};
    char path[PATH_MAX];
    char out[256];
    int status = -1;

    (void)state;
    join(path, sizeof(path), base, "id");
    spec.out_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(spec.out_fd >= 0);
    assert_int_equal(coffer_proc_run(&spec, 10000, &status), COFFER_OK);
    close(spec.out_fd);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    read_text(path, out, sizeof(out));
    assert_string_equal(out, "65534\n65534\n65534\n");
}

int main(void)
{
    const struct CMUnitTest common[] = {
        cmocka_unit_test(test_env_init),
        cmocka_unit_test_setup_teardown(test_token_label_checked, make_base, cleanup),
        cmocka_unit_test_setup_teardown(test_dir_is_a_file, make_base, cleanup),
        cmocka_unit_test_setup_teardown(test_dir_group_writable, make_base, cleanup),
        cmocka_unit_test(test_proc_exit_status),
        cmocka_unit_test(test_proc_refuses),
        cmocka_unit_test(test_proc_timeout_and_stop),
        cmocka_unit_test_setup_teardown(test_proc_clean_child, make_base, cleanup),
        cmocka_unit_test_setup_teardown(test_up_twice_then_restart, make_base, cleanup),
    };
    const struct CMUnitTest as_root[] = {
        cmocka_unit_test_setup_teardown(test_unreachable_parent, make_base, cleanup),
        cmocka_unit_test_setup_teardown(test_proc_drop, make_base, cleanup),
    };
    int failed = cmocka_run_group_tests_name("dev_env", common, NULL, NULL);

    if (geteuid() == 0) {
        failed += cmocka_run_group_tests_name("dev_env_root", as_root, NULL, NULL);
    } else {
        printf("dev_env_root: not run, uid %ld is not root: the cluster runs as this user, so "
               "there is no unprivileged user to check\n",
               (long)geteuid());
    }
    return failed == 0 ? 0 : 1;
}
