/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The model back into YAML and the differences between two models: what
 * `show` prints loads into an equal model (no difference), the same model
 * always gives the same bytes, text that YAML would otherwise misread comes
 * back unchanged, and each kind of change is reported exactly once with the
 * documented wording.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "coffer/arena.h"
#include "coffer/buf.h"
#include "coffer/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Loading, emitting and comparing ---- */

static struct coffer_policy *load_text(const char *yaml)
{
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};
    enum coffer_err r;

    assert_int_equal(coffer_policy_new(&p), COFFER_OK);
    r = coffer_policy_add_buffer(p, "t.yaml", yaml, strlen(yaml), &d);
    if (r == COFFER_OK) {
        r = coffer_policy_finish(p, &d);
    }
    for (size_t i = 0; i < d.n; i++) {
        print_message("  diag: %s\n", d.lines[i]);
    }
    if (r != COFFER_OK) {
        print_message("while loading:\n%s\n", yaml);
    }
    assert_int_equal(r, COFFER_OK);
    coffer_policy_diags_cleanup(&d);
    assert_int_equal(p->n_orgs, 1);
    return p;
}

/* The org's YAML as a NUL-terminated string (caller frees). */
static char *emit_text(const struct coffer_policy_org *o)
{
    struct coffer_buf b = {0};
    char *s;

    assert_int_equal(coffer_policy_emit(o, &b), COFFER_OK);
    assert_true(b.len > 0);
    s = calloc(b.len + 1, 1);
    assert_non_null(s);
    memcpy(s, b.data, b.len);
    coffer_buf_cleanup(&b);
    return s;
}

static size_t count_changes(const struct coffer_policy_org *a, const struct coffer_policy_org *b)
{
    struct coffer_arena *arena = NULL;
    struct coffer_policy_changes ch = {0};
    size_t n;

    assert_int_equal(coffer_arena_new(0, &arena), COFFER_OK);
    assert_int_equal(coffer_policy_diff(a, b, arena, &ch), COFFER_OK);
    for (size_t i = 0; i < ch.n; i++) {
        print_message("  change: %c %s%s%s\n", ch.items[i].op, ch.items[i].what,
                      ch.items[i].how != NULL ? ": " : "",
                      ch.items[i].how != NULL ? ch.items[i].how : "");
    }
    n = ch.n;
    coffer_arena_free(&arena);
    return n;
}

/*
 * Emits p's org, reloads the text, and checks that the reloaded model equals
 * the original and emits to the same bytes. Returns the text (caller frees).
 */
static char *round_trip(const struct coffer_policy *p)
{
    char *first = emit_text(&p->orgs[0]);
    struct coffer_policy *again = load_text(first);
    char *second = emit_text(&again->orgs[0]);

    assert_int_equal(count_changes(&p->orgs[0], &again->orgs[0]), 0);
    assert_int_equal(count_changes(&again->orgs[0], &p->orgs[0]), 0);
    assert_string_equal(first, second);
    free(second);
    coffer_policy_free(&again);
    return first;
}

/*
 * A file of the source tree. CMake compiles this file by its absolute path,
 * so the tree is what __FILE__ names before tests/unit/.
 */
static char *read_source(const char *rel)
{
    const char *self = __FILE__;
    const char *tail = strstr(self, "tests/unit/policy_emit_test.c");
    char path[1024];
    FILE *f;
    long n;
    char *s;

    assert_non_null(tail);
    snprintf(path, sizeof(path), "%.*s%s", (int)(tail - self), self, rel);
    f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n > 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    s = calloc((size_t)n + 1, 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return s;
}

/* ---- Emit ---- */

static void test_acme_round_trip(void **state)
{
    char *yaml = read_source("policy/acme.yaml");
    struct coffer_policy *p = load_text(yaml);
    char *out = round_trip(p);
    char *twice = emit_text(&p->orgs[0]);

    (void)state;
    /* Emitting the same model twice gives the same bytes. */
    assert_string_equal(out, twice);
    /* The layout of docs/policy.md: sections, flow lists, every tier, sorted names. */
    assert_non_null(strstr(out, "version: 1\norg: acme\n\nagent_types:\n  analyst:\n"));
    assert_non_null(strstr(out, "\n\ntiers:\n  low: {default_ttl: 90d, max_ttl: never}\n"
                                "  medium: {default_ttl: 30d, max_ttl: 365d}\n"
                                "  high: {default_ttl: 1d, max_ttl: 7d}\n"
                                "  critical: {default_ttl: 1h, max_ttl: 1d}\n\nprojects:\n"));
    assert_non_null(strstr(out, "    phases: [design, build, staging, production]\n"
                                "    initial_phase: design\n"
                                "    members: [analyst, builder, deployer]\n"));
    assert_non_null(strstr(out, "        - agent_type: analyst\n          instance: metrics-1\n"
                                "          phases: [production]\n"));
    assert_true(strstr(out, "ci-registry:") < strstr(out, "grafana:"));
    assert_true(strstr(out, "grafana:") < strstr(out, "stripe-live:"));
    /* The usage spec and reveal: false of stripe-live come back after its purposes. */
    assert_non_null(strstr(out, "        - reconcile *\n"
                                "        usage:\n"
                                "          destinations:\n"
                                "          - https://api.stripe.com/v1\n"
                                "          - https://files.stripe.com:443/\n"
                                "          methods: [GET, POST]\n"
                                "          inject:\n"
                                "          - header: Authorization\n"
                                "            value: Bearer {{api_key}}\n"
                                "        reveal: false\n"));
    free(twice);
    free(out);
    free(yaml);
    coffer_policy_free(&p);
}

static void test_minimal_policy(void **state)
{
    struct coffer_policy *p = load_text("version: 1\norg: m\nprojects:\n  p:\n    phases: [a]\n");
    char *out = round_trip(p);

    (void)state;
    /* No optional key is written; every tier is, with its built-in lifetimes. */
    assert_string_equal(out, "version: 1\n"
                             "org: m\n"
                             "\n"
                             "tiers:\n"
                             "  low: {default_ttl: 90d, max_ttl: never}\n"
                             "  medium: {default_ttl: 30d, max_ttl: 365d}\n"
                             "  high: {default_ttl: 1d, max_ttl: 7d}\n"
                             "  critical: {default_ttl: 1h, max_ttl: 1d}\n"
                             "\n"
                             "projects:\n"
                             "  p:\n"
                             "    phases: [a]\n"
                             "    initial_phase: a\n");
    free(out);
    coffer_policy_free(&p);
}

static void test_org_only(void **state)
{
    struct coffer_policy *p = load_text("version: 1\norg: empty\n");
    char *out = round_trip(p);

    (void)state;
    assert_null(strstr(out, "agent_types"));
    assert_null(strstr(out, "projects"));
    free(out);
    coffer_policy_free(&p);
}

static void test_text_that_needs_quotes(void **state)
{
    static const char *const texts[] = {
        "null",        "~",       "NULL",  "yes",      "1",         "0x1F",
        "- dash",      ": colon", "a: b",  "#hash",    "a #b",      "'single'",
        "\"double\"",  "*star",   "&amp",  "!bang",    "%pct",      "@at",
        "`tick",       "[b]",     "{c}",   " leading", "trailing ", "d\xc3\xa9j\xc3\xa0 vu",
        "back\\slash", "? what",  "|pipe", ">fold",    "a,b",       "---",
    };
    char yaml[8192];
    size_t n;
    struct coffer_policy *p;
    const struct coffer_policy_org *o;
    char *out;

    (void)state;
    n = (size_t)snprintf(yaml, sizeof(yaml),
                         "version: 1\norg: q\nagent_types:\n  \"null\":\n  \"true\":\n"
                         "projects:\n  p:\n    phases: [\"null\", \"1\"]\n"
                         "    members: [\"null\", \"true\"]\n"
                         "    credentials:\n      c:\n        purposes:\n");
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        char esc[64];
        size_t e = 0;

        for (const char *s = texts[i]; *s != '\0'; s++) {
            if (*s == '"' || *s == '\\') {
                esc[e++] = '\\';
            }
            esc[e++] = *s;
        }
        esc[e] = '\0';
        n += (size_t)snprintf(yaml + n, sizeof(yaml) - n, "          - \"%s\"\n", esc);
    }
    p = load_text(yaml);
    o = &p->orgs[0];
    assert_int_equal(o->projects[0].creds[0].n_purposes, sizeof(texts) / sizeof(texts[0]));
    out = round_trip(p);
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        bool found = false;

        for (size_t j = 0; j < o->projects[0].creds[0].n_purposes; j++) {
            found = found || strcmp(o->projects[0].creds[0].purposes[j], texts[i]) == 0;
        }
        assert_true(found);
    }
    /* Quoted for other YAML tools too, which would read true and 1 as other types. */
    assert_non_null(strstr(out, "    phases: ['null', '1']\n"));
    assert_non_null(strstr(out, "    members: ['null', 'true']\n"));
    assert_non_null(strstr(out, "        - 'yes'\n"));
    assert_string_equal(o->agent_types[0].name, "null");
    assert_string_equal(o->projects[0].phases[0], "null");
    free(out);
    coffer_policy_free(&p);
}

static void test_emit_errors(void **state)
{
    struct coffer_policy *p = load_text("version: 1\norg: m\nprojects:\n  p:\n    phases: [a]\n");
    struct coffer_buf small = {.max = 64};
    struct coffer_buf b = {0};

    (void)state;
    assert_int_equal(coffer_policy_emit(NULL, &b), COFFER_E_INVALID);
    assert_int_equal(coffer_policy_emit(&p->orgs[0], NULL), COFFER_E_INVALID);
    /* Output past the buffer's limit: an error, and nothing half-written is kept. */
    assert_int_equal(coffer_buf_put(&small, "x", 1), COFFER_OK);
    assert_int_equal(coffer_policy_emit(&p->orgs[0], &small), COFFER_E_LIMIT);
    assert_int_equal(small.len, 1);
    coffer_buf_cleanup(&small);
    coffer_policy_free(&p);
}

static void test_usage_round_trip(void **state)
{
    struct coffer_policy *p = load_text(
        "version: 1\norg: u\nprojects:\n  p:\n    phases: [a]\n    credentials:\n"
        "      c:\n"
        "        reveal: false\n"
        "        usage:\n"
        "          methods: [OPTIONS, PATCH, GET]\n"
        "          destinations: [\"https://z.example.com/a\", \"https://*.b.example.com\",\n"
        "                         \"https://[2001:db8::1]:8443/v1/\"]\n"
        "          inject:\n"
        "            - query: api.key~1\n"
        "              value: \"{{k}}\"\n"
        "            - header: X-Api-Key\n"
        "              value: \"'q' \\\"dq\\\" #h a: b {{key.v-1}}\"\n"
        "      d:\n"
        "        usage:\n"
        "          destinations: [\"https://d.example.com\"]\n"
        "          methods: [HEAD]\n"
        "        reveal: true\n");
    char *out = round_trip(p);

    (void)state;
    /* Byte for byte: destinations sorted, methods in canonical order, injects as declared. */
    assert_string_equal(strstr(out, "    credentials:\n"),
                        "    credentials:\n"
                        "      c:\n"
                        "        usage:\n"
                        "          destinations:\n"
                        "          - https://*.b.example.com\n"
                        "          - https://[2001:db8::1]:8443/v1/\n"
                        "          - https://z.example.com/a\n"
                        "          methods: [GET, PATCH, OPTIONS]\n"
                        "          inject:\n"
                        "          - query: api.key~1\n"
                        "            value: '{{k}}'\n"
                        "          - header: X-Api-Key\n"
                        "            value: '''q'' \"dq\" #h a: b {{key.v-1}}'\n"
                        "        reveal: false\n"
                        "      d:\n"
                        "        usage:\n"
                        "          destinations:\n"
                        "          - https://d.example.com\n"
                        "          methods: [HEAD]\n");
    assert_true(p->orgs[0].projects[0].creds[0].secretless_only);
    assert_false(p->orgs[0].projects[0].creds[1].secretless_only);
    free(out);
    coffer_policy_free(&p);
}

/* The canonical JSON of the usage spec of the first rule of yaml's first project. */
static char *usage_json_of(const char *yaml, struct coffer_policy **keep)
{
    struct coffer_policy *p = load_text(yaml);
    struct coffer_buf b = {0};
    char *s;

    assert_non_null(p->orgs[0].projects[0].creds[0].usage);
    assert_int_equal(coffer_policy_usage_json(p->orgs[0].projects[0].creds[0].usage, &b),
                     COFFER_OK);
    s = calloc(b.len + 1, 1);
    assert_non_null(s);
    memcpy(s, b.data, b.len);
    coffer_buf_cleanup(&b);
    *keep = p;
    return s;
}

#define USAGE_DOC(dests, methods, inject)                                                          \
    "version: 1\norg: u\nprojects:\n  p:\n    phases: [a]\n    credentials:\n      c:\n"           \
    "        usage:\n          destinations: " dests "\n          methods: " methods "\n" inject

#define TWO_INJECTS                                                                                \
    "          inject:\n            - header: Authorization\n"                                     \
    "              value: \"Bearer \\\"{{t}}\\\" \\\\ x\"\n"                                       \
    "            - query: key\n              value: \"{{t}}\"\n"

static void test_usage_json(void **state)
{
    static const char no_inject[] =
        "{\"destinations\":[\"https://a.example.com\"],\"methods\":[\"GET\"],\"inject\":[]}";
    struct coffer_policy *p = NULL;
    struct coffer_policy *q = NULL;
    struct coffer_arena *a = NULL;
    const struct coffer_policy_usage *u = NULL;
    struct coffer_buf b = {0};
    struct coffer_buf small = {.max = 16};
    char *json;
    char *again;

    (void)state;
    json = usage_json_of(USAGE_DOC("[\"https://b.example.com/x\", \"https://a.example.com\"]",
                                   "[POST, GET]", TWO_INJECTS),
                         &p);
    assert_string_equal(json,
                        "{\"destinations\":[\"https://a.example.com\",\"https://b.example.com/x\"],"
                        "\"methods\":[\"GET\",\"POST\"],\"inject\":[{\"header\":\"Authorization\","
                        "\"value\":\"Bearer \\\"{{t}}\\\" \\\\ x\"},{\"query\":\"key\","
                        "\"value\":\"{{t}}\"}]}");
    /* The same spec in another order is the same JSON. */
    again = usage_json_of(USAGE_DOC("[\"https://a.example.com\", \"https://b.example.com/x\"]",
                                    "[GET, POST]", TWO_INJECTS),
                          &q);
    assert_string_equal(json, again);
    free(again);
    coffer_policy_free(&q);

    /* Read back, it is the same spec and writes the same bytes. */
    assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
    assert_int_equal(coffer_policy_usage_from_json(a, json, strlen(json), &u), COFFER_OK);
    assert_non_null(u);
    assert_int_equal(u->n_destinations, 2);
    assert_string_equal(u->destinations[0].url, "https://a.example.com");
    assert_null(u->destinations[0].pos.file);
    assert_int_equal(u->n_methods, 2);
    assert_int_equal(u->n_inject, 2);
    assert_string_equal(u->inject[0].value, "Bearer \"{{t}}\" \\ x");
    assert_false(u->inject[0].query);
    assert_true(u->inject[1].query);
    assert_int_equal(coffer_policy_usage_json(u, &b), COFFER_OK);
    assert_int_equal(b.len, strlen(json));
    assert_memory_equal(b.data, json, b.len);
    coffer_buf_cleanup(&b);
    /* No inject entries: an empty list, read back as none. */
    assert_int_equal(coffer_policy_usage_from_json(a, no_inject, strlen(no_inject), &u), COFFER_OK);
    assert_int_equal(u->n_inject, 0);

    /* Output past its limit: an error, and nothing half-written is kept. */
    assert_int_equal(coffer_buf_put(&small, "x", 1), COFFER_OK);
    assert_int_equal(coffer_policy_usage_json(p->orgs[0].projects[0].creds[0].usage, &small),
                     COFFER_E_LIMIT);
    assert_int_equal(small.len, 1);
    coffer_buf_cleanup(&small);
    assert_int_equal(coffer_policy_usage_json(NULL, &b), COFFER_E_INVALID);
    assert_int_equal(coffer_policy_usage_json(p->orgs[0].projects[0].creds[0].usage, NULL),
                     COFFER_E_INVALID);
    free(json);
    coffer_policy_free(&p);
    coffer_arena_free(&a);
}

/* Stored JSON that breaks a rule must be refused, naming what is wrong. */
static void json_refused(const char *json, const char *part)
{
    struct coffer_arena *a = NULL;
    const struct coffer_policy_usage *u = NULL;

    assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
    assert_int_equal(coffer_policy_usage_from_json(a, json, strlen(json), &u), COFFER_E_INVALID);
    assert_null(u);
    if (strstr(coffer_err_detail(), part) == NULL) {
        fail_msg("%s: detail \"%s\" lacks \"%s\"", json, coffer_err_detail(), part);
    }
    coffer_arena_free(&a);
}

#define D1 "\"destinations\":[\"https://a.example.com\"]"
#define M1 "\"methods\":[\"GET\"]"
#define I0 "\"inject\":[]"

static void test_usage_json_refused(void **state)
{
    struct coffer_arena *a = NULL;
    const struct coffer_policy_usage *u = NULL;

    (void)state;
    json_refused("{", "is not JSON");
    json_refused("[]", "must be an object with exactly destinations, methods and inject");
    json_refused("{" D1 "," M1 "}", "must be an object with exactly");
    json_refused("{" D1 "," M1 "," I0 ",\"reveal\":false}", "must be an object with exactly");
    json_refused("{" D1 "," M1 "," I0 "," I0 "}", "is not JSON");
    json_refused("{\"destinations\":[]," M1 "," I0 "}", "destinations must be an array of 1 to 16");
    json_refused("{\"destinations\":\"https://a.example.com\"," M1 "," I0 "}",
                 "destinations must be an array");
    json_refused("{\"destinations\":[7]," M1 "," I0 "}", "destination 0 is not a string");
    json_refused("{\"destinations\":[\"http://a.example.com\"]," M1 "," I0 "}",
                 "destination 0: must use https, not http");
    json_refused("{\"destinations\":[\"https://a.example.com/../b\"]," M1 "," I0 "}",
                 "destination 0: is refused by the broker");
    json_refused("{\"destinations\":[\"https://a.example.com\",\"https://a.example.com\"]," M1
                 "," I0 "}",
                 "destination 1 is listed twice");
    json_refused("{" D1 ",\"methods\":[]," I0 "}", "methods must be an array of 1 to 8");
    json_refused("{" D1 ",\"methods\":[\"get\"]," I0 "}", "method 0 is not one Coffer allows");
    json_refused("{" D1 ",\"methods\":[\"GET\",\"GET\"]," I0 "}", "method GET is listed twice");
    json_refused("{" D1 "," M1 ",\"inject\":{}}", "inject must be an array of at most 8");
    json_refused("{" D1 "," M1 ",\"inject\":[{\"header\":\"A\"}]}",
                 "inject 0 must be an object with header or query, and value");
    json_refused("{" D1 "," M1 ",\"inject\":[{\"header\":\"A\",\"query\":\"a\",\"value\":\"v\"}]}",
                 "inject 0 must be an object");
    json_refused("{" D1 "," M1 ",\"inject\":[{\"header\":\"Host\",\"value\":\"v\"}]}",
                 "the name of inject 0 is set by Coffer itself");
    json_refused("{" D1 "," M1 ",\"inject\":[{\"query\":\"a b\",\"value\":\"v\"}]}",
                 "the name of inject 0 may hold only");
    json_refused("{" D1 "," M1 ",\"inject\":[{\"header\":\"A\",\"value\":\"{{a b}}\"}]}",
                 "the value of inject 0");
    json_refused("{" D1 "," M1 ",\"inject\":[{\"header\":\"A\",\"value\":\"\"}]}",
                 "the value of inject 0 is empty");
    json_refused("{" D1 "," M1
                 ",\"inject\":[{\"header\":\"A\",\"value\":\"v\"},{\"header\":\"a\",\"value\":"
                 "\"w\"}]}",
                 "inject 1 names the same header as inject 0");
    assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
    assert_int_equal(coffer_policy_usage_from_json(NULL, "{}", 2, &u), COFFER_E_INVALID);
    assert_int_equal(coffer_policy_usage_from_json(a, NULL, 0, &u), COFFER_E_INVALID);
    assert_int_equal(coffer_policy_usage_from_json(a, "{}", COFFER_POLICY_USAGE_JSON_MAX + 1, &u),
                     COFFER_E_INVALID);
    coffer_arena_free(&a);
}

/* ---- Diff ---- */

#define BASE                                                                                       \
    "version: 1\n"                                                                                 \
    "org: acme\n"                                                                                  \
    "agent_types:\n"                                                                               \
    "  analyst:\n"                                                                                 \
    "    description: Reads metrics\n"                                                             \
    "  builder:\n"                                                                                 \
    "  deployer:\n"                                                                                \
    "  spare:\n"                                                                                   \
    "tiers:\n"                                                                                     \
    "  high: {default_ttl: 1d, max_ttl: 7d}\n"                                                     \
    "projects:\n"                                                                                  \
    "  old:\n"                                                                                     \
    "    phases: [a]\n"                                                                            \
    "    members: [builder]\n"                                                                     \
    "    credentials:\n"                                                                           \
    "      k:\n"                                                                                   \
    "        grants: [{agent_type: builder}]\n"                                                    \
    "  payments:\n"                                                                                \
    "    description: Card payments\n"                                                             \
    "    phases: [design, build]\n"                                                                \
    "    members: [deployer, analyst]\n"                                                           \
    "    credentials:\n"                                                                           \
    "      grafana:\n"                                                                             \
    "        description: Dashboards\n"                                                            \
    "        grants:\n"                                                                            \
    "          - agent_type: analyst\n"                                                            \
    "        purposes: [\"read *\"]\n"                                                             \
    "      stripe-live:\n"                                                                         \
    "        grants:\n"                                                                            \
    "          - agent_type: deployer\n"                                                           \
    "            phases: [build]\n"                                                                \
    "          - agent_type: analyst\n"                                                            \
    "            instance: metrics-1\n"

/* BASE with the first occurrence of from replaced by to (caller frees). */
static char *edit(const char *from, const char *to)
{
    const char *at = strstr(BASE, from);
    size_t len = strlen(BASE) - strlen(from) + strlen(to);
    char *s;

    assert_non_null(at);
    s = calloc(len + 1, 1);
    assert_non_null(s);
    memcpy(s, BASE, (size_t)(at - BASE));
    strcat(s, to);
    strcat(s, at + strlen(from));
    return s;
}

/* The changes from BASE to new_yaml must be exactly want[0..n), as "op what[: how]". */
static void expect_changes(char *new_yaml, const char *const *want, size_t n)
{
    struct coffer_policy *a = load_text(BASE);
    struct coffer_policy *b = load_text(new_yaml);
    struct coffer_arena *arena = NULL;
    struct coffer_policy_changes ch = {0};

    assert_int_equal(coffer_arena_new(0, &arena), COFFER_OK);
    assert_int_equal(coffer_policy_diff(&a->orgs[0], &b->orgs[0], arena, &ch), COFFER_OK);
    for (size_t i = 0; i < ch.n; i++) {
        print_message("  change: %c %s%s%s\n", ch.items[i].op, ch.items[i].what,
                      ch.items[i].how != NULL ? ": " : "",
                      ch.items[i].how != NULL ? ch.items[i].how : "");
    }
    assert_int_equal(ch.n, n);
    for (size_t i = 0; i < n; i++) {
        char line[512];

        snprintf(line, sizeof(line), "%c %s%s%s", ch.items[i].op, ch.items[i].what,
                 ch.items[i].how != NULL ? ": " : "",
                 ch.items[i].how != NULL ? ch.items[i].how : "");
        assert_string_equal(line, want[i]);
        /* what never holds the separator: how is apart. */
        assert_null(strstr(ch.items[i].what, ": "));
        if (ch.items[i].op != COFFER_POLICY_MODIFIED) {
            assert_null(ch.items[i].how);
        } else {
            assert_non_null(ch.items[i].how);
        }
    }
    coffer_arena_free(&arena);
    coffer_policy_free(&a);
    coffer_policy_free(&b);
    free(new_yaml);
}

#define EXPECT(yaml, ...)                                                                          \
    do {                                                                                           \
        static const char *const want_[] = {__VA_ARGS__};                                          \
        expect_changes((yaml), want_, sizeof(want_) / sizeof(want_[0]));                           \
    } while (0)

static void test_diff_identical(void **state)
{
    struct coffer_policy *a = load_text(BASE);
    struct coffer_policy *b = load_text(BASE);

    (void)state;
    assert_int_equal(count_changes(&a->orgs[0], &b->orgs[0]), 0);
    coffer_policy_free(&a);
    coffer_policy_free(&b);
}

static void test_diff_declared_default_tier(void **state)
{
    struct coffer_policy *a = load_text(BASE);
    char *yaml = edit("tiers:\n", "tiers:\n  low: {default_ttl: 90d, max_ttl: never}\n");
    struct coffer_policy *b = load_text(yaml);

    (void)state;
    assert_false(a->orgs[0].tiers[COFFER_TIER_LOW].declared);
    assert_true(b->orgs[0].tiers[COFFER_TIER_LOW].declared);
    assert_int_equal(count_changes(&a->orgs[0], &b->orgs[0]), 0);
    free(yaml);
    coffer_policy_free(&a);
    coffer_policy_free(&b);
}

static void test_diff_agent_types(void **state)
{
    (void)state;
    EXPECT(edit("  builder:\n", "  builder:\n  checker:\n"), "+ agent type checker");
    EXPECT(edit("  spare:\n", ""), "- agent type spare");
    EXPECT(edit("Reads metrics", "Reads all metrics"), "~ agent type analyst: description");
    EXPECT(edit("  builder:\n", "  builder:\n    description: Builds\n"),
           "~ agent type builder: description");
}

static void test_diff_tiers(void **state)
{
    (void)state;
    EXPECT(edit("max_ttl: 7d", "max_ttl: 3d"), "~ tier high: max_ttl 7d -> 3d");
    EXPECT(edit("{default_ttl: 1d, max_ttl: 7d}", "{default_ttl: 2d, max_ttl: 3d}"),
           "~ tier high: default_ttl 1d -> 2d", "~ tier high: max_ttl 7d -> 3d");
    EXPECT(edit("tiers:\n", "tiers:\n  critical: {default_ttl: 2h, max_ttl: 24h}\n"),
           "~ tier critical: default_ttl 1h -> 2h");
    EXPECT(edit("tiers:\n", "tiers:\n  low: {default_ttl: 90d, max_ttl: 3650d}\n"),
           "~ tier low: max_ttl never -> 3650d");
}

static void test_diff_projects(void **state)
{
    (void)state;
    /* A removed project is one change, however much it held. */
    EXPECT(edit("  old:\n    phases: [a]\n    members: [builder]\n    credentials:\n      k:\n"
                "        grants: [{agent_type: builder}]\n",
                ""),
           "- project old");
    /* An added project lists the access it brings. */
    EXPECT(edit("projects:\n", "projects:\n  web:\n    phases: [x]\n    members: [deployer]\n"
                               "    credentials:\n      key:\n"
                               "        grants: [{agent_type: deployer, phases: [x]}]\n"),
           "+ project web", "+ member web/deployer", "+ credential rule web/key",
           "+ grant web/key to deployer");
    EXPECT(edit("Card payments", "Card payments service"), "~ project payments: description");
    EXPECT(edit("[design, build]", "[design, build, staging]"),
           "~ project payments: phases design,build -> design,build,staging");
    EXPECT(edit("[design, build]", "[design, build]\n    initial_phase: build"),
           "~ project payments: initial_phase design -> build");
    EXPECT(edit("[deployer, analyst]", "[deployer, analyst, builder]"),
           "+ member payments/builder");
    EXPECT(edit("    members: [builder]\n    credentials:\n      k:\n"
                "        grants: [{agent_type: builder}]\n",
                ""),
           "- member old/builder", "- credential rule old/k");
}

static void test_diff_credential_rules(void **state)
{
    (void)state;
    EXPECT(
        edit("    credentials:\n      grafana:", "    credentials:\n      ci: {}\n      grafana:"),
        "+ credential rule payments/ci");
    EXPECT(edit("      grafana:\n        description: Dashboards\n        grants:\n"
                "          - agent_type: analyst\n        purposes: [\"read *\"]\n",
                ""),
           "- credential rule payments/grafana");
    EXPECT(edit("Dashboards", "Grafana dashboards"),
           "~ credential rule payments/grafana: description");
    EXPECT(edit("[\"read *\"]", "[\"read *\", \"query *\"]"),
           "~ credential rule payments/grafana: purposes");
    EXPECT(edit("      stripe-live:\n", "      stripe-live:\n        expire_on_phase_end: build\n"),
           "~ credential rule payments/stripe-live: expire_on_phase_end (none) -> build");
}

static void test_diff_grants(void **state)
{
    (void)state;
    EXPECT(edit("            instance: metrics-1\n",
                "            instance: metrics-1\n          - agent_type: deployer\n"
                "            instance: d1\n"),
           "+ grant payments/stripe-live to deployer/d1");
    EXPECT(edit("          - agent_type: analyst\n            instance: metrics-1\n", ""),
           "- grant payments/stripe-live to analyst/metrics-1");
    EXPECT(edit("phases: [build]", "phases: [build, design]"),
           "~ grant payments/stripe-live to deployer: phases build -> design,build");
    EXPECT(edit("          - agent_type: deployer\n            phases: [build]\n",
                "          - agent_type: deployer\n"),
           "~ grant payments/stripe-live to deployer: phases build -> (every phase)");
    /* The same type with an instance instead of none is another grant. */
    EXPECT(edit("          - agent_type: analyst\n        purposes",
                "          - agent_type: analyst\n            instance: a1\n        purposes"),
           "- grant payments/grafana to analyst", "+ grant payments/grafana to analyst/a1");
}

static void test_diff_order(void **state)
{
    char *step1 = edit("  builder:\n", "  builder:\n  checker:\n");
    char *step2;
    char *step3;
    const char *at;
    size_t len;

    (void)state;
    /* Several changes at once come out in the documented order. */
    at = strstr(step1, "max_ttl: 7d");
    assert_non_null(at);
    step1[at - step1 + 9] = '5';
    step2 = calloc(strlen(step1) + 64, 1);
    assert_non_null(step2);
    at = strstr(step1, "[design, build]");
    len = (size_t)(at - step1);
    memcpy(step2, step1, len);
    strcat(step2, "[design, build, ship]");
    strcat(step2, at + strlen("[design, build]"));
    step3 = calloc(strlen(step2) + 64, 1);
    assert_non_null(step3);
    at = strstr(step2, "  old:\n");
    len = (size_t)(at - step2);
    memcpy(step3, step2, len);
    strcat(step3, "  new:\n    phases: [z]\n");
    strcat(step3, at);
    free(step1);
    free(step2);
    EXPECT(step3, "+ agent type checker", "~ tier high: max_ttl 7d -> 5d", "+ project new",
           "~ project payments: phases design,build -> design,build,ship");
}

/* Reverses n pointers or structs of size bytes in place. */
static void reverse(void *base, size_t n, size_t size)
{
    unsigned char tmp[512];
    unsigned char *p = base;

    assert_true(size <= sizeof(tmp));
    for (size_t i = 0; i < n / 2; i++) {
        memcpy(tmp, p + i * size, size);
        memcpy(p + i * size, p + (n - 1 - i) * size, size);
        memcpy(p + (n - 1 - i) * size, tmp, size);
    }
}

static void test_diff_ignores_list_order(void **state)
{
    char *yaml = edit("phases: [build]", "phases: [build, design]");
    struct coffer_policy *a = load_text(yaml);
    struct coffer_policy *b = load_text(yaml);
    struct coffer_policy_org *o = &b->orgs[0];

    (void)state;
    /* A model read in another order (as from a database) is still the same policy. */
    reverse(o->agent_types, o->n_agent_types, sizeof(*o->agent_types));
    reverse(o->projects, o->n_projects, sizeof(*o->projects));
    for (size_t i = 0; i < o->n_projects; i++) {
        struct coffer_policy_project *p = &o->projects[i];

        reverse(p->members, p->n_members, sizeof(*p->members));
        reverse(p->creds, p->n_creds, sizeof(*p->creds));
        for (size_t j = 0; j < p->n_creds; j++) {
            reverse(p->creds[j].grants, p->creds[j].n_grants, sizeof(*p->creds[j].grants));
            reverse(p->creds[j].purposes, p->creds[j].n_purposes, sizeof(char *));
            for (size_t k = 0; k < p->creds[j].n_grants; k++) {
                reverse(p->creds[j].grants[k].phases, p->creds[j].grants[k].n_phases,
                        sizeof(char *));
            }
        }
    }
    assert_string_equal(o->agent_types[0].name, "spare");
    assert_int_equal(count_changes(&a->orgs[0], o), 0);
    /* The order of a project's phases is part of the policy. */
    for (size_t i = 0; i < o->n_projects; i++) {
        reverse(o->projects[i].phases, o->projects[i].n_phases, sizeof(char *));
    }
    assert_int_equal(count_changes(&a->orgs[0], o), 1);
    coffer_policy_free(&a);
    coffer_policy_free(&b);
    free(yaml);
}

#define STRIPE_USAGE                                                                               \
    "        usage:\n"                                                                             \
    "          destinations: [\"https://api.stripe.com/v1\", \"https://files.stripe.com\"]\n"      \
    "          methods: [GET, POST]\n"                                                             \
    "          inject:\n"                                                                          \
    "            - header: Authorization\n"                                                        \
    "              value: \"Bearer {{api_key}}\"\n"

static void test_diff_usage(void **state)
{
    char *with = edit("      stripe-live:\n", "      stripe-live:\n" STRIPE_USAGE);
    struct coffer_policy *a;
    struct coffer_policy *b;
    struct coffer_policy_usage *u;

    (void)state;
    EXPECT(edit("      stripe-live:\n", "      stripe-live:\n" STRIPE_USAGE),
           "~ credential rule payments/stripe-live: usage (none) -> set");
    EXPECT(
        edit("      stripe-live:\n", "      stripe-live:\n" STRIPE_USAGE "        reveal: false\n"),
        "~ credential rule payments/stripe-live: usage (none) -> set",
        "~ credential rule payments/stripe-live: reveal true -> false");

    /* From a policy with a usage spec. */
    a = load_text(with);
    b = load_text(with);
    assert_int_equal(count_changes(&a->orgs[0], &b->orgs[0]), 0);
    /* Destinations and methods are sets: their order (as read from a database) does not matter. */
    u = (struct coffer_policy_usage *)(uintptr_t)b->orgs[0].projects[1].creds[1].usage;
    assert_non_null(u);
    reverse(u->destinations, u->n_destinations, sizeof(*u->destinations));
    reverse(u->methods, u->n_methods, sizeof(*u->methods));
    assert_string_equal(u->methods[0], "POST");
    assert_int_equal(count_changes(&a->orgs[0], &b->orgs[0]), 0);
    /* What an inject entry puts in does. */
    u->inject[0].value = "Token {{api_key}}";
    assert_int_equal(count_changes(&a->orgs[0], &b->orgs[0]), 1);
    coffer_policy_free(&a);
    coffer_policy_free(&b);
    free(with);
}

/*
 * From BASE with STRIPE_USAGE and reveal: false, the edit from -> to makes
 * exactly the changes want and (unless NULL) want2.
 */
static void expect_usage_edit(const char *from, const char *to, const char *want, const char *want2)
{
    char *with =
        edit("      stripe-live:\n", "      stripe-live:\n" STRIPE_USAGE "        reveal: false\n");
    struct coffer_policy *a = load_text(with);
    const char *at = strstr(with, from);
    char *changed;
    struct coffer_policy *b;
    struct coffer_arena *arena = NULL;
    struct coffer_policy_changes ch = {0};
    char line[512];

    assert_non_null(at);
    changed = calloc(strlen(with) + strlen(to) + 1, 1);
    assert_non_null(changed);
    memcpy(changed, with, (size_t)(at - with));
    strcat(changed, to);
    strcat(changed, at + strlen(from));
    b = load_text(changed);
    assert_int_equal(coffer_arena_new(0, &arena), COFFER_OK);
    assert_int_equal(coffer_policy_diff(&a->orgs[0], &b->orgs[0], arena, &ch), COFFER_OK);
    assert_int_equal(ch.n, want2 != NULL ? 2 : 1);
    for (size_t i = 0; i < ch.n; i++) {
        snprintf(line, sizeof(line), "%c %s: %s", ch.items[i].op, ch.items[i].what,
                 ch.items[i].how != NULL ? ch.items[i].how : "(null)");
        assert_string_equal(line, i == 0 ? want : want2);
    }
    coffer_arena_free(&arena);
    coffer_policy_free(&a);
    coffer_policy_free(&b);
    free(changed);
    free(with);
}

static void test_diff_usage_fields(void **state)
{
    (void)state;
    expect_usage_edit("[GET, POST]", "[GET]", "~ credential rule payments/stripe-live: usage",
                      NULL);
    expect_usage_edit("\"https://files.stripe.com\"]", "\"https://files.stripe.com/v2\"]",
                      "~ credential rule payments/stripe-live: usage", NULL);
    expect_usage_edit("header: Authorization", "query: Authorization",
                      "~ credential rule payments/stripe-live: usage", NULL);
    expect_usage_edit("Bearer {{api_key}}", "Basic {{api_key}}",
                      "~ credential rule payments/stripe-live: usage", NULL);
    expect_usage_edit("        reveal: false\n", "",
                      "~ credential rule payments/stripe-live: reveal false -> true", NULL);
    expect_usage_edit(STRIPE_USAGE "        reveal: false\n", "",
                      "~ credential rule payments/stripe-live: usage set -> (none)",
                      "~ credential rule payments/stripe-live: reveal false -> true");
}

static void test_diff_errors(void **state)
{
    struct coffer_policy *a = load_text(BASE);
    struct coffer_policy *b = load_text("version: 1\norg: other\n");
    struct coffer_arena *arena = NULL;
    struct coffer_policy_changes ch = {0};

    (void)state;
    assert_int_equal(coffer_arena_new(0, &arena), COFFER_OK);
    assert_int_equal(coffer_policy_diff(&a->orgs[0], &b->orgs[0], arena, &ch), COFFER_E_INVALID);
    assert_int_equal(ch.n, 0);
    assert_int_equal(coffer_policy_diff(NULL, &b->orgs[0], arena, &ch), COFFER_E_INVALID);
    assert_int_equal(coffer_policy_diff(&a->orgs[0], &a->orgs[0], NULL, &ch), COFFER_E_INVALID);
    assert_int_equal(coffer_policy_diff(&a->orgs[0], &a->orgs[0], arena, &ch), COFFER_OK);
    assert_int_equal(ch.n, 0);
    coffer_arena_free(&arena);
    coffer_policy_free(&a);
    coffer_policy_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acme_round_trip),
        cmocka_unit_test(test_minimal_policy),
        cmocka_unit_test(test_org_only),
        cmocka_unit_test(test_text_that_needs_quotes),
        cmocka_unit_test(test_emit_errors),
        cmocka_unit_test(test_usage_round_trip),
        cmocka_unit_test(test_usage_json),
        cmocka_unit_test(test_usage_json_refused),
        cmocka_unit_test(test_diff_identical),
        cmocka_unit_test(test_diff_declared_default_tier),
        cmocka_unit_test(test_diff_agent_types),
        cmocka_unit_test(test_diff_tiers),
        cmocka_unit_test(test_diff_projects),
        cmocka_unit_test(test_diff_credential_rules),
        cmocka_unit_test(test_diff_grants),
        cmocka_unit_test(test_diff_order),
        cmocka_unit_test(test_diff_ignores_list_order),
        cmocka_unit_test(test_diff_usage),
        cmocka_unit_test(test_diff_usage_fields),
        cmocka_unit_test(test_diff_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
