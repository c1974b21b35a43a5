/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tiers, lifetimes and names: the small grammars of a policy file. A TTL is
 * read strictly ("30" is refused rather than guessed to be seconds) and
 * without ever overflowing, whatever the number of digits. Nothing here
 * allocates or touches libyaml.
 */
#include "coffer/policy.h"

#include "policy/policy_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *const tier_names[COFFER_TIER_COUNT] = {"low", "medium", "high", "critical"};

const char *coffer_tier_str(enum coffer_tier t)
{
    switch (t) {
    case COFFER_TIER_LOW:
    case COFFER_TIER_MEDIUM:
    case COFFER_TIER_HIGH:
    case COFFER_TIER_CRITICAL:
        return tier_names[t];
    default:
        return NULL;
    }
}

bool coffer_tier_parse(const char *s, size_t len, enum coffer_tier *out)
{
    if (s == NULL) {
        return false;
    }
    for (size_t i = 0; i < COFFER_TIER_COUNT; i++) {
        if (strlen(tier_names[i]) == len && strncmp(tier_names[i], s, len) == 0) {
            *out = (enum coffer_tier)i;
            return true;
        }
    }
    return false;
}

int64_t coffer_tier_hard_max(enum coffer_tier t)
{
    switch (t) {
    case COFFER_TIER_LOW:
    case COFFER_TIER_MEDIUM:
        return COFFER_TTL_NEVER;
    case COFFER_TIER_HIGH:
        return COFFER_TTL_HARD_MAX_HIGH;
    case COFFER_TIER_CRITICAL:
        return COFFER_TTL_HARD_MAX_CRITICAL;
    default:
        /* No tier: nothing is allowed, rather than everything. */
        return 0;
    }
}

struct coffer_policy_tier coffer_policy_tier_default(enum coffer_tier t)
{
    struct coffer_policy_tier r = {0};

    switch (t) {
    case COFFER_TIER_LOW:
        r.default_ttl = 90 * INT64_C(86400);
        r.max_ttl = COFFER_TTL_NEVER;
        break;
    case COFFER_TIER_MEDIUM:
        r.default_ttl = 30 * INT64_C(86400);
        r.max_ttl = 365 * INT64_C(86400);
        break;
    case COFFER_TIER_HIGH:
        r.default_ttl = INT64_C(86400);
        r.max_ttl = 7 * INT64_C(86400);
        break;
    case COFFER_TIER_CRITICAL:
        r.default_ttl = INT64_C(3600);
        r.max_ttl = INT64_C(86400);
        break;
    default:
        break;
    }
    return r;
}

/* Seconds per unit, and the unit's rank (larger units first). */
static bool unit_of(char c, int64_t *seconds, int *rank)
{
    switch (c) {
    case 'w':
        *seconds = 7 * INT64_C(86400);
        *rank = 0;
        return true;
    case 'd':
        *seconds = INT64_C(86400);
        *rank = 1;
        return true;
    case 'h':
        *seconds = INT64_C(3600);
        *rank = 2;
        return true;
    case 'm':
        *seconds = INT64_C(60);
        *rank = 3;
        return true;
    case 's':
        *seconds = INT64_C(1);
        *rank = 4;
        return true;
    default:
        return false;
    }
}

enum coffer_err coffer_policy_ttl_parse(const char *s, size_t len, int64_t *seconds)
{
    int64_t total = 0;
    int last_rank = -1;
    char last_unit = 0;
    size_t i = 0;

    *seconds = 0;
    if (s == NULL || len == 0) {
        return coffer_err_set(COFFER_E_INVALID, "a TTL is empty; write one like 90d, 1d12h or "
                                                "never");
    }
    if (len == 5 && strncmp(s, "never", 5) == 0) {
        *seconds = COFFER_TTL_NEVER;
        return COFFER_OK;
    }
    while (i < len) {
        int64_t group = 0;
        int64_t unit = 0;
        int rank = 0;
        size_t start = i;

        while (i < len && s[i] >= '0' && s[i] <= '9') {
            /* Past the largest TTL the exact value no longer matters, only that it is too big. */
            if (group <= COFFER_TTL_FINITE_MAX) {
                group = group * 10 + (s[i] - '0');
            }
            i++;
        }
        if (i == len) {
            if (start == 0) {
                return coffer_err_set(COFFER_E_INVALID,
                                      "a bare number has no unit; add one of w, d, h, m, s "
                                      "(30s, 30m, 30h, 30d)");
            }
            return coffer_err_set(COFFER_E_INVALID, "the last number has no unit; add one of "
                                                    "w, d, h, m, s");
        }
        if (i == start) {
            if (unit_of(s[i], &unit, &rank)) {
                return coffer_err_set(COFFER_E_INVALID, "unit '%c' has no number before it", s[i]);
            }
            return coffer_err_set(COFFER_E_INVALID,
                                  "'%s' is not a number or a unit; a TTL is digits and units "
                                  "(w, d, h, m, s) or never",
                                  coffer_policy_quote(s + i, 1).s);
        }
        if (!unit_of(s[i], &unit, &rank)) {
            return coffer_err_set(COFFER_E_INVALID, "unknown unit '%s'; units are w, d, h, m, s",
                                  coffer_policy_quote(s + i, 1).s);
        }
        if (rank <= last_rank) {
            if (rank == last_rank) {
                return coffer_err_set(COFFER_E_INVALID, "unit '%c' appears twice", s[i]);
            }
            return coffer_err_set(COFFER_E_INVALID,
                                  "unit '%c' comes after '%c'; write the largest unit first "
                                  "(w, d, h, m, s)",
                                  s[i], last_unit);
        }
        last_rank = rank;
        last_unit = s[i];
        i++;
        if (group > COFFER_TTL_FINITE_MAX / unit) {
            return coffer_err_set(COFFER_E_INVALID, "a TTL is at most 100 years (%" PRId64 "s)",
                                  COFFER_TTL_FINITE_MAX);
        }
        total += group * unit;
        if (total > COFFER_TTL_FINITE_MAX) {
            return coffer_err_set(COFFER_E_INVALID, "a TTL is at most 100 years (%" PRId64 "s)",
                                  COFFER_TTL_FINITE_MAX);
        }
    }
    if (total < 1) {
        return coffer_err_set(COFFER_E_INVALID, "a TTL of zero is not allowed; the least is 1s");
    }
    *seconds = total;
    return COFFER_OK;
}

void coffer_policy_ttl_format(int64_t seconds, char out[24])
{
    if (seconds == COFFER_TTL_NEVER) {
        snprintf(out, 24, "never");
    } else if (seconds <= 0) {
        snprintf(out, 24, "invalid");
    } else if (seconds % 86400 == 0) {
        snprintf(out, 24, "%" PRId64 "d", seconds / 86400);
    } else if (seconds % 3600 == 0) {
        snprintf(out, 24, "%" PRId64 "h", seconds / 3600);
    } else if (seconds % 60 == 0) {
        snprintf(out, 24, "%" PRId64 "m", seconds / 60);
    } else {
        snprintf(out, 24, "%" PRId64 "s", seconds);
    }
}

bool coffer_policy_name_ok(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > COFFER_POLICY_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

        if (!ok && i > 0) {
            ok = c == '_' || c == '-';
        }
        if (!ok) {
            return false;
        }
    }
    return true;
}
