/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The access decision, driven by one table: each row starts from the same
 * allowed access (a deployer instance reaching a medium credential of a
 * project in production), changes what the row is about, and states the
 * reason, the purpose flag and the grant index it must get. The rows reach
 * every reason code, every boundary of expiry, TTL, phase and approval
 * windows, the order of the checks when several fail at once, and inputs
 * with NULL pointers where names and lists belong. Separate tests cover
 * purpose patterns, the reason names and the mapping of unseal failures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "coffer/authz.h"

#define NOW INT64_C(1700000000000000)
#define SEC INT64_C(1000000)
#define HOUR (3600 * SEC)
#define DAY (24 * HOUR)
#define MAX_TWEAKS 6

static const char *const build_staging[] = {"build", "staging"};
static const char *const production[] = {"production"};

/* The world every row starts from; the input points into it, so a tweak may change any part. */
struct fixture {
    struct coffer_authz_input in;
    const char *members[4];
    struct coffer_authz_grant grants[6];
    struct coffer_authz_approval approvals[3];
    const char *patterns[3];
    char buf[1024];
};

struct tweak;
typedef void (*tweak_fn)(struct fixture *f, const struct tweak *t);

/* One change to the fixture: a function and its arguments (which ones it reads is its own). */
struct tweak {
    tweak_fn fn;
    const char *s;
    const char *s2;
    int64_t a;
    int64_t b;
};

/* A row: what changes from the base, then what the decision must be. */
struct row {
    const char *name;
    struct tweak tweaks[MAX_TWEAKS];
    enum coffer_authz_reason reason;
    bool unexpected;
    int grant;
    enum coffer_err unseal; /* applied with coffer_authz_after_unseal after deciding */
};

static void base(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    f->members[0] = "analyst";
    f->members[1] = "builder";
    f->members[2] = "deployer";
    f->grants[0] = (struct coffer_authz_grant){"builder", NULL, build_staging, 2};
    f->grants[1] = (struct coffer_authz_grant){"deployer", NULL, production, 1};
    f->grants[2] = (struct coffer_authz_grant){"analyst", "metrics-1", production, 1};
    f->in = (struct coffer_authz_input){
        .principal = {"acme", "deployer", "deploy-1"},
        .purpose = "deploy payments v1.2",
        .purpose_len = strlen("deploy payments v1.2"),
        .now_us = NOW,
        .found = true,
        .org = "acme",
        .tier = COFFER_TIER_MEDIUM,
        .issued_us = NOW - DAY,
        .expires_us = NOW + DAY,
        .revoked = false,
        .tier_max_ttl_s = 365 * 86400,
        .purposes = f->patterns,
        .n_purposes = 0,
        .phase = "production",
        .members = f->members,
        .n_members = 3,
        .grants = f->grants,
        .n_grants = 3,
        .approvals = f->approvals,
        .n_approvals = 0,
    };
}

/* ---- Tweaks ---- */

static void principal_org(struct fixture *f, const struct tweak *t)
{
    f->in.principal.org = t->s;
}

static void cred_org(struct fixture *f, const struct tweak *t)
{
    f->in.org = t->s;
}

static void agent(struct fixture *f, const struct tweak *t)
{
    f->in.principal.agent_type = t->s;
    f->in.principal.instance = t->s2;
}

static void instance(struct fixture *f, const struct tweak *t)
{
    f->in.principal.instance = t->s;
}

static void not_found(struct fixture *f, const struct tweak *t)
{
    (void)t;
    f->in.found = false;
}

/* purpose s of length a (a < 0: strlen(s)). */
static void purpose(struct fixture *f, const struct tweak *t)
{
    f->in.purpose = t->s;
    f->in.purpose_len = t->a < 0 ? strlen(t->s) : (size_t)t->a;
}

/* A purpose of a bytes of 'p'. */
static void purpose_fill(struct fixture *f, const struct tweak *t)
{
    memset(f->buf, 'p', (size_t)t->a);
    f->in.purpose = f->buf;
    f->in.purpose_len = (size_t)t->a;
}

/* The project's members list: NULL with count a, or the first a entries. */
static void members(struct fixture *f, const struct tweak *t)
{
    f->in.members = t->s == NULL ? NULL : f->members;
    f->in.n_members = (size_t)t->a;
}

/* Replaces member a with s (which may be NULL). */
static void member_at(struct fixture *f, const struct tweak *t)
{
    f->members[t->a] = t->s;
}

static void revoked(struct fixture *f, const struct tweak *t)
{
    (void)t;
    f->in.revoked = true;
}

static void keys_expired(struct fixture *f, const struct tweak *t)
{
    (void)t;
    f->in.keys_expired = true;
}

static void expires_in(struct fixture *f, const struct tweak *t)
{
    f->in.expires_us = f->in.now_us + t->a;
}

static void expires_at(struct fixture *f, const struct tweak *t)
{
    f->in.expires_us = t->a;
}

static void issued_in(struct fixture *f, const struct tweak *t)
{
    f->in.issued_us = f->in.now_us + t->a;
}

static void issued_at(struct fixture *f, const struct tweak *t)
{
    f->in.issued_us = t->a;
}

static void now_at(struct fixture *f, const struct tweak *t)
{
    f->in.now_us = t->a;
}

static void tier(struct fixture *f, const struct tweak *t)
{
    f->in.tier = (enum coffer_tier)t->a;
    f->in.tier_max_ttl_s = t->b;
}

static void phase(struct fixture *f, const struct tweak *t)
{
    f->in.phase = t->s;
}

/* Appends a grant for type s and instance s2 with phases: a = 0 none, 1 production, 2 build and
 * staging. */
static void add_grant(struct fixture *f, const struct tweak *t)
{
    struct coffer_authz_grant *g = &f->grants[f->in.n_grants++];

    g->agent_type = t->s;
    g->instance = t->s2;
    g->phases = t->a == 1 ? production : t->a == 2 ? build_staging : NULL;
    g->n_phases = t->a == 1 ? 1 : t->a == 2 ? 2 : 0;
}

/* The grants list: NULL with count a. */
static void grants_null(struct fixture *f, const struct tweak *t)
{
    f->in.grants = NULL;
    f->in.n_grants = (size_t)t->a;
}

static void grant_type(struct fixture *f, const struct tweak *t)
{
    f->grants[t->a].agent_type = t->s;
}

static void grant_instance(struct fixture *f, const struct tweak *t)
{
    f->grants[t->a].instance = t->s;
}

/* Grant a's phase list becomes NULL while its count stays. */
static void grant_phases_null(struct fixture *f, const struct tweak *t)
{
    f->grants[t->a].phases = NULL;
}

/* Grant a lists phases {s} (s may be NULL). */
static void grant_phase_entry(struct fixture *f, const struct tweak *t)
{
    static const char *entry[1];

    entry[0] = t->s;
    f->grants[t->a].phases = entry;
    f->grants[t->a].n_phases = 1;
}

/* Appends an approval of (s, s2) for [now + a, now + b). */
static void approval(struct fixture *f, const struct tweak *t)
{
    f->approvals[f->in.n_approvals++] =
        (struct coffer_authz_approval){t->s, t->s2, f->in.now_us + t->a, f->in.now_us + t->b};
}

static void approvals_null(struct fixture *f, const struct tweak *t)
{
    f->in.approvals = NULL;
    f->in.n_approvals = (size_t)t->a;
}

/* Appends purpose pattern s (which may be NULL). */
static void pattern(struct fixture *f, const struct tweak *t)
{
    f->patterns[f->in.n_purposes++] = t->s;
}

/* The rule says reveal: false. */
static void secretless(struct fixture *f, const struct tweak *t)
{
    (void)t;
    f->in.secretless_only = true;
}

/* The caller makes a brokered call: the values never reach the principal. */
static void brokered(struct fixture *f, const struct tweak *t)
{
    (void)t;
    f->in.brokered = true;
}

static void patterns_null(struct fixture *f, const struct tweak *t)
{
    f->in.purposes = NULL;
    f->in.n_purposes = (size_t)t->a;
}

/* ---- The table ---- */

/* clang-format off */
/* Tweaks by the arguments they take. */
#define DO(fn) {fn, NULL, NULL, 0, 0}
#define S(fn, s) {fn, s, NULL, 0, 0}
#define S2(fn, s, s2) {fn, s, s2, 0, 0}
#define SN(fn, s, a) {fn, s, NULL, a, 0}
#define N(fn, a) {fn, NULL, NULL, a, 0}
#define N2(fn, a, b) {fn, NULL, NULL, a, b}
#define GRANT(type, inst, phases) {add_grant, type, inst, phases, 0}
#define APPROVAL(type, inst, from, until) {approval, type, inst, from, until}
/* Critical, stored an hour ago, with the org's 24h maximum. */
#define CRITICAL N2(tier, COFFER_TIER_CRITICAL, 86400), N(issued_in, -HOUR)
/* A standing approval of the base principal for [now + from, now + until). */
#define APPROVED(from, until) APPROVAL("deployer", "deploy-1", from, until)

/* Expected outcomes: the reason, the purpose flag and the grant index, then the unseal result. */
#define ALLOW(grant) COFFER_AUTHZ_GRANTED, false, grant, COFFER_OK
#define ALLOW_UNEXPECTED(grant) COFFER_AUTHZ_GRANTED, true, grant, COFFER_OK
#define DENY(reason) reason, false, -1, COFFER_OK
/* The outcome after coffer_authz_after_unseal(err) instead of COFFER_OK. */
#define UNSEAL(err, outcome) UNSEAL_(err, outcome)
#define UNSEAL_(err, reason, unexpected, grant, ok) reason, unexpected, grant, err

static const struct row rows[] = {
    {"base access is granted by the deployer grant", {{0}}, ALLOW(1)},

    /* 1. org */
    {"other org", {S(principal_org, "other")}, DENY(COFFER_AUTHZ_NOT_FOUND)},
    {"org differs only in case", {S(principal_org, "Acme")}, DENY(COFFER_AUTHZ_NOT_FOUND)},
    {"org is a prefix", {S(principal_org, "acm")}, DENY(COFFER_AUTHZ_NOT_FOUND)},
    {"principal org NULL", {S(principal_org, NULL)}, DENY(COFFER_AUTHZ_NOT_FOUND)},
    {"principal org empty", {S(principal_org, "")}, DENY(COFFER_AUTHZ_NOT_FOUND)},
    {"credential org NULL", {S(cred_org, NULL)}, DENY(COFFER_AUTHZ_NOT_FOUND)},
    {"both orgs empty", {S(principal_org, ""), S(cred_org, "")}, DENY(COFFER_AUTHZ_NOT_FOUND)},
    {"both orgs NULL", {S(principal_org, NULL), S(cred_org, NULL)}, DENY(COFFER_AUTHZ_NOT_FOUND)},
    {"org mismatch beats a missing purpose and a missing credential",
     {S(principal_org, "other"), DO(not_found), SN(purpose, NULL, 0)},
     DENY(COFFER_AUTHZ_NOT_FOUND)},
    {"org mismatch beats not a member and no grant",
     {S(principal_org, "other"), S2(agent, "intruder", "x-1")},
     DENY(COFFER_AUTHZ_NOT_FOUND)},
    {"org mismatch beats wrong phase, revoked, expired",
     {S(principal_org, "other"), S(phase, "design"), DO(revoked), N(expires_in, -SEC)},
     DENY(COFFER_AUTHZ_NOT_FOUND)},
    {"org mismatch beats approval required",
     {S(principal_org, "other"), CRITICAL},
     DENY(COFFER_AUTHZ_NOT_FOUND)},

    /* 2. existence */
    {"credential not found", {DO(not_found)}, DENY(COFFER_AUTHZ_NOT_FOUND)},
    {"not found beats purpose missing",
     {DO(not_found), SN(purpose, NULL, 0)},
     DENY(COFFER_AUTHZ_NOT_FOUND)},
    {"not found beats not a member",
     {DO(not_found), S2(agent, "intruder", "x-1")},
     DENY(COFFER_AUTHZ_NOT_FOUND)},

    /* 3. purpose */
    {"purpose NULL", {SN(purpose, NULL, 0)}, DENY(COFFER_AUTHZ_PURPOSE_MISSING)},
    {"purpose NULL with a length", {SN(purpose, NULL, 5)}, DENY(COFFER_AUTHZ_PURPOSE_MISSING)},
    {"purpose empty", {SN(purpose, "", 0)}, DENY(COFFER_AUTHZ_PURPOSE_MISSING)},
    {"purpose of 513 bytes", {N(purpose_fill, 513)}, DENY(COFFER_AUTHZ_PURPOSE_MISSING)},
    {"purpose of 512 bytes", {N(purpose_fill, 512)}, ALLOW(1)},
    {"purpose of 1 byte", {SN(purpose, "x", -1)}, ALLOW(1)},
    {"purpose with multibyte UTF-8",
     {SN(purpose, "d\xc3\xa9ploiement \xe2\x82\xac", -1)},
     ALLOW(1)},
    {"purpose invalid UTF-8",
     {SN(purpose, "deploy \xc3\x28", -1)},
     DENY(COFFER_AUTHZ_PURPOSE_MISSING)},
    {"purpose truncated UTF-8",
     {SN(purpose, "deploy \xe2\x82", -1)},
     DENY(COFFER_AUTHZ_PURPOSE_MISSING)},
    {"purpose with a tab", {SN(purpose, "deploy\tnow", -1)}, DENY(COFFER_AUTHZ_PURPOSE_MISSING)},
    {"purpose with a newline",
     {SN(purpose, "deploy\nnow", -1)},
     DENY(COFFER_AUTHZ_PURPOSE_MISSING)},
    {"purpose with DEL", {SN(purpose, "deploy\x7fnow", -1)}, DENY(COFFER_AUTHZ_PURPOSE_MISSING)},
    {"purpose with a C1 control",
     {SN(purpose, "deploy\xc2\x85now", -1)},
     DENY(COFFER_AUTHZ_PURPOSE_MISSING)},
    {"purpose with a NUL inside its length",
     {SN(purpose, "deploy\0now", 10)},
     DENY(COFFER_AUTHZ_PURPOSE_MISSING)},
    {"purpose missing beats not a member",
     {SN(purpose, "", 0), S2(agent, "intruder", "x-1")},
     DENY(COFFER_AUTHZ_PURPOSE_MISSING)},
    {"purpose missing beats revoked and expired",
     {SN(purpose, NULL, 0), DO(revoked), N(expires_in, 0)},
     DENY(COFFER_AUTHZ_PURPOSE_MISSING)},

    /* 4. membership */
    {"agent type not a member",
     {S2(agent, "intruder", "x-1")},
     DENY(COFFER_AUTHZ_NOT_PROJECT_MEMBER)},
    {"non-member with a grant of its own",
     {S2(agent, "intruder", "x-1"), GRANT("intruder", NULL, 0)},
     DENY(COFFER_AUTHZ_NOT_PROJECT_MEMBER)},
    {"project without members", {SN(members, "", 0)}, DENY(COFFER_AUTHZ_NOT_PROJECT_MEMBER)},
    {"members NULL with a count", {SN(members, NULL, 3)}, DENY(COFFER_AUTHZ_NOT_PROJECT_MEMBER)},
    {"principal agent type NULL",
     {S2(agent, NULL, "deploy-1")},
     DENY(COFFER_AUTHZ_NOT_PROJECT_MEMBER)},
    {"principal agent type empty",
     {S2(agent, "", "deploy-1")},
     DENY(COFFER_AUTHZ_NOT_PROJECT_MEMBER)},
    {"a NULL member entry is skipped", {SN(member_at, NULL, 0)}, ALLOW(1)},
    {"the member entry of the type is NULL",
     {SN(member_at, NULL, 2)},
     DENY(COFFER_AUTHZ_NOT_PROJECT_MEMBER)},
    {"member type differs in case",
     {SN(member_at, "Deployer", 2)},
     DENY(COFFER_AUTHZ_NOT_PROJECT_MEMBER)},
    {"not a member beats revoked",
     {S2(agent, "intruder", "x-1"), DO(revoked)},
     DENY(COFFER_AUTHZ_NOT_PROJECT_MEMBER)},

    /* 5. grant, instance against type */
    {"instance grant allows its instance", {S2(agent, "analyst", "metrics-1")}, ALLOW(2)},
    {"instance grant denies another instance",
     {S2(agent, "analyst", "metrics-2")},
     DENY(COFFER_AUTHZ_NO_GRANT)},
    {"type grant allows another instance",
     {S2(agent, "analyst", "metrics-2"), GRANT("analyst", NULL, 1)},
     ALLOW(3)},
    {"instance grant listed first wins for its instance",
     {S2(agent, "analyst", "metrics-1"), GRANT("analyst", NULL, 1)},
     ALLOW(2)},
    {"a member without any grant",
     {SN(member_at, "auditor", 0), S2(agent, "auditor", "a-1")},
     DENY(COFFER_AUTHZ_NO_GRANT)},
    {"no grants at all", {N(grants_null, 0)}, DENY(COFFER_AUTHZ_NO_GRANT)},
    {"grants NULL with a count", {N(grants_null, 3)}, DENY(COFFER_AUTHZ_NO_GRANT)},
    {"grant agent type NULL", {SN(grant_type, NULL, 1)}, DENY(COFFER_AUTHZ_NO_GRANT)},
    {"grant instance empty matches nobody",
     {SN(grant_instance, "", 1)},
     DENY(COFFER_AUTHZ_NO_GRANT)},
    {"principal instance NULL", {S(instance, NULL)}, DENY(COFFER_AUTHZ_NO_GRANT)},
    {"principal instance empty", {S(instance, "")}, DENY(COFFER_AUTHZ_NO_GRANT)},
    {"principal instance NULL against an instance grant",
     {S2(agent, "analyst", NULL)},
     DENY(COFFER_AUTHZ_NO_GRANT)},
    {"no grant beats revoked",
     {S2(agent, "analyst", "metrics-2"), DO(revoked)},
     DENY(COFFER_AUTHZ_NO_GRANT)},
    {"no grant beats expired",
     {S2(agent, "analyst", "metrics-2"), N(expires_in, -DAY)},
     DENY(COFFER_AUTHZ_NO_GRANT)},

    /* 6. phase */
    {"phase just left: builder grant for build and staging in production",
     {S2(agent, "builder", "b-1")},
     DENY(COFFER_AUTHZ_WRONG_PHASE)},
    {"one microsecond before the change the builder was allowed",
     {S2(agent, "builder", "b-1"), S(phase, "staging"), N(expires_in, 1)},
     ALLOW(0)},
    {"expiry at the phase change instant is expired",
     {N(expires_in, 0)},
     DENY(COFFER_AUTHZ_EXPIRED)},
    {"instance grant in the wrong phase",
     {S2(agent, "analyst", "metrics-1"), S(phase, "build")},
     DENY(COFFER_AUTHZ_WRONG_PHASE)},
    {"a later grant covers the phase",
     {S2(agent, "builder", "b-1"), GRANT("builder", NULL, 1)},
     ALLOW(3)},
    {"a grant without phases covers every phase",
     {S2(agent, "builder", "b-1"), GRANT("builder", "b-1", 0), S(phase, "design")},
     ALLOW(3)},
    {"project without a phase, grant with phases",
     {S(phase, NULL)},
     DENY(COFFER_AUTHZ_WRONG_PHASE)},
    {"project without a phase, grant without phases",
     {S(phase, NULL), GRANT("deployer", NULL, 0)},
     ALLOW(3)},
    {"grant phases NULL with a count", {N(grant_phases_null, 1)}, DENY(COFFER_AUTHZ_WRONG_PHASE)},
    {"grant phase entry NULL", {SN(grant_phase_entry, NULL, 1)}, DENY(COFFER_AUTHZ_WRONG_PHASE)},
    {"grant phase entry NULL and project without a phase",
     {SN(grant_phase_entry, NULL, 1), S(phase, NULL)},
     DENY(COFFER_AUTHZ_WRONG_PHASE)},
    {"phase differs in case", {S(phase, "Production")}, DENY(COFFER_AUTHZ_WRONG_PHASE)},
    {"wrong phase beats revoked",
     {S(phase, "design"), DO(revoked)},
     DENY(COFFER_AUTHZ_WRONG_PHASE)},

    /* 7. reveal: false */
    {"reveal false refuses an access of the values", {DO(secretless)},
     DENY(COFFER_AUTHZ_SECRETLESS_ONLY)},
    {"reveal false lets a brokered use go on", {DO(secretless), DO(brokered)}, ALLOW(1)},
    {"a brokered use of a revealed credential", {DO(brokered)}, ALLOW(1)},
    {"reveal false for an instance grant", {S2(agent, "analyst", "metrics-1"), DO(secretless)},
     DENY(COFFER_AUTHZ_SECRETLESS_ONLY)},
    {"no grant beats reveal false", {S2(agent, "analyst", "metrics-2"), DO(secretless)},
     DENY(COFFER_AUTHZ_NO_GRANT)},
    {"wrong phase beats reveal false", {S(phase, "design"), DO(secretless)},
     DENY(COFFER_AUTHZ_WRONG_PHASE)},
    {"not a member beats reveal false", {SN(members, "", 2), DO(secretless)},
     DENY(COFFER_AUTHZ_NOT_PROJECT_MEMBER)},
    {"not found beats reveal false", {DO(not_found), DO(secretless)},
     DENY(COFFER_AUTHZ_NOT_FOUND)},
    {"another org beats reveal false", {S(principal_org, "other"), DO(secretless)},
     DENY(COFFER_AUTHZ_NOT_FOUND)},
    {"purpose missing beats reveal false", {SN(purpose, "", 0), DO(secretless)},
     DENY(COFFER_AUTHZ_PURPOSE_MISSING)},
    {"reveal false beats revoked", {DO(secretless), DO(revoked)},
     DENY(COFFER_AUTHZ_SECRETLESS_ONLY)},
    {"reveal false beats expired", {DO(secretless), N(expires_in, -DAY), DO(keys_expired)},
     DENY(COFFER_AUTHZ_SECRETLESS_ONLY)},
    {"reveal false beats approval required", {DO(secretless), CRITICAL},
     DENY(COFFER_AUTHZ_SECRETLESS_ONLY)},
    {"a brokered use is still revoked", {DO(secretless), DO(brokered), DO(revoked)},
     DENY(COFFER_AUTHZ_REVOKED)},
    {"a brokered use is still expired", {DO(secretless), DO(brokered), N(expires_in, 0)},
     DENY(COFFER_AUTHZ_EXPIRED)},
    {"a brokered use still needs an approval", {DO(secretless), DO(brokered), CRITICAL},
     DENY(COFFER_AUTHZ_APPROVAL_REQUIRED)},
    {"a brokered use still needs a grant", {S2(agent, "builder", "b-1"), DO(brokered)},
     DENY(COFFER_AUTHZ_WRONG_PHASE)},
    {"a brokered use flags an unexpected purpose",
     {DO(secretless), DO(brokered), S(pattern, "reconcile *")},
     ALLOW_UNEXPECTED(1)},

    /* 8. revocation */
    {"revoked", {DO(revoked)}, DENY(COFFER_AUTHZ_REVOKED)},
    {"revoked beats expired", {DO(revoked), N(expires_in, 0)}, DENY(COFFER_AUTHZ_REVOKED)},
    {"revoked beats approval required", {DO(revoked), CRITICAL}, DENY(COFFER_AUTHZ_REVOKED)},

    /* 9. expiry */
    {"expiry exactly now", {N(expires_in, 0)}, DENY(COFFER_AUTHZ_EXPIRED)},
    {"expiry one microsecond ahead", {N(expires_in, 1)}, ALLOW(1)},
    {"expiry in the past", {N(expires_in, -DAY)}, DENY(COFFER_AUTHZ_EXPIRED)},
    {"no expiry recorded", {N(expires_at, COFFER_AUTHZ_NO_EXPIRY)}, ALLOW(1)},
    {"issued plus max TTL exactly now",
     {N(expires_at, COFFER_AUTHZ_NO_EXPIRY), N(issued_in, -365 * DAY)},
     DENY(COFFER_AUTHZ_EXPIRED)},
    {"issued plus max TTL one microsecond ahead",
     {N(expires_at, COFFER_AUTHZ_NO_EXPIRY), N(issued_in, -365 * DAY + 1)},
     ALLOW(1)},
    {"lowered max TTL expires an older credential",
     {N2(tier, COFFER_TIER_MEDIUM, 3600), N(issued_in, -2 * HOUR)},
     DENY(COFFER_AUTHZ_EXPIRED)},
    {"every key past its own expiry", {DO(keys_expired)}, DENY(COFFER_AUTHZ_EXPIRED)},
    {"every key past its own expiry, no credential expiry",
     {N(expires_at, COFFER_AUTHZ_NO_EXPIRY), DO(keys_expired)},
     DENY(COFFER_AUTHZ_EXPIRED)},
    {"no grant beats every key expired",
     {S2(agent, "analyst", "metrics-2"), DO(keys_expired)},
     DENY(COFFER_AUTHZ_NO_GRANT)},
    {"revoked beats every key expired", {DO(revoked), DO(keys_expired)},
     DENY(COFFER_AUTHZ_REVOKED)},
    {"every key expired beats approval required", {CRITICAL, DO(keys_expired)},
     DENY(COFFER_AUTHZ_EXPIRED)},
    {"low with max TTL never does not expire by age",
     {N2(tier, COFFER_TIER_LOW, COFFER_TTL_NEVER), N(expires_at, COFFER_AUTHZ_NO_EXPIRY),
      N(issued_in, -100 * 365 * DAY)},
     ALLOW(1)},
    {"low with max TTL never still honours its expiry",
     {N2(tier, COFFER_TIER_LOW, COFFER_TTL_NEVER), N(expires_in, 0)},
     DENY(COFFER_AUTHZ_EXPIRED)},
    {"medium with max TTL never does not expire by age",
     {N2(tier, COFFER_TIER_MEDIUM, COFFER_TTL_NEVER), N(issued_in, -10 * 365 * DAY)},
     ALLOW(1)},
    {"low with a finite max TTL expires by age",
     {N2(tier, COFFER_TIER_LOW, 86400), N(issued_in, -DAY)},
     DENY(COFFER_AUTHZ_EXPIRED)},
    {"high with NEVER given uses the 7 day hard maximum",
     {N2(tier, COFFER_TIER_HIGH, COFFER_TTL_NEVER), N(expires_at, COFFER_AUTHZ_NO_EXPIRY),
      N(issued_in, -7 * DAY)},
     DENY(COFFER_AUTHZ_EXPIRED)},
    {"high with NEVER given, one microsecond inside the hard maximum",
     {N2(tier, COFFER_TIER_HIGH, COFFER_TTL_NEVER), N(expires_at, COFFER_AUTHZ_NO_EXPIRY),
      N(issued_in, -7 * DAY + 1)},
     ALLOW(1)},
    {"high with a max TTL over the hard maximum is held to it",
     {N2(tier, COFFER_TIER_HIGH, 30 * 86400), N(issued_in, -7 * DAY)},
     DENY(COFFER_AUTHZ_EXPIRED)},
    {"high within its own shorter max TTL",
     {N2(tier, COFFER_TIER_HIGH, 86400), N(issued_in, -DAY + 1)},
     ALLOW(1)},
    {"critical with NEVER given uses the 24 hour hard maximum",
     {N2(tier, COFFER_TIER_CRITICAL, COFFER_TTL_NEVER), N(expires_at, COFFER_AUTHZ_NO_EXPIRY),
      N(issued_in, -DAY), APPROVED(-HOUR, HOUR)},
     DENY(COFFER_AUTHZ_EXPIRED)},
    {"critical with NEVER given, one microsecond inside the hard maximum",
     {N2(tier, COFFER_TIER_CRITICAL, COFFER_TTL_NEVER), N(expires_at, COFFER_AUTHZ_NO_EXPIRY),
      N(issued_in, -DAY + 1), APPROVED(-HOUR, HOUR)},
     ALLOW(1)},
    {"a tier out of range is held to the critical maximum",
     {N2(tier, 9, COFFER_TTL_NEVER), N(issued_in, -DAY), APPROVED(-HOUR, HOUR)},
     DENY(COFFER_AUTHZ_EXPIRED)},
    {"a negative max TTL that is not NEVER expires",
     {N2(tier, COFFER_TIER_MEDIUM, -5)},
     DENY(COFFER_AUTHZ_EXPIRED)},
    {"a max TTL of zero expires", {N2(tier, COFFER_TIER_MEDIUM, 0)}, DENY(COFFER_AUTHZ_EXPIRED)},
    {"issued at the earliest instant: the age does not overflow",
     {N2(tier, COFFER_TIER_LOW, 86400), N(issued_at, INT64_MIN)},
     DENY(COFFER_AUTHZ_EXPIRED)},
    {"issued near the last instant: issued + TTL would overflow",
     {N(now_at, INT64_MAX - 5), N(issued_at, INT64_MAX - 10),
      N(expires_at, COFFER_AUTHZ_NO_EXPIRY), N2(tier, COFFER_TIER_MEDIUM, COFFER_TTL_FINITE_MAX)},
     ALLOW(1)},
    {"a max TTL too large to count in microseconds",
     {N2(tier, COFFER_TIER_MEDIUM, INT64_MAX), N(issued_at, INT64_MIN)},
     ALLOW(1)},
    {"stored after now (clock skew) is not expired by age",
     {N2(tier, COFFER_TIER_MEDIUM, 1), N(issued_in, SEC)},
     ALLOW(1)},
    {"expiry before issue time still expires",
     {N(issued_in, SEC), N(expires_in, -SEC)},
     DENY(COFFER_AUTHZ_EXPIRED)},
    {"expired beats approval required", {CRITICAL, N(expires_in, 0)}, DENY(COFFER_AUTHZ_EXPIRED)},

    /* 10. approval */
    {"critical without an approval", {CRITICAL}, DENY(COFFER_AUTHZ_APPROVAL_REQUIRED)},
    {"critical with an approval covering now", {CRITICAL, APPROVED(-HOUR, HOUR)}, ALLOW(1)},
    {"approval starting exactly now", {CRITICAL, APPROVED(0, HOUR)}, ALLOW(1)},
    {"approval starting one microsecond ahead",
     {CRITICAL, APPROVED(1, HOUR)},
     DENY(COFFER_AUTHZ_APPROVAL_REQUIRED)},
    {"approval ending exactly now",
     {CRITICAL, APPROVED(-HOUR, 0)},
     DENY(COFFER_AUTHZ_APPROVAL_REQUIRED)},
    {"approval ending one microsecond ahead", {CRITICAL, APPROVED(-HOUR, 1)}, ALLOW(1)},
    {"empty approval window", {CRITICAL, APPROVED(0, 0)}, DENY(COFFER_AUTHZ_APPROVAL_REQUIRED)},
    {"approval of another instance",
     {CRITICAL, APPROVAL("deployer", "deploy-2", -HOUR, HOUR)},
     DENY(COFFER_AUTHZ_APPROVAL_REQUIRED)},
    {"approval of another agent type",
     {CRITICAL, APPROVAL("analyst", "deploy-1", -HOUR, HOUR)},
     DENY(COFFER_AUTHZ_APPROVAL_REQUIRED)},
    {"approval without an instance",
     {CRITICAL, APPROVAL("deployer", NULL, -HOUR, HOUR)},
     DENY(COFFER_AUTHZ_APPROVAL_REQUIRED)},
    {"approval without an agent type",
     {CRITICAL, APPROVAL(NULL, "deploy-1", -HOUR, HOUR)},
     DENY(COFFER_AUTHZ_APPROVAL_REQUIRED)},
    {"the second approval matches",
     {CRITICAL, APPROVAL("deployer", "deploy-2", -HOUR, HOUR), APPROVED(-HOUR, HOUR)},
     ALLOW(1)},
    {"approvals NULL with a count",
     {CRITICAL, N(approvals_null, 2)},
     DENY(COFFER_AUTHZ_APPROVAL_REQUIRED)},
    {"approval ignored for high", {N2(tier, COFFER_TIER_HIGH, 604800)}, ALLOW(1)},
    {"approval ignored for low",
     {N2(tier, COFFER_TIER_LOW, COFFER_TTL_NEVER),
      APPROVAL("deployer", "deploy-2", HOUR, 2 * HOUR)},
     ALLOW(1)},
    {"a tier out of range needs an approval",
     {N2(tier, 9, 86400), N(issued_in, -HOUR)},
     DENY(COFFER_AUTHZ_APPROVAL_REQUIRED)},

    /* 11. purpose patterns */
    {"purpose matches the only pattern", {S(pattern, "deploy payments *")}, ALLOW(1)},
    {"purpose matches no pattern", {S(pattern, "reconcile *")}, ALLOW_UNEXPECTED(1)},
    {"purpose matches the second pattern in another case",
     {S(pattern, "reconcile *"), S(pattern, "DEPLOY *")},
     ALLOW(1)},
    {"purpose matches none of several patterns",
     {S(pattern, "reconcile *"), S(pattern, "deploy billing *")},
     ALLOW_UNEXPECTED(1)},
    {"patterns NULL with a count", {N(patterns_null, 2)}, ALLOW_UNEXPECTED(1)},
    {"a NULL pattern matches nothing", {S(pattern, NULL)}, ALLOW_UNEXPECTED(1)},
    {"a NULL pattern beside a matching one",
     {S(pattern, NULL), S(pattern, "*payments*")},
     ALLOW(1)},
    {"unexpected purpose is not flagged on a deny",
     {S(pattern, "reconcile *"), DO(revoked)},
     DENY(COFFER_AUTHZ_REVOKED)},
    {"unexpected purpose on a critical approved access",
     {CRITICAL, APPROVED(-HOUR, HOUR), S(pattern, "reconcile *")},
     ALLOW_UNEXPECTED(1)},

    /* After the allow: unsealing the credential */
    {"unsealed", {{0}}, ALLOW(1)},
    {"integrity failure while unsealing",
     {{0}},
     UNSEAL(COFFER_E_INTEGRITY, DENY(COFFER_AUTHZ_INTEGRITY_ERROR))},
    {"token gone while unsealing",
     {{0}},
     UNSEAL(COFFER_E_TOKEN_UNAVAILABLE, DENY(COFFER_AUTHZ_TOKEN_UNAVAILABLE))},
    {"token failure while unsealing",
     {{0}},
     UNSEAL(COFFER_E_TOKEN, DENY(COFFER_AUTHZ_TOKEN_UNAVAILABLE))},
    {"PIN failure while unsealing",
     {{0}},
     UNSEAL(COFFER_E_PIN, DENY(COFFER_AUTHZ_TOKEN_UNAVAILABLE))},
    {"forked token context while unsealing",
     {{0}},
     UNSEAL(COFFER_E_FORKED, DENY(COFFER_AUTHZ_TOKEN_UNAVAILABLE))},
    {"unexpected purpose then integrity failure",
     {S(pattern, "reconcile *")},
     UNSEAL(COFFER_E_INTEGRITY, DENY(COFFER_AUTHZ_INTEGRITY_ERROR))},
    {"another error leaves the allow", {{0}}, UNSEAL(COFFER_E_NOMEM, ALLOW(1))},
    {"a database error leaves the allow", {{0}}, UNSEAL(COFFER_E_DB, ALLOW(1))},
    {"an unseal failure does not change a deny",
     {DO(revoked)},
     UNSEAL(COFFER_E_INTEGRITY, DENY(COFFER_AUTHZ_REVOKED))},
    {"a token failure does not change a not found",
     {DO(not_found)},
     UNSEAL(COFFER_E_TOKEN_UNAVAILABLE, DENY(COFFER_AUTHZ_NOT_FOUND))},
};
/* clang-format on */

static void run_row(const struct row *r, struct coffer_authz_decision *d)
{
    struct fixture f;

    base(&f);
    for (size_t k = 0; k < MAX_TWEAKS && r->tweaks[k].fn != NULL; k++) {
        r->tweaks[k].fn(&f, &r->tweaks[k]);
    }
    /* Garbage in the output: every field must be written by the decision. */
    memset(d, 0x5a, sizeof(*d));
    d->allow = true;
    d->purpose_unexpected = true;
    coffer_authz_decide(&f.in, d);
    coffer_authz_after_unseal(d, r->unseal);
}

static void test_table(void **state)
{
    bool seen[COFFER_AUTHZ_REASON_COUNT] = {false};
    size_t failures = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        struct coffer_authz_decision d;

        run_row(r, &d);
        if (d.reason != r->reason || d.purpose_unexpected != r->unexpected || d.grant != r->grant ||
            d.allow != (r->reason == COFFER_AUTHZ_GRANTED)) {
            print_error("row %zu \"%s\": got %s allow=%d unexpected=%d grant=%d, "
                        "want %s unexpected=%d grant=%d\n",
                        i, r->name, coffer_authz_reason_str(d.reason), d.allow,
                        d.purpose_unexpected, d.grant, coffer_authz_reason_str(r->reason),
                        r->unexpected, r->grant);
            failures++;
        }
        if ((unsigned)d.reason < COFFER_AUTHZ_REASON_COUNT) {
            seen[d.reason] = true;
        }
    }
    assert_int_equal(failures, 0);
    for (size_t i = 0; i < COFFER_AUTHZ_REASON_COUNT; i++) {
        if (!seen[i]) {
            print_error("no row reaches %s\n",
                        coffer_authz_reason_str((enum coffer_authz_reason)i));
        }
        assert_true(seen[i]);
    }
}

/* The same input gives the same decision however often it is asked: nothing is remembered. */
static void test_no_state(void **state)
{
    struct fixture f;
    struct coffer_authz_decision d;

    (void)state;
    base(&f);
    for (int round = 0; round < 3; round++) {
        f.in.revoked = false;
        coffer_authz_decide(&f.in, &d);
        assert_int_equal(d.reason, COFFER_AUTHZ_GRANTED);
        f.in.revoked = true;
        coffer_authz_decide(&f.in, &d);
        assert_int_equal(d.reason, COFFER_AUTHZ_REVOKED);
    }
}

static void test_null_arguments(void **state)
{
    struct fixture f;
    struct coffer_authz_decision d;

    (void)state;
    memset(&d, 0x5a, sizeof(d));
    d.allow = true;
    d.purpose_unexpected = true;
    coffer_authz_decide(NULL, &d);
    assert_int_equal(d.reason, COFFER_AUTHZ_NOT_FOUND);
    assert_false(d.allow);
    assert_false(d.purpose_unexpected);
    assert_int_equal(d.grant, -1);

    base(&f);
    coffer_authz_decide(&f.in, NULL);
    coffer_authz_after_unseal(NULL, COFFER_E_INTEGRITY);

    /* A struct with every field zero: no org, nothing found. */
    memset(&f, 0, sizeof(f));
    coffer_authz_decide(&f.in, &d);
    assert_int_equal(d.reason, COFFER_AUTHZ_NOT_FOUND);
    assert_false(d.allow);
}

/* Every error code: only the five token and integrity codes turn an allow into a deny. */
static void test_after_unseal_mapping(void **state)
{
    (void)state;
    for (int e = COFFER_OK; e >= COFFER_E_CRYPTO; e--) {
        struct fixture f;
        struct coffer_authz_decision d;
        enum coffer_authz_reason want = COFFER_AUTHZ_GRANTED;

        switch ((enum coffer_err)e) {
        case COFFER_E_INTEGRITY:
            want = COFFER_AUTHZ_INTEGRITY_ERROR;
            break;
        case COFFER_E_TOKEN_UNAVAILABLE:
        case COFFER_E_TOKEN:
        case COFFER_E_PIN:
        case COFFER_E_FORKED:
        case COFFER_E_NOT_FOUND:
        case COFFER_E_STATE:
            want = COFFER_AUTHZ_TOKEN_UNAVAILABLE;
            break;
        default:
            break;
        }
        base(&f);
        coffer_authz_decide(&f.in, &d);
        assert_true(d.allow);
        coffer_authz_after_unseal(&d, (enum coffer_err)e);
        assert_int_equal(d.reason, want);
        assert_int_equal(d.allow, want == COFFER_AUTHZ_GRANTED);
        assert_int_equal(d.grant, want == COFFER_AUTHZ_GRANTED ? 1 : -1);

        /* A deny stays exactly as it was. */
        f.in.phase = "design";
        coffer_authz_decide(&f.in, &d);
        coffer_authz_after_unseal(&d, (enum coffer_err)e);
        assert_int_equal(d.reason, COFFER_AUTHZ_WRONG_PHASE);
        assert_false(d.allow);
        assert_int_equal(d.grant, -1);
    }
}

static void test_purpose_ok(void **state)
{
    char buf[600];

    (void)state;
    memset(buf, 'a', sizeof(buf));
    assert_true(coffer_authz_purpose_ok("x", 1));
    assert_true(coffer_authz_purpose_ok(buf, 512));
    assert_false(coffer_authz_purpose_ok(buf, 513));
    assert_false(coffer_authz_purpose_ok(buf, 0));
    assert_false(coffer_authz_purpose_ok(NULL, 0));
    assert_false(coffer_authz_purpose_ok(NULL, 4));
    assert_false(coffer_authz_purpose_ok("a\tb", 3));
    assert_false(coffer_authz_purpose_ok("a\xff", 2));
    /* 510 ASCII bytes and one 2-byte character: 512 bytes, accepted; one more byte is not. */
    buf[510] = '\xc3';
    buf[511] = '\xa9';
    assert_true(coffer_authz_purpose_ok(buf, 512));
    buf[512] = 'a';
    assert_false(coffer_authz_purpose_ok(buf, 513));
}

struct match_case {
    const char *pattern;
    const char *purpose;
    bool want;
};

static void test_purpose_matches(void **state)
{
    static const struct match_case cases[] = {
        {"deploy", "deploy", true},
        {"deploy", "deplo", false},
        {"deploy", "deploys", false},
        {"deploy", "xdeploy", false},
        {"", "", true},
        {"", "a", false},
        {"*", "", true},
        {"*", "anything at all", true},
        {"**", "", true},
        {"***", "abc", true},
        {"deploy *", "deploy payments", true},
        {"deploy *", "deploy ", true},
        {"deploy *", "deploy", false},
        {"* payments", "deploy payments", true},
        {"* payments", "deploy payments now", false},
        {"*pay*", "deploy payments", true},
        {"*pay*", "pay", true},
        {"*pay*", "pa", false},
        {"a*b*c", "abc", true},
        {"a*b*c", "aXXbYYc", true},
        {"a*b*c", "aXXcYYb", false},
        {"a*b*c", "abcabc", true},
        {"a*b*c", "abcab", false},
        {"a**b", "ab", true},
        {"a**b", "aZZb", true},
        {"*aab", "aaab", true},
        {"*ab", "aaaaab", true},
        {"*ab", "aaaaba", false},
        {"a*a", "a", false},
        {"a*a", "aa", true},
        {"*a*a*", "xaya", true},
        {"*a*a*", "xay", false},
        {"DePloy *", "deploy X", true},
        {"deploy *", "DEPLOY X", true},
        {"ABC", "abc", true},
        {"z", "Z", true},
        /* Only letters fold: '[' and '{', '@' and '`' differ by the case bit but are not letters.
         */
        {"a[", "A{", false},
        {"@", "`", false},
        {"^", "~", false},
        /* No folding beyond ASCII: U+00C9 against U+00E9. */
        {"\xc3\x89t\xc3\xa9", "\xc3\xa9t\xc3\xa9", false},
        {"\xc3\xa9t\xc3\xa9 *", "\xc3\xa9t\xc3\xa9 2024", true},
        {"caf\xc3\xa9*", "CAF\xc3\xa9 au lait", true},
        /* A star in the purpose is an ordinary byte. */
        {"a", "*", false},
        {"a*", "a*", true},
        {"?", "x", false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct match_case *c = &cases[i];
        bool got = coffer_authz_purpose_matches(c->pattern, c->purpose, strlen(c->purpose));

        if (got != c->want) {
            print_error("pattern \"%s\" against \"%s\": got %d\n", c->pattern, c->purpose, got);
        }
        assert_int_equal(got, c->want);
    }
}

static void test_purpose_matches_bounds(void **state)
{
    (void)state;
    /* Only len bytes of the purpose count. */
    assert_true(coffer_authz_purpose_matches("abc", "abcdef", 3));
    assert_false(coffer_authz_purpose_matches("abc", "abcdef", 4));
    assert_true(coffer_authz_purpose_matches("abc*", "abcdef", 4));
    assert_true(coffer_authz_purpose_matches("a*", "a\0b", 3));
    assert_false(coffer_authz_purpose_matches("a", "a\0b", 3));
    /* Missing arguments match nothing but the empty purpose. */
    assert_false(coffer_authz_purpose_matches(NULL, "abc", 3));
    assert_false(coffer_authz_purpose_matches(NULL, NULL, 0));
    assert_false(coffer_authz_purpose_matches("*", NULL, 3));
    assert_true(coffer_authz_purpose_matches("*", NULL, 0));
    assert_true(coffer_authz_purpose_matches("", NULL, 0));
    assert_false(coffer_authz_purpose_matches("a", NULL, 0));
}

static double seconds_since(const struct timespec *start)
{
    struct timespec end;

    clock_gettime(CLOCK_MONOTONIC, &end);
    return (double)(end.tv_sec - start->tv_sec) + (double)(end.tv_nsec - start->tv_nsec) / 1e9;
}

/*
 * "a*a*a*...*b" against a long run of 'a': a matcher that backtracks into
 * every star takes exponential time here; the last-star algorithm takes at
 * most pattern times purpose steps (about 10^7).
 */
static void test_purpose_matches_pathological(void **state)
{
    enum { STARS = 200, PURPOSE = 50000 };
    static char pattern[2 * STARS + 2];
    static char purpose[PURPOSE + 1];
    struct timespec start;
    double elapsed;
    size_t p = 0;

    (void)state;
    for (int i = 0; i < STARS; i++) {
        pattern[p++] = 'a';
        pattern[p++] = '*';
    }
    pattern[p++] = 'b';
    pattern[p] = '\0';
    memset(purpose, 'a', PURPOSE);

    clock_gettime(CLOCK_MONOTONIC, &start);
    assert_false(coffer_authz_purpose_matches(pattern, purpose, PURPOSE));
    purpose[PURPOSE - 1] = 'b';
    assert_true(coffer_authz_purpose_matches(pattern, purpose, PURPOSE));
    /* Too few 'a' for the pattern's 200 literal ones. */
    assert_false(coffer_authz_purpose_matches(pattern, purpose + PURPOSE - 100, 100));
    elapsed = seconds_since(&start);
    print_message("pathological pattern: %.3f s\n", elapsed);
    assert_true(elapsed < 5.0);
}

static void test_reason_names(void **state)
{
    static const char *const names[COFFER_AUTHZ_REASON_COUNT] = {
        "granted",           "no_grant",        "wrong_phase",        "expired",
        "revoked",           "not_found",       "not_project_member", "purpose_missing",
        "approval_required", "integrity_error", "token_unavailable",  "secretless_only",
    };

    (void)state;
    for (size_t i = 0; i < COFFER_AUTHZ_REASON_COUNT; i++) {
        enum coffer_authz_reason r = (enum coffer_authz_reason)i;
        enum coffer_authz_reason back = COFFER_AUTHZ_REASON_COUNT;
        const char *s = coffer_authz_reason_str(r);

        assert_string_equal(s, names[i]);
        assert_true(coffer_authz_reason_parse(s, strlen(s), &back));
        assert_int_equal(back, r);
    }
}

static void test_reason_unknown(void **state)
{
    enum coffer_authz_reason out = COFFER_AUTHZ_REVOKED;

    (void)state;
    assert_string_equal(
        coffer_authz_reason_str((enum coffer_authz_reason)COFFER_AUTHZ_REASON_COUNT), "unknown");
    assert_string_equal(coffer_authz_reason_str((enum coffer_authz_reason) - 1), "unknown");
    assert_string_equal(coffer_authz_reason_str((enum coffer_authz_reason)1000), "unknown");

    assert_false(coffer_authz_reason_parse("unknown", 7, &out));
    assert_false(coffer_authz_reason_parse("", 0, &out));
    assert_false(coffer_authz_reason_parse(NULL, 0, &out));
    assert_false(coffer_authz_reason_parse(NULL, 7, &out));
    assert_false(coffer_authz_reason_parse("granted", 7, NULL));
    assert_false(coffer_authz_reason_parse("grante", 6, &out));
    assert_false(coffer_authz_reason_parse("granted", 6, &out));
    assert_false(coffer_authz_reason_parse("grantedx", 8, &out));
    assert_false(coffer_authz_reason_parse("granted\0", 8, &out));
    assert_false(coffer_authz_reason_parse("GRANTED", 7, &out));
    assert_false(coffer_authz_reason_parse("permission_denied", 17, &out));
    /* A failed parse leaves the output alone. */
    assert_int_equal(out, COFFER_AUTHZ_REVOKED);
    /* The length decides, not a NUL: "expired" is the first 7 bytes here. */
    assert_true(coffer_authz_reason_parse("expiredXYZ", 7, &out));
    assert_int_equal(out, COFFER_AUTHZ_EXPIRED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_no_state),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_after_unseal_mapping),
        cmocka_unit_test(test_purpose_ok),
        cmocka_unit_test(test_purpose_matches),
        cmocka_unit_test(test_purpose_matches_bounds),
        cmocka_unit_test(test_purpose_matches_pathological),
        cmocka_unit_test(test_reason_names),
        cmocka_unit_test(test_reason_unknown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
