/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policy as code: the YAML files admins keep in version control, read into an
 * in-memory model with the file, line and column of every element, checked
 * as a whole, compared with the policy in force, and written back as YAML.
 *
 * The format is documented in docs/policy.md. Only this module (and the
 * server's config reader) calls libyaml. The model lives in one arena and
 * holds identifiers, descriptions and purpose patterns, never a secret.
 *
 * Every problem with an input is a diagnostic "file:line:column: what is
 * wrong" (line and column from 1), collected in struct coffer_policy_diags;
 * a function that found problems returns COFFER_E_INVALID. Failing to read a
 * file or to allocate is an error of its own (COFFER_E_IO, COFFER_E_NOMEM)
 * with the detail in coffer_err_detail().
 */
#ifndef COFFER_POLICY_H
#define COFFER_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/arena.h"
#include "coffer/buf.h"
#include "coffer/err.h"

/* ---- Limits (docs/policy.md lists them for admins) ---- */

#define COFFER_POLICY_FILE_MAX (1024u * 1024u) /* bytes per file */
#define COFFER_POLICY_FILES_MAX 256            /* files per load */
#define COFFER_POLICY_DEPTH_MAX 16             /* nesting of collections */
#define COFFER_POLICY_NODES_MAX 200000         /* scalars and collections per file */
#define COFFER_POLICY_SCALAR_MAX 4096          /* bytes per scalar */
#define COFFER_POLICY_DESC_MAX 1024            /* bytes per description */
#define COFFER_POLICY_PURPOSE_MAX 512          /* bytes per purpose or pattern */
#define COFFER_POLICY_AGENT_TYPES_MAX 1000     /* per org */
#define COFFER_POLICY_PROJECTS_MAX 1000        /* per org */
#define COFFER_POLICY_PHASES_MAX 32            /* per project */
#define COFFER_POLICY_CREDS_MAX 10000          /* credential rules per project */
#define COFFER_POLICY_GRANTS_MAX 256           /* per credential rule */
#define COFFER_POLICY_PURPOSES_MAX 64          /* patterns per credential rule */
#define COFFER_POLICY_DIAGS_MAX 100            /* diagnostics kept; the rest are counted */
#define COFFER_POLICY_NAME_MAX 63              /* [a-z0-9][a-z0-9_-]{0,62} */
#define COFFER_POLICY_DESTS_MAX 16             /* destinations per usage spec */
#define COFFER_POLICY_DEST_MAX 2048            /* bytes per destination URL */
#define COFFER_POLICY_METHODS_MAX 8            /* methods per usage spec */
#define COFFER_POLICY_INJECTS_MAX 8            /* inject entries per usage spec */
#define COFFER_POLICY_HEADER_NAME_MAX 128      /* bytes per injected header name */
#define COFFER_POLICY_QUERY_NAME_MAX 64        /* bytes per injected query parameter name */
#define COFFER_POLICY_USAGE_JSON_MAX 262144    /* bytes of a usage spec's canonical JSON */

/* ---- Tiers and lifetimes ---- */

enum coffer_tier {
    COFFER_TIER_LOW = 0,
    COFFER_TIER_MEDIUM = 1,
    COFFER_TIER_HIGH = 2,
    COFFER_TIER_CRITICAL = 3,
};
#define COFFER_TIER_COUNT 4

/* A lifetime that never ends; allowed for low and medium only. */
#define COFFER_TTL_NEVER INT64_C(-1)
/* The hard maxima no policy can exceed (seconds). */
#define COFFER_TTL_HARD_MAX_HIGH INT64_C(604800)    /* 7 days */
#define COFFER_TTL_HARD_MAX_CRITICAL INT64_C(86400) /* 24 hours */
/* The longest finite TTL accepted for any tier: 100 years of 365 days. */
#define COFFER_TTL_FINITE_MAX INT64_C(3153600000)

/* "low", "medium", "high", "critical"; NULL for a value out of range. */
const char *coffer_tier_str(enum coffer_tier t);
/* Parses a tier name of len bytes; false if it is none of the four. */
bool coffer_tier_parse(const char *s, size_t len, enum coffer_tier *out);
/* The hard maximum TTL of a tier in seconds, or COFFER_TTL_NEVER for none. */
int64_t coffer_tier_hard_max(enum coffer_tier t);

/*
 * Parses a TTL: "never", or one or more <digits><unit> groups with units s,
 * m, h, d, w in decreasing order ("90d", "1d12h", "3600s"), at least 1 second
 * and at most COFFER_TTL_FINITE_MAX. COFFER_E_INVALID with a detail saying
 * what is wrong.
 */
enum coffer_err coffer_policy_ttl_parse(const char *s, size_t len,
                                        int64_t *seconds) COFFER_MUST_USE;
/* Writes a TTL in canonical form (the largest unit that divides it, or "never"). */
void coffer_policy_ttl_format(int64_t seconds, char out[24]);

/* ---- The model ---- */

/* Where an element was declared; file is NULL for a model read from the database. */
struct coffer_policy_pos {
    const char *file;
    uint32_t line;
    uint32_t col;
};

struct coffer_policy_tier {
    int64_t default_ttl; /* seconds, or COFFER_TTL_NEVER */
    int64_t max_ttl;     /* seconds, or COFFER_TTL_NEVER */
    bool declared;       /* false: the built-in default applies */
    struct coffer_policy_pos pos;
};

struct coffer_policy_agent_type {
    const char *name;
    const char *description; /* NULL if none */
    struct coffer_policy_pos pos;
};

/* A grant: an agent type, optionally one instance, optionally some phases. */
struct coffer_policy_grant {
    const char *agent_type;
    const char *instance; /* NULL: every instance of the type */
    const char **phases;  /* n_phases == 0: every phase of the project */
    size_t n_phases;
    struct coffer_policy_pos pos;
};

/* A destination a credential may be used at: "https://host[:port][/path-prefix]". */
struct coffer_policy_dest {
    const char *url; /* as written; checked with coffer_policy_dest_split */
    struct coffer_policy_pos pos;
};

/* Where the secret goes in a brokered call: a header or a query parameter. */
struct coffer_policy_inject {
    bool query;       /* false: a header */
    const char *name; /* header or query parameter name */
    /* template, e.g. "Bearer {{api_key}}": placeholders name the credential's keys */
    const char *value;
    struct coffer_policy_pos pos;
};

/* How a credential is used through Coffer, in brokered calls. */
struct coffer_policy_usage {
    struct coffer_policy_dest *destinations; /* at least one */
    size_t n_destinations;
    const char **methods; /* upper-case HTTP methods, at least one */
    size_t n_methods;
    struct coffer_policy_inject *inject; /* none: the agent's request is sent as it is */
    size_t n_inject;
    struct coffer_policy_pos pos;
};

/* The rules for one credential name of a project (the credential may not exist yet). */
struct coffer_policy_cred {
    const char *name;
    const char *description;         /* NULL if none */
    const char *expire_on_phase_end; /* a phase of the project, or NULL */
    const char **purposes;           /* allowed purpose patterns; none: any purpose is expected */
    size_t n_purposes;
    struct coffer_policy_grant *grants;
    size_t n_grants;
    const struct coffer_policy_usage *usage; /* NULL: no brokered use */
    /* "reveal: false" (only with a usage): access refuses, reason secretless_only */
    bool secretless_only;
    struct coffer_policy_pos pos;
};

struct coffer_policy_project {
    const char *name;
    const char *description; /* NULL if none */
    const char **phases;     /* in order, 1..COFFER_POLICY_PHASES_MAX */
    size_t n_phases;
    const char *initial_phase; /* one of phases; the first when the file names none */
    const char **members;      /* agent types of the org, sorted */
    size_t n_members;
    struct coffer_policy_cred *creds;
    size_t n_creds;
    struct coffer_policy_pos pos;
};

struct coffer_policy_file {
    const char *path;
    char sha256[65]; /* lower-case hex of the file's bytes */
};

struct coffer_policy_org {
    const char *name;
    struct coffer_policy_agent_type *agent_types;
    size_t n_agent_types;
    struct coffer_policy_tier tiers[COFFER_TIER_COUNT];
    struct coffer_policy_project *projects;
    size_t n_projects;
    struct coffer_policy_file *files; /* the files that declared this org */
    size_t n_files;
    struct coffer_policy_pos pos;
};

/*
 * A loaded policy: one entry per org named by the files. After
 * coffer_policy_finish every list is sorted by name (phases keep their
 * declared order), every tier is filled in (built-in defaults for the
 * undeclared ones) and every reference has been checked.
 */
struct coffer_policy {
    struct coffer_arena *arena;
    struct coffer_policy_org *orgs;
    size_t n_orgs;
};

/* Diagnostics: each line "file:line:column: message", without a newline. */
struct coffer_policy_diags {
    char *lines[COFFER_POLICY_DIAGS_MAX];
    size_t n;
    size_t dropped; /* diagnostics past COFFER_POLICY_DIAGS_MAX, counted only */
};

/* Frees the lines; the struct is left zeroed. */
void coffer_policy_diags_cleanup(struct coffer_policy_diags *d);

/* An empty policy with its own arena. */
enum coffer_err coffer_policy_new(struct coffer_policy **out) COFFER_MUST_USE;
void coffer_policy_free(struct coffer_policy **p);

/*
 * Reads one file (at most COFFER_POLICY_FILE_MAX bytes) and merges its
 * declarations into p. COFFER_E_IO if the file cannot be read (detail says
 * why); COFFER_E_INVALID with diagnostics for every problem in it.
 */
enum coffer_err coffer_policy_add_file(struct coffer_policy *p, const char *path,
                                       struct coffer_policy_diags *d) COFFER_MUST_USE;

/* As coffer_policy_add_file for bytes already in memory; name is used in diagnostics. */
enum coffer_err coffer_policy_add_buffer(struct coffer_policy *p, const char *name,
                                         const void *data, size_t len,
                                         struct coffer_policy_diags *d) COFFER_MUST_USE;

/*
 * Checks what only the whole set of files can tell (references to agent
 * types and phases declared in other files, TTL limits), fills in defaults
 * and sorts. COFFER_E_INVALID with diagnostics if anything is wrong.
 */
enum coffer_err coffer_policy_finish(struct coffer_policy *p,
                                     struct coffer_policy_diags *d) COFFER_MUST_USE;

/* The org named name, or NULL. */
const struct coffer_policy_org *coffer_policy_org_find(const struct coffer_policy *p,
                                                       const char *name);

/* Whether s (len bytes) is a name: ^[a-z0-9][a-z0-9_-]{0,62}$. */
bool coffer_policy_name_ok(const char *s, size_t len);

/* The built-in lifetimes of a tier (used for undeclared tiers). */
struct coffer_policy_tier coffer_policy_tier_default(enum coffer_tier t);

/*
 * Appends the org's policy to out as YAML that coffer_policy_add_buffer
 * accepts and that loads into an equal model (the round trip of
 * `coffer policy show`). Lists are written sorted, phases in order, every
 * tier explicitly. The org must be finished (sorted, tiers filled in).
 */
enum coffer_err coffer_policy_emit(const struct coffer_policy_org *org,
                                   struct coffer_buf *out) COFFER_MUST_USE;

/* ---- Usage specs: how a credential is used through Coffer ---- */

struct coffer_broker_dest;

/*
 * Splits a destination as a policy writes it, "https://host[:port][/path-prefix]"
 * (at most COFFER_POLICY_DEST_MAX bytes), into *out (strings in a), and checks
 * it with coffer_broker_dest_validate: scheme https, a host (or "*." and a
 * name), an optional port of 1..65535 without leading zeros, an optional path
 * prefix; no user info, query or fragment. COFFER_E_INVALID with a detail
 * that says what is wrong; COFFER_E_NOMEM.
 */
enum coffer_err coffer_policy_dest_split(struct coffer_arena *a, const char *url, size_t len,
                                         struct coffer_broker_dest *out) COFFER_MUST_USE;

/*
 * Appends the canonical JSON of a usage spec to out (no NUL):
 * {"destinations":[...],"methods":[...],"inject":[{"header"|"query":name,"value":tmpl},...]}
 * with destinations sorted by byte order, methods in the order GET, HEAD,
 * POST, PUT, PATCH, DELETE, OPTIONS, and inject entries in their declared
 * order (the order they are applied in). Equal specs give equal bytes.
 * COFFER_E_INVALID for a NULL spec, COFFER_E_LIMIT past out's max or
 * COFFER_POLICY_USAGE_JSON_MAX, COFFER_E_NOMEM.
 */
enum coffer_err coffer_policy_usage_json(const struct coffer_policy_usage *u,
                                         struct coffer_buf *out) COFFER_MUST_USE;

/*
 * Reads a usage spec back from the JSON coffer_policy_usage_json wrote (a
 * database column: every rule of docs/policy.md is checked again, and no
 * other key is accepted). The spec and its strings are allocated in a;
 * positions are empty. COFFER_E_INVALID with a detail naming what is wrong,
 * COFFER_E_NOMEM.
 */
enum coffer_err
coffer_policy_usage_from_json(struct coffer_arena *a, const char *json, size_t len,
                              const struct coffer_policy_usage **out) COFFER_MUST_USE;

/* ---- Differences between the policy in force and a new one ---- */

enum coffer_policy_change_op {
    COFFER_POLICY_ADDED = '+',
    COFFER_POLICY_REMOVED = '-',
    COFFER_POLICY_MODIFIED = '~',
};

struct coffer_policy_change {
    enum coffer_policy_change_op op;
    const char *what; /* "agent type deployer", "grant payments/stripe-live to deployer" */
    const char *how;  /* for MODIFIED: "phases design,build -> design,build,staging"; else NULL */
};

struct coffer_policy_changes {
    struct coffer_policy_change *items; /* allocated in the arena given to the diff */
    size_t n;
};

/*
 * Lists what changes from old to new (both finished, same org name) in a
 * stable order: agent types, tiers, projects, then each project's members,
 * phases and credential rules with their grants. No changes means the two
 * models are equal. Allocates in a.
 */
enum coffer_err coffer_policy_diff(const struct coffer_policy_org *old,
                                   const struct coffer_policy_org *new_org, struct coffer_arena *a,
                                   struct coffer_policy_changes *out) COFFER_MUST_USE;

#endif
