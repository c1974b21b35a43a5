/* SPDX-License-Identifier: Apache-2.0 */
/*
 * YAML text into a small tree of scalars, sequences and mappings, with the
 * line and column of every node: the one YAML reader of Coffer, shared by
 * the policy module and the server's configuration reader (the only two
 * places that may read YAML).
 *
 * The reader refuses what a Coffer file has no use for and what could make a
 * small file expensive: anchors, aliases, tags, a second document, duplicate
 * keys in a mapping, nesting deeper than COFFER_POLICY_DEPTH_MAX, more than
 * COFFER_POLICY_NODES_MAX nodes, scalars longer than COFFER_POLICY_SCALAR_MAX
 * bytes, NUL bytes and invalid UTF-8. It never interprets a value: "8443",
 * "true" and "~" are all text; the caller decides what each means.
 *
 * Problems are diagnostics "file:line:column: message" (line and column from
 * 1) in a struct coffer_policy_diags, the same list the policy module fills.
 * The tree holds whatever the file held; a caller that reads a file which
 * might contain a secret must not quote those values back in its messages.
 */
#ifndef COFFER_YTREE_H
#define COFFER_YTREE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/arena.h"
#include "coffer/err.h"
#include "coffer/policy.h"

enum coffer_ynode_kind {
    COFFER_YNODE_SCALAR = 1,
    COFFER_YNODE_SEQUENCE = 2,
    COFFER_YNODE_MAPPING = 3,
};

/*
 * One node. A mapping's children alternate key, value (keys are always
 * scalars, and unique within their mapping); a sequence's children are its
 * items. Walk the children with head and next; n counts them (a mapping
 * counts keys and values). Positions are 1-based.
 */
struct coffer_ynode {
    enum coffer_ynode_kind kind;
    uint32_t line;
    uint32_t col;
    uint32_t seq;    /* order of appearance in the file */
    bool plain;      /* scalar written without quotes or block indicator */
    const char *str; /* scalar: the value, NUL-terminated, without NUL inside */
    size_t len;
    struct coffer_ynode *head; /* first child */
    struct coffer_ynode *tail;
    struct coffer_ynode *next; /* next sibling */
    size_t n;                  /* children (a mapping counts keys and values) */
};

/* A parsed document: every node lives in arena, released by coffer_ytree_free. */
struct coffer_ytree {
    struct coffer_arena *arena;
    const struct coffer_ynode *root; /* never NULL in a tree that parsing returned */
};

/*
 * Parses the len bytes at data (one YAML document, UTF-8) into a new tree.
 * file is the name diagnostics start with (already safe to print); doc names
 * the kind of file for messages ("a policy", "a configuration"). On success
 * *out owns the tree. COFFER_E_INVALID with diagnostics in d (which may be
 * NULL: the lines are then not kept) for every refused construct;
 * COFFER_E_NOMEM. *out is NULL on every failure.
 */
enum coffer_err coffer_ytree_parse(const char *file, const char *doc, const void *data, size_t len,
                                   struct coffer_policy_diags *d,
                                   struct coffer_ytree **out) COFFER_MUST_USE;

/* Releases the tree and every node; sets *t to NULL. Safe on NULL and *t == NULL. */
void coffer_ytree_free(struct coffer_ytree **t);

/* Whether a node is an empty value: absent (NULL), nothing, "~" or "null" written plain. */
bool coffer_ytree_null(const struct coffer_ynode *n);

/* "text", "a sequence" or "a mapping": a node kind, for messages. */
const char *coffer_ytree_kind_str(enum coffer_ynode_kind k);

/*
 * Adds "file:line:col: message" to d (d may be NULL: nothing is kept). Past
 * COFFER_POLICY_DIAGS_MAX lines a diagnostic is only counted in d->dropped.
 * COFFER_E_NOMEM if the line could not be allocated (it is then counted as
 * dropped), else COFFER_OK. Never format a secret value into a diagnostic.
 */
enum coffer_err coffer_ytree_diag(struct coffer_policy_diags *d, const char *file, uint32_t line,
                                  uint32_t col, const char *fmt, ...)
    COFFER_PRINTF(5, 6) COFFER_MUST_USE;
enum coffer_err coffer_ytree_vdiag(struct coffer_policy_diags *d, const char *file, uint32_t line,
                                   uint32_t col, const char *fmt, va_list ap)
    COFFER_PRINTF(5, 0) COFFER_MUST_USE;

/*
 * Text from a file made safe for a diagnostic or an error detail: bytes
 * outside printable ASCII, the quote and the backslash become \xNN, and text
 * longer than COFFER_YTREE_QUOTE_MAX bytes is cut with "...". Returned by
 * value so that several can appear in one printf call.
 */
#define COFFER_YTREE_QUOTE_MAX 96
struct coffer_ytree_quoted {
    char s[COFFER_YTREE_QUOTE_MAX * 4 + 8];
};
struct coffer_ytree_quoted coffer_ytree_quote(const char *s, size_t len);

#endif
