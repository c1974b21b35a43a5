/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Property: an agent is granted a credential only through a grant that
 * matches it. Random policies (members, grants by type, by instance, by
 * phase, rules that say reveal: false) are written as YAML, applied to the real database, the
 * project is moved to random phases, and random principals (of this org and another, member types,
 * non-member types, unknown types, any instance) access random credentials, for their values or for
 * a brokered call, through the same load-and-decide path the server uses. Each decision is compared
 * with an independent oracle computed from the generated policy: granted exactly when the oracle
 * finds a matching grant, and otherwise the reason the oracle expects.
 *
 * The generator is seeded (COFFER_PROPERTY_SEED overrides the default) and
 * the seed is printed, so a failure can be replayed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "world.h"

#include "coffer/arena.h"
#include "coffer/authz.h"
#include "coffer/buf.h"
#include "coffer/policy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_TYPES 5  /* t0..t4 declared; principals may also be "ghost" */
#define N_INST 3   /* i0..i2 */
#define N_PHASES 4 /* p0..p3 */
#define N_CREDS 6  /* c0..c5 */
#define MAX_GRANTS 4
#define ROUNDS 60
#define PROBES 80

static struct world w;
static uint64_t rng;

static uint32_t next(void)
{
    /* xorshift64*: small, fast, and reproducible from the seed. */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * UINT64_C(2685821657736338717)) >> 32);
}

static bool chance(unsigned percent)
{
    return next() % 100 < percent;
}

struct gen_grant {
    int type;
    int instance;    /* -1: every instance */
    unsigned phases; /* bit mask; 0: every phase */
};

struct gen_policy {
    bool member[N_TYPES];
    bool rule[N_CREDS];
    bool secretless[N_CREDS]; /* the rule has a usage spec and reveal: false */
    struct gen_grant grants[N_CREDS][MAX_GRANTS];
    int n_grants[N_CREDS];
};

static void generate(struct gen_policy *g)
{
    memset(g, 0, sizeof(*g));
    for (int t = 0; t < N_TYPES; t++) {
        g->member[t] = chance(70);
    }
    for (int c = 0; c < N_CREDS; c++) {
        int want = (int)(next() % (MAX_GRANTS + 1));

        g->rule[c] = chance(85);
        if (!g->rule[c]) {
            continue;
        }
        g->secretless[c] = chance(30);
        for (int k = 0; k < want; k++) {
            struct gen_grant gr = {.type = (int)(next() % N_TYPES), .instance = -1};
            bool dup = false;

            if (!g->member[gr.type]) {
                continue; /* the policy refuses grants to non-members */
            }
            if (chance(40)) {
                gr.instance = (int)(next() % N_INST);
            }
            if (chance(50)) {
                gr.phases = 1u + next() % ((1u << N_PHASES) - 1);
            }
            for (int j = 0; j < g->n_grants[c]; j++) {
                dup = dup ||
                      (g->grants[c][j].type == gr.type && g->grants[c][j].instance == gr.instance);
            }
            if (!dup) {
                g->grants[c][g->n_grants[c]++] = gr;
            }
        }
    }
}

static void put_str(struct coffer_buf *b, const char *s)
{
    assert_int_equal(coffer_buf_put(b, s, strlen(s)), COFFER_OK);
}

static void put_fmt(struct coffer_buf *b, const char *fmt, ...) COFFER_PRINTF(2, 3);

static void put_fmt(struct coffer_buf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    put_str(b, tmp);
}

static void to_yaml(const struct gen_policy *g, struct coffer_buf *b)
{
    put_str(b, "version: 1\norg: acme\nagent_types:\n");
    for (int t = 0; t < N_TYPES; t++) {
        put_fmt(b, "  t%d:\n", t);
    }
    put_str(b, "projects:\n  alpha:\n    phases: [p0, p1, p2, p3]\n    members: [");
    for (int t = 0, first = 1; t < N_TYPES; t++) {
        if (g->member[t]) {
            put_fmt(b, first ? "t%d" : ", t%d", t);
            first = 0;
        }
    }
    put_str(b, "]\n    credentials:\n");
    for (int c = 0; c < N_CREDS; c++) {
        if (!g->rule[c]) {
            continue;
        }
        put_fmt(b, "      c%d:\n", c);
        if (g->secretless[c]) {
            put_str(b, "        usage:\n          destinations: [\"https://api.example.com/v1\"]\n"
                       "          methods: [GET]\n        reveal: false\n");
        }
        put_str(b, "        grants:");
        put_str(b, g->n_grants[c] == 0 ? " []\n" : "\n");
        for (int k = 0; k < g->n_grants[c]; k++) {
            const struct gen_grant *gr = &g->grants[c][k];

            put_fmt(b, "          - agent_type: t%d\n", gr->type);
            if (gr->instance >= 0) {
                put_fmt(b, "            instance: i%d\n", gr->instance);
            }
            if (gr->phases != 0) {
                put_str(b, "            phases: [");
                for (int ph = 0, first = 1; ph < N_PHASES; ph++) {
                    if (gr->phases & (1u << ph)) {
                        put_fmt(b, first ? "p%d" : ", p%d", ph);
                        first = 0;
                    }
                }
                put_str(b, "]\n");
            }
        }
    }
    assert_int_equal(coffer_buf_put_u8(b, 0), COFFER_OK);
}

static void apply(const struct gen_policy *g)
{
    struct coffer_buf yaml = {0};
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};
    struct coffer_arena *a = NULL;
    struct coffer_store_policy_result res;

    to_yaml(g, &yaml);
    assert_int_equal(coffer_policy_new(&p), COFFER_OK);
    if (coffer_policy_add_buffer(p, "random.yaml", yaml.data, yaml.len - 1, &d) != COFFER_OK ||
        coffer_policy_finish(p, &d) != COFFER_OK) {
        fprintf(stderr, "%s\n", (const char *)yaml.data);
        fail_msg("generated policy refused: %s", d.n > 0 ? d.lines[0] : "?");
    }
    assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
    if (coffer_store_policy_apply(w.st, &p->orgs[0], "property@test", a, &res) != COFFER_OK) {
        fail_msg("apply: %s", coffer_err_detail());
    }
    coffer_arena_free(&a);
    coffer_policy_diags_cleanup(&d);
    coffer_policy_free(&p);
    coffer_buf_cleanup(&yaml);
}

/* The oracle: what the decision must say, from the generated policy alone. */
static enum coffer_authz_reason oracle(const struct gen_policy *g, bool same_org, int type,
                                       int instance, int cred, int phase, bool brokered)
{
    bool type_match = false;

    if (!same_org) {
        return COFFER_AUTHZ_NOT_FOUND;
    }
    if (type >= N_TYPES || !g->member[type]) {
        return COFFER_AUTHZ_NOT_PROJECT_MEMBER;
    }
    for (int k = 0; k < g->n_grants[cred]; k++) {
        const struct gen_grant *gr = &g->grants[cred][k];

        if (gr->type != type || (gr->instance >= 0 && gr->instance != instance)) {
            continue;
        }
        type_match = true;
        if (gr->phases == 0 || (gr->phases & (1u << phase)) != 0) {
            /* Values of a reveal: false credential are never handed out; a brokered use is. */
            return g->rule[cred] && g->secretless[cred] && !brokered ? COFFER_AUTHZ_SECRETLESS_ONLY
                                                                     : COFFER_AUTHZ_GRANTED;
        }
    }
    return type_match ? COFFER_AUTHZ_WRONG_PHASE : COFFER_AUTHZ_NO_GRANT;
}

static void test_random_principals(void **state)
{
    static const char *const values[] = {"v"};
    static const char *const names[] = {"k"};
    static const size_t lens[] = {1};
    struct gen_policy g;
    struct coffer_project proj;
    int granted = 0;
    int denied = 0;
    int reasons[COFFER_AUTHZ_REASON_COUNT] = {0};

    (void)state;
    for (int round = 0; round < ROUNDS; round++) {
        struct coffer_arena *a = NULL;
        struct coffer_store_phase_result moved;
        int phase = (int)(next() % N_PHASES);
        char phase_name[8];

        generate(&g);
        apply(&g);
        if (round == 0) {
            assert_int_equal(coffer_store_project_by_name(w.st, &w.org.id, "alpha", &proj),
                             COFFER_OK);
            for (int c = 0; c < N_CREDS; c++) {
                char cred[8];

                snprintf(cred, sizeof(cred), "c%d", c);
                (void)world_put(&w, &w.org, &proj, cred, 1, names, values, lens);
            }
        }
        snprintf(phase_name, sizeof(phase_name), "p%d", phase);
        assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
        assert_int_equal(coffer_store_project_phase(w.st, "acme", "alpha", phase_name,
                                                    "property@test", a, &moved),
                         COFFER_OK);
        for (int probe = 0; probe < PROBES; probe++) {
            bool same_org = chance(85);
            bool brokered = chance(30);
            int type = (int)(next() % (N_TYPES + 1)); /* N_TYPES is the undeclared "ghost" */
            int instance = (int)(next() % N_INST);
            int cred = (int)(next() % N_CREDS);
            char type_name[8];
            char inst_name[8];
            char cred_name[8];
            struct coffer_authz_input in = {0};
            struct coffer_store_access acc;
            struct coffer_authz_decision d;
            enum coffer_authz_reason want;

            if (type < N_TYPES) {
                snprintf(type_name, sizeof(type_name), "t%d", type);
            } else {
                snprintf(type_name, sizeof(type_name), "ghost");
            }
            snprintf(inst_name, sizeof(inst_name), "i%d", instance);
            snprintf(cred_name, sizeof(cred_name), "c%d", cred);
            assert_int_equal(coffer_store_access_load(w.st, same_org ? "acme" : "rival", "alpha",
                                                      cred_name, a, &in, &acc),
                             COFFER_OK);
            in.principal.org = same_org ? "acme" : "rival";
            in.principal.agent_type = type_name;
            in.principal.instance = inst_name;
            in.purpose = "property check";
            in.purpose_len = strlen(in.purpose);
            in.brokered = brokered;
            /* The load reads the rule's reveal setting and usage spec. */
            if (acc.found) {
                assert_int_equal(acc.secretless_only, g.rule[cred] && g.secretless[cred]);
                assert_int_equal(in.secretless_only, acc.secretless_only);
                assert_true((acc.usage != NULL) == (g.rule[cred] && g.secretless[cred]));
            }
            coffer_authz_decide(&in, &d);
            want = oracle(&g, same_org, type, instance, cred, phase, brokered);
            if (d.reason != want || d.allow != (want == COFFER_AUTHZ_GRANTED)) {
                fail_msg("round %d: %s %s/%s on %s in p%d%s: got %s, oracle says %s", round,
                         in.principal.org, type_name, inst_name, cred_name, phase,
                         brokered ? " (brokered)" : "", coffer_authz_reason_str(d.reason),
                         coffer_authz_reason_str(want));
            }
            if (d.allow) {
                /* The grant it names matches the principal and the phase. */
                const struct coffer_authz_grant *gr;

                assert_true(d.grant >= 0 && (size_t)d.grant < in.n_grants);
                gr = &in.grants[d.grant];
                assert_string_equal(gr->agent_type, type_name);
                assert_true(gr->instance == NULL || strcmp(gr->instance, inst_name) == 0);
                granted++;
            } else {
                denied++;
            }
            reasons[d.reason]++;
        }
        coffer_arena_free(&a);
    }
    printf("property: %d granted, %d denied (not_found %d, not_project_member %d, no_grant %d, "
           "wrong_phase %d, secretless_only %d)\n",
           granted, denied, reasons[COFFER_AUTHZ_NOT_FOUND],
           reasons[COFFER_AUTHZ_NOT_PROJECT_MEMBER], reasons[COFFER_AUTHZ_NO_GRANT],
           reasons[COFFER_AUTHZ_WRONG_PHASE], reasons[COFFER_AUTHZ_SECRETLESS_ONLY]);
    /* The generator must reach every outcome, or the property proved little. */
    assert_true(granted > 0);
    assert_true(reasons[COFFER_AUTHZ_NOT_FOUND] > 0);
    assert_true(reasons[COFFER_AUTHZ_NOT_PROJECT_MEMBER] > 0);
    assert_true(reasons[COFFER_AUTHZ_NO_GRANT] > 0);
    assert_true(reasons[COFFER_AUTHZ_WRONG_PHASE] > 0);
    assert_true(reasons[COFFER_AUTHZ_SECRETLESS_ONLY] > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_principals),
    };
    const char *seed = getenv("COFFER_PROPERTY_SEED");
    int rc;

    rng = seed != NULL ? strtoull(seed, NULL, 10) : UINT64_C(0x9E3779B97F4A7C15);
    if (rng == 0) {
        rng = 1;
    }
    printf("property seed: %" PRIu64 "\n", rng);
    world_open("authz_property", "acme", &w);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    world_close(&w);
    return rc;
}
