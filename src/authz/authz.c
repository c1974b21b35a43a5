/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The access decision and its reason codes. Everything here is a pure
 * function of its arguments: no I/O, no allocation, no clock, no state kept
 * between calls, so that a decision can be replayed from the inputs the
 * audit log records and a test can reach every branch without a database.
 *
 * It must never allow on a malformed input: a NULL or empty string where a
 * name belongs, or a list whose count says it has entries but whose array is
 * missing, is read as "absent", which can only take an access away. It must
 * never crash on such input either, because it runs inside request handling.
 */
#include "coffer/authz.h"

#include "coffer/mem.h"
#include "coffer/text.h"

#include <limits.h>
#include <string.h>

#define US_PER_S UINT64_C(1000000)

static const char *const reason_names[COFFER_AUTHZ_REASON_COUNT] = {
    [COFFER_AUTHZ_GRANTED] = "granted",
    [COFFER_AUTHZ_NO_GRANT] = "no_grant",
    [COFFER_AUTHZ_WRONG_PHASE] = "wrong_phase",
    [COFFER_AUTHZ_EXPIRED] = "expired",
    [COFFER_AUTHZ_REVOKED] = "revoked",
    [COFFER_AUTHZ_NOT_FOUND] = "not_found",
    [COFFER_AUTHZ_NOT_PROJECT_MEMBER] = "not_project_member",
    [COFFER_AUTHZ_PURPOSE_MISSING] = "purpose_missing",
    [COFFER_AUTHZ_APPROVAL_REQUIRED] = "approval_required",
    [COFFER_AUTHZ_INTEGRITY_ERROR] = "integrity_error",
    [COFFER_AUTHZ_TOKEN_UNAVAILABLE] = "token_unavailable",
    [COFFER_AUTHZ_SECRETLESS_ONLY] = "secretless_only",
};

const char *coffer_authz_reason_str(enum coffer_authz_reason r)
{
    /* Compared as unsigned so that a negative value read from outside is out of range too. */
    if ((unsigned)r >= COFFER_AUTHZ_REASON_COUNT) {
        return "unknown";
    }
    return reason_names[r];
}

bool coffer_authz_reason_parse(const char *s, size_t len, enum coffer_authz_reason *out)
{
    if (s == NULL || out == NULL) {
        return false;
    }
    for (size_t i = 0; i < COFFER_AUTHZ_REASON_COUNT; i++) {
        const char *name = reason_names[i];

        if (strlen(name) == len && coffer_mem_equal(name, s, len)) {
            *out = (enum coffer_authz_reason)i;
            return true;
        }
    }
    return false;
}

/* A name that is present: neither NULL nor empty. */
static bool present(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* Two present names that are equal; an absent name equals nothing, not even another absent one. */
static bool same_name(const char *a, const char *b)
{
    return present(a) && present(b) && strcmp(a, b) == 0;
}

/* Whether name is one of the n entries of list; a missing list holds nothing. */
static bool listed(const char *const *list, size_t n, const char *name)
{
    if (list == NULL) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (same_name(list[i], name)) {
            return true;
        }
    }
    return false;
}

/* ASCII lower case only: the C library's tolower depends on the locale. */
static unsigned char fold(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return (unsigned char)(c - 'A' + 'a');
    }
    return c;
}

bool coffer_authz_purpose_ok(const char *purpose, size_t len)
{
    return coffer_text_ok(purpose, len, COFFER_POLICY_PURPOSE_MAX);
}

/*
 * Greedy matching that remembers only the last '*' seen: on a mismatch the
 * last star absorbs one more byte and matching resumes after it. Earlier
 * stars never need revisiting, because the last one can absorb whatever
 * they could, so the work is bounded by pattern length times purpose length
 * and no input can make it exponential.
 */
bool coffer_authz_purpose_matches(const char *pattern, const char *purpose, size_t len)
{
    const unsigned char *pat = (const unsigned char *)pattern;
    const unsigned char *s = (const unsigned char *)purpose;
    size_t plen;
    size_t p = 0;
    size_t i = 0;
    size_t star = SIZE_MAX;
    size_t mark = 0;

    if (pattern == NULL || (purpose == NULL && len > 0)) {
        return false;
    }
    plen = strlen(pattern);
    while (i < len) {
        if (p < plen && pat[p] == '*') {
            star = p;
            mark = i;
            p++;
        } else if (p < plen && fold(pat[p]) == fold(s[i])) {
            p++;
            i++;
        } else if (star != SIZE_MAX) {
            p = star + 1;
            mark++;
            i = mark;
        } else {
            return false;
        }
    }
    while (p < plen && pat[p] == '*') {
        p++;
    }
    return p == plen;
}

/*
 * The longest a credential of the tier may live, in seconds, or
 * COFFER_TTL_NEVER. High and critical always have a limit: a missing or
 * too long one from the caller is replaced by the hard maximum, because
 * expiry can never be switched off for them. A tier out of range is judged
 * as critical, the strictest.
 */
static int64_t effective_max_ttl(enum coffer_tier tier, int64_t max_s)
{
    int64_t hard;

    switch (tier) {
    case COFFER_TIER_LOW:
    case COFFER_TIER_MEDIUM:
        return max_s;
    case COFFER_TIER_HIGH:
        hard = COFFER_TTL_HARD_MAX_HIGH;
        break;
    case COFFER_TIER_CRITICAL:
        hard = COFFER_TTL_HARD_MAX_CRITICAL;
        break;
    default:
        hard = COFFER_TTL_HARD_MAX_CRITICAL;
        break;
    }
    if (max_s == COFFER_TTL_NEVER || max_s > hard) {
        return hard;
    }
    return max_s;
}

static bool is_critical(enum coffer_tier tier)
{
    switch (tier) {
    case COFFER_TIER_LOW:
    case COFFER_TIER_MEDIUM:
    case COFFER_TIER_HIGH:
        return false;
    case COFFER_TIER_CRITICAL:
        return true;
    default:
        return true;
    }
}

/*
 * Expired at the expiry instant itself, and at issued + max TTL. The
 * difference is taken in unsigned arithmetic, which is exact for any pair
 * with now >= issued; a version stored after now (clocks of two servers
 * apart) has not outlived its TTL. A negative TTL other than "never" is not
 * a lifetime at all and expires the credential. A version all of whose keys
 * have passed their own expiry has nothing left to hand out: expired too.
 */
static bool expired(const struct coffer_authz_input *in)
{
    int64_t max_s = effective_max_ttl(in->tier, in->tier_max_ttl_s);
    uint64_t age_us;

    if (in->now_us >= in->expires_us || in->keys_expired) {
        return true;
    }
    if (max_s == COFFER_TTL_NEVER) {
        return false;
    }
    if (max_s < 0) {
        return true;
    }
    if (in->now_us < in->issued_us) {
        return false;
    }
    if ((uint64_t)max_s > UINT64_MAX / US_PER_S) {
        return false; /* the limit lies past any representable instant */
    }
    age_us = (uint64_t)in->now_us - (uint64_t)in->issued_us;
    return age_us >= (uint64_t)max_s * US_PER_S;
}

/* Whether the principal holds a standing approval covering now: [from, until). */
static bool approved(const struct coffer_authz_input *in)
{
    if (in->approvals == NULL) {
        return false;
    }
    for (size_t i = 0; i < in->n_approvals; i++) {
        const struct coffer_authz_approval *a = &in->approvals[i];

        if (same_name(a->agent_type, in->principal.agent_type) &&
            same_name(a->instance, in->principal.instance) && a->from_us <= in->now_us &&
            in->now_us < a->until_us) {
            return true;
        }
    }
    return false;
}

/* Whether grant g names the principal: its agent type, and no instance or the principal's. */
static bool grant_names(const struct coffer_authz_grant *g, const struct coffer_authz_principal *pr)
{
    if (!same_name(g->agent_type, pr->agent_type)) {
        return false;
    }
    /* An agent always has an instance; one without is malformed and matches no grant. */
    if (!present(pr->instance)) {
        return false;
    }
    return g->instance == NULL || same_name(g->instance, pr->instance);
}

/*
 * Whether grant g covers the current phase. A grant without phases covers
 * every phase, including a project without one; a grant with phases covers
 * only the phases it lists. A grant whose count of phases is not zero but
 * whose list is missing lists none, and so covers nothing.
 */
static bool grant_covers(const struct coffer_authz_grant *g, const char *phase)
{
    if (g->n_phases == 0) {
        return true;
    }
    return listed(g->phases, g->n_phases, phase);
}

/*
 * Steps 5 and 6: the index of the first grant that names the principal and
 * covers the phase, or -1 with *named telling whether any grant named the
 * principal at all. The index is an int, so grants past INT_MAX are not
 * looked at (the policy allows 256).
 */
static int find_grant(const struct coffer_authz_input *in, bool *named)
{
    *named = false;
    if (in->grants == NULL) {
        return -1;
    }
    for (size_t i = 0; i < in->n_grants && i <= (size_t)INT_MAX; i++) {
        const struct coffer_authz_grant *g = &in->grants[i];

        if (!grant_names(g, &in->principal)) {
            continue;
        }
        *named = true;
        if (grant_covers(g, in->phase)) {
            return (int)i;
        }
    }
    return -1;
}

/* Whether the purpose matches none of the credential's patterns (none given: every purpose). */
static bool purpose_unexpected(const struct coffer_authz_input *in)
{
    if (in->n_purposes == 0) {
        return false;
    }
    if (in->purposes == NULL) {
        return true;
    }
    for (size_t i = 0; i < in->n_purposes; i++) {
        if (coffer_authz_purpose_matches(in->purposes[i], in->purpose, in->purpose_len)) {
            return false;
        }
    }
    return true;
}

static void deny(struct coffer_authz_decision *out, enum coffer_authz_reason r)
{
    out->reason = r;
    out->allow = false;
    out->purpose_unexpected = false;
    out->grant = -1;
}

void coffer_authz_decide(const struct coffer_authz_input *in, struct coffer_authz_decision *out)
{
    bool named = false;
    int grant;

    if (out == NULL) {
        return;
    }
    if (in == NULL) {
        deny(out, COFFER_AUTHZ_NOT_FOUND);
        return;
    }
    /* The org comes first and is absolute: another org's credentials do not exist. */
    if (!same_name(in->principal.org, in->org)) {
        deny(out, COFFER_AUTHZ_NOT_FOUND);
        return;
    }
    if (!in->found) {
        deny(out, COFFER_AUTHZ_NOT_FOUND);
        return;
    }
    if (!coffer_authz_purpose_ok(in->purpose, in->purpose_len)) {
        deny(out, COFFER_AUTHZ_PURPOSE_MISSING);
        return;
    }
    if (!listed(in->members, in->n_members, in->principal.agent_type)) {
        deny(out, COFFER_AUTHZ_NOT_PROJECT_MEMBER);
        return;
    }
    grant = find_grant(in, &named);
    if (grant < 0) {
        deny(out, named ? COFFER_AUTHZ_WRONG_PHASE : COFFER_AUTHZ_NO_GRANT);
        return;
    }
    /* Only a grant holder gets here: it may learn that the values are never handed out. */
    if (in->secretless_only && !in->brokered) {
        deny(out, COFFER_AUTHZ_SECRETLESS_ONLY);
        return;
    }
    if (in->revoked) {
        deny(out, COFFER_AUTHZ_REVOKED);
        return;
    }
    if (expired(in)) {
        deny(out, COFFER_AUTHZ_EXPIRED);
        return;
    }
    if (is_critical(in->tier) && !approved(in)) {
        deny(out, COFFER_AUTHZ_APPROVAL_REQUIRED);
        return;
    }
    out->reason = COFFER_AUTHZ_GRANTED;
    out->allow = true;
    out->grant = grant;
    out->purpose_unexpected = purpose_unexpected(in);
}

void coffer_authz_after_unseal(struct coffer_authz_decision *d, enum coffer_err unseal)
{
    if (d == NULL || !d->allow) {
        return;
    }
    switch (unseal) {
    case COFFER_E_INTEGRITY:
        deny(d, COFFER_AUTHZ_INTEGRITY_ERROR);
        break;
    case COFFER_E_TOKEN_UNAVAILABLE:
    case COFFER_E_TOKEN:
    case COFFER_E_PIN:
    case COFFER_E_FORKED:
    case COFFER_E_NOT_FOUND: /* a key object of the hierarchy is missing from the token */
    case COFFER_E_STATE:     /* the key that wraps the row was destroyed */
        deny(d, COFFER_AUTHZ_TOKEN_UNAVAILABLE);
        break;
    default:
        break;
    }
}
