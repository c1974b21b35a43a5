/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to policy: the policy's view of the YAML tree of coffer/ytree.h
 * (which yaml_tree.c builds from libyaml events), the diagnostic sink every
 * stage reports through, the private state behind a struct coffer_policy,
 * and the positions of referenced names that coffer_policy_finish needs to
 * point at the right line.
 */
#ifndef COFFER_POLICY_INT_H
#define COFFER_POLICY_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/arena.h"
#include "coffer/err.h"
#include "coffer/policy.h"
#include "coffer/ytree.h"

/* ---- Diagnostics ---- */

/*
 * Where one stage's diagnostics go. count says how many this stage produced
 * (kept or dropped), so that a caller can tell its own problems from those
 * already in d. nomem is set when a line could not be allocated; the line is
 * then counted as dropped.
 */
struct coffer_policy_sink {
    struct coffer_policy_diags *d; /* may be NULL: problems are only counted */
    size_t count;
    bool nomem;
};

/* Records "file:line:col: message" (the file name must already be safe to print). */
void coffer_policy_diag(struct coffer_policy_sink *s, const char *file, uint32_t line, uint32_t col,
                        const char *fmt, ...) COFFER_PRINTF(5, 6);
void coffer_policy_vdiag(struct coffer_policy_sink *s, const char *file, uint32_t line,
                         uint32_t col, const char *fmt, va_list ap) COFFER_PRINTF(5, 0);

/*
 * Input text made safe for a diagnostic or an error detail: bytes outside
 * printable ASCII, the quote and the backslash are written as \xNN, and
 * text longer than a line is cut with "...". Returned by value so that
 * several can appear in one printf call.
 */
#define COFFER_POLICY_QUOTE_MAX COFFER_YTREE_QUOTE_MAX
struct coffer_policy_quoted {
    char s[COFFER_POLICY_QUOTE_MAX * 4 + 8];
};
struct coffer_policy_quoted coffer_policy_quote(const char *s, size_t len);

/* ---- The YAML tree (coffer/ytree.h), as the policy's loader uses it ---- */

/*
 * Parses the len bytes at data (one YAML document) into a tree allocated in
 * a. file is the name diagnostics start with. COFFER_E_INVALID with
 * diagnostics in s for every refused construct; COFFER_E_NOMEM.
 */
enum coffer_err coffer_policy_yaml_parse(struct coffer_arena *a, const char *file,
                                         const unsigned char *data, size_t len,
                                         struct coffer_policy_sink *s,
                                         struct coffer_ynode **root) COFFER_MUST_USE;

/* Whether a node is an empty value: nothing, "~" or "null" written plain. */
static inline bool coffer_policy_ynode_null(const struct coffer_ynode *n)
{
    return coffer_ytree_null(n);
}

/* "text", "a sequence" or "a mapping": a node kind, for messages. */
static inline const char *coffer_policy_ynode_kind_str(enum coffer_ynode_kind k)
{
    return coffer_ytree_kind_str(k);
}

/* ---- The policy behind the public struct ---- */

/* Where a name that refers to something else was written. */
struct coffer_policy_ref {
    const char *s; /* the string in the model (compared by address) */
    struct coffer_policy_pos pos;
};

/*
 * A struct coffer_policy from coffer_policy_new is the first member of this,
 * so the module finds its state from the public pointer.
 */
struct coffer_policy_state {
    struct coffer_policy pub;
    bool finished;
    size_t n_files;
    struct coffer_policy_ref *refs; /* heap array; sorted by finish */
    size_t n_refs;
    size_t cap_refs;
};

struct coffer_policy_state *coffer_policy_state(struct coffer_policy *p);

/* Records where s was written (s must live as long as the policy). */
enum coffer_err coffer_policy_ref_add(struct coffer_policy_state *st, const char *s,
                                      struct coffer_policy_pos pos) COFFER_MUST_USE;

/* ---- Usage specs (usage.c) ---- */

/* The place of a method in GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, or -1 for any other. */
int coffer_policy_method_rank(const char *s, size_t len);

/* Why len bytes at s cannot be an injected header name (an RFC 9110 token), or NULL. */
const char *coffer_policy_header_problem(const char *s, size_t len);

/* Why len bytes at s cannot be an injected query parameter name, or NULL. */
const char *coffer_policy_query_problem(const char *s, size_t len);

/* Whether two inject entries name the same place (header names compared without case). */
bool coffer_policy_same_inject(bool query_a, const char *a, bool query_b, const char *b);

/* ---- Shared wording ---- */

#define COFFER_POLICY_NAME_RULE                                                                    \
    "names are 1 to 63 lower-case letters, digits, '_' or '-', starting with a letter or digit"

#endif
