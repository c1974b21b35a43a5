/* SPDX-License-Identifier: Apache-2.0 */
/*
 * YAML bytes into a small tree of scalars, sequences and mappings
 * (coffer/ytree.h), through libyaml's event parser so that every limit is
 * enforced while the input is read, before anything large is built. This
 * file refuses what a Coffer file has no use for and what could make a small
 * file expensive: aliases, anchors, tags, a second document, deep nesting,
 * too many nodes, long scalars, NUL bytes and invalid UTF-8. It never
 * interprets a value: the policy's load.c and the server's configuration
 * reader do that. It is the only file of the policy module that calls
 * libyaml's parser.
 */
#include "policy/policy_int.h"

#include "coffer/mem.h"
#include "coffer/text.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct tree {
    struct coffer_arena *a;
    const char *file;
    const char *doc; /* "a policy", "a configuration": the kind of file, for messages */
    const unsigned char *data;
    size_t len;
    struct coffer_policy_sink *sink;
    struct coffer_ynode *stack[COFFER_POLICY_DEPTH_MAX];
    size_t depth;
    uint32_t nodes;
    size_t docs;
    struct coffer_ynode *root;
};

static uint32_t pos_of(size_t zero_based)
{
    return zero_based >= UINT32_MAX ? UINT32_MAX : (uint32_t)zero_based + 1;
}

/* Records a diagnostic at a libyaml mark and returns COFFER_E_INVALID. */
static enum coffer_err fail_at(struct tree *t, yaml_mark_t m, const char *fmt, ...)
    COFFER_PRINTF(3, 4);
static enum coffer_err fail_at(struct tree *t, yaml_mark_t m, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    coffer_policy_vdiag(t->sink, t->file, pos_of(m.line), pos_of(m.column), fmt, ap);
    va_end(ap);
    return COFFER_E_INVALID;
}

bool coffer_ytree_null(const struct coffer_ynode *n)
{
    if (n == NULL) {
        return true;
    }
    if (n->kind != COFFER_YNODE_SCALAR || !n->plain) {
        return false;
    }
    return n->len == 0 || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 ||
           strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0;
}

const char *coffer_ytree_kind_str(enum coffer_ynode_kind k)
{
    switch (k) {
    case COFFER_YNODE_SCALAR:
        return "text";
    case COFFER_YNODE_SEQUENCE:
        return "a sequence";
    case COFFER_YNODE_MAPPING:
        return "a mapping";
    default:
        return "unknown";
    }
}

/* Refuses the anchor and the tag an event may carry. */
static enum coffer_err check_props(struct tree *t, const yaml_event_t *ev,
                                   const yaml_char_t *anchor, const yaml_char_t *tag)
{
    if (anchor != NULL) {
        const char *s = (const char *)anchor;

        return fail_at(t, ev->start_mark,
                       "anchor '&%s' is not allowed: %s has no use for anchors and aliases",
                       coffer_policy_quote(s, strlen(s)).s, t->doc);
    }
    if (tag != NULL) {
        const char *s = (const char *)tag;
        const char *prefix = "tag:yaml.org,2002:";
        bool core = strncmp(s, prefix, strlen(prefix)) == 0;

        /* libyaml expands "!!str"; the message shows what the file says. */
        if (core) {
            s += strlen(prefix);
        }
        return fail_at(t, ev->start_mark,
                       "tag '%s%s' is not allowed: %s holds plain values without tags",
                       core ? "!!" : "", coffer_policy_quote(s, strlen(s)).s, t->doc);
    }
    return COFFER_OK;
}

/* Creates a node at the event's position and hangs it under the open collection. */
static enum coffer_err add_node(struct tree *t, const yaml_event_t *ev, enum coffer_ynode_kind kind,
                                struct coffer_ynode **out)
{
    struct coffer_ynode *parent = t->depth > 0 ? t->stack[t->depth - 1] : NULL;
    struct coffer_ynode *n;

    if (t->nodes >= COFFER_POLICY_NODES_MAX) {
        coffer_policy_diag(t->sink, t->file, pos_of(ev->start_mark.line),
                           pos_of(ev->start_mark.column),
                           "the file has more than %u YAML nodes (values and collections)",
                           (unsigned)COFFER_POLICY_NODES_MAX);
        return COFFER_E_INVALID;
    }
    if (parent != NULL && parent->kind == COFFER_YNODE_MAPPING && parent->n % 2 == 0 &&
        kind != COFFER_YNODE_SCALAR) {
        return fail_at(t, ev->start_mark, "a mapping key must be a name, not %s",
                       coffer_ytree_kind_str(kind));
    }
    n = coffer_arena_alloc(t->a, 1, sizeof(*n));
    if (n == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "%s: the YAML tree needs more memory", t->file);
    }
    n->kind = kind;
    n->line = pos_of(ev->start_mark.line);
    n->col = pos_of(ev->start_mark.column);
    n->seq = t->nodes++;
    if (parent == NULL) {
        t->root = n;
    } else {
        if (parent->tail == NULL) {
            parent->head = n;
        } else {
            parent->tail->next = n;
        }
        parent->tail = n;
        parent->n++;
    }
    *out = n;
    return COFFER_OK;
}

static enum coffer_err on_scalar(struct tree *t, const yaml_event_t *ev)
{
    const char *value = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    struct coffer_ynode *n = NULL;
    enum coffer_err r;

    r = check_props(t, ev, ev->data.scalar.anchor, ev->data.scalar.tag);
    if (r != COFFER_OK) {
        return r;
    }
    if (len > COFFER_POLICY_SCALAR_MAX) {
        coffer_policy_diag(t->sink, t->file, pos_of(ev->start_mark.line),
                           pos_of(ev->start_mark.column), "a value is %zu bytes; the limit is %u",
                           len, (unsigned)COFFER_POLICY_SCALAR_MAX);
        return COFFER_E_INVALID;
    }
    if (memchr(value, '\0', len) != NULL) {
        return fail_at(t, ev->start_mark, "a value holds a NUL byte");
    }
    if (!coffer_utf8_ok(value, len)) {
        return fail_at(t, ev->start_mark, "a value is not valid UTF-8");
    }
    r = add_node(t, ev, COFFER_YNODE_SCALAR, &n);
    if (r != COFFER_OK) {
        return r;
    }
    n->str = coffer_arena_strndup(t->a, value, len);
    if (n->str == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "%s: the YAML tree needs more memory", t->file);
    }
    n->len = len;
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    return COFFER_OK;
}

static enum coffer_err on_start(struct tree *t, const yaml_event_t *ev, enum coffer_ynode_kind kind)
{
    const yaml_char_t *anchor;
    const yaml_char_t *tag;
    struct coffer_ynode *n = NULL;
    enum coffer_err r;

    if (kind == COFFER_YNODE_MAPPING) {
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
    } else {
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
    }
    r = check_props(t, ev, anchor, tag);
    if (r != COFFER_OK) {
        return r;
    }
    if (t->depth >= COFFER_POLICY_DEPTH_MAX) {
        coffer_policy_diag(t->sink, t->file, pos_of(ev->start_mark.line),
                           pos_of(ev->start_mark.column),
                           "collections are nested more than %u deep", COFFER_POLICY_DEPTH_MAX);
        return COFFER_E_INVALID;
    }
    r = add_node(t, ev, kind, &n);
    if (r != COFFER_OK) {
        return r;
    }
    t->stack[t->depth++] = n;
    return COFFER_OK;
}

static int key_cmp(const void *a, const void *b)
{
    const struct coffer_ynode *x = *(const struct coffer_ynode *const *)a;
    const struct coffer_ynode *y = *(const struct coffer_ynode *const *)b;
    int c = strcmp(x->str, y->str);

    if (c != 0) {
        return c;
    }
    return x->seq < y->seq ? -1 : (x->seq > y->seq ? 1 : 0);
}

/* Pairs of (duplicate, first), reported in file order. */
static int dup_cmp(const void *a, const void *b)
{
    const struct coffer_ynode *x = ((const struct coffer_ynode *const *)a)[0];
    const struct coffer_ynode *y = ((const struct coffer_ynode *const *)b)[0];

    return x->seq < y->seq ? -1 : (x->seq > y->seq ? 1 : 0);
}

/*
 * Reports every key of m given twice, at the later one. Sorting keeps a
 * mapping of many keys from costing the square of their number.
 */
static enum coffer_err check_duplicates(struct tree *t, const struct coffer_ynode *m)
{
    size_t nkeys = m->n / 2;
    const struct coffer_ynode **keys = NULL;
    const struct coffer_ynode **dups = NULL;
    size_t ndups = 0;
    size_t i = 0;
    enum coffer_err r = COFFER_OK;

    if (nkeys < 2) {
        return COFFER_OK;
    }
    keys = coffer_calloc(nkeys, sizeof(*keys));
    dups = coffer_calloc(nkeys * 2, sizeof(*dups));
    if (keys == NULL || dups == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "%s: checking keys for duplicates", t->file);
        goto out;
    }
    for (const struct coffer_ynode *k = m->head; k != NULL && k->next != NULL; k = k->next->next) {
        keys[i++] = k;
    }
    qsort(keys, nkeys, sizeof(*keys), key_cmp);
    /* Equal keys are adjacent, the first written first. */
    for (size_t first = 0, j = 1; j < nkeys; j++) {
        if (strcmp(keys[first]->str, keys[j]->str) != 0) {
            first = j;
            continue;
        }
        dups[2 * ndups] = keys[j];
        dups[2 * ndups + 1] = keys[first];
        ndups++;
    }
    qsort(dups, ndups, 2 * sizeof(*dups), dup_cmp);
    for (i = 0; i < ndups; i++) {
        const struct coffer_ynode *k = dups[2 * i];
        const struct coffer_ynode *first = dups[2 * i + 1];

        coffer_policy_diag(t->sink, t->file, k->line, k->col,
                           "duplicate key '%s' (first at line %u, column %u)",
                           coffer_policy_quote(k->str, k->len).s, first->line, first->col);
    }
out:
    coffer_free(keys);
    coffer_free(dups);
    return r;
}

/* Line and column of a byte offset, for the reader's errors, which carry no mark. */
static yaml_mark_t mark_of_offset(const struct tree *t, size_t offset)
{
    yaml_mark_t m = {0};

    for (size_t i = 0; i < offset && i < t->len; i++) {
        if (t->data[i] == '\n') {
            m.line++;
            m.column = 0;
        } else if ((t->data[i] & 0xC0) != 0x80) {
            m.column++;
        }
    }
    m.index = offset;
    return m;
}

static enum coffer_err syntax_error(struct tree *t, const yaml_parser_t *p)
{
    yaml_mark_t m = p->problem_mark;
    const char *problem = p->problem != NULL ? p->problem : "malformed input";

    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return coffer_err_set(COFFER_E_NOMEM, "%s: the YAML parser ran out of memory", t->file);
    case YAML_READER_ERROR:
        m = mark_of_offset(t, p->problem_offset);
        break;
    default:
        break;
    }
    coffer_policy_diag(t->sink, t->file, pos_of(m.line), pos_of(m.column),
                       "YAML syntax error: %s%s%s", problem, p->context != NULL ? " " : "",
                       p->context != NULL ? p->context : "");
    return COFFER_E_INVALID;
}

static enum coffer_err on_event(struct tree *t, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_STREAM_START_EVENT:
    case YAML_DOCUMENT_END_EVENT:
        return COFFER_OK;
    case YAML_DOCUMENT_START_EVENT:
        if (++t->docs > 1) {
            return fail_at(t, ev->start_mark,
                           "a second YAML document begins here; %s file holds one", t->doc);
        }
        return COFFER_OK;
    case YAML_STREAM_END_EVENT:
        if (t->docs == 0) {
            coffer_policy_diag(t->sink, t->file, 1, 1, "the file is empty (no YAML document)");
            return COFFER_E_INVALID;
        }
        return COFFER_OK;
    case YAML_ALIAS_EVENT: {
        const char *s = (const char *)ev->data.alias.anchor;

        return fail_at(t, ev->start_mark,
                       "alias '*%s' is not allowed: %s has no use for anchors and aliases",
                       coffer_policy_quote(s, s != NULL ? strlen(s) : 0).s, t->doc);
    }
    case YAML_SCALAR_EVENT:
        return on_scalar(t, ev);
    case YAML_SEQUENCE_START_EVENT:
        return on_start(t, ev, COFFER_YNODE_SEQUENCE);
    case YAML_MAPPING_START_EVENT:
        return on_start(t, ev, COFFER_YNODE_MAPPING);
    case YAML_SEQUENCE_END_EVENT:
        t->depth--;
        return COFFER_OK;
    case YAML_MAPPING_END_EVENT:
        t->depth--;
        return check_duplicates(t, t->stack[t->depth]);
    default:
        return fail_at(t, ev->start_mark, "unexpected YAML event");
    }
}

/* The parse behind both entry points; doc names the kind of file in messages. */
static enum coffer_err parse(struct coffer_arena *a, const char *file, const char *doc,
                             const unsigned char *data, size_t len, struct coffer_policy_sink *s,
                             struct coffer_ynode **root)
{
    struct tree t = {.a = a, .file = file, .doc = doc, .data = data, .len = len, .sink = s};
    size_t before = s->count;
    yaml_parser_t parser;
    yaml_event_t ev;
    enum coffer_err r = COFFER_OK;
    bool done = false;

    *root = NULL;
    if (!yaml_parser_initialize(&parser)) {
        return coffer_err_set(COFFER_E_NOMEM, "%s: starting the YAML parser", file);
    }
    /* UTF-8 only: a file in another encoding is refused, never converted. */
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
    yaml_parser_set_input_string(&parser, data, len);
    while (!done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            r = syntax_error(&t, &parser);
            goto out;
        }
        r = on_event(&t, &ev);
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (r != COFFER_OK) {
            goto out;
        }
    }
    /* Duplicate keys do not stop the parse, so that all of them are reported. */
    if (s->count != before) {
        r = COFFER_E_INVALID;
        goto out;
    }
    *root = t.root;
out:
    yaml_parser_delete(&parser);
    return r;
}

enum coffer_err coffer_policy_yaml_parse(struct coffer_arena *a, const char *file,
                                         const unsigned char *data, size_t len,
                                         struct coffer_policy_sink *s, struct coffer_ynode **root)
{
    return parse(a, file, "a policy", data, len, s, root);
}

/* ---- The public tree of coffer/ytree.h ---- */

enum coffer_err coffer_ytree_parse(const char *file, const char *doc, const void *data, size_t len,
                                   struct coffer_policy_diags *d, struct coffer_ytree **out)
{
    struct coffer_policy_sink sink = {.d = d};
    struct coffer_arena *a = NULL;
    struct coffer_ytree *t = NULL;
    struct coffer_ynode *root = NULL;
    enum coffer_err r;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "parsing YAML: no place for the tree");
    }
    *out = NULL;
    if (file == NULL || doc == NULL || (data == NULL && len > 0)) {
        return coffer_err_set(COFFER_E_INVALID, "parsing YAML: no file name, kind or data");
    }
    r = coffer_arena_new(0, &a);
    if (r != COFFER_OK) {
        return r;
    }
    t = coffer_arena_alloc(a, 1, sizeof(*t));
    if (t == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "%s: the YAML tree needs more memory", file);
        goto out;
    }
    r = parse(a, file, doc, data != NULL ? data : (const void *)"", len, &sink, &root);
    if (r == COFFER_E_INVALID && sink.nomem) {
        r = coffer_err_set(COFFER_E_NOMEM, "recording the problems of %s", file);
    } else if (r == COFFER_E_INVALID) {
        r = coffer_err_set(COFFER_E_INVALID, "%s has %zu YAML problem%s", file, sink.count,
                           sink.count == 1 ? "" : "s");
    }
    if (r != COFFER_OK) {
        goto out;
    }
    t->arena = a;
    t->root = root;
    *out = t;
    a = NULL;
out:
    coffer_arena_free(&a);
    return r;
}

void coffer_ytree_free(struct coffer_ytree **t)
{
    struct coffer_arena *a;

    if (t == NULL || *t == NULL) {
        return;
    }
    /* The tree lives in its own arena: releasing the arena releases the tree. */
    a = (*t)->arena;
    *t = NULL;
    coffer_arena_free(&a);
}

enum coffer_err coffer_ytree_vdiag(struct coffer_policy_diags *d, const char *file, uint32_t line,
                                   uint32_t col, const char *fmt, va_list ap)
{
    struct coffer_policy_sink sink = {.d = d};

    coffer_policy_vdiag(&sink, file, line, col, fmt, ap);
    if (sink.nomem) {
        return coffer_err_set(COFFER_E_NOMEM, "%s: no memory to record a problem", file);
    }
    return COFFER_OK;
}

enum coffer_err coffer_ytree_diag(struct coffer_policy_diags *d, const char *file, uint32_t line,
                                  uint32_t col, const char *fmt, ...)
{
    va_list ap;
    enum coffer_err r;

    va_start(ap, fmt);
    r = coffer_ytree_vdiag(d, file, line, col, fmt, ap);
    va_end(ap);
    return r;
}

struct coffer_ytree_quoted coffer_ytree_quote(const char *s, size_t len)
{
    struct coffer_policy_quoted q = coffer_policy_quote(s, len);
    struct coffer_ytree_quoted out;

    _Static_assert(sizeof(out.s) == sizeof(q.s), "one quoting rule, one buffer size");
    coffer_memcpy(out.s, q.s, sizeof(out.s));
    return out;
}
