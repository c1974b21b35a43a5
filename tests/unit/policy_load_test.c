/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policy files into the model: every class of problem a file can have is
 * reported with its exact "file:line:column: " and a message that says what
 * is wrong; a file's problems are all collected; the shipped policies load;
 * the model of policy/acme.yaml is sorted and filled in as documented; TTLs
 * and names follow their grammars exactly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "coffer/mem.h"
#include "coffer/policy.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef COFFER_SOURCE_DIR
#error "COFFER_SOURCE_DIR must name the source tree"
#endif

/* ---- Loading and expecting diagnostics ---- */

static void dump(const struct coffer_policy_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        print_message("  diag: %s\n", d->lines[i]);
    }
}

/* Whether some diagnostic starts with prefix and contains part. */
static bool has_diag(const struct coffer_policy_diags *d, const char *prefix, const char *part)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strncmp(d->lines[i], prefix, strlen(prefix)) == 0 &&
            strstr(d->lines[i], part) != NULL) {
            return true;
        }
    }
    return false;
}

static void expect_in(const struct coffer_policy_diags *d, const char *prefix, const char *part)
{
    if (!has_diag(d, prefix, part)) {
        print_message("expected a diagnostic \"%s...%s...\"; got:\n", prefix, part);
        dump(d);
        fail();
    }
}

/* yaml must be refused by coffer_policy_add_buffer with the diagnostic prefix...part. */
static void expect_add_error(const char *yaml, size_t len, const char *prefix, const char *part)
{
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};

    assert_int_equal(coffer_policy_new(&p), COFFER_OK);
    assert_int_equal(coffer_policy_add_buffer(p, "t.yaml", yaml, len, &d), COFFER_E_INVALID);
    assert_true(d.n > 0);
    expect_in(&d, prefix, part);
    coffer_policy_diags_cleanup(&d);
    coffer_policy_free(&p);
    assert_null(p);
}

static void add_error(const char *yaml, const char *prefix, const char *part)
{
    expect_add_error(yaml, strlen(yaml), prefix, part);
}

/* yaml must load cleanly and then be refused by coffer_policy_finish. */
static void finish_error(const char *yaml, const char *prefix, const char *part)
{
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};
    enum coffer_err r;

    assert_int_equal(coffer_policy_new(&p), COFFER_OK);
    r = coffer_policy_add_buffer(p, "t.yaml", yaml, strlen(yaml), &d);
    if (r != COFFER_OK) {
        dump(&d);
    }
    assert_int_equal(r, COFFER_OK);
    assert_int_equal(d.n, 0);
    assert_int_equal(coffer_policy_finish(p, &d), COFFER_E_INVALID);
    expect_in(&d, prefix, part);
    coffer_policy_diags_cleanup(&d);
    coffer_policy_free(&p);
}

/* yaml must load and finish without a single diagnostic. */
static struct coffer_policy *load_ok(const char *yaml)
{
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};
    enum coffer_err r;

    assert_int_equal(coffer_policy_new(&p), COFFER_OK);
    r = coffer_policy_add_buffer(p, "t.yaml", yaml, strlen(yaml), &d);
    if (r == COFFER_OK) {
        r = coffer_policy_finish(p, &d);
    }
    if (r != COFFER_OK) {
        dump(&d);
    }
    assert_int_equal(r, COFFER_OK);
    assert_int_equal(d.n, 0);
    coffer_policy_diags_cleanup(&d);
    return p;
}

#define HEAD "version: 1\norg: acme\n"
#define TYPES "agent_types:\n  builder:\n  deployer: {}\n"

/* ---- The YAML layer ---- */

static void test_syntax_error(void **state)
{
    (void)state;
    add_error(HEAD "projects: [a, b\n", "t.yaml:4:1: ",
              "YAML syntax error: did not find expected ',' or ']' while parsing a flow sequence");
    add_error(HEAD "agent_types:\n  builder: x\n    y: z\n",
              "t.yaml:5:6: ", "YAML syntax error: mapping values are not allowed");
}

static void test_documents(void **state)
{
    (void)state;
    add_error(HEAD "---\nversion: 1\norg: acme\n",
              "t.yaml:3:1: ", "a second YAML document begins here");
    add_error("", "t.yaml:1:1: ", "the file is empty");
    add_error("# nothing but a comment\n\n", "t.yaml:1:1: ", "the file is empty");
    /* An empty document is an empty value where libyaml places it: after the marker. */
    add_error("---\n", "t.yaml:2:1: ", "a policy file must be a mapping");
    add_error("- version\n- 1\n", "t.yaml:1:1: ", "must be a mapping with the keys version");
}

static void test_aliases_anchors_tags(void **state)
{
    (void)state;
    add_error(HEAD "agent_types:\n  builder: *attrs\n",
              "t.yaml:4:12: ", "alias '*attrs' is not allowed");
    add_error(HEAD "agent_types:\n  builder: &attrs {}\n",
              "t.yaml:4:12: ", "anchor '&attrs' is not allowed");
    add_error("version: 1\norg: &o acme\n", "t.yaml:2:6: ", "anchor '&o' is not allowed");
    add_error("version: !!int 1\norg: acme\n", "t.yaml:1:10: ", "tag '!!int' is not allowed");
    add_error(HEAD "agent_types: !types\n  builder:\n",
              "t.yaml:3:14: ", "tag '!types' is not allowed");
}

static void test_billion_laughs(void **state)
{
    static const char *lol = "version: 1\n"
                             "org: acme\n"
                             "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
                             "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                             "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                             "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                             "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n";

    (void)state;
    /* Refused at the first anchor, before a single alias is expanded. */
    add_error(lol, "t.yaml:3:4: ", "anchor '&a' is not allowed");
}

static void test_depth_bomb(void **state)
{
    char yaml[256];
    size_t n = 0;

    (void)state;
    n += (size_t)snprintf(yaml, sizeof(yaml), "version: 1\norg: acme\nx: ");
    /* The top mapping is level 1; x's value opens level 2, so the 16th '[' is level 17. */
    for (int i = 0; i < 20; i++) {
        yaml[n++] = '[';
    }
    for (int i = 0; i < 20; i++) {
        yaml[n++] = ']';
    }
    yaml[n++] = '\n';
    yaml[n] = '\0';
    add_error(yaml, "t.yaml:3:19: ", "nested more than 16 deep");
}

static void test_too_many_nodes(void **state)
{
    const size_t items = COFFER_POLICY_NODES_MAX;
    size_t cap = 32 + items * 2 + 8;
    char *yaml = coffer_calloc(cap, 1);
    size_t n;

    (void)state;
    assert_non_null(yaml);
    n = (size_t)snprintf(yaml, cap, "version: 1\norg: acme\nx: [");
    for (size_t i = 0; i < items; i++) {
        yaml[n++] = '0';
        yaml[n++] = ',';
    }
    yaml[n - 1] = ']';
    yaml[n++] = '\n';
    /* Five nodes before the list items (the mapping, two keys and values, x) leave room for fewer.
     */
    add_error(yaml, "t.yaml:3:", "more than 200000 YAML nodes");
    coffer_free(yaml);
}

static void test_file_too_big(void **state)
{
    size_t len = COFFER_POLICY_FILE_MAX + 1;
    char *big = coffer_calloc(len, 1);

    (void)state;
    assert_non_null(big);
    memset(big, '#', len);
    expect_add_error(big, len, "t.yaml:1:1: ", "file is 1048577 bytes; the limit is 1048576");
    coffer_free(big);
}

static void test_scalar_too_long(void **state)
{
    size_t len = COFFER_POLICY_SCALAR_MAX + 1;
    char *yaml = coffer_calloc(len + 64, 1);
    size_t n;

    (void)state;
    assert_non_null(yaml);
    n = (size_t)snprintf(yaml, 64, "version: 1\norg: ");
    memset(yaml + n, 'a', len);
    memcpy(yaml + n + len, "\n", 2);
    add_error(yaml, "t.yaml:2:6: ", "a value is 4097 bytes; the limit is 4096");
    coffer_free(yaml);
}

static void test_nul_and_utf8(void **state)
{
    (void)state;
    add_error(HEAD "agent_types:\n  builder:\n    description: \"a\\0b\"\n",
              "t.yaml:5:18: ", "a value holds a NUL byte");
    add_error(HEAD "agent_types:\n  builder:\n    description: caf\xc3(\n",
              "t.yaml:5:", "YAML syntax error: invalid trailing UTF-8 octet");
    add_error(HEAD "agent_types:\n  builder:\n    description: \xff\n",
              "t.yaml:5:18: ", "YAML syntax error: invalid leading UTF-8 octet");
}

/* ---- Keys and kinds ---- */

static void test_unknown_keys(void **state)
{
    (void)state;
    add_error(HEAD "colour: blue\n", "t.yaml:3:1: ",
              "unknown key 'colour' at the top level (known keys: version, org, agent_types, "
              "tiers, projects)");
    add_error(HEAD "agent_types:\n  builder:\n    descripton: x\n",
              "t.yaml:5:5: ", "unknown key 'descripton' in agent type 'builder'");
    add_error(HEAD "tiers:\n  high: {default_ttl: 1d, max_ttl: 2d, min_ttl: 1h}\n",
              "t.yaml:4:40: ", "unknown key 'min_ttl' in tier 'high'");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    owner: me\n",
              "t.yaml:6:5: ", "unknown key 'owner' in project 'p'");
    add_error(HEAD
              "projects:\n  p:\n    phases: [a]\n    credentials:\n      c:\n        ttl: 1d\n",
              "t.yaml:8:9: ", "unknown key 'ttl' in credential rule 'p/c'");
    add_error(HEAD TYPES "projects:\n  p:\n    phases: [a]\n    members: [builder]\n"
                         "    credentials:\n      c:\n        grants:\n"
                         "          - agent_type: builder\n            phase: [a]\n",
              "t.yaml:14:13: ", "unknown key 'phase' in a grant of credential rule 'p/c'");
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    add_error("version: 1\norg: acme\nversion: 1\n",
              "t.yaml:3:1: ", "duplicate key 'version' (first at line 1, column 1)");
    add_error(HEAD "agent_types:\n  builder:\n  deployer:\n  builder:\n",
              "t.yaml:6:3: ", "duplicate key 'builder' (first at line 4, column 3)");
    add_error(HEAD "agent_types:\n  builder:\n    description: a\n    description: b\n",
              "t.yaml:6:5: ", "duplicate key 'description' (first at line 5, column 5)");
    add_error(HEAD "tiers:\n  high: {default_ttl: 1d, default_ttl: 2d, max_ttl: 7d}\n",
              "t.yaml:4:27: ", "duplicate key 'default_ttl' (first at line 4, column 10)");
    add_error(HEAD "tiers:\n  high: {default_ttl: 1d, max_ttl: 7d}\n  high: {}\n",
              "t.yaml:5:3: ", "duplicate key 'high' (first at line 4, column 3)");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n  p:\n    phases: [b]\n",
              "t.yaml:6:3: ", "duplicate key 'p' (first at line 4, column 3)");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    phases: [b]\n",
              "t.yaml:6:5: ", "duplicate key 'phases' (first at line 5, column 5)");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    credentials:\n      c: {}\n      c: {}\n",
              "t.yaml:8:7: ", "duplicate key 'c' (first at line 7, column 7)");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    credentials:\n      c:\n"
                   "        grants: []\n        grants: []\n",
              "t.yaml:9:9: ", "duplicate key 'grants' (first at line 8, column 9)");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    credentials:\n      c:\n"
                   "        grants:\n          - {agent_type: a, agent_type: b}\n",
              "t.yaml:9:29: ", "duplicate key 'agent_type' (first at line 9, column 14)");
}

static void test_all_duplicate_keys_reported(void **state)
{
    static const char *yaml = "version: 1\norg: a\nversion: 1\norg: b\n";
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};

    (void)state;
    assert_int_equal(coffer_policy_new(&p), COFFER_OK);
    assert_int_equal(coffer_policy_add_buffer(p, "t.yaml", yaml, strlen(yaml), &d),
                     COFFER_E_INVALID);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.lines[0], "t.yaml:3:1: duplicate key 'version' (first at line 1, "
                                    "column 1)");
    assert_string_equal(d.lines[1], "t.yaml:4:1: duplicate key 'org' (first at line 2, column 1)");
    coffer_policy_diags_cleanup(&d);
    coffer_policy_free(&p);
}

static void test_wrong_kinds(void **state)
{
    (void)state;
    add_error(HEAD "projects:\n  p:\n    phases: {a: b}\n",
              "t.yaml:5:13: ", "'phases' must be a sequence of phase names, not a mapping");
    add_error(HEAD "agent_types: [builder]\n", "t.yaml:3:14: ",
              "'agent_types' must be a mapping of agent type names to their attributes, not a "
              "sequence");
    add_error(HEAD "agent_types:\n", "t.yaml:3:13: ", "'agent_types' must be a mapping");
    add_error(HEAD "agent_types:\n  builder: [x]\n", "t.yaml:4:12: ",
              "agent type 'builder' must be a mapping of its attributes (description) or empty, "
              "not a sequence");
    add_error(HEAD "agent_types:\n  builder:\n    description:\n",
              "t.yaml:5:17: ", "the description of agent type 'builder' must be text, not empty");
    add_error(HEAD "agent_types:\n  builder:\n    description: {a: b}\n",
              "t.yaml:5:18: ", "must be text, not a mapping");
    add_error("version: 1\norg: [acme]\n", "t.yaml:2:6: ", "'org' must be a name, not a sequence");
    add_error("version: 1\norg: null\n", "t.yaml:2:6: ",
              "'org' must be a name, not empty (write 'null' in quotes to use it as a name)");
    add_error(HEAD "tiers:\n  high: 7d\n", "t.yaml:4:9: ",
              "tier 'high' must be a mapping with default_ttl and max_ttl, not text");
    add_error(HEAD "tiers: [high]\n", "t.yaml:3:8: ", "'tiers' must be a mapping of tier names");
    add_error(HEAD "projects:\n  p:\n", "t.yaml:4:5: ",
              "project 'p' must be a mapping of its attributes (phases, members, ...), not empty");
    add_error(HEAD "projects: p\n", "t.yaml:3:11: ",
              "'projects' must be a mapping of project names to their attributes, not text");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    members: builder\n",
              "t.yaml:6:14: ", "'members' must be a sequence of agent type names, not text");
    add_error(HEAD "projects:\n  p:\n    phases: [a, [b]]\n",
              "t.yaml:5:17: ", "an entry of 'phases' must be a name, not a sequence");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    credentials: [c]\n", "t.yaml:6:18: ",
              "'credentials' must be a mapping of credential names to their rules, not a "
              "sequence");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    credentials:\n      c:\n",
              "t.yaml:7:9: ", "credential rule 'p/c' must be a mapping of its rules");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    credentials:\n      c:\n"
                   "        grants: {agent_type: a}\n",
              "t.yaml:8:17: ", "'grants' must be a sequence of grants, not a mapping");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    credentials:\n      c:\n"
                   "        grants: [builder]\n",
              "t.yaml:8:18: ",
              "a grant of credential rule 'p/c' must be a mapping with agent_type, instance and "
              "phases, not text");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    credentials:\n      c:\n"
                   "        purposes: deploy\n",
              "t.yaml:8:19: ", "'purposes' must be a sequence of purpose patterns, not text");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    credentials:\n      c:\n"
                   "        expire_on_phase_end: [a]\n",
              "t.yaml:8:30: ", "'expire_on_phase_end' must be a name, not a sequence");
    add_error("version: 1\norg: acme\nagent_types:\n  ? [a, b]\n  : {}\n",
              "t.yaml:4:5: ", "a mapping key must be a name, not a sequence");
}

static void test_missing_keys(void **state)
{
    (void)state;
    add_error("org: acme\n",
              "t.yaml:1:1: ", "missing required key 'version' at the top level (write version: 1)");
    add_error("version: 1\n", "t.yaml:1:1: ", "missing required key 'org' at the top level");
    add_error(HEAD "projects:\n  p:\n    description: x\n",
              "t.yaml:4:3: ", "missing required key 'phases' in project 'p'");
    add_error(HEAD "tiers:\n  high: {default_ttl: 1d}\n",
              "t.yaml:4:3: ", "missing required key 'max_ttl' in tier 'high'");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    credentials:\n      c:\n"
                   "        grants:\n          - instance: i\n",
              "t.yaml:9:13: ",
              "missing required key 'agent_type' in a grant of credential rule "
              "'p/c'");
}

static void test_version(void **state)
{
    (void)state;
    add_error("version: 2\norg: acme\n",
              "t.yaml:1:10: ", "unsupported policy version '2'; this Coffer reads version 1");
    add_error("version: 1.0\norg: acme\n", "t.yaml:1:10: ", "unsupported policy version '1.0'");
    add_error("version: \"1\"\norg: acme\n",
              "t.yaml:1:10: ", "'version' must be the number 1, written without quotes");
    add_error("version:\norg: acme\n", "t.yaml:1:9: ", "'version' must be 1, not empty");
}

/* ---- Names and text ---- */

static void test_bad_names(void **state)
{
    char yaml[256];

    (void)state;
    add_error("version: 1\norg: Acme\n", "t.yaml:2:6: ",
              "org name 'Acme' is not valid: names are 1 to 63 lower-case letters, digits, '_' or "
              "'-', starting with a letter or digit");
    add_error("version: 1\norg: -acme\n", "t.yaml:2:6: ", "org name '-acme' is not valid");
    add_error("version: 1\norg: \"\"\n", "t.yaml:2:6: ", "org name '' is not valid");
    add_error("version: 1\norg: a.b\n", "t.yaml:2:6: ", "org name 'a.b' is not valid");
    snprintf(yaml, sizeof(yaml), "version: 1\norg: %.64s\n",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    add_error(yaml, "t.yaml:2:6: ", "is not valid: names are 1 to 63");
    add_error(HEAD "agent_types:\n  Builder:\n",
              "t.yaml:4:3: ", "agent type name 'Builder' is not valid");
    add_error(HEAD "projects:\n  _p:\n    phases: [a]\n",
              "t.yaml:4:3: ", "project name '_p' is not valid");
    add_error(HEAD "projects:\n  p:\n    phases: [Build]\n",
              "t.yaml:5:14: ", "phase name 'Build' is not valid");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    credentials:\n      Key:\n",
              "t.yaml:7:7: ", "credential name 'Key' is not valid");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    credentials:\n      c:\n"
                   "        grants:\n          - {agent_type: b, instance: \"i 1\"}\n",
              "t.yaml:9:39: ", "instance name 'i 1' is not valid");
    /* Control characters of a name are escaped in the message. */
    add_error("version: 1\norg: \"a\\eb\"\n", "t.yaml:2:6: ", "org name 'a\\x1bb' is not valid");
}

static void test_longest_name(void **state)
{
    char yaml[256];
    struct coffer_policy *p;

    (void)state;
    snprintf(yaml, sizeof(yaml), "version: 1\norg: %.63s\n",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    p = load_ok(yaml);
    assert_int_equal(p->n_orgs, 1);
    assert_int_equal(strlen(p->orgs[0].name), 63);
    coffer_policy_free(&p);
}

static void test_bad_text(void **state)
{
    char yaml[2048];
    char desc[1100];

    (void)state;
    add_error(HEAD "agent_types:\n  builder:\n    description: \"tab\\there\"\n",
              "t.yaml:5:18: ", "the description of agent type 'builder' holds a control character");
    add_error(HEAD "agent_types:\n  builder:\n    description: \"c1 \\x85 control\"\n",
              "t.yaml:5:18: ", "holds a control character");
    add_error(HEAD "agent_types:\n  builder:\n    description: |\n      two\n      lines\n",
              "t.yaml:5:18: ", "holds a control character");
    add_error(HEAD "agent_types:\n  builder:\n    description: \"\"\n",
              "t.yaml:5:18: ", "the description of agent type 'builder' is empty");
    memset(desc, 'x', 1025);
    desc[1025] = '\0';
    snprintf(yaml, sizeof(yaml), HEAD "projects:\n  p:\n    description: %s\n    phases: [a]\n",
             desc);
    add_error(yaml,
              "t.yaml:5:18: ", "the description of project 'p' is 1025 bytes; the limit is 1024");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    credentials:\n      c:\n"
                   "        purposes: [\"ok *\", \"\"]\n",
              "t.yaml:8:28: ", "a purpose pattern of credential rule 'p/c' is empty");
    memset(desc, 'x', 513);
    desc[513] = '\0';
    snprintf(yaml, sizeof(yaml),
             HEAD "projects:\n  p:\n    phases: [a]\n    credentials:\n      c:\n"
                  "        purposes: [%s]\n",
             desc);
    add_error(yaml, "t.yaml:8:20: ", "is 513 bytes; the limit is 512");
}

/* ---- Tiers and TTLs ---- */

static void test_ttl_errors_in_files(void **state)
{
    (void)state;
    add_error(HEAD "tiers:\n  low: {default_ttl: 30, max_ttl: never}\n", "t.yaml:4:22: ",
              "default_ttl '30' of tier 'low' is not a valid TTL: a bare number has no unit");
    add_error(HEAD "tiers:\n  low: {default_ttl: 5y, max_ttl: never}\n",
              "t.yaml:4:22: ", "unknown unit 'y'");
    add_error(HEAD "tiers:\n  low: {default_ttl: 1h1d, max_ttl: never}\n",
              "t.yaml:4:22: ", "unit 'd' comes after 'h'");
    add_error(HEAD "tiers:\n  low: {default_ttl: 0d, max_ttl: never}\n",
              "t.yaml:4:22: ", "a TTL of zero is not allowed");
    add_error(HEAD "tiers:\n  low: {default_ttl: 1d, max_ttl: 99999999999999999999999d}\n",
              "t.yaml:4:35: ",
              "max_ttl '99999999999999999999999d' of tier 'low' is not a valid "
              "TTL: a TTL is at most 100 years");
    add_error(HEAD "tiers:\n  low: {default_ttl: [1d], max_ttl: never}\n", "t.yaml:4:22: ",
              "default_ttl of tier 'low' must be a TTL such as 90d, 12h or never, not a sequence");
}

static void test_tier_limits(void **state)
{
    (void)state;
    finish_error(HEAD "tiers:\n  high: {default_ttl: 1d, max_ttl: never}\n", "t.yaml:4:3: ",
                 "max_ttl of tier 'high' cannot be never: high credentials always expire, after 7d "
                 "at most");
    finish_error(HEAD "tiers:\n  critical: {default_ttl: never, max_ttl: 1h}\n",
                 "t.yaml:4:3: ", "default_ttl of tier 'critical' cannot be never");
    finish_error(HEAD "tiers:\n  high: {default_ttl: 1d, max_ttl: 8d}\n",
                 "t.yaml:4:3: ", "max_ttl 8d of tier 'high' is over the hard maximum 7d");
    finish_error(HEAD "tiers:\n  critical: {default_ttl: 1h, max_ttl: 25h}\n",
                 "t.yaml:4:3: ", "max_ttl 25h of tier 'critical' is over the hard maximum 1d");
    finish_error(HEAD "tiers:\n  medium: {default_ttl: 30d, max_ttl: 7d}\n",
                 "t.yaml:4:3: ", "default_ttl 30d of tier 'medium' is over its max_ttl 7d");
    finish_error(HEAD "tiers:\n  low: {default_ttl: never, max_ttl: 1w}\n",
                 "t.yaml:4:3: ", "default_ttl never of tier 'low' is over its max_ttl 7d");
}

static void test_tiers_at_the_limits(void **state)
{
    struct coffer_policy *p;
    const struct coffer_policy_org *o;

    (void)state;
    p = load_ok(HEAD "tiers:\n  high: {default_ttl: 7d, max_ttl: 1w}\n"
                     "  critical: {default_ttl: 24h, max_ttl: 86400s}\n"
                     "  medium: {default_ttl: never, max_ttl: never}\n");
    o = coffer_policy_org_find(p, "acme");
    assert_non_null(o);
    assert_int_equal(o->tiers[COFFER_TIER_HIGH].default_ttl, 604800);
    assert_int_equal(o->tiers[COFFER_TIER_HIGH].max_ttl, 604800);
    assert_true(o->tiers[COFFER_TIER_HIGH].declared);
    assert_int_equal(o->tiers[COFFER_TIER_CRITICAL].max_ttl, 86400);
    assert_int_equal(o->tiers[COFFER_TIER_MEDIUM].default_ttl, COFFER_TTL_NEVER);
    /* Low was not written: the built-in lifetimes, marked as such. */
    assert_false(o->tiers[COFFER_TIER_LOW].declared);
    assert_int_equal(o->tiers[COFFER_TIER_LOW].default_ttl, 90 * 86400);
    assert_int_equal(o->tiers[COFFER_TIER_LOW].max_ttl, COFFER_TTL_NEVER);
    coffer_policy_free(&p);
}

static void test_unknown_tier(void **state)
{
    (void)state;
    add_error(HEAD "tiers:\n  urgent: {default_ttl: 1h, max_ttl: 1h}\n",
              "t.yaml:4:3: ", "unknown tier 'urgent' (tiers are low, medium, high, critical)");
}

/* ---- References (checked by finish) ---- */

#define PROJECT_HEAD HEAD TYPES "projects:\n  p:\n    phases: [a, b]\n"

static void test_references(void **state)
{
    (void)state;
    finish_error(PROJECT_HEAD "    members: [builder, ghost]\n", "t.yaml:9:24: ",
                 "agent type 'ghost' in the members of project 'p' is not declared in org 'acme'");
    finish_error(PROJECT_HEAD "    members: [builder]\n    credentials:\n      c:\n"
                              "        grants:\n          - agent_type: deployer\n",
                 "t.yaml:13:25: ", "agent type 'deployer' is not a member of project 'p'");
    finish_error(PROJECT_HEAD "    members: [builder]\n    credentials:\n      c:\n"
                              "        grants:\n          - agent_type: builder\n"
                              "            phases: [b, c]\n",
                 "t.yaml:14:25: ",
                 "phase 'c' of a grant of credential rule 'p/c' is not a phase of project 'p'");
    finish_error(PROJECT_HEAD "    credentials:\n      c:\n        expire_on_phase_end: z\n",
                 "t.yaml:11:30: ",
                 "expire_on_phase_end 'z' of credential rule 'p/c' is not a phase of project 'p'");
    finish_error(PROJECT_HEAD "    initial_phase: c\n",
                 "t.yaml:9:20: ", "initial_phase 'c' is not a phase of project 'p'");
}

static void test_references_across_files(void **state)
{
    static const char *types = HEAD TYPES;
    static const char *project = HEAD "projects:\n  p:\n    phases: [a]\n"
                                      "    members: [builder, deployer]\n";
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};

    (void)state;
    /* A project may name agent types that another file of the org declares. */
    assert_int_equal(coffer_policy_new(&p), COFFER_OK);
    assert_int_equal(coffer_policy_add_buffer(p, "p.yaml", project, strlen(project), &d),
                     COFFER_OK);
    assert_int_equal(coffer_policy_add_buffer(p, "types.yaml", types, strlen(types), &d),
                     COFFER_OK);
    assert_int_equal(coffer_policy_finish(p, &d), COFFER_OK);
    assert_int_equal(d.n, 0);
    assert_int_equal(p->n_orgs, 1);
    assert_int_equal(p->orgs[0].n_files, 2);
    assert_string_equal(p->orgs[0].files[0].path, "p.yaml");
    assert_string_equal(p->orgs[0].files[1].path, "types.yaml");
    coffer_policy_free(&p);
}

/* ---- Repeats ---- */

static void test_duplicates_in_lists(void **state)
{
    (void)state;
    add_error(HEAD "projects:\n  p:\n    phases: [a, b, a]\n", "t.yaml:5:20: ",
              "phase 'a' is listed twice in project 'p' (first at line 5, column 14)");
    add_error(HEAD TYPES "projects:\n  p:\n    phases: [a]\n    members: [builder, builder]\n",
              "t.yaml:9:24: ",
              "agent type 'builder' is listed twice in the members of project 'p' (first at line "
              "9, column 15)");
    add_error(PROJECT_HEAD "    members: [builder]\n    credentials:\n      c:\n"
                           "        grants:\n          - agent_type: builder\n"
                           "          - agent_type: builder\n            phases: [a]\n",
              "t.yaml:14:13: ",
              "duplicate grant to builder in credential rule 'p/c' (first at line 13, column 13)");
    add_error(PROJECT_HEAD "    members: [builder]\n    credentials:\n      c:\n"
                           "        grants:\n          - {agent_type: builder, instance: i1}\n"
                           "          - {agent_type: builder, instance: i1}\n",
              "t.yaml:14:13: ", "duplicate grant to builder/i1 in credential rule 'p/c'");
    add_error(PROJECT_HEAD "    credentials:\n      c:\n"
                           "        grants:\n          - {agent_type: builder, phases: [a, a]}\n",
              "t.yaml:12:47: ", "phase 'a' is listed twice in a grant of credential rule 'p/c'");
    add_error(PROJECT_HEAD "    credentials:\n      c:\n        purposes: [\"x *\", \"x *\"]\n",
              "t.yaml:11:27: ", "purpose pattern 'x *' is listed twice in credential rule 'p/c'");
}

static void test_grant_instances_are_distinct(void **state)
{
    struct coffer_policy *p;
    const struct coffer_policy_cred *c;

    (void)state;
    /* One grant to every builder and one to a single builder are different grants. */
    p = load_ok(PROJECT_HEAD "    members: [builder]\n    credentials:\n      c:\n"
                             "        grants:\n          - {agent_type: builder, instance: z1}\n"
                             "          - {agent_type: builder}\n"
                             "          - {agent_type: builder, instance: a1}\n");
    c = &p->orgs[0].projects[0].creds[0];
    assert_int_equal(c->n_grants, 3);
    assert_null(c->grants[0].instance);
    assert_string_equal(c->grants[1].instance, "a1");
    assert_string_equal(c->grants[2].instance, "z1");
    coffer_policy_free(&p);
}

static void test_empty_lists(void **state)
{
    (void)state;
    add_error(HEAD "projects:\n  p:\n    phases: []\n",
              "t.yaml:5:13: ", "project 'p' must have at least one phase");
    add_error(PROJECT_HEAD "    credentials:\n      c:\n"
                           "        grants:\n          - {agent_type: builder, phases: []}\n",
              "t.yaml:12:43: ",
              "'phases' of a grant must name at least one phase; leave 'phases' out to grant in "
              "every phase");
}

static void test_limits(void **state)
{
    char *yaml = coffer_calloc(64 * 1024, 1);
    size_t n;

    (void)state;
    assert_non_null(yaml);
    n = (size_t)snprintf(yaml, 1024, HEAD "projects:\n  p:\n    phases: [");
    for (int i = 0; i <= COFFER_POLICY_PHASES_MAX; i++) {
        n += (size_t)snprintf(yaml + n, 64, "%sp%02d", i > 0 ? ", " : "", i);
    }
    snprintf(yaml + n, 8, "]\n");
    /* The 33rd phase: "    phases: [" is 13 columns, each earlier one 5. */
    add_error(yaml, "t.yaml:5:174: ", "project 'p' has more than 32 phases");

    n = (size_t)snprintf(yaml, 1024,
                         HEAD TYPES "projects:\n  p:\n    phases: [a]\n    credentials:\n"
                                    "      c:\n        grants:\n");
    for (int i = 0; i <= COFFER_POLICY_GRANTS_MAX; i++) {
        n += (size_t)snprintf(yaml + n, 128, "          - {agent_type: builder, instance: i%d}\n",
                              i);
    }
    add_error(yaml, "t.yaml:268:13: ", "credential rule 'p/c' has more than 256 grants");

    n = (size_t)snprintf(yaml, 1024,
                         HEAD "projects:\n  p:\n    phases: [a]\n    credentials:\n"
                              "      c:\n        purposes:\n");
    for (int i = 0; i <= COFFER_POLICY_PURPOSES_MAX; i++) {
        n += (size_t)snprintf(yaml + n, 64, "          - purpose %d\n", i);
    }
    add_error(yaml, "t.yaml:73:13: ", "credential rule 'p/c' has more than 64 purpose patterns");
    coffer_free(yaml);
}

/* ---- Several files ---- */

static void test_declared_twice_across_files(void **state)
{
    static const char *a = HEAD TYPES "tiers:\n  high: {default_ttl: 1d, max_ttl: 2d}\n"
                                      "projects:\n  payments:\n    phases: [a]\n";
    static const char *b = HEAD "agent_types:\n  deployer:\n"
                                "tiers:\n  high: {default_ttl: 1d, max_ttl: 3d}\n"
                                "projects:\n  other:\n    phases: [a]\n"
                                "  payments:\n    phases: [b]\n";
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};

    (void)state;
    assert_int_equal(coffer_policy_new(&p), COFFER_OK);
    assert_int_equal(coffer_policy_add_buffer(p, "a.yaml", a, strlen(a), &d), COFFER_OK);
    assert_int_equal(coffer_policy_add_buffer(p, "b.yaml", b, strlen(b), &d), COFFER_E_INVALID);
    assert_int_equal(d.n, 3);
    expect_in(&d, "b.yaml:4:3: ", "agent type 'deployer' is already declared at a.yaml:5:3");
    expect_in(&d, "b.yaml:6:3: ", "tier 'high' is already declared at a.yaml:7:3");
    expect_in(&d, "b.yaml:10:3: ", "project 'payments' is already declared at a.yaml:9:3");
    coffer_policy_diags_cleanup(&d);
    coffer_policy_free(&p);
}

static void test_two_orgs(void **state)
{
    static const char *a = "version: 1\norg: zeta\n";
    static const char *b = "version: 1\norg: alpha\n";
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};

    (void)state;
    assert_int_equal(coffer_policy_new(&p), COFFER_OK);
    assert_int_equal(coffer_policy_add_buffer(p, "a.yaml", a, strlen(a), NULL), COFFER_OK);
    assert_int_equal(coffer_policy_add_buffer(p, "b.yaml", b, strlen(b), NULL), COFFER_OK);
    assert_int_equal(coffer_policy_finish(p, &d), COFFER_OK);
    assert_int_equal(p->n_orgs, 2);
    assert_string_equal(p->orgs[0].name, "alpha");
    assert_string_equal(p->orgs[1].name, "zeta");
    assert_non_null(coffer_policy_org_find(p, "zeta"));
    assert_null(coffer_policy_org_find(p, "zet"));
    assert_null(coffer_policy_org_find(p, NULL));
    coffer_policy_free(&p);
}

/* ---- Collecting ---- */

static void test_collects_every_problem(void **state)
{
    static const char *yaml = "version: 3\n"
                              "org: acme\n"
                              "agent_types:\n"
                              "  Builder:\n"
                              "  deployer:\n"
                              "    description: \"x\\ty\"\n"
                              "tiers:\n"
                              "  low: {default_ttl: 30, max_ttl: never}\n"
                              "projects:\n"
                              "  p:\n"
                              "    phases: {}\n"
                              "    colour: red\n";
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};

    (void)state;
    assert_int_equal(coffer_policy_new(&p), COFFER_OK);
    assert_int_equal(coffer_policy_add_buffer(p, "t.yaml", yaml, strlen(yaml), &d),
                     COFFER_E_INVALID);
    assert_int_equal(d.n, 6);
    assert_int_equal(d.dropped, 0);
    expect_in(&d, "t.yaml:1:10: ", "unsupported policy version '3'");
    expect_in(&d, "t.yaml:4:3: ", "agent type name 'Builder' is not valid");
    expect_in(&d, "t.yaml:6:18: ", "holds a control character");
    expect_in(&d, "t.yaml:8:22: ", "a bare number has no unit");
    expect_in(&d, "t.yaml:11:13: ", "'phases' must be a sequence");
    expect_in(&d, "t.yaml:12:5: ", "unknown key 'colour' in project 'p'");
    coffer_policy_diags_cleanup(&d);
    assert_int_equal(d.n, 0);
    assert_null(d.lines[0]);
    coffer_policy_free(&p);
}

static void test_diagnostics_cap(void **state)
{
    char *yaml = coffer_calloc(64 * 1024, 1);
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};
    size_t n;

    (void)state;
    assert_non_null(yaml);
    n = (size_t)snprintf(yaml, 64, "version: 1\norg: acme\nagent_types:\n");
    for (int i = 0; i < 150; i++) {
        n += (size_t)snprintf(yaml + n, 64, "  Bad%d:\n", i);
    }
    assert_int_equal(coffer_policy_new(&p), COFFER_OK);
    assert_int_equal(coffer_policy_add_buffer(p, "t.yaml", yaml, n, &d), COFFER_E_INVALID);
    assert_int_equal(d.n, COFFER_POLICY_DIAGS_MAX);
    assert_int_equal(d.dropped, 50);
    assert_string_equal(d.lines[0], "t.yaml:4:3: agent type name 'Bad0' is not valid: "
                                    "names are 1 to 63 lower-case letters, digits, '_' or '-', "
                                    "starting with a letter or digit");
    expect_in(&d, "t.yaml:103:3: ", "'Bad99'");
    coffer_policy_diags_cleanup(&d);
    coffer_policy_free(&p);
    coffer_free(yaml);
}

/* ---- Nulls, states and files ---- */

static void test_empty_values(void **state)
{
    struct coffer_policy *p;
    const struct coffer_policy_org *o;

    (void)state;
    /* An agent type's attributes may be left out in every spelling of "empty". */
    p = load_ok(HEAD "agent_types:\n  a:\n  b: ~\n  c: null\n  d: {}\n  \"null\":\n");
    o = coffer_policy_org_find(p, "acme");
    assert_int_equal(o->n_agent_types, 5);
    assert_string_equal(o->agent_types[4].name, "null");
    for (size_t i = 0; i < o->n_agent_types; i++) {
        assert_null(o->agent_types[i].description);
    }
    coffer_policy_free(&p);
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    members:\n",
              "t.yaml:6:13: ", "'members' must be a sequence of agent type names, not empty");
    add_error(HEAD "projects:\n  p:\n    phases: [a]\n    initial_phase: ~\n",
              "t.yaml:6:20: ", "'initial_phase' must be a name, not empty");
}

static void test_finish_once(void **state)
{
    static const char *yaml = "version: 1\norg: acme\n";
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};

    (void)state;
    assert_int_equal(coffer_policy_new(&p), COFFER_OK);
    assert_int_equal(coffer_policy_add_buffer(p, "t.yaml", yaml, strlen(yaml), &d), COFFER_OK);
    assert_int_equal(coffer_policy_finish(p, &d), COFFER_OK);
    assert_int_equal(coffer_policy_finish(p, &d), COFFER_E_STATE);
    assert_int_equal(coffer_policy_add_buffer(p, "u.yaml", yaml, strlen(yaml), &d), COFFER_E_STATE);
    assert_int_equal(d.n, 0);
    coffer_policy_free(&p);
    coffer_policy_free(&p);
    assert_int_equal(coffer_policy_finish(NULL, &d), COFFER_E_INVALID);
}

static char *temp_dir(void)
{
    char tmpl[] = "/tmp/coffer-policy-XXXXXX";
    char *dir = mkdtemp(tmpl);

    assert_non_null(dir);
    return strdup(dir);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void test_add_file(void **state)
{
    static const char *yaml = "version: 1\norg: acme\n";
    char *dir = temp_dir();
    char path[512];
    char link[512];
    char big[512];
    char *bytes;
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};
    unsigned char md[32];
    char hex[65];

    (void)state;
    snprintf(path, sizeof(path), "%s/acme.yaml", dir);
    snprintf(link, sizeof(link), "%s/link.yaml", dir);
    snprintf(big, sizeof(big), "%s/big.yaml", dir);
    write_file(path, yaml, strlen(yaml));
    assert_int_equal(symlink(path, link), 0);
    bytes = calloc(COFFER_POLICY_FILE_MAX + 10, 1);
    assert_non_null(bytes);
    memset(bytes, '#', COFFER_POLICY_FILE_MAX + 10);
    write_file(big, bytes, COFFER_POLICY_FILE_MAX + 10);
    free(bytes);

    assert_int_equal(coffer_policy_new(&p), COFFER_OK);
    /* A file that cannot be read is an error of its own, not a diagnostic. */
    assert_int_equal(coffer_policy_add_file(p, "/nonexistent/policy.yaml", &d), COFFER_E_IO);
    assert_non_null(strstr(coffer_err_detail(), "/nonexistent/policy.yaml"));
    assert_int_equal(coffer_policy_add_file(p, dir, &d), COFFER_E_IO);
    assert_non_null(strstr(coffer_err_detail(), "is not a regular file"));
    assert_int_equal(d.n, 0);
    /* The size in the message is the file's, although only the limit + 1 bytes are read. */
    assert_int_equal(coffer_policy_add_file(p, big, &d), COFFER_E_INVALID);
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.lines[0], ":1:1: file is 1048586 bytes; the limit is 1048576"));
    coffer_policy_diags_cleanup(&d);
    /* A symbolic link to a policy file is followed. */
    assert_int_equal(coffer_policy_add_file(p, link, &d), COFFER_OK);
    assert_int_equal(coffer_policy_finish(p, &d), COFFER_OK);
    assert_int_equal(p->orgs[0].n_files, 1);
    assert_string_equal(p->orgs[0].files[0].path, link);
    assert_int_equal(EVP_Digest(yaml, strlen(yaml), md, NULL, EVP_sha256(), NULL), 1);
    for (int i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    assert_string_equal(p->orgs[0].files[0].sha256, hex);
    coffer_policy_free(&p);

    assert_int_equal(unlink(link), 0);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(unlink(big), 0);
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

/* ---- The shipped policies ---- */

static void test_shipped_policies_load(void **state)
{
    const char *dirpath = COFFER_SOURCE_DIR "/policy";
    DIR *dir = opendir(dirpath);
    struct dirent *e;
    int found = 0;

    (void)state;
    assert_non_null(dir);
    while ((e = readdir(dir)) != NULL) {
        size_t len = strlen(e->d_name);
        struct coffer_policy *p = NULL;
        struct coffer_policy_diags d = {0};
        char path[1024];
        enum coffer_err r;

        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dirpath, e->d_name);
        assert_int_equal(coffer_policy_new(&p), COFFER_OK);
        r = coffer_policy_add_file(p, path, &d);
        if (r == COFFER_OK) {
            r = coffer_policy_finish(p, &d);
        }
        if (r != COFFER_OK) {
            print_message("%s: %s\n", path, coffer_err_detail());
            dump(&d);
        }
        assert_int_equal(r, COFFER_OK);
        assert_int_equal(d.n, 0);
        assert_int_equal(p->n_orgs, 1);
        coffer_policy_free(&p);
        found++;
    }
    closedir(dir);
    assert_true(found >= 2);
}

static void test_acme_model(void **state)
{
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};
    const struct coffer_policy_org *o;
    const struct coffer_policy_project *pr;
    const struct coffer_policy_cred *c;

    (void)state;
    assert_int_equal(coffer_policy_new(&p), COFFER_OK);
    assert_int_equal(coffer_policy_add_file(p, COFFER_SOURCE_DIR "/policy/acme.yaml", &d),
                     COFFER_OK);
    assert_int_equal(coffer_policy_finish(p, &d), COFFER_OK);
    o = coffer_policy_org_find(p, "acme");
    assert_non_null(o);
    assert_int_equal(o->pos.line, 3);
    assert_int_equal(o->pos.col, 6);

    /* Agent types sorted by name, with their positions in the file. */
    assert_int_equal(o->n_agent_types, 3);
    assert_string_equal(o->agent_types[0].name, "analyst");
    assert_string_equal(o->agent_types[0].description, "Reads production metrics and logs");
    assert_int_equal(o->agent_types[0].pos.line, 10);
    assert_int_equal(o->agent_types[0].pos.col, 3);
    assert_string_equal(o->agent_types[1].name, "builder");
    assert_string_equal(o->agent_types[2].name, "deployer");

    assert_int_equal(o->tiers[COFFER_TIER_LOW].default_ttl, 90 * 86400);
    assert_int_equal(o->tiers[COFFER_TIER_LOW].max_ttl, COFFER_TTL_NEVER);
    assert_int_equal(o->tiers[COFFER_TIER_MEDIUM].max_ttl, 365 * 86400);
    assert_int_equal(o->tiers[COFFER_TIER_HIGH].default_ttl, 86400);
    assert_int_equal(o->tiers[COFFER_TIER_HIGH].max_ttl, 7 * 86400);
    assert_int_equal(o->tiers[COFFER_TIER_CRITICAL].default_ttl, 3600);
    assert_int_equal(o->tiers[COFFER_TIER_CRITICAL].max_ttl, 86400);
    for (int t = 0; t < COFFER_TIER_COUNT; t++) {
        assert_true(o->tiers[t].declared);
    }

    assert_int_equal(o->n_projects, 1);
    pr = &o->projects[0];
    assert_string_equal(pr->name, "payments");
    assert_string_equal(pr->description, "Card payments service");
    /* Phases keep their order; members are sorted. */
    assert_int_equal(pr->n_phases, 4);
    assert_string_equal(pr->phases[0], "design");
    assert_string_equal(pr->phases[3], "production");
    assert_string_equal(pr->initial_phase, "design");
    assert_int_equal(pr->n_members, 3);
    assert_string_equal(pr->members[0], "analyst");
    assert_string_equal(pr->members[1], "builder");
    assert_string_equal(pr->members[2], "deployer");

    assert_int_equal(pr->n_creds, 3);
    assert_string_equal(pr->creds[0].name, "ci-registry");
    assert_string_equal(pr->creds[1].name, "grafana");
    assert_string_equal(pr->creds[2].name, "stripe-live");

    c = &pr->creds[0];
    assert_string_equal(c->expire_on_phase_end, "staging");
    assert_int_equal(c->n_purposes, 1);
    assert_string_equal(c->purposes[0], "push image *");
    assert_int_equal(c->n_grants, 1);
    assert_int_equal(c->grants[0].n_phases, 2);
    assert_string_equal(c->grants[0].phases[0], "build");
    assert_string_equal(c->grants[0].phases[1], "staging");

    c = &pr->creds[1];
    assert_null(c->description);
    assert_null(c->expire_on_phase_end);
    assert_int_equal(c->n_purposes, 0);
    assert_int_equal(c->n_grants, 1);
    assert_string_equal(c->grants[0].agent_type, "analyst");
    assert_null(c->grants[0].instance);
    assert_int_equal(c->grants[0].n_phases, 0);

    /* Grants sorted by agent type: the analyst's single-instance grant comes first. */
    c = &pr->creds[2];
    assert_int_equal(c->n_grants, 2);
    assert_string_equal(c->grants[0].agent_type, "analyst");
    assert_string_equal(c->grants[0].instance, "metrics-1");
    assert_int_equal(c->grants[0].pos.line, 39);
    assert_int_equal(c->grants[0].pos.col, 13);
    assert_string_equal(c->grants[1].agent_type, "deployer");
    assert_null(c->grants[1].instance);
    assert_int_equal(c->n_purposes, 2);
    assert_string_equal(c->purposes[0], "deploy payments *");
    assert_string_equal(c->purposes[1], "reconcile *");
    /* Used only through Coffer: a usage spec and reveal: false. */
    assert_true(c->secretless_only);
    assert_non_null(c->usage);
    assert_int_equal(c->usage->n_destinations, 2);
    assert_string_equal(c->usage->destinations[0].url, "https://api.stripe.com/v1");
    assert_string_equal(c->usage->destinations[1].url, "https://files.stripe.com:443/");
    assert_int_equal(c->usage->n_methods, 2);
    assert_string_equal(c->usage->methods[0], "GET");
    assert_string_equal(c->usage->methods[1], "POST");
    assert_int_equal(c->usage->n_inject, 1);
    assert_false(c->usage->inject[0].query);
    assert_string_equal(c->usage->inject[0].name, "Authorization");
    assert_string_equal(c->usage->inject[0].value, "Bearer {{api_key}}");
    assert_null(pr->creds[0].usage);
    assert_false(pr->creds[0].secretless_only);
    assert_null(pr->creds[1].usage);

    assert_int_equal(o->n_files, 1);
    assert_int_equal(strlen(o->files[0].sha256), 64);
    coffer_policy_free(&p);
}

static void test_initial_phase_and_grant_phase_order(void **state)
{
    struct coffer_policy *p;
    const struct coffer_policy_project *pr;

    (void)state;
    p = load_ok(HEAD TYPES "projects:\n  p:\n    phases: [design, build, ship]\n"
                           "    initial_phase: build\n    members: [builder]\n"
                           "    credentials:\n      c:\n        grants:\n"
                           "          - {agent_type: builder, phases: [ship, design, build]}\n");
    pr = &p->orgs[0].projects[0];
    assert_string_equal(pr->initial_phase, "build");
    assert_string_equal(pr->creds[0].grants[0].phases[0], "design");
    assert_string_equal(pr->creds[0].grants[0].phases[1], "build");
    assert_string_equal(pr->creds[0].grants[0].phases[2], "ship");
    coffer_policy_free(&p);
}

/* ---- TTLs, names and tiers ---- */

static void ttl_ok(const char *s, int64_t want)
{
    int64_t got = 0;

    if (coffer_policy_ttl_parse(s, strlen(s), &got) != COFFER_OK) {
        print_message("TTL '%s': %s\n", s, coffer_err_detail());
        fail();
    }
    assert_int_equal(got, want);
}

static void ttl_bad(const char *s, const char *part)
{
    int64_t got = 7;

    assert_int_equal(coffer_policy_ttl_parse(s, strlen(s), &got), COFFER_E_INVALID);
    assert_int_equal(got, 0);
    if (strstr(coffer_err_detail(), part) == NULL) {
        print_message("TTL '%s': detail '%s' lacks '%s'\n", s, coffer_err_detail(), part);
        fail();
    }
}

static void test_ttl_parse(void **state)
{
    (void)state;
    ttl_ok("1s", 1);
    ttl_ok("90d", 90 * 86400);
    ttl_ok("1d12h", 86400 + 12 * 3600);
    ttl_ok("3600s", 3600);
    ttl_ok("2w", 14 * 86400);
    ttl_ok("1w1d1h1m1s", 7 * 86400 + 86400 + 3600 + 60 + 1);
    ttl_ok("0d1s", 1);
    ttl_ok("never", COFFER_TTL_NEVER);
    ttl_ok("3153600000s", COFFER_TTL_FINITE_MAX);
    ttl_ok("36500d", COFFER_TTL_FINITE_MAX);

    ttl_bad("", "empty");
    ttl_bad("30", "a bare number has no unit");
    ttl_bad("1d30", "the last number has no unit");
    ttl_bad("5y", "unknown unit 'y'");
    ttl_bad("5D", "unknown unit 'D'");
    ttl_bad("1h1d", "unit 'd' comes after 'h'");
    ttl_bad("1h1h", "unit 'h' appears twice");
    ttl_bad("d", "unit 'd' has no number before it");
    ttl_bad("+1d", "'+' is not a number or a unit");
    ttl_bad("-1d", "'-' is not a number or a unit");
    ttl_bad(" 1d", "is not a number or a unit");
    ttl_bad("1d ", "' ' is not a number or a unit");
    ttl_bad("0s", "zero");
    ttl_bad("0d0h", "zero");
    ttl_bad("3153600001s", "at most 100 years");
    ttl_bad("36501d", "at most 100 years");
    ttl_bad("99999999999999999999999999999999w", "at most 100 years");
    ttl_bad("36500d1s", "at most 100 years");
    ttl_bad("Never", "'N' is not a number or a unit");
    ttl_bad("nevers", "'n' is not a number or a unit");
    ttl_bad("1\x01", "unknown unit '\\x01'");
}

static void ttl_fmt(int64_t s, const char *want)
{
    char out[24];

    coffer_policy_ttl_format(s, out);
    assert_string_equal(out, want);
}

static void test_ttl_format(void **state)
{
    (void)state;
    ttl_fmt(COFFER_TTL_NEVER, "never");
    ttl_fmt(1, "1s");
    ttl_fmt(59, "59s");
    ttl_fmt(60, "1m");
    ttl_fmt(3600, "1h");
    ttl_fmt(86400, "1d");
    ttl_fmt(604800, "7d");
    ttl_fmt(90 * 86400, "90d");
    ttl_fmt(36 * 3600, "36h");
    ttl_fmt(86400 + 1, "86401s");
    ttl_fmt(COFFER_TTL_FINITE_MAX, "36500d");
    ttl_fmt(0, "invalid");
    ttl_fmt(-2, "invalid");
}

static void test_names(void **state)
{
    (void)state;
    assert_true(coffer_policy_name_ok("a", 1));
    assert_true(coffer_policy_name_ok("0", 1));
    assert_true(coffer_policy_name_ok("stripe-live_2", 13));
    assert_true(coffer_policy_name_ok(
        "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0", 63));
    assert_false(coffer_policy_name_ok(
        "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz01", 64));
    assert_false(coffer_policy_name_ok("", 0));
    assert_false(coffer_policy_name_ok(NULL, 3));
    assert_false(coffer_policy_name_ok("-a", 2));
    assert_false(coffer_policy_name_ok("_a", 2));
    assert_false(coffer_policy_name_ok("aB", 2));
    assert_false(coffer_policy_name_ok("a.b", 3));
    assert_false(coffer_policy_name_ok("a b", 3));
    assert_false(coffer_policy_name_ok("a/b", 3));
    assert_false(coffer_policy_name_ok("a\0b", 3));
    assert_false(coffer_policy_name_ok("\xc3\xa9", 2));
    /* Only len bytes count. */
    assert_true(coffer_policy_name_ok("ab!", 2));
}

static void test_tiers(void **state)
{
    enum coffer_tier t = COFFER_TIER_LOW;
    struct coffer_policy_tier d;

    (void)state;
    assert_string_equal(coffer_tier_str(COFFER_TIER_LOW), "low");
    assert_string_equal(coffer_tier_str(COFFER_TIER_CRITICAL), "critical");
    assert_null(coffer_tier_str((enum coffer_tier)4));
    assert_null(coffer_tier_str((enum coffer_tier) - 1));
    assert_true(coffer_tier_parse("high", 4, &t));
    assert_int_equal(t, COFFER_TIER_HIGH);
    assert_true(coffer_tier_parse("medium!", 6, &t));
    assert_int_equal(t, COFFER_TIER_MEDIUM);
    assert_false(coffer_tier_parse("hig", 3, &t));
    assert_false(coffer_tier_parse("HIGH", 4, &t));
    assert_false(coffer_tier_parse("highest", 7, &t));
    assert_false(coffer_tier_parse(NULL, 0, &t));
    assert_int_equal(t, COFFER_TIER_MEDIUM);
    assert_int_equal(coffer_tier_hard_max(COFFER_TIER_LOW), COFFER_TTL_NEVER);
    assert_int_equal(coffer_tier_hard_max(COFFER_TIER_MEDIUM), COFFER_TTL_NEVER);
    assert_int_equal(coffer_tier_hard_max(COFFER_TIER_HIGH), 604800);
    assert_int_equal(coffer_tier_hard_max(COFFER_TIER_CRITICAL), 86400);
    assert_int_equal(coffer_tier_hard_max((enum coffer_tier)9), 0);
    d = coffer_policy_tier_default(COFFER_TIER_MEDIUM);
    assert_int_equal(d.default_ttl, 30 * 86400);
    assert_int_equal(d.max_ttl, 365 * 86400);
    assert_false(d.declared);
    d = coffer_policy_tier_default(COFFER_TIER_HIGH);
    assert_int_equal(d.default_ttl, 86400);
    assert_int_equal(d.max_ttl, 604800);
    d = coffer_policy_tier_default(COFFER_TIER_CRITICAL);
    assert_int_equal(d.default_ttl, 3600);
    assert_int_equal(d.max_ttl, 86400);
}

/* ---- Usage specs and reveal ---- */

/* A credential rule 'p/c' whose keys start on line 8, column 9. */
#define CRED HEAD "projects:\n  p:\n    phases: [a]\n    credentials:\n      c:\n"
#define USAGE "        usage:\n"
/* Line 9: the list's '[' at column 25, its first item at column 26. */
#define DESTS(x) "          destinations: " x "\n"
/* Line 10: the list's '[' at column 20, its first item at column 21. */
#define METHODS(x) "          methods: " x "\n"
#define GOOD_DESTS DESTS("[\"https://api.example.com/v1\"]")
#define GOOD_METHODS METHODS("[GET]")
/* inject entries start on line 12, their keys at column 15. */
#define INJECT "          inject:\n"

static void test_usage_valid(void **state)
{
    struct coffer_policy *p;
    const struct coffer_policy_cred *c;
    const struct coffer_policy_usage *u;

    (void)state;
    p = load_ok(CRED USAGE "          destinations:\n"
                           "            - \"https://files.example.com:8443/\"\n"
                           "            - https://api.example.com/v1\n"
                           "            - https://*.svc.example.com\n"
                           "            - \"https://[2001:db8::1]/x\"\n"
                           "          methods: [POST, GET, DELETE]\n" INJECT
                           "            - header: Authorization\n"
                           "              value: \"Bearer {{api_key}}\"\n"
                           "            - query: key\n"
                           "              value: \"{{api_key}}\"\n"
                           "            - query: Authorization\n"
                           "              value: \"x-{{user}}:{{api_key}}\"\n"
                           "        reveal: false\n");
    c = &p->orgs[0].projects[0].creds[0];
    u = c->usage;
    assert_non_null(u);
    assert_true(c->secretless_only);
    assert_int_equal(u->pos.line, 9);
    assert_int_equal(u->pos.col, 11);
    /* Destinations in byte order, methods in the canonical order, injects as declared. */
    assert_int_equal(u->n_destinations, 4);
    assert_string_equal(u->destinations[0].url, "https://*.svc.example.com");
    assert_string_equal(u->destinations[1].url, "https://[2001:db8::1]/x");
    assert_string_equal(u->destinations[2].url, "https://api.example.com/v1");
    assert_string_equal(u->destinations[3].url, "https://files.example.com:8443/");
    assert_int_equal(u->destinations[3].pos.line, 10);
    assert_int_equal(u->destinations[3].pos.col, 15);
    assert_int_equal(u->n_methods, 3);
    assert_string_equal(u->methods[0], "GET");
    assert_string_equal(u->methods[1], "POST");
    assert_string_equal(u->methods[2], "DELETE");
    assert_int_equal(u->n_inject, 3);
    assert_false(u->inject[0].query);
    assert_string_equal(u->inject[0].name, "Authorization");
    assert_string_equal(u->inject[0].value, "Bearer {{api_key}}");
    assert_int_equal(u->inject[0].pos.line, 16);
    assert_int_equal(u->inject[0].pos.col, 15);
    assert_true(u->inject[1].query);
    assert_string_equal(u->inject[1].name, "key");
    /* A header and a query parameter of the same name are two places. */
    assert_true(u->inject[2].query);
    assert_string_equal(u->inject[2].name, "Authorization");
    coffer_policy_free(&p);

    /* reveal: true is the default; inject may be left out or empty. */
    p = load_ok(CRED USAGE GOOD_DESTS GOOD_METHODS "        reveal: true\n");
    c = &p->orgs[0].projects[0].creds[0];
    assert_non_null(c->usage);
    assert_false(c->secretless_only);
    assert_int_equal(c->usage->n_inject, 0);
    assert_null(c->usage->inject);
    coffer_policy_free(&p);
    p = load_ok(CRED USAGE GOOD_DESTS GOOD_METHODS "          inject: []\n");
    assert_int_equal(p->orgs[0].projects[0].creds[0].usage->n_inject, 0);
    coffer_policy_free(&p);

    /* Without usage there is no spec, and the credential is revealed. */
    p = load_ok(CRED "        description: plain\n");
    c = &p->orgs[0].projects[0].creds[0];
    assert_null(c->usage);
    assert_false(c->secretless_only);
    coffer_policy_free(&p);
}

static void test_usage_destinations(void **state)
{
    char yaml[4096];
    size_t o;

    (void)state;
    add_error(CRED USAGE DESTS("[\"http://api.example.com\"]") GOOD_METHODS, "t.yaml:9:26: ",
              "destination 'http://api.example.com' of credential rule 'p/c' must use https, not "
              "http");
    add_error(CRED USAGE DESTS("[ftp://api.example.com]") GOOD_METHODS, "t.yaml:9:26: ",
              "destination 'ftp://api.example.com' of credential rule 'p/c' must start with "
              "https://");
    add_error(CRED USAGE DESTS("[\"https://api.example.com/v1?x=1\"]") GOOD_METHODS,
              "t.yaml:9:26: ", "holds a query ('?')");
    add_error(CRED USAGE DESTS("[\"https://api.example.com/v1#top\"]") GOOD_METHODS,
              "t.yaml:9:26: ", "holds a fragment ('#')");
    add_error(CRED USAGE DESTS("[\"https://me@api.example.com/\"]") GOOD_METHODS,
              "t.yaml:9:26: ", "holds user info ('@')");
    add_error(CRED USAGE DESTS("[\"https://api.example.com:0/\"]") GOOD_METHODS, "t.yaml:9:26: ",
              "has a port that is not a number from 1 to 65535 without leading zeros");
    add_error(CRED USAGE DESTS("[\"https://api.example.com:0443/\"]") GOOD_METHODS,
              "t.yaml:9:26: ", "has a port that is not a number from 1 to 65535");
    add_error(CRED USAGE DESTS("[\"https://api.example.com:65536\"]") GOOD_METHODS,
              "t.yaml:9:26: ", "has a port that is not a number from 1 to 65535");
    add_error(CRED USAGE DESTS("[\"https://api.example.com:\"]") GOOD_METHODS,
              "t.yaml:9:26: ", "has a port that is not a number from 1 to 65535");
    add_error(CRED USAGE DESTS("[\"https:///v1\"]") GOOD_METHODS, "t.yaml:9:26: ", "has no host");
    add_error(CRED USAGE DESTS("[\"https://[::1/\"]") GOOD_METHODS,
              "t.yaml:9:26: ", "has an IPv6 address without its ']'");
    add_error(CRED USAGE DESTS("[\"https://api example.com/\"]") GOOD_METHODS,
              "t.yaml:9:26: ", "holds a space, a control character or a byte outside ASCII");
    add_error(CRED USAGE DESTS("[\"https://b\xc3\xbc"
                               "cher.example/\"]") GOOD_METHODS,
              "t.yaml:9:26: ", "byte outside ASCII (write an international host name as punycode");
    /* What only the broker's checker knows: dot segments, bad labels, a one-label wildcard. */
    add_error(CRED USAGE DESTS("[\"https://api.example.com/v1/../admin\"]") GOOD_METHODS,
              "t.yaml:9:26: ", "of credential rule 'p/c' is refused by the broker: ");
    add_error(CRED USAGE DESTS("[\"https://api..example.com/\"]") GOOD_METHODS,
              "t.yaml:9:26: ", "is refused by the broker: ");
    add_error(CRED USAGE DESTS("[\"https://*.com/\"]") GOOD_METHODS,
              "t.yaml:9:26: ", "is refused by the broker: ");
    add_error(CRED USAGE DESTS("[\"https://api.example.com./\"]") GOOD_METHODS,
              "t.yaml:9:26: ", "is refused by the broker: ");
    /* Lists: kinds, emptiness, repeats, the limit. */
    add_error(CRED USAGE DESTS("https://api.example.com") GOOD_METHODS, "t.yaml:9:25: ",
              "'destinations' of credential rule 'p/c' must be a sequence of https URLs, not text");
    add_error(CRED USAGE DESTS("[]") GOOD_METHODS, "t.yaml:9:25: ",
              "'destinations' of credential rule 'p/c' must list at least one destination");
    add_error(CRED USAGE DESTS("[[https://a.example.com]]") GOOD_METHODS, "t.yaml:9:26: ",
              "a destination of credential rule 'p/c' must be a URL, not a sequence");
    add_error(CRED USAGE DESTS("[https://a.example.com, https://a.example.com]") GOOD_METHODS,
              "t.yaml:9:49: ",
              "destination 'https://a.example.com' is listed twice in credential rule 'p/c' (first "
              "at line 9, column 26)");
    o = (size_t)snprintf(yaml, sizeof(yaml), "%s", CRED USAGE "          destinations:\n");
    for (int i = 0; i < COFFER_POLICY_DESTS_MAX + 1; i++) {
        o += (size_t)snprintf(yaml + o, sizeof(yaml) - o, "            - https://h%d.example.com\n",
                              i);
    }
    snprintf(yaml + o, sizeof(yaml) - o, "%s", GOOD_METHODS);
    add_error(yaml, "t.yaml:26:15: ", "credential rule 'p/c' has more than 16 destinations");
    /* Exactly the limit loads. */
    o = (size_t)snprintf(yaml, sizeof(yaml), "%s", CRED USAGE "          destinations:\n");
    for (int i = 0; i < COFFER_POLICY_DESTS_MAX; i++) {
        o += (size_t)snprintf(yaml + o, sizeof(yaml) - o, "            - https://h%d.example.com\n",
                              i);
    }
    snprintf(yaml + o, sizeof(yaml) - o, "%s", GOOD_METHODS);
    {
        struct coffer_policy *p = load_ok(yaml);

        assert_int_equal(p->orgs[0].projects[0].creds[0].usage->n_destinations, 16);
        coffer_policy_free(&p);
    }
}

static void test_usage_dest_length(void **state)
{
    char *yaml;
    char *url;
    size_t n = COFFER_POLICY_DEST_MAX + 1;

    (void)state;
    url = calloc(n + 1, 1);
    yaml = calloc(n + 512, 1);
    assert_non_null(url);
    assert_non_null(yaml);
    memcpy(url, "https://api.example.com/", 24);
    memset(url + 24, 'a', n - 24);
    snprintf(yaml, n + 512, CRED USAGE "          destinations: [\"%s\"]\n" GOOD_METHODS, url);
    add_error(yaml, "t.yaml:9:26: ", "is 2049 bytes; the limit is 2048");
    free(url);
    free(yaml);
}

static void test_usage_methods(void **state)
{
    (void)state;
    add_error(CRED USAGE GOOD_DESTS METHODS("[get]"), "t.yaml:10:21: ",
              "method 'get' of credential rule 'p/c' is not one of GET, HEAD, POST, PUT, PATCH, "
              "DELETE, OPTIONS (in upper case)");
    add_error(CRED USAGE GOOD_DESTS METHODS("[GET, CONNECT]"),
              "t.yaml:10:26: ", "method 'CONNECT' of credential rule 'p/c' is not one of");
    add_error(CRED USAGE GOOD_DESTS METHODS("[GET, TRACE]"),
              "t.yaml:10:26: ", "method 'TRACE' of credential rule 'p/c'");
    add_error(CRED USAGE GOOD_DESTS METHODS("[GET, [POST]]"),
              "t.yaml:10:26: ", "method 'a sequence' of credential rule 'p/c' is not one of");
    add_error(CRED USAGE GOOD_DESTS METHODS("[]"),
              "t.yaml:10:20: ", "'methods' of credential rule 'p/c' must list at least one method");
    add_error(CRED USAGE GOOD_DESTS METHODS("GET"), "t.yaml:10:20: ",
              "'methods' of credential rule 'p/c' must be a sequence of HTTP methods, not text");
    add_error(CRED USAGE GOOD_DESTS METHODS("[GET, POST, GET]"), "t.yaml:10:32: ",
              "method GET is listed twice in credential rule 'p/c' (first at line 10, column 21)");
    add_error(
        CRED USAGE GOOD_DESTS METHODS("[GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, GET, POST]"),
        "t.yaml:10:72: ", "credential rule 'p/c' has more than 8 methods");
}

static void test_usage_shape(void **state)
{
    (void)state;
    add_error(CRED "        usage: yes\n", "t.yaml:8:16: ",
              "'usage' of credential rule 'p/c' must be a mapping with destinations, methods and "
              "inject, not text");
    add_error(CRED USAGE GOOD_METHODS, "t.yaml:8:9: ",
              "missing required key 'destinations' in the usage of credential rule 'p/c'");
    add_error(CRED USAGE GOOD_DESTS, "t.yaml:8:9: ",
              "missing required key 'methods' in the usage of credential rule 'p/c'");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS "          hosts: [a]\n", "t.yaml:11:11: ",
              "unknown key 'hosts' in the usage of credential rule 'p/c' (known keys: "
              "destinations, methods, inject)");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS "          inject: {header: A}\n",
              "t.yaml:11:19: ",
              "'inject' of credential rule 'p/c' must be a sequence of inject entries, not a "
              "mapping");
}

static void test_usage_inject(void **state)
{
    char yaml[4096];
    size_t o;

    (void)state;
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT "            - x\n", "t.yaml:12:15: ",
              "an inject entry of credential rule 'p/c' must be a mapping with header or query, "
              "and value, not text");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
              "            - header: X-Key\n              query: key\n"
              "              value: \"{{k}}\"\n",
              "t.yaml:13:15: ",
              "an inject entry of credential rule 'p/c' has both 'header' and 'query'; give one");
    add_error(
        CRED USAGE GOOD_DESTS GOOD_METHODS INJECT "            - value: \"{{k}}\"\n",
        "t.yaml:12:15: ", "an inject entry of credential rule 'p/c' needs 'header' or 'query'");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT "            - header: X-Key\n",
              "t.yaml:12:15: ",
              "missing required key 'value' in an inject entry of credential rule 'p/c'");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
              "            - header: X-Key\n              value: \"{{k}}\"\n"
              "              where: body\n",
              "t.yaml:14:15: ", "unknown key 'where' in an inject entry of credential rule 'p/c'");
    /* Header names: RFC 9110 tokens, never the framing headers. */
    add_error(
        CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
        "            - header: X Key\n              value: \"{{k}}\"\n",
        "t.yaml:12:23: ", "header name 'X Key' of credential rule 'p/c' is not an HTTP token");
    add_error(
        CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
        "            - header: \"X-Key:\"\n              value: \"{{k}}\"\n",
        "t.yaml:12:23: ", "header name 'X-Key:' of credential rule 'p/c' is not an HTTP token");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
              "            - header: \"\"\n              value: \"{{k}}\"\n",
              "t.yaml:12:23: ", "header name '' of credential rule 'p/c' is empty");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
              "            - header: [a]\n              value: \"{{k}}\"\n",
              "t.yaml:12:23: ",
              "the header name of an inject entry of credential rule 'p/c' must be text, not a "
              "sequence");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
              "            - header: Host\n              value: \"{{k}}\"\n",
              "t.yaml:12:23: ", "header name 'Host' of credential rule 'p/c' is set by Coffer");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
              "            - header: content-length\n              value: \"{{k}}\"\n",
              "t.yaml:12:23: ", "is set by Coffer itself");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
              "            - header: Transfer-Encoding\n              value: \"{{k}}\"\n",
              "t.yaml:12:23: ", "is set by Coffer itself");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
              "            - header: CONNECTION\n              value: \"{{k}}\"\n",
              "t.yaml:12:23: ", "is set by Coffer itself");
    /* Query parameter names: 1..64 of [A-Za-z0-9._~-]. */
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
              "            - query: \"a&b\"\n              value: \"{{k}}\"\n",
              "t.yaml:12:22: ",
              "query parameter name 'a&b' of credential rule 'p/c' may hold only letters, digits "
              "and . _ ~ -");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
              "            - query: "
              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
              "              value: \"{{k}}\"\n",
              "t.yaml:12:22: ", "must be 1 to 64 bytes");
    /* Templates: the broker's syntax. */
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
              "            - header: Authorization\n              value: \"Bearer {{api key}}\"\n",
              "t.yaml:13:22: ",
              "the value template of an inject entry of credential rule 'p/c' is not valid: ");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
              "            - header: Authorization\n              value: \"Bearer {{api_key\"\n",
              "t.yaml:13:22: ", "is not valid: ");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
              "            - header: Authorization\n              value: \"Bearer }}\"\n",
              "t.yaml:13:22: ", "is not valid: ");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
              "            - header: Authorization\n              value: [a]\n",
              "t.yaml:13:22: ",
              "the value of an inject entry of credential rule 'p/c' must be a template, not a "
              "sequence");
    /* One place once: header names without regard to case, query names exactly. */
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
              "            - header: Authorization\n              value: \"{{k}}\"\n"
              "            - header: authorization\n              value: \"{{j}}\"\n",
              "t.yaml:14:15: ",
              "header 'authorization' is injected twice in credential rule 'p/c' (first at line "
              "12, column 15)");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
              "            - query: key\n              value: \"{{k}}\"\n"
              "            - query: key\n              value: \"{{j}}\"\n",
              "t.yaml:14:15: ", "query parameter 'key' is injected twice");
    {
        struct coffer_policy *p =
            load_ok(CRED USAGE GOOD_DESTS GOOD_METHODS INJECT
                    "            - query: key\n              value: \"{{k}}\"\n"
                    "            - query: KEY\n              value: \"{{j}}\"\n");

        assert_int_equal(p->orgs[0].projects[0].creds[0].usage->n_inject, 2);
        coffer_policy_free(&p);
    }
    /* At most 8 entries. */
    o = (size_t)snprintf(yaml, sizeof(yaml), "%s", CRED USAGE GOOD_DESTS GOOD_METHODS INJECT);
    for (int i = 0; i < COFFER_POLICY_INJECTS_MAX + 1; i++) {
        o += (size_t)snprintf(yaml + o, sizeof(yaml) - o,
                              "            - header: X-K%d\n              value: \"{{k}}\"\n", i);
    }
    add_error(yaml, "t.yaml:28:15: ", "credential rule 'p/c' has more than 8 inject entries");
}

static void test_reveal(void **state)
{
    (void)state;
    add_error(CRED "        reveal: false\n", "t.yaml:8:17: ",
              "'reveal: false' in credential rule 'p/c' needs a 'usage': without one the "
              "credential could not be used at all");
    add_error(CRED "        grants: []\n        reveal: false\n",
              "t.yaml:9:17: ", "needs a 'usage'");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS "        reveal: \"false\"\n", "t.yaml:11:17: ",
              "'reveal' of credential rule 'p/c' must be true or false, written without quotes");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS "        reveal: no\n", "t.yaml:11:17: ",
              "'reveal' of credential rule 'p/c' must be true or false, not 'no'");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS "        reveal: False\n",
              "t.yaml:11:17: ", "must be true or false, not 'False'");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS "        reveal: [false]\n", "t.yaml:11:17: ",
              "'reveal' of credential rule 'p/c' must be true or false, not a sequence");
    add_error(CRED USAGE GOOD_DESTS GOOD_METHODS "        reveal:\n",
              "t.yaml:11:16: ", "must be true or false, not empty");
    /* reveal: true needs nothing. */
    {
        struct coffer_policy *p = load_ok(CRED "        reveal: true\n");

        assert_false(p->orgs[0].projects[0].creds[0].secretless_only);
        coffer_policy_free(&p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_documents),
        cmocka_unit_test(test_aliases_anchors_tags),
        cmocka_unit_test(test_billion_laughs),
        cmocka_unit_test(test_depth_bomb),
        cmocka_unit_test(test_too_many_nodes),
        cmocka_unit_test(test_file_too_big),
        cmocka_unit_test(test_scalar_too_long),
        cmocka_unit_test(test_nul_and_utf8),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_all_duplicate_keys_reported),
        cmocka_unit_test(test_wrong_kinds),
        cmocka_unit_test(test_missing_keys),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_longest_name),
        cmocka_unit_test(test_bad_text),
        cmocka_unit_test(test_ttl_errors_in_files),
        cmocka_unit_test(test_tier_limits),
        cmocka_unit_test(test_tiers_at_the_limits),
        cmocka_unit_test(test_unknown_tier),
        cmocka_unit_test(test_references),
        cmocka_unit_test(test_references_across_files),
        cmocka_unit_test(test_duplicates_in_lists),
        cmocka_unit_test(test_grant_instances_are_distinct),
        cmocka_unit_test(test_empty_lists),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_declared_twice_across_files),
        cmocka_unit_test(test_two_orgs),
        cmocka_unit_test(test_collects_every_problem),
        cmocka_unit_test(test_diagnostics_cap),
        cmocka_unit_test(test_empty_values),
        cmocka_unit_test(test_finish_once),
        cmocka_unit_test(test_add_file),
        cmocka_unit_test(test_shipped_policies_load),
        cmocka_unit_test(test_acme_model),
        cmocka_unit_test(test_initial_phase_and_grant_phase_order),
        cmocka_unit_test(test_ttl_parse),
        cmocka_unit_test(test_ttl_format),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_tiers),
        cmocka_unit_test(test_usage_valid),
        cmocka_unit_test(test_usage_destinations),
        cmocka_unit_test(test_usage_dest_length),
        cmocka_unit_test(test_usage_methods),
        cmocka_unit_test(test_usage_shape),
        cmocka_unit_test(test_usage_inject),
        cmocka_unit_test(test_reveal),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
