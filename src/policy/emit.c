/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One org of a finished model back into YAML, the text `coffer policy show`
 * prints and a policy version records. libyaml's emitter chooses the
 * quoting, so any name or text comes back as the same string; the layout
 * follows docs/policy.md (keys in its order, short lists in flow style,
 * every tier written out) and depends only on the model, so the same model
 * always gives the same bytes. This file never reads input.
 */
#include "coffer/policy.h"

#include "policy/policy_int.h"

#include <string.h>
#include <yaml.h>

struct emitter {
    yaml_emitter_t y;
    struct coffer_buf *out;
    enum coffer_err write_err; /* why the output handler refused bytes */
    enum coffer_err err;       /* the first failure; later events are skipped */
};

static int write_out(void *data, unsigned char *bytes, size_t size)
{
    struct emitter *em = data;
    enum coffer_err r = coffer_buf_put(em->out, bytes, size);

    if (r != COFFER_OK) {
        em->write_err = r;
        return 0;
    }
    return 1;
}

/* Hands one initialised event (or the failure to initialise it) to the emitter. */
static void emit(struct emitter *em, int initialised, yaml_event_t *ev)
{
    if (!initialised) {
        em->err = coffer_err_set(COFFER_E_NOMEM, "preparing a YAML event");
        return;
    }
    /* The emitter takes the event, whether it succeeds or not. */
    if (!yaml_emitter_emit(&em->y, ev)) {
        if (em->write_err != COFFER_OK) {
            em->err = coffer_err_set(em->write_err, "writing the policy as YAML: the output is "
                                                    "full");
        } else {
            em->err = coffer_err_set(COFFER_E_INVALID, "writing the policy as YAML: %s",
                                     em->y.problem != NULL ? em->y.problem : "emitter error");
        }
    }
}

/*
 * Whether s, written plain, would be read as something other than text: as
 * empty by the loader ("~", "null"), or as a boolean, number or date by
 * other YAML tools that read what `show` prints ("yes", "1", "2024-01-31").
 * Such text is quoted; plain TTLs such as "90d" are not affected.
 */
static bool reads_as_typed(const char *s)
{
    static const char *const words[] = {
        "~",     "null",  "Null",  "NULL",  "y",    "Y",    "yes",  "Yes",  "YES",
        "n",     "N",     "no",    "No",    "NO",   "true", "True", "TRUE", "false",
        "False", "FALSE", "on",    "On",    "ON",   "off",  "Off",  "OFF",  ".inf",
        ".Inf",  ".INF",  "-.inf", "+.inf", ".nan", ".NaN", ".NAN",
    };
    bool digit = false;

    if (s[0] == '\0') {
        return true;
    }
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strcmp(s, words[i]) == 0) {
            return true;
        }
    }
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
        return true;
    }
    for (const char *c = s; *c != '\0'; c++) {
        if (*c >= '0' && *c <= '9') {
            digit = true;
        } else if (strchr("._-+:eE", *c) == NULL) {
            return false;
        }
    }
    return digit && strchr("0123456789.+-", s[0]) != NULL;
}

static void scalar_styled(struct emitter *em, const char *s, yaml_scalar_style_t style)
{
    yaml_event_t ev;

    if (em->err != COFFER_OK) {
        return;
    }
    emit(em,
         yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)(uintptr_t)s, (int)strlen(s),
                                      1, 1, style),
         &ev);
}

static void scalar(struct emitter *em, const char *s)
{
    scalar_styled(em, s,
                  reads_as_typed(s) ? YAML_SINGLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
}

static void pair(struct emitter *em, const char *key, const char *value)
{
    scalar(em, key);
    scalar(em, value);
}

static void map_begin(struct emitter *em, bool flow)
{
    yaml_event_t ev;

    if (em->err != COFFER_OK) {
        return;
    }
    emit(em,
         yaml_mapping_start_event_initialize(
             &ev, NULL, NULL, 1, flow ? YAML_FLOW_MAPPING_STYLE : YAML_BLOCK_MAPPING_STYLE),
         &ev);
}

static void map_end(struct emitter *em)
{
    yaml_event_t ev;

    if (em->err != COFFER_OK) {
        return;
    }
    emit(em, yaml_mapping_end_event_initialize(&ev), &ev);
}

static void seq_begin(struct emitter *em, bool flow)
{
    yaml_event_t ev;

    if (em->err != COFFER_OK) {
        return;
    }
    emit(em,
         yaml_sequence_start_event_initialize(
             &ev, NULL, NULL, 1, flow ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE),
         &ev);
}

static void seq_end(struct emitter *em)
{
    yaml_event_t ev;

    if (em->err != COFFER_OK) {
        return;
    }
    emit(em, yaml_sequence_end_event_initialize(&ev), &ev);
}

static void name_list(struct emitter *em, const char *key, const char *const *names, size_t n,
                      bool flow)
{
    scalar(em, key);
    seq_begin(em, flow);
    for (size_t i = 0; i < n; i++) {
        scalar(em, names[i]);
    }
    seq_end(em);
}

static void emit_agent_types(struct emitter *em, const struct coffer_policy_org *o)
{
    if (o->n_agent_types == 0) {
        return;
    }
    scalar(em, "agent_types");
    map_begin(em, false);
    for (size_t i = 0; i < o->n_agent_types; i++) {
        const struct coffer_policy_agent_type *t = &o->agent_types[i];

        scalar(em, t->name);
        /* An agent type without attributes is written {} rather than an empty value. */
        map_begin(em, t->description == NULL);
        if (t->description != NULL) {
            pair(em, "description", t->description);
        }
        map_end(em);
    }
    map_end(em);
}

static void emit_tiers(struct emitter *em, const struct coffer_policy_org *o)
{
    scalar(em, "tiers");
    map_begin(em, false);
    for (size_t t = 0; t < COFFER_TIER_COUNT; t++) {
        char def[24];
        char max[24];

        coffer_policy_ttl_format(o->tiers[t].default_ttl, def);
        coffer_policy_ttl_format(o->tiers[t].max_ttl, max);
        scalar(em, coffer_tier_str((enum coffer_tier)t));
        map_begin(em, true);
        pair(em, "default_ttl", def);
        pair(em, "max_ttl", max);
        map_end(em);
    }
    map_end(em);
}

static void emit_grant(struct emitter *em, const struct coffer_policy_grant *g)
{
    map_begin(em, false);
    pair(em, "agent_type", g->agent_type);
    if (g->instance != NULL) {
        pair(em, "instance", g->instance);
    }
    if (g->n_phases > 0) {
        name_list(em, "phases", g->phases, g->n_phases, true);
    }
    map_end(em);
}

static void emit_usage(struct emitter *em, const struct coffer_policy_usage *u)
{
    scalar(em, "usage");
    map_begin(em, false);
    scalar(em, "destinations");
    seq_begin(em, false);
    for (size_t i = 0; i < u->n_destinations; i++) {
        scalar(em, u->destinations[i].url);
    }
    seq_end(em);
    name_list(em, "methods", u->methods, u->n_methods, true);
    if (u->n_inject > 0) {
        scalar(em, "inject");
        seq_begin(em, false);
        for (size_t i = 0; i < u->n_inject; i++) {
            map_begin(em, false);
            pair(em, u->inject[i].query ? "query" : "header", u->inject[i].name);
            pair(em, "value", u->inject[i].value);
            map_end(em);
        }
        seq_end(em);
    }
    map_end(em);
}

static void emit_cred(struct emitter *em, const struct coffer_policy_cred *c)
{
    scalar(em, c->name);
    map_begin(em, false);
    if (c->description != NULL) {
        pair(em, "description", c->description);
    }
    if (c->n_grants > 0) {
        scalar(em, "grants");
        seq_begin(em, false);
        for (size_t i = 0; i < c->n_grants; i++) {
            emit_grant(em, &c->grants[i]);
        }
        seq_end(em);
    }
    if (c->expire_on_phase_end != NULL) {
        pair(em, "expire_on_phase_end", c->expire_on_phase_end);
    }
    if (c->n_purposes > 0) {
        name_list(em, "purposes", c->purposes, c->n_purposes, false);
    }
    if (c->usage != NULL) {
        emit_usage(em, c->usage);
    }
    /* reveal: true is the default and is left out. */
    if (c->secretless_only) {
        scalar(em, "reveal");
        scalar_styled(em, "false", YAML_PLAIN_SCALAR_STYLE);
    }
    map_end(em);
}

static void emit_project(struct emitter *em, const struct coffer_policy_project *p)
{
    scalar(em, p->name);
    map_begin(em, false);
    if (p->description != NULL) {
        pair(em, "description", p->description);
    }
    name_list(em, "phases", p->phases, p->n_phases, true);
    if (p->initial_phase != NULL) {
        pair(em, "initial_phase", p->initial_phase);
    }
    if (p->n_members > 0) {
        name_list(em, "members", p->members, p->n_members, true);
    }
    if (p->n_creds > 0) {
        scalar(em, "credentials");
        map_begin(em, false);
        for (size_t i = 0; i < p->n_creds; i++) {
            emit_cred(em, &p->creds[i]);
        }
        map_end(em);
    }
    map_end(em);
}

static void emit_document(struct emitter *em, const struct coffer_policy_org *o)
{
    yaml_event_t ev;

    emit(em, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING), &ev);
    if (em->err == COFFER_OK) {
        emit(em, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1), &ev);
    }
    map_begin(em, false);
    scalar(em, "version");
    scalar_styled(em, "1", YAML_PLAIN_SCALAR_STYLE);
    pair(em, "org", o->name);
    emit_agent_types(em, o);
    emit_tiers(em, o);
    if (o->n_projects > 0) {
        scalar(em, "projects");
        map_begin(em, false);
        for (size_t i = 0; i < o->n_projects; i++) {
            emit_project(em, &o->projects[i]);
        }
        map_end(em);
    }
    map_end(em);
    if (em->err == COFFER_OK) {
        emit(em, yaml_document_end_event_initialize(&ev, 1), &ev);
    }
    if (em->err == COFFER_OK) {
        emit(em, yaml_stream_end_event_initialize(&ev), &ev);
    }
}

/*
 * Copies the emitter's text to out with a blank line before each top-level
 * section, as docs/policy.md lays a file out. A section is a line that is
 * exactly "tiers:": with folding off, no value can produce such a line.
 */
static enum coffer_err add_spacing(const struct coffer_buf *text, struct coffer_buf *out)
{
    static const char *const sections[] = {"agent_types:\n", "tiers:\n", "projects:\n"};
    size_t i = 0;
    enum coffer_err r = COFFER_OK;

    while (i < text->len && r == COFFER_OK) {
        const unsigned char *line = text->data + i;
        const unsigned char *nl = memchr(line, '\n', text->len - i);
        size_t n = nl != NULL ? (size_t)(nl - line) + 1 : text->len - i;

        for (size_t k = 0; k < sizeof(sections) / sizeof(sections[0]) && i > 0; k++) {
            size_t klen = strlen(sections[k]);

            if (n == klen && strncmp((const char *)line, sections[k], klen) == 0) {
                r = coffer_buf_put(out, "\n", 1);
            }
        }
        if (r == COFFER_OK) {
            r = coffer_buf_put(out, line, n);
        }
        i += n;
    }
    return r;
}

enum coffer_err coffer_policy_emit(const struct coffer_policy_org *org, struct coffer_buf *out)
{
    struct coffer_buf text = {0};
    struct emitter em = {.out = &text};
    size_t start;

    if (org == NULL || out == NULL || org->name == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "emitting a policy: no org or no output");
    }
    start = out->len;
    text.max = out->max;
    if (!yaml_emitter_initialize(&em.y)) {
        return coffer_err_set(COFFER_E_NOMEM, "starting the YAML emitter");
    }
    yaml_emitter_set_output(&em.y, write_out, &em);
    yaml_emitter_set_encoding(&em.y, YAML_UTF8_ENCODING);
    yaml_emitter_set_unicode(&em.y, 1);
    yaml_emitter_set_indent(&em.y, 2);
    /* No folding: a long description stays on one line. */
    yaml_emitter_set_width(&em.y, -1);
    yaml_emitter_set_break(&em.y, YAML_LN_BREAK);
    emit_document(&em, org);
    yaml_emitter_delete(&em.y);
    if (em.err == COFFER_OK) {
        em.err = add_spacing(&text, out);
    }
    coffer_buf_cleanup(&text);
    if (em.err != COFFER_OK) {
        /* Nothing half-written is left behind. */
        out->len = start;
        return em.err;
    }
    return COFFER_OK;
}
